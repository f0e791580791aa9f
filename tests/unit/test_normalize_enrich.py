"""collectors.enrich + collectors.logs: content log records joined in either order, identity across
requests, evaluations to feedback, bounds and counters; and POST /v1/logs over real HTTP."""

from __future__ import annotations

import gzip
import http.client
import json
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as PbLogRecord

from collectors import logs as lg
from collectors.enrich import Enricher
from collectors.normalize import normalize_spans
from collectors.otlp import Span, SpanEvent
from collectors.server import CollectorServer
from collectors.testing import any_value_json, any_value_pb, attributes_json, attributes_pb
from collectors.writer import MemoryWriter

T0 = 1_760_000_000_000_000_000
TRACE = "ab" * 16
ROOT, CHILD, CHILD2 = "01" * 8, "02" * 8, "03" * 8


def chat_span(sid: str = CHILD, parent: str = ROOT, trace: str = TRACE, **attrs: Any) -> Span:
    base = {"gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "m",
            "gen_ai.response.finish_reasons": ["stop"]}  # fmt: skip
    return Span(trace, sid, parent, "chat m", 3, T0, T0 + 10**9, {**base, **attrs})


def root_span(**attrs: Any) -> Span:
    return Span(TRACE, ROOT, "", "handle", 2, T0 - 1000, T0 + 2 * 10**9, attrs)


def v1_logs(sid: str = CHILD) -> list[lg.LogRecord]:
    """The contrib instrumentation's default mode: one record per message, one per choice."""

    def rec(name: str, body: Any, t: int) -> lg.LogRecord:
        return lg.LogRecord(TRACE, sid, name, T0 + t, {"gen_ai.system": "openai"}, body)

    return [
        rec("gen_ai.system.message", {"content": "sys"}, 1),
        rec("gen_ai.user.message", {"content": "hello"}, 2),
        rec("gen_ai.choice", {"index": 0, "finish_reason": "stop", "message": {"content": "hi!"},
                              "tool_calls": [{"id": "c1", "type": "function",
                                              "function": {"name": "f", "arguments": "{}"}}]}, 3),
    ]  # fmt: skip


def rows_of(enricher: Enricher, *spans: Span) -> list[dict[str, Any]]:
    rows = normalize_spans(list(spans), propagate=False)
    out, _ = enricher.process_spans(list(spans), rows)
    return out


CONTENT = ("input_text", "output_text", "input_messages", "output_messages", "finish_reason")


def test_logs_before_and_after_the_span_give_the_same_row():
    early = Enricher()
    updates, _ = early.process_logs(v1_logs())
    assert updates == [] and early.stats()["pending_spans"] == 1
    [a] = rows_of(early, chat_span())
    assert early.stats()["log_records_matched_early"] == 3 and early.stats()["pending_spans"] == 0

    late = Enricher()
    [first] = rows_of(late, chat_span())
    assert first["input_text"] == ""
    [b] = late.process_logs(v1_logs())[0]
    assert b is not first and first["input_text"] == ""  # an updated copy; the queued row is untouched
    assert late.stats()["log_records_matched_late"] == 3 and late.stats()["spans_reemitted"] == 1

    assert a["input_text"] == "sys\n\nhello"
    assert a["output_text"] == "hi!\n[tool_call] f({})"
    assert a["finish_reason"] == "stop"
    assert {c: a[c] for c in CONTENT} == {c: b[c] for c in CONTENT}
    assert (a["trace_id"], a["span_id"]) == (b["trace_id"], b["span_id"])


def test_logs_split_over_requests_and_resent_are_not_duplicated():
    e = Enricher()
    rows_of(e, chat_span())
    recs = v1_logs()
    e.process_logs(recs[:1])
    e.process_logs(recs[1:])
    [r] = e.process_logs(recs[1:2])[0]  # an exporter retry of the user message
    assert r["input_text"] == "sys\n\nhello"


