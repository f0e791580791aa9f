"""The analyzers' scheduler: incremental, idempotent, crash-safe scoring of every span.

Each job keeps a **watermark** in ``analyzer_state``: the ``(ingested_at, trace_id, span_id)`` of the last
span it finished. A run reads the spans past it in that order, in batches, scores a batch, stores its rows
in ``scores`` and only then moves the watermark. So:

* a crash between the insert and the watermark re-scores that batch on the next run; the re-insert carries
  the same ``insert_deduplication_token`` (job, batch range, analyzer version, options) and is dropped as a
  whole, and ``scores`` is a ReplacingMergeTree keyed by (span, analyzer, metric) in any case: **never a
  duplicate**;
* the watermark only moves past rows that were read, in a total order: **never a skip**, provided no span
  becomes visible later with an ``ingested_at`` below the watermark. The **horizon** guards that: a run only
  reads spans ingested before ``now - settle_seconds`` and, under ``llm-monitor up``, before the oldest
  request the in-process collector accepted but has not stored yet (spool replays keep their acceptance
  time). A standalone ``llm-monitor analyze`` against a ClickHouse server fed by separate collectors relies
  on ``settle_seconds`` alone; set it above the collectors' longest store outage you want covered, or
  ``--backfill`` after one.

``--backfill SINCE`` re-scores spans that started at or after SINCE, ignoring (and not moving) watermarks;
rows replace the earlier ones. Sampling (``sample_rate``) picks spans by a hash of their span id, so a
re-run scores the same ones.

Threads: :meth:`Scheduler.start` runs every enabled job on one daemon thread, each at its interval;
:meth:`Scheduler.run_once` and :meth:`Scheduler.backfill` run on the caller's thread. A job that fails
(store down, analyzer bug) logs one line and is retried at its next interval; the others go on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from monitor.analyzers.base import IDENTITY, Analyzer, Score
from monitor.analyzers.config import AnalyzerSettings, SchedulerConfig

if TYPE_CHECKING:
    from monitor.store.client import Store

__all__ = ["Job", "Progress", "Scheduler", "SpanAnalyzerJob", "Watermark", "load_state", "save_state"]

log = logging.getLogger("llm_monitor.analyzers")

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
SCORE_COLUMNS = (
    "project",
    "trace_id",
    "span_id",
    "span_start_time",
    "analyzer",
    "metric",
    "value",
    "label",
    "analyzer_version",
    "created_at",
)
SAMPLE_BUCKETS = 10_000


@dataclass(frozen=True)
class Watermark:
    """The last span a job finished, in ``(ingested_at, trace_id, span_id)`` order."""

    ingested_at: dt.datetime = EPOCH
    trace_id: str = ""
    span_id: str = ""
    processed: int = 0


class Job(Protocol):
    """Anything the scheduler runs at an interval (span analyzers, drift, acceptance)."""

    name: str
    settings: AnalyzerSettings

    def run(self, store: Store, horizon: dt.datetime, progress: Progress | None = None) -> int:
        """Catch up to ``horizon``; returns how many items were processed. Runs on the caller's thread."""


