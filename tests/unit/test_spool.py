"""The write-ahead spool on a real directory: records, checkpoints, segments, damage, bounds, group commit;
and SpooledBatchWriter's exactly-once replay over it with an in-memory writer."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from collectors.spool import HEADER, Spool, SpoolError, SpoolFull
from collectors.spooled_writer import SpooledBatchWriter, decode_rows, encode_rows
from collectors.writer import MemoryWriter


def payload(i: int, size: int = 100) -> bytes:
    return f"{i:08d}".encode() * (size // 8)


def opened(d: Path, **kw) -> Spool:
    kw.setdefault("max_bytes", 1 << 20)
    return Spool(d, **kw).open()


def segs(d: Path) -> list[Path]:
    return sorted(d.glob("*.seg"))


def test_append_read_commit_and_reopen_resumes_at_the_checkpoint(tmp_path: Path) -> None:
    sp = opened(tmp_path)
    seqs = [sp.append(payload(i), count=2) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert sp.read(1, 5, 100) == []  # nothing is durable yet: a reader never sees it
    sp.wait_durable(5)
    recs = sp.read(1, 5, 100)
    assert [(r.seq, r.count, r.payload) for r in recs] == [(i + 1, 2, payload(i)) for i in range(5)]
    assert [r.seq for r in sp.read(2, 3, 100)] == [2, 3]
    assert [r.seq for r in sp.read(1, 5, 3)] == [1, 2]  # stops once max_items items were collected
    sp.begin(1, 3)
    sp.commit(3, 6)
    st = sp.stats()
    assert (st.last_seq, st.durable_seq, st.committed_seq, st.pending_items) == (5, 5, 3, 4)
    assert st.appended_records == 5 and st.appended_items == 10 and st.fsyncs >= 1
    sp.close()
    again = opened(tmp_path)
    assert again.committed_seq == 3 and again.intent is None and again.epoch == sp.epoch
    assert again.stats().pending_items == 4
    assert [r.seq for r in again.read(4, 10, 100)] == [4, 5]
    assert again.append(b"x", 1) == 6  # sequence numbers are never reused
    again.close()


def test_a_payload_in_pieces_is_the_same_record_as_joined(tmp_path: Path) -> None:
    """The collector spools a request as (prefix, body) without joining them: the segment bytes (CRC
    included) are those of the joined payload, and it reads back joined."""
    pieces = [b"LMb1spans\n", memoryview(payload(1, 70_000)), b"", bytearray(payload(2, 9))]
    whole = b"".join(bytes(p) for p in pieces)
    a, b = opened(tmp_path / "a"), opened(tmp_path / "b")
    assert a.append(pieces, 3) == b.append(whole, 3) == 1
    assert a.append(b"tail", 1) == b.append([b"ta", b"il"], 1) == 2
    for sp in (a, b):
        sp.wait_durable(2)
        assert [(r.seq, r.count, r.payload) for r in sp.read(1, 2, 100)] == [(1, 3, whole), (2, 1, b"tail")]
        assert sp.stats().appended_bytes == 2 * HEADER.size + len(whole) + 4
        sp.close()
    assert [f.read_bytes() for f in segs(tmp_path / "a")] == [f.read_bytes() for f in segs(tmp_path / "b")]


def test_an_unfinished_intent_survives_a_crash(tmp_path: Path) -> None:
    sp = opened(tmp_path)
    for i in range(4):
        sp.append(payload(i), 1)
    sp.wait_durable(4)
    sp.begin(1, 2)
    sp.commit(2, 2)
    sp.begin(3, 4)  # ...and the process dies during this insert (no close)
    sp._lock_fd, fd = -1, sp._lock_fd  # simulate the death: the lock goes with the process
    import os

    os.close(fd)
    again = opened(tmp_path)
    assert again.committed_seq == 2 and again.intent == (3, 4)
    assert [r.seq for r in again.read(3, 4, 1 << 30)] == [3, 4]
    again.close()


def test_segments_rotate_and_are_deleted_once_committed(tmp_path: Path) -> None:
    sp = opened(tmp_path, segment_bytes=1000)
    for i in range(20):  # 120 bytes a record: 8 per segment
        sp.append(payload(i), 1)
    sp.wait_durable(20)
    assert len(segs(tmp_path)) == 3 and sp.stats().segments == 3
    assert [r.seq for r in sp.read(1, 20, 100)] == list(range(1, 21))  # across segment boundaries
    sp.commit(8, 8)
    assert len(segs(tmp_path)) == 2  # the first segment is entirely stored: gone
    sp.commit(20, 12)
    names = segs(tmp_path)
    assert len(names) == 1 and names[0].name == f"{17:020d}.seg"  # the live segment stays
    assert sp.stats().bytes == names[0].stat().st_size
    sp.close()
    again = opened(tmp_path, segment_bytes=1000)
    assert again.stats().pending_items == 0 and again.append(b"y", 1) == 21
    again.close()


def test_corrupt_middle_record_and_torn_tail_are_skipped_and_counted(tmp_path: Path) -> None:
    sp = opened(tmp_path)
    for i in range(6):
        sp.append(payload(i), 1)
    sp.close()
    (seg,) = segs(tmp_path)
    data = bytearray(seg.read_bytes())
    rec = HEADER.size + len(payload(0))
    assert len(data) == 6 * rec
    data[1 * rec + HEADER.size + 10] ^= 0xFF  # flip a payload byte of record 2
    data[3 * rec + 2] ^= 0xFF  # and the magic of record 4
    seg.write_bytes(bytes(data[: 5 * rec + 30]))  # record 6 torn: the power went mid-write
    again = opened(tmp_path)
    st = again.stats()
    assert (st.corrupt_records, st.torn_records) == (2, 1)
    assert [r.seq for r in again.read(1, 10, 100)] == [1, 3, 5]
    assert seg.stat().st_size == 5 * rec  # the torn tail was cut (damage with nothing valid after it)
    assert again.append(b"z", 1) == 6  # seq 6 never became a valid record: it is free again
    again.wait_durable(6)
    assert [r.seq for r in again.read(4, 10, 100)] == [5, 6]
    assert again.stats().corrupt_records == 2  # known damage is not counted twice by readers
    again.close()


def test_bounded_size_refuses_with_spool_full_until_space_is_committed(tmp_path: Path) -> None:
    sp = opened(tmp_path, max_bytes=1000, segment_bytes=500)
    n = 0
    with pytest.raises(SpoolFull):
        while True:
            sp.append(payload(n), 1)
            n += 1
    assert n == 8 and sp.stats().bytes <= 1000
    sp.wait_durable(n)
    sp.commit(n, n)  # stored: the full segments go, the live one is rotated away on the next append
    assert sp.append(payload(99), 1) == n + 1
    sp.close()


def test_a_second_spool_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    sp = opened(tmp_path)
    with pytest.raises(SpoolError, match="in use by another collector"):
        opened(tmp_path)
    sp.close()
    opened(tmp_path).close()


def test_group_commit_many_threads_few_fsyncs(tmp_path: Path) -> None:
    sp = opened(tmp_path, max_bytes=1 << 26)
    done: list[int] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        for i in range(50):
            seq = sp.append(payload(k * 1000 + i, 1000), 1)
            sp.wait_durable(seq)
            assert sp.durable_seq >= seq
            with lock:
                done.append(seq)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    st = sp.stats()
    assert sorted(done) == list(range(1, 401))
    assert st.fsyncs < 400  # waiters shared fsyncs
    assert st.fsync_seconds_sum > 0 and elapsed > 0
    sp.close()


def test_rows_round_trip_and_foreign_classes_are_refused() -> None:
    import datetime as dt
    import pickle

    rows = [{"a": 1, "t": dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc), "m": {"k": "v"}, "n": None}]
    assert decode_rows(encode_rows("spans", rows)) == ("spans", rows)
    with pytest.raises(pickle.UnpicklingError, match="forbidden class"):
        decode_rows(pickle.dumps(("spans", [Path("/")])))


def test_spooled_writer_stores_a_finished_burst_after_the_idle_time_not_the_interval(tmp_path: Path) -> None:
    mem = MemoryWriter()
    bw = SpooledBatchWriter(mem, Spool(tmp_path, max_bytes=1 << 22), batch_size=10_000, flush_interval=60,
                            max_rows=100_000, idle_seconds=0.2, idle_min_rows=100)  # fmt: skip
    bw.start()
    try:
        assert bw.offer([{"i": i} for i in range(60)])
        time.sleep(0.6)  # under idle_min_rows: waits for the 60 s interval
        assert (len(mem.rows()), bw.stats().written) == (0, 0)
        t0 = time.monotonic()
        assert bw.offer([{"i": i} for i in range(60, 110)])
        deadline = time.monotonic() + 20
        while len(mem.rows()) < 110 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert time.monotonic() - t0 >= 0.19
        assert [r["i"] for r in mem.rows()] == list(range(110))
        assert len(mem.tokens) == 1  # both records in one insert
        assert bw.spool.stats().pending_items == 0  # and committed
    finally:
        assert bw.close(5)


def test_writer_replays_an_unfinished_range_with_the_same_token(tmp_path: Path) -> None:
    """Crash between the insert and the checkpoint: the replay carries the same token and is dropped."""
    mem = MemoryWriter()
    bw = SpooledBatchWriter(mem, Spool(tmp_path, max_bytes=1 << 20), batch_size=10, flush_interval=0.01,
                            max_rows=100)  # fmt: skip
    bw.start()
    assert bw.offer([{"i": i} for i in range(5)])
    assert bw.flush(5)
    (token,) = mem.tokens
    sp = bw.spool
    # what a crash right after the insert leaves: the intent recorded, the checkpoint not advanced
    sp._committed = sp._durable_committed = 0
    sp.intent = (1, 1)
    sp._write_state()
    bw._abort.set()
    bw._closing = True
    with bw._cond:
        bw._cond.notify_all()
    assert bw._thread is not None
    bw._thread.join(5)
    import os

    os.close(sp._lock_fd)
    bw2 = SpooledBatchWriter(mem, Spool(tmp_path, max_bytes=1 << 20), batch_size=10, flush_interval=0.01,
                             max_rows=100)  # fmt: skip
    bw2.start()
    assert bw2.flush(5)
    assert mem.tokens == {token} and mem.deduplicated == 5
    assert [r["i"] for r in mem.rows()] == list(range(5))
    assert bw2.stats().replayed == 5
    assert bw2.close(5)


def test_writer_with_a_failing_store_spills_to_disk_keeps_memory_bounded_and_catches_up(
    tmp_path: Path,
) -> None:
    mem = MemoryWriter()
    mem.failing = True
    bw = SpooledBatchWriter(mem, Spool(tmp_path, max_bytes=1 << 20), batch_size=7, flush_interval=0.01,
                            max_rows=20, retry_initial=0.01, retry_max=0.02)  # fmt: skip
    bw.start()
    peak = 0
    for k in range(30):
        assert bw.offer([{"i": 3 * k + j} for j in range(3)])
        peak = max(peak, bw.queue_depth)
    assert peak <= 20  # the memory queue is only a cache of the log's tail
    st = bw.stats()
    assert st.backlog == 90 and st.written == 0 and not st.healthy
    mem.failing = False
    assert bw.flush(10)
    assert [r["i"] for r in mem.rows()] == list(range(90))  # in order, each once
    st = bw.stats()
    assert st.written == 90 and st.backlog == 0 and st.replayed > 0 and st.queue_depth == 0
    assert bw.close(5)


class EncodingWriter(MemoryWriter):
    """A MemoryWriter that, like StoreWriter, encodes rows (one JSON array a line, in ``columns`` order) on
    the request thread and stores the concatenated bytes: rows it cannot encode (``"raw"`` set) go the
    row-dict way."""

    def __init__(self, columns: dict[str, list[str]] | None = None) -> None:
        super().__init__()
        self.encoded_writes: list[tuple[str, str | None]] = []
        self.columns = columns or {"spans": ["i", "at"], "feedback": ["fb", "at"]}

    def encoded_columns(self, table):
        return self.columns[table]

    def encode(self, table, rows, stamp):
        if any("raw" in r for r in rows):
            return None
        names = self.columns[table][:-1]
        return b"".join(
            json.dumps([*(r.get(c) for c in names), stamp.isoformat()]).encode() + b"\n" for r in rows
        )

    def write_encoded(self, table, bodies, token=None):
        names = self.columns[table]
        rows = [dict(zip(names, json.loads(line), strict=True)) for line in b"".join(bodies).splitlines()]
        self.write(table, rows, token)
        self.encoded_writes.append((table, token))


def test_records_spooled_before_a_schema_change_replay_as_rows(tmp_path: Path) -> None:
    old = EncodingWriter()
    old.failing = True  # the store is down when the collector stops: the records stay on disk
    bw = SpooledBatchWriter(old, Spool(tmp_path, max_bytes=1 << 20), batch_size=10, flush_interval=0.01,
                            max_rows=100, retry_initial=0.01, retry_max=0.02)  # fmt: skip
    bw.start()
    assert bw.offer([{"i": i} for i in range(4)])
    assert not bw.close(0.3)  # gave up: nothing stored, everything still spooled
    assert old.rows() == []
    # the next version has a new column; the spooled bodies name the old columns, so they come back as
    # row dicts (with their acceptance time) and go through the new writer's own encoding
    new = EncodingWriter({"spans": ["i", "j", "at"], "feedback": ["fb", "at"]})
    bw2 = SpooledBatchWriter(new, Spool(tmp_path, max_bytes=1 << 20), batch_size=10, flush_interval=0.01,
                             max_rows=100)  # fmt: skip
    bw2.start()
    assert bw2.flush(5)
    rows = new.rows()
    assert [(r["i"], r.get("j")) for r in rows] == [(0, None), (1, None), (2, None), (3, None)]
    assert len({r["at"] for r in rows}) == 1 and all(r["at"] for r in rows)
    assert bw2.stats().replayed == 4
    assert bw2.close(5)


def test_encoded_rows_are_spooled_once_inserted_unchanged_and_replayed_from_disk(tmp_path: Path) -> None:
    mem = EncodingWriter()
    mem.failing = True  # the store is down: later requests live on disk only and are read back from there
    bw = SpooledBatchWriter(mem, Spool(tmp_path, max_bytes=1 << 20), batch_size=7, flush_interval=0.01,
                            max_rows=6, retry_initial=0.01, retry_max=0.02)  # fmt: skip
    bw.start()
    for k in range(6):
        assert bw.offer([{"i": 3 * k + j} for j in range(3)])
    assert bw.offer([{"i": 100, "raw": 1}])  # not encodable: pickled rows, same range, own token
    assert bw.offer([{"fb": 1}], table="feedback")
    mem.failing = False
    assert bw.flush(10)
    spans = mem.rows()
    assert [r["i"] for r in spans] == [*range(18), 100]  # in order, each once
    ats = [r["at"] for r in spans[:18]]  # stamped at acceptance, once per request
    assert all(ats[3 * k] == ats[3 * k + 1] == ats[3 * k + 2] for k in range(6)) and "at" not in spans[18]
    assert [r["fb"] for r in mem.rows("feedback")] == [1]
    tables = [t for t, _ in mem.encoded_writes]
    assert tables.count("spans") >= 2 and "feedback" in tables
    assert all(tok and tok.endswith(":" + t) for t, tok in mem.encoded_writes)
    assert any(tok.endswith(":spans:rows") for tok in mem.tokens)  # the pickled request's own insert
    st = bw.stats()
    assert st.written == 20 and st.replayed > 0 and st.backlog == 0 and st.queue_depth == 0
    assert st.written_by_table == {"spans": 19, "feedback": 1}
    assert bw.close(5)


def test_an_encoded_range_replayed_after_a_crash_carries_the_same_token(tmp_path: Path) -> None:
    mem = EncodingWriter()
    bw = SpooledBatchWriter(mem, Spool(tmp_path, max_bytes=1 << 20), batch_size=10, flush_interval=0.01,
                            max_rows=100)  # fmt: skip
    bw.start()
    assert bw.offer([{"i": i} for i in range(5)])
    assert bw.flush(5)
    (token,) = mem.tokens
    sp = bw.spool
    sp._committed = sp._durable_committed = 0  # a crash after the insert, before the checkpoint
    sp.intent = (1, 1)
    sp._write_state()
    bw._abort.set()
    bw._closing = True
    with bw._cond:
        bw._cond.notify_all()
    assert bw._thread is not None
    bw._thread.join(5)
    import os

    os.close(sp._lock_fd)
    bw2 = SpooledBatchWriter(mem, Spool(tmp_path, max_bytes=1 << 20), batch_size=10, flush_interval=0.01,
                             max_rows=100)  # fmt: skip
    bw2.start()
    assert bw2.flush(5)
    assert mem.tokens == {token} and mem.deduplicated == 5
    assert [r["i"] for r in mem.rows()] == list(range(5))
    assert bw2.close(5)


def test_payload_formats_are_told_apart() -> None:
    from collectors.spooled_writer import decode_payload, encoded_prefix

    payload = encoded_prefix("feedback", ["a", "b"]) + b'[1,"x"]\n[2,"y"]\n'
    table, rows, body, types = decode_payload(payload, lambda t: ["a", "b"] if t == "feedback" else None)
    assert (table, rows, bytes(body or b""), types) == ("feedback", None, b'[1,"x"]\n[2,"y"]\n', None)
    # the writer's columns changed since (or it takes rows): the same record comes back as row dicts
    assert decode_payload(payload, lambda t: ["a", "b", "c"]) == (
        "feedback",
        [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}],
        None,
        None,
    )
    assert decode_payload(payload) == ("feedback", [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}], None, None)
    # JSONEachRow records of collectors before compact rows, and pickled rows: replayed as rows
    assert decode_payload(b'LMe1spans\n{"a":1}\n{"a":2}\n', lambda t: ["a"]) == (
        "spans",
        [{"a": 1}, {"a": 2}],
        None,
        None,
    )
    assert decode_payload(encode_rows("spans", [{"a": 1}])) == (
        "spans",
        [{"a": 1}],
        None,
        None,
    )  # older spools


def test_native_payloads_replay_unchanged_only_for_the_same_types() -> None:
    from collectors import native
    from collectors.spooled_writer import decode_payload, encoded_prefix

    names, types = ["a", "b"], ["UInt64", "Nullable(String)"]
    spec = native.build_spec(names, types, {}, "")
    assert spec is not None
    rows = [{"a": 7, "b": "x"}, {"a": 2**64 - 1, "b": None}]
    body = native.encode_block(rows, spec, None)
    assert body == (
        b"\x02\x02" + b"\x01a\x06UInt64" + b"\x07" + b"\x00" * 7 + b"\xff" * 8
        + b"\x01b\x10Nullable(String)" + b"\x00\x01" + b"\x01x\x00"
    )  # fmt: skip
    payload = encoded_prefix("feedback", names, types) + body
    assert payload.startswith(b"LMn1feedback\n")
    same = decode_payload(payload, lambda t: names, lambda t: types)
    assert (same[0], same[1], bytes(same[2] or b""), same[3]) == ("feedback", None, body, types)
    # a column's type changed, or the writer has not learned types: the body is read back into rows
    assert decode_payload(payload, lambda t: names, lambda t: ["UInt32", "Nullable(String)"]) == (
        "feedback", rows, None, None,
    )  # fmt: skip
    assert decode_payload(payload, lambda t: names) == ("feedback", rows, None, None)
    assert decode_payload(payload, lambda t: ["a", "b", "c"], lambda t: types) == (
        "feedback",
        rows,
        None,
        None,
    )


def test_rowbinary_payloads_of_earlier_collectors_replay_as_rows() -> None:
    """Collectors before Native blocks spooled RowBinary rows (marker LMb1): read back into rows, whatever
    the writer's types, and written again."""
    from collectors.spooled_writer import decode_payload

    names, types = ["a", "b"], ["UInt64", "Nullable(String)"]
    body = b"\x07" + b"\x00" * 7 + b"\x00\x01x" + b"\xff" * 8 + b"\x01"  # RowBinary of the rows below
    payload = b'LMb1feedback\n["a","b"]\n["UInt64","Nullable(String)"]\n' + body
    rows = [{"a": 7, "b": "x"}, {"a": 2**64 - 1, "b": None}]
    assert decode_payload(payload, lambda t: names, lambda t: types) == ("feedback", rows, None, None)
    assert decode_payload(payload, lambda t: names) == ("feedback", rows, None, None)
