//! Tokens revoked by their holders — an agent's goodbye, `DELETE /v1/token` — kept in the
//! hub's data, so that a restart keeps them revoked and every hub sharing the store refuses
//! them too.
//!
//! Each revocation is an entry of the sealed log [`LOG`] (the token's `exp` as u64 BE, then its
//! id), numbered by the store as it is appended. A hub reads the whole log at start. A hub over
//! a shared store (PostgreSQL) reads the entries above its [`Cursor`] each second as well
//! ([`crate::follow`]), so a token revoked on one hub of the group is refused by the others
//! about a second later. Entries whose token has expired are deleted by whichever reading finds
//! them (the start's finds them all) and, oldest first, by the retention sweep.
//!
//! Tokens revoked before the log existed were kept as sealed settings `revoked-token/<jti>` →
//! `exp`; the start reads those too, and deletes them once expired.

use std::time::{Duration, Instant};

use agentdb_security::revocation::live;

use crate::state::{unix_secs, HubState};

/// The sealed log of revoked tokens.
const LOG: &str = "token-revocations/";
/// Where revoked tokens were kept before the log: `revoked-token/<jti>` → `exp`.
const LEGACY_PREFIX: &str = "revoked-token/";
/// Entries read per request.
const PAGE: usize = 1_000;
/// How long a gap in the numbers read is waited for before the reader moves past it: a
/// number given to a write not yet committed on another hub (or to one that failed, or to
/// another log).
const GAP_WAIT: Duration = Duration::from_secs(10);

/// Appends the revocation of token `jti`, expiring at `exp` (seconds since the Unix epoch), to
/// the log. Durable on return.
pub(crate) fn record(state: &HubState, jti: &str, exp: u64) -> Result<(), String> {
    state
        .engine
        .append_sealed_log(LOG, &entry(jti, exp))
        .map_err(|e| format!("cannot record a revoked token: {e}"))
}

/// The log entry of token `jti`, expiring at `exp`.
fn entry(jti: &str, exp: u64) -> Vec<u8> {
    let mut out = exp.to_be_bytes().to_vec();
    out.extend_from_slice(jti.as_bytes());
    out
}

/// Up to [`PAGE`] log entries numbered above `after`.
fn page(state: &HubState, after: u64) -> Result<Vec<agentdb_memory::SealedLogEntry>, String> {
    state
        .engine
        .sealed_log_after(LOG, after, PAGE)
        .map_err(|e| format!("cannot read revoked tokens: {e}"))
}

/// Deletes the log entries numbered `numbers`; returns how many existed.
fn forget(state: &HubState, numbers: &[u64]) -> Result<usize, String> {
    state
        .engine
        .delete_sealed_log_entries(LOG, numbers)
        .map_err(|e| format!("cannot forget expired revocations: {e}"))
}

/// The token id and expiry of a log entry.
fn decode(value: &[u8]) -> Option<(&str, u64)> {
    let (exp, jti) = value.split_at_checked(8)?;
    let exp = u64::from_be_bytes(exp.try_into().ok()?);
    Some((std::str::from_utf8(jti).ok()?, exp))
}

/// How far a hub has read the log: every entry numbered up to `through` has been applied.
/// Entries above it may have been applied too (those past a gap, read again until the gap
/// fills or is waited out).
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    through: u64,
    /// The first missing number above `through`, and when it was first seen missing.
    gap: Option<(u64, Instant)>,
    /// Whether the first reading (the start's) has been made.
    started: bool,
}

impl Cursor {
    /// Moves past `numbers` (read above `through`, ascending) as far as they run without a gap;
    /// past a gap only once it has stayed open for [`GAP_WAIT`] at `now`. The first reading
    /// starts at the lowest number it found: the numbers below it are those of entries deleted
    /// once their tokens expired.
    fn advance(&mut self, numbers: &[u64], now: Instant) {
        let mut next = match numbers.first() {
            Some(&first) if !self.started => first,
            _ => self.through + 1,
        };
        self.started = true;
        for &n in numbers {
            if n < next {
                continue;
            }
            if n > next {
                match self.gap {
                    Some((at, since)) if at == next => {
                        if now.duration_since(since) < GAP_WAIT {
                            break;
                        }
                    }
                    _ => {
                        self.gap = Some((next, now));
                        break;
                    }
                }
            }
            next = n + 1;
        }
        if self.gap.is_some_and(|(at, _)| at < next) {
            self.gap = None;
        }
        self.through = next - 1;
    }
}

