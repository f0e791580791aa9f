"""LangChain instrumentor, driven through the real ``langchain_core`` and ``langchain_openai``.

``ChatOpenAI`` talks to the deterministic fake OpenAI server through the real ``openai`` SDK, so
token counts are computed from the fake's rules (``count_message_tokens`` / ``count_tokens``).
A local ``EchoChatModel`` (a ``BaseChatModel`` with no provider SDK underneath) covers the case where
the LangChain span itself is the ``llm`` span. Every test checks the exact span tree (names, kinds,
parent links) and exact attributes; an autouse fixture fails a test whose callbacks raised inside
LangChain (which would only log them) or that left a span attached as the current context.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from langchain_core.agents import AgentAction, AgentFinish
from langchain_core.callbacks import CallbackManager, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel, FakeListLLM
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnableSerializable
from langchain_core.runnables.config import RunnableConfig, patch_config
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import monitor
from monitor import _guard
from monitor import semconv as sc
from monitor.demo.fake_openai import FakeOpenAIServer, count_message_tokens, count_tokens
from monitor.instrumentation import _langchain_extract, select
from monitor.instrumentation.langchain import LangChainInstrumentor, active_handler
from monitor.testing import SpanRecorder, recording, reset_global_tracer_provider

REPLY = "Refunds take 5 to 7 business days."
QUESTION = f"How long do refunds take? [[reply:{REPLY}]]"
PROMPT = ChatPromptTemplate.from_messages([("system", "You are a support agent."), ("user", "{question}")])
WIRE_MESSAGES = [
    {"role": "system", "content": "You are a support agent."},
    {"role": "user", "content": QUESTION},
]
BOTH = ["openai", "langchain"]


# --- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clean(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail on callback errors LangChain swallowed, and on a span left current after the test."""
    yield
    swallowed = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("langchain_core") and "MonitorCallbackHandler" in r.getMessage()
    ]
    assert swallowed == []
    assert trace.get_current_span() is trace.INVALID_SPAN


@pytest.fixture
def rec() -> Iterator[SpanRecorder]:
    """OpenAI and LangChain instrumented together (the double-counting case)."""
    with recording(service_name="test", instrument=BOTH) as r:
        yield r
    reset_global_tracer_provider()


@pytest.fixture
def rec_lc() -> Iterator[SpanRecorder]:
    """LangChain alone: the LangChain model span carries everything itself."""
    with recording(service_name="test", instrument=["langchain"]) as r:
        yield r
    reset_global_tracer_provider()


def chat(server: FakeOpenAIServer, **kwargs: Any) -> ChatOpenAI:
    # A fresh async HTTP client per model: langchain-openai caches one per base URL otherwise, and it
    # would outlive the event loop of the test that created it.
    return ChatOpenAI(
        model="gpt-4o-mini",
        base_url=server.base_url,
        api_key="sk-test",
        max_retries=0,
        http_async_client=openai.DefaultAsyncHttpxClient(),
        **kwargs,
    )


def tree(spans: list[ReadableSpan]) -> str:
    """The span tree as indented ``name [llm_monitor.span.kind]`` lines, siblings in start order."""
    ids = {s.context.span_id for s in spans}
    children: dict[int | None, list[ReadableSpan]] = {}
    for s in spans:
        parent = s.parent.span_id if s.parent is not None and s.parent.span_id in ids else None
        children.setdefault(parent, []).append(s)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda s: s.start_time or 0):
            lines.append(f"{'  ' * depth}{s.name} [{(s.attributes or {}).get(sc.LLM_MONITOR_SPAN_KIND)}]")
            walk(s.context.span_id, depth + 1)

    walk(None, 0)
    assert len({s.context.trace_id for s in spans}) == len(children.get(None, [])), "one trace per root"
    return "\n".join(lines)


