#!/usr/bin/env python3
"""Side-by-side table of every results-*.json in one or more dataset directories.

    bench/.venv/bin/python bench/peers/report.py DIR [DIR2 ...] [--out bench/peers/latest.md]

One markdown table per directory (i.e. per dataset size). Our rows are results-agentdb-rs*.json,
written by the Rust side in the same schema: agentdb-rs is the engine's default configuration,
agentdb-rs-ef128 etc. a fixed search breadth. Every peer's row gets ratios against the fastest
(q/s) of our rows whose recall@10 is at least the peer's -- the comparison at equal or better
recall -- or against agentdb-rs when none is. Ratios are oriented so that above 1 means ours is
better:
  q/s and insert/s: ours / theirs      p50 and p99 latency: theirs / ours
Only numbers found in the result files are printed; missing ones show as "-".
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

OURS = "agentdb-rs"
ORDER = ["agentdb-rs", "usearch", "usearch-i8", "chroma", "agentdb-js-hnsw", "agentdb-js"]


def load(d: str) -> tuple[dict, list[dict]]:
    meta = {}
    mp = os.path.join(d, "meta.json")
    if os.path.exists(mp):
        with open(mp, encoding="utf-8") as f:
            meta = json.load(f)
    rows = []
    for p in sorted(glob.glob(os.path.join(d, "results-*.json"))):
        try:
            with open(p, encoding="utf-8") as f:
                r = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            r = {"system": os.path.basename(p)[len("results-"):-len(".json")], "error": f"unreadable: {e}"}
        r.setdefault("system", os.path.basename(p)[len("results-"):-len(".json")])
        rows.append(r)

    def key(r: dict):
        s = r["system"]
        return (ORDER.index(s) if s in ORDER else (0.5 if s.startswith(OURS) else len(ORDER)), s)

    rows.sort(key=key)
    return meta, rows


def num(r: dict, f: str) -> float | None:
    v = r.get(f)
    return float(v) if isinstance(v, (int, float)) else None


def fmt(v: float | None, kind: str) -> str:
    if v is None:
        return "-"
    if kind == "rate":
        return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"
    if kind == "ms":
        return f"{v:.3f}" if v < 10 else f"{v:,.1f}"
    if kind == "recall":
        return f"{v:.4f}"
    if kind == "ratio":
        return f"{v:.2f}×" if v < 100 else f"{v:,.0f}×"
    return str(v)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def size_label(n: int | None) -> str:
    if not n:
        return "?"
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def is_ours(r: dict) -> bool:
    return r["system"] == OURS or r["system"].startswith(OURS + "-")


def against(peer: dict, ours: list[dict], default: dict | None) -> dict | None:
    """The fastest of our rows with recall at least the peer's, else the default row."""
    recall = num(peer, "recall_at_10")
    at_least = [r for r in ours if recall is not None and (num(r, "recall_at_10") or 0.0) >= recall]
    if at_least:
        return max(at_least, key=lambda r: num(r, "qps") or 0.0)
    return default


