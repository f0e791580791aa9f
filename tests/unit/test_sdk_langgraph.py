"""LangChain instrumentor under a real LangGraph agent (``create_react_agent`` and a hand-built graph).

The agents run ``ChatOpenAI`` through the real ``openai`` SDK against the deterministic fake OpenAI
server, which answers a request that offers tools and ends with a user message by calling the first
tool, and a request that ends with a tool result by quoting it (``monitor.demo.fake_replies``). So
every agent here does one tool call and one final answer: two model calls, one tool run.

Both the OpenAI and the LangChain instrumentors are on (the double-counting case): each model call
must be exactly one ``llm`` span, the LangChain one, with the wire-exact tokens the fake reported.
``create_react_agent`` is deprecated in LangGraph 1.x in favour of LangChain 1.x's
``langchain.agents.create_agent``; both are tested.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Iterator
from typing import Annotated, Any, TypedDict

import openai
import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk, AnyMessage, BaseMessage
from langchain_core.tools import BaseTool, tool
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode, create_react_agent, tools_condition
from langgraph.warnings import LangGraphDeprecatedSinceV10
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from pydantic import SecretStr

import monitor
from monitor import semconv as sc
from monitor.demo.fake_openai import FakeOpenAIServer, count_message_tokens
from monitor.testing import SpanRecorder, recording, reset_global_tracer_provider

QUESTION = "Where is order 12345?"
ORDER = {"order_id": "12345", "status": "shipped"}
USER = {sc.USER_ID: "user-7", sc.SESSION_ID: "sess-9", sc.GEN_AI_CONVERSATION_ID: "sess-9"}
LANGCHAIN_SCOPE = f"{sc.SCOPE_PREFIX}.langchain"
REACT_TREE = """\
invoke_agent support_agent [agent]
  invoke_workflow agent [chain]
    invoke_workflow call_model [chain]
    invoke_workflow RunnableSequence [chain]
      invoke_workflow Prompt [chain]
      chat gpt-4o-mini [llm]
    invoke_workflow should_continue [chain]
  invoke_workflow tools [chain]
    execute_tool lookup_order [tool]
  invoke_workflow agent [chain]
    invoke_workflow call_model [chain]
    invoke_workflow RunnableSequence [chain]
      invoke_workflow Prompt [chain]
      chat gpt-4o-mini [llm]
    invoke_workflow should_continue [chain]"""


@tool
def lookup_order(order_id: str) -> str:
    """Find an order by id."""
    return json.dumps({"order_id": order_id, "status": "shipped"})


class OrderDbDown(RuntimeError):
    """The user's own exception type: it must come out of the agent unchanged."""


RAISED: list[BaseException] = []


@tool("lookup_order")
def broken_lookup(order_id: str) -> str:
    """Find an order by id."""
    RAISED.append(OrderDbDown(f"order database down while reading {order_id}"))
    raise RAISED[-1]


# --- fixtures and helpers -----------------------------------------------------------------------------


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
def rec(server: FakeOpenAIServer) -> Iterator[SpanRecorder]:
    """OpenAI and LangChain instrumented together; the fake's request log starts empty."""
    server.clear()
    RAISED.clear()
    with recording(service_name="test", instrument=["openai", "langchain"]) as r:
        yield r
    reset_global_tracer_provider()


def chat(server: FakeOpenAIServer, **kwargs: Any) -> ChatOpenAI:
    # A fresh async HTTP client per model: langchain-openai caches one per base URL otherwise, and it
    # would outlive the event loop of the test that created it.
    return ChatOpenAI(
        model="gpt-4o-mini",
        base_url=server.base_url,
        api_key=SecretStr("sk-test"),
        max_retries=0,
        http_async_client=openai.DefaultAsyncHttpxClient(),
        **kwargs,
    )


def react_agent(model: ChatOpenAI, tools: list[BaseTool] | ToolNode, name: str = "support_agent") -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LangGraphDeprecatedSinceV10)
        return create_react_agent(model, tools, name=name)


def inputs() -> dict[str, Any]:
    return {"messages": [("user", QUESTION)]}


def tree(spans: list[ReadableSpan]) -> str:
    """The span tree (by parent span id) as indented ``name [llm_monitor.span.kind]`` lines."""
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
    return "\n".join(lines)