def shape(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def by_name(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def llm_spans(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if (s.attributes or {}).get(sc.LLM_MONITOR_SPAN_KIND) == "llm"]


def j(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def chain_attrs(name: str, inp: Any, out: Any) -> dict[str, Any]:
    return {
        sc.LLM_MONITOR_SPAN_KIND: "chain",
        sc.GEN_AI_OPERATION_NAME: "invoke_workflow",
        sc.GEN_AI_WORKFLOW_NAME: name,
        sc.LLM_MONITOR_INPUT: j(inp),
        sc.LLM_MONITOR_OUTPUT: j(out),
    }


SEQUENCE_TREE = shape("""
    invoke_workflow RunnableSequence [chain]
      invoke_workflow ChatPromptTemplate [chain]
      chat gpt-4o-mini [llm]
      invoke_workflow StrOutputParser [chain]
""")
PROMPT_MESSAGES = [
    {"type": "system", "content": "You are a support agent."},
    {"type": "human", "content": QUESTION},
]


def provider_attributes(server: FakeOpenAIServer, rec: SpanRecorder, body: dict[str, Any]) -> dict[str, Any]:
    """What our OpenAI instrumentor records for ``body`` sent directly (no LangChain around it)."""
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    resp = client.chat.completions.create(**body)
    (span,) = [s for s in rec.spans() if s.instrumentation_scope.name == "llm_monitor.openai"]
    attrs = dict(span.attributes or {})
    assert attrs.pop(sc.GEN_AI_RESPONSE_ID) == resp.id
    return attrs


class EchoChatModel(BaseChatModel):
    """A local chat model (no provider SDK underneath): echoes the last message, reports usage."""

    model: str = "echo-1"
    temperature: float = 0.0
    fail_with: BaseException | None = None

    @property
    def _llm_type(self) -> str:
        return "echo"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "temperature": self.temperature}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "echo"
        params["ls_model_name"] = self.model
        return params

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        if self.fail_with is not None:
            raise self.fail_with
        text = f"echo: {messages[-1].content}"
        words_in = sum(count_tokens(str(m.content)) for m in messages)
        msg = AIMessage(
            content=text,
            usage_metadata={
                "input_tokens": words_in,
                "output_tokens": count_tokens(text),
                "total_tokens": words_in + count_tokens(text),
            },
            response_metadata={"model_name": "echo-1-2025", "id": "echo-resp-1"},
        )
        return ChatResult(
            generations=[ChatGeneration(message=msg, generation_info={"finish_reason": "stop"})]
        )


# --- prompt | model | parser ----------------------------------------------------------------------------


def test_sequence_sync_one_llm_span_with_openai_underneath(
    rec: SpanRecorder, server: FakeOpenAIServer
) -> None:
    chain = PROMPT | chat(server) | StrOutputParser()
    assert chain.invoke({"question": QUESTION}) == REPLY
    spans = rec.spans()
    assert tree(spans) == SEQUENCE_TREE
    assert {s.instrumentation_scope.name for s in spans} == {"llm_monitor.langchain"}  # no 2nd llm span
    (llm,) = llm_spans(spans)
    assert llm.kind is SpanKind.CLIENT
    # The provider recorded onto the LangChain span: exactly what it records for the same request alone.
    (request,) = [b for _, b in server.requests[-1:]]
    attrs = dict(llm.attributes or {})
    response_id = attrs.pop(sc.GEN_AI_RESPONSE_ID)
    assert response_id.startswith("chatcmpl-fake-")
    assert attrs == provider_attributes(server, rec, request)
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == count_message_tokens(WIRE_MESSAGES)
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == count_tokens(REPLY)
    assert attrs[sc.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    root = by_name(spans, "invoke_workflow RunnableSequence")[0]
    assert dict(root.attributes or {}) == chain_attrs("RunnableSequence", {"question": QUESTION}, REPLY)
    prompt = by_name(spans, "invoke_workflow ChatPromptTemplate")[0]
    assert dict(prompt.attributes or {}) == chain_attrs(
        "ChatPromptTemplate", {"question": QUESTION}, PROMPT_MESSAGES
    )
    assert all(s.status.status_code is StatusCode.UNSET for s in spans)


def test_sequence_langchain_alone_fills_the_llm_span(rec_lc: SpanRecorder, server: FakeOpenAIServer) -> None:
    chain = PROMPT | chat(server, temperature=0.3, max_tokens=50) | StrOutputParser()
    assert chain.invoke({"question": QUESTION}) == REPLY
    spans = rec_lc.spans()
    assert tree(spans) == SEQUENCE_TREE
    (llm,) = llm_spans(spans)
    assert dict(llm.attributes or {}) == {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.LLM_MONITOR_SPAN_KIND: "llm",
        sc.GEN_AI_PROVIDER_NAME: "openai",
        sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
        sc.GEN_AI_REQUEST_TEMPERATURE: 0.3,
        sc.GEN_AI_REQUEST_MAX_TOKENS: 50,
        sc.GEN_AI_SYSTEM_INSTRUCTIONS: j([{"type": "text", "content": "You are a support agent."}]),
        sc.GEN_AI_INPUT_MESSAGES: j([{"role": "user", "parts": [{"type": "text", "content": QUESTION}]}]),
        sc.GEN_AI_RESPONSE_ID: llm.attributes[sc.GEN_AI_RESPONSE_ID],  # type: ignore[index]
        sc.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
        sc.GEN_AI_USAGE_INPUT_TOKENS: count_message_tokens(WIRE_MESSAGES),
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: count_tokens(REPLY),
        sc.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",),
        sc.GEN_AI_OUTPUT_MESSAGES: j(
            [{"role": "assistant", "parts": [{"type": "text", "content": REPLY}], "finish_reason": "stop"}]
        ),
    }
    assert str(llm.attributes[sc.GEN_AI_RESPONSE_ID]).startswith("chatcmpl-fake-")  # type: ignore[index]


def test_sequence_async_matches_sync(rec: SpanRecorder, server: FakeOpenAIServer) -> None:
    chain = PROMPT | chat(server) | StrOutputParser()
    assert asyncio.run(chain.ainvoke({"question": QUESTION})) == REPLY
    spans = rec.spans()
    assert tree(spans) == SEQUENCE_TREE
    (llm,) = llm_spans(spans)
    assert llm.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == count_message_tokens(WIRE_MESSAGES)  # type: ignore[index]
    assert llm.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == count_tokens(REPLY)  # type: ignore[index]
    assert llm.attributes[sc.SERVER_PORT] == server.port  # type: ignore[index]


def test_stream_with_openai_underneath_keeps_usage_and_ttft(
    rec: SpanRecorder, server: FakeOpenAIServer
) -> None:
    chain = PROMPT | chat(server, stream_usage=True) | StrOutputParser()
    assert "".join(chain.stream({"question": QUESTION})) == REPLY
    spans = rec.spans()
    assert tree(spans) == SEQUENCE_TREE
    (llm,) = llm_spans(spans)
    attrs = dict(llm.attributes or {})
    assert attrs[sc.GEN_AI_REQUEST_STREAM] is True
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == count_message_tokens(WIRE_MESSAGES)
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == count_tokens(REPLY)
    assert 0 < attrs[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] < (llm.end_time - llm.start_time) / 1e9  # type: ignore[operator]


def test_stream_langchain_alone_records_ttft(rec_lc: SpanRecorder, server: FakeOpenAIServer) -> None:
    async def run() -> str:
        return "".join([str(c.content) async for c in chat(server, stream_usage=True).astream(QUESTION)])

    assert asyncio.run(run()) == REPLY
    (llm,) = rec_lc.spans()
    attrs = dict(llm.attributes or {})
    assert attrs[sc.GEN_AI_REQUEST_STREAM] is True
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == count_message_tokens(
        [{"role": "user", "content": QUESTION}]
    )
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == count_tokens(REPLY)
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0


# --- a model with no provider instrumentation underneath ------------------------------------------------


def test_local_model_span_is_the_llm_span(rec: SpanRecorder) -> None:
    chain = PROMPT | EchoChatModel(temperature=0.2) | StrOutputParser()
    assert chain.invoke({"question": "hi"}) == "echo: hi"
    spans = rec.spans()
    assert tree(spans) == SEQUENCE_TREE.replace("gpt-4o-mini", "echo-1")
    (llm,) = llm_spans(spans)
    assert dict(llm.attributes or {}) == {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.LLM_MONITOR_SPAN_KIND: "llm",
        sc.GEN_AI_PROVIDER_NAME: "echo",
        sc.GEN_AI_REQUEST_MODEL: "echo-1",
        sc.GEN_AI_REQUEST_TEMPERATURE: 0.2,
        sc.GEN_AI_SYSTEM_INSTRUCTIONS: j([{"type": "text", "content": "You are a support agent."}]),
        sc.GEN_AI_INPUT_MESSAGES: j([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]),
        sc.GEN_AI_RESPONSE_ID: "echo-resp-1",
        sc.GEN_AI_RESPONSE_MODEL: "echo-1-2025",
        sc.GEN_AI_USAGE_INPUT_TOKENS: count_tokens("You are a support agent.") + 1,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: 2,
        sc.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",),
        sc.GEN_AI_OUTPUT_MESSAGES: j(
            [
                {
                    "role": "assistant",
                    "parts": [{"type": "text", "content": "echo: hi"}],
                    "finish_reason": "stop",
                }
            ]
        ),
    }


def test_text_llm_is_a_text_completion_span(rec: SpanRecorder) -> None:
    assert FakeListLLM(responses=["forty-two"]).invoke("the answer?") == "forty-two"
    (span,) = rec.spans()
    assert span.name == "text_completion FakeListLLM"
    assert dict(span.attributes or {}) == {
        sc.GEN_AI_OPERATION_NAME: "text_completion",
        sc.LLM_MONITOR_SPAN_KIND: "llm",
        sc.GEN_AI_PROVIDER_NAME: "fakelist",
        sc.GEN_AI_INPUT_MESSAGES: j(
            [{"role": "user", "parts": [{"type": "text", "content": "the answer?"}]}]
        ),
        sc.GEN_AI_OUTPUT_MESSAGES: j(
            [{"role": "assistant", "parts": [{"type": "text", "content": "forty-two"}]}]
        ),
    }


# --- tools and agents -----------------------------------------------------------------------------------


@monitor.tool
def fetch_order(order_id: str) -> dict[str, str]:
    return {"order_id": order_id, "status": "shipped"}


@tool
def lookup_order(order_id: str) -> str:
    """Find an order by id."""
    return json.dumps(fetch_order(order_id))


class SupportAgent(RunnableSerializable[str, str]):
    """A minimal tool-calling agent loop: model → tools → model, reporting its actions to LangChain."""

    model: Any

    def invoke(self, input: str, config: RunnableConfig | None = None, **kwargs: Any) -> str:
        return self._call_with_config(self._loop, input, config)

    def _loop(self, question: str, run_manager: Any, config: RunnableConfig) -> str:
        child = patch_config(config, callbacks=run_manager.get_child())
        model = self.model.bind_tools([lookup_order])
        messages: list[BaseMessage] = [HumanMessage(question)]
        ai = model.invoke(messages, child)
        messages.append(ai)
        for call in ai.tool_calls:
            run_manager.on_agent_action(AgentAction(call["name"], call["args"], "I should look it up."))
            messages.append(lookup_order.invoke(call, child))
        final = model.invoke(messages, child)
        run_manager.on_agent_finish(AgentFinish({"output": final.content}, ""))
        return str(final.content)


def test_tool_calling_agent(rec: SpanRecorder, server: FakeOpenAIServer) -> None:
    answer = SupportAgent(model=chat(server)).invoke("Where is order 12345?", {"tags": ["agent"]})
    (_, first), (_, second) = server.requests[-2:]
    call = second["messages"][1]["tool_calls"][0]
    assert call["function"] == {"name": "lookup_order", "arguments": '{"order_id": "12345"}'}
    result = json.dumps({"order_id": "12345", "status": "shipped"})
    assert (
        answer
        == f"I looked that up with lookup_order: {result}. Let me know if there is anything else I can do."
    )
    spans = rec.spans()
    assert tree(spans) == shape("""
        invoke_agent SupportAgent [agent]
          chat gpt-4o-mini [llm]
          execute_tool lookup_order [tool]
            execute_tool fetch_order [tool]
          chat gpt-4o-mini [llm]
    """)
    agent = by_name(spans, "invoke_agent SupportAgent")[0]
    assert dict(agent.attributes or {}) == {
        sc.LLM_MONITOR_SPAN_KIND: "agent",
        sc.GEN_AI_OPERATION_NAME: "invoke_agent",
        sc.GEN_AI_AGENT_NAME: "SupportAgent",
        sc.LLM_MONITOR_INPUT: j("Where is order 12345?"),
        sc.LLM_MONITOR_OUTPUT: j(answer),
    }
    assert [(e.name, dict(e.attributes or {})) for e in agent.events] == [
        (
            sc.LLM_MONITOR_AGENT_ACTION_EVENT,
            {
                sc.GEN_AI_TOOL_NAME: "lookup_order",
                sc.GEN_AI_TOOL_CALL_ARGUMENTS: j({"order_id": "12345"}),
                sc.LLM_MONITOR_AGENT_LOG: "I should look it up.",
            },
        ),
        (sc.LLM_MONITOR_AGENT_FINISH_EVENT, {sc.LLM_MONITOR_OUTPUT: j({"output": answer})}),
    ]
    tool_span = by_name(spans, "execute_tool lookup_order")[0]
    assert dict(tool_span.attributes or {}) == {
        sc.LLM_MONITOR_SPAN_KIND: "tool",
        sc.GEN_AI_OPERATION_NAME: "execute_tool",
        sc.GEN_AI_TOOL_NAME: "lookup_order",
        sc.GEN_AI_TOOL_TYPE: "function",
        sc.GEN_AI_TOOL_DESCRIPTION: "Find an order by id.",
        sc.GEN_AI_TOOL_CALL_ID: call["id"],
        sc.LLM_MONITOR_INPUT: j({"order_id": "12345"}),
        sc.GEN_AI_TOOL_CALL_ARGUMENTS: j({"order_id": "12345"}),
        sc.LLM_MONITOR_OUTPUT: j(result),
        sc.GEN_AI_TOOL_CALL_RESULT: j(result),
    }
    one, two = llm_spans(spans)
    assert one.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("tool_calls",)  # type: ignore[index]
    assert (
        json.loads(str(one.attributes[sc.GEN_AI_TOOL_DEFINITIONS]))[0]["function"]["name"] == "lookup_order"
    )  # type: ignore[index]
    for span, body in ((one, first), (two, second)):
        assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == count_message_tokens(body["messages"])  # type: ignore[index]
    assert two.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == count_tokens(answer)  # type: ignore[index]
    assert json.loads(str(two.attributes[sc.GEN_AI_INPUT_MESSAGES]))[1:] == [  # type: ignore[index]
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": call["id"],
                    "name": "lookup_order",
                    "arguments": {"order_id": "12345"},
                }
            ],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": call["id"], "response": result}]},
    ]


def test_tool_flow_langchain_alone_converts_messages(rec_lc: SpanRecorder, server: FakeOpenAIServer) -> None:
    """Without the OpenAI instrumentor the LangChain spans carry the same messages, in the same format."""
    SupportAgent(model=chat(server)).invoke("Where is order 12345?")
    (_, first), (_, second) = server.requests[-2:]
    call = second["messages"][1]["tool_calls"][0]
    result = json.dumps({"order_id": "12345", "status": "shipped"})
    one, two = llm_spans(rec_lc.spans())
    assert json.loads(str(one.attributes[sc.GEN_AI_OUTPUT_MESSAGES])) == [  # type: ignore[index]
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": call["id"],
                    "name": "lookup_order",
                    "arguments": {"order_id": "12345"},
                }
            ],
            "finish_reason": "tool_call",
        }
    ]
    assert one.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("tool_calls",)  # type: ignore[index]
    assert json.loads(str(one.attributes[sc.GEN_AI_TOOL_DEFINITIONS])) == first["tools"]  # type: ignore[index]
    assert json.loads(str(two.attributes[sc.GEN_AI_INPUT_MESSAGES])) == [  # type: ignore[index]
        {"role": "user", "parts": [{"type": "text", "content": "Where is order 12345?"}]},
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": call["id"],
                    "name": "lookup_order",
                    "arguments": {"order_id": "12345"},
                }
            ],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": call["id"], "response": result}],
            "name": "lookup_order",  # LangChain's ToolMessage knows its tool; the wire format does not
        },
    ]
    for span, body in ((one, first), (two, second)):
        assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == count_message_tokens(body["messages"])  # type: ignore[index]


