"""Operational metrics over the ``spans`` table, computed in ClickHouse.

The dashboard draws these and the alert rules evaluate them, so both see the same numbers from the same
SQL. Every function is a pure read: ``f(store, *, start, end, project=None, service=None, model=None, …)``
returning a ``dict`` or a pandas ``DataFrame``. Any thread may call them; they block on the store and
raise :class:`monitor.store.StoreError` (one line) when ClickHouse refuses.

Conventions shared by every function:

- **Model calls** are spans whose ``kind`` is in :data:`MODEL_KINDS` (``llm`` and ``embedding``): the
  spans that hit a provider, carry tokens and cost money. "Requests" counts them. Chains, tools and
  agents only matter to the trace views. Pass ``kinds=("llm",)`` to leave embeddings out.
- **Exact counts.** ``spans`` is a ReplacingMergeTree and the collector may deliver a span twice (retry,
  spool replay), so every read uses ``FINAL``. Duplicates share their ``start_time`` and hence their
  day partition, which lets ``do_not_merge_across_partitions_select_final`` keep FINAL cheap.
- **Percentiles** use :data:`QUANTILE` (``quantileExactInclusive``: exact, interpolated like numpy's
  default). It keeps every value of a group in memory: 8 bytes a call, which is nothing at LLM call
  rates; a deployment with billions of calls a window can swap it for ``quantileTDigest`` here.
- **Cost is never silently zero**: ``cost_usd`` is the sum over priced calls (``None``/NULL when no call
  was priced) and ``unpriced_calls`` counts the calls whose cost is unknown (``cost_usd`` NULL).
- **Time**: ``start``/``end`` are datetimes (naive ones are taken as UTC); the window is
  ``start <= start_time < end``. Returned timestamps are timezone-aware UTC.
- User input only ever travels as bound query parameters (``{name:Type}``), never inside SQL text.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd

    from monitor.store.client import Store

__all__ = [
    "MODEL_KINDS",
    "QUANTILE",
    "SEGMENT_COLUMNS",
    "by_model",
    "filter_options",
    "list_traces",
    "overview_kpis",
    "pick_bucket_seconds",
    "segment_expr",
    "timeseries",
    "trace_spans",
    "window_metrics",
]

MODEL_KINDS: tuple[str, ...] = ("llm", "embedding")
QUANTILE = "quantileExactInclusive"
# Bucket widths (seconds) a time series may use: round numbers a reader recognises on an axis.
# fmt: off
NICE_BUCKETS: tuple[int, ...] = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
    172800, 604800,
)
# fmt: on
TARGET_BUCKETS = 60
# A trace listed because some of its spans fall in the window is aggregated over spans this far
# around the window too, so a trace crossing the window's edge is shown whole.
TRACE_SLACK = dt.timedelta(days=1)

_SETTINGS: dict[str, Any] = {
    # Output aliases such as ``input_tokens`` reuse column names; let the columns win inside expressions.
    "prefer_column_name_to_alias": 1,
    "do_not_merge_across_partitions_select_final": 1,
}
_UTC64 = "DateTime64(9, 'UTC')"
_QUANTILES = QUANTILE.replace("quantile", "quantiles", 1)  # the multi-level form: one pass for p50 and p95
_SPANS = "__SPANS__"  # replaced by the quoted table name; never by user input

# The aggregates every call-level view shares (KPIs, time series, per model). The two identical
# quantiles calls are one aggregation: ClickHouse computes equal aggregate expressions once.
_CALL_AGGREGATES = f"""
    count() AS requests,
    countIf(status = 'error') AS errors,
    errors / requests AS error_rate,
    toNullable(arrayElement({_QUANTILES}(0.5, 0.95)(duration_ms), 1)) AS latency_p50_ms,
    toNullable(arrayElement({_QUANTILES}(0.5, 0.95)(duration_ms), 2)) AS latency_p95_ms,
    {QUANTILE}If(0.5)(ttft_ms, ttft_ms IS NOT NULL) AS ttft_p50_ms,
    countIf(ttft_ms IS NOT NULL) AS streamed_calls,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(if(total_tokens > 0, total_tokens, input_tokens + output_tokens)) AS total_tokens,
    sum(cost_usd) AS cost_usd,
    countIf(cost_usd IS NOT NULL) AS priced_calls,
    countIf(cost_usd IS NULL) AS unpriced_calls
