"""Model-call spans built off the request path: the caller pays for ids and a timestamp, nothing more.

Why: reading a request's parameters and messages, serializing them, reading the response and creating
and ending an SDK span costs a few hundred µs of CPU per call in Python. None of it has to happen
while the app waits for its answer. So on the app's thread a call only

* checks the current OTel context (a framework model-call slot, see ``_nesting``, or an unknown
  sampler sends the call down the eager path instead),
* takes the sampling decision the provider's ``ParentBased`` sampler would take, ids from the
  provider's own id generator (the C path, ``_fastcall``, draws them from its own generator when the
  provider's is the SDK's default), the start time, and a copy of the contextvars (``copy_context()``),
* makes a non-recording span with those ids current while the provider call runs, so spans started
  inside (HTTP client instrumentations) get the right parent,
* and, when the call returned a plain response, appends one :class:`PendingCall` to a bounded deque.

A daemon *finisher* thread (:data:`FINISHER`) wakes every :data:`INTERVAL` seconds and, inside the
copied contextvars, builds the very span the eager path would have built, with the same ids, start and
end times (the SDK tracer is given the pre-drawn ids through :class:`PresetIdGenerator`), so span
processors' ``on_start`` (``monitor.context`` stamping, an app's own processors) see the caller's
context. ``monitor.flush()``/``shutdown()`` and exit drain the deque first.

A call that raises, streams, or returns a raw response is *upgraded* on the app's thread instead
(:meth:`FastPath.upgrade`: the eager span, same ids and start), since its span must exist while the app
holds the stream. The request arguments are snapshotted shallowly (top-level lists copied: apps append
the reply to their ``messages`` list right after the call). A chat response is not kept: the
instrumentor reduces it on the app's thread to one flat tuple of the values its span needs (raw
attribute reads, ~1 µs), so a waiting call holds about four GC objects (this, its contextvars copy, the
argument dict and the copied ``messages``) instead of about twenty: fewer, and smaller, collections on
the app's thread while the finisher waits for the GIL. Other responses are read later, as they are.

Bounded: over :data:`MAX_PENDING` waiting calls the newest is dropped and counted (logged once). Forks
get an empty queue and a new thread. Internal errors in the finisher are swallowed like every other
(``monitor._guard``); under ``LLM_MONITOR_RAISE_INTERNAL`` they re-raise from the next :meth:`drain`.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from random import getrandbits as _getrandbits
from typing import Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation import _SPAN_KEY

from monitor._guard import guard
from monitor.instrumentation._nesting import _SLOT_KEY

__all__ = [
    "FINISHER",
    "FastPath",
    "Finisher",
    "PendingCall",
    "PresetIdGenerator",
    "drain",
    "native",
]

logger = logging.getLogger("monitor")

INTERVAL = 0.05  # seconds between the finisher's passes (spans wait for the export batch anyway)
MAX_PENDING = 10_000
# Calls waiting that wake the finisher before its interval. What a waiting call holds (the response and
# its model objects, the argument snapshot) counts toward CPython's gen-0 GC threshold until the finisher
# frees it, and those collections run on the app's thread; waking early keeps that backlog short when the
# finisher can get the GIL (the app waits on I/O). A loop of calls that never blocks starves the finisher
# of the GIL whatever this is (benchmarks/README.md, sdk_overhead).
WAKE_AT = 8

_ROOT_FLAGS = trace.TraceFlags(trace.TraceFlags.SAMPLED | getattr(trace.TraceFlags, "RANDOM_TRACE_ID", 0))


class PendingCall(trace.NonRecordingSpan):
    """One model call on the fast path: ids, times and contextvars; what to do with it is ``job``.

    It is also the non-recording stand-in span made current while the call runs (one object, not two:
    this is built on the request path). Its ``SpanContext`` is built only if something asks (a child
    span, ``current_trace_id()``), which most calls never do.
    """

    # Slots, no instance dict: a waiting call holds as few GC-tracked objects as possible (see WAKE_AT).
    __slots__ = (
        "built", "context", "end_ns", "finish", "flags", "job", "op", "parent", "request", "resource",
        "response", "span_id", "start_ns", "state", "t0", "token", "trace_id",
    )  # fmt: skip

    # What an instrumentor's ``finish`` reads (set on the app's thread just before queueing; no
    # per-call partial or argument tuple): the operation, the SDK resource, the argument snapshot and
    # the response (or a flat snapshot of it).
    op: Any
    resource: Any
    request: Any
    response: Any

    # NonRecordingSpan.__init__ only stores the span context, which ``_context`` computes here instead.
    def __init__(
        self,
        trace_id: int,
        span_id: int,
        parent: trace.SpanContext | None,
        flags: trace.TraceFlags = _ROOT_FLAGS,
        state: Any = None,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent = parent
        self.flags = flags
        self.state = state
        self.built: trace.SpanContext | None = None
        self.context = contextvars.copy_context()  # before this span is made current: the parent's
        self.start_ns = time.time_ns()
        self.t0 = time.perf_counter()
        self.end_ns = 0
        self.token: Any = None
        self.job: Callable[[], None] | None = None
        # Or, for plain responses: a long-lived callable given this call (a bound method cached by the
        # instrumentor, so queueing allocates nothing for it).
        self.finish: Callable[[PendingCall], None] | None = None

    @property
    def _context(self) -> trace.SpanContext:  # type: ignore[override]
        built = self.built
        if built is None:
            built = self.built = trace.SpanContext(self.trace_id, self.span_id, False, self.flags, self.state)
        return built

    def get_span_context(self) -> trace.SpanContext:
        return self._context

    def detach(self) -> None:
        """Restore the context ``FastPath.begin`` replaced (on the app's thread, once the call is over)."""
        token, self.token = self.token, None
        if token is not None:
            try:
                _reset_current(token)
            except Exception:
                with guard("llm.fast.deactivate"):
                    raise

    def run(self) -> None:
        """Build and end the span (finisher thread, inside the caller's contextvars); runs once."""
        job, self.job = self.job, None
        if job is not None:
            self.context.run(job)
            return
        finish, self.finish = self.finish, None
        if finish is not None:
            try:
                self.context.run(finish, self)
            finally:  # a child span or a copied context may keep this object alive: not what it held
                self.op = self.resource = self.request = self.response = None


def _runtime_context_var() -> Any:
    """OTel's current-context ContextVar when the default runtime context is in use, else None."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    try:
        from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
    except ImportError:  # pragma: no cover - part of the API package
        return None
    if type(runtime) is not ContextVarsRuntimeContext:
        return None
    var = getattr(runtime, "_current_context", None)
    return var if isinstance(var, contextvars.ContextVar) else None


_CURRENT_VAR = _runtime_context_var()
if _CURRENT_VAR is not None:  # the same ContextVar set/reset OTel's attach/detach do, minus two frames
    _get_current: Callable[[], Any] = _CURRENT_VAR.get
    _set_current: Callable[[Any], Any] = _CURRENT_VAR.set
    _reset_current: Callable[[Any], None] = _CURRENT_VAR.reset
else:  # pragma: no cover - an app configured another runtime context
    _get_current, _set_current, _reset_current = (
        otel_context.get_current,
        otel_context.attach,
        otel_context.detach,
    )


class PresetIdGenerator:
    """The provider's id generator, except that ids set for the current thread are handed out first.

    Installed on our own tracer only, so the eager span of a fast-path call gets the ids its children
    already saw. Everything else delegates.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._local = threading.local()

    def preset(self, trace_id: int, span_id: int) -> None:
        self._local.ids = (trace_id, span_id)

    def clear(self) -> None:
        self._local.ids = None

    def generate_span_id(self) -> int:
        ids = getattr(self._local, "ids", None)
        return ids[1] if ids is not None else self.inner.generate_span_id()

    def generate_trace_id(self) -> int:
        ids = getattr(self._local, "ids", None)
        return ids[0] if ids is not None else self.inner.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        check = getattr(self.inner, "is_trace_id_random", None)
        return bool(check()) if callable(check) else False


def _root_bound(sampler: Any) -> int | None:
    """For samplers we can decide ourselves: the trace-id bound a root span is sampled under, else None.

    Known: ``ParentBased`` with its default delegates (follow the parent's sampled flag) around
    ``ALWAYS_ON``, ``ALWAYS_OFF`` or ``TraceIdRatioBased``; those are what ``monitor.init`` and the SDK
    default build. Anything else (custom samplers may look at names and attributes) goes eager.
    """
    from opentelemetry.sdk.trace import sampling as s

    if type(sampler) is not s.ParentBased:
        return None
    defaults = (
        ("_remote_parent_sampled", s.ALWAYS_ON),
        ("_remote_parent_not_sampled", s.ALWAYS_OFF),
        ("_local_parent_sampled", s.ALWAYS_ON),
        ("_local_parent_not_sampled", s.ALWAYS_OFF),
    )
    if any(getattr(sampler, attr, None) is not want for attr, want in defaults):
        return None
    root = getattr(sampler, "_root", None)
    limit = s.TraceIdRatioBased.TRACE_ID_LIMIT
    if root is s.ALWAYS_ON:
        return limit + 1
    if root is s.ALWAYS_OFF:
        return 0
    if type(root) is s.TraceIdRatioBased:
        return int(root.bound)
    return None


class FastPath:
    """Per-instrumentor access to the deferred path for one SDK tracer (None from :meth:`for_tracer`
    when the tracer is not the OTel SDK's or its sampler is not one we can decide ourselves)."""

    __slots__ = ("bound", "ids", "inner_ids", "limit", "random_ids", "tracer")

    def __init__(self, tracer: Any, ids: PresetIdGenerator, bound: int) -> None:
        from opentelemetry.sdk.trace import sampling
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

        self.tracer = tracer
        self.ids = ids
        self.inner_ids = ids.inner
        # The SDK's default generator is getrandbits; drawn inline (a zero draw falls back to it).
        self.random_ids = type(ids.inner) is RandomIdGenerator
        self.bound = bound
        self.limit = sampling.TraceIdRatioBased.TRACE_ID_LIMIT

    @classmethod
    def for_tracer(cls, tracer: Any) -> FastPath | None:
        # (validated by SdkConfig.resolve at init: a bad value is an error there)
        if os.environ.get("LLM_MONITOR_DEFER", "1").strip().lower() in ("0", "false", "no", "off"):
            return None
        try:
            from opentelemetry.sdk.trace import Tracer
        except ImportError:  # pragma: no cover - the SDK comes with monitor.init
            return None
        if not isinstance(tracer, Tracer):
            return None
        inner = getattr(tracer, "id_generator", None)
        if inner is None or not callable(getattr(inner, "generate_span_id", None)):
            return None
        bound = _root_bound(getattr(tracer, "sampler", None))
        if bound is None:
            return None
        ids = inner if isinstance(inner, PresetIdGenerator) else PresetIdGenerator(inner)
        tracer.id_generator = ids  # type: ignore[assignment]
        return cls(tracer, ids, bound)

    def begin(self) -> PendingCall | Literal[False] | None:
        """Start a call on the app's thread and make its stand-in span current: a :class:`PendingCall`
        (the caller must ``detach()`` it when the call returns or raises); False when the trace is
        sampled out (no span at all); None when this call must take the eager path. Never raises."""
        try:
            ctx = _get_current()
            if _SLOT_KEY in ctx:
                return None  # a framework model-call span may adopt this call: eager
            span: Any = ctx.get(_SPAN_KEY)
            parent = span.get_span_context() if span is not None else None
            if parent is not None and parent.is_valid:
                flags = parent.trace_flags
                if not flags.sampled:
                    return False
                trace_id, state = parent.trace_id, parent.trace_state
            else:
                parent, flags, state = None, _ROOT_FLAGS, None
                trace_id = (_getrandbits(128) if self.random_ids else 0) or self.inner_ids.generate_trace_id()
                if trace_id & self.limit >= self.bound:
                    return False
            span_id = (_getrandbits(64) if self.random_ids else 0) or self.inner_ids.generate_span_id()
            pending = PendingCall(trace_id, span_id, parent, flags, state)
            pending.token = _set_current(Context(ctx, **{_SPAN_KEY: pending}))
            return pending
        except Exception:
            with guard("llm.fast.begin"):
                raise
        return None

    def start_span(
        self, pending: PendingCall, name: str, attributes: dict[str, Any], kind: trace.SpanKind
    ) -> trace.Span:
        """The SDK span for ``pending``: its ids and start time, parent from the current context.

        Call inside ``pending.context`` (the finisher does) or on the app's own thread (upgrades).
        """
        self.ids.preset(pending.trace_id, pending.span_id)
        try:
            return self.tracer.start_span(name, kind=kind, attributes=attributes, start_time=pending.start_ns)
        finally:
            self.ids.clear()


class Finisher:
    """The background thread that completes :class:`PendingCall` jobs (see the module docstring)."""

    # Slots: ``_fastcall`` reads ``queue``, ``running``, ``max_pending`` and ``wake_at`` by offset on the
    # request path (an instance dict and four type lookups cost ≈ 4 µs there between two SDK calls).
    __slots__ = (
        "_errors", "_run_lock", "_start_lock", "_thread", "_wake_event", "dropped", "interval", "max_pending",
        "queue", "running", "wake", "wake_at",
    )  # fmt: skip

    def __init__(
        self, max_pending: int = MAX_PENDING, interval: float = INTERVAL, wake_at: int = WAKE_AT
    ) -> None:
        self.max_pending = max_pending
        self.interval = interval
        self.wake_at = wake_at
        self.dropped = 0
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self.queue: deque[PendingCall] = deque()
        self._run_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.running = False  # the thread is started (reset in a forked child)
        self._wake_event = threading.Event()
        self.wake = self._wake_event.set  # hot callers: call when the queue reaches ``wake_at``
        self._errors: list[BaseException] = []

    def submit(self, pending: PendingCall) -> None:
        """Queue ``pending`` (its ``job`` set). App's thread; never blocks, never raises.

        Hot callers may instead append to :attr:`queue` themselves while ``len(queue) < max_pending`` and
        :attr:`running`, and call this otherwise (it starts the thread, or drops and counts).
        """
        queue = self.queue
        if len(queue) >= self.max_pending:
            self.dropped += 1
            if self.dropped == 1:
                logger.warning("llm-monitor: %d model calls wait for their spans; dropping", self.max_pending)
            return
        queue.append(pending)
        if self._thread is None:
            self._start()
        elif len(queue) == self.wake_at:
            self.wake()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            t = threading.Thread(target=self._loop, name="llm-monitor-finisher", daemon=True)
            self._thread = t
            t.start()
            self.running = True

    def _loop(self) -> None:
        me = threading.current_thread()
        event = self._wake_event
        while self._thread is me:  # a fork replaces the thread handle; a stale loop ends
            event.wait(self.interval)
            event.clear()
            try:
                self.drain()
            except BaseException as exc:  # only under LLM_MONITOR_RAISE_INTERNAL: report at next flush
                self._errors.append(exc)

    def pending(self) -> int:
        return len(self.queue)

    def drain(self) -> None:
        """Complete every queued call now, on this thread; returns when none is left or in progress.

        Under ``LLM_MONITOR_RAISE_INTERNAL`` an internal error (from this pass or an earlier background
        pass) propagates; otherwise errors are logged once by the guard and the pass goes on.
        """
        if self._errors:
            errors, self._errors = self._errors, []
            raise errors[0]
        queue = self.queue
        with self._run_lock:
            while True:
                try:
                    pending = queue.popleft()
                except IndexError:
                    return
                try:
                    pending.run()
                except Exception:
                    with guard("llm.fast.finish"):
                        raise


FINISHER = Finisher()

ENV_NATIVE = "LLM_MONITOR_NATIVE_SDK"
_native: Any = None  # the configured ``_fastcall`` module, False when unavailable, None before the first look


def native() -> Any:
    """The configured ``_fastcall`` module (this module's request path in C, for an instrumentor's sync
    methods: ``FastMethod``, ``ChatSnapshot``) when the extension is built and OTel's default runtime
    context is in use, else None; also None while ``LLM_MONITOR_NATIVE_SDK=0`` (read when an instrumentor
    installs its methods)."""
    if os.environ.get(ENV_NATIVE, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    global _native
    if _native is None:
        _native = _load_native() or False
    return _native or None


def _load_native() -> Any:
    if _CURRENT_VAR is None:  # pragma: no cover - an app configured another runtime context
        return None
    try:
        from monitor.instrumentation import _fastcall  # type: ignore[attr-defined]
    except ImportError:  # not built (no compiler at install): the Python path
        return None
    from monitor.instrumentation.base import _LIST_ARGUMENTS

    _fastcall.configure(
        PendingCall, Context, _SPAN_KEY, _SLOT_KEY, _CURRENT_VAR, _ROOT_FLAGS, _LIST_ARGUMENTS, FINISHER
    )
    return _fastcall


def drain() -> None:
    """Complete every waiting model call now (``monitor.flush``/``shutdown``/exit call this first)."""
    FINISHER.drain()
