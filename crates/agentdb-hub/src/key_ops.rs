//! Online key operations on a running hub: rotating a tenant's key, the background pass that
//! re-seals the tenant's rows and destroys its older key versions (a signed receipt for each),
//! and re-wrapping every key under a new master key.
//!
//! ```text
//! POST /v1/tenants/{t}/encryption-key/rotate   (tenant admin or operator)
//!   ─► MemoryEngine::rotate_tenant_key          new writes use the new version at once
//!   ◄─ 201 {"version": n}
//!   ─► background pass (blocking task):
//!        reseal (batches, under the tenant's merge lock) ─► key_versions
//!        ─► destroy_key_version for every older version no row uses
//!        ─► sign KeyDestructionReceipt with the hub's certificate key
//!        ─► keep it as the sealed setting key-receipt/<t>/<version>/<fingerprint>
//!        (again while a row is still on an older version: a write that took the old key
//!         just before the rotation)
//! GET  /v1/tenants/{t}/encryption-key           versions, the pass, receipts (checked against
//!                                               the deployment CA)
//! POST /v1/tenants/{t}/encryption-key/reseal    runs the pass again (after a restart, say)
//! POST /v1/admin/rewrap-master-key              (operator) new master key ─► key file
//! ```
//!
//! A master-key rewrap writes the new key beside the key file (`<file>.new`, 0600, fsynced),
//! re-wraps every tenant key and the store secret under it in one transaction, then renames it
//! over the old file. A hub stopped between the last two steps opens only with `<file>.new`:
//! the error at start says the master key is wrong, and moving `<file>.new` over the key file
//! mends it. A hub whose master key comes from `AGENTDB_MASTER_KEY` refuses to rewrap, since
//! it could not keep the new key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use agentdb_core::{DestroyedKey, HubId, TenantId};
use agentdb_memory::{KeyError, KeyVersion, ResealProgress, RESEAL_BATCH};
use agentdb_proto::{ErrorCode, WireError};
use agentdb_security::identity::PeerIdentity;
use agentdb_security::policy;
use agentdb_security::signing::{certificate_fingerprint, verify_issued_by, verify_signature};
use agentdb_security::MasterKey;
use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::admin::{blocking, failure, refusal, tenant_or_operator};
use crate::auth::error;
use crate::config::MasterKeySource;
use crate::state::{unix_ms, HubState};

/// Prefix of the sealed settings holding key destruction receipts:
/// `key-receipt/<tenant>/<version>/<fingerprint>`.
const RECEIPTS: &str = "key-receipt/";

/// How many times a pass re-seals before it gives up on rows that keep appearing under an
/// older version.
const MAX_ROUNDS: usize = 8;

pub(crate) fn routes() -> Router<Arc<HubState>> {
    Router::new()
        .route("/v1/tenants/{tenant}/encryption-key", get(key_status))
        .route("/v1/tenants/{tenant}/encryption-key/rotate", post(rotate))
        .route("/v1/tenants/{tenant}/encryption-key/reseal", post(reseal))
        .route("/v1/admin/rewrap-master-key", post(rewrap))
}

/// What a hub states when it destroyed a key version of a tenant, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeyDestructionReceipt {
    /// The tenant.
    pub tenant: TenantId,
    /// The hub that destroyed it.
    pub hub: HubId,
    /// The key version.
    pub version: u32,
    /// SHA-256 of the wrapped key, hex.
    pub fingerprint: String,
    /// When, Unix ms.
    pub destroyed_ms: u64,
}

impl KeyDestructionReceipt {
    /// The bytes the hub signs: a domain label, then the receipt as JSON (fields in
    /// declaration order).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = b"agentdb/key-destruction-receipt/v1\n".to_vec();
        // Serialising plain data with string keys cannot fail.
        out.extend(serde_json::to_vec(self).unwrap_or_default());
        out
    }
}

/// A receipt as kept: signed with the hub's certificate key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SignedReceipt {
    body: KeyDestructionReceipt,
    /// ECDSA P-256 / SHA-256 over [`KeyDestructionReceipt::signed_bytes`], ASN.1 DER.
    signature: Vec<u8>,
    /// The signing certificate, DER.
    certificate_der: Vec<u8>,
}

/// Where a tenant's background pass stands.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
enum PassState {
    Running,
    Done,
    Failed,
}

