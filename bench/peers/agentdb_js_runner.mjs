#!/usr/bin/env node
// The original's memory engine, npm agentdb@1.6.1, with the dataset's vectors supplied.
//
//   node bench/peers/agentdb_js_runner.mjs DIR [--runs 3] [--max-queries M] [--hnsw-max-queries M] [--no-hnsw] [--warmup 50]
//
// Writes DIR/results-agentdb-js.json and DIR/results-agentdb-js-hnsw.json.
//
// What is measured, and why:
// * agentdb-js: the episode store and its retrieval, wired the way the package's own CLI
//   wires them (AgentDBCLI.initialize): createDatabase() (sql.js, WASM SQLite: the only
//   database 1.6.1 uses), the CLI's pragmas, schema.sql + frontier-schema.sql, then
//   ReflexionMemory(db, embedder). ReflexionMemory takes its embedder as a constructor
//   argument, so the benchmark passes one that returns the dataset's vectors (no model is
//   loaded, no text is embedded): the engine is measured, not an embedder.
//   Insert = BatchOperations.insertEpisodes (the package's bulk path: batches of 100 in a
//   transaction, episode row + embedding BLOB) followed by one db.save() to persist the file.
//   Query = ReflexionMemory.retrieveRelevant({task, k: 10}): an exact scan that reads every
//   episode row with its embedding from SQLite and scores cosine in JS. There is no index.
// * agentdb-js-hnsw: the package's standalone HNSWIndex class (hnswlib-node; M 16,
//   efConstruction 200, efSearch 100: its defaults), which 1.6.1 does not wire to the
//   episode store (no controller uses it). It is built here from the same episode store
//   (buildIndex over a view of episode_embeddings) to show the best ANN path the package
//   ships. Insert = the episode insert above + buildIndex. Query = HNSWIndex.search(q, 10).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const WARMUP_QUERIES = 50;

// ---------------------------------------------------------------- args
function parseArgs(argv) {
  const a = { dir: null, runs: 3, maxQueries: 0, hnswMaxQueries: 0, hnsw: true, batch: 100, warmup: WARMUP_QUERIES };
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i];
    if (x === '--runs') a.runs = parseInt(argv[++i], 10);
    else if (x === '--max-queries') a.maxQueries = parseInt(argv[++i], 10);
    else if (x === '--hnsw-max-queries') a.hnswMaxQueries = parseInt(argv[++i], 10);
    else if (x === '--no-hnsw') a.hnsw = false;
    else if (x === '--batch') a.batch = parseInt(argv[++i], 10);
    else if (x === '--warmup') a.warmup = parseInt(argv[++i], 10);
    else if (x === '-h' || x === '--help') {
      process.stdout.write(
        'usage: agentdb_js_runner.mjs DIR [--runs R] [--max-queries M] [--hnsw-max-queries M] [--no-hnsw] [--batch B] [--warmup W]\n');
      process.exit(0);
    } else if (!a.dir) a.dir = x;
    else throw new Error(`unexpected argument ${x}`);
  }
  if (!a.dir) throw new Error('missing dataset DIR');
  return a;
}

// ---------------------------------------------------------------- logging
const realLog = console.log;
function log(system, msg) {
  const t = new Date().toTimeString().slice(0, 8);
  process.stderr.write(`[${t}] ${system}: ${msg}\n`);
}
// The package prints banners on stdout ("Using sql.js ...", "[HNSWIndex] ..."); keep them out.
console.log = () => {};

