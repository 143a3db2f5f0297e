//! Signing bytes with a hub's certificate key, and checking such signatures.
//!
//! A hub signs statements about its own state (audit checkpoints, erasure receipts) with the
//! private key of its certificate, so that anyone holding the certificate, and the CA that
//! issued it, can check them later without any secret:
//!
//! ```text
//! HubSigner::from_pem(hub.pem, hub.key) ── sign(message) ──► ECDSA P-256 / SHA-256 signature (ASN.1 DER)
//!                                                                     │
//! verify_signature(hub certificate DER, message, signature) ◄─────────┘
//! verify_issued_by(hub certificate DER, CA certificate DER, now)   the certificate is the CA's
//! ```
//!
//! Messages are plain bytes: callers build a canonical byte string (with a purpose prefix
//! such as `agentdb-audit/checkpoint/v1`, so that a signature made for one purpose can never
//! be presented as one for another) and sign or verify that. All keys are ECDSA P-256, as
//! issued by [`crate::ca`].

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1,
    ECDSA_P256_SHA256_ASN1_SIGNING,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ECDSA_WITH_SHA256,
};
use x509_parser::x509::SubjectPublicKeyInfo;
use zeroize::Zeroizing;

/// Why a [`HubSigner`] could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// A certificate or key file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The certificate is not a PEM or DER X.509 certificate with an ECDSA P-256 key.
    #[error("the certificate is unusable: {0}")]
    Certificate(#[from] SignatureError),
    /// The private key is not a PKCS#8 PEM ECDSA P-256 key.
    #[error("the private key is malformed: {reason}")]
    BadKey {
        /// What is wrong.
        reason: String,
    },
    /// The private key does not belong to the certificate.
    #[error("the private key does not match the certificate")]
    KeyMismatch,
}

/// Why a signature or certificate did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The bytes are not an X.509 certificate (PEM or DER).
    #[error("malformed certificate: {reason}")]
    BadCertificate {
        /// What the parser reported.
        reason: String,
    },
    /// The certificate's key is not an ECDSA P-256 key, or its signature is not
    /// ECDSA with SHA-256.
    #[error("unsupported algorithm: {what}")]
    UnsupportedAlgorithm {
        /// Which algorithm is unsupported.
        what: &'static str,
    },
    /// The signature does not match the message and key.
    #[error("the signature does not verify")]
    Invalid,
    /// The certificate was not signed by the given CA.
    #[error("the certificate was not issued by this CA")]
    NotIssuedBy,
    /// The issuer certificate is not a CA certificate.
    #[error("the issuer certificate is not a CA certificate")]
    NotACa,
    /// The certificate is not valid at the time given.
    #[error("the certificate is not valid at unix {at} (valid from unix {not_before} to unix {not_after})")]
    OutsideValidity {
        /// The time checked, in Unix seconds.
        at: i64,
        /// Start of the validity window, in Unix seconds.
        not_before: i64,
        /// End of the validity window, in Unix seconds.
        not_after: i64,
    },
    /// The system could not produce a signature (random number generator failure).
    #[error("signing failed")]
    SigningFailed,
}

/// A hub's signing key: the private key of its certificate, with the certificate.
///
/// Signatures are ECDSA P-256 with SHA-256, ASN.1 DER encoded (about 70 bytes); they verify
/// with [`verify_signature`] against [`HubSigner::certificate_der`].
pub struct HubSigner {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    fingerprint: String,
}

impl HubSigner {
    /// Loads the signer from the hub's certificate (PEM) and its PKCS#8 private key (PEM),
    /// checking that the key belongs to the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, SignerError> {
        let cert_der = certificate_der(cert_pem.as_bytes())?;
        let key_der = pem_block(key_pem.as_bytes(), "PRIVATE KEY")
            .map(Zeroizing::new)
            .map_err(|reason| SignerError::BadKey { reason })?;
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key_der).map_err(|e| {
                SignerError::BadKey {
                    reason: e.to_string(),
                }
            })?;
        let cert = parse(&cert_der)?;
        let public = p256_public_key(cert.public_key())?;
        if key.public_key().as_ref() != public {
            return Err(SignerError::KeyMismatch);
        }
        let fingerprint = certificate_fingerprint(&cert_der);
        Ok(Self {
            key,
            cert_der,
            fingerprint,
        })
    }

    /// Loads the signer from a certificate file and a key file (both PEM).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, SignerError> {
        let read = |path: &Path| {
            fs::read_to_string(path)
                .map(Zeroizing::new)
                .map_err(|source| SignerError::Read {
                    path: path.to_owned(),
                    source,
                })
        };
        let cert_pem = read(cert_path)?;
        let key_pem = read(key_path)?;
        Self::from_pem(&cert_pem, &key_pem)
    }

    /// Signs `message`: ECDSA P-256 over its SHA-256, ASN.1 DER encoded.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignatureError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.key
            .sign(&rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| SignatureError::SigningFailed)
    }

    /// The signer's certificate, DER-encoded.
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The lowercase hex SHA-256 of the certificate's DER ([`certificate_fingerprint`]).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

