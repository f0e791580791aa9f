"""Drift: per window and segment, how far this window's distributions moved from a baseline.

For every completed window (``windows``, e.g. ``["1h", "1d"]``) and project, the job profiles the LLM spans
that started in it, per segment (``all``, ``service=…``, ``model=…``, ``prompt=name@version``), and stores
the profiles in ``profiles`` (whylogs sketches, mergeable). It then compares each segment with the same
segment of the baseline — the previous window, or a pinned period (``baseline: {start, end}``) — and writes
one ``drift`` row per (window, segment, feature, method) with ``drifted`` set.

Features: per-span numbers (input/output length in characters, input/output tokens, latency, TTFT, cost,
and the toxicity, refusal, PII and sentiment scores the analyzers stored) and categoricals (model, finish
reason); plus embedding drift of inputs and outputs (``monitor.analyzers.embedding_drift``).

Methods and thresholds (``drifted`` = score > threshold). Each threshold is the configured distance or the
distance two samples of these sizes from one distribution would reach by chance, whichever is larger, so a
window of 40 spans does not alarm on noise and a window of a million does not hide a real shift:

* ``hellinger`` (numeric: over the baseline's deciles; categorical: over the categories), in [0, 1].
  Chance level: E[H²] ≈ (k − 1)(1/n₁ + 1/n₂)/8 for k bins; threshold max(``hellinger``, 2·√E[H²]).
* ``psi`` (same bins): chance level ≈ (k − 1)(1/n₁ + 1/n₂); threshold max(``psi``, 3 × that).
* ``ks`` (numeric): the two-sample KS statistic; threshold max(``ks``, the α = 0.01 critical value
  1.628·√((n₁ + n₂)/(n₁n₂))).

Memory stays bounded: a window is read in hash-partitioned chunks of at most ``chunk_rows`` spans, each
profiled and merged. Idempotent: ``profiles`` and ``drift`` are ReplacingMergeTrees keyed by window,
segment, feature and method; a window is computed once it has ended (and the horizon passed it).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from monitor.analyzers._whylogs import (
    Profile,
    category_masses,
    hellinger,
    ks_distance,
    numeric_masses,
    psi,
    smooth,
)
from monitor.analyzers.base import AnalyzerConfigError

if TYPE_CHECKING:
    from monitor.analyzers.config import AnalyzerSettings
    from monitor.analyzers.scheduler import Progress
    from monitor.settings import Settings
    from monitor.store.client import Store

__all__ = ["CATEGORICAL", "NUMERIC", "DriftJob", "DriftOptions", "parse_duration"]

log = logging.getLogger("llm_monitor.analyzers")

# feature -> SQL over spans `s` and the pivoted scores `sc`
NUMERIC: dict[str, str] = {
    "input_chars": "toFloat64(lengthUTF8(s.input_text))",
    "output_chars": "toFloat64(lengthUTF8(s.output_text))",
    "input_tokens": "toFloat64(s.input_tokens)",
    "output_tokens": "toFloat64(s.output_tokens)",
    "latency_ms": "s.duration_ms",
    "ttft_ms": "s.ttft_ms",
    "cost_usd": "s.cost_usd",
    "toxicity": "sc.toxicity",
    "refusal": "sc.refusal",
    "pii": "sc.pii",
    "sentiment": "sc.sentiment",
}
CATEGORICAL: dict[str, str] = {"model": "s.model", "finish_reason": "s.finish_reason"}
SCORE_FEATURES = {  # feature -> (analyzer, metric)
    "toxicity": ("toxicity", "output"),
    "refusal": ("refusal", "output"),
    "pii": ("pii", "output"),
    "sentiment": ("sentiment", "input"),
}
SEGMENTS = ("all", "service", "model", "prompt")
N_BINS = 10
KS_C_01 = 1.628  # c(α) of the two-sample KS test at α = 0.01


def parse_duration(text: Any, where: str = "analyzers: drift") -> int:
    """``"1h"``/``"30m"``/``"1d"``/``"45s"`` or a number of seconds → seconds (≥ 10)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = int(text)
    else:
        m = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", str(text))
        if not m:
            raise AnalyzerConfigError(f"{where}: bad window {text!r} (expected e.g. 1h, 30m, 1d)")
        seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    if seconds < 10:
        raise AnalyzerConfigError(f"{where}: window {text!r} is shorter than 10 s")
    return seconds


