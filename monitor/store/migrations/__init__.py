"""Versioned, idempotent DDL: ``NNNN_name.sql`` files in this folder, applied in order.

Each file holds statements separated by a line with only ``;`` and may use the placeholders ``{db}``,
``{retention_days}`` and ``{on_cluster}``. Applied versions are recorded in ``schema_version``; every
statement is ``IF NOT EXISTS``-style as well, so a crash between a statement and its record is harmless.
After the files, the retention setting is reconciled with each table's TTL (``MODIFY TTL`` only when it
differs), so changing ``retention_days`` takes effect at the next start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.store.client import Store

# table -> the expression its TTL is computed from (must match the SQL files)
TTL_COLUMNS = {
    "spans": "toDateTime(`start_time`)",
    "feedback": "toDateTime(`created_at`)",
    "scores": "toDateTime(`span_start_time`)",
    "drift": "toDateTime(`window_start`)",
    "alerts": "toDateTime(`created_at`)",
    "profiles": "toDateTime(`window_start`)",
}
PUBLIC_TABLES = tuple(TTL_COLUMNS)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def load_migrations() -> list[Migration]:
    out = []
    for entry in resources.files(__name__).iterdir():
        m = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if not m:
            continue
        text = entry.read_text(encoding="utf-8")
        body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
        stmts = tuple(s.strip() for s in re.split(r"^\s*;\s*$", body, flags=re.M) if s.strip())
        out.append(Migration(int(m.group(1)), m.group(2), stmts))
    return sorted(out, key=lambda m: m.version)


def render(stmt: str, database: str, retention_days: int, cluster: str | None = None) -> str:
    on_cluster = f"ON CLUSTER `{cluster}`" if cluster else ""
    return (
        stmt.replace("{db}", f"`{database}`")
        .replace("{retention_days}", str(int(retention_days)))
        .replace("{on_cluster}", on_cluster)
    )


def apply_migrations(store: Store, retention_days: int = 30, cluster: str | None = None) -> list[int]:
    """Bring the schema up to date; returns the versions applied now (empty when already current)."""
    db = store.database
    store.command(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    store.bind_database()
    store.command(
        f"CREATE TABLE IF NOT EXISTS `{db}`.`schema_version` "
        "(`version` UInt32, `name` String, `applied_at` DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY `version`"
    )
    done = {row[0] for row in store.query(f"SELECT version FROM `{db}`.`schema_version`").result_rows}
    applied = []
    for mig in load_migrations():
        if mig.version in done:
            continue
        for stmt in mig.statements:
            store.command(render(stmt, db, retention_days, cluster))
        store.insert("schema_version", [(mig.version, mig.name)], ["version", "name"])
        applied.append(mig.version)
    reconcile_retention(store, retention_days)
    return applied


def current_version(store: Store) -> int:
    try:
        return int(store.scalar(f"SELECT max(version) FROM `{store.database}`.`schema_version`") or 0)
    except Exception:
        return 0


def reconcile_retention(store: Store, retention_days: int) -> list[str]:
    """``MODIFY TTL`` on every public table whose TTL is not ``retention_days``; returns those changed."""
    changed = []
    rows = store.query(
        "SELECT name, create_table_query FROM system.tables WHERE database = {db:String}",
        {"db": store.database},
    ).result_rows
    for name, ddl in rows:
        if name not in TTL_COLUMNS:
            continue
        m = re.search(r"toIntervalDay\((\d+)\)|INTERVAL (\d+) DAY", ddl)
        current = int(m.group(1) or m.group(2)) if m else None
        if current == retention_days:
            continue
        store.command(
            f"ALTER TABLE {store.table(name)} MODIFY TTL {TTL_COLUMNS[name]} + INTERVAL {int(retention_days)} DAY",
            settings={"materialize_ttl_after_modify": 0},
        )
        changed.append(name)
    return changed
