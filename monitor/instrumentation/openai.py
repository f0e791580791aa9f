"""OpenAI instrumentor: chat completions, the Responses API, legacy completions and embeddings.

Patches the SDK's resource classes (so every client instance, including ``AzureOpenAI`` and clients
created before ``init``, is covered):

* ``openai.resources.chat.completions.completions``: ``Completions.create`` / ``.parse`` and their
  ``AsyncCompletions`` twins. The ``.stream()`` helper calls ``create(stream=True)`` when its ``with``
  block is entered, so it gets exactly one span too.
* ``openai.resources.responses.responses`` (when the installed SDK has it): ``Responses.create`` and
  ``.parse`` (which posts on its own, not through ``create``), sync and async. ``responses.stream(...)``
  goes through ``create(stream=True)``: one span. Operation ``chat``, ``openai.api.type=responses``
  (``_openai_responses``).
* ``openai.resources.completions`` (legacy text) and ``openai.resources.embeddings``.

One span per call, named ``{operation} {model}``, kind CLIENT, with the current OTel GenAI attributes
(``_openai_extract``, ``_openai_responses``). ``gen_ai.provider.name`` is ``azure.ai.openai`` for Azure
clients, whose deployment stands in for a missing ``model``. Streams (``stream=True``) come back
wrapped in a proxy that is still an ``openai.Stream`` / ``openai.AsyncStream`` (``_stream``): lazy,
TTFT, usage, early close and errors mid-stream. ``with_raw_response`` / ``with_streaming_response``
calls get their response attributes without the app losing its body (``_openai_raw``). ``openai``
itself is imported only when ``instrument()`` runs, so the registry can load this class without it.

Not covered (no span, or a span with less): ``responses.stream(response_id=...)`` and
``responses.retrieve(stream=True)`` (re-reading a stored response: no span); ``with_streaming_response``
bodies read with ``iter_lines()`` / ``read()`` instead of ``parse()`` (request attributes only);
``with_raw_response`` wrappers built before ``instrument()`` (the SDK caches them per client:
``client.chat.completions.with_raw_response`` taken earlier keeps the original ``create``); the
Realtime, Assistants, Batch, image, audio, moderation and file endpoints; Responses over WebSocket.
"""

from __future__ import annotations

import functools
import importlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from monitor import semconv as sc
from monitor._guard import guard
from monitor.instrumentation import _openai_chat as chat
from monitor.instrumentation import _openai_extract as ex
from monitor.instrumentation import _openai_raw as raw
from monitor.instrumentation import _openai_responses as rx
from monitor.instrumentation._deferred import FINISHER, FastPath, PendingCall, native
from monitor.instrumentation._genai import LLMCall, degraded_request_attributes
from monitor.instrumentation._stream import (
    Accumulator,
    AsyncStreamProxy,
    StreamState,
    SyncStreamProxy,
    defer_stream,
    end_failed,
)
from monitor.instrumentation.base import Instrumentor, snapshot_kwargs

__all__ = ["OpenAIInstrumentor"]

_CHAT_MODULE = "openai.resources.chat.completions.completions"
_COMPLETIONS_MODULE = "openai.resources.completions"
_EMBEDDINGS_MODULE = "openai.resources.embeddings"
_RESPONSES_MODULE = "openai.resources.responses.responses"


@dataclass(frozen=True)
class Operation:
    """What differs between OpenAI operations; the call/stream/error handling around it is shared."""

    name: str  # gen_ai.operation.name
    kind: str  # llm_monitor.span.kind
    request: Callable[[Mapping[str, Any], bool], dict[str, Any]]
    response: Callable[[Any, bool], dict[str, Any]]
    accumulator: Callable[[], Accumulator] | None = None
    # (error.type, message) when a successful HTTP answer reports a failed generation.
    failure: Callable[[Any], tuple[str, str] | None] | None = None
    # A deferred call keeps ``snapshot(response)`` for the finisher instead of the response (fewer GC
    # objects waiting; see ``chat_response_snapshot``), and ``snapshot_response(snap, capture)`` must
    # equal ``response(response, capture)``. Only for operations without ``failure``.
    snapshot: Callable[[Any], Any] | None = None
    snapshot_response: Callable[[Any, bool], dict[str, Any]] | None = None


