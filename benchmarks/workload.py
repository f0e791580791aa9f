"""Deterministic OTLP/HTTP protobuf bodies of realistic LLM traces, for the collector benchmarks.

Every trace is five spans shaped like an OTel GenAI (≥ v1.37) agent run: an ``invoke_workflow`` root
(chain, carries ``user.id``/``session.id``), a ``chat`` span that answers with a tool call, an
``execute_tool`` span, a ``chat`` span with the final answer and a ``chat`` span summarising the
conversation. The chat spans carry ≈1 KB of prompt and completion as ``gen_ai.input.messages`` /
``gen_ai.output.messages`` JSON strings (what the contrib openai-v2 and Traceloop instrumentations send).

Everything is a pure function of ``(seed, global span index)``: request ``i`` of size ``batch`` holds spans
``i*batch … i*batch+batch-1`` whatever process builds it, so senders can build their share in parallel
and the checker can compute the expected token sums without the bodies.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

SPANS_PER_TRACE = 5
# position in the trace → (operation, OTLP span kind); positions 1, 3, 4 are LLM calls
_SHAPE = (("invoke_workflow", 1), ("chat", 3), ("execute_tool", 1), ("chat", 3), ("chat", 3))
LLM_POSITIONS = frozenset((1, 3, 4))
MODELS = ("gpt-4o-mini", "gpt-4.1", "claude-sonnet-4-5", "gemini-2.5-flash")
PROVIDERS = ("openai", "openai", "anthropic", "gcp.gemini")

_PROSE = (
    "order refund shipping invoice customer account password reset delivery tracking warehouse "
    "subscription upgrade downgrade billing cycle discount coupon policy return window damaged item "
    "replacement express standard international customs address payment card declined retry support "
    "ticket escalation manager weekend holiday schedule inventory backorder estimate confirmation email"
)
_WORDS = tuple(_PROSE.split())


def _text(rng: random.Random, n_chars: int) -> str:
    out: list[str] = []
    size = 0
    while size < n_chars:
        w = rng.choice(_WORDS)
        out.append(w)
        size += len(w) + 1
    return " ".join(out).capitalize() + "."


class Texts:
    """A seeded pool of prompts and completions (building fresh text per span would dominate set-up)."""

    def __init__(self, seed: int, size: int = 256) -> None:
        rng = random.Random(seed)
        self.system = [_text(rng, 160) for _ in range(8)]
        self.prompts = [_text(rng, 420) for _ in range(size)]
        self.answers = [_text(rng, 380) for _ in range(size)]
        self.size = size


def span_id(seed: int, idx: int) -> bytes:
    return ((seed & 0xFFFF) << 48 | (idx + 1)).to_bytes(8, "big")


def trace_id(seed: int, trace: int) -> bytes:
    return ((seed & 0xFFFF) << 112 | (trace + 1)).to_bytes(16, "big")


def tokens(idx: int) -> tuple[int, int]:
    """(input, output) tokens of span ``idx``: 0 for the chain and tool spans."""
    if idx % SPANS_PER_TRACE not in LLM_POSITIONS:
        return 0, 0
    return 200 + (idx * 7919) % 900, 40 + (idx * 104_729) % 400


def expected_token_sums(n_spans: int) -> tuple[int, int]:
    tin = tout = 0
    for i in range(n_spans):
        a, b = tokens(i)
        tin += a
        tout += b
    return tin, tout


def _kv(key: str, value: Any) -> KeyValue:
    kv = KeyValue(key=key)
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    elif isinstance(value, str):
        kv.value.string_value = value
    elif isinstance(value, list):
        for x in value:
            kv.value.array_value.values.add().string_value = x
    else:
        raise TypeError(type(value).__name__)
    return kv


def _dumps(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"))


def span_attributes(seed: int, idx: int, texts: Texts) -> dict[str, Any]:
    pos = idx % SPANS_PER_TRACE
    trace = idx // SPANS_PER_TRACE
    op = _SHAPE[pos][0]
    m = trace % len(MODELS)
    attrs: dict[str, Any] = {"gen_ai.operation.name": op}
    if op == "invoke_workflow":
        attrs["gen_ai.workflow.name"] = "support_flow"
        attrs["user.id"] = f"user-{trace % 997}"
        attrs["session.id"] = f"session-{trace % 4001}"
        return attrs
    if op == "execute_tool":
        attrs["gen_ai.tool.name"] = "lookup_order"
        attrs["gen_ai.tool.call.id"] = f"call_{seed}_{trace}"
        attrs["gen_ai.tool.type"] = "function"
        attrs["gen_ai.tool.call.arguments"] = _dumps({"order_id": f"A{trace:08d}", "verbose": False})
        attrs["gen_ai.tool.call.result"] = _dumps({"status": "shipped", "eta_days": trace % 7})
        return attrs
    inp, out = tokens(idx)
    prompt = texts.prompts[(idx * 31 + seed) % texts.size]
    answer = texts.answers[(idx * 17 + seed) % texts.size]
    attrs.update(
        {
            "gen_ai.provider.name": PROVIDERS[m],
            "gen_ai.request.model": MODELS[m],
            "gen_ai.response.model": f"{MODELS[m]}-2025-08-07",
            "gen_ai.response.id": f"chatcmpl-{seed}-{idx}",
            "gen_ai.request.temperature": 0.2,
            "gen_ai.request.max_tokens": 1024,
            "gen_ai.response.finish_reasons": ["tool_calls" if pos == 1 else "stop"],
            "gen_ai.usage.input_tokens": inp,
            "gen_ai.usage.output_tokens": out,
            "server.address": "api.openai.com",
            "server.port": 443,
            "gen_ai.system_instructions": _dumps(
                [{"type": "text", "content": texts.system[trace % len(texts.system)]}]
            ),
            "gen_ai.input.messages": _dumps(
                [{"role": "user", "parts": [{"type": "text", "content": prompt}]}]
            ),
        }
    )
    if pos == 1:
        parts: list[dict[str, Any]] = [
            {
                "type": "tool_call",
                "id": f"call_{seed}_{trace}",
                "name": "lookup_order",
                "arguments": {"order_id": f"A{trace:08d}"},
            }
        ]
        attrs["gen_ai.output.messages"] = _dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": answer[:120]}, *parts]}]
        )
    else:
        attrs["gen_ai.output.messages"] = _dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": answer}], "finish_reason": "stop"}]
        )
    return attrs


def base_time_ns(now_ns: int | None = None) -> int:
    """Midnight UTC a day before ``now``: recent enough for the store's retention TTL, stable for a day."""
    day = 86_400 * 1_000_000_000
    now = time.time_ns() if now_ns is None else now_ns
    return (now // day - 1) * day


def build_request(seed: int, index: int, batch: int, n_spans: int, texts: Texts, base_ns: int) -> bytes:
    """Request ``index``: spans ``index*batch`` up to ``min(n_spans, (index+1)*batch)``, protobuf-encoded.

    Span ``i`` of the trace starts ``base_ns`` + one second per trace + 50 ms per position.
    """
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(
        [
            _kv("service.name", "support-bot"),
            _kv("service.version", "1.4.2"),
            _kv("deployment.environment.name", "production"),
            _kv("telemetry.sdk.language", "python"),
            _kv("telemetry.sdk.name", "opentelemetry"),
            _kv("telemetry.sdk.version", "1.38.0"),
        ]
    )
    ss = rs.scope_spans.add()
    ss.scope.name = "opentelemetry.instrumentation.openai_v2"
    ss.scope.version = "2.2b0"
    for idx in range(index * batch, min(n_spans, (index + 1) * batch)):
        pos = idx % SPANS_PER_TRACE
        trace = idx // SPANS_PER_TRACE
        s: Span = ss.spans.add()
        s.trace_id = trace_id(seed, trace)
        s.span_id = span_id(seed, idx)
        if pos:
            s.parent_span_id = span_id(seed, idx - pos)
        op, kind = _SHAPE[pos]
        s.name = f"{op} {MODELS[trace % len(MODELS)]}" if op == "chat" else op
        s.kind = kind  # type: ignore[assignment]
        start = base_ns + trace * 1_000_000_000 + pos * 50_000_000
        s.start_time_unix_nano = start
        s.end_time_unix_nano = start + 40_000_000 + (idx % 97) * 1_000_000
        s.status.code = Status.STATUS_CODE_OK if pos else Status.STATUS_CODE_UNSET
        s.attributes.extend(_kv(k, v) for k, v in span_attributes(seed, idx, texts).items())
    return req.SerializeToString()


def n_requests(n_spans: int, batch: int) -> int:
    return (n_spans + batch - 1) // batch


def requests(
    seed: int, batch: int, n_spans: int, base_ns: int, which: range | None = None
) -> Iterator[bytes]:
    texts = Texts(seed)
    for i in which if which is not None else range(n_requests(n_spans, batch)):
        yield build_request(seed, i, batch, n_spans, texts, base_ns)
