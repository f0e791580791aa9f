"""Pure extractors for the OpenAI Responses API (``client.responses.create`` / ``.parse`` / ``.stream``).

Same contract as :mod:`._openai_extract` (no spans, no I/O, every odd shape tolerated): request kwargs,
a ``Response`` object or the typed stream events become GenAI span attributes. A streamed call folds
its events into the same :class:`ResponseSummary` a non-streamed ``Response`` becomes.

Mapping (OTel GenAI, OpenAI refinement: operation ``chat``, ``openai.api.type=responses``):

* ``instructions`` and ``system``/``developer`` input messages → ``gen_ai.system_instructions``;
  ``input`` (a string, or items: messages, ``function_call``, ``function_call_output``, ``reasoning``)
  → ``gen_ai.input.messages`` with ``tool_call`` / ``tool_call_response`` parts sharing the call ids.
* ``output`` items (``message`` text, ``function_call``, ``reasoning`` summaries, hosted ``*_call``
  tools) → one assistant output message with ``text`` / ``tool_call`` / ``reasoning`` /
  ``server_tool_call`` parts.
* The API has no finish reason. ``gen_ai.response.finish_reasons`` keeps what it does report, raw:
  ``incomplete_details.reason`` (``max_output_tokens``, ``content_filter``) or else ``status``
  (``completed``, ``failed``…); the output message's ``finish_reason`` is the GenAI enum
  (``stop``, ``tool_call``, ``length``, ``content_filter``, ``error``).
* ``status="failed"`` and the stream's ``error`` event are failures (:meth:`ResponseSummary.failure`):
  the span gets status ERROR and ``error.type`` = the API's error code, though the SDK raises nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor import semconv as sc
from monitor._serialize import to_jsonable
from monitor.instrumentation._genai import (
    get,
    messages_json,
    text_part,
    tool_call_part,
    tool_response_part,
)
from monitor.instrumentation._openai_extract import _num, _param

__all__ = [
    "ResponseSummary",
    "ResponsesAccumulator",
    "input_items_messages",
    "output_parts",
    "responses_request_attributes",
    "responses_response_attributes",
]

_SYSTEM_ROLES = ("system", "developer")
_CLIENT_TOOL_CALLS = ("function_call", "custom_tool_call")
# Incomplete reasons and statuses that have a GenAI finish-reason equivalent.
_FINISH_ENUM = {"max_output_tokens": "length", "content_filter": "content_filter", "failed": "error"}


# --- request ---------------------------------------------------------------------------------------


def _content_parts(content: Any) -> list[dict[str, Any]]:
    """A Responses message ``content`` (string or typed parts) as GenAI parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [text_part(content)]
    if not isinstance(content, Sequence):
        return [text_part(str(content))]
    parts: list[dict[str, Any]] = []
    for p in content:
        typ = get(p, "type")
        if typ in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
            parts.append(text_part(get(p, "text", "")))
        elif typ == "refusal":
            parts.append(text_part(get(p, "refusal", "")))
        elif typ in ("input_image", "input_file"):
            modality = "image" if typ == "input_image" else "file"
            url = get(p, "image_url") or get(p, "file_url")
            if isinstance(url, str) and url.startswith("data:"):  # inline base64: keep the type only
                parts.append(
                    {"type": "blob", "modality": modality, "mime_type": url[5:].split(";", 1)[0] or None}
                )
            elif isinstance(url, str):
                parts.append({"type": "uri", "modality": modality, "uri": url})
            elif get(p, "file_id"):
                parts.append({"type": "file", "modality": modality, "file_id": get(p, "file_id")})
            else:
                parts.append({"type": "blob", "modality": modality, "mime_type": None})
        elif typ == "input_audio":
            fmt = get(get(p, "input_audio"), "format")
            parts.append({"type": "blob", "modality": "audio", "mime_type": f"audio/{fmt}" if fmt else None})
        else:
            parts.append({"type": str(typ or "unknown")})
    return parts


def _plain(value: Any) -> Any:
    """A tool output (string, or a list of content parts) as the text the model reads."""
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, Sequence):
        texts = [str(get(p, "text", "")) for p in value if get(p, "type") in ("input_text", "output_text")]
        if texts:
            return "".join(texts)
    return to_jsonable(value)


