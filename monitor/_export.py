"""The span processors ``monitor.init`` attaches to a TracerProvider.

Kept apart from ``monitor._tracing`` because it imports the OpenTelemetry *SDK*, which ``import monitor``
must not pay for; only ``init()`` imports this module.

* :class:`ContextSpanProcessor` stamps user/session/tags/metadata/prompt at span start.
* :class:`CountingBatchSpanProcessor` is the SDK's batching processor (bounded queue, daemon export
  thread, re-created after ``fork``) that drops the *newest* span when the queue is full and counts it,
  instead of logging a warning per span.
* :class:`Pipeline` bundles ours into one processor we can switch off: an SDK ``TracerProvider`` has no
  ``remove_span_processor``, so after ``monitor.shutdown()`` our processor stays attached to an app's
  provider but does nothing.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from monitor import semconv as sc
from monitor._context import _CONTEXT, _PROMPT, LLM_OPERATIONS, context_attributes
from monitor._guard import guard

__all__ = ["ContextSpanProcessor", "CountingBatchSpanProcessor", "Pipeline", "otlp_exporter"]

logger = logging.getLogger("monitor")

DEFAULT_MAX_QUEUE_SIZE = 2048
DEFAULT_SCHEDULE_DELAY_MILLIS = 1000
DEFAULT_MAX_EXPORT_BATCH_SIZE = 512


class ContextSpanProcessor(SpanProcessor):
    """Stamps the current ``monitor.context`` / ``monitor.prompt`` values onto each span at start.

    Runs on the thread that starts the span, inside its contextvars context; never blocks.
    Attributes a span was created with are left alone (an instrumentation's explicit value wins).
    ``static`` attributes go on every span (used for the project when we share an app's provider,
    whose resource we cannot change). Without ``capture_content`` the prompt template and variables
    (which hold user text) are not stamped.
    """

    def __init__(self, static: Mapping[str, Any] | None = None, capture_content: bool = True) -> None:
        self._static = dict(static or {})
        self._content = capture_content
        # The spans of one request share one context object: remember the attributes of the last one
        # (metadata is JSON-encoded, prompt variables too). One tuple, replaced atomically: thread-safe.
        self._last: tuple[Any, Any, bool, dict[str, Any]] | None = None

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        ctx = _CONTEXT.get()
        info = _PROMPT.get()
        if ctx is None and info is None and not self._static:
            return
        try:
            existing = span.attributes or {}
            is_llm = existing.get(sc.GEN_AI_OPERATION_NAME) in LLM_OPERATIONS
            last = self._last
            if last is not None and last[0] is ctx and last[1] is info and last[2] is is_llm:
                attrs = last[3]
            else:
                attrs = {**self._static, **context_attributes(ctx, info, is_llm, content=self._content)}
                self._last = (ctx, info, is_llm, attrs)
            if existing:
                attrs = {k: v for k, v in attrs.items() if k not in existing}
            if attrs:
                span.set_attributes(attrs)
        except Exception:
            with guard("context.on_start"):
                raise

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """``BatchSpanProcessor`` that drops the newest span when its queue is full, and counts drops.

    ``on_end`` runs on the application's thread: it only appends to a bounded deque (never blocks on
    the network). ``dropped`` is read by diagnostics and tests; the first drop is logged once.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        schedule_delay_millis: float = DEFAULT_SCHEDULE_DELAY_MILLIS,
        max_export_batch_size: int = DEFAULT_MAX_EXPORT_BATCH_SIZE,
    ) -> None:
        super().__init__(
            exporter,
            max_queue_size=max_queue_size,
            schedule_delay_millis=schedule_delay_millis,
            max_export_batch_size=min(max_export_batch_size, max_queue_size),
        )
        self.max_queue_size = max_queue_size
        self.dropped = 0

    def on_end(self, span: ReadableSpan) -> None:
        if not span.context.trace_flags.sampled:
            return
        batch = self._batch_processor
        if len(batch._queue) >= self.max_queue_size:  # a new deque after fork: read it each time
            self.dropped += 1
            if self.dropped == 1:
                logger.warning(
                    "llm-monitor: span export queue full (%d); dropping spans until the exporter catches up",
                    self.max_queue_size,
                )
            return
        batch.emit(span)


class Pipeline(SpanProcessor):
    """Our processors as one switchable unit (see the module docstring).

    Each delegate call is guarded: a failing processor of ours never breaks span start/end in the app.
    Runs on the app's threads for every span, so it is lean: hooks a processor leaves as the SDK's
    no-ops are skipped, and the guard costs nothing unless something raises.
    """

    def __init__(self, processors: Sequence[SpanProcessor]) -> None:
        self.processors = tuple(processors)
        self.active = True
        self._starting = tuple(p for p in self.processors if not _is_noop(p, "on_start"))
        self._ending = tuple(p for p in self.processors if not _is_noop(p, "_on_ending"))
        self._ended = tuple(p for p in self.processors if not _is_noop(p, "on_end"))

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if not self.active:
            return
        for p in self._starting:
            try:
                p.on_start(span, parent_context=parent_context)
            except Exception:
                with guard("pipeline.on_start"):
                    raise

    def _on_ending(self, span: Span) -> None:
        if not self.active:
            return
        for p in self._ending:
            try:
                p._on_ending(span)
            except Exception:
                with guard("pipeline.on_ending"):
                    raise

    def on_end(self, span: ReadableSpan) -> None:
        if not self.active:
            return
        for p in self._ended:
            try:
                p.on_end(span)
            except Exception:
                with guard("pipeline.on_end"):
                    raise

    def shutdown(self) -> None:
        if not self.active:
            return
        self.active = False
        for p in self.processors:
            with guard("pipeline.shutdown"):
                p.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if not self.active:
            return True
        with guard("pipeline.drain"):  # model-call spans still waiting for the finisher thread
            deferred = sys.modules.get("monitor.instrumentation._deferred")
            if deferred is not None:
                deferred.drain()
        ok = True
        for p in self.processors:
            with guard("pipeline.force_flush"):
                ok = p.force_flush(timeout_millis) and ok
        return ok

    @property
    def dropped(self) -> int:
        return sum(getattr(p, "dropped", 0) for p in self.processors)


_NOOP_HOOKS = {
    "on_start": (SpanProcessor.on_start, BatchSpanProcessor.on_start),
    "_on_ending": (SpanProcessor._on_ending, BatchSpanProcessor._on_ending),
    "on_end": (SpanProcessor.on_end,),
}


def _is_noop(processor: SpanProcessor, hook: str) -> bool:
    """Whether ``processor``'s ``hook`` is one of the SDK's empty defaults (then it need not be called)."""
    return getattr(type(processor), hook, None) in _NOOP_HOOKS[hook]


def otlp_exporter(endpoint: str, api_key: str | None) -> SpanExporter:
    """OTLP/HTTP protobuf exporter to ``<endpoint>/v1/traces``, gzip, bearer auth when a key is set."""
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    url = endpoint.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    return OTLPSpanExporter(endpoint=url, headers=headers, compression=Compression.Gzip)
