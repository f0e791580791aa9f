"""``monitor.feedback`` and ``monitor.track``: validated on the caller's thread, delivered in the background.

Why validate here with the collector's own rules (``collectors/feedback.py``): a mistake is a clear
``ValueError`` at the line that made it, and the background never sends a batch the collector would
refuse (it stores all of a request or nothing). After validation nothing raises: the item goes into a
bounded queue (full: dropped and counted) and a daemon thread batches items to ``<endpoint>/v1/feedback``
as a JSON list, retrying with exponential backoff on connection errors, timeouts, 429 and 5xx
(``monitor._feedback_delivery``); each item carries its own ``feedback_id`` and ``created_at``, so a
retried request stores nothing twice. ``monitor.flush()`` and interpreter exit wait
for the queue (bounded); after ``os.fork()`` the child starts with an empty queue and its own thread.

Without an id the feedback targets the current span (its trace id and span id); the user id defaults
to ``monitor.context(user_id=...)``'s.
"""

from __future__ import annotations

import logging
import math
import re
import time
import uuid
from typing import Any

from opentelemetry import trace

from monitor import _tracing
from monitor._context import current
from monitor._feedback_delivery import (
    ExportResult,
    FeedbackClient,
    FeedbackExporter,
    HttpFeedbackExporter,
    MemoryFeedbackExporter,
    feedback_url,
)

__all__ = [
    "KNOWN_KINDS",
    "ExportResult",
    "FeedbackClient",
    "FeedbackExporter",
    "HttpFeedbackExporter",
    "MemoryFeedbackExporter",
    "build_item",
    "feedback",
    "feedback_url",
    "track",
]

logger = logging.getLogger("monitor")

KNOWN_KINDS = ("thumbs", "rating", "accept", "reject", "edit", "copy", "regenerate", "comment")
EVENT_KINDS = frozenset({"accept", "reject", "copy", "regenerate"})
RATING_RANGE = (0.0, 10.0)
MAX_COMMENT_CHARS = 8192
MAX_ID_CHARS = 256
DEFAULT_SOURCE = "sdk"


