"""The Streamlit dashboard, run headless with ``AppTest`` against a real chDB store.

The app is started from its entry point (``dashboards/app.py``, which calls ``st.navigation``); the
Traces page is reached with ``AppTest.switch_page`` after a first run, as AppTest requires for
navigation-registered pages. The test store is handed over exactly as ``llm-monitor up`` does it,
through :func:`monitor.store.set_shared_store`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from dashboards import APP_PATH
from monitor.store import set_shared_store
from monitor.store.schema import SPAN_COLUMNS, span_row

EMPTY_STATE = "No spans yet — point an app at http://127.0.0.1:4318 or run `llm-monitor demo`."


def parts(role: str, *texts: str, **extra: Any) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": t} for t in texts], **extra}


def span(
    trace: str, span_id: str, parent: str, name: str, kind: str, at: dt.datetime, ms: float, **kw: Any
) -> dict[str, Any]:
    row = {
        "project": "default",
        "service": "support-bot",
        "trace_id": trace,
        "span_id": span_id,
        "parent_span_id": parent,
        "name": name,
        "kind": kind,
        "start_time": at,
        "end_time": at + dt.timedelta(milliseconds=ms),
        "duration_ms": ms,
        "status": "ok",
        "convention": "otel-genai",
        "ingested_at": dt.datetime.now(dt.timezone.utc),
    }
    row.update(kw)
    return row


def realistic_rows() -> list[dict[str, Any]]:
    """Four traces: agent with a tool, RAG with an embedding, a failed call, and one 3 hours old."""
    now = dt.datetime.now(dt.timezone.utc)  # at call time: the app's windows end at the real "now"
    t1, t2, t3 = (now - dt.timedelta(minutes=m) for m in (5, 4, 3))
    old = now - dt.timedelta(hours=3)
    user_q = "Where is my order 42?"
    answer = "Your order 42 has shipped."
    rag_q = "What does the refund policy say?"
    return [
        # 1. chain → tool → llm (OTel parts format, streamed)
        span("t-support", "a1", "", "handle_ticket", "chain", t1, 1500, user_id="alice", session_id="s-1"),
        span(
            "t-support",
            "a2",
            "a1",
            "lookup_order",
            "tool",
            t1 + dt.timedelta(milliseconds=50),
            120,
            input_text='{"order_id": 42}',
            output_text='{"status": "shipped"}',
            user_id="alice",
            session_id="s-1",
        ),
        span(
            "t-support",
            "a3",
            "a1",
            "chat gpt-4o",
            "llm",
            t1 + dt.timedelta(milliseconds=200),
            900,
            provider="openai",
            model="gpt-4o",
            request_model="gpt-4o",
            response_model="gpt-4o-2024-08-06",
            input_messages=json.dumps(
                [parts("system", "You are a helpful support agent."), parts("user", user_q)]
            ),
            output_messages=json.dumps([parts("assistant", answer, finish_reason="stop")]),
            input_text=f"You are a helpful support agent.\n{user_q}",
            output_text=answer,
            input_tokens=50,
            output_tokens=12,
            total_tokens=62,
            cost_usd=0.0004,
            ttft_ms=150.0,
            stream=True,
            finish_reason="stop",
            user_id="alice",
            session_id="s-1",
            attributes={"gen_ai.operation.name": "chat", "llm.custom": "kept-attribute"},
        ),
        # 2. chain → retriever → embedding → llm (collector's normalised {role, content, parts})
        span("t-rag", "b1", "", "rag_query", "chain", t2, 2000, user_id="bob", session_id="s-2"),
        span(
            "t-rag",
            "b2",
            "b1",
            "vector_search",
            "retriever",
            t2 + dt.timedelta(milliseconds=10),
            300,
            user_id="bob",
            session_id="s-2",
        ),
        span(
            "t-rag",
            "b3",
            "b2",
            "embeddings",
            "embedding",
            t2 + dt.timedelta(milliseconds=20),
            100,
            provider="openai",
            model="text-embedding-3-small",
            input_tokens=8,
            total_tokens=8,
            cost_usd=0.0001,
            user_id="bob",
            session_id="s-2",
        ),
        span(
            "t-rag",
            "b4",
            "b1",
            "chat claude",
            "llm",
            t2 + dt.timedelta(milliseconds=400),
            1300,
            provider="anthropic",
            model="claude-3-5-sonnet",
            input_messages=json.dumps(
                [{"role": "user", "content": rag_q, "parts": [{"type": "text", "content": rag_q}]}]
            ),
            output_messages=json.dumps(
                [
                    {
                        "role": "assistant",
                        "content": "Refunds within 30 days.",
                        "parts": [
                            {
                                "type": "tool_call",
                                "name": "search_policy",
                                "id": "c1",
                                "arguments": {"q": "refund window"},
                            },
                            {"type": "text", "content": "Refunds within 30 days."},
                        ],
                    }
                ]
            ),
            input_text=rag_q,
            output_text="Refunds within 30 days.",
            input_tokens=200,
            output_tokens=40,
            total_tokens=240,
            cost_usd=0.003,
            user_id="bob",
            session_id="s-2",
        ),
        # 3. a failed, unpriced call
        span("t-fail", "c1", "", "summarize", "chain", t3, 600, status="error", user_id="carol"),
        span(
            "t-fail",
            "c2",
            "c1",
            "chat gpt-4o-mini",
            "llm",
            t3 + dt.timedelta(milliseconds=5),
            500,
            provider="openai",
            model="gpt-4o-mini",
            status="error",
            error_type="RateLimitError",
            error_message="rate limit exceeded",
            input_text="Summarize the ticket history.",
            input_tokens=30,
            total_tokens=30,
            cost_usd=None,
            user_id="carol",
        ),
        # 4. outside the last hour
        span(
            "t-old",
            "d1",
            "",
            "nightly_job",
            "llm",
            old,
            400,
            provider="openai",
            model="gpt-4o",
            input_tokens=10,
            output_tokens=10,
            total_tokens=20,
            cost_usd=0.0002,
        ),
    ]


def insert(store: Any, rows: list[dict[str, Any]]) -> None:
    cols = list(SPAN_COLUMNS)
    store.insert("spans", [[span_row(r)[c] for c in cols] for r in rows], cols)


@pytest.fixture
def shared(store: Any) -> Iterator[Any]:
    set_shared_store(store)
    try:
        yield store
    finally:
        set_shared_store(None)


@pytest.fixture
def steady_state_navigation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every AppTest run start at ``app.py``, as every run after the first does on a real server.

    ``dashboards/pages/`` is also the folder name of Streamlit's legacy multipage mode. A server decides
    once per process: its first run checks for the folder, and the first ``st.navigation`` call turns the
    legacy mode off for good. AppTest re-checks before *every* run, so from the second run on it would
    execute the page file alone, skipping the entry point and its sidebar. Re-applying what
    ``st.navigation`` does after that check restores the server's steady state.
    """
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self: PagesManager, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


