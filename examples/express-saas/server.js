// Starts the app with its configuration from the environment:
//   FEDERATION_HUB_ENDPOINT  the hub's HTTPS gateway
//   AGENTDB_API_KEYS         JSON object, tenant id → API key: {"acme":"adb_…","globex":"adb_…"}
//   ADMIN_TOKEN              optional bearer token for /api/admin/*
//   AGENTDB_CA, AGENTDB_CERT, AGENTDB_KEY  optional PEM file paths (a private CA; a client
//                            certificate when the hub requires mutual TLS)
//   PORT                     default 3000
import { readFileSync } from 'node:fs';
import { Agent, fetch as undiciFetch } from 'undici';
import { createApp } from './app.js';

const env = process.env;
if (!env.FEDERATION_HUB_ENDPOINT || !env.AGENTDB_API_KEYS) {
  console.error('set FEDERATION_HUB_ENDPOINT and AGENTDB_API_KEYS');
  process.exit(2);
}
const read = (name) => (env[name] ? readFileSync(env[name]) : undefined);
const ca = read('AGENTDB_CA');
const cert = read('AGENTDB_CERT');
const key = read('AGENTDB_KEY');
const dispatcher = ca || cert ? new Agent({ connect: { ca, cert, key } }) : undefined;

const app = createApp({
  hubEndpoint: env.FEDERATION_HUB_ENDPOINT,
  apiKeys: JSON.parse(env.AGENTDB_API_KEYS),
  adminToken: env.ADMIN_TOKEN,
  fetch: dispatcher ? (url, init) => undiciFetch(url, { ...init, dispatcher }) : undefined,
});
const server = app.listen(Number(env.PORT ?? 3000), () => {
  console.log(`listening on http://localhost:${server.address().port}`);
});
