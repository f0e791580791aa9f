"""Native blocks: the C encoder matches the reference byte for byte, refuses what the reference refuses,
round-trips through the decoder, is read by the engine as written, and stores exactly what the JSON path
stores (real chDB)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors import native as nb
from collectors import rowbinary as rb
from collectors.writer import StoreWriter, _columns
from monitor.store.schema import SPAN_DEFAULTS, STAMP_COLUMN, TABLE_DEFAULTS
from tests.unit.gil_probe import progress_during

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import workload

UTC = dt.timezone.utc
built = pytest.mark.skipif(
    not nb.native_available, reason="the optional C extension was not built (no compiler on this machine)"
)

# one column of each kind the encoder knows, nullable or not
TYPES = {
    "s": "String",
    "lc": "LowCardinality(String)",
    "ns": "Nullable(String)",
    "lcn": "LowCardinality(Nullable(String))",
    "t9": "DateTime64(9, 'UTC')",
    "t6": "DateTime64(6, 'UTC')",
    "t3": "DateTime64(3)",
    "f": "Float64",
    "nf": "Nullable(Float64)",
    "u8": "UInt8",
    "u32": "UInt32",
    "nu32": "Nullable(UInt32)",
    "u64": "UInt64",
    "i8": "Int8",
    "i64": "Int64",
    "b": "Bool",
    "arr": "Array(LowCardinality(String))",
    "m": "Map(LowCardinality(String), String)",
}
DEFAULTS: dict[str, Any] = {"s": "", "u64": 0, "m": {}}
SPEC = nb.build_spec(list(TYPES), list(TYPES.values()), DEFAULTS, "t6")
assert SPEC is not None


def both(rows: list[Any], stamp: Any = None) -> bytes | None:
    """The reference's output, after checking the native encoder gives the very same."""
    ref = nb.encode_block_py(rows, SPEC, stamp)
    if nb.native_available:
        assert nb._c_encode(rows, SPEC, stamp) == ref
    return ref


def full_row(**over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "s": "plain", "lc": "é ünïcødé 🚀", "ns": None, "lcn": "x", "t9": dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        "t6": dt.datetime(2026, 1, 2, 3, 4, 5), "t3": dt.datetime(1970, 1, 1, 0, 0, 0, 1999, tzinfo=UTC), "f": 0.1,
        "nf": 3, "u8": 255, "u32": 2**32 - 1, "nu32": None, "u64": 2**64 - 1, "i8": -128, "i64": -(2**63),
        "b": True, "arr": ("a", ""), "m": {"k": "v", "": ""},
    }  # fmt: skip
    row.update(over)
    return row


def test_types_parse_to_kinds_and_unknown_types_are_refused() -> None:
    assert rb.parse_type("LowCardinality(Nullable(String))") == (rb.STR, True, 0)
    assert rb.parse_type("DateTime64(9, 'UTC')") == (rb.DT64, False, 9)
    assert rb.parse_type("Nullable(UInt32)") == (rb.UINT, True, 4)
    assert rb.parse_type("Int16") == (rb.INT, False, 2)
    assert rb.parse_type("Map(String, String)") == (rb.MAP_STR, False, 0)
    for t in ("Decimal(10, 2)", "UUID", "Array(UInt64)", "Map(String, UInt64)", "Nullable(Array(String))",
              "Float32", "DateTime", "Nullable(Nullable(String))", "LowCardinality(Nullable(UInt8))"):  # fmt: skip
        assert rb.parse_type(t) is None, t
    assert nb.build_spec(["a", "b"], ["String", "UUID"], {}, "") is None
    # what the block writes: LowCardinality strings as dictionaries, except nullable ones (as Nullable(String))
    assert nb.column_layout("LowCardinality(String)") == (
        rb.STR,
        False,
        0,
        nb.LC_VALUES,
        "LowCardinality(String)",
    )
    assert nb.column_layout("LowCardinality(Nullable(String))") == (rb.STR, True, 0, 0, "Nullable(String)")
    assert nb.column_layout("Map(LowCardinality(String), String)")[3] == nb.LC_KEYS  # type: ignore[index]
    assert nb.column_layout("Map(String, LowCardinality(String))")[3] == nb.LC_VALUES  # type: ignore[index]
    assert nb.column_layout("Array(String)")[3] == 0  # type: ignore[index]


