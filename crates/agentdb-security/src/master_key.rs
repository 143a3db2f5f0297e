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

    pub(crate) fn bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.bytes
    }
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
