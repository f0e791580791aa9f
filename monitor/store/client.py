"""The :class:`Store`: a thin, thread-safe layer over clickhouse-connect clients.

Contract:
- Any thread may call any method; calls may block on I/O. Errors from the engine are raised as
  :class:`StoreError` (one line, engine noise stripped) so callers can show them without a traceback.
- Each thread gets its own clickhouse-connect client (chDB: its own handle on the one engine), so a long
  insert on the writer thread does not queue the dashboard's queries behind a shared handle lock.
- In embedded mode a process hosts exactly one chDB engine. Opening a second path in the same process,
  or a path another process holds, raises :class:`StoreInUseError` with a line that says who holds it.
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_ENGINE_LOCK = threading.Lock()
_ENGINE_PATH: str | None = None  # the chDB path this process hosts, once opened


class StoreError(RuntimeError):
    """The store refused or failed an operation. ``str(err)`` is one line for the user."""


class StoreInUseError(StoreError):
    """The embedded store's directory is held by another process (or this process holds another)."""


@dataclass(frozen=True)
class StoreURL:
    engine: str  # "chdb" | "http"
    path: str  # chDB directory
    database: str
    raw: str

    @classmethod
    def parse(cls, url: str, database: str = "llm_monitor") -> StoreURL:
        if url.startswith("chdb://"):
            rest = url[len("chdb://") :]
            path, _, query = rest.partition("?")
            if not path.startswith("/"):
                raise StoreError(f"store URL {url!r}: a chdb URL needs an absolute path (chdb:///abs/path)")
            db = urllib.parse.parse_qs(query).get("database", [database])[0]
            return cls("chdb", os.path.normpath(path), db, url)
        if url.startswith(("http://", "https://")):
            parsed = urllib.parse.urlsplit(url)
            db = parsed.path.strip("/") or database
            return cls("http", "", db, url)
        raise StoreError(f"store URL {url!r}: expected chdb:///abs/path or http(s)://host:8123/db")

    def redacted(self) -> str:
        """The URL with any password hidden, for logs and banners."""
        if self.engine != "http":
            return self.raw
        p = urllib.parse.urlsplit(self.raw)
        if p.password:
            netloc = f"{p.username}:***@{p.hostname}" + (f":{p.port}" if p.port else "")
            return urllib.parse.urlunsplit((p.scheme, netloc, p.path, p.query, p.fragment))
        return self.raw


