//! A long-running server as a succession of ephemeral agents.

use std::time::Duration;

use agentdb_client::{AgentConfig, AgentError, EphemeralAgent};
use tokio::sync::{RwLock, RwLockReadGuard};

/// An agent with less than this left to live is replaced before it is used, so that no call
/// outlives the agent it started on (a hub request takes at most the agent's request timeout,
/// 10 s by default).
pub const RENEW_BEFORE: Duration = Duration::from_secs(30);

/// The agent the tools work through: spawned on first use from one configuration, and
/// replaced by a fresh one (the old one destroyed, its token revoked) when its lifetime is
/// nearly over. Calls share the current agent; a replacement waits for the calls under way.
#[derive(Debug)]
pub struct Agents {
    config: AgentConfig,
    current: RwLock<Option<EphemeralAgent>>,
}

impl Agents {
    /// Agents made from `config`; none is spawned yet.
    pub fn new(config: AgentConfig) -> Self {
        Self {
            config,
            current: RwLock::new(None),
        }
    }

    /// The current agent, spawning one when there is none or it has less than
    /// [`RENEW_BEFORE`] to live. Spawning fails when the hub refuses the credential.
    pub async fn get(&self) -> Result<RwLockReadGuard<'_, EphemeralAgent>, AgentError> {
        let usable = |slot: &Option<EphemeralAgent>| {
            slot.as_ref()
                .is_some_and(|a| a.remaining_lifetime() > RENEW_BEFORE)
        };
        let read = self.current.read().await;
        let slot = if usable(&read) {
            read
        } else {
            drop(read);
            let mut write = self.current.write().await;
            if !usable(&write) {
                if let Some(old) = write.take() {
                    end(old).await;
                }
                *write = Some(EphemeralAgent::spawn(self.config.clone()).await?);
            }
            write.downgrade()
        };
        RwLockReadGuard::try_map(slot, Option::as_ref).map_err(|_| AgentError::AgentExpired)
    }

    /// Destroys the current agent, if any (its token is revoked). Later calls spawn a new one.
    pub async fn close(&self) {
        if let Some(agent) = self.current.write().await.take() {
            end(agent).await;
        }
    }
}

async fn end(agent: EphemeralAgent) {
    let id = agent.id().clone();
    if let Err(e) = agent.destroy().await {
        tracing::warn!(agent = %id, error = %e, "could not end the agent cleanly");
    }
}