def u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def head(name: str, type_: str) -> bytes:
    return bytes([len(name)]) + name.encode() + bytes([len(type_)]) + type_.encode()


def lc_data(keys: list[bytes], ids: list[int]) -> bytes:
    """A LowCardinality column's data with a one-byte index, after its version prefix."""
    return (
        u64(0x600) + u64(len(keys)) + b"".join(bytes([len(k)]) + k for k in keys) + u64(len(ids)) + bytes(ids)
    )


def test_values_are_laid_out_as_a_clickhouse_native_block() -> None:
    row = full_row()
    out = both([row])
    assert out is not None
    lc = "é ünïcødé 🚀".encode()
    t9 = (dt.datetime(2026, 1, 2, 3, 4, 5, 678901) - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)
    expect = b"".join([
        b"\x12\x01",  # 18 columns, 1 row
        head("s", "String"), b"\x05plain",
        head("lc", "LowCardinality(String)"), u64(1), lc_data([lc], [0]),
        head("ns", "Nullable(String)"), b"\x01", b"\x00",  # NULL: null map 1, an empty string under it
        head("lcn", "Nullable(String)"), b"\x00", b"\x01x",  # LowCardinality(Nullable(String)) goes as this
        head("t9", "DateTime64(9, 'UTC')"), (t9 * 1000).to_bytes(8, "little"),
        head("t6", "DateTime64(6, 'UTC')"), (t9 - 678901).to_bytes(8, "little"),  # naive means UTC
        head("t3", "DateTime64(3)"), (1).to_bytes(8, "little"),  # 1999 µs → 1 ms (truncated)
        head("f", "Float64"), struct.pack("<d", 0.1),
        head("nf", "Nullable(Float64)"), b"\x00", struct.pack("<d", 3.0),
        head("u8", "UInt8"), b"\xff",
        head("u32", "UInt32"), b"\xff" * 4,
        head("nu32", "Nullable(UInt32)"), b"\x01", b"\x00" * 4,
        head("u64", "UInt64"), b"\xff" * 8,
        head("i8", "Int8"), b"\x80",
        head("i64", "Int64"), b"\x00" * 7 + b"\x80",
        head("b", "Bool"), b"\x01",
        head("arr", "Array(LowCardinality(String))"), u64(1), u64(2), lc_data([b"a", b""], [0, 1]),
        head("m", "Map(LowCardinality(String), String)"), u64(1), u64(2), lc_data([b"k", b""], [0, 1]),
        b"\x01v\x00",
    ])  # fmt: skip
    assert out == expect
    assert nb.decode_rows(out) == [
        {**row, "t6": row["t6"].replace(tzinfo=UTC), "t3": dt.datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=UTC),
         "nf": 3.0, "arr": ["a", ""]}
    ]  # fmt: skip


def test_dictionary_indexes_widen_with_the_number_of_distinct_values() -> None:
    spec = nb.build_spec(["v"], ["LowCardinality(String)"], {}, "")
    assert spec is not None
    for distinct, width in ((256, 1), (257, 2), (65536, 2), (65537, 4)):
        rows = [{"v": str(i % distinct)} for i in range(distinct + 3)]
        out = nb.encode_block(rows, spec, None)
        assert out is not None
        if nb.native_available:
            assert out == nb.encode_block_py(rows, spec, None)
        n = distinct + 3
        rows_varint = 1 + (n >= 1 << 7) + (n >= 1 << 14)
        at = 1 + rows_varint + len(head("v", "LowCardinality(String)")) + 8  # after the version prefix
        assert struct.unpack_from("<QQ", out, at) == ({1: 0, 2: 1, 4: 2}[width] | 0x600, distinct)
        assert out[-(distinct + 3) * width :][-3 * width :] == b"".join(
            i.to_bytes(width, "little") for i in range(3)
        )  # the last three rows reuse the first three keys
        assert nb.decode_rows(out) == rows