def test_agent_action_turns_a_chain_into_an_agent(rec: SpanRecorder) -> None:
    class Planner(RunnableSerializable[str, str]):
        def invoke(self, input: str, config: RunnableConfig | None = None, **kwargs: Any) -> str:
            return self._call_with_config(self._plan, input, config)

        def _plan(self, question: str, run_manager: Any) -> str:
            run_manager.on_agent_action(AgentAction("search", "refunds", ""))
            return "done"

    assert Planner().invoke("q") == "done"
    (span,) = rec.spans()
    assert span.name == "invoke_agent Planner"
    attrs = dict(span.attributes or {})
    assert (attrs[sc.LLM_MONITOR_SPAN_KIND], attrs[sc.GEN_AI_OPERATION_NAME]) == ("agent", "invoke_agent")
    assert attrs[sc.GEN_AI_AGENT_NAME] == "Planner"


def test_agent_tag_marks_only_the_outermost_run(rec: SpanRecorder) -> None:
    inner = RunnableLambda(lambda x: x + 1, name="step")
    outer = RunnableLambda(lambda x: inner.invoke(x) * 2, name="planner")
    assert outer.invoke(1, {"tags": ["agent"]}) == 4
    assert tree(rec.spans()) == "invoke_agent planner [agent]\n  invoke_workflow step [chain]"


