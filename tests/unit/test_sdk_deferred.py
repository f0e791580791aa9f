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
    _same_but_ids(eager, deferred)


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


@pytest.mark.parametrize("end", ["force_flush", "shutdown"])
def test_an_apps_batch_processor_registered_first_gets_deferred_spans_on_its_providers_flush(
    client: openai.OpenAI, end: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's provider flushes its processors in order, the app's (added before ours) first: our
    spans still waiting on the finisher (every 50 ms) must be built before that, not after."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    app_exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(app_exporter, schedule_delay_millis=60_000))
    original = provider.force_flush
    monitor.init(tracer_provider=provider, exporter=InMemorySpanExporter(), instrument=["openai"])
    finisher = _deferred.FINISHER
    try:
        # the finisher thread sleeps through the test: only a drain on this thread can build the spans
        monkeypatch.setattr(finisher, "interval", 3600.0)
        monkeypatch.setattr(finisher, "wake", lambda: None)
        finisher.drain()
        time.sleep(0.2)  # its current 50 ms wait ends; the next one is an hour
        ids = [client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).id for _ in range(3)]
        assert finisher.pending() == 3 and app_exporter.get_finished_spans() == ()
        assert getattr(provider, end)() in (True, None)  # force_flush -> True, shutdown -> None
        assert [s.attributes[sc.GEN_AI_RESPONSE_ID] for s in app_exporter.get_finished_spans()] == ids
    finally:
        monitor.shutdown()
        monkeypatch.undo()
        finisher._wake_event.set()  # back to its 50 ms rhythm
    assert "force_flush" not in vars(provider) and provider.force_flush == original  # restored


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


# --- what a waiting call holds: a flat snapshot of the response, not the response --------------------

OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Find an order by id.",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        },
    }
]
ANTHROPIC_TOOLS = [
    {
        "name": "lookup_order",
        "description": "Find an order by id.",
        "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"}}},
    }
]
ORDER_QUESTION = {"role": "user", "content": "Where is my order ORD-1234?"}


def _spans_of(
    monkeypatch: pytest.MonkeyPatch, library: str, calls: Any, after: Any = None
) -> tuple[list[ReadableSpan], list[ReadableSpan], list[Any]]:
    """The spans of ``calls()`` made eagerly, then deferred with the finisher held back until
    ``after(responses, queued_calls)`` (the app editing and dropping its responses) has run."""
    monkeypatch.setenv("LLM_MONITOR_DEFER", "0")
    with recording(service_name="test", instrument=[library]) as r:
        calls()
        eager = r.spans()
    reset_global_tracer_provider()
    monkeypatch.setenv("LLM_MONITOR_DEFER", "1")
    with recording(service_name="test", instrument=[library]) as r:
        finisher = _deferred.FINISHER
        with finisher._run_lock:  # nothing leaves the queue until the app is done with its responses
            responses = calls()
            queued = list(finisher.queue)
            original = [(q.response, q.request) for q in queued]
            if after is not None:
                after(responses, queued)
            del responses
        deferred = r.spans()
    reset_global_tracer_provider()
    return eager, deferred, original


def _same_but_ids(eager: ReadableSpan, deferred: ReadableSpan) -> None:
    drop = {sc.GEN_AI_RESPONSE_ID}  # the fake servers number their responses
    assert {k: v for k, v in deferred.attributes.items() if k not in drop} == {
        k: v for k, v in eager.attributes.items() if k not in drop
    }
    assert (deferred.name, deferred.kind, deferred.status.status_code) == (
        eager.name,
        eager.kind,
        eager.status.status_code,
    )


