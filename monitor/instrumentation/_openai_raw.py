"""Spans for ``with_raw_response`` / ``with_streaming_response`` calls, without taking the body from the app.

The SDK's wrappers call the (patched) ``create`` with a marker header and get back a response object
instead of the parsed result:

* ``with_raw_response`` → ``LegacyAPIResponse``. Its body is already read, and ``parse()`` caches its
  result per target type, so parsing it once here costs the app nothing: its own ``parse()`` gets the
  very same object. For ``stream=True`` ``parse()`` only builds the (lazy) ``Stream``; the cached
  entry is replaced by our type-preserving stream proxy, so the app's ``parse()`` returns a stream
  that still ``isinstance``-checks as ``openai.Stream`` and ends the span when it is consumed.
  The app keeps its own response object (same identity); a ``parse()`` that fails here is left for
  the app to meet on its own call, and the span then has no response attributes.
* ``with_streaming_response`` → ``APIResponse`` / ``AsyncAPIResponse`` whose body is *not* read.
  Reading it here would defeat the point, so the app gets a proxy (``isinstance`` still holds) that
  records the response when the app calls ``parse()`` and ends the span when the app closes it
  (leaving the ``with`` block), or when the proxy is garbage collected. If the app reads the body
  some other way (``iter_lines()``, ``read()``), the span has only the request attributes.

Called on the app's thread, inside the call path: nothing here blocks or reads the network.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import wrapt

from monitor._guard import guard
from monitor.instrumentation._genai import LLMCall
from monitor.instrumentation._stream import AnyStreamState, AsyncStreamProxy, SyncStreamProxy

__all__ = ["AsyncStreamedRawProxy", "StreamedRawProxy", "raw_kind", "wrap_legacy_stream"]

_UNSET: Any = object()


def raw_kind(result: Any) -> str | None:
    """``"legacy"``, ``"streamed"``, ``"streamed_async"`` or None, by class name (no SDK import)."""
    names = {c.__name__ for c in type(result).__mro__}
    if "LegacyAPIResponse" in names:
        return "legacy"
    if "AsyncAPIResponse" in names:
        return "streamed_async"
    if "APIResponse" in names:
        return "streamed"
    return None


def parse_quietly(raw: Any) -> Any:
    """``raw.parse()``, or None: a parse failure is the app's to meet on its own call, not ours."""
    try:
        return raw.parse()
    except Exception:
        return None


def wrap_legacy_stream(raw: Any, stream: Any, proxy: Any) -> bool:
    """Put ``proxy`` where ``raw.parse()`` caches ``stream``; False if the cache is not as expected."""
    cache = getattr(raw, "_parsed_by_type", None)
    key = getattr(raw, "_cast_to", None)
    if isinstance(cache, dict) and cache.get(key) is stream:
        cache[key] = proxy
        return True
    return False


class _RawState:
    """What both streamed-raw proxies share: the call, how to record a result, the pending stream."""

    __slots__ = ("call", "finalizer", "on_result", "stream")

    def __init__(self, call: LLMCall, on_result: Callable[[Any], Any], owner: object) -> None:
        self.call = call
        self.on_result = on_result
        self.stream: AnyStreamState | None = None
        self.finalizer: weakref.finalize[Any, Any] | None = None
        with guard("raw.finalizer"):
            self.finalizer = weakref.finalize(owner, call.end)
            self.finalizer.atexit = False

    def parsed(self, result: Any) -> Any:
        """Record ``result`` (or wrap it if it is a stream); returns what the app should get."""
        out = self.on_result(result)
        if isinstance(out, (SyncStreamProxy, AsyncStreamProxy)):
            self.stream = out._self_state
        return out

    def failed(self, exc: BaseException) -> None:
        self.call.fail(exc)

    def closed(self) -> None:
        if self.finalizer is not None:
            self.finalizer.detach()
        if self.stream is not None:
            self.stream.finish()
        else:
            self.call.end()


class StreamedRawProxy(wrapt.ObjectProxy):
    """An ``APIResponse`` from ``with_streaming_response``: ``parse()`` records, ``close()`` ends."""

    def __init__(self, response: Any, call: LLMCall, on_result: Callable[[Any], Any]) -> None:
        super().__init__(response)
        self._self_raw = _RawState(call, on_result, self)
        self._self_parsed = _UNSET

    def parse(self, *, to: Any = None) -> Any:
        if to is not None:
            return self.__wrapped__.parse(to=to)
        if self._self_parsed is not _UNSET:
            return self._self_parsed
        try:
            result = self.__wrapped__.parse()
        except BaseException as exc:
            self._self_raw.failed(exc)
            raise
        self._self_parsed = self._self_raw.parsed(result)
        return self._self_parsed

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_raw.closed()


class AsyncStreamedRawProxy(wrapt.ObjectProxy):
    """An ``AsyncAPIResponse`` from ``with_streaming_response``: ``await parse()`` records, ``close()`` ends."""

    def __init__(self, response: Any, call: LLMCall, on_result: Callable[[Any], Any]) -> None:
        super().__init__(response)
        self._self_raw = _RawState(call, on_result, self)
        self._self_parsed = _UNSET

    async def parse(self, *, to: Any = None) -> Any:
        if to is not None:
            return await self.__wrapped__.parse(to=to)
        if self._self_parsed is not _UNSET:
            return self._self_parsed
        try:
            result = await self.__wrapped__.parse()
        except BaseException as exc:
            self._self_raw.failed(exc)
            raise
        self._self_parsed = self._self_raw.parsed(result)
        return self._self_parsed

    async def close(self) -> Any:
        try:
            return await self.__wrapped__.close()
        finally:
            self._self_raw.closed()
