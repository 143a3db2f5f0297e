//! One audit record: what a hub submits ([`AuditEvent`]) and what the log stores
//! ([`AuditRecord`]), one JSON object per line.
//!
//! ```text
//! {"seq":42,"prev":"<64 hex>","time_ms":1700000000000,"hub":"eu-1","tenant":"acme",
//!  "agent":"a1","identity":"spiffe://agentdb.local/tenant/acme/agent/a1","operation":"store",
//!  "episodes":["0190…"],"outcome":"ok","request_id":"r-17"}
//! ```
//!
//! (shown wrapped; a record is one line). Fields that are absent or empty are left out.
//! `prev` is the SHA-256, in lowercase hex, of the exact bytes of the previous line (without
//! its newline); the first record ever has [`ZERO_HASH`]. A record names episodes by id and
//! never carries episode content.

use std::fmt;
use std::str::FromStr;

use agentdb_core::{EpisodeId, HubId, TenantId};
use serde::{Deserialize, Serialize};

/// The `prev` of the first record of a log: 64 zeros.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Longest `agent`, `identity`, `error_code` or `request_id` kept, in bytes; longer values are
/// cut (at a character boundary).
pub const MAX_FIELD_LEN: usize = 512;
/// Longest `detail` kept, in bytes.
pub const MAX_DETAIL_LEN: usize = 1024;
/// Most episode ids kept in one record; the number left out is appended to `detail`.
pub const MAX_EPISODES: usize = 1024;

macro_rules! operations {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What was done. The names (`snake_case`) are stable: they are what the log stores
        /// and what tools filter on.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Operation {
            $($(#[$doc])* $variant,)*
        }

        impl Operation {
            /// Every operation, in declaration order.
            pub const ALL: &'static [Operation] = &[$(Operation::$variant,)*];

            /// The stable name, as stored.
            pub fn name(self) -> &'static str {
                match self {
                    $(Operation::$variant => $name,)*
                }
            }
        }

        impl FromStr for Operation {
            type Err = UnknownOperation;

            fn from_str(s: &str) -> Result<Self, UnknownOperation> {
                match s {
                    $($name => Ok(Operation::$variant),)*
                    _ => Err(UnknownOperation(s.chars().take(64).collect())),
                }
            }
        }
    };
}

operations! {
    /// A connection or request authenticated (certificate, token), or was refused.
    Authenticate => "authenticate",
    /// An API key or certificate exchanged for a token.
    TokenExchange => "token_exchange",
    /// A token refreshed on a session.
    TokenRefresh => "token_refresh",
    /// A session ended (Goodbye) and its token was revoked.
    SessionEnd => "session_end",
    /// Episodes stored.
    Store => "store",
    /// A similarity query.
    Query => "query",
    /// Episodes read by id.
    Get => "get",
    /// A page of a tenant's episodes listed.
    List => "list",
    /// An episode updated.
    Update => "update",
    /// Episodes deleted.
    Delete => "delete",
    /// A tenant's statistics read.
    Stats => "stats",
    /// Episodes pulled by an agent.
    Pull => "pull",
    /// A page of the change feed read.
    Changes => "changes",
    /// A tenant erased (crypto-shredded).
    Erase => "erase",
    /// A data subject's episodes erased.
    SubjectErase => "subject_erase",
    /// An API key created.
    KeyCreate => "key_create",
    /// An API key revoked.
    KeyRevoke => "key_revoke",
    /// A tenant's data key rotated.
    KeyRotate => "key_rotate",
    /// The master key changed and the wrapped keys re-wrapped.
    MasterKeyRewrap => "master_key_rewrap",
    /// A token revoked.
    Revoke => "revoke",
    /// A tenant's data retention applied or changed.
    Retention => "retention",
    /// A quota reached or changed.
    Quota => "quota",
    /// A tenant re-embedded with another model.
    Reindex => "reindex",
    /// A federation link to another hub came up.
    FederationLinkUp => "federation_link_up",
    /// A federation link went down.
    FederationLinkDown => "federation_link_down",
    /// Another hub's federation link was refused.
    FederationLinkRefused => "federation_link_refused",
    /// Any other administrative operation (`detail` says which).
    Admin => "admin",
    /// The hub started.
    HubStart => "hub_start",
    /// The hub stopped.
    HubStop => "hub_stop",
    /// Written by the log itself when it is opened.
    LogOpen => "log_open",
    /// Written by the log itself when it repaired or found something on opening (a torn last
    /// line, a HEAD the log does not reach) or lost records after a write failure.
    LogRepair => "log_repair",
    /// Written by the log itself before it removes old segments; `pruned_through` names the
    /// last removed seq.
    LogRetention => "log_retention",
    /// Written by the log itself: a signed seal over every record before it.
    Checkpoint => "checkpoint",
}

