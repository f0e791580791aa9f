"""Lazy, type-preserving proxies around a provider's streaming response.

Why a ``wrapt.ObjectProxy``: the app gets back something that *is* the provider's stream as far as
``isinstance``, attribute access (``.response``, private fields) and the context-manager protocol go,
so code written against the provider's types keeps working. The proxy pulls chunks only when the app
does (nothing is read ahead), feeds each chunk to a provider-specific :class:`Accumulator`, and ends
the span exactly once, on the first of: exhaustion, an exception while iterating, ``close()``,
leaving a ``with`` block, closing the HTTP response taken from ``stream.response`` (what the SDK's
``.stream()`` helpers do on early exit), or garbage collection of an abandoned stream
(``weakref.finalize``; the callback holds the call state, never the proxy, so it cannot keep the
stream alive). A failure the provider reports *inside* the stream without raising (an accumulator's
``failure()``) still marks the span ERROR.
"""

from __future__ import annotations

import functools
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

import wrapt
from opentelemetry import trace

from monitor import semconv as sc
from monitor._guard import guard
from monitor.instrumentation._deferred import FINISHER, PendingCall
from monitor.instrumentation._genai import LLMCall

__all__ = [
    "Accumulator",
    "AnyStreamState",
    "AsyncStreamProxy",
    "DeferredStreamState",
    "StreamState",
    "SyncStreamProxy",
    "defer_stream",
    "end_failed",
]

FOLD_AT = 256  # chunks kept as received before they are folded into the accumulator on the app's thread


class Accumulator(Protocol):
    """Folds stream chunks into the response attributes. Called on the app's thread; must not block."""

    def add(self, chunk: Any) -> bool:
        """Take one chunk; return True when it carried content (text or tool call) — marks TTFT."""
        ...

    def attributes(self, capture_content: bool) -> dict[str, Any]:
        """Response attributes for what was received so far (also after an early close)."""
        ...

    # Optional: ``failure() -> tuple[str, str] | None`` — (error.type, status message) when the stream
    # carried a provider-reported failure (e.g. a Responses ``response.failed`` event).


def end_failed(call: LLMCall, error_type: str, message: str) -> None:
    """End ``call`` as failed without an exception: the provider answered, but with a failure."""
    if call.ended:
        return
    with guard("llm.end_failed"):
        call.set_attributes({sc.ERROR_TYPE: error_type})
        call.span.set_status(trace.Status(trace.StatusCode.ERROR, message[:1024]))
    call.end()


class StreamState:
    """What a stream proxy needs to finish its span; shared with the GC finalizer (no proxy reference)."""

    __slots__ = ("acc", "call")

    def __init__(self, call: LLMCall, acc: Accumulator) -> None:
        self.call = call
        self.acc = acc

    def on_chunk(self, chunk: Any) -> None:
        with guard("stream.chunk"):
            if self.acc.add(chunk) and self.call.ttft is None:
                self.call.first_chunk()

    def finish(self, exc: BaseException | None = None) -> None:
        if self.call.ended:
            return
        failure = None
        with guard("stream.finish"):
            self.call.set_attributes(self.acc.attributes(self.call.capture_content))
            failed = getattr(self.acc, "failure", None)
            failure = failed() if callable(failed) else None
        if exc is not None:
            self.call.fail(exc)
        elif failure is not None:
            end_failed(self.call, *failure)
        else:
            self.call.end()


class DeferredStreamState:
    """A fast-path stream (``_deferred``): chunks are kept as received and folded later, off the app's thread.

    ``on_chunk`` only appends the chunk and its arrival time; the accumulator runs when the span is
    built (``fold``, on the finisher thread), or on the app's thread every :data:`FOLD_AT` chunks so a
    long stream holds at most that many chunk objects. Time to first chunk is the arrival time of the
    first chunk the accumulator says carried content, minus ``t0`` (the call's start).
    ``on_done(state, exc)`` runs exactly once, on the first of the proxy's end signals.
    """

    __slots__ = ("_done", "_lock", "acc", "chunks", "on_done", "t0", "text_of", "times", "ttft")

    def __init__(
        self,
        acc: Accumulator,
        t0: float,
        on_done: Callable[[DeferredStreamState, BaseException | None], None],
    ) -> None:
        self.acc = acc
        # Optional accumulator pair: ``text_of(chunk)`` reduces a text-only chunk to its text, which
        # ``add_text`` folds later; other chunks are kept whole.
        self.text_of: Callable[[Any], str | None] | None = getattr(acc, "text_of", None)
        self.t0 = t0
        self.on_done = on_done
        self.chunks: list[Any] = []
        self.times: list[float] = []
        self.ttft: float | None = None
        self._done = False
        self._lock = threading.Lock()

    def on_chunk(self, chunk: Any) -> None:
        if self._done:  # read after close: the span already has what arrived before
            return
        chunks = self.chunks
        text_of = self.text_of
        text = text_of(chunk) if text_of is not None else None
        chunks.append(chunk if text is None else text)
        self.times.append(time.perf_counter())
        if len(chunks) >= FOLD_AT:
            self.fold()

    def fold(self) -> None:
        """Feed the kept chunks to the accumulator (one thread at a time: the app's, then the finisher)."""
        chunks, times = self.chunks, self.times
        self.chunks, self.times = [], []
        with guard("stream.chunk"):
            add, add_text = self.acc.add, getattr(self.acc, "add_text", None)
            for chunk, t in zip(chunks, times, strict=True):
                seen = add_text(chunk) if add_text is not None and type(chunk) is str else add(chunk)
                if seen and self.ttft is None:
                    self.ttft = t - self.t0

    def finish(self, exc: BaseException | None = None) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        with guard("stream.finish"):
            self.on_done(self, exc)


