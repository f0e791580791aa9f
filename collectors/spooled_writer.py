"""The durable write path: every accepted request goes through the write-ahead :class:`Spool` first.

Why: DESIGN §3 promises that an acknowledged span is never lost — not when the store is down, not on
SIGTERM, not after ``kill -9``. So :meth:`SpooledBatchWriter.submit` appends the request's rows to the spool
and waits for the group commit (one fsync for all concurrent requests) before the 200 goes out. The rows
are encoded once, there, by the writer (:meth:`~collectors.writer.Writer.encode`: a Native block of the table's
live column types, JSON compact rows until those are known, with the acceptance time as ``ingested_at``);
the spool, the memory cache and the insert all carry those bytes, and the writer thread only concatenates
them. Rows the writer cannot encode (or a writer that takes
row dicts only) are pickled instead and inserted as rows, under their own token.

The in-memory queue is only a cache of the log's tail: while the writer keeps up, it inserts rows straight
from memory and never reads the disk; when the store is down or slow the cache stops growing at
``max_rows`` (later requests live on disk only) and the writer catches up by reading the log in order. So
memory stays bounded under any load and only the spool's ``max_bytes`` ends in 503 (``spool_full``).

Exactly once: a batch is always a contiguous range of log records. Before inserting it the writer durably
records that range as the spool's *intent*, and inserts each table's rows with the token
``<spool epoch>:<first>-<last>:<table>`` (ClickHouse ``insert_deduplication_token``, kept for
``non_replicated_deduplication_window`` inserts, migration 0002). After a crash the same range is inserted
first, with the same token, so a batch that landed before the crash is dropped by the engine. Only then is
the range committed in the spool, and fully committed segments are deleted.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import logging
import pickle
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from collectors import native, rowbinary
from collectors.spool import Record, Spool, SpoolError, SpoolFull
from collectors.writer import BatchWriter, Row, Writer, WriterStats

log = logging.getLogger("llm_monitor.collector")

# Row values are plain Python data; these are the only classes a spool record may name.
_ALLOWED = {
    ("datetime", "datetime"), ("datetime", "date"), ("datetime", "time"), ("datetime", "timedelta"),
    ("datetime", "timezone"), ("decimal", "Decimal"),
}  # fmt: skip


class _RowUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"spool record names a forbidden class {module}.{name}")


def encode_rows(table: str, rows: list[Row]) -> bytes:
    """A spool payload for ``rows`` of ``table`` kept as row dicts (pickle: ~8 µs a span, shared dicts
    stored once). Used when the writer cannot :meth:`~collectors.writer.Writer.encode` them."""
    return pickle.dumps((table, rows), protocol=5)


def decode_rows(payload: bytes) -> tuple[str, list[Row]]:
    table, rows = _RowUnpickler(io.BytesIO(payload)).load()
    return str(table), list(rows)


# A payload the writer encoded itself: COMPACT + table + b"\n" + the JSON list of the column names each
# line holds + b"\n" + the body (JSON compact rows, one a line), or NATIVE + table + b"\n" + the names +
# b"\n" + the JSON list of the column types + b"\n" + the body (Native blocks of exactly those types).
# Either is inserted unchanged while the writer's columns (and types) are the same. ENCODED (JSONEachRow
# objects) and BINARY (RowBinary rows, NATIVE's header) are what earlier collectors wrote:
# such records, and encoded ones whose columns or types differ from the writer's (spooled before a schema
# change), are replayed as row dicts. Pickle payloads start with b"\x80" (protocol 2+), so none collide.
ENCODED = b"LMe1"
COMPACT = b"LMc1"
BINARY = b"LMb1"
NATIVE = b"LMn1"
_NAMES_JSON: dict[tuple[str, ...], bytes] = {}


def _names_json(names: Sequence[str]) -> bytes:
    key = tuple(names)
    out = _NAMES_JSON.get(key)
    if out is None:
        out = json.dumps(list(names), separators=(",", ":")).encode()
        if len(_NAMES_JSON) < 64:
            _NAMES_JSON[key] = out
    return out


def encoded_prefix(table: str, columns: Sequence[str], types: Sequence[str] | None = None) -> bytes:
    """What precedes an encoded body in its spool payload: marker, table, column names (and types)."""
    if types is None:
        return b"".join((COMPACT, table.encode(), b"\n", _names_json(columns), b"\n"))
    return b"".join((NATIVE, table.encode(), b"\n", _names_json(columns), b"\n", _names_json(types), b"\n"))


def _lines(body: bytes | memoryview) -> list[Any]:
    return [json.loads(line) for line in bytes(body).split(b"\n") if line.strip()]


ColumnsOf = Callable[[str], "list[str] | None"]


def decode_payload(
    payload: bytes, columns_of: ColumnsOf | None = None, types_of: ColumnsOf | None = None
) -> tuple[str, list[Row] | None, memoryview | None, list[str] | None]:
    """(table, rows, None, None) for a payload replayed as row dicts, (table, None, encoded bytes, types)
    for one the writer can insert unchanged: its column names equal ``columns_of(table)`` and, for
    Native blocks, its types equal ``types_of(table)`` (``types`` is None for JSON compact rows)."""
    marker = payload[:4]
    if marker in (COMPACT, NATIVE, BINARY):
        end = payload.index(b"\n", 4)
        table = payload[4:end].decode()
        names_end = payload.index(b"\n", end + 1)
        names = json.loads(payload[end + 1 : names_end])
        types = None
        if marker != COMPACT:
            types_end = payload.index(b"\n", names_end + 1)
            types = json.loads(payload[names_end + 1 : types_end])
            names_end = types_end
        body = memoryview(payload)[names_end + 1 :]
        same = columns_of is not None and columns_of(table) == names
        if marker == BINARY:
            return table, rowbinary.decode_rows(body, names, types or []), None, None
        if same and (types is None or (types_of is not None and types_of(table) == types)):
            return table, None, body, types
        if types is not None:
            return table, native.decode_rows(body), None, None
        return table, [dict(zip(names, values, strict=True)) for values in _lines(body)], None, None
    if payload[:4] == ENCODED:
        end = payload.index(b"\n", 4)
        return payload[4:end].decode(), _lines(memoryview(payload)[end + 1 :]), None, None
    table, rows = decode_rows(payload)
    return table, rows, None, None


def _distinct_keys(rows: list[Row]) -> frozenset[str] | None:
    """The rows' trace_id+span_id when no two rows share one (what lets the store skip collapsing
    duplicates at insert), else None. Request thread: one set build, ~0.1 µs a row."""
    try:
        keys = frozenset([r["trace_id"] + r["span_id"] for r in rows])
    except (KeyError, TypeError):
        return None
    return keys if len(keys) == len(rows) else None


def _all_distinct(keysets: list[frozenset[str] | None]) -> bool:
    """True when every body's keys are known and no key is in two of them."""
    total = 0
    union: set[str] = set()
    for keys in keysets:
        if keys is None:
            return False
        total += len(keys)
        union |= keys
    return len(union) == total


