#!/usr/bin/env python3
"""Write a synthetic dataset in the benchmark's interchange format, for smoke tests.

    python bench/peers/make_dataset.py DIR N Q [--dims 384] [--k 10] [--seed 7]

Vectors are random unit vectors drawn around a few hundred random centres (so that,
like real embeddings, they have neighbourhoods); queries are perturbed copies of
random episodes. truth.i32 is the exact top-k by cosine, computed with numpy.
The real runs use the Rust side's `agentdb-bench export`, which writes the same files.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

VERBS = ["fix", "refactor", "summarise", "plan", "review", "deploy", "test", "document", "profile", "migrate"]
NOUNS = ["parser", "cache", "login flow", "billing job", "search index", "report", "scheduler", "api client",
         "schema", "dashboard"]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 256) -> np.ndarray:
    out = np.empty((len(queries), k), dtype=np.int32)
    for s in range(0, len(queries), chunk):
        sims = queries[s:s + chunk] @ vectors.T  # unit vectors: dot = cosine
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        rows = np.arange(part.shape[0])[:, None]
        order = np.argsort(-sims[rows, part], axis=1, kind="stable")
        out[s:s + chunk] = part[rows, order]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir")
    p.add_argument("n", type=int)
    p.add_argument("q", type=int)
    p.add_argument("--dims", type=int, default=384)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--centres", type=int, default=0, help="cluster centres (default: max(16, n // 50))")
    a = p.parse_args()

    rng = np.random.default_rng(a.seed)
    os.makedirs(a.dir, exist_ok=True)
    c = a.centres or max(16, a.n // 50)
    centres = unit(rng.standard_normal((c, a.dims), dtype=np.float32))
    assign = rng.integers(0, c, size=a.n)
    vectors = unit(centres[assign] + 0.6 * unit(rng.standard_normal((a.n, a.dims), dtype=np.float32)))
    src = rng.integers(0, a.n, size=a.q)
    queries = unit(vectors[src] + 0.5 * unit(rng.standard_normal((a.q, a.dims), dtype=np.float32)))
    truth = exact_topk(vectors, queries, a.k)

    vectors.astype("<f4").tofile(os.path.join(a.dir, "vectors.f32"))
    queries.astype("<f4").tofile(os.path.join(a.dir, "queries.f32"))
    truth.astype("<i4").tofile(os.path.join(a.dir, "truth.i32"))
    rewards = rng.random(a.n)
    with open(os.path.join(a.dir, "episodes.jsonl"), "w", encoding="utf-8") as f:
        for i in range(a.n):
            verb, noun = VERBS[assign[i] % len(VERBS)], NOUNS[(assign[i] // len(VERBS)) % len(NOUNS)]
            ep = {
                "id": i,
                "task": f"{verb} the {noun} (group {assign[i]})",
                "input": f"ticket #{i}: {verb} {noun}",
                "output": f"did {verb} on {noun}; step {i % 17}",
                "reward": round(float(rewards[i]), 4),
            }
            f.write(json.dumps(ep) + "\n")
    with open(os.path.join(a.dir, "meta.json"), "w", encoding="utf-8") as f:
        json.dump({"n": a.n, "q": a.q, "dims": a.dims, "model": "synthetic-clustered", "k": a.k}, f)
        f.write("\n")
    print(f"wrote {a.dir}: n={a.n} q={a.q} dims={a.dims} k={a.k}")


if __name__ == "__main__":
    main()
