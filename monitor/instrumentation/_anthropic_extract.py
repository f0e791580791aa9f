"""Pure extractors: Anthropic Messages request kwargs / responses / stream events → GenAI attributes.

Why one module of pure functions: ``messages.create``, ``messages.parse``, the ``stream=True`` path
and the ``messages.stream()`` helper, sync and async, all go through these, so each attribute is
computed in one place. A stream's events fold into the same :class:`Reply` a non-streamed ``Message``
becomes, and both go through :func:`reply_attributes`. Nothing here touches spans or does I/O, and
everything tolerates unexpected shapes (dicts or SDK models, raw-response wrappers, fields a proxy
omits): a missing field means a missing attribute, not an exception.

Mapping choices (OTel GenAI, current generation):

* ``gen_ai.usage.input_tokens`` includes cached tokens, as the convention asks; Anthropic's own
  ``input_tokens`` excludes them, so it is ``input + cache_read + cache_creation``. The cache counts
  also go to ``gen_ai.usage.cache_read.input_tokens`` / ``.cache_creation.input_tokens`` (when non-zero).
* ``gen_ai.response.finish_reasons`` keeps Anthropic's ``stop_reason`` (``end_turn``, ``tool_use``…);
  the output message's ``finish_reason`` uses the GenAI enum (``stop``, ``tool_call``…).
* ``system`` (a string or text blocks) → ``gen_ai.system_instructions``; ``tool_use`` blocks →
  ``tool_call`` parts with the input object as arguments; ``tool_result`` blocks → ``tool_call_response``
  parts (the message keeps Anthropic's role, ``user``); ``thinking`` → ``reasoning`` parts. Images and
  documents become placeholder parts (``blob`` with the media type but never the base64 payload,
  ``uri`` or ``file``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor import semconv as sc
from monitor._serialize import to_jsonable
from monitor.instrumentation._genai import (
    finish_reason_enum,
    get,
    messages_json,
    parse_arguments,
    text_part,
    tool_call_part,
    tool_response_part,
)
from monitor.instrumentation._openai_extract import given, server_attributes
from monitor.instrumentation.base import is_sdk_model

__all__ = [
    "Reply",
    "StreamAccumulator",
    "input_messages",
    "provider_name",
    "raw_response_attributes",
    "reply_attributes",
    "request_attributes",
    "response_attributes",
    "response_snapshot",
    "snapshot_attributes",
    "system_parts",
]

# Anthropic stop_reason → the GenAI output-message enum (stop|length|content_filter|tool_call|error).
_FINISH_ENUM = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_call",
    "refusal": "content_filter",
}
# Content deltas that carry model output (time to first chunk is taken at the first of these).
_CONTENT_DELTAS = frozenset({"text_delta", "input_json_delta", "thinking_delta"})


def _reasoning_part(text: Any) -> dict[str, Any]:
    return {"type": "reasoning", "content": text_part(text)["content"]}


def _param(kwargs: Mapping[str, Any], name: str) -> Any:
    v = kwargs.get(name)
    return v if given(v) else None


def _sampling(kwargs: Mapping[str, Any], name: str) -> Any:
    """A sampling parameter: a keyword in SDKs that have it, else from ``extra_body`` (anthropic 2.x
    dropped ``temperature``/``top_p``/``top_k`` from the signature; apps pass them there)."""
    v = _param(kwargs, name)
    if v is None:
        extra = kwargs.get("extra_body")
        v = extra.get(name) if isinstance(extra, Mapping) else None
    return v


def _num(value: Any, typ: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return typ(value)


# --- request ---------------------------------------------------------------------------------------


def provider_name(client: Any) -> str:
    """``gen_ai.provider.name`` from the client class (by name, so no optional module is imported)."""
    names = {c.__name__ for c in type(client).__mro__}
    if names & {"AnthropicBedrock", "AsyncAnthropicBedrock"}:
        return sc.PROVIDER_AWS_BEDROCK
    if names & {"AnthropicVertex", "AsyncAnthropicVertex"}:
        return sc.PROVIDER_GCP_VERTEX_AI
    return sc.PROVIDER_ANTHROPIC


def _media_part(block: Any, modality: str) -> dict[str, Any]:
    """An image or document block as a placeholder part: what it was, never its payload."""
    source = get(block, "source")
    kind = get(source, "type")
    if kind == "url":
        return {"type": "uri", "modality": modality, "uri": str(get(source, "url", ""))}
    if kind == "file":
        return {"type": "file", "modality": modality, "file_id": get(source, "file_id")}
    mime = get(source, "media_type")
    if mime is None and kind == "content":
        mime = "text/plain"
    return {"type": "blob", "modality": modality, "mime_type": mime}


def _tool_result_response(content: Any) -> Any:
    """A ``tool_result`` block's content: its text, or its parts when it holds more than text."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, Sequence):
        return str(content)
    if all(get(b, "type") == "text" for b in content):
        return "".join(str(get(b, "text", "")) for b in content)
    return content_parts(content)


