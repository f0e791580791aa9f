"""The native OTLP protobuf decoder (collectors/_otlp_native.c) against the upb one it replaces.

Differential: on the benchmark workload, the SDK fixture, hypothesis-generated well-formed requests
(every AnyValue type, events, links, status, resource and scope, unknown fields) and on truncated,
mutated and random bytes, both decoders must give the *same* outcome: identical spans (types included),
or both a MalformedPayload (HTTP 400). The native one must never crash on hostile input.
"""

from __future__ import annotations

import math
import random
import shutil
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from collectors import otlp
from collectors.otlp import MalformedPayload, Span
from collectors.testing import attributes_pb
from tests.unit.test_otlp_decode import NESTED, hand_request, sdk_request

try:
    from collectors import _otlp_native as native  # type: ignore[attr-defined]
except ImportError:
    if shutil.which("cc") or shutil.which("gcc"):  # this machine can build it: a missing module is a bug
        raise
    pytest.skip("native decoder not built: no C compiler on this machine", allow_module_level=True)
BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def canon(x: Any) -> Any:
    """A comparable rendering that keeps types apart (True vs 1, 1.0 vs 1) and NaN equal to itself."""
    if isinstance(x, (Span, otlp.SpanEvent)):
        return (type(x).__name__, *(canon(getattr(x, f.name)) for f in fields(x)))
    if isinstance(x, dict):
        return ("dict", [(canon(k), canon(v)) for k, v in x.items()])
    if isinstance(x, list):
        return ("list", [canon(v) for v in x])
    if isinstance(x, float):
        return ("float", "nan" if math.isnan(x) else repr(x))
    return (type(x).__name__, x)


def outcome(decode: Any, data: bytes) -> Any:
    try:
        return canon(decode(data))
    except MalformedPayload as e:
        assert str(e).startswith("body is not a valid protobuf ExportTraceServiceRequest (")
        return "malformed"


def same(data: bytes) -> Any:
    got = outcome(otlp.decode_traces_protobuf, data)
    assert got == outcome(otlp.decode_traces_upb, data)
    return got


def test_the_collector_uses_the_native_decoder():
    assert otlp._native is native


def test_resource_is_shared_per_resource_spans():
    spans = otlp.decode_traces_protobuf(sdk_request().SerializeToString())
    assert spans[0].resource is spans[1].resource
    same(sdk_request().SerializeToString())


def test_benchmark_workload_decodes_identically():
    sys.path.insert(0, str(BENCH))
    try:
        import workload
    finally:
        sys.path.remove(str(BENCH))
    for body in workload.requests(7, 100, 1_000, workload.base_time_ns()):
        assert len(same(body)[1]) == 100


def test_keys_and_short_values_come_back_exact_however_the_key_cache_collides():
    # attribute keys and short values go through a 1024-slot cache keyed by a hash of their bytes: more
    # distinct ones than slots, every length up to past the cached maximum, long shared prefixes, keys that
    # differ only in their last byte or their length; each decoded twice (the second time from the cache)
    prefix = "gen_ai.usage.details.tokens."
    keys = [prefix[:n] for n in range(len(prefix) + 1)]
    keys += [f"{prefix}{i}" for i in range(1500)] + [f"k{i:03d}x" for i in range(200)]
    keys += ["é" * n for n in (1, 4, 31, 32, 33)] + ["a" * n for n in (63, 64, 65, 200)]
    attrs = {k: f"v{i % 37}" if i % 2 else prefix[: i % 40] for i, k in enumerate(keys)}
    body = hand_request(attrs).SerializeToString()
    for _ in range(2):
        span = otlp.decode_traces_protobuf(body)[0]
        assert list(span.attributes.items()) == list(attrs.items())
    same(body)


def test_fixtures_decode_identically():
    got = same(hand_request(NESTED).SerializeToString())
    span = otlp.decode_traces_protobuf(hand_request(NESTED).SerializeToString())[0]
    assert span.attributes == NESTED and got != "malformed"
    assert same(b"") == ("list", [])


# --- hypothesis: well-formed requests --------------------------------------------------------------

_keys = st.text(max_size=12)
_scalars = (
    st.none()
    | st.text(max_size=30)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.booleans()
    | st.binary(max_size=8)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=10,
)
_attrs = st.dictionaries(_keys, _values, max_size=5)
_ids = st.binary(max_size=17)
_u64 = st.integers(min_value=0, max_value=2**64 - 1)


def _kvs(attrs: dict[str, Any]) -> list[KeyValue]:
    out = []
    for kv in attributes_pb({k: v for k, v in attrs.items() if v is not None}):
        out.append(kv)
    out.extend(KeyValue(key=k) for k, v in attrs.items() if v is None)  # a KeyValue without a value
    return out


