//! The OCI registry side of notarium: image references, the Docker-compatible HTTP client
//! (credentials, TLS, token flow) used for registries and trust servers alike.
#![forbid(unsafe_code)]

pub mod client;
pub mod reference;

pub use reference::Reference;
