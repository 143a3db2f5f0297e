//! The library behind the `agentdb` command-line tool: one module per subcommand. The binary
//! (`src/main.rs`) parses the command line and dispatches here; the library form lets the hub's
//! config parsing ([`commands::hub::parse_config`], [`commands::hub::check_config`]) be tested
//! and fuzzed on its own.

mod admin_http;
pub mod commands;
mod output;
