"""monitor.acceptance on real chDB: feedback → one decision per generation, rates with Wilson intervals,
A/B comparisons with their tests.

Feedback rows are produced by the collector's own parser (``collectors.feedback.parse_feedback``), so the
kinds and values are exactly what ``POST /v1/feedback`` stores. Expected intervals are computed by hand
(the arithmetic is in the comments) and p-values independently with SciPy on the same planted data.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import pytest
from scipy import stats as sps

from collectors.feedback import parse_feedback
from monitor import acceptance
from monitor.acceptance import AcceptanceConfig
from monitor.analyzers.base import AnalyzerConfigError
from monitor.stats import NOT_ENOUGH_DATA
from monitor.store.schema import FEEDBACK_COLUMNS, SPAN_COLUMNS, span_row

NOW = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)
T0 = NOW - dt.timedelta(minutes=40)
WINDOW: dict[str, Any] = {"start": NOW - dt.timedelta(hours=1), "end": NOW + dt.timedelta(minutes=1)}
SCORE_COLUMNS = ("project", "trace_id", "span_id", "span_start_time", "analyzer", "metric", "value", "label")


def tid(i: int) -> str:
    return f"{i + 1:032x}"


def sid(i: int) -> str:
    return f"{i + 1:016x}"


def gen(i: int, *, at: float = 0.0, **kw: Any) -> dict[str, Any]:
    """LLM span number ``i`` (its own trace) ``at`` seconds after T0."""
    start = T0 + dt.timedelta(seconds=at)
    dur = kw.pop("duration_ms", 100.0)
    row = {
        "project": "default",
        "service": "chat-api",
        "trace_id": tid(i),
        "span_id": sid(i),
        "kind": "llm",
        "name": "chat",
        "model": "gpt-4o",
        "prompt_name": "answer",
        "prompt_version": "1",
        "response_id": f"resp-{i}",
        "start_time": start,
        "end_time": start + dt.timedelta(milliseconds=dur),
        "duration_ms": dur,
        "status": "ok",
    }
    row.update(kw)
    return row


def insert_spans(store: Any, rows: list[dict[str, Any]]) -> None:
    full = [span_row({"ingested_at": dt.datetime.now(dt.timezone.utc), **r}) for r in rows]
    store.insert("spans", [[r[c] for c in SPAN_COLUMNS] for r in full], SPAN_COLUMNS)


def insert_feedback(store: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items as a client would POST them; ``created_at`` defaults to seconds after T0 via ``after``."""
    body = []
    for n, it in enumerate(items):
        it = dict(it)
        after = it.pop("after", n * 0.001)
        it.setdefault("created_at", (T0 + dt.timedelta(minutes=1, seconds=after)).isoformat())
        body.append(it)
    rows = parse_feedback(json.dumps(body).encode(), project="default", now=NOW + dt.timedelta(hours=1))
    store.insert("feedback", [[r[c] for c in FEEDBACK_COLUMNS] for r in rows], FEEDBACK_COLUMNS)
    return rows


def insert_scores(store: Any, spans: list[dict[str, Any]], values: list[float], labels: list[str]) -> None:
    rows = [
        [s["project"], s["trace_id"], s["span_id"], s["start_time"], "toxicity", "output", v, lab]
        for s, v, lab in zip(spans, values, labels, strict=True)
    ]
    store.insert("scores", rows, SCORE_COLUMNS)


# --- configuration -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("accept", 1, True),
        ("copy", 1, True),
        ("thumbs", 1, True),
        ("thumbs", 0, False),
        ("rating", 5, True),
        ("rating", 4, True),
        ("rating", 3, None),  # neutral
        ("rating", 2, False),
        ("rating", 0, False),
        ("reject", 1, False),
        ("regenerate", 1, False),
        ("edit", 1, False),  # default: an edited output was not usable as is
        ("edit", 0.2, False),
        ("comment", 0, None),
        ("copy", 0, None),  # value 0: the event did not happen
        ("share", 1, None),  # custom kind in neither list
    ],
)
def test_default_mapping(kind: str, value: float, expected: bool | None) -> None:
    assert AcceptanceConfig().classify(kind, value) is expected


