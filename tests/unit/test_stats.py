"""monitor.stats: hand-computed values first, then SciPy as an independent oracle on many inputs.

SciPy is a test dependency only; monitor.stats itself uses the standard library.
"""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from monitor import stats
from monitor.stats import NOT_ENOUGH_DATA

Z95 = 1.959963984540054


def test_z_value() -> None:
    assert stats.z_value(0.95) == pytest.approx(Z95, rel=1e-12)
    assert stats.z_value(0.99) == pytest.approx(2.5758293035489, rel=1e-12)
    with pytest.raises(ValueError):
        stats.z_value(1.0)


# --- Wilson ------------------------------------------------------------------------------------------


def test_wilson_by_hand() -> None:
    # 8/10: z² = 3.841459; centre = (8 + z²/2) / (10 + z²) = 9.920729 / 13.841459 = 0.716746
    # half = z / 13.841459 · √(8·2/10 + z²/4) = 0.141601 · 1.600114 = 0.226578  → [0.4902, 0.9433]
    low, high = stats.wilson(8, 10)  # type: ignore[misc]
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    # 0/5: centre = half = (z²/2) / (5 + z²) = 1.920729 / 8.841459 = 0.217242 → [0, 0.4345]
    low, high = stats.wilson(0, 5)  # type: ignore[misc]
    assert low == 0.0 and round(high, 4) == 0.4345
    # 5/5 mirrors 0/5
    low, high = stats.wilson(5, 5)  # type: ignore[misc]
    assert round(low, 4) == 0.5655 and high == 1.0
    # n = 0: no interval at all, rather than [0, 1] or 0
    assert stats.wilson(0, 0) is None


@pytest.mark.parametrize(("k", "n"), [(-1, 5), (6, 5), (0, -1)])
def test_wilson_rejects_impossible_counts(k: int, n: int) -> None:
    with pytest.raises(ValueError):
        stats.wilson(k, n)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_matches_scipy(kn: tuple[int, int]) -> None:
    k, n = kn
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert stats.wilson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


# --- difference of proportions ---------------------------------------------------------------------------


def test_newcombe_against_the_paper() -> None:
    # Newcombe (1998), Stat Med 17:873, table II, method 10: 56/70 - 48/80 → (0.0524, 0.3339);
    # 9/10 - 3/10 → (0.1705, 0.8090). Here b - a, so b is the first proportion of the paper.
    low, high = stats.newcombe(48, 80, 56, 70)  # type: ignore[misc]
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)
    low, high = stats.newcombe(3, 10, 9, 10)  # type: ignore[misc]
    assert (round(low, 4), round(high, 4)) == (0.1705, 0.8090)
    assert stats.newcombe(0, 0, 1, 2) is None


def test_two_proportion_z_by_hand() -> None:
    # 48/80 vs 56/70: pooled 104/150 = 0.693333; se = √(0.693333·0.306667·(1/80 + 1/70)) = 0.075467
    # z = (0.8 - 0.6) / 0.075467 = 2.6502 → p = erfc(2.6502/√2) = 0.00805
    z, p = stats.two_proportion_z(48, 80, 56, 70)
    assert round(z, 4) == 2.6502
    assert round(p, 5) == 0.00805
    assert stats.two_proportion_z(0, 10, 0, 20) == (0.0, 1.0)  # all failures: identical
    assert stats.two_proportion_z(10, 10, 20, 20) == (0.0, 1.0)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
    st.integers(1, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
)
def test_z_test_matches_uncorrected_chi_square(a: tuple[int, int], b: tuple[int, int]) -> None:
    (ka, na), (kb, nb) = a, b
    _, p = stats.two_proportion_z(ka, na, kb, nb)
    if ka + kb in (0, na + nb):
        assert p == 1.0
        return
    expected = sps.chi2_contingency([[ka, na - ka], [kb, nb - kb]], correction=False).pvalue
    assert p == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_fisher_by_hand() -> None:
    # Lady tasting tea, [[3, 1], [1, 3]]: tables with the same margins have probabilities
    # 1/70, 16/70, 36/70, 16/70, 1/70; those <= 16/70 sum to 34/70 = 0.485714
    assert stats.fisher_exact(3, 4, 1, 4) == pytest.approx(34 / 70, rel=1e-12)
    assert stats.fisher_exact(0, 5, 0, 5) == 1.0
    # huge arms: no overflow, no giant binomials
    expected = sps.fisher_exact([[10, 0], [400_000, 600_000]]).pvalue
    assert stats.fisher_exact(10, 10, 400_000, 1_000_000) == pytest.approx(expected, rel=1e-7)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 60).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
    st.integers(1, 60).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
)
def test_fisher_matches_scipy(a: tuple[int, int], b: tuple[int, int]) -> None:
    (ka, na), (kb, nb) = a, b
    expected = sps.fisher_exact([[ka, na - ka], [kb, nb - kb]]).pvalue
    assert stats.fisher_exact(ka, na, kb, nb) == pytest.approx(expected, rel=1e-9, abs=1e-15)


# --- Mann–Whitney ------------------------------------------------------------------------------------------


