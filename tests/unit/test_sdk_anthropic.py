"""Anthropic instrumentor, driven through the real ``anthropic`` SDK against the deterministic fake.

Non-streaming ``messages.create`` / ``parse`` (sync and async), tool use, system prompts, media,
prompt caching, errors, content capture, raw responses, context stamps, the SDK's own call span and
patching. Streams (``stream=True`` and the ``messages.stream()`` helper) are in
``test_sdk_anthropic_stream.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from opentelemetry.trace import SpanKind, StatusCode

import monitor
from monitor import _guard, instrumentation
from monitor import semconv as sc
from monitor.demo.fake_anthropic import MEDIA_TOKENS, FakeAnthropicServer, count_input_tokens, count_tokens
from monitor.instrumentation import InstrumentationError, _anthropic_extract
from monitor.instrumentation.anthropic import AnthropicInstrumentor
from monitor.testing import SpanRecorder, recording, reset_global_tracer_provider

MODEL = "claude-haiku-4-5"
RESPONSE_MODEL = "claude-haiku-4-5-20251001"
SYSTEM = "You are a support agent."
REPLY = "Refunds take 5 to 7 business days."
MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": f"How long do refunds take? [[reply:{REPLY}]]"}]
TOOLS: list[dict[str, Any]] = [
    {
        "name": "lookup_order",
        "description": "Find an order by id.",
        "input_schema": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
    }
]
B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as srv:
        yield srv


@pytest.fixture
def rec() -> Iterator[SpanRecorder]:
    with recording(service_name="test", instrument=["anthropic"]) as r:
        yield r
    reset_global_tracer_provider()


@pytest.fixture
def client(server: FakeAnthropicServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key="sk-ant-test", max_retries=0)


@pytest.fixture
def aclient(server: FakeAnthropicServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=server.base_url, api_key="sk-ant-test", max_retries=0)


def create_kwargs(**extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 50,
        "system": SYSTEM,
        "messages": MESSAGES,
        "stop_sequences": ["END"],
        # anthropic 2.x has no sampling keywords; apps send them in the body
        "extra_body": {"temperature": 0.3, "top_p": 0.9, "top_k": 40},
        **extra,
    }


def chat_attributes(server: FakeAnthropicServer, response_id: str, **extra: Any) -> dict[str, Any]:
    """The exact attributes of a non-streamed ``create_kwargs()`` call."""
    return {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_PROVIDER_NAME: "anthropic",
        sc.LLM_MONITOR_SPAN_KIND: "llm",
        sc.GEN_AI_REQUEST_MODEL: MODEL,
        sc.SERVER_ADDRESS: "127.0.0.1",
        sc.SERVER_PORT: server.port,
        sc.GEN_AI_REQUEST_TEMPERATURE: 0.3,
        sc.GEN_AI_REQUEST_TOP_P: 0.9,
        sc.GEN_AI_REQUEST_TOP_K: 40,
        sc.GEN_AI_REQUEST_MAX_TOKENS: 50,
        sc.GEN_AI_REQUEST_STOP_SEQUENCES: ("END",),
        sc.GEN_AI_SYSTEM_INSTRUCTIONS: dumps([{"type": "text", "content": SYSTEM}]),
        sc.GEN_AI_INPUT_MESSAGES: dumps(
            [{"role": "user", "parts": [{"type": "text", "content": MESSAGES[0]["content"]}]}]
        ),
        sc.GEN_AI_RESPONSE_ID: response_id,
        sc.GEN_AI_RESPONSE_MODEL: RESPONSE_MODEL,
        sc.GEN_AI_USAGE_INPUT_TOKENS: count_input_tokens({"system": SYSTEM, "messages": MESSAGES}),
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: count_tokens(REPLY),
        sc.GEN_AI_RESPONSE_FINISH_REASONS: ("end_turn",),
        sc.GEN_AI_OUTPUT_MESSAGES: dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": REPLY}], "finish_reason": "stop"}]
        ),
        **extra,
    }


def test_create_sync_exact_attributes(
    rec: SpanRecorder, client: anthropic.Anthropic, server: FakeAnthropicServer
) -> None:
    msg = client.messages.create(**create_kwargs())
    assert msg.content[0].text == REPLY
    (span,) = rec.spans()
    assert span.name == "chat claude-haiku-4-5"
    assert span.kind is SpanKind.CLIENT
    assert span.parent is None
    assert span.status.status_code is StatusCode.UNSET
    assert span.instrumentation_scope.name == "llm_monitor.anthropic"
    assert dict(span.attributes) == chat_attributes(server, msg.id)
    assert count_input_tokens({"system": SYSTEM, "messages": MESSAGES}) == (5 + 3) + (
        12 + 3
    )  # the rule, by hand
    assert span.resource.attributes[sc.SERVICE_NAME] == "test"


def test_create_async_matches_sync(
    rec: SpanRecorder, aclient: anthropic.AsyncAnthropic, server: FakeAnthropicServer
) -> None:
    async def call() -> Any:
        return await aclient.messages.create(**create_kwargs())

    msg = asyncio.run(call())
    (span,) = rec.spans()
    assert span.name == "chat claude-haiku-4-5"
    assert span.kind is SpanKind.CLIENT
    assert dict(span.attributes) == chat_attributes(server, msg.id)


def test_finish_reasons_keep_the_provider_value(rec: SpanRecorder, client: anthropic.Anthropic) -> None:
    msgs = [{"role": "user", "content": "[[reply:one two three. four]]"}]
    client.messages.create(model=MODEL, max_tokens=2, messages=msgs)
    client.messages.create(model=MODEL, max_tokens=20, stop_sequences=["four"], messages=msgs)
    cut, stopped = rec.spans()
    assert cut.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("max_tokens",)
    assert json.loads(cut.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "one two"}], "finish_reason": "length"}
    ]
    assert cut.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 2
    assert stopped.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop_sequence",)
    assert stopped.attributes[sc.GEN_AI_REQUEST_STOP_SEQUENCES] == ("four",)
    assert json.loads(stopped.attributes[sc.GEN_AI_OUTPUT_MESSAGES])[0]["finish_reason"] == "stop"


def test_tool_use_round_trip(rec: SpanRecorder, client: anthropic.Anthropic) -> None:
    question = {"role": "user", "content": "Where is my order ORD-1234?"}
    first = client.messages.create(model=MODEL, max_tokens=100, tools=TOOLS, messages=[question])
    call = first.content[1]
    assert call.type == "tool_use" and call.input == {"order_id": "ORD-1234"}
    result = '{"status": "shipped"}'
    second = client.messages.create(
        model=MODEL,
        max_tokens=100,
        tools=TOOLS,
        messages=[
            question,
            {"role": "assistant", "content": first.content},  # the SDK's own models, as apps pass them back
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": result}]},
        ],
    )
    s1, s2 = rec.spans()
    assert json.loads(s1.attributes[sc.GEN_AI_TOOL_DEFINITIONS]) == TOOLS
    assert s1.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("tool_use",)
    preamble = {"type": "text", "content": "I'll look that up with lookup_order."}
    tool_call = {
        "type": "tool_call",
        "id": call.id,
        "name": "lookup_order",
        "arguments": {"order_id": "ORD-1234"},
    }
    assert json.loads(s1.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [preamble, tool_call], "finish_reason": "tool_call"}
    ]
    assert s1.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == first.usage.output_tokens == 6 + 3
    assert json.loads(s2.attributes[sc.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": question["content"]}]},
        {"role": "assistant", "parts": [preamble, tool_call]},
        {"role": "user", "parts": [{"type": "tool_call_response", "id": call.id, "response": result}]},
    ]
    assert s2.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("end_turn",)
    assert json.loads(s2.attributes[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"] == [
        {"type": "text", "content": second.content[0].text}
    ]


def test_system_blocks_media_placeholders_and_prompt_cache(
    rec: SpanRecorder, client: anthropic.Anthropic
) -> None:
    system = [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Answer in English.", "cache_control": {"type": "ephemeral"}},
    ]
    content = [
        {"type": "text", "text": "What are these? [[reply:A cat and an invoice.]]"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": B64}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": B64}},
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "confidential memo"},
        },
    ]
    nested = [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_1",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        },
        {
            "type": "tool_result",
            "tool_use_id": "toolu_2",
            "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": B64}}
            ],
        },
    ]
    messages = [
        {"role": "user", "content": "Look up two things."},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Two tools needed.", "signature": "sig"},
                {"type": "tool_use", "id": "toolu_1", "name": "a", "input": {}},
                {"type": "tool_use", "id": "toolu_2", "name": "b", "input": {"x": 1}},
            ],
        },
        {"role": "user", "content": [*nested, *content]},
    ]
    for _ in range(2):  # the second call reads the prefix the first one cached
        client.messages.create(model=MODEL, max_tokens=30, system=system, messages=messages)
    first, second = rec.spans()
    attrs = first.attributes
    assert json.loads(attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS]) == [
        {"type": "text", "content": "Be brief."},
        {"type": "text", "content": "Answer in English."},
    ]
    assert json.loads(attrs[sc.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Look up two things."}]},
        {
            "role": "assistant",
            "parts": [
                {"type": "reasoning", "content": "Two tools needed."},
                {"type": "tool_call", "id": "toolu_1", "name": "a", "arguments": {}},
                {"type": "tool_call", "id": "toolu_2", "name": "b", "arguments": {"x": 1}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"type": "tool_call_response", "id": "toolu_1", "response": "ab"},
                {
                    "type": "tool_call_response",
                    "id": "toolu_2",
                    "response": [{"type": "blob", "modality": "image", "mime_type": "image/jpeg"}],
                },
                {"type": "text", "content": content[0]["text"]},
                {"type": "blob", "modality": "image", "mime_type": "image/png"},
                {"type": "uri", "modality": "image", "uri": "https://example.com/cat.png"},
                {"type": "blob", "modality": "document", "mime_type": "application/pdf"},
                {"type": "blob", "modality": "document", "mime_type": "text/plain"},
            ],
        },
    ]
    everything = json.dumps({k: v for k, v in attrs.items()}, default=str)
    assert B64 not in everything and "confidential memo" not in everything
    prefix = count_tokens("Be brief.") + 3 + count_tokens("Answer in English.")
    total = count_input_tokens({"system": system, "messages": messages})
    # user 4+3; assistant thinking 3+3, 'a {}' 2, 'b {"x": 1}' 3; tool results 2+3 and an image; text 8; 4 media
    assert total == prefix + (4 + 3) + (3 + 3 + 2 + 3) + (2 + 3 + MEDIA_TOKENS) + 8 + 4 * MEDIA_TOKENS
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == total  # includes cached tokens, as OTel asks
    assert attrs[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] == prefix
    assert sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS not in attrs
    assert second.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == total
    assert second.attributes[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == prefix
    assert sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS not in second.attributes


def test_thinking_output_and_reasoning_tokens(rec: SpanRecorder, client: anthropic.Anthropic) -> None:
    msg = client.messages.create(
        model=MODEL,
        max_tokens=60,
        thinking={"type": "enabled", "budget_tokens": 30},
        messages=[{"role": "user", "content": "[[reply:Yes.]] Is it open?"}],
    )
    thought = msg.content[0].thinking
    (span,) = rec.spans()
    assert span.attributes[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == count_tokens(thought)
    assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == count_tokens(thought) + 1
    assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [{"type": "reasoning", "content": thought}, {"type": "text", "content": "Yes."}],
            "finish_reason": "stop",
        }
    ]


@pytest.mark.parametrize(
    ("status", "cls"),
    [(429, anthropic.RateLimitError), (529, anthropic.OverloadedError), (500, anthropic.InternalServerError)],
)
def test_status_errors_are_recorded_and_reraised(
    rec: SpanRecorder, client: anthropic.Anthropic, status: int, cls: type[Exception]
) -> None:
    with pytest.raises(cls) as info:
        client.messages.create(
            model=MODEL, max_tokens=5, messages=[{"role": "user", "content": f"[[error:{status}]]"}]
        )
    assert info.value.__cause__ is None
    (span,) = rec.spans()
    name = cls.__name__
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description.startswith(f"{name}: Error code: {status}")
    assert span.attributes[sc.ERROR_TYPE] == name
    assert span.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == status
    (event,) = span.events
    assert event.name == "exception" and event.attributes["exception.type"].endswith(name)
    assert sc.GEN_AI_RESPONSE_ID not in span.attributes and sc.GEN_AI_OUTPUT_MESSAGES not in span.attributes


def test_exception_object_and_traceback_are_the_sdks(rec: SpanRecorder, client: anthropic.Anthropic) -> None:
    sentinel = anthropic.APIConnectionError(request=None)  # type: ignore[arg-type]

    def failing_post(*args: Any, **kwargs: Any) -> Any:
        raise sentinel

    client.messages._post = failing_post  # type: ignore[method-assign]
    with pytest.raises(anthropic.APIConnectionError) as info:
        client.messages.create(**create_kwargs())
    assert info.value is sentinel
    assert info.value.__context__ is None
    tb, frames = info.value.__traceback__, []
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert frames[-1] == "failing_post"
    assert rec.one("chat claude-haiku-4-5").attributes[sc.ERROR_TYPE] == "APIConnectionError"


def test_connection_refused(rec: SpanRecorder, free_port: int) -> None:
    dead = anthropic.Anthropic(base_url=f"http://127.0.0.1:{free_port}", api_key="k", max_retries=0)
    with pytest.raises(anthropic.APIConnectionError):
        dead.messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)
    span = rec.one("chat claude-haiku-4-5")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "APIConnectionError"
    assert span.attributes[sc.SERVER_PORT] == free_port
    assert sc.HTTP_RESPONSE_STATUS_CODE not in span.attributes


def test_capture_content_false_drops_every_message_attribute(client: anthropic.Anthropic) -> None:
    with recording(instrument=["anthropic"], capture_content=False) as rec:
        client.messages.create(**create_kwargs(tools=TOOLS))
        (span,) = rec.spans()
    reset_global_tracer_provider()
    for key in (
        sc.GEN_AI_INPUT_MESSAGES,
        sc.GEN_AI_OUTPUT_MESSAGES,
        sc.GEN_AI_SYSTEM_INSTRUCTIONS,
        sc.GEN_AI_TOOL_DEFINITIONS,
    ):
        assert key not in span.attributes
    assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == count_input_tokens(
        {"system": SYSTEM, "messages": MESSAGES, "tools": TOOLS}
    )
    assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == count_tokens(REPLY)  # [[reply]] beats tools
    assert span.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("end_turn",)


def test_with_raw_response_keeps_the_body_for_the_app(
    rec: SpanRecorder, client: anthropic.Anthropic, server: FakeAnthropicServer
) -> None:
    raw = client.messages.with_raw_response.create(**create_kwargs())
    assert raw.headers["request-id"].startswith("req_fake_")
    msg = raw.parse()
    assert msg.content[0].text == REPLY
    (span,) = rec.spans()
    assert dict(span.attributes) == chat_attributes(server, msg.id)

    rec.clear()
    raw_stream = client.messages.with_raw_response.create(**create_kwargs(stream=True))
    (span,) = rec.spans()  # ended when the call returned: reading the body would take it from the app
    assert span.attributes[sc.GEN_AI_REQUEST_STREAM] is True
    assert sc.GEN_AI_RESPONSE_ID not in span.attributes
    events = list(raw_stream.parse())
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == REPLY

    rec.clear()
    with client.messages.with_streaming_response.create(**create_kwargs()) as resp:
        body = json.loads(resp.read())
    assert body["content"][0]["text"] == REPLY
    (span,) = rec.spans()
    assert span.name == "chat claude-haiku-4-5" and sc.GEN_AI_RESPONSE_ID not in span.attributes


def test_parse_structured_output(rec: SpanRecorder, client: anthropic.Anthropic) -> None:
    from pydantic import BaseModel

    class Order(BaseModel):
        order_id: str
        shipped: bool

    msg = client.messages.parse(
        model=MODEL,
        max_tokens=50,
        output_format=Order,
        messages=[{"role": "user", "content": "Status of ORD-777?"}],
    )
    assert msg.parsed_output == Order(order_id="ORD-777", shipped=True)
    (span,) = rec.spans()
    assert span.attributes[sc.GEN_AI_OUTPUT_TYPE] == "json"
    assert span.attributes[sc.GEN_AI_RESPONSE_ID] == msg.id
    assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"] == [
        {"type": "text", "content": msg.content[0].text}
    ]


def test_context_and_prompt_stamps_land_on_the_span(rec: SpanRecorder, client: anthropic.Anthropic) -> None:
    with (
        monitor.context(user_id="u-42", session_id="s-7", tags=["beta"]),
        monitor.prompt("refund-answer", "v3"),
    ):
        client.messages.create(model=MODEL, max_tokens=20, messages=MESSAGES)
    attrs = rec.one("chat claude-haiku-4-5").attributes
    assert attrs[sc.USER_ID] == "u-42"
    assert attrs[sc.SESSION_ID] == attrs[sc.GEN_AI_CONVERSATION_ID] == "s-7"
    assert attrs[sc.LLM_MONITOR_TAGS] == ("beta",)
    assert (attrs[sc.LLM_MONITOR_PROMPT_NAME], attrs[sc.LLM_MONITOR_PROMPT_VERSION]) == (
        "refund-answer",
        "v3",
    )


def test_llm_span_nests_under_decorated_spans(rec: SpanRecorder, client: anthropic.Anthropic) -> None:
    @monitor.tool
    def answer(question: str) -> str:
        msg = client.messages.create(
            model=MODEL, max_tokens=20, messages=[{"role": "user", "content": question}]
        )
        return str(msg.content[0].text)

    @monitor.chain
    def pipeline(question: str) -> str:
        return answer(question)

    assert pipeline("[[reply:done]] go") == "done"
    llm, tool_span, chain_span = rec.spans()
    assert (llm.name, tool_span.name, chain_span.name) == (
        "chat claude-haiku-4-5",
        "execute_tool answer",
        "invoke_workflow pipeline",
    )
    assert chain_span.parent is None
    assert tool_span.parent.span_id == chain_span.context.span_id
    assert llm.parent.span_id == tool_span.context.span_id
    assert len({s.context.trace_id for s in (llm, tool_span, chain_span)}) == 1


def test_sdk_own_call_span_is_replaced_but_context_still_propagates(
    rec: SpanRecorder, client: anthropic.Anthropic, server: FakeAnthropicServer
) -> None:
    server.clear()
    client.messages.count_tokens(model=MODEL, messages=MESSAGES)  # not traced by us: the SDK's span stays
    client.messages.create(model=MODEL, max_tokens=20, messages=MESSAGES)
    sdk, ours = rec.spans()
    assert (sdk.name, sdk.instrumentation_scope.name) == (
        "anthropic.messages.count_tokens",
        "com.anthropic.sdk.python",
    )
    assert ours.name == "chat claude-haiku-4-5" and ours.parent is None
    _, headers = server.request_headers
    trace_id, span_id = headers["traceparent"].split("-")[1:3]
    assert (trace_id, span_id) == (
        format(ours.context.trace_id, "032x"),
        format(ours.context.span_id, "016x"),
    )


def test_beta_messages_and_the_sdks_tool_runner(rec: SpanRecorder, client: anthropic.Anthropic) -> None:
    from anthropic import beta_tool

    @beta_tool
    def lookup_order(order_id: str) -> str:
        """Find an order by id.

        Args:
            order_id: the order id
        """
        return f"{order_id} shipped"

    plain = client.beta.messages.create(model=MODEL, max_tokens=20, messages=MESSAGES)
    with client.beta.messages.stream(model=MODEL, max_tokens=20, messages=MESSAGES) as stream:
        assert stream.get_final_text() == REPLY
    final = client.beta.messages.tool_runner(
        model=MODEL,
        max_tokens=100,
        tools=[lookup_order],
        messages=[{"role": "user", "content": "Where is ORD-3141?"}],
    ).until_done()
    assert final.content[0].text.startswith("I looked that up with the tool: ORD-3141 shipped.")
    s_plain, s_stream, chat1, tool, chat2, runner = rec.spans()
    assert s_plain.attributes[sc.GEN_AI_RESPONSE_ID] == plain.id
    assert s_stream.attributes[sc.GEN_AI_REQUEST_STREAM] is True
    assert s_stream.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == count_tokens(REPLY)
    # the SDK's own agent and tool spans stay; each model call inside the run is one span of ours
    assert [(s.name, s.instrumentation_scope.name) for s in (chat1, tool, chat2, runner)] == [
        ("chat claude-haiku-4-5", "llm_monitor.anthropic"),
        ("anthropic.custom_tool_use lookup_order", "com.anthropic.sdk.python"),
        ("chat claude-haiku-4-5", "llm_monitor.anthropic"),
        ("anthropic.messages.tool_runner", "com.anthropic.sdk.python"),
    ]
    assert {s.parent.span_id for s in (chat1, tool, chat2)} == {runner.context.span_id}
    assert chat1.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("tool_use",)
    call_id = json.loads(chat1.attributes[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"][1]["id"]
    assert json.loads(
        chat2.attributes[sc.GEN_AI_INPUT_MESSAGES]
    ) == [  # the SDK's thread sends only the new turn
        {
            "role": "user",
            "parts": [{"type": "tool_call_response", "id": call_id, "response": "ORD-3141 shipped"}],
        }
    ]


def test_instrument_and_uninstrument_are_idempotent_and_restore(client: anthropic.Anthropic) -> None:
    from anthropic import _base_client
    from anthropic.resources.beta.messages import messages as beta
    from anthropic.resources.messages.messages import AsyncMessages, Messages

    owners = (Messages, AsyncMessages, beta.Messages, beta.AsyncMessages)
    targets = [(owner, n) for owner in owners for n in ("create", "parse", "stream")]
    originals = [vars(owner)[n] for owner, n in targets] + [vars(_base_client)["start_api_call_span"]]
    with recording(instrument=[]) as rec:
        inst = AnthropicInstrumentor()
        inst.instrument()
        inst.instrument()
        patched = vars(Messages)["create"]
        assert patched is not originals[0]
        assert patched.__wrapped__ is originals[0]  # wrapped once, not twice
        assert inst.active
        client.messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)
        inst.uninstrument()
        inst.uninstrument()
        assert [vars(owner)[n] for owner, n in targets] + [
            vars(_base_client)["start_api_call_span"]
        ] == originals
        assert all(a is b for a, b in zip([vars(o)[n] for o, n in targets], originals, strict=False))
        assert not inst.active
        client.messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)  # the SDK traces itself again
        ours, sdk_own = rec.spans()
    reset_global_tracer_provider()
    assert ours.name == "chat claude-haiku-4-5"
    assert (sdk_own.name, sdk_own.instrumentation_scope.name) == (
        "anthropic.messages.create",
        "com.anthropic.sdk.python",
    )


def test_registry_auto_and_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert AnthropicInstrumentor in instrumentation.select("auto")
    assert instrumentation.select(["anthropic", "anthropic"]) == [AnthropicInstrumentor]
    monkeypatch.setattr(instrumentation, "library_installed", lambda name: name != "anthropic")
    assert AnthropicInstrumentor not in instrumentation.select("auto")  # missing library: silent
    with pytest.raises(InstrumentationError, match=r"needs the 'anthropic' package.*pip install anthropic"):
        instrumentation.select(["anthropic"])


def test_internal_error_in_extraction_does_not_break_the_call(
    rec: SpanRecorder,
    client: anthropic.Anthropic,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv(_guard.RAISE_INTERNAL_ENV, raising=False)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug in our extractor")

    monkeypatch.setattr(_anthropic_extract, "response_attributes", boom)
    before = _guard.internal_error_count()
    with caplog.at_level(logging.WARNING, logger="monitor"):
        for _ in range(3):
            assert client.messages.create(**create_kwargs()).content[0].text == REPLY
    spans = rec.spans()
    assert len(spans) == 3  # each span still ends, just without response attributes
    assert all(sc.GEN_AI_RESPONSE_ID not in s.attributes for s in spans)
    assert all(s.status.status_code is StatusCode.UNSET for s in spans)
    assert _guard.internal_error_count() - before == 3
    assert len([r for r in caplog.records if "internal error" in r.getMessage()]) == 1


@pytest.mark.parametrize("defer", ["1", "0"])
def test_internal_error_in_the_request_extractor_still_records_the_call(
    client: anthropic.Anthropic, monkeypatch: pytest.MonkeyPatch, defer: str
) -> None:
    """Our request extractor raising loses the request attributes only: our span (which replaces the SDK's
    own call span as usual) keeps its name, model, usage, response and status, marked with
    llm_monitor.telemetry.error; logged once. Deferred ("1", built on the finisher) and eager ("0")."""
    monkeypatch.setenv("LLM_MONITOR_DEFER", defer)
    monkeypatch.delenv(_guard.RAISE_INTERNAL_ENV, raising=False)
    monkeypatch.setattr(_anthropic_extract, "input_messages", lambda *a: 1 / 0)
    before = _guard.internal_error_count()
    with recording(service_name="test", instrument=["anthropic"]) as r:
        msg = client.messages.create(**create_kwargs())
        assert msg.content[0].text == REPLY
        (span,) = r.spans()
    reset_global_tracer_provider()
    assert span.instrumentation_scope.name == "llm_monitor.anthropic"
    assert span.name == f"chat {MODEL}"
    assert span.status.status_code is StatusCode.UNSET
    a = dict(span.attributes)
    assert {k: a[k] for k in list(a)[:5]} == {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_PROVIDER_NAME: "anthropic",
        sc.LLM_MONITOR_SPAN_KIND: "llm",
        sc.LLM_MONITOR_TELEMETRY_ERROR: "request_attributes",
        sc.GEN_AI_REQUEST_MODEL: MODEL,
    }
    assert sc.GEN_AI_INPUT_MESSAGES not in a and sc.GEN_AI_SYSTEM_INSTRUCTIONS not in a
    assert a[sc.GEN_AI_RESPONSE_ID] == msg.id
    assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == msg.usage.input_tokens
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == msg.usage.output_tokens
    assert _guard.internal_error_count() - before == 1


def test_internal_error_raises_under_test_flag(
    rec: SpanRecorder, client: anthropic.Anthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_guard.RAISE_INTERNAL_ENV, "1")
    monkeypatch.setattr(_anthropic_extract, "input_messages", lambda *a: 1 / 0)
    assert client.messages.create(**create_kwargs()).content[0].text == REPLY
    with pytest.raises(ZeroDivisionError):  # from the finisher, at the next flush
        rec.spans()
