// Retries, timeouts and stream errors with fetch stubs (no hub): the stubs live only here.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  AgentDBClient,
  RateLimitError,
  UnavailableError,
  TimeoutError,
  ConnectionError,
  AuthenticationError,
  InternalError,
  PermissionError,
  QuotaExceededError,
  SSEParser,
  parseRetryAfter,
} from "../dist/index.js";

const unhandled = [];
process.on("unhandledRejection", (e) => unhandled.push(e));

const json = (status, body, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
const err = (status, code, headers) => json(status, { error: { code, message: code } }, headers);
const FAKE_JWT = `x.${btoa(JSON.stringify({ tenant: "demo", sub: "a", exp: Math.floor(Date.now() / 1000) + 3600, iat: Math.floor(Date.now() / 1000) }))}.y`;

test("429 then 200: retried after Retry-After", async () => {
  const times = [];
  const fetch = async () => {
    times.push(Date.now());
    return times.length === 1 ? err(429, "overloaded", { "retry-after": "1" }) : json(200, { status: "ok", hub: "h" });
  };
  const c = new AgentDBClient({ endpoint: "https://hub.test", fetch });
  assert.deepEqual(await c.health(), { status: "ok", hub: "h" });
  assert.equal(times.length, 2);
  const waited = times[1] - times[0];
  assert.ok(waited >= 950 && waited < 2000, `waited ${waited} ms for Retry-After: 1`);
});

test("Retry-After is bounded; retries run out into a typed error", async () => {
  let n = 0;
  const fetch = async () => {
    n++;
    return err(503, "unavailable", { "retry-after": "3600" });
  };
  const c = new AgentDBClient({ endpoint: "https://hub.test", fetch, maxRetries: 2, maxRetryAfterMs: 50 });
  const t0 = Date.now();
  await assert.rejects(c.health(), (e) => e instanceof UnavailableError && e.code === "unavailable" && e.status === 503 && e.retryAfterMs === 3_600_000);
  assert.equal(n, 3);
  assert.ok(Date.now() - t0 < 1000);
  let m = 0;
  const rl = new AgentDBClient({ endpoint: "https://hub.test", maxRetries: 0, fetch: async () => (m++, err(429, "overloaded", { "retry-after": "1" })) });
  await assert.rejects(rl.health(), RateLimitError);
  assert.equal(m, 1);
  assert.equal(parseRetryAfter("2"), 2000);
  assert.ok(Math.abs(parseRetryAfter(new Date(Date.now() + 5000).toUTCString()) - 5000) < 1500);
});

test("quota_exceeded is a PermissionError of its own, not retried", async () => {
  let n = 0;
  const c = new AgentDBClient({ endpoint: "https://hub.test", fetch: async () => (n++, err(403, "quota_exceeded")) });
  await assert.rejects(
    c.health(),
    (e) => e instanceof QuotaExceededError && e instanceof PermissionError && e.code === "quota_exceeded" && e.status === 403,
  );
  assert.equal(n, 1);
  let m = 0;
  const f = new AgentDBClient({ endpoint: "https://hub.test", fetch: async () => (m++, err(403, "forbidden")) });
  await assert.rejects(f.health(), (e) => e instanceof PermissionError && !(e instanceof QuotaExceededError));
  assert.equal(m, 1);
});

test("an episode's expiry goes to the hub as ttl_secs or expires_at_ms", async () => {
  const bodies = [];
  const fetch = async (_url, init) => {
    bodies.push(JSON.parse(init.body));
    return json(201, { results: [{ id: bodies.at(-1).id ?? "x", inserted: true }] });
  };
  const c = new AgentDBClient({ endpoint: "https://hub.test", token: FAKE_JWT, fetch });
  await c.storeEpisode({ task: "t", reward: 0.5, ttl_secs: 3600 });
  await c.storeEpisodes([{ task: "u", reward: 0.5, expires_at_ms: 1_700_000_000_000 }]);
  assert.equal(bodies[0].ttl_secs, 3600);
  assert.equal(bodies[0].expires_at_ms, undefined);
  assert.equal(bodies[1].episodes[0].expires_at_ms, 1_700_000_000_000);
});

test("network errors are retried with backoff, then ConnectionError", async () => {
  let n = 0;
  const flaky = async () => {
    n++;
    if (n < 3) throw new TypeError("fetch failed");
    return json(200, { status: "ok", hub: "h" });
  };
  assert.equal((await new AgentDBClient({ endpoint: "https://hub.test", fetch: flaky }).health()).status, "ok");
  assert.equal(n, 3);
  const down = new AgentDBClient({ endpoint: "https://hub.test", maxRetries: 1, fetch: async () => { throw new TypeError("ECONNREFUSED"); } });
  await assert.rejects(down.health(), (e) => e instanceof ConnectionError && e.code === "connection" && e.status === 0);
  // 500 is not retried.
  let k = 0;
  const broken = new AgentDBClient({ endpoint: "https://hub.test", fetch: async () => (k++, err(500, "internal")) });
  await assert.rejects(broken.health(), InternalError);
  assert.equal(k, 1);
});

test("a fetch that never answers times out", async () => {
  let calls = 0;
  const never = () => {
    calls++;
    return new Promise(() => {}); // ignores its signal, never settles
  };
  const c = new AgentDBClient({ endpoint: "https://hub.test", fetch: never, timeoutMs: 100, maxRetries: 1 });
  const t0 = Date.now();
  await assert.rejects(c.stats(), (e) => e instanceof TimeoutError && e.code === "timeout");
  const took = Date.now() - t0;
  assert.equal(calls, 2, "the token exchange timed out, was retried once, timed out again");
  assert.ok(took >= 200 && took < 3000, `took ${took} ms`);
  // A fetch that honours its signal gets aborted.
  let aborted = false;
  const honest = (url, init) =>
    new Promise((_, reject) => init.signal.addEventListener("abort", () => { aborted = true; reject(new DOMException("aborted", "AbortError")); }));
  await assert.rejects(new AgentDBClient({ endpoint: "https://hub.test", token: FAKE_JWT, fetch: honest, timeoutMs: 50, maxRetries: 0 }).stats(), TimeoutError);
  assert.ok(aborted);
});

function sse(events) {
  return new Response(events.join(""), { status: 200, headers: { "content-type": "text/event-stream" } });
}
const put = (cursor, id) => `id: ${cursor}\nevent: put\ndata: ${JSON.stringify({ cursor: String(cursor), type: "put", id, episode: null })}\n\n`;

test("changes: an error event for token expiry refreshes and resumes; another error is typed", async () => {
  let tokens = 0;
  const seenLastIds = [];
  const fetch = async (url, init) => {
    seenLastIds.push([init.headers.authorization, init.headers["last-event-id"]]);
    if (seenLastIds.length === 1) {
      return sse([": keep-alive\n\n", put(1, "a"), put(2, "b"), `event: error\ndata: {"error":{"code":"token_expired","message":"expired"}}\n\n`]);
    }
    // The hub resends 2 (it must not be yielded twice) and goes on.
    return sse([put(2, "b"), put(3, "c"), `event: error\r\ndata: {"error":{"code":"unauthenticated","message":"revoked"}}\r\n\r\n`]);
  };
  const c = new AgentDBClient({ endpoint: "https://hub.test", fetch, getToken: () => `${FAKE_JWT}${++tokens}` });
  const got = [];
  await assert.rejects(
    (async () => {
      for await (const ch of c.changes()) got.push(ch.id);
    })(),
    (e) => e instanceof AuthenticationError && e.code === "unauthenticated",
  );
  assert.deepEqual(got, ["a", "b", "c"]);
  assert.equal(tokens, 2);
  assert.equal(seenLastIds[0][1], undefined);
  assert.equal(seenLastIds[1][1], "2");
  assert.notEqual(seenLastIds[0][0], seenLastIds[1][0]);
});

test("changes: an error event's status is its code's, and it carries the stream's request id", async () => {
  const ended = (code) => async () =>
    new Response(`event: error\ndata: {"error":{"code":"${code}","message":"${code}"}}\n\n`, {
      status: 200,
      headers: { "content-type": "text/event-stream", "x-request-id": `id-${code}` },
    });
  const drain = async (c) => {
    for await (const _ of c.changes()) {
      // no change precedes the error
    }
  };
  for (const [code, status, type] of [
    ["internal", 500, InternalError],
    ["forbidden", 403, PermissionError],
    ["unauthenticated", 401, AuthenticationError],
  ]) {
    const c = new AgentDBClient({ endpoint: "https://hub.test", fetch: ended(code), token: FAKE_JWT, maxRetries: 0 });
    await assert.rejects(drain(c), (e) => e instanceof type && e.code === code && e.status === status && e.requestId === `id-${code}`);
  }
});

test("SSE parser: split chunks, CRLF, comments, multi-line data", () => {
  const p = new SSEParser();
  const out = [];
  for (const chunk of ["id: 7\r", "\nevent: put\r\ndata: {\"a\":", "1}\r\n\r\n: ping\n\n", "data: x\ndata: y\n\nevent:deleted\nid:8\ndata:z\n\n"]) {
    out.push(...p.push(chunk));
  }
  assert.deepEqual(out, [
    { id: "7", event: "put", data: '{"a":1}' },
    { id: undefined, event: "message", data: "x\ny" },
    { id: "8", event: "deleted", data: "z" },
  ]);
});

test("no unhandled rejections", async () => {
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(unhandled, []);
});
