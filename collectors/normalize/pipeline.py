"""Decoded spans → complete ``spans`` rows: the part every convention shares, around one normalizer each.

Per span: the convention-independent columns (ids, times, status, errors, user/session, resource-derived
service/environment/project) are filled here, the registry's normalizer fills the rest, and whatever
attributes no mapping used are stringified into ``spans.attributes``. Per request: user and session ids
found on any span of a trace are copied to that trace's spans that lack them (reference §7 rule 6), because
the OTel flavour sets them on the root span only.

Rows are plain dicts keyed by :data:`monitor.store.schema.SPAN_COLUMNS` (``ingested_at`` excepted) and are
treated as immutable afterwards: spans of one resource share the same ``resource`` dict.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from collectors.normalize import _native
from collectors.normalize.base import Normalizer, NormalizerRegistry
from collectors.normalize.common import ns_to_datetime, stringify_map, take_first_str, take_str
from collectors.normalize.otel_genai import OTelGenAINormalizer, content_events, tool_io
from collectors.otlp import Span
from monitor import semconv as sc
from monitor.store.schema import SPAN_DEFAULTS

log = logging.getLogger("llm_monitor.collector")

_STATUS = {1: "ok", 2: "error"}

_default_registry: NormalizerRegistry | None = None
_registry_lock = threading.Lock()
_reported: set[str] = set()


def default_registry() -> NormalizerRegistry:
    """The process-wide registry (built-ins plus plugins), built on first use."""
    global _default_registry
    if _default_registry is None:
        with _registry_lock:
            if _default_registry is None:
                _default_registry = NormalizerRegistry.default()
    return _default_registry


def _internal_error(what: str) -> None:
    """Our own bug while normalizing: logged once per kind, re-raised under test (STYLE: never break)."""
    if os.environ.get("LLM_MONITOR_RAISE_INTERNAL") == "1":
        raise
    if what not in _reported:
        _reported.add(what)
        log.exception("internal error in %s; falling back to the generic mapping (logged once)", what)


def _resource_info(resource: dict[str, Any], default_project: str) -> tuple[dict[str, str], str, str, str]:
    strs = stringify_map(resource)
    service = strs.get(sc.SERVICE_NAME, "")
    env = strs.get(sc.DEPLOYMENT_ENVIRONMENT_NAME) or strs.get(sc.DEPLOYMENT_ENVIRONMENT, "")
    project = strs.get(sc.LLM_MONITOR_PROJECT) or default_project
    return strs, service, env, project


# Who is calling, in every convention's spelling (reference §7 rule 6, in its order). gen_ai.conversation.id
# is read by the OTel GenAI mapping itself (it is a session only where no generic id was given).
USER_KEYS = (
    sc.USER_ID,
    "langfuse.user.id",
    "traceloop.association.properties.user_id",
    "gen_ai.request.user",
)
SESSION_KEYS = (sc.SESSION_ID, "langfuse.session.id", "traceloop.association.properties.session_id")
# as sets: one C-level isdisjoint() settles the usual case, a span carrying none of them
_USER_KEY_SET = frozenset(USER_KEYS)
_SESSION_KEY_SET = frozenset(SESSION_KEYS)


# Timestamps before 2000-01-01 come from unset or broken clocks, never from a real LLM call.
MIN_PLAUSIBLE_NS = 946_684_800 * 1_000_000_000


def _base_row(
    span: Span, attrs: dict[str, Any], res: tuple[dict[str, str], str, str, str], now_ns: int
) -> dict[str, Any]:
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if start < MIN_PLAUSIBLE_NS:
        # No usable start time (a broken sender: 0, or a few ns after the epoch): date the span by its end
        # when that is plausible, else by its arrival. Otherwise the table's TTL would expire it at insert
        # and an acknowledged span would silently vanish.
        start = end if end >= MIN_PLAUSIBLE_NS else now_ns
    if end < start:
        end = start
    status = _STATUS.get(span.status_code, "unset")
    error_type = take_str(attrs, sc.ERROR_TYPE) if sc.ERROR_TYPE in attrs else ""
    error_message = span.status_message if status == "error" else ""
    if status == "error" or error_type:
        for ev in span.events:
            if ev.name == sc.EXCEPTION_EVENT:
                ea = ev.attributes
                if not error_type:
                    v = ea.get(sc.EXCEPTION_TYPE)
                    error_type = v if type(v) is str else ""
                if not error_message:
                    v = ea.get(sc.EXCEPTION_MESSAGE)
                    error_message = v if type(v) is str else ""
                break
    # span_row() without its intermediate dict: the defaults copied, then this span's values set in place
    row = SPAN_DEFAULTS.copy()
    row["project"], row["service"], row["environment"], row["resource"] = res[3], res[1], res[2], res[0]
    row["trace_id"] = span.trace_id
    row["span_id"] = span.span_id
    row["parent_span_id"] = span.parent_span_id
    row["name"] = span.name
    row["start_time"] = ns_to_datetime(start)
    row["end_time"] = ns_to_datetime(end)
    row["duration_ms"] = (end - start) / 1e6
    row["status"] = status
    row["error_type"] = error_type
    row["error_message"] = error_message
    row["user_id"] = "" if _USER_KEY_SET.isdisjoint(attrs) else take_first_str(attrs, USER_KEYS)
    row["session_id"] = "" if _SESSION_KEY_SET.isdisjoint(attrs) else take_first_str(attrs, SESSION_KEYS)
    row["tags"] = []
    row["attributes"] = {}
    return row


def _pick(registry: NormalizerRegistry, span: Span) -> Normalizer:
    try:
        return registry.pick(span)
    except Exception:
        _internal_error("normalizer selection")
        return registry.fallback


def normalize_span(
    span: Span,
    registry: NormalizerRegistry,
    res: tuple[dict[str, str], str, str, str],
    now_ns: int,
) -> dict[str, Any]:
    attrs = dict(span.attributes)
    row = _base_row(span, attrs, res, now_ns)
    normalizer = _pick(registry, span)
    try:
        normalizer.normalize(span, attrs, row)
    except Exception:
        _internal_error(f"normalizer {normalizer.convention!r}")
        normalizer = registry.fallback
        attrs = dict(span.attributes)
        row = _base_row(span, attrs, res, now_ns)
        normalizer.normalize(span, attrs, row)
    row["convention"] = normalizer.convention
    if not row["model"]:
        row["model"] = row["response_model"] or row["request_model"]
    if not row["total_tokens"]:
        row["total_tokens"] = row["input_tokens"] + row["output_tokens"]
    row["attributes"] = stringify_map(attrs)
    return row


_native.init_rows(
    _STATUS, USER_KEYS, SESSION_KEYS, MIN_PLAUSIBLE_NS, OTelGenAINormalizer, content_events, tool_io
)


def normalize_spans(
    spans: Sequence[Span],
    *,
    project: str = "default",
    registry: NormalizerRegistry | None = None,
    now_ns: int | None = None,
    propagate: bool = True,
) -> list[dict[str, Any]]:
    """Rows for one request's spans.

    ``project`` applies where the resource names none; ``now_ns`` (default: the clock) dates spans that
    arrive without any timestamp. ``propagate=False`` leaves user/session exactly as each span carried
    them, for a caller that propagates across requests itself (:class:`collectors.enrich.Enricher`).
    """
    reg = registry or default_registry()
    if now_ns is None:
        now_ns = time.time_ns()
    cache: dict[int, tuple[dict[str, str], str, str, str]] = {}
    rows = []
    native = _native.native
    if native is None:
        for span in spans:
            res = cache.get(id(span.resource))
            if res is None:
                res = cache[id(span.resource)] = _resource_info(span.resource, project)
            rows.append(normalize_span(span, reg, res, now_ns))
    else:
        # Every span's message JSON parsed first, in one pass that releases the GIL (the bulk of the C
        # mapping's work: other request threads run meanwhile); each span's mapping then takes its result.
        try:
            lanes = native.content_batch(spans)
        except Exception:
            lanes = None  # each span parses its own, as the mapping always could
        for i, span in enumerate(spans):
            res = cache.get(id(span.resource))
            if res is None:
                res = cache[id(span.resource)] = _resource_info(span.resource, project)
            # the C mirror of normalize_span; None (a shape it leaves to Python) or any exception: the
            # reference decides this span from scratch, so a normalizer's failure is handled (and logged) there
            try:
                if lanes is not None:
                    row = native.normalize_span(span, reg, res, now_ns, lanes, i)
                else:
                    row = native.normalize_span(span, reg, res, now_ns)
            except Exception:
                row = None
            rows.append(row if row is not None else normalize_span(span, reg, res, now_ns))
    if propagate:
        propagate_trace_identity(rows)
    return rows


def propagate_trace_identity(rows: list[dict[str, Any]]) -> None:
    """Copy each trace's user_id/session_id to its spans that have none.

    The root span's value wins (it is where apps set who is calling); otherwise the first one seen.
    Spans that carry their own value keep it.
    """
    users: dict[str, str] = {}
    sessions: dict[str, str] = {}
    missing = False
    for r in rows:
        tid = r["trace_id"]
        if not tid:
            continue  # spans without a trace id are unrelated to each other
        root = not r["parent_span_id"]
        for col, found in (("user_id", users), ("session_id", sessions)):
            v = r[col]
            if not v:
                missing = True
            elif root:
                found[tid] = v
            else:
                found.setdefault(tid, v)
    if not missing or not (users or sessions):
        return
    for r in rows:
        tid = r["trace_id"]
        if not r["user_id"] and tid in users:
            r["user_id"] = users[tid]
        if not r["session_id"] and tid in sessions:
            r["session_id"] = sessions[tid]
