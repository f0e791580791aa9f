"""Everything llm-monitor uses from whylogs, behind one small module (whylogs is unmaintained upstream).

A window's profile holds, per feature, a KLL quantile sketch (numeric features) or a frequent-items sketch
(categorical ones), serialized to bytes so the drift job can store it and merge windows later (an hour's
profiles merge into a day, segments merge into ``all``). Distances are computed here from the sketches
themselves, not with whylogs' p-value drift categories, which false-alarm on identical data.

Speed: whylogs' pandas path checks every float with a Python lambda (``np.isinf`` per element, ~1.5 µs a
value). Declaring each column *homogeneous* in the schema takes its vectorised path instead; the caller
guarantees it by passing non-null values only (nulls are counted apart). 1M rows × 13 features profile in
about 3 s instead of about 20.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# whylogs phones home with usage statistics on import unless this is set: a monitoring agent must not.
os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "1")
logging.getLogger("whylogs").setLevel(logging.WARNING)  # it logs every profile read at INFO

if not hasattr(np, "unicode_"):  # whylogs 1.6 still says np.unicode_, which numpy 2 removed
    np.unicode_ = np.str_  # type: ignore[attr-defined]

__all__ = ["Profile", "hellinger", "ks_distance", "psi", "smooth"]

EPS = 1e-6


def _schema(numeric: Sequence[str], categorical: Sequence[str]) -> Any:
    from whylogs.core.datatypes import Fractional
    from whylogs.core.metrics import StandardMetric
    from whylogs.core.preprocessing import ColumnProperties
    from whylogs.core.resolvers import DeclarativeResolver, MetricSpec, ResolverSpec
    from whylogs.core.schema import DatasetSchema

    specs = [
        ResolverSpec(
            column_type=Fractional,
            metrics=[MetricSpec(StandardMetric.counts.value), MetricSpec(StandardMetric.distribution.value)],
        )
    ]
    specs += [
        ResolverSpec(
            column_name=c,
            metrics=[
                MetricSpec(StandardMetric.counts.value),
                MetricSpec(StandardMetric.frequent_items.value),
            ],
        )
        for c in categorical
    ]
    types: dict[str, Any] = {c: (float, ColumnProperties.homogeneous) for c in numeric}
    types.update({c: (str, ColumnProperties.homogeneous) for c in categorical})
    return DatasetSchema(types=types, resolvers=DeclarativeResolver(resolvers=specs))


class Profile:
    """A mergeable, serializable profile of one window (and segment)."""

    def __init__(self, view: Any) -> None:
        self.view = view

    @classmethod
    def build(cls, columns: Mapping[str, Any], numeric: Sequence[str], categorical: Sequence[str]) -> Profile:
        """Profile ``columns`` (name → numpy array or sequence; NaN/None values are left out)."""
        import pandas as pd
        from whylogs.core import DatasetProfile

        prof = DatasetProfile(schema=_schema(numeric, categorical))
        for name in numeric:
            values = np.asarray(columns[name], dtype=float)
            values = values[np.isfinite(values)]
            if values.size:
                prof.track(pandas=pd.DataFrame({name: values}))
        for name in categorical:
            raw = np.asarray(columns[name], dtype=object)
            keep = np.array([isinstance(v, str) for v in raw], dtype=bool) if raw.size else raw.astype(bool)
            values = raw[keep].astype(str)
            if values.size:
                prof.track(pandas=pd.DataFrame({name: values}))
        return cls(prof.view())

    @classmethod
    def empty(cls) -> Profile:
        from whylogs.core import DatasetProfile

        return cls(DatasetProfile().view())

    def serialize(self) -> bytes:
        """The profile's bytes; ``b""`` for a profile without columns (whylogs warns reading those back)."""
        if not self.view.get_columns():
            return b""
        out: bytes = self.view.serialize()
        return out

    @classmethod
    def deserialize(cls, data: bytes) -> Profile:
        if not data:
            return cls.empty()
        from whylogs.core import DatasetProfileView

        return cls(DatasetProfileView.deserialize(data))

    def merge(self, other: Profile) -> Profile:
        return Profile(self.view.merge(other.view))

    # -- reading features ------------------------------------------------------------------------------
    def _metric(self, feature: str, metric: str) -> Any:
        col = self.view.get_column(feature)
        if col is None:
            return None
        return col.get_metric(metric)

    def count(self, feature: str) -> int:
        m = self._metric(feature, "counts")
        return 0 if m is None else int(m.n.value)

    def kll(self, feature: str) -> Any:
        """The feature's KLL sketch, or None when the profile never saw a value of it."""
        m = self._metric(feature, "distribution")
        if m is None or m.kll.value.is_empty():
            return None
        return m.kll.value

    def frequencies(self, feature: str) -> dict[str, float]:
        """Estimated count per category (frequent-items sketch; exact for the few categories LLM apps use)."""
        m = self._metric(feature, "frequent_items")
        if m is None:
            return {}
        items = m.to_summary_dict().get("frequent_strings", [])
        return {str(it.value): float(it.est) for it in items}


