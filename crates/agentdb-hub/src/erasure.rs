//! Federation-wide erasure on a running hub: issuing an order, applying the orders peers pass
//! on, signing this hub's receipts, and what an operator sees of an order.
//!
//! Orders and receipts are control records (`agentdb_core::ControlRecord`), kept as sealed
//! settings named by [`ControlRecord::name`] and passed on over every link whose peer may hold
//! the tenant (`agentdb_proto::fed::LinkSession`). A hub applies an order once, signs a
//! receipt with its certificate's key, keeps it and passes it on; so every hub ends up with
//! every receipt, and `GET /v1/tenants/{tenant}/erasures` on any of them shows which hubs have
//! confirmed.

use std::collections::BTreeSet;

use agentdb_core::{
    ControlRecord, Erasure, ErasureId, ErasureReceipt, ErasureScope, HubId, ReceiptBody, TenantId,
};
use agentdb_memory::ErasureOutcome;
use agentdb_proto::{ErrorCode, WireError};
use agentdb_security::identity::PeerIdentity;
use agentdb_security::signing::{verify_issued_by, verify_signature};
use serde::Serialize;

use crate::auth::error;
use crate::state::{unix_ms, HubState};

/// Prefixes of the sealed settings that hold control records.
const ORDERS: &str = "erasure/";
const RECEIPTS: &str = "receipt/";

/// Issues an order for `tenant` on this hub: applies it here, signs this hub's receipt and
/// passes both on to the federation.
pub(crate) fn issue(
    state: &HubState,
    tenant: &TenantId,
    scope: ErasureScope,
) -> Result<(Erasure, ErasureReceipt), WireError> {
    let engine = &state.engine;
    let minted = agentdb_memory::mint_episode_id(agentdb_core::Timestamp(unix_ms()));
    let order = Erasure {
        id: ErasureId::from_bytes(minted.to_bytes()),
        tenant: tenant.clone(),
        scope,
        issued_by: state.config.hub_id.clone(),
        stamp: engine.erasure_stamp(),
    };
    let receipt = apply(state, &order)?;
    state.federation.notify_control();
    Ok((order, receipt))
}

/// Applies `order` here, then signs and keeps this hub's receipt.
fn apply(state: &HubState, order: &Erasure) -> Result<ErasureReceipt, WireError> {
    let outcome = state
        .engine
        .apply_erasure(order)
        .map_err(|e| error(ErrorCode::Internal, format!("erasure failed: {e}")))?;
    // Tokens and keys of an erased tenant are not erased: its agents may write afresh.
    tracing::info!(tenant = %order.tenant, erasure = %order.id, episodes = outcome.episodes, "erasure applied");
    let receipt = sign(state, order, outcome)?;
    keep(state, &ControlRecord::Receipt(receipt.clone()))?;
    Ok(receipt)
}

fn sign(
    state: &HubState,
    order: &Erasure,
    outcome: ErasureOutcome,
) -> Result<ErasureReceipt, WireError> {
    let body = ReceiptBody {
        erasure: order.id,
        tenant: order.tenant.clone(),
        hub: state.config.hub_id.clone(),
        through: outcome.through,
        erased_ms: unix_ms(),
        episodes: outcome.episodes,
        destroyed_keys: outcome.destroyed_keys,
    };
    let signature = state
        .signer
        .sign(&body.signed_bytes())
        .map_err(|e| error(ErrorCode::Internal, format!("signing the receipt: {e}")))?;
    Ok(ErasureReceipt {
        body,
        certificate_der: state.signer.certificate_der().to_vec(),
        signature,
    })
}

fn keep(state: &HubState, record: &ControlRecord) -> Result<(), WireError> {
    let value = postcard::to_stdvec(record).map_err(|e| {
        error(
            ErrorCode::Internal,
            format!("encoding a control record: {e}"),
        )
    })?;
    state
        .engine
        .put_sealed_setting(&record.name(), &value)
        .map_err(|e| {
            error(
                ErrorCode::Internal,
                format!("keeping a control record: {e}"),
            )
        })
}

/// Every control record this hub holds: orders (as the engine keeps them) and receipts.
pub(crate) fn records(state: &HubState) -> Result<Vec<ControlRecord>, String> {
    let mut out: Vec<ControlRecord> = state
        .engine
        .all_erasures()
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(ControlRecord::Erasure)
        .collect();
    for (name, value) in state
        .engine
        .sealed_settings(RECEIPTS)
        .map_err(|e| e.to_string())?
    {
        match postcard::from_bytes::<ControlRecord>(&value) {
            Ok(record) => out.push(record),
            Err(e) => return Err(format!("control record {name} does not decode: {e}")),
        }
    }
    Ok(out)
}

