//! Per-tenant data keys wrapped by the master key.
//!
//! Each tenant has one or more key versions. A version holds two secrets, generated together:
//! the data key (DEK) that seals records and a hash key for keyed hashes of clear-text-free
//! grouping (e.g. "same task"). Rotation makes a new version with a new DEK and the *same* hash
//! key, so groupings survive rotation; old versions stay readable.
//!
//! Wrapped form (what storage holds), sealed with AES-256-GCM under the master key:
//!
//! ```text
//! 0x01 | nonce (12) | AES-256-GCM(DEK (32) || hash key (32)) || tag (16)
//! AAD = "agentdb/tenant-key/v1" || u16 len(tenant) || tenant || u32 version
//! ```
//!
//! A check value (a fixed string sealed under the master key) lets a store detect a wrong master
//! key before it touches any data.

use std::fmt;

use agentdb_core::TenantId;
use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM};
use aws_lc_rs::hmac;
use zeroize::Zeroizing;

use crate::envelope::{self, RecordAad, SealError};
use crate::master_key::MasterKey;

const WRAP_FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const SECRET_LEN: usize = 64;
const CHECK_PLAINTEXT: &[u8] = b"agentdb master key check v1";
const CHECK_AAD: &[u8] = b"agentdb/master-key-check/v1";

/// Why a key could not be generated, wrapped or unwrapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// The master key does not match the one the data was written with.
    #[error("the master key does not match the one this data was written with")]
    WrongMasterKey,
    /// A wrapped key is corrupt or was wrapped for another tenant or version.
    #[error("wrapped key for tenant {tenant} version {version} is corrupt or misplaced")]
    CorruptWrappedKey {
        /// The tenant.
        tenant: TenantId,
        /// The key version.
        version: u32,
    },
    /// The wrapped store secret is corrupt or was wrapped for another purpose.
    #[error("wrapped store secret {purpose:?} is corrupt or misplaced")]
    CorruptStoreSecret {
        /// The purpose it was unwrapped for.
        purpose: String,
    },
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// The cipher failed to seal (should not happen).
    #[error("key wrapping failed")]
    Wrap,
}

/// A tenant key version as stored: opaque bytes sealed under the master key.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedTenantKey {
    /// The key version (1, 2, …).
    pub version: u32,
    /// The sealed key material.
    pub bytes: Vec<u8>,
}

impl WrappedTenantKey {
    /// SHA-256 of the wrapped key, lower-case hex: names this key version (in an erasure
    /// receipt, say) without revealing anything that opens it.
    pub fn fingerprint(&self) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.bytes);
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for WrappedTenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WrappedTenantKey(v{}, {} bytes)",
            self.version,
            self.bytes.len()
        )
    }
}

/// One unwrapped key version of one tenant. Secret material is zeroized on drop (AWS-LC
/// cleanses its own key schedules when they are freed).
pub struct TenantKey {
    tenant: TenantId,
    version: u32,
    aead: RandomizedNonceKey,
    hash: hmac::Key,
    secret: Zeroizing<[u8; SECRET_LEN]>,
}

impl fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantKey({}, v{})", self.tenant, self.version)
    }
}

impl TenantKey {
    fn from_secret(
        tenant: TenantId,
        version: u32,
        secret: Zeroizing<[u8; SECRET_LEN]>,
    ) -> Result<Self, KeyringError> {
        let aead =
            RandomizedNonceKey::new(&AES_256_GCM, &secret[..32]).map_err(|_| KeyringError::Wrap)?;
        let hash = hmac::Key::new(hmac::HMAC_SHA256, &secret[32..]);
        Ok(Self {
            tenant,
            version,
            aead,
            hash,
            secret,
        })
    }

    /// The tenant this key belongs to.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The key version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Seals `plaintext` bound to `aad`. See the envelope format in the crate docs.
    pub fn seal(&self, aad: RecordAad<'_>, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        self.check_tenant(&aad)?;
        envelope::seal(
            &self.aead,
            self.version,
            &aad.encode(self.version),
            plaintext,
        )
    }

    /// Opens a record sealed by [`Self::seal`] with the same `aad`.
    pub fn open(&self, aad: RecordAad<'_>, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        self.check_tenant(&aad)?;
        envelope::open(&self.aead, self.version, &aad.encode(self.version), sealed)
    }

    fn check_tenant(&self, aad: &RecordAad<'_>) -> Result<(), SealError> {
        // A key is only ever used for its own tenant; a mismatch is a caller bug that would
        // otherwise surface as an authentication failure.
        if aad.tenant == &self.tenant {
            Ok(())
        } else {
            Err(SealError::Authentication)
        }
    }

    /// A 16-byte keyed hash (HMAC-SHA256, truncated) of `data`, stable across key rotation.
    /// Equal inputs give equal hashes within a tenant; nothing about `data` can be learnt from
    /// it without the key.
    pub fn keyed_hash(&self, data: &[u8]) -> [u8; 16] {
        let tag = hmac::sign(&self.hash, data);
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag.as_ref()[..16]);
        out
    }
}

