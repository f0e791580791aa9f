"""Process orchestration for ``llm-monitor up`` / ``collector`` / ``dashboard`` / ``demo``.

``up`` owns the embedded store: it opens it once, registers it with :func:`monitor.store.set_shared_store`
so the in-process dashboard uses the same engine, starts the collector (background threads) and, unless
``--no-dashboard``, serves Streamlit from the main thread (Streamlit installs its signal handlers there).
SIGTERM/SIGINT stop the dashboard and the demo first, then the collector, which drains every acknowledged
span into the store before the process exits.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from monitor._version import __version__
from monitor.settings import Settings

log = logging.getLogger("llm_monitor.runtime")


def _dashboard_script() -> str:
    import dashboards

    return str(Path(dashboards.__file__).with_name("app.py"))


def _open(settings: Settings) -> Any:
    from monitor.store import open_store

    return open_store(settings.store, settings.database, migrate=True, retention_days=settings.retention_days)


def _streamlit_flags(settings: Settings) -> dict[str, Any]:
    return {
        "server_port": settings.dashboard_port,
        "server_address": settings.dashboard_host,
        "server_headless": True,
        "server_fileWatcherType": "none",
        "server_runOnSave": False,
        "browser_gatherUsageStats": False,
        "global_developmentMode": False,
        "client_toolbarMode": "minimal",
    }


def serve_dashboard(settings: Settings) -> None:
    """Serve the Streamlit app from this thread (must be the main thread) until SIGTERM/SIGINT."""
    from streamlit.web import bootstrap

    flags = _streamlit_flags(settings)
    bootstrap.load_config_options(flags)
    bootstrap.run(_dashboard_script(), False, [], flags)


def _wait_for_signal() -> None:
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class _Shutdown(Exception):
    """Raised in the main thread by a signal that arrives before the dashboard/wait loop took over."""


def _install_early_shutdown() -> None:
    """Make SIGTERM/SIGINT unwind into run_up's drain from the very start (no-op off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Shutdown(signum)

    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, handler)


