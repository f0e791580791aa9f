"""``monitor.feedback`` / ``monitor.track``: call-time validation, targets, and background delivery
(batching, auth, retries with backoff, partial refusals, splitting, bounded queue) against local HTTP
servers. The real collector end to end is in ``tests/integration/test_sdk_feedback_e2e.py``."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry import trace

import monitor
from collectors.feedback import parse_feedback
from monitor import _feedback
from monitor._feedback import ExportResult, FeedbackClient, HttpFeedbackExporter, MemoryFeedbackExporter
from monitor.testing import SpanRecorder, recording, reset_global_tracer_provider

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    yield
    monitor.shutdown()
    reset_global_tracer_provider()


@pytest.fixture
def rec() -> Iterator[SpanRecorder]:
    with recording(instrument=False, project="shop") as r:
        yield r


def _stable(item: dict[str, Any]) -> dict[str, Any]:
    """An item without its generated fields, after checking their form."""
    out = dict(item)
    fid, created = out.pop("feedback_id"), out.pop("created_at")
    assert re.fullmatch(r"[0-9a-f]{32}", fid)
    assert abs(created - time.time()) < 60
    return out


class Collector(ThreadingHTTPServer):
    """A scripted ``/v1/feedback``: answers from ``script`` in order (then 200), records every request."""

    def __init__(self, script: list[tuple[int, dict[str, str], Any]] | None = None) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.script = list(script or [])
        self.respond: Callable[[list[dict[str, Any]]], tuple[int, dict[str, str], Any]] | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if outer.respond is not None:
                    status, headers, payload = outer.respond(body)
                else:
                    status, headers, payload = outer.script.pop(0) if outer.script else (200, {}, None)
                data = json.dumps(payload if payload is not None else {"accepted": len(body)}).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


def _client(url: str, **kwargs: Any) -> FeedbackClient:
    opts = {"schedule_delay": 0.01, "backoff_base": 0.01, "backoff_max": 0.05, "timeout": 2.0, **kwargs}
    return FeedbackClient(HttpFeedbackExporter(url + "/v1/feedback", api_key="k-1"), **opts)


def _item(n: int = 0, **extra: Any) -> dict[str, Any]:
    return _feedback.build_item(kind="rating", value=n % 11, trace_id=TRACE, **extra)


# --- the public functions ---------------------------------------------------------------------------


def test_feedback_with_every_field(rec: SpanRecorder) -> None:
    fid = monitor.feedback(
        trace_id=TRACE.upper(),
        span_id=SPAN,
        response_id=" chatcmpl-1 ",
        kind="Thumbs",
        value="down",
        comment="wrong order number",
        user_id="u-7",
        source="web",
    )
    (item,) = rec.feedback()
    assert item["feedback_id"] == fid
    assert _stable(item) == {
        "kind": "thumbs",
        "value": 0.0,
        "trace_id": TRACE,
        "span_id": SPAN,
        "response_id": "chatcmpl-1",
        "comment": "wrong order number",
        "user_id": "u-7",
        "source": "web",
        "project": "shop",
    }


def test_default_target_is_the_current_span_and_user_comes_from_context(rec: SpanRecorder) -> None:
    with monitor.context(user_id="u-42"), monitor.span("answer", kind="chain") as s:
        monitor.feedback(kind="rating", value=9)
        monitor.track("copy")
    ctx = s.span.get_span_context()
    expected = {
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "user_id": "u-42",
        "source": "sdk",
        "project": "shop",
    }
    assert [_stable(i) for i in rec.feedback()] == [
        {"kind": "rating", "value": 9.0, **expected},
        {"kind": "copy", "value": 1.0, **expected},
    ]


def test_track_every_event_with_its_default_value(rec: SpanRecorder) -> None:
    for event, kwargs in [
        ("accept", {}),
        ("reject", {}),
        ("copy", {}),
        ("regenerate", {"value": True}),
        ("edit", {"value": 0.25}),
        ("edit", {}),
        ("rating", {"value": 3}),
        ("thumbs", {"value": True}),
        ("comment", {"comment": "too long"}),
    ]:
        monitor.track(event, response_id="resp-1", **kwargs)
    got = [(i["kind"], i["value"], i.get("comment")) for i in rec.feedback()]
    assert got == [
        ("accept", 1.0, None),
        ("reject", 1.0, None),
        ("copy", 1.0, None),
        ("regenerate", 1.0, None),
        ("edit", 0.25, None),
        ("edit", 1.0, None),
        ("rating", 3.0, None),
        ("thumbs", 1.0, None),
        ("comment", 0.0, "too long"),
    ]


def test_ids_from_a_span_context_as_integers(rec: SpanRecorder) -> None:
    with monitor.span("x") as s:
        ctx = s.span.get_span_context()
    monitor.feedback(kind="accept", trace_id=ctx.trace_id, span_id=ctx.span_id)
    (item,) = rec.feedback()
    assert (item["trace_id"], item["span_id"]) == (
        trace.format_trace_id(ctx.trace_id),
        trace.format_span_id(ctx.span_id),
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: monitor.feedback(kind="thumbs", value=True), "feedback needs a target"),
        (lambda: monitor.track("banana", trace_id=TRACE), "unknown event 'banana'"),
        (lambda: monitor.track("", trace_id=TRACE), "kind must be one of"),
        (lambda: monitor.feedback(kind="Not Valid!", value=1, trace_id=TRACE), "custom kind 'Not Valid!'"),
        (lambda: monitor.feedback(kind="helpfulness", trace_id=TRACE), "needs a numeric value"),
        (lambda: monitor.feedback(kind="rating", value="5", trace_id=TRACE), "rating value must be a number"),
        (lambda: monitor.feedback(kind="rating", value=11, trace_id=TRACE), "between 0 and 10"),
        (lambda: monitor.feedback(kind="rating", trace_id=TRACE), "rating needs a value"),
        (lambda: monitor.feedback(kind="thumbs", value="maybe", trace_id=TRACE), "thumbs value must be"),
        (lambda: monitor.feedback(kind="thumbs", value=None, trace_id=TRACE), "thumbs value must be"),
        (lambda: monitor.track("accept", value=2, trace_id=TRACE), "accept value must be 0 or 1"),
        (lambda: monitor.track("edit", value=1.5, trace_id=TRACE), "edit value is the share"),
        (lambda: monitor.track("rating", value=float("nan"), trace_id=TRACE), "finite number"),
        (lambda: monitor.track("comment", trace_id=TRACE), "needs a non-empty comment"),
        (lambda: monitor.track("accept", trace_id="abc"), "trace_id must be 32 hexadecimal"),
        (lambda: monitor.track("accept", trace_id="0" * 32), "trace_id must be 32 hexadecimal"),
        (lambda: monitor.track("accept", span_id=TRACE), "span_id must be 16 hexadecimal"),
        (lambda: monitor.track("accept", response_id=42), "response_id must be a string"),
        (lambda: monitor.track("accept", trace_id=TRACE, comment="a\x00b"), "comment contains control"),
        (lambda: monitor.track("accept", trace_id=TRACE, comment="x" * 8193), "longer than 8192"),
        (lambda: monitor.track("accept", trace_id=TRACE, user_id=7), "user_id must be a string"),
        (lambda: monitor.track("accept", trace_id=TRACE, source="a b"), "source must be"),
    ],
)
def test_bad_arguments_raise_value_error_at_call_time(
    rec: SpanRecorder, call: Callable[[], Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
    assert rec.feedback() == []


def test_items_pass_the_collectors_own_validation() -> None:
    items = [
        _feedback.build_item(kind="thumbs", value="up", trace_id=TRACE, comment="ok\ttabs\nlines"),
        _feedback.build_item(kind="rating", value=0, span_id=SPAN, user_id="u", project="p"),
        _feedback.build_item(kind="edit", value=0.5, response_id="r" * 256),
        _feedback.build_item(kind="helpfulness.judge", value=-3.5, trace_id=TRACE, source="ci:eval"),
        _feedback.build_item(kind="comment", comment="x" * 8192, trace_id=TRACE),
    ]
    rows = parse_feedback(json.dumps(items).encode(), project="default", now=dt.datetime.now(dt.timezone.utc))
    assert [(r["kind"], r["value"], r["project"], r["source"], r["feedback_id"]) for r in rows] == [
        ("thumbs", 1.0, "default", "sdk", items[0]["feedback_id"]),
        ("rating", 0.0, "p", "sdk", items[1]["feedback_id"]),
        ("edit", 0.5, "default", "sdk", items[2]["feedback_id"]),
        ("helpfulness.judge", -3.5, "default", "ci:eval", items[3]["feedback_id"]),
        ("comment", 0.0, "default", "sdk", items[4]["feedback_id"]),
    ]
    assert rows[0]["created_at"].timestamp() == pytest.approx(items[0]["created_at"], abs=1e-5)


def test_before_init_is_dropped_with_one_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_feedback, "_warned_uninitialised", False)
    with caplog.at_level(logging.WARNING, logger="monitor"):
        fid = monitor.track("accept", trace_id=TRACE)
        monitor.track("accept", trace_id=TRACE)
    assert re.fullmatch(r"[0-9a-f]{32}", fid)
    assert [r.getMessage() for r in caplog.records if r.name == "monitor"] == [
        "llm-monitor: feedback before monitor.init() is dropped (call monitor.init() first)"
    ]


def test_comments_are_redacted_on_the_feedback_thread(rec: SpanRecorder) -> None:
    key = "sk-proj-" + "Q" * 30
    monitor.feedback(kind="comment", comment=f"it printed {key}", trace_id=TRACE)
    (item,) = rec.feedback()
    assert item["comment"] == "it printed [REDACTED:openai_key]"


# --- delivery -----------------------------------------------------------------------------------------------


def test_init_posts_json_lists_with_the_api_key(collector: Collector) -> None:
    monitor.init(endpoint=collector.url + "/", api_key="secret", project="shop", instrument=False)
    first = monitor.track("accept", response_id="r-1")
    second = monitor.feedback(kind="rating", value=4, trace_id=TRACE)
    assert monitor.flush(timeout=5) is True
    bodies = [b for _, _, b in collector.requests]
    assert [i["feedback_id"] for b in bodies for i in b] == [first, second]
    path, headers, _ = collector.requests[0]
    assert path == "/v1/feedback"
    assert headers["authorization"] == "Bearer secret"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("llm-monitor/")
    client = monitor._tracing.feedback_client()
    assert client is not None and client.stats.delivered == 2


def test_feedback_url() -> None:
    assert _feedback.feedback_url("http://c:4318") == "http://c:4318/v1/feedback"
    assert _feedback.feedback_url("http://c:4318/v1/traces") == "http://c:4318/v1/feedback"
    assert _feedback.feedback_url("https://c/prefix/") == "https://c/prefix/v1/feedback"


def test_retries_503_with_the_same_ids_then_delivers() -> None:
    collector = Collector([(503, {"Retry-After": "0"}, {"message": "queue full"}), (500, {}, None)])
    try:
        client = _client(collector.url)
        items = [_item(i) for i in range(3)]
        for it in items:
            client.submit(it)
        assert client.flush(5) is True
    finally:
        collector.close()
    bodies = [b for _, _, b in collector.requests]
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2] == items  # idempotent retries
    assert (client.stats.delivered, client.stats.failed, client.stats.refused) == (3, 0, 0)


def test_a_400_drops_only_the_refused_items(caplog: pytest.LogCaptureFixture) -> None:
    errors = {"errors": [{"index": 1, "field": "kind", "reason": "bad"}]}
    collector = Collector([(400, {}, errors)])
    try:
        client = _client(collector.url)
        items = [_item(i) for i in range(3)]
        with caplog.at_level(logging.WARNING, logger="monitor"):
            for it in items:
                client.submit(it)
            assert client.flush(5) is False  # one item was refused
    finally:
        collector.close()
    assert [b for _, _, b in collector.requests] == [items, [items[0], items[2]]]
    assert (client.stats.delivered, client.stats.refused) == (2, 1)
    assert any("refused feedback (HTTP 400" in r.getMessage() for r in caplog.records if r.name == "monitor")


def test_a_401_refuses_the_batch_without_retrying() -> None:
    collector = Collector([(401, {}, {"message": "missing or invalid API key"})])
    try:
        client = _client(collector.url)
        client.submit(_item())
        assert client.flush(5) is False
    finally:
        collector.close()
    assert len(collector.requests) == 1
    assert (client.stats.delivered, client.stats.refused, client.stats.failed) == (0, 1, 0)


def test_a_413_splits_the_batch() -> None:
    collector = Collector()
    collector.respond = lambda body: (413, {}, {"message": "too large"}) if len(body) > 2 else (200, {}, None)
    try:
        client = _client(collector.url, schedule_delay=60)
        items = [_item(i) for i in range(5)]
        for it in items:
            client.submit(it)
        assert client.flush(5) is True
    finally:
        collector.close()
    sizes = [len(b) for _, _, b in collector.requests]
    assert sizes == [5, 2, 3, 1, 2]
    delivered = [i for _, _, b in collector.requests if len(b) <= 2 for i in b]
    assert sorted(i["feedback_id"] for i in delivered) == sorted(i["feedback_id"] for i in items)


def test_gives_up_after_bounded_retries_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    collector = Collector()
    collector.respond = lambda body: (503, {}, {"message": "down"})
    try:
        client = _client(collector.url, max_attempts=3)
        with caplog.at_level(logging.WARNING, logger="monitor"):
            client.submit(_item())
            client.submit(_item(1))
            assert client.flush(5) is False
    finally:
        collector.close()
    assert len(collector.requests) == 3
    assert (client.stats.delivered, client.stats.failed) == (0, 2)
    messages = [r.getMessage() for r in caplog.records if r.name == "monitor"]
    assert sum("retrying" in m for m in messages) == 1  # logged once, not per attempt
    assert sum("not delivered after 3 attempts" in m for m in messages) == 1


def test_full_queue_drops_newest_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    exporter = MemoryFeedbackExporter()
    client = FeedbackClient(exporter, max_queue_size=2, schedule_delay=60)
    with caplog.at_level(logging.WARNING, logger="monitor"):
        results = [client.submit(_item(i)) for i in range(5)]
    assert results == [True, True, False, False, False]
    assert client.stats.dropped == 3
    assert client.flush(5) is True
    assert [i["value"] for i in exporter.items] == [0.0, 1.0]
    assert sum("feedback queue full" in r.getMessage() for r in caplog.records if r.name == "monitor") == 1


def test_batches_respect_the_batch_size() -> None:
    exporter = MemoryFeedbackExporter()
    sizes: list[int] = []
    real = exporter.export

    def export(items: Any, timeout: float) -> ExportResult:
        sizes.append(len(items))
        return real(items, timeout)

    exporter.export = export  # type: ignore[method-assign]
    client = FeedbackClient(exporter, max_batch_size=4, schedule_delay=60)
    for i in range(10):
        client.submit(_item(i))
    assert client.flush(5) is True
    assert sizes == [4, 4, 2]
    assert client.pending == 0


def test_the_thread_starts_with_the_first_item_and_shutdown_stops_it() -> None:
    client = FeedbackClient(MemoryFeedbackExporter(), schedule_delay=0.01)
    assert client._thread is None
    client.submit(_item())
    thread = client._thread
    assert thread is not None and thread.daemon and thread.name == "llm-monitor-feedback"
    assert client.shutdown(5) is True
    thread.join(5)
    assert not thread.is_alive()
    assert client.submit(_item()) is False  # after shutdown


def test_an_exporter_raising_oserror_is_retried() -> None:
    calls: list[int] = []

    class Flaky:
        def export(self, items: Any, timeout: float) -> ExportResult:
            calls.append(len(items))
            if len(calls) == 1:
                raise ConnectionResetError("reset by peer")
            return ExportResult("ok")

    client = FeedbackClient(Flaky(), schedule_delay=0.01, backoff_base=0.01)
    client.submit(_item())
    assert client.flush(5) is True
    assert calls == [1, 1]
