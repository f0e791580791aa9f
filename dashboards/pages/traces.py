"""Traces: a filterable list of recent traces, and one trace opened as a span tree with its messages.

A trace opens from a selected row or from the URL (``?trace_id=…``), so alerts and logs can link to it;
the URL keeps the open trace, so a reload or a shared link shows the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from dashboards import data
from monitor import metrics

if TYPE_CHECKING:
    from monitor.store.client import Store

MAX_DETAILED_SPANS = 100
STATUS_CHOICES = {"All": None, "OK": "ok", "Error": "error"}
ROLE_AVATARS = {"system": "⚙️", "developer": "⚙️", "tool": "🛠️", "function": "🛠️"}
_DETAIL_FIELDS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "service",
    "environment",
    "provider",
    "request_model",
    "response_model",
    "response_id",
    "finish_reason",
    "temperature",
    "max_tokens",
    "top_p",
    "stream",
    "prompt_name",
    "prompt_version",
    "user_id",
    "session_id",
    "convention",
    "tags",
)


# --- list ----------------------------------------------------------------------------------------------


def trace_filters(store: Store, filters: data.Filters) -> dict[str, Any]:
    """The page's own filters, on top of the sidebar's (service, model, time)."""
    start, end = filters.window()
    users = metrics.filter_options(store, project=filters.project, start=start, end=end)["users"]
    c1, c2, c3, c4 = st.columns([2, 2, 2, 3])
    user = c1.selectbox(
        "User", users, index=None, placeholder="Any user", key="t_user", accept_new_options=True
    )
    session = c2.text_input("Session", key="t_session", placeholder="Any session").strip()
    status = c3.radio("Status", list(STATUS_CHOICES), horizontal=True, key="t_status")
    search = c4.text_input("Search prompts and outputs", key="t_search", placeholder="text…").strip()
    return {
        "user_id": user or None,
        "session_id": session or None,
        "status": STATUS_CHOICES[status],
        "search": search or None,
    }


def trace_table(traces: pd.DataFrame) -> str | None:
    """Show the list; return the trace id of the selected row, if any."""
    view = traces.assign(
        status=traces["status"].map({"error": "❌ error", "ok": "✅ ok"}),
        name=traces["name"].where(traces["name"] != "", "(unnamed)"),
        # Nullable(Float64) arrives as objects; as floats, an unpriced trace shows an empty cell, not "None"
        cost_usd=pd.to_numeric(traces["cost_usd"], errors="coerce"),
    )
    cols = [
        "start_time",
        "name",
        "status",
        "duration_ms",
        "spans",
        "llm_calls",
        "total_tokens",
        "cost_usd",
        "user_id",
        "session_id",
        "models",
        "service",
        "trace_id",
    ]
    event = st.dataframe(
        view[cols],
        hide_index=True,
        key="trace_table",
        on_select="rerun",
        selection_mode="single-row",
        column_config={
            "start_time": st.column_config.DatetimeColumn("Start (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            "name": "Trace",
            "status": "Status",
            "duration_ms": st.column_config.NumberColumn("Duration", format="%.0f ms"),
            "spans": st.column_config.NumberColumn("Spans", format="%d"),
            "llm_calls": st.column_config.NumberColumn("LLM calls", format="%d"),
            "total_tokens": st.column_config.NumberColumn("Tokens", format="localized"),
            "cost_usd": st.column_config.NumberColumn("Cost", format="$%.4f"),
            "user_id": "User",
            "session_id": "Session",
            "models": "Models",
            "service": "Service",
            "trace_id": "Trace id",
        },
    )
    rows = list(getattr(getattr(event, "selection", None), "rows", None) or [])
    if rows and rows[0] < len(traces):
        return str(traces.iloc[rows[0]]["trace_id"])
    return None


# --- one trace -----------------------------------------------------------------------------------------


def render_messages(raw: Any, fallback_text: str, default_role: str) -> bool:
    """Chat bubbles for a messages JSON column, else one bubble with the plain text; False if neither."""
    messages = data.parse_messages(raw)
    if not messages:
        if not fallback_text:
            return False
        messages = [data.Message(default_role, (data.Part("text", fallback_text),))]
    for m in messages:
        with st.chat_message(m.role, avatar=ROLE_AVATARS.get(m.role)):
            if m.role not in ("user", "assistant"):
                st.caption(m.role)
            for p in m.parts:
                if p.kind == "text":
                    st.markdown(p.text)
                elif p.kind == "reasoning":
                    st.caption("reasoning")
                    st.markdown(p.text)
                elif p.kind == "tool_call":
                    st.caption(f"tool call · {p.name}")
                    st.code(p.text or "{}", language="json", wrap_lines=True)
                elif p.kind == "tool_result":
                    st.caption("tool result")
                    st.code(p.text, language=None, wrap_lines=True)
                else:
                    st.code(p.text, language=None, wrap_lines=True)
    return True


def render_io(span: Mapping[str, Any]) -> None:
    """Prompts and outputs of a span: chat bubbles for model calls, plain blocks for the rest."""
    is_call = span.get("kind") in metrics.MODEL_KINDS
    if is_call or data.parse_messages(span.get("input_messages")):
        shown = render_messages(span.get("input_messages"), span.get("input_text") or "", "user")
        shown |= render_messages(span.get("output_messages"), span.get("output_text") or "", "assistant")
        if not shown:
            st.caption("No content captured for this call.")
        return
    for label, text in (("Input", span.get("input_text")), ("Output", span.get("output_text"))):
        if text:
            st.caption(label)
            st.code(text, language=None, wrap_lines=True)


def _plain(v: Any) -> Any:
    """A value ``st.json`` can show (numpy scalars, NaN, timestamps, arrays)."""
    if v is None or isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, float):
        return None if v != v else v
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)) or hasattr(v, "tolist"):
        items = v.tolist() if hasattr(v, "tolist") else v
        return [_plain(x) for x in items] if isinstance(items, list) else _plain(items)
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def span_header(depth: int, s: Mapping[str, Any]) -> str:
    icon = data.KIND_ICONS.get(str(s.get("kind")), data.KIND_ICONS["other"])
    bits = [f"`{s.get('kind')}`"]
    if s.get("model"):
        bits.append(str(s["model"]))
    bits.append(data.fmt_ms(s.get("duration_ms")))
    tokens = int(s.get("total_tokens") or 0) or int(s.get("input_tokens") or 0) + int(
        s.get("output_tokens") or 0
    )
    if tokens:
        bits.append(f"{tokens:,} tokens")
    if s.get("cost_usd") is not None and s.get("cost_usd") == s.get("cost_usd"):
        bits.append(data.fmt_cost(s["cost_usd"]))
    status = ":red[**error**]" if s.get("status") == "error" else str(s.get("status") or "")
    bits.append(status)
    indent = "&nbsp;" * 4 * depth + ("↳ " if depth else "")
    return f"{indent}{icon} **{s.get('name') or '(unnamed)'}** · " + " · ".join(bits)


def tree_table(tree: list[tuple[int, Mapping[str, Any]]]) -> None:
    """The span tree as an indented table; error rows highlighted."""
    rows = []
    for depth, s in tree:
        icon = data.KIND_ICONS.get(str(s.get("kind")), data.KIND_ICONS["other"])
        rows.append(
            {
                "span": "\u2003" * depth + f"{icon} {s.get('name') or '(unnamed)'}",
                "kind": s.get("kind"),
                "model": s.get("model") or "",
                "start_ms": float(s.get("offset_ms") or 0.0),
                "duration_ms": float(s.get("duration_ms") or 0.0),
                "tokens": int(s.get("total_tokens") or 0),
                "cost_usd": s.get("cost_usd"),
                "status": s.get("status"),
            }
        )
    df = pd.DataFrame(rows)
    styled = df.style.apply(
        lambda r: ["background-color: rgba(255, 75, 75, 0.18)" if r["status"] == "error" else ""] * len(r),
        axis=1,
    )
    st.dataframe(
        styled,
        hide_index=True,
        key="span_tree",
        column_config={
            "span": st.column_config.TextColumn("Span", width="large"),
            "kind": "Kind",
            "model": "Model",
            "start_ms": st.column_config.NumberColumn("Starts at", format="+%.0f ms"),
            "duration_ms": st.column_config.NumberColumn("Duration", format="%.0f ms"),
            "tokens": st.column_config.NumberColumn("Tokens", format="localized"),
            "cost_usd": st.column_config.NumberColumn("Cost", format="$%.4f"),
            "status": "Status",
        },
    )


def trace_detail(store: Store, trace_id: str) -> None:
    spans = metrics.trace_spans(store, trace_id)
    if spans.empty:
        st.warning(f"Trace `{trace_id}` not found in the store.")
        return
    records = spans.to_dict("records")
    tree = data.span_tree(records)
    root = tree[0][1]
    errors = int((spans["status"] == "error").sum())
    calls = spans[spans["kind"].isin(metrics.MODEL_KINDS)]
    priced = calls["cost_usd"].dropna()
    start = spans["start_time"].min()
    # end_time may be missing on a span (epoch default): its start plus duration still bounds the trace
    end = max(
        spans["end_time"].max(),
        (spans["start_time"] + pd.to_timedelta(spans["duration_ms"], unit="ms")).max(),
    )
    st.subheader(f"{data.KIND_ICONS.get(str(root.get('kind')), '')} {root.get('name') or '(unnamed)'}")
    st.caption(f"Trace `{trace_id}` · started {start:%Y-%m-%d %H:%M:%S} UTC")
    cols = st.columns(5)
    cols[0].metric("Duration", data.fmt_ms((end - start).total_seconds() * 1000))
    cols[1].metric("Spans", data.fmt_int(len(spans)))
    cols[2].metric("LLM calls", data.fmt_int(len(calls)))
    cols[3].metric("Tokens", data.fmt_compact(int(calls["total_tokens"].sum())))
    cols[4].metric(
        "Cost",
        data.fmt_cost(priced.sum() if len(priced) else None),
        data.plural(len(calls) - len(priced), "unpriced call") if len(calls) > len(priced) else None,
        delta_color="orange",
        delta_arrow="off",
    )
    if errors:
        st.error(f"{data.plural(errors, 'span')} failed in this trace.", icon="❌")
    st.markdown("#### Span tree")
    tree_table(tree)
    st.markdown("#### Spans")
    for depth, s in tree[:MAX_DETAILED_SPANS]:
        with st.container(border=True):
            st.markdown(span_header(depth, s))
            if s.get("status") == "error":
                kind = f"{s.get('error_type')}: " if s.get("error_type") else ""
                st.error(f"{kind}{s.get('error_message') or 'error (no message)'}")
            render_io(s)
            with st.expander("Attributes"):
                details = {f: _plain(s.get(f)) for f in _DETAIL_FIELDS if s.get(f) not in (None, "")}
                details["attributes"] = _plain(s.get("attributes") or {})
                details["resource"] = _plain(s.get("resource") or {})
                st.json(json.loads(json.dumps(details, default=str)), expanded=True)
    if len(tree) > MAX_DETAILED_SPANS:
        st.caption(f"Showing the first {MAX_DETAILED_SPANS} of {len(tree)} spans in detail.")


# --- page ----------------------------------------------------------------------------------------------


def body(store: Store, filters: data.Filters) -> None:
    st.title("Traces")
    if data.store_is_empty(store):
        data.empty_state()
        return
    extra = trace_filters(store, filters)
    traces = metrics.list_traces(store, **filters.query_args(), **extra, limit=200)
    selected = None
    if traces.empty:
        st.info("No traces match the time range and filters.")
    else:
        st.caption(f"{len(traces)} most recent traces · select a row to open it")
        selected = trace_table(traces)
    # The URL carries the open trace. A row selection sets it; un-selecting that row closes it again,
    # while a trace opened from a link stays open until another row is picked.
    previous = st.session_state.get("t_selected")
    if selected:
        st.query_params["trace_id"] = selected
    elif previous and st.query_params.get("trace_id") == previous:
        del st.query_params["trace_id"]
    st.session_state["t_selected"] = selected
    trace_id = selected or st.query_params.get("trace_id")
    if trace_id:
        st.divider()
        trace_detail(store, str(trace_id))


data.run_page(body)
