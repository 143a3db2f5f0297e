//! Version vectors: what a hub knows of a tenant, as `{hub → highest contiguous op seq}`.
//!
//! Every hub numbers the ops it accepts for a tenant 1, 2, 3, …; an op is identified by its
//! origin `(hub, seq)` wherever it travels. A hub applies a hub's ops in sequence order, so its
//! knowledge is exactly "all ops of hub `h` up to `vv[h]`", and sync is "send me what my vector
//! does not cover". A missing entry means 0.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::HubId;

/// How two version vectors relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Causality {
    /// Both cover exactly the same ops.
    Equal,
    /// `self` covers everything `other` does and more.
    Dominates,
    /// `other` covers everything `self` does and more.
    DominatedBy,
    /// Each covers an op the other lacks.
    Concurrent,
}

/// A version vector. Entries of 0 are never stored, so equal knowledge means equal values.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VersionVector(BTreeMap<HubId, u64>);

impl VersionVector {
    /// The empty vector (knows nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// The highest contiguous seq of `hub` covered (0 when none).
    pub fn get(&self, hub: &HubId) -> u64 {
        self.0.get(hub).copied().unwrap_or(0)
    }

    /// Whether op `(hub, seq)` is covered.
    pub fn covers(&self, hub: &HubId, seq: u64) -> bool {
        seq <= self.get(hub)
    }

    /// Sets `hub`'s entry (0 removes it).
    pub fn set(&mut self, hub: HubId, seq: u64) {
        if seq == 0 {
            self.0.remove(&hub);
        } else {
            self.0.insert(hub, seq);
        }
    }

    /// Records op `(hub, seq)` if it is the next one of `hub`; returns whether it was. An op
    /// already covered or beyond a gap is not recorded.
    pub fn advance(&mut self, hub: &HubId, seq: u64) -> bool {
        if seq != self.get(hub) + 1 {
            return false;
        }
        self.0.insert(hub.clone(), seq);
        true
    }

    /// The entries, by hub.
    pub fn iter(&self) -> impl Iterator<Item = (&HubId, u64)> {
        self.0.iter().map(|(h, s)| (h, *s))
    }

    /// Whether nothing is covered.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Total ops covered.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// The least upper bound: everything either covers (pointwise maximum).
    pub fn merge(&mut self, other: &Self) {
        for (hub, seq) in &other.0 {
            let e = self.0.entry(hub.clone()).or_insert(0);
            *e = (*e).max(*seq);
        }
    }

    /// The greatest lower bound: what both cover (pointwise minimum).
    pub fn meet(&self, other: &Self) -> Self {
        Self(
            self.0
                .iter()
                .filter_map(|(hub, seq)| {
                    let m = (*seq).min(other.get(hub));
                    (m > 0).then(|| (hub.clone(), m))
                })
                .collect(),
        )
    }

    /// Ops `self` covers that `other` does not: for each hub, `(hub, other's seq, self's seq)`,
    /// meaning seqs `other+1 ..= self` are missing from `other`.
    pub fn missing_from<'a>(
        &'a self,
        other: &'a Self,
    ) -> impl Iterator<Item = (&'a HubId, u64, u64)> + 'a {
        self.0.iter().filter_map(|(hub, seq)| {
            let theirs = other.get(hub);
            (*seq > theirs).then_some((hub, theirs, *seq))
        })
    }

    /// How many ops `self` covers that `other` does not.
    pub fn lead_over(&self, other: &Self) -> u64 {
        self.missing_from(other)
            .map(|(_, from, to)| to - from)
            .sum()
    }

    /// The causal relation of `self` to `other`.
    pub fn compare(&self, other: &Self) -> Causality {
        let mut ahead = false;
        let mut behind = false;
        for hub in self.0.keys().chain(other.0.keys()) {
            match self.get(hub).cmp(&other.get(hub)) {
                Ordering::Greater => ahead = true,
                Ordering::Less => behind = true,
                Ordering::Equal => {}
            }
        }
        match (ahead, behind) {
            (false, false) => Causality::Equal,
            (true, false) => Causality::Dominates,
            (false, true) => Causality::DominatedBy,
            (true, true) => Causality::Concurrent,
        }
    }
}

impl FromIterator<(HubId, u64)> for VersionVector {
    fn from_iter<I: IntoIterator<Item = (HubId, u64)>>(iter: I) -> Self {
        let mut vv = Self::new();
        for (hub, seq) in iter {
            let seq = seq.max(vv.get(&hub));
            vv.set(hub, seq);
        }
        vv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vv(entries: &[(&str, u64)]) -> VersionVector {
        entries
            .iter()
            .map(|(h, s)| (HubId::new(*h).unwrap(), *s))
            .collect()
    }

    #[test]
    fn disjoint_entries_are_concurrent() {
        assert_eq!(
            vv(&[("a", 1)]).compare(&vv(&[("b", 1)])),
            Causality::Concurrent
        );
    }

    #[test]
    fn order_cases() {
        assert_eq!(vv(&[]).compare(&vv(&[])), Causality::Equal);
        assert_eq!(vv(&[("a", 0)]).compare(&vv(&[])), Causality::Equal);
        assert_eq!(
            vv(&[("a", 2), ("b", 1)]).compare(&vv(&[("a", 1)])),
            Causality::Dominates
        );
        assert_eq!(
            vv(&[("a", 1)]).compare(&vv(&[("a", 1), ("b", 3)])),
            Causality::DominatedBy
        );
        assert_eq!(
            vv(&[("a", 2), ("b", 1)]).compare(&vv(&[("a", 1), ("b", 2)])),
            Causality::Concurrent
        );
    }

    #[test]
    fn advance_only_takes_the_next_seq() {
        let mut v = vv(&[("a", 2)]);
        let a = HubId::new("a").unwrap();
        assert!(!v.advance(&a, 2), "duplicate");
        assert!(!v.advance(&a, 4), "gap");
        assert!(v.advance(&a, 3));
        assert_eq!(v.get(&a), 3);
    }

    #[test]
    fn missing_merge_and_meet() {
        let x = vv(&[("a", 5), ("b", 1)]);
        let y = vv(&[("a", 2), ("c", 4)]);
        let missing: Vec<_> = x
            .missing_from(&y)
            .map(|(h, f, t)| (h.as_str().to_owned(), f, t))
            .collect();
        assert_eq!(missing, vec![("a".into(), 2, 5), ("b".into(), 0, 1)]);
        assert_eq!(x.lead_over(&y), 4);
        let mut m = x.clone();
        m.merge(&y);
        assert_eq!(m, vv(&[("a", 5), ("b", 1), ("c", 4)]));
        assert_eq!(x.meet(&y), vv(&[("a", 2)]));
    }
}
