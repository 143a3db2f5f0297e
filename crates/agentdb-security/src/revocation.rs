//! The list of revoked tokens.
//!
//! When an agent is destroyed, its token's `jti` is revoked until the token would have expired
//! anyway. A hub checks the list after [`crate::token::TokenVerifier::verify`] accepts a token.
//!
//! An entry is kept until `exp + MAX_CLOCK_SKEW_SECS`, the last moment the verifier could still
//! accept the token; after that the entry is useless and is dropped. Lookups ignore such
//! entries even before they are purged. The list purges itself whenever it has doubled in size
//! since the last purge, so it stays proportional to the number of live revoked tokens; a hub
//! may also call [`RevocationList::purge`] on a timer.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::token::MAX_CLOCK_SKEW_SECS;

/// The list never purges itself below this many entries.
const MIN_AUTO_PURGE_LEN: usize = 1024;

/// Revoked token ids (`jti`) and when each entry may be forgotten. Thread-safe.
#[derive(Debug, Default)]
pub struct RevocationList {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// `jti` → the token's `exp`, in seconds since the Unix epoch.
    entries: HashMap<String, u64>,
    /// The latest `now` seen by any call, used for automatic purges on insertion.
    latest_now: u64,
    /// The size at which the next automatic purge runs.
    purge_at: usize,
}

impl Inner {
    fn purge(&mut self, now: u64) -> usize {
        self.latest_now = self.latest_now.max(now);
        let before = self.entries.len();
        self.entries.retain(|_, exp| live(*exp, now));
        self.purge_at = (self.entries.len() * 2).max(MIN_AUTO_PURGE_LEN);
        before - self.entries.len()
    }

    fn maybe_purge(&mut self) {
        if self.entries.len() >= self.purge_at.max(MIN_AUTO_PURGE_LEN) {
            self.purge(self.latest_now);
        }
    }
}

/// Whether a revocation of a token expiring at `exp` still matters at `now` (the verifier could
/// still accept the token). Wherever revocations are kept, one that no longer matters is dropped.
pub fn live(exp: u64, now: u64) -> bool {
    now < exp.saturating_add(MAX_CLOCK_SKEW_SECS)
}

impl RevocationList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Revokes the token with id `jti` that expires at `exp` (seconds since the Unix epoch).
    /// Revoking twice keeps the later expiry.
    pub fn revoke(&self, jti: impl Into<String>, exp: u64) {
        let mut inner = self.inner.lock();
        let entry = inner.entries.entry(jti.into()).or_insert(exp);
        *entry = (*entry).max(exp);
        inner.maybe_purge();
    }

    /// Whether the token with id `jti` is revoked at time `now`.
    pub fn is_revoked(&self, jti: &str, now: u64) -> bool {
        let mut inner = self.inner.lock();
        inner.latest_now = inner.latest_now.max(now);
        inner.entries.get(jti).is_some_and(|exp| live(*exp, now))
    }

    /// Drops every entry whose token can no longer be accepted at `now`, and returns how many
    /// were dropped.
    pub fn purge(&self, now: u64) -> usize {
        self.inner.lock().purge(now)
    }

    /// How many entries the list holds (including expired ones not yet purged).
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// Whether the list holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn revoked_until_expiry_plus_skew() {
        let list = RevocationList::new();
        list.revoke("t1", 1000);
        assert!(list.is_revoked("t1", 900));
        assert!(!list.is_revoked("t2", 900));
        assert!(list.is_revoked("t1", 1000 + MAX_CLOCK_SKEW_SECS - 1));
        assert!(!list.is_revoked("t1", 1000 + MAX_CLOCK_SKEW_SECS));
        assert_eq!(list.len(), 1);
        assert_eq!(list.purge(1000 + MAX_CLOCK_SKEW_SECS), 1);
        assert!(list.is_empty());
    }

    #[test]
    fn revoking_twice_keeps_the_later_expiry() {
        let list = RevocationList::new();
        list.revoke("t1", 2000);
        list.revoke("t1", 1000);
        assert!(list.is_revoked("t1", 1500));
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn purge_keeps_live_entries() {
        let list = RevocationList::new();
        list.revoke("old", 100);
        list.revoke("new", 10_000);
        assert_eq!(list.purge(5_000), 1);
        assert!(list.is_revoked("new", 5_000));
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn growth_is_bounded_by_automatic_purges() {
        let list = RevocationList::new();
        // Tokens expire one second apart; the clock advances with them.
        for i in 0..100_000u64 {
            list.revoke(format!("jti-{i}"), i + 10);
            if i % 100 == 0 {
                assert!(!list.is_revoked("unknown", i));
            }
        }
        // Only tokens still live near the latest `now` (plus one purge interval) remain.
        assert!(list.len() <= 2 * MIN_AUTO_PURGE_LEN, "len {}", list.len());
        assert!(list.is_revoked("jti-99999", 99_990));
    }

    #[test]
    fn shared_between_threads() {
        let list = Arc::new(RevocationList::new());
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let list = Arc::clone(&list);
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        list.revoke(format!("{t}-{i}"), 10_000);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("thread");
        }
        assert_eq!(list.len(), 4000);
        assert!(list.is_revoked("3-999", 0));
    }
}
