"""OTLP/HTTP trace payloads → light Python objects the normalizers read.

Two wire forms reach ``POST /v1/traces``: protobuf (what every OTel SDK exporter sends by default) and
OTLP/JSON (curl, browsers, some collectors). Both decode to the same :class:`Span` list so nothing
downstream knows which one arrived. Attribute values become plain Python values (str, int, float, bool,
bytes, list for arrays, dict for kvlists): normalizers then never touch protobuf classes.

OTLP/JSON differs from the generic protobuf JSON mapping in ways a stock parser gets wrong: trace and span
ids are **hex** strings (not base64), int64 fields may arrive as decimal strings, enums as ints (or their
names, which we also accept), and keys are lowerCamelCase (snake_case accepted too, as protobuf parsers do).

Errors are :class:`RequestError` subclasses carrying the HTTP status the server answers with, so the server
maps them without knowing what went wrong where: 400 malformed, 413 too large, 415 unsupported type/encoding.
This module is pure (no I/O) and safe to call from many threads at once.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import zlib
from dataclasses import dataclass, field, fields
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

# AnyValue nesting deeper than this is rejected: real telemetry never comes close, abuse does.
MAX_VALUE_DEPTH = 64

PROTOBUF = "protobuf"
JSON = "json"
CONTENT_TYPES = {
    "application/x-protobuf": PROTOBUF,
    "application/protobuf": PROTOBUF,
    "application/json": JSON,
}


class RequestError(Exception):
    """A request the collector refuses; ``status`` is the HTTP code, ``str(err)`` a one-line reason."""

    status = 400
    reason = "malformed"  # label of the rejected-requests metric


class MalformedPayload(RequestError):
    status = 400
    reason = "malformed"


class PayloadTooLarge(RequestError):
    status = 413
    reason = "too_large"


class UnsupportedMedia(RequestError):
    status = 415
    reason = "unsupported_media"


@dataclass(slots=True)
class SpanEvent:
    name: str
    time_unix_nano: int
    attributes: dict[str, Any]


@dataclass(slots=True)
class Span:
    """One decoded span. ``resource`` is shared by every span of its ResourceSpans: never mutate it.

    The protobuf decoder builds it positionally (0.7 µs/span cheaper than keywords): append new fields at
    the end, never reorder.
    """

    trace_id: str  # lowercase hex, "" when absent
    span_id: str
    parent_span_id: str
    name: str
    kind: int  # OTLP SpanKind number (0 unspecified … 5 consumer); normalizers must not rely on it
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: dict[str, Any]
    events: list[SpanEvent] = field(default_factory=list)
    status_code: int = 0  # 0 unset, 1 ok, 2 error
    status_message: str = ""
    resource: dict[str, Any] = field(default_factory=dict)
    scope_name: str = ""
    scope_version: str = ""


# --- content negotiation ---------------------------------------------------------------------------


def media_type(content_type: str | None) -> str:
    """``PROTOBUF`` or ``JSON`` for a Content-Type header (parameters such as charset ignored)."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    fmt = CONTENT_TYPES.get(base)
    if fmt is None:
        shown = base or "none"
        raise UnsupportedMedia(
            f"unsupported Content-Type {shown!r}: send application/x-protobuf or application/json"
        )
    return fmt


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body with its Content-Encoding undone, refusing to grow past ``limit`` bytes.

    Inflating is bounded (``max_length``) rather than checked afterwards, so a gzip bomb costs at most
    ``limit`` bytes of memory before it is refused. Concatenated gzip members are accepted (RFC 1952).
    """
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity"):
        if len(body) > limit:
            raise PayloadTooLarge(f"body of {len(body)} bytes exceeds the limit of {limit} bytes")
        return body
    if enc not in ("gzip", "x-gzip"):
        raise UnsupportedMedia(f"unsupported Content-Encoding {encoding!r}: use gzip or identity")
    out: list[bytes] = []
    total = 0
    data = body
    try:
        while True:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            chunk = d.decompress(data, limit - total + 1)
            total += len(chunk)
            if total > limit:
                raise PayloadTooLarge(f"gzip body inflates beyond the limit of {limit} bytes")
            out.append(chunk)
            if not d.eof:
                raise MalformedPayload("invalid gzip body: truncated stream")
            data = d.unused_data
            if not data.strip(b"\x00"):
                break
    except zlib.error as e:
        raise MalformedPayload(f"invalid gzip body: {e}") from None
    return b"".join(out)


def decode_traces(body: bytes, fmt: str) -> list[Span]:
    """Decode an ExportTraceServiceRequest in ``fmt`` (``PROTOBUF`` or ``JSON``)."""
    return decode_traces_protobuf(body) if fmt == PROTOBUF else decode_traces_json(body)


def encode_response(fmt: str) -> bytes:
    """A full-success ExportTraceServiceResponse in the request's encoding."""
    return _EMPTY_RESPONSE_PB if fmt == PROTOBUF else b"{}"


