"""``monitor.context`` / ``monitor.prompt``: stamping on every span, nesting, isolation across asyncio
tasks and threads, and the prompt attributes landing on model-call spans only."""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
from collections.abc import Iterator
from typing import Any

import openai
import pytest

import monitor
from monitor import semconv as sc
from monitor._context import current
from monitor.demo.fake_openai import FakeOpenAIServer
from monitor.testing import SpanRecorder, recording, reset_global_tracer_provider

CONTEXT_KEYS = (sc.USER_ID, sc.SESSION_ID, sc.GEN_AI_CONVERSATION_ID, sc.LLM_MONITOR_TAGS)
PROMPT_KEYS = (
    sc.LLM_MONITOR_PROMPT_NAME,
    sc.LLM_MONITOR_PROMPT_VERSION,
    sc.LLM_MONITOR_PROMPT_TEMPLATE,
    sc.LLM_MONITOR_PROMPT_VARIABLES,
)


@pytest.fixture
def rec() -> Iterator[SpanRecorder]:
    with recording(instrument=["openai"]) as r:
        yield r
    reset_global_tracer_provider()


def _ctx(span: Any) -> dict[str, Any]:
    return {
        k: v
        for k, v in span.attributes.items()
        if k in CONTEXT_KEYS + PROMPT_KEYS or k.startswith(sc.LLM_MONITOR_METADATA_PREFIX)
    }


def test_every_span_is_stamped_and_prompt_only_on_llm_spans(rec: SpanRecorder) -> None:
    with FakeOpenAIServer() as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="k", max_retries=0)

        @monitor.chain
        def flow() -> None:
            with monitor.span("step", kind="tool"):
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                )

        with (
            monitor.context(
                user_id="u-1", session_id="s-1", tags=["beta", "eu"], metadata={"tier": "pro", "n": 3}
            ),
            monitor.prompt("greeting", version=4, template="Say {x}", variables={"x": "hi", "n": [1]}),
        ):
            flow()
    llm, step, chain = rec.spans()
    common = {
        sc.USER_ID: "u-1",
        sc.SESSION_ID: "s-1",
        sc.GEN_AI_CONVERSATION_ID: "s-1",
        sc.LLM_MONITOR_TAGS: ("beta", "eu"),
        "llm_monitor.metadata.tier": "pro",
        "llm_monitor.metadata.n": 3,
    }
    assert _ctx(chain) == common
    assert _ctx(step) == common
    assert _ctx(llm) == {
        **common,
        sc.LLM_MONITOR_PROMPT_NAME: "greeting",
        sc.LLM_MONITOR_PROMPT_VERSION: "4",
        sc.LLM_MONITOR_PROMPT_TEMPLATE: "Say {x}",
        sc.LLM_MONITOR_PROMPT_VARIABLES: '{"n":[1],"x":"hi"}',
    }


def test_nested_contexts_merge_inner_wins_and_restore(rec: SpanRecorder) -> None:
    with monitor.context(user_id="outer", session_id="s", tags=["a"], metadata={"k": 1, "keep": True}):
        with (
            monitor.context(user_id="inner", tags=["b", "a"], metadata={"k": {"deep": 2}}),
            monitor.span("inner", kind="other"),
        ):
            pass
        with monitor.span("outer", kind="other"):
            pass
    with monitor.span("none", kind="other"):
        pass
    inner, outer, none = rec.spans()
    assert _ctx(inner) == {
        sc.USER_ID: "inner",
        sc.SESSION_ID: "s",
        sc.GEN_AI_CONVERSATION_ID: "s",
        sc.LLM_MONITOR_TAGS: ("a", "b"),
        "llm_monitor.metadata.k": '{"deep":2}',
        "llm_monitor.metadata.keep": True,
    }
    assert _ctx(outer)[sc.USER_ID] == "outer"
    assert _ctx(outer)["llm_monitor.metadata.k"] == 1
    assert _ctx(none) == {}
    assert current() is None


def test_nested_prompt_replaces_outer(rec: SpanRecorder) -> None:
    from monitor._context import current_prompt

    with monitor.prompt("outer", version="1"):
        with monitor.prompt("inner"):
            assert current_prompt().name == "inner"
            assert current_prompt().version is None
        assert current_prompt().name == "outer"
    assert current_prompt() is None


