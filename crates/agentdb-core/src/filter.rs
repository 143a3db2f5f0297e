//! Metadata filters applied inside a vector search.

use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// Which outcomes a query wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Successes and failures.
    #[default]
    Any,
    /// Only episodes whose reward reached the success threshold.
    Successes,
    /// Only episodes below the threshold.
    Failures,
}

/// Conditions every returned episode meets. They are checked for each candidate during the
/// search (inside the HNSW traversal and the exact scan), so `k` results come back whenever `k`
/// matching episodes exist, however selective the filter.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Filter {
    /// Lowest reward accepted.
    pub min_reward: Option<f64>,
    /// Success, failure or either.
    pub outcome: Outcome,
    /// Only episodes created at or after this time.
    pub created_from: Option<Timestamp>,
    /// Only episodes created before this time.
    pub created_until: Option<Timestamp>,
}

/// The clear-text facts about an episode that filters look at (what an index keeps in memory).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpisodeFacts {
    /// The reward.
    pub reward: f64,
    /// Whether the reward reached the success threshold.
    pub success: bool,
    /// Creation time.
    pub created: Timestamp,
}

impl Filter {
    /// Whether an episode with `meta` passes.
    pub fn accepts(&self, meta: &EpisodeFacts) -> bool {
        self.min_reward.is_none_or(|m| meta.reward >= m)
            && match self.outcome {
                Outcome::Any => true,
                Outcome::Successes => meta.success,
                Outcome::Failures => !meta.success,
            }
            && self.created_from.is_none_or(|t| meta.created >= t)
            && self.created_until.is_none_or(|t| meta.created < t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_conditions_combine() {
        let m = EpisodeFacts {
            reward: 0.8,
            success: true,
            created: Timestamp(100),
        };
        assert!(Filter::default().accepts(&m));
        let f = |f: Filter| f.accepts(&m);
        assert!(f(Filter {
            min_reward: Some(0.8),
            ..Default::default()
        }));
        assert!(!f(Filter {
            min_reward: Some(0.81),
            ..Default::default()
        }));
        assert!(f(Filter {
            outcome: Outcome::Successes,
            ..Default::default()
        }));
        assert!(!f(Filter {
            outcome: Outcome::Failures,
            ..Default::default()
        }));
        assert!(f(Filter {
            created_from: Some(Timestamp(100)),
            ..Default::default()
        }));
        assert!(!f(Filter {
            created_until: Some(Timestamp(100)),
            ..Default::default()
        }));
    }
}
