"""OpenTelemetry GenAI semantic conventions (current generation, ≥ v1.37) → ``spans`` columns.

Reads the current keys first and the deprecated ones as fallbacks (``gen_ai.system`` for the provider,
``gen_ai.usage.prompt_tokens``/``completion_tokens`` for usage, the oldest ``gen_ai.prompt``/
``gen_ai.completion`` strings for content), because one stream routinely mixes generations (reference
§1.1). Content may be a JSON string or a structured AnyValue array; both are accepted.

``gen_ai.operation.name`` is read but deliberately left in ``attributes``: ``kind`` folds chat,
text_completion and generate_content together, and the exact operation is still worth filtering on.
"""

from __future__ import annotations

from typing import Any

from collectors.normalize import _native
from collectors.normalize import messages as msgs
from collectors.normalize.base import Normalizer
from collectors.normalize.common import (
    MAX_UINT32,
    as_str_list,
    display_text,
    normalize_provider,
    take_bool,
    take_first_int,
    take_float,
    take_int,
    take_str,
)
from collectors.otlp import Span
from monitor import semconv as sc

GEN_AI_PREFIX = "gen_ai."
TOTAL_TOKEN_KEYS = _native.TOTAL_TOKEN_KEYS  # ("gen_ai.usage.total_tokens", "llm.usage.total_tokens")
# ≤ v1.26 content span events (still sent by OpenLIT) and the attribute each carries (reference §1.4).
CONTENT_PROMPT_EVENT = "gen_ai.content.prompt"
CONTENT_COMPLETION_EVENT = "gen_ai.content.completion"

OPERATION_KINDS = {
    sc.OP_CHAT: "llm",
    sc.OP_TEXT_COMPLETION: "llm",
    sc.OP_GENERATE_CONTENT: "llm",
    sc.OP_EMBEDDINGS: "embedding",
    sc.OP_EXECUTE_TOOL: "tool",
    sc.OP_INVOKE_AGENT: "agent",
    sc.OP_CREATE_AGENT: "agent",
    sc.OP_PLAN: "agent",
    sc.OP_INVOKE_WORKFLOW: "chain",
    sc.OP_RETRIEVAL: "retriever",
    "search_memory": "retriever",
}


def kind_from_operation(op: Any) -> str:
    return OPERATION_KINDS.get(op, "") if type(op) is str else ""


_native.init(OPERATION_KINDS)


class OTelGenAINormalizer(Normalizer):
    """Spans with any ``gen_ai.*`` attribute and no more specific convention."""

    convention = "otel-genai"

    def matches(self, span: Span) -> bool:
        return any(k.startswith(GEN_AI_PREFIX) for k in span.attributes)

    def normalize(self, span: Span, attrs: dict[str, Any], row: dict[str, Any]) -> None:
        apply_genai(attrs, row, span=span)


def apply_genai(attrs: dict[str, Any], row: dict[str, Any], kind: str = "", span: Span | None = None) -> None:
    """The OTel GenAI mapping, shared with conventions that extend it (our SDK, OpenLLMetry, OpenLIT…).

    ``kind`` is the extending convention's own verdict, which wins over ``gen_ai.operation.name``.
    ``span`` (when given) lets the oldest generation's content span events be read.
    The attribute mapping and message parsing run natively when the extension is built (``_native.py``);
    :func:`apply_genai_core` is the reference it mirrors and the fallback.
    """
    native = _native.native
    if native is not None:
        native.apply_genai_core(attrs, row, kind)
    else:
        apply_genai_core(attrs, row, kind)
    if span is not None and span.events and not (row["input_messages"] and row["output_messages"]):
        content_events(span, row)

    if row["kind"] == "tool":
        tool_io(attrs, row)


def apply_genai_core(attrs: dict[str, Any], row: dict[str, Any], kind: str = "") -> None:
    """The mapping up to ``finish_reason`` (everything but content events and tool I/O), in pure Python."""
    kind = kind or kind_from_operation(attrs.get(sc.GEN_AI_OPERATION_NAME))

    provider = take_str(attrs, sc.GEN_AI_PROVIDER_NAME) or take_str(attrs, sc.GEN_AI_SYSTEM)
    if provider:
        row["provider"] = normalize_provider(provider)
    request_model = take_str(attrs, sc.GEN_AI_REQUEST_MODEL)
    response_model = take_str(attrs, sc.GEN_AI_RESPONSE_MODEL)
    row["request_model"] = request_model
    row["response_model"] = response_model
    row["model"] = response_model or request_model
    if not kind and row["model"]:
        kind = "llm"
    if kind:
        row["kind"] = kind

    row["response_id"] = take_str(attrs, sc.GEN_AI_RESPONSE_ID)
    ttft = take_float(attrs, sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)
    if ttft is not None and ttft >= 0:
        row["ttft_ms"] = ttft * 1000.0
    row["temperature"] = take_float(attrs, sc.GEN_AI_REQUEST_TEMPERATURE)
    row["top_p"] = take_float(attrs, sc.GEN_AI_REQUEST_TOP_P)
    row["max_tokens"] = take_int(attrs, sc.GEN_AI_REQUEST_MAX_TOKENS, MAX_UINT32)
    stream = take_bool(attrs, sc.GEN_AI_REQUEST_STREAM)
    if stream is not None:
        row["stream"] = stream

    inp = take_int(attrs, sc.GEN_AI_USAGE_INPUT_TOKENS)
    if inp is None:
        inp = take_int(attrs, sc.GEN_AI_USAGE_PROMPT_TOKENS)
    out = take_int(attrs, sc.GEN_AI_USAGE_OUTPUT_TOKENS)
    if out is None:
        out = take_int(attrs, sc.GEN_AI_USAGE_COMPLETION_TOKENS)
    row["input_tokens"] = inp or 0
    row["output_tokens"] = out or 0
    # No total in the spec; OpenLLMetry (both generations) and OpenLIT send one (reference §7 rule 4).
    total = take_first_int(attrs, TOTAL_TOKEN_KEYS)
    if total is not None:
        row["total_tokens"] = total

    conversation = attrs.get(sc.GEN_AI_CONVERSATION_ID)
    if type(conversation) is str and conversation:
        if not row["session_id"]:
            row["session_id"] = conversation
            del attrs[sc.GEN_AI_CONVERSATION_ID]
        elif conversation == row["session_id"]:
            del attrs[sc.GEN_AI_CONVERSATION_ID]  # same id under its generic name: nothing left to keep

    finish = _take_first_finish_reason(attrs)
    finish_in_messages = _content(attrs, row)
    row["finish_reason"] = finish or finish_in_messages


