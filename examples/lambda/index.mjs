// An AWS Lambda handler that gives each invocation its own short-lived AgentDB agent.
//
// Each invocation spawns an EphemeralAgent for the event's tenant, recalls what earlier
// invocations (of this function or any other agent of the tenant) learned about the task,
// does the task using those memories, stores what it did as an episode, and destroys the
// agent. Nothing survives in the function between invocations: the memory is the hub's.
import { readFileSync } from 'node:fs';
import { EphemeralAgent } from '@agentdb/client';
import { Agent, fetch as undiciFetch } from 'undici';

// Configuration, read once per cold start.
const hubEndpoint = process.env.FEDERATION_HUB_ENDPOINT;
const apiKey = process.env.AGENTDB_API_KEY;

// The hub's CA (when it is not a public one) and a client certificate (when the hub
// requires mutual TLS) are file paths, e.g. from a Lambda layer or /tmp after a secret fetch.
const read = (name) => (process.env[name] ? readFileSync(process.env[name]) : undefined);
const ca = read('AGENTDB_CA');
const cert = read('AGENTDB_CERT');
const key = read('AGENTDB_KEY');
const dispatcher = ca || cert ? new Agent({ connect: { ca, cert, key } }) : undefined;
const hubFetch = dispatcher ? (url, init) => undiciFetch(url, { ...init, dispatcher }) : undefined;

/**
 * The task itself: a deterministic stand-in for a model call. It reuses the best remembered
 * output for the same kind of task, so a second invocation visibly builds on the first.
 */
function doTask(task, input, memories) {
  const best = memories.find((m) => m.episode.reward >= 0.5);
  const output = best
    ? `${task}: ${input} (following what worked before: "${best.episode.output}")`
    : `${task}: ${input}`;
  return {
    output,
    reward: best ? 0.95 : 0.8,
    critique: best
      ? `reused episode ${best.episode.id ?? '?'} (score ${best.score.toFixed(3)})`
      : 'first attempt, nothing to recall',
  };
}

export async function handler(event) {
  const { tenantId, task, input = '' } = event ?? {};
  if (!tenantId || !task) {
    return { statusCode: 400, body: JSON.stringify({ error: 'tenantId and task are required' }) };
  }
  if (!hubEndpoint || !apiKey) {
    return {
      statusCode: 500,
      body: JSON.stringify({ error: 'FEDERATION_HUB_ENDPOINT and AGENTDB_API_KEY must be set' }),
    };
  }

  const agent = await EphemeralAgent.spawn({
    tenantId,
    lifetime: 300, // seconds; longer than the function's timeout
    hubEndpoint,
    apiKey,
    ...(hubFetch ? { fetch: hubFetch } : {}),
  });
  try {
    const result = await agent.execute(async (db, context) => {
      const memories = await agent.queryMemories(task, 5);
      const done = doTask(task, input, memories);
      await agent.storeEpisode({ task, input, output: done.output, reward: done.reward, critique: done.critique });
      return {
        agentId: context.agentId,
        tenantId: context.tenantId,
        task,
        output: done.output,
        recalled: memories.map((m) => ({ task: m.episode.task, output: m.episode.output, reward: m.episode.reward, score: m.score })),
      };
    });
    return {
      statusCode: 200,
      body: JSON.stringify({ ...result, remainingLifetime: agent.getRemainingLifetime() }),
    };
  } finally {
    await agent.destroy();
  }
}
