pub mod image;
pub mod login;
pub mod prompt;
pub mod server;
pub mod trust;
