"""Demo pieces: a deterministic OpenAI-compatible fake server and a realistic instrumented workload.

Nothing here is imported by ``monitor.init()``; the demo is what ``llm-monitor demo`` and
``llm-monitor up --demo`` run so a new user sees a populated dashboard without an API key or network,
and what the tests use to exercise the real ``openai`` SDK end to end on 127.0.0.1.
``run_demo`` is loaded lazily so importing the fake server never pulls in the SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from monitor.demo.fake_openai import FakeOpenAIServer, count_message_tokens, count_tokens, fake_markers, serve

if TYPE_CHECKING:
    from monitor.demo.workload import DemoStats, run_demo

__all__ = [
    "DemoStats",
    "FakeOpenAIServer",
    "count_message_tokens",
    "count_tokens",
    "fake_markers",
    "run_demo",
    "serve",
]


def __getattr__(name: str) -> Any:
    if name in ("run_demo", "DemoStats"):
        from monitor.demo import workload

        return getattr(workload, name)
    raise AttributeError(f"module 'monitor.demo' has no attribute {name!r}")
