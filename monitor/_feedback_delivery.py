"""Delivery of feedback items: a bounded queue and one daemon thread POSTing batches to ``/v1/feedback``.

Split from ``monitor._feedback`` (the public functions and their validation) because nothing here runs on
the caller's thread except :meth:`FeedbackClient.submit`, an append under a lock. The thread batches
items (up to :data:`MAX_BATCH_SIZE`, or :data:`SCHEDULE_DELAY` after the first), sends them as one JSON
list, retries connection errors, timeouts, 429 and 5xx with exponential backoff (``Retry-After``
honoured) at most :data:`MAX_ATTEMPTS` times, drops only the items a 400 names, splits a batch on 413,
and counts everything it drops (``FeedbackClient.stats``). Nothing here raises into the application.
The tunables are read when a client is built, so tests and apps may change them first.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from monitor._guard import guard
from monitor._version import __version__

__all__ = [
    "ExportResult",
    "FeedbackClient",
    "FeedbackExporter",
    "HttpFeedbackExporter",
    "MemoryFeedbackExporter",
    "feedback_url",
]

logger = logging.getLogger("monitor")

MAX_QUEUE_SIZE = 2048
MAX_BATCH_SIZE = 100  # x 8 KB comments stays under the collector's 1 MB body limit
SCHEDULE_DELAY = 0.5  # seconds an item may wait for others to join its batch
MAX_ATTEMPTS = 5
BACKOFF_BASE = 0.5
BACKOFF_MAX = 8.0
REQUEST_TIMEOUT = 5.0


@dataclass(frozen=True)
class ExportResult:
    """Outcome of one request. ``retry``: try again later (after ``retry_after`` s if given).
    ``refused``: indexes of the items the collector will never take (all of them when empty and
    ``status == "refused"``). ``too_large``: split the batch and resend the halves.
    """

    status: str  # "ok" | "retry" | "refused" | "too_large"
    retry_after: float | None = None
    refused: tuple[int, ...] = ()
    reason: str = ""


OK = ExportResult("ok")


class FeedbackExporter(Protocol):
    """Sends one batch. Called on the feedback thread only; may block up to ``timeout``; may raise
    ``OSError`` (treated as retryable) but should report HTTP outcomes as an :class:`ExportResult`."""

    def export(self, items: Sequence[dict[str, Any]], timeout: float) -> ExportResult: ...


def feedback_url(endpoint: str) -> str:
    """``<endpoint>/v1/feedback`` (an endpoint given with ``/v1/traces`` is accepted too)."""
    base = endpoint.rstrip("/")
    if base.endswith("/v1/traces"):
        base = base[: -len("/v1/traces")]
    return base + "/v1/feedback"


class HttpFeedbackExporter:
    """POSTs JSON lists with ``http.client`` (stdlib: nothing to install, cheap to import)."""

    def __init__(self, url: str, api_key: str | None = None) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"feedback endpoint {url!r}: expected an http:// or https:// URL")
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = parts.path or "/"
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": f"llm-monitor/{__version__}",
        }
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"

    def export(self, items: Sequence[dict[str, Any]], timeout: float) -> ExportResult:
        import http.client

        body = json.dumps(list(items), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        conn_cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = conn_cls(self._host, self._port, timeout=timeout)
        try:
            conn.request("POST", self._path, body=body, headers=self._headers)
            resp = conn.getresponse()
            payload = resp.read(65536)
            status = resp.status
            retry_after = _retry_after(resp.getheader("Retry-After"))
        except (OSError, http.client.HTTPException) as e:
            return ExportResult("retry", reason=f"{type(e).__name__}: {e}"[:300])
        finally:
            conn.close()
        if 200 <= status < 300:
            return OK
        reason = f"HTTP {status}: {payload[:300].decode('utf-8', 'replace')}"
        if status == 408 or status == 429 or status >= 500:
            return ExportResult("retry", retry_after=retry_after, reason=reason)
        if status == 413:
            return ExportResult("too_large", reason=reason)
        return ExportResult("refused", refused=_refused_indexes(status, payload, len(items)), reason=reason)


def _retry_after(header: str | None) -> float | None:
    try:
        return max(0.0, float(header)) if header else None
    except ValueError:
        return None


def _refused_indexes(status: int, payload: bytes, n: int) -> tuple[int, ...]:
    """From a 400's ``errors`` list, the items at fault (empty: all of them)."""
    if status != 400:
        return ()
    try:
        errors = json.loads(payload).get("errors") or []
        idx = sorted({int(e["index"]) for e in errors})
    except (ValueError, TypeError, KeyError, AttributeError):
        return ()
    return tuple(idx) if idx and all(0 <= i < n for i in idx) else ()


