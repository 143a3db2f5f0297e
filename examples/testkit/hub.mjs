// Starts a real `agentdb hub` in dev mode on free loopback ports for a test, and makes
// API keys on it. Every hub started here is killed by `stop()`, and also when the test
// process exits for any reason.
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
// Shared by the examples' tests (examples/testkit); the binary is built at the repository's root.
export const AGENTDB_BIN = process.env.AGENTDB_BIN ?? resolve(here, '..', '..', 'target', 'debug', 'agentdb');

const running = new Map(); // hub process → its temporary directory
process.on('exit', () => {
  for (const [child, dir] of running) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * @param {{ env?: Record<string, string> }} [options] extra environment for the hub
 *   (e.g. `{ ENABLE_MTLS: 'false' }`)
 */
export async function startHub(options = {}) {
  const dataDir = await mkdtemp(join(tmpdir(), 'agentdb-example-'));
  const data = join(dataDir, 'data');
  const child = spawn(
    AGENTDB_BIN,
    ['hub', '--data', data, '--quic', '127.0.0.1:0', '--http', '127.0.0.1:0', '--https', '127.0.0.1:0'],
    { env: { ...process.env, RUST_LOG: 'warn', ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  running.set(child, dataDir);
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-8000);
  });
  const stop = async () => {
    if (running.delete(child)) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dataDir, { recursive: true, force: true });
  };
  try {
    const line = await new Promise((res, rej) => {
      const lines = createInterface({ input: child.stdout });
      const timer = setTimeout(() => rej(new Error(`hub did not start in 30 s\n${stderr}`)), 30_000);
      lines.once('line', (l) => {
        clearTimeout(timer);
        child.stdout.resume(); // keep draining whatever else it prints
        res(l);
      });
      child.once('error', (e) => { clearTimeout(timer); rej(e); });
      child.once('exit', (code) => { clearTimeout(timer); rej(new Error(`hub exited (${code}) before listening\n${stderr}`)); });
    });
    const m = /^agentdb hub listening quic=(\S+) http=(\S+) https=(\S+)/.exec(line);
    if (!m) throw new Error(`unexpected first line from the hub: ${line}`);
    const [, quic, http, https] = m;
    const dev = join(data, 'dev');
    const [ca, cert, key] = await Promise.all(
      ['ca.pem', 'client.pem', 'client.key'].map((f) => readFile(join(dev, f), 'utf8')),
    );
    return {
      quic,
      http,
      https,
      endpoint: `https://${https}`,
      dev,
      files: { ca: join(dev, 'ca.pem'), cert: join(dev, 'client.pem'), key: join(dev, 'client.key') },
      ca,
      cert,
      key,
      /** A new API key for `tenant`; resolves to its secret. */
      async createKey(tenant) {
        const { stdout } = await promisify(execFile)(AGENTDB_BIN, [
          'tenant', 'key', 'create', '--tenant', tenant, '--http', http, '--dev', dev, '--json',
        ]);
        return JSON.parse(stdout).secret;
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
