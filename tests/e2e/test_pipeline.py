"""App → SDK → OTLP/HTTP → collector → chDB → query, all real, on loopback.

The app calls a fake OpenAI server through the real ``openai`` SDK, instrumented by ``monitor``; the
collector is a real ``CollectorServer`` writing into the test's chDB database. Expected values come from
what the app itself observed (the usage each response reported), not from constants.
"""

from __future__ import annotations

import json
import time

import openai
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

import monitor
from collectors.server import CollectorServer
from monitor.demo.fake_openai import FakeOpenAIServer

SYSTEM = "You are a concise support assistant."


@pytest.fixture
def collector(settings, store):
    server = CollectorServer(settings, store)
    server.start()
    yield server
    server.stop()


def _spans(store, trace_id: str) -> list[dict]:
    return store.rows(
        "SELECT * FROM spans FINAL WHERE trace_id = {t:String} ORDER BY start_time", {"t": trace_id}
    )


def test_sdk_to_store_end_to_end(collector, store) -> None:
    seen: dict = {"usage_in": 0, "usage_out": 0}
    with FakeOpenAIServer(latency_ms=5) as fake:
        monitor.init(service_name="e2e-support", endpoint=collector.url, environment="test")
        try:
            client = openai.OpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0)

            @monitor.tool
            def lookup_order(order_id: str) -> dict:
                return {"order_id": order_id, "status": "shipped"}

            @monitor.chain
            def answer(question: str) -> str:
                seen["trace_id"] = monitor.current_trace_id()
                order = lookup_order("A-17")
                with monitor.prompt("support-answer", "v2"):
                    r = client.chat.completions.create(
                        model="gpt-4o-mini",
                        messages=[
                            {"role": "system", "content": SYSTEM},
                            {"role": "user", "content": f"{question} (order {order['status']})"},
                        ],
                        temperature=0.2,
                    )
                    seen["usage_in"] += r.usage.prompt_tokens
                    seen["usage_out"] += r.usage.completion_tokens
                    seen["answer"] = r.choices[0].message.content
                    parts = []
                    stream = client.chat.completions.create(
                        model="gpt-4o",
                        messages=[{"role": "user", "content": "Summarise that in one line. [[slow:60]]"}],
                        stream=True,
                        stream_options={"include_usage": True},
                    )
                    for chunk in stream:
                        if chunk.choices and chunk.choices[0].delta.content:
                            parts.append(chunk.choices[0].delta.content)
                        if chunk.usage:
                            seen["usage_in"] += chunk.usage.prompt_tokens
                            seen["usage_out"] += chunk.usage.completion_tokens
                    seen["streamed"] = "".join(parts)
                return seen["answer"]

            with monitor.context(user_id="u-42", session_id="s-7"):
                answer("Where is my order?")
                with pytest.raises(openai.InternalServerError), monitor.span("failing-step", kind="chain"):
                    seen["error_trace_id"] = monitor.current_trace_id()
                    client.chat.completions.create(
                        model="gpt-4o-mini", messages=[{"role": "user", "content": "boom [[error:500]]"}]
                    )
            assert monitor.flush(10)
        finally:
            monitor.shutdown()
    assert collector.stop(), "the collector did not drain"

    rows = _spans(store, seen["trace_id"])
    by_name = {r["name"]: r for r in rows}
    # span names follow the GenAI conventions: "{operation} {name}"
    assert sorted(by_name) == [
        "chat gpt-4o",
        "chat gpt-4o-mini",
        "execute_tool lookup_order",
        "invoke_workflow answer",
    ]
    root = by_name["invoke_workflow answer"]
    # tree shape: the chain is the root; the tool and both LLM calls are its children
    assert root["parent_span_id"] == "" and root["kind"] == "chain"
    for name in ("execute_tool lookup_order", "chat gpt-4o-mini", "chat gpt-4o"):
        assert by_name[name]["parent_span_id"] == root["span_id"], name
    assert by_name["execute_tool lookup_order"]["kind"] == "tool"
    assert json.loads(by_name["execute_tool lookup_order"]["output_text"])["status"] == "shipped"
    # user/session on every span of the trace; service/environment from the resource
    assert {(r["user_id"], r["session_id"]) for r in rows} == {("u-42", "s-7")}
    assert {(r["service"], r["environment"], r["convention"]) for r in rows} == {
        ("e2e-support", "test", "llm-monitor")
    }

    llm = [r for r in rows if r["kind"] == "llm"]
    assert sum(r["input_tokens"] for r in llm) == seen["usage_in"] > 0
    assert sum(r["output_tokens"] for r in llm) == seen["usage_out"] > 0
    assert all(r["total_tokens"] == r["input_tokens"] + r["output_tokens"] for r in llm)
    plain, streamed = by_name["chat gpt-4o-mini"], by_name["chat gpt-4o"]
    assert plain["output_text"] == seen["answer"] and SYSTEM in plain["input_text"]
    assert "Where is my order?" in plain["input_text"]
    assert plain["temperature"] == pytest.approx(0.2)
    assert (plain["prompt_name"], plain["prompt_version"]) == ("support-answer", "v2")
    assert plain["ttft_ms"] is None and plain["stream"] is False
    assert streamed["stream"] is True and streamed["output_text"] == seen["streamed"]
    assert streamed["ttft_ms"] is not None and 60 <= streamed["ttft_ms"] <= streamed["duration_ms"]
    # instrumentation leaves a successful span UNSET (OTel guidance); only errors set a status
    assert [(r["status"], r["finish_reason"]) for r in llm] == [("unset", "stop"), ("unset", "stop")]
    assert all(r["response_id"].startswith("chatcmpl-") for r in llm)
    # priced from the shipped table by response model (gpt-4o-mini-2024-07-18 → gpt-4o-mini: $0.15/$0.60
    # per 1M; gpt-4o-2024-08-06 → gpt-4o: $2.50/$10); chains and tools carry no cost
    for r, (p_in, p_out) in ((plain, (0.15, 0.60)), (streamed, (2.50, 10.0))):
        expected = round((r["input_tokens"] * p_in + r["output_tokens"] * p_out) / 1e6, 12)
        assert (r["cost_usd"], r["cost_source"]) == (expected, "price_table"), r["name"]
    assert all(r["cost_usd"] is None for r in rows if r["kind"] != "llm")

    errs = _spans(store, seen["error_trace_id"])
    failing = {r["name"]: r for r in errs}
    assert failing["chat gpt-4o-mini"]["status"] == "error"
    assert failing["chat gpt-4o-mini"]["error_type"] in ("InternalServerError", "500")
    assert failing["invoke_workflow failing-step"]["status"] == "error"
    assert failing["invoke_workflow failing-step"]["error_type"] == "InternalServerError"
    assert {(r["user_id"], r["session_id"]) for r in errs} == {("u-42", "s-7")}


