//! Shared pieces of the fuzz targets: a reference model of the frame format, the fixed token keys
//! and tokens, and helpers to check that a decoded value survives re-encoding.
//!
//! The keys below exist only for fuzzing; nothing else trusts them.

use std::fmt::Debug;
use std::sync::OnceLock;

use agentdb_core::{AgentId, TenantId};
use agentdb_proto::{Frame, FrameError};
use agentdb_security::token::{Claims, Scope, TokenIssuer, TokenVerifier, MAX_CLOCK_SKEW_SECS};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/// A frame made from fuzz input: kind from the first two bytes of `rest`, body the rest, and
/// the version mostly the current one (bit 1 of `selector` clear), else taken from the
/// selector's upper bits. `None` when `rest` is too short for a kind.
pub fn frame_from(selector: u8, rest: &[u8]) -> Option<Frame> {
    let (kind, body) = rest.split_first_chunk::<2>()?;
    let version = if selector & 2 == 0 {
        agentdb_proto::PROTOCOL_VERSION
    } else {
        u16::from(selector >> 2)
    };
    Some(Frame {
        kind: u16::from_be_bytes(*kind),
        version,
        body: body.to_vec(),
    })
}

/// What the reference model says a whole byte stream is: the frames it holds, then how it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelOutcome {
    /// The complete frames, in order.
    pub frames: Vec<Frame>,
    /// `Ok(n)`: no error, `n` bytes of an unfinished frame left over. `Err(e)`: the stream
    /// fails with `e` after `frames`.
    pub end: Result<usize, FrameError>,
}

