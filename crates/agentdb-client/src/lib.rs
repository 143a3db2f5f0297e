//! `EphemeralAgent`: memory that outlives a short-lived agent.
//!
//! ```no_run
//! # async fn demo(config: agentdb_client::AgentConfig) -> Result<(), agentdb_client::AgentError> {
//! use agentdb_core::NewEpisode;
//! let agent = agentdb_client::EphemeralAgent::spawn(config).await?;
//! let answer = agent
//!     .execute(|memory| async move {
//!         let past = memory.query("summarise invoice", 5).await?;
//!         memory
//!             .store(NewEpisode::new("summarise invoice", "invoice #7", "total 12 EUR", 0.95))
//!             .await?;
//!         Ok(past.memories.len())
//!     })
//!     .await?;
//! agent.destroy().await?; // final sync, goodbye; the memory stays in the hub
//! # let _ = answer; Ok(()) }
//! ```
//!
//! The agent talks to its hub over QUIC with mutual TLS and short-lived tokens it refreshes
//! before they expire. It keeps a local cache (an in-memory engine) and a durable outbox of
//! episodes the hub has not acknowledged yet.

mod agent;
mod config;
mod connection;
pub mod credentials;
mod error;
mod outbox;

pub use agent::{EphemeralAgent, Memory, MemoryHandle, Recall, Source};
pub use config::AgentConfig;
pub use credentials::{SigningKeyTokens, StaticToken, TokenProvider};
pub use error::AgentError;
pub use outbox::OutboxError;
