"""Column types and single values as ClickHouse binary formats write them, and the RowBinary decoder.

:mod:`collectors.native` builds its Native blocks on these: :func:`parse_type` maps a column type to the
kinds the encoders handle, and the value writers (``_str``, ``_put``...) lay out one value the way RowBinary
and a Native column both do (length-prefixed UTF-8, little-endian numbers, DateTime64 ticks). They raise
``_Refuse`` for any value whose meaning could differ from the JSON path: a type that is not the column's (no
int→str or float→int coercion), NaN/inf, an integer out of the column's range, a datetime before 1970, past
2262 or with a timezone other than UTC, a string that is not valid UTF-8 (lone surrogates).

Collectors before Native blocks spooled RowBinary rows (with their column names and types): such records
are read back into rows with :func:`decode_rows` and written again.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import struct
from collections.abc import Sequence
from typing import Any

# Column kinds (shared with the C encoder: keep the numbers in sync with _native_block.c).
STR, DT64, F64, UINT, INT, BOOL, ARR_STR, MAP_STR = range(1, 9)

Row = dict[str, Any]

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


# --- decoding: RowBinary bodies spooled by earlier collectors -------------------------------------------


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