# --- retrievers and parallel branches --------------------------------------------------------------------


class KeywordRetriever(BaseRetriever):
    """Returns the documents sharing a word with the query."""

    docs: list[Document]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        words = set(query.lower().replace("?", "").split())
        return [d for d in self.docs if words & set(d.page_content.lower().rstrip(".").split())]


DOCS = [
    Document("Refunds take 5 to 7 business days.", metadata={"source": "faq.md"}, id="d1"),
    Document("Orders ship within 2 days.", metadata={"source": "shipping.md"}, id="d2"),
]


def test_retriever_span(rec: SpanRecorder) -> None:
    docs = KeywordRetriever(docs=DOCS).invoke("how long do refunds take?")
    assert [d.id for d in docs] == ["d1"]
    (span,) = rec.spans()
    assert span.name == "retrieval KeywordRetriever"
    assert dict(span.attributes or {}) == {
        sc.LLM_MONITOR_SPAN_KIND: "retriever",
        sc.GEN_AI_OPERATION_NAME: "retrieval",
        sc.LLM_MONITOR_INPUT: j("how long do refunds take?"),
        sc.LLM_MONITOR_RETRIEVAL_DOCUMENT_COUNT: 1,
        sc.LLM_MONITOR_OUTPUT: j(
            [
                {
                    "page_content": "Refunds take 5 to 7 business days.",
                    "metadata": {"source": "faq.md"},
                    "id": "d1",
                }
            ]
        ),
    }


