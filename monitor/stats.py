"""Pure statistics for acceptance rates and A/B comparisons: intervals, proportion tests, rank tests.

No I/O and no SciPy: the standard library (``math``, ``statistics.NormalDist``) is enough, so the
dashboard and the alert rules can use these without a scientific stack. Every function is pure and
thread-safe; it raises ``ValueError`` only for impossible input (negative counts, k > n).

Conventions:

- Intervals are two-sided at ``confidence`` (default 0.95).
- Comparisons are "b against a": ``difference = estimate_b - estimate_a``. An A/B test reads as "what
  changed when we moved from a (control) to b (candidate)".
- A proportion with ``n = 0`` has no estimate and no interval (``None``), never 0.

Methods (``tests/unit/test_stats.py`` checks each against hand-computed values and against SciPy's
``binomtest(…).proportion_ci("wilson")``, ``chi2_contingency``, ``fisher_exact`` and ``mannwhitneyu``):

- :func:`wilson`: Wilson score interval (Wilson 1927), good coverage even at 0/n and n/n.
- :func:`newcombe`: Newcombe's hybrid score interval for a difference of proportions (Newcombe 1998,
  method 10), built from the two Wilson intervals; unlike Wald it stays inside [-1, 1] and works for
  small or extreme counts.
- :func:`two_proportion_z`: pooled two-proportion z-test, two-sided.
- :func:`fisher_exact`: Fisher's exact test on the 2×2 table, two-sided by summing the tables no more
  likely than the observed one (SciPy's and R's rule, with the same 1e-7 relative tolerance).
- :func:`mann_whitney_u`: two-sided Mann–Whitney U. Exact null distribution when there are no ties and
  the samples are small (:data:`EXACT_MWU_MAX_CELLS`); otherwise the normal approximation with the tie
  correction and a 0.5 continuity correction.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "EXACT_MWU_MAX_CELLS",
    "FISHER_MIN_EXPECTED",
    "NOT_ENOUGH_DATA",
    "Comparison",
    "check_test_options",
    "compare_distributions",
    "compare_proportions",
    "fisher_exact",
    "mann_whitney_u",
    "newcombe",
    "two_proportion_z",
    "wilson",
    "z_value",
]

NOT_ENOUGH_DATA = "not enough data"
# The z-test's normal approximation is trusted when every expected cell count is at least this
# (the textbook rule of thumb); below it the comparison uses Fisher's exact test.
FISHER_MIN_EXPECTED = 5.0
# Exact Mann–Whitney when n_a * n_b is at most this (and no ties): the null distribution costs
# O(min(n) * n_a * n_b) integer additions, a few milliseconds here; beyond it the normal approximation is
# accurate to the third decimal anyway.
EXACT_MWU_MAX_CELLS = 2500
_FISHER_RTOL = 1 + 1e-7


def z_value(confidence: float) -> float:
    """The two-sided standard normal quantile for ``confidence`` (1.959964… for 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence!r}")
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _check_counts(k: int, n: int) -> None:
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= successes <= trials, got {k} of {n}")


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval for ``k`` successes in ``n`` trials; ``None`` when ``n == 0``."""
    _check_counts(k, n)
    if n == 0:
        return None
    z = z_value(confidence)
    z2 = z * z
    denom = n + z2
    center = (k + z2 / 2.0) / denom
    half = z / denom * math.sqrt(k * (n - k) / n + z2 / 4.0)
    # At k = 0 (k = n) the bound is exactly 0 (1); float rounding would leave 1e-20 there.
    low = 0.0 if k == 0 else max(0.0, center - half)
    high = 1.0 if k == n else min(1.0, center + half)
    return low, high


def newcombe(k_a: int, n_a: int, k_b: int, n_b: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Newcombe hybrid score interval for ``p_b - p_a``; ``None`` when either arm is empty."""
    wa, wb = wilson(k_a, n_a, confidence), wilson(k_b, n_b, confidence)
    if wa is None or wb is None:
        return None
    pa, pb = k_a / n_a, k_b / n_b
    (la, ua), (lb, ub) = wa, wb
    d = pb - pa
    low = d - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2)
    high = d + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2)
    return max(-1.0, low), min(1.0, high)


