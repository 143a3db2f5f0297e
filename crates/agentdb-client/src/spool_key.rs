//! The key that seals an agent's spool.
//!
//! Spooled episodes are sealed with AES-256-GCM in the record envelope of
//! `agentdb_security` (the format the hub seals its rows with) under a 256-bit key the agent
//! holds. The key is given explicitly ([`crate::AgentConfig::spool_key`]) or, by default,
//! derived from the agent's client private key: HKDF-SHA256 over the key's DER (PKCS#8 or
//! whatever the PEM holds), salt `agentdb/spool-key/v1`, info `private-key`. Only an agent
//! holding the same key can read (or add to) the spool: a client certificate re-issued with a
//! new key cannot read what the old key sealed, so deployments that rotate client keys set
//! the spool key explicitly (e.g. [`SpoolKey::derive`] over a secret they keep).

use std::sync::Arc;

use aws_lc_rs::hkdf;
use zeroize::Zeroizing;

const SALT: &[u8] = b"agentdb/spool-key/v1";
const INFO_PRIVATE_KEY: &[u8] = b"private-key";
const INFO_SECRET: &[u8] = b"secret";
/// Shortest secret [`SpoolKey::derive`] accepts.
pub const MIN_SECRET_LEN: usize = 32;

/// A 256-bit key that seals an agent's spool. Cheap to clone; zeroized when the last clone is
/// dropped; never printed.
#[derive(Clone)]
pub struct SpoolKey(Arc<Zeroizing<[u8; 32]>>);

impl std::fmt::Debug for SpoolKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpoolKey(..)")
    }
}

/// Why a spool key could not be made.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolKeyError {
    /// The PEM holds no private key.
    #[error("no private key in the PEM: {reason}")]
    Pem {
        /// What the parser said.
        reason: String,
    },
    /// The secret is too short to derive a key from.
    #[error("the secret is {len} bytes; at least {min} are needed")]
    ShortSecret {
        /// Its length.
        len: usize,
        /// The least accepted.
        min: usize,
    },
    /// The key derivation failed.
    #[error("key derivation failed")]
    Derive,
}

impl SpoolKey {
    /// Uses 32 bytes as they are.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self(Arc::new(Zeroizing::new(key)))
    }

    /// Derives the key from a PEM private key (a client key, or an Ed25519 signing key): the
    /// same key always gives the same spool key.
    pub fn from_private_key_pem(pem: &[u8]) -> Result<Self, SpoolKeyError> {
        let der = agentdb_security::tls::key("spool key", pem).map_err(|e| SpoolKeyError::Pem {
            reason: e.to_string(),
        })?;
        expand(der.secret_der(), INFO_PRIVATE_KEY)
    }

    /// Derives the key from a secret of at least [`MIN_SECRET_LEN`] bytes (e.g. an HS256 token
    /// secret).
    pub fn derive(secret: &[u8]) -> Result<Self, SpoolKeyError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(SpoolKeyError::ShortSecret {
                len: secret.len(),
                min: MIN_SECRET_LEN,
            });
        }
        expand(secret, INFO_SECRET)
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

fn expand(ikm: &[u8], info: &[u8]) -> Result<SpoolKey, SpoolKeyError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(ikm);
    let info = [info];
    let okm = prk
        .expand(&info, hkdf::HKDF_SHA256)
        .map_err(|_| SpoolKeyError::Derive)?;
    let mut key = Zeroizing::new([0u8; 32]);
    okm.fill(&mut key[..]).map_err(|_| SpoolKeyError::Derive)?;
    Ok(SpoolKey(Arc::new(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_key_gives_the_same_spool_key_and_others_differ() {
        let a = agentdb_security::token::Ed25519KeyPem::generate().unwrap();
        let b = agentdb_security::token::Ed25519KeyPem::generate().unwrap();
        let ka = SpoolKey::from_private_key_pem(a.private_pem.as_bytes()).unwrap();
        let ka2 = SpoolKey::from_private_key_pem(a.private_pem.as_bytes()).unwrap();
        let kb = SpoolKey::from_private_key_pem(b.private_pem.as_bytes()).unwrap();
        assert_eq!(ka.bytes(), ka2.bytes());
        assert_ne!(ka.bytes(), kb.bytes());
        // Not the key bytes themselves, and not what the same bytes give as a plain secret.
        let secret = SpoolKey::derive(&[1u8; 32]).unwrap();
        assert_ne!(secret.bytes(), &[1u8; 32]);
        assert_ne!(
            SpoolKey::derive(&[1u8; 32]).unwrap().bytes(),
            SpoolKey::derive(&[2u8; 32]).unwrap().bytes()
        );
        assert!(matches!(
            SpoolKey::derive(b"short"),
            Err(SpoolKeyError::ShortSecret { len: 5, min: 32 })
        ));
        assert!(matches!(
            SpoolKey::from_private_key_pem(b"not a pem"),
            Err(SpoolKeyError::Pem { .. })
        ));
        assert_eq!(format!("{ka:?}"), "SpoolKey(..)");
    }
}