def test_custom_mapping() -> None:
    cfg = AcceptanceConfig.from_options(
        {
            "accepted": ["accept", "copy", "edit", "share"],
            "rejected": ["reject"],
            "rating_threshold": 0.5,
            "rating_reject_threshold": 0.5,  # normalized ratings: >= 0.5 accepted, below rejected
        }
    )
    assert cfg.classify("edit", 0.3) is True
    assert cfg.classify("share", 1) is True
    assert cfg.classify("regenerate", 1) is None
    assert cfg.classify("rating", 0.5) is True
    assert cfg.classify("rating", 0.49) is False
    assert AcceptanceConfig.from_options(None) == AcceptanceConfig()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"accepted": "copy"}, "accepted must be a list of feedback kinds, got 'copy'"),
        ({"rejected": ["Thumbs Down"]}, "rejected: 'Thumbs Down' is not a feedback kind"),
        ({"accepted": ["thumbs"]}, "'thumbs' is decided by thumbs_threshold"),
        ({"accepted": ["copy", "edit"]}, "'edit' is listed in both accepted and rejected"),
        ({"rating_threshold": "four"}, "rating_threshold must be a number, got 'four'"),
        ({"rating_threshold": 2, "rating_reject_threshold": 3}, "rating_reject_threshold (3) is above"),
        ({"alpha": 1.5}, "alpha must be a number between 0 and 1"),
        ({"min_samples": 0}, "min_samples must be a positive integer"),
        ({"max_samples": 10}, "max_samples (10) is below min_samples (30)"),
        ({"treshold": 1}, "unknown option 'treshold'"),
        ([1, 2], "expected a mapping of options, got list"),
    ],
)
def test_config_errors_are_one_line(options: Any, message: str) -> None:
    with pytest.raises(AnalyzerConfigError) as err:
        AcceptanceConfig.from_options(options)
    text = str(err.value)
    assert text.startswith("analyzers: acceptance: ")
    assert message in text
    assert "\n" not in text


def test_config_from_the_yaml_file(tmp_path: Any) -> None:
    from monitor.settings import ConfigError

    path = tmp_path / "llm-monitor.yaml"
    path.write_text(
        "analyzers:\n  acceptance:\n    enabled: true\n    accepted: [accept, copy, edit]\n"
        "    rejected: [reject]\n    alpha: 0.01\n",
        encoding="utf-8",
    )
    cfg = AcceptanceConfig.from_config_file(path)
    assert (cfg.accepted, cfg.rejected, cfg.alpha) == (("accept", "copy", "edit"), ("reject",), 0.01)
    assert AcceptanceConfig.from_config_file(None) == AcceptanceConfig()
    path.write_text("analyzers:\n  acceptance:\n    rating_threshold: high\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        AcceptanceConfig.from_config_file(path)
    assert str(err.value) == (f"{path}: analyzers: acceptance: rating_threshold must be a number, got 'high'")


# --- one decision per generation -----------------------------------------------------------------------

CASES: list[tuple[str, float]] = [
    ("accept", 1),
    ("copy", 1),
    ("copy", 0),
    ("thumbs", 1),
    ("thumbs", 0),
    ("rating", 5),
    ("rating", 4),
    ("rating", 3),
    ("rating", 2.5),
    ("rating", 2),
    ("rating", 0.5),
    ("reject", 1),
    ("regenerate", 1),
    ("edit", 1),
    ("edit", 0.25),
    ("edit", 0),
    ("comment", 0),
    ("share", 1),
]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "accepted": ["accept", "copy", "edit", "share"],
            "rejected": ["reject"],
            "thumbs_threshold": 0.5,
            "rating_threshold": 0.5,
            "rating_reject_threshold": 0.5,
        },
    ],
)
def test_sql_applies_the_same_rule_as_classify(store: Any, options: dict[str, Any]) -> None:
    cfg = AcceptanceConfig.from_options(options)
    insert_spans(store, [gen(i, at=i) for i in range(len(CASES))])
    items: list[dict[str, Any]] = []
    for i, (kind, value) in enumerate(CASES):
        item: dict[str, Any] = {"span_id": sid(i), "kind": kind, "value": value}
        if kind == "comment":
            item["comment"] = "meh"
        items.append(item)
    insert_feedback(store, items)
    got = acceptance.decisions(store, **WINDOW, config=cfg).set_index("span_id")["decision"].to_dict()
    expected = {}
    for i, (kind, value) in enumerate(CASES):
        c = cfg.classify(kind, value)
        if c is not None:
            expected[sid(i)] = "accepted" if c else "rejected"
    assert got == expected


