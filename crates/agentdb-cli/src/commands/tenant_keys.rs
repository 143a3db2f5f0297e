//! `agentdb tenant rotate-key|key-status`: a tenant's encryption key on a running hub, through
//! its admin HTTP.
//!
//! `rotate-key` starts a new key version: the hub seals new episodes with it at once, keeps
//! opening older ones with the versions that sealed them, and re-seals them in the background;
//! when no episode uses an older version any more it destroys that version and signs a
//! receipt. `key-status` shows the versions in use, the background pass and the receipts
//! (checked by the hub against the deployment CA).

use anyhow::Context as _;
use clap::Args;
use serde::Deserialize;

use super::tenant::AdminArgs;
use crate::admin_http::{self, Method};
use crate::output;

/// Arguments of `agentdb tenant rotate-key` and `agentdb tenant key-status`.
#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(flatten)]
    admin: AdminArgs,
}

/// A key version as the hub shows it.
#[derive(Debug, Deserialize)]
struct Version {
    version: u32,
    fingerprint: String,
    records: u64,
    current: bool,
}

/// The background pass as the hub shows it.
#[derive(Debug, Deserialize)]
struct Pass {
    state: String,
    #[serde(default)]
    found: u64,
    #[serde(default)]
    resealed: u64,
    #[serde(default)]
    destroyed: Vec<u32>,
    #[serde(default)]
    error: Option<String>,
}

/// A destruction receipt as the hub shows it.
#[derive(Debug, Deserialize)]
struct Receipt {
    hub: String,
    version: u32,
    fingerprint: String,
    destroyed_ms: u64,
    verified: bool,
    #[serde(default)]
    problem: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Status {
    versions: Vec<Version>,
    #[serde(default)]
    pass: Option<Pass>,
    receipts: Vec<Receipt>,
}

fn path(admin: &AdminArgs, rest: &str) -> String {
    format!("/v1/tenants/{}/encryption-key{rest}", admin.tenant)
}

/// Runs `agentdb tenant rotate-key`.
pub fn rotate(args: KeyArgs) -> anyhow::Result<()> {
    let admin = &args.admin;
    let answer: serde_json::Value = admin_http::call(
        &admin.http,
        &admin.token(&[])?,
        Method::Post,
        &path(admin, "/rotate"),
        None,
    )?;
    if admin.json {
        return output::json(&answer);
    }
    let version = answer["version"]
        .as_u64()
        .context("unexpected answer from the hub: no version in it")?;
    output::line(format_args!(
        "tenant {} now seals new episodes with key version {version}; older episodes are \
         re-sealed in the background and older versions destroyed after (agentdb tenant \
         key-status --tenant {})",
        admin.tenant, admin.tenant
    ))
}

/// Runs `agentdb tenant key-status`.
pub fn status(args: KeyArgs) -> anyhow::Result<()> {
    let admin = &args.admin;
    let answer: serde_json::Value = admin_http::call(
        &admin.http,
        &admin.token(&[])?,
        Method::Get,
        &path(admin, ""),
        None,
    )?;
    if admin.json {
        return output::json(&answer);
    }
    let status: Status =
        serde_json::from_value(answer).context("unexpected answer from the hub")?;
    if status.versions.is_empty() {
        output::line(format_args!("tenant {} has no keys", admin.tenant))?;
    }
    for v in &status.versions {
        output::line(format_args!(
            "key version {}{}  {} episodes  fingerprint {}",
            v.version,
            if v.current { " (current)" } else { "" },
            v.records,
            v.fingerprint
        ))?;
    }
    if let Some(p) = &status.pass {
        output::line(format_args!(
            "re-seal pass: {}, {} of {} re-sealed, destroyed {}{}",
            p.state,
            p.resealed,
            p.found,
            if p.destroyed.is_empty() {
                "none".to_owned()
            } else {
                p.destroyed
                    .iter()
                    .map(|v| format!("v{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            p.error
                .as_deref()
                .map(|e| format!(" ({})", output::one_line(e)))
                .unwrap_or_default()
        ))?;
    }
    for r in &status.receipts {
        output::line(format_args!(
            "destroyed key version {} by {} at {} ms  {}  fingerprint {}{}",
            r.version,
            r.hub,
            r.destroyed_ms,
            if r.verified {
                "verified"
            } else {
                "NOT VERIFIED"
            },
            r.fingerprint,
            r.problem
                .as_deref()
                .map(|p| format!(" ({})", output::one_line(p)))
                .unwrap_or_default()
        ))?;
    }
    Ok(())
}