_EMPTY_RESPONSE_PB = ExportTraceServiceResponse().SerializeToString()


# --- protobuf ----------------------------------------------------------------------------------------

_PB_SCALARS = frozenset(("string_value", "int_value", "double_value", "bool_value", "bytes_value"))


def _pb_value(v: Any, depth: int = 0) -> Any:
    which = v.WhichOneof("value")
    if which in _PB_SCALARS:
        return getattr(v, which)
    if which is None:
        return None
    if depth >= MAX_VALUE_DEPTH:
        raise MalformedPayload(f"attribute value nested deeper than {MAX_VALUE_DEPTH} levels")
    if which == "array_value":
        return [_pb_value(x, depth + 1) for x in v.array_value.values]
    return {kv.key: _pb_value(kv.value, depth + 1) for kv in v.kvlist_value.values}


def _pb_attrs(kvs: Any) -> dict[str, Any]:
    # The hot loop of decoding (most of a span's cost). Most attribute values are non-empty strings, so
    # one field read settles them; only the rest pay for WhichOneof. Empty strings take the slow path and
    # still come out as "". benchmarks/collector_throughput.py measures this.
    out: dict[str, Any] = {}
    for kv in kvs:
        v = kv.value
        x = v.string_value
        if x:
            out[kv.key] = x
        else:
            which = v.WhichOneof("value")
            out[kv.key] = getattr(v, which) if which in _PB_SCALARS else _pb_value(v)
    return out


def decode_traces_protobuf(data: bytes) -> list[Span]:
    """Decode a protobuf ExportTraceServiceRequest (unknown fields ignored, as OTLP requires).

    The native decoder (``collectors/_otlp_native.c``, ≈5x faster) when it is built, else upb; both give
    identical spans and refuse the same bodies (tests/unit/test_otlp_native.py).
    """
    if _native is not None:
        try:
            spans: list[Span] = _native.decode_traces(data)
        except ValueError as e:
            raise MalformedPayload(f"body is not a valid protobuf ExportTraceServiceRequest ({e})") from None
        return spans
    return decode_traces_upb(data)


def decode_traces_upb(data: bytes) -> list[Span]:
    """The upb (protobuf package) decoder: the fallback, and the reference the native one is tested against."""
    try:
        req = ExportTraceServiceRequest.FromString(data)
    except (DecodeError, RecursionError) as e:
        raise MalformedPayload(f"body is not a valid protobuf ExportTraceServiceRequest ({e})") from None
    spans: list[Span] = []
    append = spans.append
    for rs in req.resource_spans:
        resource = _pb_attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope = ss.scope
            scope_name = scope.name
            scope_version = scope.version
            for s in ss.spans:
                st = s.status
                events = s.events
                # positional: keyword arguments cost measurably at 100k spans/s (order of Span's fields)
                append(
                    Span(
                        s.trace_id.hex(),
                        s.span_id.hex(),
                        s.parent_span_id.hex(),
                        s.name,
                        s.kind,
                        s.start_time_unix_nano,
                        s.end_time_unix_nano,
                        _pb_attrs(s.attributes),
                        [SpanEvent(e.name, e.time_unix_nano, _pb_attrs(e.attributes)) for e in events]
                        if events
                        else [],
                        st.code,
                        st.message,
                        resource,
                        scope_name,
                        scope_version,
                    )
                )
    return spans