/// Takes in an order or receipt a peer sent, unless `held` (the names of the control records
/// this hub keeps) shows it is done here: an order is applied (and its receipt signed), a
/// receipt kept. Returns whether anything new is kept.
pub(crate) fn receive(
    state: &HubState,
    held: &BTreeSet<String>,
    record: &ControlRecord,
) -> Result<bool, WireError> {
    match record {
        ControlRecord::Erasure(order) => {
            // An order is done here once this hub's receipt for it is held.
            if held.contains(&own_receipt_name(state, order)) {
                return Ok(false);
            }
            let fed = &state.federation.config;
            if !fed.residency.allows(&order.tenant, &fed.region) {
                // Not for this region (a misconfigured peer): nothing is held here.
                return Ok(false);
            }
            apply(state, order).map(|_| true)
        }
        ControlRecord::Receipt(_) if !held.contains(&record.name()) => {
            keep(state, record).map(|()| true)
        }
        _ => Ok(false),
    }
}

/// The name of this hub's receipt for `order`.
fn own_receipt_name(state: &HubState, order: &Erasure) -> String {
    format!(
        "{RECEIPTS}{}/{}/{}",
        order.tenant, order.id, state.config.hub_id
    )
}

/// Applies the orders held here that this hub has no receipt for (it stopped between applying
/// one and keeping its receipt). Applying an order again erases nothing more.
pub(crate) fn catch_up(state: &HubState) -> Result<(), String> {
    let held = records_held(state)?;
    let orders = state.engine.all_erasures().map_err(|e| e.to_string())?;
    for order in orders {
        if !held.contains(&own_receipt_name(state, &order)) {
            apply(state, &order).map_err(|e| e.message)?;
        }
    }
    Ok(())
}

fn records_held(state: &HubState) -> Result<BTreeSet<String>, String> {
    crate::control::held(state, &[ORDERS, RECEIPTS])
}

/// One hub's receipt, as the status shows it.
#[derive(Debug, Serialize)]
pub(crate) struct ReceiptStatus {
    /// The receipt as signed.
    #[serde(flatten)]
    pub body: ReceiptBody,
    /// Whether the signature verifies against the certificate it carries, the certificate
    /// was issued by this deployment's CA, and it names the hub the receipt is from.
    pub verified: bool,
    /// Why it does not verify.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// SHA-256 of the signing certificate (DER), hex.
    pub certificate_fingerprint: String,
    /// The signature, base64.
    pub signature: String,
}

/// An order and who has confirmed it.
#[derive(Debug, Serialize)]
pub(crate) struct ErasureStatus {
    /// The order.
    pub erasure: ErasureId,
    /// What it erases: `tenant`, or `subject` with its metadata field and value.
    pub scope: serde_json::Value,
    /// The hub that issued it.
    pub issued_by: HubId,
    /// Receipts held, verified against this hub's CA.
    pub receipts: Vec<ReceiptStatus>,
    /// Hubs this hub has linked with whose region may hold the tenant, and itself, that have
    /// not confirmed yet.
    pub pending: Vec<HubId>,
}

/// The orders of `tenant` and their receipts.
pub(crate) fn status(state: &HubState, tenant: &TenantId) -> Result<Vec<ErasureStatus>, WireError> {
    let internal = |e: String| error(ErrorCode::Internal, e);
    let records = records(state).map_err(internal)?;
    let fed = &state.federation.config;
    let mut expected: BTreeSet<HubId> = state
        .engine
        .peers()
        .map_err(|e| internal(e.to_string()))?
        .into_iter()
        .filter(|(_, region)| fed.residency.allows(tenant, region))
        .map(|(hub, _)| hub)
        .collect();
    expected.insert(state.config.hub_id.clone());
    let ca = agentdb_security::signing::certificate_der(&state.config.tls.ca_pem)
        .map_err(|e| internal(format!("the CA certificate: {e}")))?;
    let mut out = Vec::new();
    for record in &records {
        let ControlRecord::Erasure(order) = record else {
            continue;
        };
        if order.tenant != *tenant {
            continue;
        }
        let receipts: Vec<ReceiptStatus> = records
            .iter()
            .filter_map(|r| match r {
                ControlRecord::Receipt(r) if r.body.erasure == order.id => Some(r),
                _ => None,
            })
            .map(|r| {
                let problem = check(r, &ca).err();
                ReceiptStatus {
                    body: r.body.clone(),
                    verified: problem.is_none(),
                    problem,
                    certificate_fingerprint: agentdb_security::signing::certificate_fingerprint(
                        &r.certificate_der,
                    ),
                    signature: base64_encode(&r.signature),
                }
            })
            .collect();
        let confirmed: BTreeSet<&HubId> = receipts
            .iter()
            .filter(|r| r.verified)
            .map(|r| &r.body.hub)
            .collect();
        out.push(ErasureStatus {
            erasure: order.id,
            scope: match &order.scope {
                ErasureScope::Tenant => serde_json::json!("tenant"),
                ErasureScope::Subject(m) => serde_json::json!({
                    "subject": { "key": m.key, "value": serde_json::from_str::<serde_json::Value>(&m.value).unwrap_or(serde_json::Value::Null) }
                }),
            },
            issued_by: order.issued_by.clone(),
            pending: expected
                .iter()
                .filter(|h| !confirmed.contains(h))
                .cloned()
                .collect(),
            receipts,
        });
    }
    Ok(out)
}

