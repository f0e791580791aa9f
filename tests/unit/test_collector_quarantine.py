"""A batch the store refuses for its *data* is bisected: good rows stored once, bad rows quarantined."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from collectors.spool import Spool
from collectors.spooled_writer import SpooledBatchWriter
from collectors.writer import BatchWriter, MemoryWriter, Row, StoreWriter
from monitor.store.client import StoreError


def wait_for(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def spooled(mem: MemoryWriter, d: Path, **kw) -> SpooledBatchWriter:
    kw = {
        "batch_size": 10,
        "flush_interval": 0.01,
        "max_rows": 100,
        "retry_initial": 0.01,
        "retry_max": 0.02,
        **kw,
    }
    return SpooledBatchWriter(mem, Spool(d, max_bytes=1 << 20), **kw)


def quarantined(d: Path) -> list[dict]:
    p = d / "quarantine.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


def test_a_poisoned_row_among_ten_is_quarantined_and_the_nine_others_are_stored_once(tmp_path: Path) -> None:
    mem = MemoryWriter()
    mem.poison = lambda r: r.get("bad", False)
    bw = spooled(mem, tmp_path)
    bw.start()
    assert bw.offer([{"i": i, "bad": i == 6} for i in range(10)])
    assert bw.flush(5)
    assert [r["i"] for r in mem.rows()] == [0, 1, 2, 3, 4, 5, 7, 8, 9]  # each exactly once, in order
    assert mem.deduplicated == 0
    (q,) = quarantined(tmp_path)
    assert q["table"] == "spans" and q["row"] == {"i": 6, "bad": True}
    assert q["error"] == "MemoryWriter: a row is poisoned (CANNOT_PARSE_TEXT)" and q["time"]
    st = bw.stats()
    assert st.quarantined_by_table == {"spans": 1}
    assert st.written == 9 and st.written_by_table == {"spans": 9} and st.backlog == 0 and st.healthy
    # the spool committed the range: later batches flow
    assert bw.offer([{"i": i} for i in range(10, 15)])
    assert bw.flush(5)
    assert [r["i"] for r in mem.rows()][9:] == [10, 11, 12, 13, 14]
    assert bw.stats().quarantined_by_table == {"spans": 1} and bw.stats().written == 14
    assert bw.close(5)
    assert len(quarantined(tmp_path)) == 1


def test_every_bad_row_is_isolated_and_the_batch_needs_few_inserts(tmp_path: Path) -> None:
    mem = MemoryWriter()
    mem.poison = lambda r: r["i"] in (0, 9)
    bw = spooled(mem, tmp_path)
    bw.start()
    assert bw.offer([{"i": i} for i in range(10)])
    assert bw.flush(5)
    assert [r["i"] for r in mem.rows()] == list(range(1, 9))
    assert sorted(q["row"]["i"] for q in quarantined(tmp_path)) == [0, 9]
    assert bw.stats().quarantined_by_table == {"spans": 2}
    assert bw.close(5)


def test_a_transient_error_is_retried_not_quarantined(tmp_path: Path) -> None:
    mem = MemoryWriter()
    mem.failing = True
    bw = spooled(mem, tmp_path)
    bw.start()
    assert bw.offer([{"i": i} for i in range(10)])
    wait_for(lambda: bw.stats().write_failures >= 3)
    st = bw.stats()
    assert not st.healthy and st.written == 0 and st.quarantined_by_table == {}
    assert quarantined(tmp_path) == []
    mem.failing = False
    assert bw.flush(5)
    assert [r["i"] for r in mem.rows()] == list(range(10))
    assert bw.stats().quarantined_by_table == {} and quarantined(tmp_path) == []
    assert bw.close(5)


class CrashingWriter(MemoryWriter):
    """Fails (an outage, not a data error) every insert whose token ends with ``fail_suffix``."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_suffix: str | None = None
        self.tokens_seen: list[str | None] = []

    def write(self, table: str, rows: Sequence[Row], token: str | None = None) -> None:
        self.tokens_seen.append(token)
        if self.fail_suffix and token and token.endswith(self.fail_suffix):
            raise RuntimeError("store down")
        super().write(table, rows, token)


