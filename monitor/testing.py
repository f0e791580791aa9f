"""Test helpers for code instrumented with llm-monitor (ours and applications').

``recording()`` runs ``monitor.init`` with in-memory span and feedback exporters and hands back a
:class:`SpanRecorder` whose :meth:`~SpanRecorder.spans` and :meth:`~SpanRecorder.feedback` flush first,
so assertions never race the background threads. Spans are recorded as exported, i.e. after the
``redact`` / ``max_content_chars`` / ``capture_content`` policy of ``monitor._redact``.
Imports the OpenTelemetry SDK; never imported by ``monitor`` itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from monitor import _tracing
from monitor._feedback import MemoryFeedbackExporter

__all__ = ["SpanRecorder", "recording", "reset_global_tracer_provider"]


class SpanRecorder:
    """Finished spans captured by an ``InMemorySpanExporter``."""

    def __init__(
        self, exporter: InMemorySpanExporter, feedback_exporter: MemoryFeedbackExporter | None = None
    ) -> None:
        self.exporter = exporter
        self.feedback_exporter = feedback_exporter or MemoryFeedbackExporter()

    def spans(self) -> list[ReadableSpan]:
        """Every finished span so far, in end-time order (flushes the export queue first).

        Sorted by ``end_time`` because export order is not end order: model-call spans are built on the
        finisher thread after the call (``monitor.instrumentation._deferred``) with their real end time.
        """
        _tracing.flush()
        return sorted(self.exporter.get_finished_spans(), key=lambda s: s.end_time or 0)

    def one(self, name: str) -> ReadableSpan:
        """The single finished span called ``name`` (fails loudly when there are none or several)."""
        found = [s for s in self.spans() if s.name == name]
        if len(found) != 1:
            names = [s.name for s in self.spans()]
            raise AssertionError(f"expected one span named {name!r}, found {len(found)} among {names}")
        return found[0]

    def feedback(self) -> list[dict[str, Any]]:
        """Every feedback item sent so far, as the JSON objects posted to ``/v1/feedback`` (flushes first)."""
        _tracing.flush()
        return list(self.feedback_exporter.items)

    def clear(self) -> None:
        _tracing.flush()
        self.exporter.clear()
        self.feedback_exporter.items.clear()


@contextmanager
def recording(**init_kwargs: Any) -> Iterator[SpanRecorder]:
    """``monitor.init(exporter=<in-memory>, feedback_exporter=<in-memory>, **init_kwargs)`` for the block."""
    exporter = InMemorySpanExporter()
    feedback_exporter = init_kwargs.pop("feedback_exporter", None) or MemoryFeedbackExporter()
    _tracing.init(exporter=exporter, feedback_exporter=feedback_exporter, **init_kwargs)
    try:
        yield SpanRecorder(exporter, feedback_exporter)
    finally:
        _tracing.shutdown()


def reset_global_tracer_provider() -> None:
    """Forget the process-wide TracerProvider so the next test may set one (test isolation only).

    OpenTelemetry allows setting the global provider once per process; its own test suite resets the
    same private fields.
    """
    from opentelemetry.util._once import Once

    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
