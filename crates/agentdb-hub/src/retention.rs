//! Retention: the hub deletes, in every tenant, the episodes past their own expiry and those
//! older than the tenant's retention.
//!
//! ```text
//! every sweep_interval ─► sweep (blocking pool) ─► for each tenant:
//!     retention = run-time value (sealed setting retention/<tenant>)
//!                 over [tenants.<t>] retention over [retention] default
//!     MemoryEngine::expire(tenant, engine clock, retention) ─► tombstones ─► ops ─► every hub
//! PUT /v1/tenants/{t}/retention (operator) ─► sealed setting ─► used from the next sweep
//! ```
//!
//! The run-time value is read from the engine's sealed settings by each sweep and each admin
//! request, so it survives restarts and needs no state of its own. Episodes past their own
//! `expires_at` are hidden from every read at once; those past their tenant's retention are
//! removed by the next sweep (within one `sweep_interval`).

use std::sync::Arc;
use std::time::Duration;

use agentdb_core::TenantId;
use agentdb_memory::MemoryEngine;
use tokio::sync::watch;

use crate::state::HubState;

/// Where run-time retention values live among the hub's sealed settings: `retention/<tenant>`
/// → the value's text (`"30d"`, `"forever"`).
pub(crate) const RETENTION_PREFIX: &str = "retention/";

/// The text of "no retention": episodes are kept until deleted.
pub const FOREVER: &str = "forever";

/// Parses a retention or an interval: `"forever"` (`None`), or a positive whole number with
/// a unit: `ms`, `s`, `m`, `h` or `d` (`"500ms"`, `"90s"`, `"24h"`, `"30d"`).
pub fn parse_retention(text: &str) -> Result<Option<Duration>, String> {
    let t = text.trim();
    if t == FOREVER {
        return Ok(None);
    }
    let bad = || {
        format!(
            "{text:?} is not a retention: expected a whole number with a unit (ms, s, m, h, d), \
             like \"30d\", or \"{FOREVER}\""
        )
    };
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let ms_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(format!(
            "a retention of {text:?} would delete every episode at once; it must be longer"
        ));
    }
    let ms = n
        .checked_mul(ms_per_unit)
        .ok_or_else(|| format!("{text:?} is too long"))?;
    Ok(Some(Duration::from_millis(ms)))
}