def _holder_of(path: str) -> str | None:
    """Describe the process holding chDB's lock on ``path``, or ``None`` when nobody holds it.

    chDB takes an exclusive flock on ``<path>/status`` and writes its PID there. Only call this before this
    process opens the engine itself: flock locks of two open files in one process conflict too.
    """
    status = Path(path) / "status"
    try:
        fd = os.open(status, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = status.read_text(errors="replace")
            m = re.search(r"PID:\s*(\d+)", text)
            started = re.search(r"Started at:\s*(.+)", text)
            who = f"process {m.group(1)}" if m else "another process"
            since = f", started {started.group(1).strip()}" if started else ""
            return who + since
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class _Pieces:
    """A body given in pieces, read as one file (``read(n)`` returns the next at most ``n`` bytes as a view)."""

    def __init__(self, pieces: Sequence[bytes | memoryview]) -> None:
        self._pieces = [memoryview(p).cast("B") for p in pieces if len(p)]
        self._i = 0
        self._off = 0

    def __len__(self) -> int:
        return sum(len(p) for p in self._pieces)

    def read(self, n: int = -1) -> memoryview | bytes:
        while self._i < len(self._pieces):
            piece = self._pieces[self._i]
            if self._off < len(piece):
                end = len(piece) if n < 0 else min(len(piece), self._off + n)
                out = piece[self._off : end]
                self._off = end
                return out
            self._i += 1
            self._off = 0
        return b""


def _clean_error(e: BaseException) -> str:
    """One short line from a clickhouse-connect/chDB exception, keeping ClickHouse's error name."""
    text = re.sub(r"\s+", " ", str(e)).strip() or type(e).__name__
    text = re.sub(r" \(version [^)]*\)", "", text)
    name = re.search(r"\(([A-Z][A-Z_]+)\)\s*$", text)
    text = re.sub(r" FORMAT Native", "", text)
    if len(text) > 300:
        text = text[:240].rstrip() + " ..." + (f" ({name.group(1)})" if name else "")
    return text


class Store:
    """A handle on one ClickHouse database. Create with :func:`open_store`."""

    def __init__(self, url: StoreURL, *, readonly: bool = False, connect_timeout: float = 10.0) -> None:
        self.url = url
        self.database = url.database
        self.readonly = readonly
        self._connect_timeout = connect_timeout
        self._local = threading.local()
        self._clients: list[Any] = []
        self._clients_lock = threading.Lock()
        self._closed = False
        self._db_bound = False
        first = self.client()  # connect now so a bad URL or a held path fails at start-up
        exists = first.query(
            "SELECT count() FROM system.databases WHERE name = {d:String}", parameters={"d": self.database}
        )
        if exists.result_rows[0][0]:
            self.bind_database()

    # --- connections --------------------------------------------------------------------------------
    @property
    def embedded(self) -> bool:
        return self.url.engine == "chdb"

    def client(self) -> Any:
        """This thread's clickhouse-connect client (created on first use)."""
        if self._closed:
            raise StoreError("the store is closed")
        c = getattr(self._local, "client", None)
        if c is None:
            c = self._connect()
            if self._db_bound:
                c.database = self.database
            self._local.client = c
            with self._clients_lock:
                self._clients.append(c)
        return c

    def _connect(self) -> Any:
        import clickhouse_connect

        if self.url.engine == "chdb":
            return self._connect_chdb(clickhouse_connect)
        try:
            return clickhouse_connect.get_client(
                dsn=self.url.raw, connect_timeout=self._connect_timeout, database=None
            )
        except Exception as e:
            raise StoreError(f"cannot reach ClickHouse at {self.url.redacted()}: {_clean_error(e)}") from None

    def _connect_chdb(self, clickhouse_connect: Any) -> Any:
        global _ENGINE_PATH
        path = self.url.path
        with _ENGINE_LOCK:
            if _ENGINE_PATH is not None and path != _ENGINE_PATH:
                raise StoreInUseError(
                    f"this process already hosts the embedded store {_ENGINE_PATH}; chDB allows one per process"
                )
            if _ENGINE_PATH is None:
                holder = _holder_of(path)
                if holder:
                    raise StoreInUseError(
                        f"store {path} is in use by {holder}; stop it, run everything through "
                        f"`llm-monitor up`, or point --store at a ClickHouse server"
                    )
                try:
                    Path(path).mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise StoreError(f"cannot create store directory {path}: {e.strerror}") from None
            try:
                client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
            except Exception as e:
                holder = _holder_of(path) if _ENGINE_PATH is None else None
                if holder:
                    raise StoreInUseError(f"store {path} is in use by {holder}") from None
                raise StoreError(f"cannot open embedded store {path}: {_clean_error(e)}") from None
            _ENGINE_PATH = path
            return client

    def bind_database(self) -> None:
        """Make unqualified table names resolve in this store's database (once it exists)."""
        self._db_bound = True
        with self._clients_lock:
            for c in self._clients:
                c.database = self.database

    def close(self) -> None:
        """Close every client. The chDB engine itself lives until the process exits (chDB's rule)."""
        self._closed = True
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for c in clients:
            try:
                c.close()
            except Exception:
                pass

    # --- operations ---------------------------------------------------------------------------------
    def command(self, sql: str, settings: Mapping[str, Any] | None = None) -> Any:
        """Run a statement that returns nothing useful (DDL, ALTER)."""
        if self.readonly:
            raise StoreError("the store was opened read-only")
        try:
            return self.client().command(sql, settings=dict(settings or {}))
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(_clean_error(e)) from None

    def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None, settings: Mapping[str, Any] | None = None
    ) -> Any:
        """Run a SELECT; returns clickhouse-connect's QueryResult (``.result_rows``, ``.column_names``)."""
        s = dict(settings or {})
        if self.readonly:
            s.setdefault("readonly", 2)
        try:
            return self.client().query(sql, parameters=dict(parameters or {}), settings=s)
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(_clean_error(e)) from None

    def query_df(
        self, sql: str, parameters: Mapping[str, Any] | None = None, settings: Mapping[str, Any] | None = None
    ) -> Any:
        """Run a SELECT into a pandas DataFrame."""
        s = dict(settings or {})
        if self.readonly:
            s.setdefault("readonly", 2)
        try:
            return self.client().query_df(sql, parameters=dict(parameters or {}), settings=s)
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(_clean_error(e)) from None

    def rows(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """A SELECT as a list of dicts (small results only)."""
        r = self.query(sql, parameters)
        return [dict(zip(r.column_names, row, strict=True)) for row in r.result_rows]

    def scalar(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        r = self.query(sql, parameters)
        return r.result_rows[0][0] if r.result_rows else None

    def insert(self, table: str, rows: Sequence[Sequence[Any]], column_names: Sequence[str]) -> int:
        """Insert row-oriented data into ``<database>.<table>``; returns the number of rows written."""
        if self.readonly:
            raise StoreError("the store was opened read-only")
        if not rows:
            return 0
        try:
            self.client().insert(table, rows, column_names=list(column_names), database=self.database)
        except Exception as e:
            raise StoreError(f"insert into {table} failed: {_clean_error(e)}") from None
        return len(rows)

    def insert_columns(
        self,
        table: str,
        columns: Sequence[Iterable[Any]],
        column_names: Sequence[str],
        settings: Mapping[str, Any] | None = None,
    ) -> int:
        """Insert column-oriented data (one sequence per column); returns the number of rows written.

        ``settings`` are ClickHouse insert settings, e.g. ``insert_deduplication_token`` for exactly-once.
        """
        if self.readonly:
            raise StoreError("the store was opened read-only")
        cols = [list(c) for c in columns]
        n = len(cols[0]) if cols else 0
        if n == 0:
            return 0
        try:
            self.client().insert(
                table, cols, column_names=list(column_names), database=self.database, column_oriented=True,
                settings=dict(settings) if settings else None,
            )  # fmt: skip
        except Exception as e:
            raise StoreError(f"insert into {table} failed: {_clean_error(e)}") from None
        return n

    def insert_raw(
        self,
        table: str,
        data: bytes | Sequence[bytes | memoryview],
        fmt: str,
        settings: Mapping[str, Any] | None = None,
        columns: Sequence[str] | None = None,
    ) -> None:
        """Insert an already encoded body in ClickHouse input format ``fmt`` (e.g. ``JSONCompactEachRow``).

        The engine parses it, outside the GIL: the collector's writer uses this so that row encoding (one
        orjson call per row) is all the Python work an insert costs. ``data`` may be the body in pieces (to
        be concatenated): the embedded engine reads them from its input file without the body ever being
        joined in memory (a copy of ≈ 50 MB per collector insert, under the GIL). ``columns`` names what
        each row holds (formats without names need it); ``settings`` as for :meth:`insert_columns`.
        """
        if self.readonly:
            raise StoreError("the store was opened read-only")
        if isinstance(data, (bytes, bytearray, memoryview)):
            body: Any = data
        elif self.embedded:
            body = _Pieces(data)  # clickhouse-connect's chDB backend copies a reader into its input file
        else:
            body = b"".join(data)
        if not len(body):
            return
        try:
            self.client().raw_insert(
                self.table(table),
                list(columns) if columns else None,
                body,
                settings=dict(settings or {}),
                fmt=fmt,
            )
        except Exception as e:
            raise StoreError(f"insert into {table} failed: {_clean_error(e)}") from None

    def table(self, name: str) -> str:
        """Fully qualified, quoted table name for SQL text."""
        return f"`{self.database}`.`{name}`"

    def ping(self) -> bool:
        try:
            self.query("SELECT 1")
            return True
        except StoreError:
            return False


def open_store(
    url: str,
    database: str = "llm_monitor",
    *,
    readonly: bool = False,
    migrate: bool = False,
    retention_days: int = 30,
) -> Store:
    """Open the store at ``url``; with ``migrate=True`` apply pending migrations first.

    Raises :class:`StoreError` (or :class:`StoreInUseError`) with a one-line message on failure.
    """
    store = Store(StoreURL.parse(url, database), readonly=readonly)
    if migrate:
        from monitor.store.migrations import apply_migrations

        apply_migrations(store, retention_days=retention_days)
    return store
