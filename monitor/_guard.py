"""The one guard around our own telemetry code.

Why: instrumentation runs inside the host application's request path. A bug in how we read a response
or serialise an argument must never turn into an exception in the app, so every piece of our code that
touches user data runs under :func:`guard`. The guard swallows ``Exception`` subclasses raised *by our
code*, logs each failing call site once (a hot loop must not flood the app's logs) and counts them.

Under test the environment variable ``LLM_MONITOR_RAISE_INTERNAL=1`` (set by ``tests/conftest.py``)
makes the guard re-raise instead, so our bugs fail CI rather than hiding (the sentry-python habit).

Contract: the guard never wraps user code. User exceptions therefore never reach it; instrumentation
wrappers call the user's function *outside* any guard and re-raise its exception with a bare ``raise``.
``BaseException`` subclasses that are not ``Exception`` (``KeyboardInterrupt``, ``SystemExit``,
``GeneratorExit``, ``CancelledError``) always propagate.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar, overload

__all__ = ["RAISE_INTERNAL_ENV", "guard", "guarded", "internal_error_count", "raise_internal"]

RAISE_INTERNAL_ENV = "LLM_MONITOR_RAISE_INTERNAL"

logger = logging.getLogger("monitor")

_F = TypeVar("_F", bound=Callable[..., Any])

_lock = threading.Lock()
_logged_sites: set[str] = set()
_error_count = 0


def raise_internal() -> bool:
    """True when internal errors must propagate (tests). Read on every failure, so tests may toggle it."""
    return os.environ.get(RAISE_INTERNAL_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def internal_error_count() -> int:
    """How many internal errors were swallowed since start-up (exposed for diagnostics and tests)."""
    return _error_count


def _report(site: str, exc: BaseException) -> None:
    global _error_count
    with _lock:
        _error_count += 1
        first = site not in _logged_sites
        _logged_sites.add(site)
    if first:
        # exc_info keeps the traceback of *our* bug; later failures at this site stay silent.
        logger.warning(
            "llm-monitor: internal error in %s (telemetry skipped; the application is unaffected): %r",
            site,
            exc,
            exc_info=(type(exc), exc, exc.__traceback__),
        )


class guard:
    """Context manager: swallow and log-once an ``Exception`` raised inside the block.

    ``site`` names the call site for the once-per-site log; keep it a constant string.
    Cheap enough for the hot path: no allocation beyond the object itself, no locking unless a failure.
    """

    __slots__ = ("site",)

    def __init__(self, site: str) -> None:
        self.site = site

    def __enter__(self) -> guard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        if raise_internal():
            return False
        _report(self.site, exc)
        return True


@overload
def guarded(func: _F) -> _F: ...
@overload
def guarded(*, default: Any = None, site: str | None = None) -> Callable[[_F], _F]: ...


def guarded(func: Any = None, *, default: Any = None, site: str | None = None) -> Any:
    """Decorator form of :class:`guard`: the function returns ``default`` when our code inside fails.

    Only for functions made entirely of telemetry code (extractors, serialisers, span bookkeeping).
    """

    def decorate(fn: _F) -> _F:
        name = site or f"{fn.__module__}.{fn.__qualname__}"

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if raise_internal():
                    raise
                _report(name, exc)
                return default

        return wrapper  # type: ignore[return-value]

    if func is not None:
        return decorate(func)
    return decorate
