"""The scheduler's acceptance job: each generation's decision from feedback, as ``scores`` rows.

:mod:`monitor.acceptance` decides, per LLM span, whether its user accepted or rejected it (one decision per
generation: the latest decisive feedback event). This job stores that decision next to the other analyzers'
scores, so the dashboard, alert rules and ``llm-monitor query`` read acceptance like any other score:

``scores``: ``analyzer = 'acceptance'``, ``metric = 'accepted'``, ``value`` 1.0 (accepted) or 0.0
(rejected), ``label`` = ``accepted:<kind>`` / ``rejected:<kind>`` (the feedback kind that decided).

Feedback arrives after its generation, sometimes days later, so the job is driven by the feedback table:
a run does nothing unless feedback newer than its watermark (``feedback.created_at``) exists; then it
recomputes the decisions of the generations that started within ``lookback`` (default 2 days) and writes
them. A changed decision (copy, then regenerate) replaces the earlier row: ``scores`` is keyed by (span,
analyzer, metric).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from monitor.analyzers.base import AnalyzerConfigError

if TYPE_CHECKING:
    from monitor.analyzers.config import AnalyzerSettings
    from monitor.analyzers.scheduler import Progress
    from monitor.settings import Settings
    from monitor.store.client import Store

__all__ = ["AcceptanceJob"]

VERSION = "acceptance/1"
_OWN_KEYS = ("lookback_hours",)


class AcceptanceJob:
    name = "acceptance"

    def __init__(self, settings: AnalyzerSettings, app_settings: Settings | None = None) -> None:
        from monitor.acceptance import AcceptanceConfig

        self.settings = settings
        opts: Mapping[str, Any] = settings.options
        hours = opts.get("lookback_hours", 48)
        if isinstance(hours, bool) or not isinstance(hours, (int, float)) or hours <= 0:
            raise AnalyzerConfigError(
                f"analyzers: acceptance: lookback_hours must be a positive number, got {hours!r}"
            )
        self.lookback = dt.timedelta(hours=float(hours))
        self.config = AcceptanceConfig.from_options({k: v for k, v in opts.items() if k not in _OWN_KEYS})

    def run(self, store: Store, horizon: dt.datetime, progress: Progress | None = None) -> int:
        from monitor.acceptance import decisions

        newest = store.scalar(
            f"SELECT max(created_at) FROM {store.table('feedback')} WHERE created_at <= {{h:DateTime64(6, 'UTC')}}",
            {"h": horizon},
        )
        if newest is None or newest.year <= 1970:
            return 0
        newest = newest if newest.tzinfo is not None else newest.replace(tzinfo=dt.timezone.utc)
        from monitor.analyzers.scheduler import SCORE_COLUMNS, Watermark, load_state, save_state

        last = load_state(store, self.name)
        if last is not None and newest <= last.ingested_at:
            return 0
        df = decisions(store, start=horizon - self.lookback, end=horizon, config=self.config)
        now = dt.datetime.now(dt.timezone.utc)
        n = len(df)
        if n:
            accepted = (df["decision"] == "accepted").to_numpy()
            columns = [
                list(df["project"]), list(df["trace_id"]), list(df["span_id"]), list(df["start_time"]),
                ["acceptance"] * n, ["accepted"] * n, [1.0 if a else 0.0 for a in accepted],
                [f"{d}:{k}" for d, k in zip(df["decision"], df["decided_by"], strict=True)], [VERSION] * n,
                [now] * n,
            ]  # fmt: skip
            store.insert_columns("scores", columns, SCORE_COLUMNS)
        save_state(store, self.name, Watermark(newest, processed=n), VERSION)
        if progress is not None:
            progress.advance(n)
        return n