@dataclass(frozen=True)
class DriftOptions:
    windows: tuple[int, ...] = (3600, 86400)
    segments: tuple[str, ...] = SEGMENTS
    baseline: tuple[dt.datetime, dt.datetime] | None = None  # pinned period; None = previous window
    min_samples: int = 30
    lookback: int = 3  # completed windows (per width) to fill when missing
    chunk_rows: int = 200_000
    hellinger: float = 0.1
    psi: float = 0.2
    ks: float = 0.1
    embedding: Mapping[str, Any] | None = None

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> DriftOptions:
        where = "analyzers: drift"
        known = {
            "windows", "segments", "baseline", "min_samples", "lookback", "chunk_rows", "thresholds",
            "embedding",
        }  # fmt: skip
        unknown = sorted(set(options) - known)
        if unknown:
            raise AnalyzerConfigError(
                f"{where}: unknown option {unknown[0]!r} (known: {', '.join(sorted(known))})"
            )
        windows = options.get("windows", ["1h", "1d"])
        if not isinstance(windows, list) or not windows:
            raise AnalyzerConfigError(f"{where}: windows must be a list like [1h, 1d]")
        segments = options.get("segments", list(SEGMENTS))
        if not isinstance(segments, list) or any(s not in SEGMENTS for s in segments):
            raise AnalyzerConfigError(f"{where}: segments must be a list of {', '.join(SEGMENTS)}")
        baseline = options.get("baseline", "previous")
        pinned = None
        if isinstance(baseline, Mapping):
            try:
                start, end = (_aware(baseline[k]) for k in ("start", "end"))
            except (KeyError, TypeError, ValueError):
                raise AnalyzerConfigError(
                    f"{where}: baseline must be 'previous' or {{start: ISO time, end: ISO time}}"
                ) from None
            if end <= start:
                raise AnalyzerConfigError(f"{where}: baseline end must be after its start")
            pinned = (start, end)
        elif baseline != "previous":
            raise AnalyzerConfigError(f"{where}: baseline must be 'previous' or {{start: ..., end: ...}}")
        th = options.get("thresholds", {})
        if not isinstance(th, Mapping) or set(th) - {"hellinger", "psi", "ks"}:
            raise AnalyzerConfigError(f"{where}: thresholds takes hellinger, psi and ks")
        for k, v in th.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise AnalyzerConfigError(f"{where}: thresholds: {k} must be a positive number, got {v!r}")
        ints = {}
        for key, default in (("min_samples", 30), ("lookback", 3), ("chunk_rows", 200_000)):
            v = options.get(key, default)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise AnalyzerConfigError(f"{where}: {key} must be a whole number >= 1, got {v!r}")
            ints[key] = v
        emb = options.get("embedding", {})
        if isinstance(emb, bool):
            emb = {"enabled": emb}
        if not isinstance(emb, Mapping):
            raise AnalyzerConfigError(f"{where}: embedding must be a mapping or true/false")
        return cls(
            windows=tuple(sorted({parse_duration(w) for w in windows})),
            segments=tuple(segments),
            baseline=pinned,
            hellinger=float(th.get("hellinger", 0.1)),
            psi=float(th.get("psi", 0.2)),
            ks=float(th.get("ks", 0.1)),
            embedding=dict(emb),
            **ints,
        )


def _aware(v: Any) -> dt.datetime:
    t = v if isinstance(v, dt.datetime) else dt.datetime.fromisoformat(str(v))
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)