def _drain_mode() -> None:
    """While draining: a repeated SIGTERM is ignored; a second Ctrl-C still forces exit (the spool keeps
    every acknowledged span for the next start)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.default_int_handler)


GC_GEN0_THRESHOLD = 200_000


def _tune_gc() -> None:
    """Cheaper garbage collection for the collector's request path, once start-up is done.

    Every span allocates a few dozen dicts and lists (decoded attributes, messages, the row), all freed by
    reference counting: none form cycles. The gen-0 count grows with the objects *alive*, and four requests
    in flight hold ≈ 40,000: with the default threshold (700) the cyclic collector ran every ~20 spans, and
    even at 50,000 it still fired mid-request and re-scanned (and promoted) the in-flight requests' objects.
    At 200,000 it runs on the slow growth of long-lived state only (measured, 3 interleaved A/Bs of 3-5
    rounds: stored spans/s higher in 10 of 12 pairs, the request threads' CPU 2.8-3.7 µs/span lower;
    1,000,000 was no better). ``gc.freeze()`` moves everything loaded at start-up (modules, chDB, the
    registry) out of the generations, so older-generation passes skip it.
    """
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 100)


# ``up --demo``: drift over one-minute windows (plus the usual ones) so a report shows within minutes, and a
# lighter embedding drift, where the config file says nothing else.
DEMO_ANALYZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "drift": {"windows": ["1m", "1h", "1d"], "embedding": {"sample": 80, "permutations": 8}},
}


def _start_analyzers(settings: Settings, store: Any, collector: Any, demo: bool = False) -> Any:
    """The scheduler on its daemon thread, reading only spans the collector has fully stored."""
    from monitor.analyzers.service import build_scheduler

    pending = getattr(collector, "pending_since", None)
    defaults = DEMO_ANALYZER_DEFAULTS if demo else None
    scheduler = build_scheduler(store, settings, horizon=pending, defaults=defaults)
    scheduler.start()
    return scheduler


def run_analyze(settings: Settings, *, once: bool, since: Any = None, only: list[str] | None = None) -> int:
    """``llm-monitor analyze``: once, a backfill, or a service until SIGTERM/SIGINT."""
    from monitor.analyzers.service import build_scheduler

    store = _open(settings)
    try:
        scheduler = build_scheduler(store, settings, only=only)
        names = ", ".join(j.name for j in scheduler.jobs) or "none"
        if since is not None:
            print(f"llm-monitor: backfilling {names} since {since.isoformat()}", file=sys.stderr, flush=True)
            done = scheduler.backfill(since, only)
        elif once:
            done = scheduler.run_once(only)
        else:
            print(f"llm-monitor: analyzers running ({names}); Ctrl-C to stop", file=sys.stderr, flush=True)
            scheduler.start()
            _wait_for_signal()
            scheduler.stop()
            done = dict(scheduler.processed)
        failed = sorted(scheduler.last_error)
        for name in failed:
            print(f"llm-monitor: analyzer {name} failed: {scheduler.last_error[name]}", file=sys.stderr)
        print("analyzed: " + (", ".join(f"{k} {v} spans" for k, v in done.items()) or "nothing"), flush=True)
        return 1 if failed else 0
    finally:
        store.close()


def run_up(
    settings: Settings, *, dashboard: bool = True, demo: bool = False, analyzers: bool = True
) -> int:
    """Run collector (+ dashboard, + demo) on one store until a signal; returns the exit code."""
    from collectors.server import CollectorServer
    from monitor.store import set_shared_store
    from monitor.store.migrations import current_version
    from monitor.store.shared import set_collector_url

    _install_early_shutdown()
    store = None
    collector: CollectorServer | None = None
    scheduler: Any = None
    demo_stop = threading.Event()
    demo_thread: threading.Thread | None = None
    try:
        store = _open(settings)
        set_shared_store(store)
        collector = CollectorServer(settings, store)
        collector.start()
        _tune_gc()
        set_collector_url(collector.url)
        if analyzers:
            scheduler = _start_analyzers(settings, store, collector, demo)
        endpoint = f"http://{settings.host}:{collector.port}"
        lines = [
            f"llm-monitor {__version__} is up",
            f"  store      {store.url.redacted()} (database {store.database}, schema v{current_version(store)})",
            f"  collector  {endpoint}  (OTLP/HTTP POST /v1/traces, /v1/logs, /v1/feedback; GET /healthz, /metrics)",
        ]
        if scheduler is not None:
            names = ", ".join(j.name for j in scheduler.jobs) or "none enabled"
            lines.append(f"  analyzers  {names}")
        if dashboard:
            lines.append(f"  dashboard  http://{settings.dashboard_host}:{settings.dashboard_port}")
        if demo:
            demo_thread = threading.Thread(
                target=_demo_loop, args=(endpoint, demo_stop), name="llm-monitor-demo", daemon=True
            )
            demo_thread.start()
            lines.append("  demo       sending realistic traffic through the openai SDK to a local fake")
        lines.append("Press Ctrl-C to stop.")
        print("\n".join(lines), flush=True)
        if dashboard:
            serve_dashboard(settings)
        else:
            _wait_for_signal()
    except _Shutdown:
        pass
    finally:
        _drain_mode()
        if collector is not None or store is not None:
            print("llm-monitor: stopping (draining the collector)...", file=sys.stderr, flush=True)
        demo_stop.set()
        if demo_thread is not None:
            demo_thread.join(timeout=15)
        if scheduler is not None:
            scheduler.stop()
        if collector is not None:
            collector.stop()
        set_shared_store(None)
        set_collector_url(None)
        if store is not None:
            store.close()
            print("llm-monitor: stopped", file=sys.stderr, flush=True)
    return 0


def _demo_loop(endpoint: str, stop: threading.Event) -> None:
    from monitor.demo.workload import run_demo

    try:
        run_demo(endpoint, stop_event=stop)
    except Exception:
        log.exception("demo workload failed")


def run_dashboard_only(settings: Settings) -> int:
    """``llm-monitor dashboard``: for a ClickHouse server (an embedded store must go through ``up``)."""
    store = _open(settings)
    from monitor.store import set_shared_store

    set_shared_store(store)
    print(
        f"llm-monitor dashboard on http://{settings.dashboard_host}:{settings.dashboard_port} "
        f"(store {store.url.redacted()})",
        flush=True,
    )
    try:
        serve_dashboard(settings)
    finally:
        set_shared_store(None)
        store.close()
    return 0


def run_demo_command(
    endpoint: str, *, iterations: int | None, duration: float | None, interval: float
) -> int:
    """``llm-monitor demo``: drive traffic into a running collector and report what was sent."""
    import urllib.error
    import urllib.request

    from monitor.demo.workload import run_demo

    try:
        with urllib.request.urlopen(endpoint.rstrip("/") + "/healthz", timeout=3):
            pass
    except (urllib.error.URLError, OSError) as e:
        from monitor.cli import CommandError

        raise CommandError(
            f"no collector answers at {endpoint} ({getattr(e, 'reason', e)}); start one with `llm-monitor up`"
        ) from None
    stop = threading.Event()
    old = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        stats = run_demo(
            endpoint, iterations=iterations, duration=duration, interval=interval, stop_event=stop
        )
    finally:
        signal.signal(signal.SIGINT, old)
    print(f"demo: {stats}", flush=True)
    return 0
