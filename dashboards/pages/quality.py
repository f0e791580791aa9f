"""Quality: what the analyzers found (toxicity, PII, injection, refusal, format, sentiment, acceptance)
and which distributions drifted, for the sidebar's window and filters.

Numbers come from :mod:`monitor.quality` and :mod:`monitor.acceptance`, the same reads alert rules use.
Each score row names the model that produced it, so the table shows it next to the rate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from dashboards import data
from monitor import acceptance, quality

if TYPE_CHECKING:
    from monitor.store.client import Store

SIDE = {"input": "user input", "output": "model output", "accepted": "generation"}


@st.cache_resource(show_spinner=False)
def _acceptance_config() -> acceptance.AcceptanceConfig:
    """The ``analyzers: acceptance:`` mapping of the config file, as the acceptance job applies it."""
    from monitor.settings import ConfigError, Settings

    try:
        return acceptance.AcceptanceConfig.from_config_file(Settings.load().config_file)
    except ConfigError as e:
        st.warning(f"Using the default acceptance mapping: {e}")
        return acceptance.AcceptanceConfig()


def body(store: Store, filters: data.Filters) -> None:
    st.title("Quality")
    if data.store_is_empty(store):
        data.empty_state()
        return
    args = filters.query_args()
    st.caption(
        f"{filters.range_label} · spans that started {args['start']:%Y-%m-%d %H:%M} – {args['end']:%Y-%m-%d %H:%M} UTC"
    )

    st.subheader("Analyzer scores")
    summary = quality.score_summary(store, **args)
    if summary.empty:
        st.info(
            "No scores yet in this window: the analyzers run every 30 s on new spans (`llm-monitor analyze --once` runs them now)."
        )
    else:
        table = summary.assign(side=summary["metric"].map(lambda m: SIDE.get(m, m)))
        st.dataframe(
            table[["analyzer", "side", "model", "spans", "flagged", "rate", "mean"]],
            hide_index=True,
            width="stretch",
            column_config={
                "rate": st.column_config.NumberColumn("rate (≥ 0.5; acceptance: accepted)", format="percent"),
                "mean": st.column_config.NumberColumn("mean score", format="%.3f"),
                "model": st.column_config.TextColumn("scored by"),
            },
        )

    st.subheader("Acceptance by prompt version")
    rates = acceptance.acceptance_rates(
        store, start=args["start"], end=args["end"], project=args["project"], service=args["service"],
        model=args["model"], by=("prompt_name", "prompt_version"), config=_acceptance_config(),
    )  # fmt: skip
    if rates.empty:
        st.info(
            "No feedback in this window (send it with `monitor.feedback`/`monitor.track` or POST /v1/feedback)."
        )
    else:
        st.dataframe(rates, hide_index=True, width="stretch")

    st.subheader("Drift")
    drift = quality.drift_report(store, start=args["start"], end=args["end"], project=args["project"])
    if drift.empty:
        st.info("No drift report yet: windows are compared once they have ended.")
    else:
        n = int(drift["drifted"].sum())
        st.markdown(f"**{n}** of {len(drift)} distance checks above their threshold in this window.")
        st.dataframe(drift, hide_index=True, width="stretch")


data.run_page(body)