def j(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return sorted((s for s in spans if s.name == name), key=lambda s: s.start_time or 0)


def kind_of(spans: list[ReadableSpan], kind: str) -> list[ReadableSpan]:
    found = [s for s in spans if attrs(s).get(sc.LLM_MONITOR_SPAN_KIND) == kind]
    return sorted(found, key=lambda s: s.start_time or 0)


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def ancestors(span: ReadableSpan, spans: list[ReadableSpan]) -> list[str]:
    """Names of the span's ancestors, nearest first, following parent span ids."""
    by_id = {s.context.span_id: s for s in spans}
    out: list[str] = []
    current = by_id.get(parent_id(span) or 0)
    while current is not None:
        out.append(current.name)
        current = by_id.get(parent_id(current) or 0)
    return out


def wire_bodies(server: FakeOpenAIServer) -> list[dict[str, Any]]:
    return [body for path, body in server.requests if path == "/v1/chat/completions"]


def simple(message: BaseMessage) -> dict[str, Any]:
    """A message as the instrumentor's ``simplify`` writes it into chain inputs/outputs."""
    out: dict[str, Any] = {"type": message.type, "content": message.content}
    calls = getattr(message, "tool_calls", None)
    if calls:
        out["tool_calls"] = [{"id": c["id"], "name": c["name"], "args": c["args"]} for c in calls]
    call_id = getattr(message, "tool_call_id", None)
    if call_id:
        out["tool_call_id"] = call_id
    return out


def final_answer(tool_name: str, result: str) -> str:
    """What the fake answers after a tool result (``monitor.demo.fake_replies._tool_answer``)."""
    return f"I looked that up with {tool_name}: {result}. Let me know if there is anything else I can do."


def check_model_calls(spans: list[ReadableSpan], server: FakeOpenAIServer, replies: list[AIMessage]) -> None:
    """One ``llm`` span per model call, in the agent's tree, with the tokens the fake reported."""
    llm = kind_of(spans, "llm")
    bodies = wire_bodies(server)
    assert len(llm) == len(bodies) == len(replies)
    assert {s.instrumentation_scope.name for s in spans if s.instrumentation_scope is not None} == {
        LANGCHAIN_SCOPE  # the OpenAI call recorded onto the LangChain span: no second span
    }
    ids = [attrs(s)[sc.GEN_AI_RESPONSE_ID] for s in llm]
    assert len(set(ids)) == len(ids) and all(i.startswith("chatcmpl-fake-") for i in ids)
    if all("id" in m.response_metadata for m in replies):  # a streamed reply has no response id
        assert ids == [m.response_metadata["id"] for m in replies]
    usage = [m.usage_metadata for m in replies]
    assert all(u is not None for u in usage)
    inputs_ = [attrs(s)[sc.GEN_AI_USAGE_INPUT_TOKENS] for s in llm]
    outputs = [attrs(s)[sc.GEN_AI_USAGE_OUTPUT_TOKENS] for s in llm]
    assert (
        inputs_
        == [u["input_tokens"] for u in usage if u]
        == [count_message_tokens(b["messages"]) for b in bodies]
    )
    assert outputs == [u["output_tokens"] for u in usage if u]
    assert sum(inputs_) + sum(outputs) == sum(u["total_tokens"] for u in usage if u)
    for span in llm:
        a = attrs(span)
        assert (a[sc.GEN_AI_REQUEST_MODEL], a[sc.GEN_AI_RESPONSE_MODEL]) == (
            "gpt-4o-mini",
            "gpt-4o-mini-2024-07-18",
        )
        assert a[sc.GEN_AI_PROVIDER_NAME] == "openai"
        assert [t["function"]["name"] for t in json.loads(a[sc.GEN_AI_TOOL_DEFINITIONS])] == ["lookup_order"]
    assert [attrs(s)[sc.GEN_AI_RESPONSE_FINISH_REASONS] for s in llm] == [("tool_calls",), ("stop",)][
        : len(llm)
    ]


def check_tree(spans: list[ReadableSpan], agent_name: str = "support_agent") -> ReadableSpan:
    """Every span in one trace under the agent span; tools and model calls where LangGraph runs them."""
    (agent,) = named(spans, f"invoke_agent {agent_name}")
    assert agent.parent is None
    assert {s.context.trace_id for s in spans} == {agent.context.trace_id}
    for node in named(spans, "invoke_workflow tools") + named(spans, "invoke_workflow agent"):
        assert parent_id(node) == agent.context.span_id
    (tool_span,) = kind_of(spans, "tool")
    (tools_node,) = named(spans, "invoke_workflow tools")
    assert parent_id(tool_span) == tools_node.context.span_id
    for span in kind_of(spans, "llm"):
        assert ancestors(span, spans) == [
            "invoke_workflow RunnableSequence",
            "invoke_workflow agent",
            f"invoke_agent {agent_name}",
        ]
    assert [attrs(s)[sc.LLM_MONITOR_SPAN_KIND] for s in spans].count("agent") == 1
    for span in spans:
        assert {k: attrs(span).get(k) for k in USER} == USER, span.name
    return agent


def tool_attributes(call_id: str | None, args: dict[str, Any], result: str | None) -> dict[str, Any]:
    out = {
        sc.LLM_MONITOR_SPAN_KIND: "tool",
        sc.GEN_AI_OPERATION_NAME: "execute_tool",
        sc.GEN_AI_TOOL_NAME: "lookup_order",
        sc.GEN_AI_TOOL_TYPE: "function",
        sc.GEN_AI_TOOL_DESCRIPTION: "Find an order by id.",
        sc.GEN_AI_TOOL_CALL_ID: call_id,
        sc.LLM_MONITOR_INPUT: j(args),
        sc.GEN_AI_TOOL_CALL_ARGUMENTS: j(args),
        **USER,
    }
    if result is not None:
        out[sc.LLM_MONITOR_OUTPUT] = out[sc.GEN_AI_TOOL_CALL_RESULT] = j(result)
    return out


def check_react_run(rec: SpanRecorder, server: FakeOpenAIServer, messages: list[BaseMessage]) -> None:
    """The full check of one successful ReAct run: tree, agent, tool and model-call spans."""
    spans = rec.spans()
    assert tree(spans) == REACT_TREE
    agent = check_tree(spans)
    human, first, tool_msg, last = messages
    assert human.content == QUESTION
    assert isinstance(first, AIMessage) and isinstance(last, AIMessage)
    call = first.tool_calls[0]
    assert (call["name"], call["args"]) == ("lookup_order", {"order_id": "12345"})
    result = json.dumps(ORDER)
    assert (tool_msg.content, last.content) == (result, final_answer("lookup_order", result))
    expected = {
        sc.LLM_MONITOR_SPAN_KIND: "agent",
        sc.GEN_AI_OPERATION_NAME: "invoke_agent",
        sc.GEN_AI_AGENT_NAME: "support_agent",
        sc.GEN_AI_WORKFLOW_NAME: "support_agent",  # started as a chain; attributes cannot be removed
        sc.LLM_MONITOR_INPUT: j({"messages": [["user", QUESTION]]}),
        sc.LLM_MONITOR_OUTPUT: j({"messages": [simple(m) for m in messages]}),
        **USER,
    }
    assert attrs(agent) == expected
    assert agent.status.status_code is StatusCode.UNSET
    (tool_span,) = kind_of(spans, "tool")
    assert attrs(tool_span) == tool_attributes(call["id"], {"order_id": "12345"}, result)
    check_model_calls(spans, server, [first, last])
    # The second call sent the tool call and its result back, as the model's input messages show
    # (``create_react_agent`` names its AI messages after the agent, and that name goes on the wire).
    assert wire_bodies(server)[1]["messages"][1]["name"] == "support_agent"
    second_input = json.loads(attrs(kind_of(spans, "llm")[1])[sc.GEN_AI_INPUT_MESSAGES])
    assert second_input[1:] == [
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": call["id"], "name": "lookup_order", "arguments": call["args"]}
            ],
            "name": "support_agent",
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": call["id"], "response": result}]},
    ]


