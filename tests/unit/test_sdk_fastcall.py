"""The deferred request path in C (``monitor.instrumentation._fastcall``), against the Python one.

For the sync methods of the OpenAI SDK it replaces the dispatch to our wrapper, ``FastPath.begin`` and
``OpenAIInstrumentor._complete``. These tests pin that it changes nothing an app or a backend can see:
the same spans as the Python path in every scenario (plain, tools, streams, raw responses, errors,
parents, sampling, framework slots), the app's exceptions re-raised unchanged, internal errors logged
once and the call recorded anyway (or raised under ``LLM_MONITOR_RAISE_INTERNAL``), and no reference
kept once a span is built.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan

import monitor
from monitor import _guard
from monitor import semconv as sc
from monitor.demo.fake_openai import FakeOpenAIServer
from monitor.instrumentation import _deferred, _nesting
from monitor.instrumentation import openai as openai_instrumentation
from monitor.testing import recording, reset_global_tracer_provider

REPLY = "Refunds take 5 to 7 business days."
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a support agent."},
    {"role": "user", "content": f"How long do refunds take? [[reply:{REPLY}]]"},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "order_status",
            "description": "Look up an order",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        },
    }
]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def client(server: FakeOpenAIServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)


def _installed() -> str:
    from openai.resources.chat.completions.completions import Completions

    return type(vars(Completions)["create"]).__name__


def _chat(c: openai.OpenAI) -> Any:
    return c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.1, seed=3)


def _tools(c: openai.OpenAI) -> Any:
    messages = [{"role": "user", "content": "Where is order ORD-1234?"}]
    reply = c.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
    messages.append(reply.choices[0].message.model_dump(exclude_none=True))  # the app appends after the call
    return reply


def _stream(c: openai.OpenAI) -> Any:
    stream = c.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    return "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)


def _early_close(c: openai.OpenAI) -> Any:
    stream = c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    first = next(iter(stream))
    stream.close()
    return first.choices[0].delta.role


def _raw(c: openai.OpenAI) -> Any:
    return c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES).parse()


def _error(c: openai.OpenAI) -> Any:
    try:
        c.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "[[error:429]]"}]
        )
    except openai.RateLimitError as exc:
        return exc.status_code
    raise AssertionError("no error")


def _text(c: openai.OpenAI) -> Any:
    return _chat(c).choices[0].message.content


def _child(c: openai.OpenAI) -> Any:
    with trace.get_tracer("app").start_as_current_span("handle request"):
        return _text(c)


def _slot(c: openai.OpenAI) -> Any:
    """A framework's model-call span (LangChain's) with its slot current: the provider call records
    onto that span (the eager path), in C as in Python."""
    from opentelemetry import context as otel_context

    span = trace.get_tracer("framework").start_span(
        "framework llm", attributes={"llm_monitor.span.kind": "llm"}
    )
    ctx, slot = _nesting.publish(span)
    token = otel_context.attach(ctx)
    try:
        reply = _chat(c)
    finally:
        otel_context.detach(token)
        span.end()
    return (reply.choices[0].message.content, slot.claimed)


def _embeddings(c: openai.OpenAI) -> Any:
    return len(c.embeddings.create(model="text-embedding-3-small", input=["refunds", "returns"]).data)


def _legacy(c: openai.OpenAI) -> Any:
    return c.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi").choices[0].text


def _responses(c: openai.OpenAI) -> Any:
    return c.responses.create(model="gpt-4o-mini", input="How long do refunds take?").output_text


SCENARIOS: dict[str, Callable[[openai.OpenAI], Any]] = {
    "chat": _text,
    "tools": _tools,
    "stream": _stream,
    "early_close": _early_close,
    "raw": _raw,
    "error": _error,
    "child": _child,
    "slot": _slot,
    "embeddings": _embeddings,
    "legacy": _legacy,
    "responses": _responses,
}


def _shape(spans: list[ReadableSpan]) -> list[tuple[Any, ...]]:
    """Everything about the spans but their ids, times (time to first chunk included) and the fake
    server's response ids."""
    by_id = {s.context.span_id: s.name for s in spans}
    drop = {sc.GEN_AI_RESPONSE_ID, sc.SERVER_PORT, "gen_ai.response.time_to_first_chunk"}
    return [
        (
            s.name,
            s.kind,
            s.status.status_code,
            s.status.description,
            by_id.get(s.parent.span_id) if s.parent is not None else None,
            {k: v for k, v in s.attributes.items() if k not in drop},
            [
                (e.name, {k: v for k, v in e.attributes.items() if k != "exception.stacktrace"})
                for e in s.events
            ],
        )
        for s in spans
    ]