def test_dictionary_finds_equal_strings_that_are_other_objects_after_it_grew() -> None:
    # the table starts small and doubles as distinct values arrive: equal strings that are not the same
    # object must still find their slot after every re-placement
    spec = nb.build_spec(["v"], ["LowCardinality(String)"], {}, "")
    assert spec is not None
    first = [f"value-{i}" for i in range(1000)]
    again = ["".join(("value-", str(i))) for i in reversed(range(1000))]  # equal, distinct objects
    assert all(a == b and a is not b for a, b in zip(first, reversed(again), strict=True))
    rows = [{"v": v} for v in first + again]
    out = nb.encode_block(rows, spec, None)
    assert out is not None
    if nb.native_available:
        assert out == nb.encode_block_py(rows, spec, None)
    at = 1 + 2 + len(head("v", "LowCardinality(String)")) + 8
    assert struct.unpack_from("<QQ", out, at) == (1 | 0x600, 1000)  # 1000 keys, two-byte indexes
    ids = struct.unpack_from("<2000H", out, len(out) - 4000)
    assert list(ids) == list(range(1000)) + list(reversed(range(1000)))
    assert nb.decode_rows(out) == rows


def test_missing_keys_take_defaults_and_the_stamp_column_the_stamp() -> None:
    stamp = dt.datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    row = full_row()
    del row["s"], row["u64"], row["m"]
    row["t6"] = None
    out = both([row], stamp)
    assert out is not None
    back = nb.decode_rows(out)[0]
    assert (back["s"], back["u64"], back["m"], back["t6"]) == ("", 0, {}, stamp)
    # a column with no default and no value is NULL: refused where the column is not Nullable
    del row["f"]
    assert both([row], stamp) is None


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("s", 5), ("s", b"bytes"), ("s", "lone \ud800 surrogate"), ("lc", None), ("f", "1.5"), ("f", True),
        ("f", math.nan), ("f", math.inf), ("f", 10**400), ("u8", 256), ("u8", -1), ("u32", 2**32), ("u64", 2**64),
        ("u64", -1), ("u64", 1.0), ("u64", False), ("i8", 128), ("i8", -129), ("i64", 2**63), ("b", 1),
        ("b", "true"), ("t9", "2026-01-01"), ("t9", dt.date(2026, 1, 1)), ("t9", dt.datetime(1969, 12, 31, 23, 59)),
        ("t9", dt.datetime(2262, 4, 12)), ("t6", dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
        ("arr", "ab"), ("arr", ["a", 1]), ("arr", {"a"}), ("m", [("k", "v")]), ("m", {"k": 1}), ("m", {1: "v"}),
    ],
)  # fmt: skip
def test_values_whose_meaning_could_differ_from_the_json_path_are_refused(column: str, value: Any) -> None:
    assert both([full_row(), full_row(**{column: value})]) is None


def test_non_dict_rows_are_refused_and_empty_input_is_empty() -> None:
    assert both([full_row(), ["not", "a", "dict"]]) is None
    assert both([]) == b""


row_values = st.fixed_dictionaries(
    {},
    optional={
        "s": st.one_of(st.text(), st.integers(), st.none()),
        "lc": st.text(max_size=5),
        "ns": st.one_of(st.none(), st.text()),
        "t9": st.one_of(st.datetimes(timezones=st.sampled_from([UTC])), st.datetimes(), st.none()),
        "t6": st.one_of(st.none(), st.datetimes(min_value=dt.datetime(1970, 1, 1))),
        "t3": st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1)),
        "f": st.one_of(st.floats(), st.integers(), st.booleans()),
        "nf": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
        "u8": st.integers(-2, 300),
        "u32": st.integers(-1, 2**33),
        "nu32": st.one_of(st.none(), st.integers(0, 2**32 - 1)),
        "u64": st.integers(-5, 2**65),
        "i8": st.integers(-200, 200),
        "i64": st.integers(-(2**64), 2**64),
        "b": st.one_of(st.booleans(), st.integers(0, 1)),
        "arr": st.lists(st.text(max_size=4), max_size=3),
        "m": st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=3),
    },
)


@given(
    st.lists(row_values, max_size=4), st.one_of(st.none(), st.datetimes(min_value=dt.datetime(1970, 1, 1)))
)
@settings(max_examples=400, deadline=None)
def test_native_and_reference_agree_on_random_rows(rows: list[dict[str, Any]], stamp: Any) -> None:
    out = both(rows, stamp)  # asserts native == reference
    if out is None:
        return
    back = nb.decode_rows(out)
    assert len(back) == len(rows)
    for r, b in zip(rows, back, strict=True):
        if "u64" in r:
            assert b["u64"] == r["u64"]
        if "m" in r:
            assert b["m"] == r["m"]
        if r.get("t9") is not None:
            assert b["t9"] == r["t9"].replace(tzinfo=UTC)
        assert b["b"] == r.get("b") and b["s"] == r.get("s", "")
    if rows:
        assert out[:2] == bytes([len(TYPES), len(rows)])  # one block, whatever the values


