//! The wire protocol of Federated AgentDB: messages, frames and the hub's session state machine.
//!
//! This crate is sans-IO: it never opens a socket, spawns a task or reads the clock. Its inputs
//! are bytes and the current time; its outputs are bytes, deadlines and decisions. The hub and
//! the client drive it over QUIC.
//!
//! # Message flow
//!
//! ```text
//!  agent                                                    hub
//!    │ ══ QUIC connect, ALPN "agentdb/1", TLS 1.3 + client cert ══►│
//!    │ ── bi-stream: Exchange { api_key?, agent?, scopes, ttl? } ─►│  optional, before or after
//!    │ ◄── Token { token, expires_at, tenant, agent, scopes } ─────│  Hello; not authentication
//!    │ ── bi-stream: Hello { protocol_version, token } ───────────►│  within 5 s of connecting
//!    │ ◄── Welcome { agent, tenant, hub, session, expires_at, … } ─│  or Error + close
//!    │ ── bi-stream: Store { episodes } ──────────────────────────►│  idempotent by EpisodeId
//!    │ ◄── Stored { results } ─────────────────────────────────────│
//!    │ ── bi-stream: Query { text | vector, k, filter } ──────────►│
//!    │ ◄── Matches { matches, model, query_vector } ───────────────│
//!    │ ── bi-stream: Get { id } ──────────────────────────────────►│
//!    │ ◄── Episode(Some(episode) | None) ──────────────────────────│
//!    │ ── bi-stream: List { after, limit } ───────────────────────►│  live episodes only
//!    │ ◄── Listed { episodes, next } ──────────────────────────────│
//!    │ ── bi-stream: Pull { cursor, limit } ──────────────────────►│
//!    │ ◄── Page { changes, next_cursor, more } ────────────────────│
//!    │ ── bi-stream: Update { id, reward?, critique?, tags? } ────►│  last writer wins
//!    │ ◄── Done { found } ─────────────────────────────────────────│
//!    │ ── bi-stream: Delete { id } ───────────────────────────────►│  a tombstone
//!    │ ◄── Done { found } ─────────────────────────────────────────│
//!    │ ── bi-stream: Stats ───────────────────────────────────────►│
//!    │ ◄── Stats(TenantStats) ─────────────────────────────────────│
//!    │ ── bi-stream: RefreshToken { token } ──────────────────────►│  before (or after) expiry
//!    │ ◄── Refreshed { expires_at } ───────────────────────────────│
//!    │ ── bi-stream: Goodbye ─────────────────────────────────────►│
//!    │ ◄── Bye, then the hub closes the connection ────────────────│
//! ```
//!
//! Every request opens its own bi-stream; the agent writes exactly one request frame and
//! finishes its side, the hub answers with exactly one response frame and finishes. Any request
//! may instead be answered by `Error(WireError)` with a stable code (`unauthenticated`,
//! `token_expired`, `forbidden`, `tenant_mismatch`, `invalid_request`, `too_large`,
//! `unknown_message`, `overloaded`, `agent_expired`, `unavailable`, `internal`, `not_found`); an
//! unknown
//! message kind gets `unknown_message` and the connection stays open.
//!
//! - `frame.rs`: the length-prefixed frame, byte by byte, and the incremental [`FrameDecoder`].
//! - `message.rs`: [`Request`], [`Response`], the message-kind table and [`ErrorCode`].
//! - `wire.rs`: episodes as they travel ([`WireNewEpisode`], [`WireEpisode`]).
//! - `session.rs`: [`ServerSession`], the hub's per-connection state machine.
//! - [`fed`]: the hub-to-hub replication protocol and its link state machine.

pub mod fed;
mod frame;
mod message;
mod session;
mod url;
mod wire;

pub use frame::{
    encode_frame, try_encode_frame, EncodeError, Frame, FrameDecoder, FrameError, MAX_FRAME_LEN,
};
pub use message::{
    decode_request, decode_response, kind, Change, ChangeItem, DecodeError, DeleteRequest,
    ErrorCode, ExchangeRequest, GetRequest, Hello, ListRequest, ListResponse, MatchesResponse,
    PageResponse, PullRequest, QueryInput, QueryRequest, RefreshRequest, Request, Response,
    StoreRequest, StoredItem, StoredResponse, TokenGrant, UpdateRequest, Welcome, WireError,
    WireMatch,
};
pub use session::{Close, ServerSession, SessionConfig, Step};
pub use url::{HubUrl, HubUrlError};
pub use wire::{WireEpisode, WireNewEpisode};

/// The ALPN protocol id of this protocol on QUIC.
pub const ALPN: &[u8] = b"agentdb/1";

/// The protocol version written in every frame header and in [`Hello`]. Version 2: `Update`
/// and the federation's `Ops` carry episode metadata as a register, and `Query` filters carry
/// tags and metadata conditions (postcard layouts that version 1 cannot read). Version 3: hubs
/// exchange `Control` records (erasure orders and their receipts), the error code
/// `quota_exceeded` exists, and episodes carry an expiry (`expires_at` in `WireNewEpisode`,
/// `WireEpisode` and the replicated `EpisodeContent`).
pub const PROTOCOL_VERSION: u16 = 3;