/// The background pass of one tenant, as the status shows it.
#[derive(Debug, Clone, Serialize)]
struct PassStatus {
    state: PassState,
    /// The latest re-seal round.
    #[serde(flatten)]
    progress: ResealProgress,
    /// Versions destroyed by this pass.
    destroyed: Vec<u32>,
    started_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The background passes of one hub, by tenant, and its master-key rewraps (one at a time:
/// each writes the pending key file).
#[derive(Debug, Default)]
pub(crate) struct KeyPasses {
    passes: parking_lot::Mutex<HashMap<TenantId, PassStatus>>,
    rewrap: parking_lot::Mutex<()>,
}

fn pass_status(state: &HubState, tenant: &TenantId) -> Option<PassStatus> {
    state.key_passes.passes.lock().get(tenant).cloned()
}

fn update_pass(state: &HubState, tenant: &TenantId, f: impl FnOnce(&mut PassStatus)) {
    if let Some(status) = state.key_passes.passes.lock().get_mut(tenant) {
        f(status);
    }
}

/// Starts the tenant's background pass unless one is running; whether it started.
fn start_pass(state: &Arc<HubState>, tenant: &TenantId) -> bool {
    let status = PassStatus {
        state: PassState::Running,
        progress: ResealProgress::default(),
        destroyed: Vec::new(),
        started_ms: unix_ms(),
        finished_ms: None,
        error: None,
    };
    let started = {
        let mut passes = state.key_passes.passes.lock();
        match passes.get(tenant) {
            Some(p) if matches!(p.state, PassState::Running) => false,
            _ => {
                passes.insert(tenant.clone(), status);
                true
            }
        }
    };
    if started {
        let state = Arc::clone(state);
        let tenant = tenant.clone();
        // The pass holds the hub state only while it runs; shutting the hub down does not
        // wait for it (every batch it committed stays committed, and running it again
        // finishes the rest).
        tokio::task::spawn_blocking(move || {
            let outcome = run_pass(&state, &tenant);
            if let Err(e) = &outcome {
                tracing::warn!(%tenant, error = %e, "key re-seal pass failed");
            }
            update_pass(&state, &tenant, |s| {
                s.finished_ms = Some(unix_ms());
                match outcome {
                    Ok(()) => s.state = PassState::Done,
                    Err(e) => {
                        s.state = PassState::Failed;
                        s.error = Some(e);
                    }
                }
            });
        });
    }
    started
}

/// Re-seals the tenant's rows and destroys every older key version, with a receipt each.
fn run_pass(state: &Arc<HubState>, tenant: &TenantId) -> Result<(), String> {
    let engine = &state.engine;
    for _ in 0..MAX_ROUNDS {
        engine
            .reseal_with(tenant, RESEAL_BATCH, &mut |p| {
                update_pass(state, tenant, |s| s.progress = *p);
            })
            .map_err(|e| format!("re-sealing: {e}"))?;
        let old: Vec<KeyVersion> = engine
            .key_versions(tenant)
            .map_err(|e| format!("listing key versions: {e}"))?
            .into_iter()
            .filter(|v| !v.current)
            .collect();
        if old.is_empty() {
            return Ok(());
        }
        for v in old.iter().filter(|v| v.records == 0) {
            match engine.destroy_key_version(tenant, v.version) {
                Ok(destroyed) => {
                    keep_receipt(state, tenant, &destroyed)?;
                    tracing::info!(%tenant, version = destroyed.version, fingerprint = %destroyed.fingerprint, "key version destroyed");
                    update_pass(state, tenant, |s| s.destroyed.push(destroyed.version));
                }
                // A row written under it meanwhile, or already gone: the next round sees.
                Err(KeyError::VersionInUse { .. } | KeyError::UnknownVersion { .. }) => {}
                Err(e) => return Err(format!("destroying key version {}: {e}", v.version)),
            }
        }
    }
    Err(format!(
        "rows kept appearing under older key versions after {MAX_ROUNDS} rounds; run the pass again"
    ))
}

fn keep_receipt(
    state: &HubState,
    tenant: &TenantId,
    destroyed: &DestroyedKey,
) -> Result<(), String> {
    let body = KeyDestructionReceipt {
        tenant: tenant.clone(),
        hub: state.config.hub_id.clone(),
        version: destroyed.version,
        fingerprint: destroyed.fingerprint.clone(),
        destroyed_ms: unix_ms(),
    };
    let signature = state
        .signer
        .sign(&body.signed_bytes())
        .map_err(|e| format!("signing the receipt of key version {}: {e}", body.version))?;
    let receipt = SignedReceipt {
        body,
        signature,
        certificate_der: state.signer.certificate_der().to_vec(),
    };
    let value = postcard::to_stdvec(&receipt).map_err(|e| format!("encoding a receipt: {e}"))?;
    state
        .engine
        .put_sealed_setting(&receipt_name(tenant, destroyed), &value)
        .map_err(|e| {
            format!(
                "keeping the receipt of key version {}: {e}",
                destroyed.version
            )
        })
}

/// A receipt's name: the version and the key's fingerprint, so that a tenant erased and
/// written afresh (its versions numbered from 1 again) keeps the receipts of its earlier keys.
fn receipt_name(tenant: &TenantId, destroyed: &DestroyedKey) -> String {
    format!(
        "{RECEIPTS}{tenant}/{}/{}",
        destroyed.version, destroyed.fingerprint
    )
}

/// A receipt as the status shows it.
#[derive(Debug, Serialize)]
struct ReceiptStatus {
    #[serde(flatten)]
    body: KeyDestructionReceipt,
    /// Whether the signature verifies against the certificate it carries, the certificate was
    /// issued by this deployment's CA, and it names the hub the receipt is from.
    verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
    /// SHA-256 of the signing certificate (DER), hex.
    certificate_fingerprint: String,
    /// The signature, base64.
    signature: String,
}

/// Checks a receipt: its signature, its certificate against the CA (at the time it says it
/// was made), and that the certificate names the hub the receipt is from.
fn check(receipt: &SignedReceipt, ca_der: &[u8]) -> Result<(), String> {
    verify_signature(
        &receipt.certificate_der,
        &receipt.body.signed_bytes(),
        &receipt.signature,
    )
    .map_err(|e| format!("signature: {e}"))?;
    let at = i64::try_from(receipt.body.destroyed_ms / 1000).unwrap_or(i64::MAX);
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

/// The tenant's key versions, its pass and its receipts.
fn status(state: &Arc<HubState>, tenant: &TenantId) -> Result<serde_json::Value, WireError> {
    let internal = |e: String| error(ErrorCode::Internal, e);
    let versions = match state.engine.key_versions(tenant) {
        Ok(v) => v,
        Err(KeyError::UnknownTenant(_)) => Vec::new(),
        Err(e) => return Err(internal(e.to_string())),
    };
    let ca = agentdb_security::signing::certificate_der(&state.config.tls.ca_pem)
        .map_err(|e| internal(format!("the CA certificate: {e}")))?;
    let mut receipts = Vec::new();
    for (name, value) in state
        .engine
        .sealed_settings(&format!("{RECEIPTS}{tenant}/"))
        .map_err(|e| internal(e.to_string()))?
    {
        let receipt: SignedReceipt = postcard::from_bytes(&value)
            .map_err(|e| internal(format!("receipt {name} does not decode: {e}")))?;
        let problem = check(&receipt, &ca).err();
        receipts.push(ReceiptStatus {
            verified: problem.is_none(),
            problem,
            certificate_fingerprint: certificate_fingerprint(&receipt.certificate_der),
            signature: base64_encode(&receipt.signature),
            body: receipt.body,
        });
    }
    receipts.sort_by_key(|r| r.body.version);
    Ok(json!({
        "tenant": tenant,
        "current": versions.iter().find(|v| v.current).map(|v| v.version),
        "versions": versions,
        "pass": pass_status(state, tenant),
        "receipts": receipts,
    }))
}

async fn rotate(
    State(state): State<Arc<HubState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath(tenant): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let tenant = match tenant_or_operator(&state, peer, &headers, tenant) {
        Ok(t) => t,
        Err(refusal) => return *refusal,
    };
    let st = Arc::clone(&state);
    let t = tenant.clone();
    let rotated = tokio::task::spawn_blocking(move || st.engine.rotate_tenant_key(&t)).await;
    match rotated {
        Ok(Ok(version)) => {
            tracing::info!(%tenant, version, "tenant key rotated");
            let started = start_pass(&state, &tenant);
            (
                StatusCode::CREATED,
                axum::Json(json!({ "version": version, "pass_started": started })),
            )
                .into_response()
        }
        Ok(Err(KeyError::UnknownTenant(_))) => failure(
            StatusCode::NOT_FOUND,
            "not_found",
            "the tenant has no data, so no key to rotate",
        ),
        Ok(Err(e)) => failure(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        Err(_) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the rotation failed",
        ),
    }
}

async fn reseal(
    State(state): State<Arc<HubState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath(tenant): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let tenant = match tenant_or_operator(&state, peer, &headers, tenant) {
        Ok(t) => t,
        Err(refusal) => return *refusal,
    };
    if state.engine.tenant_model(&tenant).is_none() {
        return failure(StatusCode::NOT_FOUND, "not_found", "the tenant has no data");
    }
    let started = start_pass(&state, &tenant);
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "pass_started": started })),
    )
        .into_response()
}

