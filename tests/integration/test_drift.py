"""Drift on real chDB: a planted shift is reported, two samples of one distribution are not.

Windows are filled with spans drawn from known distributions (seeded), so which feature must drift is
known in advance; distances are also checked against values computed here with numpy/scipy.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest
from scipy import stats

from monitor.analyzers import _whylogs as wl
from monitor.analyzers.base import AnalyzerConfigError
from monitor.analyzers.config import AnalyzerSettings
from monitor.analyzers.drift import DriftJob, DriftOptions, parse_duration
from monitor.store.schema import SPAN_COLUMNS, span_row

H0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)


def fill_window(store: Any, start: dt.datetime, n: int, seed: int, *, latency_mu: float = 6.0,
                models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o"), model_p: tuple[float, ...] = (0.7, 0.3),
                prefix: str = "w") -> None:  # fmt: skip
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        words = int(rng.integers(5, 60))
        rows.append(
            span_row(
                {
                    "trace_id": f"{prefix}{seed}-{i // 2}",
                    "span_id": f"{prefix}{seed}-{i}",
                    "kind": "llm",
                    "service": "bot",
                    "model": str(rng.choice(models, p=model_p)),
                    "start_time": start + dt.timedelta(seconds=float(rng.uniform(0, 3599))),
                    "duration_ms": float(rng.lognormal(latency_mu, 0.4)),
                    "input_text": "word " * words,
                    "output_text": "answer " * int(rng.integers(10, 80)),
                    "input_tokens": words * 2,
                    "output_tokens": int(rng.integers(20, 160)),
                    "finish_reason": "stop",
                    "ingested_at": start,
                }
            )
        )
    store.insert_columns("spans", [[r[c] for r in rows] for c in SPAN_COLUMNS], SPAN_COLUMNS)


def job(**options: Any) -> DriftJob:
    options.setdefault("embedding", False)
    options.setdefault("windows", ["1h"])
    return DriftJob(AnalyzerSettings("drift", options=options))


def drift_rows(
    store: Any, segment: str = "all"
) -> dict[tuple[str, str], tuple[float, float, bool, int, int]]:
    rows = store.query(
        f"SELECT feature, method, score, threshold, drifted, sample_size, baseline_size FROM {store.table('drift')} "
        "FINAL WHERE segment = {s:String}",
        {"s": segment},
    ).result_rows
    return {(f, m): (s, t, d, n, b) for f, m, s, t, d, n, b in rows}


def test_same_distribution_is_not_drift(store: Any) -> None:
    fill_window(store, H0, 800, seed=1)
    fill_window(store, H0 + HOUR, 800, seed=2)
    j = job()
    written = j.run(store, H0 + 2 * HOUR + dt.timedelta(minutes=1))
    rows = drift_rows(store)
    assert written >= len(rows) > 0
    assert not [k for k, v in rows.items() if v[2]], rows
    assert rows[("latency_ms", "ks")][3:] == (800, 800)


def test_planted_latency_and_model_shift_is_drift(store: Any) -> None:
    fill_window(store, H0, 800, seed=1)
    fill_window(store, H0 + HOUR, 800, seed=3, latency_mu=6.5, model_p=(0.2, 0.8))  # slower, other model mix
    job().run(store, H0 + 2 * HOUR)
    rows = drift_rows(store)
    for method in ("hellinger", "psi", "ks"):
        assert rows[("latency_ms", method)][2], (method, rows[("latency_ms", method)])
    assert rows[("model", "hellinger")][2] and rows[("model", "psi")][2]
    # features that did not move stay quiet
    assert not any(rows[("input_chars", m)][2] for m in ("hellinger", "psi", "ks"))
    # the KS statistic from the sketches matches scipy's on the raw values (sketch error ~1 %)
    raw = {
        w: [r[0] for r in store.query(
            f"SELECT duration_ms FROM {store.table('spans')} WHERE start_time >= {{s:DateTime64(9, 'UTC')}} "
            "AND start_time < {e:DateTime64(9, 'UTC')}", {"s": H0 + w * HOUR, "e": H0 + (w + 1) * HOUR}
        ).result_rows]
        for w in (0, 1)
    }  # fmt: skip
    expected_ks = stats.ks_2samp(raw[0], raw[1]).statistic
    assert rows[("latency_ms", "ks")][0] == pytest.approx(expected_ks, abs=0.03)
    # per-model segments exist and have their own rows
    assert drift_rows(store, "model=gpt-4o")


def test_profiles_are_stored_and_merge(store: Any) -> None:
    fill_window(store, H0, 300, seed=5)
    j = job(segments=["all", "model"])
    j.run(store, H0 + 2 * HOUR)
    stored = j.load_profiles(store, "default", 3600, H0)
    assert set(stored) == {"all", "model=gpt-4o-mini", "model=gpt-4o"}
    n_all = stored["all"][0]
    assert n_all == 300 == stored["model=gpt-4o-mini"][0] + stored["model=gpt-4o"][0]
    merged = stored["model=gpt-4o-mini"][1].merge(stored["model=gpt-4o"][1])
    assert merged.count("latency_ms") == 300
    assert merged.frequencies("model") == stored["all"][1].frequencies("model")


def test_small_windows_get_a_wider_threshold_and_are_idempotent(store: Any) -> None:
    fill_window(store, H0, 40, seed=7)
    fill_window(store, H0 + HOUR, 40, seed=8)
    j = job(min_samples=20)
    j.run(store, H0 + 2 * HOUR)
    rows = drift_rows(store)
    h = rows[("latency_ms", "hellinger")]
    assert h[1] > 0.1  # the chance level of 40 vs 40 spans is above the configured 0.1
    assert not [k for k, v in rows.items() if v[2]], rows
    before = store.scalar(f"SELECT count() FROM {store.table('drift')} FINAL")
    assert j.pending_windows(store, H0 + 2 * HOUR) == []  # nothing left to do for these windows
    j.run_window(store, "default", 3600, H0 + HOUR, H0 + 2 * HOUR)  # recomputing replaces, never adds
    assert store.scalar(f"SELECT count() FROM {store.table('drift')} FINAL") == before


def test_pinned_baseline(store: Any) -> None:
    fill_window(store, H0, 500, seed=1)
    fill_window(store, H0 + HOUR, 500, seed=2)
    fill_window(store, H0 + 2 * HOUR, 500, seed=9, latency_mu=7.0)
    j = job(baseline={"start": H0.isoformat(), "end": (H0 + HOUR).isoformat()})
    j.run_window(store, "default", 3600, H0 + 2 * HOUR, H0 + 3 * HOUR)
    row = store.query(
        f"SELECT baseline_start, drifted FROM {store.table('drift')} FINAL WHERE feature = 'latency_ms' AND method = 'ks' AND segment = 'all'"
    ).result_rows
    assert row == [(H0.replace(tzinfo=None) if row[0][0].tzinfo is None else H0, True)]


def test_distance_functions_against_hand_values() -> None:
    p = np.array([0.5, 0.5])
    q = np.array([0.9, 0.1])
    assert wl.hellinger(p, p) == 0.0
    assert wl.hellinger(p, q) == pytest.approx(np.sqrt(1 - (np.sqrt(0.45) + np.sqrt(0.05))))
    assert wl.psi(p, q) == pytest.approx(0.4 * np.log(0.9 / 0.5) + (-0.4) * np.log(0.1 / 0.5))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"windows": ["5x"]}, "bad window"),
        ({"windows": ["5s"]}, "shorter than 10 s"),
        ({"segments": ["region"]}, "segments must be a list"),
        ({"baseline": "yesterday"}, "baseline must be"),
        ({"thresholds": {"psi": -1}}, "psi must be a positive number"),
        ({"min_samples": 0}, "min_samples must be a whole number"),
        ({"bogus": 1}, "unknown option 'bogus'"),
    ],
)
def test_bad_options_are_one_clear_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(AnalyzerConfigError, match=message):
        DriftOptions.parse(options)


def test_parse_duration() -> None:
    assert [parse_duration(x) for x in ("1h", "30m", "1d", "90s", 120)] == [3600, 1800, 86400, 90, 120]
