"""``POST /v1/feedback``: user feedback from SDKs and browser front-ends into the ``feedback`` table.

Contract (DESIGN §2 ``feedback``, §3; issue 3 item 3):

- Body: ``application/json`` (gzip allowed), one object or a list of up to :data:`MAX_ITEMS` objects,
  at most :data:`MAX_BODY_BYTES` (or the collector's ``max_body_bytes`` when smaller; 413 beyond).
- Each object: ``trace_id`` (32 hex) | ``span_id`` (16 hex) | ``response_id`` — at least one; ``kind``
  (``thumbs rating accept reject edit copy regenerate comment`` or a custom ``[a-z][a-z0-9_.:-]*`` name,
  lower-cased); ``value``; optional ``comment``, ``user_id``, ``source`` (default ``api``), ``project``
  (default: the collector's), ``created_at`` (ISO 8601 or Unix seconds; default: arrival time) and
  ``feedback_id`` (default: a random id; send your own to make retries idempotent).
- ``value`` per kind: ``thumbs`` true/false, "up"/"down" or 1/0 → 1/0 (required); ``rating`` a number in
  0..10 (required); ``accept reject copy regenerate`` 0 or 1, default 1 (the event happened); ``edit`` a
  number in 0..1 (share of the output changed), default 1; ``comment`` needs a non-empty ``comment``,
  value optional (default 0); custom kinds need a finite number.
- All or nothing: if any item is invalid nothing is stored and the 400 body lists every problem as
  ``{"index", "field", "reason"}``. Success is ``200 {"accepted": n}``; a full queue is 503 + Retry-After.

Why strict (unknown fields are errors, ids must be well-formed hex): feedback joins to spans by these
ids, and a typo such as ``traceId`` would otherwise be stored as feedback attached to nothing.

CORS: browsers post here directly, so every response carries ``Access-Control-Allow-Origin`` and
``OPTIONS`` answers the preflight. Allowed origins come from ``Settings.cors_origins`` (``LLM_MONITOR_CORS_ORIGINS``, comma-separated,
default ``*``); with a list, the request's Origin is echoed when listed (and ``Vary: Origin`` is sent).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from collections.abc import Mapping
from typing import Any

from collectors.otlp import RequestError, UnsupportedMedia

FEEDBACK_PATH = "/v1/feedback"
MAX_BODY_BYTES = 1 << 20  # feedback is small; a megabyte is thousands of items
MAX_ITEMS = 1000
MAX_COMMENT_CHARS = 8192
MAX_ID_CHARS = 256
MAX_SHORT_CHARS = 128
ALLOW_METHODS = "POST, OPTIONS"
ALLOW_HEADERS = "content-type, content-encoding, authorization, x-api-key"
PREFLIGHT_MAX_AGE = "86400"

KNOWN_KINDS = ("thumbs", "rating", "accept", "reject", "edit", "copy", "regenerate", "comment")
EVENT_KINDS = frozenset({"accept", "reject", "copy", "regenerate"})
RATING_RANGE = (0.0, 10.0)
FIELDS = (
    "trace_id",
    "span_id",
    "response_id",
    "kind",
    "value",
    "comment",
    "user_id",
    "source",
    "created_at",
    "project",
    "feedback_id",
)
DEFAULT_SOURCE = "api"
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
FUTURE_SLACK = dt.timedelta(days=1)  # client clocks drift; a day ahead is still plausible

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
_NAME = re.compile(r"[a-z][a-z0-9_.:-]{0,63}")
_TOKEN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_THUMBS = {"up": 1.0, "down": 0.0, "true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0}


class InvalidFeedback(RequestError):
    """400 with a per-item list of problems (``errors``); nothing from the request was stored."""

    status = 400
    reason = "invalid_feedback"

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


def check_media(content_type: str | None) -> None:
    """415 unless the body is JSON (``application/json``, charset and other parameters ignored)."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    if base != "application/json":
        raise UnsupportedMedia(f"unsupported Content-Type {base or 'none'!r}: send application/json")


def cors_headers(origin: str | None, allowed: tuple[str, ...] = ("*",)) -> tuple[tuple[str, str], ...]:
    """Headers every feedback response carries so browser code can read it (``allowed``: Settings.cors_origins)."""
    if "*" in allowed or not allowed:
        allow = "*"
    elif origin and origin in allowed:
        allow = origin
    else:
        return (("Vary", "Origin"),)  # not an allowed origin: the browser will refuse to expose the answer
    headers: tuple[tuple[str, str], ...] = (
        ("Access-Control-Allow-Origin", allow),
        ("Access-Control-Expose-Headers", "Retry-After"),
    )
    return headers if allow == "*" else (*headers, ("Vary", "Origin"))