def _take_first_finish_reason(attrs: dict[str, Any]) -> str:
    v = attrs.get(sc.GEN_AI_RESPONSE_FINISH_REASONS)
    if isinstance(v, list):
        first = next((x for x in v if type(x) is str and x), "")
        del attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS]
        return first
    if type(v) is str and v:
        del attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS]
        if v[0] == "[":
            return next(iter(as_str_list(v) or []), "")
        return v
    return ""


def _content(attrs: dict[str, Any], row: dict[str, Any]) -> str:
    """Prompt/completion content: current message attributes, else the oldest plain strings.

    Returns the finish reason found in the output messages (the deprecated per-message field), "" if none.
    """
    system_parts: list[dict[str, Any]] = []
    raw_system = attrs.get(sc.GEN_AI_SYSTEM_INSTRUCTIONS)
    if raw_system is not None:
        system_parts = msgs.parse_parts(raw_system)
        if system_parts:
            del attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS]

    inputs = msgs.parse_messages(attrs.get(sc.GEN_AI_INPUT_MESSAGES), "user")
    if inputs is not None:
        del attrs[sc.GEN_AI_INPUT_MESSAGES]
    else:
        legacy = attrs.get(sc.GEN_AI_PROMPT)
        if type(legacy) is str and legacy:
            del attrs[sc.GEN_AI_PROMPT]
            inputs = msgs.parse_messages(legacy, "user")
    input_list = list(inputs or [])
    if system_parts:
        input_list.insert(0, msgs.system_message(system_parts))
    if input_list:
        row["input_messages"] = msgs.messages_json(input_list)
        row["input_text"] = msgs.messages_text(input_list)

    outputs = msgs.parse_messages(attrs.get(sc.GEN_AI_OUTPUT_MESSAGES), "assistant")
    if outputs is not None:
        del attrs[sc.GEN_AI_OUTPUT_MESSAGES]
    else:
        legacy = attrs.get(sc.GEN_AI_COMPLETION)
        if type(legacy) is str and legacy:
            del attrs[sc.GEN_AI_COMPLETION]
            outputs = msgs.parse_messages(legacy, "assistant")
    if outputs:
        row["output_messages"] = msgs.messages_json(outputs)
        row["output_text"] = msgs.messages_text(outputs)
        return msgs.finish_reason(outputs)
    return ""


def tool_io(attrs: dict[str, Any], row: dict[str, Any]) -> None:
    """Tool spans: arguments and result are the span's input and output."""
    if not row["input_text"]:
        args = attrs.pop(sc.GEN_AI_TOOL_CALL_ARGUMENTS, None)
        if args is not None:
            row["input_text"] = display_text(args)
    if not row["output_text"]:
        result = attrs.pop(sc.GEN_AI_TOOL_CALL_RESULT, None)
        if result is not None:
            row["output_text"] = display_text(result)


def content_events(span: Span, row: dict[str, Any]) -> None:
    """Oldest generation: ``gen_ai.content.prompt``/``.completion`` span events, when no attribute had content."""
    for ev in span.events:
        if ev.name == CONTENT_PROMPT_EVENT and not row["input_messages"]:
            found = msgs.parse_messages(ev.attributes.get(sc.GEN_AI_PROMPT), "user")
            if found:
                row["input_messages"] = msgs.messages_json(found)
                row["input_text"] = msgs.messages_text(found)
        elif ev.name == CONTENT_COMPLETION_EVENT and not row["output_messages"]:
            found = msgs.parse_messages(ev.attributes.get(sc.GEN_AI_COMPLETION), "assistant")
            if found:
                row["output_messages"] = msgs.messages_json(found)
                row["output_text"] = msgs.messages_text(found)
                if not row["finish_reason"]:
                    row["finish_reason"] = msgs.finish_reason(found)