def test_operation_details_log_structured_and_span_content_wins():
    details = lg.LogRecord(TRACE, CHILD, "gen_ai.client.inference.operation.details", T0, {
        "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": "from log"}]}],
        "gen_ai.output.messages": [{"role": "assistant", "parts": [{"type": "text", "content": "out"}]}],
    })  # fmt: skip
    e = Enricher()
    e.process_logs([details])
    span_input = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "from span"}]}])
    [r] = rows_of(e, chat_span(**{"gen_ai.input.messages": span_input}))
    assert (r["input_text"], r["output_text"]) == ("from span", "out")


def test_late_content_for_a_span_that_had_its_own_is_redundant_not_lost():
    """A span that carried its whole content is remembered only as "nothing to add": log records for it
    later are counted redundant (not buffered, never "expired"), with no re-emitted row; an ``other`` span
    is not remembered at all, and content sent for it waits as for any span not seen yet."""
    full = {
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "q"}]}]),
        "gen_ai.output.messages": json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": "a"}]}]
        ),
    }
    e = Enricher(max_spans=3)
    [r] = rows_of(e, root_span(**{"user.id": "u", "session.id": "s"}), chat_span(**full))[1:]
    assert (r["input_text"], r["output_text"], r["user_id"]) == ("q", "a", "u")
    # only the chat span is kept: the root (kind "other", its own user and session) has nothing to wait for
    assert e.stats()["tracked_spans"] == 1
    updates, _ = e.process_logs(v1_logs())
    st = e.stats()
    assert updates == [] and (st["log_records_redundant"], st["pending_spans"], st["spans_reemitted"]) == (
        3,
        0,
        0,
    )
    e.process_logs(v1_logs(sid=ROOT))  # the root span was not remembered: its records wait (and would expire)
    assert e.stats()["pending_spans"] == 1
    # a span joined to late content, then re-sent complete: it keeps the content, and later records for it
    # are redundant; markers are evicted like any tracked span
    e2 = Enricher(max_spans=2)
    rows_of(e2, root_span(**{"user.id": "u", "session.id": "s"}), chat_span(sid=CHILD2))
    assert len(e2.process_logs(v1_logs(sid=CHILD2))[0]) == 1
    rows_of(e2, chat_span(sid=CHILD2, **full))
    assert e2.process_logs(v1_logs(sid=CHILD2))[0] == [] and e2.stats()["log_records_redundant"] == 3
    rows_of(e2, chat_span(sid="0d" * 8, **full), chat_span(sid="0e" * 8, **full))
    assert (e2.stats()["tracked_spans"], e2.stats()["spans_evicted"]) == (2, 1)


def test_unmatched_content_expires_and_is_counted():
    now = [0.0]
    e = Enricher(pending_ttl=10, max_pending=2, clock=lambda: now[0])
    e.process_logs(v1_logs(sid="0a" * 8))
    e.process_logs(v1_logs(sid="0b" * 8) + v1_logs(sid="0c" * 8))  # third span evicts the first
    assert e.stats()["log_records_evicted"] == 3
    now[0] = 11.0
    st = e.stats()
    assert (st["log_records_expired"], st["pending_spans"]) == (6, 0)
    e.process_logs([lg.LogRecord("", "", "gen_ai.user.message", T0, {}, {"content": "x"}),
                    lg.LogRecord(TRACE, CHILD, "some.other.event", T0, {}, "x")])  # fmt: skip
    st = e.stats()
    assert (st["log_records_uncorrelated"], st["log_records_ignored"]) == (1, 1)


