"""Drift over one window of N spans (default 1,000,000): seconds and peak memory, chunked vs one piece.

    .venv/bin/python benchmarks/drift_throughput.py [--spans N] [--chunk-rows R] [--out FILE]

A fresh embedded store gets N LLM spans in one hour (texts of realistic lengths, tokens, latency, TTFT,
cost, models, finish reasons, and a toxicity score row for every span), then the drift job profiles that
window (every segment) and compares it with the previous hour (N/10 spans). Timed: ``profile_window`` of
the big window and the whole ``run_window`` (profiles + comparisons + rows; embedding drift off, it samples
a fixed number of texts whatever N is). Memory: the process's peak RSS growth during the run, for the
default chunk size and for a single chunk, in the same run (separate child processes), so the bound the
chunking buys is visible. Target (issue 5): ≤ 30 s for 1,000,000 spans, bounded memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

H0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)
MODELS = np.array(["gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5", "gemini-2.5-flash"])
FINISH = np.array(["stop", "length", "tool_calls"])


def fill(store: Any, start: dt.datetime, n: int, seed: int, prefix: str, chunk: int = 100_000) -> None:
    from monitor.store.schema import SPAN_DEFAULTS

    rng = np.random.default_rng(seed)
    filler = "x" * 2000
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        ids = [f"{prefix}{i:08d}" for i in range(lo, lo + m)]
        starts = [start + dt.timedelta(seconds=float(s)) for s in rng.uniform(0, 3599, m)]
        in_len = rng.integers(50, 1500, m)
        out_len = rng.integers(20, 1200, m)
        cols: dict[str, list[Any]] = {
            "project": ["default"] * m,
            "trace_id": [i[:-1] for i in ids],
            "span_id": ids,
            "kind": ["llm"] * m,
            "service": ["support-bot"] * m,
            "model": list(rng.choice(MODELS, m, p=[0.5, 0.2, 0.2, 0.1])),
            "finish_reason": list(rng.choice(FINISH, m, p=[0.9, 0.05, 0.05])),
            "start_time": starts,
            "duration_ms": list(rng.lognormal(6.5, 0.5, m)),
            "ttft_ms": list(rng.lognormal(5.5, 0.4, m)),
            "cost_usd": list(rng.lognormal(-7, 1, m)),
            "input_tokens": list((in_len // 4).astype(int)),
            "output_tokens": list((out_len // 4).astype(int)),
            "input_text": [filler[:k] for k in in_len],
            "output_text": [filler[:k] for k in out_len],
            "ingested_at": [start] * m,
        }
        names = [c for c in SPAN_DEFAULTS if c in cols] + ["ingested_at"]
        store.insert_columns("spans", [cols[c] for c in names], names)
        tox = list(rng.beta(0.5, 20, m))
        store.insert_columns(
            "scores",
            [["default"] * m, cols["trace_id"], ids, starts, ["toxicity"] * m, ["output"] * m, tox],
            ["project", "trace_id", "span_id", "span_start_time", "analyzer", "metric", "value"],
        )


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(path: str, chunk_rows: int, n: int, queue: Any) -> None:
    """Child process: open the filled store, run drift once, report times and memory."""
    from monitor.analyzers.config import AnalyzerSettings
    from monitor.analyzers.drift import DriftJob
    from monitor.store import open_store

    store = open_store(f"chdb://{path}", "bench", migrate=False)
    job = DriftJob(
        AnalyzerSettings("drift", options={"windows": ["1h"], "embedding": False, "chunk_rows": chunk_rows})
    )
    job.profile_window(store, "default", H0, H0 + HOUR)  # warm-up: imports, whylogs, the previous hour
    base_rss = _rss_mb()
    t = time.perf_counter()
    profiles = job.profile_window(store, "default", H0 + HOUR, H0 + 2 * HOUR)
    t_profile = time.perf_counter() - t
    t = time.perf_counter()
    rows = job.run_window(store, "default", 3600, H0 + HOUR, H0 + 2 * HOUR)
    t_run = time.perf_counter() - t
    drifted = store.scalar(f"SELECT countIf(drifted) FROM {store.table('drift')} FINAL")
    queue.put({
        "chunk_rows": chunk_rows,
        "spans": n,
        "segments": len(profiles),
        "profile_window_s": t_profile,
        "run_window_s": t_run,
        "spans_per_s": n / t_run,
        "drift_rows": rows,
        "drifted_rows": int(drifted or 0),
        "rss_before_mb": base_rss,
        "peak_rss_mb": _peak_mb(),
        "peak_growth_mb": _peak_mb() - base_rss,
    })  # fmt: skip
    store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=int, default=1_000_000)
    ap.add_argument("--chunk-rows", type=int, default=200_000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "drift_throughput.json"))
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="drift-bench-")
    path = os.path.join(tmp, "store")
    t = time.perf_counter()
    ctx = mp.get_context("spawn")

    p = ctx.Process(target=_run_fill, args=(path, args.spans))
    p.start()
    p.join()
    if p.exitcode != 0:
        print("filling the store failed", file=sys.stderr)
        return 1
    print(f"filled {args.spans:,} + {max(1000, args.spans // 10):,} spans in {time.perf_counter() - t:.0f} s")
    results = []
    for chunk in (args.chunk_rows, args.spans + 1):
        q = ctx.Queue()
        c = ctx.Process(target=measure, args=(path, chunk, args.spans, q))
        c.start()
        results.append(q.get(timeout=3600))
        c.join()
    print(f"{'chunk rows':>12} {'profile s':>10} {'run s':>8} {'spans/s':>10} {'segments':>9} "
          f"{'drift rows':>10} {'peak growth MB':>15}")  # fmt: skip
    for r in results:
        print(
            f"{r['chunk_rows']:>12,} {r['profile_window_s']:>10.1f} {r['run_window_s']:>8.1f} "
            f"{r['spans_per_s']:>10,.0f} {r['segments']:>9} {r['drift_rows']:>10} {r['peak_growth_mb']:>15.0f}"
        )
    out = {
        "benchmark": "drift_throughput",
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "results": results,
        "memory_ratio_single_vs_chunked": results[1]["peak_growth_mb"]
        / max(1.0, results[0]["peak_growth_mb"]),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


def _run_fill(path: str, spans: int) -> None:
    from monitor.store import open_store

    store = open_store(f"chdb://{path}", "bench", migrate=True)
    fill(store, H0, max(1000, spans // 10), seed=1, prefix="b")
    fill(store, H0 + HOUR, spans, seed=2, prefix="w")
    store.close()


if __name__ == "__main__":
    sys.exit(main())
