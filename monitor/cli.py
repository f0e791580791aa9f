"""The ``llm-monitor`` command.

Every subcommand takes ``--store`` and ``--config``; every failure is one clear line on stderr and a
non-zero exit (2 for bad usage or configuration, 1 for runtime failures). Heavy imports happen inside the
subcommand that needs them, so ``llm-monitor --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from monitor._version import __version__
from monitor.settings import ConfigError, Settings

log = logging.getLogger("llm_monitor")


class CommandError(Exception):
    """A failure to report as one line with exit code ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", help="store URL: chdb:///abs/path or http(s)://user:pass@host:8123/db")
    p.add_argument("--config", help="YAML config file (default: ./llm-monitor.yaml when present)")
    p.add_argument("--database", help="ClickHouse database (default llm_monitor)")
    p.add_argument("--log-level", dest="log_level", help="DEBUG, INFO, WARNING or ERROR")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-monitor", description="Production monitoring for LLM applications."
    )
    parser.add_argument("--version", action="version", version=f"llm-monitor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("up", help="all-in-one on the embedded store: collector, dashboard (and demo traffic)")
    _common(p)
    p.add_argument("--host", help="collector bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="collector OTLP/HTTP port (default 4318)")
    p.add_argument("--dashboard-port", dest="dashboard_port", type=int, help="dashboard port (default 8501)")
    p.add_argument(
        "--no-dashboard", dest="dashboard", action="store_false", help="do not serve the dashboard"
    )
    p.add_argument("--demo", action="store_true", help="also run the demo workload against the collector")

    p = sub.add_parser("collector", help="run only the collector (for a ClickHouse server store)")
    _common(p)
    p.add_argument("--host")
    p.add_argument("--port", type=int)

    p = sub.add_parser("dashboard", help="run only the dashboard (for a ClickHouse server store)")
    _common(p)
    p.add_argument("--dashboard-port", dest="dashboard_port", type=int)

    p = sub.add_parser(
        "demo", help="drive realistic LLM traffic (real openai SDK, local fake) into a collector"
    )
    _common(p)
    p.add_argument("--endpoint", default=None, help="collector URL (default http://127.0.0.1:<port>)")
    p.add_argument(
        "--iterations", type=int, default=None, help="stop after N conversations (default: run until Ctrl-C)"
    )
    p.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    p.add_argument("--interval", type=float, default=0.3, help="seconds between conversations")

    p = sub.add_parser(
        "analyze", help="run the analyzers: a service on a schedule, once (--once) or over history (--backfill)"
    )
    _common(p)
    p.add_argument("--once", action="store_true", help="run every enabled analyzer now, then exit")
    p.add_argument(
        "--backfill",
        metavar="SINCE",
        help="re-score spans that started since SINCE (2026-11-01, 2026-11-01T12:00, 7d, 12h), then exit",
    )
    p.add_argument("--only", metavar="NAMES", help="comma-separated analyzers to run (default: all enabled)")

    p = sub.add_parser("query", help="run a read-only SQL query against the store")
    _common(p)
    p.add_argument(
        "sql", help="the SQL; tables are in the configured database (e.g. SELECT count() FROM spans)"
    )
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")

    p = sub.add_parser("migrate", help="create or upgrade the schema")
    _common(p)
    p.add_argument("--retention-days", dest="retention_days", type=int)

    p = sub.add_parser(
        "attributes", help="span attribute keys no mapping used, with span counts (asks a running collector)"
    )
    _common(p)
    p.add_argument("--endpoint", default=None, help="collector URL (default http://127.0.0.1:<port>)")
    p.add_argument("--limit", type=int, default=50, help="show the N most frequent keys (default 50)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")

    p = sub.add_parser("config", help="print the resolved configuration")
    _common(p)
    p.add_argument("--markdown", action="store_true", help="print the README's table of every setting")
    return parser


def load_settings(args: argparse.Namespace) -> Settings:
    overrides = {
        k: getattr(args, k, None)
        for k in ("store", "database", "host", "port", "dashboard_port", "retention_days", "log_level")
    }
    return Settings.load(overrides, config_file=getattr(args, "config", None))


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        settings = load_settings(args)
        _setup_logging(settings.log_level)
        return int(COMMANDS[args.command](args, settings) or 0)
    except ConfigError as e:
        print(f"llm-monitor: configuration error: {e}", file=sys.stderr)
        return 2
    except CommandError as e:
        print(f"llm-monitor: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # the last line of defence: one line, not a traceback
        from monitor.store import StoreError

        if isinstance(e, StoreError):
            print(f"llm-monitor: {e}", file=sys.stderr)
            return 1
        if settings_debug():
            raise
        print(
            f"llm-monitor: {type(e).__name__}: {e} (set LLM_MONITOR_LOG_LEVEL=DEBUG for a traceback)",
            file=sys.stderr,
        )
        return 1


def settings_debug() -> bool:
    return logging.getLogger().isEnabledFor(logging.DEBUG)


# --- subcommands ------------------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.store import open_store
    from monitor.store.migrations import apply_migrations, current_version

    store = open_store(settings.store, settings.database)
    try:
        applied = apply_migrations(store, retention_days=settings.retention_days)
        version = current_version(store)
    finally:
        store.close()
    what = f"applied {', '.join(map(str, applied))}" if applied else "already current"
    print(f"schema version {version} ({what}) in {store.url.redacted()} database {settings.database}")
    return 0


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.queryfmt import format_result
    from monitor.store import open_store

    store = open_store(settings.store, settings.database, readonly=True)
    try:
        result = store.query(args.sql)
    finally:
        store.close()
    sys.stdout.write(format_result(result.column_names, result.result_rows, args.format))
    return 0


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.settings import FIELDS, markdown_table

    if args.markdown:
        print(markdown_table())
        return 0
    for f in FIELDS:
        value: Any = getattr(settings, f.name)
        if f.name == "api_keys":
            value = f"{len(value)} key(s)"
        print(f"{f.name} = {value}")
    print(f"config_file = {settings.config_file or '(none)'}")
    return 0


def cmd_attributes(args: argparse.Namespace, settings: Settings) -> int:
    """Read ``GET /v1/unmapped`` from a running collector: ``llm-monitor up`` holds the embedded store,
    and the counts live in the collector's memory anyway."""
    import json
    import urllib.error
    import urllib.request

    from monitor.queryfmt import format_result

    host = "127.0.0.1" if settings.host in ("", "0.0.0.0", "::") else settings.host
    endpoint = (args.endpoint or f"http://{host}:{settings.port}").rstrip("/")
    url = f"{endpoint}/v1/unmapped"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            data = json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise CommandError(f"{url} answered HTTP {e.code}: is that an llm-monitor collector?") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise CommandError(f"cannot read {url}: {reason} (is `llm-monitor up` running?)") from None
    keys = data.get("keys", [])[: max(args.limit, 0)]
    rows = [(k["key"], k["spans"], f"{100 * k['share']:.1f}%") for k in keys]
    sys.stdout.write(format_result(["key", "spans", "share"], rows, args.format))
    if args.format == "table":
        hidden = len(data.get("keys", [])) - len(keys)
        print(
            f"{data.get('spans_with_unmapped', 0)} of {data.get('spans_observed', 0)} spans carried unmapped "
            f"attributes; {hidden} more keys not shown; {data.get('other_spans', 0)} span-key counts beyond "
            f"the {data.get('max_keys', 0)} tracked keys summed as other"
        )
    return 0


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.runtime import run_up

    return run_up(settings, dashboard=args.dashboard, demo=args.demo)


def cmd_collector(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.runtime import run_up

    return run_up(settings, dashboard=False, demo=False, analyzers=False)


def cmd_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.runtime import run_dashboard_only

    return run_dashboard_only(settings)


def parse_since(text: str, now: Any = None) -> Any:
    """``--backfill SINCE``: an ISO date or datetime (UTC unless it says otherwise) or ``<N>d|h|m`` ago."""
    import datetime as dt
    import re

    now = now or dt.datetime.now(dt.timezone.utc)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhm])\s*", text)
    if m:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[m.group(2)]
        return now - dt.timedelta(**{unit: float(m.group(1))})
    try:
        t = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(
            f"--backfill {text!r}: expected a date (2026-11-01), a datetime (2026-11-01T12:00) or 7d/12h/30m",
            2,
        ) from None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)


def cmd_analyze(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.runtime import run_analyze

    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    since = parse_since(args.backfill) if args.backfill else None
    return run_analyze(settings, once=args.once, since=since, only=only)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.runtime import run_demo_command

    endpoint = args.endpoint or f"http://{settings.host}:{settings.port}"
    return run_demo_command(
        endpoint, iterations=args.iterations, duration=args.duration, interval=args.interval
    )


COMMANDS = {
    "up": cmd_up,
    "collector": cmd_collector,
    "dashboard": cmd_dashboard,
    "demo": cmd_demo,
    "analyze": cmd_analyze,
    "query": cmd_query,
    "migrate": cmd_migrate,
    "config": cmd_config,
    "attributes": cmd_attributes,
}

if __name__ == "__main__":  # pragma: no cover
    # Run main from the imported module, not __main__: exceptions other modules raise
    # (monitor.cli.CommandError) must be the classes main() catches.
    from monitor.cli import main as _main

    sys.exit(_main())
