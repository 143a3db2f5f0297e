//! Hybrid logical clocks: timestamps that follow wall time but never go backwards and always
//! order a message's receipt after its sending, whatever the hubs' clocks say.
//!
//! A [`Hlc`] is `(wall_ms, counter)`. [`HlcClock::now`] takes the physical time as an argument
//! (this crate reads no clock); [`HlcClock::observe`] folds in a remote timestamp and refuses one
//! further ahead of the local physical clock than the configured skew bound, so one hub with a
//! clock set to next year cannot drag every other hub's clock along.
//!
//! [`Stamp`] = HLC + the hub that issued it: the total order every last-writer-wins register and
//! every tombstone uses. Two hubs never issue the same stamp, so there are no ties.

use serde::{Deserialize, Serialize};

use crate::{HubId, Timestamp};

/// A hybrid logical timestamp. Ordered by wall time, then counter.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch (the largest physical time seen).
    pub wall_ms: u64,
    /// Orders events within one millisecond.
    pub counter: u32,
}

impl Hlc {
    /// A timestamp.
    pub const fn new(wall_ms: u64, counter: u32) -> Self {
        Self { wall_ms, counter }
    }

    /// The wall-clock part.
    pub const fn wall(self) -> Timestamp {
        Timestamp(self.wall_ms)
    }
}

/// Default bound on how far a remote timestamp may be ahead of the local clock: 60 s.
pub const DEFAULT_MAX_SKEW_MS: u64 = 60_000;

/// A remote timestamp too far in the future.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("remote clock is {ahead_ms} ms ahead of ours (limit {limit_ms} ms)")]
pub struct ClockSkew {
    /// How far ahead the remote timestamp was.
    pub ahead_ms: u64,
    /// The configured bound.
    pub limit_ms: u64,
}

/// The clock state of one hub.
#[derive(Debug, Clone)]
pub struct HlcClock {
    last: Hlc,
    max_skew_ms: u64,
}

impl HlcClock {
    /// A clock that refuses remote timestamps more than `max_skew_ms` ahead.
    pub fn new(max_skew_ms: u64) -> Self {
        Self {
            last: Hlc::default(),
            max_skew_ms,
        }
    }

    /// A clock that starts after `last` (e.g. the largest stamp found in durable state).
    pub fn resume(last: Hlc, max_skew_ms: u64) -> Self {
        Self { last, max_skew_ms }
    }

    /// The last timestamp issued or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// A new timestamp greater than every one issued or observed, given physical time
    /// `physical_ms`.
    pub fn now(&mut self, physical_ms: u64) -> Hlc {
        self.last = if physical_ms > self.last.wall_ms {
            Hlc::new(physical_ms, 0)
        } else {
            advance(self.last)
        };
        self.last
    }

    /// Folds in a timestamp received from another hub so that later local timestamps order
    /// after it. Refuses (and ignores) one more than the skew bound ahead of `physical_ms`.
    pub fn observe(&mut self, remote: Hlc, physical_ms: u64) -> Result<(), ClockSkew> {
        let ahead_ms = remote.wall_ms.saturating_sub(physical_ms);
        if ahead_ms > self.max_skew_ms {
            return Err(ClockSkew {
                ahead_ms,
                limit_ms: self.max_skew_ms,
            });
        }
        if remote > self.last {
            self.last = remote;
        }
        Ok(())
    }
}

/// The next timestamp after `t` within the same millisecond (or the next one when the counter
/// is exhausted).
fn advance(t: Hlc) -> Hlc {
    match t.counter.checked_add(1) {
        Some(counter) => Hlc::new(t.wall_ms, counter),
        None => Hlc::new(t.wall_ms + 1, 0),
    }
}

/// A timestamp together with the hub that issued it: totally ordered by `(hlc, hub)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// When.
    pub hlc: Hlc,
    /// Which hub (breaks ties between hubs).
    pub hub: HubId,
}

impl Stamp {
    /// A stamp.
    pub fn new(hlc: Hlc, hub: HubId) -> Self {
        Self { hlc, hub }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_monotonic_when_the_wall_clock_stalls_or_goes_back() {
        let mut c = HlcClock::new(1000);
        let a = c.now(100);
        let b = c.now(100);
        let d = c.now(50);
        assert_eq!(a, Hlc::new(100, 0));
        assert_eq!(b, Hlc::new(100, 1));
        assert_eq!(d, Hlc::new(100, 2));
        assert_eq!(c.now(101), Hlc::new(101, 0));
    }

    #[test]
    fn observed_time_orders_later_events_after_it() {
        let mut c = HlcClock::new(1000);
        c.now(100);
        c.observe(Hlc::new(500, 7), 100).unwrap();
        assert_eq!(c.now(100), Hlc::new(500, 8));
    }

    #[test]
    fn skew_beyond_the_bound_is_refused_and_ignored() {
        let mut c = HlcClock::new(1000);
        c.now(100);
        let err = c.observe(Hlc::new(1_101, 0), 100).unwrap_err();
        assert_eq!(
            err,
            ClockSkew {
                ahead_ms: 1001,
                limit_ms: 1000
            }
        );
        assert_eq!(c.now(100), Hlc::new(100, 1));
        assert!(c.observe(Hlc::new(1_100, 0), 100).is_ok());
    }

    #[test]
    fn counter_overflow_moves_to_the_next_millisecond() {
        let mut c = HlcClock::resume(Hlc::new(5, u32::MAX), 0);
        assert_eq!(c.now(5), Hlc::new(6, 0));
    }

    #[test]
    fn stamps_break_ties_by_hub() {
        let h = |s: &str| HubId::new(s).unwrap();
        let a = Stamp::new(Hlc::new(1, 0), h("a"));
        let b = Stamp::new(Hlc::new(1, 0), h("b"));
        let c = Stamp::new(Hlc::new(0, 9), h("z"));
        assert!(a < b);
        assert!(c < a);
    }
}