// ---------------------------------------------------------------- dataset
function readF32(file, rows, cols) {
  const buf = fs.readFileSync(file);
  if (buf.length !== rows * cols * 4) throw new Error(`${file}: ${buf.length} bytes, expected ${rows}x${cols} f32`);
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows * cols; i++) out[i] = buf.readFloatLE(i * 4);
  return out;
}
function readI32(file, rows, cols) {
  const buf = fs.readFileSync(file);
  if (buf.length !== rows * cols * 4) throw new Error(`${file}: ${buf.length} bytes, expected ${rows}x${cols} i32`);
  const out = new Int32Array(rows * cols);
  for (let i = 0; i < rows * cols; i++) out[i] = buf.readInt32LE(i * 4);
  return out;
}
function loadDataset(dir) {
  const meta = JSON.parse(fs.readFileSync(path.join(dir, 'meta.json'), 'utf8'));
  const n = meta.n, q = meta.q, dims = meta.dims, k = meta.k ?? 10;
  const vectors = readF32(path.join(dir, 'vectors.f32'), n, dims);
  const queries = readF32(path.join(dir, 'queries.f32'), q, dims);
  const truth = readI32(path.join(dir, 'truth.i32'), q, k);
  const episodes = fs.readFileSync(path.join(dir, 'episodes.jsonl'), 'utf8')
    .split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
  if (episodes.length !== n) throw new Error(`episodes.jsonl has ${episodes.length} lines, meta.json says n=${n}`);
  return { dir, n, q, dims, k, vectors, queries, truth, episodes };
}

