//! Newtypes for every identifier in the system.
//!
//! Names (tenants, agents, hubs, models) are short ASCII strings drawn from
//! `[A-Za-z0-9._-]`, at most [`MAX_NAME_LEN`] bytes. The alphabet is deliberately narrow: names
//! appear in SPIFFE URIs, storage keys, metric labels and file names, and a narrow alphabet means
//! no escaping bugs in any of them. Episode and session ids are UUIDs; episode ids are UUIDv7 so
//! they sort by creation time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest accepted name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The name is empty.
    #[error("{kind} must not be empty")]
    Empty {
        /// Which kind of identifier.
        kind: &'static str,
    },
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("{kind} is {len} bytes long; the limit is {MAX_NAME_LEN}")]
    TooLong {
        /// Which kind of identifier.
        kind: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The name holds a character outside `[A-Za-z0-9._-]`.
    #[error("{kind} may only contain letters, digits, '.', '_' and '-' (found {found:?})")]
    BadChar {
        /// Which kind of identifier.
        kind: &'static str,
        /// The first offending character.
        found: char,
    },
    /// The name is `.` or `..`, which mean directories in file paths and URIs.
    #[error("{kind} must not be {value:?}")]
    DotName {
        /// Which kind of identifier.
        kind: &'static str,
        /// The rejected name.
        value: &'static str,
    },
    /// The string is not a UUID.
    #[error("{kind} is not a valid UUID: {value:?}")]
    NotUuid {
        /// Which kind of identifier.
        kind: &'static str,
        /// The rejected input, cut to 64 characters.
        value: String,
    },
}

fn check_name(kind: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > MAX_NAME_LEN {
        return Err(IdError::TooLong { kind, len: s.len() });
    }
    if let Some(found) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(IdError::BadChar { kind, found });
    }
    // Names become path segments (spool directories, data directories) and SPIFFE URI
    // segments, where these two would mean "here" and "the parent".
    for value in [".", ".."] {
        if s == value {
            return Err(IdError::DotName { kind, value });
        }
    }
    Ok(())
}

macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates `s` and wraps it.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check_name($kind, &s)?;
                Ok(Self(s))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_id!(
    /// A tenant: the unit of isolation. Every stored key starts with one.
    TenantId,
    "tenant id"
);
name_id!(
    /// An agent within a tenant.
    AgentId,
    "agent id"
);
name_id!(
    /// A hub (a server that stores and federates memory).
    HubId,
    "hub id"
);
name_id!(
    /// A region a hub runs in (e.g. `eu`, `us`); residency rules name regions.
    Region,
    "region"
);
name_id!(
    /// The identity of an embedding model, e.g. `agentdb-lexical-v1`. Stored with every vector so
    /// that vectors from different models are never compared.
    ModelId,
    "model id"
);

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps an existing UUID.
            pub const fn from_uuid(u: Uuid) -> Self {
                Self(u)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// The 16 bytes of the UUID, big-endian, as stored in keys.
            pub const fn to_bytes(&self) -> [u8; 16] {
                *self.0.as_bytes()
            }

            /// Rebuilds the id from [`Self::to_bytes`].
            pub const fn from_bytes(b: [u8; 16]) -> Self {
                Self(Uuid::from_bytes(b))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Uuid::parse_str(s).map(Self).map_err(|_| IdError::NotUuid {
                    kind: $kind,
                    value: s.chars().take(64).collect(),
                })
            }
        }
    };
}

uuid_id!(
    /// An episode. UUIDv7, minted by the writer so that retries are idempotent.
    EpisodeId,
    "episode id"
);
uuid_id!(
    /// An erasure order (federation-wide erasure of a tenant or of a subject's episodes).
    /// UUIDv7, minted by the hub that issues the order.
    ErasureId,
    "erasure id"
);
uuid_id!(
    /// One run of an agent (one spawn-to-destroy lifetime).
    SessionId,
    "session id"
);

