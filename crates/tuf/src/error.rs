//! The one error type of the TUF core. Every variant names the role it is about.

use crate::canonical::CanonicalError;
use crate::names::NameError;
use crate::time::DateTime;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{role}: not valid metadata JSON: {msg}")]
    Json { role: String, msg: String },

    #[error("{role}: {source}")]
    Canonical {
        role: String,
        #[source]
        source: CanonicalError,
    },

    #[error(transparent)]
    Name(#[from] NameError),

    #[error("{role}: invalid metadata: {msg}")]
    Invalid { role: String, msg: String },

    /// Targets that cannot be read, met while changing them (the role is named by the
    /// caller, which knows it).
    #[error("unreadable targets: {msg}")]
    Targets { msg: String },

    #[error("{role}: metadata carries no signatures")]
    Unsigned { role: String },

    #[error("{role}: valid signatures from {valid} distinct key(s), threshold is {threshold}")]
    Threshold {
        role: String,
        valid: usize,
        threshold: u64,
    },

    #[error("{role}: signature names key {keyid}, but that key's ID computes to {actual}")]
    KeyIdMismatch {
        role: String,
        keyid: String,
        actual: String,
    },

    #[error("{role}: expired at {expires}")]
    Expired { role: String, expires: DateTime },

    #[error(
        "{role}: version {found} is lower than the trusted version {trusted} (rollback refused)"
    )]
    Rollback {
        role: String,
        found: u64,
        trusted: u64,
    },

    #[error("{role}: root is not trusted: {msg}")]
    Root { role: String, msg: String },

    #[error("{role}: {msg} (mix-and-match refused)")]
    HashMismatch { role: String, msg: String },

    #[error("{role}: {size} bytes is more than the {limit} allowed (endless data refused)")]
    TooLarge { role: String, size: u64, limit: u64 },

    #[error("signing {role} with key {keyid}: {msg}")]
    Sign {
        role: String,
        keyid: String,
        msg: String,
    },
}

impl Error {
    /// The role an error is about, when it is about one.
    pub fn role(&self) -> Option<&str> {
        match self {
            Error::Json { role, .. }
            | Error::Canonical { role, .. }
            | Error::Invalid { role, .. }
            | Error::Unsigned { role }
            | Error::Threshold { role, .. }
            | Error::KeyIdMismatch { role, .. }
            | Error::Expired { role, .. }
            | Error::Rollback { role, .. }
            | Error::Root { role, .. }
            | Error::HashMismatch { role, .. }
            | Error::TooLarge { role, .. }
            | Error::Sign { role, .. } => Some(role),
            Error::Name(_) | Error::Targets { .. } => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
