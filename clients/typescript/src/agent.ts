/**
 * `EphemeralAgent`: a short-lived agent with its own token, the original library's API.
 *
 * ```ts
 * const agent = await EphemeralAgent.spawn({ tenantId: "acme", lifetime: 300, apiKey });
 * await agent.execute(async (db, ctx) => { … });
 * await agent.destroy();
 * ```
 *
 * Spawning obtains a token for the agent (through the exchange, so it is refreshed for as
 * long as the agent lives) and, with `memorySync`, pulls one page of the tenant's memory.
 * At the end of its lifetime the agent destroys itself (revoking its token) on a timer that
 * does not keep a Node process alive; work asked of it afterwards throws `AgentExpiredError`.
 */

import { AgentDBClient, type FetchLike } from "./client.js";
import { AgentExpiredError, PermissionError } from "./errors.js";
import type { Episode, JsonObject, Match } from "./types.js";

export interface SpawnOptions {
  /** The tenant the agent works for; its credential must be worth this tenant. */
  tenantId: string;
  /** Seconds the agent lives (default 300). */
  lifetime?: number;
  /** The gateway; defaults to `FEDERATION_HUB_ENDPOINT` where a process environment exists. */
  hubEndpoint?: string;
  apiKey?: string;
  token?: string;
  getToken?: () => string | Promise<string>;
  /** The transport (for mutual TLS on Node, a fetch built on an undici `Agent`). */
  fetch?: FetchLike;
  /** The agent's name (its tokens' `sub`); default `agent-<uuid>`. */
  agentId?: string;
  /** Pull recent memories at spawn (default true). */
  memorySync?: boolean;
  /** Per-request timeout in milliseconds (default 10 000). */
  timeoutMs?: number;
  /** Retries per request (default 3). */
  maxRetries?: number;
  /** Token lifetime to ask for, in seconds (default: the agent's lifetime, at most 300). */
  tokenTtlSecs?: number;
}

export interface AgentContext {
  agentId: string;
  tenantId: string;
  /** What spawn pulled: up to 100 of the tenant's episodes, newest first. */
  memories: Episode[];
}

export interface AgentEpisode {
  task: string;
  input: string;
  output: string;
  reward: number;
  critique?: string;
  tags?: string[];
  metadata?: JsonObject;
}

/** Memories pulled at spawn. */
const MEMORY_PAGE = 100;

/** A client that refuses work once its agent is gone. */
class AgentClient extends AgentDBClient {
  alive: () => boolean = () => true;
  protected override beforeRequest(): void {
    if (!this.alive()) throw new AgentExpiredError();
  }
}

export class EphemeralAgent {
  readonly agentId: string;
  readonly tenantId: string;
  /** The agent's client (the `db` that `execute` passes). */
  readonly db: AgentDBClient;
  private readonly context: AgentContext;
  private expiresAtMs: number;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private destroying: Promise<void> | undefined;

  private constructor(db: AgentClient, agentId: string, tenantId: string, lifetimeMs: number, memories: Episode[]) {
    this.db = db;
    this.agentId = agentId;
    this.tenantId = tenantId;
    this.expiresAtMs = Date.now() + lifetimeMs;
    this.context = { agentId, tenantId, memories };
    db.alive = () => this.isAlive();
    this.timer = setTimeout(() => {
      this.destroy().catch(() => {});
    }, lifetimeMs);
    // Do not keep a Node process alive for the agent's sake.
    const t = this.timer as unknown as { unref?: () => void };
    if (typeof t.unref === "function") t.unref();
  }

  /** Obtains the agent's token, checks its tenant and pulls its memories. */
  static async spawn(options: SpawnOptions): Promise<EphemeralAgent> {
    if (!options || typeof options.tenantId !== "string" || options.tenantId === "") {
      throw new TypeError("EphemeralAgent.spawn: `tenantId` is required");
    }
    const lifetime = options.lifetime ?? 300;
    if (!(lifetime > 0) || !Number.isFinite(lifetime)) {
      throw new TypeError("EphemeralAgent.spawn: `lifetime` must be a positive number of seconds");
    }
    const endpoint = options.hubEndpoint ?? envEndpoint();
    if (endpoint === undefined || endpoint === "") {
      throw new TypeError("EphemeralAgent.spawn: `hubEndpoint` is required (or FEDERATION_HUB_ENDPOINT)");
    }
    const agentId = options.agentId ?? `agent-${crypto.randomUUID()}`;
    const db = new AgentClient({
      endpoint,
      apiKey: options.apiKey,
      token: options.token,
      getToken: options.getToken,
      fetch: options.fetch,
      agentId,
      timeoutMs: options.timeoutMs,
      maxRetries: options.maxRetries,
      tokenTtlSecs: options.tokenTtlSecs ?? Math.min(300, Math.max(1, Math.ceil(lifetime))),
    });
    const started = Date.now();
    const token = await db.authenticate();
    if (token.tenant !== undefined && token.tenant !== options.tenantId) {
      await db.revokeToken().catch(() => {});
      throw new PermissionError(
        `the credential is for tenant ${token.tenant}, not ${options.tenantId}`,
        { code: "tenant_mismatch", status: 0 },
      );
    }
    let memories: Episode[] = [];
    if (options.memorySync ?? true) {
      try {
        const page = await db.listEpisodes({ limit: MEMORY_PAGE });
        memories = page.episodes.slice().sort((a, b) => b.created_ms - a.created_ms);
      } catch (e) {
        await db.revokeToken().catch(() => {});
        throw e;
      }
    }
    const left = lifetime * 1000 - (Date.now() - started);
    return new EphemeralAgent(db, token.agent ?? agentId, options.tenantId, Math.max(0, left), memories);
  }

  /** Runs `fn` with the agent's client and context; refuses once the agent is gone. */
  async execute<T>(fn: (db: AgentDBClient, context: AgentContext) => T | Promise<T>): Promise<T> {
    this.check();
    return await fn(this.db, this.context);
  }

  /** The `k` episodes nearest `text`, best first. */
  async queryMemories(text: string, k = 5): Promise<Match[]> {
    this.check();
    return (await this.db.query(text, { k })).matches;
  }

  /** Stores an episode as this agent; answers its id. */
  async storeEpisode(episode: AgentEpisode): Promise<string> {
    this.check();
    return (await this.db.storeEpisode(episode)).id;
  }

  /** Seconds the agent has left (0 once it is gone). */
  getRemainingLifetime(): number {
    return Math.max(0, (this.expiresAtMs - Date.now()) / 1000);
  }

  isAlive(): boolean {
    return this.destroying === undefined && Date.now() < this.expiresAtMs;
  }

  /** Revokes the agent's token and ends it. Idempotent: later calls share the first. */
  destroy(): Promise<void> {
    if (this.destroying === undefined) {
      if (this.timer !== undefined) clearTimeout(this.timer);
      this.timer = undefined;
      this.expiresAtMs = Math.min(this.expiresAtMs, Date.now());
      this.destroying = this.db.revokeToken();
    }
    return this.destroying;
  }

  private check(): void {
    if (!this.isAlive()) throw new AgentExpiredError();
  }
}

function envEndpoint(): string | undefined {
  const p = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return p?.env?.FEDERATION_HUB_ENDPOINT;
}
