"""The fake Anthropic Messages API, driven by the real ``anthropic`` SDK (and raw HTTP for the wire).

The SDK is the judge of wire compatibility: if its SSE parser, stream helpers and error classes
accept what the fake sends, the instrumentor tests on top can trust it.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from monitor.demo.fake_anthropic import (
    MEDIA_TOKENS,
    FakeAnthropicServer,
    count_input_tokens,
    count_tokens,
    fake_markers,
    resolve_model,
)
from monitor.demo.fake_replies import stream_pieces

TOOLS: list[dict[str, Any]] = [
    {
        "name": "lookup_order",
        "description": "Find an order.",
        "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"}}},
    },
    {
        "name": "refund",
        "description": "Refund an order.",
        "input_schema": {"type": "object", "properties": {}},
    },
]


@pytest.fixture(scope="module")
def srv() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as server:
        yield server


@pytest.fixture
def client(srv: FakeAnthropicServer) -> Iterator[anthropic.Anthropic]:
    c = anthropic.Anthropic(base_url=srv.base_url, api_key="test", max_retries=0)
    yield c
    c.close()


def _post(srv: FakeAnthropicServer, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any, str]:
    """Raw POST /v1/messages: (status, headers, body text)."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request("POST", "/v1/messages", data, {"x-api-key": "k", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read().decode()
    finally:
        conn.close()


def test_token_rule_and_model_aliases() -> None:
    body = {
        "tools": [
            {"name": "lookup_order", "description": "Find an order.", "input_schema": {"type": "object"}}
        ],
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "Where is A-1? thanks"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t", "content": "ok done"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                    },
                ],
            },
        ],
    }
    # tool: 'lookup_order Find an order. {"type": "object"}' = 6; system 2+3; user 4+3;
    # assistant 'f {"a": 1}' = 3 (+3); tool_result 2 (+3) and an image.
    assert count_input_tokens(body) == 6 + 5 + 7 + 6 + 5 + MEDIA_TOKENS
    assert resolve_model("claude-haiku-4-5") == "claude-haiku-4-5-20251001"
    assert resolve_model("my-model") == "my-model"


def test_message_shape_and_usage(client: anthropic.Anthropic) -> None:
    question = "How do I reset my password? [[reply:Use the reset link on the sign-in page.]]"
    msg = client.messages.create(
        model="claude-opus-4-5",
        max_tokens=100,
        system=[{"type": "text", "text": "You are support."}],
        messages=[{"role": "user", "content": question}],
    )
    assert msg.id.startswith("msg_fake_")
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.model == "claude-opus-4-5-20251101"
    assert [b.model_dump(exclude_none=True) for b in msg.content] == [
        {"type": "text", "text": "Use the reset link on the sign-in page."}
    ]
    assert (msg.stop_reason, msg.stop_sequence) == ("end_turn", None)
    assert msg.usage.input_tokens == (3 + 3) + count_tokens(question) + 3
    assert msg.usage.output_tokens == 8
    assert (msg.usage.cache_creation_input_tokens, msg.usage.cache_read_input_tokens) == (0, 0)
    assert msg.usage.service_tier == "standard"


def test_same_question_same_answer_and_stream_reassembles(client: anthropic.Anthropic) -> None:
    kwargs: dict[str, Any] = {
        "model": "claude-haiku-4-5",
        "max_tokens": 200,
        "messages": [{"role": "user", "content": "Can I change my billing plan?"}],
    }
    a = client.messages.create(**kwargs)
    b = client.messages.create(**kwargs)
    assert a.content[0].text == b.content[0].text and "billing plan" in a.content[0].text
    with client.messages.stream(**kwargs) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == a.content[0].text
    assert texts == stream_pieces(a.content[0].text)
    assert final.usage.input_tokens == a.usage.input_tokens
    assert final.usage.output_tokens == a.usage.output_tokens
    assert final.stop_reason == "end_turn"


