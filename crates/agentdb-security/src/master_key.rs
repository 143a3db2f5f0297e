//! The master key (key-encryption key, KEK) that wraps every tenant's data key.
//!
//! It comes from the environment (`AGENTDB_MASTER_KEY`, base64 of 32 bytes) or from a key file
//! created on first use with mode 0600. The file holds the same base64 text. The raw bytes are
//! zeroized when the key is dropped.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::file::{write_private_file, FileError};

/// The environment variable that holds the master key, base64-encoded.
pub const MASTER_KEY_ENV: &str = "AGENTDB_MASTER_KEY";

/// Length of the master key in bytes (AES-256).
pub const MASTER_KEY_LEN: usize = 32;

/// Why a master key could not be obtained.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MasterKeyError {
    /// The text is not base64 of exactly 32 bytes.
    #[error("{origin} must be base64 of exactly 32 bytes")]
    Malformed {
        /// Where the text came from (variable or file name).
        origin: String,
    },
    /// The key file could not be read.
    #[error("cannot read master key file {}: {source}", path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The key file could not be created.
    #[error(transparent)]
    Write(#[from] FileError),
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// A 256-bit key-encryption key. Zeroized on drop; its `Debug` output hides the bytes.
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<[u8; MASTER_KEY_LEN]>,
}

impl MasterKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> Self {
        Self {
            bytes: Zeroizing::new(bytes),
        }
    }

    /// A fresh random key from the system generator.
    pub fn generate() -> Result<Self, MasterKeyError> {
        let mut bytes = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        aws_lc_rs::rand::fill(&mut bytes[..]).map_err(|_| MasterKeyError::Random)?;
        Ok(Self { bytes })
    }

    /// Parses base64 text (surrounding whitespace ignored). `origin` names the source in errors.
    pub fn from_base64(text: &str, origin: &str) -> Result<Self, MasterKeyError> {
        let malformed = || MasterKeyError::Malformed {
            origin: origin.to_owned(),
        };
        let decoded = Zeroizing::new(B64.decode(text.trim()).map_err(|_| malformed())?);
        let bytes: [u8; MASTER_KEY_LEN] = decoded.as_slice().try_into().map_err(|_| malformed())?;
        Ok(Self::from_bytes(bytes))
    }

    /// The key as base64 text. Handle with care: this is the secret.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(B64.encode(&self.bytes[..]))
    }

    /// Reads the key file at `path`, creating it (mode 0600, random key) if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, MasterKeyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let text = Zeroizing::new(text);
                Self::from_base64(&text, &path.display().to_string())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                match write_private_file(path, key.to_base64().as_bytes(), false) {
                    Ok(()) => Ok(key),
                    // Another process created it first: use theirs.
                    Err(FileError::Exists { .. }) => Self::load_or_create(path),
                    Err(e) => Err(e.into()),
                }
            }
            Err(source) => Err(MasterKeyError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// The key from `AGENTDB_MASTER_KEY` when it is set, else from (or created at) `key_file`.
    pub fn from_env_or_file(key_file: &Path) -> Result<Self, MasterKeyError> {
        match std::env::var(MASTER_KEY_ENV) {
            Ok(text) => Self::from_base64(&Zeroizing::new(text), MASTER_KEY_ENV),
            Err(_) => Self::load_or_create(key_file),
        }
    }

    /// A 256-bit key for one purpose, derived from this key with HKDF-SHA256 (a fixed salt,
    /// `label` as the info). Distinct labels give independent keys; the same label always gives
    /// the same key. The derived key changes when the master key does, so it suits only
    /// purposes whose data can be re-sealed or discarded on master-key rotation.
    pub fn derive(&self, label: &str) -> Zeroizing<[u8; 32]> {
        hkdf_sha256(MASTER_DERIVE_SALT, &self.bytes[..], label)
    }

    pub(crate) fn bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.bytes
    }
}

/// The HKDF salt of [`MasterKey::derive`].
const MASTER_DERIVE_SALT: &[u8] = b"agentdb/master-key/derive/v1";

/// HKDF-SHA256 (RFC 5869) of `ikm` with `salt`, `label` as the info, 32 bytes of output.
pub(crate) fn hkdf_sha256(salt: &[u8], ikm: &[u8], label: &str) -> Zeroizing<[u8; 32]> {
    use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
    let mut out = Zeroizing::new([0u8; 32]);
    let info = [label.as_bytes()];
    // `expand` and `fill` fail only when more than 255 hash lengths are asked for; 32 bytes are
    // one. Should it ever fail, the output stays zero and the caller's keys would be useless, so
    // make that impossible to miss in tests and debug builds.
    let filled = Salt::new(HKDF_SHA256, salt)
        .extract(ikm)
        .expand(&info, HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut out[..]));
    debug_assert!(filled.is_ok(), "HKDF of 32 bytes cannot fail");
    out
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_errors() {
        let k = MasterKey::generate().unwrap();
        let again = MasterKey::from_base64(&k.to_base64(), "test").unwrap();
        assert_eq!(k.bytes(), again.bytes());
        assert!(matches!(
            MasterKey::from_base64("c2hvcnQ=", "test"),
            Err(MasterKeyError::Malformed { .. })
        ));
        assert!(matches!(
            MasterKey::from_base64("!!!", "test"),
            Err(MasterKeyError::Malformed { .. })
        ));
        assert_eq!(format!("{k:?}"), "MasterKey(..)");
    }

    #[test]
    fn derived_keys_are_stable_per_label_and_distinct_across_labels_and_masters() {
        let k = MasterKey::from_bytes([7u8; MASTER_KEY_LEN]);
        let a = k.derive("api-key-hash");
        assert_eq!(*a, *k.derive("api-key-hash"));
        assert_ne!(*a, *k.derive("sealed-settings"));
        assert_ne!(*a, *k.derive(""));
        assert_ne!(
            *a,
            *MasterKey::from_bytes([8u8; MASTER_KEY_LEN]).derive("api-key-hash")
        );
        // Not the master key itself, and not the zero key an unnoticed failure would leave.
        assert_ne!(*a, [7u8; 32]);
        assert_ne!(*a, [0u8; 32]);
    }

    #[test]
    fn hkdf_is_rfc_5869_extract_then_expand() {
        // Recomputed from its definition with plain HMAC-SHA256: PRK = HMAC(salt, IKM),
        // OKM = T(1) = HMAC(PRK, info || 0x01) for 32 bytes of output.
        let (salt, ikm, info) = (b"a salt".as_slice(), [0x0bu8; 22], "a purpose");
        let hmac = |key: &[u8], data: &[u8]| {
            aws_lc_rs::hmac::sign(
                &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
                data,
            )
        };
        let prk = hmac(salt, &ikm);
        let t1 = hmac(prk.as_ref(), &[info.as_bytes(), &[1u8]].concat());
        assert_eq!(&hkdf_sha256(salt, &ikm, info)[..], t1.as_ref());
    }

    #[test]
    fn key_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let a = MasterKey::load_or_create(&path).unwrap();
        let b = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(a.bytes(), b.bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn corrupt_key_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            MasterKey::load_or_create(&path),
            Err(MasterKeyError::Malformed { .. })
        ));
    }
}
