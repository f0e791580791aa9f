"""Acceptance analytics: did users take what the model generated? Rates per segment and A/B tests.

Pure reads in the style of :mod:`monitor.metrics` (ClickHouse aggregates, ``FINAL``, bound parameters,
windows ``start <= span start_time < end``): ``f(store, *, start, end, project=None, …)``. Any thread may
call them; they block on the store and raise :class:`monitor.store.StoreError` (one line) when ClickHouse
refuses, ``ValueError`` for bad arguments. The statistics live in :mod:`monitor.stats`.

**Feedback → decision** (:class:`AcceptanceConfig`, ``analyzers: acceptance:`` in ``llm-monitor.yaml``):

- ``thumbs``: accepted when ``value > thumbs_threshold`` (default 0: thumbs up), rejected otherwise.
- ``rating``: accepted when ``value >= rating_threshold`` (4), rejected when ``value <=
  rating_reject_threshold`` (2), neutral (ignored) in between. Ratings are read in the units the app
  sends (the collector accepts 0..10); an app sending normalized ratings sets 0.5 and 0.5 (a value equal
  to both thresholds counts as accepted).
- kinds listed in ``accepted`` (default ``accept, copy``) or ``rejected`` (default ``reject, regenerate,
  edit``) decide when their value is > 0: the collector stores 1 for "it happened" and 0 for "it did not".
- ``edit`` is **rejected** by default: the output could not be used as it was. "Usable as is" is the
  stricter reading of acceptance and the one code assistants report; an app whose drafts are meant to be
  touched up moves ``edit`` to ``accepted``, or drops it from both lists to ignore it.
- ``comment`` and any kind in neither list are ignored.

**One decision per generation.** Feedback names a generation by ``response_id`` (→ ``spans.response_id``),
``span_id``, or ``trace_id`` (→ the trace's last LLM span; a ``span_id`` of a non-LLM span, e.g. a chain
root, also resolves through its trace). When a row carries several ids the most specific one that matches
an LLM span wins, in that order. The resolved span then keeps only its **latest decisive event**
(``created_at``; on a tie, rejected wins): a user who copies and then regenerates has rejected the answer
once, not accepted and rejected it. Generations are selected by their start time; their feedback may come
later (any time after ``start`` minus :data:`CLOCK_SLACK`), so the last window fills up as feedback arrives.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor import metrics, stats
from monitor.analyzers.base import AnalyzerConfigError

if TYPE_CHECKING:
    import pandas as pd

    from monitor.store.client import Store

__all__ = [
    "CLOCK_SLACK",
    "AcceptanceConfig",
    "acceptance_rates",
    "compare",
    "decisions",
]

# Feedback may be stamped a little before its generation (client clocks); and a trace named by feedback
# is looked up this far around the window, so "its last LLM span" is the trace's, not the window's.
CLOCK_SLACK = dt.timedelta(days=1)
GRADED_KINDS = ("thumbs", "rating")
ACCEPTANCE_KINDS: tuple[str, ...] = ("llm",)  # generations users see; embeddings get no feedback
_KIND = re.compile(r"[a-z][a-z0-9_.:-]{0,63}")  # the collector's rule for feedback kinds
_FEEDBACK, _SCORES = "__FEEDBACK__", "__SCORES__"
# An output toxicity score row (alias ``s``) that counts as toxic: at the threshold, or labelled toxic.
_TOXIC = "s.value >= {tox:Float64} OR has(arrayMap(x -> trimBoth(x), splitByChar(',', s.label)), 'toxic')"


def _problem(message: str) -> AnalyzerConfigError:
    return AnalyzerConfigError(f"analyzers: acceptance: {message}")


@dataclass(frozen=True)
class AcceptanceConfig:
    """How feedback becomes accepted/rejected, and the defaults of :func:`compare` (see module doc).

    Validated on construction; :meth:`from_options` reads the YAML mapping. Every problem is one
    :class:`~monitor.analyzers.base.AnalyzerConfigError` line.
    """

    accepted: tuple[str, ...] = ("accept", "copy")
    rejected: tuple[str, ...] = ("reject", "regenerate", "edit")
    thumbs_threshold: float = 0.0
    rating_threshold: float = 4.0
    rating_reject_threshold: float = 2.0
    confidence: float = 0.95  # of the Wilson intervals
    alpha: float = 0.05  # significance level of compare()
    min_samples: int = 30  # per arm and metric, below which compare() runs no test
    toxicity_threshold: float = 0.5  # an output toxicity score at or above it is toxic
    max_samples: int = 10_000  # latency/cost values pulled per arm for the rank test

    def __post_init__(self) -> None:
        for name in ("accepted", "rejected"):
            kinds = getattr(self, name)
            if isinstance(kinds, str) or not isinstance(kinds, (list, tuple)):
                raise _problem(f"{name} must be a list of feedback kinds, got {kinds!r}")
            for k in kinds:
                if not isinstance(k, str) or not _KIND.fullmatch(k):
                    raise _problem(f"{name}: {k!r} is not a feedback kind (a-z 0-9 _ . : -)")
                if k in GRADED_KINDS:
                    raise _problem(f"{name}: {k!r} is decided by {k}_threshold; do not list it")
            object.__setattr__(self, name, tuple(kinds))
        both = sorted(set(self.accepted) & set(self.rejected))
        if both:
            raise _problem(f"{both[0]!r} is listed in both accepted and rejected")
        for name in ("thumbs_threshold", "rating_threshold", "rating_reject_threshold", "toxicity_threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
                raise _problem(f"{name} must be a number, got {v!r}")
            object.__setattr__(self, name, float(v))
        if self.rating_reject_threshold > self.rating_threshold:
            raise _problem(
                f"rating_reject_threshold ({self.rating_reject_threshold:g}) is above "
                f"rating_threshold ({self.rating_threshold:g})"
            )
        for name in ("confidence", "alpha"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v < 1.0:
                raise _problem(f"{name} must be a number between 0 and 1 (exclusive), got {v!r}")
        for name in ("min_samples", "max_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise _problem(f"{name} must be a positive integer, got {v!r}")
        if self.max_samples < self.min_samples:
            raise _problem(f"max_samples ({self.max_samples}) is below min_samples ({self.min_samples})")

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> AcceptanceConfig:
        """The config from the ``analyzers: acceptance:`` mapping (``None``: defaults)."""
        if options is None:
            return cls()
        if not isinstance(options, Mapping):
            raise _problem(f"expected a mapping of options, got {type(options).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in options if k not in known)
        if unknown:
            raise _problem(f"unknown option {unknown[0]!r} (known: {', '.join(known)})")
        return cls(**dict(options))

    @classmethod
    def from_config_file(cls, config_file: str | Path | None) -> AcceptanceConfig:
        """The ``analyzers: acceptance:`` section of the YAML config (defaults without file or section).

        Scheduler keys (``enabled``, ``interval``…) are ignored, so the section can also configure a job.
        Problems are one :class:`~monitor.settings.ConfigError` line naming the file.
        """
        from monitor.analyzers.config import JOB_KEYS, read_config_section
        from monitor.settings import ConfigError

        section, where = read_config_section(config_file)
        raw = section.get("acceptance") if isinstance(section, Mapping) else None
        try:
            if raw is not None and not isinstance(raw, Mapping):
                raise _problem(f"expected a mapping of options, got {type(raw).__name__}")
            return cls.from_options({k: v for k, v in (raw or {}).items() if k not in JOB_KEYS})
        except AnalyzerConfigError as e:
            raise ConfigError(f"{where}: {e}") from None

    def classify(self, kind: str, value: float) -> bool | None:
        """``True`` accepted, ``False`` rejected, ``None`` not a decision: the rule the SQL applies."""
        if kind == "thumbs":
            return value > self.thumbs_threshold
        if kind == "rating":
            if value >= self.rating_threshold:
                return True
            return False if value <= self.rating_reject_threshold else None
        if value <= 0:
            return None
        if kind in self.accepted:
            return True
        return False if kind in self.rejected else None

    def _sql(self, params: dict[str, Any]) -> str:
        """:meth:`classify` as a ClickHouse expression over ``feedback`` (Nullable(UInt8)); binds params."""
        params.update(
            acc_thumbs=self.thumbs_threshold,
            acc_rating=self.rating_threshold,
            acc_rating_reject=self.rating_reject_threshold,
            acc_accepted=list(self.accepted),
            acc_rejected=list(self.rejected),
        )
        return """multiIf(
            kind = 'thumbs', toNullable(toUInt8(value > {acc_thumbs:Float64})),
            kind = 'rating', multiIf(value >= {acc_rating:Float64}, 1,
                                     value <= {acc_rating_reject:Float64}, 0, NULL),
            value <= 0, NULL,
            has({acc_accepted:Array(String)}, kind), 1,
            has({acc_rejected:Array(String)}, kind), 0,
            NULL)"""


def _config(config: AcceptanceConfig | Mapping[str, Any] | None) -> AcceptanceConfig:
    if isinstance(config, AcceptanceConfig):
        return config
    return AcceptanceConfig.from_options(config)


# --- SQL ---------------------------------------------------------------------------------------------


def _run_df(store: Store, sql: str, params: Mapping[str, Any]) -> pd.DataFrame:
    sql = sql.replace(_FEEDBACK, store.table("feedback")).replace(_SCORES, store.table("scores"))
    return metrics._run_df(store, sql, params)


def _decided_sql(
    cfg: AcceptanceConfig,
    params: dict[str, Any],
    *,
    start: dt.datetime,
    end: dt.datetime,
    project: str | None,
    gen_where: str,
    gen_select: Sequence[str],
) -> str:
    """``WITH gen, …, decided``: the window's generations (``gen``, with ``gen_select`` columns) and one
    decision per LLM span that has any (``decided``: project, trace_id, span_id, decision 1/0,
    decided_by, decided_at, events). The caller appends the final SELECT."""
    params["fb_start"] = start - CLOCK_SLACK
    params["outer_start"], params["outer_end"] = start - CLOCK_SLACK, end + CLOCK_SLACK
    on_project = "project = {project:String} AND " if project else ""
    outer = (
        f"{on_project}start_time >= {{outer_start:{metrics._UTC64}}}"
        f" AND start_time < {{outer_end:{metrics._UTC64}}}"
    )
    extra = "".join(f", {s}" for s in gen_select)
    return f"""
    WITH
    gen AS (
        SELECT project, trace_id, span_id, start_time{extra}
        FROM {metrics._SPANS} FINAL
        WHERE {gen_where}
    ),
    fb AS (
        SELECT project, trace_id, span_id, response_id, kind, feedback_id, created_at,
               toUInt8(assumeNotNull(decision_n)) AS decision
        FROM (
            SELECT project, trace_id, span_id, response_id, kind, feedback_id, created_at,
                   {cfg._sql(params)} AS decision_n
            FROM {_FEEDBACK} FINAL
            WHERE {on_project}created_at >= {{fb_start:DateTime64(6, 'UTC')}}
        )
        WHERE decision_n IS NOT NULL
    ),
    fbt AS (  -- the trace each feedback names: its own trace_id, else the trace of its span_id
        SELECT f.project AS project, f.trace_id AS trace_id, f.span_id AS span_id,
               f.response_id AS response_id, f.kind AS kind, f.feedback_id AS feedback_id,
               f.created_at AS created_at, f.decision AS decision,
               if(f.trace_id != '', f.trace_id, o.trace_id) AS via_trace
        FROM fb AS f
        LEFT JOIN (
            SELECT project, span_id, any(trace_id) AS trace_id
            FROM {metrics._SPANS}
            WHERE {outer} AND span_id IN (SELECT span_id FROM fb WHERE trace_id = '' AND span_id != '')
            GROUP BY project, span_id
        ) AS o ON f.project = o.project AND f.span_id = o.span_id
    ),
    cand AS (  -- the LLM spans any feedback can name, around the window; is_last: its trace's last
        SELECT project, trace_id, span_id, response_id,
               span_id = argMax(span_id, (start_time, span_id)) OVER (PARTITION BY project, trace_id) AS is_last
        FROM {metrics._SPANS} FINAL
        WHERE {outer} AND kind IN {{kinds:Array(String)}}
          AND (response_id IN (SELECT response_id FROM fb WHERE response_id != '')
               OR span_id IN (SELECT span_id FROM fb WHERE span_id != '')
               OR trace_id IN (SELECT via_trace FROM fbt WHERE via_trace != ''))
    ),
    matches AS (  -- one equi-join on (priority, id): 1 response_id, 2 span_id, 3 trace → last LLM span
        SELECT f.project AS project, f.feedback_id AS feedback_id, f.kind AS kind,
               f.created_at AS created_at, f.decision AS decision, f.k.1 AS prio,
               c.trace_id AS t_trace, c.span_id AS t_span
        FROM (
            SELECT project, trace_id, span_id, k
            FROM cand
            ARRAY JOIN arrayFilter(x -> x.2 != '',
                [(1, response_id), (2, span_id), (3, if(is_last, trace_id, ''))]) AS k
        ) AS c
        INNER JOIN (
            SELECT project, feedback_id, kind, created_at, decision, k
            FROM fbt
            ARRAY JOIN arrayFilter(x -> x.2 != '', [(1, response_id), (2, span_id), (3, via_trace)]) AS k
        ) AS f ON f.project = c.project AND f.k = c.k
    ),
    resolved AS (  -- each feedback row on its most specific span
        SELECT project, kind, created_at, any(decision) AS decision,
               argMin((t_trace, t_span), (prio, t_trace, t_span)) AS target
        FROM matches GROUP BY project, feedback_id, kind, created_at
    ),
    decided AS (  -- each span's latest decisive event; rejected wins a tie
        SELECT project, target.1 AS trace_id, target.2 AS span_id,
               argMax(decision, (created_at, 1 - decision)) AS decision,
               argMax(kind, (created_at, 1 - decision)) AS decided_by,
               max(created_at) AS decided_at, count() AS events
        FROM resolved GROUP BY project, target
    )
    """


def _gen_where(
    params: dict[str, Any],
    *,
    start: dt.datetime,
    end: dt.datetime,
    project: str | None,
    service: str | Sequence[str] | None,
    model: str | Sequence[str] | None,
    kinds: Sequence[str],
) -> str:
    where, p = metrics._where(
        start=start, end=end, project=project, service=service, model=model, kinds=kinds
    )
    params.update(p)
    return where


_JOIN_DECIDED = (
    "LEFT JOIN decided AS d ON g.project = d.project AND g.trace_id = d.trace_id AND g.span_id = d.span_id"
)


# --- public functions --------------------------------------------------------------------------------


def decisions(
    store: Store,
    *,
    start: dt.datetime,
    end: dt.datetime,
    project: str | None = None,
    service: str | Sequence[str] | None = None,
    model: str | Sequence[str] | None = None,
    config: AcceptanceConfig | Mapping[str, Any] | None = None,
    kinds: Sequence[str] = ACCEPTANCE_KINDS,
) -> pd.DataFrame:
    """The generations of the window that have a decision, one row each, oldest first.

    Columns: ``project, trace_id, span_id, start_time, decision`` (``accepted``/``rejected``),
    ``decided_by`` (the feedback kind that decided), ``decided_at``, ``events`` (decisive feedback rows
    resolved to the span). What :func:`acceptance_rates` counts, for drilling into a number.
    """
    cfg = _config(config)
    s, e = metrics._window(start, end)
    params: dict[str, Any] = {}
    where = _gen_where(params, start=s, end=e, project=project, service=service, model=model, kinds=kinds)
    sql = _decided_sql(cfg, params, start=s, end=e, project=project, gen_where=where, gen_select=())
    sql += """
    SELECT g.project AS project, g.trace_id AS trace_id, g.span_id AS span_id, g.start_time AS start_time,
           if(d.decision = 1, 'accepted', 'rejected') AS decision, d.decided_by AS decided_by,
           d.decided_at AS decided_at, d.events AS events
    FROM gen AS g INNER JOIN decided AS d
        ON g.project = d.project AND g.trace_id = d.trace_id AND g.span_id = d.span_id
    ORDER BY start_time, trace_id, span_id
    """
    return metrics._as_utc_columns(_run_df(store, sql, params), "start_time", "decided_at")


def acceptance_rates(
    store: Store,
    *,
    start: dt.datetime,
    end: dt.datetime,
    by: Sequence[str] = ("prompt_name", "prompt_version"),
    bucket_seconds: int | None = None,
    project: str | None = None,
    service: str | Sequence[str] | None = None,
    model: str | Sequence[str] | None = None,
    config: AcceptanceConfig | Mapping[str, Any] | None = None,
    kinds: Sequence[str] = ACCEPTANCE_KINDS,
) -> pd.DataFrame:
    """Acceptance per segment (``by``: :data:`monitor.metrics.SEGMENT_COLUMNS` or ``attributes.<key>`` /
    ``resource.<key>``) and, with ``bucket_seconds``, per time bucket of the generations' start.

    Columns: ``[bucket], <by…>, generations`` (LLM spans), ``accepted, rejected, n`` (= accepted +
    rejected: generations with a decision), ``rate`` (accepted / n), ``ci_low, ci_high`` (Wilson at
    ``config.confidence``), ``coverage`` (n / generations). ``rate`` and its interval are NaN when n = 0:
    no feedback is not a 0 % acceptance. Without ``by`` or buckets there is one row, even when empty.
    """
    cfg = _config(config)
    s, e = metrics._window(start, end)
    params: dict[str, Any] = {}
    names = list(by)
    if len(set(names)) != len(names):
        raise ValueError(f"by repeats a segment: {names}")
    select = [f"{metrics.segment_expr(n, i, params)} AS seg_{i}" for i, n in enumerate(names)]
    keys = [f"seg_{i}" for i in range(len(names))]
    if bucket_seconds is not None:
        if int(bucket_seconds) <= 0:
            raise ValueError("bucket_seconds must be a positive number of seconds or None")
        params["bucket"] = int(bucket_seconds)
        select.insert(
            0, "toDateTime(toStartOfInterval(start_time, INTERVAL {bucket:UInt32} SECOND), 'UTC') AS bucket"
        )
        keys.insert(0, "bucket")
    where = _gen_where(params, start=s, end=e, project=project, service=service, model=model, kinds=kinds)
    sql = _decided_sql(cfg, params, start=s, end=e, project=project, gen_where=where, gen_select=select)
    out_keys = ", ".join(f"g.{k} AS {k}" for k in keys)
    grouping = f"GROUP BY {', '.join(keys)} ORDER BY {', '.join(keys)}" if keys else ""
    sql += f"""
    SELECT {out_keys}{", " if keys else ""}
           count() AS generations,
           countIf(d.events > 0 AND d.decision = 1) AS accepted,
           countIf(d.events > 0 AND d.decision = 0) AS rejected
    FROM gen AS g {_JOIN_DECIDED}
    {grouping}
    """
    df = _run_df(store, sql, params)
    df = df.rename(columns={f"seg_{i}": n for i, n in enumerate(names)})
    df["n"] = df["accepted"] + df["rejected"]
    bounds = [
        stats.wilson(int(k), int(n), cfg.confidence) for k, n in zip(df["accepted"], df["n"], strict=True)
    ]
    df["rate"] = [k / n if n else float("nan") for k, n in zip(df["accepted"], df["n"], strict=True)]
    df["ci_low"] = [b[0] if b else float("nan") for b in bounds]
    df["ci_high"] = [b[1] if b else float("nan") for b in bounds]
    df["coverage"] = [n / g if g else float("nan") for n, g in zip(df["n"], df["generations"], strict=True)]
    df = metrics._as_utc_columns(df, "bucket")
    df.attrs["bucket_seconds"] = bucket_seconds
    return df.reset_index(drop=True)


def _arm(arm: Mapping[str, Any], tag: str, base: int, params: dict[str, Any]) -> str:
    """``arm`` (segment → value) as a SQL condition; segment names whitelisted, values bound."""
    if not isinstance(arm, Mapping) or not arm:
        raise ValueError(
            f"arm {tag} must be a non-empty mapping of segment to value, e.g. {{'prompt_version': '2'}}"
        )
    parts = []
    for j, (name, value) in enumerate(sorted(arm.items())):
        if value is None or isinstance(value, (bool, Mapping, list, tuple, set)):
            raise ValueError(f"arm {tag}: {name} must be a single value, got {value!r}")
        params[f"arm_{tag}_{j}"] = str(value)
        parts.append(f"{metrics.segment_expr(name, base + j, params)} = {{arm_{tag}_{j}:String}}")
    return "(" + " AND ".join(parts) + ")"


def compare(
    store: Store,
    *,
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    start: dt.datetime,
    end: dt.datetime,
    project: str | None = None,
    service: str | Sequence[str] | None = None,
    min_samples: int | None = None,
    alpha: float | None = None,
    config: AcceptanceConfig | Mapping[str, Any] | None = None,
    kinds: Sequence[str] = ACCEPTANCE_KINDS,
) -> dict[str, stats.Comparison]:
    """A/B comparison of two arms (e.g. ``a={"prompt_version": "2"}, b={"prompt_version": "3"}``, or two
    models) over the generations of the window. b is compared against a: ``difference = b - a``.

    Returns ``{"acceptance", "toxicity", "latency_ms", "cost_usd"}`` → :class:`monitor.stats.Comparison`:

    - ``acceptance``: accepted / decided generations; z-test or Fisher's exact test, Newcombe interval.
    - ``toxicity``: share of scored outputs (``scores`` analyzer ``toxicity``, metric ``output``) whose
      value is at least ``config.toxicity_threshold`` or whose label lists ``toxic``; same tests.
    - ``latency_ms`` (every call) and ``cost_usd`` (priced calls): Mann–Whitney U on up to
      ``config.max_samples`` values per arm (a deterministic pseudo-random sample: by span id hash),
      effect = difference of medians.

    A metric whose arm has fewer than ``min_samples`` observations has ``status="not enough data"``.
    The arms must be disjoint: they have to differ on at least one segment both name.
    """
    cfg = _config(config)
    alpha = cfg.alpha if alpha is None else alpha
    min_n = cfg.min_samples if min_samples is None else int(min_samples)
    stats.check_test_options(alpha, min_n)
    if not any(k in b and str(a[k]) != str(b[k]) for k in a):
        raise ValueError(f"arms overlap: a={dict(a)} and b={dict(b)} must differ on a segment both name")
    s, e = metrics._window(start, end)
    params: dict[str, Any] = {}
    cond_a, cond_b = _arm(a, "a", 100, params), _arm(b, "b", 200, params)
    arm = f"multiIf({cond_a}, 'a', {cond_b}, 'b', '')"
    where = _gen_where(params, start=s, end=e, project=project, service=service, model=None, kinds=kinds)
    where += f" AND ({cond_a} OR {cond_b})"

    def per_arm(df: pd.DataFrame, column: str) -> tuple[int, int]:
        got = dict(zip(df["arm"], df[column], strict=True))
        return int(got.get("a", 0)), int(got.get("b", 0))

    # acceptance
    sql = _decided_sql(
        cfg, params, start=s, end=e, project=project, gen_where=where, gen_select=[f"{arm} AS arm"]
    )
    sql += f"""
    SELECT g.arm AS arm, countIf(d.events > 0 AND d.decision = 1) AS k, countIf(d.events > 0) AS n
    FROM gen AS g {_JOIN_DECIDED} GROUP BY arm
    """
    df = _run_df(store, sql, params)
    (k_a, k_b), (n_a, n_b) = per_arm(df, "k"), per_arm(df, "n")
    out = {
        "acceptance": stats.compare_proportions(
            "acceptance", k_a, n_a, k_b, n_b, alpha=alpha, min_samples=min_n
        )
    }

    # toxicity
    params["tox"] = cfg.toxicity_threshold
    on_project = "project = {project:String} AND " if project else ""
    sql = f"""
    SELECT g.arm AS arm, count() AS n,
           countIf({_TOXIC}) AS k
    FROM (SELECT project, trace_id, span_id, {arm} AS arm FROM {metrics._SPANS} FINAL WHERE {where}) AS g
    INNER JOIN (
        SELECT project, trace_id, span_id, value, label FROM {_SCORES} FINAL
        WHERE {on_project}span_start_time >= {{start:{metrics._UTC64}}}
          AND span_start_time < {{end:{metrics._UTC64}}} AND analyzer = 'toxicity' AND metric = 'output'
    ) AS s ON g.project = s.project AND g.trace_id = s.trace_id AND g.span_id = s.span_id
    GROUP BY arm
    """
    df = _run_df(store, sql, params)
    (k_a, k_b), (n_a, n_b) = per_arm(df, "k"), per_arm(df, "n")
    out["toxicity"] = stats.compare_proportions(
        "toxicity", k_a, n_a, k_b, n_b, alpha=alpha, min_samples=min_n
    )

    # latency and cost: values per arm, sampled by span hash
    params["cap"] = cfg.max_samples
    sql = f"""
    SELECT {arm} AS arm, duration_ms, cost_usd
    FROM {metrics._SPANS} FINAL WHERE {where}
    ORDER BY arm, cityHash64(trace_id, span_id) LIMIT {{cap:UInt32}} BY arm
    """
    df = _run_df(store, sql, params)
    lat = {x: df.loc[df["arm"] == x, "duration_ms"].astype(float).tolist() for x in ("a", "b")}
    cost = {x: df.loc[df["arm"] == x, "cost_usd"].dropna().astype(float).tolist() for x in ("a", "b")}
    out["latency_ms"] = stats.compare_distributions(
        "latency_ms", lat["a"], lat["b"], alpha=alpha, min_samples=min_n
    )
    out["cost_usd"] = stats.compare_distributions(
        "cost_usd", cost["a"], cost["b"], alpha=alpha, min_samples=min_n
    )
    return out
