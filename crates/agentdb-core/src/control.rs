//! Control records: what hubs pass on to each other besides ops (docs/compliance.md). A hub
//! keeps every record it learns of, by name, and sends each link the records its peer may
//! hold and lacks.

use serde::{Deserialize, Serialize};

use crate::erasure::{Erasure, ErasureReceipt};
use crate::ids::TenantId;
use crate::revocation::Revocation;

/// What hubs pass on to each other besides ops: erasure orders, their receipts, and
/// revocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlRecord {
    /// An erasure order.
    Erasure(Erasure),
    /// A hub's receipt for an order.
    Receipt(ErasureReceipt),
    /// A revoked credential.
    Revocation(Revocation),
}

impl ControlRecord {
    /// The record's tenant, if it concerns one: such records travel only to hubs whose region
    /// may hold the tenant; the others to every hub.
    pub fn tenant(&self) -> Option<&TenantId> {
        match self {
            ControlRecord::Erasure(e) => Some(&e.tenant),
            ControlRecord::Receipt(r) => Some(&r.body.tenant),
            ControlRecord::Revocation(r) => r.tenant(),
        }
    }

    /// A name unique to the record: two records with one name are the same record.
    pub fn name(&self) -> String {
        match self {
            ControlRecord::Erasure(e) => format!("erasure/{}/{}", e.tenant, e.id),
            ControlRecord::Receipt(r) => {
                format!(
                    "receipt/{}/{}/{}",
                    r.body.tenant, r.body.erasure, r.body.hub
                )
            }
            ControlRecord::Revocation(r) => r.name(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erasure::{ErasureScope, ReceiptBody};
    use crate::hlc::{Hlc, Stamp};
    use crate::ids::{ErasureId, HubId};
    use crate::revocation::Revoked;
    use crate::version_vector::VersionVector;

    #[test]
    fn records_are_named_by_what_they_are_about() {
        let e = Erasure {
            id: ErasureId::from_parts(1, [0; 10]),
            tenant: TenantId::new("acme").unwrap_or_else(|_| unreachable!()),
            scope: ErasureScope::Tenant,
            issued_by: HubId::new("a").unwrap_or_else(|_| unreachable!()),
            stamp: Stamp::new(
                Hlc::new(100, 0),
                HubId::new("a").unwrap_or_else(|_| unreachable!()),
            ),
        };
        let name = ControlRecord::Erasure(e.clone()).name();
        assert_eq!(name, format!("erasure/acme/{}", e.id));
        let receipt = ControlRecord::Receipt(ErasureReceipt {
            body: ReceiptBody {
                erasure: e.id,
                tenant: e.tenant.clone(),
                hub: HubId::new("b").unwrap_or_else(|_| unreachable!()),
                through: VersionVector::new(),
                erased_ms: 5,
                episodes: 3,
                destroyed_keys: Vec::new(),
            },
            certificate_der: Vec::new(),
            signature: Vec::new(),
        });
        assert_eq!(receipt.name(), format!("receipt/acme/{}/b", e.id));
        assert_eq!(receipt.tenant(), Some(&e.tenant));
        let token = ControlRecord::Revocation(Revocation {
            revoked: Revoked::Token {
                jti: "j-1".into(),
                expires: 9,
            },
            issued_by: HubId::new("b").unwrap_or_else(|_| unreachable!()),
            issued_ms: 5,
        });
        assert_eq!(token.name(), "revocation/token/j-1");
        assert_eq!(token.tenant(), None);
    }
}
