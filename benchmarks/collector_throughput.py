"""Collector throughput: OTLP/HTTP protobuf spans/s stored end to end on the embedded store (chDB).

Three measurements in one run, printed as a table and written to ``benchmarks/results/collector_throughput.json``:

1. **End to end.** The real collector (``python -m monitor.cli collector --store chdb:///tmp/…``) runs as a
   subprocess; ``--senders`` other processes POST pre-encoded protobuf bodies of ``--batch`` spans over
   keep-alive connections (http.client). Time runs from the first send until the collector's ``/healthz``
   reports every span written. The collector's CPU (``/proc/<pid>/stat`` utime+stime, start-up excluded) per
   span and its peak RSS (``VmHWM``) are reported. Afterwards the collector is stopped with SIGTERM and the
   store is checked from another process (``monitor.cli query``): stored count == sent count, token sums
   and a sample of rows match the generated data.
2. **Raw insert ceiling.** A separate process opens a fresh store and inserts the same normalized rows,
   encoded beforehand as the collector encodes them (Native blocks of the live column types, the collector's
   insert settings), in collector-sized batches: no HTTP, decode, normalization or encoding is timed, only
   the engine. The native column insert (``Store.insert_columns``) is timed too, for reference.
3. **Stage costs.** The same process times each collector stage on one thread (decode, normalize, the
   writer's insert from row dicts) so the end-to-end figure can be explained.

Usage: ``.venv/bin/python benchmarks/collector_throughput.py [--spans N] [--batch B] [--senders K] [--runs R]``
(the end-to-end phase runs R times, default 5, a fresh collector and store each: the median run is reported).
Ratios, not absolute numbers, are what compare across machines.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workload  # noqa: E402

RESULTS = HERE / "results" / "collector_throughput.json"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- helpers ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stat_cpu_seconds(raw: str) -> float:
    """utime + stime from the text of a /proc ``stat`` file (a process's or one thread's)."""
    fields = raw.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        return stat_cpu_seconds(f.read())


def thread_group(comm: str) -> str:
    """A collector thread's group by its name: Python's own threads keep the interpreter's name, chDB names
    its threads (``MergeMutate`` for background merges)."""
    return "python" if comm.startswith("python") else "merges" if comm.startswith("Merge") else "engine pools"


def thread_cpu_by_group(pid: int) -> dict[str, float]:
    """CPU seconds of a process's live threads by group: ``python`` (request, writer and HTTP threads; the
    engine's work on the writer thread counts here), ``merges`` (chDB's MergeMutate threads) and ``engine
    pools`` (chDB's other threads: the insert pipeline's pools, schedulers). The senders keep their
    connections, so their request threads, open until this is read at the end of a run."""
    out = {"python": 0.0, "merges": 0.0, "engine pools": 0.0}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                raw = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        out[thread_group(raw[raw.index("(") + 1 : raw.rindex(")")])] += stat_cpu_seconds(raw)
    return out


def thread_sched(pid: int) -> dict[int, tuple[str, int, int]]:
    """Per live thread: (group as in :func:`thread_cpu_by_group`, CPU migrations, context switches), from
    ``/proc/<pid>/task/<tid>/sched`` (kernels built with scheduler statistics; empty otherwise)."""
    out: dict[int, tuple[str, int, int]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/sched") as f:
                fields = dict(
                    (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in f) if v.strip()
                )
            out[int(tid)] = (thread_group(comm), int(fields["se.nr_migrations"]), int(fields["nr_switches"]))
        except (OSError, KeyError, ValueError):
            continue
    return out


def sched_delta(before: dict[int, tuple[str, int, int]], after: dict[int, tuple[str, int, int]]) -> dict[str, Any]:
    """CPU migrations and context switches per group between two :func:`thread_sched` reads (threads
    started meanwhile count from zero)."""
    out: dict[str, Any] = {}
    for tid, (group, mig, sw) in after.items():
        _, mig0, sw0 = before.get(tid, (group, 0, 0))
        g = out.setdefault(group, {"migrations": 0, "switches": 0})
        g["migrations"] += mig - mig0
        g["switches"] += sw - sw0
    return out


def proc_status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def get_json(conn: http.client.HTTPConnection, path: str) -> dict[str, Any]:
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"GET {path}: HTTP {resp.status}")
    out: dict[str, Any] = json.loads(body)
    return out


STAGE_METRIC = 'llm_monitor_collector_stage_cpu_seconds_total{stage="'


def stage_cpu(conn: http.client.HTTPConnection) -> dict[str, float]:
    """The collector's own per-stage CPU seconds of its request threads, from ``/metrics``."""
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    text = resp.read().decode()
    if resp.status != 200:
        raise RuntimeError(f"GET /metrics: HTTP {resp.status}")
    return {
        line[len(STAGE_METRIC) :].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(STAGE_METRIC)
    }


