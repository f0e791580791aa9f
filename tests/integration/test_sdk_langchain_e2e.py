"""LangChain end to end: a LangChain app (``ChatOpenAI`` over the real ``openai`` SDK, both instrumented
by ``monitor.init``) → OTLP/HTTP → collector → chDB, against the deterministic fake OpenAI server.

What the store must show: the chain/agent/tool/retriever tree in ``parent_span_id``, the right ``kind``
column for each, and exactly one ``llm`` row per model call, so tokens and cost are counted once.
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda, RunnableParallel
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

import monitor
from collectors.server import CollectorServer
from monitor.demo.fake_openai import FakeOpenAIServer, count_message_tokens

PROMPT = ChatPromptTemplate.from_messages([("system", "Answer from the context."), ("user", "{question}")])


class FaqRetriever(BaseRetriever):
    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return [Document("Refunds take 5 to 7 business days.", id="faq-1")]


@tool
def lookup_order(order_id: str) -> str:
    """Find an order by id."""
    return json.dumps({"order_id": order_id, "status": "shipped"})


def test_langchain_app_lands_with_one_llm_row_per_call(settings: Any, store: Any) -> None:
    collector = CollectorServer(settings, store)
    collector.start()
    try:
        with FakeOpenAIServer() as fake:
            monitor.init(service_name="lc-e2e", endpoint=collector.url, instrument=["openai", "langchain"])
            try:
                model = ChatOpenAI(
                    model="gpt-4o-mini", base_url=fake.base_url, api_key="sk-test", max_retries=0
                )
                rag = (
                    RunnableParallel(
                        context=RunnableLambda(lambda x: x["question"], name="query") | FaqRetriever(),
                        question=RunnableLambda(lambda x: x["question"], name="passthrough"),
                    )
                    | RunnableLambda(
                        lambda x: {"question": f"{x['question']} Context: {x['context'][0].page_content}"},
                        name="stuff",
                    )
                    | PROMPT
                    | model
                    | StrOutputParser()
                )
                answer = rag.invoke({"question": "How long do refunds take?"})

                @monitor.agent
                def support(question: str) -> str:
                    messages: list[BaseMessage] = [HumanMessage(question)]
                    bound = model.bind_tools([lookup_order])
                    ai = bound.invoke(messages)
                    messages += [ai, *(lookup_order.invoke(c) for c in ai.tool_calls)]
                    return str(bound.invoke(messages).content)

                final = support("Where is order 12345?")
                assert monitor.flush(10)
            finally:
                monitor.shutdown()
            bodies = [b for path, b in fake.requests if path == "/v1/chat/completions"]
    finally:
        assert collector.stop(), "the collector did not drain"
    assert answer and final.startswith("I looked that up with lookup_order")

    rows = store.rows(
        "SELECT span_id, parent_span_id, name, kind, input_tokens, output_tokens, cost_usd, convention "
        "FROM spans FINAL ORDER BY start_time"
    )
    names = {r["span_id"]: r["name"] for r in rows}
    edges = sorted((names.get(r["parent_span_id"], ""), r["name"], r["kind"]) for r in rows)
    assert edges == sorted(
        [
            ("", "invoke_workflow RunnableSequence", "chain"),
            (
                "invoke_workflow RunnableSequence",
                "invoke_workflow RunnableParallel<context,question>",
                "chain",
            ),
            (
                "invoke_workflow RunnableParallel<context,question>",
                "invoke_workflow RunnableSequence",
                "chain",
            ),
            ("invoke_workflow RunnableSequence", "invoke_workflow query", "chain"),
            ("invoke_workflow RunnableSequence", "retrieval FaqRetriever", "retriever"),
            ("invoke_workflow RunnableParallel<context,question>", "invoke_workflow passthrough", "chain"),
            ("invoke_workflow RunnableSequence", "invoke_workflow stuff", "chain"),
            ("invoke_workflow RunnableSequence", "invoke_workflow ChatPromptTemplate", "chain"),
            ("invoke_workflow RunnableSequence", "chat gpt-4o-mini", "llm"),
            ("invoke_workflow RunnableSequence", "invoke_workflow StrOutputParser", "chain"),
            ("", "invoke_agent support", "agent"),
            ("invoke_agent support", "chat gpt-4o-mini", "llm"),
            ("invoke_agent support", "execute_tool lookup_order", "tool"),
            ("invoke_agent support", "chat gpt-4o-mini", "llm"),
        ]
    )
    llm = [r for r in rows if r["kind"] == "llm"]
    assert len(llm) == len(bodies) == 3  # one row per model call
    assert [r["input_tokens"] for r in llm] == [count_message_tokens(b["messages"]) for b in bodies]
    assert all(r["output_tokens"] > 0 and r["cost_usd"] > 0 for r in llm)
    assert sum(r["input_tokens"] for r in rows) == sum(count_message_tokens(b["messages"]) for b in bodies)
    assert {r["convention"] for r in rows} == {"llm-monitor"}
