"""Collector rows as ClickHouse ``Native`` blocks: what the writer hands the engine once it knows the types.

Why Native and not RowBinary: the engine takes a Native block column by column, and a LowCardinality
column arrives as its dictionary plus one small index per row, so nothing is parsed or hashed per value.
For the same ``spans`` rows, chDB's CPU per span for the whole insert went from ≈ 28 µs (RowBinary) to
≈ 14 µs (Native blocks of one request each), and parsing alone from ≈ 12 to ≈ 1-4 µs (benchmarks/README.md,
"Session 6"). On the collector's write path the engine's CPU shares two cores with the GIL-bound Python:
end to end the collector's CPU per span fell by ≈ 9 µs.

A block is self-describing (each column's name and type travel with it), so a body is read right by the
engine even when the table was altered since; the writer still records the types it encoded for, to know
when a spooled body can be inserted unchanged.

Contract of :func:`encode_block` (the C one in ``_native_block.c`` and :func:`encode_block_py`, its
reference, give byte-identical output): one block holding, for each spec column in order, the value of
every row, a missing key taking the column's default and the stamp column taking ``stamp`` where the row
has ``None``; ``b""`` for no rows. It returns ``None`` (and the caller falls back to JSON rows) for the
same values RowBinary refused: a type that is not the column's, ``None`` in a non-Nullable column, NaN/inf,
an integer out of range, a datetime before 1970, past 2262 or with a timezone other than UTC, a string
that is not valid UTF-8.

Layout, as ClickHouse reads it (verified against chDB's own Native output): varint column count, varint
row count; per column its name and type (length-prefixed), then its data: a Nullable column's null map
(one byte a row) before its values; a LowCardinality column the serialization version (UInt64 1), then
the index type (UInt64: key width code | 0x600, "has additional keys" and "update dictionary"), the key
count, the keys, the row count and one index a row; an Array its version prefixes (for LowCardinality
elements), the cumulative offsets (UInt64 a row), then the elements as a column; a Map is an Array of
(key, value) tuples: the prefixes of keys then values, offsets, all keys, all values. A LowCardinality
column with no values writes nothing after its prefix.
"""

from __future__ import annotations

import datetime as _dt
import struct
from collections.abc import Sequence
from typing import Any

from collectors import rowbinary
from collectors.rowbinary import ARR_STR, BOOL, DT64, F64, INT, MAP_STR, STR, UINT

Row = dict[str, Any]
# (name, kind, nullable, arg, default, is_stamp, head, lc): as rowbinary.ColumnSpec, plus ``head`` (the
# column's name and type as the block writes them) and ``lc`` (bit 1: the values are LowCardinality
# strings, the strings of an Array or the values of a Map; bit 2: a Map's keys are)
BlockSpec = tuple[str, int, bool, int, Any, bool, bytes, int]

LC_VALUES, LC_KEYS = 1, 2
_LC_VERSION = struct.pack("<Q", 1)
_LC_FLAGS = 0x600  # HasAdditionalKeysBit | NeedUpdateDictionary
_U64 = struct.Struct("<Q")
# what a Nullable column holds under a NULL (the engine ignores it)
_ZERO: dict[int, Any] = {
    STR: "",
    F64: 0.0,
    UINT: 0,
    INT: 0,
    BOOL: False,
    DT64: _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc),
}


def _is_lc(t: str) -> bool:
    return t.strip().startswith("LowCardinality(String)")


def column_layout(t: str) -> tuple[int, bool, int, int, str] | None:
    """(kind, nullable, arg, lc, type as written) for a column type this module encodes, else None.

    ``LowCardinality(Nullable(String))`` is written as ``Nullable(String)`` (the engine converts it): the
    only LowCardinality strings encoded as a dictionary are non-nullable ones."""
    parsed = rowbinary.parse_type(t)
    if parsed is None:
        return None
    kind, nullable, arg = parsed
    t = t.strip()
    lc = 0
    written = t
    if kind == STR:
        if nullable and t.startswith("LowCardinality("):
            written = "Nullable(String)"
        elif not nullable and _is_lc(t):
            lc = LC_VALUES
    elif kind == ARR_STR:
        lc = LC_VALUES if _is_lc(t[len("Array(") : -1]) else 0
    elif kind == MAP_STR:
        key, _, value = t[4:-1].partition(",")
        lc = (LC_KEYS if _is_lc(key) else 0) | (LC_VALUES if _is_lc(value) else 0)
    return kind, nullable, arg, lc, written


