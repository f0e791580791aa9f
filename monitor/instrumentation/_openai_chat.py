"""A chat completion reduced to a flat tuple on the app's thread, its span attributes built later.

Why: a deferred call (``_deferred``) waits for the finisher thread, and whatever it holds meanwhile
counts toward CPython's GC thresholds on the app's thread. A ``ChatCompletion`` is about a dozen GC
objects (pydantic models, their field sets and dicts, the choices list); its snapshot is one tuple, of
str, int and None for a text reply, which the collector untracks. The eager path goes through the same
two steps (:func:`chat_response_attributes`), so both record exactly the same attributes.
"""

from __future__ import annotations

from typing import Any

from monitor.instrumentation import _openai_extract as ex  # by module: tests patch its functions
from monitor.instrumentation._genai import get
from monitor.instrumentation.base import is_sdk_model

__all__ = ["chat_response_attributes", "chat_response_snapshot", "chat_snapshot_attributes"]


def _header(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


_CHAT_HEAD = 9  # fields of a chat snapshot before its choices
_CHOICE = 6  # fields per choice
_MISSING = object()
# type -> one of the openai SDK's own (pydantic) models (also read by ``_fastcall.ChatSnapshot``)
SDK_MODEL_TYPES: dict[type, bool] = {}


def _extra_field(model: Any, name: str) -> Any:
    """``getattr(model, name, None)`` for an SDK model, without the exception a name it does not declare
    costs (~3 µs: pydantic looks it up in the extras the server sent, then raises)."""
    value = model.__dict__.get(name, _MISSING)
    if value is not _MISSING:
        return value
    extra = getattr(model, "__pydantic_extra__", None)
    return extra.get(name) if extra else None


def chat_response_snapshot(response: Any) -> tuple[Any, ...]:
    """The values :func:`chat_snapshot_attributes` reads from a chat completion, as one flat tuple.

    Why: a deferred call waits for the finisher thread, and while it waits whatever it holds counts
    toward CPython's GC thresholds on the app's thread. A ``ChatCompletion`` is about a dozen GC objects
    (pydantic models, their field sets and dicts, the choices list); this is one tuple, of str, int and
    None for a text reply (so the collector untracks it), and it freezes the values at call time: an
    app that edits the response afterwards does not change its span. App's thread: raw attribute reads
    only (no checks: those run with the attributes); the SDK's own models are read directly, anything
    else (dicts from compatible servers) through ``get``. Layout: id, model, system_fingerprint,
    service_tier, prompt, completion, cached, cache-write and reasoning tokens, then per choice index,
    role, content, refusal, finish_reason and its tool calls as a tuple of ``(id, name, arguments)``
    (none: the shared ``()``).
    """
    if is_sdk_model(response, "openai", SDK_MODEL_TYPES):
        try:
            return _sdk_chat_snapshot(response)
        except AttributeError:  # an SDK model without a field we read: the generic reads below
            pass
    usage = get(response, "usage")
    prompt_details = get(usage, "prompt_tokens_details")
    fields: list[Any] = [
        get(response, "id"),
        get(response, "model"),
        get(response, "system_fingerprint"),
        get(response, "service_tier"),
        get(usage, "prompt_tokens"),
        get(usage, "completion_tokens"),
        get(prompt_details, "cached_tokens"),
        get(prompt_details, "cache_write_tokens"),
        get(get(usage, "completion_tokens_details"), "reasoning_tokens"),
    ]
    for ch in get(response, "choices") or ():
        msg = get(ch, "message")
        tool_calls = get(msg, "tool_calls")
        fields += (
            get(ch, "index"),
            get(msg, "role"),
            get(msg, "content"),
            get(msg, "refusal"),
            get(ch, "finish_reason"),
            tuple(
                (get(t, "id"), get(get(t, "function"), "name"), get(get(t, "function"), "arguments"))
                for t in tool_calls
            )
            if tool_calls
            else (),
        )
    return tuple(fields)


def _sdk_chat_snapshot(response: Any) -> tuple[Any, ...]:
    """:func:`chat_response_snapshot` of the SDK's ``ChatCompletion``: the same reads as attributes."""
    usage = response.usage
    if usage is None:
        tokens: tuple[Any, ...] = (None,) * 5
    else:
        prompt_details = usage.prompt_tokens_details
        completion_details = usage.completion_tokens_details
        tokens = (
            usage.prompt_tokens,
            usage.completion_tokens,
            None if prompt_details is None else getattr(prompt_details, "cached_tokens", None),
            None if prompt_details is None else _extra_field(prompt_details, "cache_write_tokens"),
            None if completion_details is None else getattr(completion_details, "reasoning_tokens", None),
        )
    fields: list[Any] = [response.id, response.model, response.system_fingerprint, response.service_tier]
    fields += tokens
    for ch in response.choices or ():
        msg = ch.message
        tool_calls = msg.tool_calls
        fields += (
            ch.index,
            msg.role,
            msg.content,
            msg.refusal,
            ch.finish_reason,
            tuple(
                (t.id, get(get(t, "function"), "name"), get(get(t, "function"), "arguments"))
                for t in tool_calls
            )
            if tool_calls
            else (),
        )
    return tuple(fields)


def chat_snapshot_attributes(snapshot: tuple[Any, ...], capture_content: bool) -> dict[str, Any]:
    """Response attributes of a chat completion from its :func:`chat_response_snapshot` (any thread)."""
    comp = ex.Completion(id=_header(snapshot[0]), model=_header(snapshot[1]))
    comp.system_fingerprint, comp.service_tier = _header(snapshot[2]), _header(snapshot[3])
    (
        comp.input_tokens,
        comp.output_tokens,
        comp.cache_read_tokens,
        comp.cache_write_tokens,
        comp.reasoning_tokens,
    ) = (ex._num(v, int) for v in snapshot[4:_CHAT_HEAD])
    choices = [snapshot[i : i + _CHOICE] for i in range(_CHAT_HEAD, len(snapshot), _CHOICE)]
    choices.sort(key=lambda c: c[0] or 0)  # by index, stable
    for _, role, content, refusal, reason, calls in choices:
        comp.choices.append(
            ex.Choice(
                role=role or "assistant",
                text=content if isinstance(content, str) else refusal,
                tool_calls=[ex.ToolCall(i, n, a or "") for i, n, a in calls],
                finish_reason=reason,
            )
        )
    return ex.completion_attributes(comp, capture_content)


def chat_response_attributes(response: Any, capture_content: bool) -> dict[str, Any]:
    """Response attributes of a chat completion (one code path with the deferred snapshot's)."""
    return chat_snapshot_attributes(chat_response_snapshot(response), capture_content)
