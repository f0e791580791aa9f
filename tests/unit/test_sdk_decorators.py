"""``@monitor.chain/agent/tool/retriever`` and ``monitor.span``: attributes, span trees, every function
type (sync, async, generator, async generator, methods), exceptions and input/output capture."""

from __future__ import annotations

import asyncio
import json
import traceback
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import monitor
from monitor import semconv as sc
from monitor._serialize import DEFAULT_LIMIT
from monitor.testing import SpanRecorder, recording, reset_global_tracer_provider


@pytest.fixture
def rec() -> Iterator[SpanRecorder]:
    with recording(instrument=False) as r:
        yield r
    reset_global_tracer_provider()


def test_chain_exact_attributes_and_wraps(rec: SpanRecorder) -> None:
    @monitor.chain
    def answer(question: str, top_k: int = 3) -> dict[str, Any]:
        """Answer a question."""
        return {"answer": question.upper(), "k": top_k}

    assert answer("hi", top_k=5) == {"answer": "HI", "k": 5}
    assert answer.__name__ == "answer"
    assert answer.__doc__ == "Answer a question."
    assert answer.__wrapped__ is not None
    (span,) = rec.spans()
    assert span.name == "invoke_workflow answer"
    assert span.kind is SpanKind.INTERNAL
    assert span.status.status_code is StatusCode.UNSET
    assert span.instrumentation_scope.name == "llm_monitor.manual"
    assert dict(span.attributes) == {
        sc.LLM_MONITOR_SPAN_KIND: "chain",
        sc.GEN_AI_OPERATION_NAME: "invoke_workflow",
        sc.GEN_AI_WORKFLOW_NAME: "answer",
        sc.LLM_MONITOR_INPUT: '{"question":"hi","top_k":5}',
        sc.LLM_MONITOR_OUTPUT: '{"answer":"HI","k":5}',
    }


@pytest.mark.parametrize(
    ("decorator", "expected_name", "expected"),
    [
        (
            monitor.agent,
            "invoke_agent planner",
            {sc.GEN_AI_OPERATION_NAME: "invoke_agent", sc.GEN_AI_AGENT_NAME: "planner"},
        ),
        (
            monitor.tool,
            "execute_tool planner",
            {
                sc.GEN_AI_OPERATION_NAME: "execute_tool",
                sc.GEN_AI_TOOL_NAME: "planner",
                sc.GEN_AI_TOOL_TYPE: "function",
                sc.GEN_AI_TOOL_DESCRIPTION: "Plan the next step.",
                sc.GEN_AI_TOOL_CALL_ARGUMENTS: '{"goal":"ship"}',
                sc.GEN_AI_TOOL_CALL_RESULT: '["a","b"]',
            },
        ),
        (monitor.retriever, "retrieval planner", {sc.GEN_AI_OPERATION_NAME: "retrieval"}),
    ],
)
def test_kinds_map_to_genai_operations(
    rec: SpanRecorder, decorator: Any, expected_name: str, expected: dict[str, Any]
) -> None:
    @decorator
    def planner(goal: str) -> list[str]:
        """Plan the next step.

        More words that are not part of the description.
        """
        return ["a", "b"]

    planner("ship")
    (span,) = rec.spans()
    kind = decorator.__name__
    assert span.name == expected_name
    assert dict(span.attributes) == {
        sc.LLM_MONITOR_SPAN_KIND: kind,
        sc.LLM_MONITOR_INPUT: '{"goal":"ship"}',
        sc.LLM_MONITOR_OUTPUT: '["a","b"]',
        **expected,
    }


