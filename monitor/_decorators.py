"""Hand-made spans: ``@chain``, ``@agent``, ``@tool``, ``@retriever`` and ``with span(...)``.

Each kind maps to the GenAI operation that exists for it (chain → ``invoke_workflow``, agent →
``invoke_agent``, tool → ``execute_tool``, retriever → ``retrieval``) so any GenAI-aware backend
understands the trace, and carries ``llm_monitor.span.kind`` for the kinds the conventions lack.
Span names follow the conventions too: ``{operation} {name}`` (e.g. ``execute_tool get_weather``).

The decorated function runs outside every guard: its return value and its exception (same object,
re-raised with a bare ``raise``) reach the caller untouched. Generators and async generators get a
span that covers the whole iteration; the span is current only while the generator body runs, not
while the consumer runs between items, so spans the consumer starts do not nest under it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from types import TracebackType
from typing import Any, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace

from monitor import _tracing
from monitor import semconv as sc
from monitor._guard import guard
from monitor._serialize import DEFAULT_LIMIT, dumps_capped, to_jsonable, truncate

__all__ = ["SpanHandle", "agent", "chain", "retriever", "span", "tool"]

_F = TypeVar("_F", bound=Callable[..., Any])

# kind → (gen_ai.operation.name, attribute that carries the user's name)
_KIND_OPERATION: dict[str, tuple[str, str | None]] = {
    "chain": (sc.OP_INVOKE_WORKFLOW, sc.GEN_AI_WORKFLOW_NAME),
    "agent": (sc.OP_INVOKE_AGENT, sc.GEN_AI_AGENT_NAME),
    "tool": (sc.OP_EXECUTE_TOOL, sc.GEN_AI_TOOL_NAME),
    "retriever": (sc.OP_RETRIEVAL, None),
}
_MAX_YIELDS = 199  # generator items kept for the captured output (+ one "… n more items" marker: 200)


def _start_attributes(kind: str, name: str, description: str | None = None) -> tuple[str, dict[str, Any]]:
    attrs: dict[str, Any] = {sc.LLM_MONITOR_SPAN_KIND: kind}
    op, name_key = _KIND_OPERATION.get(kind, (None, None))
    if op is None:
        return name, attrs
    attrs[sc.GEN_AI_OPERATION_NAME] = op
    if name_key is not None:
        attrs[name_key] = name
    if kind == "tool":
        attrs[sc.GEN_AI_TOOL_TYPE] = "function"
        if description:
            attrs[sc.GEN_AI_TOOL_DESCRIPTION] = truncate(description, 1024)
    return f"{op} {name}", attrs


class _Run:
    """One execution of a decorated function or ``span`` block: span, context token, capture flags."""

    __slots__ = ("capture_output", "kind", "span", "token")

    def __init__(self, span: trace.Span, kind: str, capture_output: bool) -> None:
        self.span = span
        self.kind = kind
        self.capture_output = capture_output
        self.token: Any = None

    @classmethod
    def start(
        cls,
        kind: str,
        name: str,
        input_json: Callable[[], str | None] | None,
        capture_output: bool,
        description: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> _Run | None:
        span: trace.Span | None = None
        with guard("decorator.start"):
            span_name, attrs = _start_attributes(kind, name, description)
            if extra:
                attrs.update(extra)
            span = _tracing.get_tracer("manual").start_span(span_name, attributes=attrs)
        if span is None:
            return None
        # Serialise arguments only for spans that will be kept (not sampled out, SDK on).
        content = False
        with guard("decorator.input"):
            content = _tracing.capture_content() and span.is_recording()
            if input_json is not None and content:
                text = input_json()
                if text is not None:
                    span.set_attribute(sc.LLM_MONITOR_INPUT, text)
                    if kind == "tool":
                        span.set_attribute(sc.GEN_AI_TOOL_CALL_ARGUMENTS, text)
        return cls(span, kind, capture_output and content)

    def enter(self) -> None:
        with guard("decorator.enter"):
            self.token = otel_context.attach(trace.set_span_in_context(self.span))

    def exit(self) -> None:
        token, self.token = self.token, None
        if token is not None:
            with guard("decorator.exit"):
                otel_context.detach(token)

    def set_output(self, value: Any) -> None:
        with guard("decorator.output"):
            text = dumps_capped(value)
            self.span.set_attribute(sc.LLM_MONITOR_OUTPUT, text)
            if self.kind == "tool":
                self.span.set_attribute(sc.GEN_AI_TOOL_CALL_RESULT, text)

    def succeed(self, value: Any = None, has_value: bool = True) -> None:
        if self.capture_output and has_value:
            self.set_output(value)
        with guard("decorator.end"):
            self.span.end()

    def fail(self, exc: BaseException) -> None:
        _tracing.record_exception(self.span, exc)
        with guard("decorator.end"):
            self.span.end()


# --- input capture -----------------------------------------------------------------------------------


def _input_capturer(func: Callable[..., Any]) -> Callable[[tuple[Any, ...], dict[str, Any]], str | None]:
    """Build, once per decorated function, a cheap ``(args, kwargs) → JSON`` of the bound arguments."""
    try:
        sig: inspect.Signature | None = inspect.signature(func)
    except (TypeError, ValueError):
        sig = None
    params = list(sig.parameters) if sig is not None else []
    drop_first = bool(params) and params[0] in ("self", "cls")

    def capture(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        if sig is None:
            return dumps_capped({"args": list(args), "kwargs": kwargs})
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError:  # the call itself is wrong; the function will say so
            return dumps_capped({"args": list(args[1:] if drop_first else args), "kwargs": kwargs})
        bound.apply_defaults()
        values = dict(bound.arguments)
        if drop_first:
            values.pop(params[0], None)
        return dumps_capped(values)

    return capture


# --- wrapping by function type -----------------------------------------------------------------------


def _wrap(func: Any, kind: str, name: str | None, capture_input: bool, capture_output: bool) -> Any:
    if isinstance(func, (staticmethod, classmethod)):
        return type(func)(_wrap(func.__func__, kind, name, capture_input, capture_output))
    if not callable(func):
        raise TypeError(f"@monitor.{kind} expects a function, got {type(func).__name__}")
    span_name = name or getattr(func, "__name__", None) or kind
    description = inspect.getdoc(func) if kind == "tool" else None
    description = description.strip().splitlines()[0] if description else None
    capturer = _input_capturer(func) if capture_input else None

    def begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Run | None:
        input_json = (lambda: capturer(args, kwargs)) if capturer is not None else None
        return _Run.start(kind, span_name, input_json, capture_output, description)

    if inspect.isasyncgenfunction(func):
        return _wrap_async_gen(func, begin)
    if inspect.isgeneratorfunction(func):
        return _wrap_gen(func, begin)
    if inspect.iscoroutinefunction(func):
        return _wrap_coroutine(func, begin)
    return _wrap_function(func, begin)


_Begin = Callable[[tuple[Any, ...], dict[str, Any]], "_Run | None"]


def _wrap_function(func: Callable[..., Any], begin: _Begin) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        run = begin(args, kwargs)
        if run is None:
            return func(*args, **kwargs)
        run.enter()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            run.exit()
            run.fail(exc)
            raise
        run.exit()
        run.succeed(result)
        return result

    return wrapper


def _wrap_coroutine(func: Callable[..., Any], begin: _Begin) -> Callable[..., Any]:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        run = begin(args, kwargs)
        if run is None:
            return await func(*args, **kwargs)
        run.enter()
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            run.exit()
            run.fail(exc)
            raise
        run.exit()
        run.succeed(result)
        return result

    return wrapper


class _Yields:
    """Bounded record of the items a generator produced (for ``llm_monitor.output``)."""

    __slots__ = ("count", "items")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.count = 0

    def add(self, item: Any) -> None:
        self.count += 1
        if self.count <= _MAX_YIELDS:
            with guard("decorator.yield"):
                self.items.append(to_jsonable(item, DEFAULT_LIMIT // 4))

    def value(self) -> Any:
        if self.count > _MAX_YIELDS:
            return [*self.items, f"… {self.count - _MAX_YIELDS} more items"]
        return self.items


def _wrap_gen(func: Callable[..., Generator[Any, Any, Any]], begin: _Begin) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        run = begin(args, kwargs)
        if run is None:
            return (yield from func(*args, **kwargs))
        yields = _Yields()
        # The PEP 380 expansion of ``yield from``, with the span current only inside the generator.
        try:
            run.enter()
            try:
                gen = func(*args, **kwargs)
                item = next(gen)
            finally:
                run.exit()
            while True:
                if run.capture_output:
                    yields.add(item)
                try:
                    sent = yield item
                except GeneratorExit:
                    run.enter()
                    try:
                        gen.close()
                    finally:
                        run.exit()
                    run.succeed(yields.value())
                    raise
                except BaseException as thrown:
                    run.enter()
                    try:
                        item = gen.throw(thrown)
                    finally:
                        run.exit()
                    continue
                run.enter()
                try:
                    item = gen.send(sent) if sent is not None else next(gen)
                finally:
                    run.exit()
        except StopIteration as stop:
            run.succeed(yields.value())
            return stop.value
        except GeneratorExit:
            raise
        except BaseException as exc:
            run.fail(exc)
            raise

    return wrapper


def _wrap_async_gen(func: Callable[..., AsyncGenerator[Any, Any]], begin: _Begin) -> Callable[..., Any]:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        run = begin(args, kwargs)
        agen = func(*args, **kwargs)
        if run is None:
            async for item in agen:
                yield item
            return
        yields = _Yields()
        try:
            run.enter()
            try:
                item = await agen.__anext__()
            finally:
                run.exit()
            while True:
                if run.capture_output:
                    yields.add(item)
                try:
                    sent = yield item
                except GeneratorExit:
                    run.enter()
                    try:
                        await agen.aclose()
                    finally:
                        run.exit()
                    run.succeed(yields.value())
                    raise
                except BaseException as thrown:
                    run.enter()
                    try:
                        item = await agen.athrow(thrown)
                    finally:
                        run.exit()
                    continue
                run.enter()
                try:
                    item = await (agen.asend(sent) if sent is not None else agen.__anext__())
                finally:
                    run.exit()
        except StopAsyncIteration:
            run.succeed(yields.value())
        except GeneratorExit:
            raise
        except BaseException as exc:
            run.fail(exc)
            raise

    return wrapper


# --- public decorators -------------------------------------------------------------------------------


def _decorator(kind: str) -> Callable[..., Any]:
    @overload
    def decorate(func: _F, /) -> _F: ...
    @overload
    def decorate(
        func: str | None = None,
        /,
        *,
        name: str | None = None,
        capture_input: bool = True,
        capture_output: bool = True,
    ) -> Callable[[_F], _F]: ...

    def decorate(
        func: Any = None,
        /,
        *,
        name: str | None = None,
        capture_input: bool = True,
        capture_output: bool = True,
    ) -> Any:
        if isinstance(func, str):  # @monitor.tool("search")
            name, func = func, None
        if func is not None:
            return _wrap(func, kind, name, capture_input, capture_output)
        return lambda f: _wrap(f, kind, name, capture_input, capture_output)

    decorate.__name__ = decorate.__qualname__ = kind
    decorate.__doc__ = (
        f"Trace a function as a {kind} span (``llm_monitor.span.kind={kind}``).\n\n"
        f"Use bare (``@monitor.{kind}``) or with options (``@monitor.{kind}(name=..., capture_input=False)``).\n"
        "Works on functions, methods, coroutines, generators and async generators; the arguments "
        "(``self`` dropped) and the return value are recorded as capped JSON unless disabled."
    )
    return decorate


chain = _decorator("chain")
agent = _decorator("agent")
tool = _decorator("tool")
retriever = _decorator("retriever")


class SpanHandle:
    """What ``with monitor.span(...) as s`` gives: set input/output/attributes on the open span."""

    __slots__ = ("_run",)

    def __init__(self, run: _Run | None) -> None:
        self._run = run

    @property
    def span(self) -> trace.Span:
        """The underlying OpenTelemetry span (a non-recording one if tracing failed to start)."""
        return self._run.span if self._run is not None else trace.INVALID_SPAN

    def _capturing(self) -> bool:
        # Serialise only what will be kept: not for a sampled-out span, not without content capture.
        return self._run is not None and self._run.span.is_recording() and _tracing.capture_content()

    def set_input(self, value: Any) -> None:
        if self._run is not None and self._capturing():
            with guard("span.set_input"):
                self._run.span.set_attribute(sc.LLM_MONITOR_INPUT, dumps_capped(value))

    def set_output(self, value: Any) -> None:
        if self._run is not None and self._capturing():
            self._run.set_output(value)

    def set_attribute(self, key: str, value: Any) -> None:
        if self._run is not None:
            with guard("span.set_attribute"):
                self._run.span.set_attribute(key, value)


class span:
    """Context manager (``with`` / ``async with``) opening a span of ``kind`` around a block.

    An exception leaving the block is recorded on the span and propagates unchanged.
    """

    def __init__(self, name: str, kind: str = "chain", attributes: Mapping[str, Any] | None = None) -> None:
        if kind not in sc.KINDS:
            raise ValueError(f"monitor.span: unknown kind {kind!r} (expected one of {', '.join(sc.KINDS)})")
        self.name = name
        self.kind = kind
        self.attributes = dict(attributes or {})
        self._runs: list[_Run | None] = []

    def __enter__(self) -> SpanHandle:
        run = _Run.start(self.kind, self.name, None, False, extra=self.attributes)
        if run is not None:
            run.enter()
        self._runs.append(run)
        return SpanHandle(run)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        run = self._runs.pop() if self._runs else None
        if run is None:
            return
        run.exit()
        if exc is not None:
            run.fail(exc)
        else:
            run.succeed(has_value=False)

    async def __aenter__(self) -> SpanHandle:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)