def test_user_and_session_cross_requests_root_wins_and_earlier_rows_are_reemitted():
    e = Enricher()
    # request 1: a child that names a user of its own and one that names nobody
    r1 = rows_of(e, chat_span(sid=CHILD, **{"user.id": "child-user"}), chat_span(sid=CHILD2))
    assert [r["user_id"] for r in r1] == ["child-user", "child-user"]
    # request 2: the root arrives last with the real identity
    out = rows_of(e, root_span(**{"user.id": "alice", "session.id": "s1"}))
    root, *updated = out
    assert (root["user_id"], root["session_id"]) == ("alice", "s1")
    assert [(u["span_id"], u["user_id"], u["session_id"]) for u in updated] == [
        (CHILD, "child-user", "s1"),  # its own user stays, the session is the trace's
        (CHILD2, "alice", "s1"),  # the root's value replaces the child's
    ]
    # request 3: a later span of the same trace gets the identity at once
    [late] = rows_of(e, chat_span(sid="04" * 8))
    assert (late["user_id"], late["session_id"]) == ("alice", "s1")
    assert e.stats()["spans_reemitted"] == 2


def test_evaluation_results_become_feedback_from_logs_and_span_events():
    ev_attrs = {"gen_ai.evaluation.name": "relevance", "gen_ai.evaluation.score.value": 0.8,
                "gen_ai.evaluation.explanation": "on topic", "gen_ai.response.id": "r1"}  # fmt: skip
    e = Enricher(project="p")
    _, fb = e.process_logs([lg.LogRecord(TRACE, CHILD, "gen_ai.evaluation.result", T0, ev_attrs)])
    [f] = fb
    assert {k: f[k] for k in ("project", "trace_id", "span_id", "response_id", "kind", "value", "comment", "source")} == {
        "project": "p", "trace_id": TRACE, "span_id": CHILD, "response_id": "r1", "kind": "relevance",
        "value": 0.8, "comment": "on topic", "source": "otel-evaluation",
    }  # fmt: skip
    s = chat_span()
    s.events.append(SpanEvent("gen_ai.evaluation.result", T0, ev_attrs))
    _, fb2 = e.process_spans([s], normalize_spans([s], propagate=False))
    assert fb2[0]["feedback_id"] == f["feedback_id"]  # same (trace, span, name, time): same id


def _logs_request() -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    sl = req.resource_logs.add().scope_logs.add()
    for rec in v1_logs():
        pb = PbLogRecord(time_unix_nano=rec.time_unix_nano, trace_id=bytes.fromhex(TRACE),
                         span_id=bytes.fromhex(CHILD), body=any_value_pb(rec.body))  # fmt: skip
        pb.attributes.extend(
            attributes_pb({**rec.attributes, "event.name": rec.event_name})
        )  # older SDK form
        sl.log_records.append(pb)
    return req


def _post(srv: CollectorServer, body: bytes, ctype: str, **headers: str) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    c.request("POST", "/v1/logs", body=body, headers={"Content-Type": ctype, **headers})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def test_v1_logs_endpoint_protobuf_json_gzip_and_errors(settings):
    mem = MemoryWriter()
    with CollectorServer(settings, writer=mem) as srv:
        status, data = _post(srv, gzip.compress(_logs_request().SerializeToString()),
                             "application/x-protobuf", **{"Content-Encoding": "gzip"})  # fmt: skip
        assert (status, data) == (200, b"")
        assert srv.enricher.stats()["log_records_buffered"] == 3
        doc = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{
            "timeUnixNano": str(T0), "traceId": TRACE, "spanId": "0f" * 8, "eventName": "gen_ai.user.message",
            "body": any_value_json({"content": "json body"}), "attributes": attributes_json({})}]}]}]}  # fmt: skip
        assert _post(srv, json.dumps(doc).encode(), "application/json") == (200, b"{}")
        assert _post(srv, b"\x00garbage", "application/x-protobuf")[0] == 400
        assert _post(srv, b"{}", "text/plain")[0] == 415
        assert srv.enricher.stats()["pending_spans"] == 2
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        c.request("GET", "/metrics")
        metrics = c.getresponse().read().decode()
        c.close()
        lines = set(metrics.splitlines())
        assert "llm_monitor_collector_enrich_pending_spans 2" in lines
        assert "# TYPE llm_monitor_collector_enrich_pending_spans gauge" in lines
        assert "llm_monitor_collector_enrich_log_records_buffered_total 4" in lines