@built
def test_c_encoder_rejects_a_malformed_spec_with_a_clear_error() -> None:
    h = head("a", "String")
    with pytest.raises(TypeError, match="spec"):
        nb._c_encode([{}], [("a", rb.STR, False, 0, None, False, h, 0)], None)  # a list, not a tuple
    with pytest.raises(TypeError, match="spec entries"):
        nb._c_encode([{}], (("a", rb.STR, False, 0, None, False),), None)  # the RowBinary spec's shape
    with pytest.raises(ValueError, match="kind"):
        nb._c_encode([{}], (("a", 99, False, 0, None, False, h, 0),), None)
    with pytest.raises(ValueError, match="width"):
        nb._c_encode([{}], (("a", rb.UINT, False, 3, None, False, h, 0),), None)
    with pytest.raises(ValueError, match="Nullable"):
        nb._c_encode([{}], (("a", rb.ARR_STR, True, 0, None, False, h, 0),), None)


def workload_rows(n_spans: int = 1000) -> list[dict[str, Any]]:
    from collectors import otlp
    from collectors.normalize import normalize_spans

    base = workload.base_time_ns()
    rows: list[dict[str, Any]] = []
    for body in workload.requests(7, 250, n_spans, base):
        rows.extend(normalize_spans(otlp.decode_traces(body, otlp.PROTOBUF)))
    return rows


def test_workload_rows_store_the_same_through_native_blocks_as_through_json(store) -> None:
    """The whole point: the same rows, stored both ways, read back identical (every column)."""
    w = StoreWriter(store)
    assert w.encoded_types("spans") is None and not w.types_learned()  # JSON until the store is asked
    assert w.learn_types()
    types = w.encoded_types("spans")
    assert types is not None and types[_columns("spans").index("start_time")] == "DateTime64(9, 'UTC')"
    accepted = dt.datetime.now(UTC).replace(microsecond=123456)
    rows = workload_rows()
    # edge values of the spans columns: unicode, empty maps and tags, NULLs, the largest token count
    edge = dict(rows[1], span_id="edge", input_text="é\n\"x\" 🚀\\", tags=["t1", "t2"], attributes={},
                ttft_ms=12.5, cost_usd=None, max_tokens=None, input_tokens=2**64 - 1, stream=True)  # fmt: skip
    rows.append(edge)
    half = len(rows) // 2  # two requests: two blocks, inserted as one body
    blocks = [w.encode("spans", part, accepted, types) for part in (rows[:half], rows[half:])]
    json_body = w.encode("spans", rows, accepted)
    assert blocks[0] is not None and blocks[1] is not None and json_body is not None
    assert blocks[0] == nb.encode_block_py(rows[:half], w._spec("spans", types) or (), accepted)
    assert len(blocks[0]) + len(blocks[1]) < len(json_body)
    store.command(f"CREATE TABLE {store.table('spans_json')} AS {store.table('spans')}")
    w.write_encoded("spans", blocks, "t-nb", types, distinct_keys=True)
    store.insert_raw("spans_json", json_body, "JSONCompactEachRow",
                     settings={"date_time_input_format": "best_effort"}, columns=_columns("spans"))  # fmt: skip
    cols = ", ".join(f"`{c}`" for c in _columns("spans"))
    a = store.query(f"SELECT {cols} FROM {store.table('spans')} ORDER BY trace_id, span_id").result_rows
    b = store.query(f"SELECT {cols} FROM {store.table('spans_json')} ORDER BY trace_id, span_id").result_rows
    assert len(a) == len(rows) and a == b
    got_edge = store.rows(f"SELECT input_text, input_tokens, tags, stream FROM {store.table('spans')} "
                          "WHERE span_id = 'edge'")[0]  # fmt: skip
    assert got_edge == {
        "input_text": 'é\n"x" 🚀\\',
        "input_tokens": 2**64 - 1,
        "tags": ["t1", "t2"],
        "stream": True,
    }