class MemoryFeedbackExporter:
    """Keeps what would have been sent (``items``); for tests and ``monitor.testing.recording``."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def export(self, items: Sequence[dict[str, Any]], timeout: float) -> ExportResult:
        with self._lock:
            self.items.extend(dict(i) for i in items)
        return OK


@dataclass
class _Stats:
    submitted: int = 0
    delivered: int = 0
    dropped: int = 0  # queue full
    failed: int = 0  # gave up after retries (or at shutdown)
    refused: int = 0  # the collector said no (bad key, invalid item)
    logged: set[str] = field(default_factory=set)


_clients: weakref.WeakSet[FeedbackClient] = weakref.WeakSet()
_fork_hook_installed = False


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._reinit_after_fork()


class FeedbackClient:
    """Bounded queue + one daemon thread delivering batches through a :class:`FeedbackExporter`.

    :meth:`submit` is the only method on the request path: it appends under a lock held for a few
    instructions and never blocks on I/O. ``redact`` (the SDK's redactor) rewrites comments on the
    feedback thread before they are sent. The thread starts with the first item (processes that never
    send feedback run no thread) and again in a forked child.
    """

    def __init__(
        self,
        exporter: FeedbackExporter,
        *,
        max_queue_size: int | None = None,
        max_batch_size: int | None = None,
        schedule_delay: float | None = None,
        max_attempts: int | None = None,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        timeout: float | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        """Unset tunables take the module's constants (read here, so tests and apps may change them)."""
        global _fork_hook_installed
        self.exporter = exporter
        self.redact = redact
        self.max_queue_size = MAX_QUEUE_SIZE if max_queue_size is None else max_queue_size
        self.max_batch_size = max(1, MAX_BATCH_SIZE if max_batch_size is None else max_batch_size)
        self.schedule_delay = SCHEDULE_DELAY if schedule_delay is None else schedule_delay
        self.max_attempts = max(1, MAX_ATTEMPTS if max_attempts is None else max_attempts)
        self.backoff_base = BACKOFF_BASE if backoff_base is None else backoff_base
        self.backoff_max = BACKOFF_MAX if backoff_max is None else backoff_max
        self.timeout = REQUEST_TIMEOUT if timeout is None else timeout
        self.stats = _Stats()
        self._init_runtime()
        _clients.add(self)
        if not _fork_hook_installed and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook_installed = True

    def _init_runtime(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[dict[str, Any]] = deque()
        self._thread: threading.Thread | None = None
        self._flush_wanted = 0
        self._done = self.stats.delivered + self.stats.failed + self.stats.refused  # items handled
        self._stopping = False
        self._deadline: float | None = None
        self._pid = os.getpid()

    def _reinit_after_fork(self) -> None:
        """Child of a fork: the parent's queue is the parent's to send; fresh lock, no thread yet."""
        self.stats = _Stats()
        self._init_runtime()

    # -- request path --------------------------------------------------------------------------------

    def submit(self, item: dict[str, Any]) -> bool:
        """Queue one validated item. False when it was dropped (queue full or client shut down)."""
        with self._cond:
            if self._stopping:
                return False
            if len(self._queue) >= self.max_queue_size:
                self.stats.dropped += 1
                first = self.stats.dropped == 1
            else:
                first = False
                self._queue.append(item)
                self.stats.submitted += 1
                if self._thread is None:
                    self._start_locked()
                if len(self._queue) >= self.max_batch_size:
                    self._cond.notify_all()
                return True
        if first:
            logger.warning(
                "llm-monitor: feedback queue full (%d); dropping feedback until the collector catches up",
                self.max_queue_size,
            )
        return False

    def _start_locked(self) -> None:
        t = threading.Thread(target=self._run, name="llm-monitor-feedback", daemon=True)
        self._thread = t
        t.start()

    # -- control (any thread) ---------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        with self._cond:
            return self.stats.submitted - self._done

    def flush(self, timeout: float = 5.0) -> bool:
        """Send what is queued now; wait at most ``timeout`` s. True when all of it was delivered."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            target = self.stats.submitted
            lost_before = self.stats.failed + self.stats.refused + self.stats.dropped
            if self._done >= target:
                return True
            self._flush_wanted = max(self._flush_wanted, target)
            self._cond.notify_all()
            while self._done < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return self.stats.failed + self.stats.refused + self.stats.dropped == lost_before

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Deliver what is queued within ``timeout`` (then give up, counted as failed), stop the thread."""
        ok = self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._deadline = time.monotonic()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(0.1)
        return ok

    # -- the feedback thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            outcome = (0, 0, 0)
            with guard("feedback.deliver"):
                if self.redact is not None:
                    for item in batch:
                        if "comment" in item:
                            item["comment"] = self.redact(item["comment"])
                outcome = self._deliver(batch)
            delivered, failed, refused = outcome
            with self._cond:
                self.stats.delivered += delivered
                self.stats.failed += failed
                self.stats.refused += refused
                self.stats.failed += len(batch) - delivered - failed - refused  # our own bug: count, move on
                self._done += len(batch)
                self._cond.notify_all()

    def _next_batch(self) -> list[dict[str, Any]] | None:
        """Wait for a full batch, a flush, shutdown or the schedule delay after the first item."""
        with self._cond:
            first_seen: float | None = None
            while True:
                if self._stopping and not self._queue:
                    self._thread = None
                    return None
                if self._queue:
                    now = time.monotonic()
                    first_seen = now if first_seen is None else first_seen
                    if (
                        len(self._queue) >= self.max_batch_size
                        or self._stopping
                        or self._flush_wanted > self._done
                        or now - first_seen >= self.schedule_delay
                    ):
                        n = min(self.max_batch_size, len(self._queue))
                        return [self._queue.popleft() for _ in range(n)]
                    self._cond.wait(self.schedule_delay - (now - first_seen))
                else:
                    self._cond.wait()

    def _deliver(self, batch: list[dict[str, Any]]) -> tuple[int, int, int]:
        """(delivered, failed, refused) for one batch, after retries."""
        delivered = failed = refused = 0
        work: list[list[dict[str, Any]]] = [batch]
        attempts = 0
        while work:
            items = work.pop()
            try:
                result = self.exporter.export(items, self.timeout)
            except OSError as e:
                result = ExportResult("retry", reason=f"{type(e).__name__}: {e}")
            if result.status == "ok":
                delivered += len(items)
                continue
            if result.status == "too_large" and len(items) > 1:
                half = len(items) // 2
                work += [items[half:], items[:half]]
                continue
            if result.status in ("refused", "too_large"):
                bad = set(result.refused) if result.status == "refused" else set()
                if bad:
                    refused += len(bad)
                    rest = [it for i, it in enumerate(items) if i not in bad]
                    if rest:
                        work.append(rest)
                else:
                    refused += len(items)
                self._log_once("refused", "llm-monitor: the collector refused feedback (%s)", result.reason)
                continue
            attempts += 1
            if attempts >= self.max_attempts or self._past_deadline():
                failed += len(items)
                self._log_once(
                    "failed",
                    "llm-monitor: feedback not delivered after %d attempts, dropped (%s)",
                    attempts,
                    result.reason,
                )
                continue
            self._log_once("retry", "llm-monitor: feedback delivery failed, retrying (%s)", result.reason)
            work.append(items)
            self._sleep(self._backoff(attempts, result.retry_after))
        return delivered, failed, refused

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max)
        return min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)

    def _sleep(self, seconds: float) -> None:
        """Back off, but wake at shutdown (which then gives up on what is still failing)."""
        end = time.monotonic() + seconds
        with self._cond:
            while not self._stopping:
                left = end - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _log_once(self, what: str, msg: str, *args: Any) -> None:
        if what not in self.stats.logged:
            self.stats.logged.add(what)
            logger.warning(msg, *args)
