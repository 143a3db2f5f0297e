/**
 * `AgentDBClient`: the HTTPS/JSON gateway (docs/http.md) over an injected `fetch`.
 *
 * Web-standard only (fetch, AbortController, ReadableStream, TextDecoder, crypto), so one
 * build runs on Node, Lambda, Workers and Deno. Mutual TLS is the transport's business: pass
 * a `fetch` that presents the client certificate (on Node, undici's `Agent({ connect })`).
 *
 * Every request has a timeout; 429, 503, timeouts and network errors are retried with
 * exponential backoff, honouring `Retry-After` (bounded). Tokens come from `POST /v1/token`
 * (with an API key, or the client certificate alone), are cached and refreshed shortly before
 * they expire, and once more on a 401.
 */

import {
  AgentDBError,
  AuthenticationError,
  ConnectionError,
  TimeoutError,
  defaultCode,
  errorFor,
  statusFor,
} from "./errors.js";
import { readEvents } from "./sse.js";
import type {
  Change,
  ChangePage,
  Episode,
  EpisodeIn,
  EpisodePage,
  EpisodePatch,
  Health,
  JsonObject,
  QueryFilter,
  QueryResult,
  Stats,
  StoreResult,
  StoredId,
  TokenRequest,
  TokenResponse,
  VectorIn,
} from "./types.js";

/** A `fetch` as the platform has it; pass one built on a TLS agent for mutual TLS. */
export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface AgentDBClientOptions {
  /** The gateway, e.g. `https://hub.example.com:8443`. */
  endpoint: string;
  /** An API key: traded for short tokens at `POST /v1/token`. */
  apiKey?: string;
  /** A bearer token used as given (it cannot be refreshed). */
  token?: string;
  /** Called for a token whenever one is needed (first use, near expiry, after a 401). */
  getToken?: () => string | Promise<string>;
  /** The transport; defaults to the global `fetch`. */
  fetch?: FetchLike;
  /** Per attempt, in milliseconds (default 10 000). */
  timeoutMs?: number;
  /** Retries of 429, 503, timeouts and network errors (default 3). */
  maxRetries?: number;
  /** The agent name tokens are issued for (the token's `sub`). */
  agentId?: string;
  /** Token lifetime to ask the exchange for, in seconds (the hub's default is 300). */
  tokenTtlSecs?: number;
  /** Scopes to ask the exchange for (default: all the credential's). */
  scopes?: string[];
  /** The longest wait a `Retry-After` may impose, in milliseconds (default 30 000). */
  maxRetryAfterMs?: number;
  /** A change stream silent this long (no event, no keep-alive) is reconnected (default 45 000). */
  streamIdleTimeoutMs?: number;
}

/** The token the client holds now. */
export interface TokenInfo {
  token: string;
  /** Milliseconds since the Unix epoch, by the local clock; undefined when unknown. */
  expiresAtMs: number | undefined;
  tenant: string | undefined;
  agent: string | undefined;
  scopes: string[] | undefined;
}

interface CachedToken extends TokenInfo {
  /** Refresh when the local clock passes this. */
  refreshAtMs: number;
}

interface RequestOptions {
  body?: unknown;
  auth?: boolean;
  headers?: Record<string, string>;
  signal?: AbortSignal | undefined;
  /** A DELETE whose earlier attempt may have landed: a 404 on a retry is success. */
  deleteRetry?: boolean;
  /** Skip `beforeRequest` (revocation must work after an agent is closed). */
  unguarded?: boolean;
}

/** The most a proactive refresh runs ahead of expiry. */
const REFRESH_MARGIN_MS = 60_000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 8_000;

const noop = (): void => {};

export class AgentDBClient {
  readonly endpoint: string;
  readonly agentId: string | undefined;
  /** How many tokens this client has obtained (exchanges and `getToken` calls). */
  tokensObtained = 0;

