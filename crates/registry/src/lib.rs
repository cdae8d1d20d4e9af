//! The OCI registry side of notarium: image references, the Docker-compatible HTTP client
//! (credentials, TLS, token flow) used for registries and trust servers alike.
#![forbid(unsafe_code)]

pub mod client;
pub mod digest;
pub mod direct;
pub mod image;
pub mod manifest;
pub mod pattern;
pub mod reference;

pub use digest::Digest;
pub use reference::Reference;
