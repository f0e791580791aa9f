"""The fake server's Responses API and Azure URL shapes, and its stream faults, driven by the real SDK.

Split from ``test_fake_openai.py`` (chat, completions, embeddings, HTTP edges); same idea: the ``openai``
SDK's parsers and helpers are the judge of wire compatibility.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from monitor.demo.fake_openai import FakeOpenAIServer, count_tokens, fake_markers

MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a helpful support assistant."},
    {"role": "user", "content": "Where is my order A-1042? It has been a week."},
]
PARAMETERS = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "include_items": {"type": "boolean"}},
    "required": ["order_id"],
}


@pytest.fixture(scope="module")
def srv() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def client(srv: FakeOpenAIServer) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=srv.base_url, api_key="test", max_retries=0)
    yield c
    c.close()


def _raw(srv: FakeOpenAIServer, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


# -- Responses API -------------------------------------------------------------------------------------


def _sse(
    srv: FakeOpenAIServer, path: str, body: dict[str, Any]
) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """Raw SSE of a streamed request: (whole text, [(event name, data)])."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return text, events


def test_responses_wire_format_and_usage(client: openai.OpenAI) -> None:
    from monitor.demo.fake_responses import response_input_tokens

    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "instructions": "Be brief.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": MESSAGES[1]["content"]}]}],
    }
    resp = client.responses.create(**body)
    assert resp.object == "response" and resp.status == "completed" and resp.id.startswith("resp_fake_")
    assert resp.model == "gpt-4o-mini-2024-07-18"
    (msg,) = resp.output
    assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_fake_")
    assert msg.content[0].type == "output_text"
    chat = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "Be brief."}, MESSAGES[1]],
    )
    assert resp.output_text == chat.choices[0].message.content  # the same answer as chat gives
    assert resp.usage.input_tokens == response_input_tokens(body) == chat.usage.prompt_tokens
    assert resp.usage.output_tokens == count_tokens(resp.output_text)
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert resp.usage.input_tokens_details.cached_tokens == 0
    assert resp.usage.output_tokens_details.reasoning_tokens == 0


def test_responses_stream_is_named_events_without_done(srv: FakeOpenAIServer) -> None:
    text, events = _sse(
        srv, "/v1/responses", {"model": "gpt-4o", "input": "hi [[reply:a b c d]]", "stream": True}
    )
    assert "[DONE]" not in text
    names = [name for name, _ in events]
    assert names == [data["type"] for _, data in events]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert names[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert names[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [d["delta"] for n, d in events if n == "response.output_text.delta"]
    assert "".join(deltas) == "a b c d" and len(deltas) == 2
    created, final = events[0][1]["response"], events[-1][1]["response"]
    assert created["status"] == "in_progress" and created["usage"] is None and created["output"] == []
    assert final["status"] == "completed" and final["usage"]["output_tokens"] == 4
    assert created["id"] == final["id"]


def test_responses_tool_call_then_tool_output(client: openai.OpenAI) -> None:
    tools = [{"type": "function", "name": "lookup_order", "parameters": PARAMETERS}]
    first = client.responses.create(model="gpt-4o-mini", input="Where is order A-1042?", tools=tools)
    (call,) = first.output
    assert call.type == "function_call" and call.name == "lookup_order" and call.id.startswith("fc_fake_")
    assert json.loads(call.arguments)["order_id"] == "A-1042"
    second = client.responses.create(
        model="gpt-4o-mini",
        input=[
            {"role": "user", "content": "Where is order A-1042?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "in transit"},
        ],
        tools=tools,
        previous_response_id=first.id,
    )
    assert "lookup_order" in second.output_text and "in transit" in second.output_text
    assert second.previous_response_id == first.id


def test_responses_reasoning_incomplete_and_cache(client: openai.OpenAI) -> None:
    from monitor.demo.fake_responses import reasoning_text

    body: dict[str, Any] = {
        "model": "o4-mini",
        "input": "[[reply:one two three]]",
        "reasoning": {"effort": "low"},
    }
    resp = client.responses.create(**body)
    assert [o.type for o in resp.output] == ["reasoning", "message"]
    assert resp.output[0].summary == []  # no summary unless asked for
    assert resp.usage.output_tokens_details.reasoning_tokens == count_tokens(reasoning_text(body))
    cut = client.responses.create(model="gpt-4o", input="[[reply:one two three]]", max_output_tokens=2)
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"
    assert cut.output_text == "one two"
    cached = client.responses.create(
        model="gpt-4o",
        input=[{"role": "user", "content": "a"}, {"role": "user", "content": "b c"}],
        prompt_cache_key="k",
    )
    assert cached.usage.input_tokens_details.cached_tokens == count_tokens("a") + 3


def test_responses_stream_faults(client: openai.OpenAI) -> None:
    from monitor.demo.fake_responses import FAILURE_MESSAGE

    for fault in ("response.failed", "error"):
        events = list(
            client.responses.create(
                model="gpt-4o",
                input="[[reply:a b c d e f g]]",
                stream=True,
                extra_headers=fake_markers(f"[[fail:{fault}]]"),
            )
        )
        assert [e.type for e in events][-2:] == ["response.output_text.delta", fault]
        last = events[-1]
        error = last.response.error if fault == "response.failed" else last
        assert (error.code, error.message) == ("server_error", FAILURE_MESSAGE)
    with pytest.raises(openai.InternalServerError):  # not streamed: the request itself fails
        client.responses.create(model="gpt-4o", input="hi", extra_headers=fake_markers("[[fail:error]]"))


def test_break_marker_cuts_the_connection_mid_stream(client: openai.OpenAI) -> None:
    got = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, extra_headers=fake_markers("[[break:2]]")
        ):
            got.append(chunk)
    assert len(got) == 2
    # the server is fine afterwards
    assert client.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices


def test_azure_url_shapes(srv: FakeOpenAIServer) -> None:
    az = openai.AzureOpenAI(
        azure_endpoint=srv.url,
        api_key="k",
        api_version="2024-10-21",
        azure_deployment="gpt-4o-mini",
        max_retries=0,
    )
    chat = az.chat.completions.create(model="ignored-on-azure", messages=MESSAGES)
    assert srv.requests[-1][0] == "/openai/deployments/gpt-4o-mini/chat/completions"
    assert chat.model == "gpt-4o-mini-2024-07-18"  # the deployment decides the model
    emb = az.embeddings.create(model="x", input="hello")
    assert srv.requests[-1][0] == "/openai/deployments/gpt-4o-mini/embeddings" and emb.data
    resp = az.responses.create(model="gpt-4o", input="hi")
    assert srv.requests[-1][0] == "/openai/responses" and resp.model == "gpt-4o-2024-08-06"
    status, body = _raw(
        srv,
        "POST",
        "/openai/deployments/gpt-4o/chat/completions",
        json.dumps({"messages": MESSAGES}).encode(),
    )
    assert status == 404 and body["error"]["message"] == "Resource not found"  # no api-version
    status, body = _raw(
        srv,
        "POST",
        "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
        json.dumps({"messages": MESSAGES}).encode(),
    )
    assert status == 200 and body["model"] == "gpt-4o-2024-08-06"