def _openai_instrumentor() -> Any:
    state = monitor._tracing._state
    assert state is not None
    return next(i for i in state.instrumentors if i.name == "openai")


def _run(
    monkeypatch: pytest.MonkeyPatch, native: str, scenario: Callable[[openai.OpenAI], Any], c: Any
) -> Any:
    """``scenario`` on a fresh client (the SDK caches ``with_raw_response`` wrappers per client)."""
    c = openai.OpenAI(base_url=c.base_url, api_key="sk-test", max_retries=0)
    monkeypatch.setenv("LLM_MONITOR_NATIVE_SDK", native)
    with recording(service_name="test", instrument=["openai"]) as r:
        assert _installed() == ("FastMethod" if native == "1" else "function")
        value = scenario(c)
        spans = r.spans()
    reset_global_tracer_provider()
    return value, spans


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_gives_the_same_spans_in_c_and_in_python(
    name: str, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    native_value, native_spans = _run(monkeypatch, "1", SCENARIOS[name], client)
    python_value, python_spans = _run(monkeypatch, "0", SCENARIOS[name], client)
    if name not in ("raw", "tools"):  # (response objects: compared through their spans)
        assert native_value == python_value
    assert len(native_spans) >= 1
    assert _shape(native_spans) == _shape(python_spans)
    for s in native_spans:
        if s.parent is None:
            continue
        assert s.parent.trace_id == s.context.trace_id
    llm = [s for s in native_spans if s.attributes.get(sc.GEN_AI_OPERATION_NAME)]
    assert all(s.start_time < s.end_time for s in llm)


def test_the_stand_in_span_is_current_during_the_call_and_gone_after(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the SDK's own code sees while it runs: our stand-in (a PendingCall) as the current span, with
    the ids the finished span gets; and the app's context back untouched afterwards."""
    import httpx

    seen: list[trace.Span] = []

    def hook(request: httpx.Request) -> None:
        seen.append(trace.get_current_span())

    c = openai.OpenAI(
        base_url=server.base_url,
        api_key="sk-test",
        max_retries=0,
        http_client=httpx.Client(event_hooks={"request": [hook]}),
    )
    monkeypatch.setenv("LLM_MONITOR_NATIVE_SDK", "1")
    with recording(service_name="test", instrument=["openai"]) as r:
        assert _installed() == "FastMethod"
        with trace.get_tracer("app").start_as_current_span("handle request") as parent:
            _chat(c)
            assert trace.get_current_span() is parent
        assert trace.get_current_span() is trace.INVALID_SPAN
        spans = r.spans()
    reset_global_tracer_provider()
    (stand_in,) = seen
    assert type(stand_in) is _deferred.PendingCall
    llm, app = spans
    assert (stand_in.trace_id, stand_in.span_id) == (llm.context.trace_id, llm.context.span_id)
    assert stand_in.parent.span_id == app.context.span_id == llm.parent.span_id
    assert stand_in.token is None and stand_in.request is None  # detached; released after the span was built


def test_the_apps_exception_is_re_raised_unchanged(
    client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_MONITOR_NATIVE_SDK", "1")
    with recording(service_name="test", instrument=["openai"]) as r:
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "[[error:429]]"}]
            )
        (span,) = r.spans()
    reset_global_tracer_provider()
    frames = traceback.extract_tb(info.value.__traceback__)
    assert frames[-1].filename.endswith("openai/_base_client.py")  # raised there, nothing of ours after it
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "RateLimitError"
    (event,) = span.events
    assert event.attributes["exception.message"] == str(info.value)


