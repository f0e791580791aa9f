"""Langfuse's own OTel attributes (reference §4) → ``spans`` columns.

Spans from the Langfuse SDK (or apps that target Langfuse's OTel endpoint) describe each observation with
``langfuse.observation.*`` keys, often next to the OTel GenAI or OpenInference keys of the library that
made the call. The underlying convention is mapped first, then the ``langfuse.*`` keys override it,
because they are what the app explicitly said (Langfuse's own precedence, ``OtelIngestionProcessor.ts``).
"""

from __future__ import annotations

from typing import Any

from collectors.normalize import messages as msgs
from collectors.normalize.base import Normalizer
from collectors.normalize.common import (
    MAX_UINT32,
    as_float,
    as_int,
    display_text,
    iso_to_ns,
    maybe_json,
    take_json_obj,
    take_str,
    take_str_list,
)
from collectors.normalize.openinference import SPAN_KIND as OI_SPAN_KIND
from collectors.normalize.openinference import apply_openinference
from collectors.normalize.otel_genai import apply_genai
from collectors.otlp import Span

P = "langfuse.observation."
OBSERVATION_TYPE = P + "type"
MARKERS = frozenset(
    (
        OBSERVATION_TYPE,
        P + "input",
        P + "output",
        P + "model.name",
        P + "usage_details",
        P + "cost_details",
        P + "completion_start_time",
        P + "prompt.name",
        P + "level",
        "langfuse.trace.name",
        "langfuse.trace.input",
        "langfuse.trace.tags",
        "langfuse.user.id",
        "langfuse.session.id",
        "langfuse.environment",
        "langfuse.release",
        "langfuse.version",
    )
)
# generation is an LLM call; span/event say nothing, so the underlying convention decides
TYPES = {
    "generation": "llm",
    "embedding": "embedding",
    "agent": "agent",
    "tool": "tool",
    "chain": "chain",
    "retriever": "retriever",
    "guardrail": "guardrail",
    "evaluator": "evaluator",
}
USAGE_KEYS = {
    "input_tokens": ("input", "input_tokens", "prompt_tokens", "prompt"),
    "output_tokens": ("output", "output_tokens", "completion_tokens", "completion"),
    "total_tokens": ("total", "total_tokens"),
}


class LangfuseNormalizer(Normalizer):
    convention = "langfuse"

    def matches(self, span: Span) -> bool:
        return not MARKERS.isdisjoint(span.attributes)

    def normalize(self, span: Span, attrs: dict[str, Any], row: dict[str, Any]) -> None:
        if OI_SPAN_KIND in attrs:
            apply_openinference(span, attrs, row)
        else:
            apply_genai(attrs, row, span=span)
        otype = attrs.get(OBSERVATION_TYPE)
        if type(otype) is str:
            kind = TYPES.get(otype.lower())
            if kind:
                row["kind"] = kind
            del attrs[OBSERVATION_TYPE]

        model = take_str(attrs, P + "model.name")
        if model:
            row["model"] = model
            row["request_model"] = row["request_model"] or model
            if row["kind"] == "other":
                row["kind"] = "llm"
        params = take_json_obj(attrs, P + "model.parameters")
        if params:
            row["temperature"] = as_float(params.get("temperature"))
            row["top_p"] = as_float(params.get("top_p"))
            row["max_tokens"] = as_int(params.get("max_tokens"), MAX_UINT32)
        _usage(attrs, row)
        _cost(attrs, row)
        start = iso_to_ns(attrs.get(P + "completion_start_time"))
        if start is not None and start >= span.start_time_unix_nano > 0:
            row["ttft_ms"] = (start - span.start_time_unix_nano) / 1e6
            del attrs[P + "completion_start_time"]
        row["prompt_name"] = take_str(attrs, P + "prompt.name") or take_str(attrs, "langfuse.prompt.name")
        row["prompt_version"] = take_str(attrs, P + "prompt.version") or take_str(
            attrs, "langfuse.prompt.version"
        )
        level = take_str(attrs, P + "level")
        if level.upper() == "ERROR":
            row["status"] = "error"
        message = take_str(attrs, P + "status_message")
        if message and (row["status"] == "error" or level.upper() == "WARNING"):
            row["error_message"] = row["error_message"] or message
        elif message:
            attrs[P + "status_message"] = message  # informational, not an error: keep it visible
        env = take_str(attrs, "langfuse.environment")
        if env:
            row["environment"] = env
        tags = take_str_list(attrs, "langfuse.trace.tags") or take_str_list(attrs, "tag.tags")
        if tags:
            row["tags"] = tags
        _io(attrs, row, P + "input", "input", "user")
        _io(attrs, row, P + "output", "output", "assistant")
        if not row["parent_span_id"]:
            _io(attrs, row, "langfuse.trace.input", "input", "user", only_if_empty=True)
            _io(attrs, row, "langfuse.trace.output", "output", "assistant", only_if_empty=True)


def _usage(attrs: dict[str, Any], row: dict[str, Any]) -> None:
    usage = take_json_obj(attrs, P + "usage_details")
    if not usage:
        return
    for col, keys in USAGE_KEYS.items():
        for k in keys:
            n = as_int(usage.get(k))
            if n is not None:
                row[col] = n
                break


def _cost(attrs: dict[str, Any], row: dict[str, Any]) -> None:
    """``cost_details`` JSON: its ``total``, else the sum of its parts (input, output, …)."""
    cost = take_json_obj(attrs, P + "cost_details")
    if not cost:
        return
    total = as_float(cost.get("total"))
    if total is None:
        parts = [x for x in (as_float(v) for v in cost.values()) if x is not None]
        total = sum(parts) if parts else None
    if total is not None and total >= 0:
        row["cost_usd"] = total


def _io(
    attrs: dict[str, Any], row: dict[str, Any], key: str, side: str, role: str, only_if_empty: bool = False
) -> None:
    """Any JSON the app passed: a list of chat messages becomes messages, anything else plain text."""
    v = attrs.get(key)
    if v is None or (only_if_empty and row[f"{side}_text"]):
        return
    del attrs[key]
    parsed = maybe_json(v)
    if isinstance(parsed, dict) and isinstance(parsed.get("messages"), list):
        parsed = parsed["messages"]
    if isinstance(parsed, list) and parsed and all(isinstance(m, dict) and "role" in m for m in parsed):
        found = msgs.parse_messages(parsed, role) or []
        row[f"{side}_messages"] = msgs.messages_json(found)
        row[f"{side}_text"] = msgs.messages_text(found)
    else:
        row[f"{side}_text"] = display_text(v)
