"""The LangChain callback handler: one span per LangChain run (chain, agent, llm, tool, retriever).

Imported only by ``LangChainInstrumentor._instrument`` (it subclasses ``langchain_core``'s handler).

Parent/child comes from LangChain's ``run_id``/``parent_run_id`` (a map of open runs), not from
whatever OpenTelemetry context happens to be current when a callback fires, so the tree is right in
async code and across the threads ``RunnableParallel`` uses. The current OTel context is used only
for a run whose parent we do not know (the outermost run: it nests under the app's ``@monitor.chain``
span, say), and when a span was opened *inside* the parent run by other code (a ``@monitor.tool``
function that invokes a chain): then that span is the parent, so nothing in between is skipped.

While a run is in progress its span is also attached as the current OTel context, so spans other
instrumentors start inside it (OpenAI calls, decorated functions) nest under it; a chat-model run
attaches a :mod:`._nesting` slot too, so the provider call inside records onto the LangChain span
instead of adding a second ``llm`` span. LangChain runs a step in a copy of the context taken
after ``on_*_start``, and calls ``on_*_end`` back in the context that started the run; detaching
is therefore LIFO in the usual case. When it is not (two streams interleaved in one context, a
stream closed by the garbage collector elsewhere), the token is parked and undone as soon as the
runs above it have gone, so a finished run never stays current. One consequence of attaching in
the callbacks: a streamed run's span is current in the consumer's context while its generator is
suspended between chunks (LangChain starts the run there), so a run the consumer starts between two
chunks nests under the stream's run.

Every callback runs on the thread/task that fires it (``run_inline``), is guarded (our errors never
reach LangChain; ``raise_error`` stays False) and never blocks.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from opentelemetry import context as otel_context
from opentelemetry import trace

from monitor import semconv as sc
from monitor._decorators import _start_attributes
from monitor._guard import guard
from monitor._serialize import truncate
from monitor._tracing import record_exception
from monitor.instrumentation import _langchain_extract as ex
from monitor.instrumentation import _nesting
from monitor.instrumentation._genai import degraded_request_attributes

if TYPE_CHECKING:
    from monitor.instrumentation.langchain import LangChainInstrumentor

__all__ = ["MonitorCallbackHandler"]

_RUN_KEY = otel_context.create_key("llm_monitor.langchain.run_id")
MAX_OPEN_RUNS = 10_000  # runs that never end (abandoned generators) must not grow memory forever
_MAX_PARKED = 1_000


def _degraded_llm_attributes(
    operation: str, serialized: Any, metadata: Any, kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """A model span's request attributes after our extractor raised: what plain reads can still tell."""
    try:
        provider = ex.provider_name(serialized, metadata)
    except Exception:  # the same bug may be in here: the span must start regardless
        provider = None
    params = kwargs.get("invocation_params")
    return degraded_request_attributes(operation, "llm", provider, params if type(params) is dict else {})


class _Run:
    """One open LangChain run: its span, what it attached, and how to finish it."""

    __slots__ = ("capture", "context", "kind", "label", "slot", "span", "t0", "tags", "token", "ttft")

    def __init__(self, span: trace.Span, kind: str, label: str, capture: bool, tags: frozenset[str]) -> None:
        self.span = span
        self.kind = kind
        self.label = label  # the LangChain run name
        self.capture = capture and span.is_recording()
        self.tags = tags
        self.context: otel_context.Context | None = None
        self.token: Any = None
        self.slot: _nesting.ModelCallSlot | None = None
        self.t0 = time.perf_counter()
        self.ttft: float | None = None


def _reset(token: Any) -> bool:
    """Undo an attach; False (instead of OTel's error log) when it cannot be undone from here."""
    if isinstance(token, contextvars.Token):
        try:
            token.var.reset(token)
        except ValueError:  # attached in another context (LangChain ended the run elsewhere)
            return False
        except RuntimeError:  # already undone
            pass
        return True
    otel_context.detach(token)  # a non-default OTel runtime context
    return True


