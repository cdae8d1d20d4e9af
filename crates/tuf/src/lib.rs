//! notarium's TUF core: the Notary v1 dialect of The Update Framework, as pure logic.
//!
//! No I/O and no async: bytes in, typed values or errors out. Time comes from a
//! [`time::Clock`] the caller injects.
//!
//! * [`canonical`]: the canonical JSON dialect (signed bytes and file bytes);
//! * [`names`]: validated [`Gun`], [`RoleName`], [`TargetName`];
//! * [`key`]: public keys, key IDs, signature verification;
//! * [`metadata`]: the four role types and the signed envelope;
//! * [`verify`]: thresholds, expiry, root trust; the only constructor of [`Verified`];
//! * [`sign`]: producing signatures with keys held elsewhere;
//! * [`edit`]: building and changing metadata (roots, delegations, targets);
//! * [`upload`]: the server's validation of an uploaded update;
//! * [`client`]: the client's update rules (rollback, freeze, mix-and-match, …).
#![forbid(unsafe_code)]

pub mod canonical;
pub mod client;
pub mod edit;
pub mod error;
pub mod hash;
pub mod key;
pub mod metadata;
pub mod names;
pub mod sign;
pub mod target_map;
pub mod time;
pub mod upload;
pub mod verify;
pub mod x509;

pub use error::{Error, Result};
pub use key::{KeyId, KeyType, PublicKey, SignatureMethod};
pub use metadata::{
    DelegationRole, Delegations, FileMeta, Hashes, Metadata, Role, Root, RootRole, Signature,
    Snapshot, Targets, Timestamp,
};
pub use names::{Gun, NameError, RoleName, TargetName};
pub use target_map::TargetMap;
pub use time::{Clock, DateTime, FixedClock, SystemClock};
pub use verify::Verified;
