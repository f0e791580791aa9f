"""Reads of what the analyzers wrote, for the dashboard and alert rules: score rates and drift reports.

Same conventions as :mod:`monitor.metrics`: pure reads computed in ClickHouse, ``FINAL`` (``scores`` and
``drift`` are ReplacingMergeTrees: a re-run replaces rows), bound parameters only, windows
``start <= span start_time < end``, any thread, :class:`monitor.store.StoreError` when ClickHouse refuses.
Every row names the model that produced the scores (``scores.analyzer_version``), so a switch from the fast
toxicity model to detoxify never silently changes a rate.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from monitor.store.client import Store

__all__ = ["HEADLINE_METRICS", "drift_report", "score_summary"]

HEADLINE_METRICS: tuple[str, ...] = ("input", "output", "accepted")


def _utc(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)


def score_summary(
    store: Store,
    *,
    start: dt.datetime,
    end: dt.datetime,
    project: str | None = None,
    service: str | Sequence[str] | None = None,
    model: str | Sequence[str] | None = None,
    threshold: float = 0.5,
) -> pd.DataFrame:
    """Per (analyzer, metric, producing model): spans scored, flagged (value ≥ ``threshold``), the flagged
    rate and the mean score, over the headline metrics (``input``, ``output``, ``accepted``).

    ``service``/``model`` filter on the scored spans (a subquery on ``spans``); for ``acceptance`` the
    rate is the acceptance rate (value 1 = accepted).
    """
    params: dict[str, Any] = {"start": _utc(start), "end": _utc(end), "th": float(threshold),
                              "metrics": list(HEADLINE_METRICS)}  # fmt: skip
    where = [
        "span_start_time >= {start:DateTime64(9, 'UTC')}",
        "span_start_time < {end:DateTime64(9, 'UTC')}",
        "metric IN {metrics:Array(String)}",
    ]
    if project is not None:
        where.append("project = {project:String}")
        params["project"] = project
    span_filters = []
    for col, value in (("service", service), ("model", model)):
        if value:
            params[col] = [value] if isinstance(value, str) else list(value)
            span_filters.append(f"{col} IN {{{col}:Array(String)}}")
    if span_filters:
        where.append(
            f"span_id IN (SELECT span_id FROM {store.table('spans')} WHERE start_time >= {{start:DateTime64(9, 'UTC')}} "
            f"AND start_time < {{end:DateTime64(9, 'UTC')}} AND {' AND '.join(span_filters)})"
        )
    sql = f"""
        SELECT analyzer, metric, analyzer_version AS model, count() AS spans,
               countIf(value >= {{th:Float64}}) AS flagged, flagged / spans AS rate, avg(value) AS mean
        FROM {store.table("scores")} FINAL
        WHERE {" AND ".join(where)}
        GROUP BY analyzer, metric, model
        ORDER BY analyzer, metric, model
    """
    return store.query_df(sql, params)


def drift_report(
    store: Store,
    *,
    start: dt.datetime,
    end: dt.datetime,
    project: str | None = None,
    drifted_only: bool = False,
    limit: int = 500,
) -> pd.DataFrame:
    """Drift rows of windows that started in ``[start, end)``, newest window first, drifted rows first."""
    params: dict[str, Any] = {"start": _utc(start), "end": _utc(end), "limit": int(limit)}
    where = ["window_start >= {start:DateTime64(3, 'UTC')}", "window_start < {end:DateTime64(3, 'UTC')}"]
    if project is not None:
        where.append("project = {project:String}")
        params["project"] = project
    if drifted_only:
        where.append("drifted")
    sql = f"""
        SELECT window_start, window_end, segment, feature, method, score, threshold, drifted,
               sample_size, baseline_size, baseline_start, baseline_end
        FROM {store.table("drift")} FINAL
        WHERE {" AND ".join(where)}
        ORDER BY window_start DESC, drifted DESC, score / threshold DESC, segment, feature, method
        LIMIT {{limit:UInt32}}
    """
    return store.query_df(sql, params)
