//! Security for Federated AgentDB: encryption at rest, the certificate authority, tokens and the
//! tenant access policy.
//!
//! - [`MasterKey`], [`TenantKey`], [`Keyring`]: envelope encryption. A master key (KEK) wraps one
//!   random data key (DEK) per tenant and key version; records are sealed with AES-256-GCM under
//!   the tenant's DEK with AAD binding tenant, record id and key version.
//! - [`ca`]: a certificate authority (rcgen) issuing hub and agent certificates with SPIFFE URIs.
//! - [`identity`]: extracting the identity from a verified peer certificate.
//! - [`token`]: short-lived JWTs (EdDSA by default, HS256 for compatibility).
//! - [`revocation`]: the list of revoked token ids.
//! - [`policy`]: the single function that decides whether an identity may act on a tenant.
//! - [`signing`]: a hub signs bytes with its certificate key (audit checkpoints, receipts);
//!   anyone with the certificate and its CA checks them.
//! - [`apikey`]: tenant API keys (`adb_<id>_<secret>`) and their keyed hashes.
//! - [`StoreSecret`]: a store's own secret, wrapped by the master key, for keys that must
//!   survive master-key rotation.

pub mod apikey;
pub mod ca;
mod envelope;
mod file;
pub mod identity;
mod keyring;
mod master_key;
pub mod policy;
pub mod revocation;
pub mod signing;
pub mod socket;
mod store_secret;
pub mod tls;
pub mod token;

pub use envelope::{
    sealed_key_version, RecordAad, RecordKey, SealError, StoreRecordAad, MAX_STORE_RECORD_ID_LEN,
};
pub use file::{sync_parent_dir, write_private_file, write_public_file, FileError};
pub use keyring::{Keyring, KeyringError, TenantKey, WrappedTenantKey};
pub use master_key::{MasterKey, MasterKeyError, MASTER_KEY_ENV};
pub use store_secret::{StoreSecret, MAX_PURPOSE_LEN};
