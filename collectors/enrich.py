"""Cross-request state: content log records joined to their spans, and user/session ids across a trace.

Two facts arrive separately from the spans they belong to:

* **Content in log records** (``POST /v1/logs``, reference §7 rule 1): the official OTel GenAI
  instrumentation exports prompts and completions as log records, on another exporter with its own
  batching, so a span's content may arrive before or after the span itself.
* **User and session ids** (§7 rule 6): the OTel flavour sets them on the root span only, and the root ends
  (and is exported) last, so its children are often written before anyone knows who was calling.

The :class:`Enricher` remembers just enough to reconcile both, within fixed bounds:

* ``pending`` — content of spans not seen yet, by (trace_id, span_id): at most ``max_pending`` spans, each
  for at most ``pending_ttl`` seconds. What expires or is evicted unmatched is counted, never silent.
* ``spans`` — an LRU of at most ``max_spans`` recently emitted rows that may still change (trimmed after
  each request, so one request's spans may exceed it meanwhile): LLM rows without input or output
  messages (content may follow), and rows of a trace whose user or session is unknown.
  Rows that cannot change leave only a marker (no row). A late change is emitted as an **updated copy** of
  the row (same key; the ``spans`` table is a ReplacingMergeTree(ingested_at), so the later insert wins).
* ``traces`` — an LRU of at most ``max_traces`` trace identities (user, session, and whether each came
  from the root span), plus up to ``MAX_WAITING_PER_TRACE`` keys of that trace's rows waiting for them.

Rendering is order-independent: a row's final value is a function of the span, the content records held
and the trace identity, so logs-before-span and span-before-logs give the same final row. A span's own
values always win (span attributes over log content, a span's own user over the trace's), and among
trace-level values the root span's wins.

Thread-safety: every public method may be called from any request thread; one lock guards the state and
is held only for dictionary work (no I/O, never blocks on anything else). Rows handed out are never
mutated afterwards (the write queue holds them): updates are new dicts.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from collectors import logs as lg
from collectors.otlp import Span

Row = dict[str, Any]
Key = tuple[str, str]

MAX_WAITING_PER_TRACE = 1000
INVALID_TRACE_ID = "0" * 32
_CHANGING = (
    "user_id",
    "session_id",
    "input_messages",
    "output_messages",
    "input_text",
    "output_text",
    "finish_reason",
)


class _Entry:
    """What the enricher keeps per emitted span: the last row emitted and what the span said itself."""

    __slots__ = ("content", "has_finish", "has_input", "has_output", "own_session", "own_user", "row")

    def __init__(self, row: Row) -> None:
        self.row: Row | None = row
        self.own_user: str = row["user_id"]
        self.own_session: str = row["session_id"]
        self.has_input = bool(row["input_messages"])
        self.has_output = bool(row["output_messages"])
        self.has_finish = bool(row["finish_reason"])
        self.content: lg.SpanContent | None = None


def _marker(content: lg.SpanContent | None = None) -> _Entry:
    """An entry without a row: late content for its span is redundant (counted, not buffered as lost)."""
    e = _Entry.__new__(_Entry)
    e.row, e.content = None, content
    e.own_user = e.own_session = ""
    e.has_input = e.has_output = e.has_finish = False
    return e


_MARKER = _marker()  # shared, never changed: nothing is set on an entry whose row is None


class _Trace:
    __slots__ = ("session", "session_root", "user", "user_root", "waiting")

    def __init__(self) -> None:
        self.user = ""
        self.user_root = False
        self.session = ""
        self.session_root = False
        self.waiting: list[Key] = []

    def learn(self, user: str, session: str, root: bool) -> bool:
        """Take a span's own values; True when the trace identity changed. The root's value wins."""
        changed = False
        if user and (not self.user or (root and not self.user_root and user != self.user)):
            self.user, changed = user, True
        if session and (not self.session or (root and not self.session_root and session != self.session)):
            self.session, changed = session, True
        if root:
            self.user_root = self.user_root or bool(user)
            self.session_root = self.session_root or bool(session)
        return changed


class Enricher:
    """Joins content log records to span rows and propagates user/session across requests (see module doc)."""

    def __init__(
        self,
        *,
        project: str = "default",
        max_spans: int = 10_000,
        max_traces: int = 20_000,
        max_pending: int = 10_000,
        pending_ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.project = project
        self.max_spans = max_spans
        self.max_traces = max_traces
        self.max_pending = max_pending
        self.pending_ttl = pending_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._spans: OrderedDict[Key, _Entry] = OrderedDict()
        self._traces: OrderedDict[str, _Trace] = OrderedDict()
        self._pending: OrderedDict[Key, tuple[float, lg.SpanContent]] = OrderedDict()
        self._seq = 0
        self._c: dict[str, int] = dict.fromkeys(
            (
                "log_records_received",
                "log_records_content",
                "log_records_matched_late",
                "log_records_matched_early",
                "log_records_buffered",
                "log_records_expired",
                "log_records_evicted",
                "log_records_uncorrelated",
                "log_records_redundant",
                "log_records_ignored",
                "evaluations",
                "spans_reemitted",
                "spans_evicted",
                "traces_evicted",
                "identity_waiting_dropped",
            ),
            0,
        )

    # --- spans ----------------------------------------------------------------------------------------
    def process_spans(self, spans: Sequence[Span], rows: list[Row]) -> tuple[list[Row], list[Row]]:
        """Rows to queue for one /v1/traces request, and feedback rows from evaluation span events.

        ``rows`` are the request's freshly normalized rows (``normalize_spans(..., propagate=False)``);
        they are filled in place (identity, buffered content) and returned first, followed by updated
        copies of earlier rows of the same traces whose user/session became known.
        """
        feedback = lg.span_event_feedback(spans, self.project)
        with self._lock:
            self._expire(self._clock())
            changed: set[str] = set()
            traces = self._traces
            for r in rows:  # learn every own value first: the whole request counts, root or not
                tid = r["trace_id"]
                if tid == INVALID_TRACE_ID:  # all-zero ids (invalid in OTel) relate nothing to anything
                    tid = ""
                if tid and (r["user_id"] or r["session_id"]):
                    t = self._trace(tid)
                    if t.learn(r["user_id"], r["session_id"], not r["parent_span_id"]):
                        changed.add(tid)
            pending = self._pending
            tracked = self._spans
            for r in rows:
                tid = r["trace_id"]
                if tid == INVALID_TRACE_ID:
                    tid = ""
                key = (tid, r["span_id"])
                own_user, own_session = r["user_id"], r["session_id"]
                entry: _Entry | None = None
                held = pending.pop(key, None) if pending else None
                if held is not None:  # content that came first: applied before the row is queued
                    entry = _Entry(r)
                    entry.content = held[1]
                    held[1].apply(r, entry.has_input, entry.has_output, entry.has_finish)
                    self._c["log_records_matched_early"] += held[1].records
                known = traces.get(tid) if tid else None
                if known is not None:
                    r["user_id"] = own_user or known.user
                    r["session_id"] = own_session or known.session
                # Waits for the trace's user/session unless it has its own, or the trace's is final: set by
                # the root span, which always wins (the usual case, root and children in one request).
                waits = bool(tid) and (
                    (not own_user and not (known is not None and known.user_root))
                    or (not own_session and not (known is not None and known.session_root))
                )
                kind = r["kind"]
                if entry is None:
                    may_get_content = kind == "llm" and not (r["input_messages"] and r["output_messages"])
                    if not (waits or may_get_content):
                        if kind != "other":  # late content for it is redundant, not lost: remember that
                            # (a marker, shared; a re-sent span keeps the content already joined to it)
                            old = tracked.pop(key, None)
                            tracked[key] = (
                                _MARKER if old is None or old.content is None else _marker(old.content)
                            )
                        continue
                    entry = _Entry(r)
                entry.own_user, entry.own_session = own_user, own_session
                self._remember(key, entry)
                if waits:
                    tr = known if known is not None else self._trace(tid)
                    if len(tr.waiting) < MAX_WAITING_PER_TRACE:
                        tr.waiting.append(key)
                    else:
                        self._c["identity_waiting_dropped"] += 1
            excess = len(tracked) - self.max_spans  # evicted once a request, oldest first
            if excess > 0:
                popitem = tracked.popitem
                for _ in range(excess):
                    popitem(last=False)
                self._c["spans_evicted"] += excess
            out = rows
            for tid in changed:
                ct = traces.get(tid)
                if ct is None:
                    continue
                for key in ct.waiting:
                    updated = self._rerender(key)
                    if updated is not None:
                        out.append(updated)
            return out, feedback

    # --- logs -----------------------------------------------------------------------------------------
    def process_logs(self, records: Sequence[lg.LogRecord]) -> tuple[list[Row], list[Row]]:
        """Updated span rows (for spans already emitted) and feedback rows, for one /v1/logs request.

        Content for spans not seen yet is buffered until they arrive (then applied before they are
        queued) or until it expires (counted in ``log_records_expired``).
        """
        feedback: list[Row] = []
        touched: list[Key] = []
        with self._lock:
            now = self._clock()
            self._expire(now)
            c = self._c
            c["log_records_received"] += len(records)
            for rec in records:
                name = rec.event_name
                if name == lg.EVALUATION_EVENT:
                    fb = lg.evaluation_feedback(
                        rec.attributes, rec.trace_id, rec.span_id, rec.time_unix_nano,
                        lg.project_of(rec.resource, self.project),
                    )  # fmt: skip
                    if fb is not None:
                        feedback.append(fb)
                        c["evaluations"] += 1
                    continue
                if name not in lg.CONTENT_EVENTS:
                    c["log_records_ignored"] += 1
                    continue
                if not rec.trace_id or not rec.span_id:
                    c["log_records_uncorrelated"] += 1
                    continue
                key = (rec.trace_id, rec.span_id)
                self._seq += 1
                entry = self._spans.get(key)
                if entry is not None:
                    if entry.row is None:
                        c["log_records_redundant"] += 1
                        continue
                    if entry.content is None:
                        entry.content = lg.SpanContent()
                    if entry.content.add(rec, self._seq):
                        c["log_records_content"] += 1
                        c["log_records_matched_late"] += 1
                        touched.append(key)
                    continue
                held = self._pending.get(key)
                if held is None:
                    held = self._pending[key] = (now, lg.SpanContent())
                    while len(self._pending) > self.max_pending:
                        _, (_, old) = self._pending.popitem(last=False)
                        c["log_records_evicted"] += old.records
                if held[1].add(rec, self._seq):
                    c["log_records_content"] += 1
                    c["log_records_buffered"] += 1
            # forced: a retried request (after a 503) must re-emit even though the content is unchanged
            updates = [u for u in (self._rerender(k, True) for k in dict.fromkeys(touched)) if u is not None]
            return updates, feedback

    # --- introspection --------------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """Counters (monotonic) and gauges (``pending_spans``, ``tracked_spans``, ``tracked_traces``) for
        /metrics. ``log_records_expired`` + ``log_records_evicted`` is content that never met its span."""
        with self._lock:
            self._expire(self._clock())
            out = dict(self._c)
            out["pending_spans"] = len(self._pending)
            out["tracked_spans"] = len(self._spans)
            out["tracked_traces"] = len(self._traces)
            return out

    # --- internals (lock held) ------------------------------------------------------------------------
    def _trace(self, tid: str) -> _Trace:
        t = self._traces.get(tid)
        if t is None:
            t = self._traces[tid] = _Trace()
            if len(self._traces) > self.max_traces:
                self._traces.popitem(last=False)
                self._c["traces_evicted"] += 1
        else:
            self._traces.move_to_end(tid)
        return t

    def _remember(self, key: Key, entry: _Entry) -> None:
        """Keep ``entry`` as the newest; :meth:`process_spans` evicts the oldest past ``max_spans``."""
        spans = self._spans
        old = spans.pop(key, None)
        if old is not None and old.content is not None and entry.content is None:
            entry.content = old.content  # a re-sent span keeps the content already joined to it
            if entry.row is not None:
                entry.content.apply(entry.row, entry.has_input, entry.has_output, entry.has_finish)
        spans[key] = entry

    def _rerender(self, key: Key, force: bool = False) -> Row | None:
        """A new row for ``key`` from its entry and trace, or None when nothing visible changed."""
        entry = self._spans.get(key)
        if entry is None or entry.row is None:
            return None
        old = entry.row
        new = dict(old)
        t = self._traces.get(key[0])
        new["user_id"] = entry.own_user or (t.user if t else "")
        new["session_id"] = entry.own_session or (t.session if t else "")
        if entry.content is not None:
            entry.content.apply(new, entry.has_input, entry.has_output, entry.has_finish)
        if not force and all(new[c] == old[c] for c in _CHANGING):
            return None
        entry.row = new
        self._c["spans_reemitted"] += 1
        return new

    def _expire(self, now: float) -> None:
        pending = self._pending
        limit = now - self.pending_ttl
        while pending:
            key, (since, content) = next(iter(pending.items()))
            if since > limit:
                break
            del pending[key]
            self._c["log_records_expired"] += content.records
