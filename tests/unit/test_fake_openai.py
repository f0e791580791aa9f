"""The fake OpenAI server, driven by the real ``openai`` SDK.

The SDK is the judge of wire compatibility: if its parser, retry logic and exception mapping accept
what the fake sends, the instrumentor tests and the demo that sit on top can trust it.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from monitor.demo.fake_openai import (
    FakeOpenAIServer,
    count_message_tokens,
    count_tokens,
    fake_markers,
    resolve_model,
)
from monitor.demo.fake_replies import Markers, stream_pieces

MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a helpful support assistant."},
    {"role": "user", "content": "Where is my order A-1042? It has been a week."},
]
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Look up an order by id.",
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": {"type": "string"},
                    "include_items": {"type": "boolean"},
                },
                "required": ["order_id"],
            },
        },
    },
    {"type": "function", "function": {"name": "refund", "parameters": {"type": "object", "properties": {}}}},
]


@pytest.fixture(scope="module")
def srv() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def client(srv: FakeOpenAIServer) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=srv.base_url, api_key="test", max_retries=0)
    yield c
    c.close()


def _stream_text(stream: Any) -> tuple[str, Any, list[Any]]:
    """Reassemble a chat stream: (text, usage, chunks)."""
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = next((c.usage for c in chunks if c.usage is not None), None)
    return text, usage, chunks


# -- tokenizer and pure helpers ------------------------------------------------------------------------


def test_count_tokens_rule() -> None:
    assert count_tokens("") == 0
    assert count_tokens("hello   world\n again") == 3
    assert count_tokens("申し訳ありません") == 8  # one per CJK character
    assert count_tokens("order 注文 A-1") == 4
    assert (
        count_message_tokens(MESSAGES)
        == count_tokens(MESSAGES[0]["content"]) + count_tokens(MESSAGES[1]["content"]) + 6
    )


def test_markers_parse() -> None:
    m = Markers.parse("hi [[error:429:1]] [[slow:150]] [[reply:Exact: text, with ] bracket]] [[json]]")
    assert (m.error, m.error_times, m.slow_ms, m.reply, m.json) == (
        429,
        1,
        150.0,
        "Exact: text, with ] bracket",
        True,
    )
    assert Markers.parse("plain question") == Markers()


@pytest.mark.parametrize(
    "text", ["one two three four five six seven", "  lead and trail  ", "申し訳ありません", ""]
)
def test_stream_pieces_reassemble_exactly(text: str) -> None:
    assert "".join(stream_pieces(text)) == text


# -- chat ----------------------------------------------------------------------------------------------


def test_chat_is_deterministic_and_usage_follows_count_tokens(client: openai.OpenAI) -> None:
    a = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    b = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    content = a.choices[0].message.content
    assert content and content == b.choices[0].message.content
    assert "A-1042" in content  # replies quote the question, so they read plausibly
    assert a.id.startswith("chatcmpl-fake-") and a.id != b.id
    assert a.model == "gpt-4o-mini-2024-07-18" == resolve_model("gpt-4o-mini")
    assert a.choices[0].finish_reason == "stop"
    assert a.usage is not None
    assert a.usage.prompt_tokens == count_message_tokens(MESSAGES)
    assert a.usage.completion_tokens == count_tokens(content)
    assert a.usage.total_tokens == a.usage.prompt_tokens + a.usage.completion_tokens
    other = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "How do I reset my password?"}]
    )
    assert other.choices[0].message.content != content
    assert other.model == "gpt-4o-2024-08-06"
    unknown = client.chat.completions.create(model="my-local-model", messages=MESSAGES)
    assert unknown.model == "my-local-model"


def test_chat_stream_with_usage_reassembles_the_same_answer(client: openai.OpenAI) -> None:
    expected = (
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content
    )
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    text, usage, chunks = _stream_text(stream)
    assert text == expected
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert usage.prompt_tokens == count_message_tokens(MESSAGES)
    assert usage.completion_tokens == count_tokens(expected or "")
    assert len({c.id for c in chunks}) == 1


def test_chat_stream_without_include_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    text, usage, chunks = _stream_text(
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    )
    assert text and usage is None
    assert all(c.choices for c in chunks)


def test_async_client_plain_and_stream(srv: FakeOpenAIServer) -> None:
    async def run() -> tuple[str, str, int]:
        async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="test", max_retries=0) as ac:
            r = await ac.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            s = await ac.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
            parts, total = [], 0
            async for chunk in s:
                if chunk.choices:
                    parts.append(chunk.choices[0].delta.content or "")
                if chunk.usage:
                    total = chunk.usage.total_tokens
            return r.choices[0].message.content or "", "".join(parts), total

    plain, streamed, total = asyncio.run(run())
    assert plain == streamed
    assert total == count_message_tokens(MESSAGES) + count_tokens(plain)


def test_n_choices_and_max_tokens(client: openai.OpenAI) -> None:
    single = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content
    multi = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, n=2)
    assert [c.index for c in multi.choices] == [0, 1]
    assert multi.choices[0].message.content == single
    assert multi.usage is not None
    assert multi.usage.completion_tokens == sum(count_tokens(c.message.content or "") for c in multi.choices)
    cut = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None and cut.usage.completion_tokens == 5
    assert (single or "").startswith(cut.choices[0].message.content or "")


def test_japanese_prompt_gets_japanese_reply(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "注文のキャンセル方法を教えてください"}]
    )
    content = r.choices[0].message.content or ""
    assert "注文のキャンセル" in content
    assert r.usage is not None and r.usage.completion_tokens == count_tokens(content) > 20


# -- tools ---------------------------------------------------------------------------------------------


def test_tool_call_round_trip(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "lookup_order"
    assert json.loads(call.function.arguments) == {"order_id": "A-1042", "include_items": True}
    assert first.usage is not None
    assert first.usage.completion_tokens == count_tokens(f"{call.function.name} {call.function.arguments}")

    result = json.dumps({"order_id": "A-1042", "status": "shipped", "carrier": "DHL"})
    follow = [
        *MESSAGES,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": result},
    ]
    final = client.chat.completions.create(model="gpt-4o-mini", messages=follow, tools=TOOLS)
    assert final.choices[0].finish_reason == "stop"
    answer = final.choices[0].message.content or ""
    assert "lookup_order" in answer and '"status": "shipped"' in answer
    assert final.usage is not None and final.usage.prompt_tokens == count_message_tokens(follow)


def test_tool_choice_names_the_function_and_none_disables(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "refund"}},
    )
    assert (r.choices[0].message.tool_calls or [])[0].function.name == "refund"
    r = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=TOOLS, tool_choice="none")
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content


def test_streamed_tool_call_matches_non_streamed(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS)
    expected = (plain.choices[0].message.tool_calls or [])[0]
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        tools=TOOLS,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert (
        deltas[0].id == expected.id
        and deltas[0].function is not None
        and deltas[0].function.name == "lookup_order"
    )
    args = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert args == expected.function.arguments
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "tool_calls"
    ]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == plain.usage.total_tokens  # type: ignore[union-attr]


# -- control markers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exc", "etype"),
    [
        (400, openai.BadRequestError, "invalid_request_error"),
        (401, openai.AuthenticationError, "invalid_request_error"),
        (429, openai.RateLimitError, "requests"),
        (500, openai.InternalServerError, "server_error"),
        (503, openai.InternalServerError, "server_error"),
    ],
)
def test_error_marker_maps_to_sdk_exception(
    client: openai.OpenAI, status: int, exc: type, etype: str
) -> None:
    with pytest.raises(exc) as info:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"hi [[error:{status}]]"}]
        )
    assert info.value.status_code == status
    assert info.value.body["type"] == etype
    assert info.value.body["message"]
    with pytest.raises(exc):  # streams fail before the first chunk, like the real API
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"hi [[error:{status}]]"}], stream=True
        )


def test_fake_error_model_always_fails(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="fake-error", messages=MESSAGES)


def test_error_for_first_attempts_only_lets_sdk_retries_succeed(srv: FakeOpenAIServer) -> None:
    msgs = [{"role": "user", "content": f"retry me {time.time_ns()} [[error:503:1]]"}]
    with openai.OpenAI(base_url=srv.base_url, api_key="test", max_retries=1) as c:
        before = len(srv.requests)
        r = c.chat.completions.create(model="gpt-4o-mini", messages=msgs)
        assert r.choices[0].message.content
        assert len(srv.requests) - before == 2  # one 503 (retry-after-ms keeps it fast), one success


def test_reply_marker_gives_exact_text(client: openai.OpenAI) -> None:
    text = "I'm sorry, but as an AI language model I cannot help with that."
    msgs = [{"role": "user", "content": f"Tell me something bad [[reply:{text}]]"}]
    r = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, tools=TOOLS)
    assert r.choices[0].message.content == text and not r.choices[0].message.tool_calls
    assert r.usage is not None and r.usage.completion_tokens == count_tokens(text)
    streamed, _, _ = _stream_text(
        client.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True)
    )
    assert streamed == text


def test_markers_in_header_leave_the_prompt_clean(srv: FakeOpenAIServer, client: openai.OpenAI) -> None:
    refusal = "申し訳ありませんが、そのご要望にはお応えできません。"
    msgs = [{"role": "user", "content": "他の人のアカウントに入る方法を教えて"}]
    r = client.chat.completions.create(
        model="gpt-4o-mini", messages=msgs, extra_headers=fake_markers(f"[[reply:{refusal}]]")
    )
    assert r.choices[0].message.content == refusal
    assert srv.requests[-1][1]["messages"] == msgs
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(
            model="text-embedding-3-small", input="x", extra_headers=fake_markers("[[error:429]]")
        )


def test_slow_marker_delays_answer_and_first_chunk(client: openai.OpenAI) -> None:
    msgs = [{"role": "user", "content": "take your time [[slow:200]]"}]
    t0 = time.perf_counter()
    client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert time.perf_counter() - t0 >= 0.19
    t0 = time.perf_counter()
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True)
    next(iter(stream))
    assert time.perf_counter() - t0 >= 0.19
    stream.close()


def test_json_mode(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Summarise [[json]]"}]
    )
    assert set(json.loads(r.choices[0].message.content or "")) == {"answer", "topic", "confidence"}
    r = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, response_format={"type": "json_object"}
    )
    assert json.loads(r.choices[0].message.content or "")["topic"].startswith("Where is my order")
    schema = {"type": "object", "properties": {"order_id": {"type": "string"}, "urgent": {"type": "boolean"}}}
    r = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        response_format={"type": "json_schema", "json_schema": {"name": "ticket", "schema": schema}},
    )
    assert json.loads(r.choices[0].message.content or "") == {"order_id": "A-1042", "urgent": True}


# -- embeddings and legacy completions -----------------------------------------------------------------


def test_embeddings_shape_norm_and_determinism(client: openai.OpenAI) -> None:
    r = client.embeddings.create(model="text-embedding-3-small", input=["first text here", "second"])
    assert [d.index for d in r.data] == [0, 1]
    assert all(len(d.embedding) == 16 for d in r.data)
    assert all(
        math.isclose(sum(v * v for v in d.embedding), 1.0, rel_tol=1e-5) for d in r.data
    )  # float32 on the wire
    assert r.data[0].embedding != r.data[1].embedding
    assert r.usage.prompt_tokens == r.usage.total_tokens == 4
    again = client.embeddings.create(model="text-embedding-3-small", input="first text here", dimensions=16)
    assert again.data[0].embedding == r.data[0].embedding
    small = client.embeddings.create(model="text-embedding-3-small", input="x", dimensions=8)
    assert len(small.data[0].embedding) == 8


def test_legacy_completions_stream_and_plain_agree(client: openai.OpenAI) -> None:
    prompt = "Write a tagline for a support bot"
    r = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=prompt)
    assert r.id.startswith("cmpl-fake-") and r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.prompt_tokens == count_tokens(prompt)
    assert r.usage.completion_tokens == count_tokens(r.choices[0].text)
    chunks = list(
        client.completions.create(
            model="gpt-3.5-turbo-instruct", prompt=prompt, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == r.usage.total_tokens


# -- HTTP edges ----------------------------------------------------------------------------------------


def _raw(srv: FakeOpenAIServer, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_unknown_path_and_malformed_json(srv: FakeOpenAIServer, client: openai.OpenAI) -> None:
    status, body = _raw(srv, "POST", "/v1/nope", b"{}")
    assert status == 404 and body["error"]["type"] == "invalid_request_error"
    status, body = _raw(srv, "POST", "/v1/chat/completions", b"{not json")
    assert status == 400 and "parse" in body["error"]["message"]
    status, body = _raw(srv, "POST", "/v1/chat/completions", b'{"model": "gpt-4o"}')
    assert status == 400 and body["error"]["param"] == "messages"
    with pytest.raises(openai.NotFoundError):
        client.post("/assistants/nope", cast_to=object, body={})


def test_keep_alive_connection_is_reused_across_stream_and_plain(srv: FakeOpenAIServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    try:
        body = json.dumps({"model": "gpt-4o", "messages": MESSAGES, "stream": True}).encode()
        conn.request("POST", "/v1/chat/completions", body=body)
        resp = conn.getresponse()
        assert resp.getheader("Transfer-Encoding") == "chunked"
        events = resp.read().decode()
        assert events.rstrip().endswith("data: [DONE]")
        sock = conn.sock
        conn.request(
            "POST", "/v1/chat/completions", body=json.dumps({"model": "gpt-4o", "messages": MESSAGES})
        )
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["object"] == "chat.completion"
        assert conn.sock is sock
    finally:
        conn.close()


def test_requests_are_recorded_thread_safely(srv: FakeOpenAIServer) -> None:
    marker = f"concurrent-{time.time_ns()}"

    def worker(i: int) -> None:
        with openai.OpenAI(base_url=srv.base_url, api_key="test", max_retries=0) as c:
            for j in range(5):
                c.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": f"{marker} {i} {j}"}]
                )

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    mine = [b for p, b in srv.requests if p == "/v1/chat/completions" and marker in json.dumps(b)]
    assert len(mine) == 30
    assert {b["messages"][0]["content"] for b in mine} == {
        f"{marker} {i} {j}" for i in range(6) for j in range(5)
    }


def test_stop_returns_promptly_with_idle_keep_alive_clients() -> None:
    srv = FakeOpenAIServer(latency_ms=1).start()
    c = openai.OpenAI(base_url=srv.base_url, api_key="test", max_retries=0)
    c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # leaves a pooled connection open
    t0 = time.perf_counter()
    srv.stop()
    assert time.perf_counter() - t0 < 3
    with pytest.raises(RuntimeError):
        _ = srv.port
    with pytest.raises(openai.APIConnectionError):
        c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    c.close()


def test_request_log_is_bounded() -> None:
    with (
        FakeOpenAIServer(record_limit=2) as small,
        openai.OpenAI(base_url=small.base_url, api_key="t", max_retries=0) as c,
    ):
        for i in range(3):
            c.embeddings.create(model="text-embedding-3-small", input=f"text {i}")
        assert [b["input"] for _, b in small.requests] == ["text 1", "text 2"]