class MonitorCallbackHandler(BaseCallbackHandler):
    """Turns LangChain callbacks into spans; one instance per active ``LangChainInstrumentor``."""

    raise_error = False
    run_inline = True  # async managers call us inline in the task, so the task's context is current

    def __init__(self, instrumentor: LangChainInstrumentor) -> None:
        self._inst = instrumentor
        self._lock = threading.Lock()
        self._runs: OrderedDict[UUID, _Run] = OrderedDict()
        self._parked: OrderedDict[Any, Any] = OrderedDict()  # run_id → token waiting to be undone

    # -- run bookkeeping ---------------------------------------------------------------------------

    def _parent(self, parent_run_id: UUID | None) -> tuple[otel_context.Context, frozenset[str]]:
        current = otel_context.get_current()
        parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
        if parent is None or parent.context is None:
            return current, frozenset()
        if otel_context.get_value(_RUN_KEY, current) == parent_run_id:
            return current, parent.tags  # the parent run, or a span opened inside it by other code
        return parent.context, parent.tags

    def _start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        kind: str,
        label: str,
        attributes: dict[str, Any],
        tags: Sequence[str] | None,
        *,
        span_name: str,
        model_call: bool = False,
        parent: tuple[otel_context.Context, frozenset[str]] | None = None,
    ) -> _Run:
        parent_ctx, _ = parent or self._parent(parent_run_id)
        span_kind = trace.SpanKind.CLIENT if model_call else trace.SpanKind.INTERNAL
        span = self._inst.tracer.start_span(
            span_name, context=parent_ctx, kind=span_kind, attributes=attributes
        )
        run = _Run(span, kind, label, self._inst.capture_content, frozenset(tags or ()))
        ctx = otel_context.set_value(_RUN_KEY, run_id)
        if model_call:
            ctx, run.slot = _nesting.publish(span, ctx)
        else:
            ctx = trace.set_span_in_context(span, ctx)
        run.context = ctx
        evicted: list[_Run] = []
        with self._lock:
            self._runs[run_id] = run
            while len(self._runs) > MAX_OPEN_RUNS:
                evicted.append(self._runs.popitem(last=False)[1])
        for old in evicted:
            old.span.end()
        run.token = otel_context.attach(ctx)
        return run

    def _pop(self, run_id: UUID) -> _Run | None:
        with self._lock:
            return self._runs.pop(run_id, None)

    def _detach(self, run_id: UUID, run: _Run) -> None:
        token, run.token = run.token, None
        if token is None:
            return
        if otel_context.get_value(_RUN_KEY) != run_id or not _reset(token):
            # Not on top here (or not this context): undone once the runs above it have gone.
            with self._lock:
                self._parked[run_id] = token
                while len(self._parked) > _MAX_PARKED:
                    self._parked.popitem(last=False)
            return
        while True:  # runs that ended while this one was above them
            below = otel_context.get_value(_RUN_KEY)
            with self._lock:
                parked = self._parked.pop(below, None) if below is not None else None
            if parked is None:
                return
            _reset(parked)

    def _finish(
        self, run_id: UUID, error: BaseException | None = None, attributes: Mapping[str, Any] | None = None
    ) -> None:
        """End the run's span (with ``attributes`` and/or ``error``) and undo its context."""
        run = self._pop(run_id)
        if run is None:
            return
        try:
            if attributes:
                run.span.set_attributes({k: v for k, v in attributes.items() if v is not None})
            # A closed stream is no failure; a provider call that adopted the span already recorded it.
            already = run.slot is not None and run.slot.claimed and run.slot.failed
            if error is not None and not isinstance(error, GeneratorExit) and not already:
                record_exception(run.span, error)
            run.span.end()
        finally:
            self._detach(run_id, run)

    def _peek(self, run_id: UUID) -> _Run | None:
        return self._runs.get(run_id)

    # -- chains and agents ---------------------------------------------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._inst.active:
            return
        with guard("langchain.chain_start"):
            name = ex.run_name(serialized, kwargs, "chain")
            parent = self._parent(parent_run_id)
            kind = "agent" if ex.is_agent(name, serialized, tags, metadata, parent[1]) else "chain"
            graph = self._peek(parent_run_id) if parent_run_id is not None else None
            if graph is not None and ex.is_agent_step(name, metadata):
                self._as_agent(graph)  # a LangGraph ReAct agent: its graph run is the agent
            span_name, attrs = _start_attributes(kind, name)
            run = self._start(
                run_id, parent_run_id, kind, name, attrs, tags, span_name=span_name, parent=parent
            )
            if run.capture:
                run.span.set_attribute(sc.LLM_MONITOR_INPUT, ex.capped(inputs))

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        attrs = None
        with guard("langchain.chain_end"):
            run = self._peek(run_id)
            if run is not None and run.capture:
                attrs = {sc.LLM_MONITOR_OUTPUT: ex.capped(outputs)}
        with guard("langchain.finish"):
            self._finish(run_id, attributes=attrs)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with guard("langchain.chain_error"):
            self._finish(run_id, error=error)

    def _as_agent(self, run: _Run) -> None:
        if run.kind == "agent":
            return
        run.kind = "agent"
        span_name, attrs = _start_attributes("agent", run.label)
        run.span.update_name(span_name)
        run.span.set_attributes(attrs)

    def on_agent_action(self, action: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with guard("langchain.agent_action"):
            run = self._peek(run_id)
            if run is None:
                return
            self._as_agent(run)
            attrs: dict[str, Any] = {sc.GEN_AI_TOOL_NAME: str(getattr(action, "tool", ""))}
            if run.capture:
                attrs[sc.GEN_AI_TOOL_CALL_ARGUMENTS] = ex.capped(getattr(action, "tool_input", None))
                log = getattr(action, "log", None)
                if isinstance(log, str) and log:
                    attrs[sc.LLM_MONITOR_AGENT_LOG] = truncate(log)
            run.span.add_event(sc.LLM_MONITOR_AGENT_ACTION_EVENT, attrs)

    def on_agent_finish(self, finish: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with guard("langchain.agent_finish"):
            run = self._peek(run_id)
            if run is None:
                return
            self._as_agent(run)
            attrs: dict[str, Any] = {}
            if run.capture:
                attrs[sc.LLM_MONITOR_OUTPUT] = ex.capped(getattr(finish, "return_values", None))
            run.span.add_event(sc.LLM_MONITOR_AGENT_FINISH_EVENT, attrs)

    # -- chat models and LLMs -----------------------------------------------------------------------

    def _start_llm(
        self,
        operation: str,
        serialized: dict[str, Any] | None,
        content: Callable[[], dict[str, Any] | None] | None,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: list[str] | None,
        metadata: dict[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> None:
        """The model-call span; ``content`` reads the input messages (only called when content is captured).

        When our extractors raise (our bug: logged once), the span still starts, with degraded request
        attributes, so the call's response, usage and status are recorded all the same."""
        capture = self._inst.capture_content
        try:
            attrs = ex.llm_request_attributes(
                operation, serialized, kwargs.get("invocation_params"), metadata, capture
            )
            extra = content() if capture and content is not None else None
            if extra:
                attrs.update(extra)
            label = ex.run_name(serialized, kwargs, "model")
        except Exception:
            with guard(f"langchain.{operation}.request"):
                raise
            attrs, label = _degraded_llm_attributes(operation, serialized, metadata, kwargs), "model"
        span_name = f"{operation} {attrs.get(sc.GEN_AI_REQUEST_MODEL) or label}"
        self._start(run_id, parent_run_id, "llm", label, attrs, tags, span_name=span_name, model_call=True)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._inst.active:
            return
        with guard("langchain.chat_model_start"):
            content = (lambda: ex.chat_input_attributes(messages[0])) if messages else None
            self._start_llm(sc.OP_CHAT, serialized, content, run_id, parent_run_id, tags, metadata, kwargs)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._inst.active:
            return
        with guard("langchain.llm_start"):
            content = (lambda: ex.prompt_input_attributes(prompts)) if prompts else None
            op = sc.OP_TEXT_COMPLETION
            self._start_llm(op, serialized, content, run_id, parent_run_id, tags, metadata, kwargs)

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.get(run_id)
        if run is None or run.ttft is not None:
            return
        with guard("langchain.llm_new_token"):
            run.ttft = time.perf_counter() - run.t0
            if run.slot is not None and not run.slot.claimed and run.span.is_recording():
                run.span.set_attributes(
                    {sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: run.ttft, sc.GEN_AI_REQUEST_STREAM: True}
                )

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        attrs = None
        with guard("langchain.llm_end"):
            run = self._peek(run_id)
            # Claimed: the provider's instrumentor already wrote the response and tokens (_nesting).
            if run is not None and run.slot is not None and not run.slot.claimed and run.span.is_recording():
                attrs = ex.llm_response_attributes(response, run.capture)
        with guard("langchain.finish"):
            self._finish(run_id, attributes=attrs)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with guard("langchain.llm_error"):
            self._finish(run_id, error=error)

    # -- tools --------------------------------------------------------------------------------------

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._inst.active:
            return
        with guard("langchain.tool_start"):
            name = ex.run_name(serialized, kwargs, "tool")
            description = serialized.get("description") if isinstance(serialized, Mapping) else None
            span_name, attrs = _start_attributes(
                "tool", name, description if isinstance(description, str) else None
            )
            call_id = kwargs.get("tool_call_id")
            if isinstance(call_id, str) and call_id:
                attrs[sc.GEN_AI_TOOL_CALL_ID] = call_id
            run = self._start(run_id, parent_run_id, "tool", name, attrs, tags, span_name=span_name)
            if run.capture:
                text = ex.capped(inputs if inputs is not None else input_str)
                run.span.set_attributes({sc.LLM_MONITOR_INPUT: text, sc.GEN_AI_TOOL_CALL_ARGUMENTS: text})

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        attrs: dict[str, Any] = {}
        with guard("langchain.tool_end"):
            run = self._peek(run_id)
            if run is not None:
                result, call_id = ex.tool_output(output)
                if call_id:
                    attrs[sc.GEN_AI_TOOL_CALL_ID] = call_id
                if run.capture:
                    text = ex.capped(result)
                    attrs[sc.LLM_MONITOR_OUTPUT] = attrs[sc.GEN_AI_TOOL_CALL_RESULT] = text
        with guard("langchain.finish"):
            self._finish(run_id, attributes=attrs)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with guard("langchain.tool_error"):
            self._finish(run_id, error=error)

    # -- retrievers ---------------------------------------------------------------------------------

    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._inst.active:
            return
        with guard("langchain.retriever_start"):
            name = ex.run_name(serialized, kwargs, "retriever")
            span_name, attrs = _start_attributes("retriever", name)
            run = self._start(run_id, parent_run_id, "retriever", name, attrs, tags, span_name=span_name)
            if run.capture:
                run.span.set_attribute(sc.LLM_MONITOR_INPUT, ex.capped(query))

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        attrs: dict[str, Any] = {}
        with guard("langchain.retriever_end"):
            run = self._peek(run_id)
            if run is not None:
                count = len(documents) if isinstance(documents, Sequence) else None
                attrs[sc.LLM_MONITOR_RETRIEVAL_DOCUMENT_COUNT] = count
                if run.capture:
                    attrs[sc.LLM_MONITOR_OUTPUT] = ex.documents_output(documents)
        with guard("langchain.finish"):
            self._finish(run_id, attributes=attrs)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with guard("langchain.retriever_error"):
            self._finish(run_id, error=error)