/// The text [`parse_retention`] reads back: the largest unit that divides the value exactly.
pub fn format_retention(retention: Option<Duration>) -> String {
    let Some(d) = retention else {
        return FOREVER.to_owned();
    };
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    for (unit, per) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms % per == 0 {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

/// What `GET /v1/tenants/{t}/retention` shows.
#[derive(Debug, serde::Serialize)]
pub(crate) struct RetentionReport {
    pub tenant: TenantId,
    /// What the tenant is held to now: a duration, or `"forever"`.
    pub retention: String,
    /// The same in seconds; `null` for forever.
    pub retention_secs: Option<u64>,
    /// From the configuration (the tenant's entry, else the default).
    pub configured: String,
    /// Set at run time, if anything (it wins over the configuration).
    pub runtime: Option<String>,
}

/// The run-time value of `tenant`: `None` when none is set, `Some(None)` for forever.
pub(crate) fn runtime(
    engine: &MemoryEngine,
    tenant: &TenantId,
) -> Result<Option<Option<Duration>>, String> {
    let name = format!("{RETENTION_PREFIX}{tenant}");
    match engine
        .sealed_setting(&name)
        .map_err(|e| format!("cannot read the retention of tenant {tenant}: {e}"))?
    {
        None => Ok(None),
        Some(value) => {
            let text = std::str::from_utf8(&value)
                .map_err(|_| format!("the retention of tenant {tenant} is not text"))?;
            parse_retention(text).map(Some)
        }
    }
}

/// Sets (`Some`) or clears (`None`: back to the configuration) the run-time retention of
/// `tenant`, durably.
pub(crate) fn set_runtime(
    engine: &MemoryEngine,
    tenant: &TenantId,
    retention: Option<Option<Duration>>,
) -> Result<(), String> {
    let name = format!("{RETENTION_PREFIX}{tenant}");
    match retention {
        None => engine
            .delete_setting(&name)
            .map(|_| ())
            .map_err(|e| format!("cannot clear the retention: {e}")),
        Some(value) => engine
            .put_sealed_setting(&name, format_retention(value).as_bytes())
            .map_err(|e| format!("cannot keep the retention: {e}")),
    }
}

/// What the admin route shows of `tenant`.
pub(crate) fn report(state: &HubState, tenant: &TenantId) -> Result<RetentionReport, String> {
    let configured = state.config.limits.retention.for_tenant(tenant);
    let runtime = runtime(&state.engine, tenant)?;
    let effective = runtime.unwrap_or(configured);
    Ok(RetentionReport {
        tenant: tenant.clone(),
        retention: format_retention(effective),
        retention_secs: effective.map(|d| d.as_secs()),
        configured: format_retention(configured),
        runtime: runtime.map(format_retention),
    })
}

/// One sweep over every tenant. Returns how many episodes it deleted.
pub(crate) fn sweep(state: &HubState) -> u64 {
    let engine = &state.engine;
    let overrides = match engine.sealed_settings(RETENTION_PREFIX) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(error = %e, "retention sweep: cannot read run-time retentions");
            return 0;
        }
    };
    let runtime_of = |tenant: &TenantId| -> Option<Option<Duration>> {
        let name = format!("{RETENTION_PREFIX}{tenant}");
        let (_, value) = overrides.iter().find(|(n, _)| *n == name)?;
        let parsed = std::str::from_utf8(value)
            .map_err(|e| e.to_string())
            .and_then(parse_retention);
        match parsed {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(%tenant, error = %e, "retention sweep: unreadable run-time retention, using the configured one");
                None
            }
        }
    };
    let mut deleted = 0;
    for tenant in engine.tenants() {
        let retention = runtime_of(&tenant)
            .unwrap_or_else(|| state.config.limits.retention.for_tenant(&tenant));
        match engine.expire(&tenant, engine.now(), retention) {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(%tenant, deleted = n, "expired episodes deleted");
                    state.quotas.recount(&tenant);
                }
                deleted += n;
            }
            Err(e) => tracing::warn!(%tenant, error = %e, "retention sweep failed"),
        }
    }
    deleted
}

/// Starts the periodic sweep (the first one at once), which also forgets the revocations of
/// expired tokens ([`crate::revoked_tokens::collect`]). The task ends when `shutdown` turns
/// true.
pub(crate) fn start(state: &Arc<HubState>, shutdown: watch::Receiver<bool>) {
    let st = Arc::clone(state);
    let mut stop = shutdown;
    tokio::spawn(async move {
        let mut every = tokio::time::interval(st.config.limits.retention.sweep_interval);
        // A sweep that outlasts the interval is not followed by a burst of catch-up runs.
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
                _ = every.tick() => {
                    let st2 = Arc::clone(&st);
                    let _ = tokio::task::spawn_blocking(move || {
                        sweep(&st2);
                        if let Err(err) = crate::revoked_tokens::collect(&st2) {
                            tracing::warn!(error = %err, "cannot collect expired token revocations");
                        }
                    })
                    .await;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retentions_parse_and_print_back() {
        let day = Duration::from_secs(86_400);
        assert_eq!(parse_retention("30d"), Ok(Some(day * 30)));
        assert_eq!(parse_retention(" 24h "), Ok(Some(day)));
        assert_eq!(parse_retention("90s"), Ok(Some(Duration::from_secs(90))));
        assert_eq!(parse_retention("5m"), Ok(Some(Duration::from_secs(300))));
        assert_eq!(
            parse_retention("100ms"),
            Ok(Some(Duration::from_millis(100)))
        );
        assert_eq!(parse_retention("forever"), Ok(None));
        for bad in [
            "",
            "30",
            "d",
            "0d",
            "1.5h",
            "-1d",
            "30 days",
            "3w",
            "99999999999999999d",
        ] {
            assert!(parse_retention(bad).is_err(), "{bad:?}");
        }
        for text in ["30d", "25h", "90m", "61s", "100ms", "forever"] {
            assert_eq!(format_retention(parse_retention(text).unwrap()), text);
        }
        assert_eq!(format_retention(Some(day)), "1d");
        assert_eq!(format_retention(Some(Duration::from_secs(7200))), "2h");
    }
}