"""


# --- helpers ------------------------------------------------------------------------------------------


def _utc(t: dt.datetime) -> dt.datetime:
    """``t`` as an aware UTC datetime; a naive one is taken to be UTC already."""
    if t.tzinfo is None:
        return t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(dt.timezone.utc)


def _values(v: str | Sequence[str] | None) -> list[str] | None:
    """A filter value as a list, or ``None`` for "no filter" (``None``, ``""`` and ``[]`` alike)."""
    if v is None:
        return None
    items = [v] if isinstance(v, str) else list(v)
    items = [str(x) for x in items if x is not None and str(x) != ""]
    return items or None


def _window(start: dt.datetime, end: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    s, e = _utc(start), _utc(end)
    if e <= s:
        raise ValueError(f"empty time window: end {e.isoformat()} is not after start {s.isoformat()}")
    return s, e


def _where(
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    project: str | None,
    service: str | Sequence[str] | None = None,
    model: str | Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The WHERE clause every query shares, and its parameters.

    The clause text is built from constants only; values are bound. Project and time come first, in the
    order of the table's sorting key, so ClickHouse prunes parts and granules before reading columns.
    """
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if project:
        clauses.append("project = {project:String}")
        params["project"] = project
    if start is not None:
        clauses.append(f"start_time >= {{start:{_UTC64}}}")
        params["start"] = _utc(start)
    if end is not None:
        clauses.append(f"start_time < {{end:{_UTC64}}}")
        params["end"] = _utc(end)
    if (services := _values(service)) is not None:
        clauses.append("service IN {services:Array(String)}")
        params["services"] = services
    if (models := _values(model)) is not None:
        clauses.append("model IN {models:Array(String)}")
        params["models"] = models
    if kinds is not None:
        clauses.append("kind IN {kinds:Array(String)}")
        params["kinds"] = list(kinds)
    return " AND ".join(clauses) or "1", params


def _run_df(store: Store, sql: str, params: Mapping[str, Any]) -> pd.DataFrame:
    """Run a SELECT into a DataFrame that keeps its columns even when no row matched.

    The chDB backend returns a column-less frame for an empty result; callers (and the dashboard's
    tables) want the schema regardless, so ask ClickHouse for it with ``DESCRIBE`` in that case.
    """
    import pandas as pd

    sql = sql.replace(_SPANS, store.table("spans"))
    df = store.query_df(sql, params, settings=_SETTINGS)
    if len(df.columns):
        return df
    described = store.query(f"DESCRIBE TABLE ({sql})", params, settings=_SETTINGS).result_rows
    return pd.DataFrame({name: pd.Series(dtype=_pandas_dtype(ch_type)) for name, ch_type, *_ in described})


def _pandas_dtype(ch_type: str) -> str:
    """The pandas dtype an empty column of ClickHouse type ``ch_type`` gets."""
    inner = ch_type
    for wrapper in ("Nullable(", "LowCardinality("):
        while inner.startswith(wrapper):
            inner = inner[len(wrapper) : -1]
    if inner.startswith("DateTime"):
        return "datetime64[ns, UTC]"
    if inner.startswith(("Float", "Decimal")) or (inner.startswith(("Int", "UInt")) and inner != ch_type):
        return "float64"
    if inner.startswith(("Int", "UInt")):
        return "int64"
    if inner == "Bool":
        return "bool"
    return "object"