def test_feedback_resolves_to_its_llm_span(store: Any) -> None:
    t = tid(0)
    root = gen(0, kind="chain", span_id="a" * 16, response_id="", model="")
    first = gen(0, at=1, span_id="b" * 16, response_id="resp-first", parent_span_id="a" * 16)
    last = gen(0, at=2, span_id="c" * 16, response_id="resp-last", parent_span_id="a" * 16)
    tool = gen(0, at=3, kind="tool", span_id="d" * 16, response_id="", model="")  # after the last LLM call
    other = gen(1, at=5)  # another trace, same shape of ids
    insert_spans(store, [root, first, last, tool, other])

    def decided(items: list[dict[str, Any]]) -> dict[str, str]:
        store.command(f"TRUNCATE TABLE {store.table('feedback')}")
        insert_feedback(store, items)
        df = acceptance.decisions(store, **WINDOW)
        return dict(zip(df["span_id"], df["decision"], strict=True))

    # response_id → the span that returned it
    assert decided([{"response_id": "resp-first", "kind": "copy"}]) == {"b" * 16: "accepted"}
    # trace_id → the trace's last LLM span (not the later tool span)
    assert decided([{"trace_id": t, "kind": "thumbs", "value": 0}]) == {"c" * 16: "rejected"}
    # span_id of an LLM span → that span; of the chain root → its trace's last LLM span
    assert decided([{"span_id": "b" * 16, "kind": "accept"}]) == {"b" * 16: "accepted"}
    assert decided([{"span_id": "a" * 16, "kind": "accept"}]) == {"c" * 16: "accepted"}
    # several ids: the most specific that matches wins; an unknown response id falls back to the trace
    assert decided([{"response_id": "resp-first", "trace_id": t, "kind": "reject"}]) == {"b" * 16: "rejected"}
    assert decided([{"response_id": "resp-unknown", "trace_id": t, "kind": "reject"}]) == {
        "c" * 16: "rejected"
    }
    # feedback naming nothing we stored decides nothing
    assert (
        decided([{"response_id": "resp-nowhere", "kind": "accept"}, {"trace_id": "f" * 32, "kind": "accept"}])
        == {}
    )
    # another project's feedback does not touch this project's spans
    assert decided([{"response_id": "resp-1", "kind": "accept", "project": "elsewhere"}]) == {}
    assert decided([{"response_id": "resp-1", "kind": "accept"}]) == {sid(1): "accepted"}


