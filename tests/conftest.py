"""Shared fixtures.

chDB hosts one engine per process, so the whole test session shares one embedded store directory and
every test that needs a store gets a fresh *database* in it (``store`` fixture), dropped afterwards.
Tests that need a store in another process (CLI, ``up``, lock errors) use their own directory there.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OTEL_SDK_DISABLED", "false")
# Our own guard re-raises internal errors under test, so instrumentation bugs fail CI (STYLE.md).
os.environ["LLM_MONITOR_RAISE_INTERNAL"] = "1"


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb") / "store"


@pytest.fixture(scope="session")
def engine_url(chdb_path: Path) -> str:
    return f"chdb://{chdb_path}"


@pytest.fixture
def store(engine_url: str) -> Iterator:
    """A migrated store in a fresh database of the session's chDB engine."""
    from monitor.store import open_store

    db = "t_" + uuid.uuid4().hex[:12]
    s = open_store(engine_url, db, migrate=True)
    try:
        yield s
    finally:
        try:
            s.command(f"DROP DATABASE IF EXISTS `{db}`")
        finally:
            s.close()


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def settings(store, free_port: int, tmp_path: Path):
    """Settings pointing at the test's store, a free loopback port and fast flushing."""
    from monitor.settings import Settings

    return Settings.load(
        {
            "store": store.url.raw,
            "database": store.database,
            "port": free_port,
            "flush_interval": 0.05,
            "batch_size": 500,
        },
        environ={},
        config_file=None,
    )