def thresholds(method: str, k: int, n1: int, n2: int, opts: DriftOptions) -> float:
    """The distance above which a shift is reported (see the module docstring)."""
    inv = 1.0 / max(n1, 1) + 1.0 / max(n2, 1)
    if method == "hellinger":
        return max(opts.hellinger, 2.0 * math.sqrt(max(k - 1, 1) * inv / 8.0))
    if method == "psi":
        return max(opts.psi, 3.0 * max(k - 1, 1) * inv)
    if method == "ks":
        return max(opts.ks, KS_C_01 * math.sqrt(inv))
    raise ValueError(method)


def compare(
    current: Profile, baseline: Profile, opts: DriftOptions
) -> list[tuple[str, str, float, float, int, int]]:
    """(feature, method, score, threshold, n_current, n_baseline) for every feature both profiles have."""
    out = []
    for feature in NUMERIC:
        a, b = baseline.kll(feature), current.kll(feature)
        if a is None or b is None:
            continue
        na, nb = int(a.get_n()), int(b.get_n())
        if min(na, nb) < opts.min_samples:
            continue
        p, q = numeric_masses(a, b, N_BINS)
        k = len(p)
        out.append((feature, "hellinger", hellinger(p, q), thresholds("hellinger", k, nb, na, opts), nb, na))
        out.append(
            (feature, "psi", psi(smooth(p, na), smooth(q, nb)), thresholds("psi", k, nb, na, opts), nb, na)
        )
        out.append((feature, "ks", ks_distance(a, b), thresholds("ks", k, nb, na, opts), nb, na))
    for feature in CATEGORICAL:
        fa, fb = baseline.frequencies(feature), current.frequencies(feature)
        na, nb = int(sum(fa.values())), int(sum(fb.values()))
        if min(na, nb) < opts.min_samples:
            continue
        p, q = category_masses(fa, fb)
        k = len(p)
        out.append((feature, "hellinger", hellinger(p, q), thresholds("hellinger", k, nb, na, opts), nb, na))
        out.append(
            (feature, "psi", psi(smooth(p, na), smooth(q, nb)), thresholds("psi", k, nb, na, opts), nb, na)
        )
    return out