impl fmt::Debug for HubSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSigner")
            .field("fingerprint", &self.fingerprint)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// Checks that `signature` (ECDSA P-256 / SHA-256, ASN.1 DER, as made by [`HubSigner::sign`])
/// is a signature of `message` by the key of the certificate `cert_der`.
///
/// Only the signature is checked, not the certificate: use [`verify_issued_by`] to check that
/// the certificate comes from a trusted CA and was valid when the message was signed.
pub fn verify_signature(
    cert_der: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let cert = parse(cert_der)?;
    let public = p256_public_key(cert.public_key())?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public)
        .verify(message, signature)
        .map_err(|_| SignatureError::Invalid)
}

/// Checks that the certificate `cert_der` was signed by the CA certificate `ca_der` (which
/// must be a CA certificate with an ECDSA P-256 key) and that both are valid at `now_unix`
/// (Unix seconds).
///
/// To check a signature made in the past, pass the time it was made: a certificate that has
/// expired since still vouches for what it signed while it was valid.
pub fn verify_issued_by(
    cert_der: &[u8],
    ca_der: &[u8],
    now_unix: i64,
) -> Result<(), SignatureError> {
    let cert = parse(cert_der)?;
    let ca = parse(ca_der)?;
    let is_ca = ca
        .basic_constraints()
        .map_err(|e| SignatureError::BadCertificate {
            reason: e.to_string(),
        })?
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err(SignatureError::NotACa);
    }
    if cert.signature_algorithm.algorithm != OID_SIG_ECDSA_WITH_SHA256 {
        return Err(SignatureError::UnsupportedAlgorithm {
            what: "the certificate's signature is not ECDSA with SHA-256",
        });
    }
    let ca_key = p256_public_key(ca.public_key())?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, ca_key)
        .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
        .map_err(|_| SignatureError::NotIssuedBy)?;
    if cert.issuer() != ca.subject() {
        return Err(SignatureError::NotIssuedBy);
    }
    for c in [&cert, &ca] {
        let not_before = c.validity().not_before.timestamp();
        let not_after = c.validity().not_after.timestamp();
        if now_unix < not_before || now_unix > not_after {
            return Err(SignatureError::OutsideValidity {
                at: now_unix,
                not_before,
                not_after,
            });
        }
    }
    Ok(())
}

/// The lowercase hex SHA-256 of a certificate's DER: a short name for the key that signed
/// something.
pub fn certificate_fingerprint(cert_der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert_der);
    let mut hex = String::with_capacity(64);
    for b in digest.as_ref() {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A certificate given as PEM (the first `CERTIFICATE` block) or DER, as DER.
pub fn certificate_der(bytes: &[u8]) -> Result<Vec<u8>, SignatureError> {
    let der = if bytes.trim_ascii_start().starts_with(b"-----") {
        pem_block(bytes, "CERTIFICATE")
            .map_err(|reason| SignatureError::BadCertificate { reason })?
    } else {
        bytes.to_vec()
    };
    parse(&der)?;
    Ok(der)
}

/// The contents of the first PEM block of `bytes`, which must carry `label`.
fn pem_block(bytes: &[u8], label: &str) -> Result<Vec<u8>, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(bytes).map_err(|e| e.to_string())?;
    if pem.label != label {
        return Err(format!(
            "expected a {label} PEM block, found {:?}",
            pem.label
        ));
    }
    Ok(pem.contents)
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, SignatureError> {
    let (rest, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| SignatureError::BadCertificate {
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(SignatureError::BadCertificate {
            reason: "trailing bytes after the certificate".to_owned(),
        });
    }
    Ok(cert)
}

/// The uncompressed point of a P-256 public key.
fn p256_public_key<'a>(spki: &'a SubjectPublicKeyInfo<'_>) -> Result<&'a [u8], SignatureError> {
    let unsupported = SignatureError::UnsupportedAlgorithm {
        what: "the certificate's key is not an ECDSA P-256 key",
    };
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
        return Err(unsupported);
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    if curve.as_ref() != Some(&OID_EC_P256) {
        return Err(unsupported);
    }
    Ok(&spki.subject_public_key.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_hex_sha256() {
        // SHA-256 of the empty string.
        assert_eq!(
            certificate_fingerprint(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(matches!(
            certificate_der(b"not a certificate"),
            Err(SignatureError::BadCertificate { .. })
        ));
        assert!(matches!(
            verify_signature(b"\x30\x03\x02\x01\x00", b"m", b"s"),
            Err(SignatureError::BadCertificate { .. })
        ));
    }
}