def _run_rows(store: Store, sql: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    r = store.query(sql.replace(_SPANS, store.table("spans")), params, settings=_SETTINGS)
    return [dict(zip(r.column_names, row, strict=False)) for row in r.result_rows]


def _clean(v: Any) -> Any:
    """NaN (ClickHouse's answer for a percentile of nothing) as ``None``, so callers test one thing."""
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _as_utc_columns(df: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Mark naive datetime columns (UTC from ClickHouse) as UTC, so charts and tables show real instants."""
    import pandas as pd

    for c in columns:
        if c in df.columns and len(df):
            col = pd.to_datetime(df[c])
            df[c] = col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")
    return df


# --- public functions ---------------------------------------------------------------------------------


def pick_bucket_seconds(start: dt.datetime, end: dt.datetime, target: int = TARGET_BUCKETS) -> int:
    """The smallest round bucket width that cuts ``[start, end)`` into at most ``target`` buckets.

    Round widths keep bucket edges on minutes/hours a reader can tell apart; ~60 points is enough detail
    for a chart without drowning one bucket's percentiles in noise.
    """
    s, e = _window(start, end)
    span = (e - s).total_seconds()
    wanted = span / max(1, target)
    for b in NICE_BUCKETS:
        if b >= wanted:
            return b
    return math.ceil(wanted / NICE_BUCKETS[-1]) * NICE_BUCKETS[-1]


def overview_kpis(
    store: Store,
    *,
    start: dt.datetime,
    end: dt.datetime,
    project: str | None = None,
    service: str | Sequence[str] | None = None,
    model: str | Sequence[str] | None = None,
    kinds: Sequence[str] = MODEL_KINDS,
) -> dict[str, Any]:
    """Headline numbers of the model calls in the window.

    Keys: ``requests, errors, error_rate, latency_p50_ms, latency_p95_ms, ttft_p50_ms, streamed_calls,
    input_tokens, output_tokens, total_tokens, cost_usd, priced_calls, unpriced_calls, traces, spans``.
    Rates and percentiles are ``None`` when there is nothing to compute them from; ``cost_usd`` is
    ``None`` when no call was priced. ``traces``/``spans`` count spans of every kind under the same
    filters, so a caller can tell "no traffic" from "traffic but no model calls".
    """
    s, e = _window(start, end)
    where, params = _where(start=s, end=e, project=project, service=service, model=model)
    params["kinds"] = list(kinds)
    # Two scans of the same granules: the model calls, and every span for the trace/span counts.
    sql = f"""
        SELECT * FROM (
            SELECT {_CALL_AGGREGATES}
            FROM {_SPANS} FINAL
            WHERE {where} AND kind IN {{kinds:Array(String)}}
        ) AS calls
        CROSS JOIN (
            SELECT count() AS spans, uniqExact(trace_id) AS traces
            FROM {_SPANS} FINAL
            WHERE {where}
        ) AS everything
    """
    row = _run_rows(store, sql, params)[0]
    out = {k: _clean(v) for k, v in row.items()}
    out["requests"] = int(out["requests"] or 0)
    if out["requests"] == 0:
        out["error_rate"] = None
    return out


def timeseries(
    store: Store,
    *,
    start: dt.datetime,
    end: dt.datetime,
    project: str | None = None,
    service: str | Sequence[str] | None = None,
    model: str | Sequence[str] | None = None,
    bucket: int | Literal["auto"] = "auto",
    kinds: Sequence[str] = MODEL_KINDS,
    fill: bool = True,
) -> pd.DataFrame:
    """Model-call metrics per time bucket and per model (long format: one row per bucket × model).

    Columns: ``bucket`` (UTC, bucket start), ``model``, then the call aggregates (``requests, errors,
    error_rate, latency_p50_ms, latency_p95_ms, ttft_p50_ms, streamed_calls, input/output/total_tokens,
    cost_usd, priced_calls, unpriced_calls``). ``cost_usd`` is 0 in a bucket without priced calls
    (``unpriced_calls`` says when that hides spend). With ``fill`` every model gets every bucket of the
    window (zero counts, NULL percentiles), so lines drop to zero instead of bridging quiet periods.
    The bucket width used is in ``df.attrs["bucket_seconds"]``.
    """
    s, e = _window(start, end)
    width = pick_bucket_seconds(s, e) if bucket == "auto" else int(bucket)
    if width <= 0:
        raise ValueError("bucket must be a positive number of seconds or 'auto'")
    where, params = _where(start=s, end=e, project=project, service=service, model=model, kinds=kinds)
    params["bucket"] = width
    agg = _CALL_AGGREGATES.replace("sum(cost_usd) AS cost_usd", "ifNull(sum(cost_usd), 0) AS cost_usd")
    with_fill = ""
    if fill:
        with_fill = f"""WITH FILL
            FROM toStartOfInterval(toDateTime({{start:{_UTC64}}}, 'UTC'), INTERVAL {{bucket:UInt32}} SECOND)
            TO toDateTime({{end:{_UTC64}}}, 'UTC')
            STEP toIntervalSecond({{bucket:UInt32}})"""
    sql = f"""
        SELECT
            toDateTime(toStartOfInterval(start_time, INTERVAL {{bucket:UInt32}} SECOND), 'UTC') AS bucket,
            model,
            {agg}
        FROM {_SPANS} FINAL
        WHERE {where}
        GROUP BY model, bucket
        ORDER BY model, bucket {with_fill}
    """
    df = _run_df(store, sql, params)
    if fill and len(df) and df["requests"].sum() == 0:
        df = df.iloc[0:0]  # WITH FILL over no groups invents one model-less series; no data is no rows
    df = _as_utc_columns(df, "bucket")
    df = df.sort_values(["bucket", "model"], kind="stable").reset_index(drop=True)
    df.attrs["bucket_seconds"] = width
    return df


def by_model(
    store: Store,
    *,
    start: dt.datetime,
    end: dt.datetime,
    project: str | None = None,
    service: str | Sequence[str] | None = None,
    model: str | Sequence[str] | None = None,
    kinds: Sequence[str] = MODEL_KINDS,
) -> pd.DataFrame:
    """One row per (model, provider) with the call aggregates, busiest first.

    ``cost_usd`` is NaN for a model none of whose calls was priced (an unknown model): the table then
    shows "no price" rather than a cheap-looking $0.
    """
    s, e = _window(start, end)
    where, params = _where(start=s, end=e, project=project, service=service, model=model, kinds=kinds)
    sql = f"""
        SELECT model, provider, {_CALL_AGGREGATES}
        FROM {_SPANS} FINAL
        WHERE {where}
        GROUP BY model, provider
        ORDER BY requests DESC, model, provider
    """
    return _run_df(store, sql, params)


def list_traces(
    store: Store,
    *,
    start: dt.datetime,
    end: dt.datetime,
    project: str | None = None,
    service: str | Sequence[str] | None = None,
    model: str | Sequence[str] | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    status: Literal["ok", "error"] | None = None,
    search: str | None = None,
    limit: int = 100,
    kinds: Sequence[str] = MODEL_KINDS,
) -> pd.DataFrame:
    """The most recent traces in the window, one row each, newest first.

    A trace matches a filter when *any* of its spans in the window does (a trace "uses gpt-4o" when one
    of its calls does); ``status="error"`` keeps traces with at least one error span, ``"ok"`` those
    with none; ``search`` is a case-insensitive substring of some span's input or output text.
    Columns: ``trace_id, name`` (the root span's, else the earliest span's), ``service, start_time,
    duration_ms`` (first start to last end), ``spans, llm_calls, input_tokens, output_tokens,
    total_tokens, cost_usd`` (NaN when nothing was priced), ``unpriced_calls, errors, status`` ('error'
    or 'ok'), ``user_id, session_id, models``. Token and cost totals cover model calls only, because
    a parent span that reports its children's usage would otherwise count it twice.
    """
    s, e = _window(start, end)
    if limit <= 0:
        raise ValueError("limit must be positive")
    where, params = _where(start=s, end=e, project=project)
    having = ["1"]
    if (services := _values(service)) is not None:
        having.append("countIf(service IN {services:Array(String)}) > 0")
        params["services"] = services
    if (models := _values(model)) is not None:
        having.append("countIf(model IN {models:Array(String)}) > 0")
        params["models"] = models
    if user_id:
        having.append("countIf(user_id = {user_id:String}) > 0")
        params["user_id"] = user_id
    if session_id:
        having.append("countIf(session_id = {session_id:String}) > 0")
        params["session_id"] = session_id
    if search:
        having.append(
            "countIf(positionCaseInsensitiveUTF8(input_text, {search:String}) > 0"
            " OR positionCaseInsensitiveUTF8(output_text, {search:String}) > 0) > 0"
        )
        params["search"] = search
    if status == "error":
        having.append("countIf(status = 'error') > 0")
    elif status == "ok":
        having.append("countIf(status = 'error') = 0")
    elif status is not None:
        raise ValueError(f"status must be 'ok', 'error' or None, not {status!r}")
    # The outer scan reads whole traces: same project, the window widened by TRACE_SLACK.
    outer_where = f"start_time >= {{outer_start:{_UTC64}}} AND start_time < {{outer_end:{_UTC64}}}"
    if project:
        outer_where = "project = {project:String} AND " + outer_where
    params["outer_start"], params["outer_end"] = s - TRACE_SLACK, e + TRACE_SLACK
    params["kinds"] = list(kinds)
    is_call = "kind IN {kinds:Array(String)}"
    sql = f"""
        SELECT
            trace_id,
            if(countIf(parent_span_id = '') > 0,
               argMinIf(name, start_time, parent_span_id = ''), argMin(name, start_time)) AS name,
            if(countIf(parent_span_id = '') > 0,
               argMinIf(service, start_time, parent_span_id = ''), argMin(service, start_time)) AS service,
            min(start_time) AS trace_start,
            (max(greatest(toUnixTimestamp64Nano(end_time),
                          toUnixTimestamp64Nano(start_time) + toInt64(duration_ms * 1000000)))
             - toUnixTimestamp64Nano(min(start_time))) / 1e6 AS duration_ms,
            count() AS spans,
            countIf({is_call}) AS llm_calls,
            sumIf(input_tokens, {is_call}) AS input_tokens,
            sumIf(output_tokens, {is_call}) AS output_tokens,
            sumIf(if(total_tokens > 0, total_tokens, input_tokens + output_tokens), {is_call}) AS total_tokens,
            sumIf(cost_usd, {is_call} AND cost_usd IS NOT NULL) AS priced_cost,
            countIf({is_call} AND cost_usd IS NOT NULL) AS priced_calls,
            countIf({is_call} AND cost_usd IS NULL) AS unpriced_calls,
            countIf(status = 'error') AS errors,
            if(errors > 0, 'error', 'ok') AS status,
            anyIf(user_id, user_id != '') AS user_id,
            anyIf(session_id, session_id != '') AS session_id,
            arrayStringConcat(arraySort(groupUniqArrayIf(model, model != '' AND {is_call})), ', ') AS models
        FROM {_SPANS} FINAL
        WHERE {outer_where}
          AND trace_id IN (
            SELECT trace_id
            FROM {_SPANS} FINAL
            WHERE {where}
            GROUP BY trace_id
            HAVING {" AND ".join(having)}
            ORDER BY min(start_time) DESC
            LIMIT {int(limit)}
          )
        GROUP BY trace_id
        ORDER BY trace_start DESC, trace_id
    """
    df = _run_df(store, sql, params)
    df = df.rename(columns={"trace_start": "start_time"})
    # sumIf over no priced rows yields 0, indistinguishable from free calls: make it NaN instead.
    if len(df):
        df["cost_usd"] = df["priced_cost"].where(df["priced_calls"] > 0)
    else:
        df["cost_usd"] = df.get("priced_cost")
    df = df.drop(columns=["priced_cost", "priced_calls"])
    order = [
        "trace_id",
        "name",
        "service",
        "start_time",
        "duration_ms",
        "spans",
        "llm_calls",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "cost_usd",
        "unpriced_calls",
        "errors",
        "status",
        "user_id",
        "session_id",
        "models",
    ]
    return _as_utc_columns(df[order], "start_time")


def trace_spans(store: Store, trace_id: str, *, project: str | None = None) -> pd.DataFrame:
    """Every span of one trace (every column of ``spans``), ordered by start time.

    Extra column ``offset_ms``: the span's start relative to the trace's first span, for waterfalls.
    Not limited to a time window, so a link to an old trace still opens it.
    """
    where, params = _where(start=None, end=None, project=project)
    params["trace_id"] = trace_id
    sql = f"""
        SELECT *,
            (toUnixTimestamp64Nano(start_time) - min(toUnixTimestamp64Nano(start_time)) OVER ()) / 1e6
                AS offset_ms
        FROM {_SPANS} FINAL
        WHERE {where} AND trace_id = {{trace_id:String}}
        ORDER BY start_time, span_id
    """
    df = _run_df(store, sql, params)
    return _as_utc_columns(df, "start_time", "end_time", "ingested_at")


def filter_options(
    store: Store,
    *,
    project: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    limit: int = 500,
    ids: bool = True,
) -> dict[str, list[str]]:
    """Values the filter pickers offer: ``projects, services, models, users, sessions`` (sorted).

    ``projects`` ignores ``project`` (it is the list to choose it from); an empty ``projects`` means the
    store holds no spans at all. Users and sessions are capped at ``limit`` each, since a picker of a
    million ids helps nobody; free-text inputs cover the rest. ``ids=False`` skips them (and the scan of
    those high-cardinality columns) for callers that only need projects, services and models.
    """
    where, params = _where(start=start, end=end, project=project)
    n = int(limit)  # aggregate-function parameters must be literals; an int cannot smuggle SQL
    id_columns = (
        f"arraySort(groupUniqArrayIf({n})(user_id, user_id != '')) AS users, "
        f"arraySort(groupUniqArrayIf({n})(session_id, session_id != '')) AS sessions"
        if ids
        else "[] AS users, [] AS sessions"
    )
    sql = f"""
        SELECT
            arraySort(groupUniqArrayIf(service, service != '')) AS services,
            arraySort(groupUniqArrayIf(model, model != '')) AS models,
            {id_columns}
        FROM {_SPANS}
        WHERE {where}
    """
    row = _run_rows(store, sql, params)[0]
    projects = _run_rows(store, f"SELECT DISTINCT project FROM {_SPANS} ORDER BY project", {})
    return {
        "projects": [r["project"] for r in projects],
        "services": list(row["services"]),
        "models": list(row["models"]),
        "users": list(row["users"]),
        "sessions": list(row["sessions"]),
    }


# --- per-window, per-segment metrics (issue 5 item 6) ------------------------------------------------

# Span columns a caller may group by. Anything else is refused: names reach SQL text, values never do.
# ``attributes.<key>`` / ``resource.<key>`` group by one map entry (the key is a bound parameter).
SEGMENT_COLUMNS: tuple[str, ...] = (
    "project", "service", "environment", "provider", "model", "request_model", "response_model", "prompt_name",
    "prompt_version", "finish_reason", "status", "name", "convention", "user_id", "session_id",
)  # fmt: skip
_SEGMENT_MAPS = ("attributes", "resource")


def segment_expr(name: str, i: int, params: dict[str, Any]) -> str:
    """SQL for the segment ``name``: a whitelisted column, or a map entry whose key goes into ``params``.

    ``i`` makes the parameter name unique per segment. Raises ``ValueError`` (one line) for anything else.
    """
    if name in SEGMENT_COLUMNS:
        return name
    prefix, dot, key = name.partition(".")
    if dot and prefix in _SEGMENT_MAPS and key:
        params[f"seg_key_{i}"] = key
        return f"{prefix}[{{seg_key_{i}:String}}]"
    raise ValueError(
        f"cannot segment by {name!r}: use one of {', '.join(SEGMENT_COLUMNS)}, attributes.<key> or resource.<key>"
    )


def window_metrics(
    store: Store,
    *,
    start: dt.datetime,
    end: dt.datetime,
    bucket_seconds: int | None = None,
    segment_by: Sequence[str] = (),
    project: str | None = None,
    service: str | Sequence[str] | None = None,
    model: str | Sequence[str] | None = None,
    kinds: Sequence[str] = MODEL_KINDS,
) -> pd.DataFrame:
    """Model-call metrics per time bucket (``bucket_seconds``; ``None``: the whole window) and segment.

    ``segment_by`` names :data:`SEGMENT_COLUMNS` or ``attributes.<key>``/``resource.<key>`` (e.g.
    ``("service", "model", "prompt_version")``); each becomes a column of that name. Columns after them:
    ``requests, errors, error_rate, latency_p50/p95/p99_ms, ttft_p50/p95/p99_ms, streamed_calls,
    input/output/total_tokens, cost_usd, priced_calls, unpriced_calls``. Percentiles are exact
    (:data:`QUANTILE`); a rate or percentile of nothing is NaN and ``cost_usd`` is NaN when no call was
    priced (never a silent 0). Without buckets or segments there is exactly one row, even for an empty
    window; otherwise one row per group that has calls. Ordered by bucket, then segments.
    """
    s, e = _window(start, end)
    where, params = _where(start=s, end=e, project=project, service=service, model=model, kinds=kinds)
    names = list(segment_by)
    if len(set(names)) != len(names):
        raise ValueError(f"segment_by repeats a segment: {names}")
    select: list[str] = []
    keys: list[str] = []
    if bucket_seconds is not None:
        if int(bucket_seconds) <= 0:
            raise ValueError("bucket_seconds must be a positive number of seconds or None")
        params["bucket"] = int(bucket_seconds)
        select.append(
            "toDateTime(toStartOfInterval(start_time, INTERVAL {bucket:UInt32} SECOND), 'UTC') AS bucket"
        )
        keys.append("bucket")
    for i, name in enumerate(names):
        select.append(f"{segment_expr(name, i, params)} AS seg_{i}")
        keys.append(f"seg_{i}")
    levels = "(0.5, 0.95, 0.99)"
    aggregates = f"""
        count() AS requests,
        countIf(status = 'error') AS errors,
        errors / requests AS error_rate,
        {_QUANTILES}{levels}(duration_ms) AS latency_q,
        latency_q[1] AS latency_p50_ms, latency_q[2] AS latency_p95_ms, latency_q[3] AS latency_p99_ms,
        {_QUANTILES}{levels}(ttft_ms) AS ttft_q,
        ttft_q[1] AS ttft_p50_ms, ttft_q[2] AS ttft_p95_ms, ttft_q[3] AS ttft_p99_ms,
        countIf(ttft_ms IS NOT NULL) AS streamed_calls,
        sum(input_tokens) AS input_tokens,
        sum(output_tokens) AS output_tokens,
        sum(if(total_tokens > 0, total_tokens, input_tokens + output_tokens)) AS total_tokens,
        sum(cost_usd) AS cost_usd,
        countIf(cost_usd IS NOT NULL) AS priced_calls,
        countIf(cost_usd IS NULL) AS unpriced_calls
    """
    grouping = f"GROUP BY {', '.join(keys)} ORDER BY {', '.join(keys)}" if keys else ""
    sql = f"SELECT {', '.join([*select, aggregates])} FROM {_SPANS} FINAL WHERE {where} {grouping}"
    df = _run_df(store, sql, params).drop(columns=["latency_q", "ttft_q"])
    df = df.rename(columns={f"seg_{i}": name for i, name in enumerate(names)})
    df = _as_utc_columns(df, "bucket")
    df.attrs["bucket_seconds"] = bucket_seconds
    return df
