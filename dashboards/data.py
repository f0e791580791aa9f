"""What the dashboard pages share: the store, the sidebar filters, and pure helpers.

The store: under ``llm-monitor up`` the dashboard runs inside the process that owns the embedded chDB
store, which hands it over with :func:`monitor.store.set_shared_store`; a chDB path cannot be opened a
second time (not even read-only), so that object is the only way in. Run on its own (``streamlit run
dashboards/app.py``) the dashboard opens the configured store once per process (``st.cache_resource``),
read-only. Failures are one line on the page (:func:`get_store` stops the script), never a traceback.

The helpers below the Streamlit parts (message parsing, span tree, number formats) are pure functions so
that tests can check them without running a page.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import streamlit as st

from monitor import metrics
from monitor.store import StoreError, shared_store

if TYPE_CHECKING:
    from monitor.store.client import Store

FILTERS_KEY = "llm_monitor_filters"
REFRESH_SECONDS = 30
DEFAULT_ENDPOINT = "http://127.0.0.1:4318"
RANGES: dict[str, dt.timedelta | None] = {
    "Last 15 minutes": dt.timedelta(minutes=15),
    "Last hour": dt.timedelta(hours=1),
    "Last 24 hours": dt.timedelta(hours=24),
    "Last 7 days": dt.timedelta(days=7),
    "Custom": None,
}
DEFAULT_RANGE = "Last hour"
KIND_ICONS: dict[str, str] = {
    "llm": "🤖",
    "embedding": "🧬",
    "chain": "⛓️",
    "agent": "🕵️",
    "tool": "🛠️",
    "retriever": "🔎",
    "reranker": "📶",
    "guardrail": "🛡️",
    "evaluator": "⚖️",
    "other": "▫️",
}
UNKNOWN_MODEL = "(unknown)"


# --- the store ---------------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def _open_configured_store() -> Store:
    """Open the store named by the settings, once per process (exceptions are not cached: retried)."""
    from monitor.settings import Settings
    from monitor.store import open_store

    settings = Settings.load()
    return open_store(settings.store, settings.database, readonly=True)


def get_store() -> Store:
    """The store to read: the process's shared one, else the configured one. Stops the page on failure."""
    shared = shared_store()
    if shared is not None:
        return shared
    from monitor.settings import ConfigError

    try:
        return _open_configured_store()
    except (StoreError, ConfigError) as e:
        st.error(str(e), icon="🚫")
        st.stop()
        raise  # unreachable: st.stop() raises; keeps type checkers honest


def collector_endpoint() -> str:
    """Where apps should send spans, for the empty state's hint: this process's collector, else settings."""
    from monitor.store.shared import collector_url

    running = collector_url()
    if running:
        return running
    try:
        from monitor.settings import Settings

        s = Settings.load()
    except Exception:
        return DEFAULT_ENDPOINT
    return f"http://{s.host}:{s.port}"


