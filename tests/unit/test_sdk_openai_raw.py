"""``with_raw_response`` / ``with_streaming_response`` through the instrumentor: one span with the
response attributes, and the app's object (its type, its body, its cached parse) left as it was."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai._legacy_response import LegacyAPIResponse
from openai._response import APIResponse, AsyncAPIResponse
from opentelemetry.trace import StatusCode

from monitor import semconv as sc
from monitor.demo.fake_openai import FakeOpenAIServer, count_message_tokens, count_tokens
from monitor.testing import SpanRecorder, recording, reset_global_tracer_provider

REPLY = "Your parcel left the warehouse this morning."
MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": f"Where is my parcel? [[reply:{REPLY}]]"}]
USAGE = {"include_usage": True}


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


def assert_full_chat_span(span: Any, response_id: str, streamed: bool = False) -> None:
    attrs = span.attributes
    assert span.name == "chat gpt-4o-mini"
    assert span.status.status_code is StatusCode.UNSET
    assert attrs[sc.GEN_AI_RESPONSE_ID] == response_id
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == count_message_tokens(MESSAGES)
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == count_tokens(REPLY)
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert json.loads(attrs[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": REPLY}], "finish_reason": "stop"}
    ]
    assert (sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK in attrs) is streamed


def test_raw_response_is_the_apps_and_its_parse_is_cached(rec: SpanRecorder, client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert type(raw) is LegacyAPIResponse  # not a proxy: the app's own object
    (span,) = rec.spans()  # ended at return: the body was already read
    completion = raw.parse()
    assert completion is raw.parse()
    assert completion.choices[0].message.content == REPLY
    assert raw.headers["x-request-id"].startswith("req_fake_")
    assert_full_chat_span(span, completion.id)


def test_raw_response_stream_is_recorded_when_the_app_consumes_it(
    rec: SpanRecorder, client: openai.OpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options=USAGE
    )
    assert type(raw) is LegacyAPIResponse
    stream = raw.parse()
    assert isinstance(stream, openai.Stream)
    assert stream is raw.parse()
    assert rec.spans() == []  # lazy: the body is still unread
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    (span,) = rec.spans()
    assert_full_chat_span(span, chunks[0].id, streamed=True)


def test_raw_stream_never_parsed_ends_when_dropped(rec: SpanRecorder, client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    )
    assert rec.spans() == []
    raw.http_response.close()
    del raw
    gc.collect()
    (span,) = rec.spans()
    assert sc.GEN_AI_RESPONSE_ID not in span.attributes
    assert span.attributes[sc.GEN_AI_REQUEST_STREAM] is True


def test_streaming_response_parse_records_and_with_exit_keeps_one_span(
    rec: SpanRecorder, client: openai.OpenAI
) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    ) as resp:
        assert isinstance(resp, APIResponse)
        assert rec.spans() == []  # the body is not read until the app asks
        completion = resp.parse()
        assert completion is resp.parse()
    (span,) = rec.spans()
    assert_full_chat_span(span, completion.id)


def test_streaming_response_with_sse_stream(rec: SpanRecorder, client: openai.OpenAI) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options=USAGE
    ) as resp:
        stream = resp.parse()
        assert isinstance(stream, openai.Stream)
        chunks = list(stream)
    (span,) = rec.spans()
    assert_full_chat_span(span, chunks[0].id, streamed=True)


def test_streaming_response_read_without_parse_gets_request_attributes_only(
    rec: SpanRecorder, client: openai.OpenAI
) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    ) as resp:
        body = json.loads(b"".join(resp.iter_bytes()))
        assert rec.spans() == []
    assert body["choices"][0]["message"]["content"] == REPLY
    (span,) = rec.spans()  # ended by the with exit
    assert span.attributes[sc.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert sc.GEN_AI_RESPONSE_ID not in span.attributes


def test_async_raw_and_streaming_responses(rec: SpanRecorder, aclient: openai.AsyncOpenAI) -> None:
    async def run() -> tuple[str, str]:
        raw = await aclient.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        assert type(raw) is LegacyAPIResponse
        first = raw.parse().id
        async with aclient.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options=USAGE
        ) as resp:
            assert isinstance(resp, AsyncAPIResponse)
            stream = await resp.parse()
            assert isinstance(stream, openai.AsyncStream)
            chunks = [c async for c in stream]
        return first, chunks[0].id

    first, second = asyncio.run(run())
    s1, s2 = rec.spans()
    assert_full_chat_span(s1, first)
    assert_full_chat_span(s2, second, streamed=True)


def test_raw_error_is_recorded_and_reraised(rec: SpanRecorder, client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "[[error:429]]"}]
        )
    (span,) = rec.spans()
    assert span.attributes[sc.ERROR_TYPE] == "RateLimitError"


def test_raw_responses_api_and_embeddings(rec: SpanRecorder, client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(model="gpt-4o-mini", input=f"[[reply:{REPLY}]]")
    emb = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hello")
    resp, vectors = raw.parse(), emb.parse()
    s1, s2 = rec.spans()
    assert s1.attributes[sc.GEN_AI_RESPONSE_ID] == resp.id
    assert s1.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("completed",)
    assert s2.attributes[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == len(vectors.data[0].embedding)
