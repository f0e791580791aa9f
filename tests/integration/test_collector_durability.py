"""The durability promises of DESIGN §3 through real HTTP on 127.0.0.1 and the real chDB store.

In-process tests take the store away honestly: ``RENAME TABLE spans`` makes every insert fail inside
ClickHouse with the same StoreError an unreachable server gives, and renaming it back is the recovery.
Crash tests run the collector as a subprocess on its own chDB directory (one engine per process), kill it
with SIGKILL, and count rows with ``llm-monitor query`` in yet another process.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from collectors.server import CollectorServer
from collectors.spool import Spool
from monitor import semconv as sc

PB = "application/x-protobuf"
ROOT = Path(__file__).resolve().parents[2]


def body(n: int, user: str = "u") -> bytes:
    """One OTLP/protobuf request of ``n`` chat spans (real SDK, fresh random ids)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "durable"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    for i in range(n):
        with tracer.start_as_current_span("chat") as s:
            s.set_attributes({sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
                              sc.USER_ID: user, sc.GEN_AI_USAGE_INPUT_TOKENS: i,
                              "gen_ai.prompt": "x" * 600})  # fmt: skip
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


def post(port: int, data: bytes, conn: http.client.HTTPConnection | None = None) -> tuple[int, dict, bytes]:
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", "/v1/traces", body=data, headers={"Content-Type": PB})
    r = c.getresponse()
    out = r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    if conn is None:
        c.close()
    return out


def get_json(port: int, path: str) -> dict:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    data = json.loads(c.getresponse().read())
    c.close()
    return data


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"llm_monitor_collector_{name} "):
            return float(line.split()[-1])
    raise AssertionError(f"no metric {name}")