# --- filters -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Filters:
    """The sidebar's choices. The window is computed on use so auto-refresh moves it forward."""

    project: str | None = None
    range_label: str = DEFAULT_RANGE
    custom: tuple[dt.date, dt.date] | None = None
    services: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    auto_refresh: bool = False

    def window(self, now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
        """``(start, end)`` in UTC; a custom range covers whole UTC days, end day included."""
        now = now or dt.datetime.now(dt.timezone.utc)
        length = RANGES.get(self.range_label)
        if length is not None or self.custom is None:
            return now - (length or RANGES[DEFAULT_RANGE] or dt.timedelta(hours=1)), now
        first, last = self.custom
        start = dt.datetime.combine(first, dt.time(), tzinfo=dt.timezone.utc)
        end = dt.datetime.combine(last, dt.time(), tzinfo=dt.timezone.utc) + dt.timedelta(days=1)
        return start, end

    def query_args(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """Keyword arguments for the :mod:`monitor.metrics` functions."""
        start, end = self.window(now)
        return {
            "start": start,
            "end": end,
            "project": self.project,
            "service": list(self.services) or None,
            "model": list(self.models) or None,
        }


def render_sidebar(store: Store) -> Filters:
    """Draw the shared sidebar and remember its choices for the pages of this run."""
    opts = metrics.filter_options(store, ids=False)
    projects = opts["projects"] or ["default"]
    with st.sidebar:
        project = st.selectbox("Project", projects, key="f_project")
        range_label = st.selectbox(
            "Time range", list(RANGES), index=list(RANGES).index(DEFAULT_RANGE), key="f_range"
        )
        custom: tuple[dt.date, dt.date] | None = None
        if range_label == "Custom":
            today = dt.datetime.now(dt.timezone.utc).date()
            picked = st.date_input("Days (UTC)", value=(today - dt.timedelta(days=1), today), key="f_custom")
            if isinstance(picked, (tuple, list)) and len(picked) == 2:
                custom = (picked[0], picked[1])
            elif isinstance(picked, (tuple, list)) and len(picked) == 1:
                custom = (picked[0], picked[0])
            else:
                custom = (today, today)
        scoped = metrics.filter_options(store, project=project, ids=False)
        services = st.multiselect("Service", scoped["services"], key="f_services", placeholder="All services")
        models = st.multiselect("Model", scoped["models"], key="f_models", placeholder="All models")
        auto = st.toggle(f"Auto-refresh every {REFRESH_SECONDS} s", key="f_refresh")
    filters = Filters(project, range_label, custom, tuple(services), tuple(models), auto)
    st.session_state[FILTERS_KEY] = filters
    return filters


def current_filters() -> Filters:
    """The filters the sidebar set in this run (defaults when a page runs without the app)."""
    f = st.session_state.get(FILTERS_KEY)
    return f if isinstance(f, Filters) else Filters()


def store_is_empty(store: Store) -> bool:
    """True when no span was ever stored: the pages then show how to send some instead of zeros."""
    return not metrics.filter_options(store, ids=False)["projects"]


def empty_state() -> None:
    st.info(
        f"No spans yet — point an app at {collector_endpoint()} or run `llm-monitor demo`.",
        icon="🛰️",
    )


def run_page(body: Callable[[Store, Filters], None]) -> None:
    """Run a page body with the store and filters; re-run it on a timer when auto-refresh is on.

    Store errors (a server gone away) end the page with one line instead of a traceback.
    """
    store = get_store()

    def render() -> None:
        try:
            body(store, current_filters())
        except StoreError as e:
            st.error(f"Cannot read the store: {e}", icon="🚫")

    if current_filters().auto_refresh:
        st.fragment(render, run_every=REFRESH_SECONDS)()
    else:
        render()


# --- formatting --------------------------------------------------------------------------------------


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and x != x)


def fmt_int(n: Any) -> str:
    return "—" if _missing(n) else f"{int(n):,}"


def plural(n: Any, noun: str) -> str:
    """``1 error``, ``2 errors``, ``1,204 calls``."""
    n = 0 if _missing(n) else int(n)
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def fmt_compact(n: Any) -> str:
    """Token counts at a glance: 950, 12.3k, 4.5M."""
    if _missing(n):
        return "—"
    n = float(n)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= limit:
            return f"{n / limit:.1f}{suffix}"
    return f"{int(n)}"


def fmt_ms(ms: Any) -> str:
    if _missing(ms):
        return "—"
    ms = float(ms)
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def fmt_pct(x: Any) -> str:
    return "—" if _missing(x) else f"{100 * float(x):.1f}%"


def fmt_cost(x: Any) -> str:
    """Dollars with enough digits that a cheap call does not read as $0.00."""
    if _missing(x):
        return "—"
    x = float(x)
    return f"${x:,.2f}" if x >= 1 else f"${x:.4f}"


def model_label(m: Any) -> str:
    return m if isinstance(m, str) and m else UNKNOWN_MODEL


# --- messages ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Part:
    """One piece of a message: ``kind`` is text, reasoning, tool_call, tool_result or other."""

    kind: str
    text: str
    name: str = ""


@dataclasses.dataclass(frozen=True)
class Message:
    role: str
    parts: tuple[Part, ...]

    @property
    def text(self) -> str:
        return "\n".join(p.text for p in self.parts)


def _as_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False, indent=2, default=str)