impl Operation {
    /// Whether only the log itself writes records of this operation; [`crate::AuditLog::record`]
    /// refuses them.
    pub fn is_reserved(self) -> bool {
        matches!(
            self,
            Operation::LogOpen
                | Operation::LogRepair
                | Operation::LogRetention
                | Operation::Checkpoint
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Operation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Operation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A name that is not an [`Operation`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit operation {0:?}")]
pub struct UnknownOperation(pub String);

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It was done.
    Ok,
    /// It was not allowed (authentication, policy, limits); `error_code` says why.
    Refused,
    /// It was allowed but failed; `error_code` says how.
    Failed,
}

/// What a hub submits to the log: who did what to which episodes, and how it ended. Never
/// episode content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The tenant acted on, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    /// The agent (token subject), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The peer certificate's SPIFFE id, when there is a certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// What was done.
    pub operation: Operation,
    /// The episodes concerned, by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub episodes: Vec<EpisodeId>,
    /// How it ended.
    pub outcome: Outcome,
    /// The stable error code when refused or failed (e.g. `forbidden`, `token_expired`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// The request id, to match the record with other logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// A one-line reason or note; never episode content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl AuditEvent {
    /// An event with only an operation and an outcome; add the rest with the setters.
    pub fn new(operation: Operation, outcome: Outcome) -> Self {
        Self {
            tenant: None,
            agent: None,
            identity: None,
            operation,
            episodes: Vec::new(),
            outcome,
            error_code: None,
            request_id: None,
            detail: None,
        }
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// Sets the agent.
    pub fn agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// Sets the certificate identity (SPIFFE id).
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// Sets the episodes concerned.
    pub fn episodes(mut self, episodes: impl IntoIterator<Item = EpisodeId>) -> Self {
        self.episodes = episodes.into_iter().collect();
        self
    }

    /// Sets the error code.
    pub fn error_code(mut self, code: impl Into<String>) -> Self {
        self.error_code = Some(code.into());
        self
    }

    /// Sets the request id.
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// Sets the one-line detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Cuts over-long fields to the documented limits, so that one record stays one
    /// reasonably short line whatever a caller passes.
    pub(crate) fn bound(&mut self) {
        for field in [
            &mut self.agent,
            &mut self.identity,
            &mut self.error_code,
            &mut self.request_id,
        ]
        .into_iter()
        .flatten()
        {
            truncate(field, MAX_FIELD_LEN);
        }
        if self.episodes.len() > MAX_EPISODES {
            let more = self.episodes.len() - MAX_EPISODES;
            self.episodes.truncate(MAX_EPISODES);
            let note = format!("(+{more} more episodes)");
            self.detail = Some(match self.detail.take() {
                Some(d) => format!("{d} {note}"),
                None => note,
            });
        }
        if let Some(detail) = &mut self.detail {
            truncate(detail, MAX_DETAIL_LEN);
        }
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary.
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// The seal a checkpoint record carries.
///
/// The signature is over [`crate::seal::checkpoint_message`]: the hub, the checkpoint's own
/// seq and time, the seq it seals (the one before it) and its `prev`, the hash of that
/// record's line. Since every line's hash covers the `prev` before it, one valid checkpoint
/// vouches for every record before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointSeal {
    /// The last seq sealed (the checkpoint's seq minus one).
    pub seals: u64,
    /// The signer's certificate fingerprint (SHA-256 of its DER, lowercase hex); absent when
    /// the log has no signer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// The ECDSA P-256 / SHA-256 signature, ASN.1 DER, standard base64; absent when the log
    /// has no signer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// A record as stored: an event, numbered, timed and chained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the log: 0 for the first record ever, then +1 without gaps.
    pub seq: u64,
    /// SHA-256 (lowercase hex) of the previous line's exact bytes; [`ZERO_HASH`] for seq 0.
    pub prev: String,
    /// When the event was submitted, in Unix milliseconds.
    pub time_ms: u64,
    /// The hub that wrote the log.
    pub hub: HubId,
    /// What happened.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// On a `checkpoint` record: its seal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointSeal>,
    /// On a `log_retention` record: the last seq of the segments removed after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned_through: Option<u64>,
}

impl AuditRecord {
    /// Parses one line (without its newline).
    pub fn from_line(line: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(line)
    }

    /// The record as one line of JSON, without a newline.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = Vec::with_capacity(256);
        // Writing a derived `Serialize` of strings and numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut line, self);
        line
    }
}

/// The SHA-256 of `line` (the exact bytes of a line without its newline), lowercase hex.
pub fn line_hash(line: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, line).as_ref())
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn operation_names_round_trip() {
        for op in Operation::ALL {
            let json = serde_json::to_string(op).unwrap();
            assert_eq!(json, format!("\"{}\"", op.name()));
            assert_eq!(serde_json::from_str::<Operation>(&json).unwrap(), *op);
        }
        assert!("store ".parse::<Operation>().is_err());
    }

    #[test]
    fn record_round_trips_and_leaves_out_empty_fields() {
        let record = AuditRecord {
            seq: 3,
            prev: ZERO_HASH.to_owned(),
            time_ms: 1_700_000_000_000,
            hub: HubId::new("eu-1").unwrap(),
            event: AuditEvent::new(Operation::Store, Outcome::Ok)
                .tenant(TenantId::new("acme").unwrap())
                .episodes([EpisodeId::from_parts(1, [7; 10])]),
            checkpoint: None,
            pruned_through: None,
        };
        let line = record.to_line();
        let text = String::from_utf8(line.clone()).unwrap();
        assert!(text.starts_with(r#"{"seq":3,"prev":"000"#), "{text}");
        assert!(!text.contains("null"), "{text}");
        assert!(!text.contains('\n'));
        assert_eq!(AuditRecord::from_line(&line).unwrap(), record);
    }

    #[test]
    fn events_are_bounded() {
        let mut event = AuditEvent::new(Operation::Erase, Outcome::Ok)
            .agent("é".repeat(MAX_FIELD_LEN))
            .episodes((0..MAX_EPISODES as u64 + 5).map(|i| EpisodeId::from_parts(i, [0; 10])));
        event.bound();
        assert!(event.agent.as_ref().unwrap().len() <= MAX_FIELD_LEN);
        assert_eq!(event.episodes.len(), MAX_EPISODES);
        assert_eq!(event.detail.as_deref(), Some("(+5 more episodes)"));
    }

    #[test]
    fn line_hash_is_sha256_hex() {
        assert_eq!(
            line_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
