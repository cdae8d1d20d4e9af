//! The `trust` commands.

pub mod inspect;
pub mod keys;
pub mod rotate;
pub mod sign;
pub mod signer;