def test_stream_event_sequence_on_the_wire(srv: FakeAnthropicServer) -> None:
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 50,
        "stream": True,
        "tools": TOOLS,
        "messages": [{"role": "user", "content": "Where is order ORD-1234?"}],
    }
    status, headers, text = _post(srv, body)
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["request-id"].startswith("req_fake_")
    frames = [f for f in text.split("\n\n") if f]
    names = [f.split("\n")[0].removeprefix("event: ") for f in frames]
    datas = [json.loads(f.split("\n")[1].removeprefix("data: ")) for f in frames]
    assert all(d["type"] == n for n, d in zip(names, datas, strict=True))
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = datas[0]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["output_tokens"] == 1
    tool_head = datas[6]["content_block"]
    assert tool_head == {"type": "tool_use", "id": tool_head["id"], "name": "lookup_order", "input": {}}
    partials = [d["delta"]["partial_json"] for d in datas[7:10]]
    assert partials[0] == "" and json.loads("".join(partials)) == {"order_id": "ORD-1234"}
    assert datas[11]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert set(datas[11]["usage"]) == {"output_tokens"}


def test_tool_choice_variants_and_tool_result_answer(client: anthropic.Anthropic) -> None:
    question = {"role": "user", "content": "Please check order ORD-5678"}
    auto = client.messages.create(model="m", max_tokens=50, tools=TOOLS, messages=[question])
    assert [b.type for b in auto.content] == ["text", "tool_use"]
    assert auto.content[0].text == "I'll look that up with lookup_order."
    call = auto.content[1]
    assert (call.name, call.input, auto.stop_reason) == ("lookup_order", {"order_id": "ORD-5678"}, "tool_use")
    assert call.id.startswith("toolu_fake_")
    assert auto.usage.output_tokens == 6 + count_tokens('lookup_order {"order_id": "ORD-5678"}')

    forced = client.messages.create(
        model="m",
        max_tokens=50,
        tools=TOOLS,
        tool_choice={"type": "tool", "name": "refund"},
        messages=[question],
    )
    assert [(b.type, b.name) for b in forced.content if b.type == "tool_use"] == [("tool_use", "refund")]
    assert len(forced.content) == 1
    none = client.messages.create(
        model="m", max_tokens=50, tools=TOOLS, tool_choice={"type": "none"}, messages=[question]
    )
    assert [b.type for b in none.content] == ["text"] and none.stop_reason == "end_turn"

    answer = client.messages.create(
        model="m",
        max_tokens=100,
        tools=TOOLS,
        messages=[
            question,
            {"role": "assistant", "content": auto.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "shipped"}],
            },
        ],
    )
    assert answer.content[0].text == (
        "I looked that up with lookup_order: shipped. Let me know if there is anything else I can do."
    )


def test_stop_sequences_max_tokens_json_and_thinking(client: anthropic.Anthropic) -> None:
    msgs = [{"role": "user", "content": "[[reply:one two three. four five]]"}]
    cut = client.messages.create(model="m", max_tokens=2, messages=msgs)
    assert (cut.content[0].text, cut.stop_reason) == ("one two", "max_tokens")
    stopped = client.messages.create(model="m", max_tokens=50, stop_sequences=["four", "."], messages=msgs)
    assert (stopped.content[0].text, stopped.stop_reason, stopped.stop_sequence) == (
        "one two three. ",
        "stop_sequence",
        "four",
    )
    schema = {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]}
    js = client.messages.create(
        model="m",
        max_tokens=50,
        output_config={"format": {"type": "json_schema", "schema": schema}},
        messages=[{"role": "user", "content": "my mail is ann@example.com"}],
    )
    assert json.loads(js.content[0].text) == {"email": "ann@example.com"}
    think = client.messages.create(
        model="m", max_tokens=50, thinking={"type": "enabled", "budget_tokens": 20}, messages=msgs
    )
    assert [b.type for b in think.content] == ["thinking", "text"]
    thought = think.content[0]
    assert thought.thinking.startswith("The user asks:") and thought.signature.startswith("sig_fake_")
    assert think.usage.output_tokens_details is not None
    assert think.usage.output_tokens_details.thinking_tokens == count_tokens(thought.thinking)
    assert think.usage.output_tokens == count_tokens(thought.thinking) + 5


