"""The CLI in a real subprocess: each run hosts its own chDB engine in its own directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from monitor.store.migrations import load_migrations


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args], capture_output=True, text=True, timeout=180, cwd=cwd
    )


def test_migrate_then_query_formats(tmp_path: Path) -> None:
    url = f"chdb://{tmp_path}/store"
    r = run("migrate", "--store", url)
    assert r.returncode == 0, r.stderr
    versions = [m.version for m in load_migrations()]
    assert versions[:2] == [1, 2]  # 2: the dedup window behind the spool's exactly-once replay
    assert f"schema version {versions[-1]} (applied {', '.join(map(str, versions))})" in r.stdout
    r = run("migrate", "--store", url)
    assert f"schema version {versions[-1]} (already current)" in r.stdout
    r = run(
        "query",
        "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name",
        "--store",
        url,
        "--format",
        "json",
    )
    assert r.returncode == 0, r.stderr
    assert [x["name"] for x in json.loads(r.stdout)] == [
        "alerts",
        "analyzer_state",
        "drift",
        "feedback",
        "profiles",
        "schema_version",
        "scores",
        "spans",
    ]
    r = run("query", "SELECT count() AS n FROM spans", "--store", url, "--format", "csv")
    assert r.stdout == "n\n0\n"


def test_query_is_read_only_and_errors_are_one_line(tmp_path: Path) -> None:
    url = f"chdb://{tmp_path}/store"
    assert run("migrate", "--store", url).returncode == 0
    r = run("query", "INSERT INTO spans (project) VALUES ('x')", "--store", url)
    assert r.returncode == 1
    assert r.stderr.startswith("llm-monitor: ") and "READONLY" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run("query", "SELEKT 1", "--store", url)
    assert r.returncode == 1 and "SYNTAX_ERROR" in r.stderr and "Traceback" not in r.stderr
    assert (
        run("query", "SELECT count() FROM spans", "--store", url, "--format", "csv").stdout == "count()\n0\n"
    )


def test_bad_configuration_is_exit_2_and_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "llm-monitor.yaml"
    cfg.write_text("port: not-a-port\n")
    r = run("config", cwd=tmp_path)
    assert r.returncode == 2
    assert (
        r.stderr.strip()
        == "llm-monitor: configuration error: invalid llm-monitor.yaml: port='not-a-port': expected an integer"
    )
    r = run("migrate", "--store", "relative/path")
    assert r.returncode == 2 and "expected chdb:///abs/path" in r.stderr


def test_config_markdown_matches_readme() -> None:
    r = run("config", "--markdown")
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert r.stdout.strip() in readme, (
        "README configuration table is out of date: paste `llm-monitor config --markdown`"
    )


def test_demo_without_a_collector_is_one_clear_line() -> None:
    r = run("demo", "--endpoint", "http://127.0.0.1:9", "--iterations", "1")
    assert r.returncode == 1
    line = r.stderr.strip()
    assert line.startswith("llm-monitor: no collector answers at http://127.0.0.1:9 (")
    assert line.endswith("start one with `llm-monitor up`") and "\n" not in line
