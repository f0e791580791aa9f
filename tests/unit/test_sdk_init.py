"""``monitor.init`` / ``shutdown`` / ``flush``: providers, resource, OTLP export, configuration,
instrumentor selection, idempotence, sampling, the bounded export queue and a cheap ``import monitor``."""

from __future__ import annotations

import gzip
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import monitor
from monitor import _tracing, instrumentation
from monitor import semconv as sc
from monitor._export import CountingBatchSpanProcessor
from monitor._tracing import SdkConfig
from monitor.instrumentation import InstrumentationError
from monitor.testing import recording, reset_global_tracer_provider


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    yield
    monitor.shutdown()
    reset_global_tracer_provider()


def _span(name: str = "work") -> None:
    with monitor.span(name, kind="other"):
        pass


def test_public_api() -> None:
    assert sorted(monitor.__all__) == sorted(
        [
            "init",
            "shutdown",
            "flush",
            "chain",
            "agent",
            "tool",
            "retriever",
            "span",
            "context",
            "prompt",
            "current_trace_id",
            "feedback",
            "track",
            "__version__",
        ]
    )
    assert isinstance(monitor.__version__, str)


def test_import_is_cheap() -> None:
    code = (
        "import sys, monitor; "
        "heavy = ('openai', 'clickhouse_connect', 'chdb', 'streamlit', 'yaml', 'wrapt', 'opentelemetry.sdk'); "
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_resource_and_global_provider() -> None:
    exporter = InMemorySpanExporter()
    monitor.init(
        service_name="svc", environment="staging", project="shop", exporter=exporter, instrument=False
    )
    assert trace.get_tracer_provider() is _tracing._state.provider  # became the global provider
    _span()
    assert monitor.flush() is True
    (span,) = exporter.get_finished_spans()
    res = span.resource.attributes
    assert res[sc.SERVICE_NAME] == "svc"
    assert res[sc.DEPLOYMENT_ENVIRONMENT_NAME] == "staging"
    assert res[sc.LLM_MONITOR_PROJECT] == "shop"


def test_env_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    exporter = InMemorySpanExporter()
    monitor.init(exporter=exporter, instrument=False)
    _span()
    monitor.flush()
    assert exporter.get_finished_spans()[0].resource.attributes[sc.SERVICE_NAME] == "from-env"


def test_config_precedence() -> None:
    env = {
        "LLM_MONITOR_ENDPOINT": "http://collector:4318",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318",
        "LLM_MONITOR_API_KEY": "env-key",
        "LLM_MONITOR_CAPTURE_CONTENT": "false",
        "LLM_MONITOR_SAMPLE_RATE": "0.25",
        "LLM_MONITOR_PROJECT": "p",
        "LLM_MONITOR_ENVIRONMENT": "prod",
    }
    cfg = SdkConfig.resolve(environ=env)
    assert cfg == SdkConfig(
        endpoint="http://collector:4318",
        api_key="env-key",
        project="p",
        environment="prod",
        capture_content=False,
        sample_rate=0.25,
    )
    cfg = SdkConfig.resolve(endpoint="http://arg:1", capture_content=True, sample_rate=1, environ=env)
    assert (cfg.endpoint, cfg.capture_content, cfg.sample_rate) == ("http://arg:1", True, 1.0)
    assert SdkConfig.resolve(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318"}).endpoint == (
        "http://otel:4318"
    )
    assert SdkConfig.resolve(environ={}) == SdkConfig()
    assert SdkConfig().endpoint == "http://127.0.0.1:4318"


@pytest.mark.parametrize(
    ("kwargs", "env", "message"),
    [
        ({"sample_rate": 1.5}, {}, "sample_rate=1.5"),
        ({}, {"LLM_MONITOR_SAMPLE_RATE": "lots"}, "LLM_MONITOR_SAMPLE_RATE='lots'"),
        ({}, {"LLM_MONITOR_CAPTURE_CONTENT": "maybe"}, "LLM_MONITOR_CAPTURE_CONTENT"),
        ({}, {"LLM_MONITOR_DEFER": "later"}, "LLM_MONITOR_DEFER='later'"),
        ({"endpoint": "collector:4318"}, {}, "http://"),
    ],
)
def test_bad_config_is_one_clear_error(kwargs: dict[str, Any], env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        SdkConfig.resolve(environ=env, **kwargs)


def test_bad_sample_rate_in_init_leaves_sdk_off() -> None:
    with pytest.raises(ValueError):
        monitor.init(sample_rate=-1, exporter=InMemorySpanExporter())
    assert not _tracing.is_initialized()


class _Collector(ThreadingHTTPServer):
    """A stand-in collector recording each OTLP request (path, headers, decompressed body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                outer.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_otlp_export_to_endpoint_with_api_key() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    collector = _Collector()
    try:
        monitor.init(
            service_name="otlp-test",
            endpoint=f"http://127.0.0.1:{collector.server_address[1]}/",
            api_key="secret",
            instrument=False,
        )
        _span("exported")
        assert monitor.flush(timeout=10) is True
    finally:
        collector.shutdown()
    (path, headers, body) = collector.requests[0]
    assert path == "/v1/traces"
    assert headers["authorization"] == "Bearer secret"
    req = ExportTraceServiceRequest.FromString(body)
    names = [s.name for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert names == ["exported"]


def test_collector_down_does_not_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1")  # let the background retries end soon
    monitor.init(endpoint="http://127.0.0.1:9", instrument=False)  # nothing listens on port 9
    _span()
    started = time.monotonic()
    monitor.shutdown(timeout=0.5)  # returns within the bound even though export fails
    assert time.monotonic() - started < 2


def test_second_init_warns_and_is_ignored() -> None:
    first = InMemorySpanExporter()
    monitor.init(exporter=first, instrument=False)
    with pytest.warns(RuntimeWarning, match="already called"):
        monitor.init(exporter=InMemorySpanExporter(), instrument=False)
    _span()
    monitor.flush()
    assert len(first.get_finished_spans()) == 1


def test_shutdown_twice_and_reinit() -> None:
    with recording(instrument=False) as rec:
        _span("one")
        assert len(rec.spans()) == 1
    monitor.shutdown()
    with recording(instrument=False) as rec2:
        _span("two")
        assert [s.name for s in rec2.spans()] == ["two"]
    assert [s.name for s in rec.exporter.get_finished_spans()] == ["one"]


def test_existing_global_provider_is_kept() -> None:
    app_exporter = InMemorySpanExporter()
    app_provider = TracerProvider(resource=Resource.create({sc.SERVICE_NAME: "the-app"}))
    app_provider.add_span_processor(SimpleSpanProcessor(app_exporter))
    trace.set_tracer_provider(app_provider)
    ours = InMemorySpanExporter()
    monitor.init(service_name="ignored", project="shop", exporter=ours, instrument=False)
    assert trace.get_tracer_provider() is app_provider
    with monitor.context(user_id="u"):
        _span("shared")
    monitor.flush()
    (mine,) = ours.get_finished_spans()
    (theirs,) = app_exporter.get_finished_spans()
    assert mine.context.span_id == theirs.context.span_id
    assert mine.resource.attributes[sc.SERVICE_NAME] == "the-app"
    assert mine.attributes[sc.LLM_MONITOR_PROJECT] == "shop"  # resource is the app's: stamped on spans
    assert mine.attributes[sc.USER_ID] == "u"
    monitor.shutdown()
    with trace.get_tracer("app").start_as_current_span("after"):
        pass
    assert [s.name for s in app_exporter.get_finished_spans()] == ["shared", "after"]
    assert len(ours.get_finished_spans()) == 1  # our processor is inert after shutdown


def test_explicit_tracer_provider() -> None:
    provider = TracerProvider()
    ours = InMemorySpanExporter()
    monitor.init(tracer_provider=provider, exporter=ours, instrument=False)
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)  # global left alone
    _span()
    monitor.flush()
    assert len(ours.get_finished_spans()) == 1
    monitor.shutdown()
    with pytest.raises(TypeError, match="TracerProvider"):
        monitor.init(tracer_provider=object(), exporter=ours)  # type: ignore[arg-type]


def test_sample_rate_zero_drops_everything() -> None:
    with recording(sample_rate=0.0, instrument=False) as rec:
        for _ in range(20):
            _span()
        assert rec.spans() == []


def test_current_trace_id() -> None:
    with recording(instrument=False):
        assert monitor.current_trace_id() is None
        with monitor.span("x", kind="other") as s:
            tid = monitor.current_trace_id()
        assert tid == format(s.span.get_span_context().trace_id, "032x")
        assert len(tid) == 32


def test_instrument_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    # every built-in whose library is installed here (the dev environment has all three)
    assert [c.name for c in instrumentation.select("auto")] == ["openai", "anthropic", "langchain"]
    assert [c.name for c in instrumentation.select(["openai", "openai"])] == ["openai"]
    assert instrumentation.select(False) == [] and instrumentation.select(None) == []
    with pytest.raises(InstrumentationError, match=r"unknown instrumentor 'nonexistent' \(known: .*openai"):
        instrumentation.select(["nonexistent"])
    monkeypatch.setattr(instrumentation, "library_installed", lambda name: False)
    assert instrumentation.select("auto") == []  # missing library: silent when automatic
    with pytest.raises(InstrumentationError, match=r"needs the 'openai' package.*pip install openai"):
        instrumentation.select(["openai"])


def test_init_with_unknown_instrumentor_fails_cleanly() -> None:
    with pytest.raises(InstrumentationError, match="nonexistent"):
        monitor.init(instrument=["nonexistent"], exporter=InMemorySpanExporter())
    assert not _tracing.is_initialized()
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def test_instrument_false_patches_nothing() -> None:
    from openai.resources.chat.completions.completions import Completions

    original = vars(Completions)["create"]
    monitor.init(exporter=InMemorySpanExporter(), instrument=False)
    assert vars(Completions)["create"] is original
    monitor.shutdown()
    monitor.init(exporter=InMemorySpanExporter())  # "auto": openai is installed
    assert vars(Completions)["create"] is not original
    monitor.shutdown()
    assert vars(Completions)["create"] is original


def test_full_queue_drops_newest_and_counts() -> None:
    exporter = InMemorySpanExporter()
    processor = CountingBatchSpanProcessor(exporter, max_queue_size=2, schedule_delay_millis=60_000)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    with processor._batch_processor._export_lock:  # hold the worker off: the queue cannot drain
        for i in range(5):
            tracer.start_span(f"s{i}").end()
    assert processor.dropped == 3
    processor.force_flush()
    assert [s.name for s in exporter.get_finished_spans()] == ["s0", "s1"]
    provider.shutdown()


# --- head sampling keeps or drops whole traces ---------------------------------------------------------


def test_sampling_keeps_or_drops_whole_traces_across_decorators_llm_calls_and_threads() -> None:
    import contextvars
    import random
    from concurrent.futures import ThreadPoolExecutor

    import openai

    from monitor.demo.fake_openai import FakeOpenAIServer

    @monitor.retriever
    def fetch(i: int) -> list[str]:
        return [f"doc{i}"]

    @monitor.tool
    def lookup(i: int) -> int:
        return i

    state = random.getstate()
    random.seed(20240718)  # the SDK's RandomIdGenerator draws from `random`: fixed ids, fixed decisions
    try:
        with FakeOpenAIServer() as srv, recording(sample_rate=0.5, instrument=["openai"]) as rec:
            client = openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0)
            roots: dict[int, int] = {}
            with ThreadPoolExecutor(2) as pool:
                for i in range(40):
                    with monitor.span(f"request {i}", kind="chain") as root:
                        roots[root.span.get_span_context().trace_id] = i
                        lookup(i)
                        client.chat.completions.create(
                            model="gpt-4o-mini", messages=[{"role": "user", "content": "[[reply:ok]]"}]
                        )
                        ctx = contextvars.copy_context()  # the trace continues on a worker thread
                        assert pool.submit(ctx.run, fetch, i).result() == [f"doc{i}"]
            spans = rec.spans()
    finally:
        random.setstate(state)
    by_trace: dict[int, list[str]] = {}
    for span in spans:
        by_trace.setdefault(span.context.trace_id, []).append(span.name)
    bound = round(0.5 * (2**64))  # TraceIdRatioBased keeps traces whose low 64 bits are below this
    expected_kept = {tid for tid in roots if tid & 0xFFFFFFFFFFFFFFFF < bound}
    assert 0 < len(expected_kept) < 40
    assert set(by_trace) == expected_kept
    for tid, names in by_trace.items():
        i = roots[tid]
        assert sorted(names) == sorted(
            [f"invoke_workflow request {i}", "execute_tool lookup", "chat gpt-4o-mini", "retrieval fetch"]
        )
