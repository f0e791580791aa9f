"""Provider-neutral pieces of a model-call span: its lifecycle and the GenAI message format.

Every provider instrumentor (OpenAI now; Anthropic and others later) builds request/response
attributes its own way, then hands them to :class:`LLMCall`, which owns the span: activation during
the HTTP call, time to first chunk, error recording, and ending exactly once whichever of
completion, error, stream close or garbage collection comes first (possibly on another thread).

Messages follow the current OTel GenAI JSON schema (``gen_ai.input.messages`` /
``gen_ai.output.messages`` / ``gen_ai.system_instructions``, JSON strings on spans):
``[{"role": ..., "parts": [{"type": "text", "content": ...}, {"type": "tool_call", ...}]}]``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from monitor import semconv as sc
from monitor._guard import guard
from monitor._serialize import to_jsonable, truncate
from monitor._tracing import record_exception

__all__ = [
    "MESSAGES_LIMIT",
    "LLMCall",
    "degraded_request_attributes",
    "finish_reason_enum",
    "get",
    "messages_json",
    "parse_arguments",
    "text_part",
    "tool_call_part",
    "tool_response_part",
]

MESSAGES_LIMIT = 256 * 1024  # characters of one messages attribute
_TEXT_LIMIT = 64 * 1024  # characters of one text part

# Provider finish reasons → the GenAI output-message enum (stop|length|content_filter|tool_call|error).
_FINISH_ENUM = {
    "tool_calls": "tool_call",
    "function_call": "tool_call",
    "end_turn": "stop",
    "max_tokens": "length",
}


_MAPPING_TYPES: dict[type, bool] = {}  # type -> is a Mapping (isinstance on an ABC is slow for models)


def get(obj: Any, key: str, default: Any = None) -> Any:
    """``obj[key]`` for mappings (request params are TypedDicts), ``obj.key`` for models."""
    if obj is None:
        return default
    t = type(obj)
    is_mapping = _MAPPING_TYPES.get(t)
    if is_mapping is None:
        is_mapping = isinstance(obj, Mapping)
        if len(_MAPPING_TYPES) < 1024:
            _MAPPING_TYPES[t] = is_mapping
    if is_mapping:
        return obj.get(key, default)
    return getattr(obj, key, default)


def degraded_request_attributes(
    operation: str, kind: str, provider: str | None, kwargs: Any
) -> dict[str, Any]:
    """The request attributes a span still gets when the full extractor raised (our bug, already logged).

    The call is recorded all the same: with these, its response attributes (usage, so its cost) and its
    status, marked with ``llm_monitor.telemetry.error`` so the gap in its request attributes is visible.
    Built from plain type checks only, so it cannot fail itself.
    """
    attrs: dict[str, Any] = {sc.GEN_AI_OPERATION_NAME: operation}
    if provider:
        attrs[sc.GEN_AI_PROVIDER_NAME] = provider
    attrs[sc.LLM_MONITOR_SPAN_KIND] = kind
    attrs[sc.LLM_MONITOR_TELEMETRY_ERROR] = "request_attributes"
    model = kwargs.get("model") if type(kwargs) is dict else None
    if type(model) is str and model:
        attrs[sc.GEN_AI_REQUEST_MODEL] = model
    return attrs


def text_part(content: Any) -> dict[str, Any]:
    return {
        "type": "text",
        "content": truncate(content if isinstance(content, str) else str(content), _TEXT_LIMIT),
    }


def parse_arguments(arguments: Any) -> Any:
    """Tool-call arguments as an object when they are valid JSON (the schema's preferred form)."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return truncate(arguments, _TEXT_LIMIT)
    return to_jsonable(arguments)


def tool_call_part(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "tool_call", "id": call_id, "name": name}
    if arguments not in (None, ""):
        part["arguments"] = parse_arguments(arguments)
    return part


def tool_response_part(call_id: Any, response: Any) -> dict[str, Any]:
    value = response if isinstance(response, str) else to_jsonable(response)
    if isinstance(value, str):
        value = truncate(value, _TEXT_LIMIT)
    return {"type": "tool_call_response", "id": call_id, "response": value}


def finish_reason_enum(reason: str | None) -> str | None:
    return None if reason is None else _FINISH_ENUM.get(reason, reason)


try:  # ~10x faster than json on the request path; same text for what messages hold (else json)
    import orjson

    _ORJSON_OPTS = (
        orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
    )
except ImportError:  # pragma: no cover - orjson comes with the server extra
    orjson = None  # type: ignore[assignment]


def _dumps(value: Any) -> str:
    if orjson is not None:
        try:
            return orjson.dumps(value, default=str, option=_ORJSON_OPTS).decode()
        except (TypeError, ValueError):  # big ints, lone surrogates...: the stdlib encoder takes them
            pass
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def messages_json(messages: list[dict[str, Any]] | list[Any], limit: int = MESSAGES_LIMIT) -> str:
    """JSON text of a messages/parts list, kept valid JSON when over ``limit`` by shortening texts first."""
    text = _dumps(messages)
    if len(text) <= limit:
        return text
    parts = [
        p for m in messages if isinstance(m, dict) for p in (m.get("parts") or [m]) if isinstance(p, dict)
    ]
    texts = [p for p in parts if isinstance(p.get("content"), str)]
    if texts:
        share = max(256, limit // (2 * len(texts)))
        for p in texts:
            p["content"] = truncate(p["content"], share)
        text = _dumps(messages)
    return truncate(text, limit)


class _Activation:
    """``with call.activated():`` as a plain object (a generator-based context manager costs more)."""

    __slots__ = ("span", "token")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.token: Any = None

    def __enter__(self) -> None:
        try:
            self.token = otel_context.attach(trace.set_span_in_context(self.span))
        except Exception:
            with guard("llm.activate"):
                raise

    def __exit__(self, *exc: object) -> None:
        token, self.token = self.token, None
        if token is not None:
            try:
                otel_context.detach(token)
            except Exception:
                with guard("llm.deactivate"):
                    raise


class LLMCall:
    """One in-flight model call. Thread-safe; every method is guarded and never raises."""

    __slots__ = ("_ended", "_lock", "_t0", "capture_content", "end_ns", "recording", "span", "ttft")

    def __init__(self, span: trace.Span, capture_content: bool, t0: float | None = None) -> None:
        self.span = span
        self.capture_content = capture_content
        self._t0 = time.perf_counter() if t0 is None else t0  # ``t0``: a deferred call's own start
        self.end_ns: int | None = None  # set for a deferred call: when it really ended
        self._lock = threading.Lock()
        self._ended = False
        self.ttft: float | None = None
        # Sampled out: skip response extraction and chunk accumulation altogether.
        self.recording = span.is_recording()

    @classmethod
    def start(
        cls, tracer: trace.Tracer, name: str, attributes: dict[str, Any], capture_content: bool
    ) -> LLMCall:
        """Start a CLIENT span with the request attributes already set (span processors see them)."""
        from monitor.instrumentation import _nesting  # a framework's model-call span may take this call

        span = _nesting.adopt(name, attributes) or tracer.start_span(
            name, kind=trace.SpanKind.CLIENT, attributes=attributes
        )
        return cls(span, capture_content)

    @property
    def ended(self) -> bool:
        return self._ended

    def activated(self) -> _Activation:
        """Make the span current while the provider call runs (HTTP client spans nest under it)."""
        return _Activation(self.span)

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self._ended or not attributes:
            return
        try:  # try/except rather than ``with guard``: free unless it raises (this is the request path)
            self.span.set_attributes({k: v for k, v in attributes.items() if v is not None})
        except Exception:
            with guard("llm.set_attributes"):
                raise

    def first_chunk(self) -> None:
        """Record time to first content chunk (seconds since the call started), once."""
        if self.ttft is None:
            self.ttft = time.perf_counter() - self._t0
            self.set_attributes({sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: self.ttft})

    def fail(self, exc: BaseException) -> None:
        """Record ``exc`` (status, ``error.type``, exception event) and end the span."""
        with self._lock:
            if self._ended:
                return
            record_exception(self.span, exc)
            status = getattr(exc, "status_code", None)
            if isinstance(status, int):
                with guard("llm.fail"):
                    self.span.set_attribute(sc.HTTP_RESPONSE_STATUS_CODE, status)
            self._end_locked()

    def end(self) -> None:
        with self._lock:
            if not self._ended:
                self._end_locked()

    def _end_locked(self) -> None:
        self._ended = True
        try:
            self.span.end(end_time=self.end_ns)
        except Exception:
            with guard("llm.end"):
                raise
