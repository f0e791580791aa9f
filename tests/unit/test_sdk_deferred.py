"""The deferred model-call path (``monitor.instrumentation._deferred``), through the real ``openai`` SDK.

On the app's thread a call only draws ids and times; its span is built afterwards on the finisher
thread. These tests pin what that must not change: the same attributes as the eager path, the
parent/child links of spans started *inside* the call, the real start and end times, the caller's
``monitor.context``, a snapshot of arguments the app mutates right after the call, head sampling,
apps' own samplers and processors, a full finisher queue, threads and ``fork``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

import monitor
from monitor import semconv as sc
from monitor.demo.fake_openai import FakeOpenAIServer
from monitor.instrumentation import _deferred
from monitor.instrumentation.openai import OpenAIInstrumentor
from monitor.testing import SpanRecorder, recording, reset_global_tracer_provider

REPLY = "Refunds take 5 to 7 business days."
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a support agent."},
    {"role": "user", "content": f"How long do refunds take? [[reply:{REPLY}]]"},
]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def rec() -> Iterator[SpanRecorder]:
    with recording(service_name="test", instrument=["openai"]) as r:
        yield r
    reset_global_tracer_provider()


@pytest.fixture
def client(server: FakeOpenAIServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)


def _instrumentor() -> OpenAIInstrumentor:
    st = monitor._tracing._state
    assert st is not None
    (inst,) = [i for i in st.instrumentors if isinstance(i, OpenAIInstrumentor)]
    return inst


def test_calls_take_the_deferred_path_and_match_the_eager_span(
    server: FakeOpenAIServer, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    spans: dict[str, ReadableSpan] = {}
    for mode in ("1", "0"):
        monkeypatch.setenv("LLM_MONITOR_DEFER", mode)
        with recording(service_name="test", instrument=["openai"]) as r:
            assert (_instrumentor()._fast is not None) is (mode == "1")
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.1, seed=3)
            (spans[mode],) = r.spans()
        reset_global_tracer_provider()
    deferred, eager = spans["1"], spans["0"]
    ids = {s.attributes[sc.GEN_AI_RESPONSE_ID] for s in (deferred, eager)}
    assert len(ids) == 2  # the fake server numbers its responses; everything else is equal
    drop = {sc.GEN_AI_RESPONSE_ID}
    assert {k: v for k, v in deferred.attributes.items() if k not in drop} == {
        k: v for k, v in eager.attributes.items() if k not in drop
    }
    assert (deferred.name, deferred.kind, deferred.status.status_code) == (
        eager.name,
        eager.kind,
        eager.status.status_code,
    )


def test_a_span_started_inside_the_call_is_a_child_of_the_llm_span(
    server: FakeOpenAIServer, rec: SpanRecorder
) -> None:
    tracer = trace.get_tracer("app.http")
    seen: list[trace.SpanContext] = []

    def on_request(request: httpx.Request) -> None:  # what an HTTP client instrumentation does
        with tracer.start_as_current_span("POST /chat/completions") as span:
            seen.append(span.get_span_context())

    http = httpx.Client(event_hooks={"request": [on_request]})
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0, http_client=http)
    with monitor.span("handle", kind="chain"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    by_name = {s.name: s for s in rec.spans()}
    llm, http_span, root = (
        by_name["chat gpt-4o-mini"],
        by_name["POST /chat/completions"],
        by_name["invoke_workflow handle"],
    )
    assert http_span.parent is not None and http_span.parent.span_id == llm.context.span_id
    assert llm.parent is not None and llm.parent.span_id == root.context.span_id
    assert {llm.context.trace_id, http_span.context.trace_id} == {root.context.trace_id}
    assert seen[0].span_id == http_span.context.span_id
    assert llm.start_time <= http_span.start_time <= http_span.end_time <= llm.end_time


def test_root_llm_span_without_a_parent_gets_a_fresh_trace(rec: SpanRecorder, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    a, b = rec.spans()
    assert a.parent is None and b.parent is None
    assert a.context.trace_id != b.context.trace_id and a.context.span_id != b.context.span_id
    assert a.context.trace_flags.sampled


def test_times_are_the_calls_own_not_the_finishers(rec: SpanRecorder, client: openai.OpenAI) -> None:
    t0 = time.time_ns()
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    t1 = time.time_ns()
    time.sleep(0.3)  # the finisher runs (every 50 ms) well after the call
    (span,) = rec.spans()
    assert t0 <= span.start_time < span.end_time <= t1


def test_context_and_prompt_come_from_the_callers_thread(rec: SpanRecorder, client: openai.OpenAI) -> None:
    with (
        monitor.context(user_id="u-7", session_id="s-7", tags=["beta"]),
        monitor.prompt("refunds", version="3"),
    ):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # outside both
    inside, outside = rec.spans()
    assert inside.attributes[sc.USER_ID] == "u-7"
    assert inside.attributes[sc.SESSION_ID] == "s-7"
    assert inside.attributes[sc.LLM_MONITOR_PROMPT_NAME] == "refunds"
    assert inside.attributes[sc.LLM_MONITOR_PROMPT_VERSION] == "3"
    assert sc.USER_ID not in outside.attributes and sc.LLM_MONITOR_PROMPT_NAME not in outside.attributes


def test_messages_the_app_appends_after_the_call_are_not_recorded(
    rec: SpanRecorder, client: openai.OpenAI
) -> None:
    history = [dict(m) for m in MESSAGES]
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=history)
    history.append({"role": "assistant", "content": resp.choices[0].message.content})  # the usual loop
    history.append({"role": "user", "content": "thanks"})
    (span,) = rec.spans()
    recorded = json.loads(span.attributes[sc.GEN_AI_INPUT_MESSAGES])
    assert [m["role"] for m in recorded] == ["user"]  # the system message goes to system_instructions
    assert "thanks" not in span.attributes[sc.GEN_AI_INPUT_MESSAGES]


def test_streams_are_deferred_with_time_to_first_chunk(rec: SpanRecorder, client: openai.OpenAI) -> None:
    t0 = time.perf_counter()
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    text = ""
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and not text:
            first = time.perf_counter() - t0
        text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
    elapsed = time.perf_counter() - t0
    assert text == REPLY
    (span,) = rec.spans()
    ttft = span.attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]
    assert 0 < ttft <= first <= elapsed
    assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"] == [
        {"type": "text", "content": REPLY}
    ]


def test_a_long_stream_is_folded_on_the_way(
    rec: SpanRecorder, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitor.instrumentation import _stream

    monkeypatch.setattr(_stream, "FOLD_AT", 2)  # fold every 2 chunks: memory stays bounded
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    state = stream._self_state
    sizes = []
    for _ in stream:
        sizes.append(len(state.chunks))
    assert sizes == [1, 0] * (len(sizes) // 2) + [1] * (len(sizes) % 2) and len(sizes) >= 5
    (span,) = rec.spans()
    assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"][0]["content"] == REPLY
    assert span.attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0


def test_sampled_out_traces_make_no_span_and_the_call_works(
    client: openai.OpenAI,
) -> None:
    with recording(service_name="test", instrument=["openai"], sample_rate=0.0) as r:
        assert _instrumentor()._fast is not None
        for _ in range(3):
            assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).id
        assert r.spans() == []
    reset_global_tracer_provider()


def test_head_sampling_keeps_whole_traces(client: openai.OpenAI) -> None:
    with recording(service_name="test", instrument=["openai"], sample_rate=0.5) as r:
        for i in range(40):
            with monitor.span(f"req-{i}", kind="chain"):
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        spans = r.spans()
    reset_global_tracer_provider()
    roots = {s.context.trace_id for s in spans if s.name.startswith("invoke_workflow")}
    llms = {s.context.trace_id for s in spans if s.name == "chat gpt-4o-mini"}
    assert roots == llms  # an LLM span exactly where its parent was kept
    assert 5 <= len(roots) <= 35  # about half of 40 (binomial: outside this range p < 1e-5)
    limit, bound = (1 << 64) - 1, int(0.5 * (1 << 64))
    assert all(t & limit < bound for t in roots)  # the SDK's TraceIdRatioBased rule


class OnlyChains(Sampler):
    """An app's own sampler that looks at span names: the fast path cannot decide for it."""

    def should_sample(self, parent_context: Any, trace_id: int, name: str, *args: Any, **kw: Any) -> Any:
        return SamplingResult(Decision.RECORD_AND_SAMPLE if "chat" in name else Decision.DROP)

    def get_description(self) -> str:
        return "OnlyChat"