/// Wraps and unwraps tenant keys with the master key.
pub struct Keyring {
    kek: RandomizedNonceKey,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keyring(..)")
    }
}

impl Keyring {
    /// A keyring using `master` as the key-encryption key.
    pub fn new(master: &MasterKey) -> Result<Self, KeyringError> {
        let kek = RandomizedNonceKey::new(&AES_256_GCM, master.bytes())
            .map_err(|_| KeyringError::Wrap)?;
        Ok(Self { kek })
    }

    /// A check value to store beside the data; [`Self::verify_check_value`] later tells whether
    /// the same master key is in use.
    pub fn check_value(&self) -> Result<Vec<u8>, KeyringError> {
        self.wrap_bytes(CHECK_AAD, CHECK_PLAINTEXT)
    }

    /// Fails with [`KeyringError::WrongMasterKey`] unless `check` was made by this master key.
    pub fn verify_check_value(&self, check: &[u8]) -> Result<(), KeyringError> {
        match self.unwrap_bytes(CHECK_AAD, check) {
            Some(p) if p.as_slice() == CHECK_PLAINTEXT => Ok(()),
            _ => Err(KeyringError::WrongMasterKey),
        }
    }

    /// A new first key version (1) for `tenant`, and its wrapped form for storage.
    pub fn generate(
        &self,
        tenant: &TenantId,
    ) -> Result<(TenantKey, WrappedTenantKey), KeyringError> {
        let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
        aws_lc_rs::rand::fill(&mut secret[..]).map_err(|_| KeyringError::Random)?;
        self.finish(tenant.clone(), 1, secret)
    }

    /// The next key version after `current`: a fresh data key, the same hash key.
    pub fn rotate(
        &self,
        current: &TenantKey,
    ) -> Result<(TenantKey, WrappedTenantKey), KeyringError> {
        let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
        aws_lc_rs::rand::fill(&mut secret[..32]).map_err(|_| KeyringError::Random)?;
        secret[32..].copy_from_slice(&current.secret[32..]);
        self.finish(current.tenant.clone(), current.version + 1, secret)
    }

    fn finish(
        &self,
        tenant: TenantId,
        version: u32,
        secret: Zeroizing<[u8; SECRET_LEN]>,
    ) -> Result<(TenantKey, WrappedTenantKey), KeyringError> {
        let bytes = self.wrap_bytes(&wrap_aad(&tenant, version), &secret[..])?;
        let key = TenantKey::from_secret(tenant, version, secret)?;
        Ok((key, WrappedTenantKey { version, bytes }))
    }

    /// Unwraps a stored key version of `tenant`.
    pub fn unwrap(
        &self,
        tenant: &TenantId,
        wrapped: &WrappedTenantKey,
    ) -> Result<TenantKey, KeyringError> {
        let plain = self
            .unwrap_bytes(&wrap_aad(tenant, wrapped.version), &wrapped.bytes)
            .ok_or_else(|| KeyringError::CorruptWrappedKey {
                tenant: tenant.clone(),
                version: wrapped.version,
            })?;
        let secret: [u8; SECRET_LEN] =
            plain
                .as_slice()
                .try_into()
                .map_err(|_| KeyringError::CorruptWrappedKey {
                    tenant: tenant.clone(),
                    version: wrapped.version,
                })?;
        TenantKey::from_secret(tenant.clone(), wrapped.version, Zeroizing::new(secret))
    }

    /// Re-wraps a key version under `new`'s master key (master-key rotation). The data key
    /// itself does not change, so no record needs re-encrypting.
    pub fn rewrap(
        &self,
        new: &Keyring,
        tenant: &TenantId,
        wrapped: &WrappedTenantKey,
    ) -> Result<WrappedTenantKey, KeyringError> {
        let key = self.unwrap(tenant, wrapped)?;
        let bytes = new.wrap_bytes(&wrap_aad(tenant, wrapped.version), &key.secret[..])?;
        Ok(WrappedTenantKey {
            version: wrapped.version,
            bytes,
        })
    }

    pub(crate) fn wrap_bytes(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, KeyringError> {
        let mut in_out = Zeroizing::new(plaintext.to_vec());
        let nonce = self
            .kek
            .seal_in_place_append_tag(Aad::from(aad), &mut *in_out)
            .map_err(|_| KeyringError::Wrap)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        out.push(WRAP_FORMAT_V1);
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&in_out);
        Ok(out)
    }

    pub(crate) fn unwrap_bytes(&self, aad: &[u8], wrapped: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if wrapped.len() < 1 + NONCE_LEN + 16 || wrapped[0] != WRAP_FORMAT_V1 {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&wrapped[1..1 + NONCE_LEN]).ok()?;
        let mut in_out = Zeroizing::new(wrapped[1 + NONCE_LEN..].to_vec());
        let len = self
            .kek
            .open_in_place(nonce, Aad::from(aad), &mut in_out[..])
            .ok()?
            .len();
        in_out.truncate(len);
        Some(in_out)
    }
}

