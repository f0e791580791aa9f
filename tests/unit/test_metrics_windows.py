"""monitor.metrics.window_metrics on real chDB: per-window and per-segment operational metrics.

Expected percentiles come from numpy's default (linear) interpolation, which is what
``quantileExactInclusive`` computes, so they are asserted exactly.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from monitor import metrics
from monitor.store.schema import SPAN_COLUMNS, span_row

NOW = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)
T0 = NOW - dt.timedelta(minutes=40)
WINDOW: dict[str, Any] = {"start": NOW - dt.timedelta(hours=1), "end": NOW + dt.timedelta(minutes=1)}


def insert(store: Any, rows: list[dict[str, Any]]) -> None:
    full = [span_row({"ingested_at": dt.datetime.now(dt.timezone.utc), **r}) for r in rows]
    cols = list(SPAN_COLUMNS)
    store.insert("spans", [[r[c] for c in cols] for r in full], cols)


def call(i: int, *, at: float = 0.0, **kw: Any) -> dict[str, Any]:
    start = T0 + dt.timedelta(seconds=at)
    dur = kw.pop("duration_ms", 100.0)
    row = {
        "project": "default",
        "service": "chat-api",
        "trace_id": f"t{i}",
        "span_id": f"s{i}",
        "name": "chat",
        "kind": "llm",
        "model": "gpt-4o",
        "prompt_name": "answer",
        "prompt_version": "1",
        "start_time": start,
        "end_time": start + dt.timedelta(milliseconds=dur),
        "duration_ms": dur,
        "status": "ok",
    }
    row.update(kw)
    return row


def planted() -> list[dict[str, Any]]:
    """v1: 20 calls 10..200 ms, 2 errors, 5 streamed, priced; v2: 5 slow unpriced calls on another service."""
    rows = [
        call(
            i,
            at=i,
            duration_ms=10.0 * i,
            status="error" if i in (4, 9) else "ok",
            ttft_ms=5.0 * i if i <= 5 else None,
            input_tokens=i,
            output_tokens=2 * i,
            total_tokens=3 * i,
            cost_usd=0.01,
            attributes={"user.tier": "pro" if i % 2 else "free"},
        )
        for i in range(1, 21)
    ]
    rows += [
        call(
            100 + i,
            at=30 + i,
            duration_ms=1000.0 * i,
            prompt_version="2",
            service="batch",
            input_tokens=10,
            output_tokens=0,
            total_tokens=0,
            cost_usd=None,
            attributes={"user.tier": "pro"},
        )
        for i in range(1, 6)
    ]
    return rows


def test_whole_window_has_p50_p95_p99_ttft_error_rate_tokens_cost(store: Any) -> None:
    insert(store, planted())
    df = metrics.window_metrics(store, **WINDOW)
    assert len(df) == 1
    r = df.iloc[0]
    durations = [10.0 * i for i in range(1, 21)] + [1000.0 * i for i in range(1, 6)]
    assert r["requests"] == 25
    assert r["errors"] == 2
    assert r["error_rate"] == pytest.approx(2 / 25)
    for q in (50, 95, 99):
        assert r[f"latency_p{q}_ms"] == pytest.approx(np.percentile(durations, q))
        assert r[f"ttft_p{q}_ms"] == pytest.approx(np.percentile([5.0, 10.0, 15.0, 20.0, 25.0], q))
    assert r["streamed_calls"] == 5
    assert r["input_tokens"] == 210 + 50
    assert r["output_tokens"] == 420
    assert r["total_tokens"] == 630 + 50  # v2 reports no total: input + output
    assert r["cost_usd"] == pytest.approx(0.20)
    assert r["priced_calls"] == 20 and r["unpriced_calls"] == 5


def test_per_segment_service_model_prompt_version(store: Any) -> None:
    insert(store, planted())
    df = metrics.window_metrics(store, **WINDOW, segment_by=("service", "model", "prompt_version"))
    assert df[["service", "model", "prompt_version", "requests"]].values.tolist() == [
        ["batch", "gpt-4o", "2", 5],
        ["chat-api", "gpt-4o", "1", 20],
    ]
    v1 = df.set_index("prompt_version").loc["1"]
    assert v1["latency_p99_ms"] == pytest.approx(np.percentile([10.0 * i for i in range(1, 21)], 99))
    assert v1["error_rate"] == pytest.approx(0.1)
    v2 = df.set_index("prompt_version").loc["2"]
    assert v2["latency_p50_ms"] == pytest.approx(3000.0)
    assert math.isnan(v2["cost_usd"])  # nothing priced: NaN, not $0
    assert math.isnan(v2["ttft_p95_ms"])  # nothing streamed: no TTFT
    assert v2["error_rate"] == 0


def test_segment_by_an_attribute_and_buckets(store: Any) -> None:
    insert(store, planted())
    df = metrics.window_metrics(store, **WINDOW, segment_by=("attributes.user.tier",))
    assert df[["attributes.user.tier", "requests"]].values.tolist() == [["free", 10], ["pro", 15]]

    start = T0 - dt.timedelta(seconds=T0.second)  # T0 is on a minute boundary already
    df = metrics.window_metrics(
        store,
        start=start,
        end=start + dt.timedelta(minutes=2),
        bucket_seconds=30,
        segment_by=["prompt_version"],
    )
    assert df.attrs["bucket_seconds"] == 30
    assert df["bucket"].dt.tz is not None
    got = [[b - pd.Timestamp(start), v, n] for b, v, n in df[["bucket", "prompt_version", "requests"]].values]
    # v1 at +1..+20 s (first bucket, 20 calls, last at +20 s); v2 at +31..+35 s (second bucket)
    assert got == [
        [pd.Timedelta(0), "1", 20],
        [pd.Timedelta(seconds=30), "2", 5],
    ]


def test_empty_window_is_one_row_of_nothing(store: Any) -> None:
    df = metrics.window_metrics(store, **WINDOW)
    assert df["requests"].tolist() == [0]
    assert math.isnan(df["error_rate"].iloc[0])
    assert math.isnan(df["latency_p99_ms"].iloc[0])
    seg = metrics.window_metrics(store, **WINDOW, segment_by=("model",), bucket_seconds=60)
    assert len(seg) == 0 and {"bucket", "model", "latency_p99_ms", "cost_usd"} <= set(seg.columns)


def test_filters_apply(store: Any) -> None:
    insert(store, [*planted(), call(999, project="other", duration_ms=5.0)])
    assert metrics.window_metrics(store, **WINDOW, project="default")["requests"].tolist() == [25]
    assert metrics.window_metrics(store, **WINDOW, service="batch")["requests"].tolist() == [5]
    assert metrics.window_metrics(store, **WINDOW)["requests"].tolist() == [26]


@pytest.mark.parametrize(
    "bad", ["input_text", "model; DROP TABLE spans", "attributes.", "tags.x", "model`", "cost_usd"]
)
def test_segment_names_are_whitelisted(store: Any, bad: str) -> None:
    with pytest.raises(ValueError, match="cannot segment by"):
        metrics.window_metrics(store, **WINDOW, segment_by=(bad,))


def test_attribute_key_is_bound_not_spliced(store: Any) -> None:
    insert(store, [call(1, attributes={"k'); DROP TABLE spans; --": "v"})])
    df = metrics.window_metrics(store, **WINDOW, segment_by=("attributes.k'); DROP TABLE spans; --",))
    assert df.iloc[:, 0].tolist() == ["v"]
    assert metrics.window_metrics(store, **WINDOW)["requests"].tolist() == [1]


def test_bad_arguments(store: Any) -> None:
    with pytest.raises(ValueError, match="bucket_seconds"):
        metrics.window_metrics(store, **WINDOW, bucket_seconds=0)
    with pytest.raises(ValueError, match="repeats"):
        metrics.window_metrics(store, **WINDOW, segment_by=("model", "model"))