def test_a_body_in_pieces_is_stored_as_if_it_were_joined(store) -> None:
    """The writer hands the embedded engine its request bodies as pieces, never joined in memory; pieces cut
    anywhere (inside a value, empty, views, one over the 1 MB the backend reads at a time) store exactly the
    rows the joined body stores."""
    from monitor.store.client import _Pieces

    w = StoreWriter(store)
    assert w.learn_types()
    types = w.encoded_types("spans")
    assert types is not None
    rows = workload_rows(1000)
    body = w.encode("spans", rows, dt.datetime.now(UTC), types)
    assert body is not None and len(body) > 2**21
    whole = body
    cuts = [0, 7, 7, 1000, 1001, 1001 + 2**20 + 5, len(whole)]
    pieces = [
        memoryview(whole)[a:b] if i % 2 else bytes(whole[a:b])
        for i, (a, b) in enumerate(itertools.pairwise(cuts))
    ]
    assert b"" in pieces and max(map(len, pieces)) > 2**20
    reader = _Pieces(pieces)
    assert len(reader) == len(whole)
    got = [bytes(reader.read(4096))]
    while got[-1]:
        assert len(got[-1]) <= 4096
        got.append(bytes(reader.read(4096)))
    assert b"".join(got) == whole and reader.read() == b""
    store.command(f"CREATE TABLE {store.table('spans_joined')} AS {store.table('spans')}")
    fmt, cols = "Native", _columns("spans")
    store.insert_raw("spans", pieces, fmt, columns=cols)
    store.insert_raw("spans_joined", whole, fmt, columns=cols)
    names = ", ".join(f"`{c}`" for c in _columns("spans") or [] if c != "ingested_at")
    a = store.query(f"SELECT {names} FROM {store.table('spans')} ORDER BY trace_id, span_id").result_rows
    b = store.query(
        f"SELECT {names} FROM {store.table('spans_joined')} ORDER BY trace_id, span_id"
    ).result_rows
    assert len(a) == len(rows) and a == b
    store.insert_raw("spans", [b"", memoryview(b"")], fmt, columns=cols)  # nothing to insert: no query
    assert store.scalar(f"SELECT count() FROM {store.table('spans')}") == len(rows)


def test_a_batch_encoded_for_types_the_table_no_longer_has_is_stored_not_lost(store) -> None:
    """A block names its columns' types: the engine converts one encoded before the table was altered. A
    store that refuses the block instead (servers without Native type conversion) gets the rows as JSON."""
    w = StoreWriter(store)
    assert w.learn_types()
    types = w.encoded_types("feedback")
    assert types is not None
    rows = [{"trace_id": "t", "kind": "thumbs", "value": 1.5, "feedback_id": f"f{i}"} for i in range(3)]
    body = w.encode("feedback", rows, dt.datetime.now(UTC), types)
    assert body is not None
    # the table changes under the writer: a column's type is widened
    col = next(c for c, t in zip(_columns("feedback") or [], types, strict=True) if t == "Float64")
    store.command(f"ALTER TABLE {store.table('feedback')} MODIFY COLUMN `{col}` Nullable(Float64)")
    w.write_encoded("feedback", [body], "tok", types)
    got = store.rows(f"SELECT feedback_id, `{col}` AS v FROM {store.table('feedback')} ORDER BY feedback_id")
    assert got == [{"feedback_id": f"f{i}", "v": 1.5} for i in range(3)]

    from monitor.store.client import StoreError

    class NoConversion(type(store)):  # type: ignore[misc]
        """The same engine, refusing Native inserts the way a server without type conversion does."""

        def insert_raw(self, table, data, fmt, settings=None, columns=None):  # type: ignore[no-untyped-def]
            if fmt == "Native":
                raise StoreError(
                    f"insert into {table} failed: Code: 53. DB::Exception: Type mismatch for column {col}. "
                    "(TYPE_MISMATCH)"
                )
            return super().insert_raw(table, data, fmt, settings, columns)

    store.__class__ = NoConversion
    try:
        rows2 = [dict(r, feedback_id=f"g{i}") for i, r in enumerate(rows)]
        body2 = w.encode("feedback", rows2, dt.datetime.now(UTC), types)
        assert body2 is not None
        w.write_encoded("feedback", [body2], "tok2", types)  # refused → rows read back → JSON → stored
    finally:
        store.__class__ = NoConversion.__mro__[1]
    got = store.rows(
        f"SELECT feedback_id, `{col}` AS v FROM {store.table('feedback')} WHERE feedback_id LIKE 'g%'"
    )
    assert sorted(r["feedback_id"] for r in got) == ["g0", "g1", "g2"] and {r["v"] for r in got} == {1.5}
    new = w.encoded_types("feedback")  # relearned after that insert landed
    assert new is not None and new != types and new[types.index("Float64")] == "Nullable(Float64)"