/// Checks a receipt: its signature, its certificate against the CA (at the time it says it
/// was made), and that the certificate names the hub the receipt is from.
pub fn check(receipt: &ErasureReceipt, ca_der: &[u8]) -> Result<(), String> {
    verify_signature(
        &receipt.certificate_der,
        &receipt.body.signed_bytes(),
        &receipt.signature,
    )
    .map_err(|e| format!("signature: {e}"))?;
    let at = i64::try_from(receipt.body.erased_ms / 1000).unwrap_or(i64::MAX);
    verify_issued_by(&receipt.certificate_der, ca_der, at)
        .map_err(|e| format!("certificate: {e}"))?;
    match PeerIdentity::from_der(&receipt.certificate_der) {
        Ok(PeerIdentity::Hub { hub, .. }) if hub == receipt.body.hub => Ok(()),
        Ok(other) => Err(format!(
            "the certificate is {}, not hub {}",
            other.spiffe_uri(),
            receipt.body.hub
        )),
        Err(e) => Err(format!("certificate identity: {e}")),
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentdb_core::{DestroyedKey, VersionVector};
    use agentdb_security::signing::{certificate_der, HubSigner};
    use agentdb_testkit::TestPki;

    fn signed(pki: &TestPki, hub: &str, body: ReceiptBody) -> ErasureReceipt {
        let tls = pki.hub_tls_for(hub, None);
        let signer = HubSigner::from_pem(
            &String::from_utf8_lossy(&tls.cert_pem),
            &String::from_utf8_lossy(&tls.key_pem),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let signature = signer
            .sign(&body.signed_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        ErasureReceipt {
            body,
            certificate_der: signer.certificate_der().to_vec(),
            signature,
        }
    }

    fn body(hub: &str) -> ReceiptBody {
        ReceiptBody {
            erasure: ErasureId::from_parts(agentdb_testkit::unix_now() * 1000, [1; 10]),
            tenant: TenantId::new("acme").unwrap_or_else(|_| unreachable!()),
            hub: HubId::new(hub).unwrap_or_else(|_| unreachable!()),
            through: VersionVector::new(),
            erased_ms: agentdb_testkit::unix_now() * 1000,
            episodes: 3,
            destroyed_keys: vec![DestroyedKey {
                version: 1,
                fingerprint: "ab".repeat(32),
            }],
        }
    }

    #[test]
    fn a_receipt_verifies_only_as_signed_by_the_hub_it_names_under_this_ca() {
        let pki = TestPki::new();
        let ca = certificate_der(&pki.ca_pem()).unwrap_or_else(|e| panic!("{e}"));
        let good = signed(&pki, "eu", body("eu"));
        assert_eq!(check(&good, &ca), Ok(()));

        let mut changed = good.clone();
        changed.body.episodes = 2;
        assert!(check(&changed, &ca).is_err_and(|e| e.starts_with("signature")));

        let mut flipped = good.clone();
        let last = flipped.signature.len() - 1;
        flipped.signature[last] ^= 1;
        assert!(check(&flipped, &ca).is_err_and(|e| e.starts_with("signature")));

        // Signed by another hub's key, claiming to be eu's.
        let impostor = signed(&pki, "us", body("eu"));
        assert!(check(&impostor, &ca).is_err_and(|e| e.contains("not hub eu")));

        // A certificate of another deployment's CA.
        let other = TestPki::new();
        let foreign = signed(&other, "eu", body("eu"));
        assert!(check(&foreign, &ca).is_err_and(|e| e.starts_with("certificate")));
    }
}
