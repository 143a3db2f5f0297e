//! Tenant API keys: long-lived bearer secrets a hub exchanges for short-lived tokens.
//!
//! A key's text is `adb_<id>_<secret>`:
//!
//! ```text
//! adb_ | id: 16 lowercase hex (8 random bytes) | _ | secret: 43 base64url (32 random bytes)
//! ```
//!
//! 64 characters in all. The id ([`ApiKeyId`]) is public: it names the key in listings and
//! storage. The whole text is the secret ([`ApiKeySecret`]). A hub stores only a keyed hash of it
//! ([`ApiKeyHasher`], HMAC-SHA256 under a key the hub keeps sealed), so a copy of its database
//! does not yield usable keys, and checks a presented key against that hash in constant time.
//!
//! The text form is canonical: the secret must decode to exactly 32 bytes with no stray
//! trailing bits, so one key has exactly one text and one hash.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The text every API key starts with.
pub const API_KEY_PREFIX: &str = "adb_";
/// Length of an [`ApiKeyId`] in characters (8 bytes as lowercase hex).
pub const API_KEY_ID_LEN: usize = 16;
/// Length of the secret part in characters (32 bytes as unpadded base64url).
pub const API_KEY_SECRET_LEN: usize = 43;
/// Length of a whole API key in characters.
pub const API_KEY_LEN: usize = API_KEY_PREFIX.len() + API_KEY_ID_LEN + 1 + API_KEY_SECRET_LEN;
/// Longest input [`ApiKeySecret::parse`] looks at, surrounding whitespace included.
pub const MAX_API_KEY_INPUT_LEN: usize = 1024;

/// Why an API key or key id was refused or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// The text is not an API key (or key id) of the documented form. The reason never quotes
    /// the text.
    #[error("malformed API key: {reason}")]
    Malformed {
        /// What is wrong, in one line.
        reason: &'static str,
    },
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

impl ApiKeyError {
    fn malformed(reason: &'static str) -> Self {
        ApiKeyError::Malformed { reason }
    }
}

/// The public id of an API key: 16 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ApiKeyId(String);

impl ApiKeyId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn check(s: &str) -> Result<(), ApiKeyError> {
        if s.len() == API_KEY_ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(())
        } else {
            Err(ApiKeyError::malformed(
                "key id is not 16 lowercase hex characters",
            ))
        }
    }
}

impl FromStr for ApiKeyId {
    type Err = ApiKeyError;
    fn from_str(s: &str) -> Result<Self, ApiKeyError> {
        Self::check(s)?;
        Ok(Self(s.to_owned()))
    }
}

impl TryFrom<String> for ApiKeyId {
    type Error = ApiKeyError;
    fn try_from(s: String) -> Result<Self, ApiKeyError> {
        Self::check(&s)?;
        Ok(Self(s))
    }
}

impl From<ApiKeyId> for String {
    fn from(id: ApiKeyId) -> Self {
        id.0
    }
}

impl fmt::Display for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A whole API key, `adb_<id>_<secret>`. Zeroized on drop; its `Debug` output shows only the id.
#[derive(Clone)]
pub struct ApiKeySecret(Zeroizing<String>);

impl ApiKeySecret {
    /// A new key with a random id and a random 32-byte secret.
    pub fn generate() -> Result<Self, ApiKeyError> {
        let mut id = [0u8; API_KEY_ID_LEN / 2];
        aws_lc_rs::rand::fill(&mut id).map_err(|_| ApiKeyError::Random)?;
        let mut secret = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(&mut secret[..]).map_err(|_| ApiKeyError::Random)?;
        let mut text = Zeroizing::new(String::with_capacity(API_KEY_LEN));
        text.push_str(API_KEY_PREFIX);
        for b in id {
            text.push(hex_digit(b >> 4));
            text.push(hex_digit(b & 0x0f));
        }
        text.push('_');
        B64URL.encode_string(&secret[..], &mut text);
        Ok(Self(text))
    }

    /// Parses a key as a user presents it. Surrounding whitespace is ignored; everything else
    /// must be exactly the documented form (prefix, lowercase hex id, one separator, canonical
    /// base64url secret of 32 bytes).
    pub fn parse(text: &str) -> Result<Self, ApiKeyError> {
        if text.len() > MAX_API_KEY_INPUT_LEN {
            return Err(ApiKeyError::malformed("longer than any API key"));
        }
        let text = text.trim();
        let rest = text
            .strip_prefix(API_KEY_PREFIX)
            .ok_or(ApiKeyError::malformed("does not start with adb_"))?;
        if text.len() != API_KEY_LEN {
            return Err(ApiKeyError::malformed("not 64 characters long"));
        }
        // The length is right and the prefix is ASCII, so these indices are in bounds; `get`
        // also refuses a multi-byte character straddling them.
        let id = rest
            .get(..API_KEY_ID_LEN)
            .ok_or(ApiKeyError::malformed("key id is not ASCII"))?;
        ApiKeyId::check(id)?;
        let secret = rest
            .get(API_KEY_ID_LEN..)
            .and_then(|s| s.strip_prefix('_'))
            .ok_or(ApiKeyError::malformed("no _ after the key id"))?;
        let decoded = Zeroizing::new(
            B64URL
                .decode(secret)
                .map_err(|_| ApiKeyError::malformed("secret is not canonical base64url"))?,
        );
        if decoded.len() != 32 {
            return Err(ApiKeyError::malformed("secret is not 32 bytes"));
        }
        Ok(Self(Zeroizing::new(text.to_owned())))
    }

    /// The key's public id.
    pub fn id(&self) -> ApiKeyId {
        let start = API_KEY_PREFIX.len();
        ApiKeyId(self.0[start..start + API_KEY_ID_LEN].to_owned())
    }

    /// The whole key text. Handle with care: this is the secret, to be shown once to whoever
    /// asked for the key and never logged.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeySecret")
            .field("id", &self.id().as_str())
            .finish_non_exhaustive()
    }
}

impl FromStr for ApiKeySecret {
    type Err = ApiKeyError;
    fn from_str(s: &str) -> Result<Self, ApiKeyError> {
        Self::parse(s)
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

/// Keyed hashes of API keys (HMAC-SHA256 over the whole key text), for storing and checking
/// keys without storing them.
pub struct ApiKeyHasher {
    key: hmac::Key,
}

impl ApiKeyHasher {
    /// A hasher under 32 bytes of secret key material.
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    /// The hash to store for `secret`.
    pub fn hash(&self, secret: &ApiKeySecret) -> [u8; 32] {
        let tag = hmac::sign(&self.key, secret.expose().as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Whether `expected` is the hash of `secret`, compared in constant time. A hash of the
    /// wrong length is simply not a match.
    pub fn verify(&self, secret: &ApiKeySecret, expected: &[u8]) -> bool {
        hmac::verify(&self.key, secret.expose().as_bytes(), expected).is_ok()
    }
}

impl fmt::Debug for ApiKeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeyHasher(..)")
    }
}
