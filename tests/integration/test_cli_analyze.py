"""``llm-monitor analyze`` in a real subprocess on its own embedded store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


FILL = """
import datetime as dt, sys
from monitor.store import open_store
from monitor.store.schema import SPAN_COLUMNS, span_row
store = open_store(sys.argv[1], "llm_monitor", migrate=True)
h0 = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=3)
rows = []
for w in range(2):
    for i in range(60):
        start = h0 + dt.timedelta(hours=w, seconds=i * 30)
        rows.append(span_row({
            "trace_id": f"t{w}{i}", "span_id": f"s{w}{i:03d}", "kind": "llm", "start_time": start,
            "duration_ms": 100.0 + i + 900.0 * w, "input_text": "How do refunds work?",
            "output_text": "I'm sorry, but I can't help with that." if i == 0 else "Refunds take 5 days.",
            "ingested_at": start, "model": "gpt-4o-mini",
        }))
store.insert_columns("spans", [[r[c] for r in rows] for c in SPAN_COLUMNS], SPAN_COLUMNS)
store.close()
"""


@pytest.fixture
def filled(tmp_path: Path) -> str:
    """A store with two past hours of LLM spans (the second one slower), one refusal in each; filled by
    another process (chDB hosts one engine per process, and the CLI runs in its own)."""
    url = f"chdb://{tmp_path}/store"
    r = subprocess.run([sys.executable, "-c", FILL, url], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return url


def test_once_runs_the_selected_jobs_and_writes_rows(filled: str, tmp_path: Path) -> None:
    cfg = tmp_path / "llm-monitor.yaml"
    cfg.write_text("analyzers:\n  drift:\n    windows: [1h]\n    embedding: false\n    min_samples: 20\n")
    r = run("analyze", "--once", "--only", "drift,acceptance", "--store", filled, "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "analyzed: drift" in r.stdout and "acceptance 0 spans" in r.stdout
    q = run(
        "query",
        "SELECT countIf(drifted) FROM drift FINAL WHERE feature = 'latency_ms' AND method = 'ks' AND segment = 'all'",
        "--store", filled, "--format", "csv",
    )  # fmt: skip
    assert q.stdout.splitlines()[1] == "1", q.stdout + q.stderr  # the planted slow-down


def test_backfill_shows_progress_and_bad_arguments_are_one_line(filled: str) -> None:
    r = run("analyze", "--backfill", "1d", "--only", "refusal", "--store", filled)
    assert r.returncode == 0, r.stderr
    assert "backfilling refusal" in r.stderr and "120/120 spans" in r.stderr
    q = run("query", "SELECT count() FROM scores FINAL WHERE analyzer = 'refusal' AND value > 0.5",
            "--store", filled, "--format", "csv")  # fmt: skip
    assert q.stdout.splitlines()[1] == "2"
    r = run("analyze", "--backfill", "last tuesday", "--store", filled)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--backfill 'last tuesday'" in r.stderr
    r = run("analyze", "--once", "--only", "nope", "--store", filled)
    assert r.returncode == 2 and "unknown analyzer 'nope'" in r.stderr
