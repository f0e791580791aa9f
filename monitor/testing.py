"""Test helpers for code instrumented with llm-monitor (ours and applications').

``recording()`` runs ``monitor.init`` with an in-memory exporter and hands back a :class:`SpanRecorder`
whose :meth:`~SpanRecorder.spans` flushes first, so assertions never race the background exporter.
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

__all__ = ["SpanRecorder", "recording", "reset_global_tracer_provider"]


class SpanRecorder:
    """Finished spans captured by an ``InMemorySpanExporter``."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def spans(self) -> list[ReadableSpan]:
        """Every finished span so far, in end order (flushes the export queue first)."""
        _tracing.flush()
        return list(self.exporter.get_finished_spans())

    def one(self, name: str) -> ReadableSpan:
        """The single finished span called ``name`` (fails loudly when there are none or several)."""
        found = [s for s in self.spans() if s.name == name]
        if len(found) != 1:
            names = [s.name for s in self.spans()]
            raise AssertionError(f"expected one span named {name!r}, found {len(found)} among {names}")
        return found[0]

    def clear(self) -> None:
        _tracing.flush()
        self.exporter.clear()


@contextmanager
def recording(**init_kwargs: Any) -> Iterator[SpanRecorder]:
    """``monitor.init(exporter=<in-memory>, **init_kwargs)`` for the duration of the block."""
    exporter = InMemorySpanExporter()
    _tracing.init(exporter=exporter, **init_kwargs)
    try:
        yield SpanRecorder(exporter)
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
