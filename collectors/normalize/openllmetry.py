"""OpenLLMetry / Traceloop spans (reference §2): both attribute generations plus the workflow layer.

* **Current** (``opentelemetry-instrumentation-openai`` ≥ 0.55): OTel GenAI ≥1.37 keys plus Traceloop's own
  ``gen_ai.usage.total_tokens``, ``gen_ai.is_streaming`` and one ``gen_ai.content.completion.chunk`` event
  per streamed chunk. The shared OTel GenAI mapping does the bulk.
* **Legacy indexed** (< 0.55): ``gen_ai.prompt.{i}.role|content|tool_calls.{j}.*|tool_call_id`` and
  ``gen_ai.completion.{i}.*``, ``llm.request.type``, ``llm.usage.total_tokens``, ``llm.is_streaming`` and
  ``llm.content.completion.chunk`` events. Rebuilt into the one internal message shape.
* **Workflow layer** (traceloop-sdk decorators): ``traceloop.span.kind`` workflow/task/agent/tool, the
  decorated function's ``traceloop.entity.input``/``output`` as the span's text, and managed-prompt keys.

Recognised by marker keys only Traceloop writes (a set-membership test, cheap for every span); the
association properties ``user_id``/``session_id`` are read by the shared pipeline for every convention.
"""

from __future__ import annotations

from typing import Any

from collectors.normalize import messages as msgs
from collectors.normalize.base import Normalizer
from collectors.normalize.common import (
    display_text,
    first_event_ttft_ms,
    maybe_json,
    take_bool,
    take_prefixed,
    take_str,
)
from collectors.normalize.otel_genai import apply_genai, kind_from_operation
from collectors.otlp import Span
from monitor import semconv as sc

SPAN_KIND = "traceloop.span.kind"
ENTITY_INPUT = "traceloop.entity.input"
ENTITY_OUTPUT = "traceloop.entity.output"
REQUEST_TYPE = "llm.request.type"
PROMPT_KEY = "traceloop.prompt.key"
PROMPT_VERSION = "traceloop.prompt.version"
STREAM_KEYS = ("gen_ai.is_streaming", "llm.is_streaming")
PROMPT_PREFIX = "gen_ai.prompt."
COMPLETION_PREFIX = "gen_ai.completion."

MARKERS = frozenset(
    (
        SPAN_KIND,
        "traceloop.entity.name",
        "traceloop.workflow.name",
        "traceloop.association.properties.user_id",
        "traceloop.association.properties.session_id",
        REQUEST_TYPE,
        "llm.usage.total_tokens",
        "llm.is_streaming",
        "gen_ai.is_streaming",
        "gen_ai.openai.api_base",
        "gen_ai.prompt.0.role",
        "gen_ai.prompt.0.content",
        "gen_ai.completion.0.content",
        "gen_ai.completion.0.role",
    )
)
CHUNK_EVENTS = frozenset(("gen_ai.content.completion.chunk", "llm.content.completion.chunk"))

WORKFLOW_KINDS = {"workflow": "chain", "task": "chain", "agent": "agent", "tool": "tool"}
REQUEST_TYPE_KINDS = {
    "chat": "llm",
    "completion": "llm",
    "embedding": "embedding",
    "rerank": "reranker",
}


class OpenLLMetryNormalizer(Normalizer):
    convention = "openllmetry"

    def matches(self, span: Span) -> bool:
        return not MARKERS.isdisjoint(span.attributes)

    def normalize(self, span: Span, attrs: dict[str, Any], row: dict[str, Any]) -> None:
        kind = kind_from_operation(attrs.get(sc.GEN_AI_OPERATION_NAME))
        tl_kind = attrs.get(SPAN_KIND)
        if not kind and type(tl_kind) is str and tl_kind in WORKFLOW_KINDS:
            kind = WORKFLOW_KINDS[tl_kind]
        if type(tl_kind) is str:
            del attrs[SPAN_KIND]  # "unknown" included: the kind column already says what we know
        rtype = attrs.get(REQUEST_TYPE)
        if type(rtype) is str:
            kind = kind or REQUEST_TYPE_KINDS.get(rtype, "")
            del attrs[REQUEST_TYPE]
        apply_genai(attrs, row, kind, span)

        for key in STREAM_KEYS:
            stream = take_bool(attrs, key)
            if stream is not None:
                row["stream"] = stream or row["stream"]
        if row["ttft_ms"] is None and span.events:
            row["ttft_ms"] = first_event_ttft_ms(span, CHUNK_EVENTS)
        if not row["input_messages"]:
            legacy_prompts(attrs, row)
        if not row["output_messages"]:
            legacy_completions(attrs, row)
        row["prompt_name"] = take_str(attrs, PROMPT_KEY)
        row["prompt_version"] = take_str(attrs, PROMPT_VERSION)
        if not row["input_text"]:
            v = attrs.pop(ENTITY_INPUT, None)
            if v is not None:
                row["input_text"] = display_text(v)
        if not row["output_text"]:
            v = attrs.pop(ENTITY_OUTPUT, None)
            if v is not None:
                row["output_text"] = display_text(v)


def _tool_calls(raw: Any) -> list[dict[str, Any]]:
    """Legacy ``tool_calls.{j}.id|name|arguments`` → OTel ``tool_call`` parts."""
    out = []
    for c in raw if isinstance(raw, list) else ():
        if isinstance(c, dict):
            part: dict[str, Any] = {"type": "tool_call", "name": c.get("name", "")}
            if c.get("id") is not None:
                part["id"] = c["id"]
            if "arguments" in c:
                part["arguments"] = maybe_json(c["arguments"])
            out.append(part)
    return out


def _indexed_message(m: Any, default_role: str) -> dict[str, Any] | None:
    """One rebuilt ``gen_ai.prompt.{i}``/``gen_ai.completion.{i}`` object → an OpenAI-style message."""
    if not isinstance(m, dict):
        return None
    content = m.get("content")
    if type(content) is str and content[:1] == "[":
        parsed = maybe_json(content)  # multimodal content: a JSON list of parts
        if isinstance(parsed, list):
            content = parsed
    out: dict[str, Any] = {"role": m.get("role") or default_role, "content": content}
    calls = _tool_calls(m.get("tool_calls"))
    fn = m.get("function_call")
    if isinstance(fn, dict):
        calls.extend(_tool_calls([fn]))
    if calls:
        out["tool_calls"] = calls
    if m.get("tool_call_id") is not None:
        out["tool_call_id"] = m["tool_call_id"]
    if type(m.get("finish_reason")) is str:
        out["finish_reason"] = m["finish_reason"]
    return out


def _rebuild(attrs: dict[str, Any], prefix: str, default_role: str) -> list[msgs.Message]:
    raw = take_prefixed(attrs, prefix)
    items = raw if isinstance(raw, list) else []
    found = [x for x in (_indexed_message(m, default_role) for m in items) if x is not None]
    return msgs.parse_messages(found, default_role) or [] if found else []


def legacy_prompts(attrs: dict[str, Any], row: dict[str, Any]) -> None:
    found = _rebuild(attrs, PROMPT_PREFIX, "user")
    if found:
        row["input_messages"] = msgs.messages_json(found)
        row["input_text"] = msgs.messages_text(found)


def legacy_completions(attrs: dict[str, Any], row: dict[str, Any]) -> None:
    found = _rebuild(attrs, COMPLETION_PREFIX, "assistant")
    if found:
        row["output_messages"] = msgs.messages_json(found)
        row["output_text"] = msgs.messages_text(found)
        if not row["finish_reason"]:
            row["finish_reason"] = msgs.finish_reason(found)