fn wrap_aad(tenant: &TenantId, version: u32) -> Vec<u8> {
    let t = tenant.as_str().as_bytes();
    let mut aad = Vec::with_capacity(32 + t.len());
    aad.extend_from_slice(b"agentdb/tenant-key/v1");
    aad.extend_from_slice(&(t.len() as u16).to_be_bytes());
    aad.extend_from_slice(t);
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sealed_key_version;

    fn tenant(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    fn ring() -> Keyring {
        Keyring::new(&MasterKey::generate().unwrap()).unwrap()
    }

    fn aad<'a>(t: &'a TenantId, id: &'a [u8]) -> RecordAad<'a> {
        RecordAad {
            kind: "episode",
            tenant: t,
            record_id: id,
        }
    }

    #[test]
    fn seal_open_round_trip_and_binding() {
        let ring = ring();
        let acme = tenant("acme");
        let (key, _) = ring.generate(&acme).unwrap();
        let sealed = key.seal(aad(&acme, b"id-1"), b"secret text").unwrap();
        assert_eq!(sealed_key_version(&sealed).unwrap(), 1);
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            key.open(aad(&acme, b"id-1"), &sealed).unwrap(),
            b"secret text"
        );
        // Another id, another kind, or a flipped bit: refused.
        assert_eq!(
            key.open(aad(&acme, b"id-2"), &sealed),
            Err(SealError::Authentication)
        );
        let other_kind = RecordAad {
            kind: "snapshot",
            ..aad(&acme, b"id-1")
        };
        assert_eq!(
            key.open(other_kind, &sealed),
            Err(SealError::Authentication)
        );
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            key.open(aad(&acme, b"id-1"), &tampered),
            Err(SealError::Authentication)
        );
        assert_eq!(
            key.open(aad(&acme, b"id-1"), &sealed[..10]),
            Err(SealError::Malformed)
        );
    }

    #[test]
    fn nonces_are_random() {
        let ring = ring();
        let acme = tenant("acme");
        let (key, _) = ring.generate(&acme).unwrap();
        let a = key.seal(aad(&acme, b"x"), b"same").unwrap();
        let b = key.seal(aad(&acme, b"x"), b"same").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn tenants_keys_are_independent() {
        let ring = ring();
        let (a, b) = (tenant("a"), tenant("b"));
        let (ka, _) = ring.generate(&a).unwrap();
        let (kb, _) = ring.generate(&b).unwrap();
        let sealed = ka.seal(aad(&a, b"1"), b"data").unwrap();
        // B's key cannot open A's record, even when asked about tenant A.
        assert!(kb.open(aad(&a, b"1"), &sealed).is_err());
        assert!(kb.open(aad(&b, b"1"), &sealed).is_err());
        assert_ne!(ka.keyed_hash(b"task"), kb.keyed_hash(b"task"));
    }

    #[test]
    fn wrap_unwrap_rotate_rewrap() {
        let ring = ring();
        let acme = tenant("acme");
        let (k1, w1) = ring.generate(&acme).unwrap();
        let sealed1 = k1.seal(aad(&acme, b"1"), b"old").unwrap();
        let (k2, w2) = ring.rotate(&k1).unwrap();
        assert_eq!(k2.version(), 2);
        assert_eq!(k1.keyed_hash(b"t"), k2.keyed_hash(b"t"));
        let sealed2 = k2.seal(aad(&acme, b"2"), b"new").unwrap();
        assert!(matches!(
            k2.open(aad(&acme, b"1"), &sealed1),
            Err(SealError::WrongKeyVersion {
                found: 1,
                expected: 2
            })
        ));

        // Master-key rotation: rewrap both versions; both records still open.
        let new_ring = self::ring();
        let r1 = ring.rewrap(&new_ring, &acme, &w1).unwrap();
        let r2 = ring.rewrap(&new_ring, &acme, &w2).unwrap();
        assert!(ring.unwrap(&acme, &r1).is_err());
        let u1 = new_ring.unwrap(&acme, &r1).unwrap();
        let u2 = new_ring.unwrap(&acme, &r2).unwrap();
        assert_eq!(u1.open(aad(&acme, b"1"), &sealed1).unwrap(), b"old");
        assert_eq!(u2.open(aad(&acme, b"2"), &sealed2).unwrap(), b"new");

        // A wrapped key moved to another tenant or version does not unwrap.
        assert!(matches!(
            ring.unwrap(&tenant("evil"), &w1),
            Err(KeyringError::CorruptWrappedKey { .. })
        ));
        let moved = WrappedTenantKey {
            version: 7,
            bytes: w1.bytes.clone(),
        };
        assert!(ring.unwrap(&acme, &moved).is_err());
    }

    #[test]
    fn check_value_detects_wrong_master_key() {
        let a = ring();
        let b = ring();
        let check = a.check_value().unwrap();
        assert_eq!(a.verify_check_value(&check), Ok(()));
        assert_eq!(
            b.verify_check_value(&check),
            Err(KeyringError::WrongMasterKey)
        );
        assert_eq!(
            a.verify_check_value(b"junk"),
            Err(KeyringError::WrongMasterKey)
        );
    }
}