def test_latest_decisive_event_wins_and_counts_once(store: Any) -> None:
    insert_spans(store, [gen(i, at=i) for i in range(5)])
    insert_feedback(
        store,
        [
            # 0: copies, then regenerates → rejected, once
            {"span_id": sid(0), "kind": "copy", "after": 1},
            {"response_id": "resp-0", "kind": "regenerate", "after": 5},
            # 1: regenerates, later thumbs up; a comment after that decides nothing → accepted
            {"span_id": sid(1), "kind": "regenerate", "after": 1},
            {"trace_id": tid(1), "kind": "thumbs", "value": "up", "after": 2},
            {"span_id": sid(1), "kind": "comment", "comment": "thanks", "after": 9},
            # 2: accept and reject at the same instant → rejected (the conservative reading)
            {"span_id": sid(2), "kind": "accept", "after": 3},
            {"span_id": sid(2), "kind": "reject", "after": 3},
            # 3: a neutral rating only → no decision
            {"span_id": sid(3), "kind": "rating", "value": 3},
        ],
    )
    df = acceptance.decisions(store, **WINDOW).set_index("span_id")
    assert df["decision"].to_dict() == {sid(0): "rejected", sid(1): "accepted", sid(2): "rejected"}
    assert df["decided_by"].to_dict() == {sid(0): "regenerate", sid(1): "thumbs", sid(2): "reject"}
    assert df["events"].to_dict() == {sid(0): 2, sid(1): 2, sid(2): 2}
    rates = acceptance.acceptance_rates(store, **WINDOW, by=())
    assert rates[["generations", "accepted", "rejected", "n"]].values.tolist() == [[5, 1, 2, 3]]


def test_redelivered_feedback_counts_once(store: Any) -> None:
    insert_spans(store, [gen(0)])
    rows = insert_feedback(store, [{"span_id": sid(0), "kind": "copy", "feedback_id": "fb-1"}])
    store.insert("feedback", [[r[c] for c in FEEDBACK_COLUMNS] for r in rows], FEEDBACK_COLUMNS)
    assert acceptance.decisions(store, **WINDOW)["events"].tolist() == [1]


# --- rates ---------------------------------------------------------------------------------------------


def plant_versions(store: Any) -> None:
    """v1: 12 generations, 8 accepted + 2 rejected; v2: 0/5; v3: 5/5; v4: 3 generations, no feedback."""
    spans, items = [], []
    plan = {"1": (8, 2, 2), "2": (0, 5, 0), "3": (5, 0, 0), "4": (0, 0, 3)}  # accepted, rejected, silent
    i = 0
    for version, (acc, rej, silent) in plan.items():
        for outcome in ["copy"] * acc + ["regenerate"] * rej + [None] * silent:
            spans.append(
                gen(i, at=i, prompt_version=version, attributes={"tier": "pro" if i % 2 else "free"})
            )
            if outcome:
                items.append({"response_id": f"resp-{i}", "kind": outcome})
            i += 1
    insert_spans(store, spans)
    insert_feedback(store, items)


def test_rates_with_wilson_intervals_by_prompt_version(store: Any) -> None:
    plant_versions(store)
    df = acceptance.acceptance_rates(store, **WINDOW).set_index("prompt_version")
    assert list(df.index) == ["1", "2", "3", "4"]
    assert (df["prompt_name"] == "answer").all()
    assert df[["generations", "accepted", "rejected", "n"]].loc["1"].tolist() == [12, 8, 2, 10]
    # Wilson, z = 1.959964, z² = 3.841459:
    # 8/10: centre (8 + 1.920729) / 13.841459 = 0.716746;
    #       half 1.959964 / 13.841459 · √(1.6 + 0.960365) = 0.226578 → [0.4902, 0.9433]
    v1 = df.loc["1"]
    assert v1["rate"] == pytest.approx(0.8)
    assert v1["ci_low"] == pytest.approx(0.4902, abs=5e-5)
    assert v1["ci_high"] == pytest.approx(0.9433, abs=5e-5)
    assert v1["coverage"] == pytest.approx(10 / 12)
    # 0/5: centre = half = 1.920729 / 8.841459 = 0.217242 → [0, 0.4345]
    assert df.loc["2", "rate"] == 0.0
    assert df.loc["2", "ci_low"] == 0.0
    assert df.loc["2", "ci_high"] == pytest.approx(0.4345, abs=5e-5)
    # 5/5: the mirror image → [0.5655, 1]
    assert df.loc["3", "ci_low"] == pytest.approx(0.5655, abs=5e-5)
    assert df.loc["3", "ci_high"] == 1.0
    # no feedback: no rate (NaN), not 0 %
    v4 = df.loc["4"]
    assert v4["generations"] == 3 and v4["n"] == 0
    assert math.isnan(v4["rate"]) and math.isnan(v4["ci_low"]) and math.isnan(v4["ci_high"])
    assert v4["coverage"] == 0.0


