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
//! before they expire: minted by a [`TokenProvider`], or traded at the hub for a tenant API key
//! ([`AgentConfig::with_api_key`]). The agents of a process share QUIC endpoints and TLS
//! sessions ([`Connector`]), so a spawn after the first resumes a TLS session instead of a
//! full handshake. An agent keeps a local cache (an in-memory engine, created when first
//! needed) of what it stored and what it read from the hub, to answer from while the hub is
//! unreachable, and, with a spool directory, a sealed spool of episodes the hub could not take
//! yet. Spawning copies nothing of the tenant's memory: it costs the same for a tenant of ten
//! episodes or of a million.
//!
//! What is durable when a store returns ([`EphemeralAgent::store`]):
//!
//! - [`Durability::Acknowledged`]: the hub has the episode, fsynced.
//! - [`Durability::Spooled`] (only with [`AgentConfig::spool_dir`]): the hub was unreachable or
//!   refused for a passing reason; the episode is sealed (AES-256-GCM, [`SpoolKey`]) and
//!   fsynced in the spool, and is sent by a later sync of this agent or by the next agent of
//!   the tenant with the same spool directory and key.
//! - an error: nothing is kept. Without a spool an unreachable hub is
//!   [`AgentError::HubUnreachable`]; nothing lives only in memory.
//!
//! A spooled episode the hub later refuses for good (`forbidden`, `invalid_request`,
//! `too_large`) leaves the queue for the tenant's dead-letter directory
//! ([`EphemeralAgent::dead_letters`]); passing failures are retried with a growing wait.

mod agent;
mod config;
mod connection;
mod connector;
pub mod credentials;
mod error;
mod outbox;
mod spool_key;

pub use agent::{Durability, EphemeralAgent, Memory, MemoryHandle, Recall, Source, Stored};
pub use config::AgentConfig;
pub use connector::Connector;
pub use credentials::{SigningKeyTokens, StaticToken, TokenProvider};
pub use error::{
    is_permanent, AgentError, ConfigError, LocalCacheError, ProtocolError, Unreachable,
};
pub use outbox::{DeadLetter, OutboxError, SpoolFileError, UnreadableSpoolFile, DEAD_LETTER_DIR};
pub use spool_key::{SpoolKey, SpoolKeyError, MIN_SECRET_LEN};
