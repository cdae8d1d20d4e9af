pub mod server;
pub mod trust;
