// Runs the bundled worker inside workerd (the Workers runtime) with Miniflare, against a real
// hub. workerd cannot trust the hub's dev CA or present a client certificate, so the worker's
// outbound fetches go through `outboundService` to a Node function that makes the real HTTPS
// request with the CA and client certificate — the part Cloudflare's mTLS certificate binding
// plays in production.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { Miniflare, Response } from 'miniflare';
import { Agent, fetch as undiciFetch } from 'undici';
import { startHub } from '../../testkit/hub.mjs';

const scriptPath = fileURLToPath(new URL('../dist/worker.js', import.meta.url));
let hub;
let mf;
let mfBinding;
const outbound = [];
const viaBinding = [];

before(async () => {
  hub = await startHub(); // mutual TLS on: the dev client certificate names tenant `demo`
  const dispatcher = new Agent({ connect: { ca: hub.ca, cert: hub.cert, key: hub.key } });
  const bindings = { AGENTDB_HUB: hub.endpoint, AGENTDB_API_KEY: await hub.createKey('demo') };

  /** Makes the worker's request for real, with the CA and the client certificate. */
  const hubFetch = (log) => async (request) => {
    const url = new URL(request.url);
    log.push(`${request.method} ${url.pathname}`);
    const hasBody = request.method !== 'GET' && request.method !== 'HEAD';
    const res = await undiciFetch(request.url, {
      method: request.method,
      headers: request.headers,
      body: hasBody ? await request.arrayBuffer() : undefined,
      dispatcher,
    });
    // 204 (DELETE /v1/token) and the like must be answered without a body at all.
    const nullBody = [101, 204, 205, 304].includes(res.status) || request.method === 'HEAD';
    const body = nullBody ? null : await res.arrayBuffer();
    return new Response(body, { status: res.status, headers: res.headers });
  };

  // Every fetch of the worker leaves workerd through the outbound service.
  mf = new Miniflare({
    modules: true,
    scriptPath,
    compatibilityDate: '2024-09-23',
    bindings,
    outboundService: hubFetch(outbound),
  });
  // The same worker with an AGENTDB_MTLS binding, shaped as Cloudflare's mTLS certificate
  // binding (an object with `fetch`); the worker then fetches through it.
  mfBinding = new Miniflare({
    modules: true,
    scriptPath,
    compatibilityDate: '2024-09-23',
    bindings,
    serviceBindings: { AGENTDB_MTLS: hubFetch(viaBinding) },
  });
  await Promise.all([mf.ready, mfBinding.ready]);
});

after(async () => {
  await mf?.dispose();
  await mfBinding?.dispose();
  await hub?.stop();
});

async function ask(body, tenant = 'demo', worker = mf) {
  const res = await worker.dispatchFetch('http://worker.example/', {
    method: 'POST',
    headers: { 'X-Tenant-ID': tenant, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text);
}

test('the second request recalls what the first stored', async () => {
  const first = await ask({ task: 'triage bug report', input: 'crash on login' });
  assert.equal(first.tenantId, 'demo');
  assert.deepEqual(first.recalled, []);
  assert.equal(first.output, 'triage bug report: crash on login');

  const second = await ask({ task: 'triage bug report', input: 'timeout on upload' });
  assert.notEqual(second.agentId, first.agentId, 'each request is its own agent');
  assert.equal(second.recalled.length, 1);
  assert.equal(second.recalled[0].output, first.output);
  assert.match(second.output, /following what worked before: "triage bug report: crash on login"/);

  // Every call the worker made went to the hub's gateway, through the outbound service.
  assert.ok(outbound.some((r) => r === 'POST /v1/token'), outbound.join(', '));
  assert.ok(outbound.some((r) => r === 'POST /v1/query'), outbound.join(', '));
  assert.ok(outbound.some((r) => r === 'POST /v1/episodes'), outbound.join(', '));
  // destroy() revoked each agent's token before the worker answered.
  assert.equal(outbound.filter((r) => r === 'DELETE /v1/token').length, 2, outbound.join(', '));
});

test('with an mTLS certificate binding, the worker fetches through it', async () => {
  const before = outbound.length;
  const third = await ask({ task: 'triage bug report', input: 'blank page' }, 'demo', mfBinding);
  assert.equal(third.recalled.length, 2, 'both earlier episodes are recalled');
  assert.ok(viaBinding.includes('POST /v1/query'), viaBinding.join(', '));
  assert.equal(outbound.length, before, 'nothing went through the outbound service');
});

test('a request without a tenant is refused', async () => {
  const res = await mf.dispatchFetch('http://worker.example/', { method: 'POST', body: '{"task":"x"}' });
  assert.equal(res.status, 400);
  await res.arrayBuffer();
});