@st.composite
def requests(draw: Any) -> bytes:
    req = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rs = req.resource_spans.add()
        if draw(st.booleans()):
            rs.resource.attributes.extend(_kvs(draw(_attrs)))
        rs.schema_url = draw(st.text(max_size=5))
        for _ in range(draw(st.integers(0, 2))):
            ss = rs.scope_spans.add()
            if draw(st.booleans()):
                ss.scope.name = draw(st.text(max_size=8))
                ss.scope.version = draw(st.text(max_size=5))
                ss.scope.attributes.extend(_kvs(draw(_attrs)))
            for _ in range(draw(st.integers(0, 3))):
                s = ss.spans.add()
                s.trace_id, s.span_id, s.parent_span_id = draw(_ids), draw(_ids), draw(_ids)
                s.trace_state = draw(st.text(max_size=5))
                s.name = draw(st.text(max_size=10))
                s.kind = draw(st.integers(-(2**31), 2**31 - 1))
                s.start_time_unix_nano, s.end_time_unix_nano = draw(_u64), draw(_u64)
                s.attributes.extend(_kvs(draw(_attrs)))
                s.flags = draw(st.integers(0, 2**32 - 1))
                for _ in range(draw(st.integers(0, 2))):
                    ev = s.events.add(name=draw(st.text(max_size=8)), time_unix_nano=draw(_u64))
                    ev.attributes.extend(_kvs(draw(_attrs)))
                for _ in range(draw(st.integers(0, 2))):
                    ln = s.links.add(trace_id=draw(_ids), span_id=draw(_ids), trace_state="k=v")
                    ln.attributes.extend(_kvs(draw(_attrs)))
                if draw(st.booleans()):
                    s.status.code = draw(st.integers(-(2**31), 2**31 - 1))
                    s.status.message = draw(st.text(max_size=10))
    data = req.SerializeToString()
    # unknown fields of every wire type appended at the top level (OTLP says ignore them)
    return data + draw(st.sampled_from([b"", b"\x78\x05", b"\x81\x01" + b"\0" * 8, b"\xfa\x01\x02hi"]))


@settings(max_examples=120, deadline=None)
@given(requests())
def test_random_well_formed_requests_decode_identically(data):
    assert same(data) != "malformed"


@settings(max_examples=120, deadline=None)
@given(requests(), st.data())
def test_truncated_and_mutated_requests_get_the_same_outcome(data, draw):
    if data:
        cut = draw.draw(st.integers(0, len(data) - 1))
        same(data[:cut])
        pos = draw.draw(st.integers(0, len(data) - 1))
        same(data[:pos] + bytes([draw.draw(st.integers(0, 255))]) + data[pos + 1 :])


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_get_the_same_outcome(data):
    same(data)


# --- hand-made edge cases ---------------------------------------------------------------------------


def _wrap_span(span_bytes: bytes) -> bytes:
    def ld(field: int, b: bytes) -> bytes:
        return _varint(field << 3 | 2) + _varint(len(b)) + b

    return ld(1, ld(2, ld(2, span_bytes)))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


@pytest.mark.parametrize(
    "span_bytes",
    [
        b"\x2a\x02\xff\xfe",  # name with invalid UTF-8
        b"\x2a\x02\xed\xa0",  # name with an encoded surrogate
        b"\x1a\x02\xff\xfe",  # trace_state (not kept) with invalid UTF-8
        b"\x2a\x05ab",  # length past the end
        b"\x30" + b"\xff" * 10 + b"\x01",  # varint longer than 10 bytes
        b"\x07",  # wire type 7
        b"\x0c",  # end-group without a start
        b"\x0b\x10\x01",  # unterminated group
        b"\x0b\x14",  # mismatched end-group
        b"\x00\x01",  # field number 0
        b"\x30\x01" * 3 + b"\x2a\x01x" + b"\x2a\x01y",  # repeated scalars: the last wins
        b"\x7a\x02\x10\x02\x7a\x04\x12\x02ok",  # status twice: the occurrences merge
        b"\x4a\x00",  # a KeyValue with neither key nor value
        b"\x4a\x05\x0a\x01k\x12\x00",  # a value with no member set
        b"\x4a\x07\x0a\x01k\x12\x02\x40\x03",  # string_value_strindex
        b"\x4a\x0b\x0a\x01k\x12\x06\x0a\x01a\x18\x05",  # oneof: the last member wins
        b"\x4a\x0d\x0a\x01k\x12\x08\x2a\x02\x0a\x00\x2a\x02\x0a\x00",  # array_value twice: merged
        b"\x30\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",  # kind: a 10-byte varint, truncated to int32
        b"\x0b\x13\x1b\x1c\x14",  # nested unknown groups
        b"\x0b\x00\x00\x0c",  # field number 0 inside an unknown group: skipped (upb does)
        b"\x4a\x0b\x73\x01" + b"\x00" * 8 + b"\x74",  # the same inside a KeyValue (found by fuzzing)
        b"\x38\x01",  # start time with the wrong wire type: an unknown field
    ],
)
def test_edge_cases_match_upb(span_bytes):
    same(_wrap_span(span_bytes))


def _nested_array(depth: int, inner: AnyValue) -> AnyValue:
    v = inner
    for _ in range(depth):
        a = AnyValue()
        a.array_value.values.add().CopyFrom(v)
        v = a
    return v


@pytest.mark.parametrize("depth", [46, 47, 48, 200])
def test_nesting_limit_is_upbs(depth):
    empty = AnyValue()
    empty.array_value.SetInParent()
    for inner in (AnyValue(string_value="leaf"), empty):
        req = hand_request({})
        req.resource_spans[0].scope_spans[0].spans[0].attributes.add(key="a").value.CopyFrom(
            _nested_array(depth, inner)
        )
        got = same(req.SerializeToString())
        assert (got == "malformed") == (depth >= 48)  # upb: at most 101 levels of messages


def test_mutation_fuzz_never_crashes():
    """5,000 seeded byte mutations of real requests: same outcome as upb, and no crash."""
    rng = random.Random(1234)
    seeds = [hand_request(NESTED).SerializeToString(), sdk_request().SerializeToString()]
    for _ in range(5_000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            pos = rng.randrange(len(data))
            if op < 0.5:
                data[pos] = rng.randrange(256)
            elif op < 0.75:
                del data[pos : pos + rng.randint(1, 8)]
            else:
                data[pos:pos] = rng.randbytes(rng.randint(1, 4))
            if not data:
                break
        same(bytes(data))