# --- the prebuilt ReAct agent -------------------------------------------------------------------------


def test_react_agent_invoke(rec: SpanRecorder, server: FakeOpenAIServer) -> None:
    agent = react_agent(chat(server), [lookup_order])
    with monitor.context(user_id="user-7", session_id="sess-9"):
        out = agent.invoke(inputs())
    check_react_run(rec, server, out["messages"])


def test_react_agent_ainvoke(rec: SpanRecorder, server: FakeOpenAIServer) -> None:
    agent = react_agent(chat(server), [lookup_order])

    async def main() -> dict[str, Any]:
        with monitor.context(user_id="user-7", session_id="sess-9"):
            result: dict[str, Any] = await agent.ainvoke(inputs())
            return result

    out = asyncio.run(main())
    check_react_run(rec, server, out["messages"])


def test_react_agent_stream_messages(rec: SpanRecorder, server: FakeOpenAIServer) -> None:
    """``stream_mode="messages"`` makes the model stream token by token; usage comes in the last chunk."""
    agent = react_agent(chat(server, stream_usage=True), [lookup_order])
    text: dict[str, str] = {}
    state: dict[str, Any] = {}
    with monitor.context(user_id="user-7", session_id="sess-9"):
        for mode, item in agent.stream(inputs(), stream_mode=["messages", "values"]):
            if mode == "values":
                state = item
                continue
            message, meta = item
            if isinstance(message, AIMessageChunk):
                assert meta["langgraph_node"] == "agent"
                text[str(message.id)] = text.get(str(message.id), "") + str(message.content)
    assert [(b["stream"], b["stream_options"]) for b in wire_bodies(server)] == [
        (True, {"include_usage": True})
    ] * 2
    assert list(text.values()) == ["", final_answer("lookup_order", json.dumps(ORDER))]
    check_react_run(rec, server, state["messages"])
    for span in kind_of(rec.spans(), "llm"):
        assert attrs(span)[sc.GEN_AI_REQUEST_STREAM] is True
        assert attrs(span)[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0


def test_react_agent_astream_updates(rec: SpanRecorder, server: FakeOpenAIServer) -> None:
    """``astream`` of node updates: the same spans as ``invoke``, from the async path."""
    agent = react_agent(chat(server), [lookup_order])

    async def main() -> list[dict[str, Any]]:
        with monitor.context(user_id="user-7", session_id="sess-9"):
            return [update async for update in agent.astream(inputs(), stream_mode="updates")]

    updates = asyncio.run(main())
    assert [list(u) for u in updates] == [["agent"], ["tools"], ["agent"]]
    messages = [m for u in updates for node in u.values() for m in node["messages"]]
    spans = rec.spans()
    (agent_span,) = named(spans, "invoke_agent support_agent")
    # The graph's own input message is not an update, so the agent span's output has all four.
    assert json.loads(attrs(agent_span)[sc.LLM_MONITOR_OUTPUT])["messages"][1:] == [
        simple(m) for m in messages
    ]
    human = json.loads(attrs(agent_span)[sc.LLM_MONITOR_OUTPUT])["messages"][0]
    assert human == {"type": "human", "content": QUESTION}
    assert tree(spans) == REACT_TREE
    check_tree(spans)
    check_model_calls(spans, server, [messages[0], messages[2]])


# --- tool errors --------------------------------------------------------------------------------------


def failed_by(exc: BaseException) -> tuple[StatusCode, str | None, str, str]:
    return StatusCode.ERROR, f"OrderDbDown: {exc}", "OrderDbDown", "OrderDbDown"


def status(span: ReadableSpan) -> tuple[StatusCode, str | None, str | None, str | None]:
    """(status, description, error.type, type of the exception event)."""
    events = [e for e in span.events if e.name == "exception"]
    event_type = (
        str((events[0].attributes or {}).get("exception.type")).rsplit(".", 1)[-1] if events else None
    )
    return span.status.status_code, span.status.description, attrs(span).get(sc.ERROR_TYPE), event_type


def test_tool_error_handled_by_tool_node_agent_continues(rec: SpanRecorder, server: FakeOpenAIServer) -> None:
    """``handle_tool_errors=True``: the failure goes back to the model as a tool message; the tool
    span is ERROR, the ``tools`` node and the agent are not (they carried on), the model answers."""
    agent = react_agent(chat(server), ToolNode([broken_lookup], handle_tool_errors=True))
    with monitor.context(user_id="user-7", session_id="sess-9"):
        out = agent.invoke(inputs())
    (exc,) = RAISED
    human, first, tool_msg, last = out["messages"]
    assert human.content == QUESTION
    error_text = f"Error: {exc!r}\n Please fix your mistakes."
    assert (tool_msg.content, tool_msg.status) == (error_text, "error")
    assert last.content == final_answer("lookup_order", error_text)
    spans = rec.spans()
    assert tree(spans) == REACT_TREE
    agent_span = check_tree(spans)
    (tool_span,) = kind_of(spans, "tool")
    call = first.tool_calls[0]
    assert attrs(tool_span) == {
        **tool_attributes(call["id"], {"order_id": "12345"}, None),
        sc.ERROR_TYPE: "OrderDbDown",
    }
    assert status(tool_span) == failed_by(exc)
    (tools_node,) = named(spans, "invoke_workflow tools")
    for span in (tools_node, agent_span, *kind_of(spans, "llm")):
        assert status(span) == (StatusCode.UNSET, None, None, None), span.name
    check_model_calls(spans, server, [first, last])


def test_tool_error_unhandled_propagates_through_the_agent(
    rec: SpanRecorder, server: FakeOpenAIServer
) -> None:
    """LangGraph's default ToolNode re-raises anything but argument errors: the user's exception leaves
    ``invoke`` unchanged, and the tool, its node and the agent are ERROR; the model call is not."""
    agent = react_agent(chat(server), [broken_lookup])
    with monitor.context(user_id="user-7", session_id="sess-9"), pytest.raises(OrderDbDown) as raised:
        agent.invoke(inputs())
    (exc,) = RAISED
    assert raised.value is exc
    spans = rec.spans()
    assert tree(spans) == "\n".join(REACT_TREE.splitlines()[:9])  # no second turn
    agent_span = check_tree(spans)
    (tool_span,) = kind_of(spans, "tool")
    (tools_node,) = named(spans, "invoke_workflow tools")
    for span in (tool_span, tools_node, agent_span):
        assert status(span) == failed_by(exc), span.name
    assert sc.LLM_MONITOR_OUTPUT not in attrs(agent_span)
    (llm,) = kind_of(spans, "llm")
    assert status(llm) == (StatusCode.UNSET, None, None, None)
    assert len(wire_bodies(server)) == 1
    assert attrs(llm)[sc.GEN_AI_USAGE_INPUT_TOKENS] == count_message_tokens(
        wire_bodies(server)[0]["messages"]
    )


# --- a hand-built graph -------------------------------------------------------------------------------


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def order_desk(model: ChatOpenAI) -> Any:
    """A model node and a ToolNode in a loop: a ReAct agent written by hand."""
    bound = model.bind_tools([lookup_order])

    def call_model(state: State) -> dict[str, Any]:
        return {"messages": [bound.invoke(state["messages"])]}

    graph = StateGraph(State)
    graph.add_node("model", call_model)
    graph.add_node("tools", ToolNode([lookup_order]))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition, ["tools", END])
    graph.add_edge("tools", "model")
    return graph.compile(name="order_desk")