def test_name_and_capture_options(rec: SpanRecorder) -> None:
    @monitor.tool(name="search", capture_input=False)
    def f(q: str) -> str:
        return "r"

    @monitor.agent("writer", capture_output=False)
    def g(q: str) -> str:
        return "r"

    f("x")
    g("y")
    s1, s2 = rec.spans()
    assert s1.name == "execute_tool search"
    assert sc.LLM_MONITOR_INPUT not in s1.attributes
    assert sc.GEN_AI_TOOL_CALL_ARGUMENTS not in s1.attributes
    assert s1.attributes[sc.GEN_AI_TOOL_CALL_RESULT] == '"r"'
    assert s2.name == "invoke_agent writer"
    assert s2.attributes[sc.LLM_MONITOR_INPUT] == '{"q":"y"}'
    assert sc.LLM_MONITOR_OUTPUT not in s2.attributes


def test_methods_drop_self_and_keep_binding(rec: SpanRecorder) -> None:
    class Agent:
        factor = 10

        @monitor.agent
        def run(self, x: int) -> int:
            return x * self.factor

        @monitor.tool
        @classmethod
        def make(cls, n: int) -> int:
            return n + cls.factor

        @monitor.tool
        @staticmethod
        def add(a: int, b: int) -> int:
            return a + b

    assert Agent().run(2) == 20
    assert Agent.make(1) == 11
    assert Agent.add(1, 2) == 3
    run, make, add = rec.spans()
    assert run.attributes[sc.LLM_MONITOR_INPUT] == '{"x":2}'
    assert make.attributes[sc.LLM_MONITOR_INPUT] == '{"n":1}'
    assert add.attributes[sc.LLM_MONITOR_INPUT] == '{"a":1,"b":2}'
    assert Agent.run.__name__ == "run"


def test_async_function_and_nesting(rec: SpanRecorder) -> None:
    @monitor.tool
    async def fetch(url: str) -> str:
        await asyncio.sleep(0)
        return "page"

    @monitor.agent
    async def browse(url: str) -> str:
        return await fetch(url)

    assert asyncio.run(browse("u")) == "page"
    tool_span, agent_span = rec.spans()
    assert tool_span.parent.span_id == agent_span.context.span_id
    assert agent_span.parent is None
    assert agent_span.attributes[sc.LLM_MONITOR_OUTPUT] == '"page"'


def test_user_exception_propagates_unchanged(rec: SpanRecorder) -> None:
    class Boom(Exception):
        pass

    err = Boom("bad input")

    @monitor.chain
    def fails() -> None:
        raise err

    with pytest.raises(Boom) as info:
        fails()
    assert info.value is err
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert traceback.extract_tb(info.value.__traceback__)[-1].name == "fails"
    (span,) = rec.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "Boom: bad input"
    assert span.attributes[sc.ERROR_TYPE] == "Boom"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.message"] == "bad input"
    assert sc.LLM_MONITOR_OUTPUT not in span.attributes


def test_async_exception_propagates(rec: SpanRecorder) -> None:
    @monitor.tool
    async def fails() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        asyncio.run(fails())
    assert rec.one("execute_tool fails").attributes[sc.ERROR_TYPE] == "KeyError"


def test_generator_span_covers_iteration(rec: SpanRecorder) -> None:
    @monitor.retriever
    def docs(n: int) -> Iterator[str]:
        for i in range(n):
            with monitor.span(f"inner {i}", kind="other"):
                pass
            yield f"doc{i}"

    gen = docs(3)
    assert rec.spans() == []  # not started until iterated
    consumed = []
    for d in gen:
        with monitor.span("consumer", kind="other"):  # runs between yields: not a child
            consumed.append(d)
    assert consumed == ["doc0", "doc1", "doc2"]
    spans = rec.spans()
    outer = next(s for s in spans if s.name == "retrieval docs")
    assert outer.attributes[sc.LLM_MONITOR_OUTPUT] == '["doc0","doc1","doc2"]'
    inner = [s for s in spans if s.name.startswith("inner")]
    consumer = [s for s in spans if s.name == "consumer"]
    assert len(inner) == 3 and len(consumer) == 3
    assert all(s.parent.span_id == outer.context.span_id for s in inner)
    assert all(s.parent is None for s in consumer)
    assert outer.end_time >= max(s.end_time for s in inner)


