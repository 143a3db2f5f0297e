//! A hub over a store other hubs share (PostgreSQL): what they write reaches this hub's
//! indexes, change streams and federation links through the store's change log.

use std::sync::Arc;
use std::time::Duration;

use agentdb_memory::MemoryEngine;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// How often a hub over a shared store looks for other hubs' writes by default. A write
/// acknowledged by one hub is searchable on the others after at most about this long plus the
/// time to read it.
pub const DEFAULT_FOLLOW_INTERVAL: Duration = Duration::from_millis(25);

/// Starts following the shared store under `engine` every `every` (see
/// [`MemoryEngine::follow_storage`]) until the task is aborted or the runtime stops. A failed
/// pass is logged and tried again at the next tick.
pub fn follow_shared_storage(engine: Arc<MemoryEngine>, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let e = Arc::clone(&engine);
            match tokio::task::spawn_blocking(move || e.follow_storage()).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => tracing::warn!(error = %err, "cannot follow the shared store"),
                Err(_) => return,
            }
        }
    })
}