@pytest.mark.parametrize("tags", [["agent"], []])
def test_state_graph_is_an_agent_when_tagged(
    rec: SpanRecorder, server: FakeOpenAIServer, tags: list[str]
) -> None:
    """A hand-built graph has no sign of being an agent: tagging the run ``agent`` makes its root
    the one agent span (the tag is inherited, only the outermost run counts); untagged it is a chain."""
    graph = order_desk(chat(server))
    with monitor.context(user_id="user-7", session_id="sess-9"):
        out = graph.invoke(inputs(), {"tags": tags})
    root = "invoke_agent order_desk [agent]" if tags else "invoke_workflow order_desk [chain]"
    spans = rec.spans()
    assert tree(spans) == "\n".join(
        [
            root,
            "  invoke_workflow model [chain]",
            "    chat gpt-4o-mini [llm]",
            "    invoke_workflow tools_condition [chain]",
            "  invoke_workflow tools [chain]",
            "    execute_tool lookup_order [tool]",
            "  invoke_workflow model [chain]",
            "    chat gpt-4o-mini [llm]",
            "    invoke_workflow tools_condition [chain]",
        ]
    )
    human, first, tool_msg, last = out["messages"]
    assert (human.content, tool_msg.content) == (QUESTION, json.dumps(ORDER))
    assert last.content == final_answer("lookup_order", json.dumps(ORDER))
    check_model_calls(spans, server, [first, last])
    (tool_span,) = kind_of(spans, "tool")
    assert attrs(tool_span) == tool_attributes(
        first.tool_calls[0]["id"], {"order_id": "12345"}, json.dumps(ORDER)
    )
    assert [s.name for s in kind_of(spans, "agent")] == (["invoke_agent order_desk"] if tags else [])
    assert {s.context.trace_id for s in spans} == {spans[-1].context.trace_id}
    for span in spans:
        assert {k: attrs(span).get(k) for k in USER} == USER, span.name


