//! Every way a trust command can fail, each a single line that says what to do.

use registry::client::NetError;
use tuf::client::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// Bad input: a message shown as is.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Net(#[from] NetError),
    #[error("{0}")]
    Client(ClientError),
    #[error(
        "remote trust data does not exist for {gun}: {host} does not have trust data for {gun}"
    )]
    NotFound { gun: String, host: String },
    #[error("could not decrypt the {role} key {id}: wrong passphrase")]
    WrongPassphrase { role: String, id: String },
    #[error("{0}")]
    Passphrase(#[from] crate::passphrase::PassphraseError),
    #[error("could not find necessary signing keys, at least one of these keys must be available: {ids}")]
    NoSigningKey { ids: String },
    #[error("no valid signing keys for delegation roles")]
    NoDelegationKey,
    #[error("No valid trust data for {tag}")]
    NoSuchTag { tag: String },
    #[error("the trust server refused the update: {0}")]
    Refused(String),
    #[error("{0}")]
    Key(#[from] keys::KeyError),
    #[error("{0}")]
    Other(String),
}

impl TrustError {
    pub fn from_client(e: ClientError, host: &str) -> TrustError {
        match e {
            ClientError::NotFound { gun } => TrustError::NotFound {
                gun,
                host: host.to_owned(),
            },
            e => TrustError::Client(e),
        }
    }
}

impl From<tuf::Error> for TrustError {
    fn from(e: tuf::Error) -> Self {
        TrustError::Client(ClientError::Tuf(e))
    }
}

impl From<tuf::NameError> for TrustError {
    fn from(e: tuf::NameError) -> Self {
        TrustError::Usage(e.to_string())
    }
}

pub type Result<T, E = TrustError> = std::result::Result<T, E>;