def _part(p: Any) -> Part | None:
    if isinstance(p, str):
        return Part("text", p)
    if not isinstance(p, Mapping):
        return Part("other", _as_text(p))
    kind = str(p.get("type") or ("text" if "content" in p or "text" in p else "other"))
    if kind in ("text", "input_text", "output_text"):
        return Part("text", _as_text(p.get("content", p.get("text"))))
    if kind in ("reasoning", "thinking"):
        return Part("reasoning", _as_text(p.get("content", p.get("thinking", p.get("text")))))
    if kind in ("tool_call", "function_call", "tool_use"):
        function = p.get("function")
        fn: Mapping[str, Any] = function if isinstance(function, Mapping) else {}
        name = str(p.get("name") or fn.get("name") or "tool")
        args = p.get("arguments", p.get("input", fn.get("arguments")))
        return Part("tool_call", _as_text(args), name)
    if kind in ("tool_call_response", "tool_result", "function_call_output"):
        return Part(
            "tool_result", _as_text(p.get("response", p.get("result", p.get("content", p.get("output")))))
        )
    image = p.get("image_url")
    uri = p.get("uri") or p.get("url") or (image.get("url") if isinstance(image, Mapping) else image)
    if uri:
        return Part("other", f"[{kind}: {uri}]")
    return Part("other", _as_text({k: v for k, v in p.items() if k != "type"}) if len(p) > 1 else f"[{kind}]")


def _message(m: Any) -> Message | None:
    if isinstance(m, str):
        return Message("user", (Part("text", m),))
    if not isinstance(m, Mapping):
        return None
    role = str(m.get("role") or m.get("type") or "unknown")
    parts: list[Part] = []
    raw_parts = m.get("parts")
    if isinstance(raw_parts, list) and raw_parts:
        parts = [x for x in map(_part, raw_parts) if x is not None]
    else:
        content = m.get("content")
        if isinstance(content, list):
            parts = [x for x in map(_part, content) if x is not None]
        elif content not in (None, ""):
            parts = [Part("text", _as_text(content))]
    for call in m.get("tool_calls") or []:  # OpenAI shape
        if isinstance(call, Mapping):
            parts.append(_part({**call, "type": "tool_call"}) or Part("other", _as_text(call)))
    if not parts and "role" not in m:
        return None  # some other JSON object, not a message
    return Message(role, tuple(parts))


def parse_messages(raw: Any) -> list[Message] | None:
    """Messages from an ``input_messages``/``output_messages`` value, or ``None`` when it holds none.

    Accepts the OTel GenAI parts form (``[{"role", "parts": [{"type": "text", "content"}]}]``), the
    collector's normalised ``[{role, content, parts}]`` (parts preferred, content when parts are empty),
    OpenAI's chat form (``content`` string or list, ``tool_calls``) and a single message object.
    """
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    data = raw
    if isinstance(raw, (str, bytes)):
        try:
            data = json.loads(raw)
        except ValueError:
            return None
    if isinstance(data, Mapping):
        data = data.get("messages", [data])
    if not isinstance(data, list):
        return None
    out = [x for x in map(_message, data) if x is not None]
    return out or None


# --- span tree ---------------------------------------------------------------------------------------


def span_tree(spans: Iterable[Mapping[str, Any]]) -> list[tuple[int, Mapping[str, Any]]]:
    """Spans in depth-first order with their depth, children in start order.

    A span whose parent is missing from the trace (not received, or a remote parent) becomes a root;
    cycles in bad data cannot loop: every span is emitted exactly once.
    """
    ordered = list(spans)
    ids = {s["span_id"] for s in ordered}
    children: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    roots: list[Mapping[str, Any]] = []
    for s in ordered:
        parent = s.get("parent_span_id") or ""
        if parent and parent in ids and parent != s["span_id"]:
            children[parent].append(s)
        else:
            roots.append(s)
    out: list[tuple[int, Mapping[str, Any]]] = []
    seen: set[int] = set()

    def visit(root: Mapping[str, Any]) -> None:
        stack = [(0, root)]
        while stack:
            depth, s = stack.pop()
            if id(s) in seen:
                continue
            seen.add(id(s))
            out.append((depth, s))
            stack.extend((depth + 1, c) for c in reversed(children.get(s["span_id"], [])))

    for r in roots:
        visit(r)
    for s in ordered:  # only spans caught in a parent cycle are left
        if id(s) not in seen:
            visit(s)
    return out
