#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}: not a PEM private key file")]
    NotPem(String),
    #[error("unsupported PEM block {0:?}: expected a private key (EC, RSA, ED25519, PKCS#8 or encrypted PKCS#8)")]
    UnsupportedPemType(String),
    #[error("the file holds a public key, not a private key")]
    PublicKeyOnly,
    #[error("could not decrypt key: wrong passphrase")]
    WrongPassphrase,
    #[error("the key is encrypted and no passphrase was given")]
    PassphraseRequired,
    #[error("unsupported key encryption: {0}")]
    UnsupportedEncryption(String),
    #[error("malformed private key: {0}")]
    Malformed(String),
    #[error("unsupported key: {0}")]
    Unsupported(String),
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl From<crate::der::DerError> for KeyError {
    fn from(e: crate::der::DerError) -> Self {
        KeyError::Malformed(e.0.to_owned())
    }
}

pub type Result<T, E = KeyError> = std::result::Result<T, E>;