# -- distances between two distributions (symmetric in spirit; ``a`` is the baseline) -----------------


def _bins(a: Any, b: Any, n_bins: int) -> np.ndarray:
    """Inner split points: the deciles of both samples, deduplicated (discrete features get one bin per
    value, so a baseline of all zeros still tells apart a window with some ones)."""
    probs = [i / n_bins for i in range(1, n_bins)]
    qs = np.concatenate(
        [np.asarray(a.get_quantiles(probs), dtype=float), np.asarray(b.get_quantiles(probs), dtype=float)]
    )
    splits = np.unique(qs[np.isfinite(qs)])
    if splits.size == 0:  # a constant baseline: split at its value so any change shows
        splits = np.asarray([float(a.get_min_value())])
    return splits


def _masses(sketch: Any, splits: np.ndarray) -> np.ndarray:
    """Probability mass per bin (-inf, s1), [s1, s2) … [sk, inf) of a KLL sketch."""
    cdf = np.asarray(sketch.get_cdf(list(splits)), dtype=float)  # k+1 values, last is 1.0
    return np.diff(np.concatenate([[0.0], cdf]))


def numeric_masses(a: Any, b: Any, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    splits = _bins(a, b, n_bins)
    return _masses(a, splits), _masses(b, splits)


def category_masses(a: Mapping[str, float], b: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    keys = sorted(set(a) | set(b))
    pa = np.asarray([a.get(k, 0.0) for k in keys], dtype=float)
    pb = np.asarray([b.get(k, 0.0) for k in keys], dtype=float)
    return pa / max(pa.sum(), EPS), pb / max(pb.sum(), EPS)


def hellinger(p: np.ndarray, q: np.ndarray) -> float:
    """Hellinger distance in [0, 1] between two probability vectors."""
    bc = float(np.sum(np.sqrt(np.clip(p, 0, None) * np.clip(q, 0, None))))
    return math.sqrt(max(0.0, 1.0 - min(1.0, bc)))


def smooth(p: np.ndarray, n: int) -> np.ndarray:
    """Bin masses of a sample of ``n`` with half a count added to every bin (Jeffreys), so an empty bin in a
    small window gives a finite PSI instead of ln(1e-6)."""
    k = len(p)
    return (np.asarray(p, dtype=float) * n + 0.5) / (n + 0.5 * k)


def psi(p: np.ndarray, q: np.ndarray) -> float:
    """Population stability index Σ (q − p) ln(q / p), empty bins smoothed by ``EPS``."""
    p = np.clip(p, EPS, None)
    q = np.clip(q, EPS, None)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_distance(a: Any, b: Any, points: int = 200) -> float:
    """Two-sample Kolmogorov–Smirnov statistic, sup |F_a − F_b|, evaluated on both sketches' quantiles."""
    grid = np.unique(
        np.concatenate(
            [
                np.asarray(a.get_quantiles(list(np.linspace(0, 1, points))), dtype=float),
                np.asarray(b.get_quantiles(list(np.linspace(0, 1, points))), dtype=float),
            ]
        )
    )
    grid = grid[np.isfinite(grid)]
    if grid.size == 0:
        return 0.0
    # get_cdf gives P(X < x); evaluate just above each point to get P(X <= x) for ties
    upper = np.nextafter(grid, np.inf)
    fa = np.asarray(a.get_cdf(list(upper)), dtype=float)[:-1]
    fb = np.asarray(b.get_cdf(list(upper)), dtype=float)[:-1]
    return float(np.max(np.abs(fa - fb)))