def table(d: str) -> str:
    meta, rows = load(d)
    n = meta.get("n") or next((r.get("n") for r in rows if r.get("n")), None)
    mine = [r for r in rows if is_ours(r) and "error" not in r]
    ours = next((r for r in mine if r["system"] == OURS), None)
    lines = []
    lines.append(f"### {size_label(n)} episodes (`{d}`)")
    lines.append("")
    bits = []
    if meta:
        bits.append(f"n={meta.get('n')}, q={meta.get('q')}, dims={meta.get('dims')}, k={meta.get('k')}, "
                    f"vectors: `{meta.get('model')}`")
    machines = sorted({r["machine"] for r in rows if r.get("machine")})
    if machines:
        bits.append("machine: " + "; ".join(machines))
    for b in bits:
        lines.append(f"- {b}")
    loads = []
    for r in rows:
        la = [pr["loadavg_after"][0] for pr in r.get("per_run", []) if isinstance(pr.get("loadavg_after"), list)]
        if la:
            loads.append(f"{r['system']} {min(la):.1f}–{max(la):.1f}")
    if loads:
        lines.append("- 1-minute load average after each run (other work on the machine): " + ", ".join(loads))
    if not mine:
        lines.append(f"- no usable `results-{OURS}*.json` here: ratios are left out")
    lines.append("")
    lines.append("| system | version | runs | timed q | insert/s | p50 ms | p99 ms | q/s | recall@10 "
                 "| against | q/s ours÷theirs | insert/s ours÷theirs | p50 theirs÷ours | p99 theirs÷ours |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    errors = []
    for r in rows:
        s = r["system"]
        if "error" in r:
            lines.append(f"| {s} | {r.get('version', '-')} | - | - | - | - | - | - | - | - | - | - | - | - |")
            errors.append((s, r["error"]))
            continue
        mine_row = is_ours(r)
        base = None if mine_row else against(r, mine, ours)
        if base is None:
            rq = ri = r50 = r99 = None
        else:
            rq = ratio(num(base, "qps"), num(r, "qps"))
            ri = ratio(num(base, "insert_per_sec"), num(r, "insert_per_sec"))
            r50 = ratio(num(r, "query_p50_ms"), num(base, "query_p50_ms"))
            r99 = ratio(num(r, "query_p99_ms"), num(base, "query_p99_ms"))
        name = f"**{s}** (ours)" if mine_row else s
        dash = "—" if mine_row else "-"
        q_used = r.get("q", meta.get("q"))
        if q_used is not None and isinstance(r.get("warmup"), int) and r["warmup"] != 50:
            q_used = f"{q_used} (warm-up {r['warmup']})"
        lines.append(
            f"| {name} | {r.get('version', '-')} | {r.get('runs', '-')} | {q_used if q_used is not None else '-'} "
            f"| {fmt(num(r, 'insert_per_sec'), 'rate')} | {fmt(num(r, 'query_p50_ms'), 'ms')} "
            f"| {fmt(num(r, 'query_p99_ms'), 'ms')} | {fmt(num(r, 'qps'), 'rate')} "
            f"| {fmt(num(r, 'recall_at_10'), 'recall')} "
            f"| {base['system'] if base is not None else dash} "
            f"| {dash if mine_row else fmt(rq, 'ratio')} | {dash if mine_row else fmt(ri, 'ratio')} "
            f"| {dash if mine_row else fmt(r50, 'ratio')} | {dash if mine_row else fmt(r99, 'ratio')} |")
    lines.append("")
    for s, e in errors:
        lines.append(f"- **{s}** did not run: `{e}`")
    notes = [(r["system"], r["notes"]) for r in rows if r.get("notes") and "error" not in r]
    if notes:
        lines.append("")
        lines.append("<details><summary>what each row measured</summary>")
        lines.append("")
        for s, t in notes:
            lines.append(f"- **{s}**: {t}")
        lines.append("")
        lines.append("</details>")
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "latest.md"),
                   help="markdown file to write (default bench/peers/latest.md); '-' for none")
    a = p.parse_args()
    missing = [d for d in a.dirs if not glob.glob(os.path.join(d, "results-*.json"))]
    for d in missing:
        print(f"warning: no results-*.json in {d}", file=sys.stderr)
    parts = [
        "## Peers side by side",
        "",
        "Same episodes and the same vectors supplied to every system. Insert/s, q/s and latencies are medians "
        "over independent runs (each run rebuilds from scratch); latencies are per single query (k=10, one at a "
        "time, after an untimed warm-up); recall@10 is the mean against the exact top-10 by cosine. "
        "Each peer is compared with the fastest of our rows whose recall@10 is at least its own (column "
        "'against'; agentdb-rs is the default configuration, agentdb-rs-efN a fixed search breadth). "
        "Ratios above 1 mean ours is ahead. Produced by `bench/peers/report.py` from the results files "
        "listed below; see bench/README.md for the commands.",
        "",
    ]
    for d in a.dirs:
        parts.append(table(d))
    md = "\n".join(parts).rstrip() + "\n"
    sys.stdout.write(md)
    if a.out != "-":
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(md)
        print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
