"""Streamed Anthropic calls through the instrumentor: ``create(stream=True)`` and the
``messages.stream()`` helper, sync and async. Laziness, type, TTFT, usage from ``message_start`` +
``message_delta``, and the span ending exactly once (exhaustion, break/close, ``with`` exit, garbage
collection, error mid-stream)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from opentelemetry.trace import SpanKind, StatusCode

from monitor import semconv as sc
from monitor.demo.fake_anthropic import FakeAnthropicServer, count_input_tokens, count_tokens
from monitor.demo.fake_replies import stream_pieces
from monitor.testing import SpanRecorder, recording, reset_global_tracer_provider

MODEL = "claude-haiku-4-5"
REPLY = "Orders ship within two business days and tracking follows by email."
MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": f"When will it ship? [[reply:{REPLY}]]"}]
TOOLS: list[dict[str, Any]] = [
    {
        "name": "lookup_order",
        "description": "Find an order by id.",
        "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"}}},
    }
]


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as srv:
        yield srv


@pytest.fixture
def rec() -> Iterator[SpanRecorder]:
    with recording(instrument=["anthropic"]) as r:
        yield r
    reset_global_tracer_provider()


@pytest.fixture
def client(server: FakeAnthropicServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key="sk-ant-test", max_retries=0)


@pytest.fixture
def aclient(server: FakeAnthropicServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=server.base_url, api_key="sk-ant-test", max_retries=0)


def _text(events: list[Any]) -> str:
    return "".join(
        e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )


def streamed_attributes(server: FakeAnthropicServer, response_id: str) -> dict[str, Any]:
    """Exact attributes of a streamed ``MESSAGES`` call with max_tokens=100 (TTFT left out)."""
    return {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_PROVIDER_NAME: "anthropic",
        sc.LLM_MONITOR_SPAN_KIND: "llm",
        sc.GEN_AI_REQUEST_MODEL: MODEL,
        sc.GEN_AI_REQUEST_MAX_TOKENS: 100,
        sc.GEN_AI_REQUEST_STREAM: True,
        sc.SERVER_ADDRESS: "127.0.0.1",
        sc.SERVER_PORT: server.port,
        sc.GEN_AI_INPUT_MESSAGES: dumps(
            [{"role": "user", "parts": [{"type": "text", "content": MESSAGES[0]["content"]}]}]
        ),
        sc.GEN_AI_RESPONSE_ID: response_id,
        sc.GEN_AI_RESPONSE_MODEL: "claude-haiku-4-5-20251001",
        sc.GEN_AI_USAGE_INPUT_TOKENS: count_input_tokens({"messages": MESSAGES}),
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: count_tokens(REPLY),
        sc.GEN_AI_RESPONSE_FINISH_REASONS: ("end_turn",),
        sc.GEN_AI_OUTPUT_MESSAGES: dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": REPLY}], "finish_reason": "stop"}]
        ),
    }


def _pop_ttft(span: Any) -> dict[str, Any]:
    attrs = dict(span.attributes)
    ttft = attrs.pop(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)
    assert 0 < ttft < (span.end_time - span.start_time) / 1e9
    return attrs


def test_sync_create_stream_exact_attributes(
    rec: SpanRecorder, client: anthropic.Anthropic, server: FakeAnthropicServer
) -> None:
    stream = client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, stream=True)
    assert isinstance(stream, anthropic.Stream)
    assert stream.response.status_code == 200  # attribute passthrough
    assert rec.spans() == []  # lazy: nothing ends before the app reads
    events = list(stream)
    assert _text(events) == REPLY
    (span,) = rec.spans()
    assert span.name == "chat claude-haiku-4-5" and span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert _pop_ttft(span) == streamed_attributes(server, events[0].message.id)
    # usage really comes from two events: input counts at the start, the output count at the end
    assert events[0].message.usage.output_tokens == 1
    assert events[-2].type == "message_delta" and events[-2].usage.input_tokens is None


def test_async_create_stream_as_context_manager(
    rec: SpanRecorder, aclient: anthropic.AsyncAnthropic, server: FakeAnthropicServer
) -> None:
    async def run() -> list[Any]:
        stream = await aclient.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, stream=True)
        assert isinstance(stream, anthropic.AsyncStream)
        assert rec.spans() == []
        async with stream as s:
            return [e async for e in s]

    events = asyncio.run(run())
    assert _text(events) == REPLY
    (span,) = rec.spans()
    assert _pop_ttft(span) == streamed_attributes(server, events[0].message.id)


def test_stream_helper_sync_gives_exactly_one_span(
    rec: SpanRecorder, client: anthropic.Anthropic, server: FakeAnthropicServer
) -> None:
    manager = client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES)
    assert rec.spans() == []  # nothing is sent before the with block
    with manager as stream:
        assert type(stream).__name__ == "MessageStream"
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert texts == stream_pieces(REPLY)
    assert final.content[0].text == REPLY
    (span,) = rec.spans()
    assert span.name == "chat claude-haiku-4-5"
    assert _pop_ttft(span) == streamed_attributes(server, final.id)


def test_stream_helper_async(
    rec: SpanRecorder, aclient: anthropic.AsyncAnthropic, server: FakeAnthropicServer
) -> None:
    async def run() -> tuple[list[str], Any]:
        async with aclient.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
            texts = [t async for t in stream.text_stream]
            return texts, await stream.get_final_message()

    texts, final = asyncio.run(run())
    assert "".join(texts) == REPLY
    (span,) = rec.spans()
    assert _pop_ttft(span) == streamed_attributes(server, final.id)


def test_stream_helper_get_final_message_without_iterating(
    rec: SpanRecorder, client: anthropic.Anthropic
) -> None:
    with client.messages.stream(model=MODEL, max_tokens=100, tools=TOOLS, messages=[MESSAGES[0]]) as stream:
        final = stream.get_final_message()
    (span,) = rec.spans()
    assert span.attributes[sc.GEN_AI_RESPONSE_ID] == final.id
    assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == final.usage.output_tokens


def test_stream_helper_left_early_ends_once_with_what_arrived(
    rec: SpanRecorder, client: anthropic.Anthropic, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING),
        client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream,
    ):
        first = next(iter(stream.text_stream))
        assert rec.spans() == []
    (span,) = rec.spans()
    assert first == stream_pieces(REPLY)[0]
    assert sc.GEN_AI_RESPONSE_FINISH_REASONS not in span.attributes
    assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": first}]}
    ]
    assert (
        span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 1
    )  # message_start's count; message_delta never came
    assert span.status.status_code is StatusCode.UNSET
    assert not [r for r in caplog.records if "ended span" in r.getMessage()]


def test_stream_helper_error_on_enter(rec: SpanRecorder, client: anthropic.Anthropic) -> None:
    manager = client.messages.stream(
        model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "[[error:529]]"}]
    )
    with pytest.raises(anthropic.OverloadedError), manager:
        pass
    (span,) = rec.spans()
    assert span.attributes[sc.ERROR_TYPE] == "OverloadedError"
    assert span.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 529
    assert span.attributes[sc.GEN_AI_REQUEST_STREAM] is True


def test_break_then_close_ends_once(
    rec: SpanRecorder, client: anthropic.Anthropic, caplog: pytest.LogCaptureFixture
) -> None:
    stream = client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, stream=True)
    seen = []
    for event in stream:
        seen.append(event)
        if event.type == "content_block_delta":
            break
    stream.close()
    with caplog.at_level(logging.WARNING):
        stream.close()
        with contextlib.suppress(Exception):  # whatever the SDK does after close must not end it again
            for _ in stream:
                pass
        del stream
        gc.collect()
    (span,) = rec.spans()
    assert span.attributes[sc.GEN_AI_RESPONSE_ID] == seen[0].message.id
    assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": seen[-1].delta.text}]}
    ]
    assert not [r for r in caplog.records if "ended span" in r.getMessage()]


def test_with_block_exit_ends_the_span(rec: SpanRecorder, client: anthropic.Anthropic) -> None:
    with client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, stream=True) as stream:
        next(stream)
        assert rec.spans() == []
    assert len(rec.spans()) == 1


def test_abandoned_streams_end_on_garbage_collection(rec: SpanRecorder, client: anthropic.Anthropic) -> None:
    stream = client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, stream=True)
    next(stream)
    manager = client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES)
    helper = manager.__enter__()
    next(iter(helper))
    assert rec.spans() == []
    del stream, manager, helper
    gc.collect()
    spans = rec.spans()
    assert [s.name for s in spans] == ["chat claude-haiku-4-5"] * 2
    assert all(
        s.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == count_input_tokens({"messages": MESSAGES})
        for s in spans
    )


def test_streamed_tool_use_is_reassembled(rec: SpanRecorder, client: anthropic.Anthropic) -> None:
    msgs = [{"role": "user", "content": "Where is order ORD-5678?"}]
    plain = client.messages.create(model=MODEL, max_tokens=100, tools=TOOLS, messages=msgs)
    events = list(
        client.messages.create(model=MODEL, max_tokens=100, tools=TOOLS, messages=msgs, stream=True)
    )
    assert [e.delta.partial_json for e in events if e.type == "content_block_delta" and e.index == 1] == [
        "",
        '{"order_id":',
        ' "ORD-5678"}',
    ]
    s_plain, s_stream = rec.spans()
    call = plain.content[1]
    expected = [
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "I'll look that up with lookup_order."},
                {
                    "type": "tool_call",
                    "id": call.id,
                    "name": "lookup_order",
                    "arguments": {"order_id": "ORD-5678"},
                },
            ],
            "finish_reason": "tool_call",
        }
    ]
    assert json.loads(s_plain.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == expected
    assert json.loads(s_stream.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == expected
    assert s_stream.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("tool_use",)
    for key in (sc.GEN_AI_USAGE_INPUT_TOKENS, sc.GEN_AI_USAGE_OUTPUT_TOKENS, sc.GEN_AI_TOOL_DEFINITIONS):
        assert s_stream.attributes[key] == s_plain.attributes[key]


def test_streamed_thinking(rec: SpanRecorder, client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model=MODEL,
        max_tokens=60,
        thinking={"type": "enabled", "budget_tokens": 30},
        messages=[{"role": "user", "content": "[[reply:Yes.]] Open today?"}],
    ) as stream:
        final = stream.get_final_message()
    thought = final.content[0].thinking
    (span,) = rec.spans()
    assert span.attributes[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == count_tokens(thought)
    assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"] == [
        {"type": "reasoning", "content": thought},
        {"type": "text", "content": "Yes."},
    ]


def test_ttft_is_the_first_content_delta(rec: SpanRecorder, client: anthropic.Anthropic) -> None:
    # the fake sends message_start at once and waits 150 ms before the first content delta
    msgs = [{"role": "user", "content": "[[slow:150]] [[reply:late answer]]"}]
    list(client.messages.create(model=MODEL, max_tokens=20, messages=msgs, stream=True))
    (span,) = rec.spans()
    assert span.attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] >= 0.15


def test_error_event_mid_stream_is_recorded_and_reraised(
    rec: SpanRecorder, client: anthropic.Anthropic
) -> None:
    msgs = [{"role": "user", "content": "[[stream_error]] [[reply:partial answer here]]"}]
    stream = client.messages.create(model=MODEL, max_tokens=20, messages=msgs, stream=True)
    with pytest.raises(anthropic.APIStatusError) as info:
        for _ in stream:
            pass
    assert info.value.type == "overloaded_error"
    (span,) = rec.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "APIStatusError"
    assert [e.name for e in span.events] == ["exception"]
    assert sc.GEN_AI_RESPONSE_FINISH_REASONS not in span.attributes
    assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "partial answer here"}]}
    ]


def test_connection_cut_mid_stream_async(rec: SpanRecorder, aclient: anthropic.AsyncAnthropic) -> None:
    msgs = [{"role": "user", "content": "[[cut]] hello"}]

    async def run() -> None:
        async with aclient.messages.stream(model=MODEL, max_tokens=20, messages=msgs) as stream:
            async for _ in stream:
                pass

    with pytest.raises(Exception) as info:
        asyncio.run(run())
    (span,) = rec.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == type(info.value).__name__ == "RemoteProtocolError"


def test_capture_content_false_stream(client: anthropic.Anthropic) -> None:
    with recording(instrument=["anthropic"], capture_content=False) as rec:
        with client.messages.stream(model=MODEL, max_tokens=100, system="Be brief.", messages=MESSAGES) as s:
            s.until_done()
        (span,) = rec.spans()
    reset_global_tracer_provider()
    for key in (sc.GEN_AI_INPUT_MESSAGES, sc.GEN_AI_OUTPUT_MESSAGES, sc.GEN_AI_SYSTEM_INSTRUCTIONS):
        assert key not in span.attributes
    assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == count_tokens(REPLY)


def test_internal_error_in_accumulator_keeps_the_stream_intact(
    rec: SpanRecorder, client: anthropic.Anthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitor import _guard
    from monitor.instrumentation import _anthropic_extract

    monkeypatch.delenv(_guard.RAISE_INTERNAL_ENV, raising=False)

    def boom(self: Any, event: Any) -> bool:
        raise RuntimeError("bug in our accumulator")

    monkeypatch.setattr(_anthropic_extract.StreamAccumulator, "add", boom)
    with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
        assert "".join(stream.text_stream) == REPLY
    (span,) = rec.spans()
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes[sc.GEN_AI_REQUEST_STREAM] is True


def test_sampled_out_calls_return_the_plain_stream(client: anthropic.Anthropic) -> None:
    with recording(instrument=["anthropic"], sample_rate=0.0) as rec:
        stream = client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, stream=True)
        assert type(stream) is anthropic.Stream  # no proxy when nothing will be recorded
        assert _text(list(stream)) == REPLY
        with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as helper:
            assert "".join(helper.text_stream) == REPLY
        assert rec.spans() == []
    reset_global_tracer_provider()
