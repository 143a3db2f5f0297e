// Invokes the handler the way the Lambda Node.js runtime does on a cold start: configuration
// in the environment, the module imported afresh, then `handler(event)` awaited. Two
// invocations, each with its own module instance (so nothing is shared in memory), against a
// real hub: the second recalls what the first stored.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHub } from '../../testkit/hub.mjs';

const handlerUrl = new URL('../index.mjs', import.meta.url).href;
let hub;

before(async () => {
  hub = await startHub(); // mutual TLS on: the dev client certificate names tenant `demo`
  process.env.FEDERATION_HUB_ENDPOINT = hub.endpoint;
  process.env.AGENTDB_API_KEY = await hub.createKey('demo');
  process.env.AGENTDB_CA = hub.files.ca;
  process.env.AGENTDB_CERT = hub.files.cert;
  process.env.AGENTDB_KEY = hub.files.key;
});

after(async () => {
  await hub?.stop();
});

/** A cold start: a new instance of the handler's module, then one invocation. */
async function invoke(n, event) {
  const { handler } = await import(`${handlerUrl}?invocation=${n}`);
  const response = await handler(event);
  assert.equal(response.statusCode, 200, response.body);
  return JSON.parse(response.body);
}

test('the second invocation recalls what the first stored', async () => {
  const event = { tenantId: 'demo', task: 'summarise invoice', input: 'invoice #4411: 300 EUR' };

  const first = await invoke(1, event);
  assert.equal(first.tenantId, 'demo');
  assert.deepEqual(first.recalled, [], 'a fresh hub has nothing to recall');
  assert.equal(first.output, 'summarise invoice: invoice #4411: 300 EUR');
  assert.ok(first.remainingLifetime > 0 && first.remainingLifetime <= 300);

  const second = await invoke(2, { ...event, input: 'invoice #4412: 120 EUR' });
  assert.notEqual(second.agentId, first.agentId, 'each invocation is its own agent');
  assert.equal(second.recalled.length, 1);
  assert.equal(second.recalled[0].task, 'summarise invoice');
  assert.equal(second.recalled[0].output, first.output);
  assert.match(second.output, /following what worked before: "summarise invoice: invoice #4411: 300 EUR"/);
});

test('an event without a tenant is refused before any agent is spawned', async () => {
  const { handler } = await import(`${handlerUrl}?invocation=bad`);
  const response = await handler({ task: 'summarise invoice' });
  assert.equal(response.statusCode, 400);
});
