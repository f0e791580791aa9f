"""Turning arbitrary user values into bounded JSON strings for span attributes.

Why bounded at every step, not only at the end: a decorated function may receive a million-row list or
a 50 MB string; serialising all of it just to cut it afterwards would put that cost on the request
path. So :func:`to_jsonable` walks with limits (depth, items per container, characters per string) and
:func:`dumps_capped` cuts the final text at ``limit`` characters with a visible marker. Values JSON
cannot express fall back to ``repr`` (itself capped, and guarded: a ``__repr__`` may raise).
Nothing here raises.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_LIMIT", "TRUNCATION_MARKER", "dumps_capped", "safe_repr", "to_jsonable", "truncate"]

DEFAULT_LIMIT = 16 * 1024  # characters per captured attribute
TRUNCATION_MARKER = "…[truncated {n} chars]"
_MAX_DEPTH = 8
_MAX_ITEMS = 200
_REPR_LIMIT = 1024


def truncate(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """``text`` cut to about ``limit`` characters, ending with a marker that says how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + TRUNCATION_MARKER.format(n=len(text) - limit)


def safe_repr(value: Any, limit: int = _REPR_LIMIT) -> str:
    """``repr(value)``, capped; never raises (a broken ``__repr__`` gives ``<TypeName object>``)."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__} object>"
    return truncate(text, limit)


def to_jsonable(value: Any, limit: int = DEFAULT_LIMIT, _depth: int = 0) -> Any:
    """A JSON-compatible copy of ``value``, bounded in depth, width and string length."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return truncate(value, limit)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if _depth >= _MAX_DEPTH:
        return safe_repr(value)
    nxt = _depth + 1
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        try:
            for i, (k, v) in enumerate(value.items()):
                if i >= _MAX_ITEMS:
                    out["…"] = f"{len(value) - _MAX_ITEMS} more items"
                    break
                out[k if isinstance(k, str) else safe_repr(k)] = to_jsonable(v, limit, nxt)
        except Exception:
            return safe_repr(value)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items: list[Any] = []
        try:
            for i, v in enumerate(value):
                if i >= _MAX_ITEMS:
                    items.append(f"… {len(value) - _MAX_ITEMS} more items")
                    break
                items.append(to_jsonable(v, limit, nxt))
        except Exception:
            return safe_repr(value)
        return items
    # pydantic v2 models (the openai SDK's types among them) know how to become plain data.
    dump = getattr(type(value), "model_dump", None)
    if callable(dump):
        try:
            return to_jsonable(value.model_dump(mode="json"), limit, nxt)
        except Exception:
            return safe_repr(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        try:
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        except Exception:
            return safe_repr(value)
        return to_jsonable(fields, limit, nxt)
    return safe_repr(value)


def dumps_capped(value: Any, limit: int = DEFAULT_LIMIT) -> str:
    """JSON text of ``value`` at most about ``limit`` characters long (cut text ends with the marker)."""
    # Inside a container one long string may use half the budget, so its siblings still show.
    per_string = limit if isinstance(value, str) else max(1, limit // 2)
    try:
        text = json.dumps(to_jsonable(value, per_string), ensure_ascii=False, separators=(",", ":"))
    except Exception:
        text = json.dumps(safe_repr(value), ensure_ascii=False)
    return truncate(text, limit)
