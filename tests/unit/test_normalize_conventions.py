"""Hand-built spans for what the real libraries cannot easily produce: each OTel generation, OpenLLMetry
legacy indexed keys and workflow spans, every OpenInference kind, Langfuse and OpenLIT attributes, and
AnyValue arrays/kvlists/JSON strings (attributes here are the decoded Python values of any AnyValue)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from collectors.normalize import normalize_spans
from collectors.otlp import Span, SpanEvent

T0 = 1_760_000_000_000_000_000
TRACE = "ab" * 16


def span(attrs: dict[str, Any], *, name: str = "s", sid: str = "01" * 8, parent: str = "", **kw: Any) -> Span:
    return Span(
        trace_id=TRACE, span_id=sid, parent_span_id=parent, name=name, kind=1,
        start_time_unix_nano=T0, end_time_unix_nano=T0 + 500_000_000, attributes=attrs, **kw,
    )  # fmt: skip


def row(attrs: dict[str, Any], **kw: Any) -> dict[str, Any]:
    [r] = normalize_spans([span(attrs, **kw)])
    return r


def test_otel_oldest_generation_prompt_strings_and_deprecated_usage():
    r = row({
        "gen_ai.system": "az.ai.openai", "gen_ai.request.model": "gpt-4", "gen_ai.prompt": "Hi there",
        "gen_ai.completion": "Hello!", "gen_ai.usage.prompt_tokens": 3, "gen_ai.usage.completion_tokens": 2,
    })  # fmt: skip
    assert (r["convention"], r["kind"], r["provider"]) == ("otel-genai", "llm", "azure.ai.openai")
    assert (r["input_text"], r["output_text"]) == ("Hi there", "Hello!")
    assert (r["input_tokens"], r["output_tokens"], r["total_tokens"]) == (3, 2, 5)
    assert r["attributes"] == {}


def test_otel_oldest_generation_content_span_events():
    events = [
        SpanEvent("gen_ai.content.prompt", T0 + 1, {"gen_ai.prompt": "Q?"}),
        SpanEvent("gen_ai.content.completion", T0 + 2, {"gen_ai.completion": "A."}),
    ]
    r = row({"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"}, events=events)
    assert (r["input_text"], r["output_text"]) == ("Q?", "A.")


def test_otel_current_structured_anyvalue_messages_and_tool_result_spelling():
    r = row({
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "gcp.gemini", "gen_ai.request.model": "g",
        "gen_ai.system_instructions": [{"type": "text", "content": "sys"}],
        "gen_ai.input.messages": [
            {"role": "user", "parts": [{"type": "text", "content": "weather?"}]},
            {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "result": "sunny"}]},
        ],
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "finish_reason": "tool_call", "parts": [
            {"type": "tool_call", "id": "c2", "name": "f", "arguments": {"x": 1}}]}]),
        "gen_ai.response.finish_reasons": ["tool_calls"],
    })  # fmt: skip
    assert r["input_text"] == "sys\n\nweather?\n\n[tool_result] sunny"
    assert r["output_text"] == '[tool_call] f({"x":1})'
    assert r["finish_reason"] == "tool_calls"  # the span attribute wins over the per-message field


def test_openllmetry_legacy_indexed_with_tool_calls_and_chunk_ttft():
    events = [SpanEvent("llm.content.completion.chunk", T0 + 40_000_000 + i, {}) for i in range(3)]
    r = row({
        "llm.request.type": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024", "llm.is_streaming": True,
        "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "Paris weather?",
        "gen_ai.prompt.1.role": "tool", "gen_ai.prompt.1.content": "12C", "gen_ai.prompt.1.tool_call_id": "c0",
        "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.finish_reason": "tool_calls",
        "gen_ai.completion.0.tool_calls.0.id": "c1", "gen_ai.completion.0.tool_calls.0.name": "get_weather",
        "gen_ai.completion.0.tool_calls.0.arguments": '{"city": "Paris"}',
        "gen_ai.usage.input_tokens": 7, "gen_ai.usage.output_tokens": 4, "llm.usage.total_tokens": 12,
        "llm.headers": "None",
    }, name="openai.chat", events=events)  # fmt: skip
    assert (r["convention"], r["kind"], r["model"], r["request_model"]) == (
        "openllmetry", "llm", "gpt-4o-2024", "gpt-4o",
    )  # fmt: skip
    assert r["input_text"] == "Paris weather?\n\n[tool_result] 12C"
    assert r["output_text"] == '[tool_call] get_weather({"city":"Paris"})'
    assert r["finish_reason"] == "tool_calls"
    assert (r["input_tokens"], r["output_tokens"], r["total_tokens"]) == (7, 4, 12)
    assert r["stream"] is True and r["ttft_ms"] == pytest.approx(40.0)
    assert r["attributes"] == {"llm.headers": "None"}


def test_openllmetry_workflow_layer_and_association_properties():
    root = span({
        "traceloop.span.kind": "workflow", "traceloop.entity.name": "chat_flow",
        "traceloop.entity.input": '{"args": ["hi"], "kwargs": {}}', "traceloop.entity.output": '"bye"',
        "traceloop.association.properties.user_id": "u1", "traceloop.association.properties.session_id": "s1",
        "traceloop.prompt.key": "greeting", "traceloop.prompt.version": 3,
    }, name="chat_flow.workflow")  # fmt: skip
    tool = span(
        {"traceloop.span.kind": "tool", "traceloop.entity.name": "lookup"}, sid="02" * 8, parent="01" * 8
    )
    agent = span({"traceloop.span.kind": "agent"}, sid="03" * 8, parent="01" * 8)
    r, t, a = normalize_spans([root, tool, agent])
    assert (r["kind"], r["convention"], t["kind"], a["kind"]) == ("chain", "openllmetry", "tool", "agent")
    assert (r["input_text"], r["output_text"]) == ('{"args": ["hi"], "kwargs": {}}', "bye")
    assert (r["prompt_name"], r["prompt_version"]) == ("greeting", "3")
    assert (t["user_id"], t["session_id"]) == ("u1", "s1")  # propagated from the root


@pytest.mark.parametrize(
    ("oi_kind", "kind"),
    [("LLM", "llm"), ("CHAIN", "chain"), ("AGENT", "agent"), ("TOOL", "tool"), ("RETRIEVER", "retriever"),
     ("EMBEDDING", "embedding"), ("RERANKER", "reranker"), ("GUARDRAIL", "guardrail"),
     ("EVALUATOR", "evaluator"), ("PROMPT", "other"), ("UNKNOWN", "other")],
)  # fmt: skip
def test_openinference_kinds_and_plain_io(oi_kind, kind):
    r = row({"openinference.span.kind": oi_kind, "input.value": "question", "input.mime_type": "text/plain",
             "output.value": '{"answer": 42}', "output.mime_type": "application/json"})  # fmt: skip
    assert (r["convention"], r["kind"]) == ("openinference", kind)
    assert (r["input_text"], r["output_text"]) == ("question", '{"answer": 42}')
    assert r["attributes"] == {}


def test_openinference_llm_messages_tools_cost_params_and_prompt_template():
    r = row({
        "openinference.span.kind": "LLM", "llm.provider": "azure", "llm.system": "openai",
        "llm.model_name": "gpt-4o-2024", "llm.invocation_parameters": '{"model": "gpt-4o", "temperature": 0.1, "max_completion_tokens": 9, "top_p": 0.5}',
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.contents.0.message_content.type": "text",
        "llm.input_messages.0.message.contents.0.message_content.text": "look:",
        "llm.input_messages.0.message.contents.1.message_content.type": "image",
        "llm.input_messages.0.message.contents.1.message_content.image.image.url": "https://x/y.png",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.tool_calls.0.tool_call.id": "c1",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "zoom",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"f": 2}',
        "llm.token_count.prompt": 11, "llm.token_count.completion": 5, "llm.token_count.total": 16,
        "llm.cost.total": 0.0021, "llm.finish_reason": "tool_calls", "tag.tags": ["a", "b"],
        "llm.prompt_template.version": "v7", "prompt.id": "pr-1", "session.id": "s9", "user.id": "u9",
    })  # fmt: skip
    assert (r["model"], r["request_model"], r["response_model"], r["provider"]) == (
        "gpt-4o-2024", "gpt-4o", "gpt-4o-2024", "azure",
    )  # fmt: skip
    assert (r["temperature"], r["max_tokens"], r["top_p"]) == (0.1, 9, 0.5)
    assert r["input_text"] == "look:\n[image: https://x/y.png]"
    assert r["output_text"] == '[tool_call] zoom({"f":2})'
    assert (r["input_tokens"], r["output_tokens"], r["total_tokens"], r["cost_usd"]) == (11, 5, 16, 0.0021)
    assert (r["finish_reason"], r["tags"], r["prompt_name"], r["prompt_version"]) == (
        "tool_calls",
        ["a", "b"],
        "pr-1",
        "v7",
    )
    assert (r["user_id"], r["session_id"]) == ("u9", "s9")
    assert r["attributes"] == {"llm.system": "openai"}  # llm.provider was the one used


def test_openinference_retriever_reranker_embedding():
    ret = row({"openinference.span.kind": "RETRIEVER", "input.value": "q",
               "retrieval.documents.0.document.content": "doc A", "retrieval.documents.0.document.score": 0.9,
               "retrieval.documents.1.document.content": "doc B"})  # fmt: skip
    assert (ret["input_text"], ret["output_text"]) == ("q", "doc A\n\ndoc B")
    rr = row({"openinference.span.kind": "RERANKER", "reranker.query": "q2", "reranker.model_name": "rr-1",
              "reranker.output_documents.0.document.content": "best"})  # fmt: skip
    assert (rr["kind"], rr["model"], rr["input_text"], rr["output_text"]) == (
        "reranker",
        "rr-1",
        "q2",
        "best",
    )
    emb = row({"openinference.span.kind": "EMBEDDING", "embedding.model_name": "te-3",
               "embedding.embeddings.0.embedding.text": "hi", "embedding.embeddings.0.embedding.vector": [0.1, 0.2],
               "llm.token_count.prompt": 1})  # fmt: skip
    assert (emb["kind"], emb["model"], emb["input_text"], emb["input_tokens"]) == (
        "embedding",
        "te-3",
        "hi",
        1,
    )
    assert emb["attributes"] == {}


def test_langfuse_generation_attributes():
    r = row({
        "langfuse.observation.type": "generation", "langfuse.observation.model.name": "claude-3-5-sonnet",
        "langfuse.observation.input": json.dumps([{"role": "user", "content": "hi"}]),
        "langfuse.observation.output": "hello", "langfuse.observation.usage_details": '{"input": 4, "output": 2}',
        "langfuse.observation.cost_details": {"input": 0.001, "output": 0.002},
        "langfuse.observation.completion_start_time": "2025-10-09T08:53:20.250Z",
        "langfuse.observation.prompt.name": "greet", "langfuse.observation.prompt.version": 2,
        "langfuse.observation.level": "ERROR", "langfuse.observation.status_message": "rate limited",
        "langfuse.user.id": "lu", "langfuse.session.id": "ls", "langfuse.environment": "staging",
        "langfuse.trace.tags": ["x"],
    })  # fmt: skip
    assert (r["convention"], r["kind"], r["model"]) == ("langfuse", "llm", "claude-3-5-sonnet")
    assert (r["input_text"], r["output_text"]) == ("hi", "hello")
    assert (r["input_tokens"], r["output_tokens"], r["total_tokens"]) == (4, 2, 6)
    assert r["cost_usd"] == pytest.approx(0.003)
    assert r["ttft_ms"] == pytest.approx(250.0)  # T0 is 2025-10-09T08:53:20Z
    assert (r["prompt_name"], r["prompt_version"], r["status"], r["error_message"]) == (
        "greet",
        "2",
        "error",
        "rate limited",
    )
    assert (r["user_id"], r["session_id"], r["environment"], r["tags"]) == ("lu", "ls", "staging", ["x"])


def test_openlit_cost_ttft_user_and_span_level_service():
    events = [SpanEvent("gen_ai.content.prompt", T0, {"gen_ai.prompt": "user: hi"})]
    r = row({
        "gen_ai.operation.name": "chat", "gen_ai.system": "vertex_ai", "gen_ai.request.model": "gemini-pro",
        "gen_ai.usage.input_tokens": 5, "gen_ai.usage.output_tokens": 6, "gen_ai.usage.total_tokens": 11,
        "gen_ai.usage.cost": 0.0004, "gen_ai.server.time_to_first_token": 0.12, "gen_ai.request.user": "ou",
        "service.name": "lit-app", "deployment.environment": "prod",
    }, events=events, resource={"telemetry.sdk.name": "openlit"})  # fmt: skip
    assert (r["convention"], r["provider"], r["cost_usd"], r["ttft_ms"]) == (
        "openlit",
        "gcp.vertex_ai",
        0.0004,
        120.0,
    )
    assert (r["total_tokens"], r["user_id"], r["service"], r["environment"]) == (11, "ou", "lit-app", "prod")
    assert r["input_text"] == "user: hi"