def test_rates_by_attribute_model_and_buckets(store: Any) -> None:
    plant_versions(store)
    by_tier = acceptance.acceptance_rates(store, **WINDOW, by=("attributes.tier",))
    # decided: i = 0..9 copy/regenerate (v1), 12..16 regenerate (v2), 17..21 copy (v3)
    # free (even i): accepted 0,2,4,6 + 18,20 = 6; rejected 8 + 12,14,16 = 4
    free = by_tier.set_index("attributes.tier").loc["free"]
    assert (free["accepted"], free["rejected"]) == (6, 4)
    start = T0  # on a minute boundary; generations at T0 + i s, i = 0..24
    df = acceptance.acceptance_rates(
        store, start=start, end=start + dt.timedelta(minutes=1), by=("model",), bucket_seconds=10
    )
    assert df["bucket"].dt.tz is not None
    assert df["generations"].tolist() == [10, 10, 5]
    assert df["accepted"].tolist() == [8, 3, 2]  # i 0-7 | 17,18,19 | 20,21
    assert df["rejected"].tolist() == [2, 5, 0]  # i 8,9 | 12-16 | -
    assert df.attrs["bucket_seconds"] == 10


def test_rates_filters_window_and_project(store: Any) -> None:
    plant_versions(store)
    insert_spans(
        store, [gen(100, at=-3 * 3600, prompt_version="1"), gen(101, project="other", prompt_version="1")]
    )
    insert_feedback(
        store,
        [
            {"response_id": "resp-100", "kind": "copy"},
            {"response_id": "resp-101", "kind": "copy", "project": "other"},
        ],
    )
    one = acceptance.acceptance_rates(store, **WINDOW, by=("prompt_version",), project="default")
    assert one.set_index("prompt_version").loc["1", "n"] == 10  # the 3-hours-old generation is outside
    every = acceptance.acceptance_rates(store, **WINDOW, by=("project", "prompt_version"))
    assert every.set_index("prompt_version").loc["1", "n"].tolist() == [10, 1]


def test_empty_window_and_bad_segments(store: Any) -> None:
    empty = acceptance.acceptance_rates(store, **WINDOW, by=())
    assert empty[["generations", "n"]].values.tolist() == [[0, 0]]
    assert math.isnan(empty["rate"].iloc[0])
    seg = acceptance.acceptance_rates(store, **WINDOW)
    assert len(seg) == 0 and {"prompt_version", "rate", "ci_low", "coverage"} <= set(seg.columns)
    for bad in ("input_text", "prompt_version; DROP TABLE spans", "tags"):
        with pytest.raises(ValueError, match="cannot segment by"):
            acceptance.acceptance_rates(store, **WINDOW, by=(bad,))


# --- A/B comparison ------------------------------------------------------------------------------------