def test_prompt_cache_write_then_read(client: anthropic.Anthropic) -> None:
    system = [
        {
            "type": "text",
            "text": "Long policy text about refunds and returns.",
            "cache_control": {"type": "ephemeral"},
        }
    ]
    msgs = [{"role": "user", "content": "[[reply:ok]] refund status?"}]
    first = client.messages.create(model="claude-haiku-4-5", max_tokens=10, system=system, messages=msgs)
    second = client.messages.create(model="claude-haiku-4-5", max_tokens=10, system=system, messages=msgs)
    prefix = count_tokens(system[0]["text"]) + 3
    rest = count_tokens(msgs[0]["content"]) + 3
    assert (
        first.usage.input_tokens,
        first.usage.cache_creation_input_tokens,
        first.usage.cache_read_input_tokens,
    ) == (
        rest,
        prefix,
        0,
    )
    assert (
        first.usage.cache_creation is not None
        and first.usage.cache_creation.ephemeral_5m_input_tokens == prefix
    )
    assert (
        second.usage.input_tokens,
        second.usage.cache_creation_input_tokens,
        second.usage.cache_read_input_tokens,
    ) == (rest, 0, prefix)


@pytest.mark.parametrize(
    ("status", "cls", "etype"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_error_statuses_map_to_sdk_classes(
    client: anthropic.Anthropic, status: int, cls: type[Exception], etype: str
) -> None:
    with pytest.raises(cls) as info:
        client.messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": f"[[error:{status}]]"}]
        )
    err = info.value
    assert isinstance(err, anthropic.APIStatusError)
    assert (err.status_code, err.type) == (status, etype)
    assert err.request_id is not None and err.request_id.startswith("req_fake_")
    assert err.body == {
        "type": "error",
        "error": {"type": etype, "message": err.api_message},
        "request_id": err.request_id,
    }


def test_error_once_then_retry_succeeds(srv: FakeAnthropicServer) -> None:
    c = anthropic.Anthropic(base_url=srv.base_url, api_key="k", max_retries=1)
    msg = c.messages.create(
        model="m", max_tokens=5, messages=[{"role": "user", "content": "[[error:529:1]] [[reply:back]]"}]
    )
    assert msg.content[0].text == "back"


def test_markers_in_header_and_validation(client: anthropic.Anthropic, srv: FakeAnthropicServer) -> None:
    msg = client.messages.create(
        model="m",
        max_tokens=20,
        messages=[{"role": "user", "content": "hello"}],
        extra_headers=fake_markers("[[reply:from the header]]"),
    )
    assert msg.content[0].text == "from the header"
    assert _post(srv, {"model": "m", "messages": [{"role": "user", "content": "x"}]})[0] == 400
    status, _, text = _post(
        srv, {"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}
    )
    assert status == 400
    assert json.loads(text)["error"] == {
        "type": "invalid_request_error",
        "message": "messages.0.role: Input should be 'user' or 'assistant'",
    }
    assert _post(srv, b"{not json")[0] == 400
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    conn.request("POST", "/v1/messages", json.dumps({"model": "m"}).encode())  # no x-api-key
    resp = conn.getresponse()
    assert (resp.status, json.loads(resp.read())["error"]["type"]) == (401, "authentication_error")
    conn.close()
    counted = client.messages.count_tokens(model="m", messages=[{"role": "user", "content": "a b c"}])
    assert counted.input_tokens == 6


def test_stream_error_and_cut_mid_stream(client: anthropic.Anthropic) -> None:
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        for event in client.messages.create(
            model="m",
            max_tokens=50,
            stream=True,
            messages=[{"role": "user", "content": "[[stream_error]] hi"}],
        ):
            seen.append(event.type)
    assert seen == ["message_start", "content_block_start", "content_block_delta"]
    assert info.value.type == "overloaded_error"
    seen.clear()
    with pytest.raises(Exception) as cut:
        for event in client.messages.create(
            model="m", max_tokens=50, stream=True, messages=[{"role": "user", "content": "[[cut]] hi"}]
        ):
            seen.append(event.type)
    assert seen == ["message_start", "content_block_start", "content_block_delta"]
    assert type(cut.value).__name__ == "RemoteProtocolError"


def test_requests_and_headers_are_recorded(client: anthropic.Anthropic, srv: FakeAnthropicServer) -> None:
    srv.clear()
    client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "[[reply:x]]"}])
    ((path, body),) = srv.requests
    (headers,) = srv.request_headers
    assert path == "/v1/messages" and body["max_tokens"] == 5
    assert headers["authorization"] == "Bearer test" and "anthropic-version" in headers
