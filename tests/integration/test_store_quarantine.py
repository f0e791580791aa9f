"""A row ClickHouse cannot parse, through the real StoreWriter and the spooled BatchWriter: the good rows of
its batch land in ``spans``, the bad one in the quarantine file, and /metrics counts it."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from collectors.server import CollectorServer
from collectors.writer import StoreWriter
from monitor.store.client import StoreError
from monitor.store.schema import span_row


def _span(i: int, **over) -> dict:
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    return span_row({"trace_id": "q" * 32, "span_id": f"{i:016x}", "name": f"chat {i}", "start_time": start,
                     "end_time": start, "input_tokens": 10 + i, **over})  # fmt: skip


def test_chdb_names_an_unparsable_value_a_data_error(store) -> None:
    w = StoreWriter(store)
    row = _span(1, input_tokens="not-a-number")  # bypasses the normalizer: orjson writes the string as is
    body = w.encode("spans", [row], dt.datetime.now(dt.timezone.utc))
    assert body is not None
    line = json.loads(body)  # one compact row: the values in the writer's column order
    assert line[w.encoded_columns("spans").index("input_tokens")] == "not-a-number"
    try:
        w.write_encoded("spans", [body], "tok")
    except StoreError as e:
        assert str(e).endswith("(CANNOT_PARSE_INPUT_ASSERTION_FAILED)")
        assert w.is_data_error(e)
    else:
        raise AssertionError("chDB took an unparsable UInt64")
    # a missing table is the store's problem, not the data's: retried, never quarantined
    try:
        w.write_encoded("no_such_table", [body], "tok")
    except StoreError as e:
        assert not w.is_data_error(e)
    else:
        raise AssertionError("insert into a missing table succeeded")


def test_an_unparsable_row_is_quarantined_and_its_batch_stored(settings, store, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    cfg = settings.with_overrides(spool_dir=str(spool))
    with CollectorServer(cfg, store) as srv:
        rows = [_span(i) for i in range(10)]
        rows[4] = _span(4, input_tokens="not-a-number")
        assert srv.batch.submit(rows) is None  # one request: one record, one insert, one token
        assert srv.batch.flush(20)
        stored = store.rows("SELECT span_id, input_tokens FROM spans ORDER BY span_id")
        assert [(r["span_id"], r["input_tokens"]) for r in stored] == [
            (f"{i:016x}", 10 + i) for i in range(10) if i != 4
        ]
        st = srv.batch.stats()
        assert st.quarantined_by_table == {"spans": 1} and st.written_by_table == {"spans": 9}
        assert st.backlog == 0 and st.healthy
        text = srv.metrics_text()
        assert 'llm_monitor_collector_quarantined_rows_total{table="spans"} 1' in text.splitlines()
        assert 'llm_monitor_collector_rows_written_total{table="spans"} 9' in text.splitlines()
        # later batches flow
        assert srv.batch.submit([_span(20)]) is None
        assert srv.batch.flush(20)
        assert store.scalar("SELECT count() FROM spans") == 10
    (q,) = [json.loads(line) for line in (spool / "quarantine.jsonl").read_text().splitlines()]
    assert q["table"] == "spans" and q["row"]["span_id"] == f"{4:016x}"
    assert q["row"]["input_tokens"] == "not-a-number"
    assert q["error"].endswith("(CANNOT_PARSE_INPUT_ASSERTION_FAILED)")
