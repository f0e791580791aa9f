from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.store import StoreError, StoreInUseError, apply_migrations, open_store
from monitor.store.client import StoreURL
from monitor.store.migrations import PUBLIC_TABLES, current_version, load_migrations, reconcile_retention
from monitor.store.schema import FEEDBACK_COLUMNS, SPAN_COLUMNS, span_row

DESIGN_SPAN_COLUMNS = """project, service, environment, trace_id, span_id, parent_span_id, name, kind, provider, model,
request_model, response_model, start_time, end_time, duration_ms, ttft_ms, status, error_type, error_message,
input_text, output_text, input_messages, output_messages, input_tokens, output_tokens, total_tokens, cost_usd,
temperature, max_tokens, top_p, finish_reason, response_id, user_id, session_id, prompt_name, prompt_version,
convention, attributes, resource, ingested_at"""
DESIGN_COLUMNS = {
    "spans": [c.strip() for c in DESIGN_SPAN_COLUMNS.replace("\n", " ").split(",")],
    "feedback": [
        "project",
        "trace_id",
        "span_id",
        "response_id",
        "kind",
        "value",
        "comment",
        "user_id",
        "source",
        "created_at",
    ],
    "scores": [
        "project",
        "trace_id",
        "span_id",
        "analyzer",
        "metric",
        "value",
        "label",
        "analyzer_version",
        "created_at",
    ],
    "drift": [
        "project",
        "window_start",
        "window_end",
        "baseline_start",
        "baseline_end",
        "segment",
        "feature",
        "method",
        "score",
        "threshold",
        "drifted",
        "sample_size",
        "created_at",
    ],
    "alerts": [
        "project",
        "rule",
        "fingerprint",
        "state",
        "severity",
        "value",
        "threshold",
        "message",
        "started_at",
        "resolved_at",
        "notified",
        "created_at",
    ],
}


def _columns(store, table: str) -> dict[str, str]:
    rows = store.query(
        "SELECT name, type FROM system.columns WHERE database = {d:String} AND table = {t:String}",
        {"d": store.database, "t": table},
    ).result_rows
    return dict(rows)


def test_every_public_table_has_the_design_columns(store) -> None:
    for table, cols in DESIGN_COLUMNS.items():
        have = _columns(store, table)
        missing = [c for c in cols if c not in have]
        assert not missing, f"{table} lacks {missing}"
    spans = _columns(store, "spans")
    assert spans["start_time"] == "DateTime64(9, 'UTC')"
    assert spans["cost_usd"] == "Nullable(Float64)"
    assert spans["attributes"].startswith("Map(")
    assert set(_columns(store, "spans")) == set(SPAN_COLUMNS)
    assert set(_columns(store, "feedback")) == set(FEEDBACK_COLUMNS)


def test_table_ddl_has_partition_ttl_codecs_and_bloom_indexes(store) -> None:
    ddl = dict(
        store.query(
            "SELECT name, create_table_query FROM system.tables WHERE database = {d:String}",
            {"d": store.database},
        ).result_rows
    )
    for table in PUBLIC_TABLES:
        q = ddl[table]
        assert "PARTITION BY" in q and "TTL" in q and "ttl_only_drop_parts = 1" in q, table
        order_by = re.search(r"ORDER BY \((.*?)\)\s*(TTL|SETTINGS)", q, re.S).group(1)
        assert order_by.startswith("project,"), (table, order_by)
        assert not re.match(r"project, (trace_id|span_id)", order_by), "random ids never lead an ORDER BY"
    assert "CODEC(Delta(8), ZSTD(1))" in ddl["spans"]
    assert "bloom_filter" in ddl["spans"] and "idx_trace_id" in ddl["spans"]


def test_migrations_are_idempotent_and_versioned(store) -> None:
    latest = max(m.version for m in load_migrations())
    assert current_version(store) == latest
    assert apply_migrations(store) == []  # nothing left to apply
    assert store.scalar(f"SELECT count() FROM {store.table('schema_version')} FINAL") == len(
        load_migrations()
    )


def test_retention_is_reconciled(store) -> None:
    assert reconcile_retention(store, 30) == []
    assert sorted(reconcile_retention(store, 7)) == sorted(PUBLIC_TABLES)
    ddl = store.scalar(
        "SELECT create_table_query FROM system.tables WHERE database = {d:String} AND name = 'spans'",
        {"d": store.database},
    )
    assert "toIntervalDay(7)" in ddl
    assert reconcile_retention(store, 7) == []