def test_every_collector_table_is_encoded_as_native_blocks(store) -> None:
    w = StoreWriter(store)
    assert w.learn_types()
    for table in TABLE_DEFAULTS:
        types = w.encoded_types(table)
        assert types is not None and len(types) == len(_columns(table) or []), table
        assert STAMP_COLUMN[table] == (_columns(table) or [])[-1]
    assert set(SPAN_DEFAULTS) < set(_columns("spans") or [])


def test_duplicate_keys_decide_whether_the_store_may_skip_collapsing_at_insert(store, tmp_path: Path) -> None:
    """optimize_on_insert=0 is only ever asked for an insert without two rows of one span: a span resent
    within one batch (an exporter's retry) is still stored once."""
    from collectors.spool import Spool
    from collectors.spooled_writer import SpooledBatchWriter, _all_distinct, _distinct_keys

    rows = workload_rows(250)[:60]
    assert _distinct_keys(rows[:30]) == frozenset(r["trace_id"] + r["span_id"] for r in rows[:30])
    assert _distinct_keys(rows[:30] + rows[:1]) is None  # a duplicate inside one request
    assert _distinct_keys([{"span_id": "x"}]) is None  # no key to vouch with
    a, b = frozenset({"t1s1"}), frozenset({"t1s2"})
    assert _all_distinct([a, b]) and not _all_distinct([a, a]) and not _all_distinct([a, None])

    w = StoreWriter(store)
    assert w.learn_types()
    types = w.encoded_types("spans")
    count = f"SELECT count() FROM {store.table('spans')}"  # no FINAL: what a plain query sees
    # why it matters: told (wrongly) that keys are distinct, the engine keeps both copies of a resent span
    body = w.encode("spans", rows[:2] + rows[:1], dt.datetime.now(UTC), types)
    assert body is not None
    w.write_encoded("spans", [body], "probe", types, distinct_keys=True)
    assert store.scalar(count) == 3
    store.command(f"TRUNCATE TABLE {store.table('spans')}")

    bw = SpooledBatchWriter(
        w, Spool(tmp_path / "spool", max_bytes=1 << 26), batch_size=10_000, flush_interval=60
    )
    bw.start()
    try:
        assert bw.offer(rows[:30]) and bw.offer(rows[20:40])  # spans 20..29 arrive twice, in one batch
        assert bw.flush(30)
        assert store.scalar(count) == 40
        assert bw.offer(rows[40:60])  # a batch of distinct spans (the fast insert)
        assert bw.flush(30)
        assert store.scalar(count) == 60
    finally:
        assert bw.close(30)
    stored = store.rows(f"SELECT span_id, input_tokens FROM {store.table('spans')} ORDER BY span_id")
    assert [(r["span_id"], r["input_tokens"]) for r in stored] == sorted(
        (r["span_id"], r["input_tokens"]) for r in rows
    )