def build_spec(
    columns: Sequence[str], types: Sequence[str], defaults: dict[str, Any], stamp_col: str
) -> tuple[BlockSpec, ...] | None:
    """The encoder's spec for ``columns`` of those ``types`` (None if any type is not supported)."""
    spec: list[BlockSpec] = []
    for name, t in zip(columns, types, strict=True):
        layout = column_layout(t)
        if layout is None:
            return None
        kind, nullable, arg, lc, written = layout
        head = bytearray()
        _text(head, name)
        _text(head, written)
        spec.append((name, kind, nullable, arg, defaults.get(name), name == stamp_col, bytes(head), lc))
    return tuple(spec)


def _text(out: bytearray, s: str) -> None:
    b = s.encode()
    rowbinary._uvarint(out, len(b))
    out += b


# --- the reference encoder --------------------------------------------------------------------------------


def _lc_column(out: bytearray, values: list[Any]) -> None:
    """A LowCardinality(String) column's data (after its version prefix): dictionary in first-seen order."""
    if not values:
        return
    index: dict[str, int] = {}
    keys = bytearray()
    ids: list[int] = []
    for v in values:
        i = index.get(v) if isinstance(v, str) else None
        if i is None:
            i = index[v] = len(index)
            rowbinary._str(keys, v)  # refuses a non-str or a lone surrogate
        ids.append(i)
    n = len(index)
    code, fmt = (0, "B") if n <= 0x100 else (1, "H") if n <= 0x10000 else (2, "I")
    out += _U64.pack(code | _LC_FLAGS) + _U64.pack(n) + keys + _U64.pack(len(ids))
    out += struct.pack(f"<{len(ids)}{fmt}", *ids)


def _strings(out: bytearray, values: list[Any], lc: bool) -> None:
    if lc:
        _lc_column(out, values)
    else:
        for v in values:
            rowbinary._str(out, v)


def _offsets(out: bytearray, lengths: list[int]) -> None:
    total = 0
    for n in lengths:
        total += n
        out += _U64.pack(total)


def _column(out: bytearray, kind: int, nullable: bool, arg: int, lc: int, values: list[Any]) -> None:
    if nullable:
        out += bytes(1 if v is None else 0 for v in values)
        zero = _ZERO[kind]
        values = [zero if v is None else v for v in values]
    if kind == STR:
        if lc & LC_VALUES:
            out += _LC_VERSION
        _strings(out, values, bool(lc & LC_VALUES))
    elif kind == ARR_STR:
        if any(not isinstance(v, (list, tuple)) for v in values):
            raise rowbinary._Refuse
        if lc & LC_VALUES:
            out += _LC_VERSION
        _offsets(out, [len(v) for v in values])
        _strings(out, [x for v in values for x in v], bool(lc & LC_VALUES))
    elif kind == MAP_STR:
        if any(not isinstance(v, dict) for v in values):
            raise rowbinary._Refuse
        if lc & LC_KEYS:
            out += _LC_VERSION
        if lc & LC_VALUES:
            out += _LC_VERSION
        _offsets(out, [len(v) for v in values])
        _strings(out, [k for v in values for k in v], bool(lc & LC_KEYS))
        _strings(out, [x for v in values for x in v.values()], bool(lc & LC_VALUES))
    else:
        for v in values:
            rowbinary._put(out, kind, arg, v)


def encode_block_py(rows: Sequence[Row], spec: Sequence[BlockSpec], stamp: Any) -> bytes | None:
    """Reference encoder (see the module contract); the C one must match it byte for byte."""
    if not rows:
        return b""
    if any(not isinstance(r, dict) for r in rows):
        return None
    out = bytearray()
    rowbinary._uvarint(out, len(spec))
    rowbinary._uvarint(out, len(rows))
    try:
        for name, kind, nullable, arg, default, is_stamp, head, lc in spec:
            values = [r.get(name, default) for r in rows]
            if is_stamp:
                values = [stamp if v is None else v for v in values]
            if not nullable and any(v is None for v in values):
                return None
            out += head
            _column(out, kind, nullable, arg, lc, values)
    except rowbinary._Refuse:
        return None
    return bytes(out)