def test_generator_closed_early_ends_span(rec: SpanRecorder) -> None:
    cleaned = []

    @monitor.chain
    def numbers() -> Iterator[int]:
        try:
            yield from range(100)
        finally:
            cleaned.append(True)

    gen = numbers()
    assert [next(gen), next(gen)] == [0, 1]
    gen.close()
    assert cleaned == [True]
    (span,) = rec.spans()
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes[sc.LLM_MONITOR_OUTPUT] == "[0,1]"


def test_generator_send_throw_and_return_value(rec: SpanRecorder) -> None:
    @monitor.chain
    def echo() -> Any:
        total = 0
        while True:
            try:
                value = yield total
            except ValueError:
                value = 100
            if value is None:
                return total
            total += value

    gen = echo()
    assert next(gen) == 0
    assert gen.send(5) == 5
    assert gen.throw(ValueError) == 105
    with pytest.raises(StopIteration) as info:
        gen.send(None)
    assert info.value.value == 105
    assert rec.one("invoke_workflow echo").attributes[sc.LLM_MONITOR_OUTPUT] == "[0,5,105]"


def test_generator_exception_propagates(rec: SpanRecorder) -> None:
    @monitor.chain
    def bad() -> Iterator[int]:
        yield 1
        raise RuntimeError("mid-way")

    with pytest.raises(RuntimeError, match="mid-way"):
        list(bad())
    span = rec.one("invoke_workflow bad")
    assert span.attributes[sc.ERROR_TYPE] == "RuntimeError"


def test_async_generator(rec: SpanRecorder) -> None:
    @monitor.agent
    async def tokens(n: int) -> AsyncIterator[str]:
        for i in range(n):
            await asyncio.sleep(0)
            yield f"t{i}"

    async def consume() -> tuple[list[str], list[str]]:
        full = [t async for t in tokens(3)]
        partial = []
        agen = tokens(10)
        async for t in agen:
            partial.append(t)
            if len(partial) == 2:
                break
        await agen.aclose()
        return full, partial

    full, partial = asyncio.run(consume())
    assert full == ["t0", "t1", "t2"] and partial == ["t0", "t1"]
    s_full, s_partial = rec.spans()
    assert s_full.attributes[sc.LLM_MONITOR_OUTPUT] == '["t0","t1","t2"]'
    assert s_partial.attributes[sc.LLM_MONITOR_OUTPUT] == '["t0","t1"]'
    assert s_partial.status.status_code is StatusCode.UNSET


def test_span_context_manager_sync_and_async(rec: SpanRecorder) -> None:
    with monitor.span("retrieve docs", kind="retriever", attributes={"app.step": 1}) as s:
        s.set_input({"q": "x"})
        s.set_output(["d1"])
        s.set_attribute("app.hits", 1)
        assert monitor.current_trace_id() == format(s.span.get_span_context().trace_id, "032x")

    async def run() -> None:
        async with monitor.span("plan", kind="agent"):
            with monitor.span("step", kind="tool"):
                pass

    asyncio.run(run())
    retr, step, plan = rec.spans()
    assert retr.name == "retrieval retrieve docs"
    assert dict(retr.attributes) == {
        sc.LLM_MONITOR_SPAN_KIND: "retriever",
        sc.GEN_AI_OPERATION_NAME: "retrieval",
        "app.step": 1,
        sc.LLM_MONITOR_INPUT: '{"q":"x"}',
        sc.LLM_MONITOR_OUTPUT: '["d1"]',
        "app.hits": 1,
    }
    assert step.parent.span_id == plan.context.span_id
    assert plan.name == "invoke_agent plan"