def test_a_base_exception_from_the_sdk_passes_through_and_is_recorded(
    client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_MONITOR_NATIVE_SDK", "1")

    class Stop(BaseException):
        pass

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise Stop("interrupted")

    with recording(service_name="test", instrument=["openai"]) as r:
        monkeypatch.setattr(client, "post", interrupted)
        with pytest.raises(Stop, match="interrupted"):
            _chat(client)
        assert trace.get_current_span() is trace.INVALID_SPAN  # the stand-in was detached
        (span,) = r.spans()
    reset_global_tracer_provider()
    assert span.status.status_code is trace.StatusCode.ERROR and span.attributes[sc.ERROR_TYPE] == "Stop"


def test_a_bug_in_the_snapshot_is_logged_once_and_the_call_recorded_eagerly(
    client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(_guard.RAISE_INTERNAL_ENV, raising=False)
    monkeypatch.setenv("LLM_MONITOR_NATIVE_SDK", "1")

    def broken(response: Any) -> Any:
        raise RuntimeError("bug in our snapshot")

    object.__setattr__(openai_instrumentation.CHAT, "snapshot", broken)
    try:
        before = _guard.internal_error_count()
        with caplog.at_level(logging.WARNING, logger="monitor"):
            with recording(service_name="test", instrument=["openai"]) as r:
                replies = [_chat(client).choices[0].message.content for _ in range(3)]
                spans = r.spans()
            reset_global_tracer_provider()
    finally:
        object.__setattr__(
            openai_instrumentation.CHAT, "snapshot", openai_instrumentation.chat.chat_response_snapshot
        )
    assert replies == [REPLY] * 3
    assert len(spans) == 3  # recorded by the eager path, with every response attribute
    assert all(s.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] > 0 for s in spans)
    assert _guard.internal_error_count() - before == 3
    logged = [x for x in caplog.records if "internal error in openai.chat.defer" in x.getMessage()]
    assert len(logged) == 1


def test_a_bug_raises_under_raise_internal(client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_guard.RAISE_INTERNAL_ENV, "1")
    monkeypatch.setenv("LLM_MONITOR_NATIVE_SDK", "1")

    def broken(response: Any) -> Any:
        raise RuntimeError("bug in our snapshot")

    object.__setattr__(openai_instrumentation.CHAT, "snapshot", broken)
    try:
        with recording(service_name="test", instrument=["openai"]):
            with pytest.raises(RuntimeError, match="bug in our snapshot"):
                _chat(client)
            assert trace.get_current_span() is trace.INVALID_SPAN
        reset_global_tracer_provider()
    finally:
        object.__setattr__(
            openai_instrumentation.CHAT, "snapshot", openai_instrumentation.chat.chat_response_snapshot
        )


class _FailingIds:
    """An id generator that fails: begin's error path (the SDK's tracer then fails the same way)."""

    def generate_span_id(self) -> int:
        raise RuntimeError("no ids today")

    def generate_trace_id(self) -> int:
        raise RuntimeError("no ids today")


def test_a_failing_id_generator_never_reaches_the_app(
    client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(_guard.RAISE_INTERNAL_ENV, raising=False)
    monkeypatch.setenv("LLM_MONITOR_NATIVE_SDK", "1")
    before = _guard.internal_error_count()
    with caplog.at_level(logging.WARNING, logger="monitor"):
        with recording(service_name="test", instrument=["openai"]) as r:
            inst = _openai_instrumentor()
            inst.uninstrument()  # again with ids that fail (FastPath wraps the provider's generator)
            inst.tracer.id_generator = _FailingIds()
            inst.instrument(tracer_provider=monitor._tracing._state.provider)
            assert _installed() == "FastMethod"
            assert _chat(client).choices[0].message.content == REPLY
            assert r.spans() == []
        reset_global_tracer_provider()
    assert _guard.internal_error_count() > before
    assert any("llm.fast.begin" in x.getMessage() for x in caplog.records)


def test_a_stand_in_whose_token_was_used_up_is_logged_and_the_call_returns(
    client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Code inside the call restoring our token itself (a broken framework): our detach fails, which
    must cost the app nothing; the span is still built."""
    monkeypatch.delenv(_guard.RAISE_INTERNAL_ENV, raising=False)
    monkeypatch.setenv("LLM_MONITOR_NATIVE_SDK", "1")
    original_post = client.post

    def post(*args: Any, **kwargs: Any) -> Any:
        stand_in = trace.get_current_span()
        _deferred._reset_current(stand_in.token)  # type: ignore[attr-defined]
        return original_post(*args, **kwargs)

    monkeypatch.setattr(client, "post", post)
    with caplog.at_level(logging.WARNING, logger="monitor"):
        with recording(service_name="test", instrument=["openai"]) as r:
            assert _chat(client).choices[0].message.content == REPLY
            (span,) = r.spans()
        reset_global_tracer_provider()
    assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] > 0
    assert any("llm.fast.deactivate" in x.getMessage() for x in caplog.records)


def test_sampled_out_calls_make_no_span_and_draw_no_stand_in(
    client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_MONITOR_NATIVE_SDK", "1")
    with recording(service_name="test", instrument=["openai"], sample_rate=0.0) as r:
        assert _installed() == "FastMethod"
        assert _chat(client).choices[0].message.content == REPLY
        assert _deferred.FINISHER.pending() == 0
        assert r.spans() == []
    reset_global_tracer_provider()


def test_uninstrumented_but_still_in_place_it_passes_through(
    client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone wrapped on top of us: uninstrument leaves our method in their chain, inert."""
    from openai.resources.chat.completions.completions import Completions

    monkeypatch.setenv("LLM_MONITOR_NATIVE_SDK", "1")
    with recording(service_name="test", instrument=["openai"]) as r:
        ours = vars(Completions)["create"]
        assert type(ours).__name__ == "FastMethod"

        def theirs(self: Any, *args: Any, **kwargs: Any) -> Any:
            return ours(self, *args, **kwargs)

        Completions.create = theirs  # type: ignore[method-assign]
        try:
            _openai_instrumentor().uninstrument()
            assert vars(Completions)["create"] is theirs
            assert _chat(client).choices[0].message.content == REPLY
            assert r.spans() == []
        finally:
            Completions.create = ours.__wrapped__  # type: ignore[method-assign]  # the SDK's own again
    reset_global_tracer_provider()


def test_no_reference_is_kept_once_the_span_is_built(
    client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reference counts of what a call touches (its kwargs' values, the installed method, the result type)
    come back once the finisher built the spans: a leaked reference on any path would show here."""
    monkeypatch.setenv("LLM_MONITOR_NATIVE_SDK", "1")
    messages = list(MESSAGES)
    model = "gpt-4o-mini-refcount"
    with recording(service_name="test", instrument=["openai"]) as r:
        from openai.resources.chat.completions.completions import Completions

        method = vars(Completions)["create"]

        def calls() -> None:
            client.chat.completions.create(model=model, messages=messages)
            _error(client)
            _stream(client)

        calls()
        r.spans()
        r.exporter.clear()  # (finished spans hold their attribute values)
        gc.collect()
        counts = (sys.getrefcount(messages), sys.getrefcount(model), sys.getrefcount(method))
        for _ in range(20):
            calls()
        assert len(r.spans()) == 60
        r.exporter.clear()
        gc.collect()
        assert (sys.getrefcount(messages), sys.getrefcount(model), sys.getrefcount(method)) == counts
    reset_global_tracer_provider()


def test_the_method_is_collectable_and_configure_refuses_wrong_shapes(
    client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from monitor.instrumentation import _fastcall  # type: ignore[attr-defined]

    assert _deferred.native() is _fastcall

    class NotPending:
        __slots__ = ("trace_id",)

    # refused whole: a failed configure leaves the configured module as it was
    with pytest.raises(TypeError, match="has no object slot span_id"):
        _fastcall.configure(NotPending, dict, "a", "b", None, None, (), None)
    with pytest.raises(TypeError, match="dict subclass"):
        _fastcall.configure(_deferred.PendingCall, list, "a", "b", None, None, (), None)
    with pytest.raises(TypeError, match="list_keys"):
        _fastcall.configure(_deferred.PendingCall, dict, "a", "b", None, None, ["messages"], None)
    with pytest.raises(TypeError, match="original must be callable"):
        _fastcall.FastMethod(42, object(), object(), object())
    with pytest.raises(AttributeError):  # an owner without the instrumentor's attributes
        _fastcall.FastMethod(len, object(), SimpleNamespace(snapshot=None), object())
    monkeypatch.setenv("LLM_MONITOR_NATIVE_SDK", "1")
    with recording(service_name="test", instrument=["openai"]) as r:
        assert _chat(client).choices[0].message.content == REPLY  # still configured right
        assert len(r.spans()) == 1
    reset_global_tracer_provider()

    # a cycle through the method (owner -> method -> owner) is collected
    freed: list[bool] = []

    class Owner:
        def __init__(self) -> None:
            self._plain: dict[type, bool] = {}

        def _finish_pending(self, pending: Any) -> None:
            pass

        def __del__(self) -> None:
            freed.append(True)

    fast = SimpleNamespace(inner_ids=None, bound=1, limit=1, random_ids=True)
    owner = Owner()
    owner.method = _fastcall.FastMethod(len, owner, SimpleNamespace(snapshot=None), fast)  # type: ignore[attr-defined]
    assert owner in gc.get_referents(owner.method)  # type: ignore[attr-defined]
    assert owner.method.active is True  # type: ignore[attr-defined]
    owner.method.active = False  # type: ignore[attr-defined]  # as Instrumentor._restore does
    assert owner.method([]) == 0  # type: ignore[attr-defined]  # inactive: the original, len([])
    del owner
    gc.collect()
    assert freed == [True]


def _completion_body(**changes: Any) -> dict[str, Any]:
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
                "message": {"role": "assistant", "content": "Zweite Antwort – ünïcode.", "refusal": None},
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
                        },
                        {
                            "id": "call_2",
                            "type": "function",
                            "function": {"name": "refund", "arguments": "{}"},
                        },
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
    body.update(changes)
    return body


def test_the_chat_snapshot_in_c_equals_the_python_one_on_every_shape() -> None:
    """``ChatSnapshot`` reads the SDK's models from their dicts; whatever it does not read itself (a field
    missing from a model, a type not known to be the SDK's) goes to the Python function, so the tuple is
    always the Python one."""
    from openai.types.chat import ChatCompletion

    from monitor.instrumentation import _fastcall, _openai_chat  # type: ignore[attr-defined]

    fell_back: list[Any] = []

    def fallback(response: Any) -> Any:
        fell_back.append(response)
        return _openai_chat.chat_response_snapshot(response)

    snapshot = _fastcall.ChatSnapshot(fallback, {ChatCompletion: True})

    class AppCompletion(ChatCompletion):  # not the SDK's own type: generic reads
        pass

    usage = _completion_body()["usage"]
    bare_usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    no_details = ChatCompletion.model_validate(_completion_body(usage=bare_usage))
    missing = ChatCompletion.model_validate(_completion_body())
    del missing.__dict__["service_tier"]  # a field the installed SDK does not have
    extra_only = ChatCompletion.model_validate(
        _completion_body(usage={**usage, "prompt_tokens_details": {"cache_write_tokens": 5}})
    )
    cases: list[tuple[str, Any, bool]] = [
        ("tool calls, extras, choices out of order", ChatCompletion.model_validate(_completion_body()), True),
        ("no usage", ChatCompletion.model_validate(_completion_body(usage=None)), True),
        ("usage without details", no_details, True),
        ("an extra field only", extra_only, True),
        ("no choices", ChatCompletion.model_validate(_completion_body(choices=[])), True),
        ("a field missing from the model", missing, False),
        ("an app's subclass", AppCompletion.model_validate(_completion_body()), False),
        ("a dict from a compatible server", _completion_body(), False),
    ]
    for label, response, in_c in cases:
        fell_back.clear()
        got = snapshot(response)
        assert got == _openai_chat.chat_response_snapshot(response), label
        assert (fell_back == []) is in_c, label
    full = snapshot(ChatCompletion.model_validate(_completion_body()))
    assert full[:9] == ("chatcmpl-1", "gpt-4o-mini-2024-07-18", "fp_1", "default", 30, 12, 16, 8, 4)
    assert full[9:15] == (1, "assistant", "Zweite Antwort – ünïcode.", None, "length", ())
    assert full[15:] == (
        0,
        "assistant",
        None,
        None,
        "tool_calls",
        (("call_1", "lookup_order", '{"order_id": "ORD-1"}'), ("call_2", "refund", "{}")),
    )
    assert snapshot(no_details)[4:9] == (3, 2, None, None, None)
    assert snapshot(extra_only)[6:8] == (None, 5)
    with pytest.raises(TypeError):
        _fastcall.ChatSnapshot(fallback, [])


def test_root_calls_are_sampled_on_the_low_64_bits_of_their_trace_id(
    client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Head sampling of a root model call (``ParentBased(TraceIdRatioBased(0.5))``): kept exactly when the
    low 64 bits of its trace id are below the bound. The Python path draws from ``random`` (the SDK's
    generator), so a seed fixes which calls are kept; the C path draws from its own generator."""
    import random

    state = random.getstate()
    runs: dict[str, list[int]] = {}
    try:
        for native in ("0", "1"):
            monkeypatch.setenv("LLM_MONITOR_NATIVE_SDK", native)
            with recording(service_name="test", instrument=["openai"], sample_rate=0.5) as r:
                assert _installed() == ("FastMethod" if native == "1" else "function")
                assert _openai_instrumentor()._fast.bound == 2**63
                random.seed(20261122)
                for _ in range(120):
                    assert _text(client) == REPLY
                runs[native] = [s.context.trace_id for s in r.spans()]
            reset_global_tracer_provider()
        random.seed(20261122)
        expected = []
        for _ in range(120):  # the Python path's draws: a trace id, then a span id when kept
            trace_id = random.getrandbits(128)
            if trace_id & (2**64 - 1) < 2**63:
                expected.append(trace_id)
                random.getrandbits(64)
    finally:
        random.setstate(state)
    assert sorted(runs["0"]) == sorted(expected)
    kept = runs["1"]
    assert all(t & (2**64 - 1) < 2**63 and 0 < t < 2**128 for t in kept)
    assert len(set(kept)) == len(kept)
    assert 30 <= len(kept) <= 90  # about half of 120 (binomial: outside this range p < 1e-6)
    assert any(t >> 64 for t in kept) and any(t >> 127 for t in kept)  # all 128 bits are drawn


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_a_forked_child_draws_other_ids_than_its_parent(
    server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The C path's generator is reseeded in a forked child: otherwise parent and child (gunicorn workers)
    would give their next calls the same trace and span ids."""
    import httpx

    monkeypatch.setenv("LLM_MONITOR_NATIVE_SDK", "1")
    seen: list[tuple[int, int]] = []

    def hook(request: httpx.Request) -> None:
        span = trace.get_current_span().get_span_context()
        seen.append((span.trace_id, span.span_id))

    with recording(service_name="test", instrument=["openai"]):
        assert _installed() == "FastMethod"
        c = openai.OpenAI(
            base_url=server.base_url,
            api_key="sk-test",
            max_retries=0,
            http_client=httpx.Client(event_hooks={"request": [hook]}),
        )
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for _ in range(3):
                    _text(c)
                (tmp_path / "child.json").write_text(json.dumps(seen))
                code = 0
            finally:
                os._exit(code)
        for _ in range(3):
            _text(c)
        _, status = os.waitpid(pid, 0)
    reset_global_tracer_provider()
    assert os.waitstatus_to_exitcode(status) == 0
    child = {tuple(ids) for ids in json.loads((tmp_path / "child.json").read_text())}
    parent = set(seen)
    assert len(parent) == len(child) == 3
    assert not {t for t, _ in parent} & {t for t, _ in child}
    assert not {s for _, s in parent} & {s for _, s in child}


def test_a_native_method_that_cannot_be_built_leaves_the_python_dispatch(
    client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from types import SimpleNamespace

    monkeypatch.delenv(_guard.RAISE_INTERNAL_ENV, raising=False)
    monkeypatch.setenv("LLM_MONITOR_NATIVE_SDK", "1")

    def broken(*args: Any) -> Any:
        raise RuntimeError("cannot build")

    monkeypatch.setattr(
        openai_instrumentation, "native", lambda: SimpleNamespace(FastMethod=broken, ChatSnapshot=broken)
    )
    with caplog.at_level(logging.WARNING, logger="monitor"):
        with recording(service_name="test", instrument=["openai"]) as r:
            assert _installed() == "function"  # instrumented all the same, through the Python path
            assert _text(client) == REPLY
            assert len(r.spans()) == 1
        reset_global_tracer_provider()
    assert any("openai.native" in x.getMessage() for x in caplog.records)
