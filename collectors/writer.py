"""The write path: a bounded in-memory queue, one writer thread, batched column-oriented inserts.

Request threads only :meth:`BatchWriter.offer` rows (a lock and a deque append, never I/O), so a slow or
unreachable store never holds an HTTP request; when the queue is full ``offer`` says no and the server
answers 503 + Retry-After, pushing back on exporters instead of losing data. One daemon thread groups rows
into store-sized batches (``batch_size`` rows, or whatever waited ``flush_interval``) because ClickHouse
wants few large inserts. A batch of at least :data:`IDLE_MIN_ROWS` rows also goes as soon as nothing has
arrived for :data:`IDLE_SECONDS`: when a burst is over, waiting out the interval cannot grow it. A failed
insert keeps its batch and retries with capped exponential backoff, unless the store refused it for its
*data* (:meth:`Writer.is_data_error`): then the batch is bisected until the offending rows are isolated;
those are set aside in a quarantine file (``quarantine.jsonl`` in the spool directory) and counted, and
the rest is stored, so one bad row cannot block every later write.

This class alone keeps accepted rows in memory only (``spool_dir: off``). The collector normally runs its
durable subclass, :class:`collectors.spooled_writer.SpooledBatchWriter`, which puts every accepted request in
a write-ahead log on disk first (DESIGN §3); :meth:`BatchWriter.from_settings` picks the right one.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import operator
import re
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collectors import native
from monitor.store.schema import STAMP_COLUMN, TABLE_DEFAULTS

if TYPE_CHECKING:
    from collectors.spool import SpoolStats
    from monitor.settings import Settings
    from monitor.store.client import Store

log = logging.getLogger("llm_monitor.collector")

Row = dict[str, Any]

# The idle rule (see the module docstring): a burst's rows are stored 50 ms after its last request instead
# of up to ``flush_interval`` after its first, while a trickle still waits for the interval (under 1,000
# rows), so idle flushes make at most 20 inserts a second, each of at least 1,000 rows.
IDLE_SECONDS = 0.05
IDLE_MIN_ROWS = 1000


class Writer(ABC):
    """Where batches end up.

    Contract: :meth:`write` is called from one thread only (the :class:`BatchWriter`'s), may block for as
    long as the store needs, and raises (any exception) when the batch was not stored; the same batch is
    then offered again later, so an implementation must tolerate a retry of a batch that partly landed
    (the ``spans`` table's ReplacingMergeTree key absorbs such duplicates).

    ``token``, when given, identifies the batch for exactly-once delivery: a retry of the same batch (also
    after a crash and restart) carries the same token and must not store the rows twice
    (:class:`StoreWriter` passes it to ClickHouse as ``insert_deduplication_token``).
    """

    @abstractmethod
    def write(self, table: str, rows: Sequence[Row], token: str | None = None) -> None:
        """Store ``rows`` (complete dicts of ``table``'s columns, the insert-time stamp excepted)."""

    def encode(
        self, table: str, rows: Sequence[Row], stamp: _dt.datetime, types: Sequence[str] | None = None
    ) -> bytes | None:
        """``rows`` as the bytes :meth:`write_encoded` inserts unchanged, or ``None`` (the default): this
        writer takes row dicts only, or these rows cannot be encoded.

        Called on request threads (must be thread-safe and pure). ``stamp`` is the acceptance time, set in
        the table's :data:`~monitor.store.schema.STAMP_COLUMN` where a row carries none, so a retried or
        replayed body is byte-identical. The durable writer spools these bytes and later inserts the
        concatenation of several requests' bodies, so the encoding must be concatenable (whole rows).
        ``types`` (what :meth:`encoded_types` said) asks for a Native block of those column types; None
        for JSON compact rows. A writer that cannot encode ``rows`` that way returns None and the caller
        asks again without ``types``.
        """
        return None

    def write_encoded(
        self, table: str, bodies: Sequence[bytes | memoryview], token: str | None = None,
        types: Sequence[str] | None = None, distinct_keys: bool = False,
    ) -> None:  # fmt: skip
        """Store the concatenation of ``bodies`` made by :meth:`encode` (with these ``types``); same contract
        as :meth:`write`. ``distinct_keys``: the caller vouches that no two of these rows share a sort key,
        so the store may skip collapsing duplicates within the insert."""
        raise NotImplementedError(f"{type(self).__name__} does not encode rows")

    def encoded_columns(self, table: str) -> list[str] | None:
        """The column names one encoded row holds, in order, when :meth:`encode` writes them positionally
        (JSON compact rows or Native blocks), else None. Spooled bodies record them, so a body spooled before
        a schema change is still read right after it."""
        return None

    def encoded_types(self, table: str) -> list[str] | None:
        """The column types (one per :meth:`encoded_columns` name) to encode ``table``'s rows as Native
        blocks of, or None: JSON compact rows (the default, and while the store's types are not known yet)."""
        return None

    def types_learned(self) -> bool:
        """Whether :meth:`encoded_types` reflects the store yet (writers without types: always)."""
        return True

    def learn_types(self) -> bool:
        """Ask the store for the column types :meth:`encoded_types` reports; True when it answered. May block
        on the store (writer thread only). The default has nothing to learn."""
        return True

    def is_data_error(self, exc: BaseException) -> bool:
        """True when ``exc`` (raised by :meth:`write`/:meth:`write_encoded`) says the store refused the batch
        because of its *data* (a value it cannot parse into the column type...): retrying the same rows can
        never succeed, so the :class:`BatchWriter` bisects the batch and quarantines the offending rows.

        Must be conservative: a store that is down, slow, misconfigured or missing a table is never a data
        error (those batches are retried until they land). The default says False for everything.
        """
        return False

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release resources; called once after the last write."""


# ClickHouse error names (the ``(NAME)`` that ends a StoreError's message) that blame the *values* of the
# inserted rows, never the store's availability or its schema. Each was chosen because the engine raises it
# while parsing or converting one input value, so bisection isolates the rows that carry such a value:
#   CANNOT_PARSE_*            a value is not text of the column type (verified with chDB: input_tokens
#                             "not-a-number" → CANNOT_PARSE_INPUT_ASSERTION_FAILED, -5 → CANNOT_PARSE_NUMBER,
#                             bad DateTime → CANNOT_PARSE_DATETIME, "maybe" for Bool → CANNOT_PARSE_BOOL)
#   CANNOT_READ_ARRAY_FROM_TEXT / CANNOT_READ_MAP_FROM_TEXT   same for Array/Map columns (verified: tags "x")
#   INCORRECT_DATA, CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN, VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE,
#   TOO_LARGE_STRING_SIZE, TYPE_MISMATCH        a value that does not fit its column
# Deliberately NOT data errors (retried forever, like an outage): UNKNOWN_TABLE, UNKNOWN_IDENTIFIER,
# NO_SUCH_COLUMN_IN_TABLE, ILLEGAL_TYPE_OF_ARGUMENT, INCORRECT_NUMBER_OF_COLUMNS, NOT_ENOUGH_SPACE,
# MEMORY_LIMIT_EXCEEDED, TOO_MANY_PARTS, TIMEOUT_EXCEEDED, READONLY, ... (schema drift, resources or
# type-level problems that would fail every row alike and so quarantine everything), and
# CANNOT_READ_ALL_DATA (also what a connection cut mid-transfer raises: transient).
_DATA_ERROR_NAMES = frozenset({
    "CANNOT_PARSE_TEXT", "CANNOT_PARSE_ESCAPE_SEQUENCE", "CANNOT_PARSE_QUOTED_STRING",
    "CANNOT_PARSE_INPUT_ASSERTION_FAILED", "CANNOT_PARSE_DATE", "CANNOT_PARSE_DATETIME", "CANNOT_PARSE_NUMBER",
    "CANNOT_PARSE_BOOL", "CANNOT_PARSE_UUID", "CANNOT_PARSE_IPV4", "CANNOT_PARSE_IPV6",
    "CANNOT_READ_ARRAY_FROM_TEXT", "CANNOT_READ_MAP_FROM_TEXT", "INCORRECT_DATA",
    "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN", "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE", "TOO_LARGE_STRING_SIZE",
    "TYPE_MISMATCH",
})  # fmt: skip
_ERROR_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)\s*$")


def _engine_refused(exc: BaseException) -> bool:
    """True when the engine itself refused an insert (a ClickHouse error, or one whose message could not even
    be decoded), False for a store that could not be reached."""
    msg = str(exc)
    return clickhouse_error_name(exc) is not None or "codec can't decode" in msg or "DB::Exception" in msg


def clickhouse_error_name(exc: BaseException) -> str | None:
    """The ClickHouse error name ending ``exc``'s message (StoreError keeps it there), if any."""
    m = _ERROR_NAME.search(str(exc))
    return m.group(1) if m else None


class StoreWriter(Writer):
    """Batched inserts into a :class:`~monitor.store.client.Store` (JSON compact rows, else columns), stamping the
    insert-time column (``ingested_at``/``created_at``) where a row carries none: with the time the request
    was accepted when the rows went through :meth:`encode`, else the insert time.

    Columns come from :data:`monitor.store.schema.TABLE_DEFAULTS`, so a row missing a column gets the
    schema default instead of failing the batch. The store stays owned by the caller (not closed here).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        # table → the live column types Native blocks are encoded for; empty until learn_types() read them
        self._types: dict[str, list[str]] = {}
        self._specs: dict[tuple[str, tuple[str, ...]], tuple[native.BlockSpec, ...] | None] = {}
        self._learned = False

    def types_learned(self) -> bool:
        return self._learned

    def learn_types(self) -> bool:
        """Read the live column types of the tables this writer encodes: Native blocks from then on for each
        table whose every column type :mod:`collectors.native` encodes. True when the store answered.

        Blocks on the store: the writer thread calls it after its first successful insert (the store is
        up then; request threads never wait for it), tests and tools may call it directly.
        """
        try:
            result = self.store.query(
                "SELECT table, name, type FROM system.columns WHERE database = {db:String}",
                {"db": self.store.database},
            )
        except Exception as e:
            if not _engine_refused(e):
                log.debug("column types not readable yet (%s): JSON rows meanwhile", e)
                return False  # unreachable: asked again later (inserts cannot land meanwhile either)
            # The store answered but will not say (e.g. no grant on system.columns): JSON rows from now
            # on, and "learned", so a replay of binary spool records is not held up (they become rows).
            log.warning("cannot read the column types (%s): rows are written as JSON", e)
            self._types = {}
            self._learned = True
            return True
        live: dict[str, dict[str, str]] = {}
        for table, name, t in result.result_rows:
            live.setdefault(str(table), {})[str(name)] = str(t)
        types: dict[str, list[str]] = {}
        for table, defaults in TABLE_DEFAULTS.items():
            cols, have = _columns(table) or [], live.get(table, {})
            if cols and all(c in have for c in cols):
                ts = [have[c] for c in cols]
                if native.build_spec(cols, ts, defaults, STAMP_COLUMN[table]) is not None:
                    types[table] = ts
        self._types = types  # one reference swap: request threads see the old or the new map, whole
        self._learned = True
        return True

    def write(self, table: str, rows: Sequence[Row], token: str | None = None) -> None:
        # Fast path: rows encoded once (a Native block in C when the table's types are known, else JSON
        # arrays, one orjson call per row) and read by the engine outside the GIL. clickhouse-connect's
        # column insert costs far more GIL time per row (column building + serialization in Python), and
        # the GIL is what bounds the collector (benchmarks/collector_throughput.py). Stored values are
        # identical; rows neither encoding takes (int beyond 64 bits, lone surrogate…) go that way.
        # Note: a NaN/inf float becomes NULL (or the column default) on the JSON path.
        stamp = _dt.datetime.now(_dt.timezone.utc)
        types = self.encoded_types(table)
        body = self.encode(table, rows, stamp, types) if types else None
        if body is None:
            types, body = None, self.encode(table, rows, stamp)
        if body is not None:
            self.write_encoded(table, (body,), token, types)
            return
        defaults = TABLE_DEFAULTS[table]
        stamp_col = STAMP_COLUMN[table]
        columns = [[r.get(c, d) for r in rows] for c, d in defaults.items()]
        columns.append([_stamp_of(r, stamp_col, stamp) for r in rows])
        settings = {"insert_deduplication_token": token} if token else None
        self.store.insert_columns(table, columns, [*defaults, stamp_col], settings=settings)

    def encode(
        self, table: str, rows: Sequence[Row], stamp: _dt.datetime, types: Sequence[str] | None = None
    ) -> bytes | None:
        """One Native block of ``types`` or JSONCompactEachRow, in :meth:`encoded_columns` order (schema
        defaults filled in); None when the encoding refuses a value (see :mod:`collectors.native`)."""
        if types is not None:
            spec = self._spec(table, types)
            return None if spec is None else native.encode_block(rows, spec, stamp)
        return _compact_rows(rows, TABLE_DEFAULTS[table], STAMP_COLUMN[table], stamp)

    def _spec(self, table: str, types: Sequence[str]) -> tuple[native.BlockSpec, ...] | None:
        key = (table, tuple(types))
        try:
            return self._specs[key]
        except KeyError:
            cols = _columns(table)
            spec = None
            if cols is not None and len(cols) == len(types):
                spec = native.build_spec(cols, types, TABLE_DEFAULTS[table], STAMP_COLUMN[table])
            if len(self._specs) < 64:
                self._specs[key] = spec
            return spec

    def encoded_columns(self, table: str) -> list[str] | None:
        return _columns(table)

    def encoded_types(self, table: str) -> list[str] | None:
        return self._types.get(table)

    def write_encoded(
        self, table: str, bodies: Sequence[bytes | memoryview], token: str | None = None,
        types: Sequence[str] | None = None, distinct_keys: bool = False,
    ) -> None:  # fmt: skip
        settings = dict(_RB_INSERT_SETTINGS if types else _JSON_INSERT_SETTINGS)
        if token:
            settings["insert_deduplication_token"] = token
        if distinct_keys and table in _COLLAPSING_TABLES:
            # The insert holds no two rows of one key, so the engine's merge of the block at insert (which
            # only collapses duplicates inside it) has nothing to do: skipping it saves ~15-20 % of chDB's
            # CPU per span. Rows of other inserts collapse at merges either way.
            settings["optimize_on_insert"] = 0
        cols = _columns(table)
        if types is None:
            self.store.insert_raw(table, bodies, "JSONCompactEachRow", settings=settings, columns=cols)
        else:
            # Native blocks name and type every column: a body laid out for other types (the table altered
            # since learn_types) is converted by the engine or refused, never misread.
            try:
                self.store.insert_raw(table, bodies, "Native", settings=settings, columns=cols)
            except Exception as e:
                if not _engine_refused(e):
                    raise  # the store is unreachable: retried like any outage
                # The engine refused the binary body. Its message (which may quote binary bytes, and then
                # does not even survive decoding) cannot say whether the types changed or a value is bad,
                # so the batch is written again as JSON rows, whose errors are classified as always (data
                # errors bisected, the rest retried). The types are read again after the next insert.
                log.warning("the store refused a binary batch of %s (%s); writing it as JSON rows", table, e)
                rows = [r for b in bodies for r in native.decode_rows(b)]
                self._types = {k: v for k, v in self._types.items() if k != table}
                self._learned = False
                self.write(table, rows, token)
                return
        if not self._learned:
            self.learn_types()

    def is_data_error(self, exc: BaseException) -> bool:
        """A :class:`~monitor.store.client.StoreError` whose ClickHouse error name is in the conservative
        list above (bad values); anything else, an unreachable store included, is not."""
        from monitor.store.client import StoreError

        return isinstance(exc, StoreError) and clickhouse_error_name(exc) in _DATA_ERROR_NAMES


# JSON rows as StoreWriter sends them: ISO datetimes with offset. Compact rows (arrays, no keys) cost
# chDB about a quarter less CPU to parse than JSONEachRow objects and are a fifth smaller on the spool
# (benchmarks/README.md); keys a row has beyond the table's columns are left out, as before.
_JSON_INSERT_SETTINGS = {"date_time_input_format": "best_effort", "input_format_skip_unknown_fields": 1}
_RB_INSERT_SETTINGS: dict[str, Any] = {}
# ReplacingMergeTree tables whose rows carry their sort key's (trace_id, span_id): see distinct_keys
_COLLAPSING_TABLES = frozenset({"spans"})
_COLUMNS: dict[str, list[str]] = {}


def _columns(table: str) -> list[str] | None:
    """The columns a compact row of ``table`` holds, in order (None for a table the schema lacks)."""
    cols = _COLUMNS.get(table)
    if cols is None:
        if table not in TABLE_DEFAULTS:
            return None
        cols = _COLUMNS[table] = [*TABLE_DEFAULTS[table], STAMP_COLUMN[table]]
    return cols


def _stamp_of(row: Row, stamp_col: str, stamp: _dt.datetime) -> Any:
    """The row's own insert-time column when it carries one (feedback's validated ``created_at``: it is in
    the table's sort key, so a retried feedback_id must keep it), else ``stamp``."""
    v = row.get(stamp_col)
    return stamp if v is None else v


def _compact_rows(
    rows: Sequence[Row], defaults: dict[str, Any], stamp_col: str, stamp: _dt.datetime
) -> bytes | None:
    """One JSON array a line: the values of ``defaults``' columns in order (a row's missing columns get
    the default), then ``stamp_col`` (the row's own value, else ``stamp``); None if orjson refuses a value.
    """
    try:
        import orjson
    except ImportError:  # orjson comes with the server extra; without it the native path still works
        return None
    dumps = orjson.dumps
    keys = defaults.keys()
    values = operator.itemgetter(*keys)  # one C call for a complete row
    tail = b"," + dumps(stamp) + b"]\n"
    out: list[bytes] = []
    append = out.append
    try:
        for r in rows:
            if stamp_col not in r and r.keys() >= keys:
                append(dumps(values(r))[:-1] + tail)  # '[...]' → '[...,"<stamp>"]\n'
            else:
                line = [r.get(k, d) for k, d in defaults.items()]
                line.append(_stamp_of(r, stamp_col, stamp))
                append(dumps(line) + b"\n")
    except (TypeError, ValueError):  # orjson.JSONEncodeError is both
        return None
    return b"".join(out)


class MemoryDataError(ValueError):
    """What :class:`MemoryWriter` raises for a batch holding a row its ``poison`` predicate matches."""


class MemoryWriter(Writer):
    """Keeps rows in lists, for tests; can be made to fail (``failing = True``) or to block (:meth:`pause`).

    Like ClickHouse, a write whose ``token`` was seen before is acknowledged and dropped (``deduplicated``).
    ``poison``, when set, refuses (with :class:`MemoryDataError`, a data error) every batch holding a row it
    matches, the way ClickHouse refuses a batch with a value it cannot parse.
    """

    def __init__(self) -> None:
        self.tables: dict[str, list[Row]] = {}
        self.failing = False
        self.attempts = 0
        self.tokens: set[str] = set()
        self.deduplicated = 0
        self.poison: Callable[[Row], bool] | None = None
        self._lock = threading.Lock()
        self._gate = threading.Event()
        self._gate.set()

    def write(self, table: str, rows: Sequence[Row], token: str | None = None) -> None:
        self._gate.wait()
        with self._lock:
            self.attempts += 1
            if self.failing:
                raise RuntimeError("MemoryWriter is set to fail")
            poison = self.poison
            if poison is not None and any(poison(r) for r in rows):
                raise MemoryDataError("MemoryWriter: a row is poisoned (CANNOT_PARSE_TEXT)")
            if token is not None:
                if token in self.tokens:
                    self.deduplicated += len(rows)
                    return
                self.tokens.add(token)
            self.tables.setdefault(table, []).extend(rows)

    def is_data_error(self, exc: BaseException) -> bool:
        return isinstance(exc, MemoryDataError)

    def rows(self, table: str = "spans") -> list[Row]:
        with self._lock:
            return list(self.tables.get(table, ()))

    def pause(self) -> None:
        """Block every :meth:`write` until :meth:`resume` (simulates a store that hangs)."""
        self._gate.clear()

    def resume(self) -> None:
        self._gate.set()


@dataclass(frozen=True)
class WriterStats:
    received: int  # rows accepted by offer()
    rejected: int  # rows refused by offer() (queue full or closing)
    written: int  # rows the writer stored
    write_failures: int  # failed write attempts (each is retried)
    queue_depth: int  # rows accepted and not yet written (waiting or in flight)
    queue_capacity: int
    last_write_latency: float  # seconds
    write_latency_sum: float
    write_count: int
    healthy: bool  # False while the latest write attempt failed
    last_error: str
    rejected_by_reason: dict[str, int] = field(default_factory=dict)  # queue_full, spool_full, closing, ...
    written_by_table: dict[str, int] = field(default_factory=dict)
    backlog: int = 0  # rows accepted and not yet written, in memory or only on disk
    replayed: int = 0  # rows read back from the spool to be written (not served from memory)
    quarantined_by_table: dict[str, int] = field(default_factory=dict)  # refused for their data, set aside
    spool: SpoolStats | None = None


class BatchWriter:
    """Bounded queue + one flushing thread in front of a :class:`Writer`.

    Thread-safety: :meth:`offer`, :meth:`stats`, :meth:`flush` and :meth:`close` may be called from any
    thread; only the internal thread calls the wrapped writer.
    """

    def __init__(
        self,
        writer: Writer,
        *,
        batch_size: int = 5000,
        flush_interval: float = 1.0,
        max_rows: int = 200_000,
        retry_initial: float = 0.05,
        retry_max: float = 5.0,
        idle_seconds: float = IDLE_SECONDS,
        idle_min_rows: int = IDLE_MIN_ROWS,
    ) -> None:
        self.writer = writer
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.idle_seconds = min(idle_seconds, flush_interval)
        self.idle_min_rows = idle_min_rows
        self.max_rows = max_rows
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._cond = threading.Condition()
        self._pending: dict[str, deque[tuple[float, list[Row]]]] = {}
        self._pending_rows = 0  # waiting for a batch
        self._depth = 0  # waiting + in flight
        self._closing = False
        self._flush_requested = False
        self._thread: threading.Thread | None = None
        self._abort = threading.Event()  # close() gave up waiting: stop retrying (the spool keeps the rows)
        self._rejected_by: dict[str, int] = {}
        self._tls = threading.local()  # per request thread: why its latest offer was refused
        self._written_by: dict[str, int] = {}
        self._received = self._rejected = self._written = self._failures = self._write_count = 0
        self._last_latency = self._latency_sum = 0.0
        self._failing_since: float | None = None
        self._last_error = ""
        # Rows the store refused for their data go here, one JSON line each (None: logged only).
        self.quarantine_path: Path | None = None
        self._quarantined_by: dict[str, int] = {}
        self._quarantined_unnoted: dict[str, int] = {}  # writer thread: not yet subtracted from "written"

    @classmethod
    def from_settings(cls, writer: Writer, settings: Settings) -> BatchWriter:
        """The durable :class:`SpooledBatchWriter` unless the settings turn the spool off."""
        from collectors.spool import Spool, resolve_spool_dir

        kw: dict[str, Any] = {
            "batch_size": settings.batch_size,
            "flush_interval": settings.flush_interval,
            "max_rows": settings.queue_max_rows,
        }
        directory = resolve_spool_dir(settings)
        if directory is None:
            return BatchWriter(writer, **kw)
        from collectors.spooled_writer import SpooledBatchWriter

        spool = Spool(directory, max_bytes=settings.spool_max_bytes, fsync=settings.spool_fsync)
        return SpooledBatchWriter(writer, spool, **kw)

    # --- any thread ---------------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="llm-monitor-writer", daemon=True)
                self._thread.start()

    def offer(self, rows: list[Row], table: str = "spans") -> bool:
        """Accept all of ``rows`` or none: False when refused (see :meth:`submit` for why)."""
        return self.submit(rows, table) is None

    def submit(self, rows: list[Row], table: str = "spans") -> str | None:
        """Accept all of ``rows`` (``None``) or none (the reason: ``queue_full``, ``closing``, ...).

        Any thread; never blocks on the store. A request larger than the whole queue is still taken when
        the queue is empty, so it cannot be refused forever; the bound is then exceeded by that one request
        (itself bounded by the body limit).
        """
        n = len(rows)
        if n == 0:
            return None
        with self._cond:
            if self._closing or (self._depth + n > self.max_rows and self._depth > 0):
                return self._refuse_locked("closing" if self._closing else "queue_full", n)
            was_empty = self._pending_rows == 0
            self._pending.setdefault(table, deque()).append((time.monotonic(), rows))
            self._pending_rows += n
            self._depth += n
            self._received += n
            pending = self._pending_rows
            idle_rule_now = pending >= self.idle_min_rows > pending - n  # the idle rule applies from now on
            if was_empty or pending >= self.batch_size or idle_rule_now:
                self._cond.notify_all()
        return None

    def last_refusal(self) -> str | None:
        """Why the calling thread's latest refused :meth:`offer` was refused (``None`` if none was)."""
        return getattr(self._tls, "reason", None)

    def _refuse_locked(self, reason: str, n: int) -> str:
        self._tls.reason = reason
        self._rejected += n
        self._rejected_by[reason] = self._rejected_by.get(reason, 0) + n
        return reason

    @property
    def queue_depth(self) -> int:
        return self._depth

    @property
    def healthy(self) -> bool:
        return self._failing_since is None

    def stats(self) -> WriterStats:
        with self._cond:
            return WriterStats(
                received=self._received,
                rejected=self._rejected,
                written=self._written,
                write_failures=self._failures,
                queue_depth=self._depth,
                queue_capacity=self.max_rows,
                last_write_latency=self._last_latency,
                write_latency_sum=self._latency_sum,
                write_count=self._write_count,
                healthy=self._failing_since is None,
                last_error=self._last_error,
                rejected_by_reason=dict(self._rejected_by),
                written_by_table=dict(self._written_by),
                backlog=self._depth,
                quarantined_by_table=dict(self._quarantined_by),
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Write everything queued now (ignoring batch size and interval); True once the queue is empty."""
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flush_requested = True
            self._cond.notify_all()
            while self._depth > 0:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float | None = 30.0) -> bool:
        """Refuse new rows, write every queued one, stop the thread. True when nothing was left behind.

        With the store down the thread keeps retrying until ``timeout``; what is still queued then is
        reported (False) and lost with the process. The disk spool will take it over.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is None and self._depth:
            self.start()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        drained = self._depth == 0
        if drained:
            try:
                self.writer.close()
            except Exception as e:
                log.warning("closing the writer failed: %s", e)
        else:
            log.error("collector stopped with %d rows not written (store unavailable)", self._depth)
        return drained

    # --- the writer thread --------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._pending_rows and (
                        self._pending_rows >= self.batch_size or self._closing or self._flush_requested
                    ):
                        break
                    if self._closing:
                        return
                    if not self._pending_rows:
                        self._flush_requested = False
                        self._cond.wait()
                        continue
                    wait = self._wait_locked(self._oldest(), self._latest())
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                table, batch = self._take()
            self._write(table, batch)

    def _wait_locked(self, oldest: float, latest: float) -> float:
        """Seconds until the pending rows are due (<= 0: now): the interval since the oldest arrival, or
        the idle rule once there are ``idle_min_rows`` rows and the latest arrival is that long ago."""
        now = time.monotonic()
        wait = self.flush_interval - (now - oldest)
        if self._pending_rows >= self.idle_min_rows:
            wait = min(wait, self.idle_seconds - (now - latest))
        return wait

    def _oldest(self) -> float:
        return min(q[0][0] for q in self._pending.values() if q)

    def _latest(self) -> float:
        return max(q[-1][0] for q in self._pending.values() if q)

    def _take(self) -> tuple[str, list[Row]]:
        """Up to batch_size rows of the table whose oldest chunk waited longest (lock held)."""
        table = min((q[0][0], t) for t, q in self._pending.items() if q)[1]
        q = self._pending[table]
        batch: list[Row] = []
        while q and len(batch) < self.batch_size:
            ts, chunk = q[0]
            room = self.batch_size - len(batch)
            if len(chunk) <= room:
                batch.extend(chunk)
                q.popleft()
            else:
                batch.extend(chunk[:room])
                q[0] = (ts, chunk[room:])
        self._pending_rows -= len(batch)
        return table, batch

    def _write(self, table: str, batch: list[Row]) -> None:
        self._store(table, batch)
        with self._cond:
            self._depth -= len(batch)
            self._note_written_locked(table, len(batch))
            self._cond.notify_all()

    def _note_written_locked(self, table: str, n: int) -> None:
        n -= self._quarantined_unnoted.pop(table, 0)  # handled, but quarantined rather than stored
        self._written += n
        self._written_by[table] = self._written_by.get(table, 0) + n

    def _store(
        self, table: str, batch: Sequence[Row], token: str | None = None, bodies: Sequence[bytes | memoryview] | None = None,
        count: int = 0, types: Sequence[str] | None = None, distinct_keys: bool = False,
    ) -> bool:  # fmt: skip
        """Write one batch, retrying with capped backoff until it is stored (True) or close() gives up.

        ``bodies`` (``count`` rows made by the writer's ``encode``, for ``types``) are written instead of
        ``batch`` if given; ``distinct_keys`` as for :meth:`Writer.write_encoded`.
        A batch the store refuses for its data is bisected instead (:meth:`_bisect`): its good rows are
        stored, its bad rows quarantined, and it counts as handled (True).
        """
        delay = self.retry_initial
        while True:
            t0 = time.perf_counter()
            try:
                if bodies is not None:
                    if types is None and not distinct_keys:
                        self.writer.write_encoded(table, bodies, token)
                    else:
                        self.writer.write_encoded(table, bodies, token, types, distinct_keys)
                elif token is None:
                    self.writer.write(table, batch)
                else:
                    self.writer.write(table, batch, token=token)
            except Exception as e:
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                if self._is_data_error(e):
                    with self._cond:
                        self._failures += 1
                        self._last_error = msg
                    return self._bisect(table, batch, token, bodies, msg, types)
                with self._cond:
                    self._failures += 1
                    self._last_error = msg
                    first = self._failing_since is None
                    if first:
                        self._failing_since = time.monotonic()
                if first:
                    log.warning(
                        "writing %d rows to %s failed, will retry: %s", count or len(batch), table, msg
                    )
                if self._abort.wait(delay):  # close() sets it to give up
                    return False
                delay = min(delay * 2, self.retry_max)
                continue
            latency = time.perf_counter() - t0
            with self._cond:
                recovered = self._failing_since is not None
                self._failing_since = None
                self._write_count += 1
                self._last_latency = latency
                self._latency_sum += latency
            if recovered:
                log.info("writes to %s succeed again", table)
            return True

    def _is_data_error(self, exc: Exception) -> bool:
        try:
            return bool(self.writer.is_data_error(exc))
        except Exception:  # a broken classifier must not lose rows: treat as an outage (retry)
            log.exception("classifying a write error failed")
            return False

    def _bisect(
        self, table: str, batch: Sequence[Row], token: str | None, bodies: Sequence[bytes | memoryview] | None,
        error: str, types: Sequence[str] | None = None,
    ) -> bool:  # fmt: skip
        """Store the halves of a batch refused for its data, each through :meth:`_store` (so a half that
        fails for another reason is retried, one refused for its data is bisected again), until single rows
        are refused: those are quarantined. Encoded bodies are cut into rows: lines of JSON; Native blocks
        are read back into row dicts (each half is encoded again on its way in).

        The halves' tokens derive from the batch's (``token:0``, ``token:1``), so the replay of a range after
        a crash mid-bisection splits the same way, repeats the same tokens, and the store drops what landed.
        """
        if bodies is not None and types is not None:
            batch, bodies = native.decode_rows(b"".join(bodies)), None
        if bodies is not None:
            lines = [ln + b"\n" for ln in b"".join(bodies).split(b"\n") if ln.strip()]
            n = len(lines)
        else:
            n = len(batch)
        if n <= 1:
            if bodies is not None:
                self._quarantine(table, None, lines[0] if lines else b"", error, token)
            else:
                self._quarantine(table, batch[0] if batch else None, None, error, token)
            return True
        mid = n // 2
        for i, (lo, hi) in enumerate(((0, mid), (mid, n))):
            sub_token = None if token is None else f"{token}:{i}"
            if bodies is not None:
                sub = (b"".join(lines[lo:hi]),)
                ok = self._store(table, (), sub_token, bodies=sub, count=hi - lo)
            else:
                ok = self._store(table, batch[lo:hi], sub_token)
            if not ok:
                return False
        return True

    def _quarantine(
        self, table: str, row: Row | None, line: bytes | None, error: str, token: str | None
    ) -> None:
        """Set aside one row the store refused for its data: a JSON line in :attr:`quarantine_path` (an
        ERROR log with the row when there is none or it cannot be written), and count it.

        A crash between this and the spool's commit replays the range and quarantines the row again: the
        lines carry the insert ``token`` so such repeats can be told apart.
        """
        record: dict[str, Any] = {
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "table": table,
            "error": error,
            "token": token,
        }
        if line is not None:
            try:
                value = json.loads(line)
                columns = self.writer.encoded_columns(table) if isinstance(value, list) else None
                record["row"] = dict(zip(columns, value, strict=False)) if columns else value
            except ValueError:
                record["raw"] = line.decode("utf-8", "replace").rstrip("\n")
        else:
            record["row"] = row
        text = json.dumps(record, default=str, ensure_ascii=False)
        path = self.quarantine_path
        written = False
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "a", encoding="utf-8") as f:
                    f.write(text + "\n")
                    f.flush()
                written = True
            except OSError as e:
                log.error("cannot write the quarantine file %s: %s", path, e)
        if written:
            log.error("a row of %s was refused by the store (%s) and quarantined in %s", table, error, path)
        else:
            log.error("a row of %s was refused by the store and dropped: %s", table, text)
        with self._cond:
            self._quarantined_by[table] = self._quarantined_by.get(table, 0) + 1
            self._quarantined_unnoted[table] = self._quarantined_unnoted.get(table, 0) + 1
