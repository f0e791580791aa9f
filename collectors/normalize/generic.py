"""The fallback for spans no convention claimed: HTTP handlers, DB calls, unknown LLM libraries.

Such spans still land in ``spans`` (a trace is only readable whole), with kind ``other``; if they name a
model under one of the common generic keys they are counted as ``llm`` calls so they show up in usage.
"""

from __future__ import annotations

from typing import Any

from collectors.normalize.base import Normalizer
from collectors.normalize.common import take_str
from collectors.otlp import Span

# Model keys of libraries without a dedicated normalizer yet (Vercel AI SDK, bare OpenInference-ish spans).
GENERIC_MODEL_KEYS = ("llm.model_name", "ai.model.id", "model")


class GenericNormalizer(Normalizer):
    convention = "unknown"

    def matches(self, span: Span) -> bool:
        return True

    def normalize(self, span: Span, attrs: dict[str, Any], row: dict[str, Any]) -> None:
        for key in GENERIC_MODEL_KEYS:
            model = take_str(attrs, key)
            if model:
                row["model"] = row["request_model"] = model
                row["kind"] = "llm"
                return
