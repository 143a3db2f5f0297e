// EphemeralAgent against a real hub: spawn → execute → queryMemories → storeEpisode → destroy,
// expiry, and token refresh over an agent that outlives its tokens.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startHub, counting } from "./hub.mjs";
import { EphemeralAgent, AgentDBClient, AgentExpiredError, AuthenticationError, PermissionError } from "../dist/index.js";

let hub;
let apiKey;

before(async () => {
  hub = await startHub();
  apiKey = await hub.apiKey();
  const db = new AgentDBClient({ endpoint: hub.endpoint, apiKey, fetch: hub.fetch });
  await db.storeEpisodes([
    { task: "summarise invoice", output: "Total: 300 EUR", reward: 0.9, tags: ["invoice"] },
    { task: "triage bug report", output: "severity high", reward: 0.7 },
  ]);
});
after(async () => {
  await hub?.stop();
});

test("spawn → execute → queryMemories → storeEpisode → destroy", async () => {
  const f = counting(hub.fetch);
  const agent = await EphemeralAgent.spawn({ tenantId: "demo", lifetime: 60, hubEndpoint: hub.endpoint, apiKey, fetch: f });
  assert.ok(agent.isAlive());
  assert.match(agent.agentId, /^agent-/);
  const rem = agent.getRemainingLifetime();
  assert.ok(rem > 58 && rem <= 60, `remaining ${rem}`);

  const seen = await agent.execute(async (db, ctx) => {
    assert.ok(db instanceof AgentDBClient);
    assert.equal(ctx.tenantId, "demo");
    assert.equal(ctx.agentId, agent.agentId);
    return ctx.memories.map((m) => m.task);
  });
  assert.ok(seen.includes("summarise invoice") && seen.includes("triage bug report"));

  const id = await agent.storeEpisode({
    task: "summarise invoice",
    input: "invoice #9",
    output: "Total: 12 EUR",
    reward: 0.8,
    critique: "fine",
    tags: ["invoice"],
    metadata: { customer: "acme" },
  });
  const stored = await agent.execute((db) => db.getEpisode(id));
  assert.equal(stored.agent, agent.agentId);
  const matches = await agent.queryMemories("summarise the invoice", 2);
  assert.equal(matches.length, 2);
  assert.ok(matches[0].episode.task.includes("invoice"));
  assert.equal(typeof matches[0].score, "number");

  const token = agent.db.tokenInfo.token;
  await agent.destroy();
  await agent.destroy(); // idempotent
  assert.equal(f.count("DELETE /v1/token"), 1);
  assert.equal(agent.isAlive(), false);
  assert.equal(agent.getRemainingLifetime(), 0);
  await assert.rejects(agent.queryMemories("x"), AgentExpiredError);
  await assert.rejects(agent.execute(() => 1), AgentExpiredError);
  // The token is revoked on the hub, not only forgotten.
  const withOld = new AgentDBClient({ endpoint: hub.endpoint, token, fetch: hub.fetch });
  await assert.rejects(withOld.stats(), (e) => e instanceof AuthenticationError && e.code === "unauthenticated");
});

test("expiry: the agent destroys itself and refuses work, even through db", async () => {
  const f = counting(hub.fetch);
  const agent = await EphemeralAgent.spawn({ tenantId: "demo", lifetime: 1, hubEndpoint: hub.endpoint, apiKey, fetch: f, memorySync: false });
  let db;
  await agent.execute((d) => {
    db = d;
  });
  await new Promise((r) => setTimeout(r, 1300));
  assert.equal(agent.isAlive(), false);
  await assert.rejects(agent.storeEpisode({ task: "late", input: "", output: "", reward: 0.1 }), (e) => e instanceof AgentExpiredError && e.code === "agent_expired");
  await assert.rejects(db.stats(), AgentExpiredError);
  assert.equal(f.count("DELETE /v1/token"), 1, "the expiry timer revoked the token");
});

test("an agent outliving its tokens keeps working (2 s tokens over 5 s)", async () => {
  const f = counting(hub.fetch);
  const agent = await EphemeralAgent.spawn({
    tenantId: "demo",
    lifetime: 30,
    tokenTtlSecs: 2,
    hubEndpoint: hub.endpoint,
    apiKey,
    fetch: f,
    memorySync: false,
  });
  const first = agent.db.tokenInfo;
  assert.ok(first.expiresAtMs - Date.now() <= 2000);
  const t0 = Date.now();
  let ops = 0;
  while (Date.now() - t0 < 5000) {
    await agent.storeEpisode({ task: "tick", input: String(ops), output: "", reward: 0.5 });
    await agent.queryMemories("tick", 1);
    ops++;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.ok(f.count("POST /v1/token") >= 4, `tokens obtained: ${f.count("POST /v1/token")}`);
  assert.notEqual(agent.db.tokenInfo.token, first.token);
  await agent.destroy();
});

test("a credential for another tenant is refused at spawn; the process is not kept alive", async () => {
  await assert.rejects(
    EphemeralAgent.spawn({ tenantId: "acme", hubEndpoint: hub.endpoint, apiKey, fetch: hub.fetch }),
    (e) => e instanceof PermissionError && e.code === "tenant_mismatch",
  );
  await assert.rejects(EphemeralAgent.spawn({ tenantId: "demo", apiKey, fetch: hub.fetch }), TypeError);
  process.env.FEDERATION_HUB_ENDPOINT = hub.endpoint;
  try {
    const agent = await EphemeralAgent.spawn({ tenantId: "demo", apiKey, fetch: hub.fetch, memorySync: false });
    assert.ok(agent.getRemainingLifetime() > 299);
    await agent.destroy();
  } finally {
    delete process.env.FEDERATION_HUB_ENDPOINT;
  }
});

test("the lifetime timer does not keep a Node process alive", async () => {
  const { execFile } = await import("node:child_process");
  const { fileURLToPath } = await import("node:url");
  const script = fileURLToPath(new URL("./unref.mjs", import.meta.url));
  const t0 = Date.now();
  const out = await new Promise((res, rej) =>
    execFile(process.execPath, [script, hub.endpoint, hub.dev, apiKey], { timeout: 20_000 }, (e, so, se) => (e ? rej(new Error(`${e.message}\n${se}`)) : res(so))),
  );
  assert.equal(out.trim(), "done");
  assert.ok(Date.now() - t0 < 20_000);
});
