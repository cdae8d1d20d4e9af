pub mod admission;
pub mod image;
pub mod login;
pub mod plugin;
pub mod prompt;
pub mod server;
pub mod trust;
