"""monitor.metrics on a real embedded chDB: known rows in, exact numbers out.

Percentiles are asserted exactly: :data:`monitor.metrics.QUANTILE` is ``quantileExactInclusive``, which
interpolates like numpy's default ``linear`` method, so numpy gives the expected value.
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
T0 = NOW - dt.timedelta(minutes=40)  # inside the table's TTL and the test windows
WINDOW: dict[str, Any] = {"start": NOW - dt.timedelta(hours=1), "end": NOW + dt.timedelta(minutes=1)}


def insert(store: Any, rows: list[dict[str, Any]]) -> None:
    """Insert spans built from partial dicts, the way the collector's writer does (defaults filled)."""
    full = [span_row({"ingested_at": dt.datetime.now(dt.timezone.utc), **r}) for r in rows]
    cols = list(SPAN_COLUMNS)
    store.insert("spans", [[r[c] for c in cols] for r in full], cols)


def llm(trace: str, span: str, *, at: float = 0.0, **kw: Any) -> dict[str, Any]:
    """An LLM span ``at`` seconds after T0; end_time follows from duration_ms."""
    start = T0 + dt.timedelta(seconds=at)
    dur = kw.get("duration_ms", 100.0)
    row = {
        "project": "default",
        "service": "chat-api",
        "trace_id": trace,
        "span_id": span,
        "name": "chat",
        "kind": "llm",
        "provider": "openai",
        "model": "gpt-4o",
        "start_time": start,
        "end_time": start + dt.timedelta(milliseconds=dur),
        "duration_ms": dur,
        "status": "ok",
    }
    row.update(kw)
    return row


def ten_calls() -> list[dict[str, Any]]:
    """Ten gpt-4o calls, 100..1000 ms; two errors; four streamed; seven priced."""
    rows = []
    for i in range(1, 11):
        rows.append(
            llm(
                f"t{i}",
                f"s{i}",
                at=i,
                duration_ms=100.0 * i,
                input_tokens=10 * i,
                output_tokens=i,
                total_tokens=11 * i,
                status="error" if i in (3, 7) else "ok",
                ttft_ms=50.0 * i if i <= 4 else None,
                stream=i <= 4,
                cost_usd=0.001 if i <= 7 else None,
            )
        )
    return rows


# --- overview ------------------------------------------------------------------------------------------


def test_overview_kpis_exact_values(store: Any) -> None:
    rows = ten_calls()
    # A chain span: not a model call, but it is a span of an existing trace.
    rows.append(
        llm(
            "t1",
            "root",
            kind="chain",
            name="pipeline",
            model="",
            duration_ms=5000.0,
            input_tokens=999,
            cost_usd=9.0,
        )
    )
    insert(store, rows)

    k = metrics.overview_kpis(store, **WINDOW)

    durations = [100.0 * i for i in range(1, 11)]
    assert k["requests"] == 10
    assert k["errors"] == 2
    assert k["error_rate"] == pytest.approx(0.2)
    assert k["latency_p50_ms"] == pytest.approx(np.percentile(durations, 50))  # 550
    assert k["latency_p95_ms"] == pytest.approx(np.percentile(durations, 95))  # 955
    assert k["ttft_p50_ms"] == pytest.approx(np.percentile([50, 100, 150, 200], 50))  # 125
    assert k["streamed_calls"] == 4
    assert k["input_tokens"] == 550
    assert k["output_tokens"] == 55
    assert k["total_tokens"] == 605
    assert k["cost_usd"] == pytest.approx(0.007)
    assert k["priced_calls"] == 7
    assert k["unpriced_calls"] == 3
    assert k["spans"] == 11
    assert k["traces"] == 10


def test_overview_kpis_empty_window_gives_none_not_zero(store: Any) -> None:
    k = metrics.overview_kpis(store, **WINDOW)
    assert k["requests"] == 0
    assert k["error_rate"] is None
    assert k["latency_p50_ms"] is None
    assert k["ttft_p50_ms"] is None
    assert k["cost_usd"] is None
    assert k["unpriced_calls"] == 0
    assert k["spans"] == 0


