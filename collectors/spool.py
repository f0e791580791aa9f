"""The collector's write-ahead log: a bounded, checksummed, fsynced, segmented append-only spool.

Every acknowledged request is appended here (and made durable) *before* the collector answers 200, so a
``kill -9``, a crash or a store outage never loses what was acknowledged (DESIGN §3). The writer thread
inserts records into the store in sequence order and then *commits* them; committed segments are deleted.

On disk, in ``directory``:

- ``<first_seq:020d>.seg`` segments of records, each ``HEADER`` + payload. The header is magic ``LMSp``,
  payload length (u32), sequence number (u64), item count (u32, rows for the writer) and a CRC32 over
  length, seq, count and payload. Appends only ever go to the newest segment, opened fresh at every start;
  older segments are read-only. A segment is rotated at ``segment_bytes``.
- ``state``: two fixed-size slots written alternately (generation + JSON + CRC, one ``fdatasync`` each), so
  a torn state write leaves the other slot valid. It holds the spool's ``epoch`` (random, names this log in
  dedup tokens), the ``committed`` sequence (everything up to it is in the store) and the ``intent`` (the
  record range whose insert is under way, replayed with the same token after a crash).
- ``lock``: an exclusive ``flock``, so two collectors never share a spool.

Durability is a group commit: :meth:`Spool.append` only writes (page cache); :meth:`Spool.wait_durable` makes
the first waiting thread the leader, which ``fdatasync``\\ s once for every record appended so far while the
others wait; then all of them answer. Corrupt records (bad CRC) and a torn tail (an incomplete last record,
e.g. after a power cut) are detected, skipped and counted, never fatal.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import struct
import threading
import time
import urllib.parse
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from monitor.settings import Settings

log = logging.getLogger("llm_monitor.collector")

MAGIC = b"LMSp"
HEADER = struct.Struct("<4sIQI I")  # magic, length, seq, count, crc
_CRC_PART = struct.Struct("<IQI")  # length, seq, count (what the CRC covers besides the payload)
MAX_RECORD = 1 << 31
_STATE_MAGIC = b"LMSt"
_STATE_SLOT = 512
_STATE_HEAD = struct.Struct("<4sQI")  # magic, generation, json length; CRC32 (u32) follows the json


class SpoolError(RuntimeError):
    """The spool cannot be used (directory unusable, held by another process, I/O error)."""


class SpoolFull(SpoolError):
    """Appending would exceed ``max_bytes``: the caller answers 503 + Retry-After."""


@dataclass(frozen=True)
class Record:
    seq: int
    count: int
    payload: bytes


@dataclass(frozen=True)
class SpoolStats:
    bytes: int  # on disk, all segments
    max_bytes: int
    segments: int
    last_seq: int  # newest appended
    durable_seq: int  # newest fsynced (or written, without fsync)
    committed_seq: int  # newest stored
    pending_items: int  # items in records after committed_seq
    appended_records: int
    appended_items: int
    appended_bytes: int
    corrupt_records: int
    torn_records: int
    fsyncs: int
    fsync_seconds_sum: float
    fsync_seconds_last: float


@dataclass
class _Segment:
    first_seq: int
    path: Path
    size: int
    last_seq: int  # first_seq - 1 while empty


Payload = bytes | bytearray | memoryview


def _parts(payload: Payload | Sequence[Payload]) -> tuple[Payload, ...]:
    return (payload,) if isinstance(payload, (bytes, bytearray, memoryview)) else tuple(payload)


def _crc(length: int, seq: int, count: int, payload: Payload | Sequence[Payload]) -> int:
    crc = zlib.crc32(_CRC_PART.pack(length, seq, count))
    for part in _parts(payload):  # a payload in pieces has the CRC of the pieces joined
        crc = zlib.crc32(part, crc)
    return crc


def _write_all(fd: int, pieces: Sequence[Payload]) -> None:
    """Write every piece, in order, with as few system calls as the kernel allows (no joined copy)."""
    views = [memoryview(p).cast("B") for p in pieces if len(p)]
    while views:
        k = os.writev(fd, views)
        while k:
            if k >= len(views[0]):
                k -= len(views.pop(0))
            else:
                views[0], k = views[0][k:], 0


def scan_records(
    f: BinaryIO, offset: int, on_bad: Callable[[str, int], None], stop_after: int | None = None
) -> Iterator[tuple[int, int, Record]]:
    """Valid records from ``offset`` on, as (offset, end offset, record).

    A record that fails its checks is reported as ``on_bad("corrupt", offset)`` and skipped by searching
    for the next valid header; an incomplete record with nothing valid after it is reported as
    ``on_bad("torn", offset)`` and ends the scan. ``stop_after``: stop (without reading the payload) at the
    first record whose seq is beyond it, so a reader never touches records still being written.
    """
    pos = offset
    while True:
        f.seek(pos)
        head = f.read(HEADER.size)
        if not head:
            return
        ok = len(head) == HEADER.size
        magic, length, seq, count, crc = HEADER.unpack(head) if ok else (b"", 0, 0, 0, 0)
        if ok and magic == MAGIC and stop_after is not None and seq > stop_after:
            return
        payload = b""
        if ok and magic == MAGIC and length <= MAX_RECORD:
            payload = f.read(length)
            ok = len(payload) == length and _crc(length, seq, count, payload) == crc
        else:
            ok = False
        if ok:
            end = pos + HEADER.size + length
            yield pos, end, Record(seq, count, payload)
            pos = end
            continue
        nxt = _resync(f, pos + 1)
        if nxt is None:
            on_bad("torn", pos)
            return
        on_bad("corrupt", pos)
        pos = nxt


def _resync(f: BinaryIO, start: int) -> int | None:
    """Offset of the next valid record header at or after ``start`` (None at end of file)."""
    pos = start
    while True:
        f.seek(pos)
        chunk = f.read(1 << 16)
        if len(chunk) < len(MAGIC):
            return None
        i = chunk.find(MAGIC)
        while i >= 0:
            cand = pos + i
            f.seek(cand)
            head = f.read(HEADER.size)
            if len(head) == HEADER.size:
                _, length, seq, count, crc = HEADER.unpack(head)
                if length <= MAX_RECORD:
                    payload = f.read(length)
                    if len(payload) == length and _crc(length, seq, count, payload) == crc:
                        return cand
            i = chunk.find(MAGIC, i + 1)
        pos += len(chunk) - len(MAGIC) + 1


class Spool:
    """A write-ahead log in ``directory``, bounded by ``max_bytes``. Open it with :meth:`open`.

    Threads: :meth:`append` and :meth:`wait_durable` are for request threads (append never blocks on the
    disk flush; wait_durable blocks ~one fsync); :meth:`read`, :meth:`begin` and :meth:`commit` are for the
    single writer thread; :meth:`stats` for anyone. Every method may raise :class:`SpoolError` on I/O
    failure; :meth:`append` raises :class:`SpoolFull` when the record does not fit.
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, max_bytes: int, fsync: bool = True,
        segment_bytes: int | None = None,
    ) -> None:  # fmt: skip
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.segment_bytes = segment_bytes or max(1 << 16, min(64 << 20, max_bytes // 8))
        self._lock = threading.Lock()  # appends, segment list, counters
        self._sync_cond = threading.Condition()  # group commit
        self._state_lock = threading.Lock()
        self._syncing = False
        self._segments: list[_Segment] = []
        self._fd = -1
        self._retired: list[int] = []  # fds of rotated segments, fsynced and closed by the next leader
        self._dir_dirty = False
        self._lock_fd = -1
        self._bytes = 0
        self._last_seq = self._durable_seq = self._committed = self._durable_committed = 0
        self._pending_items = 0
        self.epoch = ""
        self.intent: tuple[int, int] | None = None
        self._state_gen = 0
        self._appended = [0, 0, 0]  # records, items, bytes
        self._bad = {"corrupt": 0, "torn": 0}
        self._known_bad: set[tuple[int, int]] = set()
        self._fsyncs = 0
        self._fsync_sum = self._fsync_last = 0.0
        self._reader: tuple[int, BinaryIO, int, int] | None = (
            None  # (segment first_seq, file, offset, next seq)
        )
        self._closed = True

    # --- lifecycle ----------------------------------------------------------------------------------
    def open(self) -> Spool:
        """Lock the directory, read the state, validate the segments (counting damage), start a new segment."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise SpoolError(f"cannot use spool directory {self.directory}: {e.strerror or e}") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolError(f"spool directory {self.directory} is in use by another collector") from None
        self._read_state()
        for p in sorted(self.directory.glob("*.seg")):
            try:
                first = int(p.stem)
            except ValueError:
                continue
            seg = self._recover_segment(first, p)
            if seg.last_seq < seg.first_seq:  # empty (a fresh segment nobody wrote to): drop it
                p.unlink(missing_ok=True)
                self._bytes -= seg.size
                continue
            self._segments.append(seg)
        last = max(
            [s.last_seq for s in self._segments] + [self._committed, self.intent[1] if self.intent else 0]
        )
        self._last_seq = self._durable_seq = last
        with self._lock:
            self._delete_committed_locked()
        self._open_segment(last + 1)
        self._closed = False
        if not self.epoch:
            self.epoch = uuid.uuid4().hex
        self._write_state()
        return self

    def _recover_segment(self, first: int, path: Path) -> _Segment:
        seg = _Segment(first, path, path.stat().st_size, first - 1)
        valid_end = 0
        torn = False
        with open(path, "rb") as f:

            def bad(kind: str, offset: int) -> None:
                nonlocal torn
                torn = torn or kind == "torn"
                self._bad[kind] += 1
                self._known_bad.add((first, offset))
                log.warning("spool %s: %s record at offset %d skipped", path.name, kind, offset)

            for _, end, rec in scan_records(f, 0, bad):
                seg.last_seq = max(seg.last_seq, rec.seq)
                valid_end = end
                if rec.seq > self._committed:
                    self._pending_items += rec.count
        if torn and valid_end < seg.size:
            with open(path, "r+b") as g:  # cut the torn tail so nothing ever reads it again
                g.truncate(valid_end)
            seg.size = valid_end
        self._bytes += seg.size
        return seg

    def close(self) -> None:
        """Make everything durable, record the state, release the directory. Idempotent."""
        if self._closed:
            return
        if self._last_seq > self._durable_seq:
            self.wait_durable(self._last_seq)
        with self._sync_cond:
            while self._syncing:  # a late leader may still be flushing an fd we are about to close
                self._sync_cond.wait()
        with self._lock:
            self._closed = True
            fds, self._retired = [self._fd, *self._retired], []
            self._fd = -1
        for fd in fds:
            os.close(fd)
        if self._reader is not None:
            self._reader[1].close()
            self._reader = None
        if self.intent and self.intent[1] <= self._committed:
            self.intent = None  # an unfinished intent stays: its range is replayed with the same token
        self._write_state()
        os.close(self._lock_fd)

    # --- appending (request threads) ----------------------------------------------------------------
    def append(self, payload: Payload | Sequence[Payload], count: int) -> int:
        """Write one record (not yet durable) and return its sequence number. Raises :class:`SpoolFull`.

        ``payload`` may come in pieces (read back joined): they are written as they are, never copied into
        one buffer (a request's payload is about a megabyte, and this runs under the spool's lock)."""
        parts = _parts(payload)
        n = sum(len(p) for p in parts)
        size = HEADER.size + n
        with self._lock:
            if self._closed:
                raise SpoolError("the spool is closed")
            seq = self._last_seq + 1
            if self._bytes + size > self.max_bytes:
                self._reclaim_locked()
                if self._bytes + size > self.max_bytes:
                    raise SpoolFull(f"spool is full ({self._bytes} of {self.max_bytes} bytes)")
            cur = self._segments[-1]
            if cur.size and cur.size + size > self.segment_bytes:
                self._rotate_locked(seq)
                cur = self._segments[-1]
            try:
                _write_all(self._fd, (HEADER.pack(MAGIC, n, seq, count, _crc(n, seq, count, parts)), *parts))
            except OSError as e:
                raise SpoolError(f"spool write failed: {e.strerror or e}") from None
            cur.size += size
            cur.last_seq = seq
            self._bytes += size
            self._last_seq = seq
            self._pending_items += count
            a = self._appended
            a[0], a[1], a[2] = a[0] + 1, a[1] + count, a[2] + size
            if not self.fsync:
                self._durable_seq = seq
            return seq

    def wait_durable(self, seq: int) -> None:
        """Block until record ``seq`` is on stable storage (group commit: one fsync serves many waiters)."""
        with self._sync_cond:
            while self._durable_seq < seq:
                if not self._syncing:
                    self._syncing = True
                    break
                self._sync_cond.wait()
            else:
                return
        target, ok, dt = self._durable_seq, False, 0.0
        try:
            with self._lock:
                target, fd, retired, dirty = self._last_seq, self._fd, self._retired, self._dir_dirty
                self._retired, self._dir_dirty = [], False
            t0 = time.perf_counter()
            for r in retired:
                if self.fsync:
                    os.fdatasync(r)
                os.close(r)
            if self.fsync:
                os.fdatasync(fd)
                if dirty:
                    self._fsync_dir()
            dt = time.perf_counter() - t0
            ok = True
        except OSError as e:
            raise SpoolError(f"spool fsync failed: {e.strerror or e}") from None
        finally:
            with self._sync_cond:
                self._syncing = False
                if ok:
                    self._durable_seq = max(self._durable_seq, target)
                    self._fsyncs += 1
                    self._fsync_sum += dt
                    self._fsync_last = dt
                self._sync_cond.notify_all()

    @property
    def durable_seq(self) -> int:
        return self._durable_seq

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def committed_seq(self) -> int:
        return self._committed

    def _open_segment(self, first_seq: int) -> None:
        path = self.directory / f"{first_seq:020d}.seg"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._segments.append(_Segment(first_seq, path, os.fstat(self._fd).st_size, first_seq - 1))
        self._bytes += self._segments[-1].size
        self._dir_dirty = True

    def _rotate_locked(self, next_seq: int) -> None:
        if self.fsync:
            self._retired.append(self._fd)
        else:
            os.close(self._fd)
        self._open_segment(next_seq)

    def _reclaim_locked(self) -> None:
        """Full: if the live segment is entirely stored, start a new one so the old one can be deleted."""
        cur = self._segments[-1]
        if cur.size and cur.last_seq <= self._committed:
            self._rotate_locked(self._last_seq + 1)
            self._write_state()
            self._delete_committed_locked()

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- the writer thread --------------------------------------------------------------------------
    def read(self, from_seq: int, upto_seq: int, max_items: int) -> list[Record]:
        """Durable records with ``from_seq <= seq <= upto_seq`` in order, stopping once ``max_items`` items
        were collected (at least one record). Damaged records are skipped (and counted once)."""
        upto_seq = min(upto_seq, self._durable_seq)
        out: list[Record] = []
        items = 0
        with self._lock:
            segs = [(s.first_seq, s.path, s.last_seq) for s in self._segments]
        if self._reader is not None and self._reader[0] not in {s[0] for s in segs}:
            self._reader[1].close()  # its segment was deleted (unlinked files stay readable until closed)
            self._reader = None
        for first, path, last in segs:
            if last < from_seq or first > upto_seq:
                continue
            if self._reader is None or self._reader[0] != first or self._reader[3] > from_seq:
                if self._reader is not None:
                    self._reader[1].close()
                self._reader = (first, open(path, "rb"), 0, first)  # noqa: SIM115 - cached across calls
            _, f, offset, _ = self._reader

            def bad(kind: str, off: int, first: int = first) -> None:
                # "torn" here is the live segment's not-yet-written end (old tails were cut at open)
                if kind == "corrupt" and (first, off) not in self._known_bad:
                    self._known_bad.add((first, off))
                    self._bad["corrupt"] += 1
                    log.warning("spool segment %d: corrupt record at offset %d skipped", first, off)

            for _, end, rec in scan_records(f, offset, bad, stop_after=upto_seq):
                self._reader = (first, f, end, rec.seq + 1)
                if rec.seq < from_seq:
                    continue
                out.append(rec)
                items += rec.count
                if items >= max_items:
                    return out
        return out

    def begin(self, first_seq: int, last_seq: int) -> None:
        """Record (durably) that records ``first_seq..last_seq`` are about to be inserted."""
        self.intent = (first_seq, last_seq)
        self._write_state()

    def commit(self, seq: int, items: int) -> None:
        """Records up to ``seq`` (``items`` items) are in the store; delete segments that are all stored."""
        with self._lock:
            self._committed = max(self._committed, seq)
            self._pending_items = max(0, self._pending_items - items)
            deletable = any(s.last_seq <= seq for s in self._segments[:-1])
        if deletable:
            self._write_state()  # a segment goes only once the state says it is stored
            with self._lock:
                self._delete_committed_locked()

    def _delete_committed_locked(self) -> None:
        keep = []
        for i, s in enumerate(self._segments):
            live = i == len(self._segments) - 1 and self._fd >= 0
            if not live and s.last_seq <= self._durable_committed:
                s.path.unlink(missing_ok=True)
                self._bytes -= s.size
            else:
                keep.append(s)
        self._segments = keep

    # --- state --------------------------------------------------------------------------------------
    def _read_state(self) -> None:
        path = self.directory / "state"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return
        best: tuple[int, dict] | None = None
        for slot in (raw[:_STATE_SLOT], raw[_STATE_SLOT : 2 * _STATE_SLOT]):
            if len(slot) < _STATE_HEAD.size + 4:
                continue
            magic, gen, n = _STATE_HEAD.unpack_from(slot)
            body = slot[_STATE_HEAD.size : _STATE_HEAD.size + n]
            crc_at = _STATE_HEAD.size + n
            if magic != _STATE_MAGIC or crc_at + 4 > len(slot):
                continue
            if struct.unpack_from("<I", slot, crc_at)[0] != zlib.crc32(slot[:crc_at]):
                continue
            if best is None or gen > best[0]:
                best = (gen, json.loads(body))
        if best is None:
            log.warning("spool state %s unreadable; replaying every segment", path)
            return
        self._state_gen, st = best
        self.epoch = str(st.get("epoch", ""))
        self._committed = self._durable_committed = int(st.get("committed", 0))
        it = st.get("intent")
        self.intent = (int(it[0]), int(it[1])) if it else None

    def _write_state(self) -> None:
        with self._state_lock:
            committed = self._committed
            body = json.dumps(
                {
                    "epoch": self.epoch,
                    "committed": committed,
                    "intent": list(self.intent) if self.intent else None,
                }
            ).encode()
            self._state_gen += 1
            head = _STATE_HEAD.pack(_STATE_MAGIC, self._state_gen, len(body)) + body
            slot = head + struct.pack("<I", zlib.crc32(head))
            path = self.directory / "state"
            created = not path.exists()
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                os.pwrite(fd, slot.ljust(_STATE_SLOT, b"\0"), (self._state_gen % 2) * _STATE_SLOT)
                if self.fsync:
                    os.fdatasync(fd)
                    if created:
                        self._fsync_dir()
            except OSError as e:
                raise SpoolError(f"spool state write failed: {e.strerror or e}") from None
            finally:
                os.close(fd)
            self._durable_committed = max(self._durable_committed, committed)

    # --- observability ------------------------------------------------------------------------------
    def stats(self) -> SpoolStats:
        with self._lock:
            return SpoolStats(
                bytes=self._bytes, max_bytes=self.max_bytes, segments=len(self._segments),
                last_seq=self._last_seq, durable_seq=self._durable_seq, committed_seq=self._committed,
                pending_items=self._pending_items, appended_records=self._appended[0],
                appended_items=self._appended[1], appended_bytes=self._appended[2],
                corrupt_records=self._bad["corrupt"], torn_records=self._bad["torn"], fsyncs=self._fsyncs,
                fsync_seconds_sum=self._fsync_sum, fsync_seconds_last=self._fsync_last,
            )  # fmt: skip


def resolve_spool_dir(settings: Settings) -> Path | None:
    """Where ``settings`` put the spool; ``None`` when it is off.

    Automatic (``spool_dir`` empty): next to an embedded store (``<store dir>.spool/<database>``), or under
    the user data dir for a ClickHouse server (one directory per host, port and database).
    """
    if settings.spool_dir == "off":
        return None
    if settings.spool_dir:
        return Path(settings.spool_dir)
    from monitor.store.client import StoreURL

    url = StoreURL.parse(settings.store, settings.database)
    if url.engine == "chdb":
        return Path(url.path + ".spool") / url.database
    from monitor.settings import default_store_url

    base = Path(StoreURL.parse(default_store_url()).path).parent
    parts = urllib.parse.urlsplit(url.raw)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{parts.hostname}_{parts.port or 8123}_{url.database}")
    return base / "spool" / name