def _parallel(server: FakeOpenAIServer) -> RunnableParallel[Any]:
    retriever = KeywordRetriever(docs=DOCS)
    return RunnableParallel(
        answer=PROMPT | chat(server) | StrOutputParser(),
        docs=RunnableLambda(lambda x: x["question"], name="query") | retriever,
    )


def test_parallel_branches_sync(rec: SpanRecorder, server: FakeOpenAIServer) -> None:
    out = _parallel(server).invoke({"question": QUESTION})
    assert out["answer"] == REPLY
    assert [d.id for d in out["docs"]] == ["d1"]
    _assert_parallel_tree(rec.spans())


def test_parallel_branches_async(rec: SpanRecorder, server: FakeOpenAIServer) -> None:
    out = asyncio.run(_parallel(server).ainvoke({"question": QUESTION}))
    assert out["answer"] == REPLY
    _assert_parallel_tree(rec.spans())


def _assert_parallel_tree(spans: list[ReadableSpan]) -> None:
    root, *rest = tree(spans).split("\n")
    assert root == "invoke_workflow RunnableParallel<answer,docs> [chain]"
    # The two branches run concurrently, so they may start in either order: compare them as a set.
    branches: list[list[str]] = []
    for line in rest:
        if not line.startswith("   "):  # a child of the root starts a branch
            branches.append([])
        branches[-1].append(line)
    assert sorted("\n".join(b) for b in branches) == [
        "  invoke_workflow RunnableSequence [chain]\n"
        "    invoke_workflow ChatPromptTemplate [chain]\n"
        "    chat gpt-4o-mini [llm]\n"
        "    invoke_workflow StrOutputParser [chain]",
        "  invoke_workflow RunnableSequence [chain]\n"
        "    invoke_workflow query [chain]\n"
        "    retrieval KeywordRetriever [retriever]",
    ]
    assert len(llm_spans(spans)) == 1