  private readonly apiKey: string | undefined;
  private readonly staticToken: string | undefined;
  private readonly getTokenFn: (() => string | Promise<string>) | undefined;
  private readonly fetchFn: FetchLike;
  private readonly timeoutMs: number;
  private readonly maxRetries: number;
  private readonly tokenTtlSecs: number | undefined;
  private readonly scopes: string[] | undefined;
  private readonly maxRetryAfterMs: number;
  private readonly streamIdleTimeoutMs: number;
  private cached: CachedToken | undefined;
  private pending: Promise<CachedToken> | undefined;

  constructor(options: AgentDBClientOptions) {
    if (!options || typeof options.endpoint !== "string" || options.endpoint === "") {
      throw new TypeError("AgentDBClient: `endpoint` is required");
    }
    this.endpoint = options.endpoint.replace(/\/+$/, "");
    this.apiKey = options.apiKey;
    this.staticToken = options.token;
    this.getTokenFn = options.getToken;
    const f = options.fetch;
    this.fetchFn = f ?? ((input, init) => globalThis.fetch(input, init));
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.maxRetries = Math.max(0, options.maxRetries ?? 3);
    this.agentId = options.agentId;
    this.tokenTtlSecs = options.tokenTtlSecs;
    this.scopes = options.scopes;
    this.maxRetryAfterMs = options.maxRetryAfterMs ?? 30_000;
    this.streamIdleTimeoutMs = options.streamIdleTimeoutMs ?? 45_000;
  }

  // ---------------------------------------------------------------- episodes

  /** Stores one episode. Without an `id` the client mints a UUIDv7, so a retry cannot store it twice. */
  async storeEpisode(episode: EpisodeIn): Promise<StoredId> {
    const body = { ...episode, id: episode.id ?? uuidv7() };
    const out = await this.request<StoreResult>("POST", "/v1/episodes", { body });
    const first = out.results[0];
    if (first === undefined) throw badAnswer("the store answer has no result");
    return first;
  }

  /** Stores a batch atomically (every episode or none); results in the order sent. */
  async storeEpisodes(episodes: EpisodeIn[]): Promise<StoredId[]> {
    const body = { episodes: episodes.map((e) => ({ ...e, id: e.id ?? uuidv7() })) };
    const out = await this.request<StoreResult>("POST", "/v1/episodes", { body });
    return out.results;
  }

  async getEpisode(id: string): Promise<Episode> {
    return this.request<Episode>("GET", `/v1/episodes/${encodeURIComponent(id)}`);
  }

  /** Changes reward, critique, tags or metadata; answers the episode as it is now. */
  async updateEpisode(id: string, patch: EpisodePatch): Promise<Episode> {
    return this.request<Episode>("PATCH", `/v1/episodes/${encodeURIComponent(id)}`, { body: patch });
  }

  async deleteEpisode(id: string): Promise<void> {
    await this.request<void>("DELETE", `/v1/episodes/${encodeURIComponent(id)}`, { deleteRetry: true });
  }

  /** One page of live episodes; only a `null` `next_cursor` means there is no more. */
  async listEpisodes(options: { cursor?: string | null; limit?: number } = {}): Promise<EpisodePage> {
    return this.request<EpisodePage>("GET", `/v1/episodes${qs({ cursor: options.cursor, limit: options.limit })}`);
  }

  /** Every live episode, page by page. */
  async *listAll(options: { limit?: number } = {}): AsyncGenerator<Episode, void, undefined> {
    let cursor: string | null | undefined;
    do {
      const page = await this.listEpisodes({ cursor, limit: options.limit });
      yield* page.episodes;
      cursor = page.next_cursor;
    } while (cursor !== null && cursor !== undefined);
  }

  // ------------------------------------------------------------------ query

  /** Nearest episodes to a text (the hub embeds it) or to a vector of the tenant's model. */
  async query(
    q: string | VectorIn,
    options: { k?: number; filter?: QueryFilter } = {},
  ): Promise<QueryResult> {
    const body: JsonObject = typeof q === "string" ? { text: q } : { vector: { model: q.model, vector: q.vector } };
    if (options.k !== undefined) body.k = options.k;
    if (options.filter !== undefined) body.filter = options.filter;
    return this.request<QueryResult>("POST", "/v1/query", { body });
  }

