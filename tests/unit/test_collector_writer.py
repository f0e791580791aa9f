"""BatchWriter batching, back-pressure, retries and draining; StoreWriter against the real chDB store."""

from __future__ import annotations

import datetime as dt
import threading
import time

from collectors.writer import BatchWriter, MemoryWriter, StoreWriter
from monitor.store.schema import span_row


def rows(n: int, start: int = 0) -> list[dict]:
    return [{"i": i} for i in range(start, start + n)]


def wait_for(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def test_flushes_full_batches_at_once_and_the_rest_after_the_interval():
    mem = MemoryWriter()
    bw = BatchWriter(mem, batch_size=10, flush_interval=0.3, max_rows=1000)
    bw.start()
    t0 = time.monotonic()
    assert bw.offer(rows(25))
    wait_for(lambda: len(mem.rows()) == 20)
    assert time.monotonic() - t0 < 0.25  # two full batches did not wait for the interval
    assert bw.queue_depth == 5
    wait_for(lambda: len(mem.rows()) == 25)
    assert time.monotonic() - t0 >= 0.29  # the remainder waited for it
    assert [r["i"] for r in mem.rows()] == list(range(25))  # order kept
    st = bw.stats()
    assert (st.received, st.written, st.queue_depth, st.write_count) == (25, 25, 0, 3)
    assert st.last_write_latency >= 0 and st.write_latency_sum >= st.last_write_latency
    assert bw.close(1)


def test_a_burst_of_idle_min_rows_goes_once_arrivals_stop_a_trickle_waits_for_the_interval():
    mem = MemoryWriter()
    sizes: list[int] = []
    orig = mem.write
    mem.write = lambda table, batch, token=None: (sizes.append(len(batch)), orig(table, batch))  # type: ignore[method-assign]
    bw = BatchWriter(
        mem, batch_size=10_000, flush_interval=60, max_rows=100_000, idle_seconds=0.2, idle_min_rows=100
    )
    bw.start()
    assert bw.offer(rows(60))
    time.sleep(0.6)  # 60 rows: under idle_min_rows, so only the (60 s) interval would write them
    assert (len(mem.rows()), bw.queue_depth) == (0, 60)
    t0 = time.monotonic()
    assert bw.offer(rows(50, 60))  # 110 rows now: written once nothing more came for 0.2 s
    wait_for(lambda: len(mem.rows()) == 110, timeout=20)
    assert time.monotonic() - t0 >= 0.19
    assert sizes == [110]  # one insert, in order
    assert [r["i"] for r in mem.rows()] == list(range(110))
    assert bw.close(1)


def test_the_idle_rule_never_waits_longer_than_the_interval():
    bw = BatchWriter(MemoryWriter(), batch_size=100, flush_interval=0.01, max_rows=1000)
    assert (bw.idle_seconds, bw.idle_min_rows) == (0.01, 1000)  # capped at flush_interval
    assert BatchWriter(MemoryWriter()).idle_seconds == 0.05


def test_batches_span_several_offers_and_are_cut_at_batch_size():
    mem = MemoryWriter()
    sizes: list[int] = []
    orig = mem.write
    mem.write = lambda table, batch: (sizes.append(len(batch)), orig(table, batch))  # type: ignore[method-assign]
    bw = BatchWriter(mem, batch_size=7, flush_interval=60, max_rows=1000)
    for k in range(5):
        bw.offer(rows(3, 3 * k))
    bw.start()
    wait_for(lambda: len(mem.rows()) == 14)
    assert sizes == [7, 7]
    assert bw.close(1)
    assert sizes == [7, 7, 1]
    assert [r["i"] for r in mem.rows()] == list(range(15))


def test_queue_full_refuses_whole_offers_until_rows_are_written():
    mem = MemoryWriter()
    mem.pause()
    bw = BatchWriter(mem, batch_size=2, flush_interval=0.01, max_rows=10)
    bw.start()
    assert bw.offer(rows(6))
    assert bw.offer(rows(4))
    assert not bw.offer(rows(1))  # full: nothing taken
    st = bw.stats()
    assert (st.received, st.rejected, st.queue_depth, st.queue_capacity) == (10, 1, 10, 10)
    mem.resume()
    wait_for(lambda: bw.queue_depth == 0)
    assert bw.offer(rows(1))
    assert bw.close(1)
    assert len(mem.rows()) == 11


def test_an_offer_bigger_than_the_queue_is_taken_when_the_queue_is_empty():
    mem = MemoryWriter()
    bw = BatchWriter(mem, batch_size=100, flush_interval=60, max_rows=5)
    assert bw.offer(rows(8))
    assert not bw.offer(rows(1))
    assert bw.close(1)
    assert len(mem.rows()) == 8


def test_failed_writes_keep_the_batch_and_retry_until_the_store_is_back():
    mem = MemoryWriter()
    mem.failing = True
    bw = BatchWriter(mem, batch_size=3, flush_interval=0.01, max_rows=100, retry_initial=0.01, retry_max=0.02)
    bw.start()
    bw.offer(rows(7))
    wait_for(lambda: bw.stats().write_failures >= 3)
    st = bw.stats()
    assert not st.healthy and st.last_error == "MemoryWriter is set to fail"
    assert st.written == 0 and st.queue_depth == 7
    mem.failing = False
    wait_for(lambda: bw.stats().written == 7)
    assert bw.healthy
    assert [r["i"] for r in mem.rows()] == list(range(7))  # nothing lost, nothing duplicated
    assert bw.close(1)


def test_close_drains_everything_and_refuses_afterwards():
    mem = MemoryWriter()
    bw = BatchWriter(mem, batch_size=1000, flush_interval=3600, max_rows=10_000)
    bw.start()
    for k in range(10):
        assert bw.offer(rows(50, 50 * k))
    assert mem.rows() == []  # neither batch size nor interval reached
    assert bw.close(5)
    assert len(mem.rows()) == 500
    assert not bw.offer(rows(1))
    assert bw.stats().rejected == 1


def test_close_without_start_still_drains():
    mem = MemoryWriter()
    bw = BatchWriter(mem, batch_size=10, flush_interval=60, max_rows=100)
    bw.offer(rows(3))
    assert bw.close(2)
    assert len(mem.rows()) == 3


def test_close_reports_rows_it_could_not_write():
    mem = MemoryWriter()
    mem.failing = True
    bw = BatchWriter(
        mem, batch_size=10, flush_interval=0.01, max_rows=100, retry_initial=0.01, retry_max=0.01
    )
    bw.start()
    bw.offer(rows(4))
    assert bw.close(0.2) is False
    assert bw.queue_depth == 4
    mem.failing = False  # let the daemon thread finish its retry loop quietly


def test_flush_writes_now():
    mem = MemoryWriter()
    bw = BatchWriter(mem, batch_size=1000, flush_interval=3600, max_rows=10_000)
    bw.start()
    bw.offer(rows(5))
    assert bw.flush(2)
    assert len(mem.rows()) == 5
    bw.offer(rows(2, 5))  # the writer goes back to batching after a flush
    time.sleep(0.05)
    assert len(mem.rows()) == 5
    assert bw.close(1)


def test_concurrent_offers_lose_nothing():
    mem = MemoryWriter()
    bw = BatchWriter(mem, batch_size=64, flush_interval=0.01, max_rows=1_000_000)
    bw.start()

    def producer(base: int) -> None:
        for k in range(100):
            assert bw.offer(rows(3, base + 3 * k))

    threads = [threading.Thread(target=producer, args=(1000 * t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bw.close(5)
    got = sorted(r["i"] for r in mem.rows())
    assert got == sorted(1000 * t + i for t in range(8) for i in range(300))


def test_store_writer_inserts_columns_with_defaults_and_stamp(store):
    start = dt.datetime(2030, 5, 1, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)
    full = span_row({
        "trace_id": "t1", "span_id": "s1", "kind": "llm", "model": "m", "start_time": start,
        "end_time": start + dt.timedelta(seconds=2), "duration_ms": 2000.0, "ttft_ms": 150.0,
        "input_tokens": 3, "output_tokens": 4, "total_tokens": 7, "temperature": 0.5, "max_tokens": 100,
        "stream": True, "tags": ["a", "b"], "attributes": {"k": "v"}, "resource": {"service.name": "svc"},
    })  # fmt: skip
    partial = {"trace_id": "t2", "span_id": "s2", "start_time": start}  # the rest: schema defaults
    before = dt.datetime.now(dt.timezone.utc)
    StoreWriter(store).write("spans", [full, partial])
    got = store.rows(f"SELECT * FROM {store.table('spans')} ORDER BY span_id")
    assert len(got) == 2
    a, b = got
    assert (a["kind"], a["model"], a["total_tokens"], a["ttft_ms"], a["max_tokens"]) == (
        "llm",
        "m",
        7,
        150.0,
        100,
    )
    assert a["start_time"].replace(tzinfo=dt.timezone.utc) == start
    assert (
        a["tags"] == ["a", "b"] and a["attributes"] == {"k": "v"} and a["resource"] == {"service.name": "svc"}
    )
    assert a["stream"] is True and a["temperature"] == 0.5 and a["cost_usd"] is None
    assert (b["kind"], b["status"], b["ttft_ms"], b["cost_usd"], b["attributes"]) == (
        "other",
        "unset",
        None,
        None,
        {},
    )
    assert a["ingested_at"].replace(tzinfo=dt.timezone.utc) >= before - dt.timedelta(seconds=1)


def test_store_outage_is_retried_until_the_table_is_back(store):
    """A real store failure (the table is gone) raises StoreError; the batch waits and lands once it is back."""
    spans, away = store.table("spans"), store.table("spans_away")
    store.command(f"RENAME TABLE {spans} TO {away}")
    now = dt.datetime.now(dt.timezone.utc)
    bw = BatchWriter(StoreWriter(store), batch_size=10, flush_interval=0.01, max_rows=100,
                     retry_initial=0.02, retry_max=0.05)  # fmt: skip
    bw.start()
    assert bw.offer([span_row({"trace_id": "t", "span_id": f"s{i}", "start_time": now}) for i in range(5)])
    wait_for(lambda: bw.stats().write_failures >= 2)
    st = bw.stats()
    assert not st.healthy and "insert into spans failed" in st.last_error and st.written == 0
    store.command(f"RENAME TABLE {away} TO {spans}")
    wait_for(lambda: bw.stats().written == 5, timeout=10)
    assert bw.healthy
    assert store.scalar(f"SELECT count() FROM {spans}") == 5
    assert bw.close(2)


def test_store_writer_keeps_a_feedback_rows_own_created_at_and_stamps_the_rest(store) -> None:
    """created_at is in the feedback sort key: a validated client time survives (both insert paths), so a
    retry of the same feedback_id is the same row; rows without one get the insert time."""
    before = dt.datetime.now(dt.timezone.utc)
    told = (before - dt.timedelta(hours=3)).replace(microsecond=500000)  # recent: older rows may be TTL'd
    w = StoreWriter(store)
    w.write("feedback", [{"trace_id": "t", "kind": "thumbs", "value": 1.0, "feedback_id": "f1", "created_at": told},
                         {"trace_id": "t", "kind": "thumbs", "value": 0.0, "feedback_id": "f2"}])  # fmt: skip
    # the native path: a row orjson refuses (here a non-string key) sends its batch through columns
    w.write("feedback", [{"trace_id": "t", "kind": "x", "value": 1.0, "feedback_id": "f3", "created_at": told,
                          0: "not a column"}])  # fmt: skip
    got = {r["feedback_id"]: r["created_at"].replace(tzinfo=dt.timezone.utc)
           for r in store.rows(f"SELECT feedback_id, created_at FROM {store.table('feedback')}")}  # fmt: skip
    assert got["f1"] == told and got["f3"] == told
    assert got["f2"] >= before - dt.timedelta(seconds=1)


def test_store_writer_encode_then_write_encoded_stores_the_same_rows_as_write(store) -> None:
    start = dt.datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc)
    accepted = dt.datetime(2030, 1, 2, 3, 4, 6, tzinfo=dt.timezone.utc)
    w = StoreWriter(store)
    a = [span_row({"trace_id": "t", "span_id": f"a{i}", "start_time": start, "input_text": "é\n\"x\""})
         for i in range(3)]  # fmt: skip
    b = [{"trace_id": "t", "span_id": "b0", "start_time": start, "tags": ["q"]}]  # defaults filled in
    bodies = [w.encode("spans", a, accepted), w.encode("spans", b, accepted)]
    assert all(isinstance(x, bytes) and x.count(b"\n") == n for x, n in zip(bodies, (3, 1), strict=True))
    assert bodies[0] == w.encode("spans", a, accepted)  # deterministic: a replay is byte-identical
    w.write_encoded("spans", [memoryview(x) for x in bodies], token="tok")
    w.write_encoded("spans", bodies, token="tok")  # the same token again: dropped by the engine
    got = store.rows(f"SELECT span_id, start_time, input_text, tags, ingested_at FROM {store.table('spans')} "
                     "ORDER BY span_id")  # fmt: skip
    assert [r["span_id"] for r in got] == ["a0", "a1", "a2", "b0"]
    utc = dt.timezone.utc
    assert {(r["start_time"].replace(tzinfo=utc), r["ingested_at"].replace(tzinfo=utc)) for r in got} == {
        (start, accepted)
    }
    assert got[0]["input_text"] == 'é\n"x"' and got[3]["tags"] == ["q"]
