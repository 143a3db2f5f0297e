// Two tenants through one Express app and one real hub: each tenant's requests recall only
// its own episodes, and each tenant's admin stats count only its own.
//
// The hub runs with ENABLE_MTLS=false: the dev client certificate names tenant `demo`, and a
// certificate naming another tenant than the API key's is refused, so a two-tenant app holds
// API keys only (still TLS 1.3, with the dev CA trusted).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, fetch as undiciFetch } from 'undici';
import { createApp } from '../app.js';
import { startHub } from '../../testkit/hub.mjs';

let hub;
let server;
let base;
const ADMIN = 'test-admin-token';

before(async () => {
  hub = await startHub({ env: { ENABLE_MTLS: 'false' } });
  const dispatcher = new Agent({ connect: { ca: hub.ca } });
  const acmeKey = await hub.createKey('acme');
  const app = createApp({
    hubEndpoint: hub.endpoint,
    // `mislabeled` is a configuration mistake: acme's key filed under another tenant.
    apiKeys: { acme: acmeKey, globex: await hub.createKey('globex'), mislabeled: acmeKey },
    adminToken: ADMIN,
    fetch: (url, init) => undiciFetch(url, { ...init, dispatcher }),
  });
  server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  base = `http://127.0.0.1:${server.address().port}`;
});

after(async () => {
  if (server) {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
  await hub?.stop();
});

async function processTask(tenantId, task, input) {
  const res = await fetch(`${base}/api/process`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ tenantId, task, input }),
  });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  return body;
}

async function stats(tenantId, token = ADMIN) {
  const res = await fetch(`${base}/api/admin/stats/${tenantId}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: await res.json() };
}

test('each tenant recalls and counts only its own memory', async () => {
  const task = 'summarise invoice';
  const a1 = await processTask('acme', task, 'acme invoice #1: 300 EUR');
  assert.equal(a1.tenantId, 'acme');
  assert.deepEqual(a1.recalled, []);

  // Same task for the other tenant: acme's episode is invisible to it.
  const g1 = await processTask('globex', task, 'globex invoice #1: 99 USD');
  assert.equal(g1.tenantId, 'globex');
  assert.deepEqual(g1.recalled, [], "globex must not recall acme's episode");

  // Each tenant's second request recalls its own first one, and only that.
  const a2 = await processTask('acme', task, 'acme invoice #2: 120 EUR');
  assert.deepEqual(a2.recalled.map((m) => m.output), [a1.output]);
  assert.match(a2.output, /following what worked before: "summarise invoice: acme invoice #1: 300 EUR"/);

  const g2 = await processTask('globex', task, 'globex invoice #2: 42 USD');
  assert.deepEqual(g2.recalled.map((m) => m.output), [g1.output]);
  assert.ok(!JSON.stringify(g2).includes('acme'), 'nothing of acme reaches globex');

  const acme = await stats('acme');
  assert.equal(acme.status, 200);
  assert.equal(acme.body.tenantId, 'acme');
  assert.equal(acme.body.stats.episodes, 2);

  const globex = await stats('globex');
  assert.equal(globex.status, 200);
  assert.equal(globex.body.stats.episodes, 2);

  // A third acme request changes acme's count and not globex's.
  await processTask('acme', 'triage bug report', 'crash on login');
  assert.equal((await stats('acme')).body.stats.episodes, 3);
  assert.equal((await stats('globex')).body.stats.episodes, 2);
});

test('unknown tenants, missing fields and missing admin tokens are refused', async () => {
  const unknown = await fetch(`${base}/api/process`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ tenantId: 'initech', task: 'x' }),
  });
  assert.equal(unknown.status, 404);
  await unknown.arrayBuffer();

  const missing = await fetch(`${base}/api/process`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ tenantId: 'acme' }),
  });
  assert.equal(missing.status, 400);
  await missing.arrayBuffer();

  // A key is worth its own tenant only: filed under another tenant, the agent refuses to spawn.
  const mislabeled = await fetch(`${base}/api/process`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ tenantId: 'mislabeled', task: 'x' }),
  });
  assert.equal(mislabeled.status, 502);
  assert.equal((await mislabeled.json()).code, 'tenant_mismatch');

  assert.equal((await stats('acme', 'wrong')).status, 401);
  assert.equal((await stats('initech')).status, 404);
});
