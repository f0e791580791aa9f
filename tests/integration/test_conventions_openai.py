"""Real third-party instrumentations → real OTLP/HTTP exporters → a real collector → the chDB store.

Each test instruments the real ``openai`` SDK with one library, drives it against the deterministic fake
OpenAI server (plain call, streamed call, failing call), exports spans (and log records) with the OTel
SDK's own OTLP/HTTP exporters to a CollectorServer on loopback, then reads the rows back with FINAL (a
span re-emitted with log content or a late user id replaces its earlier row) and compares them with what
the app itself observed in the responses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import openai
import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation import _semconv
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from collectors.server import CollectorServer
from monitor.demo.fake_openai import FakeOpenAIServer

MODEL = "gpt-4o-mini"
SERVED = "gpt-4o-mini-2024-07-18"
SYSTEM = "Be terse."
QUESTION = "What is the capital of France?"
STREAMED = "Tell me a story"


class Run:
    """What the app saw: usage and text of each call, to compare the stored rows with."""

    def __init__(self) -> None:
        self.usage: dict[str, Any] = {}
        self.text: dict[str, str] = {}


def workload(base_url: str) -> Run:
    run = Run()
    client = openai.OpenAI(base_url=base_url, api_key="k", max_retries=0)
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        temperature=0.3,
        max_tokens=64,
    )
    run.usage["plain"], run.text["plain"] = r.usage, r.choices[0].message.content or ""
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": STREAMED + " [[slow:30]]"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage:
            run.usage["stream"] = chunk.usage
    run.text["stream"] = "".join(pieces)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "boom [[error:500]]"}]
        )
    return run


@contextmanager
def collector(settings: Any, store: Any, *, late_logs: bool = False) -> Iterator[tuple[Any, Any, Callable]]:
    """A collector plus fresh providers exporting to it; yields (tracer_provider, logger_provider, rows).

    ``late_logs`` batches log records until the end, so they reach the collector after their spans.
    """
    srv = CollectorServer(settings, store)
    srv.start()
    tp = TracerProvider(resource=Resource.create({"service.name": "conv-app"}))
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{srv.url}/v1/traces")))
    lp = LoggerProvider(resource=Resource.create({"service.name": "conv-app"}))
    log_exporter = OTLPLogExporter(endpoint=f"{srv.url}/v1/logs")
    if late_logs:
        lp.add_log_record_processor(BatchLogRecordProcessor(log_exporter, schedule_delay_millis=60_000))
    else:
        lp.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))

    def rows() -> list[dict[str, Any]]:
        tp.shutdown()  # spans first …
        lp.shutdown()  # … then (late mode) the logs
        assert srv.stop(10)
        return store.rows("SELECT * FROM spans FINAL ORDER BY start_time")

    try:
        yield tp, lp, rows
    finally:
        srv.stop(5)


def by_kind(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(plain, streamed, failed) chat rows in call order."""
    chats = [r for r in rows if r["kind"] == "llm"]
    assert len(chats) == 3, [(r["name"], r["kind"]) for r in rows]
    return chats[0], chats[1], chats[2]


def assert_usage(row: dict[str, Any], usage: Any) -> None:
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.total_tokens,
    )


# gpt-4o-mini list price per 1M tokens (collectors/prices.json), the fake's served snapshot resolves to it
IN_PER_M, OUT_PER_M = 0.15, 0.60


def assert_cost(row: dict[str, Any], usage: Any) -> None:
    expected = (usage.prompt_tokens * IN_PER_M + usage.completion_tokens * OUT_PER_M) / 1e6
    assert row["cost_usd"] == pytest.approx(expected, rel=1e-9) and row["cost_usd"] > 0
    assert row["cost_source"] == "price_table"


def assert_common(plain: dict, streamed: dict, failed: dict, run: Run, convention: str) -> None:
    for r in (plain, streamed, failed):
        assert r["convention"] == convention
        assert r["provider"] == "openai"
        assert r["request_model"] == MODEL
        assert r["service"] == "conv-app"
    assert (plain["model"], plain["response_model"]) == (SERVED, SERVED)
    assert_usage(plain, run.usage["plain"])
    assert_usage(streamed, run.usage["stream"])
    assert_cost(plain, run.usage["plain"])
    assert_cost(streamed, run.usage["stream"])
    # a failed call reports no usage: not billed, so priced at 0 rather than left unknown
    assert (failed["input_tokens"], failed["cost_usd"]) == (0, 0.0)
    assert plain["output_text"] == run.text["plain"]
    assert streamed["output_text"] == run.text["stream"]
    assert plain["finish_reason"] == "stop"
    assert (plain["status"], failed["status"]) != ("error", "ok")
    assert failed["status"] == "error"
    assert "500" in failed["error_message"]
    assert failed["output_text"] == ""


@pytest.fixture(autouse=True)
def restore_openai() -> Iterator[None]:
    """Put back every attribute of every ``openai.resources`` class after the test.

    Third-party instrumentors do not all restore what they patched on ``uninstrument()`` (OpenLLMetry
    0.62.4 leaves its stream wrapper in place), which would leak into the tests that run after these.
    """
    import importlib
    import inspect
    import pkgutil

    import openai.resources

    classes = []
    for mod in pkgutil.walk_packages(openai.resources.__path__, "openai.resources."):
        module = importlib.import_module(mod.name)
        classes += [
            c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__
        ]
    saved = {c: dict(vars(c)) for c in classes}
    yield
    for c, attrs in saved.items():
        for name in set(vars(c)) - set(attrs):
            delattr(c, name)
        for name, value in attrs.items():
            if vars(c).get(name) is not value:
                setattr(c, name, value)