// ---------------------------------------------------------------- stats
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
function percentile(sorted, p) {
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

function recall(found, ds, qUsed) {
  let total = 0;
  for (let i = 0; i < qUsed; i++) {
    const t = new Set(ds.truth.subarray(i * ds.k, (i + 1) * ds.k));
    let hit = 0;
    for (const x of found[i].slice(0, ds.k)) if (t.has(x)) hit++;
    total += hit / ds.k;
  }
  return total / qUsed;
}

// Warm-up (untimed) on the first `warmup` queries (default 50), then every query timed on its own, one at a time.
async function timeQueries(search, ds, qUsed, warmup) {
  const qv = (i) => ds.queries.slice(i * ds.dims, (i + 1) * ds.dims);
  for (let i = 0; i < Math.min(warmup, qUsed); i++) await search(qv(i));
  const lat = [];
  const found = [];
  const tAll = nowMs();
  for (let i = 0; i < qUsed; i++) {
    const v = qv(i);
    const t0 = nowMs();
    const ids = await search(v);
    lat.push(nowMs() - t0);
    found.push(ids);
  }
  const totalMs = nowMs() - tAll;
  lat.sort((a, b) => a - b);
  return {
    query_p50_ms: percentile(lat, 50),
    query_p99_ms: percentile(lat, 99),
    qps: qUsed / (totalMs / 1000),
    recall_at_10: recall(found, ds, qUsed),
  };
}

// ---------------------------------------------------------------- the engine
// An embedder that hands back the dataset's vectors in the order the engine asks for them.
// Every vector is its own Float32Array (the engine stores `Buffer.from(v.buffer)`).
class SuppliedVectors {
  constructor() { this.queue = []; this.pos = 0; }
  load(vectors) { this.queue = vectors; this.pos = 0; }
  async initialize() {}
  async embed(_text) {
    if (this.pos >= this.queue.length) throw new Error('embedder asked for more vectors than supplied');
    return this.queue[this.pos++];
  }
  async embedBatch(texts) {
    const out = [];
    for (const t of texts) out.push(await this.embed(t));
    return out;
  }
}

async function openStore(agentdb, dbPath) {
  // Mirrors AgentDBCLI.initialize in dist/cli/agentdb-cli.js.
  const db = await agentdb.createDatabase(dbPath);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('cache_size = -64000');
  const schemaDir = path.join(path.dirname(require.resolve('agentdb')), 'schemas');
  for (const f of ['schema.sql', 'frontier-schema.sql']) db.exec(fs.readFileSync(path.join(schemaDir, f), 'utf8'));
  return db;
}

async function oneRun(agentdb, ds, opts, runNo) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'agentdb-js-bench-'));
  try {
    const db = await openStore(agentdb, path.join(tmp, 'agentdb.db'));
    const embedder = new SuppliedVectors();
    const memory = new agentdb.ReflexionMemory(db, embedder);
    const batchOps = new agentdb.BatchOperations(db, embedder, { batchSize: opts.batch });

    // Prepared outside the timed region: the episodes as the engine's Episode type, and one
    // Float32Array per vector.
    const episodes = ds.episodes.map((e) => ({
      sessionId: 'bench',
      task: String(e.task ?? ''),
      input: e.input ?? undefined,
      output: e.output ?? undefined,
      reward: Number(e.reward ?? 0),
      success: Number(e.reward ?? 0) >= 0.5,
    }));
    const vecs = new Array(ds.n);
    for (let i = 0; i < ds.n; i++) vecs[i] = ds.vectors.slice(i * ds.dims, (i + 1) * ds.dims);
    embedder.load(vecs);

    const t0 = nowMs();
    const inserted = await batchOps.insertEpisodes(episodes);
    const tInsert = nowMs();
    db.save();
    const tSaved = nowMs();
    if (inserted !== ds.n) throw new Error(`insertEpisodes stored ${inserted} of ${ds.n}`);
    // Fresh database: AUTOINCREMENT ids are 1..N in insertion order; check, then id - 1 = index.
    const chk = db.prepare('SELECT COUNT(*) AS c, MIN(id) AS lo, MAX(id) AS hi FROM episodes').get();
    if (chk.c !== ds.n || chk.lo !== 1 || chk.hi !== ds.n) throw new Error(`unexpected episode ids ${JSON.stringify(chk)}`);
    const insertMs = tSaved - t0;

    const out = {};
    const qJs = opts.maxQueries ? Math.min(ds.q, opts.maxQueries) : ds.q;
    const reflexionSearch = async (v) => {
      embedder.load([v]);
      const eps = await memory.retrieveRelevant({ task: 'query', k: ds.k });
      return eps.map((e) => Number(e.id) - 1);
    };
    out['agentdb-js'] = {
      insert_per_sec: ds.n / (insertMs / 1000),
      insert_s: insertMs / 1000,
      save_s: (tSaved - tInsert) / 1000,
      ...(await timeQueries(reflexionSearch, ds, qJs, opts.warmup)),
    };

    if (opts.hnsw) {
      db.exec('CREATE VIEW IF NOT EXISTS bench_episode_vectors AS SELECT episode_id AS pattern_id, embedding FROM episode_embeddings');
      const hnsw = new agentdb.HNSWIndex(db, {
        dimension: ds.dims, metric: 'cosine', maxElements: ds.n, persistIndex: false,
      });
      const tb = nowMs();
      await hnsw.buildIndex('bench_episode_vectors');
      const buildMs = nowMs() - tb;
      const qH = opts.hnswMaxQueries ? Math.min(ds.q, opts.hnswMaxQueries) : ds.q;
      const hnswSearch = async (v) => (await hnsw.search(v, ds.k)).map((r) => Number(r.id) - 1);
      out['agentdb-js-hnsw'] = {
        insert_per_sec: ds.n / ((insertMs + buildMs) / 1000),
        insert_s: (insertMs + buildMs) / 1000,
        build_s: buildMs / 1000,
        ...(await timeQueries(hnswSearch, ds, qH, opts.warmup)),
      };
      hnsw.clear();
    }
    db.close();
    const load = os.loadavg().map((x) => Math.round(x * 100) / 100);
    for (const s of Object.keys(out)) out[s].loadavg_after = load;
    return out;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

function machine() {
  const cpus = os.cpus();
  return `${cpus[0]?.model ?? 'unknown'}, ${cpus.length} logical cores, ${os.type()} ${os.release()}`;
}

const NOTES = {
  'agentdb-js': (ds, batch) =>
    `agentdb 1.6.1 episode store as its CLI wires it: createDatabase (sql.js WASM SQLite, the only backend 1.6.1 ` +
    `uses), schema.sql + frontier-schema.sql, ReflexionMemory(db, embedder) with an embedder that returns the ` +
    `dataset's vectors (no model loaded). Insert = BatchOperations.insertEpisodes (batches of ${batch} in one ` +
    `transaction each: episode row + 384-d f32 BLOB) + one db.save() to write the file. Query = ` +
    `ReflexionMemory.retrieveRelevant({task, k: ${ds.k}}): exact scan, every episode row and embedding read from ` +
    `SQLite and scored in JS (no index), one at a time. Node ${process.version}.`,
  'agentdb-js-hnsw': (ds) =>
    `agentdb 1.6.1 HNSWIndex (hnswlib-node; package defaults M 16, efConstruction 200, efSearch 100, cosine) - ` +
    `exported by the package but not used by its episode store in 1.6.1; built here with buildIndex() over a view ` +
    `of the same episode_embeddings table. Insert = the agentdb-js episode insert (incl. save) + buildIndex. ` +
    `Query = HNSWIndex.search(q, ${ds.k}), one at a time. Node ${process.version}.`,
};

function writeResult(dir, system, payload) {
  const file = path.join(dir, `results-${system}.json`);
  fs.writeFileSync(file, JSON.stringify(payload, null, 2) + '\n');
  return file;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const systems = opts.hnsw ? ['agentdb-js', 'agentdb-js-hnsw'] : ['agentdb-js'];
  let version = null;
  try {
    version = JSON.parse(fs.readFileSync(require.resolve('agentdb/package.json'), 'utf8')).version;
  } catch {
    // 'exports' may hide package.json; find it next to the entry point instead.
    try {
      version = JSON.parse(fs.readFileSync(path.join(path.dirname(require.resolve('agentdb')), '..', 'package.json'), 'utf8')).version;
    } catch { /* reported below if the import fails too */ }
  }
  try {
    const agentdb = await import('agentdb');
    const ds = loadDataset(opts.dir);
    const perRun = Object.fromEntries(systems.map((s) => [s, []]));
    for (let r = 0; r < opts.runs; r++) {
      log('agentdb-js', `run ${r + 1}/${opts.runs}: n=${ds.n} q=${opts.maxQueries || ds.q}`);
      const res = await oneRun(agentdb, ds, opts, r);
      for (const s of systems) {
        const x = res[s];
        log(s, `  insert/s=${x.insert_per_sec.toFixed(0)} p50=${x.query_p50_ms.toFixed(3)}ms ` +
          `p99=${x.query_p99_ms.toFixed(3)}ms q/s=${x.qps.toFixed(1)} recall@10=${x.recall_at_10.toFixed(4)}`);
        perRun[s].push(x);
      }
    }
    for (const s of systems) {
      const runs = perRun[s];
      const qUsed = s === 'agentdb-js'
        ? (opts.maxQueries ? Math.min(ds.q, opts.maxQueries) : ds.q)
        : (opts.hnswMaxQueries ? Math.min(ds.q, opts.hnswMaxQueries) : ds.q);
      const payload = {
        system: s,
        version,
        n: ds.n,
        q: qUsed,
        runs: runs.length,
        warmup: opts.warmup,
        insert_per_sec: median(runs.map((x) => x.insert_per_sec)),
        query_p50_ms: median(runs.map((x) => x.query_p50_ms)),
        query_p99_ms: median(runs.map((x) => x.query_p99_ms)),
        qps: median(runs.map((x) => x.qps)),
        recall_at_10: mean(runs.map((x) => x.recall_at_10)),
        per_run: runs,
        machine: machine(),
        notes: NOTES[s](ds, opts.batch),
      };
      log(s, `wrote ${writeResult(opts.dir, s, payload)}`);
    }
    return 0;
  } catch (e) {
    const msg = `${e?.name ?? 'Error'}: ${e?.message ?? String(e)}`;
    process.stderr.write((e?.stack ?? msg) + '\n');
    for (const s of systems) {
      const payload = { system: s, error: msg };
      if (version) payload.version = version;
      writeResult(opts.dir, s, payload);
      log(s, `FAILED: ${msg}`);
    }
    return 1;
  }
}

main().then((rc) => { console.log = realLog; process.exit(rc); });