async fn key_status(
    State(state): State<Arc<HubState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath(tenant): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let tenant = match tenant_or_operator(&state, peer, &headers, tenant) {
        Ok(t) => t,
        Err(refusal) => return *refusal,
    };
    blocking(StatusCode::OK, move || status(&state, &tenant)).await
}

async fn rewrap(
    State(state): State<Arc<HubState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = refusal(&state, peer, &headers, policy::authorize_operator) {
        return refusal;
    }
    let path =
        match &state.config.master_key {
            MasterKeySource::File(path) => path.clone(),
            MasterKeySource::Environment => return failure(
                StatusCode::CONFLICT,
                "invalid_request",
                "this hub's master key comes from AGENTDB_MASTER_KEY, where the hub cannot keep \
                 a new one; nothing was changed. Rewrap offline instead, or give the hub a key \
                 file",
            ),
            _ => {
                return failure(
                    StatusCode::CONFLICT,
                    "invalid_request",
                    "this hub does not know where its master key is kept; nothing was changed",
                )
            }
        };
    blocking(StatusCode::OK, move || {
        let check = rewrap_into(&state, &path)?;
        tracing::info!(key_file = %path.display(), "master key rewrapped");
        Ok(json!({ "rewrapped": true, "check": check }))
    })
    .await
}