def test_insert_and_query_round_trip(store) -> None:
    t0 = dt.datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)
    row = span_row(
        {
            "trace_id": "ab" * 16,
            "span_id": "cd" * 8,
            "start_time": t0,
            "end_time": t0,
            "input_tokens": 7,
            "attributes": {"k": "v"},
            "ingested_at": t0,
        }
    )
    store.insert("spans", [[row[c] for c in SPAN_COLUMNS]], SPAN_COLUMNS)
    got = store.rows("SELECT trace_id, input_tokens, attributes, cost_usd, start_time FROM spans")
    assert got == [
        {
            "trace_id": "ab" * 16,
            "input_tokens": 7,
            "attributes": {"k": "v"},
            "cost_usd": None,
            "start_time": t0.replace(tzinfo=got[0]["start_time"].tzinfo),
        }
    ]


def test_engine_errors_are_one_line(store) -> None:
    with pytest.raises(StoreError) as e:
        store.query("SELECT no_such_column FROM spans")
    assert "UNKNOWN_IDENTIFIER" in str(e.value) and "\n" not in str(e.value)


def test_readonly_store_refuses_writes(store, engine_url: str) -> None:
    ro = open_store(engine_url, store.database, readonly=True)
    try:
        assert ro.scalar("SELECT count() FROM spans") == 0
        with pytest.raises(StoreError, match=r"READONLY|readonly"):
            ro.query("INSERT INTO spans (project) VALUES ('x')")
        with pytest.raises(StoreError, match="read-only"):
            ro.command("DROP TABLE spans")
    finally:
        ro.close()
    assert store.scalar("SELECT count() FROM spans") == 0


def test_second_engine_path_in_one_process_is_refused(tmp_path: Path, store) -> None:
    with pytest.raises(StoreInUseError, match="already hosts the embedded store"):
        open_store(f"chdb://{tmp_path}/other")


def test_store_url_parsing() -> None:
    u = StoreURL.parse("chdb:///tmp/x/../y?database=foo")
    assert (u.engine, u.path, u.database) == ("chdb", "/tmp/y", "foo")
    h = StoreURL.parse("https://bob:secret@ch.example:8443/metrics")
    assert (h.engine, h.database) == ("http", "metrics")
    assert h.redacted() == "https://bob:***@ch.example:8443/metrics"
    with pytest.raises(StoreError, match="absolute path"):
        StoreURL.parse("chdb://rel")
    with pytest.raises(StoreError, match="expected chdb"):
        StoreURL.parse("mysql://x")


def test_unreachable_server_is_one_line() -> None:
    with pytest.raises(StoreError, match=r"cannot reach ClickHouse at http://127.0.0.1:9/"):
        open_store("http://127.0.0.1:9/db")


HOLD = """
import sys, time
from monitor.store import open_store
s = open_store(sys.argv[1], migrate=True)
print("held", flush=True)
time.sleep(60)
"""


def test_path_held_by_another_process_is_one_clear_line(tmp_path: Path) -> None:
    url = f"chdb://{tmp_path}/held"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, url], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = subprocess.run(
            [sys.executable, "-m", "monitor.cli", "query", "SELECT 1", "--store", url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 1
        err = r.stderr.strip().splitlines()[-1]
        assert err.startswith(f"llm-monitor: store {tmp_path}/held is in use by process {holder.pid}")
        assert "Traceback" not in r.stderr
    finally:
        holder.kill()
        holder.wait()


def test_collector_sized_inserts_are_compact_parts(store) -> None:
    """Schema v12: an insert of a few thousand ≈ 2.5 KB spans (15 MB, over the engine's 10 MB default for
    Wide parts) is one Compact part (one data file, not two per column stream); once the threshold is back at
    the default the same insert makes a Wide part, so the migration is what decides."""
    spans = store.table("spans")
    store.command(f"SYSTEM STOP MERGES {spans}")  # the two parts must stay as inserted until they are read

    def insert_and_type(tag: str) -> str:
        store.command(
            f"INSERT INTO {spans} (project, trace_id, span_id, start_time, input_text) "
            f"SELECT '{tag}', toString(number), toString(number), now64(9), repeat('x', 2500) FROM numbers(6000)"
        )
        return str(
            store.scalar(
                "SELECT any(part_type) FROM system.parts WHERE database = {db:String} AND table = 'spans' "
                "AND active AND rows = 6000 AND name NOT IN ({seen:Array(String)})",
                {"db": store.database, "seen": seen},
            )
        )

    seen: list[str] = []
    assert "min_bytes_for_wide_part = 134217728" in store.scalar(
        "SELECT create_table_query FROM system.tables WHERE database = {db:String} AND name = 'spans'",
        {"db": store.database},
    )
    assert insert_and_type("compact") == "Compact"
    seen = [
        r["name"]
        for r in store.rows(
            "SELECT name FROM system.parts WHERE database = {db:String} AND table = 'spans' AND active",
            {"db": store.database},
        )
    ]
    store.command(f"ALTER TABLE {spans} MODIFY SETTING min_bytes_for_wide_part = 10485760")
    assert insert_and_type("wide") == "Wide"
    assert store.scalar(f"SELECT count() FROM {spans} WHERE project IN ('compact', 'wide')") == 12000
