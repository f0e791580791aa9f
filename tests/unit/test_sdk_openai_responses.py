"""The Responses API through the instrumentor: ``responses.create`` (sync, async, streamed), the
``responses.stream()`` helper, ``responses.parse``, input/output items, failures reported inside the
stream, and patching. Driven by the real ``openai`` SDK against the fake server."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from opentelemetry.trace import SpanKind, StatusCode

from monitor import semconv as sc
from monitor.demo.fake_openai import FakeOpenAIServer, count_tokens, fake_markers
from monitor.demo.fake_responses import FAILURE_MESSAGE, reasoning_text, response_input_tokens
from monitor.testing import SpanRecorder, recording, reset_global_tracer_provider

REPLY = "Refunds reach your card within 5 to 7 business days."
QUESTION = f"How long do refunds take? [[reply:{REPLY}]]"
INSTRUCTIONS = "You are a support agent."
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "lookup_order",
        "description": "Find an order by id.",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
    }
]


def js(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


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


def expected(server: FakeOpenAIServer, response_id: str, **extra: Any) -> dict[str, Any]:
    """Exact attributes of a ``QUESTION`` call with instructions, temperature, top_p, max_output_tokens."""
    body = {"input": QUESTION, "instructions": INSTRUCTIONS}
    return {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_PROVIDER_NAME: "openai",
        sc.LLM_MONITOR_SPAN_KIND: "llm",
        sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
        sc.SERVER_ADDRESS: "127.0.0.1",
        sc.SERVER_PORT: server.port,
        sc.OPENAI_API_TYPE: "responses",
        sc.GEN_AI_REQUEST_TEMPERATURE: 0.2,
        sc.GEN_AI_REQUEST_TOP_P: 0.8,
        sc.GEN_AI_REQUEST_MAX_TOKENS: 200,
        sc.GEN_AI_SYSTEM_INSTRUCTIONS: js([{"type": "text", "content": INSTRUCTIONS}]),
        sc.GEN_AI_INPUT_MESSAGES: js([{"role": "user", "parts": [{"type": "text", "content": QUESTION}]}]),
        sc.GEN_AI_RESPONSE_ID: response_id,
        sc.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
        sc.OPENAI_RESPONSE_SERVICE_TIER: "default",
        sc.GEN_AI_USAGE_INPUT_TOKENS: response_input_tokens(body),
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: count_tokens(REPLY),
        sc.GEN_AI_RESPONSE_FINISH_REASONS: ("completed",),
        sc.GEN_AI_OUTPUT_MESSAGES: js(
            [{"role": "assistant", "parts": [{"type": "text", "content": REPLY}], "finish_reason": "stop"}]
        ),
        **extra,
    }


PARAMS: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "input": QUESTION,
    "instructions": INSTRUCTIONS,
    "temperature": 0.2,
    "top_p": 0.8,
    "max_output_tokens": 200,
}


def test_create_sync_exact_attributes(
    rec: SpanRecorder, client: openai.OpenAI, server: FakeOpenAIServer
) -> None:
    resp = client.responses.create(**PARAMS)
    assert resp.output_text == REPLY
    (span,) = rec.spans()
    assert span.name == "chat gpt-4o-mini"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes) == expected(server, resp.id)


def test_create_async_matches_sync(
    rec: SpanRecorder, aclient: openai.AsyncOpenAI, server: FakeOpenAIServer
) -> None:
    resp = asyncio.run(aclient.responses.create(**PARAMS))
    (span,) = rec.spans()
    assert span.name == "chat gpt-4o-mini"
    assert dict(span.attributes) == expected(server, resp.id)


def test_stream_sync_keeps_type_and_laziness(
    rec: SpanRecorder, client: openai.OpenAI, server: FakeOpenAIServer
) -> None:
    stream = client.responses.create(**PARAMS, stream=True)
    assert isinstance(stream, openai.Stream)
    assert rec.spans() == []
    events = list(stream)
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == REPLY
    (span,) = rec.spans()
    attrs = dict(span.attributes)
    ttft = attrs.pop(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)
    assert 0 < ttft < (span.end_time - span.start_time) / 1e9
    assert attrs == expected(server, events[-1].response.id, **{sc.GEN_AI_REQUEST_STREAM: True})


def test_stream_async(rec: SpanRecorder, aclient: openai.AsyncOpenAI, server: FakeOpenAIServer) -> None:
    async def run() -> list[Any]:
        stream = await aclient.responses.create(**PARAMS, stream=True)
        assert isinstance(stream, openai.AsyncStream)
        return [e async for e in stream]

    events = asyncio.run(run())
    (span,) = rec.spans()
    attrs = dict(span.attributes)
    assert attrs.pop(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK) > 0
    assert attrs == expected(server, events[-1].response.id, **{sc.GEN_AI_REQUEST_STREAM: True})


def test_stream_helper_makes_exactly_one_span(
    rec: SpanRecorder, client: openai.OpenAI, server: FakeOpenAIServer
) -> None:
    helper_params = {k: v for k, v in PARAMS.items()}
    with client.responses.stream(**helper_params) as stream:
        assert rec.spans() == []
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == REPLY == final.output_text
    (span,) = rec.spans()
    attrs = dict(span.attributes)
    assert attrs.pop(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK) > 0
    assert attrs == expected(server, final.id, **{sc.GEN_AI_REQUEST_STREAM: True})
    assert [p for p, _ in server.requests].count("/v1/responses") >= 1


def test_async_stream_helper_with_tool_call(rec: SpanRecorder, aclient: openai.AsyncOpenAI) -> None:
    async def run() -> Any:
        async with aclient.responses.stream(
            model="gpt-4o-mini", input="Where is order ORD-5678?", tools=TOOLS
        ) as stream:
            deltas = [e.delta async for e in stream if e.type == "response.function_call_arguments.delta"]
            return deltas, await stream.get_final_response()

    deltas, final = asyncio.run(run())
    call = final.output[0]
    assert call.type == "function_call" and "".join(deltas) == call.arguments
    (span,) = rec.spans()
    assert span.attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert span.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("completed",)
    assert json.loads(span.attributes[sc.GEN_AI_TOOL_DEFINITIONS]) == TOOLS
    assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": call.call_id,
                    "name": "lookup_order",
                    "arguments": {"order_id": "ORD-5678"},
                }
            ],
            "finish_reason": "tool_call",
        }
    ]


def test_stream_helper_left_early_ends_once_with_partial_output(
    rec: SpanRecorder, client: openai.OpenAI
) -> None:
    with client.responses.stream(model="gpt-4o-mini", input=QUESTION) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                first = event.delta
                break
        assert rec.spans() == []
    (span,) = rec.spans()  # ended by the helper closing the HTTP response, not by GC
    assert span.status.status_code is StatusCode.UNSET
    assert sc.GEN_AI_RESPONSE_FINISH_REASONS not in span.attributes
    assert sc.GEN_AI_USAGE_INPUT_TOKENS not in span.attributes
    assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": first}]}
    ]
    del stream
    gc.collect()
    assert len(rec.spans()) == 1


def test_input_items_map_to_messages_with_tool_parts(rec: SpanRecorder, client: openai.OpenAI) -> None:
    args = '{"order_id": "ORD-1"}'
    items: list[dict[str, Any]] = [
        {"role": "developer", "content": "Answer in one sentence."},
        {"role": "user", "content": [{"type": "input_text", "text": "Where is ORD-1?"}]},
        {
            "type": "message",
            "role": "assistant",
            "id": "msg_1",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Let me check.", "annotations": []}],
        },
        {"type": "function_call", "call_id": "call_1", "name": "lookup_order", "arguments": args},
        {"type": "function_call_output", "call_id": "call_1", "output": '{"status": "shipped"}'},
    ]
    resp = client.responses.create(
        model="gpt-4o-mini", input=items, tools=TOOLS, previous_response_id="resp_prev_1"
    )
    (span,) = rec.spans()
    attrs = span.attributes
    assert attrs[sc.LLM_MONITOR_OPENAI_PREVIOUS_RESPONSE_ID] == "resp_prev_1"
    assert json.loads(attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS]) == [
        {"type": "text", "content": "Answer in one sentence."}
    ]
    assert json.loads(attrs[sc.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Where is ORD-1?"}]},
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "Let me check."},
                {
                    "type": "tool_call",
                    "id": "call_1",
                    "name": "lookup_order",
                    "arguments": {"order_id": "ORD-1"},
                },
            ],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "call_1", "response": '{"status": "shipped"}'}],
        },
    ]
    # after a tool result the fake answers in text, quoting it
    assert json.loads(attrs[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": resp.output_text}],
            "finish_reason": "stop",
        }
    ]
    assert "shipped" in resp.output_text
    body = {"input": items}
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == response_input_tokens(body)


def test_reasoning_summary_and_cached_and_reasoning_tokens(rec: SpanRecorder, client: openai.OpenAI) -> None:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "instructions": INSTRUCTIONS,
        "input": [{"role": "user", "content": "Hi"}, {"role": "user", "content": QUESTION}],
        "reasoning": {"effort": "low", "summary": "auto"},
        "prompt_cache_key": "support-v1",
    }
    resp = client.responses.create(**body)
    (span,) = rec.spans()
    attrs = span.attributes
    thought = reasoning_text(body)
    cached = response_input_tokens({**body, "input": body["input"][:1]})  # all but the last message
    assert resp.usage.input_tokens_details.cached_tokens == cached > 0
    assert attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == cached
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == response_input_tokens(body)
    assert attrs[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == count_tokens(thought)
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == count_tokens(thought) + count_tokens(REPLY)
    assert json.loads(attrs[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [{"type": "reasoning", "content": thought}, {"type": "text", "content": REPLY}],
            "finish_reason": "stop",
        }
    ]


def test_streamed_reasoning_summary_is_reassembled(rec: SpanRecorder, client: openai.OpenAI) -> None:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "input": QUESTION,
        "reasoning": {"effort": "low", "summary": "auto"},
    }
    events = list(client.responses.create(**body, stream=True))
    assert any(e.type == "response.reasoning_summary_text.delta" for e in events)
    (span,) = rec.spans()
    parts = json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"]
    assert parts == [
        {"type": "reasoning", "content": reasoning_text(body)},
        {"type": "text", "content": REPLY},
    ]


def test_incomplete_maps_to_length(rec: SpanRecorder, client: openai.OpenAI) -> None:
    resp = client.responses.create(
        model="gpt-4o-mini", input="[[reply:one two three four five]]", max_output_tokens=3
    )
    assert resp.status == "incomplete"
    (span,) = rec.spans()
    assert span.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("max_output_tokens",)
    assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "one two three"}],
            "finish_reason": "length",
        }
    ]
    assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 3
    assert span.status.status_code is StatusCode.UNSET


@pytest.mark.parametrize("fault", ["response.failed", "error"])
def test_failure_inside_the_stream_marks_the_span(
    rec: SpanRecorder, client: openai.OpenAI, fault: str
) -> None:
    stream = client.responses.create(
        model="gpt-4o-mini", input=QUESTION, stream=True, extra_headers=fake_markers(f"[[fail:{fault}]]")
    )
    events = list(stream)  # the SDK raises nothing: the failure is an event
    assert events[-1].type == fault
    (span,) = rec.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == f"server_error: {FAILURE_MESSAGE}"
    assert span.attributes[sc.ERROR_TYPE] == "server_error"
    assert span.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("failed",)
    first = next(e.delta for e in events if e.type == "response.output_text.delta")
    assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": first}], "finish_reason": "error"}
    ]


def test_connection_cut_mid_stream_reraises_the_sdk_error(rec: SpanRecorder, client: openai.OpenAI) -> None:
    stream = client.responses.create(
        model="gpt-4o-mini", input=QUESTION, stream=True, extra_headers=fake_markers("[[break:5]]")
    )
    seen = []
    with pytest.raises(openai.APIConnectionError) as info:
        for event in stream:
            seen.append(event.type)
    assert len(seen) == 5
    (span,) = rec.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "APIConnectionError"
    (event,) = span.events
    assert event.attributes["exception.type"].endswith(type(info.value).__name__)


def test_http_error_is_recorded_and_reraised(rec: SpanRecorder, client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="gpt-4o-mini", input="[[error:429]] hi")
    (span,) = rec.spans()
    assert span.attributes[sc.ERROR_TYPE] == "RateLimitError"
    assert span.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 429
    assert span.status.status_code is StatusCode.ERROR


def test_parse_makes_one_span_with_json_output(rec: SpanRecorder, client: openai.OpenAI) -> None:
    from pydantic import BaseModel

    class Answer(BaseModel):
        answer: str
        confidence: float

    resp = client.responses.parse(model="gpt-4o-mini", input="Is it shipped?", text_format=Answer)
    assert isinstance(resp.output_parsed, Answer)
    (span,) = rec.spans()
    assert span.attributes[sc.GEN_AI_OUTPUT_TYPE] == "json"
    assert span.attributes[sc.GEN_AI_RESPONSE_ID] == resp.id
    assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"] == [
        {"type": "text", "content": resp.output_text}
    ]


def test_conversation_id_and_service_tier(rec: SpanRecorder, client: openai.OpenAI) -> None:
    client.responses.create(
        model="gpt-4o-mini", input=QUESTION, conversation="conv_123", service_tier="flex", stream=False
    )
    client.responses.create(model="gpt-4o-mini", input=QUESTION, service_tier="auto")
    first, second = rec.spans()
    assert first.attributes[sc.GEN_AI_CONVERSATION_ID] == "conv_123"
    assert first.attributes[sc.OPENAI_REQUEST_SERVICE_TIER] == "flex"
    assert first.attributes[sc.OPENAI_RESPONSE_SERVICE_TIER] == "flex"
    assert sc.OPENAI_REQUEST_SERVICE_TIER not in second.attributes  # "auto" is the default: left out


def test_capture_content_false_drops_texts(client: openai.OpenAI) -> None:
    with recording(instrument=["openai"], capture_content=False) as rec:
        client.responses.create(**PARAMS, tools=TOOLS)
        list(client.responses.create(**PARAMS, stream=True))
        spans = rec.spans()
    reset_global_tracer_provider()
    assert len(spans) == 2
    for span in spans:
        for key in (
            sc.GEN_AI_INPUT_MESSAGES,
            sc.GEN_AI_OUTPUT_MESSAGES,
            sc.GEN_AI_SYSTEM_INSTRUCTIONS,
            sc.GEN_AI_TOOL_DEFINITIONS,
        ):
            assert key not in span.attributes
        assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == count_tokens(REPLY)
        assert span.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("completed",)


def test_user_exception_object_is_unchanged(rec: SpanRecorder, client: openai.OpenAI) -> None:
    sentinel = openai.APIConnectionError(request=None)  # type: ignore[arg-type]

    def failing_post(*args: Any, **kwargs: Any) -> Any:
        raise sentinel

    client.responses._post = failing_post  # type: ignore[method-assign]
    with pytest.raises(openai.APIConnectionError) as info:
        client.responses.create(model="gpt-4o-mini", input="hi")
    assert info.value is sentinel
    assert rec.one("chat gpt-4o-mini").attributes[sc.ERROR_TYPE] == "APIConnectionError"


def test_uninstrument_restores_responses_methods() -> None:
    from openai.resources.responses.responses import AsyncResponses, Responses

    originals = [vars(cls)[name] for cls in (Responses, AsyncResponses) for name in ("create", "parse")]
    with recording(instrument=["openai"]):
        patched = [vars(cls)[name] for cls in (Responses, AsyncResponses) for name in ("create", "parse")]
        assert all(p is not o and p.__wrapped__ is o for p, o in zip(patched, originals, strict=True))
    reset_global_tracer_provider()
    assert [
        vars(cls)[name] for cls in (Responses, AsyncResponses) for name in ("create", "parse")
    ] == originals