def test_openai_waiting_calls_hold_a_snapshot_and_edits_after_the_call_change_nothing(
    server: FakeOpenAIServer, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    ids: list[str] = []

    def calls() -> list[Any]:
        text = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.1)
        tool = client.chat.completions.create(
            model="gpt-4o-mini", messages=[ORDER_QUESTION], tools=OPENAI_TOOLS
        )
        return [text, tool]

    def edit_and_drop(responses: list[Any], queued: list[Any]) -> None:
        ids.extend(r.id for r in responses)
        for q in queued:  # no SDK model is kept alive by a waiting call
            assert type(q.response) is tuple
            assert not any(type(o).__module__.startswith("openai.types") for o in gc.get_referents(q))
        text, tool = responses
        text.id = "edited"
        text.model = "edited"
        text.choices[0].message.content = "edited"
        text.choices[0].finish_reason = "length"
        text.usage.prompt_tokens = 1
        text.usage.completion_tokens = 1
        tool.choices[0].message.tool_calls[0].function.name = "edited"
        tool.choices[0].message.tool_calls[0].function.arguments = "{}"
        tool.choices.clear()
        responses.clear()
        gc.collect()
        assert not gc.is_tracked(queued[0].response)  # str/int/None only: the collector untracks it

    eager, deferred, held = _spans_of(monkeypatch, "openai", calls, edit_and_drop)
    assert len(eager) == len(deferred) == 2
    for e, d in zip(eager, deferred, strict=True):
        _same_but_ids(e, d)
    assert [d.attributes[sc.GEN_AI_RESPONSE_ID] for d in deferred] == ids
    text, tool = deferred
    assert json.loads(text.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": REPLY}], "finish_reason": "stop"}
    ]
    (call_part,) = json.loads(tool.attributes[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"]
    assert (call_part["type"], call_part["name"], call_part["arguments"]) == (
        "tool_call",
        "lookup_order",
        {"order_id": "ORD-1234"},
    )
    # the snapshot of the text call, field by field (see chat_response_snapshot)
    snap, request = held[0]
    assert snap[:2] == (ids[0], "gpt-4o-mini-2024-07-18")
    assert snap[9:] == (0, "assistant", REPLY, None, "stop", ())
    assert request["messages"] == MESSAGES and request["messages"] is not MESSAGES


def test_chat_snapshot_of_unusual_shapes() -> None:
    """Dict-shaped responses (compatible servers), choices out of order, a refusal, no usage, an empty id."""
    from monitor.instrumentation._openai_chat import chat_response_attributes, chat_response_snapshot

    response = {
        "id": "",
        "model": "local-model",
        "choices": [
            {
                "index": 1,
                "message": {"role": "assistant", "content": None, "refusal": "I can't help with that."},
                "finish_reason": "content_filter",
            },
            {
                "index": 0,
                "message": {
                    "role": None,
                    "content": "Looking it up.",
                    "tool_calls": [{"id": "call_1", "function": {"name": "lookup_order", "arguments": None}}],
                },
                "finish_reason": "tool_calls",
            },
        ],
        "usage": None,
    }
    snap = chat_response_snapshot(response)
    # raw values: the checks and the ordering by index happen with the attributes
    assert snap == (
        "", "local-model", None, None, None, None, None, None, None,
        1, "assistant", None, "I can't help with that.", "content_filter", (),
        0, None, "Looking it up.", None, "tool_calls", (("call_1", "lookup_order", None),),
    )  # fmt: skip
    attrs = chat_response_attributes(response, True)
    assert attrs[sc.GEN_AI_RESPONSE_MODEL] == "local-model"
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ["tool_calls", "content_filter"]
    assert sc.GEN_AI_RESPONSE_ID not in attrs and sc.GEN_AI_USAGE_INPUT_TOKENS not in attrs
    first, second = json.loads(attrs[sc.GEN_AI_OUTPUT_MESSAGES])
    assert first["parts"][0] == {"type": "text", "content": "Looking it up."}
    assert (first["parts"][1]["type"], first["parts"][1]["id"], first["parts"][1]["name"]) == (
        "tool_call",
        "call_1",
        "lookup_order",
    )
    assert first["finish_reason"] == "tool_call"
    assert second == {
        "role": "assistant",
        "parts": [{"type": "text", "content": "I can't help with that."}],
        "finish_reason": "content_filter",
    }


def test_anthropic_waiting_calls_hold_a_snapshot_and_edits_after_the_call_change_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc

    import anthropic

    from monitor.demo.fake_anthropic import FakeAnthropicServer

    ids: list[str] = []
    with FakeAnthropicServer() as srv:
        client = anthropic.Anthropic(base_url=srv.base_url, api_key="sk-ant-test", max_retries=0)

        def calls() -> list[Any]:
            text = client.messages.create(
                model="claude-haiku-4-5", max_tokens=50, system="Be brief.", messages=MESSAGES[1:]
            )
            tool = client.messages.create(
                model="claude-haiku-4-5", max_tokens=100, tools=ANTHROPIC_TOOLS, messages=[ORDER_QUESTION]
            )
            return [text, tool]

        def edit_and_drop(responses: list[Any], queued: list[Any]) -> None:
            ids.extend(r.id for r in responses)
            text, tool = responses
            assert tool.content[-1].type == "tool_use"
            text_snapshot = queued[0].response
            assert type(text_snapshot) is tuple and text_snapshot[9:] == (True, REPLY)
            assert not any(
                type(o).__module__.startswith("anthropic.types") for o in gc.get_referents(queued[0])
            )
            text.id = "edited"
            text.content[0].text = "edited"
            text.content.clear()
            text.usage.input_tokens = 1
            text.stop_reason = "max_tokens"
            tool.id = "edited"
            tool.usage.output_tokens = 1
            responses.clear()
            gc.collect()
            assert not gc.is_tracked(text_snapshot)

        eager, deferred, _ = _spans_of(monkeypatch, "anthropic", calls, edit_and_drop)
    assert len(eager) == len(deferred) == 2
    for e, d in zip(eager, deferred, strict=True):
        _same_but_ids(e, d)
    assert [d.attributes[sc.GEN_AI_RESPONSE_ID] for d in deferred] == ids
    assert json.loads(deferred[0].attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": REPLY}], "finish_reason": "stop"}
    ]
    assert deferred[1].attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("tool_use",)


def test_sdk_models_and_their_json_give_the_same_snapshot() -> None:
    """The direct reads of the SDK's own models equal the generic reads of the same JSON, including an
    extra field a compatible server sends (``cache_write_tokens``) and out-of-order choices."""
    from openai.types.chat import ChatCompletion

    from monitor.instrumentation import _anthropic_extract, _openai_chat

    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_1",
        "service_tier": "default",
        "choices": [
            {
                "index": 1,
                "message": {"role": "assistant", "content": "Second.", "refusal": None},
                "finish_reason": "length",
                "logprobs": None,
            },
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "lookup_order", "arguments": '{"order_id": "ORD-1"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
                "logprobs": None,
            },
        ],
        "usage": {
            "prompt_tokens": 30,
            "completion_tokens": 12,
            "total_tokens": 42,
            "prompt_tokens_details": {"cached_tokens": 16, "cache_write_tokens": 8},
            "completion_tokens_details": {"reasoning_tokens": 4},
        },
    }
    model = ChatCompletion.model_validate(body)
    assert _openai_chat.chat_response_snapshot(model) == _openai_chat.chat_response_snapshot(body)
    assert _openai_chat.SDK_MODEL_TYPES[ChatCompletion] is True  # the direct reads were taken
    attrs = _openai_chat.chat_response_attributes(model, True)
    assert attrs == _openai_chat.chat_response_attributes(body, True)
    assert (
        attrs[sc.GEN_AI_USAGE_INPUT_TOKENS],
        attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS],
        attrs[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS],
        attrs[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS],
        attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS],
    ) == (30, 16, 8, 4, ["tool_calls", "length"])

    from anthropic.types import Message

    message: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5-20251001",
        "content": [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 20,
            "output_tokens": 9,
            "cache_read_input_tokens": 5,
            "cache_creation_input_tokens": 3,
        },
    }
    sdk_message = Message.model_validate(message)
    snap = _anthropic_extract.response_snapshot(sdk_message)
    assert snap == _anthropic_extract.response_snapshot(message)
    assert snap == (
        "msg_1",
        "claude-haiku-4-5-20251001",
        "assistant",
        20,
        9,
        5,
        3,
        None,
        "end_turn",
        True,
        "One.",
        "Two.",
    )
    assert _anthropic_extract._SDK_MODEL_TYPES[Message] is True
    attrs = _anthropic_extract.response_attributes(sdk_message, True)
    assert attrs == _anthropic_extract.response_attributes(message, True)
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 28  # input + cache read + cache creation
    assert json.loads(attrs[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"] == [
        {"type": "text", "content": "One."},
        {"type": "text", "content": "Two."},
    ]
