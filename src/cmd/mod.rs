pub mod image;
pub mod server;
pub mod trust;
