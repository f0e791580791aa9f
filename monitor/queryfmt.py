"""Render query results for ``llm-monitor query``: an aligned table, CSV, or one JSON array of objects."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import math
import uuid
from collections.abc import Sequence
from typing import Any


def jsonable(v: Any) -> Any:
    """A JSON-safe version of a ClickHouse value (datetimes as ISO 8601, maps as objects, NaN as null)."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    if isinstance(v, (decimal.Decimal, uuid.UUID)):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        return v.decode("utf-8", "replace")
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [jsonable(x) for x in v]
    return str(v)


def _cell(v: Any) -> str:
    j = jsonable(v)
    if j is None:
        return "NULL"
    if isinstance(j, (dict, list)):
        return json.dumps(j, ensure_ascii=False)
    return str(j)


def format_result(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str = "table") -> str:
    if fmt == "json":
        return (
            json.dumps(
                [{c: jsonable(v) for c, v in zip(columns, r, strict=True)} for r in rows], ensure_ascii=False
            )
            + "\n"
        )
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([_cell(v) for v in r])
        return buf.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}")
    cells = [[_cell(v).replace("\n", "\\n") for v in r] for r in rows]
    widths = [len(c) for c in columns]
    for r in cells:
        for i, c in enumerate(r):
            widths[i] = min(max(widths[i], len(c)), 80)

    def line(vals: Sequence[str]) -> str:
        return "  ".join(
            (v if len(v) <= 80 else v[:77] + "...").ljust(w) for v, w in zip(vals, widths, strict=False)
        ).rstrip()

    out = [line(columns), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out) + "\n"
