"""Pure extractors: OpenAI request kwargs / responses / stream chunks → GenAI span attributes.

Why one module of pure functions: the sync, async and streaming paths of every OpenAI operation share
them, so an attribute is computed in exactly one place. A streamed call folds its chunks into the
same :class:`Completion` a non-streamed response becomes, then both go through
:func:`completion_attributes`. Nothing here touches spans or does I/O, and everything tolerates
unexpected shapes (``with_raw_response`` returns wrappers, compatible servers omit fields): a missing
field means a missing attribute, not an exception.
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
    text_part,
    tool_call_part,
    tool_response_part,
)

__all__ = [
    "ChatAccumulator",
    "Completion",
    "CompletionAccumulator",
    "chat_request_attributes",
    "common_request_attributes",
    "completion_attributes",
    "embeddings_request_attributes",
    "embeddings_response_attributes",
    "input_messages",
    "text_request_attributes",
    "text_response_attributes",
]

_SYSTEM_ROLES = ("system", "developer")


def given(value: Any) -> bool:
    """False for None and the SDK's ``omit`` / ``NOT_GIVEN`` sentinels (checked by name: no import)."""
    return value is not None and type(value).__name__ not in ("Omit", "NotGiven")


def _param(kwargs: Mapping[str, Any], *names: str) -> Any:
    for n in names:
        v = kwargs.get(n)
        if given(v):
            return v
    return None