def test_mann_whitney_by_hand() -> None:
    # a entirely below b: U_a = 0; of the C(6,3) = 20 equally likely orderings one gives U = 0 and one
    # U = 9, so the two-sided exact p = 2/20
    r = stats.mann_whitney_u([1, 2, 3], [4, 5, 6])
    assert (r.u, r.p, r.method) == (0.0, pytest.approx(0.1), "exact")
    # ties force the normal approximation; all values equal → p = 1
    r = stats.mann_whitney_u([5, 5, 5], [5, 5])
    assert (r.u, r.p, r.method) == (3.0, 1.0, "asymptotic")


def test_exact_u_counts_are_the_gaussian_binomial() -> None:
    counts = stats._u_counts(3, 3)
    assert counts == [1, 1, 2, 3, 3, 3, 3, 2, 1, 1]  # sums to C(6, 3) = 20, symmetric
    assert sum(stats._u_counts(7, 12)) == math.comb(19, 7)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_exact_mann_whitney_matches_scipy(data: st.DataObject) -> None:
    # distinct values (no ties) split into two samples of varied sizes and overlap
    values = data.draw(st.lists(st.integers(0, 10**6), min_size=2, max_size=100, unique=True))
    cut = data.draw(st.integers(1, len(values) - 1))
    a, b = values[:cut], values[cut:]
    r = stats.mann_whitney_u(a, b)
    exact = len(a) * len(b) <= stats.EXACT_MWU_MAX_CELLS
    assert r.method == ("exact" if exact else "asymptotic")
    expected = sps.mannwhitneyu(a, b, method=r.method)
    assert r.u == expected.statistic
    assert r.p == pytest.approx(expected.pvalue, rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 20), min_size=2, max_size=300),
    st.lists(st.integers(0, 25), min_size=2, max_size=300),
)
def test_asymptotic_mann_whitney_with_ties_matches_scipy(a: list[int], b: list[int]) -> None:
    r = stats.mann_whitney_u(a, b)
    if r.method == "exact":
        expected = sps.mannwhitneyu(a, b, method="exact")
    else:
        expected = sps.mannwhitneyu(a, b, method="asymptotic")
        if math.isnan(expected.pvalue):  # every value equal: SciPy says NaN, we say "no difference"
            assert r.p == 1.0
            return
    assert r.u == expected.statistic
    assert r.p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


# --- comparisons ------------------------------------------------------------------------------------------


def test_compare_proportions_picks_the_test_and_reports_everything() -> None:
    c = stats.compare_proportions("acceptance", 48, 80, 56, 70)
    assert (c.status, c.test, c.n_a, c.n_b) == ("ok", "two_proportion_z", 80, 70)
    assert c.difference == pytest.approx(0.2)
    assert (round(c.ci_low, 4), round(c.ci_high, 4)) == (0.0524, 0.3339)  # type: ignore[arg-type]
    assert round(c.p_value, 5) == 0.00805  # type: ignore[arg-type]
    assert c.significant is True and c.alpha == 0.05 and c.confidence == pytest.approx(0.95)
    # an expected cell below 5 → Fisher
    f = stats.compare_proportions("acceptance", 29, 30, 22, 30)
    assert f.test == "fisher_exact"
    assert f.p_value == pytest.approx(sps.fisher_exact([[29, 1], [22, 8]]).pvalue)
    # stricter alpha → wider interval and not significant
    strict = stats.compare_proportions("acceptance", 48, 80, 56, 70, alpha=0.001)
    assert strict.significant is False and strict.ci_low < 0 < strict.ci_high  # type: ignore[operator]


def test_compare_not_enough_data() -> None:
    c = stats.compare_proportions("acceptance", 3, 4, 0, 0, min_samples=5)
    assert c.status == NOT_ENOUGH_DATA
    assert (c.estimate_a, c.estimate_b, c.difference) == (0.75, None, None)
    assert c.p_value is None and c.significant is None and c.test is None and c.min_samples == 5
    d = stats.compare_distributions("latency_ms", [1.0, 2.0], [3.0, 4.0, 5.0], min_samples=3)
    assert d.status == NOT_ENOUGH_DATA
    assert (d.estimate_a, d.estimate_b, d.difference) == (1.5, 4.0, 2.5)
    assert d.as_dict()["status"] == NOT_ENOUGH_DATA
    with pytest.raises(ValueError, match="alpha"):
        stats.compare_proportions("x", 1, 2, 1, 2, alpha=1.0)
    with pytest.raises(ValueError, match="min_samples"):
        stats.compare_distributions("x", [1.0], [2.0], min_samples=0)


def test_compare_distributions_effect_is_difference_of_medians() -> None:
    a = [float(x) for x in range(100, 140)]
    b = [x + 0.5 for x in range(120, 170)]  # overlapping, but no ties
    c = stats.compare_distributions("latency_ms", a, b)
    assert c.difference == pytest.approx(statistics.median(b) - statistics.median(a))  # 145 - 119.5
    assert c.test == "mann_whitney_u_exact"  # no ties, 40 · 50 = 2000 cells
    expected = sps.mannwhitneyu(a, b, method="exact")
    assert c.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert c.significant is True and c.statistic == expected.statistic
