"""Spans from our own SDK: OTel GenAI attributes plus the ``llm_monitor.*`` keys it adds.

Recognised by the instrumentation scope (``llm_monitor…``) or any ``llm_monitor.`` attribute, so spans
from ``@monitor.chain``/``@monitor.tool`` carry their kind, prompt link, tags and captured function
input/output into proper columns instead of ``attributes``. ``llm_monitor.metadata.*`` keys stay in
``attributes`` on purpose: they are free-form user metadata, filtered on by key.
"""

from __future__ import annotations

from typing import Any

from collectors.normalize.base import Normalizer
from collectors.normalize.common import display_text, has_key_prefix, take_str, take_str_list
from collectors.normalize.otel_genai import apply_genai
from collectors.otlp import Span
from monitor import semconv as sc

_KINDS = frozenset(sc.KINDS)


class LLMMonitorNormalizer(Normalizer):
    convention = "llm-monitor"

    def matches(self, span: Span) -> bool:
        if span.scope_name.startswith(sc.SCOPE_PREFIX):
            return True
        return has_key_prefix(span.attributes, sc.LLM_MONITOR_PREFIX)

    def normalize(self, span: Span, attrs: dict[str, Any], row: dict[str, Any]) -> None:
        kind = attrs.get(sc.LLM_MONITOR_SPAN_KIND)
        if type(kind) is str and kind.lower() in _KINDS:
            kind = kind.lower()
            del attrs[sc.LLM_MONITOR_SPAN_KIND]
        else:
            kind = ""
        apply_genai(attrs, row, kind)
        row["prompt_name"] = take_str(attrs, sc.LLM_MONITOR_PROMPT_NAME)
        row["prompt_version"] = take_str(attrs, sc.LLM_MONITOR_PROMPT_VERSION)
        tags = take_str_list(attrs, sc.LLM_MONITOR_TAGS)
        if tags:
            row["tags"] = tags
        # Captured function arguments/return value: the text of chain/agent/tool/retriever spans, and of
        # LLM spans whose content came in no message attribute.
        if not row["input_text"]:
            v = attrs.pop(sc.LLM_MONITOR_INPUT, None)
            if v is not None:
                row["input_text"] = display_text(v)
        if not row["output_text"]:
            v = attrs.pop(sc.LLM_MONITOR_OUTPUT, None)
            if v is not None:
                row["output_text"] = display_text(v)