/// Splits `stream` into frames the simplest possible way, all bytes at once. The format is
/// documented in `crates/agentdb-proto/src/frame.rs`.
pub fn model_frames(stream: &[u8], max_len: usize) -> ModelOutcome {
    let max_len = max_len.min(agentdb_proto::MAX_FRAME_LEN);
    let mut frames = Vec::new();
    let mut rest = stream;
    loop {
        if rest.len() < 4 {
            return ModelOutcome {
                frames,
                end: Ok(rest.len()),
            };
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len > max_len {
            return ModelOutcome {
                frames,
                end: Err(FrameError::TooLarge { len, max: max_len }),
            };
        }
        if len < 4 {
            return ModelOutcome {
                frames,
                end: Err(FrameError::TooShort { len }),
            };
        }
        if rest.len() < 4 + len {
            return ModelOutcome {
                frames,
                end: Ok(rest.len()),
            };
        }
        frames.push(Frame {
            kind: u16::from_be_bytes([rest[4], rest[5]]),
            version: u16::from_be_bytes([rest[6], rest[7]]),
            body: rest[8..4 + len].to_vec(),
        });
        rest = &rest[4 + len..];
    }
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// Checks that a decoded message survives re-encoding: `encode(decode(encode(m)))` is
/// `encode(m)` byte for byte, and the value decoded again equals `m` (compared through `Debug`
/// when `PartialEq` cannot say, i.e. when a float is NaN).
pub fn assert_reencodes<M: Debug + PartialEq>(
    first: &M,
    encode: impl Fn(&M) -> Vec<u8>,
    decode: impl Fn(&[u8]) -> Result<M, agentdb_proto::DecodeError>,
) {
    let bytes = encode(first);
    let second = match decode(&bytes) {
        Ok(m) => m,
        Err(e) => panic!("a decoded message does not decode after re-encoding: {e}\n{first:?}"),
    };
    let again = encode(&second);
    assert_eq!(bytes, again, "re-encoding is not stable");
    if first != &second {
        assert_eq!(
            format!("{first:?}"),
            format!("{second:?}"),
            "the value changed through re-encoding"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

/// The HS256 secret of the fuzzing verifier.
pub const HS256_SECRET: &[u8] = b"fuzzing-only hs256 secret, 32+ bytes long";

/// The Ed25519 private key (PKCS#8) of the fuzzing issuer.
pub const ED25519_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIBVxwLx31ajIpxL204t1gi+vYvGVUatUR7Cjjiltkuo9
-----END PRIVATE KEY-----
";

/// Its public key.
pub const ED25519_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAsRrWCavn6835izMz2PEkuWgoVq5vk9Xc0c60J17lJNc=
-----END PUBLIC KEY-----
";

/// When the fixed tokens were issued.
pub const IAT: u64 = 1_700_000_000;
/// Their lifetime.
pub const TTL: u64 = 300;
/// The verifier's clock in the fuzz targets: inside the fixed tokens' lifetime.
pub const NOW: u64 = IAT + 1;

/// The fixed verifiers, keys and valid tokens.
pub struct Tokens {
    /// Accepts HS256 tokens signed with [`HS256_SECRET`].
    pub hs256: TokenVerifier,
    /// Accepts EdDSA tokens signed with [`ED25519_PRIVATE_PEM`].
    pub eddsa: TokenVerifier,
    /// The Ed25519 key, to sign arbitrary payloads.
    pub ed_key: Ed25519KeyPair,
    /// The claims of the valid tokens.
    pub claims: Claims,
    /// A valid HS256 token with [`Tokens::claims`].
    pub hs256_token: String,
    /// A valid EdDSA token with [`Tokens::claims`].
    pub eddsa_token: String,
}

impl Tokens {
    /// The verifier for `alg` (`true`: EdDSA).
    pub fn verifier(&self, eddsa: bool) -> &TokenVerifier {
        if eddsa {
            &self.eddsa
        } else {
            &self.hs256
        }
    }

    /// The valid token for `alg` (`true`: EdDSA).
    pub fn token(&self, eddsa: bool) -> &str {
        if eddsa {
            &self.eddsa_token
        } else {
            &self.hs256_token
        }
    }

    /// A JWT with exactly this header and payload text, correctly signed with the fuzzing key
    /// of `alg` (`true`: EdDSA), whatever the header says.
    pub fn sign_raw(&self, header: &[u8], payload: &[u8], eddsa: bool) -> String {
        let input = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
        let signature = if eddsa {
            self.ed_key.sign(input.as_bytes()).as_ref().to_vec()
        } else {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, HS256_SECRET);
            aws_lc_rs::hmac::sign(&key, input.as_bytes())
                .as_ref()
                .to_vec()
        };
        format!("{input}.{}", B64URL.encode(signature))
    }
}

/// The fixed verifiers and tokens, built once.
pub fn tokens() -> &'static Tokens {
    static TOKENS: OnceLock<Tokens> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let claims = Claims {
            iss: agentdb_security::token::DEFAULT_ISSUER.to_owned(),
            aud: agentdb_security::token::DEFAULT_AUDIENCE.to_owned(),
            sub: AgentId::new("agent-1").expect("valid agent id"),
            tenant: TenantId::new("acme").expect("valid tenant id"),
            scope: vec![Scope::Read, Scope::Write],
            iat: IAT,
            exp: IAT + TTL,
            nbf: None,
            jti: "0190d6c2-6f1e-7a3b-9c4d-5e6f708192a3".to_owned(),
        };
        let hs_issuer = TokenIssuer::from_hs256_secret(HS256_SECRET).expect("hs256 issuer");
        let ed_issuer =
            TokenIssuer::from_ed25519_pem(ED25519_PRIVATE_PEM.as_bytes()).expect("ed issuer");
        let hs256_token = hs_issuer.sign(&claims).expect("sign");
        let eddsa_token = ed_issuer.sign(&claims).expect("sign");
        let der = x509_der(ED25519_PRIVATE_PEM);
        let ed_key = Ed25519KeyPair::from_pkcs8(&der).expect("ed25519 key");
        let tokens = Tokens {
            hs256: TokenVerifier::from_hs256_secret(HS256_SECRET).expect("hs256 verifier"),
            eddsa: TokenVerifier::from_ed25519_public_pem(ED25519_PUBLIC_PEM.as_bytes())
                .expect("ed verifier"),
            ed_key,
            claims,
            hs256_token,
            eddsa_token,
        };
        assert!(!tokens.ed_key.public_key().as_ref().is_empty());
        for eddsa in [false, true] {
            let got = tokens
                .verifier(eddsa)
                .verify(tokens.token(eddsa), NOW)
                .expect("the fixed tokens verify");
            assert_eq!(got, tokens.claims);
        }
        tokens
    })
}

/// The DER contents of a one-block PEM text.
fn x509_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64 PEM body")
}

/// Checks what every accepted token must satisfy, whatever its origin.
pub fn assert_acceptable(claims: &Claims, now: u64) {
    assert_eq!(claims.iss, agentdb_security::token::DEFAULT_ISSUER);
    assert_eq!(claims.aud, agentdb_security::token::DEFAULT_AUDIENCE);
    assert!(claims.exp > claims.iat, "exp not after iat: {claims:?}");
    assert!(!claims.jti.is_empty() && claims.jti.len() <= 128);
    assert!(!claims.scope.is_empty());
    let valid_from = claims.nbf.map_or(claims.iat, |n| n.max(claims.iat));
    assert!(
        valid_from <= now.saturating_add(MAX_CLOCK_SKEW_SECS),
        "not yet valid"
    );
    assert!(
        now < claims.exp.saturating_add(MAX_CLOCK_SKEW_SECS),
        "expired"
    );
}
