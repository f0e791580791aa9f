"""``llm-monitor up --demo`` as a user runs it: a real process, a real browser, then SIGTERM.

The process owns its own chDB directory; while it runs we watch the collector's /healthz and the dashboard
in headless chromium; after SIGTERM we query the store with ``llm-monitor query`` (possible only once the
process has released the directory) and check that everything the collector acknowledged was written.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def up(tmp_path: Path):
    port, dport = _port(), _port()
    url = f"chdb://{tmp_path}/store"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("LLM_MONITOR_RAISE_INTERNAL", None)  # run as a user would
    # ./llm-monitor.yaml is read from the working directory: analyzers every 3 s so a short run is scored
    # (drift needs completed one-minute windows; tests/integration/test_drift.py covers it)
    (tmp_path / "llm-monitor.yaml").write_text(
        "analyzers:\n  interval: 3\n  settle_seconds: 1\n  drift: false\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "monitor.cli",
            "up",
            "--demo",
            "--store",
            url,
            "--port",
            str(port),
            "--dashboard-port",
            str(dport),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    info = {
        "proc": proc,
        "url": url,
        "collector": f"http://127.0.0.1:{port}",
        "dashboard": f"http://127.0.0.1:{dport}",
    }
    try:
        yield info
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _wait_written(collector: str, at_least: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    last: dict = {}
    while time.monotonic() < deadline:
        try:
            last = _get_json(collector + "/healthz")
            if last.get("written", 0) >= at_least:
                return last
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"collector wrote too little within {timeout}s: {last}")


def test_up_demo_serves_dashboard_with_data_and_drains_on_sigterm(up, tmp_path: Path) -> None:
    proc = up["proc"]
    banner = proc.stdout.readline() + proc.stdout.readline() + proc.stdout.readline()
    assert "llm-monitor" in banner and "is up" in banner, banner + (
        proc.stderr.read() if proc.poll() is not None else ""
    )
    # 100 spans: the demo's rota has passed its 429 and 500 turns (turns 12 and 23, ≈ 3 spans a turn), so the
    # error spans asserted below exist whether or not the browser check gives the demo more time
    health = _wait_written(up["collector"], at_least=100, timeout=120)
    assert health["status"] == "ok"

    with urllib.request.urlopen(up["dashboard"] + "/_stcore/health", timeout=10) as r:
        assert r.read().decode().strip() == "ok"

    if CHROMIUM:
        _check_dashboard_in_browser(up["dashboard"], tmp_path)

    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "llm-monitor: stopped" in err

    r = _cli(
        "query",
        "SELECT kind, count() AS n, uniqExact(user_id) AS users FROM spans FINAL GROUP BY kind",
        "--store",
        up["url"],
        "--format",
        "json",
    )
    assert r.returncode == 0, r.stderr
    kinds = {x["kind"]: x for x in json.loads(r.stdout)}
    assert {"llm", "chain", "tool"} <= set(kinds), kinds
    assert kinds["llm"]["users"] >= 2
    total = sum(x["n"] for x in kinds.values())
    assert total >= health["written"]
    r = _cli(
        "query",
        "SELECT countIf(status = 'error') AS errors, countIf(ttft_ms IS NOT NULL) AS streamed, "
        "uniqExact(prompt_version) AS versions FROM spans FINAL WHERE kind = 'llm'",
        "--store",
        up["url"],
        "--format",
        "json",
    )
    (agg,) = json.loads(r.stdout)
    assert agg["errors"] >= 1 and agg["streamed"] >= 1 and agg["versions"] >= 2, agg
    # the analyzers ran inside `up` on the demo's traffic
    r = _cli(
        "query",
        "SELECT analyzer, count() AS n, any(analyzer_version) AS version FROM scores FINAL GROUP BY analyzer",
        "--store",
        up["url"],
        "--format",
        "json",
    )
    scored = {x["analyzer"]: x for x in json.loads(r.stdout)}
    assert {"toxicity", "pii", "injection", "refusal", "sentiment"} <= set(scored), scored
    assert scored["toxicity"]["version"].startswith("profanity-check/"), scored["toxicity"]


def _check_dashboard_in_browser(dashboard: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Playwright launches every browser with a fresh temporary profile (a new --user-data-dir).
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(dashboard + "/", wait_until="load")
            page.get_by_role("heading", name="Overview").wait_for(timeout=60_000)
            page.get_by_text("Over time, by model").wait_for(timeout=60_000)
            requests_tile = page.locator('[data-testid="stMetric"]', has_text="Requests").first
            value = requests_tile.locator('[data-testid="stMetricValue"]').inner_text()
            assert int(value.replace(",", "")) > 0, value
            # the four charts have drawn (vega-embed renders a canvas or an svg each)
            page.locator(".vega-embed canvas, .vega-embed svg").nth(3).wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
            assert page.locator('[data-testid="stException"]').count() == 0

            # The newest trace may still be arriving (its LLM span not exported yet) or be retrieval only:
            # try the first rows until one shows its chat messages.
            for row in range(3):
                page.goto(dashboard + "/traces", wait_until="load")
                page.get_by_role("heading", name="Traces").wait_for(timeout=60_000)
                page.get_by_text("most recent traces").wait_for(timeout=60_000)
                grid = page.locator('[data-testid="stDataFrame"]').first
                grid.wait_for(timeout=30_000)
                page.wait_for_timeout(500)  # the grid is a canvas: let it lay out before clicking a row
                box = grid.bounding_box()
                assert box is not None
                page.mouse.click(box["x"] + 15, box["y"] + 35 + 17 + 35 * row)  # the row's selection checkbox
                page.wait_for_url("**trace_id=*", timeout=30_000)
                trace_id = page.url.split("trace_id=")[1]
                assert len(trace_id) == 32, page.url
                page.get_by_text(trace_id).first.wait_for(timeout=30_000)
                try:
                    page.locator('[data-testid="stChatMessage"]').first.wait_for(timeout=15_000)
                    break
                except Exception:
                    if row == 2:
                        raise
            page.screenshot(path=str(tmp_path / "trace.png"), full_page=True)
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()
