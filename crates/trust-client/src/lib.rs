//! The daemonless Docker Content Trust client behind `notarium trust …`: the same files,
//! environment, prompts and output as `docker trust`, with TUF's update rules
//! (`tuf::client`) over HTTP, and no Docker daemon anywhere.
#![forbid(unsafe_code)]

pub mod admission;
pub mod cache;
pub mod client_config;
pub mod context;
pub mod error;
pub mod keyring;
pub mod ops;
pub mod passphrase;
pub mod remote;
pub mod repo;

pub use context::Context;
pub use error::{Result, TrustError};