def test_cost_none_when_nothing_priced(store: Any) -> None:
    insert(store, [llm("a", "1", model="mystery-model", cost_usd=None), llm("b", "2", cost_usd=None)])
    k = metrics.overview_kpis(store, **WINDOW)
    assert k["cost_usd"] is None
    assert k["unpriced_calls"] == 2


def test_redelivered_spans_are_counted_once(store: Any) -> None:
    rows = ten_calls()
    insert(store, rows)
    insert(store, rows[:5])  # the collector replays part of its spool
    k = metrics.overview_kpis(store, **WINDOW)
    assert k["requests"] == 10
    assert k["input_tokens"] == 550
    assert k["cost_usd"] == pytest.approx(0.007)
    traces = metrics.list_traces(store, **WINDOW)
    assert len(traces) == 10
    assert traces["spans"].tolist() == [1] * 10
    assert metrics.by_model(store, **WINDOW)["requests"].tolist() == [10]
    assert metrics.timeseries(store, **WINDOW)["requests"].sum() == 10


def test_filters_project_service_model_and_window(store: Any) -> None:
    insert(
        store,
        [
            llm("a", "1", model="gpt-4o"),
            llm("b", "2", model="claude-3-5-sonnet", provider="anthropic"),
            llm("c", "3", service="batch-job"),
            llm("d", "4", project="other"),
            llm("e", "5", at=-3 * 3600),  # three hours before T0: outside the window
            llm("f", "6", kind="embedding", model="text-embedding-3-small", duration_ms=20.0),
        ],
    )
    assert metrics.overview_kpis(store, **WINDOW)["requests"] == 5
    assert metrics.overview_kpis(store, **WINDOW, project="default")["requests"] == 4
    assert metrics.overview_kpis(store, **WINDOW, project="default", service="batch-job")["requests"] == 1
    assert metrics.overview_kpis(store, **WINDOW, model="claude-3-5-sonnet")["requests"] == 1
    assert metrics.overview_kpis(store, **WINDOW, model=["gpt-4o", "claude-3-5-sonnet"])["requests"] == 4
    assert metrics.overview_kpis(store, **WINDOW, model=[])["requests"] == 5  # empty list: no filter
    assert metrics.overview_kpis(store, **WINDOW, kinds=("llm",))["requests"] == 4
    wide = {"start": NOW - dt.timedelta(hours=5), "end": WINDOW["end"]}
    assert metrics.overview_kpis(store, **wide)["requests"] == 6


def test_window_must_not_be_empty(store: Any) -> None:
    with pytest.raises(ValueError, match="empty time window"):
        metrics.overview_kpis(store, start=NOW, end=NOW)


def test_naive_and_aware_datetimes_mean_the_same_instant(store: Any) -> None:
    insert(store, [llm("a", "1")])
    paris = dt.timezone(dt.timedelta(hours=1))
    aware = {k: v.astimezone(paris) for k, v in WINDOW.items()}
    naive = {k: v.replace(tzinfo=None) for k, v in WINDOW.items()}
    assert metrics.overview_kpis(store, **aware)["requests"] == 1
    assert metrics.overview_kpis(store, **naive)["requests"] == 1


# --- by model and time series ---------------------------------------------------------------------------


def test_by_model_splits_and_marks_unpriced_models(store: Any) -> None:
    rows = ten_calls()
    rows += [
        llm(
            "m1",
            "m1",
            model="local-llama",
            provider="ollama",
            duration_ms=40.0,
            input_tokens=5,
            output_tokens=5,
            total_tokens=10,
            cost_usd=None,
        ),
        llm(
            "m2",
            "m2",
            model="local-llama",
            provider="ollama",
            duration_ms=60.0,
            input_tokens=5,
            output_tokens=5,
            total_tokens=10,
            cost_usd=None,
            status="error",
        ),
    ]
    insert(store, rows)
    df = metrics.by_model(store, **WINDOW).set_index("model")
    assert df.loc["gpt-4o", "requests"] == 10
    assert df.loc["gpt-4o", "errors"] == 2
    assert df.loc["gpt-4o", "cost_usd"] == pytest.approx(0.007)
    assert df.loc["gpt-4o", "latency_p50_ms"] == pytest.approx(550.0)
    assert df.loc["local-llama", "requests"] == 2
    assert df.loc["local-llama", "error_rate"] == pytest.approx(0.5)
    assert df.loc["local-llama", "latency_p50_ms"] == pytest.approx(50.0)
    assert df.loc["local-llama", "total_tokens"] == 20
    assert df.loc["local-llama", "unpriced_calls"] == 2
    assert math.isnan(df.loc["local-llama", "cost_usd"])  # "no price", not $0
    assert df.loc["local-llama", "provider"] == "ollama"
    assert list(df.index) == ["gpt-4o", "local-llama"]  # busiest first


