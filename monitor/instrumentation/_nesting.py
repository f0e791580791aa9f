"""One model call, one ``llm`` span: how a framework span and a provider span share a call.

Why: LangChain's ``ChatOpenAI`` calls the ``openai`` SDK, and both are instrumented. Left alone, one
model call would yield two ``llm_monitor.span.kind=llm`` spans with the same tokens, doubling token
counts, cost and every analyzer's input.

The rule (merge, innermost fills the outermost):

* A framework span that stands for exactly one model call (LangChain's chat-model/LLM run) is made
  current together with a :class:`ModelCallSlot` (:func:`publish`). It is started as a complete
  ``llm`` span from what the framework knows (messages, parameters, provider from ``ls_provider``).
* When a provider instrumentor starts a model call (``LLMCall.start``) it first asks :func:`adopt`.
  If the current span *is* a slot's span (the provider call happens directly inside that framework
  run, not under some other span in between) and the slot is unclaimed, the provider claims it and
  records onto that span instead of starting its own: its request and response attributes (the
  model as sent, response id and model, tokens, time to first chunk, HTTP status) overwrite the
  framework's guesses, and the span is renamed with the provider's ``{operation} {model}``. The
  provider's ``end()`` is ignored (:class:`AdoptedSpan`): the framework ends the span when its run
  ends, and then skips its own response and token attributes because the provider already wrote
  them. Result: one ``llm`` span, in the framework's place in the tree, with wire-exact data.
* No provider instrumentation underneath (a local or fake model, a provider we do not patch): the
  slot stays unclaimed and the framework span is the ``llm`` span, tokens from the framework.
* A second provider call inside the same run (a custom model that calls the API twice) finds the
  slot claimed and starts its own span as a child: two model calls, two ``llm`` spans.
* Only model calls adopt (``llm_monitor.span.kind=llm`` in the provider's attributes); embeddings
  and other operations keep their own spans.

Thread-safety: a slot may be seen from several threads (contexts are copied into worker threads),
so claiming is atomic. Nothing here raises: :func:`adopt` returns None when anything is off.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.util import types

from monitor import semconv as sc
from monitor._guard import guard

__all__ = ["AdoptedSpan", "ModelCallSlot", "adopt", "current_slot", "publish"]

_SLOT_KEY = otel_context.create_key("llm_monitor.model_call_slot")


class ModelCallSlot:
    """A framework model-call span that one provider call may record onto (see the module docstring)."""

    __slots__ = ("_lock", "claimed", "failed", "span")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.claimed = False  # a provider call records onto ``span``; the framework skips its response
        self.failed = False  # that provider call already recorded an exception on ``span``
        self._lock = threading.Lock()

    def claim(self) -> bool:
        """True for the first caller only."""
        with self._lock:
            if self.claimed:
                return False
            self.claimed = True
            return True


def publish(
    span: trace.Span, context: otel_context.Context | None = None
) -> tuple[otel_context.Context, ModelCallSlot]:
    """``context`` (default: the current one) with ``span`` current and a fresh slot for it.

    The framework attaches the returned context while its model-call run is in progress.
    """
    slot = ModelCallSlot(span)
    ctx = trace.set_span_in_context(span, context)
    return otel_context.set_value(_SLOT_KEY, slot, ctx), slot


def current_slot() -> ModelCallSlot | None:
    slot = otel_context.get_value(_SLOT_KEY)
    return slot if isinstance(slot, ModelCallSlot) else None


def adopt(name: str, attributes: Mapping[str, Any]) -> trace.Span | None:
    """For a provider about to start a model-call span: the framework span to record onto, or None.

    Called on the thread/task making the provider call; never raises, never blocks.
    """
    with guard("nesting.adopt"):
        if attributes.get(sc.LLM_MONITOR_SPAN_KIND) != "llm":
            return None
        slot = current_slot()
        if slot is None or trace.get_current_span() is not slot.span:
            return None
        if not slot.claim():
            return None
        adopted = AdoptedSpan(slot)
        adopted.update_name(name)
        adopted.set_attributes(attributes)
        return adopted
    return None


class AdoptedSpan(trace.Span):
    """The framework's span seen by the provider instrumentor: everything but ``end`` is forwarded.

    Writes after the framework ended the span are dropped (a stream finalised late by the garbage
    collector must not log "setting attribute on ended span").
    """

    __slots__ = ("_slot", "_span")

    def __init__(self, slot: ModelCallSlot) -> None:
        self._slot = slot
        self._span = slot.span

    def end(self, end_time: int | None = None) -> None:
        """The framework ends the span when its run ends."""

    def get_span_context(self) -> trace.SpanContext:
        return self._span.get_span_context()

    def is_recording(self) -> bool:
        return self._span.is_recording()

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        if self._span.is_recording():
            self._span.set_attributes({k: v for k, v in attributes.items() if v is not None})

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        if self._span.is_recording():
            self._span.set_attribute(key, value)

    def add_event(self, name: str, attributes: types.Attributes = None, timestamp: int | None = None) -> None:
        if self._span.is_recording():
            self._span.add_event(name, attributes, timestamp)

    def add_link(self, context: trace.SpanContext, attributes: types.Attributes = None) -> None:
        if self._span.is_recording():
            self._span.add_link(context, attributes)

    def update_name(self, name: str) -> None:
        if self._span.is_recording():
            self._span.update_name(name)

    def set_status(self, status: trace.Status | trace.StatusCode, description: str | None = None) -> None:
        if not self._span.is_recording():
            return
        code = status.status_code if isinstance(status, trace.Status) else status
        if code is trace.StatusCode.ERROR:
            self._slot.failed = True
        self._span.set_status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        if self._span.is_recording():
            self._slot.failed = True
            self._span.record_exception(exception, attributes, timestamp, escaped)
