"""What the fake server answers on the Responses API (``POST /v1/responses``): pure functions, no I/O.

Why a translation instead of new reply rules: a Responses request is rewritten into the equivalent
chat request (``instructions`` → system message, input items → chat messages, function tools → chat
tools, ``max_output_tokens`` → ``max_tokens``, ``text.format`` → ``response_format``) and answered by
the same :func:`~monitor.demo.fake_replies.chat_choices`. Both APIs therefore give the same answer to
the same conversation, the same markers work, and a test predicts the usage with
:func:`response_input_tokens` and ``count_tokens`` exactly as for chat.

Wire format (what the real API sends and the ``openai`` SDK parses): a ``response`` object with
``output`` items (``reasoning``, ``message`` with ``output_text`` parts, ``function_call``) and
``usage`` with ``input_tokens_details.cached_tokens`` / ``output_tokens_details.reasoning_tokens``;
streams are named SSE events (``event: response.created`` …) with increasing ``sequence_number`` and
no ``[DONE]`` sentinel.

Extra rules the chat side does not have:

* ``reasoning={"effort": ...}`` adds a reasoning item; its text (:func:`reasoning_text`) counts as
  ``reasoning_tokens`` and into ``output_tokens``; the summary is returned only when
  ``reasoning.summary`` is set.
* ``prompt_cache_key`` marks every input message but the last as cached (``cached_tokens``).
* ``max_output_tokens`` cutting the answer gives ``status="incomplete"`` with
  ``incomplete_details.reason="max_output_tokens"``.
* Stream failures are steered by the caller (``fail="response.failed"`` or ``fail="error"``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from monitor.demo.fake_replies import (
    Markers,
    chat_choices,
    count_message_tokens,
    count_tokens,
    last_user_text,
    resolve_model,
    stream_pieces,
    strip_markers,
)

__all__ = [
    "FAILURE_MESSAGE",
    "ResponsePlan",
    "chat_body",
    "plan_response",
    "reasoning_text",
    "response_input_tokens",
    "response_object",
    "stream_events",
]

#: ``error.message`` of a ``response.failed`` / ``error`` event (code ``server_error``).
FAILURE_MESSAGE = "The model failed to generate a response."


def _text_of(content: Any) -> Any:
    """A Responses message ``content`` (string or parts) as chat content."""
    if isinstance(content, str) or content is None:
        return content
    parts = []
    for p in content if isinstance(content, list) else []:
        if isinstance(p, dict):
            parts.append({"type": "text", "text": str(p.get("text") or p.get("refusal") or "")})
    return parts


def chat_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """The chat request a Responses request is answered as (see the module docstring)."""
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    raw = body.get("input")
    items = [{"role": "user", "content": raw}] if isinstance(raw, str) else list(raw or [])
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role", "user")
            role = "system" if role == "developer" else role
            messages.append({"role": role, "content": _text_of(item.get("content"))})
        elif kind == "function_call":
            call = {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""},
            }
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            out = item.get("output")
            text = out if isinstance(out, str) else json.dumps(out, ensure_ascii=False)
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": text})
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    tools = [
        {
            "type": "function",
            "function": {
                "name": t.get("name"),
                "description": t.get("description"),
                "parameters": t.get("parameters") or {"type": "object", "properties": {}},
            },
        }
        for t in body.get("tools") or []
        if isinstance(t, dict) and t.get("type") == "function"
    ]
    if tools:
        chat["tools"] = tools
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif isinstance(choice, str):
        chat["tool_choice"] = choice
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    fmt = (body.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_schema":
        chat["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": fmt.get("name"), "schema": fmt.get("schema") or {}},
        }
    elif fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    return chat


def response_input_tokens(body: Mapping[str, Any]) -> int:
    """``usage.input_tokens`` of a Responses request (the chat rule applied to :func:`chat_body`)."""
    return count_message_tokens(chat_body(body)["messages"])


def reasoning_text(body: Mapping[str, Any]) -> str:
    """The reasoning the fake "does" for a request (its summary, and ``reasoning_tokens`` in words)."""
    topic = strip_markers(last_user_text(chat_body(body)["messages"]))[:80] or "the request"
    return f"The user asks about '{topic}'. Check the support notes, then answer briefly."


@dataclass
class ResponsePlan:
    """Everything a response carries, decided once; the JSON and the stream are both built from it."""

    id: str
    model: str
    created_at: int
    output: list[dict[str, Any]]
    status: str  # completed | incomplete
    usage: dict[str, Any]
    incomplete_reason: str | None = None
    body: dict[str, Any] = field(default_factory=dict)


def plan_response(
    body: dict[str, Any], markers: Markers, next_id: Callable[[str], str], created_at: int
) -> ResponsePlan:
    """Decide the output items and usage of a Responses request. ``next_id("msg")`` → ``msg_fake_7``."""
    chat = chat_body(body)
    choice = chat_choices(chat, markers)[0]
    output: list[dict[str, Any]] = []
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else None
    reasoning_tokens = 0
    if reasoning is not None and reasoning.get("effort") not in (None, "none"):
        text = reasoning_text(body)
        reasoning_tokens = count_tokens(text)
        summary = [{"type": "summary_text", "text": text}] if reasoning.get("summary") else []
        output.append({"id": next_id("rs"), "type": "reasoning", "summary": summary})
    cut = choice.finish_reason == "length"
    if choice.tool_calls:
        for call in choice.tool_calls:
            fn = call["function"]
            output.append(
                {
                    "id": next_id("fc"),
                    "type": "function_call",
                    "status": "completed",
                    "arguments": fn["arguments"],
                    "call_id": call["id"],
                    "name": fn["name"],
                }
            )
    else:
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": choice.content or ""}
        output.append(
            {
                "id": next_id("msg"),
                "type": "message",
                "status": "incomplete" if cut else "completed",
                "content": [part],
                "role": "assistant",
            }
        )
    messages = chat["messages"]
    input_tokens = count_message_tokens(messages)
    cached = count_message_tokens(messages[:-1]) if body.get("prompt_cache_key") else 0
    output_tokens = choice.tokens + reasoning_tokens
    usage = {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }
    return ResponsePlan(
        id=next_id("resp"),
        model=resolve_model(str(body.get("model"))),
        created_at=created_at,
        output=output,
        status="incomplete" if cut else "completed",
        usage=usage,
        incomplete_reason="max_output_tokens" if cut else None,
        body=body,
    )


def response_object(
    plan: ResponsePlan, phase: str | None = None, error: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``response`` JSON: final by default; ``phase="in_progress"`` (or ``"failed"``) for stream events."""
    body = plan.body
    tier = body.get("service_tier")
    reasoning: dict[str, Any] = body["reasoning"] if isinstance(body.get("reasoning"), dict) else {}
    final = phase is None
    status = plan.status if final else phase
    return {
        "id": plan.id,
        "object": "response",
        "created_at": plan.created_at,
        "status": status,
        "background": bool(body.get("background", False)),
        "error": error,
        "incomplete_details": {"reason": plan.incomplete_reason}
        if final and plan.incomplete_reason
        else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": plan.model,
        "output": plan.output if final else [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": tier if isinstance(tier, str) and tier != "auto" else "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": (body.get("text") or {}).get("format") or {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_logprobs": body.get("top_logprobs", 0),
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": plan.usage if final else None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def _item_events(index: int, item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The events that stream one output item, ending with ``response.output_item.done``."""
    kind = item["type"]
    iid = item["id"]
    if kind == "message":
        yield {
            "type": "response.output_item.added",
            "output_index": index,
            "item": {**item, "status": "in_progress", "content": []},
        }
        for c, part in enumerate(item["content"]):
            head = {"item_id": iid, "output_index": index, "content_index": c}
            yield {"type": "response.content_part.added", **head, "part": {**part, "text": ""}}
            for piece in stream_pieces(part["text"]) if part["text"] else []:
                yield {"type": "response.output_text.delta", **head, "delta": piece, "logprobs": []}
            yield {"type": "response.output_text.done", **head, "text": part["text"], "logprobs": []}
            yield {"type": "response.content_part.done", **head, "part": part}
    elif kind == "function_call":
        yield {
            "type": "response.output_item.added",
            "output_index": index,
            "item": {**item, "status": "in_progress", "arguments": ""},
        }
        head = {"item_id": iid, "output_index": index}
        for piece in stream_pieces(item["arguments"], 2):
            yield {"type": "response.function_call_arguments.delta", **head, "delta": piece}
        yield {
            "type": "response.function_call_arguments.done",
            **head,
            "arguments": item["arguments"],
            "name": item["name"],
        }
    elif kind == "reasoning":
        yield {"type": "response.output_item.added", "output_index": index, "item": {**item, "summary": []}}
        for s, part in enumerate(item["summary"]):
            head = {"item_id": iid, "output_index": index, "summary_index": s}
            yield {"type": "response.reasoning_summary_part.added", **head, "part": {**part, "text": ""}}
            for piece in stream_pieces(part["text"]):
                yield {"type": "response.reasoning_summary_text.delta", **head, "delta": piece}
            yield {"type": "response.reasoning_summary_text.done", **head, "text": part["text"]}
            yield {"type": "response.reasoning_summary_part.done", **head, "part": part}
    yield {"type": "response.output_item.done", "output_index": index, "item": item}


def stream_events(plan: ResponsePlan, fail: str | None = None) -> Iterator[dict[str, Any]]:
    """The SSE events of a streamed response, numbered by ``sequence_number``.

    ``fail="response.failed"`` ends after the first output delta with a failed response;
    ``fail="error"`` ends there with an ``error`` event (both with code ``server_error``).
    """
    seq = 0

    def numbered(event: dict[str, Any]) -> dict[str, Any]:
        nonlocal seq
        event["sequence_number"] = seq
        seq += 1
        return event

    yield numbered({"type": "response.created", "response": response_object(plan, "in_progress")})
    yield numbered({"type": "response.in_progress", "response": response_object(plan, "in_progress")})
    error = {"code": "server_error", "message": FAILURE_MESSAGE}
    for index, item in enumerate(plan.output):
        for event in _item_events(index, item):
            yield numbered(event)
            if fail is not None and event["type"].endswith(".delta"):
                yield numbered(_failure(plan, fail, error))
                return
    if fail is not None:  # nothing was streamed before the failure
        yield numbered(_failure(plan, fail, error))
        return
    final = "response.incomplete" if plan.status == "incomplete" else "response.completed"
    yield numbered({"type": final, "response": response_object(plan)})


def _failure(plan: ResponsePlan, fail: str, error: dict[str, Any]) -> dict[str, Any]:
    if fail == "error":
        return {"type": "error", **error, "param": None}
    return {"type": "response.failed", "response": response_object(plan, "failed", error)}