def test_an_unknown_sampler_takes_the_eager_path(client: openai.OpenAI) -> None:
    app_exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=OnlyChains())
    provider.add_span_processor(SimpleSpanProcessor(app_exporter))
    inst = OpenAIInstrumentor()
    inst.instrument(tracer_provider=provider)
    try:
        assert inst._fast is None
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        # eager: the app's synchronous processor has the span as soon as the call returns
        assert [s.name for s in app_exporter.get_finished_spans()] == ["chat gpt-4o-mini"]
    finally:
        inst.uninstrument()


def test_an_apps_own_processor_gets_deferred_spans_after_monitor_flush(client: openai.OpenAI) -> None:
    app_exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(app_exporter))
    ours = InMemorySpanExporter()
    monitor.init(tracer_provider=provider, exporter=ours, instrument=["openai"])
    try:
        assert _instrumentor()._fast is not None
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert monitor.flush() is True
        assert [s.name for s in app_exporter.get_finished_spans()] == ["chat gpt-4o-mini"]
        assert [s.name for s in ours.get_finished_spans()] == ["chat gpt-4o-mini"]
        # provider.force_flush reaches our pipeline, which drains the finisher first
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert provider.force_flush() is True
        assert len(ours.get_finished_spans()) == 2
    finally:
        monitor.shutdown()


