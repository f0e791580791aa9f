"""One client over two engines: embedded chDB (``chdb:///path``) or a ClickHouse server (``http(s)://``).

Everything that touches ClickHouse goes through :class:`Store`. In embedded mode a process can host one
chDB engine (one path) and another process cannot open that path at all, so ``llm-monitor up`` opens the
store once and hands the same object to the collector, the scheduler and the dashboard
(:func:`set_shared_store` / :func:`shared_store`).
"""

from __future__ import annotations

from monitor.store.client import Store, StoreError, StoreInUseError, open_store
from monitor.store.migrations import apply_migrations
from monitor.store.shared import set_shared_store, shared_store

__all__ = [
    "Store",
    "StoreError",
    "StoreInUseError",
    "apply_migrations",
    "open_store",
    "set_shared_store",
    "shared_store",
]