@pytest.fixture
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.mark.parametrize("late_logs", [False, True], ids=["logs-first", "spans-first"])
def test_official_openai_v2_default_mode_content_in_log_records(
    settings, store, fake, monkeypatch, late_logs
):
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    with collector(settings, store, late_logs=late_logs) as (tp, lp, rows):
        inst = OpenAIInstrumentor()
        inst.instrument(tracer_provider=tp, logger_provider=lp)
        try:
            run = workload(fake.base_url)
        finally:
            inst.uninstrument()
        got = rows()
    plain, streamed, failed = by_kind(got)
    assert_common(plain, streamed, failed, run, "otel-genai")
    assert plain["name"] == f"chat {MODEL}"
    assert (plain["temperature"], plain["max_tokens"]) == (0.3, 64)
    assert plain["response_id"] == "chatcmpl-fake-1"
    # content came only in log records (gen_ai.system/user.message + gen_ai.choice), joined by span id
    assert plain["input_text"] == f"{SYSTEM}\n\n{QUESTION}"
    assert '"role":"system"' in plain["input_messages"]
    assert streamed["input_text"] == STREAMED + " [[slow:30]]"
    assert failed["input_text"] == "boom [[error:500]]"
    assert failed["error_type"] == "InternalServerError"
    assert plain["attributes"].get("gen_ai.system") is None  # used as the provider


def test_official_openai_v2_latest_experimental_mode(settings, store, fake, monkeypatch):
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_AND_EVENT")
    stability = _semconv._OpenTelemetrySemanticConventionStability
    monkeypatch.setattr(stability, "_initialized", False)  # the opt-in is read once per process
    monkeypatch.setattr(stability, "_OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING", {})
    with collector(settings, store) as (tp, lp, rows):
        inst = OpenAIInstrumentor()
        inst.instrument(tracer_provider=tp, logger_provider=lp)
        try:
            run = workload(fake.base_url)
        finally:
            inst.uninstrument()
        got = rows()
    plain, streamed, failed = by_kind(got)
    assert_common(plain, streamed, failed, run, "otel-genai")
    assert plain["input_text"] == f"{SYSTEM}\n\n{QUESTION}"
    assert "gen_ai.input.messages" not in plain["attributes"]
    assert failed["error_type"] == "InternalServerError"


def test_openllmetry_current(settings, store, fake):
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    with collector(settings, store) as (tp, _lp, rows):
        inst = OpenAIInstrumentor()
        inst.instrument(tracer_provider=tp)
        try:
            run = workload(fake.base_url)
        finally:
            inst.uninstrument()
        got = rows()
    plain, streamed, failed = by_kind(got)
    assert_common(plain, streamed, failed, run, "openllmetry")
    assert plain["name"] == "openai.chat"
    assert plain["input_text"] == f"{SYSTEM}\n\n{QUESTION}"
    assert (plain["stream"], streamed["stream"]) == (False, True)
    assert streamed["ttft_ms"] is not None and 0 < streamed["ttft_ms"] <= streamed["duration_ms"]
    assert plain["ttft_ms"] is None
    assert failed["error_type"] == "InternalServerError"


def test_openinference(settings, store, fake):
    from openinference.instrumentation import using_attributes
    from openinference.instrumentation.openai import OpenAIInstrumentor

    with collector(settings, store) as (tp, _lp, rows):
        inst = OpenAIInstrumentor()
        inst.instrument(tracer_provider=tp)
        try:
            with using_attributes(user_id="u-42", session_id="s-7", tags=["beta", "eu"]):
                run = workload(fake.base_url)
        finally:
            inst.uninstrument()
        got = rows()
    plain, streamed, failed = by_kind(got)
    assert_common(plain, streamed, failed, run, "openinference")
    assert plain["name"] == "ChatCompletion"
    assert plain["input_text"] == f"{SYSTEM}\n\n{QUESTION}"
    assert (plain["temperature"], plain["max_tokens"]) == (0.3, 64)
    assert plain["response_id"] == "chatcmpl-fake-1"
    assert streamed["stream"] is True
    assert streamed["ttft_ms"] is not None and 0 < streamed["ttft_ms"] <= streamed["duration_ms"]
    assert failed["error_type"] == "openai.InternalServerError"  # from the exception event: no error.type
    for r in (plain, streamed, failed):
        assert (r["user_id"], r["session_id"], list(r["tags"])) == ("u-42", "s-7", ["beta", "eu"])


def test_user_and_session_reach_spans_written_in_earlier_requests(settings, store):
    """The root (with the ids) is exported after its children, in another request: FINAL shows them all."""
    with collector(settings, store) as (tp, _lp, rows):
        tracer = tp.get_tracer("app")
        with tracer.start_as_current_span("handle") as root:
            for i in range(2):
                with tracer.start_as_current_span(f"chat {MODEL}") as s:
                    s.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": MODEL,
                                      "gen_ai.usage.input_tokens": 3 + i})  # fmt: skip
            root.set_attributes({"user.id": "alice", "session.id": "sess-9"})
        got = rows()
    assert len(got) == 3
    assert {(r["user_id"], r["session_id"]) for r in got} == {("alice", "sess-9")}
    assert sorted(r["input_tokens"] for r in got if r["kind"] == "llm") == [3, 4]