def test_total_tokens_falls_back_to_input_plus_output(store: Any) -> None:
    insert(store, [llm("a", "1", input_tokens=7, output_tokens=3, total_tokens=0)])
    assert metrics.overview_kpis(store, **WINDOW)["total_tokens"] == 10


@pytest.mark.parametrize(
    ("span", "expected"),
    [
        (dt.timedelta(minutes=15), 15),
        (dt.timedelta(hours=1), 60),
        (dt.timedelta(hours=24), 1800),
        (dt.timedelta(days=7), 10800),
        (dt.timedelta(days=400), 604800),
    ],
)
def test_pick_bucket_seconds_aims_at_sixty_round_buckets(span: dt.timedelta, expected: int) -> None:
    assert metrics.pick_bucket_seconds(NOW - span, NOW) == expected
    assert (span.total_seconds() / expected) <= 60


def test_pick_bucket_seconds_beyond_the_largest_round_width() -> None:
    width = metrics.pick_bucket_seconds(NOW - dt.timedelta(days=7 * 120), NOW)
    assert width % 604800 == 0 and width >= 2 * 604800


def test_timeseries_per_bucket_and_model(store: Any) -> None:
    start = T0 - dt.timedelta(minutes=T0.minute % 10)  # a 10-minute boundary
    end = start + dt.timedelta(minutes=10)  # 600 s / 60 → 10 s buckets
    rows = [
        llm("a", "1", at=(start - T0).total_seconds() + 1, duration_ms=100.0, cost_usd=0.5),
        llm("b", "2", at=(start - T0).total_seconds() + 5, duration_ms=300.0, cost_usd=None),
        llm("c", "3", at=(start - T0).total_seconds() + 25, model="claude", status="error"),
        llm("d", "4", at=(start - T0).total_seconds() + 601),  # outside [start, end)
    ]
    insert(store, rows)
    df = metrics.timeseries(store, start=start, end=end)
    assert df.attrs["bucket_seconds"] == 10
    # filled: every model has all 60 buckets
    assert len(df) == 2 * 60
    assert df["bucket"].dt.tz is not None
    assert df["requests"].sum() == 3
    first = df[(df["model"] == "gpt-4o") & (df["bucket"] == pd.Timestamp(start))].iloc[0]
    assert first["requests"] == 2
    assert first["latency_p50_ms"] == pytest.approx(200.0)
    assert first["cost_usd"] == pytest.approx(0.5)
    assert first["unpriced_calls"] == 1
    claude = df[(df["model"] == "claude") & (df["requests"] > 0)]
    assert claude["bucket"].tolist() == [pd.Timestamp(start + dt.timedelta(seconds=20))]
    assert claude["errors"].tolist() == [1]
    empty = df[df["requests"] == 0]
    assert empty["latency_p95_ms"].isna().all()  # a quiet bucket has no latency, not 0 ms
    assert (empty["cost_usd"] == 0).all()

    sparse = metrics.timeseries(store, start=start, end=end, bucket=300, fill=False)
    assert sparse.attrs["bucket_seconds"] == 300
    assert sparse[["model", "requests"]].values.tolist() == [["claude", 1], ["gpt-4o", 2]]


def test_empty_results_keep_their_columns(store: Any) -> None:
    ts = metrics.timeseries(store, **WINDOW)
    assert len(ts) == 0
    assert {"bucket", "model", "requests", "latency_p95_ms", "cost_usd"} <= set(ts.columns)
    assert len(metrics.timeseries(store, **WINDOW, fill=False)) == 0
    bm = metrics.by_model(store, **WINDOW)
    assert len(bm) == 0 and {"model", "requests", "unpriced_calls"} <= set(bm.columns)
    traces = metrics.list_traces(store, **WINDOW)
    assert len(traces) == 0 and {"trace_id", "name", "cost_usd", "status"} <= set(traces.columns)
    spans = metrics.trace_spans(store, "nope")
    assert len(spans) == 0 and {"span_id", "input_messages", "offset_ms"} <= set(spans.columns)