def content_parts(content: Any) -> list[dict[str, Any]]:
    """A message's ``content`` (string or content blocks, dicts or SDK models) as GenAI parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [text_part(content)]
    if not isinstance(content, Sequence):
        return [text_part(str(content))]
    parts: list[dict[str, Any]] = []
    for block in content:
        if isinstance(block, str):
            parts.append(text_part(block))
            continue
        typ = get(block, "type")
        if typ == "text":
            parts.append(text_part(get(block, "text", "")))
        elif typ == "tool_use":
            parts.append(tool_call_part(get(block, "id"), get(block, "name"), get(block, "input")))
        elif typ == "tool_result":
            response = _tool_result_response(get(block, "content"))
            parts.append(tool_response_part(get(block, "tool_use_id"), response))
        elif typ == "thinking":
            parts.append(_reasoning_part(get(block, "thinking", "")))
        elif typ == "image":
            parts.append(_media_part(block, "image"))
        elif typ == "document":
            parts.append(_media_part(block, "document"))
        elif typ == "server_tool_use":
            name = get(block, "name")
            call = {"type": name, "input": to_jsonable(get(block, "input"))}
            parts.append(
                {"type": "server_tool_call", "id": get(block, "id"), "name": name, "server_tool_call": call}
            )
        elif isinstance(typ, str) and typ.endswith("_tool_result"):
            parts.append(
                {
                    "type": "server_tool_call_response",
                    "id": get(block, "tool_use_id"),
                    "server_tool_call_response": {"type": typ},
                }
            )
        else:
            parts.append({"type": str(typ or "unknown")})
    return parts


def system_parts(system: Any) -> list[dict[str, Any]]:
    """``system`` (a string or a list of text blocks) as the parts of ``gen_ai.system_instructions``."""
    return content_parts(system)


def input_messages(messages: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"role": str(get(m, "role")), "parts": content_parts(get(m, "content"))} for m in messages]


def request_attributes(
    resource: Any, kwargs: Mapping[str, Any], capture_content: bool, *, stream: bool = False
) -> dict[str, Any]:
    """Every request attribute of a Messages call; ``resource`` is the SDK resource (``._client``)."""
    client = getattr(resource, "_client", None)
    attrs: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
        sc.GEN_AI_PROVIDER_NAME: provider_name(client),
        sc.LLM_MONITOR_SPAN_KIND: "llm",
    }
    model = _param(kwargs, "model")
    if model is not None:
        attrs[sc.GEN_AI_REQUEST_MODEL] = str(model)
    attrs.update(server_attributes(client))
    attrs[sc.GEN_AI_REQUEST_TEMPERATURE] = _num(_sampling(kwargs, "temperature"), float)
    attrs[sc.GEN_AI_REQUEST_TOP_P] = _num(_sampling(kwargs, "top_p"), float)
    attrs[sc.GEN_AI_REQUEST_TOP_K] = _num(_sampling(kwargs, "top_k"), int)
    attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] = _num(_param(kwargs, "max_tokens"), int)
    stop = _param(kwargs, "stop_sequences")
    if isinstance(stop, Sequence) and not isinstance(stop, str) and stop:
        attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = [str(s) for s in stop]
    if stream or _param(kwargs, "stream") is True:
        attrs[sc.GEN_AI_REQUEST_STREAM] = True
    fmt = get(_param(kwargs, "output_config"), "format")
    if get(fmt, "type") == "json_schema" or isinstance(_param(kwargs, "output_format"), type):
        attrs[sc.GEN_AI_OUTPUT_TYPE] = "json"
    if capture_content:
        system = _param(kwargs, "system")
        if isinstance(system, (str, Sequence)) and system:
            attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = messages_json(system_parts(system))
        messages = _param(kwargs, "messages")
        if isinstance(messages, Sequence):  # never consume a one-shot iterable the SDK still needs
            attrs[sc.GEN_AI_INPUT_MESSAGES] = messages_json(input_messages(messages))
        tools = _param(kwargs, "tools")
        if isinstance(tools, Sequence) and tools:
            attrs[sc.GEN_AI_TOOL_DEFINITIONS] = messages_json(to_jsonable(list(tools)))
    return {k: v for k, v in attrs.items() if v is not None}


# --- response --------------------------------------------------------------------------------------


@dataclass
class Reply:
    """A Messages response reduced to what the span records (built from a ``Message`` or stream events)."""

    id: str | None = None
    model: str | None = None
    role: str = "assistant"
    parts: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    thinking_tokens: int | None = None

    def take_header(self, message: Any) -> None:
        for attr in ("id", "model"):
            value = get(message, attr)
            if getattr(self, attr) is None and isinstance(value, str) and value:
                setattr(self, attr, value)

    def take_usage(self, usage: Any) -> None:
        """Fold a ``usage`` object in; fields it leaves out (or null) keep their earlier value."""
        for attr, key in (
            ("input_tokens", "input_tokens"),
            ("output_tokens", "output_tokens"),
            ("cache_read_tokens", "cache_read_input_tokens"),
            ("cache_creation_tokens", "cache_creation_input_tokens"),
        ):
            value = _num(get(usage, key), int)
            if value is not None:
                setattr(self, attr, value)
        thinking = _num(get(get(usage, "output_tokens_details"), "thinking_tokens"), int)
        if thinking is not None:
            self.thinking_tokens = thinking


def reply_attributes(reply: Reply, capture_content: bool) -> dict[str, Any]:
    """Response attributes of a Messages call, streamed or not."""
    attrs: dict[str, Any] = {sc.GEN_AI_RESPONSE_ID: reply.id, sc.GEN_AI_RESPONSE_MODEL: reply.model}
    if reply.input_tokens is not None:
        cached = (reply.cache_read_tokens or 0) + (reply.cache_creation_tokens or 0)
        attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = reply.input_tokens + cached
    attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = reply.output_tokens
    if reply.cache_read_tokens:
        attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = reply.cache_read_tokens
    if reply.cache_creation_tokens:
        attrs[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = reply.cache_creation_tokens
    if reply.thinking_tokens:
        attrs[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = reply.thinking_tokens
    if reply.stop_reason:
        attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = [reply.stop_reason]
    if capture_content and (reply.parts or reply.stop_reason):
        msg: dict[str, Any] = {"role": reply.role, "parts": reply.parts}
        if reply.stop_reason:
            msg["finish_reason"] = _FINISH_ENUM.get(reply.stop_reason) or finish_reason_enum(
                reply.stop_reason
            )
        attrs[sc.GEN_AI_OUTPUT_MESSAGES] = messages_json([msg])
    return {k: v for k, v in attrs.items() if v is not None}


def _texts(content: Any) -> list[str] | None:
    """The texts of text-only content (``content_parts`` reads a text and its block alike), else None."""
    if type(content) is not list:
        return None
    texts = []
    for block in content:
        text = get(block, "text", "") if get(block, "type") == "text" else None
        if type(text) is not str:
            return None  # tool calls, thinking, images...: the blocks themselves are kept
        texts.append(text)
    return texts


_SDK_MODEL_TYPES: dict[type, bool] = {}  # type -> one of the anthropic SDK's own (pydantic) models


def response_snapshot(message: Any) -> tuple[Any, ...]:
    """The values :func:`snapshot_attributes` reads from a non-streamed ``Message``, as one flat tuple.

    Why: a deferred call waits for the finisher thread, and what it holds meanwhile counts toward
    CPython's GC thresholds on the app's thread; a ``Message`` is a dozen GC objects (models, their
    field sets, the content list), this is one tuple of str/int/None for a text reply (the collector
    untracks it: nothing nested), and it freezes those values at call time. App's thread: raw reads
    only (the SDK's models directly, dicts through ``get``; checks run with the attributes). Layout:
    id, model, role, input, output, cache-read, cache-creation and thinking tokens, stop reason, then
    ``True`` and the texts of text-only content, or ``False`` and the content as given (read later).
    """
    sdk = is_sdk_model(message, "anthropic", _SDK_MODEL_TYPES)
    if sdk:
        try:
            usage = message.usage
            head: tuple[Any, ...] = (message.id, message.model, message.role)
            if usage is None:
                tokens: tuple[Any, ...] = (None,) * 5
            else:
                details = usage.output_tokens_details
                tokens = (
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cache_read_input_tokens,
                    usage.cache_creation_input_tokens,
                    None if details is None else get(details, "thinking_tokens"),
                )
            stop, content = message.stop_reason, message.content
        except AttributeError:  # an SDK model without a field we read: the generic reads below
            sdk = False
    if not sdk:
        usage = get(message, "usage")
        head = (get(message, "id"), get(message, "model"), get(message, "role"))
        tokens = (
            get(usage, "input_tokens"),
            get(usage, "output_tokens"),
            get(usage, "cache_read_input_tokens"),
            get(usage, "cache_creation_input_tokens"),
            get(get(usage, "output_tokens_details"), "thinking_tokens"),
        )
        stop, content = get(message, "stop_reason"), get(message, "content")
    texts = _texts(content)
    return (*head, *tokens, stop, *((True, *texts) if texts is not None else (False, content)))


def snapshot_attributes(snapshot: tuple[Any, ...], capture_content: bool) -> dict[str, Any]:
    """Response attributes from a :func:`response_snapshot` (any thread)."""
    reply = Reply()
    reply.take_header({"id": snapshot[0], "model": snapshot[1]})
    reply.role = str(snapshot[2] or "assistant")
    (
        reply.input_tokens,
        reply.output_tokens,
        reply.cache_read_tokens,
        reply.cache_creation_tokens,
        reply.thinking_tokens,
    ) = (_num(v, int) for v in snapshot[3:8])
    stop = snapshot[8]
    reply.stop_reason = stop if isinstance(stop, str) else None
    if capture_content:
        reply.parts = content_parts(snapshot[10:] if snapshot[9] else snapshot[10])
    return reply_attributes(reply, capture_content)


def response_attributes(message: Any, capture_content: bool) -> dict[str, Any]:
    """A non-streamed ``Message`` (or ``ParsedMessage``, its JSON as a dict, or its
    :func:`response_snapshot`: a deferred call's); both go through the snapshot, one code path."""
    snapshot = message if type(message) is tuple else response_snapshot(message)
    return snapshot_attributes(snapshot, capture_content)


def raw_response_attributes(raw: Any, capture_content: bool) -> dict[str, Any]:
    """``with_raw_response`` results: read the body only when the SDK has already read it all.

    A streamed raw response (``stream=True``, or ``with_streaming_response``) is left alone: reading
    it would consume the body the application is about to read. Returns {} when nothing can be told.
    """
    http = getattr(raw, "http_response", None)
    if http is None or not getattr(http, "is_closed", False):
        return {}
    try:
        body = json.loads(http.content)
    except Exception:  # never read (ResponseNotRead), or not JSON: expected shapes, not our bug
        return {}
    if not isinstance(body, dict) or body.get("type") != "message":
        return {}
    return response_attributes(body, capture_content)


# --- streams ---------------------------------------------------------------------------------------


class _Block:
    __slots__ = ("head", "pieces", "type")

    def __init__(self, head: Any) -> None:
        self.head = head
        self.type = get(head, "type")
        self.pieces: list[str] = []

    def part(self) -> dict[str, Any]:
        text = "".join(self.pieces)
        if self.type == "text":
            return text_part(text)
        if self.type == "thinking":
            return _reasoning_part(text)
        if self.type in ("tool_use", "server_tool_use"):
            arguments: Any = text if self.pieces else get(self.head, "input")
            if isinstance(arguments, str) and arguments.strip() == "":
                arguments = get(self.head, "input")
            if self.type == "tool_use":
                return tool_call_part(get(self.head, "id"), get(self.head, "name"), arguments)
            block = {"type": "server_tool_use", "id": get(self.head, "id"), "name": get(self.head, "name")}
            block["input"] = parse_arguments(arguments)
            return content_parts([block])[0]
        return content_parts([self.head])[0]


class StreamAccumulator:
    """Folds raw Messages stream events into a :class:`Reply` (see ``_stream.Accumulator``).

    Usage comes from ``message_start`` (input and cache counts) and ``message_delta`` (the final output
    count, and any input counts it repeats). Runs on the app's thread, one event at a time.
    """

    def __init__(self, keep_content: bool = True) -> None:
        self.reply = Reply()
        self._blocks: dict[int, _Block] = {}
        self._keep = keep_content  # without content capture, text deltas are counted, not kept

    def add(self, event: Any) -> bool:
        typ = get(event, "type")
        if typ == "content_block_delta":
            delta = get(event, "delta")
            dtype = get(delta, "type")
            block = self._blocks.get(get(event, "index") or 0)
            if block is not None:
                piece = get(
                    delta, {"text_delta": "text", "thinking_delta": "thinking"}.get(dtype, "partial_json")
                )
                if self._keep and dtype in _CONTENT_DELTAS and isinstance(piece, str):
                    block.pieces.append(piece)
            return dtype in _CONTENT_DELTAS
        if typ == "content_block_start":
            self._blocks[get(event, "index") or 0] = _Block(get(event, "content_block"))
        elif typ == "message_start":
            message = get(event, "message")
            self.reply.take_header(message)
            self.reply.role = str(get(message, "role") or "assistant")
            self.reply.take_usage(get(message, "usage"))
        elif typ == "message_delta":
            stop = get(get(event, "delta"), "stop_reason")
            if isinstance(stop, str):
                self.reply.stop_reason = stop
            self.reply.take_usage(get(event, "usage"))
        return False

    def attributes(self, capture_content: bool) -> dict[str, Any]:
        if capture_content:
            self.reply.parts = [self._blocks[i].part() for i in sorted(self._blocks)]
        return reply_attributes(self.reply, capture_content)
