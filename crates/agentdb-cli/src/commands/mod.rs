//! One module per top-level subcommand.

pub mod ca;
pub mod cert;
pub mod local;
pub mod token;
