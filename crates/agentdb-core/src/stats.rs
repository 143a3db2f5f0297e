//! A tenant's numbers, as the engine reports them and the wire carries them.

use serde::{Deserialize, Serialize};

use crate::ModelId;

/// A tenant's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantStats {
    /// Live episodes.
    pub episodes: u64,
    /// Deleted episodes whose tombstones remain.
    pub deleted: u64,
    /// Share of live episodes that were successes (0 when there are none).
    pub success_rate: f64,
    /// Mean reward of live episodes (0 when there are none).
    pub avg_reward: f64,
    /// The most frequent tasks, most frequent first.
    pub top_tasks: Vec<TaskCount>,
    /// The tenant's embedding model, if it has any data.
    pub embedding_model: Option<ModelId>,
    /// The tenant's current key version (0 when it has no key).
    pub key_version: u32,
}

/// How often one task occurs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCount {
    /// The task text (decrypted from one of its episodes).
    pub task: String,
    /// Live episodes with this task.
    pub count: u64,
    /// Their mean reward.
    pub avg_reward: f64,
}
