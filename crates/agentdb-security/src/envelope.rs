//! The sealed-record format: AES-256-GCM with a random 96-bit nonce and AAD that binds the record
//! to its kind, tenant, id and key version.
//!
//! Byte layout of a sealed record (all integers big-endian):
//!
//! ```text
//! +---------+-------------+-----------+---------------------------+
//! | 0x01    | key version | nonce     | ciphertext || GCM tag    |
//! | 1 byte  | 4 bytes     | 12 bytes  | len(plaintext) + 16 bytes |
//! +---------+-------------+-----------+---------------------------+
//! ```
//!
//! The AAD is not stored; it is rebuilt from where the record lives:
//! `"agentdb/record/v1" || u8 len(kind) || kind || u16 len(tenant) || tenant ||
//!  u16 len(id) || id || u32 key version`. Moving a ciphertext to another tenant, another id or
//! another kind of record therefore makes it fail to open.

use agentdb_core::TenantId;

/// Format byte of the current envelope.
const FORMAT_V1: u8 = 1;
/// Bytes before the ciphertext: format, key version, nonce.
pub(crate) const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// What a sealed record is bound to.
#[derive(Debug, Clone, Copy)]
pub struct RecordAad<'a> {
    /// The kind of record, e.g. `"episode"`.
    pub kind: &'static str,
    /// The tenant that owns it.
    pub tenant: &'a TenantId,
    /// The record's id (e.g. the 16 bytes of an episode id).
    pub record_id: &'a [u8],
}

impl RecordAad<'_> {
    pub(crate) fn encode(&self, key_version: u32) -> Vec<u8> {
        let tenant = self.tenant.as_str().as_bytes();
        let mut aad =
            Vec::with_capacity(32 + self.kind.len() + tenant.len() + self.record_id.len());
        aad.extend_from_slice(b"agentdb/record/v1");
        push_field(&mut aad, self.kind.as_bytes(), 1);
        push_field(&mut aad, tenant, 2);
        push_field(&mut aad, self.record_id, 2);
        aad.extend_from_slice(&key_version.to_be_bytes());
        aad
    }
}

/// Appends `len(field)` in `width` bytes, then `field`. Fields here are bounded far below the
/// width's range (kinds are literals, tenants ≤ 128 bytes, ids ≤ 64 bytes).
fn push_field(out: &mut Vec<u8>, field: &[u8], width: usize) {
    let len = (field.len() as u64).to_be_bytes();
    out.extend_from_slice(&len[8 - width..]);
    out.extend_from_slice(field);
}

/// Why a record could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The sealed bytes are too short or carry an unknown format byte.
    #[error("sealed record is malformed")]
    Malformed,
    /// The record was sealed under another key version than the key offered.
    #[error("record was sealed with key version {found}, not {expected}")]
    WrongKeyVersion {
        /// The version in the record.
        found: u32,
        /// The version of the key used.
        expected: u32,
    },
    /// Authentication failed: wrong key, wrong tenant/id/kind, or tampered bytes.
    #[error("record failed authentication (wrong key or tampered data)")]
    Authentication,
    /// The cipher refused to seal (should not happen for in-bounds inputs).
    #[error("encryption failed")]
    Encrypt,
}

/// The key version a sealed record names, without opening it.
pub fn sealed_key_version(sealed: &[u8]) -> Result<u32, SealError> {
    if sealed.len() < HEADER_LEN + TAG_LEN || sealed[0] != FORMAT_V1 {
        return Err(SealError::Malformed);
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&sealed[1..5]);
    Ok(u32::from_be_bytes(v))
}

pub(crate) fn seal(
    key: &aws_lc_rs::aead::RandomizedNonceKey,
    key_version: u32,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let mut in_out = Vec::with_capacity(plaintext.len() + TAG_LEN);
    in_out.extend_from_slice(plaintext);
    let nonce = key
        .seal_in_place_append_tag(aws_lc_rs::aead::Aad::from(aad), &mut in_out)
        .map_err(|_| SealError::Encrypt)?;
    let mut out = Vec::with_capacity(HEADER_LEN + in_out.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&key_version.to_be_bytes());
    out.extend_from_slice(nonce.as_ref());
    out.extend_from_slice(&in_out);
    Ok(out)
}

pub(crate) fn open(
    key: &aws_lc_rs::aead::RandomizedNonceKey,
    key_version: u32,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, SealError> {
    let found = sealed_key_version(sealed)?;
    if found != key_version {
        return Err(SealError::WrongKeyVersion {
            found,
            expected: key_version,
        });
    }
    let nonce = aws_lc_rs::aead::Nonce::try_assume_unique_for_key(&sealed[5..HEADER_LEN])
        .map_err(|_| SealError::Malformed)?;
    let mut in_out = sealed[HEADER_LEN..].to_vec();
    let len = key
        .open_in_place(nonce, aws_lc_rs::aead::Aad::from(aad), &mut in_out)
        .map_err(|_| SealError::Authentication)?
        .len();
    in_out.truncate(len);
    Ok(in_out)
}