def test_an_outage_mid_bisection_is_retried_and_a_replay_after_a_crash_duplicates_nothing(
    tmp_path: Path,
) -> None:
    mem = CrashingWriter()
    mem.poison = lambda r: r["i"] == 7
    mem.fail_suffix = ":spans:1"  # the second half: the store goes down after the first half landed
    bw = spooled(mem, tmp_path)
    bw.start()
    assert bw.offer([{"i": i} for i in range(10)])
    wait_for(lambda: bw.stats().write_failures >= 3)  # retried with backoff, not quarantined
    assert [r["i"] for r in mem.rows()] == [0, 1, 2, 3, 4]
    (token,) = {t for t in mem.tokens_seen if t and not t.endswith(":1") and not t.endswith(":0")}
    assert mem.tokens == {token + ":0"}
    assert bw.stats().quarantined_by_table == {} and quarantined(tmp_path) == []
    # crash: the intent is recorded, the range not committed
    bw._abort.set()
    bw._closing = True
    with bw._cond:
        bw._cond.notify_all()
    assert bw._thread is not None
    bw._thread.join(5)
    assert not bw._thread.is_alive()
    os.close(bw.spool._lock_fd)

    mem.fail_suffix = None
    bw2 = spooled(mem, tmp_path)
    bw2.start()
    assert bw2.flush(5)
    assert [r["i"] for r in mem.rows()] == [0, 1, 2, 3, 4, 5, 6, 8, 9]  # nothing twice
    assert mem.deduplicated == 5  # the first half, replayed with the same token
    assert mem.tokens == {token + s for s in (":0", ":1:0", ":1:1:1")}
    (q,) = quarantined(tmp_path)
    assert q["row"] == {"i": 7} and q["token"] == token + ":1:1:0"
    st = bw2.stats()
    assert st.quarantined_by_table == {"spans": 1} and st.written == 9 and st.backlog == 0
    assert bw2.close(5)


def test_without_a_spool_the_bad_row_is_logged_at_error(caplog: pytest.LogCaptureFixture) -> None:
    mem = MemoryWriter()
    mem.poison = lambda r: r["i"] == 2
    bw = BatchWriter(mem, batch_size=5, flush_interval=0.01, max_rows=100)
    with caplog.at_level(logging.ERROR, logger="llm_monitor.collector"):
        assert bw.offer([{"i": i} for i in range(5)])
        assert bw.flush(5)
    assert [r["i"] for r in mem.rows()] == [0, 1, 3, 4]
    assert any(
        '"row": {"i": 2}' in rec.getMessage() and rec.levelno == logging.ERROR for rec in caplog.records
    )
    st = bw.stats()
    assert st.quarantined_by_table == {"spans": 1} and st.written == 4 and st.queue_depth == 0
    assert bw.close(1)


def test_store_writer_classifies_only_bad_data_as_a_data_error() -> None:
    w = StoreWriter(store=None)  # type: ignore[arg-type]
    bad = [
        "insert into spans failed: Code: 27. DB::Exception: Cannot parse input ... (CANNOT_PARSE_INPUT_ASSERTION_FAILED)",
        "insert into spans failed: Code: 41. DB::Exception: Cannot read DateTime ... (CANNOT_PARSE_DATETIME)",
        "insert into spans failed: Code: 53. DB::Exception: Type mismatch (TYPE_MISMATCH)",
    ]
    fine = [
        "insert into spans failed: Code: 60. DB::Exception: Table x.spans does not exist. (UNKNOWN_TABLE)",
        "insert into spans failed: Code: 47. DB::Exception: Missing columns (UNKNOWN_IDENTIFIER)",
        "insert into spans failed: Code: 16. DB::Exception: No such column (NO_SUCH_COLUMN_IN_TABLE)",
        "insert into spans failed: Code: 33. DB::Exception: Cannot read all data (CANNOT_READ_ALL_DATA)",
        "insert into spans failed: Code: 241. DB::Exception: Memory limit exceeded (MEMORY_LIMIT_EXCEEDED)",
        "insert into spans failed: Code: 43. DB::Exception: Illegal type (ILLEGAL_TYPE_OF_ARGUMENT)",
        "insert into spans failed: HTTPConnectionPool(host='localhost', port=8123): Connection refused",
        "insert into spans failed: (CANNOT_PARSE_TEXT) in the middle, not the error name",
    ]
    assert all(w.is_data_error(StoreError(m)) for m in bad)
    assert not any(w.is_data_error(StoreError(m)) for m in fine)
    assert not w.is_data_error(RuntimeError(bad[0]))  # only the store's own errors
    assert not w.is_data_error(ConnectionError("refused"))


def test_a_broken_classifier_means_retry(tmp_path: Path) -> None:
    class Broken(MemoryWriter):
        def is_data_error(self, exc: BaseException) -> bool:
            raise AssertionError("boom")

    mem = Broken()
    mem.poison = lambda r: r["i"] == 1
    bw = spooled(mem, tmp_path)
    bw.start()
    assert bw.offer([{"i": i} for i in range(3)])
    wait_for(lambda: bw.stats().write_failures >= 2)
    assert mem.rows() == [] and bw.stats().quarantined_by_table == {}
    mem.poison = None
    assert bw.flush(5)
    assert [r["i"] for r in mem.rows()] == [0, 1, 2]
    assert bw.close(5)