def _num(value: Any, typ: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return typ(value)


# --- request ---------------------------------------------------------------------------------------


def provider_name(client: Any) -> str:
    """``gen_ai.provider.name`` from the client class (names, so no optional module is imported)."""
    names = {c.__name__ for c in type(client).__mro__}
    if "BaseAzureClient" in names or "AzureOpenAI" in names or "AsyncAzureOpenAI" in names:
        return sc.PROVIDER_AZURE_OPENAI
    if "BedrockOpenAI" in names or "AsyncBedrockOpenAI" in names:
        return sc.PROVIDER_AWS_BEDROCK
    return sc.PROVIDER_OPENAI


def azure_deployment(client: Any) -> str | None:
    """The deployment an ``AzureOpenAI(azure_deployment=...)`` client is bound to (from its base URL)."""
    path = str(getattr(getattr(client, "base_url", None), "path", "") or "")
    _, sep, rest = path.partition("/deployments/")
    name = rest.split("/", 1)[0] if sep else ""
    return name or None


def server_attributes(client: Any) -> dict[str, Any]:
    url = getattr(client, "base_url", None)
    host = getattr(url, "host", None)
    if not host:
        return {}
    port = getattr(url, "port", None)
    if port is None:
        port = 443 if getattr(url, "scheme", "https") == "https" else 80
    return {sc.SERVER_ADDRESS: str(host), sc.SERVER_PORT: int(port)}


def common_request_attributes(
    operation: str, kind: str, resource: Any, kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """Attributes every OpenAI operation shares; ``resource`` is the SDK resource (``.._client``).

    On Azure the deployment is the model the call reaches, so it stands in when no ``model`` is given.
    """
    client = getattr(resource, "_client", None)
    provider = provider_name(client)
    attrs: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: operation,
        sc.GEN_AI_PROVIDER_NAME: provider,
        sc.LLM_MONITOR_SPAN_KIND: kind,
    }
    model = _param(kwargs, "model")
    if model is None and provider == sc.PROVIDER_AZURE_OPENAI:
        model = azure_deployment(client)
    if model is not None:
        attrs[sc.GEN_AI_REQUEST_MODEL] = str(model)
    attrs.update(server_attributes(client))
    return attrs


def _sampling_attributes(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Request parameters chat and legacy completions share."""
    attrs: dict[str, Any] = {
        sc.GEN_AI_REQUEST_TEMPERATURE: _num(_param(kwargs, "temperature"), float),
        sc.GEN_AI_REQUEST_TOP_P: _num(_param(kwargs, "top_p"), float),
        sc.GEN_AI_REQUEST_MAX_TOKENS: _num(_param(kwargs, "max_completion_tokens", "max_tokens"), int),
        sc.GEN_AI_REQUEST_FREQUENCY_PENALTY: _num(_param(kwargs, "frequency_penalty"), float),
        sc.GEN_AI_REQUEST_PRESENCE_PENALTY: _num(_param(kwargs, "presence_penalty"), float),
        sc.GEN_AI_REQUEST_SEED: _num(_param(kwargs, "seed"), int),
    }
    n = _num(_param(kwargs, "n"), int)
    if n is not None and n != 1:
        attrs[sc.GEN_AI_REQUEST_CHOICE_COUNT] = n
    stop = _param(kwargs, "stop")
    if isinstance(stop, str):
        attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = [stop]
    elif isinstance(stop, Sequence) and stop:
        attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = [str(s) for s in stop]
    if _param(kwargs, "stream") is True:
        attrs[sc.GEN_AI_REQUEST_STREAM] = True
    tier = _param(kwargs, "service_tier")
    if isinstance(tier, str) and tier != "auto":  # the OpenAI refinement leaves out the default
        attrs[sc.OPENAI_REQUEST_SERVICE_TIER] = tier
    return {k: v for k, v in attrs.items() if v is not None}


def _content_parts(content: Any) -> list[dict[str, Any]]:
    """A message's ``content`` (string or list of content parts) as GenAI parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [text_part(content)]
    if not isinstance(content, Sequence):
        return [text_part(str(content))]
    parts: list[dict[str, Any]] = []
    for p in content:
        typ = get(p, "type")
        if typ == "text":
            parts.append(text_part(get(p, "text", "")))
        elif typ == "refusal":
            parts.append(text_part(get(p, "refusal", "")))
        elif typ == "image_url":
            url = str(get(get(p, "image_url"), "url", ""))
            if url.startswith("data:"):  # inline base64: keep the type, not megabytes of payload
                mime = url[5:].split(";", 1)[0] or None
                parts.append({"type": "blob", "modality": "image", "mime_type": mime})
            else:
                parts.append({"type": "uri", "modality": "image", "uri": url})
        elif typ == "input_audio":
            fmt = get(get(p, "input_audio"), "format")
            parts.append({"type": "blob", "modality": "audio", "mime_type": f"audio/{fmt}" if fmt else None})
        elif typ == "file":
            parts.append({"type": "file", "modality": "file", "file_id": get(get(p, "file"), "file_id")})
        else:
            parts.append({"type": str(typ or "unknown")})
    return parts


def _plain_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(str(get(p, "text", "")) for p in content if get(p, "type") == "text")
    return "" if content is None else str(content)


def input_messages(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system instruction parts, input messages) from chat ``messages``; system/developer go apart."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        role = get(m, "role")
        content = get(m, "content")
        if role in _SYSTEM_ROLES:
            system.extend(_content_parts(content))
            continue
        if role == "tool":
            parts = [tool_response_part(get(m, "tool_call_id"), _plain_text(content))]
        elif role == "function":  # legacy function-calling result
            parts = [tool_response_part(None, _plain_text(content))]
        else:
            parts = _content_parts(content)
            for call in get(m, "tool_calls") or []:
                fn = get(call, "function")
                parts.append(tool_call_part(get(call, "id"), get(fn, "name"), get(fn, "arguments")))
            fc = get(m, "function_call")
            if fc is not None:
                parts.append(tool_call_part(None, get(fc, "name"), get(fc, "arguments")))
        msg: dict[str, Any] = {"role": str(role), "parts": parts}
        name = get(m, "name")
        if name:
            msg["name"] = str(name)
        out.append(msg)
    return system, out


def chat_request_attributes(kwargs: Mapping[str, Any], capture_content: bool) -> dict[str, Any]:
    attrs = _sampling_attributes(kwargs)
    attrs[sc.OPENAI_API_TYPE] = "chat_completions"
    response_format = _param(kwargs, "response_format")
    fmt = "json_schema" if isinstance(response_format, type) else get(response_format, "type")
    if fmt == "text":
        attrs[sc.GEN_AI_OUTPUT_TYPE] = "text"
    elif fmt in ("json_object", "json_schema"):
        attrs[sc.GEN_AI_OUTPUT_TYPE] = "json"
    if capture_content:
        messages = _param(kwargs, "messages")
        if isinstance(messages, Sequence):  # never consume a one-shot iterable the SDK still needs
            system, msgs = input_messages(messages)
            if system:
                attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = messages_json(system)
            attrs[sc.GEN_AI_INPUT_MESSAGES] = messages_json(msgs)
        tools = _param(kwargs, "tools")
        if isinstance(tools, Sequence) and tools:
            attrs[sc.GEN_AI_TOOL_DEFINITIONS] = messages_json(to_jsonable(list(tools)))
    return attrs


def text_request_attributes(kwargs: Mapping[str, Any], capture_content: bool) -> dict[str, Any]:
    """Legacy ``completions.create``: the prompt (string or list of strings) as user messages."""
    attrs = _sampling_attributes(kwargs)
    if capture_content:
        prompt = _param(kwargs, "prompt")
        prompts = (
            [prompt] if isinstance(prompt, str) else list(prompt) if isinstance(prompt, Sequence) else []
        )
        if prompts:
            msgs = [
                {"role": "user", "parts": [text_part(p if isinstance(p, str) else json.dumps(p))]}
                for p in prompts
            ]
            attrs[sc.GEN_AI_INPUT_MESSAGES] = messages_json(msgs)
    return attrs


def embeddings_request_attributes(kwargs: Mapping[str, Any], capture_content: bool) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    fmt = _param(kwargs, "encoding_format")
    if isinstance(fmt, str):
        attrs[sc.GEN_AI_REQUEST_ENCODING_FORMATS] = [fmt]
    dims = _num(_param(kwargs, "dimensions"), int)
    if dims is not None:
        attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = dims
    return attrs


# --- response --------------------------------------------------------------------------------------


@dataclass
class ToolCall:
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass
class Choice:
    role: str = "assistant"
    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None


@dataclass
class Completion:
    """A chat or text completion reduced to what the span records (built from a response or chunks)."""

    id: str | None = None
    model: str | None = None
    choices: list[Choice] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None

    def take_usage(self, usage: Any) -> None:
        if usage is None:
            return
        self.input_tokens = _num(get(usage, "prompt_tokens"), int)
        self.output_tokens = _num(get(usage, "completion_tokens"), int)
        prompt_details = get(usage, "prompt_tokens_details")
        self.cache_read_tokens = _num(get(prompt_details, "cached_tokens"), int)
        self.cache_write_tokens = _num(get(prompt_details, "cache_write_tokens"), int)
        self.reasoning_tokens = _num(get(get(usage, "completion_tokens_details"), "reasoning_tokens"), int)

    def take_header(self, obj: Any) -> None:
        """Id, model and OpenAI extras from a response or any chunk (the first non-empty value wins)."""
        for attr, key in (
            ("id", "id"),
            ("model", "model"),
            ("system_fingerprint", "system_fingerprint"),
            ("service_tier", "service_tier"),
        ):
            value = get(obj, key)
            if getattr(self, attr) is None and isinstance(value, str) and value:
                setattr(self, attr, value)


def completion_attributes(comp: Completion, capture_content: bool) -> dict[str, Any]:
    """Response attributes shared by chat and text completions, streamed or not."""
    attrs: dict[str, Any] = {
        sc.GEN_AI_RESPONSE_ID: comp.id,
        sc.GEN_AI_RESPONSE_MODEL: comp.model,
        sc.GEN_AI_USAGE_INPUT_TOKENS: comp.input_tokens,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: comp.output_tokens,
        sc.OPENAI_RESPONSE_SYSTEM_FINGERPRINT: comp.system_fingerprint,
        sc.OPENAI_RESPONSE_SERVICE_TIER: comp.service_tier,
    }
    if comp.cache_read_tokens:
        attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = comp.cache_read_tokens
    if comp.cache_write_tokens:
        attrs[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = comp.cache_write_tokens
    if comp.reasoning_tokens:
        attrs[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = comp.reasoning_tokens
    reasons = [c.finish_reason for c in comp.choices if c.finish_reason]
    if reasons:
        attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = reasons
    if capture_content and comp.choices:
        out = []
        for c in comp.choices:
            parts = [text_part(c.text)] if c.text else []
            parts += [tool_call_part(t.id, t.name, t.arguments) for t in c.tool_calls]
            msg: dict[str, Any] = {"role": c.role or "assistant", "parts": parts}
            reason = finish_reason_enum(c.finish_reason)
            if reason:
                msg["finish_reason"] = reason
            out.append(msg)
        attrs[sc.GEN_AI_OUTPUT_MESSAGES] = messages_json(out)
    return {k: v for k, v in attrs.items() if v is not None}


def _choices_in_order(choices: Any) -> list[Any]:
    items = list(choices or [])
    return sorted(items, key=lambda c: get(c, "index") or 0)


def text_response_attributes(response: Any, capture_content: bool) -> dict[str, Any]:
    comp = Completion()
    comp.take_header(response)
    comp.take_usage(get(response, "usage"))
    for ch in _choices_in_order(get(response, "choices")):
        comp.choices.append(Choice(text=get(ch, "text"), finish_reason=get(ch, "finish_reason")))
    return completion_attributes(comp, capture_content)


def embeddings_response_attributes(response: Any, capture_content: bool) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    model = get(response, "model")
    if isinstance(model, str):
        attrs[sc.GEN_AI_RESPONSE_MODEL] = model
    tokens = _num(get(get(response, "usage"), "prompt_tokens"), int)
    if tokens is not None:
        attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = tokens
    data = get(response, "data") or []
    first = get(data[0], "embedding") if isinstance(data, Sequence) and data else None
    if isinstance(first, Sequence) and not isinstance(first, str):
        attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = len(first)
    return attrs


# --- streams ---------------------------------------------------------------------------------------


class ChatAccumulator:
    """Folds ``ChatCompletionChunk``s into a :class:`Completion` (see ``_stream.Accumulator``)."""

    def __init__(self) -> None:
        self.comp = Completion()
        self._choices: dict[int, Choice] = {}
        self._texts: dict[int, list[str]] = {}
        self._calls: dict[tuple[int, int], ToolCall] = {}

    def add(self, chunk: Any) -> bool:
        self.comp.take_header(chunk)
        usage = get(chunk, "usage")
        if usage is not None:
            self.comp.take_usage(usage)
        content_seen = False
        for ch in get(chunk, "choices") or []:
            i = get(ch, "index") or 0
            choice = self._choices.setdefault(i, Choice())
            delta = get(ch, "delta")
            role = get(delta, "role")
            if role:
                choice.role = role
            text = get(delta, "content")
            if isinstance(text, str) and text:
                self._texts.setdefault(i, []).append(text)
                content_seen = True
            for tc in get(delta, "tool_calls") or []:
                key = (i, get(tc, "index") or 0)
                call = self._calls.get(key)
                if call is None:
                    call = self._calls[key] = ToolCall()
                    choice.tool_calls.append(call)
                fn = get(tc, "function")
                call.id = get(tc, "id") or call.id
                call.name = get(fn, "name") or call.name
                call.arguments += get(fn, "arguments") or ""
                content_seen = True
            reason = get(ch, "finish_reason")
            if reason:
                choice.finish_reason = reason
        return content_seen

    @staticmethod
    def text_of(chunk: Any) -> str | None:
        """The text of a chunk that carries nothing else a span needs, else None (see ``add_text``).

        "Nothing else": one choice, index 0, a non-empty ``delta.content`` and no role, tool or function
        call, finish reason or usage. A stream is mostly such chunks; keeping only their text (strings are
        not tracked by the garbage collector) instead of the chunk objects keeps a deferred stream cheap
        for the app. The id/model header is read from the other chunks (the first one carries the role).
        """
        try:
            choices = chunk.choices
            if chunk.usage is not None or len(choices) != 1:
                return None
            ch = choices[0]
            if ch.index or ch.finish_reason is not None:
                return None
            delta = ch.delta
            text = delta.content
            if type(text) is not str or not text or delta.role or delta.tool_calls or delta.function_call:
                return None
            return text
        except (AttributeError, TypeError):
            return None

    def add_text(self, text: str) -> bool:
        """Fold a chunk ``text_of`` reduced to its text (choice 0 content)."""
        self._choices.setdefault(0, Choice())
        self._texts.setdefault(0, []).append(text)
        return True

    def completion(self) -> Completion:
        self.comp.choices = []
        for i in sorted(self._choices):
            choice = self._choices[i]
            texts = self._texts.get(i)
            choice.text = "".join(texts) if texts else None
            self.comp.choices.append(choice)
        return self.comp

    def attributes(self, capture_content: bool) -> dict[str, Any]:
        return completion_attributes(self.completion(), capture_content)


class CompletionAccumulator:
    """Folds legacy text-completion chunks (``choices[i].text``) into a :class:`Completion`."""

    def __init__(self) -> None:
        self.comp = Completion()
        self._texts: dict[int, list[str]] = {}
        self._reasons: dict[int, str] = {}

    def add(self, chunk: Any) -> bool:
        self.comp.take_header(chunk)
        usage = get(chunk, "usage")
        if usage is not None:
            self.comp.take_usage(usage)
        content_seen = False
        for ch in get(chunk, "choices") or []:
            i = get(ch, "index") or 0
            texts = self._texts.setdefault(i, [])
            text = get(ch, "text")
            if isinstance(text, str) and text:
                texts.append(text)
                content_seen = True
            if get(ch, "finish_reason"):
                self._reasons[i] = get(ch, "finish_reason")
        return content_seen

    def attributes(self, capture_content: bool) -> dict[str, Any]:
        self.comp.choices = [
            Choice(text="".join(self._texts[i]) or None, finish_reason=self._reasons.get(i))
            for i in sorted(self._texts)
        ]
        return completion_attributes(self.comp, capture_content)
