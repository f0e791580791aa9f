"""The llm-monitor dashboard (Streamlit).

``streamlit run dashboards/app.py`` starts it on its own; ``llm-monitor up`` serves :data:`APP_PATH` in the
process that owns the store after registering that store with :func:`monitor.store.set_shared_store`.
Pages read through :mod:`monitor.metrics`, the same queries the alert rules evaluate.
"""

from __future__ import annotations

from pathlib import Path

APP_PATH = Path(__file__).resolve().parent / "app.py"

__all__ = ["APP_PATH"]
