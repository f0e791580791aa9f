"""OTLP decoding: protobuf and OTLP/JSON reach the same Span objects; bad input is a clear RequestError."""

from __future__ import annotations

import base64
import gzip
import json
import math
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from collectors import otlp
from collectors.otlp import MalformedPayload, PayloadTooLarge, UnsupportedMedia
from collectors.testing import any_value_json, any_value_pb, attributes_pb, request_to_json

TRACE_HEX = "5b8efff798038103d269b633813fc60c"
SPAN_HEX = "eee19b7ec3c1b174"
PARENT_HEX = "eee19b7ec3c1b173"


def sdk_request() -> ExportTraceServiceRequest:
    """Two spans (parent/child) from the real OTel SDK, one with an error status and an exception event."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout", "team.size": 4}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("my.lib", "1.2.3")
    with tracer.start_as_current_span("parent", kind=SpanKind.SERVER) as parent:
        parent.set_attribute("http.route", "/pay")
        with tracer.start_as_current_span("child", kind=SpanKind.CLIENT) as child:
            child.set_attribute("tags", ["a", "b"])
            child.set_attribute("ratio", 0.25)
            child.set_attribute("ok", True)
            child.record_exception(ValueError("boom"))
            child.set_status(Status(StatusCode.ERROR, "it broke"))
    return encode_spans(exporter.get_finished_spans())


def hand_request(attrs: dict) -> ExportTraceServiceRequest:
    """One span with exactly ``attrs`` (any AnyValue shape) and fixed ids/times."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(attributes_pb({"service.name": "svc"}))
    ss = rs.scope_spans.add()
    ss.scope.name = "scope"
    span = ss.spans.add()
    span.trace_id = bytes.fromhex(TRACE_HEX)
    span.span_id = bytes.fromhex(SPAN_HEX)
    span.parent_span_id = bytes.fromhex(PARENT_HEX)
    span.name = "op"
    span.kind = trace_pb2.Span.SPAN_KIND_CLIENT
    span.start_time_unix_nano = 1_700_000_000_123_456_789
    span.end_time_unix_nano = 1_700_000_001_000_000_000
    span.attributes.extend(attributes_pb(attrs))
    span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    span.status.message = "bad"
    return req


NESTED = {
    "s": "text",
    "i": 9_007_199_254_740_993,  # beyond float precision: must survive as an int (JSON sends a string)
    "neg": -5,
    "d": 1.5,
    "b": False,
    "arr": ["x", 1, 2.5, True, ["deep"], {"k": "v"}],
    "kv": {"role": "user", "parts": [{"type": "text", "content": "hi"}]},
    "bytes": b"\x00\xffraw",
    "empty_arr": [],
}


# --- protobuf --------------------------------------------------------------------------------------


def test_protobuf_from_the_sdk_decodes_every_field():
    req = sdk_request()
    spans = otlp.decode_traces(req.SerializeToString(), otlp.PROTOBUF)
    assert [s.name for s in spans] == ["child", "parent"]
    child, parent = spans
    assert len(child.trace_id) == 32 and child.trace_id == parent.trace_id
    assert child.trace_id == req.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
    assert child.parent_span_id == parent.span_id and parent.parent_span_id == ""
    assert child.kind == 3 and parent.kind == 2
    assert child.attributes == {"tags": ["a", "b"], "ratio": 0.25, "ok": True}
    assert child.status_code == 2 and child.status_message == "it broke"
    assert parent.status_code == 0
    assert child.start_time_unix_nano >= parent.start_time_unix_nano
    assert child.end_time_unix_nano <= parent.end_time_unix_nano
    [event] = child.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "boom"
    assert event.time_unix_nano > 0
    assert child.resource["service.name"] == "checkout" and child.resource["team.size"] == 4
    assert child.resource is parent.resource  # one dict per ResourceSpans, shared
    assert (child.scope_name, child.scope_version) == ("my.lib", "1.2.3")


def test_protobuf_nested_anyvalues_become_plain_python():
    [span] = otlp.decode_traces_protobuf(hand_request(NESTED).SerializeToString())
    assert span.attributes == NESTED
    assert span.trace_id == TRACE_HEX and span.span_id == SPAN_HEX and span.parent_span_id == PARENT_HEX
    assert span.start_time_unix_nano == 1_700_000_000_123_456_789


