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
//!
//! Store-wide records, which no tenant owns (a hub's sealed settings), use the same layout
//! with [`StoreRecordAad`]: `"agentdb/store-record/v1" || u8 len(kind) || kind ||
//! u16 len(id) || id || u32 key version`. The two AAD families start with different labels, so
//! a record of one can never open as a record of the other.

use agentdb_core::TenantId;
use zeroize::Zeroizing;

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

/// What a sealed store-wide record (one no tenant owns) is bound to.
#[derive(Debug, Clone, Copy)]
pub struct StoreRecordAad<'a> {
    /// The kind of record, e.g. `"setting"`.
    pub kind: &'static str,
    /// The record's id (e.g. a setting's name), at most [`MAX_STORE_RECORD_ID_LEN`] bytes.
    pub record_id: &'a [u8],
}

/// The longest id of a store-wide record, in bytes (its length is written in two bytes).
pub const MAX_STORE_RECORD_ID_LEN: usize = u16::MAX as usize;

impl StoreRecordAad<'_> {
    fn encode(&self, key_version: u32) -> Result<Vec<u8>, SealError> {
        if self.record_id.len() > MAX_STORE_RECORD_ID_LEN {
            return Err(SealError::RecordIdTooLong {
                len: self.record_id.len(),
            });
        }
        let mut aad = Vec::with_capacity(32 + self.kind.len() + self.record_id.len());
        aad.extend_from_slice(b"agentdb/store-record/v1");
        push_field(&mut aad, self.kind.as_bytes(), 1);
        push_field(&mut aad, self.record_id, 2);
        aad.extend_from_slice(&key_version.to_be_bytes());
        Ok(aad)
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
    /// A store-wide record's id is longer than [`MAX_STORE_RECORD_ID_LEN`] bytes.
    #[error("record id of {len} bytes is too long to bind")]
    RecordIdTooLong {
        /// Its length in bytes.
        len: usize,
    },
}

/// A record key held outside a tenant keyring (an agent's spool): the same envelope, format and
/// AAD as [`crate::TenantKey::seal`], under a 256-bit key the caller owns.
pub struct RecordKey {
    aead: aws_lc_rs::aead::RandomizedNonceKey,
    version: u32,
}

impl std::fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecordKey(v{})", self.version)
    }
}

impl RecordKey {
    /// A key for AES-256-GCM from 32 secret bytes, written into records as `version`.
    pub fn new(secret: &[u8; 32], version: u32) -> Result<Self, SealError> {
        let aead = aws_lc_rs::aead::RandomizedNonceKey::new(&aws_lc_rs::aead::AES_256_GCM, secret)
            .map_err(|_| SealError::Encrypt)?;
        Ok(Self { aead, version })
    }

    /// Seals `plaintext` bound to `aad`.
    pub fn seal(&self, aad: RecordAad<'_>, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        seal(
            &self.aead,
            self.version,
            &aad.encode(self.version),
            plaintext,
        )
    }

    /// Opens a record sealed by [`Self::seal`] with the same key and `aad`.
    pub fn open(&self, aad: RecordAad<'_>, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        open(&self.aead, self.version, &aad.encode(self.version), sealed)
    }

    /// Seals a store-wide record's `plaintext` bound to `aad`.
    pub fn seal_store(
        &self,
        aad: StoreRecordAad<'_>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        seal(
            &self.aead,
            self.version,
            &aad.encode(self.version)?,
            plaintext,
        )
    }

    /// Opens a record sealed by [`Self::seal_store`] with the same key and `aad`. The
    /// plaintext is zeroized when dropped.
    pub fn open_store(
        &self,
        aad: StoreRecordAad<'_>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        open(&self.aead, self.version, &aad.encode(self.version)?, sealed).map(Zeroizing::new)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn aad<'a>(tenant: &'a TenantId, id: &'a [u8]) -> RecordAad<'a> {
        RecordAad {
            kind: "spool-episode",
            tenant,
            record_id: id,
        }
    }

    #[test]
    fn store_records_bind_kind_and_id_and_never_open_as_tenant_records() {
        let key = RecordKey::new(&[7u8; 32], 1).unwrap();
        let at = |id: &'static [u8]| StoreRecordAad {
            kind: "setting",
            record_id: id,
        };
        let sealed = key.seal_store(at(b"api-key/1"), b"hash bytes").unwrap();
        assert_eq!(sealed_key_version(&sealed).unwrap(), 1);
        assert_eq!(
            key.open_store(at(b"api-key/1"), &sealed)
                .unwrap()
                .as_slice(),
            b"hash bytes"
        );
        assert_eq!(
            key.open_store(at(b"api-key/2"), &sealed),
            Err(SealError::Authentication)
        );
        let other_kind = StoreRecordAad {
            kind: "other",
            record_id: b"api-key/1",
        };
        assert_eq!(
            key.open_store(other_kind, &sealed),
            Err(SealError::Authentication)
        );
        let acme = TenantId::new("acme").unwrap();
        let as_tenant = RecordAad {
            kind: "setting",
            tenant: &acme,
            record_id: b"api-key/1",
        };
        assert_eq!(key.open(as_tenant, &sealed), Err(SealError::Authentication));
        let long = vec![b'x'; MAX_STORE_RECORD_ID_LEN + 1];
        let too_long = StoreRecordAad {
            kind: "setting",
            record_id: &long,
        };
        assert_eq!(
            key.seal_store(too_long, b"v"),
            Err(SealError::RecordIdTooLong {
                len: MAX_STORE_RECORD_ID_LEN + 1
            })
        );
    }

    #[test]
    fn a_record_key_seals_in_the_envelope_format_and_binds_key_tenant_and_id() {
        let acme = TenantId::new("acme").unwrap();
        let key = RecordKey::new(&[7u8; 32], 1).unwrap();
        let sealed = key.seal(aad(&acme, b"id-1"), b"secret text").unwrap();
        assert_eq!(sealed[0], FORMAT_V1);
        assert_eq!(sealed_key_version(&sealed).unwrap(), 1);
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            key.open(aad(&acme, b"id-1"), &sealed).unwrap(),
            b"secret text"
        );
        assert_eq!(
            key.open(aad(&acme, b"id-2"), &sealed),
            Err(SealError::Authentication)
        );
        let globex = TenantId::new("globex").unwrap();
        assert_eq!(
            key.open(aad(&globex, b"id-1"), &sealed),
            Err(SealError::Authentication)
        );
        let other = RecordKey::new(&[8u8; 32], 1).unwrap();
        assert_eq!(
            other.open(aad(&acme, b"id-1"), &sealed),
            Err(SealError::Authentication)
        );
        assert_eq!(
            key.open(aad(&acme, b"id-1"), &sealed[..HEADER_LEN]),
            Err(SealError::Malformed)
        );
    }
}