def test_a_binary_batch_with_a_row_the_store_refuses_is_bisected_and_that_row_quarantined(
    store, tmp_path: Path
) -> None:
    """The store refuses the binary body (and the JSON rewrite) for one row's data: the other rows of the
    batch are stored once and the bad one lands in the quarantine file as a readable row."""
    from collectors.spool import Spool
    from collectors.spooled_writer import SpooledBatchWriter
    from monitor.store.client import StoreError

    class Picky(StoreWriter):
        """A store that cannot parse one value, whatever the encoding: the way a real engine refuses."""

        def __init__(self, store) -> None:  # type: ignore[no-untyped-def]
            super().__init__(store)
            self.inserts: list[tuple[str, int]] = []

        def write_encoded(self, table, bodies, token=None, types=None, distinct_keys=False):  # type: ignore[override]
            data = b"".join(bytes(b) for b in bodies)
            self.inserts.append(("binary" if types else "json", len(data)))
            if b"POISON" in data:
                raise StoreError(
                    "insert into spans failed: Code: 27. DB::Exception: bad value (CANNOT_PARSE_TEXT)"
                )
            super().write_encoded(table, bodies, token, types, distinct_keys)

    w = Picky(store)
    assert w.learn_types()
    rows = workload_rows(250)[:12]
    rows[7] = dict(rows[7], output_text="POISON")
    bw = SpooledBatchWriter(
        w, Spool(tmp_path / "spool", max_bytes=1 << 26), batch_size=10_000, flush_interval=60
    )
    bw.quarantine_path = tmp_path / "quarantine.jsonl"
    bw.start()
    try:
        assert bw.offer(rows)
        assert bw.flush(30)
    finally:
        assert bw.close(30)
    stored = store.rows(f"SELECT span_id FROM {store.table('spans')} FINAL ORDER BY span_id")
    assert [r["span_id"] for r in stored] == sorted(r["span_id"] for i, r in enumerate(rows) if i != 7)
    (line,) = (tmp_path / "quarantine.jsonl").read_text().splitlines()
    q = json.loads(line)
    assert q["table"] == "spans" and "CANNOT_PARSE_TEXT" in q["error"]
    assert q["row"]["span_id"] == rows[7]["span_id"] and q["row"]["output_text"] == "POISON"
    assert q["row"]["input_tokens"] == rows[7]["input_tokens"]  # decoded from the Native block, typed
    assert ("binary", 0) not in w.inserts and w.inserts[0][0] == "binary"
    assert bw.stats().quarantined_by_table == {"spans": 1}


def test_a_store_refusing_to_tell_its_types_gets_json_rows_an_unreachable_one_is_asked_again() -> None:
    """learn_types: an engine error (no grant on system.columns) settles on JSON rows for good, so a replay
    of binary spool records is not held up; an unreachable store is not an answer (asked again later)."""
    from monitor.store.client import StoreError

    class Refusing:
        database = "llm_monitor"

        def __init__(self, message: str) -> None:
            self.message = message
            self.asked = 0

        def query(self, sql: str, parameters: Any = None) -> Any:
            self.asked += 1
            raise StoreError(self.message)

    denied = Refusing("Code: 497. DB::Exception: default: Not enough privileges. (ACCESS_DENIED)")
    w = StoreWriter(denied)  # type: ignore[arg-type]
    assert w.learn_types() and w.types_learned() and w.encoded_types("spans") is None
    down = Refusing("HTTPConnectionPool(host='ch', port=8123): Max retries exceeded (Connection refused)")
    w = StoreWriter(down)  # type: ignore[arg-type]
    assert not w.learn_types() and not w.types_learned() and w.encoded_types("spans") is None
    assert not w.learn_types() and down.asked == 2


def test_the_engine_reads_our_blocks_and_we_read_the_engines(store) -> None:
    """Every column kind, NULLs, rows whose arrays and maps are all empty (a dictionary column with no
    values), and a dictionary over 256 keys: inserted as our blocks, read back equal; and the engine's
    own Native output (its dictionaries hold the default key first) decodes to the same rows."""
    table = store.table("kinds")
    cols = ", ".join(f"`{c}` {t}" for c, t in TYPES.items())
    store.command(f"CREATE TABLE {table} ({cols}, `n` UInt32) ENGINE = MergeTree ORDER BY n")
    spec = nb.build_spec([*TYPES, "n"], [*TYPES.values(), "UInt32"], DEFAULTS, "t6")
    assert spec is not None
    empty = [full_row(n=i, arr=[], m={}, ns=None, nf=None, nu32=None) for i in range(3)]
    many = [
        full_row(n=100 + i, lc=f"v{i}", arr=[f"a{i}", "x"], m={f"k{i % 300}": str(i)}) for i in range(600)
    ]
    blocks = [nb.encode_block(rows, spec, None) for rows in (empty, many)]
    assert blocks[0] is not None and blocks[1] is not None
    store.insert_raw("kinds", blocks, "Native", columns=[*TYPES, "n"])
    expect = [
        {**r, "t6": r["t6"].replace(tzinfo=UTC), "t3": dt.datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=UTC),
         "arr": list(r["arr"])}
        for r in empty + many
    ]  # fmt: skip
    got = store.rows(f"SELECT * FROM {table} ORDER BY n")
    for row in got:  # the engine hands naive datetimes and tz-aware ones alike: compare instants
        for k in ("t9", "t6", "t3"):
            if row[k].tzinfo is None:
                row[k] = row[k].replace(tzinfo=UTC)
    assert len(got) == len(expect) and got == expect
    engine_written = store.client().raw_query(f"SELECT * FROM {table} ORDER BY n FORMAT Native")
    assert nb.decode_rows(engine_written) == expect


