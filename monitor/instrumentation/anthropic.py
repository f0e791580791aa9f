"""Anthropic instrumentor: the Messages API, sync and async, plain, streamed and through the helpers.

Patches the SDK's resource classes in ``anthropic.resources.messages.messages`` and their beta twins
in ``anthropic.resources.beta.messages.messages`` (so every client, including ``AnthropicBedrock`` /
``AnthropicVertex`` and clients made before ``init``, and the beta tool runner, is covered):

* ``Messages.create`` / ``AsyncMessages.create`` (``stream=True`` included) and ``.parse``;
* ``Messages.stream`` / ``AsyncMessages.stream``: the helper does not go through ``create`` (it builds
  its own request and hands it to a ``MessageStreamManager``), so the wrapper swaps the manager's
  pending request for one that opens the span when the ``with`` block is entered. A call already
  inside a traced call (a future SDK whose helper calls ``create``) is not traced twice.

One span per call, named ``chat {model}``, kind CLIENT, with the current OTel GenAI attributes (see
``_anthropic_extract``). Streams come back as proxies that are still ``anthropic.Stream`` /
``anthropic.AsyncStream`` (``_stream``); the helpers' ``MessageStream`` reads through the proxy, so
``text_stream``, ``get_final_message()`` and early ``close()`` all end the span exactly once.

The SDK's own tracing: anthropic 2.x starts a CLIENT span per API call by itself (scope
``com.anthropic.sdk.python``) on the global tracer provider, which would put a second LLM span with
its own token counts under ours. While one of our calls runs, its ``start_api_call_span`` gets a
non-recording stand-in that carries our span's context instead, so the call has one span and the
``traceparent`` the SDK sends still names it. Calls we do not trace (other endpoints) keep the SDK's span.

``with_raw_response`` calls get a span with response attributes when the SDK has read the whole body
(non-streamed); streamed raw responses (and ``with_streaming_response``) get their span without them,
ended when the call returns, since reading the body would take it from the application.
``anthropic`` itself is imported only when ``instrument()`` runs.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace

from monitor import semconv as sc
from monitor._guard import guard
from monitor.instrumentation import _anthropic_extract as ex
from monitor.instrumentation._deferred import FINISHER, FastPath, PendingCall
from monitor.instrumentation._genai import LLMCall, degraded_request_attributes
from monitor.instrumentation._stream import AsyncStreamProxy, StreamState, SyncStreamProxy, defer_stream
from monitor.instrumentation.base import Instrumentor, snapshot_kwargs

__all__ = ["AnthropicInstrumentor"]

# Messages and beta Messages share their shape (the beta tool runner calls beta create/stream).
_MESSAGES_MODULES = ("anthropic.resources.messages.messages", "anthropic.resources.beta.messages.messages")
_BASE_CLIENT_MODULE = "anthropic._base_client"
_SDK_SPAN_FUNCTION = "start_api_call_span"

# The call of ours whose SDK request is running in this context (set only around the provider call).
_CURRENT: ContextVar[LLMCall | PendingCall | None] = ContextVar("llm_monitor_anthropic_call", default=None)


def _request_attributes(
    resource: Any, kwargs: Mapping[str, Any], capture: bool, stream: bool
) -> dict[str, Any]:
    """The Messages call's request attributes; degraded ones when our extractor raises (logged once)."""
    try:
        return ex.request_attributes(resource, kwargs, capture, stream=stream)
    except Exception:
        with guard("anthropic.chat.request"):
            raise
        return degraded_request_attributes(sc.OP_CHAT, "llm", sc.PROVIDER_ANTHROPIC, kwargs)


