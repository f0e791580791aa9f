"""The collector end to end: real HTTP on 127.0.0.1, the real OTLP exporter, rows in the real chDB store."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import threading
import time

import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from collectors import server as server_mod
from collectors.server import CollectorError, CollectorServer
from collectors.testing import request_to_json
from collectors.writer import MemoryWriter
from monitor import semconv as sc

PB = "application/x-protobuf"
JSON = "application/json"


def make_trace(
    n_llm: int, *, user: str | None = "alice", session: str | None = "sess-1", service: str = "shop"
):
    """One trace from the real SDK: a chain root (carrying user/session) and ``n_llm`` chat spans under it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("llm_monitor")
    with tracer.start_as_current_span("handle_request") as root:
        root.set_attribute(sc.LLM_MONITOR_SPAN_KIND, "chain")
        if user:
            root.set_attribute(sc.USER_ID, user)
        if session:
            root.set_attribute(sc.SESSION_ID, session)
        for i in range(n_llm):
            with tracer.start_as_current_span("chat gpt-4o-mini") as s:
                s.set_attributes({
                    sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_PROVIDER_NAME: "openai",
                    sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini", sc.GEN_AI_USAGE_INPUT_TOKENS: 10 + i,
                    sc.GEN_AI_USAGE_OUTPUT_TOKENS: 5,
                    sc.GEN_AI_INPUT_MESSAGES: json.dumps([{"role": "user", "parts": [{"type": "text", "content": f"q{i}"}]}]),
                })  # fmt: skip
    return exporter.get_finished_spans()


def pb_body(n_llm: int = 2, **kw) -> bytes:
    return encode_spans(make_trace(n_llm, **kw)).SerializeToString()