# --- errors ------------------------------------------------------------------------------------------------


def test_user_error_propagates_and_marks_spans(rec: SpanRecorder) -> None:
    err = LookupError("no such order")

    def boom(_: Any) -> str:
        raise err

    chain = PROMPT | EchoChatModel() | RunnableLambda(boom)
    with pytest.raises(LookupError) as info:
        chain.invoke({"question": "hi"})
    assert info.value is err
    spans = rec.spans()
    assert tree(spans) == shape("""
        invoke_workflow RunnableSequence [chain]
          invoke_workflow ChatPromptTemplate [chain]
          chat echo-1 [llm]
          invoke_workflow boom [chain]
    """)
    status = {s.name: (s.status.status_code, (s.attributes or {}).get(sc.ERROR_TYPE)) for s in spans}
    assert status == {
        "invoke_workflow RunnableSequence": (StatusCode.ERROR, "LookupError"),
        "invoke_workflow ChatPromptTemplate": (StatusCode.UNSET, None),
        "chat echo-1": (StatusCode.UNSET, None),
        "invoke_workflow boom": (StatusCode.ERROR, "LookupError"),
    }
    boom_span = by_name(spans, "invoke_workflow boom")[0]
    assert [e.attributes[sc.EXCEPTION_MESSAGE] for e in boom_span.events] == ["no such order"]  # type: ignore[index]


def test_local_model_error(rec: SpanRecorder) -> None:
    err = TimeoutError("model timed out")
    with pytest.raises(TimeoutError) as info:
        EchoChatModel(fail_with=err).invoke("hi")
    assert info.value is err
    (span,) = rec.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "TimeoutError"  # type: ignore[index]
    assert [e.name for e in span.events] == ["exception"]


def test_provider_error_recorded_once_on_the_one_llm_span(
    rec: SpanRecorder, server: FakeOpenAIServer
) -> None:
    with pytest.raises(openai.InternalServerError):
        (PROMPT | chat(server)).invoke({"question": "hi [[error:500]]"})
    spans = rec.spans()
    assert tree(spans) == shape("""
        invoke_workflow RunnableSequence [chain]
          invoke_workflow ChatPromptTemplate [chain]
          chat gpt-4o-mini [llm]
    """)
    (llm,) = llm_spans(spans)
    assert llm.status.status_code is StatusCode.ERROR
    assert llm.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 500  # type: ignore[index]
    assert sc.ERROR_TYPE in (llm.attributes or {})
    assert [e.name for e in llm.events] == ["exception"]  # the provider recorded it; LangChain did not again
    assert sc.GEN_AI_USAGE_INPUT_TOKENS not in (llm.attributes or {})


# --- nesting with our other spans ---------------------------------------------------------------------------


def test_nested_chains_and_decorated_functions(rec: SpanRecorder) -> None:
    inner = PROMPT | EchoChatModel() | StrOutputParser()

    @monitor.tool
    def ask(question: str) -> str:
        return inner.invoke({"question": question})  # LangChain config flows in through the context

    outer = RunnableLambda(lambda q: q.strip(), name="clean") | RunnableLambda(ask, name="route")

    @monitor.chain
    def handle(question: str) -> str:
        return outer.invoke(question)

    assert handle("  hi ") == "echo: hi"
    assert tree(rec.spans()) == shape("""
        invoke_workflow handle [chain]
          invoke_workflow RunnableSequence [chain]
            invoke_workflow clean [chain]
            invoke_workflow route [chain]
              execute_tool ask [tool]
                invoke_workflow RunnableSequence [chain]
                  invoke_workflow ChatPromptTemplate [chain]
                  chat echo-1 [llm]
                  invoke_workflow StrOutputParser [chain]
    """)


