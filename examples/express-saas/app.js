// A multi-tenant SaaS backend on Express: every API request gets its own short-lived AgentDB
// agent for the caller's tenant, and each tenant's memory stays its own — the hub scopes every
// token to the tenant of the API key it was traded for.
import express from 'express';
import { EphemeralAgent, AgentDBClient, AgentDBError } from '@agentdb/client';

/** A deterministic stand-in for the real work (a model call): it builds on the best memory. */
function doTask(task, input, memories) {
  const best = memories.find((m) => m.episode.reward >= 0.5);
  return best
    ? { output: `${task}: ${input} (following what worked before: "${best.episode.output}")`, reward: 0.95, critique: 'built on a recalled episode' }
    : { output: `${task}: ${input}`, reward: 0.8, critique: 'first attempt, nothing to recall' };
}

/**
 * @param {object} config
 * @param {string} config.hubEndpoint  the hub's HTTPS gateway, e.g. https://hub.internal:8443
 * @param {Record<string, string>} config.apiKeys  tenant id → that tenant's API key
 * @param {string} [config.adminToken]  when set, the admin routes need `Authorization: Bearer <it>`
 * @param {typeof fetch} [config.fetch]  a fetch with the TLS settings the hub needs
 */
export function createApp({ hubEndpoint, apiKeys, adminToken, fetch }) {
  const keyOf = (tenantId) => (Object.hasOwn(apiKeys, tenantId) ? apiKeys[tenantId] : undefined);
  const withFetch = fetch ? { fetch } : {};
  const app = express();
  app.use(express.json({ limit: '1mb' }));

  app.post('/api/process', async (req, res) => {
    const { tenantId, task, input = '' } = req.body ?? {};
    if (typeof tenantId !== 'string' || typeof task !== 'string' || !task) {
      return res.status(400).json({ error: 'tenantId and task are required' });
    }
    const apiKey = keyOf(tenantId);
    if (!apiKey) return res.status(404).json({ error: `unknown tenant ${tenantId}` });

    const agent = await EphemeralAgent.spawn({ tenantId, lifetime: 300, hubEndpoint, apiKey, ...withFetch });
    try {
      const result = await agent.execute(async (db, context) => {
        const memories = await agent.queryMemories(task, 5);
        const done = doTask(task, String(input), memories);
        await agent.storeEpisode({ task, input: String(input), output: done.output, reward: done.reward, critique: done.critique });
        return {
          agentId: context.agentId,
          tenantId: context.tenantId,
          task,
          output: done.output,
          recalled: memories.map((m) => ({ task: m.episode.task, output: m.episode.output, reward: m.episode.reward, score: m.score })),
        };
      });
      res.json(result);
    } finally {
      await agent.destroy();
    }
  });

  app.get('/api/admin/stats/:tenantId', async (req, res) => {
    if (adminToken && req.get('authorization') !== `Bearer ${adminToken}`) {
      return res.status(401).json({ error: 'admin token required' });
    }
    const apiKey = keyOf(req.params.tenantId);
    if (!apiKey) return res.status(404).json({ error: `unknown tenant ${req.params.tenantId}` });
    const client = new AgentDBClient({ endpoint: hubEndpoint, apiKey, ...withFetch });
    res.json({ tenantId: req.params.tenantId, stats: await client.stats() });
  });

  // A hub that is busy or down is a 503 with the hub's Retry-After; any other failure at the
  // hub (or reaching it) is a 502 that keeps the hub's stable code. Anything else is ours.
  app.use((err, req, res, _next) => {
    if (err instanceof AgentDBError) {
      if (err.retryAfterMs !== undefined) res.set('Retry-After', String(Math.ceil(err.retryAfterMs / 1000)));
      const busy = err.code === 'overloaded' || err.code === 'unavailable';
      return res.status(busy ? 503 : 502).json({ error: err.message, code: err.code });
    }
    console.error(err);
    res.status(500).json({ error: 'internal error' });
  });
  return app;
}
