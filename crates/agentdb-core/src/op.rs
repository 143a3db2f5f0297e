//! The unit of replication.

use serde::{Deserialize, Serialize};

use crate::{ClockSkew, EpisodeId, HubId, ReplicaState, VersionVector};

/// One op as it travels between hubs: its origin `(hub, seq)`, the episode it touched, and
/// that episode's state as the sending hub holds it now.
///
/// Sending the current state instead of the original change is what makes relaying simple:
/// the state includes the op's effect (the sender applied it), and anything extra it carries
/// merges idempotently. The receiver records `(origin, seq)` in its version vector and its
/// own op log, so it can relay the op in turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// The hub that accepted the op from an agent.
    pub origin: HubId,
    /// Its sequence number at that hub, per tenant (1, 2, 3, …).
    pub seq: u64,
    /// The episode it touched.
    pub episode: EpisodeId,
    /// The episode's state at the sender; `None` when the sender has garbage-collected the
    /// episode's tombstone (every linked hub had acknowledged it), which carries no state but
    /// still advances the receiver's version vector.
    pub state: Option<ReplicaState>,
}

impl Op {
    /// About how many bytes the op takes on the wire (for page and window limits).
    pub fn approx_size(&self) -> usize {
        64 + match &self.state {
            None | Some(ReplicaState::Deleted(_)) => 0,
            Some(ReplicaState::Live(l)) => {
                let c = &l.content;
                192 + c.task.len()
                    + c.input.len()
                    + c.output.len()
                    + c.metadata_json.len()
                    + l.metadata.value.len()
                    + l.critique.value.as_ref().map_or(0, String::len)
                    + l.tags.value.iter().map(String::len).sum::<usize>()
                    + c.embedding.as_ref().map_or(0, |e| e.vector.len() * 4)
            }
        }
    }
}

/// What applying a page of ops received from another hub did.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedOps {
    /// The tenant's version vector afterwards.
    pub vv: VersionVector,
    /// Ops applied (the others were duplicates or beyond a gap).
    pub applied: u64,
    /// The newest wall-clock stamp (ms) among the applied ops' states, for propagation latency.
    pub newest_ms: Option<u64>,
    /// Set when the page stopped at an op stamped too far ahead of the receiver's clock (that
    /// origin's later ops were skipped; other origins' applied).
    pub skew: Option<ClockSkew>,
}