AnyStreamState = StreamState | DeferredStreamState


def defer_stream(
    proxy_type: type[SyncStreamProxy] | type[AsyncStreamProxy],
    stream: Any,
    acc: Accumulator,
    pending: PendingCall,
    upgrade: Callable[[], LLMCall | None],
) -> Any:
    """Wrap a fast-path call's ``stream`` so its span is built when the stream ends (``_deferred``).

    ``upgrade()`` makes the call's eager span (same ids and start). A normal end queues the span for the
    finisher thread; an exception mid-stream records it right away, on the app's thread.
    """

    def finish(state: DeferredStreamState, exc: BaseException | None) -> None:
        state.fold()
        call = upgrade()
        if call is None:
            return
        if exc is None:
            call.end_ns = pending.end_ns
        if state.ttft is not None:
            call.ttft = state.ttft
            call.set_attributes({sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: state.ttft})
        StreamState(call, state.acc).finish(exc)

    def done(state: DeferredStreamState, exc: BaseException | None) -> None:
        if exc is not None:  # rare: record the failure now
            finish(state, exc)
            return
        pending.end_ns = time.time_ns()
        pending.job = functools.partial(finish, state, None)
        FINISHER.submit(pending)

    return proxy_type(stream, DeferredStreamState(acc, pending.t0, done))


def _finalizer(proxy: object, state: AnyStreamState) -> weakref.finalize[Any, Any] | None:
    fin = None
    with guard("stream.finalizer"):
        fin = weakref.finalize(proxy, state.finish)
        fin.atexit = False
    return fin


class _ClosingResponse(wrapt.ObjectProxy):
    """The stream's HTTP response, handed out by ``stream.response``: closing it also ends the span.

    The SDK's ``chat.completions.stream()`` / ``responses.stream()`` helpers keep ``raw.response``
    and close *it* (not the stream) when their ``with`` block exits early.
    """

    def __init__(self, response: Any, state: AnyStreamState) -> None:
        super().__init__(response)
        self._self_state = state

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_state.finish()

    async def aclose(self) -> Any:
        try:
            return await self.__wrapped__.aclose()
        finally:
            self._self_state.finish()


class _ResponseAccess:
    """``stream.response`` through a proxy that notices ``close()`` (shared by both stream proxies)."""

    __wrapped__: Any
    _self_state: AnyStreamState
    _self_response: _ClosingResponse | None = None

    @property
    def response(self) -> Any:
        real = self.__wrapped__.response
        held = self._self_response
        if held is None or held.__wrapped__ is not real:
            held = _ClosingResponse(real, self._self_state)
            self._self_response = held
        return held

    @response.setter
    def response(self, value: Any) -> None:
        self.__wrapped__.response = value


class SyncStreamProxy(_ResponseAccess, wrapt.ObjectProxy):
    """Proxy for a synchronous stream (iterator + context manager + ``close()``)."""

    def __init__(self, stream: Any, state: AnyStreamState) -> None:
        super().__init__(stream)
        self._self_state = state
        self._self_response = None
        self._self_finalizer = _finalizer(self, state)

    def _self_done(self, exc: BaseException | None = None) -> None:
        if self._self_finalizer is not None:
            self._self_finalizer.detach()
        self._self_state.finish(exc)

    def __iter__(self) -> SyncStreamProxy:
        return self

    def __next__(self) -> Any:
        try:
            chunk = next(self.__wrapped__)
        except StopIteration:
            self._self_done()
            raise
        except BaseException as exc:
            self._self_done(exc)
            raise
        self._self_state.on_chunk(chunk)
        return chunk

    def __enter__(self) -> SyncStreamProxy:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            self._self_done()

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_done()


class AsyncStreamProxy(_ResponseAccess, wrapt.ObjectProxy):
    """Proxy for an asynchronous stream (async iterator + async context manager + ``await close()``)."""

    def __init__(self, stream: Any, state: AnyStreamState) -> None:
        super().__init__(stream)
        self._self_state = state
        self._self_response = None
        self._self_finalizer = _finalizer(self, state)

    def _self_done(self, exc: BaseException | None = None) -> None:
        if self._self_finalizer is not None:
            self._self_finalizer.detach()
        self._self_state.finish(exc)

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self.__wrapped__.__anext__()
        except StopAsyncIteration:
            self._self_done()
            raise
        except BaseException as exc:
            self._self_done(exc)
            raise
        self._self_state.on_chunk(chunk)
        return chunk

    async def __aenter__(self) -> AsyncStreamProxy:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            self._self_done()

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_done()
