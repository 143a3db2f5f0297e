//! `agentdb tenant erase|erase-status`: federation-wide erasure through a running hub's admin
//! HTTP.
//!
//! `erase` asks the hub to issue an erasure order for the tenant (or for one subject's
//! episodes): the hub applies it at once, signs a receipt, and passes the order on to every
//! hub that holds the tenant, each of which applies it and signs its own receipt.
//! `erase-status` shows each order and which hubs have confirmed it (receipts checked against
//! the deployment CA by the hub asked).

use anyhow::Context as _;
use clap::Args;
use serde::Deserialize;

use agentdb_security::token::Scope;

use super::tenant::AdminArgs;
use crate::admin_http::{self, Method};
use crate::output;

/// Arguments of `agentdb tenant erase`.
#[derive(Debug, Args)]
pub struct EraseArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Erase only the episodes whose metadata has this field …
    #[arg(long, value_name = "KEY", requires = "subject_value")]
    subject_key: Option<String>,
    /// … with this value (JSON; a bare word is taken as a string).
    #[arg(long, value_name = "VALUE", requires = "subject_key")]
    subject_value: Option<String>,
}

/// Arguments of `agentdb tenant erase-status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    admin: AdminArgs,
}

/// A receipt as the hub shows it.
#[derive(Debug, Deserialize)]
struct Receipt {
    hub: String,
    episodes: u64,
    #[serde(default)]
    destroyed_keys: Vec<serde_json::Value>,
    #[serde(default)]
    verified: bool,
    #[serde(default)]
    problem: Option<String>,
}

/// An order as the hub shows it.
#[derive(Debug, Deserialize)]
struct Order {
    erasure: String,
    scope: serde_json::Value,
    issued_by: String,
    receipts: Vec<Receipt>,
    pending: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Orders {
    erasures: Vec<Order>,
}

/// Runs `agentdb tenant erase`.
pub fn erase(args: EraseArgs) -> anyhow::Result<()> {
    let admin = &args.admin;
    let body = match (&args.subject_key, &args.subject_value) {
        (Some(key), Some(value)) => {
            let value: serde_json::Value = serde_json::from_str(value)
                .unwrap_or_else(|_| serde_json::Value::String(value.clone()));
            serde_json::json!({ "subject": { "key": key, "value": value } })
        }
        _ => serde_json::json!({}),
    };
    let answer: serde_json::Value = admin_http::call(
        &admin.http,
        &admin.token(&[Scope::Erase])?,
        Method::Post,
        &format!("/v1/tenants/{}/erase", admin.tenant),
        Some(&body),
    )?;
    if admin.json {
        return output::json(&answer);
    }
    let id = answer["erasure"].as_str().unwrap_or("?");
    let receipt: Receipt = serde_json::from_value(answer["receipt"].clone())
        .context("unexpected answer from the hub: no receipt in it")?;
    output::line(format_args!(
        "erasure {id} of tenant {}: hub {} erased {} episodes and destroyed {} key versions; \
         other hubs apply it as they receive it (agentdb tenant erase-status --tenant {})",
        admin.tenant,
        receipt.hub,
        receipt.episodes,
        receipt.destroyed_keys.len(),
        admin.tenant
    ))
}

/// Runs `agentdb tenant erase-status`.
pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    let admin = &args.admin;
    let answer: serde_json::Value = admin_http::call(
        &admin.http,
        &admin.token(&[Scope::Erase])?,
        Method::Get,
        &format!("/v1/tenants/{}/erasures", admin.tenant),
        None,
    )?;
    if admin.json {
        return output::json(&answer);
    }
    let orders: Orders =
        serde_json::from_value(answer).context("unexpected answer from the hub")?;
    if orders.erasures.is_empty() {
        return output::line(format_args!("no erasures of tenant {}", admin.tenant));
    }
    for order in &orders.erasures {
        let scope = match &order.scope {
            serde_json::Value::String(s) => s.clone(),
            other => format!("subject {}", other["subject"]),
        };
        output::line(format_args!(
            "erasure {} ({scope}) issued by {}: {} confirmed, {} pending{}",
            order.erasure,
            order.issued_by,
            order.receipts.iter().filter(|r| r.verified).count(),
            order.pending.len(),
            if order.pending.is_empty() {
                String::new()
            } else {
                format!(" ({})", order.pending.join(", "))
            }
        ))?;
        for r in &order.receipts {
            output::line(format_args!(
                "  {}  {}  {} episodes, {} key versions destroyed{}",
                r.hub,
                if r.verified {
                    "verified"
                } else {
                    "NOT VERIFIED"
                },
                r.episodes,
                r.destroyed_keys.len(),
                r.problem
                    .as_deref()
                    .map(|p| format!(": {}", output::one_line(p)))
                    .unwrap_or_default()
            ))?;
        }
    }
    Ok(())
}