impl EpisodeId {
    /// Builds a UUIDv7 from a Unix time in milliseconds and 10 random bytes.
    ///
    /// The caller supplies both, keeping this crate free of clock reads; see
    /// `agentdb_memory::Clock` for the usual source.
    pub fn from_parts(unix_ms: u64, random: [u8; 10]) -> Self {
        let mut b = [0u8; 16];
        b[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
        b[6..].copy_from_slice(&random);
        // Version 7 in the high nibble of byte 6, RFC 4122 variant in the top bits of byte 8.
        b[6] = (b[6] & 0x0f) | 0x70;
        b[8] = (b[8] & 0x3f) | 0x80;
        Self(Uuid::from_bytes(b))
    }

    /// The creation time encoded in a UUIDv7, in Unix milliseconds.
    pub fn unix_ms(&self) -> u64 {
        let b = self.0.as_bytes();
        let mut ms = [0u8; 8];
        ms[2..].copy_from_slice(&b[..6]);
        u64::from_be_bytes(ms)
    }
}

impl ErasureId {
    /// Builds a UUIDv7 from a Unix time in milliseconds and 10 random bytes.
    pub fn from_parts(unix_ms: u64, random: [u8; 10]) -> Self {
        Self(EpisodeId::from_parts(unix_ms, random).as_uuid())
    }
}

impl SessionId {
    /// Builds a random (v4) session id from 16 random bytes.
    pub fn from_random(random: [u8; 16]) -> Self {
        Self(uuid::Builder::from_random_bytes(random).into_uuid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(TenantId::new("acme-corp.eu_1").is_ok());
        assert_eq!(TenantId::new(""), Err(IdError::Empty { kind: "tenant id" }));
        assert!(matches!(
            TenantId::new("a/b"),
            Err(IdError::BadChar { found: '/', .. })
        ));
        assert!(matches!(
            AgentId::new("x".repeat(129)),
            Err(IdError::TooLong { len: 129, .. })
        ));
        assert!(matches!(
            HubId::new("ünicode"),
            Err(IdError::BadChar { found: 'ü', .. })
        ));
    }

    #[test]
    fn dot_names_are_refused_for_every_kind() {
        for dots in [".", ".."] {
            let refused = |r: Result<(), IdError>| matches!(r, Err(IdError::DotName { .. }));
            assert!(refused(TenantId::new(dots).map(drop)), "tenant {dots}");
            assert!(refused(AgentId::new(dots).map(drop)), "agent {dots}");
            assert!(refused(HubId::new(dots).map(drop)), "hub {dots}");
            assert!(refused(Region::new(dots).map(drop)), "region {dots}");
            assert!(refused(ModelId::new(dots).map(drop)), "model {dots}");
            assert!(serde_json::from_str::<TenantId>(&format!("{dots:?}")).is_err());
        }
        // Dots inside a longer name are fine.
        assert!(TenantId::new("...").is_ok());
        assert!(TenantId::new("a..b").is_ok());
        assert!(TenantId::new(".hidden").is_ok());
    }

    #[test]
    fn deserialising_validates() {
        let ok: TenantId = serde_json::from_str("\"acme\"").unwrap();
        assert_eq!(ok.as_str(), "acme");
        assert!(serde_json::from_str::<TenantId>("\"\"").is_err());
        assert!(serde_json::from_str::<TenantId>("\"a b\"").is_err());
    }

    #[test]
    fn episode_ids_are_v7_and_carry_time() {
        let id = EpisodeId::from_parts(1_700_000_000_123, [0xff; 10]);
        assert_eq!(id.as_uuid().get_version_num(), 7);
        assert_eq!(id.unix_ms(), 1_700_000_000_123);
        let parsed: EpisodeId = id.to_string().parse().unwrap();
        assert_eq!(parsed, id);
        assert_eq!(EpisodeId::from_bytes(id.to_bytes()), id);
        assert!("not-a-uuid".parse::<EpisodeId>().is_err());
    }

    #[test]
    fn episode_ids_sort_by_time() {
        let a = EpisodeId::from_parts(1000, [0xff; 10]);
        let b = EpisodeId::from_parts(1001, [0x00; 10]);
        assert!(a < b);
    }
}
