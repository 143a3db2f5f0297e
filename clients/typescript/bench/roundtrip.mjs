// spawn → queryMemories → storeEpisode → destroy against a local hub, N rounds; prints p50/p99.
//   node bench/roundtrip.mjs [rounds=1000]
// Starts its own dev-mode hub (AGENTDB_BIN or ../../target/debug/agentdb) and stops it after.
import { startHub } from "../test/hub.mjs";
import { EphemeralAgent } from "../dist/index.js";
import { cpus } from "node:os";

const rounds = Number(process.argv[2] ?? 1000);
const hub = await startHub();
try {
  const apiKey = await hub.apiKey();
  const opts = { tenantId: "demo", lifetime: 60, hubEndpoint: hub.endpoint, apiKey, fetch: hub.fetch };
  const round = async (i) => {
    const agent = await EphemeralAgent.spawn(opts);
    await agent.queryMemories("summarise the invoice", 5);
    await agent.storeEpisode({ task: "summarise invoice", input: `invoice #${i}`, output: "Total: 300 EUR", reward: 0.9 });
    await agent.destroy();
  };
  for (let i = 0; i < 20; i++) await round(-i); // warm-up: connection, JIT
  const ms = [];
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) {
    const s = performance.now();
    await round(i);
    ms.push(performance.now() - s);
  }
  const total = performance.now() - t0;
  ms.sort((a, b) => a - b);
  const pct = (p) => ms[Math.min(ms.length - 1, Math.ceil((p / 100) * ms.length) - 1)];
  console.log(
    `rounds=${rounds} p50=${pct(50).toFixed(2)}ms p99=${pct(99).toFixed(2)}ms max=${ms[ms.length - 1].toFixed(2)}ms ` +
      `mean=${(total / rounds).toFixed(2)}ms node=${process.version} cpus=${cpus().length} hub=${hub.endpoint} (debug build unless AGENTDB_BIN says otherwise)`,
  );
} finally {
  await hub.stop();
}
