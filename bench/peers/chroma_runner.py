#!/usr/bin/env python3
"""Chroma, embedded persistent client, with the dataset's vectors supplied (Chroma never embeds).

    python bench/peers/chroma_runner.py DIR [--runs 3] [--max-queries M] [--batch 5000] [--no-documents]

Writes DIR/results-chroma.json. Each run opens a PersistentClient in a fresh temp dir,
creates a cosine collection, adds all N episodes in batches (ids, embeddings, metadata
{"reward"} and, unless --no-documents, the episode text as the document), then times Q
single queries (query_embeddings=[q], n_results=10) one at a time.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import time

import numpy as np

import common

SYSTEM = "chroma"


def episode_text(ep: dict) -> str:
    return "\n".join(str(ep.get(f, "")) for f in ("task", "input", "output") if ep.get(f))


def one_run(ds: common.Dataset, q_used: int, batch: int, documents: bool, run_no: int, warmup: int) -> common.RunResult:
    import chromadb
    from chromadb.config import Settings

    tmp = tempfile.mkdtemp(prefix="chroma-bench-")
    try:
        client = chromadb.PersistentClient(path=tmp, settings=Settings(anonymized_telemetry=False))
        coll = client.create_collection(
            name=f"episodes_{run_no}",
            metadata={"hnsw:space": "cosine"},
            embedding_function=None,  # vectors are always supplied; Chroma must never embed
        )
        max_batch = client.get_max_batch_size()
        step = max(1, min(batch, max_batch))
        eps = ds.episodes
        ids = [str(i) for i in range(ds.n)]
        metas = [{"reward": float(ep.get("reward", 0.0))} for ep in eps]
        docs = [episode_text(ep) for ep in eps] if documents else None
        vecs = ds.vectors

        t0 = time.perf_counter()
        for s in range(0, ds.n, step):
            e = min(ds.n, s + step)
            kw = {"ids": ids[s:e], "embeddings": vecs[s:e], "metadatas": metas[s:e]}
            if docs is not None:
                kw["documents"] = docs[s:e]
            coll.add(**kw)
        insert_s = time.perf_counter() - t0
        count = coll.count()
        if count != ds.n:
            raise RuntimeError(f"collection holds {count} records after adding {ds.n}")

        k = ds.k

        def search(qv: np.ndarray) -> list[int]:
            r = coll.query(query_embeddings=[qv], n_results=k, include=[])
            return [int(x) for x in r["ids"][0]]

        p50, p99, qps, rec = common.time_queries(search, ds.queries[:q_used], ds.truth[:q_used], k, warmup)
        del coll, client
        gc.collect()
        return common.RunResult(ds.n / insert_s, p50, p99, qps, rec, {"insert_s": insert_s, "loadavg_after": common.loadavg(), "batch": step})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    p = common.base_args(__doc__)
    p.add_argument("--batch", type=int, default=5000, help="records per add() call (capped at the client's max)")
    p.add_argument("--no-documents", action="store_true", help="add vectors + metadata only, no episode text")
    a = p.parse_args()

    def job() -> None:
        import chromadb

        ds = common.load_dataset(a.dir)
        q_used = min(ds.q, a.max_queries) if a.max_queries else ds.q
        runs = []
        for r in range(a.runs):
            common.log(SYSTEM, f"run {r + 1}/{a.runs}: n={ds.n} q={q_used}")
            res = one_run(ds, q_used, a.batch, not a.no_documents, r, a.warmup)
            common.log(SYSTEM, f"  insert/s={res.insert_per_sec:.0f} p50={res.query_p50_ms:.3f}ms "
                               f"p99={res.query_p99_ms:.3f}ms q/s={res.qps:.0f} recall@10={res.recall_at_10:.4f}")
            runs.append(res)
        notes = (f"chromadb.PersistentClient in a fresh temp dir per run; collection metadata "
                 f"{{'hnsw:space': 'cosine'}}, embedding_function=None, Chroma's default HNSW parameters "
                 f"(M 16, ef_construction 100, ef_search 100). Insert = collection.add in batches of "
                 f"{runs[0].extra['batch']} with ids, embeddings, metadata {{reward}}"
                 f"{'' if a.no_documents else ' and the episode text (task/input/output) as document'}; "
                 f"timed until the last add() returns. Queries: collection.query(query_embeddings=[q], "
                 f"n_results={ds.k}, include=[]), one at a time, through the Python client.")
        payload = common.summarize(SYSTEM, chromadb.__version__, ds, runs, q_used, notes,
                                   {"documents": not a.no_documents}, warmup=a.warmup)
        path = common.write_result(a.dir, SYSTEM, payload)
        common.log(SYSTEM, f"wrote {path}")

    return common.guarded(a.dir, [SYSTEM], job)


if __name__ == "__main__":
    raise SystemExit(main())
