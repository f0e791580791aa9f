"""Never break, never slow the host: a dead or hanging collector, an exporter that raises, a bug in an
extractor, ``os.fork()``, and exit without ``shutdown`` (spans and feedback still delivered to a real
collector). The app's calls return their real values; export runs on background threads; flushes
return within their bound."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import monitor
from collectors.server import CollectorServer
from monitor import _feedback_delivery, _guard, _tracing
from monitor import semconv as sc
from monitor._feedback_delivery import ExportResult
from monitor.demo.fake_openai import FakeOpenAIServer
from monitor.instrumentation import _openai_extract
from monitor.testing import recording, reset_global_tracer_provider

REPLY = "Refunds take 5 to 7 business days."
MESSAGES = [{"role": "user", "content": f"How long do refunds take? [[reply:{REPLY}]]"}]
FLUSH_BOUND = 0.5
SLACK = 2.0  # scheduling on a loaded machine; far below the 10 s an OTLP export may wait
# The batch processor's worker, or monitor.flush's bounded helper thread: never the app's thread.
EXPORT_THREADS = {"OtelBatchSpanProcessor", "llm-monitor-flush"}


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    yield
    monitor.shutdown(timeout=1)
    reset_global_tracer_provider()


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def client(fake_openai: FakeOpenAIServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-test", max_retries=0)


class HangingServer:
    """Accepts connections and never answers (a collector stuck in GC, a black-holed proxy)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.conns: list[socket.socket] = []
        self.accepted = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.accepted.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def _spy_otlp_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    threads: list[str] = []
    real = OTLPSpanExporter.export

    def export(self: OTLPSpanExporter, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        threads.append(threading.current_thread().name)
        return real(self, spans)

    monkeypatch.setattr(OTLPSpanExporter, "export", export)
    return threads


def _bounded(fn: Any, *args: Any) -> tuple[Any, float]:
    t0 = time.monotonic()
    result = fn(*args)
    return result, time.monotonic() - t0


def test_collector_down_app_unaffected_and_export_is_elsewhere(
    client: openai.OpenAI, free_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = _spy_otlp_threads(monkeypatch)
    monitor.init(endpoint=f"http://127.0.0.1:{free_port}", instrument=["openai"])  # connection refused
    answers = [client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES) for _ in range(3)]
    monitor.track("accept", response_id=answers[0].id)
    assert [a.choices[0].message.content for a in answers] == [REPLY] * 3
    ok, took = _bounded(monitor.flush, FLUSH_BOUND)
    assert ok is False and took < FLUSH_BOUND + SLACK
    assert threads and threading.current_thread().name not in threads
    assert set(threads) <= EXPORT_THREADS
    _, took = _bounded(monitor.shutdown, FLUSH_BOUND)
    assert took < FLUSH_BOUND + SLACK


def test_hanging_collector_app_unaffected_and_flush_bounded(
    client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = _spy_otlp_threads(monkeypatch)
    hanging = HangingServer()
    try:
        monitor.init(endpoint=hanging.url, instrument=["openai"])
        first = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        monitor.feedback(response_id=first.id, kind="thumbs", value=True)
        ok, took = _bounded(monitor.flush, FLUSH_BOUND)
        assert ok is False and took < FLUSH_BOUND + SLACK
        assert hanging.accepted.wait(5)  # an export is now stuck inside the collector's socket...
        later = [client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES) for _ in range(3)]
        assert [a.choices[0].message.content for a in [first, *later]] == [REPLY] * 4  # ...the app is not
        sender = _tracing.feedback_client()
        assert sender is not None and sender.flush(FLUSH_BOUND) is False
        assert threads and set(threads) <= EXPORT_THREADS
        _, took = _bounded(monitor.shutdown, FLUSH_BOUND)
        assert took < FLUSH_BOUND + SLACK
    finally:
        hanging.close()


class RaisingOnce(SpanExporter):
    def __init__(self) -> None:
        self.calls = 0
        self.exported: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("exporter bug")
        self.exported += [s.name for s in spans]
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def test_an_exporter_raising_does_not_reach_the_app(client: openai.OpenAI) -> None:
    exporter = RaisingOnce()
    monitor.init(exporter=exporter, instrument=["openai"])

    @monitor.chain
    def answer() -> str:
        return (
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content
        )

    assert answer() == REPLY
    monitor.flush()  # this batch meets the exception (logged by the batch processor)
    assert answer() == REPLY
    assert monitor.flush() is True
    assert exporter.calls == 2
    assert sorted(exporter.exported) == ["chat gpt-4o-mini", "invoke_workflow answer"]  # one batch


def test_an_extractor_bug_is_logged_once_and_the_call_returns(
    client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(_guard.RAISE_INTERNAL_ENV, raising=False)
    monkeypatch.setattr(_guard, "_logged_sites", set())

    def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise KeyError("instrumentation bug")

    monkeypatch.setattr(_openai_extract, "completion_attributes", broken)
    errors_before = _guard.internal_error_count()
    with recording(instrument=["openai"]) as rec, caplog.at_level(logging.WARNING, logger="monitor"):
        answers = [client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES) for _ in range(2)]
        spans = rec.spans()
    assert [a.choices[0].message.content for a in answers] == [REPLY, REPLY]
    logged = [r for r in caplog.records if r.name == "monitor" and "internal error" in r.getMessage()]
    assert [r.getMessage().split(" (")[0] for r in logged] == [
        "llm-monitor: internal error in openai.chat.response"
    ]
    assert _guard.internal_error_count() - errors_before == 2
    assert [s.name for s in spans] == ["chat gpt-4o-mini", "chat gpt-4o-mini"]  # spans still end
    for span in spans:
        assert span.attributes[sc.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
        assert sc.GEN_AI_RESPONSE_ID not in span.attributes


class FileExporter(SpanExporter):
    """JSON lines of (pid, span name): a sink both sides of a fork can write to."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.path.open("a") as f:
            for s in spans:
                f.write(json.dumps({"pid": os.getpid(), "name": s.name}) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class FileFeedbackExporter:
    def __init__(self, path: Path) -> None:
        self.path = path

    def export(self, items: Sequence[dict[str, Any]], timeout: float) -> ExportResult:
        with self.path.open("a") as f:
            for it in items:
                f.write(json.dumps({"pid": os.getpid(), "kind": it["kind"], "id": it["feedback_id"]}) + "\n")
        return ExportResult("ok")


def _wait_child(pid: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("the forked child did not finish")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_fork_child_traces_and_exports_parent_keeps_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        _feedback_delivery, "SCHEDULE_DELAY", 30.0
    )  # the parent's item is still queued at the fork
    spans_file, feedback_file = tmp_path / "spans.jsonl", tmp_path / "feedback.jsonl"
    monitor.init(
        exporter=FileExporter(spans_file),
        feedback_exporter=FileFeedbackExporter(feedback_file),
        instrument=False,
    )
    with monitor.span("before-fork", kind="other"):
        pass
    assert monitor.flush() is True
    parent_fid = monitor.track("accept", trace_id="0af7651916cd43dd8448eb211c80319c")

    pid = os.fork()
    if pid == 0:  # the child: trace, send feedback, flush, leave without running the parent's cleanup
        code = 1
        try:
            with monitor.span("child-work", kind="chain"):
                monitor.track("copy")
            code = 0 if monitor.flush(timeout=10) else 2
        finally:
            os._exit(code)
    assert _wait_child(pid) == 0
    with monitor.span("parent-after-fork", kind="other"):
        pass
    assert monitor.flush(timeout=10) is True

    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    assert [s["name"] for s in spans if s["pid"] == os.getpid()] == ["before-fork", "parent-after-fork"]
    assert [s["name"] for s in spans if s["pid"] == pid] == ["invoke_workflow child-work"]
    feedback = [json.loads(line) for line in feedback_file.read_text().splitlines()]
    assert [(f["pid"], f["kind"]) for f in feedback if f["pid"] == pid] == [(pid, "copy")]
    assert [(f["kind"], f["id"]) for f in feedback if f["pid"] == os.getpid()] == [("accept", parent_fid)]


def test_exit_without_shutdown_still_delivers_to_a_real_collector(settings, store, tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        import monitor

        monitor.init(service_name="exiting", endpoint=sys.argv[1], project="exit-test", instrument=False)
        with monitor.span("last-words", kind="chain") as s:
            monitor.track("accept")
        print(format(s.span.get_span_context().trace_id, "032x"))
        # no flush, no shutdown: the interpreter exits and the atexit hook must push both out
        """
    )
    with CollectorServer(settings, store) as srv:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        out = subprocess.run(
            [sys.executable, "-c", script, srv.url], capture_output=True, text=True, timeout=60, env=env
        )
        assert out.returncode == 0, out.stderr
        assert srv.stop()
    trace_id = out.stdout.strip()
    assert store.rows("SELECT name, kind, service, project, trace_id FROM spans") == [
        {"name": "invoke_workflow last-words", "kind": "chain", "service": "exiting", "project": "exit-test",
         "trace_id": trace_id}
    ]  # fmt: skip
    assert store.rows("SELECT kind, project, trace_id, source FROM feedback") == [
        {"kind": "accept", "project": "exit-test", "trace_id": trace_id, "source": "sdk"}
    ]


def test_works_inside_an_existing_provider_with_its_own_exporter(client: openai.OpenAI) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    app_exporter = InMemorySpanExporter()
    app_provider = TracerProvider()
    app_provider.add_span_processor(SimpleSpanProcessor(app_exporter))
    trace.set_tracer_provider(app_provider)
    ours = InMemorySpanExporter()
    key = "sk-proj-" + "Z" * 30
    monitor.init(exporter=ours, instrument=["openai"])
    resp = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"{key} [[reply:ok]]"}]
    )
    assert resp.choices[0].message.content == "ok"
    assert monitor.flush() is True
    (mine,), (theirs,) = ours.get_finished_spans(), app_exporter.get_finished_spans()
    assert mine.context.span_id == theirs.context.span_id
    assert key not in mine.attributes[sc.GEN_AI_INPUT_MESSAGES]  # our export path redacts...
    assert key in theirs.attributes[sc.GEN_AI_INPUT_MESSAGES]  # ...the app's own pipeline is its own