def test_span_records_exception_and_kinds_are_validated(rec: SpanRecorder) -> None:
    with pytest.raises(ZeroDivisionError), monitor.span("div", kind="other"):
        1 / 0  # noqa: B018
    span = rec.one("div")
    assert span.attributes[sc.ERROR_TYPE] == "ZeroDivisionError"
    assert span.attributes[sc.LLM_MONITOR_SPAN_KIND] == "other"
    with pytest.raises(ValueError, match="unknown kind"):
        monitor.span("x", kind="banana")


def test_inputs_are_capped_and_never_raise(rec: SpanRecorder) -> None:
    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    @dataclass
    class Point:
        x: int
        y: int

    @monitor.tool
    def take(big: str, obj: Any, point: Point, blob: bytes) -> str:
        return "ok"

    assert take("x" * 50_000, Unprintable(), Point(1, 2), b"\x00" * 10) == "ok"
    text = rec.one("execute_tool take").attributes[sc.LLM_MONITOR_INPUT]
    assert len(text) < DEFAULT_LIMIT + 100
    assert "truncated" in text
    assert '"obj":"<Unprintable object>"' in text
    assert '"point":{"x":1,"y":2}' in text
    assert '"blob":"<10 bytes>"' in text


def test_capture_content_false_disables_inputs_and_outputs() -> None:
    @monitor.tool
    def f(secret: str) -> str:
        return secret

    with recording(instrument=False, capture_content=False) as rec:
        f("password")
        (span,) = rec.spans()
    reset_global_tracer_provider()
    for key in (
        sc.LLM_MONITOR_INPUT,
        sc.LLM_MONITOR_OUTPUT,
        sc.GEN_AI_TOOL_CALL_ARGUMENTS,
        sc.GEN_AI_TOOL_CALL_RESULT,
    ):
        assert key not in span.attributes
    assert span.attributes[sc.GEN_AI_TOOL_NAME] == "f"


def test_decorators_work_without_init() -> None:
    @monitor.chain
    def f(x: int) -> int:
        return x + 1

    @monitor.chain
    def g() -> Iterator[int]:
        yield 1

    assert f(1) == 2
    assert list(g()) == [1]
    with monitor.span("free") as s:
        s.set_output("nothing recorded")
    assert monitor.current_trace_id() is None


def test_output_json_of_nested_structures(rec: SpanRecorder) -> None:
    @monitor.chain
    def f() -> Any:
        return {"a": [1, 2.5, None, True], "b": {"c": "ü"}, "n": float("nan"), 3: {1, 2}}

    f()
    out = json.loads(rec.one("invoke_workflow f").attributes[sc.LLM_MONITOR_OUTPUT])
    assert out == {"a": [1, 2.5, None, True], "b": {"c": "ü"}, "n": "nan", "3": [1, 2]}


# --- capture is size-capped, never raises, and costs nothing when nothing is kept --------------------


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_async_function_output_is_capped_and_safe(rec: SpanRecorder) -> None:
    @monitor.chain
    async def big() -> dict[str, Any]:
        return {"text": "y" * 50_000, "obj": _Unprintable(), "raw": b"\x01\x02"}

    result = asyncio.run(big())
    assert result["text"] == "y" * 50_000  # the caller gets the real value
    out = rec.one("invoke_workflow big").attributes[sc.LLM_MONITOR_OUTPUT]
    assert len(out) < DEFAULT_LIMIT + 100
    parsed = json.loads(out)
    assert parsed["obj"] == "<_Unprintable object>" and parsed["raw"] == "<2 bytes>"
    assert parsed["text"].startswith("yyy") and parsed["text"].endswith("chars]")


def test_generator_output_keeps_200_capped_items(rec: SpanRecorder) -> None:
    @monitor.retriever
    def many() -> Iterator[Any]:
        yield "z" * 10_000
        yield _Unprintable()
        yield from range(300)

    items = list(many())
    assert len(items) == 302 and items[0] == "z" * 10_000
    out = json.loads(rec.one("retrieval many").attributes[sc.LLM_MONITOR_OUTPUT])
    assert len(out) == 200
    assert out[0].startswith("zzz") and out[0].endswith(f"[truncated {10_000 - DEFAULT_LIMIT // 4} chars]")
    assert out[1] == "<_Unprintable object>"
    assert out[2:199] == list(range(197))
    assert out[199] == "… 103 more items"


