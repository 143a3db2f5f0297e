// AgentDBClient against a real hub: every method, typed errors, token refresh, change streams.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startHub, counting } from "./hub.mjs";
import {
  AgentDBClient,
  AuthenticationError,
  PermissionError,
  NotFoundError,
  InvalidRequestError,
  AgentDBError,
} from "../dist/index.js";

let hub;
let key;
let db;

before(async () => {
  hub = await startHub();
  key = await hub.apiKey();
  db = new AgentDBClient({ endpoint: hub.endpoint, apiKey: key, fetch: hub.fetch, agentId: "ts-test" });
});
after(async () => {
  await hub?.stop();
});

test("health and openapi need no token", async () => {
  const bare = new AgentDBClient({ endpoint: hub.endpoint, fetch: hub.fetch, token: "not-a-token" });
  const h = await bare.health();
  assert.equal(h.status, "ok");
  assert.equal(h.hub, "hub-1");
  const doc = await bare.openapi();
  assert.match(String(doc.openapi), /^3\.1/);
  assert.ok(doc.paths["/v1/changes"]);
});

test("store, get, update, list, query, stats, delete", async () => {
  const one = await db.storeEpisode({
    task: "summarise invoice",
    input: "invoice #4411 (PDF)",
    output: "Total: 300 EUR",
    reward: 0.95,
    critique: "correct total and currency",
    tags: ["invoice"],
    metadata: { customer: "acme-gmbh" },
  });
  assert.equal(one.inserted, true);
  assert.match(one.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  // Storing the same id again is not a second episode.
  const again = await db.storeEpisode({ id: one.id, task: "summarise invoice", reward: 0.95 });
  assert.deepEqual(again, { id: one.id, inserted: false });

  const batch = await db.storeEpisodes([
    { id: "0190a000-0000-7000-8000-000000000002", task: "summarise invoice", output: "Total: unreadable", reward: 0.2, tags: ["invoice"] },
    { id: "0190a000-0000-7000-8000-000000000003", task: "triage bug report", output: "severity high", reward: 0.8 },
  ]);
  assert.deepEqual(batch.map((r) => r.inserted), [true, true]);

  const ep = await db.getEpisode(one.id);
  assert.equal(ep.id, one.id);
  assert.equal(ep.task, "summarise invoice");
  assert.equal(ep.input, "invoice #4411 (PDF)");
  assert.equal(ep.output, "Total: 300 EUR");
  assert.equal(ep.reward, 0.95);
  assert.equal(ep.success, true);
  assert.equal(ep.critique, "correct total and currency");
  assert.deepEqual(ep.tags, ["invoice"]);
  assert.deepEqual(ep.metadata, { customer: "acme-gmbh" });
  assert.equal(ep.agent, "ts-test");
  assert.equal(typeof ep.created_ms, "number");

  const patched = await db.updateEpisode("0190a000-0000-7000-8000-000000000002", {
    reward: 0.3,
    critique: "ask for a scan first",
    tags: ["invoice", "scan"],
    metadata: { customer: "acme-gmbh" },
  });
  assert.equal(patched.reward, 0.3);
  assert.equal(patched.critique, "ask for a scan first");
  assert.deepEqual(patched.tags, ["invoice", "scan"]);

  const p1 = await db.listEpisodes({ limit: 1 });
  assert.equal(p1.episodes.length, 1);
  assert.equal(typeof p1.next_cursor, "string");
  const p2 = await db.listEpisodes({ cursor: p1.next_cursor, limit: 1 });
  assert.notEqual(p2.episodes[0].id, p1.episodes[0].id);
  const all = [];
  for await (const e of db.listAll({ limit: 2 })) all.push(e.id);
  assert.equal(new Set(all).size, all.length);
  assert.ok(all.includes(one.id) && all.includes("0190a000-0000-7000-8000-000000000003"));

  const q = await db.query("summarise the invoice", {
    k: 5,
    filter: { tags: ["invoice"], min_reward: 0.25, metadata: { customer: "acme-gmbh" } },
  });
  assert.ok(q.matches.length >= 1);
  assert.ok(q.matches.every((m) => m.episode.tags.includes("invoice") && m.episode.reward >= 0.25));
  assert.equal(typeof q.matches[0].score, "number");

  const stats = await db.stats();
  assert.ok(stats.episodes >= 3);
  assert.equal(typeof stats.embedding_model, "string");
  // A vector query, with the tenant's model and dimension.
  const dims = 384;
  const vector = Array.from({ length: dims }, (_, i) => Math.sin(i + 1));
  const qv = await db.query({ model: stats.embedding_model, vector }, { k: 2 });
  assert.equal(qv.matches.length, 2);

  const page = await db.changesPage({ limit: 2 });
  assert.equal(page.changes.length, 2);
  assert.equal(typeof page.next_cursor, "string");
  assert.equal(typeof page.more, "boolean");
  const next = await db.changesPage({ since: page.next_cursor, limit: 100 });
  assert.ok(next.changes.every((c) => c.type === "put" || c.type === "deleted"));

  await db.deleteEpisode("0190a000-0000-7000-8000-000000000003");
  await assert.rejects(db.getEpisode("0190a000-0000-7000-8000-000000000003"), (e) => {
    assert.ok(e instanceof NotFoundError);
    assert.equal(e.code, "not_found");
    assert.equal(e.status, 404);
    // The hub's id of the request, which its audit log records it under.
    assert.match(e.requestId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    return true;
  });
  await assert.rejects(db.deleteEpisode("0190a000-0000-7000-8000-0000000000ff"), NotFoundError);
});

test("typed errors: bad key, read-only key, bad input", async () => {
  const bad = new AgentDBClient({ endpoint: hub.endpoint, apiKey: "adb_nope_nope", fetch: hub.fetch });
  await assert.rejects(bad.stats(), (e) => {
    assert.ok(e instanceof AuthenticationError);
    assert.ok(e instanceof AgentDBError);
    assert.equal(e.code, "unauthenticated");
    assert.equal(e.status, 401);
    assert.equal(e.name, "AuthenticationError");
    return true;
  });
  const ro = new AgentDBClient({ endpoint: hub.endpoint, apiKey: await hub.apiKey("read"), fetch: hub.fetch });
  assert.ok((await ro.stats()).episodes >= 0);
  await assert.rejects(ro.storeEpisode({ task: "t", reward: 0.5 }), (e) => {
    assert.ok(e instanceof PermissionError);
    assert.equal(e.code, "forbidden");
    assert.equal(e.status, 403);
    return true;
  });
  await assert.rejects(db.storeEpisode({ task: "", reward: 0.5 }), (e) => {
    assert.ok(e instanceof InvalidRequestError);
    assert.equal(e.code, "invalid_request");
    assert.equal(e.status, 422);
    return true;
  });
  await assert.rejects(db.query("x", { k: 1_000_000 }), InvalidRequestError);
});

test("tokens: cached, refreshed once after a 401, revoked", async () => {
  const f = counting(hub.fetch);
  const c = new AgentDBClient({ endpoint: hub.endpoint, apiKey: key, fetch: f });
  await c.stats();
  await c.stats();
  assert.equal(f.count("POST /v1/token"), 1, "the token is cached");
  const first = c.tokenInfo.token;
  assert.equal(c.tokenInfo.tenant, "demo");

  // Revoke the client's token behind its back: the next request gets 401, refreshes once.
  const other = new AgentDBClient({ endpoint: hub.endpoint, token: first, fetch: hub.fetch });
  await other.revokeToken();
  await assert.rejects(other.stats(), (e) => e instanceof AuthenticationError && e.code === "unauthenticated");
  await c.stats();
  assert.equal(f.count("POST /v1/token"), 2);
  assert.notEqual(c.tokenInfo.token, first);

  // revokeToken: DELETE /v1/token, then a new token on the next request.
  await c.revokeToken();
  assert.equal(c.tokenInfo, undefined);
  assert.equal(f.count("DELETE /v1/token"), 1);
  await c.revokeToken(); // nothing held: nothing to do
  assert.equal(f.count("DELETE /v1/token"), 1);
  await c.stats();
  assert.equal(f.count("POST /v1/token"), 3);

  // getToken is asked again after a 401.
  let asked = 0;
  const tokens = [first, (await new AgentDBClient({ endpoint: hub.endpoint, apiKey: key, fetch: hub.fetch }).authenticate()).token];
  const g = new AgentDBClient({ endpoint: hub.endpoint, fetch: hub.fetch, getToken: async () => tokens[asked++] });
  await g.stats();
  assert.equal(asked, 2);
});

test("the client certificate alone is a credential", async () => {
  const c = new AgentDBClient({ endpoint: hub.endpoint, fetch: hub.fetch });
  const t = await c.authenticate();
  assert.equal(t.tenant, "demo");
  assert.ok((await c.stats()).episodes >= 0);
});

async function storeN(n, label) {
  const ids = [];
  for (let i = 0; i < n; i++) ids.push((await db.storeEpisode({ task: `${label} ${i}`, reward: 0.5, tags: [label] })).id);
  return ids;
}

test("changes: stream, abort mid-stream, resume: each change once, in order", async () => {
  const since = (await db.changesPage({ limit: 1000 })).next_cursor;
  const before = await storeN(3, "sse-a");
  const ctrl = new AbortController();
  const seen = [];
  let lastCursor;
  const it = db.changes({ since, signal: ctrl.signal });
  let later;
  for await (const ch of it) {
    seen.push(ch.id);
    lastCursor = ch.cursor;
    assert.equal(ch.type, "put");
    assert.equal(ch.episode.id, ch.id);
    if (seen.length === 3) later = storeN(3, "sse-a"); // live changes while streaming
    if (seen.length === 4) ctrl.abort(); // drop the connection mid-stream
  }
  assert.equal(seen.length, 4, "abort ends the iteration quietly");
  const after = await later;
  // Resume after the last cursor received.
  const ctrl2 = new AbortController();
  for await (const ch of db.changes({ since: lastCursor, signal: ctrl2.signal })) {
    seen.push(ch.id);
    if (seen.length === 6) break;
  }
  assert.deepEqual(seen, [...before, ...after]);
});

test("changes: a token revoked mid-stream ends it with a typed error naming the stream's answer", async () => {
  const token = (await new AgentDBClient({ endpoint: hub.endpoint, apiKey: key, fetch: hub.fetch }).authenticate()).token;
  const answered = [];
  const recording = async (url, init) => {
    const res = await hub.fetch(url, init);
    if (String(url).endsWith("/v1/changes")) answered.push(res.headers.get("x-request-id"));
    return res;
  };
  const reader = new AgentDBClient({ endpoint: hub.endpoint, token, fetch: recording });
  const since = (await db.changesPage({ limit: 1000 })).next_cursor;
  await storeN(1, "sse-r");
  const it = reader.changes({ since })[Symbol.asyncIterator]();
  assert.equal((await it.next()).done, false);
  await new AgentDBClient({ endpoint: hub.endpoint, token, fetch: hub.fetch }).revokeToken();
  await storeN(1, "sse-r"); // wakes the stream, which finds its token revoked
  await assert.rejects(
    it.next(),
    (e) => e instanceof AuthenticationError && e.code === "unauthenticated" && e.status === 401 && /revoked/.test(e.message) && e.requestId === answered[0],
  );
  assert.equal(answered.length, 1);
  assert.match(answered[0], /^[0-9a-f-]{36}$/);
});

test("changes: a dropped connection is resumed with Last-Event-ID, nothing twice", async () => {
  const since = (await db.changesPage({ limit: 1000 })).next_cursor;
  const ids = await storeN(6, "sse-b");
  let connections = 0;
  const lastEventIds = [];
  // Cut every stream after two events, as a proxy dropping connections would.
  const cutting = async (url, init) => {
    const res = await hub.fetch(url, init);
    if (!(init?.headers?.accept === "text/event-stream")) return res;
    connections++;
    lastEventIds.push(init.headers["last-event-id"]);
    let events = 0;
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    const enc = new TextEncoder();
    const body = new ReadableStream({
      async pull(c) {
        const { done, value } = await reader.read();
        if (done) return c.close();
        let text = dec.decode(value, { stream: true });
        // Pass events up to the second one's end, then reset the connection.
        let at = 0;
        while (events < 2) {
          const i = text.indexOf("\n\n", at);
          if (i === -1) break;
          events++;
          at = i + 2;
        }
        if (events < 2) return c.enqueue(enc.encode(text));
        c.enqueue(enc.encode(text.slice(0, at)));
        reader.cancel().catch(() => {});
        c.error(new TypeError("connection reset"));
      },
    });
    return new Response(body, { status: res.status, headers: res.headers });
  };
  const c = new AgentDBClient({ endpoint: hub.endpoint, apiKey: key, fetch: cutting });
  const got = [];
  for await (const ch of c.changes({ since })) {
    got.push(ch.id);
    if (got.length === ids.length) break;
  }
  assert.deepEqual(got, ids);
  assert.ok(connections >= 3, `reconnected (${connections} connections)`);
  assert.equal(lastEventIds[0], since);
  assert.ok(lastEventIds.slice(1).every((x) => x !== undefined));
});