/// Revokes in memory every live token of the log entries above the hub's cursor (all of them at
/// start), deletes the entries of expired tokens among them, and moves the cursor on. Returns
/// how many live revocations were read.
pub(crate) fn follow(state: &HubState) -> Result<usize, String> {
    let mut cursor = state.revoked_read.lock();
    let now = unix_secs();
    let (mut after, mut read, mut expired, mut live_read) =
        (cursor.through, Vec::new(), Vec::new(), 0);
    loop {
        let page = page(state, after)?;
        for (number, value) in &page {
            let (jti, exp) =
                decode(value).ok_or_else(|| format!("revoked token entry {number} is damaged"))?;
            if live(exp, now) {
                state.revoked.revoke(jti.to_owned(), exp);
                live_read += 1;
            } else {
                expired.push(*number);
            }
            read.push(*number);
        }
        match page.last() {
            Some(&(last, _)) if page.len() == PAGE => after = last,
            _ => break,
        }
    }
    forget(state, &expired)?;
    cursor.advance(&read, Instant::now());
    Ok(live_read)
}

/// Deletes the log entries of expired tokens, oldest first, up to the first that still
/// matters (entries are about in the order their tokens expire). Returns how many.
pub(crate) fn collect(state: &HubState) -> Result<usize, String> {
    let now = unix_secs();
    let mut deleted = 0;
    loop {
        let expired: Vec<u64> = page(state, 0)?
            .iter()
            .take_while(|(_, value)| decode(value).is_some_and(|(_, exp)| !live(exp, now)))
            .map(|(number, _)| *number)
            .collect();
        deleted += forget(state, &expired)?;
        if expired.len() < PAGE {
            return Ok(deleted);
        }
    }
}

/// Loads what a start needs: the revocations kept before the log, then the whole log, deleting
/// the expired ones of both. Returns how many live revocations were read.
pub(crate) fn load(state: &HubState) -> Result<usize, String> {
    let now = unix_secs();
    let mut live_read = 0;
    let legacy = state
        .engine
        .sealed_settings(LEGACY_PREFIX)
        .map_err(|e| format!("cannot read revoked tokens: {e}"))?;
    for (name, value) in legacy {
        let jti = name.strip_prefix(LEGACY_PREFIX).unwrap_or(&name);
        let exp = <[u8; 8]>::try_from(&value[..])
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        if live(exp, now) {
            state.revoked.revoke(jti.to_owned(), exp);
            live_read += 1;
        } else {
            state
                .engine
                .delete_setting(&name)
                .map_err(|e| format!("cannot forget an expired revocation: {e}"))?;
        }
    }
    Ok(live_read + follow(state)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_decode_to_what_was_encoded() {
        assert_eq!(
            decode(&entry("jti-1", 1_700_000_000)),
            Some(("jti-1", 1_700_000_000))
        );
        assert_eq!(decode(&entry("", 7)), Some(("", 7)));
        assert_eq!(decode(b"short"), None);
        assert_eq!(decode(&[0, 0, 0, 0, 0, 0, 0, 1, 0xff]), None);
    }

    #[test]
    fn the_cursor_moves_through_contiguous_numbers() {
        let t0 = Instant::now();
        let mut c = Cursor::default();
        // The start's reading begins where the log does (older entries were deleted).
        c.advance(&[41, 42], t0);
        assert_eq!((c.through, c.gap), (42, None));
        let mut c = Cursor::default();
        c.advance(&[], t0);
        c.advance(&[1, 2, 3], t0);
        assert_eq!((c.through, c.gap), (3, None));
        c.advance(&[], t0);
        assert_eq!(c.through, 3);
        c.advance(&[4], t0);
        assert_eq!((c.through, c.gap), (4, None));
    }

    #[test]
    fn the_cursor_waits_at_a_gap_until_it_fills() {
        let t0 = Instant::now();
        let mut c = Cursor::default();
        c.advance(&[], t0);
        // 3 is missing (a write on another hub not yet committed): stop before it.
        c.advance(&[1, 2, 4, 5], t0);
        assert_eq!((c.through, c.gap), (2, Some((3, t0))));
        // Read again later, still missing: the gap keeps its first sighting.
        c.advance(&[4, 5], t0 + Duration::from_secs(1));
        assert_eq!((c.through, c.gap), (2, Some((3, t0))));
        // 3 commits: the cursor runs through.
        c.advance(&[3, 4, 5, 6], t0 + Duration::from_secs(2));
        assert_eq!((c.through, c.gap), (6, None));
    }

    #[test]
    fn the_cursor_moves_past_a_gap_that_stays_open() {
        let t0 = Instant::now();
        let mut c = Cursor::default();
        c.advance(&[1], t0);
        c.advance(&[4, 5], t0);
        assert_eq!((c.through, c.gap), (1, Some((2, t0))));
        c.advance(&[4, 5], t0 + GAP_WAIT - Duration::from_millis(1));
        assert_eq!(c.through, 1, "moved past a gap before waiting it out");
        // Waited out: past 2 and 3 (one gap) to 5.
        c.advance(&[4, 5], t0 + GAP_WAIT);
        assert_eq!((c.through, c.gap), (5, None));
        // A second gap is waited for afresh.
        let t1 = t0 + GAP_WAIT * 2;
        c.advance(&[7], t1);
        assert_eq!((c.through, c.gap), (5, Some((6, t1))));
    }
}