# --- LangChain 1.x create_agent ---------------------------------------------------------------------------


def create_agent_tree(name: str) -> str:
    return "\n".join(
        [
            f"invoke_agent {name} [agent]",
            "  invoke_workflow model [chain]",
            "    chat gpt-4o-mini [llm]",
            "  invoke_workflow tools [chain]",
            "    execute_tool lookup_order [tool]",
            "  invoke_workflow model [chain]",
            "    chat gpt-4o-mini [llm]",
        ]
    )


@pytest.mark.parametrize("name", ["support_agent", None])
@pytest.mark.parametrize("run", ["invoke", "ainvoke"])
def test_create_agent_is_one_agent_span(
    rec: SpanRecorder, server: FakeOpenAIServer, name: str | None, run: str
) -> None:
    """``create_agent`` names its model node ``model`` and marks its runs ``ls_integration``: its graph run
    is the agent (named or LangGraph's default name), each model turn a chain step under it, and each
    model call one ``llm`` span with the wire's tokens."""
    agent = create_agent(chat(server), [lookup_order], name=name)
    with monitor.context(user_id="user-7", session_id="sess-9"):
        if run == "invoke":
            out = agent.invoke(inputs())
        else:

            async def main() -> dict[str, Any]:
                result: dict[str, Any] = await agent.ainvoke(inputs())
                return result

            out = asyncio.run(main())
    label = name or "LangGraph"
    spans = rec.spans()
    assert tree(spans) == create_agent_tree(label)
    human, first, tool_msg, last = out["messages"]
    assert (human.content, tool_msg.content) == (QUESTION, json.dumps(ORDER))
    assert last.content == final_answer("lookup_order", json.dumps(ORDER))
    (agent_span,) = kind_of(spans, "agent")
    assert attrs(agent_span) == {
        sc.LLM_MONITOR_SPAN_KIND: "agent",
        sc.GEN_AI_OPERATION_NAME: "invoke_agent",
        sc.GEN_AI_AGENT_NAME: label,
        sc.GEN_AI_WORKFLOW_NAME: label,  # started as a chain; attributes cannot be removed
        sc.LLM_MONITOR_INPUT: j({"messages": [["user", QUESTION]]}),
        sc.LLM_MONITOR_OUTPUT: j({"messages": [simple(m) for m in out["messages"]]}),
        **USER,
    }
    assert agent_span.parent is None
    for node in named(spans, "invoke_workflow model") + named(spans, "invoke_workflow tools"):
        assert parent_id(node) == agent_span.context.span_id
    for span in kind_of(spans, "llm"):
        assert ancestors(span, spans) == ["invoke_workflow model", f"invoke_agent {label}"]
    (tool_span,) = kind_of(spans, "tool")
    assert attrs(tool_span) == tool_attributes(
        first.tool_calls[0]["id"], {"order_id": "12345"}, json.dumps(ORDER)
    )
    check_model_calls(spans, server, [first, last])
    assert {s.context.trace_id for s in spans} == {agent_span.context.trace_id}
    for span in spans:
        assert {k: attrs(span).get(k) for k in USER} == USER, span.name


def test_create_agent_nested_as_a_tool_is_its_own_agent(rec: SpanRecorder, server: FakeOpenAIServer) -> None:
    """An agent called from a tool of another agent: two agent spans, the inner one under the tool,
    each with its own model steps (the metadata marks are inherited, the model-node rule is not fooled)."""
    inner = create_agent(chat(server), [lookup_order], name="order_agent")

    @tool
    def ask_order_agent(question: str) -> str:
        """Ask the order agent."""
        return str(inner.invoke({"messages": [("user", question)]})["messages"][-1].content)

    outer = create_agent(chat(server), [ask_order_agent], name="front_desk")
    with monitor.context(user_id="user-7", session_id="sess-9"):
        outer.invoke(inputs())
    spans = rec.spans()
    assert [s.name for s in kind_of(spans, "agent")] == [
        "invoke_agent front_desk",
        "invoke_agent order_agent",
    ]
    (inner_span,) = named(spans, "invoke_agent order_agent")
    assert ancestors(inner_span, spans) == [
        "execute_tool ask_order_agent",
        "invoke_workflow tools",
        "invoke_agent front_desk",
    ]
    assert len(kind_of(spans, "llm")) == len(wire_bodies(server)) == 4
