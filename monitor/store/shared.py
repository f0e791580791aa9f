"""The process-wide store handed from ``llm-monitor up`` to the in-process dashboard and scheduler."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.store.client import Store

_lock = threading.Lock()
_store: Store | None = None


def set_shared_store(store: Store | None) -> None:
    """Register (or clear, with ``None``) the store this process owns. Called from any thread."""
    global _store
    with _lock:
        _store = store


def shared_store() -> Store | None:
    """The store registered by :func:`set_shared_store`, or ``None`` when this process has none."""
    with _lock:
        return _store


_collector_url: str | None = None


def set_collector_url(url: str | None) -> None:
    """Register where this process's collector listens (shown by the dashboard's empty state)."""
    global _collector_url
    with _lock:
        _collector_url = url


def collector_url() -> str | None:
    with _lock:
        return _collector_url
