"""Entry point of the dashboard: page config, the shared sidebar, navigation between the pages.

Run ``streamlit run dashboards/app.py``. Streamlit executes this file on every interaction; the sidebar
is drawn here (not in the pages) so its widgets keep their values when the user switches pages.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent
try:
    from dashboards import data
    from monitor.store import StoreError
except ImportError:  # run from a source checkout that is not installed: make the repo importable
    sys.path.insert(0, str(HERE.parent))
    from dashboards import data
    from monitor.store import StoreError

st.set_page_config(page_title="llm-monitor", page_icon=":material/monitoring:", layout="wide")

page = st.navigation(
    [
        st.Page(HERE / "pages" / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
        st.Page(HERE / "pages" / "traces.py", title="Traces", icon=":material/account_tree:"),
        st.Page(HERE / "pages" / "quality.py", title="Quality", icon=":material/verified:"),
    ]
)
store = data.get_store()
try:
    data.render_sidebar(store)
except StoreError as e:  # e.g. a ClickHouse server without the schema: one line, no traceback
    st.error(f"Cannot read the store: {e}", icon="🚫")
    st.stop()
page.run()