def test_async_generator_asend_athrow_errors_and_consumer_spans(rec: SpanRecorder) -> None:
    @monitor.agent
    async def acc() -> AsyncIterator[int]:
        total = 0
        while True:
            try:
                value = yield total
            except ValueError:
                value = 100
            total += value or 1

    @monitor.tool
    async def broken() -> AsyncIterator[int]:
        yield 1
        raise LookupError("gone")

    async def run() -> tuple[list[int], list[int]]:
        agen = acc()
        got = [await agen.__anext__(), await agen.asend(5), await agen.athrow(ValueError)]
        with monitor.span("consumer", kind="other"):  # between items: not a child of the generator
            got.append(await agen.__anext__())
        await agen.aclose()
        seen = []
        with pytest.raises(LookupError, match="gone"):
            async for x in broken():
                seen.append(x)
        return got, seen

    got, seen = asyncio.run(run())
    assert got == [0, 5, 105, 106] and seen == [1]
    consumer, agent_span, tool_span = rec.spans()
    assert consumer.parent is None
    assert agent_span.attributes[sc.LLM_MONITOR_OUTPUT] == "[0,5,105,106]"
    assert agent_span.status.status_code is StatusCode.UNSET
    assert tool_span.status.status_code is StatusCode.ERROR
    assert tool_span.attributes[sc.ERROR_TYPE] == "LookupError"
    assert sc.LLM_MONITOR_OUTPUT not in tool_span.attributes  # a failed run records no output


def test_generators_never_iterated_start_no_span(rec: SpanRecorder) -> None:
    @monitor.chain
    def gen() -> Iterator[int]:
        yield 1

    @monitor.chain
    async def agen() -> AsyncIterator[int]:
        yield 1

    gen()
    agen()
    assert rec.spans() == []


def test_capture_content_false_covers_every_function_type_and_span_handles() -> None:
    @monitor.tool
    async def a(secret: str) -> str:
        return secret

    @monitor.retriever
    def g(secret: str) -> Iterator[str]:
        yield secret

    @monitor.agent
    async def ag(secret: str) -> AsyncIterator[str]:
        yield secret

    async def run() -> None:
        await a("pw")
        [x async for x in ag("pw")]

    with recording(instrument=False, capture_content=False) as rec:
        asyncio.run(run())
        assert list(g("pw")) == ["pw"]
        with monitor.span("manual", kind="chain") as s:
            s.set_input({"q": "pw"})
            s.set_output("pw")
        spans = rec.spans()
    reset_global_tracer_provider()
    assert len(spans) == 4
    for span in spans:
        for key in (
            sc.LLM_MONITOR_INPUT,
            sc.LLM_MONITOR_OUTPUT,
            sc.GEN_AI_TOOL_CALL_ARGUMENTS,
            sc.GEN_AI_TOOL_CALL_RESULT,
        ):
            assert key not in span.attributes, (span.name, key)


def test_sampled_out_spans_serialise_nothing() -> None:
    reprs: list[int] = []

    class Counted:
        def __repr__(self) -> str:
            reprs.append(1)
            return "Counted()"

    @monitor.tool
    def f(x: Any) -> Any:
        return x

    @monitor.chain
    def g(x: Any) -> Iterator[Any]:
        yield x

    with recording(instrument=False, sample_rate=0.0) as rec:
        assert isinstance(f(Counted()), Counted)
        assert len(list(g(Counted()))) == 1
        with monitor.span("manual") as s:
            s.set_input(Counted())
            s.set_output(Counted())
        assert rec.spans() == []
    reset_global_tracer_provider()
    assert reprs == []