_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
_NAME = re.compile(r"[a-z][a-z0-9_.:-]{0,63}")
_TOKEN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_THUMBS = {"up": 1.0, "down": 0.0, "true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


# --- validation (the caller's thread; raises ValueError) ------------------------------------------------


def _hex_id(name: str, value: Any, pattern: re.Pattern[str], width: int) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = format(value, f"0{width}x") if value >= 0 else ""
    if not isinstance(value, str) or not pattern.fullmatch(value) or set(value) == {"0"}:
        raise ValueError(f"{name} must be {width} hexadecimal characters (not all zeros), got {value!r}")
    return value.lower()


def _text(name: str, value: Any, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise ValueError(f"{name} is longer than {limit} characters ({len(value)})")
    if _CONTROL.search(value):
        raise ValueError(f"{name} contains control characters")
    return value


def _number(kind: str, value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, (int, float)):
        raise ValueError(f"{kind} value must be a number, got {type(value).__name__}")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{kind} value must be a finite number, got {value!r}")
    return x


def _value(kind: str, value: Any) -> float:
    """The stored number for ``kind`` (the collector's rules, so it never refuses what passes here)."""
    if kind == "thumbs":
        x: float | None = None
        if isinstance(value, str):
            x = _THUMBS.get(value.strip().lower())
        elif isinstance(value, (bool, int, float)):
            x = _number(kind, value)
        if x is None or x not in (0.0, 1.0):
            raise ValueError(f'thumbs value must be True/False, "up"/"down" or 1/0, got {value!r}')
        return x
    if kind == "rating":
        if value is None:
            raise ValueError("rating needs a value: a number from 0 to 10")
        x = _number(kind, value)
        lo, hi = RATING_RANGE
        if not lo <= x <= hi:
            raise ValueError(f"rating value must be between {lo:g} and {hi:g}, got {x:g}")
        return x
    if kind in EVENT_KINDS:
        x = 1.0 if value is None else _number(kind, value)
        if x not in (0.0, 1.0):
            raise ValueError(f"{kind} value must be 0 or 1 (default 1: the event happened), got {x:g}")
        return x
    if kind == "edit":
        x = 1.0 if value is None else _number(kind, value)
        if not 0.0 <= x <= 1.0:
            raise ValueError(f"edit value is the share of the output changed, 0 to 1, got {x:g}")
        return x
    if kind == "comment":
        return 0.0 if value is None else _number(kind, value)
    if value is None:
        raise ValueError(f"the custom kind {kind!r} needs a numeric value")
    return _number(kind, value)


def build_item(
    *,
    kind: Any,
    value: Any = None,
    comment: Any = None,
    trace_id: Any = None,
    span_id: Any = None,
    response_id: Any = None,
    user_id: Any = None,
    source: Any = None,
    project: str | None = None,
    events_only: bool = False,
) -> dict[str, Any]:
    """One ``/v1/feedback`` object, or ``ValueError`` naming the first problem.

    With no id at all the current span is the target; ``events_only`` restricts ``kind`` to
    :data:`KNOWN_KINDS` (``track``).
    """
    if not isinstance(kind, str) or not kind.strip():
        raise ValueError(f"kind must be one of {', '.join(KNOWN_KINDS)} or a custom name, got {kind!r}")
    k = kind.strip().lower()
    if events_only and k not in KNOWN_KINDS:
        raise ValueError(
            f"unknown event {kind!r} (expected one of {', '.join(KNOWN_KINDS)}); "
            "use monitor.feedback(kind=...) for a custom kind"
        )
    if not _NAME.fullmatch(k):
        raise ValueError(f"custom kind {kind!r}: use 1-64 of a-z 0-9 _ . : - starting with a letter")
    tid = _hex_id("trace_id", trace_id, _HEX32, 32)
    sid = _hex_id("span_id", span_id, _HEX16, 16)
    rid = _text("response_id", response_id, MAX_ID_CHARS)
    rid = rid.strip() if rid else None
    if not (tid or sid or rid):
        ctx = trace.get_current_span().get_span_context()
        if not ctx.is_valid:
            raise ValueError(
                "feedback needs a target: pass trace_id=, span_id= or response_id= "
                "(or call it inside a traced span)"
            )
        tid = trace.format_trace_id(ctx.trace_id)
        sid = trace.format_span_id(ctx.span_id)
    text = _text("comment", comment, MAX_COMMENT_CHARS)
    if k == "comment" and not (text or "").strip():
        raise ValueError("kind 'comment' needs a non-empty comment")
    if user_id is None:
        ctx_values = current()
        user_id = ctx_values.user_id if ctx_values is not None else None
    uid = _text("user_id", user_id, MAX_ID_CHARS)
    src = DEFAULT_SOURCE if source is None else source
    if not isinstance(src, str) or not _TOKEN.fullmatch(src):
        raise ValueError(f"source must be 1-128 of A-Z a-z 0-9 _ . : -, got {source!r}")
    item: dict[str, Any] = {"kind": k, "value": _value(k, value)}
    for key, v in (("trace_id", tid), ("span_id", sid), ("response_id", rid), ("comment", text)):
        if v:
            item[key] = v
    if uid and uid.strip():
        item["user_id"] = uid.strip()
    item["source"] = src
    if project:
        item["project"] = project
    item["created_at"] = round(time.time(), 6)
    item["feedback_id"] = uuid.uuid4().hex
    return item


# --- the public functions ----------------------------------------------------------------------------


def _submit(item: dict[str, Any]) -> None:
    client = _tracing.feedback_client()
    if client is None:
        _not_initialised()
        return
    client.submit(item)


_warned_uninitialised = False


def _not_initialised() -> None:
    global _warned_uninitialised
    if not _warned_uninitialised:
        _warned_uninitialised = True
        logger.warning("llm-monitor: feedback before monitor.init() is dropped (call monitor.init() first)")


def feedback(
    *,
    kind: str,
    value: float | bool | str | None = None,
    comment: str | None = None,
    trace_id: str | int | None = None,
    span_id: str | int | None = None,
    response_id: str | None = None,
    user_id: str | None = None,
    source: str | None = None,
) -> str:
    """Record user feedback on a trace, a span or a model response; returns the ``feedback_id``.

    ``kind``: ``thumbs`` (value True/False, "up"/"down", 1/0), ``rating`` (0-10), ``accept``,
    ``reject``, ``copy``, ``regenerate`` (value 0/1, default 1), ``edit`` (share of the output changed,
    0-1, default 1), ``comment`` (needs ``comment``) or a custom name (needs a number).
    Target: ``trace_id`` (32 hex or the int from a span context) | ``span_id`` | ``response_id``
    (e.g. OpenAI's ``chatcmpl-…``); none given means the current span.

    Raises ``ValueError`` for a bad argument, on this thread. Never blocks and never raises later:
    delivery happens on a background thread (see the module docstring).
    """
    project = _tracing.project()
    item = build_item(
        kind=kind,
        value=value,
        comment=comment,
        trace_id=trace_id,
        span_id=span_id,
        response_id=response_id,
        user_id=user_id,
        source=source,
        project=project,
    )
    _submit(item)
    return str(item["feedback_id"])


def track(
    event: str,
    *,
    value: float | bool | str | None = None,
    comment: str | None = None,
    trace_id: str | int | None = None,
    span_id: str | int | None = None,
    response_id: str | None = None,
    user_id: str | None = None,
    source: str | None = None,
) -> str:
    """Record an implicit signal: ``accept``, ``reject``, ``edit``, ``copy``, ``regenerate`` (also
    ``rating``, ``comment``, ``thumbs``). Same targets, values and guarantees as :func:`feedback`;
    an unknown event is a ``ValueError`` (custom kinds go through ``feedback``).
    """
    item = build_item(
        kind=event,
        value=value,
        comment=comment,
        trace_id=trace_id,
        span_id=span_id,
        response_id=response_id,
        user_id=user_id,
        source=source,
        project=_tracing.project(),
        events_only=True,
    )
    _submit(item)
    return str(item["feedback_id"])
