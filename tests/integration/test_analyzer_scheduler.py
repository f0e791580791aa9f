"""The analyzers' scheduler on real chDB: watermarks, idempotency, crash recovery, horizon, sampling, backfill.

A small real analyzer (text length) stands in for the model-backed ones so that every expected row can be
computed by hand here.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytest

from monitor.analyzers.base import Analyzer, Score
from monitor.analyzers.config import AnalyzerSettings, SchedulerConfig
from monitor.analyzers.scheduler import Scheduler, SpanAnalyzerJob
from monitor.settings import ConfigError
from monitor.store.schema import SPAN_COLUMNS, span_row

T0 = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone.utc)
NOW = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.timezone.utc)


class LengthAnalyzer(Analyzer):
    """value = min(1, len(output)/100); label 'long' above 50 chars; no row for an empty output."""

    name = "length"
    version = "length/1"
    fields = ("output_text",)

    def __init__(self, options: Mapping[str, Any] | None = None, fail_on_call: int | None = None) -> None:
        super().__init__(options)
        self.calls = 0
        self.seen: list[str] = []
        self.fail_on_call = fail_on_call

    def score(self, spans: Sequence[Mapping[str, Any]]) -> Iterable[Score]:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("model crashed")
        for i, s in enumerate(spans):
            self.seen.append(s["span_id"])
            text = s["output_text"]
            if text:
                yield Score(i, "output", min(1.0, len(text) / 100), "long" if len(text) > 50 else "")


def insert_spans(store: Any, spans: list[dict[str, Any]]) -> None:
    rows = [span_row(s) for s in spans]
    for r in rows:
        r.setdefault("ingested_at", T0)
    cols = [[r[c] for r in rows] for c in SPAN_COLUMNS]
    store.insert_columns("spans", cols, SPAN_COLUMNS)


def make_spans(
    n: int, *, ingested: dt.datetime = T0, kind: str = "llm", prefix: str = "s"
) -> list[dict[str, Any]]:
    return [
        {
            "trace_id": f"t{i // 3:04d}",
            "span_id": f"{prefix}{i:05d}",
            "kind": kind,
            "start_time": T0 + dt.timedelta(seconds=i),
            "output_text": "x" * (i % 120),
            "ingested_at": ingested,
        }
        for i in range(n)
    ]


def scheduler(store: Any, analyzer: Analyzer, *, batch: int = 7, rate: float = 1.0, settle: float = 0.0,
              now: dt.datetime = NOW, pending: Any = None) -> tuple[Scheduler, SpanAnalyzerJob]:  # fmt: skip
    job = SpanAnalyzerJob(analyzer, AnalyzerSettings(analyzer.name, batch_size=batch, sample_rate=rate))
    sched = Scheduler(store, [job], SchedulerConfig({analyzer.name: job.settings}, settle), clock=lambda: now,
                      horizon=pending)  # fmt: skip
    return sched, job


def score_rows(store: Any, final: bool = True) -> list[tuple[Any, ...]]:
    return store.query(
        f"SELECT span_id, metric, value, label, analyzer, analyzer_version FROM {store.table('scores')} "
        f"{'FINAL' if final else ''} ORDER BY span_id"
    ).result_rows


def expected(spans: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    out = []
    for s in sorted(spans, key=lambda s: s["span_id"]):
        n = len(s["output_text"])
        if n:
            out.append(
                (s["span_id"], "output", min(1.0, n / 100), "long" if n > 50 else "", "length", "length/1")
            )
    return out


def test_scores_every_span_once_and_a_second_run_is_a_no_op(store: Any) -> None:
    spans = make_spans(40)
    insert_spans(store, spans + make_spans(5, kind="chain", prefix="c"))
    sched, job = scheduler(store, LengthAnalyzer())
    assert sched.run_once(raise_errors=True) == {"length": 40}  # chains are not the analyzer's kind
    rows = score_rows(store)
    assert rows == expected(spans)
    assert len(rows) == 40 - 1  # the span with an empty output (i=0) has no row
    wm = job.load_watermark(store)
    assert (wm.trace_id, wm.span_id, wm.processed) == ("t0013", "s00039", 40)
    assert sched.run_once(raise_errors=True) == {"length": 0}
    assert score_rows(store, final=False) == rows  # physically no duplicate either


def test_new_spans_only_are_read_on_the_next_run(store: Any) -> None:
    insert_spans(store, make_spans(10))
    analyzer = LengthAnalyzer()
    sched, _ = scheduler(store, analyzer)
    sched.run_once(raise_errors=True)
    later = make_spans(6, ingested=T0 + dt.timedelta(minutes=1), prefix="n")
    insert_spans(store, later)
    analyzer.seen.clear()
    assert sched.run_once(raise_errors=True) == {"length": 6}
    assert sorted(analyzer.seen) == [s["span_id"] for s in later]


def test_ties_on_ingested_at_larger_than_a_batch_are_read_exactly_once(store: Any) -> None:
    spans = make_spans(25)  # one request: every row has the same ingested_at
    insert_spans(store, spans)
    analyzer = LengthAnalyzer()
    sched, _ = scheduler(store, analyzer, batch=4)
    sched.run_once(raise_errors=True)
    assert sorted(analyzer.seen) == sorted(s["span_id"] for s in spans)
    assert len(analyzer.seen) == 25


def test_crash_in_the_analyzer_mid_run_resumes_without_skip_or_duplicate(store: Any) -> None:
    spans = make_spans(30)
    insert_spans(store, spans)
    crashing = LengthAnalyzer(fail_on_call=3)  # batches of 7: the third batch fails
    sched, job = scheduler(store, crashing)
    assert sched.run_once() == {"length": 0}
    assert sched.failures == {"length": 1}
    assert "model crashed" in sched.last_error["length"]
    assert job.load_watermark(store).processed == 14  # two batches stored, the watermark after them
    resumed = LengthAnalyzer()
    sched2, _ = scheduler(store, resumed)
    assert sched2.run_once(raise_errors=True) == {"length": 16}
    assert resumed.seen == [s["span_id"] for s in spans[14:]]
    assert score_rows(store, final=False) == expected(spans)


def test_crash_between_insert_and_watermark_does_not_duplicate(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    spans = make_spans(20)
    insert_spans(store, spans)
    sched, job = scheduler(store, LengthAnalyzer())
    calls = {"n": 0}
    original = SpanAnalyzerJob.save_watermark

    def flaky(self: SpanAnalyzerJob, st: Any, wm: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        original(self, st, wm)

    monkeypatch.setattr(SpanAnalyzerJob, "save_watermark", flaky)
    sched.run_once()
    assert job.load_watermark(store).processed == 7  # the second batch's scores are in, its watermark is not
    assert len(score_rows(store, final=False)) == 13
    monkeypatch.setattr(SpanAnalyzerJob, "save_watermark", original)
    assert sched.run_once(raise_errors=True) == {"length": 13}  # batch two is read again...
    raw = score_rows(store, final=False)
    assert raw == expected(spans)  # ...and its re-insert was dropped as a whole (same token)
    assert len(raw) == len({r[0] for r in raw})


def test_horizon_leaves_recent_and_unstored_spans_for_later(store: Any) -> None:
    old = make_spans(5)
    recent = make_spans(4, ingested=NOW - dt.timedelta(seconds=1), prefix="r")
    insert_spans(store, old + recent)
    analyzer = LengthAnalyzer()
    sched, _ = scheduler(store, analyzer, settle=5.0)
    assert sched.run_once(raise_errors=True) == {"length": 5}
    # the collector still holds a request accepted at T0 + 30 s: nothing at or after it may be read
    pending = T0 + dt.timedelta(seconds=30)
    insert_spans(store, make_spans(3, ingested=T0 + dt.timedelta(seconds=40), prefix="p"))
    sched2, _ = scheduler(store, LengthAnalyzer(), settle=5.0, pending=lambda: pending)
    assert sched2.run_once(raise_errors=True) == {"length": 0}
    sched3, _ = scheduler(store, LengthAnalyzer(), settle=0.0, pending=lambda: None)
    assert sched3.run_once(raise_errors=True) == {"length": 7}  # the 3 pending ones and the 4 recent ones


def test_sampling_is_deterministic_by_span_id(store: Any) -> None:
    spans = make_spans(200)
    insert_spans(store, spans)
    a = LengthAnalyzer()
    sched, _ = scheduler(store, a, rate=0.25, batch=50)
    n = sched.run_once(raise_errors=True)["length"]
    chosen = store.query(
        f"SELECT span_id FROM {store.table('spans')} WHERE cityHash64(span_id) % 10000 < 2500 ORDER BY span_id"
    ).result_rows
    assert sorted(a.seen) == [r[0] for r in chosen]
    assert n == len(chosen) and 20 < n < 80
    b = LengthAnalyzer()
    job_b = SpanAnalyzerJob(b, AnalyzerSettings("length", batch_size=50, sample_rate=0.25))
    job_b.run(store, NOW, since=T0)  # a backfill with the same rate picks the same spans
    assert sorted(b.seen) == sorted(a.seen)


def test_backfill_rescores_history_with_progress_and_keeps_the_watermark(store: Any) -> None:
    spans = make_spans(30)
    insert_spans(store, spans)
    sched, job = scheduler(store, LengthAnalyzer())
    sched.run_once(raise_errors=True)
    before = job.load_watermark(store)
    again = LengthAnalyzer()
    sched2, job2 = scheduler(store, again)
    out = io.StringIO()
    done = sched2.backfill(T0 + dt.timedelta(seconds=10), stream=out)
    assert done == {"length": 20}
    assert again.seen == [s["span_id"] for s in spans[10:]]
    text = out.getvalue()
    assert "20/20 spans" in text and "100.0%" in text
    assert job2.load_watermark(store) == before
    assert score_rows(store) == expected(spans)  # re-scored rows replaced the old ones


def test_store_failure_is_counted_and_the_next_run_recovers(store: Any) -> None:
    insert_spans(store, make_spans(5))
    sched, job = scheduler(store, LengthAnalyzer())
    db = store.database
    store.command(f"RENAME TABLE `{db}`.`scores` TO `{db}`.`scores_away`")
    try:
        assert sched.run_once() == {"length": 0}
        assert sched.failures["length"] == 1
        assert job.load_watermark(store).processed == 0
    finally:
        store.command(f"RENAME TABLE `{db}`.`scores_away` TO `{db}`.`scores`")
    assert sched.run_once() == {"length": 5}
    assert "length" not in sched.last_error


def test_background_thread_runs_jobs_and_stops(store: Any) -> None:
    insert_spans(store, make_spans(12))
    sched, _ = scheduler(store, LengthAnalyzer())
    sched.start()
    try:
        for _ in range(200):
            if sched.processed.get("length") == 12:
                break
            import time

            time.sleep(0.05)
    finally:
        sched.stop()
    assert sched.processed["length"] == 12
    assert len(score_rows(store)) == 11


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("nope", "expected a mapping"),
        ({"bogus": {}}, "unknown analyzer 'bogus'"),
        ({"length": {"interval": -1}}, "length: interval must be a number >= 0.1"),
        ({"length": {"batch_size": 2.5}}, "batch_size must be a whole number"),
        ({"length": {"sample_rate": 1.5}}, "sample_rate must be between 0 and 1"),
        ({"length": {"enabled": "yes"}}, "enabled must be true or false"),
        ({"settle_seconds": "x"}, "settle_seconds must be a number"),
    ],
)
def test_bad_config_is_one_clear_error(section: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SchedulerConfig.parse(section, ("length",), "cfg.yaml")


def test_config_defaults_and_options() -> None:
    cfg = SchedulerConfig.parse(
        {"interval": 10, "length": {"batch_size": 64, "threshold": 0.7}, "other": False}, ("length", "other")
    )
    assert cfg.job("length") == AnalyzerSettings("length", True, 10.0, 64, 1.0, {"threshold": 0.7})
    assert cfg.job("other").enabled is False
    assert cfg.settle_seconds == 2.0


def test_the_readme_analyzers_example_is_a_valid_config(store: Any, tmp_path: Any) -> None:
    import re
    from pathlib import Path

    from monitor.analyzers.service import build_scheduler
    from monitor.settings import Settings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Analyzers") :]
    example = re.search(r"```yaml\n(analyzers:.*?)```", section, re.S)
    assert example is not None
    cfg = tmp_path / "llm-monitor.yaml"
    cfg.write_text(example.group(1), encoding="utf-8")
    settings = Settings.load({"store": "chdb:///unused"}, config_file=str(cfg))
    sched = build_scheduler(store, settings)
    jobs = {j.name: j for j in sched.jobs}
    assert "sentiment" not in jobs  # switched off in the example
    assert jobs["injection"].settings.sample_rate == 0.5
    assert jobs["toxicity"].settings.options["mode"] == "cascade"
    assert sched.config.settle_seconds == 2.0