def test_asyncio_tasks_are_isolated(rec: SpanRecorder) -> None:
    async def handle(user: str, delay: float) -> None:
        with monitor.context(user_id=user, session_id=f"sess-{user}"):
            await asyncio.sleep(delay)  # interleave with the other task
            with monitor.span(f"request {user}", kind="other"):
                await asyncio.sleep(0)

    async def main() -> None:
        with monitor.context(tags=["server"]):
            await asyncio.gather(handle("alice", 0.02), handle("bob", 0.0))
            with monitor.span("parent after", kind="other"):
                pass

    asyncio.run(main())
    spans = {s.name: s for s in rec.spans()}
    assert _ctx(spans["request alice"])[sc.USER_ID] == "alice"
    assert _ctx(spans["request alice"])[sc.SESSION_ID] == "sess-alice"
    assert _ctx(spans["request bob"])[sc.USER_ID] == "bob"
    assert _ctx(spans["request bob"])[sc.LLM_MONITOR_TAGS] == ("server",)  # inherited by the task
    assert _ctx(spans["parent after"]) == {sc.LLM_MONITOR_TAGS: ("server",)}  # no leak back


def test_threads_do_not_share_context(rec: SpanRecorder) -> None:
    barrier = threading.Barrier(2)

    def worker(user: str) -> None:
        with monitor.context(user_id=user):
            barrier.wait()
            with monitor.span(f"work {user}", kind="other"):
                pass

    threads = [threading.Thread(target=worker, args=(u,)) for u in ("t1", "t2")]
    with monitor.context(user_id="main"):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ctx = contextvars.copy_context()
    bare = threading.Thread(target=lambda: monitor.span("bare", kind="other").__enter__().span.end())
    bare.start()
    bare.join()
    copied = threading.Thread(
        target=lambda: ctx.run(lambda: monitor.span("copied", kind="other").__enter__().span.end())
    )
    copied.start()
    copied.join()
    spans = {s.name: s for s in rec.spans()}
    assert _ctx(spans["work t1"])[sc.USER_ID] == "t1"
    assert _ctx(spans["work t2"])[sc.USER_ID] == "t2"
    assert _ctx(spans["bare"]) == {}  # threads start with an empty context
    assert _ctx(spans["copied"])[sc.USER_ID] == "main"


def test_context_as_async_context_manager(rec: SpanRecorder) -> None:
    async def main() -> None:
        async with monitor.context(user_id="a"), monitor.prompt("p"):
            with monitor.span("s", kind="other"):
                pass

    asyncio.run(main())
    (span,) = rec.spans()
    assert _ctx(span) == {sc.USER_ID: "a"}  # prompt is not stamped on non-LLM spans


def test_metadata_values_are_capped_json(rec: SpanRecorder) -> None:
    with (
        monitor.context(metadata={"doc": "x" * 100_000, "obj": {"a": object()}}),
        monitor.span("s", kind="other"),
    ):
        pass
    attrs = rec.one("s").attributes
    assert len(attrs["llm_monitor.metadata.doc"]) < 17_000
    assert json.loads(attrs["llm_monitor.metadata.obj"])["a"].startswith("<object object")


def test_single_string_tag(rec: SpanRecorder) -> None:
    with monitor.context(tags="solo"), monitor.span("s", kind="other"):
        pass
    assert rec.one("s").attributes[sc.LLM_MONITOR_TAGS] == ("solo",)


def test_capture_content_false_keeps_prompt_name_but_not_its_text() -> None:
    with FakeOpenAIServer() as srv, recording(instrument=["openai"], capture_content=False) as rec:
        client = openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0)
        with (
            monitor.context(user_id="u"),
            monitor.prompt("greet", version=4, template="Hi {n}", variables={"n": "Ann"}),
        ):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        (span,) = rec.spans()
    reset_global_tracer_provider()
    assert _ctx(span) == {
        sc.USER_ID: "u",
        sc.LLM_MONITOR_PROMPT_NAME: "greet",
        sc.LLM_MONITOR_PROMPT_VERSION: "4",
    }


def test_spans_of_one_scope_share_the_stamped_values(rec: SpanRecorder) -> None:
    with monitor.context(user_id="u1", metadata={"plan": {"tier": "pro"}}):
        for i in range(3):
            with monitor.span(f"s{i}", kind="other"):
                pass
        with monitor.context(user_id="u2"), monitor.span("inner", kind="other"):  # a new scope: recomputed
            pass
        with monitor.span("after", kind="other"):
            pass
    spans = {s.name: s.attributes for s in rec.spans()}
    for name in ("s0", "s1", "s2", "after"):
        assert spans[name][sc.USER_ID] == "u1"
        assert spans[name]["llm_monitor.metadata.plan"] == '{"tier":"pro"}'
    assert spans["inner"][sc.USER_ID] == "u2"
    assert spans["inner"]["llm_monitor.metadata.plan"] == '{"tier":"pro"}'


def test_an_explicit_attribute_wins_over_the_context(rec: SpanRecorder) -> None:
    with monitor.context(user_id="from-context"):
        with monitor.span("s", kind="other", attributes={sc.USER_ID: "explicit"}):
            pass
        with monitor.span("t", kind="other"):
            pass
    assert rec.one("s").attributes[sc.USER_ID] == "explicit"
    assert rec.one("t").attributes[sc.USER_ID] == "from-context"
