"""llm-monitor: production monitoring for LLM applications.

The public face of the SDK an application imports::

    import monitor

    monitor.init(service_name="support-bot")          # OTLP to http://127.0.0.1:4318, auto-instruments

    @monitor.tool
    def lookup_order(order_id: str) -> dict: ...

    with monitor.context(user_id="u-42", session_id="s-1"), monitor.prompt("answer", version=3):
        answer()

    monitor.feedback(response_id=completion.id, kind="thumbs", value=True)   # or trace_id=/span_id=
    monitor.track("copy", response_id=completion.id)                       # implicit signals

Everything else lives in private modules. Importing this package is cheap on purpose: it loads the
OpenTelemetry API only; the SDK, the exporter and instrumented libraries (``openai``…) are imported by
:func:`init` when needed.
"""

from __future__ import annotations

from monitor._context import context, prompt
from monitor._decorators import agent, chain, retriever, span, tool
from monitor._feedback import feedback, track
from monitor._tracing import current_trace_id, flush, init, shutdown
from monitor._version import __version__

__all__ = [
    "__version__",
    "agent",
    "chain",
    "context",
    "current_trace_id",
    "feedback",
    "flush",
    "init",
    "prompt",
    "retriever",
    "shutdown",
    "span",
    "tool",
    "track",
]