/// Generates a new master key, keeps it beside `path`, re-wraps every key under it and moves it
/// over `path`. Returns the new key's check (see [`master_key_check`]).
fn rewrap_into(state: &HubState, path: &Path) -> Result<String, WireError> {
    let internal = |e: String| error(ErrorCode::Internal, e);
    let _one = state.key_passes.rewrap.lock();
    let new = MasterKey::generate().map_err(|e| internal(e.to_string()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| internal(format!("{} is not a file", path.display())))?;
    let pending = path.with_file_name(format!("{name}.new"));
    // Durable before any key is wrapped under it: a crash after the rewrap finds it here.
    agentdb_security::write_private_file(&pending, new.to_base64().as_bytes(), true)
        .map_err(|e| internal(format!("writing the new master key: {e}")))?;
    if let Err(e) = state.engine.rewrap_master_key(&new) {
        let _ = std::fs::remove_file(&pending);
        return Err(internal(format!(
            "rewrapping failed, the old master key stays: {e}"
        )));
    }
    std::fs::rename(&pending, path)
        .and_then(|()| agentdb_security::sync_parent_dir(path))
        .map_err(|e| {
            internal(format!(
                "the store is rewrapped under the key in {}, but it could not replace {}: {e}; \
                 move it there before the hub restarts",
                pending.display(),
                path.display()
            ))
        })?;
    Ok(master_key_check(&new))
}

/// A name for a master key that reveals nothing of it: 16 bytes of an HKDF output, hex.
pub(crate) fn master_key_check(key: &MasterKey) -> String {
    key.derive("agentdb/master-key-check/v1")[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_signs_its_own_domain() {
        let body = KeyDestructionReceipt {
            tenant: TenantId::new("acme").unwrap(),
            hub: HubId::new("hub-1").unwrap(),
            version: 1,
            fingerprint: "ab".into(),
            destroyed_ms: 5,
        };
        let bytes = body.signed_bytes();
        assert!(bytes.starts_with(b"agentdb/key-destruction-receipt/v1\n{\"tenant\":\"acme\""));
    }

    #[test]
    fn a_master_key_check_names_the_key_and_hides_it() {
        let a = MasterKey::from_bytes([1; 32]);
        let b = MasterKey::from_bytes([2; 32]);
        assert_eq!(master_key_check(&a), master_key_check(&a.clone()));
        assert_ne!(master_key_check(&a), master_key_check(&b));
        assert_eq!(master_key_check(&a).len(), 32);
    }
}
