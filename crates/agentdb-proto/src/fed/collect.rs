//! When a tombstone may be collected: the rule the hub and the simulation share.
//!
//! A tombstone is what keeps a deleted episode deleted where an older copy of it is still on
//! its way. Once it is gone, the ops of the episode travel as "collected" (`state: None`), which
//! tell a receiver nothing about the episode. So a hub removes a tombstone only when
//!
//! - every **peer hub it has ever linked with** (inbound or outbound, linked now or away:
//!   stopped, cut off, not back yet after a restart of either side) whose region may hold the
//!   tenant has acknowledged every op of the episode this hub holds: each of them holds the
//!   tombstone (or collected it under the same rule), and an op it relays later carries that;
//! - and this hub holds every op those peers have acknowledged: no op of the episode that this
//!   hub has not seen can still reach it from them carrying an older, live state (a page of
//!   an older connection delivered late, say).
//!
//! A peer that has acknowledged nothing of the tenant yet holds back every tombstone of it: it
//! may have taken the tenant from another hub meanwhile. The hub keeps its peers and what each
//! acknowledged durably; this module decides from those records.

use agentdb_core::{Region, Residency, TenantId, VersionVector};

/// The ops of `tenant` that every peer (region, acknowledged ops) in `peers` has acknowledged
/// holding, when this hub, holding `held`, may collect tombstones of the tenant: a tombstone
/// may go (once older than the retention) when every op of its episode held here is covered
/// by the answer. `None` while a peer holds an op this hub has not received: none may go yet.
///
/// A peer in a region the tenant's residency excludes is left out: no correctly configured hub
/// sends it the tenant's ops, nor takes them from it. With no peer left, no other hub holds
/// any op of the tenant and the answer is `held`.
pub fn collectable_through<'a>(
    tenant: &TenantId,
    held: &VersionVector,
    residency: &Residency,
    peers: impl IntoIterator<Item = (&'a Region, &'a VersionVector)>,
) -> Option<VersionVector> {
    let mut all = held.clone();
    for (region, acked) in peers {
        if !residency.allows(tenant, region) {
            continue;
        }
        if acked.missing_from(held).next().is_some() {
            return None;
        }
        all = all.meet(acked);
    }
    Some(all)
}

#[cfg(test)]
mod tests {
    use agentdb_core::HubId;

    use super::*;

    fn vv(entries: &[(&str, u64)]) -> VersionVector {
        entries
            .iter()
            .map(|(h, s)| (HubId::new(*h).unwrap_or_else(|_| unreachable!()), *s))
            .collect()
    }

    fn region(name: &str) -> Region {
        Region::new(name).unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn every_peer_counts_and_excluded_regions_do_not() {
        let acme = TenantId::new("acme").unwrap_or_else(|_| unreachable!());
        let held = vv(&[("a", 5), ("b", 3)]);
        let (eu, us) = (region("eu"), region("us"));
        let (one, two) = (vv(&[("a", 5), ("b", 1)]), vv(&[("a", 2), ("b", 3)]));
        let everywhere = Residency::everywhere();
        let through = |residency: &Residency, peers: &[(&Region, &VersionVector)]| {
            collectable_through(&acme, &held, residency, peers.iter().copied())
        };
        assert_eq!(
            through(&everywhere, &[(&eu, &one), (&us, &two)]),
            Some(vv(&[("a", 2), ("b", 1)]))
        );
        // A peer that has acknowledged nothing yet holds every tombstone back.
        let nothing = VersionVector::new();
        assert_eq!(
            through(&everywhere, &[(&eu, &one), (&us, &nothing)]),
            Some(VersionVector::new())
        );
        // Unless the tenant may not be stored in its region.
        let mut eu_only = Residency::everywhere();
        eu_only.restrict(acme.clone(), vec![eu.clone()]);
        assert_eq!(
            through(&eu_only, &[(&eu, &one), (&us, &nothing)]),
            Some(one.clone())
        );
        // No peer: nobody else holds any op of the tenant.
        assert_eq!(through(&everywhere, &[]), Some(held.clone()));
        assert_eq!(through(&eu_only, &[(&us, &two)]), Some(held.clone()));
        // A peer holds an op this hub has not received: wait for it.
        let ahead = vv(&[("a", 5), ("b", 3), ("c", 1)]);
        assert_eq!(through(&everywhere, &[(&eu, &one), (&us, &ahead)]), None);
    }
}
