"""Property-based fuzzing of the live receiver (issue 3 item 5).

Hypothesis throws two kinds of input at a real CollectorServer on 127.0.0.1:
- random bytes, declared as protobuf, JSON or gzip: every answer is a 4xx (or 200 when the bytes happen
  to be a valid empty message), never a 5xx, never a dropped connection;
- random *well-formed but weird* OTLP built as protobuf messages (any AnyValue type under GenAI keys,
  odd ids, times, status codes, huge or empty strings): every answer is 200 and every span becomes exactly
  one row whose columns have the store's types.
After each example a known-good request must still succeed, so no input disturbs the ones after it.
"""

from __future__ import annotations

import gzip
import http.client
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from collectors.server import CollectorServer
from collectors.writer import MemoryWriter
from monitor import semconv as sc

PB = "application/x-protobuf"
JSON = "application/json"
GENAI_KEYS = sorted(v for v in vars(sc).values() if isinstance(v, str) and "." in v and not v.endswith("."))
KEYS = st.one_of(st.sampled_from(GENAI_KEYS), st.text(string.printable, max_size=40))


def _any_value(depth: int = 0) -> st.SearchStrategy[AnyValue]:
    scalars = st.one_of(
        st.text(max_size=300).map(lambda s: AnyValue(string_value=s)),
        st.integers(-(2**63), 2**63 - 1).map(lambda i: AnyValue(int_value=i)),
        st.floats(allow_nan=True, allow_infinity=True).map(lambda f: AnyValue(double_value=f)),
        st.booleans().map(lambda b: AnyValue(bool_value=b)),
        st.binary(max_size=40).map(lambda b: AnyValue(bytes_value=b)),
        st.sampled_from(
            ['[{"role":"user","parts":[{"type":"text","content":"hi"}]}]', "{", "[]", "null", '{"a":1}']
        ).map(lambda s: AnyValue(string_value=s)),
        st.just(AnyValue()),
    )
    if depth >= 2:
        return scalars
    inner = st.deferred(lambda: _any_value(depth + 1))
    return st.one_of(
        scalars,
        st.lists(inner, max_size=4).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs))),
        st.lists(st.tuples(KEYS, inner), max_size=4).map(
            lambda kvs: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs]))
        ),
    )


ATTRS = st.lists(st.tuples(KEYS, _any_value()), max_size=10).map(
    lambda kvs: [KeyValue(key=k, value=v) for k, v in kvs]
)
SPAN = st.builds(
    lambda tid, sid, pid, name, start, dur, code, msg, attrs: Span(
        trace_id=tid, span_id=sid, parent_span_id=pid, name=name, start_time_unix_nano=start,
        end_time_unix_nano=(start + dur) % 2**64, status=Status(code=code, message=msg), attributes=attrs,
    ),
    # ids of another length are malformed (the OTel Collector rejects them too); all-zero ids are "weird"
    st.one_of(st.binary(min_size=16, max_size=16), st.just(b"\x00" * 16)),
    st.one_of(st.binary(min_size=8, max_size=8), st.just(b"\x00" * 8)),
    st.one_of(st.just(b""), st.binary(min_size=8, max_size=8)),
    st.text(max_size=60),
    st.one_of(st.integers(0, 2**64 - 1), st.just(1_763_700_000_000_000_000)),
    st.integers(0, 10**12),
    st.integers(0, 2),  # protobuf enums are open, but the SDK only ever sends 0..2
    st.text(max_size=50),
    ATTRS,
)  # fmt: skip
REQUEST = st.lists(st.tuples(ATTRS, st.lists(SPAN, min_size=1, max_size=5)), min_size=1, max_size=3).map(
    lambda groups: ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(resource={"attributes": res}, scope_spans=[ScopeSpans(spans=spans)])
            for res, spans in groups
        ]
    )
)
GOOD = ExportTraceServiceRequest(
    resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[
        Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="good", start_time_unix_nano=1_763_700_000_000_000_000,
             end_time_unix_nano=1_763_700_001_000_000_000)])])]
).SerializeToString()  # fmt: skip


@pytest.fixture(scope="module")
def server():
    from monitor.settings import Settings

    s = Settings.load({"port": 0, "flush_interval": 0.05, "max_body_bytes": 1 << 20}, environ={})
    writer = MemoryWriter()
    srv = CollectorServer(s, writer=writer)
    srv.start()
    yield srv, writer
    srv.stop()


def _post(port: int, body: bytes, ctype: str, encoding: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": ctype}
    if encoding:
        headers["Content-Encoding"] = encoding
    try:
        conn.request("POST", "/v1/traces", body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _still_serving(port: int) -> None:
    status, _ = _post(port, GOOD, PB)
    assert status == 200


FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(body=st.binary(max_size=2000), ctype=st.sampled_from([PB, JSON]), gz=st.booleans())
def test_random_bytes_get_a_4xx_and_never_disturb_the_server(
    server, body: bytes, ctype: str, gz: bool
) -> None:
    srv, _ = server
    status, payload = _post(srv.port, body, ctype, "gzip" if gz else None)
    assert status in (200, 400, 413), (status, payload[:200])
    if status == 400 and ctype == JSON:
        assert json.loads(payload)["message"]  # a clear reason, not an empty error
    _still_serving(srv.port)


@FUZZ
@given(req=REQUEST, as_json=st.booleans(), gz=st.booleans())
def test_weird_but_well_formed_otlp_is_accepted_one_row_per_span(
    server, req, as_json: bool, gz: bool
) -> None:
    from collectors.testing import request_to_json

    srv, writer = server
    sent = {
        (sp.trace_id.hex(), sp.span_id.hex())
        for rs in req.resource_spans
        for ss in rs.scope_spans
        for sp in ss.spans
    }
    if as_json:
        try:
            body, ctype = json.dumps(request_to_json(req)).encode(), JSON
        except ValueError:  # NaN/inf doubles have no JSON form; the protobuf case covers them
            body, ctype = req.SerializeToString(), PB
    else:
        body, ctype = req.SerializeToString(), PB
    if gz:
        body = gzip.compress(body)
    assert srv.batch.flush(10)
    seen_before = {(r["trace_id"], r["span_id"]) for r in writer.rows("spans")}
    before = len(writer.rows("spans"))
    status, payload = _post(srv.port, body, ctype, "gzip" if gz else None)
    assert status == 200, payload[:300]
    assert srv.batch.flush(10)
    rows = writer.rows("spans")[before:]
    # every span sent became a row; any other new row is enrichment re-emitting a span seen before
    new_ids = {(r["trace_id"], r["span_id"]) for r in rows}
    assert sent <= new_ids, sent - new_ids
    assert new_ids - sent <= seen_before
    for r in rows:
        assert r["kind"] in sc.KINDS and r["status"] in ("ok", "error", "unset")
        assert isinstance(r["input_text"], str) and isinstance(r["output_text"], str)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in r["attributes"].items())
        assert r["input_tokens"] >= 0 and r["output_tokens"] >= 0 and r["total_tokens"] >= 0
        assert r["start_time"] <= r["end_time"]
    _still_serving(srv.port)
