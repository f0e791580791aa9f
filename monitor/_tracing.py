"""SDK set-up: ``init``, ``shutdown``, ``flush`` and the tracer every part of the SDK asks for.

Configuration, one path: argument, then environment variable, then default, resolved once by
:meth:`SdkConfig.resolve` into a frozen object; a bad value raises one clear ``ValueError`` at ``init``.

| argument            | environment                                          | default                 |
|---------------------|------------------------------------------------------|-------------------------|
| `service_name`      | `OTEL_SERVICE_NAME` (read by the OTel resource)      | `unknown_service`       |
| `endpoint`          | `LLM_MONITOR_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT` | `http://127.0.0.1:4318` |
| `api_key`           | `LLM_MONITOR_API_KEY`                                | none                    |
| `project`           | `LLM_MONITOR_PROJECT`                                | none (collector default) |
| `environment`       | `LLM_MONITOR_ENVIRONMENT`                            | none                    |
| `capture_content`   | `LLM_MONITOR_CAPTURE_CONTENT` (true/false)           | true                    |
| `sample_rate`       | `LLM_MONITOR_SAMPLE_RATE` (0..1)                     | 1.0                     |
| `redact`            | `LLM_MONITOR_REDACT`: `secrets,email,phone,card`, `pii`, `all`, `off` | `secrets` |
| `max_content_chars` | `LLM_MONITOR_MAX_CONTENT_CHARS` (0 = no cap)         | 65536                   |
| `feedback_exporter` | (tests, custom transports)                           | POST `<endpoint>/v1/feedback` |
| (no argument)       | `LLM_MONITOR_DEFER=0`: build model-call spans on the app's thread (``instrumentation._deferred``) | on |
| (tests only)        | `LLM_MONITOR_RAISE_INTERNAL=1`: internal errors propagate (``monitor._guard``) | |

``sample_rate`` is a head sampler (``ParentBased(TraceIdRatioBased)``): a trace is kept or dropped as a
whole, decided at its root span. ``redact``, ``max_content_chars`` and ``capture_content=False`` are
applied to every exported span on the export thread (``monitor._redact``); ``redact`` also takes a list
mixing those names with custom patterns (``re.compile(...)`` or ``("name", regex)``); a list replaces
the default, so write ``["secrets", "email"]`` to add emails. Feedback (``monitor.feedback``/``track``)
goes to ``<endpoint>/v1/feedback`` with the same API key (``monitor._feedback``).

Providers: an application that already configured OpenTelemetry keeps its ``TracerProvider``; we add
our processors to it (or to the one passed as ``tracer_provider=``). Otherwise we build one and make
it the global provider when none is set, so other OTel instrumentations land in the same pipeline.
A provider we built is never mistaken for an app's one on a later ``init`` (after ``shutdown``).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from monitor import semconv as sc
from monitor._guard import guard
from monitor._version import __version__

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from monitor._export import Pipeline
    from monitor._feedback import FeedbackClient, FeedbackExporter
    from monitor.instrumentation.base import Instrumentor

__all__ = [
    "DEFAULT_ENDPOINT",
    "SdkConfig",
    "capture_content",
    "current_trace_id",
    "feedback_client",
    "flush",
    "get_tracer",
    "init",
    "is_initialized",
    "project",
    "record_exception",
    "shutdown",
]

logger = logging.getLogger("monitor")

DEFAULT_ENDPOINT = "http://127.0.0.1:4318"
ENV_ENDPOINT = "LLM_MONITOR_ENDPOINT"
ENV_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_API_KEY = "LLM_MONITOR_API_KEY"
ENV_PROJECT = "LLM_MONITOR_PROJECT"
ENV_ENVIRONMENT = "LLM_MONITOR_ENVIRONMENT"
ENV_CAPTURE_CONTENT = "LLM_MONITOR_CAPTURE_CONTENT"
ENV_SAMPLE_RATE = "LLM_MONITOR_SAMPLE_RATE"
ENV_REDACT = "LLM_MONITOR_REDACT"
ENV_MAX_CONTENT_CHARS = "LLM_MONITOR_MAX_CONTENT_CHARS"
ENV_DEFER = "LLM_MONITOR_DEFER"
DEFAULT_MAX_CONTENT_CHARS = 64 * 1024
MIN_CONTENT_CHARS = 128
EXIT_FLUSH_TIMEOUT = 5.0

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class SdkConfig:
    """Resolved SDK settings (see the module docstring for precedence and variables)."""

    service_name: str | None = None
    endpoint: str = DEFAULT_ENDPOINT
    api_key: str | None = None
    project: str | None = None
    environment: str | None = None
    capture_content: bool = True
    sample_rate: float = 1.0
    redact: Any = True  # as given (validated): see ``monitor._redact.parse_redact``
    max_content_chars: int = DEFAULT_MAX_CONTENT_CHARS

    @classmethod
    def resolve(
        cls,
        *,
        service_name: str | None = None,
        endpoint: str | None = None,
        api_key: str | None = None,
        project: str | None = None,
        environment: str | None = None,
        capture_content: bool | None = None,
        sample_rate: float | None = None,
        redact: Any = None,
        max_content_chars: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> SdkConfig:
        env = os.environ if environ is None else environ

        def pick(value: Any, *names: str) -> Any:
            if value is not None:
                return value
            for n in names:
                if env.get(n, "").strip():
                    return env[n].strip()
            return None

        defer = env.get(ENV_DEFER, "").strip().lower()  # read by instrumentation._deferred at instrument()
        if defer and defer not in _TRUE + _FALSE:
            raise ValueError(f"{ENV_DEFER}={env[ENV_DEFER]!r}: expected true or false")
        cc = pick(capture_content, ENV_CAPTURE_CONTENT)
        if isinstance(cc, str):
            if cc.lower() not in _TRUE + _FALSE:
                raise ValueError(f"{ENV_CAPTURE_CONTENT}={cc!r}: expected true or false")
            cc = cc.lower() in _TRUE
        rate_raw = pick(sample_rate, ENV_SAMPLE_RATE)
        origin = "sample_rate" if sample_rate is not None else ENV_SAMPLE_RATE
        try:
            rate = 1.0 if rate_raw is None else float(rate_raw)
        except (TypeError, ValueError):
            raise ValueError(f"{origin}={rate_raw!r}: expected a number between 0 and 1") from None
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{origin}={rate_raw!r}: expected a number between 0 and 1")
        redact_spec = pick(redact, ENV_REDACT)
        from monitor._redact import parse_redact  # validates; imports the OTel SDK, as init does anyway

        parse_redact(redact_spec, "redact" if redact is not None else ENV_REDACT)
        cap_raw = pick(max_content_chars, ENV_MAX_CONTENT_CHARS)
        cap_origin = "max_content_chars" if max_content_chars is not None else ENV_MAX_CONTENT_CHARS
        try:
            cap = DEFAULT_MAX_CONTENT_CHARS if cap_raw is None else int(cap_raw)
        except (TypeError, ValueError):
            cap = -1
        if isinstance(cap_raw, (bool, float)) or (cap != 0 and cap < MIN_CONTENT_CHARS):
            raise ValueError(
                f"{cap_origin}={cap_raw!r}: expected a whole number of characters >= {MIN_CONTENT_CHARS} "
                "(0 turns the cap off)"
            )
        ep = pick(endpoint, ENV_ENDPOINT, ENV_OTLP_ENDPOINT) or DEFAULT_ENDPOINT
        if not str(ep).startswith(("http://", "https://")):
            raise ValueError(f"endpoint={ep!r}: expected an http:// or https:// URL")
        return cls(
            service_name=service_name,
            endpoint=str(ep),
            api_key=pick(api_key, ENV_API_KEY),
            project=pick(project, ENV_PROJECT),
            environment=pick(environment, ENV_ENVIRONMENT),
            capture_content=True if cc is None else bool(cc),
            sample_rate=rate,
            redact=True if redact_spec is None else redact_spec,
            max_content_chars=cap,
        )


@dataclass
class _State:
    config: SdkConfig
    provider: TracerProvider
    owns_provider: bool
    pipeline: Pipeline
    feedback: FeedbackClient | None = None
    instrumentors: list[Instrumentor] = field(default_factory=list)
    tracers: dict[str, trace.Tracer] = field(default_factory=dict)


_lock = threading.RLock()
_state: _State | None = None
_owned_providers: weakref.WeakSet[Any] = weakref.WeakSet()
_atexit_registered = False


def is_initialized() -> bool:
    return _state is not None


def capture_content() -> bool:
    """Whether message texts and function inputs/outputs may be recorded (default on without init)."""
    st = _state
    return True if st is None else st.config.capture_content


def project() -> str | None:
    """The project given to ``init`` (sent with feedback), or None."""
    st = _state
    return None if st is None else st.config.project


def feedback_client() -> FeedbackClient | None:
    """The background feedback sender of the current ``init``, or None before ``init``."""
    st = _state
    return None if st is None else st.feedback


def get_tracer(scope: str) -> trace.Tracer:
    """Tracer for ``llm_monitor.<scope>`` from our provider, or the global one before ``init``.

    Before ``init`` the global (possibly proxy) provider is used, so decorators work in apps that set
    up OpenTelemetry themselves and are free no-ops in apps that did not.
    """
    name = f"{sc.SCOPE_PREFIX}.{scope}"
    st = _state
    if st is None:
        return trace.get_tracer(name, __version__)
    tracer = st.tracers.get(name)
    if tracer is None:
        tracer = st.tracers[name] = st.provider.get_tracer(name, __version__)
    return tracer


def current_trace_id() -> str | None:
    """Hex trace id of the current span (to correlate logs or feedback), or None outside a trace."""
    ctx = trace.get_current_span().get_span_context()
    return trace.format_trace_id(ctx.trace_id) if ctx.is_valid else None


def record_exception(span: trace.Span, exc: BaseException) -> None:
    """Mark ``span`` failed by ``exc``: status ERROR, ``error.type`` = class name, an exception event.

    Never raises (a broken ``__str__`` on the user's exception must not replace it).
    """
    with guard("record_exception"):
        try:
            message = str(exc)
        except Exception:
            message = ""
        span.set_attribute(sc.ERROR_TYPE, type(exc).__name__)
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {message}"[:1024]))
        span.record_exception(exc, escaped=True)


def _run_bounded(fn: Callable[[], Any], timeout: float, name: str) -> Any:
    """Run ``fn`` on a daemon thread and wait at most ``timeout`` s (exports may hang on a dead collector)."""
    box: list[Any] = [False]

    def target() -> None:
        with guard(name):
            box[0] = fn()

    t = threading.Thread(target=target, name=f"llm-monitor-{name}", daemon=True)
    t.start()
    t.join(max(0.0, timeout))
    return False if t.is_alive() else box[0]


def _make_provider(config: SdkConfig) -> TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    attrs: dict[str, Any] = {}
    if config.service_name:
        attrs[sc.SERVICE_NAME] = config.service_name
    if config.environment:
        attrs[sc.DEPLOYMENT_ENVIRONMENT_NAME] = config.environment
    if config.project:
        attrs[sc.LLM_MONITOR_PROJECT] = config.project
    kwargs: dict[str, Any] = {"resource": Resource.create(attrs), "shutdown_on_exit": False}
    if config.sample_rate < 1.0:
        kwargs["sampler"] = ParentBased(TraceIdRatioBased(config.sample_rate))
    return TracerProvider(**kwargs)


def _choose_provider(given: Any, config: SdkConfig) -> tuple[TracerProvider, bool]:
    """(provider, we_own_it): the one passed in, the app's global SDK provider, or a new one of ours."""
    if given is not None:
        if not hasattr(given, "add_span_processor"):
            raise TypeError("tracer_provider must be an opentelemetry.sdk.trace.TracerProvider")
        return given, False
    current = trace.get_tracer_provider()
    if hasattr(current, "add_span_processor") and current not in _owned_providers:
        return current, False  # type: ignore[return-value]
    provider = _make_provider(config)
    _owned_providers.add(provider)
    if isinstance(current, trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    else:
        logger.debug("llm-monitor: global TracerProvider already set by an earlier init; not replacing it")
    return provider, True


def init(
    service_name: str | None = None,
    endpoint: str | None = None,
    api_key: str | None = None,
    project: str | None = None,
    environment: str | None = None,
    capture_content: bool | None = None,
    sample_rate: float | None = None,
    instrument: str | bool | Iterable[str] | None = "auto",
    tracer_provider: TracerProvider | None = None,
    exporter: SpanExporter | None = None,
    redact: Any = None,
    max_content_chars: int | None = None,
    feedback_exporter: FeedbackExporter | None = None,
) -> None:
    """Start tracing: provider, background OTLP export, and the instrumentors.

    ``endpoint`` defaults to ``http://127.0.0.1:4318`` (spans go to ``<endpoint>/v1/traces``).
    ``instrument``: ``"auto"`` turns on every registered instrumentor whose library is installed;
    a list of names turns on exactly those and raises ``InstrumentationError`` if one is unknown or
    its library is missing; ``False``/``None`` turns none on. ``exporter`` replaces the OTLP
    exporter (tests pass an ``InMemorySpanExporter``; call :func:`flush` before reading it).
    ``redact``/``max_content_chars``: see the module docstring; they rewrite spans on the export thread,
    never on the request path. ``feedback_exporter`` replaces the HTTP feedback sender
    (``monitor._feedback.MemoryFeedbackExporter`` in tests).

    Bad arguments raise ``ValueError``/``TypeError`` here, at start-up. Anything else that fails while
    setting up is logged and tracing stays off: the application keeps running.
    A second call while initialised warns and does nothing; call :func:`shutdown` first to re-configure.
    """
    global _state, _atexit_registered
    with _lock:
        if _state is not None:
            warnings.warn(
                "monitor.init() was already called; this call is ignored "
                "(call monitor.shutdown() first to re-configure)",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        config = SdkConfig.resolve(
            service_name=service_name,
            endpoint=endpoint,
            api_key=api_key,
            project=project,
            environment=environment,
            capture_content=capture_content,
            sample_rate=sample_rate,
            redact=redact,
            max_content_chars=max_content_chars,
        )
        from monitor import instrumentation

        selected = instrumentation.select(instrument)
        provider, owns = _choose_provider(tracer_provider, config)
        if not owns and config.sample_rate < 1.0:
            logger.warning("llm-monitor: sample_rate is ignored when sharing an existing TracerProvider")

        with guard("init"):
            from monitor import _export, _feedback, _redact

            static = {sc.LLM_MONITOR_PROJECT: config.project} if (config.project and not owns) else None
            span_exporter = exporter or _export.otlp_exporter(config.endpoint, config.api_key)
            redactor = _redact.parse_redact(config.redact)
            policy = _redact.ContentPolicy(redactor, config.max_content_chars, config.capture_content)
            if policy.active:
                span_exporter = _redact.ContentPolicyExporter(span_exporter, policy)
            pipeline = _export.Pipeline(
                [
                    _export.ContextSpanProcessor(static, capture_content=config.capture_content),
                    _export.CountingBatchSpanProcessor(span_exporter),
                ]
            )
            feedback = _feedback.FeedbackClient(
                feedback_exporter
                or _feedback.HttpFeedbackExporter(_feedback.feedback_url(config.endpoint), config.api_key),
                redact=redactor.redact if redactor is not None else None,
            )
            provider.add_span_processor(pipeline)
            if not owns:
                _drain_before(provider)
            _state = _State(
                config=config, provider=provider, owns_provider=owns, pipeline=pipeline, feedback=feedback
            )
            if not _atexit_registered:
                atexit.register(_at_exit)
                _atexit_registered = True

        if _state is None:
            return
        for cls in selected:
            with guard(f"init.instrument.{cls.name}"):
                inst = cls()
                inst.instrument(tracer_provider=provider)
                _state.instrumentors.append(inst)


def flush(timeout: float = 5.0) -> bool:
    """Export every finished span and queued feedback now; waits at most ``timeout`` seconds in all.

    True when everything went out. Blocks the calling thread (up to ``timeout``), so call it at the end
    of a batch job or a test, not per request. Never raises.
    """
    _drain_deferred()
    st = _state
    if st is None:
        return True
    deadline = time.monotonic() + timeout
    ok = bool(_run_bounded(lambda: st.pipeline.force_flush(int(timeout * 1000)), timeout, "flush"))
    if st.feedback is not None:
        ok = st.feedback.flush(max(0.0, deadline - time.monotonic())) and ok
    return ok


def shutdown(timeout: float = 5.0) -> None:
    """Flush, turn the instrumentors off (restoring the patched functions) and stop exporting.

    An app's own provider is left running; only our processors are switched off. Safe to call twice.
    """
    global _state
    with _lock:
        st, _state = _state, None
    if st is None:
        return
    for inst in reversed(st.instrumentors):
        with guard("shutdown.uninstrument"):
            inst.uninstrument()

    def stop() -> bool:
        _drain_deferred()
        st.pipeline.force_flush(int(timeout * 1000))
        st.pipeline.shutdown()
        if st.owns_provider:
            st.provider.shutdown()
        else:
            _undo_drain_before(st.provider)
        return True

    deadline = time.monotonic() + timeout
    _run_bounded(stop, timeout, "shutdown")
    if st.feedback is not None:
        with guard("shutdown.feedback"):
            st.feedback.shutdown(max(0.0, deadline - time.monotonic()))


def _drain_deferred() -> None:
    """Finish the model-call spans still waiting on the finisher thread (``instrumentation._deferred``).

    Runs on the calling thread so those spans reach the processors before a flush; a no-op when no
    instrumentor ever deferred a call (the module is then not even loaded).
    """
    deferred = sys.modules.get("monitor.instrumentation._deferred")
    if deferred is not None:
        deferred.drain()


_DRAINED_METHODS = ("force_flush", "shutdown")


def _drain_before(provider: Any) -> None:
    """Make an app's own provider finish our deferred model-call spans before its processors flush.

    Its ``force_flush()`` / ``shutdown()`` call the processors in registration order, so one the app added
    before ours would flush first, and miss the spans our pipeline then drains from the finisher thread
    (the last ≤ 50 ms of calls: what a serverless handler flushes just before it freezes). Both methods
    are shadowed on the instance (no per-span cost) by ones that drain first; :func:`shutdown` removes them.
    """
    for name in _DRAINED_METHODS:
        with guard("init.provider_drain"):
            original = getattr(provider, name)
            if getattr(original, "_llm_monitor_drains", False):
                continue

            def drained(*args: Any, __original: Any = original, **kwargs: Any) -> Any:
                with guard("provider.drain"):
                    _drain_deferred()
                return __original(*args, **kwargs)

            drained._llm_monitor_drains = True  # type: ignore[attr-defined]
            drained.__doc__ = getattr(original, "__doc__", None)
            setattr(provider, name, drained)


def _undo_drain_before(provider: Any) -> None:
    for name in _DRAINED_METHODS:
        with guard("shutdown.provider_drain"):
            own = vars(provider)
            if getattr(own.get(name), "_llm_monitor_drains", False):
                del own[name]


def _at_exit() -> None:
    """Interpreter exit: push out what is queued, bounded so a dead collector cannot hang the exit."""
    st = _state
    if st is not None:
        deadline = time.monotonic() + EXIT_FLUSH_TIMEOUT

        def run() -> bool:
            _drain_deferred()
            return st.pipeline.force_flush(int(EXIT_FLUSH_TIMEOUT * 1000))

        _run_bounded(run, EXIT_FLUSH_TIMEOUT, "exit")
        if st.feedback is not None:
            with guard("exit.feedback"):
                st.feedback.shutdown(max(0.0, deadline - time.monotonic()))