def send(
    server: CollectorServer,
    body: bytes | None = b"",
    content_type: str | None = PB,
    *,
    path: str = "/v1/traces",
    method: str = "POST",
    headers: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, dict[str, str], bytes]:
    c = conn or http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    h = dict(headers or {})
    if content_type:
        h["Content-Type"] = content_type
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def raw_request(server: CollectorServer, head: bytes) -> bytes:
    """Send bytes as they are (no Content-Length fix-ups) and return the whole response."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(head)
        out = b""
        while b"\r\n\r\n" not in out:
            out += s.recv(65536)
        return out


def error_message(headers: dict[str, str], body: bytes) -> str:
    if headers["content-type"] == PB:
        return Status.FromString(body).message
    return json.loads(body)["message"]


def count(store, where: str = "1") -> int:
    return store.scalar(f"SELECT count() FROM {store.table('spans')} WHERE {where}")


def wait_for(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


@pytest.fixture
def server(settings, store):
    srv = CollectorServer(settings, store)
    srv.start()
    yield srv
    srv.stop(10)


def test_real_otlp_exporter_protobuf_and_gzip(server, store):
    endpoint = f"{server.url}/v1/traces"
    plain = OTLPSpanExporter(endpoint=endpoint, timeout=5)
    gz = OTLPSpanExporter(endpoint=endpoint, timeout=5, compression=Compression.Gzip)
    assert plain.export(make_trace(3, user="alice", session="s-a")) == SpanExportResult.SUCCESS
    assert gz.export(make_trace(2, user="bob", session="s-b", service="billing")) == SpanExportResult.SUCCESS
    assert plain.export(make_trace(1, user=None, session=None)) == SpanExportResult.SUCCESS
    plain.shutdown()
    gz.shutdown()
    assert server.batch.flush(10)

    assert count(store) == 4 + 3 + 2
    t = store.table("spans")
    by_user = {r["user_id"]: r for r in store.rows(
        f"SELECT user_id, any(session_id) AS session_id, count() AS n, sum(total_tokens) AS tokens, "
        f"countIf(kind = 'llm') AS llm, countIf(kind = 'chain') AS chain, any(service) AS service "
        f"FROM {t} GROUP BY user_id"
    )}  # fmt: skip
    assert set(by_user) == {"alice", "bob", ""}
    # user/session set on the root only, copied to every span of the trace
    assert (by_user["alice"]["n"], by_user["alice"]["session_id"], by_user["alice"]["llm"]) == (4, "s-a", 3)
    assert by_user["alice"]["tokens"] == (10 + 5) + (11 + 5) + (12 + 5)
    assert (by_user["bob"]["n"], by_user["bob"]["tokens"], by_user["bob"]["service"]) == (
        3,
        15 + 16,
        "billing",
    )
    assert by_user[""]["n"] == 2
    row = store.rows(
        f"SELECT * FROM {t} WHERE kind = 'llm' AND user_id = 'alice' ORDER BY input_tokens LIMIT 1"
    )[0]
    assert (row["convention"], row["model"], row["provider"], row["input_text"]) == (
        "llm-monitor",
        "gpt-4o-mini",
        "openai",
        "q0",
    )
    assert row["project"] == "default" and len(row["trace_id"]) == 32 and len(row["parent_span_id"]) == 16


def test_json_request_gets_a_json_response(server, store):
    doc = request_to_json(encode_spans(make_trace(2, user="carol")))
    status, headers, body = send(server, json.dumps(doc).encode(), "application/json; charset=utf-8")
    assert (status, headers["content-type"], json.loads(body)) == (200, JSON, {})
    status, headers, body = send(server, gzip.compress(json.dumps(doc).encode()), JSON,
                                 headers={"Content-Encoding": "gzip"})  # fmt: skip
    assert status == 200
    assert server.batch.flush(10)
    assert count(store, "user_id = 'carol'") == 3  # ReplacingMergeTree: resent spans share one key
    assert store.scalar(f"SELECT count() FROM {store.table('spans')} FINAL") == 3


def test_protobuf_request_gets_a_protobuf_response_on_a_kept_alive_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for _ in range(3):
            status, headers, body = send(server, pb_body(1), conn=conn)
            assert (status, headers["content-type"], body) == (200, PB, b"")
            assert headers.get("connection", "").lower() != "close"
        sock = conn.sock
        send(server, pb_body(1), conn=conn)
        assert conn.sock is sock  # same TCP connection throughout
    finally:
        conn.close()


def test_chunked_request_body(server, store):
    body = pb_body(2, user="dave")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/v1/traces", body=iter([body[:10], body[10:]]), headers={"Content-Type": PB},
                 encode_chunked=True)  # fmt: skip
    assert conn.getresponse().status == 200
    conn.close()
    assert server.batch.flush(10)
    assert count(store, "user_id = 'dave'") == 3


BOMB = gzip.compress(b"\0" * (8 << 20), compresslevel=9)  # 8 MiB inflated; the test limit is 1 MiB


@pytest.mark.parametrize(
    ("case", "code", "ctype", "body", "headers", "message"),
    [
        ("garbage protobuf", 400, PB, b"\xff\xff\xff\xff", {}, "not a valid protobuf ExportTraceServiceRequest"),
        ("bad json", 400, JSON, b'{"resourceSpans": [', {}, "not valid JSON"),
        ("json of the wrong shape", 400, JSON, b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 5}]}]}]}',
         {}, "resourceSpans[0].scopeSpans[0].spans[0].traceId: expected a hex string"),
        ("wrong content type", 415, "text/plain", b"hello", {}, "unsupported Content-Type 'text/plain'"),
        ("no content type", 415, None, b"hello", {}, "unsupported Content-Type 'none'"),
        ("wrong encoding", 415, PB, b"x", {"Content-Encoding": "br"}, "unsupported Content-Encoding 'br'"),
        ("bad gzip", 400, PB, b"definitely not gzip", {"Content-Encoding": "gzip"}, "invalid gzip body"),
        ("gzip bomb", 413, PB, BOMB, {"Content-Encoding": "gzip"}, "inflates beyond the limit of 1048576 bytes"),
        ("oversized", 413, JSON, b"x" * (1 << 20 | 1), {}, "exceeds the limit of 1048576 bytes"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_clear_4xx_and_the_next_good_request_works(
    settings, store, case, code, ctype, body, headers, message
):
    with CollectorServer(settings.with_overrides(max_body_bytes=1 << 20), store) as srv:
        status, h, data = send(srv, body, ctype, headers=headers)
        assert status == code, case
        assert message in error_message(h, data)
        if ctype == PB and code != 415:
            assert h["content-type"] == PB  # OTLP: a google.rpc.Status in the request's encoding
        assert send(srv, pb_body(1))[0] == 200
        assert srv.batch.flush(10)
        assert f'llm_monitor_collector_requests_total{{code="{code}"}} 1' in srv.metrics_text()
    assert count(store) == 2


def test_oversized_content_length_is_refused_before_the_body_is_sent(settings, store):
    with CollectorServer(settings.with_overrides(max_body_bytes=4096), store) as srv:
        resp = raw_request(srv, b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                                b"Content-Length: 999999999\r\n\r\n")  # fmt: skip
        assert resp.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in resp
        resp = raw_request(
            srv, b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n\r\n"
        )
        assert resp.startswith(b"HTTP/1.1 411 ")
        assert send(srv, pb_body(1))[0] == 200


def test_unknown_paths_and_methods(server):
    status, _, body = send(server, b"{}", JSON, path="/v1/nothing")
    assert status == 404 and "no such endpoint: /v1/nothing" in json.loads(body)["message"]
    status, h, _ = send(server, None, None, path="/v1/traces", method="GET")
    assert (status, h["allow"]) == (405, "POST")
    status, h, _ = send(server, b"{}", JSON, path="/healthz")
    assert (status, h["allow"]) == (405, "GET")
    assert send(server, b"", None, path="/v1/traces", method="PUT")[0] == 405
    assert send(server, None, None, path="/nope", method="GET")[0] == 404
    assert send(server, pb_body(1))[0] == 200


def test_api_keys(settings, store):
    with CollectorServer(settings.with_overrides(api_keys="k-one, k-two"), store) as srv:
        body = pb_body(1, user="erin")
        for headers in (
            {},
            {"x-api-key": "wrong"},
            {"Authorization": "Bearer k-on"},
            {"Authorization": "k-one"},
        ):
            status, h, data = send(srv, body, headers=headers)
            assert status == 401, headers
            assert "invalid API key" in error_message(h, data) and h["www-authenticate"] == "Bearer"
        assert send(srv, body, headers={"Authorization": "Bearer k-two"})[0] == 200
        assert send(srv, body, headers={"x-api-key": "k-one"})[0] == 200
        assert send(srv, None, None, path="/healthz", method="GET")[0] == 200  # probes need no key
        exporter = OTLPSpanExporter(
            endpoint=f"{srv.url}/v1/traces", timeout=5, headers={"x-api-key": "k-two"}
        )
        assert exporter.export(make_trace(1, user="erin")) == SpanExportResult.SUCCESS
        exporter.shutdown()
        assert srv.batch.flush(10)
        assert 'llm_monitor_collector_requests_rejected_total{reason="unauthorized"} 4' in srv.metrics_text()
    assert store.scalar(f"SELECT count() FROM {store.table('spans')} FINAL WHERE user_id = 'erin'") == 4


def test_queue_full_answers_503_with_retry_after(settings):
    mem = MemoryWriter()
    # memory-only mode; with the spool a full queue spills to disk (tests/integration/test_collector_durability.py)
    tight = settings.with_overrides(queue_max_rows=5, batch_size=1000, flush_interval=3600, spool_dir="off")
    with CollectorServer(tight, writer=mem) as srv:
        assert send(srv, pb_body(4))[0] == 200  # 5 spans: the queue is now full
        status, h, data = send(srv, pb_body(1))
        assert status == 503 and h["retry-after"] == "1"
        assert "queue is full (2 spans refused)" in error_message(h, data)
        metrics = srv.metrics_text()
        assert 'llm_monitor_collector_spans_rejected_total{reason="queue_full"} 2' in metrics
        assert "llm_monitor_collector_queue_depth 5" in metrics
        assert srv.batch.flush(5)
        assert send(srv, pb_body(1))[0] == 200
    assert len(mem.rows()) == 7


def test_stop_writes_every_acknowledged_span(settings, store):
    lazy = settings.with_overrides(flush_interval=3600, batch_size=1_000_000)
    srv = CollectorServer(lazy, store)
    srv.start()
    statuses = []

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        for _ in range(5):
            statuses.append(send(srv, pb_body(9, user=f"u{k}"), conn=conn)[0])
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 30
    assert count(store) == 0  # nothing reached a flush trigger yet
    idle = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    assert send(srv, pb_body(0, user="idle"), conn=idle)[0] == 200  # ...and stays open, idle
    t0 = time.monotonic()
    assert srv.stop(10) is True
    assert time.monotonic() - t0 < 5  # an idle keep-alive connection does not hold up the stop
    idle.close()
    assert count(store) == 30 * 10 + 1
    with pytest.raises(OSError):
        send(srv, pb_body(1))


def test_stop_lets_an_in_flight_request_finish_and_writes_it(settings, store):
    srv = CollectorServer(settings.with_overrides(flush_interval=3600, batch_size=1_000_000), store)
    srv.start()
    body = pb_body(4, user="slow")
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    head = f"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: {PB}\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body[:100])  # the request is under way...
    time.sleep(0.1)
    stopper = threading.Thread(target=srv.stop, args=(10,))
    stopper.start()  # ...when the stop begins
    time.sleep(0.2)
    assert stopper.is_alive()  # it waits for the request
    sock.sendall(body[100:])
    resp = sock.recv(65536)
    sock.close()
    stopper.join(10)
    assert resp.startswith(b"HTTP/1.1 200 ")
    assert count(store, "user_id = 'slow'") == 5
    with pytest.raises(CollectorError, match="was stopped"):
        srv.start()


def _post_head(body: bytes) -> bytes:
    return f"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: {PB}\r\nContent-Length: {len(body)}\r\n\r\n".encode()


def _response(sock: socket.socket) -> bytes:
    out = b""
    while b"\r\n\r\n" not in out:
        chunk = sock.recv(65536)
        if not chunk:
            break
        out += chunk
    head, _, rest = out.partition(b"\r\n\r\n")
    n = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")).split(b":")[1])
    while len(rest) < n:
        rest += sock.recv(65536)
    return head


def test_a_large_body_trickling_in_is_read_whole_and_the_connection_stays_usable(server, store):
    """The body is read with one blocking receive after the bytes buffered with the headers: pieces with
    pauses between them, then a second request on the same connection."""
    body = pb_body(400, user="trickle")
    assert len(body) > 100_000
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(_post_head(body) + body[:10])
        for i in range(10, len(body), 60_000):
            time.sleep(0.02)
            s.sendall(body[i : i + 60_000])
        assert _response(s).startswith(b"HTTP/1.1 200 ")
        again = pb_body(2, user="again")
        s.sendall(_post_head(again) + again)
        assert _response(s).startswith(b"HTTP/1.1 200 ")
    wait_for(lambda: count(store, "user_id = 'trickle'") == 401 and count(store, "user_id = 'again'") == 3)


def test_a_body_cut_short_gets_400_and_nothing_of_it_is_stored(server, store):
    """The client closes its side mid-body: the one blocking receive returns what came, the request is
    refused as malformed, and the next request (another connection) is served."""
    body = pb_body(50, user="cut")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(_post_head(body) + body[:10])
        time.sleep(
            0.05
        )  # the header and 10 bytes are read first; the rest comes through the blocking receive
        s.sendall(body[10 : len(body) // 2])
        s.shutdown(socket.SHUT_WR)
        head = _response(s)
    assert head.startswith(b"HTTP/1.1 400 ")
    assert send(server, pb_body(2, user="after"))[0] == 200
    wait_for(lambda: count(store, "user_id = 'after'") == 3)
    assert count(store, "user_id = 'cut'") == 0


def test_a_stalled_body_gets_408_and_the_collector_keeps_serving(settings, store, monkeypatch):
    monkeypatch.setattr(server_mod._Handler, "timeout", 0.5)  # the idle timeout (60 s by default)
    srv = CollectorServer(settings, store)
    srv.start()
    try:
        body = pb_body(2, user="stalled")
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            t0 = time.monotonic()
            s.sendall(_post_head(body) + body[:20])  # ...and nothing more
            head = _response(s)
            assert head.startswith(b"HTTP/1.1 408 ") and time.monotonic() - t0 < 5
        assert send(srv, pb_body(2, user="next"))[0] == 200
        wait_for(lambda: count(store, "user_id = 'next'") == 3)
        assert count(store, "user_id = 'stalled'") == 0
        assert 'reason="timeout"' in srv.metrics_text()
    finally:
        srv.stop(10)


def test_healthz_and_metrics_report_the_write_path(server, store):
    for _ in range(3):
        assert send(server, pb_body(2))[0] == 200
    send(server, b"\xff", PB)
    assert server.batch.flush(10)
    status, h, body = send(server, None, None, path="/healthz", method="GET")
    health = json.loads(body)
    assert status == 200 and h["content-type"] == JSON
    spool = health.pop("spool")  # the write-ahead spool: details in test_collector_durability.py
    assert health.pop("backlog") == 0 and spool["max_bytes"] == 1 << 30 and spool["segments"] == 1
    assert health == {"status": "ok", "queue_depth": 0, "queue_capacity": 200_000, "received": 9, "written": 9,
                      "store": "ok"}  # fmt: skip
    status, h, body = send(server, None, None, path="/metrics", method="GET")
    text = body.decode()
    assert status == 200 and h["content-type"].startswith("text/plain; version=0.0.4")
    for line in (
        "llm_monitor_collector_spans_received_total 9",
        "llm_monitor_collector_spans_written_total 9",
        'llm_monitor_collector_requests_total{code="200"} 4',  # three posts and the /healthz
        'llm_monitor_collector_requests_total{code="400"} 1',
        'llm_monitor_collector_requests_rejected_total{reason="malformed"} 1',
        "llm_monitor_collector_queue_depth 0",
        "llm_monitor_collector_store_up 1",
        "# TYPE llm_monitor_collector_write_latency_seconds summary",
    ):
        assert line in text.splitlines(), line
    assert int(text.split("llm_monitor_collector_write_latency_seconds_count ")[1].split()[0]) >= 1


def _stage_cpu(server) -> dict[str, float]:
    text = send(server, None, None, path="/metrics", method="GET")[2].decode()
    prefix = 'llm_monitor_collector_stage_cpu_seconds_total{stage="'
    return {
        line[len(prefix) :].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


def test_metrics_split_the_request_threads_cpu_by_stage(server):
    """stage_cpu_seconds_total: every stage of /v1/traces, growing with work, never more than the
    process's own CPU; a request refused before decoding counts as "other" only."""
    stages = ["decode", "normalize", "price", "unmapped", "enrich", "queue", "free", "other"]
    before = _stage_cpu(server)
    assert list(before) == stages and all(v == 0 for v in before.values())
    cpu0 = time.process_time()
    for _ in range(5):
        assert send(server, pb_body(40))[0] == 200
    after = _stage_cpu(server)
    spent = time.process_time() - cpu0  # the server runs in this process: its threads are counted here
    assert all(after[s] > 0 for s in ("decode", "normalize", "enrich", "queue", "other")), after
    assert 0 < sum(after.values()) <= spent
    assert send(server, b"\xff", PB)[0] == 400
    bad = _stage_cpu(server)
    assert bad["other"] > after["other"] and {k: bad[k] for k in stages[:-1]} == {
        k: after[k] for k in stages[:-1]
    }


def test_store_outage_is_visible_and_recovers_without_loss(server, store):
    spans, away = store.table("spans"), store.table("spans_away")
    store.command(f"RENAME TABLE {spans} TO {away}")
    assert send(server, pb_body(3, user="frank"))[0] == 200  # still acknowledged: it is in the queue
    wait_for(
        lambda: json.loads(send(server, None, None, path="/healthz", method="GET")[2])["store"] == "down"
    )
    assert "llm_monitor_collector_store_up 0" in server.metrics_text()
    store.command(f"RENAME TABLE {away} TO {spans}")
    wait_for(lambda: server.batch.stats().written == 4)
    assert json.loads(send(server, None, None, path="/healthz", method="GET")[2])["store"] == "ok"
    assert count(store, "user_id = 'frank'") == 4


def test_port_zero_and_port_in_use(settings, store):
    with CollectorServer(settings.with_overrides(port=0), store) as a:
        assert a.port > 0 and a.url == f"http://127.0.0.1:{a.port}"
        clash = CollectorServer(settings.with_overrides(port=a.port), store)
        with pytest.raises(CollectorError, match=f"cannot listen on 127.0.0.1:{a.port}"):
            clash.start()
        assert send(a, pb_body(1))[0] == 200
