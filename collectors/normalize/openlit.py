"""OpenLIT spans (reference §5): OTel GenAI with OpenLIT's own cost, TTFT and span-level service keys.

OpenLIT follows the newest OTel GenAI names, so the shared mapping does the bulk (including the legacy
``gen_ai.content.prompt``/``completion`` span events OpenLIT still emits). What it adds is worth a
column: its price-list cost (``gen_ai.usage.cost``, which wins over ours as a provider-reported cost),
TTFT in seconds on every span, and ``service.name``/``deployment.environment`` written on the span itself.
Recognised by the ``telemetry.sdk.name=openlit`` resource attribute or one of its own keys.
"""

from __future__ import annotations

from typing import Any

from collectors.normalize.base import Normalizer
from collectors.normalize.common import take_bool, take_float, take_str
from collectors.normalize.otel_genai import apply_genai
from collectors.otlp import Span
from monitor import semconv as sc

COST = "gen_ai.usage.cost"
TTFT = "gen_ai.server.time_to_first_token"
MARKERS = frozenset(
    (
        COST,
        TTFT,
        "gen_ai.server.time_per_output_token",
        "gen_ai.application_name",
        "gen_ai.sdk.version",
        "gen_ai.environment",
    )
)


class OpenLITNormalizer(Normalizer):
    convention = "openlit"

    def matches(self, span: Span) -> bool:
        return span.resource.get("telemetry.sdk.name") == "openlit" or not MARKERS.isdisjoint(span.attributes)

    def normalize(self, span: Span, attrs: dict[str, Any], row: dict[str, Any]) -> None:
        apply_genai(attrs, row, span=span)
        cost = take_float(attrs, COST)
        if cost is not None and cost >= 0:
            row["cost_usd"] = cost
        ttft = take_float(attrs, TTFT)
        if ttft is not None and ttft >= 0 and row["ttft_ms"] is None:
            row["ttft_ms"] = ttft * 1000.0
        stream = take_bool(attrs, sc.GEN_AI_REQUEST_STREAM)
        if stream is not None:
            row["stream"] = stream
        for key, col in (
            (sc.SERVICE_NAME, "service"),
            (sc.DEPLOYMENT_ENVIRONMENT, "environment"),
            ("gen_ai.environment", "environment"),
        ):
            v = attrs.get(key)
            if type(v) is str and v and (not row[col] or row[col] == v):
                row[col] = take_str(attrs, key)
