"""SDK → real collector → chDB: ``monitor.feedback``/``track`` rows in ``feedback``, joined to the spans
of the same run; a wrong API key and a collector that is down (feedback dropped and counted after
bounded retries, the application unaffected)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import openai
import pytest

import monitor
from collectors.server import CollectorServer
from monitor import _feedback_delivery, _tracing
from monitor.demo.fake_openai import FakeOpenAIServer
from monitor.testing import reset_global_tracer_provider

TRACE = "0af7651916cd43dd8448eb211c80319c"
REPLY = "Your refund was issued today."
COLUMNS = "project, trace_id, span_id, response_id, kind, value, comment, user_id, source, feedback_id"


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    yield
    monitor.shutdown(timeout=2)
    reset_global_tracer_provider()


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


def test_feedback_rows_join_the_spans_of_the_run(settings, store, fake_openai: FakeOpenAIServer) -> None:
    client = openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-test", max_retries=0)
    with CollectorServer(settings.with_overrides(api_keys="k-e2e"), store) as srv:
        monitor.init(endpoint=srv.url, api_key="k-e2e", project="shop", instrument=["openai"])
        with monitor.context(user_id="u-9"), monitor.span("answer", kind="chain") as root:
            resp = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"refund? [[reply:{REPLY}]]"}]
            )
            copied = monitor.track("copy")  # the current span: the chain
        thumbs = monitor.feedback(response_id=resp.id, kind="thumbs", value=False, comment="too vague")
        rating = monitor.feedback(trace_id=TRACE, kind="rating", value=7.5, user_id="u-1", source="web")
        edit = monitor.track("edit", response_id=resp.id, value=0.4)
        assert resp.choices[0].message.content == REPLY
        assert monitor.flush(timeout=10) is True
        assert srv.stop(), "the collector did not drain"
    ctx = root.span.get_span_context()
    trace_id, span_id = format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
    rows = store.rows(f"SELECT {COLUMNS} FROM feedback ORDER BY kind")
    assert rows == [
        {
            "project": "shop",
            "trace_id": trace_id,
            "span_id": span_id,
            "response_id": "",
            "kind": "copy",
            "value": 1.0,
            "comment": "",
            "user_id": "u-9",
            "source": "sdk",
            "feedback_id": copied,
        },
        {
            "project": "shop",
            "trace_id": "",
            "span_id": "",
            "response_id": resp.id,
            "kind": "edit",
            "value": 0.4,
            "comment": "",
            "user_id": "",
            "source": "sdk",
            "feedback_id": edit,
        },
        {
            "project": "shop",
            "trace_id": TRACE,
            "span_id": "",
            "response_id": "",
            "kind": "rating",
            "value": 7.5,
            "comment": "",
            "user_id": "u-1",
            "source": "web",
            "feedback_id": rating,
        },
        {
            "project": "shop",
            "trace_id": "",
            "span_id": "",
            "response_id": resp.id,
            "kind": "thumbs",
            "value": 0.0,
            "comment": "too vague",
            "user_id": "",
            "source": "sdk",
            "feedback_id": thumbs,
        },
    ]
    # Feedback by response id finds the model call; feedback by span finds the chain of the same trace.
    joined = store.rows(
        "SELECT f.kind AS kind, s.kind AS span_kind, s.trace_id AS trace_id FROM feedback AS f "
        "INNER JOIN spans AS s ON f.response_id = s.response_id WHERE f.response_id != '' ORDER BY f.kind"
    )
    assert joined == [
        {"kind": "edit", "span_kind": "llm", "trace_id": trace_id},
        {"kind": "thumbs", "span_kind": "llm", "trace_id": trace_id},
    ]
    chain = store.rows(f"SELECT name, kind FROM spans WHERE span_id = '{span_id}'")
    assert chain == [{"name": "invoke_workflow answer", "kind": "chain"}]


def test_a_wrong_api_key_is_refused_and_counted(settings, store, caplog: pytest.LogCaptureFixture) -> None:
    with CollectorServer(settings.with_overrides(api_keys="right"), store) as srv:
        monitor.init(endpoint=srv.url, api_key="wrong", instrument=False)
        with caplog.at_level(logging.WARNING, logger="monitor"):
            fid = monitor.track("accept", trace_id=TRACE)
            client = _tracing.feedback_client()
            assert client is not None and client.flush(10) is False
        assert srv.stop()
    assert len(fid) == 32
    assert (client.stats.refused, client.stats.delivered, client.stats.failed) == (1, 0, 0)
    assert store.rows("SELECT count() AS n FROM feedback") == [{"n": 0}]
    assert any("refused feedback (HTTP 401" in r.getMessage() for r in caplog.records if r.name == "monitor")


def test_collector_down_drops_and_counts_after_bounded_retries(
    free_port: int, fake_openai: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_feedback_delivery, "MAX_ATTEMPTS", 3)
    monkeypatch.setattr(_feedback_delivery, "BACKOFF_BASE", 0.01)
    monkeypatch.setattr(_feedback_delivery, "SCHEDULE_DELAY", 0.01)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1")
    client = openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-test", max_retries=0)
    monitor.init(endpoint=f"http://127.0.0.1:{free_port}", instrument=["openai"])  # nothing listens there
    resp = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"hi [[reply:{REPLY}]]"}]
    )
    monitor.feedback(response_id=resp.id, kind="thumbs", value=True)
    monitor.track("copy", response_id=resp.id)
    sender = _tracing.feedback_client()
    assert sender is not None
    assert sender.flush(10) is False
    assert resp.choices[0].message.content == REPLY
    assert (sender.stats.failed, sender.stats.delivered, sender.pending) == (2, 0, 0)
    again = client.chat.completions.create(  # the application keeps working
        model="gpt-4o-mini", messages=[{"role": "user", "content": "[[reply:still here]]"}]
    )
    assert again.choices[0].message.content == "still here"
