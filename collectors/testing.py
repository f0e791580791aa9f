"""Payload builders for tests, benchmarks and the demo: the inverse of :mod:`collectors.otlp`.

The OTel SDK can only put primitives and primitive arrays in span attributes, yet real senders also
ship kvlists, nested arrays and bytes (structured ``gen_ai.*.messages``), and OTLP/JSON has no encoder
in the SDK at all. These helpers produce both wire forms from plain Python values, so tests can assert
that protobuf and JSON decode to the same thing.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


def any_value_pb(v: Any) -> AnyValue:
    """A protobuf AnyValue for a Python value (list → array, dict → kvlist, bytes → bytes)."""
    out = AnyValue()
    if v is None:
        return out
    if isinstance(v, bool):
        out.bool_value = v
    elif isinstance(v, int):
        out.int_value = v
    elif isinstance(v, float):
        out.double_value = v
    elif isinstance(v, str):
        out.string_value = v
    elif isinstance(v, (bytes, bytearray)):
        out.bytes_value = bytes(v)
    elif isinstance(v, (list, tuple)):
        out.array_value.values.extend(any_value_pb(x) for x in v)
    elif isinstance(v, Mapping):
        out.kvlist_value.values.extend(KeyValue(key=k, value=any_value_pb(x)) for k, x in v.items())
    else:
        raise TypeError(f"no AnyValue for {type(v).__name__}")
    return out


def attributes_pb(attrs: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value_pb(v)) for k, v in attrs.items()]


def any_value_json(v: Any) -> dict[str, Any]:
    """An OTLP/JSON AnyValue (int64 as a decimal string, as the protobuf JSON mapping writes it)."""
    if v is None:
        return {}
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, str):
        return {"stringValue": v}
    if isinstance(v, (bytes, bytearray)):
        return {"bytesValue": base64.b64encode(bytes(v)).decode("ascii")}
    if isinstance(v, (list, tuple)):
        return {"arrayValue": {"values": [any_value_json(x) for x in v]}}
    if isinstance(v, Mapping):
        return {"kvlistValue": {"values": attributes_json(v)}}
    raise TypeError(f"no AnyValue for {type(v).__name__}")


def attributes_json(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": any_value_json(v)} for k, v in attrs.items()]


def _pb_any_to_py(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_pb_any_to_py(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _pb_any_to_py(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which)


def _attrs_json(kvs: Any) -> list[dict[str, Any]]:
    return [{"key": kv.key, "value": any_value_json(_pb_any_to_py(kv.value))} for kv in kvs]


def request_to_json(req: ExportTraceServiceRequest) -> dict[str, Any]:
    """OTLP/JSON for a protobuf request: hex ids, int64 as strings, enums as integers (the OTLP spec)."""
    out = []
    for rs in req.resource_spans:
        scopes = []
        for ss in rs.scope_spans:
            spans = []
            for s in ss.spans:
                span: dict[str, Any] = {
                    "traceId": s.trace_id.hex(),
                    "spanId": s.span_id.hex(),
                    "name": s.name,
                    "kind": s.kind,
                    "startTimeUnixNano": str(s.start_time_unix_nano),
                    "endTimeUnixNano": str(s.end_time_unix_nano),
                    "attributes": _attrs_json(s.attributes),
                    "events": [
                        {
                            "timeUnixNano": str(e.time_unix_nano),
                            "name": e.name,
                            "attributes": _attrs_json(e.attributes),
                        }
                        for e in s.events
                    ],
                    "status": {"code": s.status.code, "message": s.status.message},
                }
                if s.parent_span_id:
                    span["parentSpanId"] = s.parent_span_id.hex()
                spans.append(span)
            scopes.append({"scope": {"name": ss.scope.name, "version": ss.scope.version}, "spans": spans})
        out.append({"resource": {"attributes": _attrs_json(rs.resource.attributes)}, "scopeSpans": scopes})
    return {"resourceSpans": out}
