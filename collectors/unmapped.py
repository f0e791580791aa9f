"""Which span attributes no mapping used, and how often: the to-do list for conventions we do not read yet.

The normalizers pop every key they turn into a column; what is left in ``row["attributes"]`` is stored
verbatim but is invisible on the dashboard. Counting those keys per span tells a user "your
instrumentation sends ``foo.bar`` on 80% of spans and we ignore it" (issue 3, item 1).

Cardinality is bounded twice: numeric path segments are folded (``llm.input_messages.3.message.role`` →
``llm.input_messages.{i}.message.role``), and only the first :data:`MAX_KEYS` distinct folded keys get
their own counter; later newcomers are summed under :data:`OTHER`. First-come rather than top-N keeps
each Prometheus series stable (a series never disappears and comes back as the ranking shifts).

Read by ``GET /metrics`` (``llm_monitor_collector_unmapped_attribute_spans_total{key=...}``), by
``GET /v1/unmapped`` (JSON) and by ``llm-monitor attributes``, which asks a running collector because
the embedded store is held by ``llm-monitor up``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

from collectors.pricing import prom_escape

UNMAPPED_PATH = "/v1/unmapped"
MAX_KEYS = 256  # distinct folded keys counted individually (each one a /metrics series)
MAX_FOLD_CACHE = 20_000
MAX_KEY_LENGTH = 200  # longer keys are truncated (with "…") before counting
OTHER = "__other__"

_INDEX = re.compile(r"(?<=\.)\d+(?=\.|$)|(?<=\[)\d+(?=\])")


def fold_key(key: str) -> str:
    """``a.0.b`` → ``a.{i}.b`` (also ``a[3]`` → ``a[{i}]``), truncated to :data:`MAX_KEY_LENGTH`."""
    folded = _INDEX.sub("{i}", key)
    if len(folded) > MAX_KEY_LENGTH:
        folded = folded[: MAX_KEY_LENGTH - 1] + "…"
    return folded


class UnmappedCounter:
    """Per folded attribute key, how many spans carried it unmapped.

    Thread-safety: :meth:`observe` is called by the request threads after normalization; it folds keys
    outside the lock (cached) and merges one request's counts under it. Memory is bounded by
    :data:`MAX_KEYS` counters plus a fold cache of :data:`MAX_FOLD_CACHE` entries.
    """

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._other = 0  # span-key occurrences of keys beyond max_keys
        self._other_keys = 0  # how many distinct keys were refused a counter (approximate: not deduplicated)
        self._spans = 0
        self._spans_with = 0
        self._fold: dict[str, str] = {}

    def _folded(self, key: str) -> str:
        f = self._fold.get(key)
        if f is None:
            f = fold_key(key)
            if len(self._fold) >= MAX_FOLD_CACHE:
                self._fold.clear()
            self._fold[key] = f
        return f

    def observe(self, rows: Iterable[dict[str, Any]]) -> None:
        """Count the attribute keys left on each row (each key once per span)."""
        # Spans of one request mostly share their leftover keys: count each distinct key tuple, then fold.
        by_keys: dict[tuple[str, ...], int] = {}
        spans = spans_with = 0
        for row in rows:
            spans += 1
            attrs = row.get("attributes")
            if not attrs:
                continue
            spans_with += 1
            keys = tuple(attrs)
            by_keys[keys] = by_keys.get(keys, 0) + 1
        local: dict[str, int] = {}
        for keys, n in by_keys.items():
            for f in {self._folded(k) for k in keys}:
                local[f] = local.get(f, 0) + n
        with self._lock:
            self._spans += spans
            self._spans_with += spans_with
            counts = self._counts
            for k, n in local.items():
                if k in counts:
                    counts[k] += n
                elif len(counts) < self.max_keys:
                    counts[k] = n
                else:
                    self._other += n
                    self._other_keys += 1

    def snapshot(self, limit: int | None = None) -> dict[str, Any]:
        """The JSON served on ``GET /v1/unmapped``: keys by descending span count (ties by name)."""
        with self._lock:
            items = sorted(self._counts.items(), key=lambda kv: (-kv[1], kv[0]))
            other, spans, spans_with = self._other, self._spans, self._spans_with
        shown = items if limit is None else items[:limit]
        hidden = sum(n for _, n in items[len(shown) :])
        return {
            "spans_observed": spans,
            "spans_with_unmapped": spans_with,
            "keys": [
                {"key": k, "spans": n, "share": round(n / spans, 4) if spans else 0.0} for k, n in shown
            ],
            "other_spans": other + hidden,  # span-key occurrences not listed above
            "tracked_keys": len(items),
            "max_keys": self.max_keys,
        }

    def metric_lines(self, prefix: str) -> list[str]:
        """Prometheus families for ``/metrics``: one series per tracked key, plus OTHER."""
        with self._lock:
            top = sorted(self._counts.items())
            other, spans, spans_with = self._other, self._spans, self._spans_with
        name = f"{prefix}unmapped_attribute_spans_total"
        lines = [
            f"# HELP {name} Spans carrying an attribute no mapping used, by key (indexes folded to {{i}}; "
            f"rare keys summed under {OTHER}).",
            f"# TYPE {name} counter",
        ]
        lines += [f'{name}{{key="{prom_escape(k)}"}} {n}' for k, n in top]
        lines.append(f'{name}{{key="{OTHER}"}} {other}')
        name = f"{prefix}spans_with_unmapped_attributes_total"
        lines += [
            f"# HELP {name} Spans stored with at least one unmapped attribute.",
            f"# TYPE {name} counter",
            f"{name} {spans_with}",
        ]
        name = f"{prefix}spans_observed_for_unmapped_total"
        lines += [
            f"# HELP {name} Spans inspected for unmapped attributes.",
            f"# TYPE {name} counter",
            f"{name} {spans}",
        ]
        return lines
