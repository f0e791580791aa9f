"""The ``Instrumentor`` seam: patch a library's entry points, restore them on request.

Contract for subclasses:

* Set ``name`` (the registry key, e.g. ``"openai"``) and ``library`` (the import name that must be
  installed). The module must **not** import ``library`` at import time: the registry loads the class
  before knowing whether the app wants it.
* Implement :meth:`_instrument` by calling :meth:`_wrap` for each function to patch. Wrappers receive
  ``(wrapped, instance, args, kwargs)`` and must first check :attr:`active`, then call the user's
  function outside any guard and re-raise its exceptions with a bare ``raise``.
* ``instrument()``/``uninstrument()`` may be called from any thread, any number of times: the second
  call of either is a no-op. ``uninstrument()`` puts back the exact original attribute. If another
  library wrapped the same function on top of ours in the meantime, our wrapper is left in the chain
  (removing it would drop theirs) but turns into a pass-through.

How: a plain function defined on a class (every SDK method we patch) is replaced by a plain function of
ours (:func:`_method`) that calls the wrapper with the original bound to the instance; anything else
(module functions, static and class methods, builtins) gets a wrapt ``FunctionWrapper``. Why: wrapt's
bound wrapper is built again at every attribute access and calls through two more layers. Timed call by
call between real SDK calls (where caches are cold), a no-op wrapt wrapper added 9.9 µs and a no-op plain
method 2.1 µs; our dispatch fell from 12.2 to 3.7 µs (``benchmarks/README.md``, session 7). Both present
the original's name, doc, ``__wrapped__`` and signature, and both bind like the original.
"""

from __future__ import annotations

import functools
import inspect
import threading
import types
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from opentelemetry import trace

from monitor import _tracing
from monitor import semconv as sc
from monitor._guard import guard
from monitor._version import __version__

__all__ = ["Instrumentor", "Wrapper", "snapshot_kwargs"]

Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]

_MISSING = object()

#: plain methods for plain functions on classes (see the module docstring); False: wrapt everywhere (the
#: benchmark's A/B of the dispatch, and tests that both behave alike)
PLAIN_METHODS = True


def _method(original: types.FunctionType, wrapper: Wrapper) -> Callable[..., Any]:
    """A function to put on the class in place of ``original``: calls ``wrapper(bound original, instance,
    args, kwargs)``, as wrapt would (``self`` is positional-only, so a ``self=`` keyword still reaches
    the original)."""
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def amethod(self: Any, /, *args: Any, **kwargs: Any) -> Any:
            return await wrapper(original.__get__(self), self, args, kwargs)

        return amethod

    @functools.wraps(original)
    def method(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        return wrapper(original.__get__(self), self, args, kwargs)

    return method


class Instrumentor(ABC):
    """Base class of every integration; see the module docstring for the contract."""

    name: ClassVar[str]
    library: ClassVar[str]

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._patches: list[tuple[Any, str, Any, Any]] = []
        self._active = False
        self._capture_content: bool | None = None
        self.tracer: trace.Tracer = trace.NoOpTracer()

    @property
    def active(self) -> bool:
        """True between ``instrument()`` and ``uninstrument()``; wrappers pass through otherwise."""
        return self._active

    @property
    def capture_content(self) -> bool:
        """Record message texts? The value given to ``instrument()``, else ``monitor.init``'s setting."""
        return _tracing.capture_content() if self._capture_content is None else self._capture_content

    def instrument(
        self, *, tracer_provider: trace.TracerProvider | None = None, capture_content: bool | None = None
    ) -> None:
        """Patch the library. Without ``tracer_provider`` the global provider is used (resolved lazily)."""
        with self._lock:
            if self._active:
                return
            scope = f"{sc.SCOPE_PREFIX}.{self.name}"
            self.tracer = (
                tracer_provider.get_tracer(scope, __version__)
                if tracer_provider is not None
                else trace.get_tracer(scope, __version__)
            )
            self._capture_content = capture_content
            try:
                self._instrument()
            except BaseException:
                self._restore()
                raise
            self._active = True

    def uninstrument(self) -> None:
        """Restore every patched attribute to its original value."""
        with self._lock:
            if not self._active:
                return
            self._active = False
            self._restore()

    @abstractmethod
    def _instrument(self) -> None:
        """Apply the patches (call :meth:`_wrap`); may raise, in which case applied patches are undone."""

    def _wrap(
        self,
        module: str,
        path: str,
        wrapper: Wrapper,
        native: Callable[[types.FunctionType], Any] | None = None,
    ) -> None:
        """Wrap ``module.path`` (e.g. ``"Completions.create"``) with ``wrapper``; remember the original.

        ``native(original)``, for a plain sync function on a class, may build what to install instead of
        :func:`_method` (the deferred path in C, ``_deferred.native``): it must behave as
        ``wrapper`` would.
        """
        import wrapt

        parent, attribute, _ = wrapt.resolve_path(module, path)
        original = vars(parent).get(attribute, _MISSING) if hasattr(parent, "__dict__") else _MISSING
        installed: Any
        if PLAIN_METHODS and isinstance(parent, type) and type(original) is types.FunctionType:
            installed = None
            if native is not None and not inspect.iscoroutinefunction(original):
                try:
                    installed = native(original)
                except Exception:  # our bug: logged once, and the Python dispatch is installed instead
                    with guard(f"{self.name}.native"):
                        raise
            if installed is None:
                installed = _method(original, wrapper)
            else:
                functools.update_wrapper(installed, original)
            setattr(parent, attribute, installed)
        else:
            installed = wrapt.wrap_function_wrapper(parent, attribute, wrapper)
        self._patches.append((parent, attribute, original, installed))

    def _internal_error(self, site: str, exc: BaseException) -> None:
        """The native request path's guard (``_fastcall``): log ``exc`` once for ``site``, or re-raise it
        under ``LLM_MONITOR_RAISE_INTERNAL``."""
        with guard(site):
            raise exc

    def _restore(self) -> None:
        while self._patches:
            parent, attribute, original, installed = self._patches.pop()
            if type(installed).__name__ == "FastMethod":
                installed.active = False  # its own flag (C); pass-through wherever it stays
            if vars(parent).get(attribute) is not installed:
                continue  # someone wrapped on top of us: keep the chain, our wrapper is inert now
            if original is _MISSING:
                delattr(parent, attribute)
            else:
                setattr(parent, attribute, original)


def is_sdk_model(obj: Any, package: str, cache: dict[type, bool]) -> bool:
    """Whether ``obj`` is one of ``package``'s own pydantic models (whose fields may be read directly),
    cached per type in ``cache`` (bounded: types beyond 256 are just checked again)."""
    cls = type(obj)
    sdk = cache.get(cls)
    if sdk is None:
        sdk = cls.__module__.startswith(package + ".") and hasattr(cls, "model_fields")
        if len(cache) < 256:
            cache[cls] = sdk
    return sdk


def snapshot_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A wrapper's own keyword-argument dict, made safe to read later on another thread; returns it.

    Python builds a fresh ``**kwargs`` dict for every call (the provider receives yet another one), so
    the dict itself is ours; only the list values in it are shared with the app, and apps append the
    reply to their ``messages`` right after the call. So those lists are copied, in place (no new dict:
    this runs on the request path); their elements are shared, not deep-copied.
    """
    for key in _LIST_ARGUMENTS:
        value = kwargs.get(key)
        if type(value) is list:
            kwargs[key] = value.copy()
    return kwargs


_LIST_ARGUMENTS = ("messages", "input", "system", "tools")