def test_official_otel_genai_span_lands_with_model_tokens_text_status(collector, store) -> None:
    """An app using only the OpenTelemetry SDK and the current GenAI conventions (no llm-monitor code)."""
    provider = TracerProvider(resource=Resource.create({"service.name": "plain-otel-app"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{collector.url}/v1/traces")))
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2", "2.3b0")
    with tracer.start_as_current_span("chat gpt-4o-mini") as s:
        s.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.usage.input_tokens": 31,
                "gen_ai.usage.output_tokens": 12,
                "gen_ai.response.finish_reasons": ["stop"],
                "gen_ai.response.id": "chatcmpl-xyz",
                "gen_ai.input.messages": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": "What is OTLP?"}]}]
                ),
                "gen_ai.output.messages": json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [{"type": "text", "content": "A protocol."}],
                            "finish_reason": "stop",
                        }
                    ]
                ),
            }
        )
        trace_id = format(s.get_span_context().trace_id, "032x")
    with tracer.start_as_current_span("chat gpt-4o") as s:
        s.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "error.type": "timeout",
            }
        )
        s.set_status(Status(StatusCode.ERROR, "request timed out"))
        err_trace = format(s.get_span_context().trace_id, "032x")
    provider.shutdown()
    assert collector.stop()

    (row,) = _spans(store, trace_id)
    assert row["convention"] == "otel-genai" and row["kind"] == "llm"
    assert (row["model"], row["request_model"], row["provider"]) == (
        "gpt-4o-mini-2024-07-18",
        "gpt-4o-mini",
        "openai",
    )
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (31, 12, 43)
    assert (row["input_text"], row["output_text"]) == ("What is OTLP?", "A protocol.")
    assert (row["status"], row["finish_reason"], row["response_id"]) == ("unset", "stop", "chatcmpl-xyz")
    assert row["service"] == "plain-otel-app"
    (bad,) = _spans(store, err_trace)
    assert (bad["status"], bad["error_type"], bad["error_message"]) == (
        "error",
        "timeout",
        "request timed out",
    )


def test_app_is_unharmed_when_no_collector_listens(free_port: int) -> None:
    """Nothing listens on the endpoint: calls still return their values and stay fast."""
    with FakeOpenAIServer() as fake:
        monitor.init(service_name="lonely", endpoint=f"http://127.0.0.1:{free_port}")
        try:
            client = openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
            t0 = time.perf_counter()
            r = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
            assert r.choices[0].message.content
            assert time.perf_counter() - t0 < 5  # the export happens off the request path
        finally:
            monitor.shutdown(timeout=2)