class DriftJob:
    """The scheduler's drift job (``analyzers: drift:`` in the config)."""

    name = "drift"

    def __init__(self, settings: AnalyzerSettings, app_settings: Settings | None = None) -> None:
        self.settings = settings
        self.options = DriftOptions.parse(settings.options)

    # -- reading a window ------------------------------------------------------------------------------
    def _sql(self, store: Store, chunks: int) -> str:
        pivot = ", ".join(
            f"maxIf(value, analyzer = '{a}' AND metric = '{m}') AS {f}"
            for f, (a, m) in SCORE_FEATURES.items()
        )
        analyzers = ", ".join(f"'{a}'" for a, _ in SCORE_FEATURES.values())
        features = ", ".join(f"{expr} AS `{f}`" for f, expr in {**NUMERIC, **CATEGORICAL}.items())
        chunk = f"AND cityHash64(s.span_id) % {chunks} = {{chunk:UInt32}}" if chunks > 1 else ""
        # joined on span_id alone: 64-bit random ids, and a one-key join is twice as fast as two keys
        return (
            f"SELECT cityHash64(s.service, s.model, s.prompt_name, s.prompt_version) AS seg, "
            f"s.service AS seg_service, s.model AS seg_model, "
            f"if(s.prompt_name = '', '', concat(s.prompt_name, '@', s.prompt_version)) AS seg_prompt, {features} "
            f"FROM {store.table('spans')} AS s FINAL "
            f"LEFT JOIN (SELECT span_id, {pivot} FROM {store.table('scores')} FINAL "
            f"  WHERE project = {{project:String}} AND span_start_time >= {{start:DateTime64(9, 'UTC')}} "
            f"  AND span_start_time < {{end:DateTime64(9, 'UTC')}} AND analyzer IN ({analyzers}) "
            f"  GROUP BY span_id) AS sc ON sc.span_id = s.span_id "
            f"WHERE s.project = {{project:String}} AND s.kind = 'llm' "
            f"AND s.start_time >= {{start:DateTime64(9, 'UTC')}} AND s.start_time < {{end:DateTime64(9, 'UTC')}} {chunk}"
        )

    def profile_window(
        self, store: Store, project: str, start: dt.datetime, end: dt.datetime
    ) -> dict[str, Profile]:
        """Profiles of every segment of ``[start, end)`` (``all`` always present, possibly empty)."""
        params: dict[str, Any] = {"project": project, "start": start, "end": end}
        n = int(
            store.scalar(
                f"SELECT count() FROM {store.table('spans')} FINAL WHERE project = {{project:String}} "
                "AND kind = 'llm' AND start_time >= {start:DateTime64(9, 'UTC')} AND start_time < {end:DateTime64(9, 'UTC')}",
                params,
            )
            or 0
        )
        out: dict[str, Profile] = {}
        chunks = max(1, math.ceil(n / self.options.chunk_rows))
        sql = self._sql(store, chunks)
        for i in range(chunks if n else 0):
            r = store.query(sql, {**params, "chunk": i}, settings={"join_use_nulls": 1})
            self._profile_chunk(dict(zip(r.column_names, r.result_columns, strict=True)), out)
        out.setdefault("all", Profile.empty())
        return out

    def _profile_chunk(self, cols: Mapping[str, Sequence[Any]], out: dict[str, Profile]) -> None:
        """Profile one chunk per finest segment (service, model, prompt), merged into every reported one."""
        if not cols or not len(cols["seg"]):
            return
        seg = np.asarray(cols["seg"], dtype=np.uint64)
        _, first, inverse = np.unique(seg, return_index=True, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(first) + 1))
        numeric = {f: np.asarray(cols[f], dtype=float) for f in NUMERIC}  # None → NaN (left out)
        categorical = {f: np.asarray(cols[f], dtype=object) for f in CATEGORICAL}
        for g, row in enumerate(first):
            idx = order[bounds[g] : bounds[g + 1]]
            group: dict[str, Any] = {f: v[idx] for f, v in numeric.items()}
            group.update({f: v[idx] for f, v in categorical.items()})
            prof = Profile.build(group, list(NUMERIC), list(CATEGORICAL))
            labels = (
                str(cols["seg_service"][row]),
                str(cols["seg_model"][row]),
                str(cols["seg_prompt"][row]),
            )
            for name in self._segments_of(*labels):
                out[name] = out[name].merge(prof) if name in out else prof

    def _segments_of(self, service: str, model: str, prompt: str) -> Iterable[str]:
        for dim in self.options.segments:
            if dim == "all":
                yield "all"
            elif dim == "service" and service:
                yield f"service={service}"
            elif dim == "model" and model:
                yield f"model={model}"
            elif dim == "prompt" and prompt:
                yield f"prompt={prompt}"

    # -- stored profiles -------------------------------------------------------------------------------
    def load_profiles(
        self, store: Store, project: str, width: int, start: dt.datetime
    ) -> dict[str, tuple[int, Profile]]:
        rows = store.query(
            f"SELECT segment, n, profile FROM {store.table('profiles')} FINAL WHERE project = {{p:String}} "
            "AND width = {w:UInt32} AND window_start = {s:DateTime64(3, 'UTC')}",
            {"p": project, "w": width, "s": start},
        ).result_rows
        return {seg: (int(n), Profile.deserialize(base64.b64decode(blob))) for seg, n, blob in rows}

    def save_profiles(
        self,
        store: Store,
        project: str,
        width: int,
        start: dt.datetime,
        end: dt.datetime,
        profiles: Mapping[str, Profile],
    ) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        rows = [
            (
                project,
                width,
                start,
                end,
                seg,
                p.count("latency_ms"),
                base64.b64encode(p.serialize()).decode(),
                now,
            )
            for seg, p in profiles.items()
        ]
        store.insert(
            "profiles",
            rows,
            ["project", "width", "window_start", "window_end", "segment", "n", "profile", "created_at"],
        )

    def window_profiles(
        self, store: Store, project: str, width: int, start: dt.datetime, end: dt.datetime
    ) -> dict[str, Profile]:
        stored = self.load_profiles(store, project, width, start)
        if stored:
            return {seg: p for seg, (_, p) in stored.items()}
        profiles = self.profile_window(store, project, start, end)
        self.save_profiles(store, project, width, start, end, profiles)
        return profiles

    # -- the job ---------------------------------------------------------------------------------------
    def pending_windows(
        self, store: Store, horizon: dt.datetime
    ) -> list[tuple[int, dt.datetime, dt.datetime]]:
        """Completed windows (width, start, end) within ``lookback`` that have no drift result yet."""
        out = []
        for width in self.options.windows:
            last_end = _floor(horizon, width)
            for i in range(self.options.lookback, 0, -1):
                end = last_end - dt.timedelta(seconds=width * (i - 1))
                start = end - dt.timedelta(seconds=width)
                done = store.scalar(
                    f"SELECT count() FROM {store.table('profiles')} WHERE width = {{w:UInt32}} "
                    "AND window_start = {s:DateTime64(3, 'UTC')} AND segment = 'all' AND created_at >= {e:DateTime64(3, 'UTC')}",
                    {"w": width, "s": start, "e": end},
                )
                if not done:
                    out.append((width, start, end))
        return out

    def run(self, store: Store, horizon: dt.datetime, progress: Progress | None = None) -> int:
        """Profile and compare every pending window; returns the number of drift rows written."""
        written = 0
        for width, start, end in self.pending_windows(store, horizon):
            projects = [
                r[0]
                for r in store.query(
                    f"SELECT DISTINCT project FROM {store.table('spans')} WHERE start_time >= {{s:DateTime64(9, 'UTC')}} "
                    "AND start_time < {e:DateTime64(9, 'UTC')} AND kind = 'llm'",
                    {"s": start, "e": end},
                ).result_rows
            ]
            if not projects:  # nothing to compare: mark the window done for the default project
                self.save_profiles(store, "default", width, start, end, {"all": Profile.empty()})
                continue
            for project in projects:
                written += self.run_window(store, project, width, start, end)
        return written

    def run_window(self, store: Store, project: str, width: int, start: dt.datetime, end: dt.datetime) -> int:
        # the window itself is always profiled afresh (it may have been stored before it was complete)
        current = self.profile_window(store, project, start, end)
        self.save_profiles(store, project, width, start, end, current)
        if self.options.baseline is not None:
            b_start, b_end = self.options.baseline
            baseline = self.window_profiles(store, project, 0, b_start, b_end)
        else:
            b_start, b_end = start - dt.timedelta(seconds=width), start
            baseline = self.window_profiles(store, project, width, b_start, b_end)
        now = dt.datetime.now(dt.timezone.utc)
        rows = []
        for seg, prof in current.items():
            base = baseline.get(seg)
            if base is None:
                continue
            for feature, method, score, threshold, n_cur, n_base in compare(prof, base, self.options):
                rows.append(
                    (project, start, end, b_start, b_end, seg, feature, method, float(score), float(threshold),
                     bool(score > threshold), n_cur, n_base, now)
                )  # fmt: skip
        emb = self.options.embedding or {}
        if emb.get("enabled", True) and "all" in current:
            from monitor.analyzers.embedding_drift import embedding_drift_rows

            rows += embedding_drift_rows(store, project, (start, end), (b_start, b_end), emb, now)
        if rows:
            cols = [
                "project", "window_start", "window_end", "baseline_start", "baseline_end", "segment", "feature",
                "method", "score", "threshold", "drifted", "sample_size", "baseline_size", "created_at",
            ]  # fmt: skip
            store.insert("drift", rows, cols)
        return len(rows)


def _floor(t: dt.datetime, width: int) -> dt.datetime:
    epoch = int(t.timestamp())
    return dt.datetime.fromtimestamp(epoch - epoch % width, dt.timezone.utc)
