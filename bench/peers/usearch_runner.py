#!/usr/bin/env python3
"""Raw usearch, the floor: an HNSW index and nothing else (no storage, no text).

    python bench/peers/usearch_runner.py DIR [--runs 3] [--max-queries M] [--dtypes f32,i8]

Writes DIR/results-usearch.json (dtype f32) and DIR/results-usearch-i8.json (dtype i8).
Graph parameters match the Rust engine's: connectivity 16, expansion_add 128,
expansion_search 160, cosine metric. Queries run one at a time.
"""

from __future__ import annotations

import gc
import time

import numpy as np

import common

CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 160


def system_name(dtype: str) -> str:
    return "usearch" if dtype == "f32" else f"usearch-{dtype}"


def one_run(ds: common.Dataset, dtype: str, q_used: int, warmup: int) -> common.RunResult:
    from usearch.index import Index

    index = Index(ndim=ds.dims, metric="cos", dtype=dtype, connectivity=CONNECTIVITY,
                  expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH)
    keys = np.arange(ds.n, dtype=np.uint64)
    t0 = time.perf_counter()
    index.add(keys, ds.vectors)  # library default threading (all cores) for the bulk build
    insert_s = time.perf_counter() - t0
    if len(index) != ds.n:
        raise RuntimeError(f"index holds {len(index)} vectors after adding {ds.n}")

    k = ds.k

    def search(qv: np.ndarray) -> list[int]:
        m = index.search(qv, k, threads=1)
        return m.keys.tolist()

    p50, p99, qps, rec = common.time_queries(search, ds.queries[:q_used], ds.truth[:q_used], k, warmup)
    del index
    gc.collect()
    return common.RunResult(ds.n / insert_s, p50, p99, qps, rec, {"insert_s": insert_s, "loadavg_after": common.loadavg()})


def main() -> int:
    p = common.base_args(__doc__)
    p.add_argument("--dtypes", default="f32,i8", help="comma list of usearch dtypes (default f32,i8)")
    a = p.parse_args()
    dtypes = [d.strip() for d in a.dtypes.split(",") if d.strip()]
    rc = 0
    for dtype in dtypes:
        sysname = system_name(dtype)

        def job(dtype=dtype, sysname=sysname) -> None:
            import usearch

            ds = common.load_dataset(a.dir)
            q_used = min(ds.q, a.max_queries) if a.max_queries else ds.q
            runs = []
            for r in range(a.runs):
                common.log(sysname, f"run {r + 1}/{a.runs}: n={ds.n} q={q_used}")
                res = one_run(ds, dtype, q_used, a.warmup)
                common.log(sysname, f"  insert/s={res.insert_per_sec:.0f} p50={res.query_p50_ms:.3f}ms "
                                    f"p99={res.query_p99_ms:.3f}ms q/s={res.qps:.0f} recall@10={res.recall_at_10:.4f}")
                runs.append(res)
            notes = (f"usearch.index.Index(metric='cos', dtype='{dtype}', connectivity={CONNECTIVITY}, "
                     f"expansion_add={EXPANSION_ADD}, expansion_search={EXPANSION_SEARCH}) - the same graph "
                     f"parameters as the Rust engine. Insert = one bulk index.add of all N vectors (library "
                     f"default threading, all cores), vectors only: no ids map, no metadata, no text, nothing "
                     f"persisted. Queries: index.search(q, {ds.k}, threads=1), one at a time.")
            if dtype == "i8":
                notes += (" dtype i8 quantizes stored vectors and scores in i8 only; there is no f32 "
                          "re-scoring step (the Rust engine re-scores its i8 candidates in f32).")
            payload = common.summarize(sysname, usearch.__version__, ds, runs, q_used, notes,
                                       {"params": {"connectivity": CONNECTIVITY, "expansion_add": EXPANSION_ADD,
                                                   "expansion_search": EXPANSION_SEARCH, "dtype": dtype}},
                                       warmup=a.warmup)
            path = common.write_result(a.dir, sysname, payload)
            common.log(sysname, f"wrote {path}")

        rc |= common.guarded(a.dir, [sysname], job)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
