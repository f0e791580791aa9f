"""Column lists and per-column defaults of the public tables, as Python sees them.

A normalized span is a ``dict`` keyed by :data:`SPAN_COLUMNS`; :func:`span_row` fills what a normalizer
left out with these defaults so the writer can build column-oriented inserts without per-key checks.
Must match ``migrations/0001_initial.sql``: ``tests/unit/test_schema.py`` compares the two.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)

SPAN_DEFAULTS: dict[str, Any] = {
    "project": "default",
    "service": "",
    "environment": "",
    "trace_id": "",
    "span_id": "",
    "parent_span_id": "",
    "name": "",
    "kind": "other",
    "provider": "",
    "model": "",
    "request_model": "",
    "response_model": "",
    "start_time": EPOCH,
    "end_time": EPOCH,
    "duration_ms": 0.0,
    "ttft_ms": None,
    "status": "unset",
    "error_type": "",
    "error_message": "",
    "input_text": "",
    "output_text": "",
    "input_messages": "",
    "output_messages": "",
    "input_tokens": 0,
    "output_tokens": 0,
    "total_tokens": 0,
    "cache_read_tokens": 0,  # 0003_cost_details.sql: the details behind cost_usd (collectors/pricing.py)
    "cache_write_tokens": 0,
    "reasoning_tokens": 0,
    "cost_usd": None,
    "cost_source": "",  # 'provider' | 'price_table' | '' (unpriced)
    "temperature": None,
    "max_tokens": None,
    "top_p": None,
    "finish_reason": "",
    "response_id": "",
    "user_id": "",
    "session_id": "",
    "prompt_name": "",
    "prompt_version": "",
    "convention": "unknown",
    "stream": False,
    "tags": [],
    "attributes": {},
    "resource": {},
    # ingested_at is set by the writer at insert time
}
SPAN_COLUMNS: tuple[str, ...] = (*SPAN_DEFAULTS, "ingested_at")

FEEDBACK_DEFAULTS: dict[str, Any] = {
    "project": "default",
    "trace_id": "",
    "span_id": "",
    "response_id": "",
    "kind": "",
    "value": 0.0,
    "comment": "",
    "user_id": "",
    "source": "",
    "feedback_id": "",
}
FEEDBACK_COLUMNS: tuple[str, ...] = (*FEEDBACK_DEFAULTS, "created_at")

TABLE_DEFAULTS: dict[str, dict[str, Any]] = {"spans": SPAN_DEFAULTS, "feedback": FEEDBACK_DEFAULTS}
# the column each table's writer stamps with the insert time
STAMP_COLUMN = {"spans": "ingested_at", "feedback": "created_at"}


def span_row(values: dict[str, Any]) -> dict[str, Any]:
    """A complete spans row: ``values`` over the defaults (fresh containers, never shared)."""
    row = dict(SPAN_DEFAULTS)
    row["tags"] = []
    row["attributes"] = {}
    row["resource"] = {}
    row.update(values)
    return row