  async stats(): Promise<Stats> {
    return this.request<Stats>("GET", "/v1/stats");
  }

  // ---------------------------------------------------------------- changes

  /** One JSON page of changes after `since`. */
  async changesPage(options: { since?: string | null; limit?: number } = {}): Promise<ChangePage> {
    return this.request<ChangePage>("GET", `/v1/changes${qs({ since: options.since, limit: options.limit })}`, {
      headers: { accept: "application/json" },
    });
  }

  /**
   * The tenant's changes after `since`, as they happen (Server-Sent Events). A dropped
   * connection is resumed with `Last-Event-ID`, and a stream ended by token expiry is resumed
   * with a fresh token, so each change is yielded once, in order. Ends quietly when `signal`
   * aborts or the loop breaks; throws a typed error when the hub ends the stream for another
   * reason, or `ConnectionError` after `maxRetries` failed reconnections in a row.
   */
  async *changes(options: { since?: string | null; signal?: AbortSignal } = {}): AsyncGenerator<Change, void, undefined> {
    const signal = options.signal;
    let last = options.since ?? undefined;
    let failures = 0;
    let refreshedFor: string | undefined;
    while (!signal?.aborted) {
      this.beforeRequest();
      const ctrl = new AbortController();
      const onAbort = (): void => ctrl.abort();
      signal?.addEventListener("abort", onAbort, { once: true });
      let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
      try {
        const bearer = await this.bearer();
        const headers: Record<string, string> = {
          authorization: `Bearer ${bearer.token}`,
          accept: "text/event-stream",
        };
        if (last !== undefined) headers["last-event-id"] = last;
        let res: Response;
        try {
          res = await deadline(this.fetchFn(this.endpoint + "/v1/changes", { method: "GET", headers, signal: ctrl.signal }), this.timeoutMs, ctrl);
        } catch (e) {
          if (signal?.aborted) return;
          throw transportError(e, this.timeoutMs);
        }
        if (!res.ok) {
          const err = await errorFromResponse(res);
          if (err.status === 401 && this.refreshable() && refreshedFor !== bearer.token) {
            refreshedFor = bearer.token;
            this.invalidate(bearer.token);
            continue;
          }
          throw err;
        }
        if (res.body === null) throw new ConnectionError("the change stream has no body");
        reader = res.body.getReader();
        const r = reader;
        const read = (): Promise<ReadableStreamReadResult<Uint8Array>> =>
          deadline(r.read(), this.streamIdleTimeoutMs, ctrl).catch((e: unknown) => {
            throw transportError(e, this.streamIdleTimeoutMs, "the change stream");
          });
        let expired = false;
        for await (const ev of readEvents(read)) {
          if (ev.event === "error") {
            const err = errorFromBody(0, ev.data, res.headers);
            if (err.code === "token_expired" && this.refreshable()) {
              this.invalidate(bearer.token);
              expired = true;
              break;
            }
            // Our own verdict, not a dropped connection: do not retry.
            throw Object.assign(err, { fromStream: true });
          }
          if (ev.event !== "put" && ev.event !== "deleted") continue;
          let change: Change;
          try {
            change = JSON.parse(ev.data) as Change;
          } catch (e) {
            throw badAnswer(`a change event is not JSON: ${String(e)}`);
          }
          const cursor = ev.id ?? change.cursor;
          if (last !== undefined && !isAfter(cursor, last)) continue;
          last = cursor;
          failures = 0;
          refreshedFor = undefined;
          yield change;
        }
        if (expired) continue;
        // The hub closed the stream without saying why: reconnect as after a drop.
        throw new ConnectionError("the change stream ended");
      } catch (e) {
        if (signal?.aborted) return;
        if (!isRetryable(e) || (e as { fromStream?: boolean }).fromStream) throw e;
        failures += 1;
        if (failures > this.maxRetries) throw e;
        await sleep(this.retryDelay(failures - 1, e), signal);
      } finally {
        signal?.removeEventListener("abort", onAbort);
        ctrl.abort();
        if (reader !== undefined) reader.cancel().catch(noop);
      }
    }
  }