def _load_native() -> Any:
    """The native decoder configured for :class:`Span`/:class:`SpanEvent`, or None (not built, disabled by
    ``LLM_MONITOR_NATIVE_DECODE=0``, or the classes changed shape: it fills their slots by position)."""
    if os.environ.get("LLM_MONITOR_NATIVE_DECODE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        from collectors import _otlp_native  # type: ignore[attr-defined]
    except ImportError:
        return None
    span_fields = tuple(f.name for f in fields(Span))
    event_fields = tuple(f.name for f in fields(SpanEvent))
    if len(span_fields) != _NATIVE_SPAN_FIELDS or len(event_fields) != _NATIVE_EVENT_FIELDS:
        return None
    try:
        _otlp_native.configure(Span, SpanEvent, span_fields, event_fields)
    except TypeError:
        return None
    return _otlp_native


_NATIVE_SPAN_FIELDS = 14  # what _otlp_native.c fills, in Span's field order
_NATIVE_EVENT_FIELDS = 3
_native = _load_native()


# --- OTLP/JSON ---------------------------------------------------------------------------------------

_SPAN_KINDS = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
_STATUS_CODES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
# AnyValue member name (both spellings) → tag
_ANY_KEYS = {
    "stringValue": "s", "string_value": "s",
    "intValue": "i", "int_value": "i",
    "doubleValue": "d", "double_value": "d",
    "boolValue": "b", "bool_value": "b",
    "arrayValue": "a", "array_value": "a",
    "kvlistValue": "k", "kvlist_value": "k",
    "bytesValue": "y", "bytes_value": "y",
}  # fmt: skip
_HEX = re.compile(r"[0-9a-fA-F]*\Z")
# A lone surrogate escape (\ud800-\udfff) makes a str Python cannot encode as UTF-8 (the store would refuse
# the whole batch); only bodies containing one pay for the scrubbing walk.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class _Path:
    """Where in the document we are, rendered only when an error needs it."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[str | int] = []

    def render(self, leaf: str = "") -> str:
        out = ""
        for p in self.parts:
            out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
        if leaf:
            out = f"{out}.{leaf}" if out else leaf
        return out or "body"


def _get(d: dict[str, Any], camel: str, snake: str) -> Any:
    v = d.get(camel)
    return d.get(snake) if v is None else v


def _scrub(x: Any) -> Any:
    if isinstance(x, str):
        return x.encode("utf-8", "replace").decode("utf-8")
    if isinstance(x, list):
        return [_scrub(v) for v in x]
    if isinstance(x, dict):
        return {_scrub(k): _scrub(v) for k, v in x.items()}
    return x


def load_json_object(data: bytes, top_list: str) -> dict[str, Any]:
    """An OTLP/JSON body as a dict (lone surrogate escapes scrubbed); MalformedPayload names ``top_list``."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise MalformedPayload(f"body is not valid JSON ({e})") from None
    if _SURROGATE_ESCAPE.search(data):
        doc = _scrub(doc)
    if not isinstance(doc, dict):
        raise MalformedPayload(f"expected a JSON object with a {top_list} list")
    return doc


def decode_traces_json(data: bytes) -> list[Span]:
    """Decode an OTLP/JSON ExportTraceServiceRequest."""
    return _JSONDecoder().decode(load_json_object(data, "resourceSpans"))


class _JSONDecoder:
    def __init__(self) -> None:
        self.path = _Path()

    def fail(self, leaf: str, problem: str) -> MalformedPayload:
        return MalformedPayload(f"{self.path.render(leaf)}: {problem}")

    def list_of(self, d: dict[str, Any], camel: str, snake: str) -> list[Any]:
        v = _get(d, camel, snake)
        if v is None:
            return []
        if not isinstance(v, list):
            raise self.fail(camel, "expected a list")
        return v

    def obj(self, d: dict[str, Any], camel: str, snake: str) -> dict[str, Any]:
        v = _get(d, camel, snake)
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise self.fail(camel, "expected an object")
        return v

    def string(self, d: dict[str, Any], camel: str, snake: str) -> str:
        v = _get(d, camel, snake)
        if v is None:
            return ""
        if not isinstance(v, str):
            raise self.fail(camel, "expected a string")
        return v

    def integer(self, v: Any, leaf: str) -> int:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, str):
            try:
                return int(v)
            except ValueError:
                pass
        elif isinstance(v, float) and v.is_integer():
            return int(v)
        raise self.fail(leaf, f"expected an integer, got {v!r:.40}")

    def uint(self, d: dict[str, Any], camel: str, snake: str) -> int:
        v = _get(d, camel, snake)
        if v is None:
            return 0
        n = self.integer(v, camel)
        if n < 0 or n >= 1 << 64:
            raise self.fail(camel, "out of range for fixed64")
        return n

    def enum(self, d: dict[str, Any], camel: str, snake: str, names: dict[str, int]) -> int:
        v = _get(d, camel, snake)
        if v is None:
            return 0
        if isinstance(v, str) and v in names:
            return names[v]
        return self.integer(v, camel)

    def ident(self, d: dict[str, Any], camel: str, snake: str, nbytes: int) -> str:
        """A trace/span id: hex per OTLP/JSON; base64 (the generic protobuf mapping) tolerated."""
        v = _get(d, camel, snake)
        if v is None or v == "":
            return ""
        if not isinstance(v, str):
            raise self.fail(camel, "expected a hex string")
        if len(v) == 2 * nbytes and _HEX.match(v):
            return v.lower()
        try:
            raw = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == nbytes:
            return raw.hex()
        raise self.fail(camel, f"expected {2 * nbytes} hex digits, got {v!r:.60}")

    def value(self, v: Any, depth: int = 0) -> Any:
        """An AnyValue object → plain Python value."""
        if not isinstance(v, dict):
            raise self.fail("value", "expected an AnyValue object")
        if not v:
            return None
        for key, x in v.items():
            tag = _ANY_KEYS.get(key)
            if tag is None:
                continue  # unknown member: ignored like any unknown field
            if tag == "s":
                if not isinstance(x, str):
                    raise self.fail(key, "expected a string")
                return x
            if tag == "i":
                return self.integer(x, key)
            if tag == "b":
                if not isinstance(x, bool):
                    raise self.fail(key, "expected true or false")
                return x
            if tag == "d":
                if isinstance(x, (int, float)) and not isinstance(x, bool):
                    return float(x)
                if isinstance(x, str):
                    try:
                        return float(x)  # "NaN", "Infinity", "-Infinity" per the protobuf JSON mapping
                    except ValueError:
                        pass
                raise self.fail(key, "expected a number")
            if tag == "y":
                try:
                    return base64.b64decode(x, validate=True) if isinstance(x, str) else None
                except (binascii.Error, ValueError):
                    raise self.fail(key, "expected base64") from None
            if depth >= MAX_VALUE_DEPTH:
                raise self.fail(key, f"nested deeper than {MAX_VALUE_DEPTH} levels")
            if x is None:
                return [] if tag == "a" else {}
            if not isinstance(x, dict):
                raise self.fail(key, "expected an object with a values list")
            values = x.get("values") or []
            if not isinstance(values, list):
                raise self.fail(key, "values: expected a list")
            if tag == "a":
                return [self.value(e, depth + 1) for e in values]
            return self.attrs(values, depth + 1)
        return None

    def attrs(self, kvs: Any, depth: int = 0) -> dict[str, Any]:
        if kvs is None:
            return {}
        if not isinstance(kvs, list):
            raise self.fail("attributes", "expected a list of {key, value}")
        out: dict[str, Any] = {}
        for kv in kvs:
            if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
                raise self.fail("attributes", "expected {key, value} objects with a string key")
            val = kv.get("value")
            out[kv["key"]] = None if val is None else self.value(val, depth)
        return out

    def decode(self, doc: dict[str, Any]) -> list[Span]:
        spans: list[Span] = []
        path = self.path.parts
        for i, rs in enumerate(self.list_of(doc, "resourceSpans", "resource_spans")):
            path[:] = ["resourceSpans", i]
            if not isinstance(rs, dict):
                raise self.fail("", "expected an object")
            resource = self.attrs(self.obj(rs, "resource", "resource").get("attributes"))
            scope_lists = self.list_of(rs, "scopeSpans", "scope_spans") or self.list_of(
                rs, "instrumentationLibrarySpans", "instrumentation_library_spans"
            )
            for j, ss in enumerate(scope_lists):
                path[2:] = ["scopeSpans", j]
                if not isinstance(ss, dict):
                    raise self.fail("", "expected an object")
                scope = self.obj(ss, "scope", "scope") or self.obj(
                    ss, "instrumentationLibrary", "instrumentation_library"
                )
                scope_name = self.string(scope, "name", "name")
                scope_version = self.string(scope, "version", "version")
                for k, s in enumerate(self.list_of(ss, "spans", "spans")):
                    path[4:] = ["spans", k]
                    if not isinstance(s, dict):
                        raise self.fail("", "expected an object")
                    spans.append(self.span(s, resource, scope_name, scope_version))
        return spans

    def span(self, s: dict[str, Any], resource: dict[str, Any], scope_name: str, scope_version: str) -> Span:
        events = []
        for e in self.list_of(s, "events", "events"):
            if not isinstance(e, dict):
                raise self.fail("events", "expected objects")
            events.append(
                SpanEvent(
                    self.string(e, "name", "name"),
                    self.uint(e, "timeUnixNano", "time_unix_nano"),
                    self.attrs(e.get("attributes")),
                )
            )
        status = self.obj(s, "status", "status")
        return Span(
            trace_id=self.ident(s, "traceId", "trace_id", 16),
            span_id=self.ident(s, "spanId", "span_id", 8),
            parent_span_id=self.ident(s, "parentSpanId", "parent_span_id", 8),
            name=self.string(s, "name", "name"),
            kind=self.enum(s, "kind", "kind", _SPAN_KINDS),
            start_time_unix_nano=self.uint(s, "startTimeUnixNano", "start_time_unix_nano"),
            end_time_unix_nano=self.uint(s, "endTimeUnixNano", "end_time_unix_nano"),
            attributes=self.attrs(s.get("attributes")),
            events=events,
            status_code=self.enum(status, "code", "code", _STATUS_CODES),
            status_message=self.string(status, "message", "message"),
            resource=resource,
            scope_name=scope_name,
            scope_version=scope_version,
        )
