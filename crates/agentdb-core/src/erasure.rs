//! Federation-wide erasure: the order a hub issues, the rule every hub applies, and the
//! receipt each hub signs.
//!
//! An [`Erasure`] names a tenant (all of it, or a subject: the episodes whose metadata has a
//! field with a value) and carries the issuing hub's [`Stamp`]. Every hub that holds the
//! tenant applies the same rule: an episode is erased when it was **created at or before the
//! order's stamp** and falls in its scope ([`Erasure::covers`]). Episodes created after the
//! stamp (a later write) stay, so every hub keeps the same episodes whenever it learns of the
//! order, and an op that arrives later carrying an erased episode (from a hub that had not
//! applied the order yet, or an update made on it concurrently) is dropped, never merged back.
//!
//! Orders and receipts travel between hubs as control records (`crate::ControlRecord`): a
//! grow-only set every hub keeps and passes on, so a hub that was offline during an erasure
//! applies it when it returns.

use serde::{Deserialize, Serialize};

use crate::filter::{Filter, MetadataMatch};
use crate::hlc::Stamp;
use crate::ids::{ErasureId, HubId, TenantId};
use crate::replica::LiveEpisode;
use crate::version_vector::VersionVector;

/// What an erasure removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErasureScope {
    /// Every episode of the tenant; its keys are destroyed (crypto-shredding).
    Tenant,
    /// The episodes whose metadata has the field `key` with the JSON value `value` (one
    /// end-user's data, for example `user_id`).
    Subject(MetadataMatch),
}

/// An erasure order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    /// The order's id.
    pub id: ErasureId,
    /// The tenant.
    pub tenant: TenantId,
    /// What is erased.
    pub scope: ErasureScope,
    /// The hub that issued it.
    pub issued_by: HubId,
    /// The issuing hub's stamp: episodes created at or before it are erased.
    pub stamp: Stamp,
}

impl Erasure {
    /// Whether `episode` is erased by this order: created at or before its stamp and, for a
    /// subject, with the subject's metadata value now.
    pub fn covers(&self, episode: &LiveEpisode) -> bool {
        if episode.created > self.stamp {
            return false;
        }
        match &self.scope {
            ErasureScope::Tenant => true,
            ErasureScope::Subject(m) => {
                let metadata = match episode.metadata.value.as_str() {
                    "" => serde_json::Value::Null,
                    text => serde_json::from_str(text).unwrap_or(serde_json::Value::Null),
                };
                Filter {
                    metadata: vec![m.clone()],
                    ..Filter::default()
                }
                .accepts_content(&[], &metadata)
            }
        }
    }
}

/// A destroyed key version, by fingerprint (SHA-256 of its wrapped form, hex): enough to
/// name it, nothing to recover it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyedKey {
    /// The key version.
    pub version: u32,
    /// SHA-256 of the wrapped key, lower-case hex.
    pub fingerprint: String,
}

/// What a hub states it erased, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBody {
    /// The order.
    pub erasure: ErasureId,
    /// The tenant.
    pub tenant: TenantId,
    /// The hub that applied it.
    pub hub: HubId,
    /// What the hub held of the tenant when it applied the order (its version vector).
    pub through: VersionVector,
    /// When it applied it, Unix ms.
    pub erased_ms: u64,
    /// Episodes removed.
    pub episodes: u64,
    /// Key versions destroyed (tenant erasure).
    pub destroyed_keys: Vec<DestroyedKey>,
}

impl ReceiptBody {
    /// The bytes the hub signs: a domain label, then the body as JSON (fields in declaration
    /// order, maps sorted), so that a signature can be checked by any JSON-speaking tool.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = b"agentdb/erasure-receipt/v1\n".to_vec();
        // Serialising plain data with string keys cannot fail.
        out.extend(serde_json::to_vec(self).unwrap_or_default());
        out
    }
}

/// A receipt: the body, signed with the key of the hub's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReceipt {
    /// What was erased.
    pub body: ReceiptBody,
    /// The signing hub's certificate (DER), to check the signature against (and the
    /// certificate against the deployment CA).
    pub certificate_der: Vec<u8>,
    /// ECDSA P-256 SHA-256 signature (ASN.1 DER) over [`ReceiptBody::signed_bytes`].
    pub signature: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::replica::EpisodeContent;

    fn stamp(ms: u64, hub: &str) -> Stamp {
        Stamp::new(
            Hlc::new(ms, 0),
            HubId::new(hub).unwrap_or_else(|_| unreachable!()),
        )
    }

    fn episode(created: Stamp, metadata: &str) -> LiveEpisode {
        let content = EpisodeContent {
            agent: None,
            session: None,
            task: "t".into(),
            input: "i".into(),
            output: "o".into(),
            metadata_json: metadata.into(),
            tokens_used: 0,
            latency_ms: 0,
            created: crate::Timestamp(created.hlc.wall_ms),
            origin: None,
            embedding: None,
            expires_at: None,
        };
        LiveEpisode::new(created, content, 0.5, None, Vec::new())
    }

    fn order(scope: ErasureScope) -> Erasure {
        Erasure {
            id: ErasureId::from_parts(1, [0; 10]),
            tenant: TenantId::new("acme").unwrap_or_else(|_| unreachable!()),
            scope,
            issued_by: HubId::new("a").unwrap_or_else(|_| unreachable!()),
            stamp: stamp(100, "a"),
        }
    }

    #[test]
    fn an_order_covers_what_was_created_up_to_its_stamp() {
        let all = order(ErasureScope::Tenant);
        assert!(all.covers(&episode(stamp(99, "z"), "")));
        assert!(all.covers(&episode(stamp(100, "a"), "")));
        // Same time, later hub: after the stamp in the total order.
        assert!(!all.covers(&episode(stamp(100, "b"), "")));
        assert!(!all.covers(&episode(stamp(101, "a"), "")));
    }

    #[test]
    fn a_subject_order_covers_only_the_subjects_episodes() {
        let user = order(ErasureScope::Subject(MetadataMatch::new(
            "user_id",
            &serde_json::json!("u-1"),
        )));
        assert!(user.covers(&episode(stamp(50, "a"), r#"{"user_id":"u-1","x":2}"#)));
        assert!(!user.covers(&episode(stamp(50, "a"), r#"{"user_id":"u-2"}"#)));
        assert!(!user.covers(&episode(stamp(50, "a"), "")));
        assert!(!user.covers(&episode(stamp(150, "a"), r#"{"user_id":"u-1"}"#)));
    }
}
