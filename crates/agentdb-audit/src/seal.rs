//! What the hub signs: checkpoints (records in the chain) and `HEAD` (a file beside it).
//!
//! Both signatures are ECDSA P-256 / SHA-256 by the hub's certificate key
//! ([`agentdb_security::signing`]) over a canonical byte string, never over JSON, so that a
//! verifier in any language rebuilds the exact bytes:
//!
//! ```text
//! agentdb-audit/checkpoint/v1\n hub <hub>\n seq <seq>\n time_ms <ms>\n seals <seq-1>\n hash <prev>\n
//! agentdb-audit/head/v1\n       hub <hub>\n seq <seq>\n time_ms <ms>\n hash <hash of that line>\n
//! ```
//!
//! (shown with spaces after each `\n` for reading; there are none). Numbers are decimal
//! without leading zeros, hashes lowercase hex. The different first lines keep a checkpoint
//! signature from being passed off as a HEAD signature and the other way round.

use agentdb_core::HubId;
use agentdb_security::signing::{HubSigner, SignatureError};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// File name of the head inside a log directory.
pub const HEAD_FILE: &str = "HEAD";

/// The bytes a checkpoint's signature covers.
pub fn checkpoint_message(hub: &HubId, seq: u64, time_ms: u64, seals: u64, prev: &str) -> Vec<u8> {
    format!(
        "agentdb-audit/checkpoint/v1\nhub {hub}\nseq {seq}\ntime_ms {time_ms}\nseals {seals}\nhash {prev}\n"
    )
    .into_bytes()
}

/// The bytes a HEAD's signature covers.
pub fn head_message(hub: &HubId, seq: u64, time_ms: u64, hash: &str) -> Vec<u8> {
    format!("agentdb-audit/head/v1\nhub {hub}\nseq {seq}\ntime_ms {time_ms}\nhash {hash}\n")
        .into_bytes()
}

/// The content of `HEAD`: the last record the log had made durable, signed.
///
/// The log replaces it atomically after each flush. A log that ends before `seq`, or whose
/// record `seq` does not hash to `hash`, has lost its tail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The hub that wrote the log.
    pub hub: HubId,
    /// The seq of the last durable record.
    pub seq: u64,
    /// That record's time, in Unix milliseconds.
    pub time_ms: u64,
    /// The SHA-256 of that record's line, lowercase hex.
    pub hash: String,
    /// The signer's certificate fingerprint; absent when the log has no signer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// The signature over [`head_message`], standard base64; absent when the log has no
    /// signer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Head {
    /// A head for record `seq`, signed by `signer` when there is one.
    pub(crate) fn new(
        hub: &HubId,
        seq: u64,
        time_ms: u64,
        hash: &str,
        signer: Option<&HubSigner>,
    ) -> Result<Self, SignatureError> {
        let (signer_fp, signature) = sign(signer, &head_message(hub, seq, time_ms, hash))?;
        Ok(Self {
            hub: hub.clone(),
            seq,
            time_ms,
            hash: hash.to_owned(),
            signer: signer_fp,
            signature,
        })
    }

    /// The bytes its signature covers.
    pub fn message(&self) -> Vec<u8> {
        head_message(&self.hub, self.seq, self.time_ms, &self.hash)
    }
}

/// Signs `message` with `signer`, if any: the signer's fingerprint and the base64 signature.
pub(crate) fn sign(
    signer: Option<&HubSigner>,
    message: &[u8],
) -> Result<(Option<String>, Option<String>), SignatureError> {
    match signer {
        None => Ok((None, None)),
        Some(signer) => {
            let signature = signer.sign(message)?;
            Ok((
                Some(signer.fingerprint().to_owned()),
                Some(base64::engine::general_purpose::STANDARD.encode(signature)),
            ))
        }
    }
}

/// Decodes a base64 signature.
pub(crate) fn decode_signature(signature: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(signature)
        .ok()
}
