//! Control records on a running hub: what it passes on to its peers besides ops (erasure
//! orders and receipts, revocations), and what it does with those peers send. The link
//! protocol carries them (`agentdb_proto::fed::LinkSession`); each kind's rules live in
//! [`crate::erasure`] and [`crate::revocations`].

use std::collections::BTreeSet;

use agentdb_core::ControlRecord;

use crate::state::HubState;

/// Every control record this hub keeps.
pub(crate) fn records(state: &HubState) -> Result<Vec<ControlRecord>, String> {
    let mut out = crate::erasure::records(state)?;
    out.extend(
        crate::revocations::records(state)?
            .into_iter()
            .map(ControlRecord::Revocation),
    );
    Ok(out)
}

/// The names of the sealed settings under `prefixes` (the control records kept).
pub(crate) fn held(state: &HubState, prefixes: &[&str]) -> Result<BTreeSet<String>, String> {
    let mut names = BTreeSet::new();
    for prefix in prefixes {
        for (name, _) in state
            .engine
            .sealed_settings(prefix)
            .map_err(|e| e.to_string())?
        {
            names.insert(name);
        }
    }
    Ok(names)
}

/// Takes in the records a peer sent (each applied at most once here) and, when any was new,
/// passes them on to the other links. Reports the last failure; the other records still go
/// through.
pub(crate) fn receive(state: &HubState, records: Vec<ControlRecord>) -> Result<(), String> {
    let held = held(state, &["erasure/", "receipt/", "revocation/"])?;
    let mut new = false;
    let mut failure = None;
    for record in &records {
        let done = match record {
            ControlRecord::Revocation(r) if !held.contains(&record.name()) => {
                crate::revocations::apply(state, r).map(|()| true)
            }
            ControlRecord::Revocation(_) => Ok(false),
            _ => crate::erasure::receive(state, &held, record),
        };
        crate::audit::control(state, record, &done);
        match done {
            Ok(n) => new |= n,
            Err(e) => failure = Some(format!("{}: {}", record.name(), e.message)),
        }
    }
    if new {
        state.federation.notify_control();
    }
    failure.map_or(Ok(()), Err)
}