def wait_for(cond, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def take_store_away(store) -> tuple[str, str]:
    spans, away = store.table("spans"), store.table("spans_away")
    store.command(f"RENAME TABLE {spans} TO {away}")
    return spans, away


# --- in process --------------------------------------------------------------------------------------
def test_store_down_spools_then_replays_every_span_exactly_once(settings, store, tmp_path: Path) -> None:
    cfg = settings.with_overrides(spool_dir=str(tmp_path / "spool"), queue_max_rows=30)
    with CollectorServer(cfg, store) as srv:
        spans, away = take_store_away(store)
        for k in range(20):  # 100 spans; beyond 30 they live on disk only
            assert post(srv.port, body(5, user=f"u{k}"))[0] == 200
        wait_for(lambda: get_json(srv.port, "/healthz")["store"] == "down")
        health = get_json(srv.port, "/healthz")
        assert health["status"] == "degraded" and health["backlog"] == 100 and health["spool"]["bytes"] > 0
        assert health["queue_depth"] <= 30
        text = srv.metrics_text()
        assert metric(text, "spooled_rows_total") == 100 and metric(text, "store_up") == 0
        # the analyzers' horizon: rows accepted but not stored hold it back, at the oldest one's stamp
        pending = srv.pending_since()
        assert pending is not None
        store.command(f"RENAME TABLE {away} TO {spans}")
        assert srv.batch.flush(20)
        assert srv.pending_since() is None
        oldest = store.scalar(f"SELECT min(ingested_at) FROM {spans}")
        assert abs(oldest.replace(tzinfo=pending.tzinfo) - pending).total_seconds() < 1e-3
        text = srv.metrics_text()
        assert metric(text, "spans_written_total") == 100 and metric(text, "backlog_rows") == 0
        assert metric(text, "replayed_rows_total") >= 70  # what did not fit in memory came from disk
    assert store.scalar(f"SELECT count() FROM {spans}") == 100  # plain count: no duplicate inserted
    assert store.scalar(f"SELECT count() FROM {spans} FINAL") == 100
    assert store.scalar(f"SELECT uniqExact(user_id) FROM {spans}") == 20


def test_spool_full_answers_503_with_retry_after_and_recovers(settings, store, tmp_path: Path) -> None:
    cfg = settings.with_overrides(spool_dir=str(tmp_path / "spool"), spool_max_bytes=1 << 16)
    with CollectorServer(cfg, store) as srv:
        spans, away = take_store_away(store)
        accepted = 0
        for _ in range(100):
            status, headers, data = post(srv.port, body(10))
            if status == 503:
                break
            assert status == 200
            accepted += 10
        assert status == 503 and headers["retry-after"] == "5" and accepted >= 20
        assert "collector spool is full (10 spans refused)" in data.decode(errors="replace")
        text = srv.metrics_text()
        assert 'llm_monitor_collector_spans_rejected_total{reason="spool_full"} 10' in text
        assert 'llm_monitor_collector_requests_rejected_total{reason="spool_full"} 1' in text
        assert metric(text, "spool_bytes") <= 1 << 16
        wait_for(lambda: get_json(srv.port, "/healthz")["store"] == "down")
        store.command(f"RENAME TABLE {away} TO {spans}")
        for _ in range(3):  # space freed once stored: served again (stored segments are deleted)
            wait_for(lambda: srv.batch.stats().backlog == 0)
            assert post(srv.port, body(10))[0] == 200
            accepted += 10
    assert store.scalar(f"SELECT count() FROM {spans}") == accepted


def test_memory_stays_bounded_under_a_flood_with_the_store_down(settings, store, tmp_path: Path) -> None:
    cfg = settings.with_overrides(spool_dir=str(tmp_path / "spool"), queue_max_rows=50,
                                  spool_max_bytes=1 << 18)  # fmt: skip
    with CollectorServer(cfg, store) as srv:
        spans, away = take_store_away(store)
        peak_depth = 0
        accepted = [0]
        refused = [0]
        stop = threading.Event()
        lock = threading.Lock()

        def flood() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
            while not stop.is_set():
                status = post(srv.port, body(10), conn)[0]  # fresh span ids: no row may merge away
                with lock:
                    if status == 200:
                        accepted[0] += 10
                    else:
                        assert status == 503
                        refused[0] += 1
            conn.close()

        threads = [threading.Thread(target=flood) for _ in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            st = srv.batch.stats()
            peak_depth = max(peak_depth, st.queue_depth)
            assert st.spool is not None and st.spool.bytes <= 1 << 18
            time.sleep(0.005)
        stop.set()
        for t in threads:
            t.join()
        assert refused[0] > 0 and accepted[0] > 50  # the flood filled memory, then the spool
        assert peak_depth <= 50  # the memory queue never passed queue_max_rows
        store.command(f"RENAME TABLE {away} TO {spans}")
        assert srv.batch.flush(30)
    assert store.scalar(f"SELECT count() FROM {spans}") == accepted[0]


# --- crashes: the collector in a subprocess ----------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LAZY = {"LLM_MONITOR_FLUSH_INTERVAL": "3600", "LLM_MONITOR_BATCH_SIZE": "1000000"}


def start_collector(tmp: Path, port: int, *, script: str | None = None, env: dict | None = None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("LLM_MONITOR_")}
    e.update({"LLM_MONITOR_STORE": f"chdb://{tmp}/store", "LLM_MONITOR_PORT": str(port),
              "LLM_MONITOR_SPOOL_DIR": str(tmp / "spool"), "PYTHONPATH": str(ROOT), **(env or {})})  # fmt: skip
    args = [sys.executable, "-c", script] if script else [sys.executable, "-m", "monitor.cli", "collector"]
    proc = subprocess.Popen(args, env=e, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            get_json(port, "/healthz")
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("the collector did not come up") from None
            time.sleep(0.1)
            continue
        # `run_up` installs its SIGTERM handler after the banner: signal only once it is printed
        assert proc.stdout is not None
        while "Press Ctrl-C" not in proc.stdout.readline():
            assert proc.poll() is None
        time.sleep(0.2)
        return proc


def stop_gracefully(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


def count_rows(tmp: Path, sql: str = "SELECT count() AS n FROM spans") -> int:
    r = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "query", sql, "--store", f"chdb://{tmp}/store", "--format", "json"],
        capture_output=True, text=True, timeout=120, cwd=tmp,
        env={k: v for k, v in os.environ.items() if not k.startswith("LLM_MONITOR_")},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return int(json.loads(r.stdout)[0]["n"])


def test_kill_9_after_acknowledgement_then_restart_delivers_everything(tmp_path: Path) -> None:
    port = free_port()
    proc = start_collector(tmp_path, port, env=LAZY)
    for k in range(12):
        assert post(port, body(10, user=f"k{k}"))[0] == 200  # acknowledged: nothing is written yet
    assert get_json(port, "/healthz")["written"] == 0
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    proc = start_collector(tmp_path, port, env=LAZY)  # same store, same spool: replays at start
    stop_gracefully(proc)
    assert count_rows(tmp_path) == 120
    assert count_rows(tmp_path, "SELECT count() AS n FROM spans FINAL") == 120


CRASH_AFTER_INSERT = textwrap.dedent(
    """
    import os, signal, sys
    from collectors import native, writer
    from monitor import cli

    real, real_encoded = writer.StoreWriter.write, writer.StoreWriter.write_encoded

    def write_then_die(self, table, rows, token=None):
        real(self, table, rows, token=token)  # the rows are in the store...
        print(f"inserted {len(rows)} rows", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # ...and the checkpoint never advances

    def write_encoded_then_die(self, table, bodies, token=None, types=None, distinct_keys=False):
        real_encoded(self, table, bodies, token, types, distinct_keys)  # the spool's pre-encoded rows
        if types is None:
            n = sum(bytes(b).count(b"\\n") for b in bodies)
        else:  # Native blocks (the store's types were learned at start)
            n = len(native.decode_rows(b"".join(bytes(b) for b in bodies)))
        print(f"inserted {n} rows ({'binary' if types else 'json'})", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    writer.StoreWriter.write = write_then_die
    writer.StoreWriter.write_encoded = write_encoded_then_die
    sys.exit(cli.main(["collector"]))
    """
)


def test_crash_between_insert_and_checkpoint_leaves_no_duplicate(tmp_path: Path) -> None:
    port = free_port()
    proc = start_collector(tmp_path, port, script=CRASH_AFTER_INSERT, env=LAZY)
    for k in range(8):
        assert post(port, body(10, user=f"d{k}"))[0] == 200
    proc.send_signal(signal.SIGTERM)  # the drain inserts all 80 rows, then the process kills itself
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL and "inserted 80 rows (binary)" in out, out
    assert count_rows(tmp_path) == 80  # the insert landed before the crash
    proc = start_collector(tmp_path, port, env=LAZY)  # replays the same range with the same token
    stop_gracefully(proc)
    assert count_rows(tmp_path) == 80  # plain count(): the engine dropped the repeated insert


def test_sigterm_drains_everything_acknowledged(tmp_path: Path) -> None:
    port = free_port()
    proc = start_collector(tmp_path, port, env=LAZY)
    threads = [threading.Thread(target=lambda k=k: [post(port, body(5, user=f"s{k}")) for _ in range(6)])
               for k in range(4)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert get_json(port, "/healthz")["received"] == 120
    stop_gracefully(proc)
    assert count_rows(tmp_path) == 120
    spool = Spool(tmp_path / "spool", max_bytes=1 << 30).open()
    assert spool.stats().pending_items == 0 and spool.committed_seq == 24  # all 24 requests committed
    spool.close()


def test_pending_since_is_the_oldest_unstored_acceptance_time(settings, store, tmp_path: Path) -> None:
    import datetime as dt

    cfg = settings.with_overrides(spool_dir=str(tmp_path / "spool"), flush_interval=60.0, batch_size=10_000)
    with CollectorServer(cfg, store) as srv:
        assert srv.pending_since() is None
        before = dt.datetime.now(dt.timezone.utc)
        assert post(srv.port, body(3))[0] == 200
        time.sleep(0.05)
        assert post(srv.port, body(2))[0] == 200
        pending = srv.pending_since()  # both requests wait for the 60 s flush interval, in memory
        assert pending is not None and before <= pending <= dt.datetime.now(dt.timezone.utc)
        assert srv.batch.flush(20)
        assert srv.pending_since() is None
        stored = store.scalar(f"SELECT min(ingested_at) FROM {store.table('spans')}")
        assert abs(stored.replace(tzinfo=dt.timezone.utc) - pending) < dt.timedelta(milliseconds=1)
