//! A hub over a store other hubs share (PostgreSQL): what they write reaches this hub's
//! indexes, change streams and federation links through the store's change log, and the
//! revocations they keep (an operator's, a token's own) reach this hub's checks.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::HubHandle;

/// How often a hub over a shared store looks for other hubs' writes by default. A write
/// acknowledged by one hub is searchable on the others after at most about this long plus the
/// time to read it.
pub const DEFAULT_FOLLOW_INTERVAL: Duration = Duration::from_millis(25);

/// How often a hub over a shared store reads the revocations the group keeps (operators'
/// revocations, and tokens revoked by their holders): a revocation issued on one hub is
/// enforced by the others after at most about this long.
pub const REVOCATION_INTERVAL: Duration = Duration::from_secs(1);

/// Starts following the shared store under `hub` every `every` (see
/// [`agentdb_memory::MemoryEngine::follow_storage`]), and reading the group's revocations
/// every [`REVOCATION_INTERVAL`], until the task is aborted or the runtime stops. A failed
/// pass is logged and tried again at the next tick.
pub fn follow_shared_storage(hub: &HubHandle, every: Duration) -> JoinHandle<()> {
    let state = Arc::clone(&hub.state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut revocations_read = Instant::now();
        loop {
            tick.tick().await;
            let revocations = revocations_read.elapsed() >= REVOCATION_INTERVAL;
            if revocations {
                revocations_read = Instant::now();
            }
            let st = Arc::clone(&state);
            let pass = tokio::task::spawn_blocking(move || {
                if let Err(err) = st.engine.follow_storage() {
                    tracing::warn!(error = %err, "cannot follow the shared store");
                }
                // Applying a revocation again changes nothing: every operator's record is read,
                // and the revoked tokens from where the last reading stopped.
                if revocations {
                    if let Err(err) = crate::revocations::load(&st) {
                        tracing::warn!(error = %err, "cannot read the group's revocations");
                    }
                    if let Err(err) = crate::revoked_tokens::follow(&st) {
                        tracing::warn!(error = %err, "cannot read the group's revoked tokens");
                    }
                }
            });
            if pass.await.is_err() {
                return;
            }
        }
    })
}