def plant_ab(store: Any, arms: dict[str, dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Per arm (prompt version): ``accepted``/``rejected`` counts, ``latency``/``cost`` lists (one per
    generation), ``toxic`` (values of the output toxicity score, ``None`` = not scored) and ``labels``.
    Returns what was planted, for the expected values."""
    spans, items, scored, values, labels = [], [], [], [], []
    i = 0
    for version, arm in arms.items():
        outcomes = ["copy"] * arm["accepted"] + ["regenerate"] * arm["rejected"]
        n = len(arm["latency"])
        for j in range(n):
            s = gen(
                i, at=i * 0.01, prompt_version=version, duration_ms=arm["latency"][j], cost_usd=arm["cost"][j]
            )
            spans.append(s)
            if j < len(outcomes):
                items.append({"span_id": sid(i), "kind": outcomes[j]})
            if arm["toxic"][j] is not None:
                scored.append(s)
                values.append(arm["toxic"][j])
                labels.append(arm["labels"][j])
            i += 1
    insert_spans(store, spans)
    insert_feedback(store, items)
    insert_scores(store, scored, values, labels)
    return arms


def wilson_scipy(k: int, n: int) -> tuple[float, float]:
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return ci.low, ci.high


def newcombe_by_hand(ka: int, na: int, kb: int, nb: int) -> tuple[float, float]:
    (la, ua), (lb, ub) = wilson_scipy(ka, na), wilson_scipy(kb, nb)
    pa, pb = ka / na, kb / nb
    d = pb - pa
    return d - math.hypot(pb - lb, ua - pa), d + math.hypot(ub - pb, pa - la)


def test_compare_detects_a_clear_difference(store: Any) -> None:
    n = 120
    a = {
        "accepted": 96,
        "rejected": 24,
        "latency": [100.0 + (j * 7) % 50 for j in range(n)],
        "cost": [0.001 * (1 + j % 3) if j % 10 else None for j in range(n)],  # every 10th unpriced
        "toxic": [0.9 if j < 6 else 0.1 for j in range(n)],
        "labels": ["toxic" if j < 6 else "" for j in range(n)],
    }
    b = {
        "accepted": 60,
        "rejected": 60,
        "latency": [140.0 + (j * 11) % 60 for j in range(n)],
        "cost": [0.002 * (1 + j % 3) for j in range(n)],
        # 30 toxic: 20 by score, 10 by label only (low score, label lists toxic); 10 not scored
        "toxic": [0.8] * 20 + [0.2] * 10 + [0.05] * 80 + [None] * 10,
        "labels": ["insult,toxic"] * 20 + ["insult, toxic"] * 10 + [""] * 80 + [""] * 10,
    }
    plant_ab(store, {"2": a, "3": b})
    res = acceptance.compare(store, a={"prompt_version": "2"}, b={"prompt_version": "3"}, **WINDOW)
    assert set(res) == {"acceptance", "toxicity", "latency_ms", "cost_usd"}

    acc = res["acceptance"]
    assert (acc.status, acc.test, acc.n_a, acc.n_b) == ("ok", "two_proportion_z", 120, 120)
    assert (acc.estimate_a, acc.estimate_b) == (pytest.approx(0.8), pytest.approx(0.5))
    assert acc.difference == pytest.approx(-0.3)
    # the pooled z-test's p equals the uncorrected chi-square test's
    chi2 = sps.chi2_contingency([[96, 24], [60, 60]], correction=False)
    assert acc.p_value == pytest.approx(chi2.pvalue, rel=1e-9)
    assert acc.statistic == pytest.approx(-math.sqrt(chi2.statistic))  # b below a
    assert (acc.ci_low, acc.ci_high) == pytest.approx(newcombe_by_hand(96, 120, 60, 120), abs=1e-9)
    assert acc.ci_high < 0 and acc.significant is True

    tox = res["toxicity"]
    assert (tox.n_a, tox.n_b) == (120, 110)
    assert (tox.estimate_a, tox.estimate_b) == (pytest.approx(6 / 120), pytest.approx(30 / 110))
    assert tox.test == "two_proportion_z"
    assert tox.p_value == pytest.approx(
        sps.chi2_contingency([[6, 114], [30, 80]], correction=False).pvalue, rel=1e-9
    )
    assert tox.significant is True

    lat = res["latency_ms"]
    mw = sps.mannwhitneyu(a["latency"], b["latency"], method="asymptotic")
    assert lat.test == "mann_whitney_u_asymptotic"  # ties in the planted latencies
    assert (lat.statistic, lat.p_value) == (pytest.approx(mw.statistic), pytest.approx(mw.pvalue, rel=1e-9))
    assert lat.difference == pytest.approx(
        sps.scoreatpercentile(b["latency"], 50) - sps.scoreatpercentile(a["latency"], 50)
    )
    assert lat.significant is True and lat.ci_low is None

    cost = res["cost_usd"]
    priced_a = [c for c in a["cost"] if c is not None]
    assert (cost.n_a, cost.n_b) == (108, 120)
    mw = sps.mannwhitneyu(priced_a, b["cost"], method="asymptotic")
    assert cost.p_value == pytest.approx(mw.pvalue, rel=1e-9)
    assert cost.difference == pytest.approx(0.004 - 0.002)
    assert cost.significant is True


def test_compare_identical_arms_is_not_significant(store: Any) -> None:
    n = 60
    arm = {
        "accepted": 40,
        "rejected": 20,
        "latency": [200.0 + (j * 13) % 97 for j in range(n)],
        "cost": [0.001 * (1 + j % 4) for j in range(n)],
        "toxic": [0.9 if j % 12 == 0 else 0.0 for j in range(n)],
        "labels": [""] * n,
    }
    plant_ab(store, {"A": arm, "B": dict(arm)})
    res = acceptance.compare(store, a={"prompt_version": "A"}, b={"prompt_version": "B"}, **WINDOW)
    for name, r in res.items():
        assert r.status == "ok", name
        assert r.difference == pytest.approx(0.0), name
        assert r.p_value == pytest.approx(1.0), name
        assert r.significant is False, name
    assert res["acceptance"].ci_low < 0 < res["acceptance"].ci_high


def test_compare_small_counts_use_fisher(store: Any) -> None:
    n = 30
    common = {"latency": [100.0] * n, "cost": [None] * n, "toxic": [None] * n, "labels": [""] * n}
    plant_ab(
        store,
        {"x": {"accepted": 29, "rejected": 1, **common}, "y": {"accepted": 22, "rejected": 8, **common}},
    )
    res = acceptance.compare(store, a={"prompt_version": "x"}, b={"prompt_version": "y"}, **WINDOW)
    acc = res["acceptance"]
    assert acc.test == "fisher_exact"  # 9 rejections in 60: expected 4.5 per arm, below 5
    assert acc.p_value == pytest.approx(sps.fisher_exact([[29, 1], [22, 8]]).pvalue, rel=1e-9)
    assert (acc.ci_low, acc.ci_high) == pytest.approx(newcombe_by_hand(29, 30, 22, 30), abs=1e-9)
    # identical latencies: nothing to rank
    assert res["latency_ms"].p_value == 1.0 and res["latency_ms"].significant is False
    assert res["cost_usd"].status == NOT_ENOUGH_DATA and res["cost_usd"].n_a == 0
    assert res["cost_usd"].estimate_a is None
    assert res["toxicity"].status == NOT_ENOUGH_DATA and (res["toxicity"].n_a, res["toxicity"].n_b) == (0, 0)


def test_compare_tiny_arms_is_not_enough_data(store: Any) -> None:
    tiny = {"accepted": 3, "rejected": 1, "latency": [10.0, 20.0, 30.0, 40.0], "cost": [0.1] * 4}
    plant_ab(
        store,
        {
            "1": {**tiny, "toxic": [0.1] * 4, "labels": [""] * 4},
            "2": {**tiny, "toxic": [0.1] * 4, "labels": [""] * 4},
        },
    )
    res = acceptance.compare(
        store, a={"prompt_version": "1"}, b={"prompt_version": "2"}, **WINDOW, min_samples=5
    )
    for r in res.values():
        assert r.status == NOT_ENOUGH_DATA
        assert r.min_samples == 5
        assert (r.n_a, r.n_b) == (4, 4)
        assert r.p_value is None and r.significant is None and r.test is None
    assert res["acceptance"].estimate_a == pytest.approx(0.75)
    assert res["latency_ms"].estimate_b == pytest.approx(25.0)
    # the same data is enough once the bar is lower
    assert (
        acceptance.compare(
            store, a={"prompt_version": "1"}, b={"prompt_version": "2"}, **WINDOW, min_samples=4
        )["acceptance"].status
        == "ok"
    )


def test_compare_models_sample_cap_and_alpha(store: Any) -> None:
    n = 100
    spans = [
        gen(j, at=j * 0.01, model="gpt-4o" if j % 2 else "claude", duration_ms=50.0 + j) for j in range(2 * n)
    ]
    insert_spans(store, spans)
    cfg = {"max_samples": 40, "min_samples": 10, "alpha": 0.01}
    res = acceptance.compare(store, a={"model": "claude"}, b={"model": "gpt-4o"}, **WINDOW, config=cfg)
    lat = res["latency_ms"]
    assert (lat.n_a, lat.n_b) == (40, 40)
    assert lat.alpha == 0.01 and lat.confidence == pytest.approx(0.99)
    again = acceptance.compare(store, a={"model": "claude"}, b={"model": "gpt-4o"}, **WINDOW, config=cfg)
    assert again["latency_ms"] == lat  # the sample is chosen by span hash: the same every time
    assert res["acceptance"].status == NOT_ENOUGH_DATA and res["acceptance"].n_a == 0


def test_compare_arguments_are_checked_and_bound(store: Any) -> None:
    insert_spans(store, [gen(0, prompt_version="2")])
    with pytest.raises(ValueError, match="arms overlap"):
        acceptance.compare(store, a={"prompt_version": "2"}, b={"model": "gpt-4o"}, **WINDOW)
    with pytest.raises(ValueError, match="arms overlap"):
        acceptance.compare(store, a={"prompt_version": "2"}, b={"prompt_version": "2"}, **WINDOW)
    with pytest.raises(ValueError, match="cannot segment by"):
        acceptance.compare(store, a={"input_text": "x"}, b={"input_text": "y"}, **WINDOW)
    with pytest.raises(ValueError, match="alpha"):
        acceptance.compare(store, a={"prompt_version": "2"}, b={"prompt_version": "3"}, **WINDOW, alpha=0)
    evil = acceptance.compare(
        store, a={"prompt_version": "2' OR 1=1 --"}, b={"prompt_version": "3"}, **WINDOW
    )
    assert evil["latency_ms"].n_a == 0  # the value is bound, never spliced into the SQL
    ok = acceptance.compare(
        store, a={"prompt_version": 2}, b={"prompt_version": "3"}, **WINDOW, min_samples=1
    )
    assert ok["latency_ms"].n_a == 1  # numbers are compared as the strings the column holds


def test_acceptance_job_stores_decisions_as_scores_and_follows_new_feedback(store: Any) -> None:
    from monitor.analyzers.acceptance_job import AcceptanceJob
    from monitor.analyzers.config import AnalyzerSettings

    insert_spans(store, [gen(i, at=i) for i in range(4)])
    insert_feedback(
        store,
        [
            {"response_id": "resp-0", "kind": "copy"},
            {"response_id": "resp-1", "kind": "thumbs", "value": 0},
            {"span_id": sid(2), "kind": "rating", "value": 5},
            {"trace_id": tid(3), "kind": "comment", "comment": "meh"},  # not a decision
        ],
    )
    job = AcceptanceJob(AnalyzerSettings("acceptance", options={"lookback_hours": 3}))
    horizon = NOW + dt.timedelta(hours=2)

    def stored() -> dict[str, tuple[float, str]]:
        rows = store.query(
            f"SELECT span_id, value, label FROM {store.table('scores')} FINAL WHERE analyzer = 'acceptance'"
        ).result_rows
        return {s: (v, label) for s, v, label in rows}

    assert job.run(store, horizon) == 3
    assert stored() == {
        sid(0): (1.0, "accepted:copy"),
        sid(1): (0.0, "rejected:thumbs"),
        sid(2): (1.0, "accepted:rating"),
    }
    assert job.run(store, horizon) == 0  # no new feedback: nothing recomputed
    insert_feedback(store, [{"response_id": "resp-0", "kind": "regenerate", "after": 30}])
    assert job.run(store, horizon) == 3
    assert stored()[sid(0)] == (0.0, "rejected:regenerate")  # the later decision replaced the copy
    with pytest.raises(AnalyzerConfigError, match="lookback_hours must be a positive number"):
        AcceptanceJob(AnalyzerSettings("acceptance", options={"lookback_hours": 0}))
