"""Shared pieces of the peer runners: dataset loading, timing, result files.

Dataset directory layout (produced by `agentdb-bench export` or make_dataset.py):
  meta.json       {"n": N, "q": Q, "dims": D, "model": "...", "k": 10}
  vectors.f32     N x D little-endian f32, row i = episode i
  episodes.jsonl  N lines {"id", "task", "input", "output", "reward"}
  queries.f32     Q x D little-endian f32
  truth.i32       Q x k little-endian i32, exact top-k episode indices by cosine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

WARMUP_QUERIES = 50


@dataclass
class Dataset:
    dir: str
    n: int
    q: int
    dims: int
    k: int
    model: str
    vectors: np.ndarray
    queries: np.ndarray
    truth: np.ndarray
    _episodes: list | None = field(default=None, repr=False)

    @property
    def episodes(self) -> list:
        if self._episodes is None:
            eps = []
            with open(os.path.join(self.dir, "episodes.jsonl"), encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if line:
                        eps.append(json.loads(line))
            if len(eps) != self.n:
                raise ValueError(f"episodes.jsonl has {len(eps)} lines, meta.json says n={self.n}")
            self._episodes = eps
        return self._episodes


def load_dataset(d: str) -> Dataset:
    with open(os.path.join(d, "meta.json"), encoding="utf-8") as f:
        meta = json.load(f)
    n, q, dims, k = int(meta["n"]), int(meta["q"]), int(meta["dims"]), int(meta.get("k", 10))

    def read(name: str, dtype, rows: int, cols: int) -> np.ndarray:
        path = os.path.join(d, name)
        arr = np.fromfile(path, dtype=dtype)
        if arr.size != rows * cols:
            raise ValueError(f"{path}: {arr.size} values, expected {rows}x{cols}")
        return arr.reshape(rows, cols)

    return Dataset(
        dir=d,
        n=n,
        q=q,
        dims=dims,
        k=k,
        model=str(meta.get("model", "")),
        vectors=read("vectors.f32", "<f4", n, dims),
        queries=read("queries.f32", "<f4", q, dims),
        truth=read("truth.i32", "<i4", q, k),
    )


def recall_at_k(found: list[list[int]], truth: np.ndarray, k: int) -> float:
    """Mean over queries of |found[:k] & truth[:k]| / k."""
    total = 0.0
    for row, t in zip(found, truth):
        total += len(set(int(x) for x in row[:k]) & set(int(x) for x in t[:k])) / k
    return total / max(1, len(found))


def percentile(sorted_ms: list[float], p: float) -> float:
    """Nearest-rank percentile on an already sorted list."""
    if not sorted_ms:
        return float("nan")
    idx = min(len(sorted_ms) - 1, max(0, int(np.ceil(p / 100.0 * len(sorted_ms))) - 1))
    return sorted_ms[idx]


@dataclass
class RunResult:
    insert_per_sec: float
    query_p50_ms: float
    query_p99_ms: float
    qps: float
    recall_at_10: float
    extra: dict = field(default_factory=dict)


def time_queries(search: Callable[[np.ndarray], list[int]], queries: np.ndarray, truth: np.ndarray,
                 k: int, warmup: int = WARMUP_QUERIES) -> tuple[float, float, float, float]:
    """Warm up on the first `warmup` queries (untimed), then time every query
    individually, one at a time. Returns (p50_ms, p99_ms, qps, recall@k)."""
    for qv in queries[: min(warmup, len(queries))]:
        search(qv)
    lat_ms: list[float] = []
    found: list[list[int]] = []
    t_all = time.perf_counter()
    for qv in queries:
        t0 = time.perf_counter()
        ids = search(qv)
        lat_ms.append((time.perf_counter() - t0) * 1000.0)
        found.append(ids)
    total_s = time.perf_counter() - t_all
    lat_ms.sort()
    return (percentile(lat_ms, 50), percentile(lat_ms, 99), len(queries) / total_s,
            recall_at_k(found, truth, k))


def loadavg() -> list[float] | None:
    """1/5/15-minute load averages: other work on the machine shows up here."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_note() -> str:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}"


def base_args(desc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=desc)
    p.add_argument("dir", help="dataset directory (meta.json, vectors.f32, ...)")
    p.add_argument("--runs", type=int, default=3, help="independent rebuild+query runs (default 3)")
    p.add_argument("--max-queries", type=int, default=0,
                   help="time only the first M queries (0 = all Q); recorded in the result")
    p.add_argument("--warmup", type=int, default=WARMUP_QUERIES,
                   help=f"untimed warm-up queries before each run's timed queries (default {WARMUP_QUERIES})")
    return p


def summarize(system: str, version: str, ds: Dataset, runs: list[RunResult], q_used: int,
              notes: str, extra: dict | None = None, warmup: int = WARMUP_QUERIES) -> dict:
    med = statistics.median
    out = {
        "system": system,
        "version": version,
        "n": ds.n,
        "q": q_used,
        "runs": len(runs),
        "warmup": warmup,
        "insert_per_sec": med(r.insert_per_sec for r in runs),
        "query_p50_ms": med(r.query_p50_ms for r in runs),
        "query_p99_ms": med(r.query_p99_ms for r in runs),
        "qps": med(r.qps for r in runs),
        "recall_at_10": statistics.fmean(r.recall_at_10 for r in runs),
        "per_run": [
            {
                "insert_per_sec": r.insert_per_sec,
                "query_p50_ms": r.query_p50_ms,
                "query_p99_ms": r.query_p99_ms,
                "qps": r.qps,
                "recall_at_10": r.recall_at_10,
                **r.extra,
            }
            for r in runs
        ],
        "machine": machine_note(),
        "notes": notes,
    }
    if extra:
        out.update(extra)
    return out


def write_result(d: str, system: str, payload: dict) -> str:
    path = os.path.join(d, f"results-{system}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
    return path


def write_error(d: str, system: str, err: str, version: str | None = None) -> str:
    payload = {"system": system, "error": err}
    if version:
        payload["version"] = version
    return write_result(d, system, payload)


def log(system: str, msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {system}: {msg}", file=sys.stderr, flush=True)


def guarded(d: str, systems: list[str], fn: Callable[[], None]) -> int:
    """Run fn; on any exception record {"system", "error"} for every system it owned."""
    try:
        fn()
        return 0
    except Exception as e:  # noqa: BLE001 - the point is to record any failure
        msg = f"{type(e).__name__}: {e}"
        traceback.print_exc()
        for s in systems:
            write_error(d, s, msg)
            log(s, f"FAILED: {msg}")
        return 1