  // ------------------------------------------------------------------ token

  /** The token the client holds, obtaining one if it holds none (or it is near expiry). */
  async authenticate(): Promise<TokenInfo> {
    const t = await this.bearer();
    return { token: t.token, expiresAtMs: t.expiresAtMs, tenant: t.tenant, agent: t.agent, scopes: t.scopes };
  }

  /** The token held now, if any (no request is made). */
  get tokenInfo(): TokenInfo | undefined {
    const t = this.cached;
    return t && { token: t.token, expiresAtMs: t.expiresAtMs, tenant: t.tenant, agent: t.agent, scopes: t.scopes };
  }

  /**
   * Revokes the token held now (`DELETE /v1/token`) and forgets it. Does nothing when no
   * token is held; a token the hub already refuses counts as revoked. With an API key, the
   * next request obtains a new token.
   */
  async revokeToken(): Promise<void> {
    const held = this.cached ?? (this.staticToken !== undefined ? tokenFrom(this.staticToken) : undefined);
    if (held === undefined) return;
    this.cached = undefined;
    try {
      await this.request<void>("DELETE", "/v1/token", {
        auth: false,
        unguarded: true,
        headers: { authorization: `Bearer ${held.token}` },
      });
    } catch (e) {
      if (e instanceof AuthenticationError) return;
      throw e;
    }
  }

  // ------------------------------------------------------------------ misc

  /** `GET /healthz` (no token). */
  async health(): Promise<Health> {
    return this.request<Health>("GET", "/healthz", { auth: false });
  }

  /** The gateway's OpenAPI 3.1 document (no token). */
  async openapi(): Promise<JsonObject> {
    return this.request<JsonObject>("GET", "/v1/openapi.json", { auth: false });
  }

  /** Called before every request; a subclass may refuse work by throwing. */
  protected beforeRequest(): void {}

  // -------------------------------------------------------------- internals

  private refreshable(): boolean {
    return this.staticToken === undefined || this.apiKey !== undefined || this.getTokenFn !== undefined;
  }

  private invalidate(token: string): void {
    if (this.cached?.token === token) this.cached = undefined;
  }

  private async bearer(): Promise<CachedToken> {
    const c = this.cached;
    if (c !== undefined && (Date.now() < c.refreshAtMs || !this.refreshable())) return c;
    if (!this.refreshable()) {
      this.cached = tokenFrom(this.staticToken as string);
      return this.cached;
    }
    // One refresh at a time; concurrent callers share it.
    if (this.pending === undefined) {
      const p = this.obtain().finally(() => {
        if (this.pending === p) this.pending = undefined;
      });
      this.pending = p;
    }
    return this.pending;
  }

  private async obtain(): Promise<CachedToken> {
    let t: CachedToken;
    if (this.getTokenFn !== undefined && this.apiKey === undefined) {
      t = tokenFrom(await this.getTokenFn());
    } else {
      const body: TokenRequest = {};
      if (this.agentId !== undefined) body.agent = this.agentId;
      if (this.tokenTtlSecs !== undefined) body.ttl_secs = this.tokenTtlSecs;
      if (this.scopes !== undefined) body.scopes = this.scopes;
      const headers: Record<string, string> = {};
      if (this.apiKey !== undefined) headers.authorization = `ApiKey ${this.apiKey}`;
      const started = Date.now();
      const out = await this.request<TokenResponse>("POST", "/v1/token", {
        auth: false,
        headers,
        body: Object.keys(body).length > 0 ? body : undefined,
      });
      const lifeMs = out.expires_in * 1000;
      t = {
        token: out.token,
        expiresAtMs: started + lifeMs,
        refreshAtMs: started + lifeMs - Math.min(REFRESH_MARGIN_MS, lifeMs / 2),
        tenant: out.tenant,
        agent: out.agent,
        scopes: out.scopes,
      };
    }
    this.tokensObtained += 1;
    this.cached = t;
    return t;
  }

