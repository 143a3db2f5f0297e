//! A store's own secret: 32 random bytes, kept wrapped under the master key beside the data,
//! from which the store derives keys for its own purposes (sealing store-wide settings, keyed
//! hashes of API keys).
//!
//! Keys derived from the master key itself ([`crate::MasterKey::derive`]) change when the
//! master key is rotated; keys derived from a store secret do not, because rotation only
//! re-wraps the secret ([`Keyring::rewrap_store_secret`]), exactly as it re-wraps tenant keys.
//!
//! Wrapped form:
//!
//! ```text
//! 0x01 | nonce (12) | AES-256-GCM(secret (32)) || tag (16)
//! AAD = "agentdb/store-secret/v1" || u8 len(purpose) || purpose
//! ```

use std::fmt;

use zeroize::Zeroizing;

use crate::keyring::{Keyring, KeyringError};
use crate::master_key::hkdf_sha256;

/// The HKDF salt of [`StoreSecret::derive`].
const DERIVE_SALT: &[u8] = b"agentdb/store-secret/derive/v1";
/// The longest purpose name, in bytes (its length is written in one byte).
pub const MAX_PURPOSE_LEN: usize = 255;

/// A store's secret. Zeroized on drop; its `Debug` output hides the bytes.
pub struct StoreSecret {
    bytes: Zeroizing<[u8; 32]>,
}

impl StoreSecret {
    /// A fresh random secret from the system generator.
    pub fn generate() -> Result<Self, KeyringError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(&mut bytes[..]).map_err(|_| KeyringError::Random)?;
        Ok(Self { bytes })
    }

    /// A 256-bit key for one purpose, derived with HKDF-SHA256 (a fixed salt, `label` as the
    /// info). Distinct labels give independent keys; the same label always gives the same key.
    pub fn derive(&self, label: &str) -> Zeroizing<[u8; 32]> {
        hkdf_sha256(DERIVE_SALT, &self.bytes[..], label)
    }
}

impl fmt::Debug for StoreSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreSecret(..)")
    }
}

fn wrap_aad(purpose: &str) -> Result<Vec<u8>, KeyringError> {
    let p = purpose.as_bytes();
    let len = u8::try_from(p.len()).map_err(|_| KeyringError::CorruptStoreSecret {
        purpose: purpose.chars().take(64).collect(),
    })?;
    let mut aad = Vec::with_capacity(24 + p.len());
    aad.extend_from_slice(b"agentdb/store-secret/v1");
    aad.push(len);
    aad.extend_from_slice(p);
    Ok(aad)
}

impl Keyring {
    /// Wraps `secret` under the master key for storage, bound to `purpose` (at most
    /// [`MAX_PURPOSE_LEN`] bytes).
    pub fn wrap_store_secret(
        &self,
        purpose: &str,
        secret: &StoreSecret,
    ) -> Result<Vec<u8>, KeyringError> {
        self.wrap_bytes(&wrap_aad(purpose)?, &secret.bytes[..])
    }

    /// Unwraps a secret wrapped by [`Self::wrap_store_secret`] for the same `purpose`.
    pub fn unwrap_store_secret(
        &self,
        purpose: &str,
        wrapped: &[u8],
    ) -> Result<StoreSecret, KeyringError> {
        let corrupt = || KeyringError::CorruptStoreSecret {
            purpose: purpose.chars().take(64).collect(),
        };
        let plain = self
            .unwrap_bytes(&wrap_aad(purpose)?, wrapped)
            .ok_or_else(corrupt)?;
        let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| corrupt())?;
        Ok(StoreSecret {
            bytes: Zeroizing::new(bytes),
        })
    }

    /// Re-wraps a wrapped store secret under `new`'s master key (master-key rotation). The
    /// secret itself, and every key derived from it, does not change.
    pub fn rewrap_store_secret(
        &self,
        new: &Keyring,
        purpose: &str,
        wrapped: &[u8],
    ) -> Result<Vec<u8>, KeyringError> {
        new.wrap_store_secret(purpose, &self.unwrap_store_secret(purpose, wrapped)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MasterKey;

    fn ring() -> Keyring {
        Keyring::new(&MasterKey::generate().unwrap()).unwrap()
    }

    #[test]
    fn wrapping_round_trips_binds_the_purpose_and_survives_rewrap() {
        let (old, new) = (ring(), ring());
        let secret = StoreSecret::generate().unwrap();
        let wrapped = old.wrap_store_secret("settings", &secret).unwrap();
        assert!(!wrapped.windows(32).any(|w| w == &secret.bytes[..]));
        let back = old.unwrap_store_secret("settings", &wrapped).unwrap();
        assert_eq!(*back.derive("x"), *secret.derive("x"));
        assert!(matches!(
            old.unwrap_store_secret("other", &wrapped),
            Err(KeyringError::CorruptStoreSecret { .. })
        ));
        assert!(matches!(
            new.unwrap_store_secret("settings", &wrapped),
            Err(KeyringError::CorruptStoreSecret { .. })
        ));
        let rewrapped = old.rewrap_store_secret(&new, "settings", &wrapped).unwrap();
        let moved = new.unwrap_store_secret("settings", &rewrapped).unwrap();
        assert_eq!(*moved.derive("x"), *secret.derive("x"));
        assert!(old.unwrap_store_secret("settings", &rewrapped).is_err());
        assert!(old
            .wrap_store_secret(&"p".repeat(MAX_PURPOSE_LEN + 1), &secret)
            .is_err());
    }

    #[test]
    fn derived_keys_depend_on_label_and_secret() {
        let (a, b) = (
            StoreSecret::generate().unwrap(),
            StoreSecret::generate().unwrap(),
        );
        assert_eq!(*a.derive("l"), *a.derive("l"));
        assert_ne!(*a.derive("l"), *a.derive("m"));
        assert_ne!(*a.derive("l"), *b.derive("l"));
        // Not the master-key derivation of the same bytes: the salts differ.
        let master = MasterKey::from_bytes(*a.bytes);
        assert_ne!(*a.derive("l"), *master.derive("l"));
        assert_eq!(format!("{a:?}"), "StoreSecret(..)");
    }
}