def test_a_nullable_datetime_column_writes_zero_ticks_under_null(store) -> None:
    """The alerts table's ``resolved_at``: NULL rows hold 0 ticks under a null map byte of 1."""
    spec = nb.build_spec(["at", "n"], ["Nullable(DateTime64(6, 'UTC'))", "UInt8"], {}, "")
    assert spec is not None
    when = dt.datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    rows = [{"at": None, "n": 0}, {"at": when, "n": 1}]
    out = nb.encode_block(rows, spec, None)
    if nb.native_available:
        assert out == nb.encode_block_py(rows, spec, None)
    us = (when.replace(tzinfo=None) - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)
    assert out == b"".join([
        b"\x02\x02", head("at", "Nullable(DateTime64(6, 'UTC'))"), b"\x01\x00", b"\x00" * 8, us.to_bytes(8, "little"),
        head("n", "UInt8"), b"\x00\x01",
    ])  # fmt: skip
    assert nb.decode_rows(out) == rows
    assert nb.encode_block([{"at": "2026-01-01", "n": 0}], spec, None) is None  # a string is not a datetime
    table = store.table("nullable_at")
    store.command(f"CREATE TABLE {table} (`at` Nullable(DateTime64(6, 'UTC')), `n` UInt8) ENGINE = Memory")
    store.insert_raw("nullable_at", [out], "Native", columns=["at", "n"])
    got = store.rows(f"SELECT toUnixTimestamp64Micro(at) AS us, n FROM {table} ORDER BY n")
    assert got == [{"us": None, "n": 0}, {"us": us, "n": 1}]


# --- long strings: laid out under the GIL, copied after it is released ----------------------------------------


def long_text(i: int, n: int) -> str:
    """Text of about n characters, some ASCII-only, some not (two- to four-byte UTF-8), some with escapes."""
    unit = ("prompt words ", "réponse ünïcødé ", "答案 🚀 ", 'quote " back\\slash\n')[i % 4]
    return (unit * (n // len(unit) + 1))[:n]


@built
@pytest.mark.parametrize("size", [255, 256, 257, 4_000, 300_000])
def test_long_strings_in_every_string_column_are_byte_identical(size: int) -> None:
    # plain, nullable and map-value strings are deferred from 256 bytes on; LowCardinality ones never are.
    # A few rows of 300k characters make a block over the size that releases the GIL; the others stay under.
    rows = []
    for i in range(6):
        m = {"k": long_text(i + 2, size), "short": "v", "": long_text(i + 3, size // 2)}
        ns = long_text(i + 1, size) if i % 2 else None
        rows.append(
            full_row(s=long_text(i, size + i), ns=ns, lc=long_text(i, 300), m=m, arr=("a", long_text(i, 3)))
        )
    out = both(rows)
    assert out is not None
    back = nb.decode_rows(out)
    assert [(b["s"], b["ns"], b["m"]) for b in back] == [(r["s"], r["ns"], r["m"]) for r in rows]


@built
def test_a_refusal_after_long_strings_were_laid_out_still_refuses() -> None:
    big = long_text(0, 10_000)
    # the long strings of the first columns are laid out before the last row's bad value is met
    rows = [full_row(s=big, m={"k": big}) for _ in range(3)] + [full_row(s=big, u8=256)]
    assert both(rows) is None
    lone = big + "\ud800"  # a lone surrogate inside a long string: refused like a short one
    assert both([full_row(s=big), full_row(s=lone)]) is None
    refs = sys.getrefcount(big)
    for _ in range(50):
        assert nb._c_encode(rows, SPEC, None) is None
    assert sys.getrefcount(big) == refs  # the references held for the deferred copies were all dropped


@built
def test_a_large_block_lets_other_threads_run_while_its_strings_are_copied() -> None:
    rows = [full_row(s=long_text(i, 2_000_000)) for i in range(24)]  # ≈ 48 MB to copy
    out, during = progress_during(lambda: nb._c_encode(rows, SPEC, None))
    assert out == nb.encode_block_py(rows, SPEC, None)
    assert during > 0