def test_interleaved_streams_in_one_context_leave_nothing_current(rec: SpanRecorder) -> None:
    one = RunnableLambda(lambda x: x, name="one") | EchoChatModel() | StrOutputParser()
    two = RunnableLambda(lambda x: x, name="two") | EchoChatModel(model="echo-2") | StrOutputParser()
    s1, s2 = one.stream("a"), two.stream("b")
    first = next(s1)
    second = next(s2)
    assert first + "".join(s1) == "echo: a"  # s1 finishes while s2 is still open above it
    assert second + "".join(s2) == "echo: b"
    assert trace.get_current_span() is trace.INVALID_SPAN
    spans = rec.spans()
    # A run the consumer starts between two chunks of a stream nests under that stream's run (the
    # stream's span is current while its generator is suspended); what matters here is that both
    # finished and nothing stayed current.
    assert sorted(s.name for s in spans) == [
        "chat echo-1",
        "chat echo-2",
        "invoke_workflow RunnableSequence",
        "invoke_workflow RunnableSequence",
        "invoke_workflow StrOutputParser",
        "invoke_workflow StrOutputParser",
        "invoke_workflow one",
        "invoke_workflow two",
    ]


# --- content capture and serialisation ---------------------------------------------------------------------

_CONTENT_KEYS = {
    sc.LLM_MONITOR_INPUT,
    sc.LLM_MONITOR_OUTPUT,
    sc.GEN_AI_INPUT_MESSAGES,
    sc.GEN_AI_OUTPUT_MESSAGES,
    sc.GEN_AI_SYSTEM_INSTRUCTIONS,
    sc.GEN_AI_TOOL_DEFINITIONS,
    sc.GEN_AI_TOOL_CALL_ARGUMENTS,
    sc.GEN_AI_TOOL_CALL_RESULT,
}


@pytest.mark.parametrize("instrument", [BOTH, ["langchain"]])
def test_capture_content_off(server: FakeOpenAIServer, instrument: list[str]) -> None:
    with recording(service_name="test", instrument=instrument, capture_content=False) as r:
        SupportAgent(model=chat(server)).invoke("Where is order 12345?", {"tags": ["agent"]})
        KeywordRetriever(docs=DOCS).invoke("refunds")
        spans = r.spans()
    reset_global_tracer_provider()
    assert len(spans) == 6
    assert [k for s in spans for k in (s.attributes or {}) if k in _CONTENT_KEYS] == []
    events = [e for s in spans for e in s.events]
    assert [
        k for e in events for k in (e.attributes or {}) if k in _CONTENT_KEYS or k == sc.LLM_MONITOR_AGENT_LOG
    ] == []
    assert sum(int((s.attributes or {}).get(sc.GEN_AI_USAGE_INPUT_TOKENS, 0)) for s in spans) > 0  # type: ignore[arg-type]


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque 7>"


def test_values_json_cannot_express(rec: SpanRecorder) -> None:
    step = RunnableLambda(lambda x: {"seen": {1, 2}, "obj": Opaque()}, name="odd")
    step.invoke({"blob": b"\x00\x01", "obj": Opaque()})
    (span,) = rec.spans()
    assert json.loads(str(span.attributes[sc.LLM_MONITOR_INPUT])) == {
        "blob": "<2 bytes>",
        "obj": "<Opaque 7>",
    }  # type: ignore[index]
    assert json.loads(str(span.attributes[sc.LLM_MONITOR_OUTPUT])) == {"seen": [1, 2], "obj": "<Opaque 7>"}  # type: ignore[index]


def test_large_values_are_capped(rec: SpanRecorder) -> None:
    RunnableLambda(lambda x: "ok", name="big").invoke("x" * 100_000)
    (span,) = rec.spans()
    text = str(span.attributes[sc.LLM_MONITOR_INPUT])  # type: ignore[index]
    assert len(text) < 17_000 and text.endswith("chars]")


# --- registration -----------------------------------------------------------------------------------------


def _our_handlers(manager: Any) -> int:
    return sum(1 for h in manager.handlers if type(h).__name__ == "MonitorCallbackHandler")


