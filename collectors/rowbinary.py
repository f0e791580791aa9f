"""Collector rows as ClickHouse ``RowBinary``: what the writer hands the engine when it knows the table's types.

Why not JSON: for the same ``spans`` rows the engine parses RowBinary with about a third less CPU than
``JSONCompactEachRow`` (no number or escape parsing), and on this write path the engine's CPU and the
collector's GIL-bound Python share two cores (``benchmarks/collector_throughput.py``). Encoding is also
cheaper: values are copied, not escaped.

RowBinary carries no types, so a body is only meaningful with the exact column types it was laid out for.
The writer learns them from the live table (``system.columns``), stores them next to every spooled body,
and a body whose types differ from the table's at replay is decoded back into rows (:func:`decode_rows`).

Contract of :func:`encode_rows` (the native one in ``_rowbinary_native.c`` and :func:`encode_rows_py`, its
reference, give byte-identical output): the values of each spec column in order, a missing key taking
the column's default and the stamp column taking ``stamp`` where the row has ``None``. It returns ``None``,
and the caller falls back to JSON rows whose handling the engine decides, for any value whose meaning could
differ between the two formats: a type that is not the column's (no int→str or float→int coercion), ``None``
in a non-Nullable column, NaN/inf, an integer out of the column's range, a datetime before 1970, past 2262
or with a timezone other than UTC, a string that is not valid UTF-8 (lone surrogates).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import struct
from collections.abc import Sequence
from typing import Any

# Column kinds (shared with the C encoder: keep the numbers in sync with _rowbinary_native.c).
STR, DT64, F64, UINT, INT, BOOL, ARR_STR, MAP_STR = range(1, 9)

Row = dict[str, Any]
# (name, kind, nullable, arg, default, is_stamp): arg is the byte width for UINT/INT, the precision for DT64
ColumnSpec = tuple[str, int, bool, int, Any, bool]

_STR_TYPES = ("String", "LowCardinality(String)")
_DT64 = re.compile(r"DateTime64\((\d)(?:,\s*'[^']*')?\)$")
_WIDTHS = {"8": 1, "16": 2, "32": 4, "64": 8}
_EPOCH = _dt.datetime(1970, 1, 1)
_MAX_US = (2**63 - 1) // 1000  # DateTime64(9) ticks fit Int64 up to 2262-04-11
_ONE_US = _dt.timedelta(microseconds=1)


def parse_type(t: str) -> tuple[int, bool, int] | None:
    """(kind, nullable, arg) for a ClickHouse column type this module encodes, else None."""
    t = t.strip()
    if t.startswith("LowCardinality(Nullable(") and t.endswith("))"):
        inner = parse_type(t[len("LowCardinality(Nullable(") : -2])
        return None if inner is None or inner[0] != STR else (STR, True, 0)
    if t.startswith("Nullable(") and t.endswith(")"):
        inner = parse_type(t[len("Nullable(") : -1])
        if inner is None or inner[1] or inner[0] in (ARR_STR, MAP_STR):  # ClickHouse has no such types
            return None
        return inner[0], True, inner[2]
    if t in _STR_TYPES:
        return STR, False, 0
    m = _DT64.match(t)
    if m:
        return DT64, False, int(m.group(1))
    if t == "Float64":
        return F64, False, 0
    if t == "Bool":
        return BOOL, False, 0
    if t.startswith("UInt") and t[4:] in _WIDTHS:
        return UINT, False, _WIDTHS[t[4:]]
    if t.startswith("Int") and t[3:] in _WIDTHS:
        return INT, False, _WIDTHS[t[3:]]
    if t.startswith("Array(") and t[6:-1] in _STR_TYPES:
        return ARR_STR, False, 0
    if t.startswith("Map(") and t.endswith(")"):
        key, _, value = t[4:-1].partition(",")
        if key.strip() in _STR_TYPES and value.strip() in _STR_TYPES:
            return MAP_STR, False, 0
    return None


_HEADERS: dict[tuple[tuple[str, ...], tuple[str, ...]], bytes] = {}


def header(columns: Sequence[str], types: Sequence[str]) -> bytes:
    """The ``RowBinaryWithNamesAndTypes`` header: column count, names, types (length-prefixed strings)."""
    key = (tuple(columns), tuple(types))
    h = _HEADERS.get(key)
    if h is None:
        out = bytearray()
        _uvarint(out, len(columns))
        for x in (*columns, *types):
            _str(out, x)
        h = bytes(out)
        if len(_HEADERS) < 64:
            _HEADERS[key] = h
    return h


def build_spec(
    columns: Sequence[str], types: Sequence[str], defaults: dict[str, Any], stamp_col: str
) -> tuple[ColumnSpec, ...] | None:
    """The encoder's spec for ``columns`` of those ``types`` (None if any type is not supported)."""
    spec: list[ColumnSpec] = []
    for name, t in zip(columns, types, strict=True):
        parsed = parse_type(t)
        if parsed is None:
            return None
        kind, nullable, arg = parsed
        spec.append((name, kind, nullable, arg, defaults.get(name), name == stamp_col))
    return tuple(spec)


