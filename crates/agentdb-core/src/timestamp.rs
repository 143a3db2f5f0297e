//! Wall-clock time as passed into pure code.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch. Callers read the clock; this crate only carries the value.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Milliseconds since the Unix epoch.
    pub const fn unix_ms(self) -> u64 {
        self.0
    }
}