def _item_parts(item: Any) -> list[dict[str, Any]]:
    """GenAI parts of one model-produced item (an output item, or one replayed as input)."""
    typ = get(item, "type")
    if typ == "message":
        return _content_parts(get(item, "content"))
    if typ == "function_call":
        return [tool_call_part(get(item, "call_id"), get(item, "name"), get(item, "arguments"))]
    if typ == "custom_tool_call":
        return [tool_call_part(get(item, "call_id"), get(item, "name"), get(item, "input"))]
    if typ == "reasoning":
        texts = [get(s, "text") for s in get(item, "summary") or []]
        texts += [get(c, "text") for c in get(item, "content") or []]
        return [{"type": "reasoning", "content": t} for t in texts if isinstance(t, str) and t]
    if isinstance(typ, str) and typ.endswith("_call"):  # hosted tools: web_search_call, mcp_call, …
        kind = typ[: -len("_call")]
        return [
            {
                "type": "server_tool_call",
                "id": get(item, "id"),
                "name": kind,
                "server_tool_call": {"type": kind},
            }
        ]
    return [{"type": str(typ or "unknown")}]


def input_items_messages(input_: Any, instructions: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system instruction parts, input messages) of a Responses request.

    Consecutive assistant-side items (an assistant message, its function calls, reasoning) form one
    assistant message, as in the chat format; each ``function_call_output`` is a ``tool`` message.
    """
    system: list[dict[str, Any]] = (
        [text_part(instructions)] if isinstance(instructions, str) and instructions else []
    )
    if isinstance(input_, str):
        return system, [{"role": "user", "parts": [text_part(input_)]}]
    out: list[dict[str, Any]] = []

    def assistant(parts: list[dict[str, Any]]) -> None:
        if out and out[-1]["role"] == "assistant":
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": "assistant", "parts": parts})

    for item in input_ if isinstance(input_, Sequence) else []:
        role = get(item, "role")
        typ = get(item, "type") or ("message" if role else None)
        if typ == "message":
            parts = _content_parts(get(item, "content"))
            if role in _SYSTEM_ROLES:
                system.extend(parts)
            elif role == "assistant":
                assistant(parts)
            else:
                out.append({"role": str(role), "parts": parts})
        elif typ in ("function_call_output", "custom_tool_call_output"):
            response = tool_response_part(get(item, "call_id"), _plain(get(item, "output")))
            out.append({"role": "tool", "parts": [response]})
        elif typ == "item_reference":
            continue  # a pointer to stored state, no content to show
        else:
            assistant(_item_parts(item))
    return system, out


def responses_request_attributes(kwargs: Mapping[str, Any], capture_content: bool) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        sc.OPENAI_API_TYPE: "responses",
        sc.GEN_AI_REQUEST_TEMPERATURE: _num(_param(kwargs, "temperature"), float),
        sc.GEN_AI_REQUEST_TOP_P: _num(_param(kwargs, "top_p"), float),
        sc.GEN_AI_REQUEST_MAX_TOKENS: _num(_param(kwargs, "max_output_tokens"), int),
    }
    if _param(kwargs, "stream") is True:
        attrs[sc.GEN_AI_REQUEST_STREAM] = True
    tier = _param(kwargs, "service_tier")
    if isinstance(tier, str) and tier != "auto":
        attrs[sc.OPENAI_REQUEST_SERVICE_TIER] = tier
    previous = _param(kwargs, "previous_response_id")
    if isinstance(previous, str):
        attrs[sc.LLM_MONITOR_OPENAI_PREVIOUS_RESPONSE_ID] = previous
    conversation = _param(kwargs, "conversation")
    conversation = get(conversation, "id") if not isinstance(conversation, str) else conversation
    if isinstance(conversation, str):
        attrs[sc.GEN_AI_CONVERSATION_ID] = conversation
    fmt = get(get(_param(kwargs, "text"), "format"), "type")
    if _param(kwargs, "text_format") is not None or fmt in ("json_schema", "json_object"):
        attrs[sc.GEN_AI_OUTPUT_TYPE] = "json"
    elif fmt == "text":
        attrs[sc.GEN_AI_OUTPUT_TYPE] = "text"
    if capture_content:
        input_ = _param(kwargs, "input")
        if isinstance(input_, (str, Sequence)):  # never consume a one-shot iterable the SDK still needs
            system, msgs = input_items_messages(input_, _param(kwargs, "instructions"))
            if system:
                attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = messages_json(system)
            attrs[sc.GEN_AI_INPUT_MESSAGES] = messages_json(msgs)
        tools = _param(kwargs, "tools")
        if isinstance(tools, Sequence) and tools:
            attrs[sc.GEN_AI_TOOL_DEFINITIONS] = messages_json(to_jsonable(list(tools)))
    return {k: v for k, v in attrs.items() if v is not None}


# --- response --------------------------------------------------------------------------------------


@dataclass
class ResponseSummary:
    """A ``Response`` reduced to what the span records (built from the object or from stream events)."""

    id: str | None = None
    model: str | None = None
    status: str | None = None
    incomplete_reason: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    service_tier: str | None = None
    usage: Any = None
    items: list[Any] = field(default_factory=list)

    def take_response(self, response: Any) -> None:
        """Everything a ``Response`` carries; later values win (a final event beats ``response.created``)."""
        for attr in ("id", "model", "status", "service_tier"):
            value = get(response, attr)
            if isinstance(value, str) and value:
                setattr(self, attr, value)
        reason = get(get(response, "incomplete_details"), "reason")
        if isinstance(reason, str):
            self.incomplete_reason = reason
        error = get(response, "error")
        if error is not None:
            self.error_code = str(get(error, "code") or sc.ERROR_TYPE_OTHER)
            self.error_message = get(error, "message")
        if get(response, "usage") is not None:
            self.usage = get(response, "usage")
        output = get(response, "output")
        if isinstance(output, Sequence) and output:
            self.items = list(output)

    def failure(self) -> tuple[str, str] | None:
        """(``error.type``, message) when the API reported a failed response, else None."""
        if self.status == "failed" or self.error_code is not None:
            code = self.error_code or sc.ERROR_TYPE_OTHER
            return code, f"{code}: {self.error_message or 'response failed'}"
        return None

    def finish_reason(self) -> tuple[str | None, str | None]:
        """(raw value for ``gen_ai.response.finish_reasons``, GenAI enum value for the output message)."""
        raw: str | None
        if self.status == "incomplete" and self.incomplete_reason:
            raw = self.incomplete_reason
        elif self.error_code is not None and self.status in (None, "in_progress", "queued"):
            raw = "failed"  # an ``error`` event ended the stream before any final status
        else:
            raw = self.status
        if raw is None or raw in ("in_progress", "queued"):
            return None, None  # never finished (early close): no reason to report
        if raw == "completed":
            calls = any(get(i, "type") in _CLIENT_TOOL_CALLS for i in self.items)
            return raw, "tool_call" if calls else "stop"
        return raw, _FINISH_ENUM.get(raw, raw)


def output_parts(items: Sequence[Any]) -> list[dict[str, Any]]:
    return [part for item in items for part in _item_parts(item)]


def summary_attributes(summary: ResponseSummary, capture_content: bool) -> dict[str, Any]:
    usage = summary.usage
    attrs: dict[str, Any] = {
        sc.GEN_AI_RESPONSE_ID: summary.id,
        sc.GEN_AI_RESPONSE_MODEL: summary.model,
        sc.OPENAI_RESPONSE_SERVICE_TIER: summary.service_tier,
        sc.GEN_AI_USAGE_INPUT_TOKENS: _num(get(usage, "input_tokens"), int),
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: _num(get(usage, "output_tokens"), int),
    }
    details = get(usage, "input_tokens_details")
    for key, value in (
        (sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, get(details, "cached_tokens")),
        (sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, get(details, "cache_write_tokens")),
        (
            sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
            get(get(usage, "output_tokens_details"), "reasoning_tokens"),
        ),
    ):
        if _num(value, int):
            attrs[key] = int(value)
    raw, enum = summary.finish_reason()
    if raw is not None:
        attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = [raw]
    if capture_content:
        parts = output_parts(summary.items)
        if parts or enum is not None:
            msg: dict[str, Any] = {"role": "assistant", "parts": parts}
            if enum is not None:
                msg["finish_reason"] = enum
            attrs[sc.GEN_AI_OUTPUT_MESSAGES] = messages_json([msg])
    return {k: v for k, v in attrs.items() if v is not None}


def responses_response_attributes(response: Any, capture_content: bool) -> dict[str, Any]:
    summary = ResponseSummary()
    summary.take_response(response)
    return summary_attributes(summary, capture_content)


def responses_failure(response: Any) -> tuple[str, str] | None:
    summary = ResponseSummary()
    summary.take_response(response)
    return summary.failure()


# --- streams ---------------------------------------------------------------------------------------


class ResponsesAccumulator:
    """Folds typed Responses stream events into a :class:`ResponseSummary` (see ``_stream.Accumulator``).

    Items are rebuilt from deltas so an early close still records what arrived; a final
    ``response.completed`` / ``.incomplete`` / ``.failed`` event replaces them with the API's own.
    """

    _CONTENT_DELTAS = (
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.custom_tool_call_input.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.delta",
    )

    def __init__(self) -> None:
        self.summary = ResponseSummary()
        self._items: dict[int, Any] = {}  # dicts while deltas arrive, the SDK's item once done
        self._final = False

    def add(self, event: Any) -> bool:
        typ = get(event, "type")
        if typ in ("response.created", "response.in_progress", "response.queued"):
            self.summary.take_response(get(event, "response"))
            return False
        if typ in ("response.completed", "response.incomplete", "response.failed"):
            self.summary.take_response(get(event, "response"))
            self._final = bool(self.summary.items)
            return False
        if typ == "error":
            self.summary.error_code = str(get(event, "code") or sc.ERROR_TYPE_OTHER)
            self.summary.error_message = get(event, "message")
            return False
        index = get(event, "output_index")
        if not isinstance(index, int):
            return False
        if typ == "response.output_item.added":
            self._items[index] = _item_dict(get(event, "item"))
            return False
        if typ == "response.output_item.done":
            self._items[index] = get(event, "item")
            return False
        delta = get(event, "delta")
        if typ not in self._CONTENT_DELTAS or not isinstance(delta, str):
            return False
        item = self._items.setdefault(index, {"type": "message", "content": []})
        if not isinstance(item, dict):
            return bool(delta)  # a delta after its item was done: the done item is authoritative
        if typ in ("response.output_text.delta", "response.refusal.delta"):
            _append_text(item.setdefault("content", []), get(event, "content_index") or 0, delta)
        elif typ == "response.function_call_arguments.delta":
            item["arguments"] = (item.get("arguments") or "") + delta
        elif typ == "response.custom_tool_call_input.delta":
            item["input"] = (item.get("input") or "") + delta
        elif typ == "response.reasoning_summary_text.delta":
            _append_text(item.setdefault("summary", []), get(event, "summary_index") or 0, delta)
        else:
            _append_text(item.setdefault("content", []), get(event, "content_index") or 0, delta)
        return bool(delta)

    def _summary(self) -> ResponseSummary:
        if not self._final:
            self.summary.items = [self._items[i] for i in sorted(self._items)]
        return self.summary

    def attributes(self, capture_content: bool) -> dict[str, Any]:
        return summary_attributes(self._summary(), capture_content)

    def failure(self) -> tuple[str, str] | None:
        return self.summary.failure()


def _item_dict(item: Any) -> dict[str, Any]:
    """A mutable copy of an output item (SDK model or dict) that deltas can extend."""
    data = to_jsonable(item)
    return dict(data) if isinstance(data, dict) else {"type": str(get(item, "type") or "unknown")}


def _append_text(parts: list[Any], index: int, delta: str) -> None:
    while len(parts) <= index:
        parts.append({"type": "output_text", "text": ""})
    part = parts[index]
    if isinstance(part, dict):
        part["text"] = str(part.get("text") or "") + delta