try:  # optional like the other native parts: without a compiler the reference does the work
    from collectors._native_block import encode_block as _c_encode
except ImportError:  # pragma: no cover - depends on the build
    _c_encode = None

native_available = _c_encode is not None


def encode_block(rows: Sequence[Row], spec: Sequence[BlockSpec], stamp: Any) -> bytes | None:
    """One Native block of ``rows`` laid out by ``spec`` (C when built), or None (module contract)."""
    if _c_encode is not None:
        out: bytes | None = _c_encode(rows, spec, stamp)
        return out
    return encode_block_py(rows, spec, stamp)


# --- decoding: rows back from blocks (a refused insert, a spooled body whose types changed) --------------


class _Reader(rowbinary._Reader):
    __slots__ = ()

    def u64(self) -> int:
        return int(_U64.unpack(self.take(8))[0])


def _read_strings(rd: _Reader, n: int, lc: bool, null_first: bool = False) -> list[Any]:
    """``n`` strings of a column; ``null_first``: LowCardinality(Nullable(String)) as the engine writes it
    (index 0 is NULL, no null map)."""
    if not lc:
        return [rd.string() for _ in range(n)]
    if n == 0:
        return []
    flags = rd.u64()
    width = 1 << (flags & 0xFF)
    if flags & ~0xFF != _LC_FLAGS or width > 8:
        raise ValueError(f"unsupported LowCardinality index type {flags:#x}")
    keys = [rd.string() for _ in range(rd.u64())]
    if rd.u64() != n:
        raise ValueError("LowCardinality row count does not match the block")
    raw = rd.take(n * width)
    ids = [int.from_bytes(raw[i : i + width], "little") for i in range(0, n * width, width)]
    return [None if null_first and i == 0 else keys[i] for i in ids]


def _prefix(rd: _Reader) -> None:
    if rd.u64() != 1:
        raise ValueError("unsupported LowCardinality serialization version")


def _read_column(rd: _Reader, kind: int, nullable: bool, arg: int, lc: int, n: int) -> list[Any]:
    nulls = rd.take(n) if nullable else b""
    if kind == STR:
        if lc & LC_VALUES:
            _prefix(rd)
        values: list[Any] = _read_strings(rd, n, bool(lc & LC_VALUES))
    elif kind == ARR_STR:
        if lc & LC_VALUES:
            _prefix(rd)
        ends = [rd.u64() for _ in range(n)]
        flat = _read_strings(rd, ends[-1] if ends else 0, bool(lc & LC_VALUES))
        values = [flat[a:b] for a, b in zip([0, *ends], ends, strict=False)]
    elif kind == MAP_STR:
        if lc & LC_KEYS:
            _prefix(rd)
        if lc & LC_VALUES:
            _prefix(rd)
        ends = [rd.u64() for _ in range(n)]
        total = ends[-1] if ends else 0
        keys = _read_strings(rd, total, bool(lc & LC_KEYS))
        vals = _read_strings(rd, total, bool(lc & LC_VALUES))
        values = [
            dict(zip(keys[a:b], vals[a:b], strict=True)) for a, b in zip([0, *ends], ends, strict=False)
        ]
    else:
        values = [rowbinary._get(rd, kind, arg) for _ in range(n)]
    if nullable:
        values = [None if nulls[i] else v for i, v in enumerate(values)]
    return values


def decode_rows(body: bytes | memoryview) -> list[Row]:
    """Row dicts back from concatenated blocks (every column each block holds; ValueError if not blocks)."""
    rd = _Reader(body)
    rows: list[Row] = []
    while rd.pos < len(rd.buf):
        ncols, n = rd.uvarint(), rd.uvarint()
        block: list[Row] = [{} for _ in range(n)]
        for _ in range(ncols):
            name, t = rd.string(), rd.string()
            layout = column_layout(t)
            if layout is None:
                raise ValueError(f"cannot decode a Native column of type {t}")
            kind, nullable, arg, lc, _ = layout
            if t.replace(" ", "") == "LowCardinality(Nullable(String))":  # only the engine writes this
                _prefix(rd)
                values = _read_strings(rd, n, True, null_first=True)
            else:
                values = _read_column(rd, kind, nullable, arg, lc, n)
            for row, v in zip(block, values, strict=True):
                row[name] = v
        rows.extend(block)
    return rows
