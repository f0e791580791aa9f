"""The demo workload end to end: real ``openai`` SDK → llm-monitor SDK → OTLP → collector → chDB store.

What ``llm-monitor demo`` promises a new user is a populated store: every span kind, users and
sessions, both prompt versions, errors, streams with time-to-first-token, the PII / toxic / refusal
texts the analyzers look for. One run of ``len(ROTA)`` turns must deliver all of it, and the stored
counts must match what the app says it did.
"""

from __future__ import annotations

from collections import Counter
from itertools import islice
from typing import Any

import pytest

from monitor.demo import _scenarios as sc
from monitor.demo.workload import DemoStats, plan_turns, prompt_version, run_demo


def test_plan_is_deterministic_and_covers_every_kind_in_one_rota() -> None:
    first = list(islice(plan_turns(7, "r"), 2 * len(sc.ROTA)))
    assert first == list(islice(plan_turns(7, "r"), 2 * len(sc.ROTA)))
    assert first != list(islice(plan_turns(8, "r"), 2 * len(sc.ROTA)))
    one_rota = first[: len(sc.ROTA)]
    assert Counter(t.kind for t in one_rota) == Counter(sc.ROTA)
    assert all(t.user.locale == "ja" for t in one_rota if t.kind.startswith("ja_"))
    assert all(t.user.locale == "en" for t in one_rota if t.kind in sc.ENGLISH_ONLY)
    assert {prompt_version(u.user_id) for u in sc.USERS} == {"v1", "v2"}
    assert {t.model for t in one_rota} == {"gpt-4o-mini", "gpt-4o"}
    # Steering stays out of the prompt: no marker in any question.
    assert not any("[[" in t.question for t in first)


@pytest.fixture
def demo_run(settings: Any, store: Any) -> tuple[DemoStats, list[int], Any]:
    from collectors.server import CollectorServer

    collector = CollectorServer(settings, store)
    collector.start()
    progress: list[int] = []
    try:
        stats = run_demo(
            collector.url,
            iterations=len(sc.ROTA),
            interval=0,
            seed=7,
            run_id="it",
            latency_scale=0.1,
            on_progress=progress.append,
        )
    finally:
        collector.stop()
    return stats, progress, store


def _rows(store: Any, sql: str) -> list[dict[str, Any]]:
    return store.rows(sql.replace("{spans}", store.table("spans")))


def test_demo_run_lands_in_the_store(demo_run: tuple[DemoStats, list[int], Any]) -> None:
    stats, progress, store = demo_run

    # What the app did (deterministic for seed 7).
    assert stats.conversations == len(sc.ROTA) and progress == list(range(1, len(sc.ROTA) + 1))
    assert stats.kinds == Counter(sc.ROTA)
    assert stats.errors == 2  # one 429 (absorbed by the chain), one 500 (fails the conversation)
    assert stats.failed_conversations == 1
    assert len(stats.users) == len(sc.USERS)
    assert set(stats.prompt_versions) == {"v1", "v2"}
    assert stats.streamed >= sc.ROTA.count("stream") + sc.ROTA.count("slow")
    assert stats.agents == sc.ROTA.count("tools") + sc.ROTA.count("tools_4o")

    # What the store holds: one span per decorated call / API call, nothing lost.
    kinds = {r["kind"]: r["n"] for r in _rows(store, "SELECT kind, count() AS n FROM {spans} GROUP BY kind")}
    assert kinds == {
        "llm": stats.calls - stats.embeddings,
        "embedding": stats.embeddings,
        "chain": stats.chains + 1,  # + index_knowledge_base at start-up
        "agent": stats.agents,
        "tool": stats.tools,
        "retriever": stats.retrievals,
    }

    users = _rows(store, "SELECT DISTINCT user_id FROM {spans} WHERE kind = 'llm'")
    assert {r["user_id"] for r in users} == stats.users
    sessions = _rows(store, "SELECT DISTINCT session_id FROM {spans} WHERE session_id != ''")
    assert {r["session_id"] for r in sessions} == stats.sessions

    versions = _rows(
        store,
        "SELECT prompt_version, count() AS n FROM {spans} WHERE prompt_name = 'support-answer' GROUP BY prompt_version",
    )
    assert {r["prompt_version"]: r["n"] for r in versions} == dict(stats.prompt_versions)

    models = _rows(
        store,
        "SELECT DISTINCT request_model, response_model FROM {spans} WHERE kind = 'llm' AND status != 'error'",
    )
    assert {(r["request_model"], r["response_model"]) for r in models} == {
        ("gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
        ("gpt-4o", "gpt-4o-2024-08-06"),
    }

    errors = _rows(store, "SELECT kind, name, error_type FROM {spans} WHERE status = 'error' ORDER BY kind")
    assert [r["kind"] for r in errors] == ["chain", "llm", "llm"]  # the 500 fails its chain too
    assert sum(1 for r in errors if r["kind"] == "llm") == stats.errors
    assert {r["error_type"] for r in errors if r["kind"] == "llm"} >= {
        "RateLimitError",
        "InternalServerError",
    }

    # Usage and streaming details survived the trip.
    tokens = _rows(
        store,
        "SELECT sum(input_tokens) AS i, sum(output_tokens) AS o, countIf(ttft_ms > 0) AS ttft "
        "FROM {spans} WHERE kind = 'llm' AND status != 'error'",
    )[0]
    assert tokens["i"] > 0 and tokens["o"] > 0
    assert tokens["ttft"] == stats.streamed

    # The texts the analyzers are meant to find.
    outputs = " ".join(
        r["output_text"] for r in _rows(store, "SELECT output_text FROM {spans} WHERE kind = 'llm'")
    )
    inputs = " ".join(
        r["input_text"] for r in _rows(store, "SELECT input_text FROM {spans} WHERE kind = 'llm'")
    )
    assert sc.REFUSAL in outputs and sc.REFUSAL_JA in outputs
    assert any(t in outputs for t in sc.TOXIC_OUTPUTS)
    assert any(t in inputs for t in sc.TOXIC_INPUTS)
    for pii in ("john.doe@example.com", "090-1234-5678", "4111 1111 1111 1111"):
        assert pii in inputs
    assert "[[" not in inputs  # steering went out of band
    json_out = _rows(
        store, "SELECT output_text FROM {spans} WHERE kind = 'llm' AND prompt_name = 'ticket-triage'"
    )
    assert len(json_out) == sc.ROTA.count("json") and all(r["output_text"].startswith("{") for r in json_out)


def test_stop_event_and_duration_end_the_run_with_the_callers_sdk() -> None:
    """``up --demo`` stops the workload through ``stop_event``; ``--duration`` through the clock."""
    import threading

    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import monitor

    exporter = InMemorySpanExporter()
    monitor.init(service_name="demo-test", exporter=exporter, capture_content=True)
    try:
        stop = threading.Event()

        def progress(n: int) -> None:
            if n == 3:
                stop.set()

        stats = run_demo(
            stop_event=stop,
            on_progress=progress,
            interval=0.01,
            init_sdk=False,
            run_id="s",
            latency_scale=0.1,
        )
        assert stats.conversations == 3
        monitor.flush()
        roots = [s for s in exporter.get_finished_spans() if s.parent is None]
        # index_knowledge_base, then one root per turn (chain or agent)
        assert [s.name.split()[-1] for s in roots] == [
            "index_knowledge_base",
            "answer_question",
            "order_agent",
            "answer_question",
        ]

        stats = run_demo(duration=0.5, interval=0.01, init_sdk=False, run_id="d", latency_scale=0.1)
        assert stats.conversations >= 1
    finally:
        monitor.shutdown()
