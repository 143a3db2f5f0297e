//! Data residency: in which regions a tenant's memory may be stored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Region, TenantId};

/// Per-tenant lists of allowed regions. A tenant without an entry may be stored everywhere
/// (the default); a tenant with an entry only in the listed regions.
///
/// Hubs check it twice: before sending a tenant's ops over a link (is the peer's region
/// allowed?) and when receiving them (is my own region allowed?), so one misconfigured hub
/// cannot move data across a boundary by itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Residency {
    tenants: BTreeMap<TenantId, Vec<Region>>,
}

impl Residency {
    /// Every tenant may go everywhere.
    pub fn everywhere() -> Self {
        Self::default()
    }

    /// Restricts `tenant` to `regions`.
    pub fn restrict(&mut self, tenant: TenantId, regions: Vec<Region>) {
        self.tenants.insert(tenant, regions);
    }

    /// Whether `tenant`'s memory may be stored in `region`.
    pub fn allows(&self, tenant: &TenantId, region: &Region) -> bool {
        self.tenants
            .get(tenant)
            .is_none_or(|regions| regions.contains(region))
    }

    /// The restricted tenants and their regions.
    pub fn restrictions(&self) -> impl Iterator<Item = (&TenantId, &[Region])> {
        self.tenants.iter().map(|(t, r)| (t, r.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlisted_tenants_go_everywhere_listed_ones_only_where_allowed() {
        let t = |s: &str| TenantId::new(s).unwrap();
        let r = |s: &str| Region::new(s).unwrap();
        let mut res = Residency::everywhere();
        res.restrict(t("acme"), vec![r("eu")]);
        assert!(res.allows(&t("acme"), &r("eu")));
        assert!(!res.allows(&t("acme"), &r("us")));
        assert!(res.allows(&t("other"), &r("us")));
    }
}