CHAT = Operation(
    sc.OP_CHAT,
    "llm",
    ex.chat_request_attributes,
    chat.chat_response_attributes,
    ex.ChatAccumulator,
    snapshot=chat.chat_response_snapshot,
    snapshot_response=chat.chat_snapshot_attributes,
)
TEXT_COMPLETION = Operation(
    sc.OP_TEXT_COMPLETION,
    "llm",
    ex.text_request_attributes,
    ex.text_response_attributes,
    ex.CompletionAccumulator,
)
EMBEDDINGS = Operation(
    sc.OP_EMBEDDINGS, "embedding", ex.embeddings_request_attributes, ex.embeddings_response_attributes
)
RESPONSES = Operation(
    sc.OP_CHAT,
    "llm",
    rx.responses_request_attributes,
    rx.responses_response_attributes,
    rx.ResponsesAccumulator,
    rx.responses_failure,
)


def _available(module: str, path: str) -> bool:
    """Does the installed SDK have ``module.path``? (Older SDKs lack the Responses API.)"""
    try:
        obj: Any = importlib.import_module(module)
    except ImportError:
        return False
    for name in path.split("."):
        obj = getattr(obj, name, None)
        if obj is None:
            return False
    return True


class OpenAIInstrumentor(Instrumentor):
    """Traces the ``openai`` Python SDK (v1 and later)."""

    name = "openai"
    library = "openai"

    def __init__(self) -> None:
        super().__init__()
        self._stream_types: tuple[type, type] | None = None
        self._fast: FastPath | None = None
        self._plain: dict[type, bool] = {}  # result type -> a plain response (no stream, not raw)
        self._finish_pending = self._finish_deferred  # one bound method for every deferred call

    def _instrument(self) -> None:
        import openai

        self._stream_types = (openai.Stream, openai.AsyncStream)
        self._fast = FastPath.for_tracer(self.tracer)
        for module, sync_path, async_path, op in (
            (_CHAT_MODULE, "Completions.create", "AsyncCompletions.create", CHAT),
            (_CHAT_MODULE, "Completions.parse", "AsyncCompletions.parse", CHAT),  # structured outputs
            (_COMPLETIONS_MODULE, "Completions.create", "AsyncCompletions.create", TEXT_COMPLETION),
            (_EMBEDDINGS_MODULE, "Embeddings.create", "AsyncEmbeddings.create", EMBEDDINGS),
            (_RESPONSES_MODULE, "Responses.create", "AsyncResponses.create", RESPONSES),
            (_RESPONSES_MODULE, "Responses.parse", "AsyncResponses.parse", RESPONSES),
        ):
            if not (_available(module, sync_path) and _available(module, async_path)):
                continue
            self._wrap(module, sync_path, functools.partial(self._call_sync, op), native=self._native(op))
            self._wrap(module, async_path, functools.partial(self._call_async, op))

    # -- shared steps (every one guarded; the user's call runs outside them) -------------------------

    def _request(self, op: Operation, resource: Any, kwargs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        try:
            attrs = ex.common_request_attributes(op.name, op.kind, resource, kwargs)
            attrs.update(op.request(kwargs, self.capture_content))
        except Exception:  # our extractor's bug: logged once, and the call is still recorded
            with guard(f"openai.{op.name}.request"):
                raise
            attrs = degraded_request_attributes(op.name, op.kind, sc.PROVIDER_OPENAI, kwargs)
        model = attrs.get(sc.GEN_AI_REQUEST_MODEL)
        return (f"{op.name} {model}" if model else op.name), attrs

    def _begin(self, op: Operation, resource: Any, kwargs: Mapping[str, Any]) -> LLMCall | None:
        """Start the span with every request attribute, or return None if our code fails."""
        with guard(f"openai.{op.name}.request"):
            name, attrs = self._request(op, resource, kwargs)
            return LLMCall.start(self.tracer, name, attrs, self.capture_content)
        return None

    def _upgrade(
        self, op: Operation, pending: PendingCall, resource: Any, kwargs: Mapping[str, Any]
    ) -> LLMCall | None:
        """The eager span of a fast-path call (its ids and start time), or None if our code fails."""
        fast = self._fast
        with guard(f"openai.{op.name}.request"):
            if fast is None:
                return None
            name, attrs = self._request(op, resource, kwargs)
            span = fast.start_span(pending, name, attrs, trace.SpanKind.CLIENT)
            return LLMCall(span, self.capture_content, pending.t0)
        return None

    def _complete(
        self, op: Operation, pending: PendingCall, resource: Any, kwargs: dict[str, Any], result: Any
    ) -> Any:
        """After a fast-path call returned: defer a plain response to the finisher, upgrade the rest.

        On the app's request path: a handful of attribute reads and one deque append (steps inlined).
        ``_fastcall`` does the same in C, with :meth:`_complete_other` and :meth:`_defer_failed` as here.
        """
        pending.detach()
        try:
            plain = self._plain.get(type(result))
            if plain is None:
                plain = self._is_plain(result)
                if len(self._plain) < 256:
                    self._plain[type(result)] = plain
            if plain:
                pending.end_ns = time.time_ns()
                pending.op = op
                pending.resource = resource
                pending.request = snapshot_kwargs(kwargs)
                snapshot = op.snapshot
                pending.response = result if snapshot is None else snapshot(result)
                pending.finish = self._finish_pending
                queue, finisher = FINISHER.queue, FINISHER
                if finisher.running and len(queue) < finisher.max_pending:
                    queue.append(pending)
                    if len(queue) == finisher.wake_at:
                        finisher.wake()
                else:
                    finisher.submit(pending)
                return result
        except Exception as exc:
            return self._defer_failed(op, pending, resource, kwargs, result, exc)
        return self._complete_other(op, pending, resource, kwargs, result)

    def _complete_other(
        self, op: Operation, pending: PendingCall, resource: Any, kwargs: dict[str, Any], result: Any
    ) -> Any:
        """A fast-path call that returned a stream or a raw response: a deferred stream proxy, else the
        eager span (its ids and start), finished as the eager path finishes it."""
        try:
            proxy = self._deferred_stream_proxy(op, pending, resource, kwargs, result)
            if proxy is not None:
                return proxy
        except Exception:
            with guard(f"openai.{op.name}.defer"):
                raise
        return self._upgrade_finish(op, pending, resource, kwargs, result)

    def _defer_failed(
        self,
        op: Operation,
        pending: PendingCall,
        resource: Any,
        kwargs: dict[str, Any],
        result: Any,
        exc: Exception,
    ) -> Any:
        """Our bug while deferring a returned call: logged once, then the eager span records the call."""
        with guard(f"openai.{op.name}.defer"):
            raise exc
        return self._upgrade_finish(op, pending, resource, kwargs, result)

    def _upgrade_finish(
        self, op: Operation, pending: PendingCall, resource: Any, kwargs: dict[str, Any], result: Any
    ) -> Any:
        call = self._upgrade(op, pending, resource, kwargs)
        return result if call is None else self._finish(op, call, result)

    def _call_failed(
        self,
        op: Operation,
        pending: PendingCall,
        resource: Any,
        kwargs: Mapping[str, Any],
        exc: BaseException,
    ) -> None:
        """A fast-path call raised (its stand-in already detached): the eager span records the failure."""
        failed = self._upgrade(op, pending, resource, kwargs)
        if failed is not None:
            failed.fail(exc)

    def _deferred_stream_proxy(
        self, op: Operation, pending: PendingCall, resource: Any, kwargs: dict[str, Any], result: Any
    ) -> Any:
        """A stream proxy whose span is built when the stream ends (None if ``result`` is no such stream)."""
        if op.accumulator is None or self._stream_types is None:
            return None
        sync_type, async_type = self._stream_types
        if isinstance(result, sync_type):
            proxy_type: Any = SyncStreamProxy
        elif isinstance(result, async_type):
            proxy_type = AsyncStreamProxy
        else:
            return None
        upgrade = functools.partial(self._upgrade, op, pending, resource, snapshot_kwargs(kwargs))
        return defer_stream(proxy_type, result, op.accumulator(), pending, upgrade)

    def _is_plain(self, result: Any) -> bool:
        streams = self._stream_types or ()
        return not isinstance(result, streams) and raw.raw_kind(result) is None

    def _finish_deferred(self, pending: PendingCall) -> None:
        """Finisher thread, inside the caller's contextvars: the span the eager path would have made."""
        op: Operation = pending.op
        call = self._upgrade(op, pending, pending.resource, pending.request)
        if call is None:
            return
        call.end_ns = pending.end_ns
        if op.snapshot is None:
            self._finish(op, call, pending.response)
            return
        with guard(f"openai.{op.name}.response"):  # _finish for a plain response, from its snapshot
            if call.recording and op.snapshot_response is not None:
                call.set_attributes(op.snapshot_response(pending.response, call.capture_content))
        call.end()

    def _stream_proxy(self, op: Operation, call: LLMCall, result: Any) -> Any:
        """A type-preserving proxy if ``result`` is an SDK stream this operation can read, else None."""
        if op.accumulator is None or self._stream_types is None:
            return None
        sync_type, async_type = self._stream_types
        if isinstance(result, sync_type):
            return SyncStreamProxy(result, StreamState(call, op.accumulator()))
        if isinstance(result, async_type):
            return AsyncStreamProxy(result, StreamState(call, op.accumulator()))
        return None

    def _finish(self, op: Operation, call: LLMCall, result: Any) -> Any:
        """Record the response, or hand a stream / raw response to a proxy that finishes the span later."""
        failure = None
        with guard(f"openai.{op.name}.response"):
            if not call.recording:
                call.end()
                return result
            proxy = self._stream_proxy(op, call, result)
            if proxy is not None:
                return proxy
            kind = raw.raw_kind(result)
            if kind == "legacy":
                return self._finish_legacy_raw(op, call, result)
            if kind is not None:
                cls = raw.AsyncStreamedRawProxy if kind == "streamed_async" else raw.StreamedRawProxy
                return cls(result, call, functools.partial(self._finish, op, call))
            call.set_attributes(op.response(result, call.capture_content))
            failure = op.failure(result) if op.failure is not None else None
        if failure is not None:
            end_failed(call, *failure)
        else:
            call.end()
        return result

    def _finish_legacy_raw(self, op: Operation, call: LLMCall, response: Any) -> Any:
        """``with_raw_response``: read the parsed result from the response's cache, return the response.

        A streamed one gets our proxy in that cache (the span ends when the app consumes it);
        anything else is recorded and ends the span now. See ``_openai_raw``.
        """
        parsed = raw.parse_quietly(response)
        proxy = self._stream_proxy(op, call, parsed)
        if proxy is not None and raw.wrap_legacy_stream(response, parsed, proxy):
            return response
        if proxy is None and parsed is not None:
            self._finish(op, call, parsed)
        call.end()
        return response

    # -- wrappers (wrapt signature: wrapped, instance, args, kwargs) ----------------------------------

    def _native(self, op: Operation) -> Callable[[Any], Any] | None:
        """What ``_wrap`` installs for ``op``'s sync methods instead of the Python dispatch: the deferred
        request path in C (``_fastcall``), when built and this instrumentor has a fast path."""
        fast = self._fast
        module = native() if fast is not None else None
        if module is None:
            return None
        snapshot = op.snapshot
        if snapshot is chat.chat_response_snapshot:  # the same tuple, read in C
            try:
                snapshot = module.ChatSnapshot(snapshot, chat.SDK_MODEL_TYPES)
            except Exception:  # our bug: logged once; the Python snapshot, called from C
                with guard("openai.native"):
                    raise
        return lambda original: module.FastMethod(original, self, op, fast, snapshot)

    def _call_sync(
        self,
        op: Operation,
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        if not self._active:
            return wrapped(*args, **kwargs)
        fast = self._fast
        pending = fast.begin() if fast is not None else None
        if pending is False:  # sampled out
            return wrapped(*args, **kwargs)
        if pending is not None:  # the fast path: its stand-in span is current
            try:
                result = wrapped(*args, **kwargs)
            except BaseException as exc:
                pending.detach()
                self._call_failed(op, pending, instance, kwargs, exc)
                raise
            return self._complete(op, pending, instance, kwargs, result)
        return self._eager_call(op, wrapped, instance, args, kwargs)

    def _eager_call(
        self,
        op: Operation,
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """A sync call on the eager path: its span exists (and is current) while the SDK runs."""
        call = self._begin(op, instance, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        try:
            with call.activated():
                result = wrapped(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        return self._finish(op, call, result)

    async def _call_async(
        self,
        op: Operation,
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        if not self._active:
            return await wrapped(*args, **kwargs)
        fast = self._fast
        pending = fast.begin() if fast is not None else None
        if pending is False:  # sampled out
            return await wrapped(*args, **kwargs)
        if pending is not None:  # the fast path: its stand-in span is current
            try:
                result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                pending.detach()
                self._call_failed(op, pending, instance, kwargs, exc)
                raise
            return self._complete(op, pending, instance, kwargs, result)
        call = self._begin(op, instance, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        try:
            with call.activated():
                result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        return self._finish(op, call, result)