class Progress:
    """A one-line progress bar on a terminal, periodic lines otherwise (``--backfill``)."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = max(0, total)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.done = 0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_line = -1.0
        self._started = time.monotonic()

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self._tty or now - self._last_line >= 5.0 or self.done >= self.total:
            self._last_line = now
            self._draw(final=False)

    def close(self) -> None:
        self._draw(final=True)

    def _draw(self, final: bool) -> None:
        frac = 1.0 if self.total == 0 else min(1.0, self.done / self.total)
        filled = int(frac * self.width)
        rate = self.done / max(1e-9, time.monotonic() - self._started)
        line = (
            f"{self.label:<10} [{'#' * filled}{'.' * (self.width - filled)}] "
            f"{self.done}/{self.total} spans {frac:6.1%} {rate:,.0f}/s"
        )
        if self._tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        elif final or self.done < self.total:
            self.stream.write(line + "\n")
        self.stream.flush()


class SpanAnalyzerJob:
    """Runs one :class:`~monitor.analyzers.base.Analyzer` over spans past its watermark."""

    def __init__(self, analyzer: Analyzer, settings: AnalyzerSettings) -> None:
        self.analyzer = analyzer
        self.settings = settings
        self.name = analyzer.name
        opts = json.dumps(dict(analyzer.options), sort_keys=True, default=str)
        self._fingerprint = hashlib.sha1(f"{analyzer.version}|{opts}".encode()).hexdigest()[:12]

    # -- watermark -----------------------------------------------------------------------------------
    def load_watermark(self, store: Store) -> Watermark:
        return load_state(store, self.name) or Watermark()

    def save_watermark(self, store: Store, wm: Watermark) -> None:
        save_state(store, self.name, wm, self.analyzer.version)

    # -- reading -------------------------------------------------------------------------------------
    def _where(self, since: dt.datetime | None) -> tuple[str, dict[str, Any]]:
        conds = ["kind IN {kinds:Array(String)}", "ingested_at <= {horizon:DateTime64(6, 'UTC')}"]
        params: dict[str, Any] = {"kinds": list(self.analyzer.kinds)}
        if since is not None:
            conds.append("start_time >= {since:DateTime64(9, 'UTC')}")
            params["since"] = since
        if self.settings.sample_rate < 1.0:
            conds.append(f"cityHash64(span_id) % {SAMPLE_BUCKETS} < {{buckets:UInt32}}")
            params["buckets"] = round(self.settings.sample_rate * SAMPLE_BUCKETS)
        return " AND ".join(conds), params

    def fetch(
        self, store: Store, after: Watermark, horizon: dt.datetime, since: dt.datetime | None = None
    ) -> list[dict[str, Any]]:
        """The next batch past ``after`` (at most ``batch_size`` spans), in watermark order."""
        where, params = self._where(since)
        cols = list(dict.fromkeys((*IDENTITY, *self.analyzer.fields)))
        params.update(
            horizon=horizon, wm=after.ingested_at, tid=after.trace_id, sid=after.span_id,
            limit=self.settings.batch_size,
        )  # fmt: skip
        sql = (
            f"SELECT {', '.join(f'`{c}`' for c in cols)} FROM {store.table('spans')} WHERE {where} "
            "AND (ingested_at, trace_id, span_id) > ({wm:DateTime64(6, 'UTC')}, {tid:String}, {sid:String}) "
            "ORDER BY ingested_at, trace_id, span_id LIMIT {limit:UInt32}"
        )
        return store.rows(sql, params)

    def count(self, store: Store, after: Watermark, horizon: dt.datetime, since: dt.datetime | None) -> int:
        where, params = self._where(since)
        params.update(horizon=horizon, wm=after.ingested_at, tid=after.trace_id, sid=after.span_id)
        sql = (
            f"SELECT count() FROM {store.table('spans')} WHERE {where} "
            "AND (ingested_at, trace_id, span_id) > ({wm:DateTime64(6, 'UTC')}, {tid:String}, {sid:String})"
        )
        return int(store.scalar(sql, params) or 0)

    # -- one batch -----------------------------------------------------------------------------------
    def score_rows(self, spans: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """The ``scores`` rows (in :data:`SCORE_COLUMNS` order) for a batch."""
        now = dt.datetime.now(dt.timezone.utc)
        version = self.analyzer.version
        out = []
        seen: set[tuple[int, str]] = set()
        for s in self.analyzer.score(spans):
            if not isinstance(s, Score) or not 0 <= s.row < len(spans) or (s.row, s.metric) in seen:
                raise ValueError(f"analyzer {self.name} returned a bad or repeated score: {s!r}")
            seen.add((s.row, s.metric))
            span = spans[s.row]
            value = float(s.value)
            if value != value:  # NaN: a model failure, not a score
                continue
            out.append((
                span["project"], span["trace_id"], span["span_id"], span["start_time"], self.name, s.metric,
                value, s.label, s.version or version, now,
            ))  # fmt: skip
        return out

    def write(self, store: Store, spans: Sequence[Mapping[str, Any]], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        first, last = spans[0], spans[-1]
        token = f"{self.name}:{self._fingerprint}:{_key(first)}:{_key(last)}:{len(spans)}"  # same batch, same analyzer and options → the engine drops the repeat
        columns = [list(c) for c in zip(*rows, strict=True)]
        store.insert_columns("scores", columns, SCORE_COLUMNS, settings={"insert_deduplication_token": token})

    def run(
        self,
        store: Store,
        horizon: dt.datetime,
        progress: Progress | None = None,
        *,
        since: dt.datetime | None = None,
        max_batches: int | None = None,
    ) -> int:
        """Score spans past the watermark up to ``horizon`` (or, with ``since``, re-score from there)."""
        backfill = since is not None
        wm = Watermark() if backfill else self.load_watermark(store)
        done = 0
        batches = 0
        while max_batches is None or batches < max_batches:
            spans = self.fetch(store, wm, horizon, since)
            if not spans:
                break
            self.write(store, spans, self.score_rows(spans))
            last = spans[-1]
            wm = Watermark(
                _utc(last["ingested_at"]), last["trace_id"], last["span_id"], wm.processed + len(spans)
            )
            if not backfill:
                self.save_watermark(store, wm)
            done += len(spans)
            batches += 1
            if progress is not None:
                progress.advance(len(spans))
            if len(spans) < self.settings.batch_size:
                break
        return done


class Scheduler:
    """Runs jobs on a schedule (background thread) or on demand (``--once``, ``--backfill``)."""

    def __init__(
        self,
        store: Store,
        jobs: Sequence[Job],
        config: SchedulerConfig,
        *,
        horizon: Callable[[], dt.datetime | None] | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.store = store
        self.jobs = list(jobs)
        self.config = config
        self._pending_since = horizon
        self._clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs: dict[str, int] = {}
        self.processed: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self.last_error: dict[str, str] = {}

    def horizon(self) -> dt.datetime:
        """Newest ``ingested_at`` a run may read now (see the module docstring)."""
        h = self._clock() - dt.timedelta(seconds=self.config.settle_seconds)
        if self._pending_since is not None:
            pending = self._pending_since()
            if pending is not None:
                h = min(h, _utc(pending) - dt.timedelta(microseconds=1))
        return h

    def run_job(self, job: Job, progress: Progress | None = None) -> int:
        """One catch-up run of ``job``; errors are counted and logged (one line), never raised."""
        try:
            n = job.run(self.store, self.horizon(), progress)
        except Exception as e:  # a failing job must not stop the others (store down, analyzer bug)
            self.failures[job.name] = self.failures.get(job.name, 0) + 1
            msg = f"{type(e).__name__}: {e}".splitlines()[0][:300]
            if self.last_error.get(job.name) != msg:
                log.warning("analyzer %s failed (retrying at its next interval): %s", job.name, msg)
            self.last_error[job.name] = msg
            return 0
        self.runs[job.name] = self.runs.get(job.name, 0) + 1
        self.processed[job.name] = self.processed.get(job.name, 0) + n
        self.last_error.pop(job.name, None)
        return n

    def run_once(self, only: Iterable[str] | None = None, *, raise_errors: bool = False) -> dict[str, int]:
        """Every (selected) job once, now, on this thread; returns items processed per job."""
        out = {}
        for job in self._select(only):
            if raise_errors:
                out[job.name] = job.run(self.store, self.horizon(), None)
            else:
                out[job.name] = self.run_job(job)
        return out

    def backfill(
        self, since: dt.datetime, only: Iterable[str] | None = None, stream: TextIO | None = None
    ) -> dict[str, int]:
        """Re-score spans that started at or after ``since``, with a progress bar per analyzer."""
        out = {}
        horizon = self.horizon()
        for job in self._select(only):
            if isinstance(job, SpanAnalyzerJob):
                total = job.count(self.store, Watermark(), horizon, since)
                bar = Progress(total, job.name, stream)
                out[job.name] = job.run(self.store, horizon, bar, since=since)
                bar.close()
            else:
                out[job.name] = job.run(self.store, horizon, None)
        return out

    def _select(self, only: Iterable[str] | None) -> list[Job]:
        if only is None:
            return [j for j in self.jobs if j.settings.enabled]
        wanted = list(only)
        known = {j.name for j in self.jobs}
        missing = [n for n in wanted if n not in known]
        if missing:
            raise ValueError(
                f"unknown or unavailable analyzer {missing[0]!r} (available: {', '.join(sorted(known))})"
            )
        return [j for j in self.jobs if j.name in wanted]

    # -- background mode -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="llm-monitor-analyzers", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the loop to stop after the batch in progress; waits at most ``timeout`` seconds."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        due = {j.name: 0.0 for j in self.jobs if j.settings.enabled}
        while not self._stop.is_set():
            now = time.monotonic()
            for job in self.jobs:
                if self._stop.is_set():
                    return
                if job.name in due and due[job.name] <= now:
                    self.run_job(job)
                    due[job.name] = time.monotonic() + job.settings.interval
            if not due:
                return
            self._stop.wait(max(0.05, min(due.values()) - time.monotonic()))


def load_state(store: Store, job: str) -> Watermark | None:
    """The watermark ``job`` saved last in ``analyzer_state`` (None: never ran)."""
    rows = store.rows(
        f"SELECT watermark, last_trace_id, last_span_id, processed FROM {store.table('analyzer_state')} "
        "FINAL WHERE job = {job:String}",
        {"job": job},
    )
    if not rows:
        return None
    r = rows[0]
    return Watermark(_utc(r["watermark"]), r["last_trace_id"], r["last_span_id"], int(r["processed"]))


def save_state(store: Store, job: str, wm: Watermark, version: str) -> None:
    """Record ``job``'s new watermark (the newest row replaces the older under FINAL)."""
    store.insert(
        "analyzer_state",
        [
            (
                job,
                wm.ingested_at,
                wm.trace_id,
                wm.span_id,
                version,
                wm.processed,
                dt.datetime.now(dt.timezone.utc),
            )
        ],
        ["job", "watermark", "last_trace_id", "last_span_id", "version", "processed", "updated_at"],
    )


def _utc(t: Any) -> dt.datetime:
    if isinstance(t, dt.datetime):
        return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)
    raise TypeError(f"expected a datetime, got {t!r}")


def _key(span: Mapping[str, Any]) -> str:
    return f"{_utc(span['ingested_at']).isoformat()}/{span['trace_id']}/{span['span_id']}"