# --- senders (separate processes) ------------------------------------------------------------------------


def sender(
    k: int,
    senders: int,
    args: argparse.Namespace,
    port: int,
    ready: Any,
    go: Any,
    results: Any,
    done: Any,
) -> None:
    """Build this sender's share of the requests, wait for ``go``, POST them all on one connection, which
    stays open until ``done`` (its thread in the collector is alive when the thread CPU is read)."""
    total = workload.n_requests(args.spans, args.batch)
    bodies = list(
        workload.requests(args.seed, args.batch, args.spans, args.base_ns, range(k, total, senders))
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    headers = {"Content-Type": "application/x-protobuf"}
    ready.release()
    go.wait()
    retries = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    for body in bodies:
        while True:
            conn.request("POST", "/v1/traces", body, headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                break
            if resp.status == 503:  # back-pressure: honour it like an exporter would
                retries += 1
                time.sleep(0.05)
                continue
            raise RuntimeError(f"sender {k}: HTTP {resp.status}")
    results.put(
        {
            "sender": k,
            "requests": len(bodies),
            "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0,
            "retries": retries,
        }
    )
    done.wait(args.timeout)
    conn.close()


# --- phase 1: end to end through the real collector -----------------------------------------------------


def run_end_to_end(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    store_url = f"chdb://{workdir / 'e2e-store'}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_MONITOR_")}
    env["LLM_MONITOR_LOG_LEVEL"] = "WARNING"
    if args.collector_batch_size:
        env["LLM_MONITOR_BATCH_SIZE"] = str(args.collector_batch_size)
    for item in args.collector_env:
        key, _, value = item.partition("=")
        env[key if key.startswith("LLM_MONITOR_") else "LLM_MONITOR_" + key.upper()] = value
    cmd = [sys.executable, "-m", "monitor.cli", "collector", "--store", store_url, "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done: Any = None  # set: the senders close their connections
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        deadline = time.monotonic() + 60
        while True:
            try:
                get_json(conn, "/healthz")
                break
            except OSError:
                conn.close()
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"collector did not start: {err.strip()[-500:]}") from None
                time.sleep(0.1)

        ctx = mp.get_context("fork")
        ready, go, results, done = ctx.Semaphore(0), ctx.Event(), ctx.Queue(), ctx.Event()
        procs = [
            ctx.Process(target=sender, args=(k, args.senders, args, port, ready, go, results, done))
            for k in range(args.senders)
        ]
        for p in procs:
            p.start()
        for _ in procs:
            ready.acquire()
        rss_idle_kb = proc_status_kb(proc.pid, "VmRSS")
        rss_samples: list[int] = []  # the collector's RSS (KB) every 0.5 s while the run lasts
        sampling = threading.Event()

        def sample_rss() -> None:
            while not sampling.wait(0.5):
                rss_samples.append(proc_status_kb(proc.pid, "VmRSS"))

        sampler = threading.Thread(target=sample_rss, daemon=True)
        cpu0 = proc_cpu_seconds(proc.pid)
        groups0 = thread_cpu_by_group(proc.pid)
        sched0 = thread_sched(proc.pid)
        t0 = time.perf_counter()
        sampler.start()
        go.set()
        written = 0
        deadline = time.monotonic() + args.timeout
        while written < args.spans:
            time.sleep(0.02)
            written = int(get_json(conn, "/healthz")["written"])
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out with {written}/{args.spans} spans written")
        elapsed = time.perf_counter() - t0
        cpu = proc_cpu_seconds(proc.pid) - cpu0
        groups1 = thread_cpu_by_group(proc.pid)
        sched = sched_delta(sched0, thread_sched(proc.pid))
        done.set()
        peak_rss_kb = proc_status_kb(proc.pid, "VmHWM")
        stages = stage_cpu(conn)
        sampling.set()
        sampler.join()
        sent = [results.get(timeout=30) for _ in procs]
        for p in procs:
            p.join()
        send_seconds = max(s["seconds"] for s in sent)
        conn.close()
    finally:
        if done is not None:
            done.set()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    check = verify_store(store_url, args)
    return {
        "spans": args.spans,
        "seconds": elapsed,
        "spans_per_s": args.spans / elapsed,
        "accepted_per_s": args.spans / send_seconds,
        "collector_cpu_s": cpu,
        "collector_cpu_us_per_span": cpu / args.spans * 1e6,
        "collector_cpu_cores": cpu / elapsed,
        # where that CPU went, µs/span by thread group (threads that ended during the run: "ended threads")
        "collector_cpu_us_per_span_by_threads": {
            **{k: (groups1[k] - groups0[k]) / args.spans * 1e6 for k in groups0},
            "ended threads": max(0.0, cpu - sum(groups1[k] - groups0[k] for k in groups0)) / args.spans * 1e6,
        },
        # how often the scheduler moved each group's threads between CPUs, and switched them out, per 1,000
        # spans (see "Session 13" in benchmarks/README.md)
        "collector_sched_per_1k_spans": {
            g: {k: v / args.spans * 1000 for k, v in d.items()} for g, d in sorted(sched.items())
        },
        "collector_rss_idle_mb": rss_idle_kb / 1024,
        "collector_peak_rss_mb": peak_rss_kb / 1024,
        # RSS during the run, every 0.5 s: a collector whose memory grew with the spans would show it here
        # (run --spans 1000000 for a soak); first/second half maxima side by side
        "collector_rss_mb_during_run": {
            "samples": len(rss_samples),
            "max_first_half": max(rss_samples[: len(rss_samples) // 2] or [0]) / 1024,
            "max_second_half": max(rss_samples[len(rss_samples) // 2 :] or [0]) / 1024,
            "last": (rss_samples[-1] if rss_samples else 0) / 1024,
        },
        "retries_503": sum(s["retries"] for s in sent),
        # the senders share the machine's cores with the collector: their CPU while sending, per span
        "senders_cpu_us_per_span": sum(s["cpu_seconds"] for s in sent) / args.spans * 1e6,
        # under load, on the collector's request threads (its /metrics): CPU µs per span by stage
        "in_situ_stage_cpu_us_per_span": {k: v / args.spans * 1e6 for k, v in stages.items()},
        "check": check,
    }


def cli_query(store_url: str, sql: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "query", "--store", store_url, "--format", "json", sql],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def verify_store(store_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Count and spot-check what the collector stored, from another process."""
    agg = cli_query(
        store_url,
        "SELECT count() AS n, uniqExact(span_id) AS uniq, sum(input_tokens) AS tin, "
        "sum(output_tokens) AS tout, countIf(kind = 'llm') AS llm FROM spans",
    )[0]
    exp_in, exp_out = workload.expected_token_sums(args.spans)
    exp_llm = sum(1 for i in range(args.spans) if i % workload.SPANS_PER_TRACE in workload.LLM_POSITIONS)
    sample_idx = sorted({(i * 7_777_777) % args.spans for i in range(25)})
    ids = ", ".join(f"'{workload.span_id(args.seed, i).hex()}'" for i in sample_idx)
    got = {
        r["span_id"]: (int(r["input_tokens"]), int(r["output_tokens"]))
        for r in cli_query(
            store_url, f"SELECT span_id, input_tokens, output_tokens FROM spans WHERE span_id IN ({ids})"
        )
    }
    bad = [i for i in sample_idx if got.get(workload.span_id(args.seed, i).hex()) != workload.tokens(i)]
    problems = []
    if int(agg["n"]) != args.spans or int(agg["uniq"]) != args.spans:
        problems.append(f"stored {agg['n']} rows ({agg['uniq']} distinct) for {args.spans} sent")
    if (int(agg["tin"]), int(agg["tout"])) != (exp_in, exp_out):
        problems.append(f"token sums {agg['tin']}/{agg['tout']} != expected {exp_in}/{exp_out}")
    if int(agg["llm"]) != exp_llm:
        problems.append(f"{agg['llm']} llm spans != expected {exp_llm}")
    if bad:
        problems.append(f"{len(bad)} of {len(sample_idx)} sampled rows have wrong tokens")
    return {
        "stored": int(agg["n"]),
        "sent": args.spans,
        "input_tokens": int(agg["tin"]),
        "output_tokens": int(agg["tout"]),
        "sampled_rows": len(sample_idx),
        "ok": not problems,
        "problems": problems,
    }


# --- phase 2 and 3: raw insert ceiling and stage costs (separate process, own chDB engine) ---------------


def run_raw_phase(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--raw-phase",
        str(workdir / "raw-store"),
        "--spans",
        str(args.spans),
        "--batch",
        str(args.batch),
        "--seed",
        str(args.seed),
        "--collector-batch-size",
        str(args.insert_batch),
        "--base-ns",
        str(args.base_ns),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"raw phase failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def raw_phase_main(args: argparse.Namespace) -> None:
    """In its own process: stage costs on one thread, then raw inserts of the same rows.

    Every figure is taken as wall time and as process CPU time: CPU time is what to compare when other
    work shares the machine (it includes chDB's own threads, e.g. background merges started meanwhile).
    """
    import datetime as dt

    from collectors import otlp
    from collectors.normalize import normalize_spans
    from collectors.writer import StoreWriter
    from monitor.runtime import _tune_gc
    from monitor.store import open_store
    from monitor.store.schema import STAMP_COLUMN, TABLE_DEFAULTS

    bodies = list(workload.requests(args.seed, args.batch, args.spans, args.base_ns))
    # the collector's garbage-collection settings: with the default gen-0 threshold, the cyclic collector
    # would re-scan the hundreds of thousands of spans held here, and the one-thread stage costs would be
    # mostly that (normalize read 35.7 µs/span, now 13-19)
    _tune_gc()
    n = args.spans
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    thread: dict[str, float] = {}  # CPU of the calling thread: the part that holds the GIL (or could)

    def measure(name: str, fn: Any) -> Any:
        t, c, th = time.perf_counter(), time.process_time(), time.thread_time()
        out = fn()
        wall[name], cpu[name] = time.perf_counter() - t, time.process_time() - c
        thread[name] = time.thread_time() - th
        return out

    decoded = measure("decode", lambda: [otlp.decode_traces(b, otlp.PROTOBUF) for b in bodies])
    per_request = measure("normalize", lambda: [normalize_spans(spans) for spans in decoded])
    decoded.clear()
    rows = [r for req in per_request for r in req]
    assert len(rows) == n
    store = open_store(f"chdb://{args.raw_phase}", migrate=True)
    writer = StoreWriter(store)
    writer.learn_types()  # what the collector's writer thread does at start
    types = writer.encoded_types("spans")
    # what the request thread does next (SpooledBatchWriter.submit): the rows → a Native block (or JSON), once
    stamp = dt.datetime.now(dt.timezone.utc)
    encoded = measure("encode", lambda: [writer.encode("spans", req, stamp, types) for req in per_request])
    assert all(b is not None for b in encoded)
    per_request.clear()

    chunks = [rows[i : i + args.insert_batch] for i in range(0, n, args.insert_batch)]

    def insert_all(name: str, fn: Any, items: list[Any]) -> None:
        store.command("TRUNCATE TABLE spans")

        def run() -> None:
            for x in items:
                fn(x)

        measure(name, run)

    # what the collector's writer thread does: concatenate the requests' encoded rows, insert them (the
    # workload's spans are all distinct, so the collector asks the engine not to collapse at insert)
    distinct = True
    per_insert = max(1, args.insert_batch // args.batch)
    body_chunks = [encoded[i : i + per_insert] for i in range(0, len(encoded), per_insert)]
    insert_all("store_write", lambda c: writer.write_encoded("spans", c, None, types, distinct), body_chunks)
    # the ceiling: the cheapest insert of the same rows we know, its bytes prepared beforehand, only the
    # engine timed: Native blocks with the collector's settings
    prebuilt = [b"".join(c) for c in body_chunks]
    insert_all(
        "ceiling", lambda body: writer.write_encoded("spans", (body,), None, types, distinct), prebuilt
    )
    # for reference, the native column insert (clickhouse-connect builds Native blocks in Python)
    defaults = TABLE_DEFAULTS["spans"]
    names = [*defaults, STAMP_COLUMN["spans"]]
    prepared = [[*([r.get(k, d) for r in c] for k, d in defaults.items()), [stamp] * len(c)] for c in chunks]
    insert_all("insert_columns", lambda cols: store.insert_columns("spans", cols, names), prepared)
    stored = int(store.scalar("SELECT count() FROM spans"))
    store.close()
    from collectors import native
    from collectors.normalize import _native

    native = {
        "decode": otlp._native is not None,
        "normalize": _native.native is not None,
        "native_block": native.native_available,
    }
    stages = ("decode", "normalize", "encode", "store_write")
    print(
        json.dumps(
            {
                "spans": n,
                "stages_cpu_us_per_span": {k: cpu[k] / n * 1e6 for k in stages},
                "stages_wall_us_per_span": {k: wall[k] / n * 1e6 for k in stages},
                "stages_thread_cpu_us_per_span": {k: thread[k] / n * 1e6 for k in stages},
                "ceiling_method": "prebuilt "
                + ("Native blocks, collector insert settings" if types else "JSONCompactEachRow"),
                "ceiling_spans_per_s": n / wall["ceiling"],
                "ceiling_cpu_us_per_span": cpu["ceiling"] / n * 1e6,
                "insert_columns_spans_per_s": n / wall["insert_columns"],
                "insert_columns_cpu_us_per_span": cpu["insert_columns"] / n * 1e6,
                "encoding": "Native" if types else "JSONCompactEachRow",
                "stored_last": stored,
                "native": native,
            }
        )
    )


# --- report -----------------------------------------------------------------------------------------------


def report(args: argparse.Namespace, e2e: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    ratio = e2e["spans_per_s"] / raw["ceiling_spans_per_s"]
    st = raw["stages_cpu_us_per_span"]
    lines = [
        f"collector throughput: {args.spans} spans, {args.batch} spans/request, {args.senders} senders, "
        f"{args.insert_batch} rows/insert, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "",
        f"  {'measure':<44}{'value':>14}",
        f"  {'end to end (HTTP → store), spans/s':<44}{e2e['spans_per_s']:>14,.0f}"
        + (
            f"   (median of {len(e2e['runs'])}: "
            + ", ".join(f"{r['spans_per_s']:,.0f}" for r in e2e["runs"])
            + ")"
            if len(e2e.get("runs", ())) > 1
            else ""
        ),
        f"  {'  accepted by HTTP (all 200s), spans/s':<44}{e2e['accepted_per_s']:>14,.0f}",
        f"  {'raw insert ceiling (prebuilt bytes), spans/s':<44}{raw['ceiling_spans_per_s']:>14,.0f}",
        f"  {'  raw insert CPU, µs/span':<44}{raw['ceiling_cpu_us_per_span']:>14.1f}",
        f"  {'end to end / raw ceiling':<44}{ratio:>14.2f}",
        f"  {'collector CPU, µs/span':<44}{e2e['collector_cpu_us_per_span']:>14.1f}",
        f"  {'collector CPU, cores busy':<44}{e2e['collector_cpu_cores']:>14.2f}",
        f"  {'collector peak RSS, MB (idle ' + format(e2e['collector_rss_idle_mb'], '.0f') + ')':<44}"
        f"{e2e['collector_peak_rss_mb']:>14.0f}",
        f"  {'  RSS max in 1st / 2nd half of the run, MB':<44}"
        f"{e2e['collector_rss_mb_during_run']['max_first_half']:>7.0f} /"
        f"{e2e['collector_rss_mb_during_run']['max_second_half']:>5.0f}",
        f"    {'by threads, µs/span':<42}"
        + "  ".join(f"{k} {v:.1f}" for k, v in e2e.get("collector_cpu_us_per_span_by_threads", {}).items()),
        f"    {'CPU migrations / switches per 1k spans':<42}"
        + "  ".join(
            f"{g} {d['migrations']:.0f} / {d['switches']:.0f}"
            for g, d in e2e.get("collector_sched_per_1k_spans", {}).items()
        ),
        f"  {'503 retries':<44}{e2e['retries_503']:>14}",
        f"  {'senders CPU (same machine), µs/span':<44}{e2e.get('senders_cpu_us_per_span', 0):>14.1f}",
        "",
        "  one-thread stage costs (CPU µs/span):  "
        + "  ".join(f"{k} {v:.1f}" for k, v in st.items())
        + f"  → pipeline bound ≈ {1e6 / sum(st.values()):,.0f} spans/s on one core",
        "  of which on the calling thread (Python, GIL): "
        + "  ".join(f"{k} {v:.1f}" for k, v in raw["stages_thread_cpu_us_per_span"].items()),
        "  native extensions in the stage process: "
        + ", ".join(f"{k} {'on' if v else 'off'}" for k, v in raw.get("native", {}).items())
        + f"; rows encoded as {raw.get('encoding')}; native column insert "
        + f"{raw.get('insert_columns_cpu_us_per_span', 0):.1f} µs/span",
        f"  collector CPU not in those stages (HTTP, queue, threads): "
        f"{e2e['collector_cpu_us_per_span'] - sum(st.values()):.1f} µs/span",
        "  in the collector under load, request threads (its /metrics, CPU µs/span): "
        + "  ".join(f"{k} {v:.1f}" for k, v in e2e.get("in_situ_stage_cpu_us_per_span", {}).items())
        + f"  = {sum(e2e.get('in_situ_stage_cpu_us_per_span', {}).values()):.1f}",
        f"  check: stored {e2e['check']['stored']} / sent {e2e['check']['sent']}, "
        + ("OK" if e2e["check"]["ok"] else "FAILED: " + "; ".join(e2e["check"]["problems"])),
    ]
    print("\n".join(lines))
    return {
        "benchmark": "collector_throughput",
        "params": {
            "spans": args.spans,
            "batch": args.batch,
            "senders": args.senders,
            "seed": args.seed,
            "store_batch_rows": args.insert_batch,
            "collector_env": args.collector_env,
            "runs": args.runs,
        },
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "end_to_end": e2e,
        "raw": raw,
        "ratio_end_to_end_over_ceiling": ratio,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # 300,000 (≈ 10 s of load): long enough that the engine's background merges run during the run, as they
    # do under sustained load; in a 100,000-span run they had barely started (≈ 0.4 against ≈ 9 µs/span)
    p.add_argument("--spans", type=int, default=300_000, help="spans to send (default 300000)")
    p.add_argument("--batch", type=int, default=500, help="spans per OTLP request (default 500)")
    p.add_argument("--senders", type=int, default=4, help="sender processes (default 4)")
    p.add_argument(
        "--collector-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra collector setting, e.g. spool_dir=off or LLM_MONITOR_SPOOL_FSYNC=false (repeatable)",
    )
    p.add_argument(
        "--runs",
        type=int,
        default=5,
        help="end-to-end runs (fresh collector and store each); the median run is reported, all are listed",
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--collector-batch-size",
        type=int,
        default=0,
        help="LLM_MONITOR_BATCH_SIZE for the collector (default: its own setting)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the collector to drain")
    p.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    p.add_argument("--raw-phase", help=argparse.SUPPRESS)
    p.add_argument("--base-ns", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    # the raw ceiling inserts in the collector's batches: its batch_size setting unless overridden
    from monitor.settings import FIELDS

    default_batch = next(f.default for f in FIELDS if f.name == "batch_size")
    args.insert_batch = args.collector_batch_size or default_batch
    if args.base_ns is None:
        args.base_ns = workload.base_time_ns()
    if args.raw_phase:
        raw_phase_main(args)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="llm-monitor-bench-"))
    try:
        runs = []
        for i in range(max(1, args.runs)):
            (workdir / f"run{i}").mkdir()
            runs.append(run_end_to_end(args, workdir / f"run{i}"))
            shutil.rmtree(workdir / f"run{i}", ignore_errors=True)
        # this VM's speed wanders by ±15 % from run to run: the median run, and every run beside it
        e2e = dict(sorted(runs, key=lambda r: r["spans_per_s"])[len(runs) // 2])
        e2e["runs"] = [
            {k: r[k] for k in ("spans_per_s", "collector_cpu_us_per_span", "collector_peak_rss_mb")}
            for r in runs
        ]
        e2e["check"] = {**e2e["check"], "ok": all(r["check"]["ok"] for r in runs)}
        raw = run_raw_phase(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    doc = report(args, e2e, raw)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"\nresults written to {args.out}")
    return 0 if e2e["check"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