def test_auto_registers_and_uninstrument_removes(server: FakeOpenAIServer) -> None:
    assert LangChainInstrumentor in select("auto")  # what init(instrument="auto") turns on
    with recording(service_name="test", instrument=["langchain"]) as r:
        handler = active_handler()
        assert handler is not None
        manager = CallbackManager.configure()
        assert manager.handlers == [handler]
        # Never twice: the user passes a manager that already has it, or a child run's manager.
        assert _our_handlers(CallbackManager.configure(inheritable_callbacks=manager)) == 1
        run = manager.on_chain_start(None, {}, name="x")
        assert _our_handlers(CallbackManager.configure(inheritable_callbacks=run.get_child())) == 1
        run.on_chain_end({})
        assert _our_handlers(CallbackManager.configure(inheritable_callbacks=[handler])) == 1
        EchoChatModel().invoke("hi")
        assert [s.name for s in r.spans()] == ["invoke_workflow x", "chat echo-1"]
    reset_global_tracer_provider()
    assert active_handler() is None
    assert _our_handlers(CallbackManager.configure()) == 0
    with recording(service_name="test", instrument=["openai"]) as r:
        EchoChatModel().invoke("hi")
        assert r.spans() == []
    reset_global_tracer_provider()


def test_init_imports_nothing_of_langchain_until_a_run() -> None:
    """``init`` must not pay for LangSmith's import; the first run still gets traced."""
    code = """
import sys
from monitor.testing import recording
with recording(service_name="t", instrument=["langchain"]) as r:
    loaded = [m for m in ("langchain_core", "langsmith") if m in sys.modules]
    from langchain_core.runnables import RunnableLambda
    assert "langchain_core.tracers.context" not in sys.modules
    RunnableLambda(lambda x: x + 1, name="inc").invoke(1)
    print(loaded, [s.name for s in r.spans()])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] ['invoke_workflow inc']"


def test_instrument_is_idempotent_and_uninstrument_restores() -> None:
    inst = LangChainInstrumentor()
    inst.instrument()
    handler = active_handler()
    inst.instrument()
    assert active_handler() is handler is inst.handler
    inst.uninstrument()
    inst.uninstrument()
    assert active_handler() is None and not inst.active


def test_handler_errors_never_reach_langchain(
    rec: SpanRecorder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(_guard.RAISE_INTERNAL_ENV, "0")

    def broken(*_: Any) -> Any:
        raise RuntimeError("extractor bug")

    monkeypatch.setattr(_langchain_extract, "llm_response_attributes", broken)
    before = _guard.internal_error_count()
    with caplog.at_level(logging.WARNING):
        assert (PROMPT | EchoChatModel() | StrOutputParser()).invoke({"question": "hi"}) == "echo: hi"
    assert _guard.internal_error_count() == before + 1
    spans = rec.spans()
    assert len(spans) == 4  # the model span still ended, without response attributes
    (llm,) = llm_spans(spans)
    assert sc.GEN_AI_USAGE_INPUT_TOKENS not in (llm.attributes or {})


@pytest.mark.parametrize("broken", ["chat_input_attributes", "llm_request_attributes"])
def test_a_failing_request_extractor_still_records_the_model_call(
    rec: SpanRecorder, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    """Our request-side extractor raising loses the request attributes only: the model span starts with
    degraded ones (marked llm_monitor.telemetry.error) and keeps its response, usage and place in the tree."""
    monkeypatch.setenv(_guard.RAISE_INTERNAL_ENV, "0")
    monkeypatch.setattr(_langchain_extract, broken, lambda *a: 1 / 0)
    before = _guard.internal_error_count()
    assert (PROMPT | EchoChatModel() | StrOutputParser()).invoke({"question": "hi"}) == "echo: hi"
    assert _guard.internal_error_count() == before + 1
    spans = rec.spans()
    assert tree(spans) == SEQUENCE_TREE.replace("gpt-4o-mini", "echo-1")
    (llm,) = llm_spans(spans)
    a = dict(llm.attributes or {})
    assert {k: a[k] for k in list(a)[:5]} == {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_PROVIDER_NAME: "echo",
        sc.LLM_MONITOR_SPAN_KIND: "llm",
        sc.LLM_MONITOR_TELEMETRY_ERROR: "request_attributes",
        sc.GEN_AI_REQUEST_MODEL: "echo-1",
    }
    assert sc.GEN_AI_INPUT_MESSAGES not in a and sc.GEN_AI_REQUEST_TEMPERATURE not in a
    assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == count_tokens("You are a support agent.") + 1
    assert a[sc.GEN_AI_RESPONSE_ID] == "echo-resp-1"


def test_extract_helpers() -> None:
    assert _langchain_extract.is_agent("AgentExecutor", None, None, None, frozenset())
    assert not _langchain_extract.is_agent("agent", None, [], {"langgraph_node": "agent"}, frozenset())
    assert _langchain_extract.is_agent_step("agent", {"langgraph_node": "agent"})
    assert not _langchain_extract.is_agent_step("model", {"langgraph_node": "agent"})
    assert not _langchain_extract.is_agent("step", None, ["agent"], None, frozenset({"agent"}))
    assert (
        _langchain_extract.provider_name(
            {"id": ["langchain_anthropic", "chat_models", "ChatAnthropic"]}, None
        )
        == "anthropic"
    )
    assert _langchain_extract.provider_name(None, {"ls_provider": "azure"}) == "azure.ai.openai"