class _Refuse(Exception):
    pass


def _uvarint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _str(out: bytearray, v: Any) -> None:
    if not isinstance(v, str):
        raise _Refuse
    try:
        b = v.encode("utf-8")
    except UnicodeEncodeError:
        raise _Refuse from None
    _uvarint(out, len(b))
    out += b


def _ticks(v: Any, precision: int) -> int:
    if not isinstance(v, _dt.datetime):
        raise _Refuse
    if v.tzinfo is not None:
        if v.tzinfo is not _dt.timezone.utc:
            raise _Refuse
        v = v.replace(tzinfo=None)
    us = (v - _EPOCH) // _ONE_US
    if us < 0 or us > _MAX_US:
        raise _Refuse
    return us * 10 ** (precision - 6) if precision >= 6 else us // 10 ** (6 - precision)


def _put(out: bytearray, kind: int, arg: int, v: Any) -> None:
    if kind == STR:
        _str(out, v)
    elif kind == DT64:
        out += struct.pack("<q", _ticks(v, arg))
    elif kind == F64:
        if type(v) is bool or not isinstance(v, (int, float)):
            raise _Refuse
        try:
            f = float(v)
        except OverflowError:
            raise _Refuse from None
        if not math.isfinite(f):
            raise _Refuse
        out += struct.pack("<d", f)
    elif kind in (UINT, INT):
        if type(v) is bool or not isinstance(v, int):
            raise _Refuse
        bits = 8 * arg
        lo, hi = (0, 1 << bits) if kind == UINT else (-(1 << (bits - 1)), 1 << (bits - 1))
        if not lo <= v < hi:
            raise _Refuse
        out += int(v).to_bytes(arg, "little", signed=kind == INT)
    elif kind == BOOL:
        if type(v) is not bool:
            raise _Refuse
        out.append(1 if v else 0)
    elif kind == ARR_STR:
        if not isinstance(v, (list, tuple)):
            raise _Refuse
        _uvarint(out, len(v))
        for x in v:
            _str(out, x)
    elif kind == MAP_STR:
        if not isinstance(v, dict):
            raise _Refuse
        _uvarint(out, len(v))
        for k, x in v.items():
            _str(out, k)
            _str(out, x)
    else:  # pragma: no cover - build_spec makes no other kinds
        raise _Refuse


def encode_rows_py(rows: Sequence[Row], spec: Sequence[ColumnSpec], stamp: Any) -> bytes | None:
    """Reference encoder (see the module contract); the native one must match it byte for byte."""
    out = bytearray()
    try:
        for r in rows:
            if not isinstance(r, dict):
                return None
            for name, kind, nullable, arg, default, is_stamp in spec:
                v = r.get(name, default)
                if is_stamp and v is None:
                    v = stamp
                if v is None:
                    if not nullable:
                        return None
                    out.append(1)
                    continue
                if nullable:
                    out.append(0)
                _put(out, kind, arg, v)
    except _Refuse:
        return None
    return bytes(out)


