//! The `trust` commands, and `push`/`pull` with content trust.

pub mod engine;
pub mod image;
pub mod inspect;
pub mod keys;
pub mod renew;
pub mod rotate;
pub mod sign;
pub mod signer;
pub mod staged;
pub mod status;