def two_proportion_z(k_a: int, n_a: int, k_b: int, n_b: int) -> tuple[float, float]:
    """Pooled two-proportion z-test of ``p_a == p_b``: ``(z, two-sided p)``, z positive when b is higher.

    When the pooled proportion is 0 or 1 both arms are identical (all failures or all successes):
    ``(0.0, 1.0)``.
    """
    _check_counts(k_a, n_a)
    _check_counts(k_b, n_b)
    if n_a == 0 or n_b == 0:
        raise ValueError("both arms need at least one trial")
    pooled = (k_a + k_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b))
    if se == 0.0:
        return 0.0, 1.0
    z = (k_b / n_b - k_a / n_a) / se
    return z, math.erfc(abs(z) / math.sqrt(2.0))


def fisher_exact(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    """Two-sided Fisher exact p-value for the table ``[[k_a, n_a - k_a], [k_b, n_b - k_b]]``.

    The p-value sums the probabilities of the tables with the observed margins that are at most the
    observed table's (times 1 + 1e-7, so float noise does not drop ties). Probabilities are built from the
    hypergeometric mode outwards with the ratio of neighbouring terms: O(support) float steps, no huge
    binomials, and no overflow however large the arms are.
    """
    _check_counts(k_a, n_a)
    _check_counts(k_b, n_b)
    total, s = n_a + n_b, k_a + k_b
    lo, hi = max(0, s - n_b), min(s, n_a)
    mode = min(hi, max(lo, (n_a + 1) * (s + 1) // (total + 2)))
    w = dict.fromkeys(range(lo, hi + 1), 0.0)
    w[mode] = 1.0
    for x in range(mode, hi):  # p(x+1) / p(x)
        w[x + 1] = w[x] * (n_a - x) * (s - x) / ((x + 1) * (n_b - s + x + 1))
    for x in range(mode, lo, -1):  # p(x-1) / p(x)
        w[x - 1] = w[x] * x * (n_b - s + x) / ((n_a - x + 1) * (s - x + 1))
    observed = w[k_a] * _FISHER_RTOL
    return min(1.0, sum(v for v in w.values() if v <= observed) / sum(w.values()))


@dataclass(frozen=True, slots=True)
class MannWhitney:
    """``u``: the U statistic of sample a (pairs where a is larger, ties count 1/2); ``p``: two-sided."""

    u: float
    p: float
    method: str  # "exact" | "asymptotic"


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based) of ``values`` and the sizes of the tie groups larger than one."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties: list[int] = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        avg = (i + j) / 2.0 + 1.0
        for t in range(i, j + 1):
            ranks[order[t]] = avg
        if j > i:
            ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


def _u_counts(m: int, n: int) -> list[int]:
    """Number of orderings giving each U = 0..m*n for samples of sizes m, n (no ties).

    The generating function is the Gaussian binomial ``prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i)``;
    multiplying and dividing those polynomials in place keeps every count an exact integer.
    """
    m, n = min(m, n), max(m, n)  # the distribution is symmetric in the two sizes; loop over the smaller
    deg = m * n
    c = [0] * (deg + 1)
    c[0] = 1
    for i in range(1, m + 1):
        shift = n + i
        for j in range(deg, shift - 1, -1):  # times (1 - q^shift)
            c[j] -= c[j - shift]
        for j in range(i, deg + 1):  # divided by (1 - q^i): a running sum with stride i
            c[j] += c[j - i]
    return c


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> MannWhitney:
    """Two-sided Mann–Whitney U test of "a and b come from the same distribution" (see module doc)."""
    n_a, n_b = len(a), len(b)
    if n_a == 0 or n_b == 0:
        raise ValueError("both samples need at least one value")
    ranks, ties = _ranks([*map(float, a), *map(float, b)])
    u_a = sum(ranks[:n_a]) - n_a * (n_a + 1) / 2.0
    u_max = max(u_a, n_a * n_b - u_a)
    if not ties and n_a * n_b <= EXACT_MWU_MAX_CELLS:
        counts = _u_counts(n_a, n_b)
        tail = sum(counts[int(u_max) :])  # P(U >= u_max); U is an integer without ties
        p = 2.0 * tail / math.comb(n_a + n_b, n_a)
        return MannWhitney(u_a, min(1.0, p), "exact")
    total = n_a + n_b
    tie_term = sum(t**3 - t for t in ties)
    var = n_a * n_b / 12.0 * ((total + 1) - tie_term / (total * (total - 1)))
    if var <= 0.0:  # every value equal: nothing to tell the samples apart
        return MannWhitney(u_a, 1.0, "asymptotic")
    z = (u_max - n_a * n_b / 2.0 - 0.5) / math.sqrt(var)
    p = 2.0 * statistics.NormalDist().cdf(-z) if z > 0 else 1.0
    return MannWhitney(u_a, min(1.0, p), "asymptotic")


# --- comparisons -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Comparison:
    """One metric of an A/B comparison, b against a.

    ``status`` is ``"ok"`` or :data:`NOT_ENOUGH_DATA` (either arm has fewer than ``min_samples``
    observations: no test is run and ``p_value``/``significant`` are ``None``; the estimates are still
    given when defined). ``ci_low``/``ci_high`` bound ``difference`` (Newcombe for proportions; ``None``
    for the median difference, which has no distribution-free interval without resampling).
    """

    metric: str
    status: str
    test: str | None
    n_a: int
    n_b: int
    estimate_a: float | None
    estimate_b: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    significant: bool | None
    statistic: float | None
    alpha: float
    confidence: float
    min_samples: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_test_options(alpha: float, min_samples: int) -> None:
    """``ValueError`` unless ``0 < alpha < 1`` and ``min_samples >= 1``."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
    if min_samples < 1:
        raise ValueError(f"min_samples must be at least 1, got {min_samples!r}")


def compare_proportions(
    metric: str,
    k_a: int,
    n_a: int,
    k_b: int,
    n_b: int,
    *,
    alpha: float = 0.05,
    confidence: float | None = None,
    min_samples: int = 30,
) -> Comparison:
    """Compare two proportions: z-test, or Fisher's exact test when an expected cell is below 5.

    ``confidence`` of the Newcombe interval defaults to ``1 - alpha``, so the interval excludes 0 exactly
    when a z-test at ``alpha`` would (approximately) call the difference significant.
    """
    check_test_options(alpha, min_samples)
    conf = 1.0 - alpha if confidence is None else confidence
    est_a = k_a / n_a if n_a else None
    est_b = k_b / n_b if n_b else None
    diff = est_b - est_a if est_a is not None and est_b is not None else None
    if n_a < min_samples or n_b < min_samples:
        return Comparison(
            metric, NOT_ENOUGH_DATA, None, n_a, n_b, est_a, est_b, diff,
            None, None, None, None, None, alpha, conf, min_samples,
        )  # fmt: skip
    total, successes = n_a + n_b, k_a + k_b
    expected = [
        n * s / total for n in (n_a, n_b) for s in (successes, total - successes)
    ]  # the four cells under H0
    if min(expected) < FISHER_MIN_EXPECTED:
        test, stat, p = "fisher_exact", None, fisher_exact(k_a, n_a, k_b, n_b)
    else:
        z, p = two_proportion_z(k_a, n_a, k_b, n_b)
        test, stat = "two_proportion_z", z
    ci = newcombe(k_a, n_a, k_b, n_b, conf)
    assert ci is not None  # both arms have min_samples >= 1 observations
    return Comparison(
        metric, "ok", test, n_a, n_b, est_a, est_b, diff, ci[0], ci[1], p, p < alpha, stat, alpha, conf,
        min_samples,
    )  # fmt: skip


def compare_distributions(
    metric: str,
    a: Sequence[float],
    b: Sequence[float],
    *,
    alpha: float = 0.05,
    min_samples: int = 30,
) -> Comparison:
    """Compare two samples (latency, cost): Mann–Whitney U, effect = median(b) - median(a).

    ``statistic`` is the U of sample a. ``test`` names the variant (``mann_whitney_u_exact`` or
    ``mann_whitney_u_asymptotic``).
    """
    check_test_options(alpha, min_samples)
    med_a = statistics.median(a) if len(a) else None
    med_b = statistics.median(b) if len(b) else None
    diff = med_b - med_a if med_a is not None and med_b is not None else None
    if len(a) < min_samples or len(b) < min_samples:
        return Comparison(
            metric, NOT_ENOUGH_DATA, None, len(a), len(b), med_a, med_b, diff,
            None, None, None, None, None, alpha, 1.0 - alpha, min_samples,
        )  # fmt: skip
    r = mann_whitney_u(a, b)
    return Comparison(
        metric, "ok", f"mann_whitney_u_{r.method}", len(a), len(b), med_a, med_b, diff, None, None,
        r.p, r.p < alpha, r.u, alpha, 1.0 - alpha, min_samples,
    )  # fmt: skip