@pytest.fixture
def app(shared: Any, steady_state_navigation: None) -> AppTest:
    return AppTest.from_file(str(APP_PATH), default_timeout=60)


def metrics_by_label(at: AppTest) -> dict[str, tuple[str, str]]:
    return {m.label: (m.value, m.proto.delta) for m in at.metric}


def frame(at: AppTest, column: str) -> Any:
    """The displayed table that has ``column`` (plain st.dataframe elements carry no key in AppTest)."""
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert len(found) == 1, [list(d.value.columns) for d in at.dataframe]
    return found[0]


def chart_y(proto: Any) -> str:
    """The field a chart plots on y (line charts wrap their encoding in a layer)."""
    spec = json.loads(proto.spec)
    encoding = spec["encoding"] if "encoding" in spec else spec["layer"][0]["encoding"]
    return encoding["y"]["field"]


def chart_data(proto: Any) -> Any:
    """The DataFrame behind an st.*_chart element (its one Arrow dataset)."""
    from streamlit import dataframe_util

    return dataframe_util.convert_arrow_bytes_to_pandas_df(proto.datasets[0].data.data)


def all_markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def open_traces(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    at.switch_page("pages/traces.py").run()
    assert not at.exception, at.exception
    return at


# --- empty store ---------------------------------------------------------------------------------------


def test_empty_store_shows_the_hint_on_both_pages(app: AppTest) -> None:
    app.run()
    assert not app.exception
    assert [i.value for i in app.info] == [EMPTY_STATE]
    assert len(app.metric) == 0
    open_traces(app)
    assert [i.value for i in app.info] == [EMPTY_STATE]


# --- overview ------------------------------------------------------------------------------------------


def test_overview_kpis_charts_and_model_table(app: AppTest, shared: Any) -> None:
    insert(shared, realistic_rows())
    app.run()
    assert not app.exception, app.exception
    assert app.title[0].value == "Overview"
    assert metrics_by_label(app) == {
        "Requests": ("4", ""),  # 3 LLM calls + 1 embedding in the last hour
        "Error rate": ("25.0%", "1 error"),
        "Latency p50": ("700 ms", ""),  # 100, 500, 900, 1300
        "Latency p95": ("1.24 s", ""),
        "TTFT p50": ("150 ms", "1 streamed call"),
        "Tokens": ("340", "288 in · 52 out"),
        "Cost": ("$0.0035", "1 unpriced call"),
        "Traces": ("3", "9 spans"),
    }
    table = frame(app, "unpriced_calls").set_index("model")
    assert sorted(table.index) == ["claude-3-5-sonnet", "gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]
    assert table.loc["gpt-4o", "total_tokens"] == 62
    assert table.loc["gpt-4o-mini", "errors"] == 1
    assert table.loc["gpt-4o-mini", "unpriced_calls"] == 1
    assert table.loc["claude-3-5-sonnet", "cost_usd"] == pytest.approx(0.003)
    charts = {chart_y(c.proto): c.proto for c in app.get("vega_lite_chart")}
    assert sorted(charts) == ["cost_usd", "latency_p95_ms", "requests", "total_tokens"]
    requests = chart_data(charts["requests"])
    assert requests["requests"].sum() == 4
    assert set(requests["model"]) == {"claude-3-5-sonnet", "gpt-4o", "gpt-4o-mini", "text-embedding-3-small"}


def test_overview_follows_sidebar_filters(app: AppTest, shared: Any) -> None:
    insert(shared, realistic_rows())
    app.run()
    app.sidebar.multiselect(key="f_models").select("gpt-4o").run()
    assert not app.exception, app.exception
    assert metrics_by_label(app)["Requests"][0] == "1"
    assert metrics_by_label(app)["Cost"] == ("$0.0004", "all calls priced")
    app.sidebar.multiselect(key="f_models").unselect("gpt-4o").run()
    app.sidebar.selectbox(key="f_range").select("Last 24 hours").run()
    assert not app.exception, app.exception
    assert metrics_by_label(app)["Requests"][0] == "5"  # the 3-hour-old call is in range now
    app.sidebar.selectbox(key="f_range").select("Last 15 minutes").run()
    assert metrics_by_label(app)["Requests"][0] == "4"
    app.sidebar.multiselect(key="f_services").select("support-bot").run()
    assert metrics_by_label(app)["Requests"][0] == "4"


def test_overview_no_calls_in_range(app: AppTest, shared: Any) -> None:
    insert(shared, [r for r in realistic_rows() if r["trace_id"] == "t-old"])
    app.run()
    assert not app.exception, app.exception
    assert metrics_by_label(app)["Requests"][0] == "0"
    assert metrics_by_label(app)["Latency p50"][0] == "—"
    assert any("No model calls in this time range" in i.value for i in app.info)


def test_custom_range_and_auto_refresh_render(app: AppTest, shared: Any) -> None:
    insert(shared, realistic_rows())
    app.run()
    app.sidebar.selectbox(key="f_range").select("Custom").run()
    assert not app.exception, app.exception
    assert metrics_by_label(app)["Requests"][0] == "5"  # yesterday and today, whole UTC days
    app.sidebar.toggle(key="f_refresh").set_value(True).run()
    assert not app.exception, app.exception
    assert metrics_by_label(app)["Requests"][0] == "5"


# --- traces --------------------------------------------------------------------------------------------


def test_trace_list_shows_recent_traces(app: AppTest, shared: Any) -> None:
    insert(shared, realistic_rows())
    open_traces(app)
    assert app.title[0].value == "Traces"
    listing = app.dataframe(key="trace_table").value
    assert listing["name"].tolist() == ["summarize", "rag_query", "handle_ticket"]  # newest first
    row = listing.set_index("trace_id")
    assert row.loc["t-fail", "status"] == "❌ error"
    assert row.loc["t-support", "status"] == "✅ ok"
    assert row.loc["t-support", "spans"] == 3
    assert row.loc["t-rag", "llm_calls"] == 2
    assert row.loc["t-rag", "total_tokens"] == 248
    assert row.loc["t-support", "user_id"] == "alice"


@pytest.mark.parametrize(
    ("widget", "value", "expected"),
    [
        ("search", "ORDER 42", ["handle_ticket"]),
        ("search", "refunds within", ["rag_query"]),
        ("session", "s-2", ["rag_query"]),
        ("user", "alice", ["handle_ticket"]),
        ("status", "Error", ["summarize"]),
        ("status", "OK", ["rag_query", "handle_ticket"]),
    ],
)
def test_trace_list_filters(app: AppTest, shared: Any, widget: str, value: str, expected: list[str]) -> None:
    insert(shared, realistic_rows())
    open_traces(app)
    if widget == "search":
        app.text_input(key="t_search").input(value).run()
    elif widget == "session":
        app.text_input(key="t_session").input(value).run()
    elif widget == "user":
        app.selectbox(key="t_user").select(value).run()
    else:
        app.radio(key="t_status").set_value(value).run()
    assert not app.exception, app.exception
    assert app.dataframe(key="trace_table").value["name"].tolist() == expected


def test_trace_list_empty_after_filtering(app: AppTest, shared: Any) -> None:
    insert(shared, realistic_rows())
    open_traces(app)
    app.text_input(key="t_search").input("no such text anywhere").run()
    assert not app.exception, app.exception
    assert any("No traces match" in i.value for i in app.info)


def test_trace_detail_from_query_param_renders_tree_and_chat(app: AppTest, shared: Any) -> None:
    insert(shared, realistic_rows())
    open_traces(app)
    app.query_params["trace_id"] = "t-support"
    app.run()
    assert not app.exception, app.exception
    assert app.subheader[0].value.endswith("handle_ticket")
    tree = frame(app, "span")
    assert [s.strip() for s in tree["span"]] == ["⛓️ handle_ticket", "🛠️ lookup_order", "🤖 chat gpt-4o"]
    assert tree["span"].tolist()[1].startswith("\u2003")  # children are indented
    assert tree["tokens"].tolist() == [0, 0, 62]
    assert [c.name for c in app.chat_message] == ["system", "user", "assistant"]
    bubbles = [" ".join(m.value for m in c.markdown) for c in app.chat_message]
    assert bubbles == [
        "You are a helpful support agent.",
        "Where is my order 42?",
        "Your order 42 has shipped.",
    ]
    codes = [c.value for c in app.code]
    assert '{"order_id": 42}' in codes and '{"status": "shipped"}' in codes  # the tool's input/output
    assert [e.label for e in app.expander] == ["Attributes"] * 3
    attrs = [j.value for j in app.json]
    assert any("kept-attribute" in a and "gpt-4o-2024-08-06" in a for a in attrs)
    detail = metrics_by_label(app)
    assert detail["Spans"][0] == "3"
    assert detail["LLM calls"][0] == "1"
    assert detail["Cost"][0] == "$0.0004"
    assert detail["Duration"][0] == "1.50 s"


def test_trace_detail_normalised_messages_and_tool_calls(app: AppTest, shared: Any) -> None:
    insert(shared, realistic_rows())
    open_traces(app)
    app.query_params["trace_id"] = "t-rag"
    app.run()
    assert not app.exception, app.exception
    assert [c.name for c in app.chat_message] == ["user", "assistant"]
    assistant = app.chat_message[1]
    assert [m.value for m in assistant.markdown] == ["Refunds within 30 days."]  # parts, not content twice
    assert any("refund window" in c.value for c in assistant.code)
    assert any("search_policy" in c.value for c in assistant.caption)
    tree = frame(app, "span")
    assert [s.strip() for s in tree["span"]] == [
        "⛓️ rag_query",
        "🔎 vector_search",
        "🧬 embeddings",
        "🤖 chat claude",
    ]
    depth = [len(s) - len(s.lstrip("\u2003")) for s in tree["span"]]
    assert depth == [0, 1, 2, 1]


def test_trace_detail_highlights_errors(app: AppTest, shared: Any) -> None:
    insert(shared, realistic_rows())
    open_traces(app)
    app.query_params["trace_id"] = "t-fail"
    app.run()
    assert not app.exception, app.exception
    errors = [e.value for e in app.error]
    assert "2 spans failed in this trace." in errors
    assert "RateLimitError: rate limit exceeded" in errors
    assert "error (no message)" in errors  # the chain span failed without a message
    assert any(":red[**error**]" in m.value and "chat gpt-4o-mini" in m.value for m in app.markdown)
    assert frame(app, "span")["status"].tolist() == ["error", "error"]
    # no output was captured: the prompt still shows, from input_text
    assert [c.name for c in app.chat_message] == ["user"]
    assert app.chat_message[0].markdown[0].value == "Summarize the ticket history."
    assert metrics_by_label(app)["Cost"] == ("—", "1 unpriced call")


def test_selecting_a_row_opens_the_trace_and_unselecting_closes_it(app: AppTest, shared: Any) -> None:
    insert(shared, realistic_rows())
    open_traces(app)
    app.session_state["trace_table"] = {"selection": {"rows": [2], "columns": [], "cells": []}}
    app.run()
    assert not app.exception, app.exception
    assert app.query_params.get("trace_id") == "t-support"
    assert "Your order 42 has shipped." in all_markdown(app)
    app.session_state["trace_table"] = {"selection": {"rows": [], "columns": [], "cells": []}}
    app.run()
    assert "trace_id" not in app.query_params
    assert len(app.chat_message) == 0


def test_unknown_trace_id_warns(app: AppTest, shared: Any) -> None:
    insert(shared, realistic_rows())
    open_traces(app)
    app.query_params["trace_id"] = "nope"
    app.run()
    assert not app.exception, app.exception
    assert [w.value for w in app.warning] == ["Trace `nope` not found in the store."]


# --- store problems ------------------------------------------------------------------------------------


def test_unopenable_store_is_one_line_not_a_traceback(
    store: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This process already hosts the test engine, so a second chDB path is refused: the same
    # StoreInUseError a dashboard gets when `llm-monitor up` holds the store.
    set_shared_store(None)
    monkeypatch.setenv("LLM_MONITOR_STORE", f"chdb://{tmp_path}/elsewhere")
    monkeypatch.delenv("LLM_MONITOR_CONFIG", raising=False)
    at = AppTest.from_file(str(APP_PATH), default_timeout=60).run()
    assert not at.exception, at.exception
    assert len(at.error) == 1
    message = at.error[0].value
    assert "chDB allows one per process" in message
    assert "\n" not in message and "Traceback" not in message
    assert len(at.metric) == 0


def test_deep_link_on_a_fresh_process_renders_the_page_alone(shared: Any) -> None:
    """Legacy-folder mode (a fresh server's first run; every AppTest run here) runs the page file by
    itself: no sidebar, default filters. The page must still work, a linked trace included."""
    insert(shared, realistic_rows())
    at = AppTest.from_file(str(APP_PATH), default_timeout=60).run()
    at.switch_page("pages/traces.py")
    at.query_params["trace_id"] = "t-support"
    at.run()
    assert not at.exception, at.exception
    assert frame(at, "trace_id")["name"].tolist() == ["summarize", "rag_query", "handle_ticket"]
    assert "Your order 42 has shipped." in all_markdown(at)


# --- quality ---------------------------------------------------------------------------------------------


def test_quality_page_shows_scores_with_their_model_acceptance_and_drift(app: AppTest, shared: Any) -> None:
    import datetime as dt

    from monitor.quality import drift_report, score_summary

    rows = realistic_rows()
    insert(shared, rows)
    llm = [r for r in rows if r.get("kind") == "llm"][:4]
    assert len(llm) == 4
    cols = [
        "project",
        "trace_id",
        "span_id",
        "span_start_time",
        "analyzer",
        "metric",
        "value",
        "label",
        "analyzer_version",
    ]
    scores = [
        [r.get("project", "default"), r["trace_id"], r["span_id"], r["start_time"], "toxicity", "output", v, lab, "profanity-check/1.9.1"]
        for r, v, lab in zip(llm, (0.9, 0.1, 0.7, 0.2), ("toxic", "", "toxic", ""), strict=True)
    ] + [[llm[0].get("project", "default"), llm[0]["trace_id"], llm[0]["span_id"], llm[0]["start_time"], "toxicity",
          "output", 0.95, "toxic", "detoxify/original:abcd1234"]]  # fmt: skip
    shared.insert("scores", scores[:4], cols)
    now = dt.datetime.now(dt.timezone.utc)
    start, end = now - dt.timedelta(days=30), now + dt.timedelta(hours=1)
    summary = score_summary(shared, start=start, end=end)
    got = {(r.model, r.spans, r.flagged) for r in summary.itertuples()}
    assert got == {("profanity-check/1.9.1", 4, 2)}
    assert summary.loc[0, "rate"] == 0.5 and abs(summary.loc[0, "mean"] - 0.475) < 1e-9
    w0 = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
    shared.insert(
        "drift",
        [["default", w0, w0 + dt.timedelta(hours=1), w0 - dt.timedelta(hours=1), w0, "all", "latency_ms", "ks",
          0.4, 0.1, True, 500, 480],
         ["default", w0, w0 + dt.timedelta(hours=1), w0 - dt.timedelta(hours=1), w0, "all", "model", "psi",
          0.01, 0.2, False, 500, 480]],
        ["project", "window_start", "window_end", "baseline_start", "baseline_end", "segment", "feature", "method",
         "score", "threshold", "drifted", "sample_size", "baseline_size"],
    )  # fmt: skip
    report = drift_report(shared, start=w0 - dt.timedelta(hours=2), end=now)
    assert list(report["feature"]) == ["latency_ms", "model"]  # drifted rows first
    assert list(
        drift_report(shared, start=w0 - dt.timedelta(hours=2), end=now, drifted_only=True)["method"]
    ) == ["ks"]

    app.run()
    assert not app.exception, app.exception
    app.selectbox(key="f_range").set_value("Last 7 days").run()
    app.switch_page("pages/quality.py").run()
    assert not app.exception, app.exception
    table = (
        frame(app, "scored by")
        if any("scored by" in d.value.columns for d in app.dataframe)
        else frame(app, "model")
    )
    assert list(table["analyzer"]) == ["toxicity"] and list(table["side"]) == ["model output"]
    assert "**1** of 2 distance checks above their threshold" in all_markdown(app)
