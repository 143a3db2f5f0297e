// A Cloudflare Worker that gives each request its own short-lived AgentDB agent.
//
// POST / with `X-Tenant-ID: <tenant>` and a JSON body `{ "task": "...", "input": "..." }`.
// The worker spawns an EphemeralAgent for the tenant over the hub's HTTPS gateway, recalls
// what the tenant's agents learned about the task, does the task, stores an episode and
// destroys the agent before answering.
//
// Bindings: AGENTDB_HUB (the gateway, e.g. https://hub.example.com:8443), the secret
// AGENTDB_API_KEY (an API key of the tenant; `wrangler secret put AGENTDB_API_KEY`) and, when
// the hub requires mutual TLS, AGENTDB_MTLS: an mTLS certificate binding whose `fetch`
// presents the client certificate (wrangler.toml `mtls_certificates`).
import { EphemeralAgent, AgentDBError } from '@agentdb/client';

const json = (body, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

/** A deterministic stand-in for the real work (a model call): it builds on the best memory. */
function doTask(task, input, memories) {
  const best = memories.find((m) => m.episode.reward >= 0.5);
  return best
    ? { output: `${task}: ${input} (following what worked before: "${best.episode.output}")`, reward: 0.95, critique: 'built on a recalled episode' }
    : { output: `${task}: ${input}`, reward: 0.8, critique: 'first attempt, nothing to recall' };
}

export default {
  async fetch(request, env) {
    if (request.method !== 'POST') return json({ error: 'POST a JSON body { task, input }' }, 405);
    const tenantId = request.headers.get('X-Tenant-ID') ?? new URL(request.url).searchParams.get('tenant');
    let body;
    try {
      body = await request.json();
    } catch {
      return json({ error: 'the body must be JSON' }, 400);
    }
    const { task, input = '' } = body ?? {};
    if (!tenantId || !task) return json({ error: 'X-Tenant-ID and task are required' }, 400);

    let agent;
    try {
      agent = await EphemeralAgent.spawn({
        tenantId,
        lifetime: 300,
        hubEndpoint: env.AGENTDB_HUB,
        apiKey: env.AGENTDB_API_KEY,
        // Without the binding, the client uses the global fetch.
        ...(env.AGENTDB_MTLS ? { fetch: (url, init) => env.AGENTDB_MTLS.fetch(url, init) } : {}),
      });
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
      return json({ ...result, remainingLifetime: agent.getRemainingLifetime() });
    } catch (e) {
      if (e instanceof AgentDBError) return json({ error: e.message, code: e.code }, 502);
      throw e;
    } finally {
      await agent?.destroy();
    }
  },
};
