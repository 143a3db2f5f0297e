// A spawned agent with a long lifetime must not keep Node running: run with a hub endpoint
// and key; the process exits on its own after the work.
import { EphemeralAgent } from "../dist/index.js";
import { Agent, fetch as undiciFetch } from "undici";
import { readFileSync } from "node:fs";
const [endpoint, dev, apiKey] = process.argv.slice(2);
const dispatcher = new Agent({ connect: { ca: readFileSync(`${dev}/ca.pem`), cert: readFileSync(`${dev}/client.pem`), key: readFileSync(`${dev}/client.key`) } });
const agent = await EphemeralAgent.spawn({ tenantId: "demo", lifetime: 3600, hubEndpoint: endpoint, apiKey, fetch: (u, i) => undiciFetch(u, { ...i, dispatcher }) });
await agent.queryMemories("x", 1);
await dispatcher.close();
console.log("done");