def preflight_headers(origin: str | None, allowed: tuple[str, ...] = ("*",)) -> tuple[tuple[str, str], ...]:
    """The answer to ``OPTIONS /v1/feedback`` (no auth: browsers never send credentials on a preflight)."""
    return (
        *cors_headers(origin, allowed),
        ("Access-Control-Allow-Methods", ALLOW_METHODS),
        ("Access-Control-Allow-Headers", ALLOW_HEADERS),
        ("Access-Control-Max-Age", PREFLIGHT_MAX_AGE),
    )


_GRPC_CODES = {400: 3, 401: 16, 411: 3, 413: 8, 415: 3, 500: 13, 503: 14}


def error_json(status: int, message: str, errors: list[dict[str, Any]] | None = None) -> bytes:
    """``{"code", "message", "errors"}``: an OTLP-style status (google.rpc code) plus per-item problems."""
    code = _GRPC_CODES.get(status, 2)
    return json.dumps({"code": code, "message": message, "errors": errors or []}).encode()


def error_body(err: RequestError) -> bytes:
    """The JSON answer for a refused request (see :func:`error_json`)."""
    return error_json(err.status, str(err), err.errors if isinstance(err, InvalidFeedback) else None)


# --- validation --------------------------------------------------------------------------------------


class _Bad(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _text(item: Mapping[str, Any], field: str, limit: int, default: str = "") -> str:
    v = item.get(field)
    if v is None:
        return default
    if not isinstance(v, str):
        raise _Bad(field, f"must be a string, got {type(v).__name__}")
    if len(v) > limit:
        raise _Bad(field, f"longer than {limit} characters ({len(v)})")
    if any(ord(c) < 32 and c not in "\t\n\r" for c in v):
        raise _Bad(field, "contains control characters")
    return v


def _hex_id(item: Mapping[str, Any], field: str, pattern: re.Pattern[str], n: int) -> str:
    v = item.get(field)
    if v is None or v == "":
        return ""
    if not isinstance(v, str) or not pattern.fullmatch(v):
        raise _Bad(field, f"must be {n} hexadecimal characters, got {v!r}"[:200])
    if set(v) == {"0"}:
        raise _Bad(field, "is all zeros (an invalid OpenTelemetry id)")
    return v.lower()


def _number(field: str, v: Any) -> float:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if not isinstance(v, (int, float)):
        raise _Bad(field, f"must be a number, got {type(v).__name__}")
    x = float(v)
    if not math.isfinite(x):
        raise _Bad(field, "must be a finite number")
    return x


def _value(kind: str, item: Mapping[str, Any]) -> float:
    v = item.get("value")
    if kind == "thumbs":
        if v is None:
            raise _Bad("value", 'required for thumbs: true/false, "up"/"down" or 1/0')
        if isinstance(v, str):
            x = _THUMBS.get(v.strip().lower())
        else:
            x = _number("value", v) if isinstance(v, (bool, int, float)) else None
        if x not in (0.0, 1.0):
            raise _Bad("value", f'thumbs must be true/false, "up"/"down" or 1/0, got {v!r}'[:200])
        return float(x)
    if kind == "rating":
        if v is None:
            raise _Bad("value", "required for rating: a number from 0 to 10")
        x = _number("value", v)
        lo, hi = RATING_RANGE
        if not lo <= x <= hi:
            raise _Bad("value", f"rating must be between {lo:g} and {hi:g}, got {x:g}")
        return x
    if kind in EVENT_KINDS:
        x = 1.0 if v is None else _number("value", v)
        if x not in (0.0, 1.0):
            raise _Bad("value", f"{kind} value must be 0 or 1 (default 1), got {x:g}")
        return x
    if kind == "edit":
        x = 1.0 if v is None else _number("value", v)
        if not 0.0 <= x <= 1.0:
            raise _Bad("value", f"edit value is the share of the output changed, 0 to 1, got {x:g}")
        return x
    if kind == "comment":
        return 0.0 if v is None else _number("value", v)
    if v is None:
        raise _Bad("value", f"required for the custom kind {kind!r}: a number")
    return _number("value", v)


def _created_at(item: Mapping[str, Any], now: dt.datetime) -> dt.datetime:
    v = item.get("created_at")
    if v is None:
        return now
    if isinstance(v, bool):
        raise _Bad("created_at", "must be an ISO 8601 time or Unix seconds")
    if isinstance(v, (int, float)):
        if not math.isfinite(v):
            raise _Bad("created_at", "must be a finite number of Unix seconds")
        try:
            t = dt.datetime.fromtimestamp(v, tz=dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise _Bad("created_at", f"{v!r} is not a plausible Unix time in seconds") from None
    elif isinstance(v, str):
        try:
            t = dt.datetime.fromisoformat(v.strip())
        except ValueError:
            raise _Bad("created_at", f"not an ISO 8601 time: {v!r}"[:200]) from None
        t = t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)
    else:
        raise _Bad("created_at", "must be an ISO 8601 time or Unix seconds")
    if not EARLIEST <= t <= now + FUTURE_SLACK:
        raise _Bad("created_at", f"{t.isoformat()} is before 2000 or more than a day in the future")
    return t


def validate_item(item: Any, *, project: str, now: dt.datetime) -> dict[str, Any]:
    """One feedback object → a ``feedback`` row. Raises ``_Bad`` on the first problem."""
    if not isinstance(item, dict):
        raise _Bad("", f"each feedback must be a JSON object, got {type(item).__name__}")
    unknown = sorted(k for k in item if k not in FIELDS)
    if unknown:
        raise _Bad(unknown[0], f"unknown field (known: {', '.join(FIELDS)})")
    trace_id = _hex_id(item, "trace_id", _HEX32, 32)
    span_id = _hex_id(item, "span_id", _HEX16, 16)
    response_id = _text(item, "response_id", MAX_ID_CHARS).strip()
    if not (trace_id or span_id or response_id):
        raise _Bad("trace_id", "one of trace_id, span_id or response_id is required")
    kind_raw = item.get("kind")
    if not isinstance(kind_raw, str) or not kind_raw.strip():
        raise _Bad("kind", f"required: one of {', '.join(KNOWN_KINDS)} or a custom name")
    kind = kind_raw.strip().lower()
    if not _NAME.fullmatch(kind):
        raise _Bad("kind", "a custom kind is 1-64 of a-z 0-9 _ . : - starting with a letter")
    comment = _text(item, "comment", MAX_COMMENT_CHARS)
    if kind == "comment" and not comment.strip():
        raise _Bad("comment", "required (non-empty) for kind comment")
    source = _text(item, "source", MAX_SHORT_CHARS, DEFAULT_SOURCE).strip() or DEFAULT_SOURCE
    if not _TOKEN.fullmatch(source):
        raise _Bad("source", "use 1-128 of A-Z a-z 0-9 _ . : -")
    feedback_id = _text(item, "feedback_id", MAX_SHORT_CHARS).strip()
    if feedback_id and not _TOKEN.fullmatch(feedback_id):
        raise _Bad("feedback_id", "use 1-128 of A-Z a-z 0-9 _ . : -")
    return {
        "project": _text(item, "project", MAX_SHORT_CHARS).strip() or project,
        "trace_id": trace_id,
        "span_id": span_id,
        "response_id": response_id,
        "kind": kind,
        "value": _value(kind, item),
        "comment": comment,
        "user_id": _text(item, "user_id", MAX_ID_CHARS).strip(),
        "source": source,
        "feedback_id": feedback_id or uuid.uuid4().hex,
        "created_at": _created_at(item, now),
    }


def parse_feedback(body: bytes, *, project: str, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """A request body → ``feedback`` rows, all or nothing (:class:`InvalidFeedback` lists every problem)."""
    try:
        text = body.decode("utf-8-sig")  # RFC 8259: UTF-8 (json.loads(bytes) would also guess UTF-16/32)
    except UnicodeDecodeError:
        raise InvalidFeedback("body is not UTF-8 JSON") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise InvalidFeedback(f"body is not valid JSON: {e}") from None
    items = data if isinstance(data, list) else [data]
    if not isinstance(data, (list, dict)):
        raise InvalidFeedback("expected a JSON object or a list of objects")
    if len(items) > MAX_ITEMS:
        raise InvalidFeedback(f"{len(items)} feedback items in one request; the limit is {MAX_ITEMS}")
    now = now or dt.datetime.now(dt.timezone.utc)
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        try:
            rows.append(validate_item(item, project=project, now=now))
        except _Bad as bad:
            errors.append({"index": i, "field": bad.field, "reason": bad.reason})
    if errors:
        raise InvalidFeedback(
            f"{len(errors)} of {len(items)} feedback items are invalid; nothing was stored", errors
        )
    return rows
