// Starts a real hub in dev mode for the tests, and builds the mutual-TLS fetch a user passes.
import { spawn, execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { Agent, fetch as undiciFetch } from "undici";

const here = dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.AGENTDB_BIN ?? resolve(here, "../../../target/debug/agentdb");

const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** A hub on free ports with a fresh data directory. Call `stop()` (also done on exit). */
export async function startHub() {
  if (!existsSync(BIN)) throw new Error(`no agentdb binary at ${BIN} (set AGENTDB_BIN or build it)`);
  const data = await mkdtemp(join(tmpdir(), "agentdb-ts-"));
  const child = spawn(
    BIN,
    ["hub", "--data", data, "--quic", "127.0.0.1:0", "--http", "127.0.0.1:0", "--https", "127.0.0.1:0"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  running.add(child);
  let log = "";
  child.stderr.on("data", (d) => {
    log = (log + d).slice(-8000);
  });
  const line = await new Promise((resolveLine, reject) => {
    const rl = createInterface({ input: child.stdout });
    const timer = setTimeout(() => reject(new Error(`hub did not start within 30 s:\n${log}`)), 30_000);
    rl.once("line", (l) => {
      clearTimeout(timer);
      resolveLine(l);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`hub exited (${code}) before listening:\n${log}`));
    });
  });
  child.stdout.resume();
  const field = (k) => {
    const m = new RegExp(`${k}=(\\S+)`).exec(line);
    if (!m) throw new Error(`no ${k}= in: ${line}`);
    return m[1];
  };
  const https = field("https");
  const http = field("http");
  const dev = join(data, "dev");
  const [ca, cert, key] = await Promise.all(
    ["ca.pem", "client.pem", "client.key"].map((f) => readFile(join(dev, f), "utf8")),
  );
  const dispatcher = new Agent({ connect: { ca, cert, key } });
  /** The mutual-TLS fetch, exactly as a Node user passes it. */
  const fetch = (url, init) => undiciFetch(url, { ...init, dispatcher });
  const hub = {
    endpoint: `https://${https}`,
    admin: http,
    dev,
    data,
    fetch,
    log: () => log,
    /** A new API key for tenant demo. */
    async apiKey(scope = "read,write,sync") {
      const out = await run(BIN, [
        "tenant", "key", "create", "--tenant", "demo", "--http", http, "--dev", dev, "--scope", scope, "--json",
      ]);
      return JSON.parse(out).secret;
    },
    async stop() {
      if (!running.has(child)) return;
      running.delete(child);
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
      await dispatcher.close().catch(() => {});
      await rm(data, { recursive: true, force: true });
    },
  };
  return hub;
}

function run(bin, args) {
  return new Promise((res, rej) => {
    execFile(bin, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) rej(new Error(`${bin} ${args.join(" ")}: ${err.message}\n${stderr}`));
      else res(stdout);
    });
  });
}

/** Wraps a fetch to count requests by "METHOD path". */
export function counting(fetch) {
  const counts = new Map();
  const f = (url, init = {}) => {
    const k = `${init.method ?? "GET"} ${new URL(url).pathname}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
    return fetch(url, init);
  };
  f.counts = counts;
  f.count = (k) => counts.get(k) ?? 0;
  return f;
}
