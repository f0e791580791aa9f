"""The write path: a bounded in-memory queue, one writer thread, batched column-oriented inserts.

Request threads only :meth:`BatchWriter.offer` rows (a lock and a deque append, never I/O), so a slow or
unreachable store never holds an HTTP request; when the queue is full ``offer`` says no and the server
answers 503 + Retry-After, pushing back on exporters instead of losing data. One daemon thread groups rows
into store-sized batches (``batch_size`` rows, or whatever waited ``flush_interval``) because ClickHouse
wants few large inserts. A failed insert keeps its batch and retries with capped exponential backoff:
accepted rows are never dropped (the disk spool of DESIGN §3 is a later issue).
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from monitor.store.schema import STAMP_COLUMN, TABLE_DEFAULTS

if TYPE_CHECKING:
    from monitor.settings import Settings
    from monitor.store.client import Store

log = logging.getLogger("llm_monitor.collector")

Row = dict[str, Any]


class Writer(ABC):
    """Where batches end up.

    Contract: :meth:`write` is called from one thread only (the :class:`BatchWriter`'s), may block for as
    long as the store needs, and raises (any exception) when the batch was not stored; the same batch is
    then offered again later, so an implementation must tolerate a retry of a batch that partly landed
    (the ``spans`` table's ReplacingMergeTree key absorbs such duplicates).
    """

    @abstractmethod
    def write(self, table: str, rows: Sequence[Row]) -> None:
        """Store ``rows`` (complete dicts of ``table``'s columns, the insert-time stamp excepted)."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release resources; called once after the last write."""


class StoreWriter(Writer):
    """Column-oriented inserts into a :class:`~monitor.store.client.Store`, stamping the insert time.

    Columns come from :data:`monitor.store.schema.TABLE_DEFAULTS`, so a row missing a column gets the
    schema default instead of failing the batch. The store stays owned by the caller (not closed here).
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def write(self, table: str, rows: Sequence[Row]) -> None:
        defaults = TABLE_DEFAULTS[table]
        stamp = _dt.datetime.now(_dt.timezone.utc)
        columns = [[r.get(c, d) for r in rows] for c, d in defaults.items()]
        columns.append([stamp] * len(rows))
        self.store.insert_columns(table, columns, [*defaults, STAMP_COLUMN[table]])


class MemoryWriter(Writer):
    """Keeps rows in lists, for tests; can be made to fail (``failing = True``) or to block (:meth:`pause`)."""

    def __init__(self) -> None:
        self.tables: dict[str, list[Row]] = {}
        self.failing = False
        self.attempts = 0
        self._lock = threading.Lock()
        self._gate = threading.Event()
        self._gate.set()

    def write(self, table: str, rows: Sequence[Row]) -> None:
        self._gate.wait()
        with self._lock:
            self.attempts += 1
            if self.failing:
                raise RuntimeError("MemoryWriter is set to fail")
            self.tables.setdefault(table, []).extend(rows)

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
    ) -> None:
        self.writer = writer
        self.batch_size = batch_size
        self.flush_interval = flush_interval
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
        self._received = self._rejected = self._written = self._failures = self._write_count = 0
        self._last_latency = self._latency_sum = 0.0
        self._failing_since: float | None = None
        self._last_error = ""

    @classmethod
    def from_settings(cls, writer: Writer, settings: Settings) -> BatchWriter:
        return cls(
            writer,
            batch_size=settings.batch_size,
            flush_interval=settings.flush_interval,
            max_rows=settings.queue_max_rows,
        )

    # --- any thread ---------------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="llm-monitor-writer", daemon=True)
                self._thread.start()

    def offer(self, rows: list[Row], table: str = "spans") -> bool:
        """Queue all of ``rows`` or none: False when they do not fit (or the writer is closing).

        A request larger than the whole queue is still taken when the queue is empty, so it cannot be
        refused forever; the bound is then exceeded by that one request (itself bounded by the body limit).
        """
        n = len(rows)
        if n == 0:
            return True
        with self._cond:
            if self._closing or (self._depth + n > self.max_rows and self._depth > 0):
                self._rejected += n
                return False
            was_empty = self._pending_rows == 0
            self._pending.setdefault(table, deque()).append((time.monotonic(), rows))
            self._pending_rows += n
            self._depth += n
            self._received += n
            if was_empty or self._pending_rows >= self.batch_size:
                self._cond.notify_all()
        return True

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
                    wait = self.flush_interval - (time.monotonic() - self._oldest())
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                table, batch = self._take()
            self._write(table, batch)

    def _oldest(self) -> float:
        return min(q[0][0] for q in self._pending.values() if q)

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
        delay = self.retry_initial
        while True:
            t0 = time.perf_counter()
            try:
                self.writer.write(table, batch)
            except Exception as e:
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                with self._cond:
                    self._failures += 1
                    self._last_error = msg
                    first = self._failing_since is None
                    if first:
                        self._failing_since = time.monotonic()
                if first:
                    log.warning("writing %d rows to %s failed, will retry: %s", len(batch), table, msg)
                time.sleep(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            latency = time.perf_counter() - t0
            with self._cond:
                recovered = self._failing_since is not None
                self._failing_since = None
                self._depth -= len(batch)
                self._written += len(batch)
                self._write_count += 1
                self._last_latency = latency
                self._latency_sum += latency
                self._cond.notify_all()
            if recovered:
                log.info("writes to %s succeed again", table)
            return