_Part = tuple[str, "list[Row] | None", "memoryview | None", int, "list[str] | None", "frozenset[str] | None"]


@dataclass
class _Chunk:
    seq: int
    table: str
    count: int
    rows: list[Row] | None  # the writer takes row dicts ...
    body: memoryview | None  # ... or what its encode() made: the cache then holds these bytes, not rows
    at: float  # monotonic arrival time
    stamp: _dt.datetime  # the acceptance time written into its rows (ingested_at / created_at)
    types: list[str] | None = None  # the column types of a Native body's blocks (None: JSON rows)
    keys: frozenset[str] | None = None  # its rows' trace_id+span_id, all distinct (None: unknown/duplicates)


class SpooledBatchWriter(BatchWriter):
    """A :class:`BatchWriter` whose queue is backed by a write-ahead :class:`Spool`.

    Threads: :meth:`submit`/:meth:`offer` from request threads (they block for about one fsync, never on
    the store); :meth:`start`, :meth:`flush`, :meth:`close`, :meth:`stats` from any thread; the wrapped
    :class:`Writer` is only called from the internal thread. :meth:`start` opens the spool and raises
    :class:`SpoolError` when it cannot (directory unusable or held by another collector).
    """

    def __init__(self, writer: Writer, spool: Spool, **kw: Any) -> None:
        super().__init__(writer, **kw)
        self.spool = spool
        self.quarantine_path = spool.directory / "quarantine.jsonl"  # rows the store refused for their data
        self._cache: deque[_Chunk] = deque()  # contiguous seqs, all > _next_seq - 1
        self._opened = False
        self._next_seq = 1  # the first record not yet in the store
        self._replay: tuple[int, int] | None = None  # an intent left by a crash: insert exactly this first
        self._replayed = 0
        self._spilled = 0  # rows accepted while the cache was full (on disk only)
        self._inflight: _dt.datetime | None = None  # oldest stamp of the range being inserted now

    def _open_locked(self) -> None:
        if self._opened:
            return
        self.spool.open()
        self._opened = True
        self._next_seq = self.spool.committed_seq + 1
        intent = self.spool.intent
        if intent is not None and intent[1] >= self._next_seq:
            self._replay = intent
        pending = self.spool.stats().pending_items
        if pending:
            log.info("spool %s: %d rows from a previous run will be written", self.spool.directory, pending)

    def start(self) -> None:
        with self._cond:
            self._open_locked()
        super().start()

    # --- request threads ----------------------------------------------------------------------------
    def submit(self, rows: list[Row], table: str = "spans") -> str | None:
        """Append ``rows`` to the spool and wait until they are durable; ``None`` once they are.

        Refusals: ``spool_full`` (503 + Retry-After), ``closing``, ``spool_error`` (disk failure).
        """
        n = len(rows)
        if n == 0:
            return None
        # Encoded once, here: the spool, the memory cache and the insert all use these bytes (the writer
        # thread only concatenates them), and the acceptance time in them makes a replay byte-identical.
        stamp = _dt.datetime.now(_dt.timezone.utc)
        columns = self.writer.encoded_columns(table)
        types = self.writer.encoded_types(table) if columns else None
        body = self.writer.encode(table, rows, stamp, types) if types else None
        if body is None:
            types = None
            body = self.writer.encode(table, rows, stamp) if columns else None
        payload: bytes | tuple[bytes, bytes]
        if body is not None and columns:
            # spooled in two pieces (never joined: a request's body is about a megabyte)
            payload = (encoded_prefix(table, columns, types), body)
            chunk_rows, chunk_body = None, memoryview(body)
        else:
            payload = encode_rows(table, rows)
            chunk_rows, chunk_body = rows, None
        keys = _distinct_keys(rows) if table == "spans" else None
        with self._cond:
            if self._closing:
                return self._refuse_locked("closing", n)
            try:
                self._open_locked()
                seq = self.spool.append(payload, n)
            except SpoolFull:
                return self._refuse_locked("spool_full", n)
            except SpoolError as e:
                log.error("cannot spool %d rows: %s", n, e)
                return self._refuse_locked("spool_error", n)
            self._received += n
            contiguous = not self._cache or self._cache[-1].seq == seq - 1
            if contiguous and (self._depth + n <= self.max_rows or self._depth == 0):
                self._cache.append(
                    _Chunk(seq, table, n, chunk_rows, chunk_body, time.monotonic(), stamp, types, keys)
                )
                self._depth += n
                self._pending_rows += n
            else:
                self._spilled += n
        try:
            self.spool.wait_durable(seq)
        except SpoolError as e:
            log.error("cannot make %d spooled rows durable: %s", n, e)
            with self._cond:
                return self._refuse_locked("spool_error", n)
        with self._cond:
            self._cond.notify_all()  # the writer only takes durable records: tell it this one is
        return None

    # --- any thread ---------------------------------------------------------------------------------
    def pending_since(self) -> _dt.datetime | None:
        """The oldest acceptance time among rows accepted but not yet in the store (``None``: all stored).

        Readers that follow ``ingested_at`` (the analyzers' scheduler) must not pass it: those rows will
        appear later with that older stamp. Records only on disk (a replay after a crash, rows spilled
        while the cache was full) have stamps unknown until read: the epoch then, i.e. wait for the drain.
        """
        with self._cond:
            if not self._unwritten_locked():
                return None
            if self._inflight is not None:
                return self._inflight
            if self._replay is None and self._cache and self._cache[0].seq == self._next_seq:
                return self._cache[0].stamp
            return _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)

    def _unwritten_locked(self) -> bool:
        return self._opened and self._next_seq <= self.spool.last_seq

    def flush(self, timeout: float | None = None) -> bool:
        """Write everything accepted so far (ignoring batch size and interval); True once it is stored."""
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self.spool.last_seq if self._opened else 0
            self._flush_requested = True
            self._cond.notify_all()
            while self._next_seq <= target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float | None = 30.0) -> bool:
        """Refuse new rows, write every accepted one, stop the thread, close the spool.

        True when everything was stored. Otherwise (store down until ``timeout``) the rest stays in the
        spool and is written at the next start: nothing acknowledged is lost either way.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            if not self._opened:
                return True
        self.start()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                self._abort.set()
                with self._cond:
                    self._cond.notify_all()
                thread.join(5.0)
        with self._cond:
            left = self.spool.stats().pending_items
            drained = not self._unwritten_locked()
        if thread is None or not thread.is_alive():
            self.spool.close()
        if drained:
            try:
                self.writer.close()
            except Exception as e:
                log.warning("closing the writer failed: %s", e)
        else:
            log.warning("%d accepted rows stay in the spool %s and are written at the next start",
                        left, self.spool.directory)  # fmt: skip
        return drained

    def stats(self) -> WriterStats:
        st = super().stats()
        sp = self.spool.stats() if self._opened else None
        with self._cond:
            replayed = self._replayed
        return replace(st, backlog=sp.pending_items if sp else st.backlog, replayed=replayed, spool=sp)

    # --- the writer thread --------------------------------------------------------------------------
    def _run(self) -> None:
        if not self.writer.types_learned():
            self.writer.learn_types()  # one try now (JSON rows meanwhile); retried after an insert lands
        while True:
            with self._cond:
                while True:
                    durable = self.spool.durable_seq
                    if durable >= self._next_seq:
                        on_disk = not self._cache or self._cache[0].seq > self._next_seq
                        if self._replay or on_disk or self._closing or self._flush_requested:
                            break
                        if self._pending_rows >= self.batch_size:
                            break
                        wait = self._wait_locked(self._cache[0].at, self._cache[-1].at)
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                        continue
                    if self._closing and not self._unwritten_locked():
                        return
                    if not self._unwritten_locked():
                        self._flush_requested = False
                    self._cond.wait(0.5 if self._closing else None)
                chunks = self._take_cached_locked(durable)
                self._inflight = (
                    chunks[0].stamp if chunks else _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
                )
            if not self._write_range(chunks, durable):
                return

    def _take_cached_locked(self, durable: int) -> list[_Chunk]:
        """Whole records from the cache, in order, up to ``batch_size`` rows (empty: read the disk)."""
        while self._cache and self._cache[0].seq < self._next_seq:  # defensive: already stored
            stale = self._cache.popleft()
            self._depth -= stale.count
            self._pending_rows -= stale.count
        out: list[_Chunk] = []
        if self._replay is not None or not self._cache or self._cache[0].seq != self._next_seq:
            return out
        n = 0
        while self._cache and self._cache[0].seq <= durable and n < self.batch_size:
            c = self._cache.popleft()
            out.append(c)
            n += c.count
        self._pending_rows -= n
        return out

    def _write_range(self, chunks: list[_Chunk], durable: int) -> bool:
        """Insert one contiguous record range exactly once, then commit it. False: close() gave up."""
        first = self._next_seq
        if chunks:
            last = chunks[-1].seq
            parts = [(c.table, c.rows, c.body, c.count, c.types, c.keys) for c in chunks]
            cached = sum(c.count for c in chunks)
        else:
            if not self._learn_types():
                return False
            parts, last = self._read_disk(first, durable)
            cached = 0
        # Per table and encoding, in record order: encoded bodies (inserted concatenated, unchanged) and row
        # dicts. Which group a record joins depends only on the record and the table's types, so the replay
        # of a range after a crash makes the same inserts with the same tokens.
        encoded: dict[tuple[str, tuple[str, ...] | None], list[memoryview]] = {}
        keysets: dict[tuple[str, tuple[str, ...] | None], list[frozenset[str] | None]] = {}
        counts: dict[str, int] = {}
        tables: dict[str, list[Row]] = {}
        for table, rows, body, n, types, keys in parts:
            if body is not None:
                group = (table, tuple(types) if types is not None else None)
                encoded.setdefault(group, []).append(body)
                keysets.setdefault(group, []).append(keys)
            elif rows is not None:
                tables.setdefault(table, []).extend(rows)
                n = len(rows)
            counts[table] = counts.get(table, 0) + n
        total = sum(counts.values())
        delay = self.retry_initial
        while True:
            try:
                self.spool.begin(first, last)
                break
            except SpoolError as e:
                log.error("cannot record the spool intent: %s", e)
                if self._abort.wait(delay):
                    return False
                delay = min(delay * 2, self.retry_max)
        # One insert per table and kind, each with a token derived from the record range only, so the
        # replay of this range after a crash (read from disk, split the same way) repeats the same tokens.
        for group, bodies in encoded.items():
            table, group_types = group
            token = f"{self.spool.epoch}:{first}-{last}:{table}" + (":rb" if group_types is not None else "")
            distinct = _all_distinct(keysets[group])
            rb = list(group_types) if group_types is not None else None
            if not self._store(table, (), token, bodies, counts[table], rb, distinct):
                return False
        encoded_tables = {table for table, _ in encoded}
        for table, rows in tables.items():
            suffix = ":rows" if table in encoded_tables else ""
            if not self._store(table, rows, token=f"{self.spool.epoch}:{first}-{last}:{table}{suffix}"):
                return False
        self.spool.commit(last, total)
        with self._cond:
            self._next_seq = last + 1
            self._inflight = None
            self._replay = None
            self._depth -= cached
            if not chunks:
                self._replayed += total
            for table, k in counts.items():
                self._note_written_locked(table, k)
            self._cond.notify_all()
        return True

    def _learn_types(self) -> bool:
        """Writer thread, before records are read back from disk: the writer's column types must be known,
        since they decide whether a Native record is inserted as is (and so under which token). Waits
        with capped backoff while the store cannot tell; False once close() gave up."""
        delay = self.retry_initial
        while not self.writer.types_learned():
            if self.writer.learn_types():
                break
            if self._abort.wait(delay):
                return False
            delay = min(delay * 2, self.retry_max)
        return True

    def _read_disk(self, first: int, durable: int) -> tuple[list[_Part], int]:
        """Records from ``first`` on that are not in the cache, decoded; and the last seq covered."""
        if self._replay is not None:
            first, upto, limit = self._replay[0], self._replay[1], 1 << 62
        else:
            with self._cond:
                upto = self._cache[0].seq - 1 if self._cache else durable
            limit = self.batch_size
        records: list[Record] = self.spool.read(first, upto, limit)
        parts: list[_Part] = []
        for rec in records:
            try:
                table, rows, body, types = decode_payload(
                    rec.payload, self.writer.encoded_columns, self.writer.encoded_types
                )
                parts.append((table, rows, body, rec.count, types, None))
            except Exception as e:  # a record we wrote but cannot read back: count it, never crash
                log.error("spool record %d cannot be decoded, skipped: %s", rec.seq, e)
        if not records and upto >= first:
            log.warning("spool records %d..%d are unreadable and skipped", first, upto)
        last = records[-1].seq if records and self._replay is None else upto
        return parts, last