# --- traces --------------------------------------------------------------------------------------------


def agent_trace(
    trace: str,
    *,
    at: float = 0.0,
    user: str = "alice",
    session: str = "sess-1",
    fail: bool = False,
    question: str = "What is the capital of France?",
) -> list[dict[str, Any]]:
    """chain → (tool, llm, llm): the shape an agent run produces."""
    common = {"trace_id": trace, "user_id": user, "session_id": session}
    return [
        llm(
            trace,
            f"{trace}-root",
            at=at,
            kind="chain",
            name="answer_question",
            model="",
            provider="",
            parent_span_id="",
            duration_ms=3000.0,
            input_text=question,
            status="error" if fail else "ok",
            **common,
        ),
        llm(
            trace,
            f"{trace}-tool",
            at=at + 0.1,
            kind="tool",
            name="search_docs",
            model="",
            provider="",
            parent_span_id=f"{trace}-root",
            duration_ms=200.0,
            **common,
        ),
        llm(
            trace,
            f"{trace}-llm1",
            at=at + 0.4,
            parent_span_id=f"{trace}-root",
            duration_ms=1000.0,
            input_tokens=100,
            output_tokens=20,
            total_tokens=120,
            cost_usd=0.002,
            input_text=question,
            output_text="Let me look that up.",
            **common,
        ),
        llm(
            trace,
            f"{trace}-llm2",
            at=at + 1.5,
            parent_span_id=f"{trace}-root",
            duration_ms=1400.0,
            model="gpt-4o-mini",
            input_tokens=200,
            output_tokens=30,
            total_tokens=230,
            cost_usd=None,
            output_text="Paris is the capital.",
            status="error" if fail else "ok",
            error_message="upstream 500" if fail else "",
            **common,
        ),
    ]


def test_list_traces_aggregates_one_row_per_trace(store: Any) -> None:
    insert(store, agent_trace("tr-ok", at=0) + agent_trace("tr-bad", at=60, user="bob", fail=True))
    df = metrics.list_traces(store, **WINDOW)
    assert df["trace_id"].tolist() == ["tr-bad", "tr-ok"]  # newest first
    ok = df.set_index("trace_id").loc["tr-ok"]
    assert ok["name"] == "answer_question"
    assert ok["service"] == "chat-api"
    assert ok["spans"] == 4
    assert ok["llm_calls"] == 2
    assert ok["input_tokens"] == 300
    assert ok["output_tokens"] == 50
    assert ok["total_tokens"] == 350
    assert ok["cost_usd"] == pytest.approx(0.002)
    assert ok["unpriced_calls"] == 1
    assert ok["status"] == "ok"
    assert ok["errors"] == 0
    assert ok["user_id"] == "alice"
    assert ok["session_id"] == "sess-1"
    assert ok["models"] == "gpt-4o, gpt-4o-mini"
    assert ok["duration_ms"] == pytest.approx(3000.0)  # root start → root end
    assert ok["start_time"] == pd.Timestamp(T0)
    bad = df.set_index("trace_id").loc["tr-bad"]
    assert bad["status"] == "error"
    assert bad["errors"] == 2


def test_list_traces_root_falls_back_to_earliest_span(store: Any) -> None:
    # The root never arrived: the earliest span names the trace.
    insert(store, agent_trace("partial")[1:])
    assert metrics.list_traces(store, **WINDOW)["name"].tolist() == ["search_docs"]


def test_list_traces_cost_is_nan_when_nothing_priced(store: Any) -> None:
    insert(store, [llm("x", "1", cost_usd=None)])
    assert math.isnan(metrics.list_traces(store, **WINDOW)["cost_usd"].iloc[0])