def test_empty_protobuf_request_is_valid_and_empty():
    assert otlp.decode_traces_protobuf(b"") == []


@pytest.mark.parametrize("garbage", [b"\xff\xff\xff\xff\xff", b"\x0a\x05ab", b'{"resourceSpans": []}'])
def test_garbage_protobuf_is_malformed(garbage):
    with pytest.raises(MalformedPayload, match="not a valid protobuf ExportTraceServiceRequest"):
        otlp.decode_traces_protobuf(garbage)


def test_value_nesting_beyond_the_limit_is_rejected():
    deep: object = "leaf"
    for _ in range(otlp.MAX_VALUE_DEPTH + 2):
        deep = [deep]
    with pytest.raises(MalformedPayload, match="nested deeper"):
        otlp.decode_traces_json(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
            {"traceId": TRACE_HEX, "spanId": SPAN_HEX, "attributes": [{"key": "x", "value": any_value_json(deep)}]}
        ]}]}]}).encode())  # fmt: skip


# --- OTLP/JSON -------------------------------------------------------------------------------------


def test_json_and_protobuf_decode_identically():
    req = sdk_request()
    from_pb = otlp.decode_traces_protobuf(req.SerializeToString())
    from_json = otlp.decode_traces_json(json.dumps(request_to_json(req)).encode())
    assert from_json == from_pb


def test_json_nested_anyvalues_hex_ids_and_string_int64():
    doc = request_to_json(hand_request(NESTED))
    text = json.dumps(doc)
    assert f'"traceId": "{TRACE_HEX}"' in text and '"startTimeUnixNano": "1700000000123456789"' in text
    [span] = otlp.decode_traces_json(text.encode())
    assert span.attributes == NESTED
    assert span.trace_id == TRACE_HEX and span.parent_span_id == PARENT_HEX
    assert span.start_time_unix_nano == 1_700_000_000_123_456_789
    assert span.status_code == 2 and span.kind == 3


def test_json_accepts_enum_names_numbers_snake_case_uppercase_hex_and_base64_ids():
    doc = {
        "resource_spans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"string_value": "svc"}}]},
            "scope_spans": [{
                "scope": {"name": "lib"},
                "spans": [{
                    "trace_id": TRACE_HEX.upper(),
                    "spanId": base64.b64encode(bytes.fromhex(SPAN_HEX)).decode(),
                    "name": "n",
                    "kind": "SPAN_KIND_INTERNAL",
                    "startTimeUnixNano": 1700000000000000000,
                    "endTimeUnixNano": "1700000000500000000",
                    "attributes": [
                        {"key": "n", "value": {"intValue": 7}},
                        {"key": "f", "value": {"doubleValue": "NaN"}},
                        {"key": "g", "value": {"doubleValue": 3}},
                        {"key": "none", "value": {}},
                    ],
                    "status": {"code": "STATUS_CODE_OK"},
                }],
            }],
        }]
    }  # fmt: skip
    [span] = otlp.decode_traces_json(json.dumps(doc).encode())
    assert span.trace_id == TRACE_HEX and span.span_id == SPAN_HEX
    assert span.kind == 1 and span.status_code == 1 and span.scope_name == "lib"
    assert span.resource == {"service.name": "svc"}
    assert span.end_time_unix_nano - span.start_time_unix_nano == 500_000_000
    assert span.attributes["n"] == 7 and span.attributes["g"] == 3.0 and span.attributes["none"] is None
    assert math.isnan(span.attributes["f"])


def test_json_lone_surrogates_are_replaced_so_the_store_can_encode_them():
    span_json = (
        f'{{"traceId":"{TRACE_HEX}","spanId":"{SPAN_HEX}","name":"a\\ud800b",'
        '"attributes":[{"key":"k","value":{"stringValue":"x\\udfffy \\ud83d\\ude00"}}]}'
    )
    doc = '{"resourceSpans":[{"scopeSpans":[{"spans":[' + span_json + "]}]}]}"
    [span] = otlp.decode_traces_json(doc.encode())
    assert span.name == "a?b"
    assert span.attributes["k"] == "x?y \U0001f600"  # a valid pair survives
    span.name.encode("utf-8")


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"resourceSpans": {}}', "resourceSpans: expected a list"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}',
         "resourceSpans[0].scopeSpans[0].spans[0].traceId: expected 32 hex digits"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
         "startTimeUnixNano: expected an integer"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": {"a": 1}}]}]}]}',
         "attributes: expected a list"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [{"key": "a", "value": {"boolValue": "yes"}}]}]}]}]}',
         "boolValue: expected true or false"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "-1"}]}]}]}', "out of range"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)  # fmt: skip