def test_a_full_finisher_queue_drops_and_counts_never_blocks(
    rec: SpanRecorder, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    finisher = _deferred.FINISHER
    finisher.drain()
    monkeypatch.setattr(finisher, "max_pending", 2)
    monkeypatch.setattr(finisher, "dropped", 0)
    with finisher._run_lock:  # the finisher is busy (as if starved of CPU): nothing leaves the queue
        ids = [client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).id for _ in range(5)]
        assert len(set(ids)) == 5  # every call returned its own answer
        assert finisher.dropped == 3 and finisher.pending() == 2
    assert [s.attributes[sc.GEN_AI_RESPONSE_ID] for s in rec.spans()] == ids[:2]


def test_concurrent_threads_each_get_their_own_span(rec: SpanRecorder, client: openai.OpenAI) -> None:
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with monitor.context(user_id=f"user-{i}"):
                for _ in range(5):
                    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    spans = rec.spans()
    assert len(spans) == 30 and len({s.context.span_id for s in spans}) == 30
    users = sorted(s.attributes[sc.USER_ID] for s in spans)
    assert users == sorted(f"user-{i}" for i in range(6) for _ in range(5))


class FileExporter(SpanExporter):
    def __init__(self, path: Path) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.path.open("a") as f:
            for s in spans:
                f.write(
                    json.dumps({"pid": os.getpid(), "id": s.attributes.get(sc.GEN_AI_RESPONSE_ID)}) + "\n"
                )
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_fork_child_gets_its_own_finisher(server: FakeOpenAIServer, tmp_path: Path) -> None:
    sink = tmp_path / "spans.jsonl"
    monitor.init(exporter=FileExporter(sink), instrument=["openai"])
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
        with _deferred.FINISHER._run_lock:  # a parent call is still queued at the fork
            parent_id = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).id
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    child = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
                    child_id = child.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).id
                    (tmp_path / "child_id").write_text(child_id)
                    code = 0 if monitor.flush(timeout=10) else 2
                finally:
                    os._exit(code)
        deadline = time.monotonic() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            assert time.monotonic() < deadline, "the forked child did not finish"
            time.sleep(0.02)
        assert os.waitstatus_to_exitcode(status) == 0
        assert monitor.flush(timeout=10) is True
        lines = [json.loads(line) for line in sink.read_text().splitlines()]
        child_id = (tmp_path / "child_id").read_text()
        assert [r["id"] for r in lines if r["pid"] == pid] == [child_id]  # not the parent's queued call
        assert [r["id"] for r in lines if r["pid"] == os.getpid()] == [parent_id]
    finally:
        monitor.shutdown()


def _chunk(delta: dict[str, Any], index: int = 0, finish: str | None = None, usage: Any = None) -> Any:
    from openai.types.chat import ChatCompletionChunk

    return ChatCompletionChunk.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
            "usage": usage,
        }
    )


def test_only_text_chunks_are_reduced_to_their_text() -> None:
    from monitor.instrumentation._openai_extract import ChatAccumulator

    text_of = ChatAccumulator.text_of
    assert text_of(_chunk({"content": "Hel"})) == "Hel"
    assert text_of(_chunk({"role": "assistant", "content": "Hi"})) is None  # the header chunk is kept
    assert text_of(_chunk({"content": ""})) is None
    assert text_of(_chunk({"content": "x"}, index=1)) is None
    assert text_of(_chunk({"content": "x"}, finish="stop")) is None
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    assert text_of(_chunk({"content": "x"}, usage=usage)) is None
    assert (
        text_of(
            _chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{"}}]})
        )
        is None
    )
    assert text_of({"choices": []}) is None  # not the SDK's type: kept whole

    # folding reduced and whole chunks gives what folding whole chunks gives
    chunks = [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Hel"}),
        _chunk({"content": "lo"}),
        _chunk({}, finish="stop"),
    ]
    whole, mixed = ChatAccumulator(), ChatAccumulator()
    for c in chunks:
        whole.add(c)
        text = text_of(c)
        if text is not None:
            mixed.add_text(text)
        else:
            mixed.add(c)
    assert mixed.attributes(True) == whole.attributes(True)
    assert json.loads(whole.attributes(True)[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"] == [
        {"type": "text", "content": "Hello"}
    ]
