/** The JSON bodies of the HTTPS gateway (docs/http.md; `GET /v1/openapi.json`). */

export type JsonObject = { [key: string]: unknown };

/** A vector the caller embedded itself, with the tenant's model. */
export interface VectorIn {
  model: string;
  vector: number[];
}

/** An episode to store. Without an `id` the client mints a UUIDv7, so retries are safe. */
export interface EpisodeIn {
  /** A UUID; version 7 keeps ids in time order. */
  id?: string | null;
  /** What the agent was asked to do (not empty). */
  task: string;
  /** How well it went, 0 to 1. */
  reward: number;
  input?: string;
  output?: string;
  critique?: string | null;
  tags?: string[];
  metadata?: JsonObject;
  session?: string | null;
  tokens_used?: number;
  latency_ms?: number;
  embedding?: VectorIn | null;
  /** Seconds until the episode expires (at least 1): it is then no longer returned, and every hub deletes it. Not with `expires_at_ms`. */
  ttl_secs?: number | null;
  /** When the episode expires, in milliseconds since the Unix epoch. Not with `ttl_secs`. */
  expires_at_ms?: number | null;
}

/** An episode as the hub holds it. */
export interface Episode {
  id: string;
  agent?: string | null;
  session?: string | null;
  task: string;
  input: string;
  output: string;
  reward: number;
  /** Whether the reward reached the success threshold. */
  success: boolean;
  critique?: string | null;
  tags: string[];
  metadata: JsonObject | null;
  tokens_used: number;
  latency_ms: number;
  /** Milliseconds since the Unix epoch. */
  created_ms: number;
  /** The hub that first accepted it. */
  origin?: string | null;
  embedding_model: string;
  /** When it expires, in milliseconds since the Unix epoch; `null` when it does not. */
  expires_at_ms?: number | null;
}

/** `PATCH /v1/episodes/{id}`: absent fields keep their value. */
export interface EpisodePatch {
  reward?: number | null;
  /** `null` clears it. */
  critique?: string | null;
  tags?: string[] | null;
  /** Replaces the old metadata as a whole. */
  metadata?: JsonObject;
}

/** One stored episode. */
export interface StoredId {
  id: string;
  /** False when an episode with this id already existed (nothing was written). */
  inserted: boolean;
}

export interface StoreResult {
  results: StoredId[];
}

/** `GET /v1/episodes`: a page; only a `null` `next_cursor` means there is no more. */
export interface EpisodePage {
  episodes: Episode[];
  next_cursor?: string | null;
}

export type Outcome = "any" | "successes" | "failures";

/** Conditions every match meets. */
export interface QueryFilter {
  min_reward?: number | null;
  outcome?: Outcome;
  created_from_ms?: number | null;
  created_until_ms?: number | null;
  /** Tags every match carries. */
  tags?: string[];
  /** Metadata fields every match has, with these exact values. */
  metadata?: JsonObject;
}

export interface QueryBody {
  text?: string | null;
  vector?: VectorIn | null;
  k?: number;
  filter?: QueryFilter;
}

export interface Match {
  /** Cosine similarity; higher is closer. */
  score: number;
  episode: Episode;
}

/** Matches, best first. */
export interface QueryResult {
  matches: Match[];
  /** The model the query was embedded with. */
  model: string;
}

export interface TaskCount {
  task: string;
  count: number;
  avg_reward: number;
  [key: string]: unknown;
}

export interface Stats {
  episodes: number;
  deleted: number;
  success_rate: number;
  avg_reward: number;
  top_tasks: TaskCount[];
  embedding_model?: string | null;
  key_version: number;
}

/** One change to the tenant's memory. */
export interface Change {
  /** Its position: resume after it with `since` (or `Last-Event-ID`). */
  cursor: string;
  /** `put` (stored or updated: `episode` is its state now) or `deleted`. */
  type: "put" | "deleted";
  /** The episode's id. */
  id: string;
  episode?: Episode | null;
}

export interface ChangePage {
  changes: Change[];
  next_cursor: string;
  /** Whether more changes are waiting now. */
  more: boolean;
}

/** `POST /v1/token` body: all optional, at most what the credential grants. */
export interface TokenRequest {
  agent?: string | null;
  scopes?: string[];
  ttl_secs?: number | null;
}

export interface TokenResponse {
  token: string;
  token_type: string;
  /** Seconds since the Unix epoch. */
  expires_at: number;
  expires_in: number;
  tenant: string;
  agent: string;
  scopes: string[];
}

export interface Health {
  status: string;
  hub: string;
}

export interface ErrorBody {
  error: { code: string; message: string };
}