def test_malformed_json_names_the_problem(body, where):
    with pytest.raises(MalformedPayload) as e:
        otlp.decode_traces_json(body)
    assert where in str(e.value)
    assert e.value.status == 400


# --- content negotiation and compression -----------------------------------------------------------


def test_media_types():
    assert otlp.media_type("application/x-protobuf") == otlp.PROTOBUF
    assert otlp.media_type("application/protobuf") == otlp.PROTOBUF
    assert otlp.media_type("Application/JSON; charset=utf-8") == otlp.JSON
    for bad in ("text/plain", "", None, "application/grpc"):
        with pytest.raises(UnsupportedMedia) as e:
            otlp.media_type(bad)
        assert e.value.status == 415


def test_gzip_roundtrip_and_multi_member():
    raw = sdk_request().SerializeToString()
    assert otlp.decompress(gzip.compress(raw), "gzip", 1 << 20) == raw
    assert otlp.decompress(gzip.compress(raw[:10]) + gzip.compress(raw[10:]), "GZIP", 1 << 20) == raw
    assert otlp.decompress(raw, None, 1 << 20) == raw
    assert otlp.decompress(raw, "identity", 1 << 20) == raw


def test_gzip_bomb_is_refused_without_inflating_it():
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)  # 64 MiB of zeros in ~64 KiB
    assert len(bomb) < 200_000
    with pytest.raises(PayloadTooLarge, match="inflates beyond the limit of 1048576 bytes") as e:
        otlp.decompress(bomb, "gzip", 1 << 20)
    assert e.value.status == 413


def test_gzip_exactly_at_the_limit_passes():
    data = b"x" * 5000
    assert otlp.decompress(gzip.compress(data), "gzip", 5000) == data
    with pytest.raises(PayloadTooLarge):
        otlp.decompress(gzip.compress(data), "gzip", 4999)
    with pytest.raises(PayloadTooLarge):
        otlp.decompress(data, "identity", 4999)


@pytest.mark.parametrize(
    "body",
    [
        b"not gzip at all",
        gzip.compress(b"hello world" * 100)[:-12],
        b"",
        gzip.compress(b"ok") + b"trailing junk",
    ],
)
def test_bad_gzip_is_malformed(body):
    with pytest.raises(MalformedPayload, match="invalid gzip body"):
        otlp.decompress(body, "gzip", 1 << 20)


def test_unsupported_encoding():
    with pytest.raises(UnsupportedMedia, match="Content-Encoding 'br'"):
        otlp.decompress(zlib.compress(b"x"), "br", 1 << 20)


def test_response_bodies():
    assert otlp.encode_response(otlp.PROTOBUF) == b""
    assert json.loads(otlp.encode_response(otlp.JSON)) == {}


# --- properties ------------------------------------------------------------------------------------

_keys = st.text(min_size=1, max_size=8)
_scalars = (
    st.text(max_size=20)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.booleans()
    | st.binary(max_size=8)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=6))
def test_any_value_trees_survive_both_encodings(attrs):
    req = hand_request(attrs)
    [pb] = otlp.decode_traces_protobuf(req.SerializeToString())
    [js] = otlp.decode_traces_json(json.dumps(request_to_json(req)).encode())
    assert pb.attributes == attrs
    assert js.attributes == attrs


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_but_malformed(data):
    for fmt in (otlp.PROTOBUF, otlp.JSON):
        try:
            otlp.decode_traces(data, fmt)
        except MalformedPayload:
            pass


def test_any_value_helpers_agree():
    assert (
        any_value_pb({"a": [1, "x"]}).kvlist_value.values[0].value.array_value.values[1].string_value == "x"
    )
    assert any_value_json(5) == {"intValue": "5"}