  private retryDelay(attempt: number, err: unknown): number {
    const ra = err instanceof AgentDBError ? err.retryAfterMs : undefined;
    if (ra !== undefined) return Math.min(ra, this.maxRetryAfterMs);
    const base = Math.min(BACKOFF_BASE_MS * 2 ** attempt, BACKOFF_MAX_MS);
    return base * (0.75 + Math.random() * 0.5);
  }

  private async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    if (!opts.unguarded) this.beforeRequest();
    const auth = opts.auth ?? true;
    let refreshedFor: string | undefined;
    let attempt = 0;
    let landed = false; // an earlier attempt may have reached the hub
    for (;;) {
      const headers: Record<string, string> = { accept: "application/json", ...opts.headers };
      let token: string | undefined;
      if (auth) {
        token = (await this.bearer()).token;
        headers.authorization = `Bearer ${token}`;
      }
      let payload: string | undefined;
      if (opts.body !== undefined) {
        payload = JSON.stringify(opts.body);
        headers["content-type"] = "application/json";
      }
      let err: AgentDBError;
      try {
        const { status, headers: h, text } = await this.attempt(method, path, headers, payload, opts.signal);
        if (status >= 200 && status < 300) {
          if (status === 204 || text === "") return undefined as T;
          try {
            return JSON.parse(text) as T;
          } catch {
            throw badAnswer(`${method} ${path}: the answer is not JSON`);
          }
        }
        err = errorFromBody(status, text, h);
        if (status === 404 && opts.deleteRetry && landed) return undefined as T;
        if (status === 401 && auth && token !== undefined && this.refreshable() && refreshedFor !== token) {
          // Expired or revoked under us: one fresh token, then the same request again.
          refreshedFor = token;
          this.invalidate(token);
          continue;
        }
      } catch (e) {
        if (!(e instanceof AgentDBError)) throw e;
        if (!isRetryable(e)) throw e;
        landed = true;
        err = e;
      }
      if (!isRetryable(err) || attempt >= this.maxRetries) throw err;
      await sleep(this.retryDelay(attempt, err), opts.signal);
      attempt += 1;
    }
  }

  /** One attempt: the answer's status, headers and whole body, under the timeout. */
  private async attempt(
    method: string,
    path: string,
    headers: Record<string, string>,
    body: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<{ status: number; headers: Headers; text: string }> {
    const ctrl = new AbortController();
    const onAbort = (): void => ctrl.abort(signal?.reason);
    if (signal?.aborted) throw signal.reason ?? new Error("aborted");
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const run = async (): Promise<{ status: number; headers: Headers; text: string }> => {
        const init: RequestInit = { method, headers, signal: ctrl.signal };
        if (body !== undefined) init.body = body;
        const res = await this.fetchFn(this.endpoint + path, init);
        const text = await res.text();
        return { status: res.status, headers: res.headers, text };
      };
      return await deadline(run(), this.timeoutMs, ctrl);
    } catch (e) {
      if (signal?.aborted) throw signal.reason ?? e;
      throw transportError(e, this.timeoutMs, `${method} ${path}`);
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }
}

// ------------------------------------------------------------------ helpers

class DeadlineError extends Error {}

/**
 * `p`, or a `DeadlineError` after `ms` (aborting `ctrl`). The loser is caught, so a promise
 * that settles late (or a fetch stub that never settles) leaves no unhandled rejection.
 */
function deadline<T>(p: Promise<T>, ms: number, ctrl: AbortController): Promise<T> {
  p.catch(noop);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new DeadlineError(`no answer within ${ms} ms`));
      ctrl.abort();
    }, ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function transportError(e: unknown, timeoutMs: number, what = "the request"): AgentDBError {
  if (e instanceof AgentDBError) return e;
  if (e instanceof DeadlineError) return new TimeoutError(`${what}: no answer within ${timeoutMs} ms`, e);
  const msg = e instanceof Error ? e.message : String(e);
  return new ConnectionError(`${what}: ${msg}`, e);
}

function isRetryable(e: unknown): boolean {
  return (
    e instanceof TimeoutError ||
    e instanceof ConnectionError ||
    (e instanceof AgentDBError && (e.status === 429 || e.status === 503))
  );
}

