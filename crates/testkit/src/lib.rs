//! Test support for notarium's integration tests (never shipped).
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod auth;
pub mod docker;
pub mod engine;
pub mod evil;
pub mod garage;
pub mod http;
pub mod memory;
pub mod oci;
pub mod postgres;
pub mod registry;
pub mod repo;
pub mod server;

pub use repo::TestRepo;
pub use server::TestServer;