class AnthropicInstrumentor(Instrumentor):
    """Traces the ``anthropic`` Python SDK's Messages API."""

    name = "anthropic"
    library = "anthropic"

    def __init__(self) -> None:
        super().__init__()
        self._stream_types: tuple[type, type] | None = None
        self._fast: FastPath | None = None
        self._finish_pending = self._finish_deferred  # one bound method for every deferred call
        # result type -> a with_raw_response / with_streaming_response wrapper (it has ``http_response``;
        # asking a pydantic ``Message`` costs a raised AttributeError, ~3 µs, so once per type)
        self._raw: dict[type, bool] = {}

    def _instrument(self) -> None:
        import importlib

        import anthropic
        from anthropic import _base_client

        self._stream_types = (anthropic.Stream, anthropic.AsyncStream)
        self._fast = FastPath.for_tracer(self.tracer)
        for module_name in _MESSAGES_MODULES:
            try:
                module = importlib.import_module(module_name)
            except ImportError:  # an SDK without the beta namespace
                continue
            for method, sync_wrapper, async_wrapper in (
                ("create", self._call_sync, self._call_async),
                ("parse", self._call_sync, self._call_async),
                (
                    "stream",
                    functools.partial(self._stream_helper, False),
                    functools.partial(self._stream_helper, True),
                ),
            ):
                if hasattr(module.Messages, method) and hasattr(module.AsyncMessages, method):
                    self._wrap(module_name, f"Messages.{method}", sync_wrapper)
                    self._wrap(module_name, f"AsyncMessages.{method}", async_wrapper)
        if callable(getattr(_base_client, _SDK_SPAN_FUNCTION, None)):  # anthropic >= 2.x traces itself
            self._wrap(_BASE_CLIENT_MODULE, _SDK_SPAN_FUNCTION, self._sdk_call_span)

    # -- shared steps (every one guarded; the user's call runs outside them) -------------------------

    def _begin(self, resource: Any, kwargs: Mapping[str, Any], *, stream: bool = False) -> LLMCall | None:
        """Start the span with every request attribute, or None (inactive, nested, or our code failed)."""
        if not self.active or _CURRENT.get() is not None:
            return None
        with guard("anthropic.chat.request"):
            capture = self.capture_content
            attrs = _request_attributes(resource, kwargs, capture, stream)
            model = attrs.get(sc.GEN_AI_REQUEST_MODEL)
            return LLMCall.start(self.tracer, f"chat {model}" if model else "chat", attrs, capture)
        return None

    @contextmanager
    def _running(self, call: LLMCall) -> Iterator[None]:
        """Our span current and marked as the call in flight while the SDK sends the request."""
        token = _CURRENT.set(call)
        try:
            with call.activated():
                yield
        finally:
            _CURRENT.reset(token)

    def _finish(self, call: LLMCall, result: Any) -> Any:
        """Record the response, or hand a stream to a proxy that ends the span later."""
        with guard("anthropic.chat.response"):
            if not call.recording:
                call.end()
                return result
            if self._stream_types is not None:
                sync_type, async_type = self._stream_types
                if isinstance(result, sync_type):
                    return SyncStreamProxy(
                        result, StreamState(call, ex.StreamAccumulator(call.capture_content))
                    )
                if isinstance(result, async_type):
                    return AsyncStreamProxy(
                        result, StreamState(call, ex.StreamAccumulator(call.capture_content))
                    )
            if hasattr(result, "http_response"):  # with_raw_response / with_streaming_response
                call.set_attributes(ex.raw_response_attributes(result, call.capture_content))
            else:
                call.set_attributes(ex.response_attributes(result, call.capture_content))
        call.end()
        return result

    # -- the fast path (``_deferred``): span built after the call, off the app's thread -----------------

    def _upgrade(
        self, pending: PendingCall, resource: Any, kwargs: Mapping[str, Any], stream: bool
    ) -> LLMCall | None:
        """The eager span of a fast-path call (its ids and start time), or None if our code fails."""
        fast = self._fast
        with guard("anthropic.chat.request"):
            if fast is None:
                return None
            capture = self.capture_content
            attrs = _request_attributes(resource, kwargs, capture, stream)
            model = attrs.get(sc.GEN_AI_REQUEST_MODEL)
            span = fast.start_span(
                pending, f"chat {model}" if model else "chat", attrs, trace.SpanKind.CLIENT
            )
            return LLMCall(span, capture, pending.t0)
        return None

    def _complete(
        self, pending: PendingCall, resource: Any, kwargs: Mapping[str, Any], stream: bool, result: Any
    ) -> Any:
        """After a fast-path call returned: a plain message or a stream is finished later, the rest now."""
        pending.detach()
        try:
            types = self._stream_types
            if types is not None and isinstance(result, types):
                snapshot = snapshot_kwargs(kwargs)  # type: ignore[arg-type]  # the wrapper's own dict
                upgrade = functools.partial(self._upgrade, pending, resource, snapshot, stream)
                proxy_type: Any = SyncStreamProxy if isinstance(result, types[0]) else AsyncStreamProxy
                acc = ex.StreamAccumulator(self.capture_content)
                return defer_stream(proxy_type, result, acc, pending, upgrade)
            raw = self._raw.get(type(result))
            if raw is None:
                raw = hasattr(result, "http_response")
                if len(self._raw) < 256:
                    self._raw[type(result)] = raw
            if not raw:  # not with_raw_response / with_streaming_response
                pending.end_ns = time.time_ns()
                pending.op = stream
                pending.resource = resource
                pending.request = snapshot_kwargs(kwargs)  # type: ignore[arg-type]  # the wrapper's own
                pending.response = ex.response_snapshot(result)  # fewer GC objects waiting than ``result``
                pending.finish = self._finish_pending
                FINISHER.submit(pending)
                return result
        except Exception:
            with guard("anthropic.chat.defer"):
                raise
        call = self._upgrade(pending, resource, kwargs, stream)
        return result if call is None else self._finish(call, result)

    def _finish_deferred(self, pending: PendingCall) -> None:
        """Finisher thread, inside the caller's contextvars: the span the eager path would have made
        (``_finish`` for a plain message, from its snapshot). ``pending.op`` is the stream flag."""
        call = self._upgrade(pending, pending.resource, pending.request, bool(pending.op))
        if call is None:
            return
        call.end_ns = pending.end_ns
        with guard("anthropic.chat.response"):
            if call.recording:
                call.set_attributes(ex.response_attributes(pending.response, call.capture_content))
        call.end()

    def _failed(
        self, pending: PendingCall, resource: Any, kwargs: Mapping[str, Any], stream: bool, exc: BaseException
    ) -> None:
        pending.detach()
        call = self._upgrade(pending, resource, kwargs, stream)
        if call is not None:
            call.fail(exc)

    def _traced_sync(
        self, resource: Any, kwargs: Mapping[str, Any], stream: bool, request: Callable[[], Any]
    ) -> Any:
        """``request()`` (the SDK call) traced: fast path, eager path, or untraced when nested/inactive."""
        if not self._active or _CURRENT.get() is not None:
            return request()
        fast = self._fast
        pending = fast.begin() if fast is not None else None
        if pending is False:  # sampled out
            return request()
        if pending is None:
            call = self._begin(resource, kwargs, stream=stream)
            if call is None:
                return request()
            try:
                with self._running(call):
                    result = request()
            except BaseException as exc:
                call.fail(exc)
                raise
            return self._finish(call, result)
        token = _CURRENT.set(pending)
        try:
            result = request()
        except BaseException as exc:
            _CURRENT.reset(token)
            self._failed(pending, resource, kwargs, stream, exc)
            raise
        _CURRENT.reset(token)
        return self._complete(pending, resource, kwargs, stream, result)

    async def _traced_async(
        self, resource: Any, kwargs: Mapping[str, Any], stream: bool, request: Callable[[], Awaitable[Any]]
    ) -> Any:
        """The async twin of :meth:`_traced_sync`."""
        if not self._active or _CURRENT.get() is not None:
            return await request()
        fast = self._fast
        pending = fast.begin() if fast is not None else None
        if pending is False:
            return await request()
        if pending is None:
            call = self._begin(resource, kwargs, stream=stream)
            if call is None:
                return await request()
            try:
                with self._running(call):
                    result = await request()
            except BaseException as exc:
                call.fail(exc)
                raise
            return self._finish(call, result)
        token = _CURRENT.set(pending)
        try:
            result = await request()
        except BaseException as exc:
            _CURRENT.reset(token)
            self._failed(pending, resource, kwargs, stream, exc)
            raise
        _CURRENT.reset(token)
        return self._complete(pending, resource, kwargs, stream, result)

    # -- wrappers (wrapt signature: wrapped, instance, args, kwargs) ----------------------------------

    def _call_sync(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        return self._traced_sync(instance, kwargs, False, functools.partial(wrapped, *args, **kwargs))

    async def _call_async(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        return await self._traced_async(instance, kwargs, False, functools.partial(wrapped, *args, **kwargs))

    def _stream_helper(
        self,
        is_async: bool,
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """``messages.stream(...)``: no I/O yet; trace the request the manager sends on ``__enter__``."""
        manager = wrapped(*args, **kwargs)
        if not self.active:
            return manager
        with guard("anthropic.stream.manager"):
            slot = next((k for k in vars(manager) if k.endswith("__api_request")), None)
            if slot is not None:
                request = getattr(manager, slot)
                if is_async:
                    setattr(manager, slot, self._traced_async(instance, kwargs, True, lambda: request))
                elif callable(request):
                    setattr(
                        manager, slot, functools.partial(self._traced_sync, instance, kwargs, True, request)
                    )
        return manager

    def _sdk_call_span(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """The SDK's ``start_api_call_span``: for a call we trace, a stand-in carrying our context."""
        call = _CURRENT.get()
        if call is not None and self.active:
            with guard("anthropic.sdk_span"):
                options = args[2] if len(args) > 2 else kwargs.get("options")
                if getattr(options, "span_name", None):
                    if isinstance(call, LLMCall):
                        return trace.NonRecordingSpan(call.span.get_span_context())
                    return trace.get_current_span()  # a fast-path call's stand-in, current right now
        return wrapped(*args, **kwargs)