/**
 * The typed error for an error answer; `headers` give its `retry-after` and `x-request-id`.
 * `status` 0 means the status is the code's (a change stream's `error` event).
 */
function errorFromBody(status: number, text: string, headers?: Headers): AgentDBError {
  let code: string | undefined;
  let message = text.trim().split("\n")[0];
  try {
    const b = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    if (b && typeof b.error === "object" && b.error !== null) {
      if (typeof b.error.code === "string") code = b.error.code;
      if (typeof b.error.message === "string") message = b.error.message;
    }
  } catch {
    // not JSON: keep the status's code and the text
  }
  if (status === 0) {
    code ??= "internal";
    status = statusFor(code);
  }
  code ??= defaultCode(status);
  message ||= `HTTP ${status}`;
  const retryAfterMs = parseRetryAfter(headers?.get("retry-after") ?? null);
  return errorFor(status, code, message, retryAfterMs, headers?.get("x-request-id") ?? undefined);
}

async function errorFromResponse(res: Response): Promise<AgentDBError> {
  let text = "";
  try {
    text = await res.text();
  } catch {
    // the body is lost; the status still says enough
  }
  return errorFromBody(res.status, text, res.headers);
}

function badAnswer(message: string): AgentDBError {
  return new AgentDBError(message, { code: "invalid_response", status: 0 });
}

/** `Retry-After` in milliseconds: delay-seconds or an HTTP date. */
export function parseRetryAfter(v: string | null): number | undefined {
  if (v === null) return undefined;
  const s = v.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000);
  const at = Date.parse(s);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason ?? new Error("aborted"));
    const done = (): void => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason ?? new Error("aborted"));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function qs(params: Record<string, string | number | null | undefined>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null) parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  }
  return parts.length > 0 ? `?${parts.join("&")}` : "";
}

/** Whether cursor `a` comes after `b` (numeric cursors compare as numbers). */
function isAfter(a: string, b: string): boolean {
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) return BigInt(a) > BigInt(b);
  return a !== b;
}

/** The claims of a JWT, read without checking it (the hub checks it). */
export function jwtClaims(token: string): JsonObject | undefined {
  const part = token.split(".")[1];
  if (part === undefined) return undefined;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    const claims: unknown = JSON.parse(new TextDecoder().decode(bytes));
    return typeof claims === "object" && claims !== null ? (claims as JsonObject) : undefined;
  } catch {
    return undefined;
  }
}

function tokenFrom(token: string): CachedToken {
  const c = jwtClaims(token);
  const exp = typeof c?.exp === "number" ? c.exp * 1000 : undefined;
  const iat = typeof c?.iat === "number" ? c.iat * 1000 : undefined;
  const life = exp !== undefined && iat !== undefined ? exp - iat : REFRESH_MARGIN_MS * 2;
  return {
    token,
    expiresAtMs: exp,
    refreshAtMs: exp === undefined ? Number.POSITIVE_INFINITY : exp - Math.min(REFRESH_MARGIN_MS, life / 2),
    tenant: typeof c?.tenant === "string" ? c.tenant : undefined,
    agent: typeof c?.sub === "string" ? c.sub : undefined,
    scopes: Array.isArray(c?.scope) ? (c.scope as string[]) : undefined,
  };
}

/** A UUIDv7: 48 bits of Unix milliseconds, then random bits. */
export function uuidv7(): string {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  const ms = Date.now();
  const hi = Math.floor(ms / 2 ** 32);
  b[0] = (hi >>> 8) & 0xff;
  b[1] = hi & 0xff;
  b[2] = (ms >>> 24) & 0xff;
  b[3] = (ms >>> 16) & 0xff;
  b[4] = (ms >>> 8) & 0xff;
  b[5] = ms & 0xff;
  b[6] = ((b[6] as number) & 0x0f) | 0x70;
  b[8] = ((b[8] as number) & 0x3f) | 0x80;
  let hex = "";
  for (const x of b) hex += x.toString(16).padStart(2, "0");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