def test_list_traces_filters(store: Any) -> None:
    insert(
        store,
        agent_trace("t-alice", at=0, user="alice", session="s-a")
        + agent_trace("t-bob", at=10, user="bob", session="s-b", fail=True, question="Weather in OSLO?")
        + [
            llm(
                "t-claude",
                "c1",
                at=20,
                model="claude-3-haiku",
                service="batch-job",
                input_text="it's a 'quoted' text; DROP TABLE spans",
            )
        ],
    )

    def ids(**kw: Any) -> list[str]:
        return sorted(metrics.list_traces(store, **WINDOW, **kw)["trace_id"])

    assert ids() == ["t-alice", "t-bob", "t-claude"]
    assert ids(user_id="bob") == ["t-bob"]
    assert ids(session_id="s-a") == ["t-alice"]
    assert ids(status="error") == ["t-bob"]
    assert ids(status="ok") == ["t-alice", "t-claude"]
    assert ids(search="capital of france") == ["t-alice"]  # case-insensitive, input text
    assert ids(search="PARIS IS") == ["t-alice", "t-bob"]  # output text
    assert ids(search="oslo") == ["t-bob"]
    assert ids(search="'quoted' text; DROP") == ["t-claude"]  # bound, not spliced into SQL
    assert ids(model="claude-3-haiku") == ["t-claude"]
    assert ids(model="gpt-4o-mini") == ["t-alice", "t-bob"]
    assert ids(service="batch-job") == ["t-claude"]
    assert ids(user_id="alice", status="error") == []
    assert ids(user_id="nobody") == []
    assert len(metrics.list_traces(store, **WINDOW, limit=2)) == 2
    assert metrics.list_traces(store, **WINDOW, limit=1)["trace_id"].tolist() == ["t-claude"]
    with pytest.raises(ValueError):
        metrics.list_traces(store, **WINDOW, status="broken")  # type: ignore[arg-type]


def test_list_traces_shows_whole_trace_across_the_window_edge(store: Any) -> None:
    rows = agent_trace("edge", at=0)
    rows[0]["start_time"] = WINDOW["start"] - dt.timedelta(seconds=5)  # root began before the window
    insert(store, rows)
    df = metrics.list_traces(store, **WINDOW)
    assert df["spans"].tolist() == [4]
    assert df["name"].tolist() == ["answer_question"]


def test_trace_spans_ordered_by_start(store: Any) -> None:
    rows = agent_trace("tr", at=0)
    insert(store, list(reversed(rows)) + agent_trace("other", at=5))
    df = metrics.trace_spans(store, "tr")
    assert df["span_id"].tolist() == ["tr-root", "tr-tool", "tr-llm1", "tr-llm2"]
    assert df["offset_ms"].tolist() == pytest.approx([0.0, 100.0, 400.0, 1500.0])
    assert df["parent_span_id"].tolist() == ["", "tr-root", "tr-root", "tr-root"]
    assert df.loc[3, "output_text"] == "Paris is the capital."
    assert df["start_time"].dt.tz is not None
    assert len(metrics.trace_spans(store, "tr", project="other")) == 0
    assert len(metrics.trace_spans(store, "missing")) == 0


def test_trace_spans_dedups_redelivery(store: Any) -> None:
    rows = agent_trace("tr", at=0)
    insert(store, rows)
    insert(store, rows)
    assert len(metrics.trace_spans(store, "tr")) == 4


def test_filter_options(store: Any) -> None:
    insert(
        store,
        [
            *agent_trace("a", user="alice", session="s1"),
            llm("b", "1", service="batch-job", model="claude", user_id="bob", session_id="s2"),
            llm("c", "2", project="other", service="elsewhere", model="mistral"),
        ],
    )
    opts = metrics.filter_options(store, project="default")
    assert opts["projects"] == ["default", "other"]
    assert opts["services"] == ["batch-job", "chat-api"]
    assert opts["models"] == ["claude", "gpt-4o", "gpt-4o-mini"]
    assert opts["users"] == ["alice", "bob"]
    assert opts["sessions"] == ["s1", "s2"]
    assert metrics.filter_options(store)["models"] == ["claude", "gpt-4o", "gpt-4o-mini", "mistral"]
    assert metrics.filter_options(store, ids=False)["users"] == []
    later = metrics.filter_options(store, start=NOW + dt.timedelta(minutes=5))
    assert later["services"] == [] and later["projects"] == ["default", "other"]


def test_filter_options_empty_store(store: Any) -> None:
    assert metrics.filter_options(store) == {
        "projects": [],
        "services": [],
        "models": [],
        "users": [],
        "sessions": [],
    }
