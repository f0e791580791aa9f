"""Streaming chat completions through the instrumentor: laziness, type, TTFT, accumulation and the
span ending exactly once (exhaustion, close, ``with`` exit, garbage collection, error mid-stream)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from opentelemetry.trace import StatusCode

from monitor import semconv as sc
from monitor.demo.fake_openai import FakeOpenAIServer, count_message_tokens, count_tokens, fake_markers
from monitor.testing import SpanRecorder, recording, reset_global_tracer_provider

REPLY = "Orders ship within two business days and tracking follows by email."
MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": f"When will it ship? [[reply:{REPLY}]]"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        },
    }
]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def rec() -> Iterator[SpanRecorder]:
    with recording(instrument=["openai"]) as r:
        yield r
    reset_global_tracer_provider()


@pytest.fixture
def client(server: FakeOpenAIServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)


@pytest.fixture
def aclient(server: FakeOpenAIServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)


def _text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_sync_stream_with_usage(rec: SpanRecorder, client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    assert isinstance(stream, openai.Stream)
    assert stream.response.status_code == 200  # attribute passthrough
    assert rec.spans() == []  # lazy: nothing ends before the app reads
    chunks = list(stream)
    assert _text(chunks) == REPLY
    (span,) = rec.spans()
    attrs = dict(span.attributes)
    ttft = attrs.pop(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)
    assert 0 < ttft < (span.end_time - span.start_time) / 1e9
    assert attrs == {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_PROVIDER_NAME: "openai",
        sc.LLM_MONITOR_SPAN_KIND: "llm",
        sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
        sc.GEN_AI_REQUEST_STREAM: True,
        sc.OPENAI_API_TYPE: "chat_completions",
        sc.SERVER_ADDRESS: "127.0.0.1",
        sc.SERVER_PORT: server.port,
        sc.GEN_AI_INPUT_MESSAGES: json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": MESSAGES[0]["content"]}]}],
            separators=(",", ":"),
        ),
        sc.GEN_AI_RESPONSE_ID: chunks[0].id,
        sc.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
        sc.OPENAI_RESPONSE_SYSTEM_FINGERPRINT: "fp_fake",
        sc.GEN_AI_USAGE_INPUT_TOKENS: count_message_tokens(MESSAGES),
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: count_tokens(REPLY),
        sc.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",),
        sc.GEN_AI_OUTPUT_MESSAGES: json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": REPLY}], "finish_reason": "stop"}],
            separators=(",", ":"),
        ),
    }


def test_stream_without_usage_has_no_token_counts(rec: SpanRecorder, client: openai.OpenAI) -> None:
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
        pass
    (span,) = rec.spans()
    assert sc.GEN_AI_USAGE_INPUT_TOKENS not in span.attributes
    assert sc.GEN_AI_USAGE_OUTPUT_TOKENS not in span.attributes
    assert span.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)


def test_ttft_measures_the_slow_first_chunk(rec: SpanRecorder, client: openai.OpenAI) -> None:
    msgs = [{"role": "user", "content": "[[slow:150]] [[reply:late answer]]"}]
    list(client.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True))
    (span,) = rec.spans()
    assert span.attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] >= 0.15


def test_async_stream_as_context_manager(rec: SpanRecorder, aclient: openai.AsyncOpenAI) -> None:
    async def run() -> list[Any]:
        stream = await aclient.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        assert isinstance(stream, openai.AsyncStream)
        async with stream as s:
            return [c async for c in s]

    chunks = asyncio.run(run())
    assert _text(chunks) == REPLY
    (span,) = rec.spans()
    assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == count_tokens(REPLY)
    assert span.attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"][0]["content"] == REPLY


def test_stream_closed_early_ends_once_with_what_arrived(
    rec: SpanRecorder, client: openai.OpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    first, second = next(stream), next(stream)  # role chunk, then the first words
    stream.close()
    with caplog.at_level(logging.WARNING):
        stream.close()
        with contextlib.suppress(Exception):  # whatever the SDK does after close must not end it again
            for _ in stream:
                pass
        del stream
        gc.collect()
    (span,) = rec.spans()
    attrs = span.attributes
    assert sc.GEN_AI_RESPONSE_FINISH_REASONS not in attrs
    assert attrs[sc.GEN_AI_RESPONSE_ID] == first.id
    partial = second.choices[0].delta.content
    assert partial and REPLY.startswith(partial)
    assert json.loads(attrs[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": partial}]}
    ]
    assert span.status.status_code is StatusCode.UNSET
    assert not [r for r in caplog.records if "ended span" in r.getMessage()]


def test_with_block_exit_ends_the_span(rec: SpanRecorder, client: openai.OpenAI) -> None:
    with client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True) as stream:
        next(stream)
        assert rec.spans() == []
    assert len(rec.spans()) == 1


def test_abandoned_stream_ends_on_garbage_collection(rec: SpanRecorder, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    next(stream)
    assert rec.spans() == []
    del stream
    gc.collect()
    (span,) = rec.spans()
    assert span.attributes[sc.GEN_AI_REQUEST_STREAM] is True


def test_streamed_tool_calls_are_reassembled(rec: SpanRecorder, client: openai.OpenAI) -> None:
    msgs = [{"role": "user", "content": "Where is order ORD-5678?"}]
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, tools=TOOLS)
    chunks = list(
        client.chat.completions.create(model="gpt-4o-mini", messages=msgs, tools=TOOLS, stream=True)
    )
    assert chunks
    s_plain, s_stream = rec.spans()
    call = plain.choices[0].message.tool_calls[0]
    expected = [
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": call.id,
                    "name": "lookup_order",
                    "arguments": json.loads(call.function.arguments),
                }
            ],
            "finish_reason": "tool_call",
        }
    ]
    assert json.loads(s_plain.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == expected
    assert json.loads(s_stream.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == expected
    assert s_stream.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("tool_calls",)
    assert s_stream.attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0


def test_error_mid_stream_is_recorded_and_reraised() -> None:
    srv = FakeOpenAIServer(chunk_delay_ms=300).start()
    try:
        client = openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0)
        with recording(instrument=["openai"]) as rec:
            stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
            next(stream)
            srv.stop()  # cuts the connection between two chunks
            with pytest.raises(Exception) as info:
                for _ in stream:
                    pass
            (span,) = rec.spans()
    finally:
        srv.stop()
        reset_global_tracer_provider()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == type(info.value).__name__
    assert [e.name for e in span.events] == ["exception"]
    assert sc.GEN_AI_RESPONSE_FINISH_REASONS not in span.attributes


def test_legacy_completion_stream(rec: SpanRecorder, client: openai.OpenAI) -> None:
    stream = client.completions.create(
        model="gpt-3.5-turbo-instruct",
        prompt="Hi [[reply:hello from the stream]]",
        stream=True,
        stream_options={"include_usage": True},
    )
    text = "".join(c.choices[0].text for c in stream if c.choices)
    (span,) = rec.spans()
    assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": text}], "finish_reason": "stop"}
    ]
    assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == count_tokens(text)


def test_internal_error_in_accumulator_keeps_the_stream_intact(
    rec: SpanRecorder, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitor import _guard
    from monitor.instrumentation import _openai_extract

    monkeypatch.delenv(_guard.RAISE_INTERNAL_ENV, raising=False)

    def boom(self: Any, chunk: Any) -> bool:
        raise RuntimeError("bug in our accumulator")

    monkeypatch.setattr(_openai_extract.ChatAccumulator, "add", boom)
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert _text(chunks) == REPLY
    (span,) = rec.spans()
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes[sc.GEN_AI_REQUEST_STREAM] is True


def test_sampled_out_calls_return_the_plain_stream(client: openai.OpenAI) -> None:
    with recording(instrument=["openai"], sample_rate=0.0) as rec:
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        assert type(stream) is openai.Stream  # no proxy when nothing will be recorded
        assert _text(list(stream)) == REPLY
        assert rec.spans() == []
    reset_global_tracer_provider()


# -- the .stream() helpers, early exits and faults the fake injects ------------------------------------


def _without_ttft(span: Any) -> dict[str, Any]:
    attrs = dict(span.attributes)
    assert attrs.pop(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK) > 0
    attrs.pop(sc.GEN_AI_RESPONSE_ID)
    return attrs


def test_stream_helper_is_one_span_like_the_iterator_form(rec: SpanRecorder, client: openai.OpenAI) -> None:
    options = {"include_usage": True}
    list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options=options
        )
    )
    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=MESSAGES, stream_options=options
    ) as stream:
        assert len(rec.spans()) == 1  # the helper's span is still open
        text = "".join(e.delta for e in stream if e.type == "content.delta")
        final = stream.get_final_completion()
    assert text == REPLY == final.choices[0].message.content
    plain, helper = rec.spans()
    assert helper.name == "chat gpt-4o-mini"
    assert helper.attributes[sc.GEN_AI_RESPONSE_ID] == final.id
    assert _without_ttft(helper) == _without_ttft(plain)
    assert helper.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == count_tokens(REPLY)


def test_async_stream_helper_with_tool_call(rec: SpanRecorder, aclient: openai.AsyncOpenAI) -> None:
    msgs = [{"role": "user", "content": "Where is order ORD-5678?"}]

    async def run() -> Any:
        async with aclient.chat.completions.stream(model="gpt-4o-mini", messages=msgs, tools=TOOLS) as stream:
            async for _ in stream:
                pass
            return await stream.get_final_completion()

    final = asyncio.run(run())
    call = final.choices[0].message.tool_calls[0]
    (span,) = rec.spans()
    assert span.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("tool_calls",)  # raw provider value
    assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": call.id,
                    "name": "lookup_order",
                    "arguments": {"order_id": "ORD-5678"},
                }
            ],
            "finish_reason": "tool_call",  # GenAI enum
        }
    ]


def test_stream_helper_left_early_ends_at_the_with_exit(rec: SpanRecorder, client: openai.OpenAI) -> None:
    with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as stream:
        first = next(e.delta for e in stream if e.type == "content.delta" and e.delta)
        assert rec.spans() == []
    (span,) = rec.spans()
    assert span.status.status_code is StatusCode.UNSET
    assert sc.GEN_AI_RESPONSE_FINISH_REASONS not in span.attributes
    assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": first}]}
    ]


def test_break_then_close_ends_the_span_at_close(rec: SpanRecorder, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    assert rec.spans() == []
    stream.close()
    (span,) = rec.spans()
    assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"] == [
        {"type": "text", "content": chunk.choices[0].delta.content}
    ]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_server_breaking_the_stream_is_an_error_and_the_sdk_error_reaches_the_app(
    rec: SpanRecorder, client: openai.OpenAI, aclient: openai.AsyncOpenAI, mode: str
) -> None:
    kwargs: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "stream": True,
        "extra_headers": fake_markers("[[break:3]]"),
    }
    got: list[Any] = []

    async def consume_async() -> None:
        async for c in await aclient.chat.completions.create(**kwargs):
            got.append(c)

    with pytest.raises(openai.APIConnectionError) as info:
        if mode == "sync":
            for c in client.chat.completions.create(**kwargs):
                got.append(c)
        else:
            asyncio.run(consume_async())
    assert len(got) == 3
    (span,) = rec.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description.startswith("APIConnectionError: ")
    assert span.attributes[sc.ERROR_TYPE] == "APIConnectionError"
    (event,) = span.events
    assert event.attributes["exception.type"].endswith(type(info.value).__name__)
    assert sc.GEN_AI_RESPONSE_FINISH_REASONS not in span.attributes
    partial = "".join(c.choices[0].delta.content or "" for c in got)
    assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"] == [
        {"type": "text", "content": partial}
    ]


def test_length_finish_reason_raw_and_enum(rec: SpanRecorder, client: openai.OpenAI) -> None:
    msgs = [{"role": "user", "content": "[[reply:one two three four]]"}]
    list(client.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True, max_tokens=2))
    (span,) = rec.spans()
    assert span.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("length",)
    assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "one two"}], "finish_reason": "length"}
    ]


def test_stream_response_attribute_keeps_its_type(rec: SpanRecorder, client: openai.OpenAI) -> None:
    import httpx2

    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert isinstance(stream.response, httpx2.Response)
    assert stream.response is stream.response  # one proxy per response, not one per access
    assert stream.response.headers["x-request-id"].startswith("req_fake_")
    stream.response.close()  # closing the HTTP response ends the span once
    stream.close()
    assert len(rec.spans()) == 1
