"""Interleaved A/B of the collector: only the end-to-end phase of ``collector_throughput.py``, arms alternating.

This VM's speed wanders by ±15 % from one run to the next, more than most single changes move the figure,
so two trees (or two settings) are compared round by round: in each round every arm runs once, in an order
that flips every round, and the medians and every run are printed (``--out`` writes them as JSON).

An arm is ``NAME=VAR=VALUE,VAR=VALUE`` (environment of the collector subprocess) or just ``NAME``. To compare
two trees, build the other one and put it first on the path::

    git worktree add /tmp/before 6d68a73
    (cd /tmp/before && /work/main/.venv/bin/python setup.py build_ext --inplace)
    .venv/bin/python benchmarks/collector_ab.py --rounds 8 before=PYTHONPATH=/tmp/before after

``LLM_MONITOR_*`` variables of an arm are the collector's settings (``collector_throughput --collector-env``),
e.g. ``big=LLM_MONITOR_BATCH_SIZE=40000``; the rest of the environment never passes them on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import collector_throughput as ct
import workload


def parse_arm(spec: str) -> tuple[str, dict[str, str]]:
    name, _, envs = spec.partition("=")
    env: dict[str, str] = {}
    for item in filter(None, envs.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"bad arm {spec!r}: expected NAME or NAME=VAR=VALUE[,VAR=VALUE...]")
        env[key] = value
    if not name:
        raise SystemExit(f"bad arm {spec!r}: no name")
    return name, env


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("arms", nargs="+", help="NAME or NAME=VAR=VALUE[,VAR=VALUE...] (at least two)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--spans", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--senders", type=int, default=4)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    arms = dict(parse_arm(a) for a in args.arms)
    if len(arms) < 2:
        raise SystemExit("give at least two arms with distinct names")
    run_args = argparse.Namespace(
        spans=args.spans, batch=args.batch, senders=args.senders, collector_env=[], seed=7,
        collector_batch_size=0, timeout=600.0, base_ns=workload.base_time_ns(),
    )  # fmt: skip
    base_env = dict(os.environ)
    runs: dict[str, list[dict[str, Any]]] = {a: [] for a in arms}
    for r in range(args.rounds):
        for name in list(arms) if r % 2 == 0 else list(reversed(arms)):
            os.environ.clear()
            os.environ.update(base_env)
            # collector settings (LLM_MONITOR_*) go through --collector-env; the rest into the environment
            settings = {k: v for k, v in arms[name].items() if k.startswith("LLM_MONITOR_")}
            os.environ.update({k: v for k, v in arms[name].items() if k not in settings})
            run_args.collector_env = [f"{k}={v}" for k, v in settings.items()]
            workdir = Path(tempfile.mkdtemp(prefix="collector-ab-"))
            try:
                e = ct.run_end_to_end(run_args, workdir)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
                os.environ.clear()
                os.environ.update(base_env)
            if not e["check"]["ok"]:
                print(f"{name} round {r}: check FAILED: {e['check']['problems']}", file=sys.stderr)
                return 1
            stages = e.get("in_situ_stage_cpu_us_per_span", {})
            runs[name].append(
                {
                    "stored_per_s": e["spans_per_s"],
                    "accepted_per_s": e["accepted_per_s"],
                    "collector_cpu_us_per_span": e["collector_cpu_us_per_span"],
                    "stage_cpu_us_per_span": sum(stages.values()),  # 0 for a tree without the metric
                    **{f"stage_{k}": v for k, v in stages.items()},
                }
            )
            print(
                f"{name:12s} round {r}: stored {e['spans_per_s']:8,.0f}/s  accepted {e['accepted_per_s']:8,.0f}/s"
                f"  CPU {e['collector_cpu_us_per_span']:5.1f} µs/span  stages {sum(stages.values()):5.1f}"
                f"  (normalize {stages.get('normalize', 0.0):4.1f})",
                flush=True,
            )
    print()
    for name, rs in runs.items():
        med = {k: statistics.median(x.get(k, 0.0) for x in rs) for k in rs[0]}
        print(
            f"{name:12s} medians: stored {med['stored_per_s']:8,.0f}/s  accepted {med['accepted_per_s']:8,.0f}/s"
            f"  CPU {med['collector_cpu_us_per_span']:5.1f} µs/span  stages {med['stage_cpu_us_per_span']:5.1f}"
            f"  runs {[round(x['stored_per_s']) for x in rs]}"
        )
        by_stage = "  ".join(
            f"{k[6:]} {v:.1f}"
            for k, v in med.items()
            if k.startswith("stage_") and k != "stage_cpu_us_per_span"
        )
        if by_stage:
            print(f"{'':12s} stage medians, CPU µs/span: {by_stage}")
    if args.out is not None:
        args.out.write_text(json.dumps({"arms": arms, "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
