"""Overview: headline numbers, model calls over time by model, and a per-model table.

Every number comes from :mod:`monitor.metrics`, so what the page shows is what an alert on the same
metric sees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import altair as alt
import pandas as pd
import streamlit as st

from dashboards import data
from monitor import metrics

if TYPE_CHECKING:
    from monitor.store.client import Store


def kpi_tiles(k: dict) -> None:
    """Two rows of four tiles; unknowns show "—" and unpriced calls are called out next to the cost."""
    row1 = st.columns(4)
    row1[0].metric(
        "Requests", data.fmt_int(k["requests"]), border=True, help="Model calls: LLM and embedding spans."
    )
    row1[1].metric(
        "Error rate",
        data.fmt_pct(k["error_rate"]),
        data.plural(k["errors"], "error"),
        delta_color="red" if k["errors"] else "off",
        delta_arrow="off",
        border=True,
    )
    row1[2].metric("Latency p50", data.fmt_ms(k["latency_p50_ms"]), border=True)
    row1[3].metric("Latency p95", data.fmt_ms(k["latency_p95_ms"]), border=True)
    row2 = st.columns(4)
    row2[0].metric(
        "TTFT p50",
        data.fmt_ms(k["ttft_p50_ms"]),
        data.plural(k["streamed_calls"], "streamed call"),
        delta_color="off",
        delta_arrow="off",
        border=True,
        help="Time to first token, over streamed calls.",
    )
    row2[1].metric(
        "Tokens",
        data.fmt_compact(k["total_tokens"]),
        f"{data.fmt_compact(k['input_tokens'])} in · {data.fmt_compact(k['output_tokens'])} out",
        delta_color="off",
        delta_arrow="off",
        border=True,
    )
    unpriced = int(k["unpriced_calls"] or 0)
    row2[2].metric(
        "Cost",
        data.fmt_cost(k["cost_usd"]),
        data.plural(unpriced, "unpriced call") if unpriced else "all calls priced",
        delta_color="orange" if unpriced else "off",
        delta_arrow="off",
        border=True,
        help="Sum over priced calls. Calls to models missing from the price table have no cost.",
    )
    row2[3].metric(
        "Traces",
        data.fmt_int(k["traces"]),
        data.plural(k["spans"], "span"),
        delta_color="off",
        delta_arrow="off",
        border=True,
    )


def charts(ts: pd.DataFrame) -> None:
    """Four small charts by model; one color per model across all four."""
    ts = ts.assign(model=ts["model"].map(data.model_label))
    left, right = st.columns(2)
    with left:
        st.markdown("**Requests**")
        st.bar_chart(ts, x="bucket", y="requests", color="model", x_label="", y_label="calls")
        st.markdown("**Tokens**")
        st.bar_chart(ts, x="bucket", y="total_tokens", color="model", x_label="", y_label="tokens")
    with right:
        st.markdown("**Latency p95 (ms)**")
        st.altair_chart(latency_chart(ts), width="stretch")
        st.markdown("**Cost (USD)**")
        st.bar_chart(ts, x="bucket", y="cost_usd", color="model", x_label="", y_label="USD")


def latency_chart(ts: pd.DataFrame) -> alt.Chart:
    """Lines with point marks: a model seen in a single bucket (a fresh demo) is still visible."""
    return (
        alt.Chart(ts.dropna(subset=["latency_p95_ms"]))
        .mark_line(point=True)
        .encode(
            x=alt.X("bucket:T", title=None),
            y=alt.Y("latency_p95_ms:Q", title="ms"),
            color=alt.Color("model:N", title="model"),
            tooltip=["model", "bucket", alt.Tooltip("latency_p95_ms:Q", format=".0f")],
        )
    )


def model_table(df: pd.DataFrame) -> None:
    df = df.assign(model=df["model"].map(data.model_label))
    cols = [
        "model",
        "provider",
        "requests",
        "errors",
        "error_rate",
        "latency_p50_ms",
        "latency_p95_ms",
        "ttft_p50_ms",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "cost_usd",
        "unpriced_calls",
    ]
    st.dataframe(
        df[cols],
        hide_index=True,
        key="by_model",
        column_config={
            "model": "Model",
            "provider": "Provider",
            "requests": st.column_config.NumberColumn("Requests", format="%d"),
            "errors": st.column_config.NumberColumn("Errors", format="%d"),
            "error_rate": st.column_config.NumberColumn("Error rate", format="percent"),
            "latency_p50_ms": st.column_config.NumberColumn("p50", format="%.0f ms"),
            "latency_p95_ms": st.column_config.NumberColumn("p95", format="%.0f ms"),
            "ttft_p50_ms": st.column_config.NumberColumn("TTFT p50", format="%.0f ms"),
            "input_tokens": st.column_config.NumberColumn("Input tokens", format="localized"),
            "output_tokens": st.column_config.NumberColumn("Output tokens", format="localized"),
            "total_tokens": st.column_config.NumberColumn("Total tokens", format="localized"),
            "cost_usd": st.column_config.NumberColumn(
                "Cost", format="$%.4f", help="Empty: no call of this model was priced."
            ),
            "unpriced_calls": st.column_config.NumberColumn("Unpriced calls", format="%d"),
        },
    )


def body(store: Store, filters: data.Filters) -> None:
    st.title("Overview")
    if data.store_is_empty(store):
        data.empty_state()
        return
    args = filters.query_args()
    k = metrics.overview_kpis(store, **args)
    ts = metrics.timeseries(store, **args)
    width = ts.attrs.get("bucket_seconds") or metrics.pick_bucket_seconds(args["start"], args["end"])
    st.caption(
        f"{filters.range_label} · {args['start']:%Y-%m-%d %H:%M} – {args['end']:%Y-%m-%d %H:%M} UTC · "
        f"{_bucket_label(width)} buckets"
    )
    kpi_tiles(k)
    if k["requests"] == 0:
        st.info("No model calls in this time range and filters. Widen the time range or clear the filters.")
        return
    st.subheader("Over time, by model")
    charts(ts)
    st.subheader("By model")
    model_table(metrics.by_model(store, **args))


def _bucket_label(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400}-day"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}-hour"
    if seconds % 60 == 0:
        return f"{seconds // 60}-min"
    return f"{seconds}-s"


data.run_page(body)