try:  # optional like the other native parts: without a compiler the reference does the work
    from collectors._rowbinary_native import encode_rows as _native_encode
except ImportError:  # pragma: no cover - depends on the build
    _native_encode = None

native_available = _native_encode is not None


def encode_rows(rows: Sequence[Row], spec: Sequence[ColumnSpec], stamp: Any) -> bytes | None:
    """RowBinary for ``rows`` laid out by ``spec`` (native when built), or None (module contract)."""
    if _native_encode is not None:
        out: bytes | None = _native_encode(rows, spec, stamp)
        return out
    return encode_rows_py(rows, spec, stamp)


# --- decoding: bodies spooled for other types, and rows to bisect after the store refused a body ---------


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes | memoryview) -> None:
        self.buf = bytes(buf)
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise ValueError("RowBinary body ends in the middle of a value")
        b = self.buf[self.pos : end]
        self.pos = end
        return b

    def uvarint(self) -> int:
        n = shift = 0
        while True:
            b = self.take(1)[0]
            n |= (b & 0x7F) << shift
            if b < 0x80:
                return n
            shift += 7

    def string(self) -> str:
        return self.take(self.uvarint()).decode("utf-8")


def _get(rd: _Reader, kind: int, arg: int) -> Any:
    if kind == STR:
        return rd.string()
    if kind == DT64:
        ticks = struct.unpack("<q", rd.take(8))[0]
        us = ticks // 10 ** (arg - 6) if arg >= 6 else ticks * 10 ** (6 - arg)
        return (_EPOCH + _dt.timedelta(microseconds=us)).replace(tzinfo=_dt.timezone.utc)
    if kind == F64:
        return struct.unpack("<d", rd.take(8))[0]
    if kind in (UINT, INT):
        return int.from_bytes(rd.take(arg), "little", signed=kind == INT)
    if kind == BOOL:
        return rd.take(1) != b"\x00"
    if kind == ARR_STR:
        return [rd.string() for _ in range(rd.uvarint())]
    if kind == MAP_STR:
        return {rd.string(): rd.string() for _ in range(rd.uvarint())}
    raise ValueError(f"unknown column kind {kind}")


def decode_rows(body: bytes | memoryview, columns: Sequence[str], types: Sequence[str]) -> list[Row]:
    """Row dicts back from a body encoded for ``columns`` of ``types`` (ValueError if it is not one)."""
    kinds = []
    for t in types:
        parsed = parse_type(t)
        if parsed is None:
            raise ValueError(f"cannot decode RowBinary of type {t}")
        kinds.append(parsed)
    rd = _Reader(body)
    rows: list[Row] = []
    while rd.pos < len(rd.buf):
        row: Row = {}
        for name, (kind, nullable, arg) in zip(columns, kinds, strict=True):
            if nullable and rd.take(1) != b"\x00":
                row[name] = None
            else:
                row[name] = _get(rd, kind, arg)
        rows.append(row)
    return rows


def split_rows(body: bytes | memoryview, columns: Sequence[str], types: Sequence[str]) -> list[bytes]:
    """The body cut into one RowBinary row each (for bisecting a body the store refused)."""
    kinds = [parse_type(t) for t in types]
    if any(k is None for k in kinds):
        raise ValueError("cannot split RowBinary of unsupported types")
    rd = _Reader(body)
    out: list[bytes] = []
    while rd.pos < len(rd.buf):
        start = rd.pos
        for kind, nullable, arg in kinds:  # type: ignore[misc]
            if nullable and rd.take(1) != b"\x00":
                continue
            _get(rd, kind, arg)
        out.append(rd.buf[start : rd.pos])
    return out
