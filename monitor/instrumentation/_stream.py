"""Lazy, type-preserving proxies around a provider's streaming response.

Why a ``wrapt.ObjectProxy``: the app gets back something that *is* the provider's stream as far as
``isinstance``, attribute access (``.response``, private fields) and the context-manager protocol go,
so code written against the provider's types keeps working. The proxy pulls chunks only when the app
does (nothing is read ahead), feeds each chunk to a provider-specific :class:`Accumulator`, and ends
the span exactly once, on the first of: exhaustion, an exception while iterating, ``close()``,
leaving a ``with`` block, or garbage collection of an abandoned stream (``weakref.finalize``; the
callback holds the call state, never the proxy, so it cannot keep the stream alive).
"""

from __future__ import annotations

import weakref
from typing import Any, Protocol

import wrapt

from monitor._guard import guard
from monitor.instrumentation._genai import LLMCall

__all__ = ["Accumulator", "AsyncStreamProxy", "StreamState", "SyncStreamProxy"]


class Accumulator(Protocol):
    """Folds stream chunks into the response attributes. Called on the app's thread; must not block."""

    def add(self, chunk: Any) -> bool:
        """Take one chunk; return True when it carried content (text or tool call) — marks TTFT."""
        ...

    def attributes(self, capture_content: bool) -> dict[str, Any]:
        """Response attributes for what was received so far (also after an early close)."""
        ...


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
        with guard("stream.finish"):
            self.call.set_attributes(self.acc.attributes(self.call.capture_content))
        if exc is None:
            self.call.end()
        else:
            self.call.fail(exc)


def _finalizer(proxy: object, state: StreamState) -> weakref.finalize[Any, Any] | None:
    fin = None
    with guard("stream.finalizer"):
        fin = weakref.finalize(proxy, state.finish)
        fin.atexit = False
    return fin


class SyncStreamProxy(wrapt.ObjectProxy):
    """Proxy for a synchronous stream (iterator + context manager + ``close()``)."""

    def __init__(self, stream: Any, state: StreamState) -> None:
        super().__init__(stream)
        self._self_state = state
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


class AsyncStreamProxy(wrapt.ObjectProxy):
    """Proxy for an asynchronous stream (async iterator + async context manager + ``await close()``)."""

    def __init__(self, stream: Any, state: StreamState) -> None:
        super().__init__(stream)
        self._self_state = state
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
