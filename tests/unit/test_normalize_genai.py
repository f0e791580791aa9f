"""Normalization of OTel GenAI, llm-monitor and unknown spans, from spans made by the real OTel SDK."""

from __future__ import annotations

import datetime as dt
import json
import random
import time

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from collectors import otlp
from collectors.normalize import Normalizer, NormalizerRegistry, default_registry, normalize_spans
from collectors.normalize.common import EPOCH, ns_to_datetime
from collectors.testing import request_to_json
from collectors.writer import StoreWriter
from monitor import semconv as sc
from monitor.store.schema import SPAN_DEFAULTS


class Sdk:
    """A TracerProvider with an in-memory exporter; ``rows()`` runs export → OTLP → decode → normalize."""

    def __init__(self, resource: dict | None = None, scope: str = "opentelemetry.instrumentation.openai_v2"):
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create(resource or {"service.name": "shop"}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer(scope)

    def request(self):
        return encode_spans(self.exporter.get_finished_spans())

    def rows(self, project: str = "default") -> list[dict]:
        spans = otlp.decode_traces_protobuf(self.request().SerializeToString())
        return normalize_spans(spans, project=project)

    def row(self, name: str, project: str = "default") -> dict:
        [r] = [r for r in self.rows(project) if r["name"] == name]
        return r


SYSTEM = [{"type": "text", "content": "You are a terse weather bot."}]
INPUT = [
    {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
    {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_1", "name": "get_weather",
                                     "arguments": {"city": "Paris"}}]},
    {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "rainy, 12C"}]},
]  # fmt: skip
OUTPUT = [
    {"role": "assistant", "parts": [{"type": "text", "content": "Rainy, 12°C."}], "finish_reason": "stop"}
]


def chat_span(sdk: Sdk, *, error: bool = False, **extra) -> None:
    """An inference span exactly as the current OTel GenAI conventions prescribe (JSON-string content)."""
    with sdk.tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT) as s:
        s.set_attributes({
            sc.GEN_AI_OPERATION_NAME: "chat",
            sc.GEN_AI_PROVIDER_NAME: "openai",
            sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
            sc.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
            sc.GEN_AI_RESPONSE_ID: "chatcmpl-123",
            sc.GEN_AI_RESPONSE_FINISH_REASONS: ["stop"],
            sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: 0.25,
            sc.GEN_AI_REQUEST_TEMPERATURE: 0.2,
            sc.GEN_AI_REQUEST_MAX_TOKENS: 256,
            sc.GEN_AI_REQUEST_TOP_P: 0.9,
            sc.GEN_AI_REQUEST_STREAM: True,
            sc.GEN_AI_USAGE_INPUT_TOKENS: 42,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 8,
            sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 10,
            sc.GEN_AI_CONVERSATION_ID: "conv-9",
            sc.GEN_AI_SYSTEM_INSTRUCTIONS: json.dumps(SYSTEM),
            sc.GEN_AI_INPUT_MESSAGES: json.dumps(INPUT),
            sc.GEN_AI_OUTPUT_MESSAGES: json.dumps(OUTPUT),
            sc.SERVER_ADDRESS: "api.openai.com",
            sc.SERVER_PORT: 443,
            sc.USER_ID: "user-7",
            **extra,
        })  # fmt: skip
        if error:
            s.set_attribute(sc.ERROR_TYPE, "RateLimitError")
            s.record_exception(RuntimeError("429 Too Many Requests"))
            s.set_status(Status(StatusCode.ERROR, "rate limited by provider"))


def test_chat_span_maps_every_column():
    sdk = Sdk({"service.name": "shop", "deployment.environment.name": "prod", sc.LLM_MONITOR_PROJECT: "web"})
    chat_span(sdk)
    [finished] = sdk.exporter.get_finished_spans()
    r = sdk.row("chat gpt-4o-mini")

    assert r["convention"] == "otel-genai"
    assert r["kind"] == "llm"
    assert (r["project"], r["service"], r["environment"]) == ("web", "shop", "prod")
    assert r["trace_id"] == f"{finished.context.trace_id:032x}"
    assert r["span_id"] == f"{finished.context.span_id:016x}"
    assert r["parent_span_id"] == ""
    assert r["provider"] == "openai"
    assert r["model"] == "gpt-4o-mini-2024-07-18"
    assert r["request_model"] == "gpt-4o-mini"
    assert r["response_model"] == "gpt-4o-mini-2024-07-18"
    assert r["start_time"] == ns_to_datetime(finished.start_time)
    assert r["start_time"].tzinfo is dt.timezone.utc
    assert r["end_time"] == ns_to_datetime(finished.end_time)
    assert r["duration_ms"] == pytest.approx((finished.end_time - finished.start_time) / 1e6)
    assert r["ttft_ms"] == pytest.approx(250.0)
    assert (r["status"], r["error_type"], r["error_message"]) == ("unset", "", "")
    assert (r["input_tokens"], r["output_tokens"], r["total_tokens"]) == (42, 8, 50)
    assert r["cost_usd"] is None  # no price table yet: unknown, never 0
    assert (r["temperature"], r["max_tokens"], r["top_p"]) == (0.2, 256, 0.9)
    assert r["stream"] is True
    assert r["finish_reason"] == "stop"
    assert r["response_id"] == "chatcmpl-123"
    assert (r["user_id"], r["session_id"]) == ("user-7", "conv-9")

    assert r["input_text"] == (
        "You are a terse weather bot.\n\nWeather in Paris?\n\n"
        '[tool_call] get_weather({"city":"Paris"})\n\n[tool_result] rainy, 12C'
    )
    assert r["output_text"] == "Rainy, 12°C."
    inp = json.loads(r["input_messages"])
    assert [m["role"] for m in inp] == ["system", "user", "assistant", "tool"]
    assert inp[0] == {"role": "system", "content": SYSTEM[0]["content"], "parts": SYSTEM}
    assert inp[1]["content"] == "Weather in Paris?"
    assert inp[2]["parts"] == INPUT[1]["parts"] and inp[2]["content"] == ""
    assert inp[3]["parts"] == INPUT[2]["parts"]
    out = json.loads(r["output_messages"])
    assert out == [
        {"role": "assistant", "content": "Rainy, 12°C.", "parts": OUTPUT[0]["parts"], "finish_reason": "stop"}
    ]

    # what no mapping used stays, stringified; what was mapped is gone
    assert r["attributes"] == {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: "10",
        sc.SERVER_ADDRESS: "api.openai.com",
        sc.SERVER_PORT: "443",
    }
    assert r["resource"]["service.name"] == "shop" and r["resource"]["telemetry.sdk.name"] == "opentelemetry"
    assert set(r) == set(SPAN_DEFAULTS)


def test_error_span_takes_type_from_error_type_and_message_from_status():
    sdk = Sdk()
    chat_span(sdk, error=True)
    r = sdk.row("chat gpt-4o-mini")
    assert (r["status"], r["error_type"], r["error_message"]) == (
        "error",
        "RateLimitError",
        "rate limited by provider",
    )
    assert sc.ERROR_TYPE not in r["attributes"]


def test_error_without_error_type_falls_back_to_the_exception_event():
    sdk = Sdk()
    with pytest.raises(ZeroDivisionError), sdk.tracer.start_as_current_span("execute_tool divide") as s:
        s.set_attribute(sc.GEN_AI_OPERATION_NAME, "execute_tool")
        s.set_attribute(sc.GEN_AI_TOOL_NAME, "divide")
        s.set_attribute(sc.GEN_AI_TOOL_CALL_ARGUMENTS, '{"a": 1, "b": 0}')
        1 / 0  # noqa: B018 - the SDK records the exception and sets ERROR without a description
    r = sdk.row("execute_tool divide")
    assert r["kind"] == "tool"
    assert r["status"] == "error"
    assert r["error_type"] == "ZeroDivisionError"
    assert r["error_message"] == "ZeroDivisionError: division by zero"  # the SDK's status description
    assert r["input_text"] == '{"a": 1, "b": 0}'
    assert r["attributes"][sc.GEN_AI_TOOL_NAME] == "divide"


def test_error_message_from_exception_when_status_has_none():
    sdk = Sdk()
    with sdk.tracer.start_as_current_span("work") as s:
        s.record_exception(KeyError("missing"))
        s.set_status(Status(StatusCode.ERROR))
    r = sdk.row("work")
    assert (r["status"], r["error_type"], r["error_message"]) == ("error", "KeyError", "'missing'")


def test_structured_anyvalue_messages_equal_json_string_messages():
    """Content as a structured AnyValue array (what log events and some SDKs send) maps the same."""
    sdk = Sdk()
    chat_span(sdk)
    req = sdk.request()
    doc = request_to_json(req)
    attrs = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]
    from collectors.testing import any_value_json

    for a in attrs:
        if a["key"] in (sc.GEN_AI_INPUT_MESSAGES, sc.GEN_AI_OUTPUT_MESSAGES, sc.GEN_AI_SYSTEM_INSTRUCTIONS):
            a["value"] = any_value_json(json.loads(a["value"]["stringValue"]))
    structured = normalize_spans(otlp.decode_traces_json(json.dumps(doc).encode()))[0]
    plain = normalize_spans(otlp.decode_traces_protobuf(req.SerializeToString()))[0]
    for col in (
        "input_text",
        "output_text",
        "input_messages",
        "output_messages",
        "finish_reason",
        "attributes",
    ):
        assert structured[col] == plain[col], col


def test_deprecated_attributes_are_fallbacks():
    sdk = Sdk()
    with sdk.tracer.start_as_current_span("chat gpt-4") as s:
        s.set_attribute(sc.GEN_AI_SYSTEM, "az.ai.openai")
        s.set_attribute(sc.GEN_AI_REQUEST_MODEL, "gpt-4")
        s.set_attribute(sc.GEN_AI_USAGE_PROMPT_TOKENS, 100)
        s.set_attribute(sc.GEN_AI_USAGE_COMPLETION_TOKENS, 20)
        s.set_attribute(sc.GEN_AI_PROMPT, "Say hi")
        s.set_attribute(sc.GEN_AI_COMPLETION, "hi")
    r = sdk.row("chat gpt-4")
    assert r["provider"] == "azure.ai.openai"
    assert r["kind"] == "llm"  # no operation name, but a model attribute
    assert r["model"] == r["request_model"] == "gpt-4" and r["response_model"] == ""
    assert (r["input_tokens"], r["output_tokens"], r["total_tokens"]) == (100, 20, 120)
    assert (r["input_text"], r["output_text"]) == ("Say hi", "hi")
    assert r["attributes"] == {}


def test_current_keys_win_over_deprecated_ones_which_stay_visible():
    sdk = Sdk()
    with sdk.tracer.start_as_current_span("s") as s:
        s.set_attribute(sc.GEN_AI_PROVIDER_NAME, "anthropic")
        s.set_attribute(sc.GEN_AI_SYSTEM, "other")
        s.set_attribute(sc.GEN_AI_USAGE_INPUT_TOKENS, 5)
        s.set_attribute(sc.GEN_AI_USAGE_PROMPT_TOKENS, 6)
    r = sdk.row("s")
    assert r["provider"] == "anthropic" and r["input_tokens"] == 5
    assert r["attributes"] == {sc.GEN_AI_SYSTEM: "other", sc.GEN_AI_USAGE_PROMPT_TOKENS: "6"}


@pytest.mark.parametrize(
    ("op", "kind"),
    [
        ("chat", "llm"), ("text_completion", "llm"), ("generate_content", "llm"), ("embeddings", "embedding"),
        ("execute_tool", "tool"), ("invoke_agent", "agent"), ("create_agent", "agent"),
        ("invoke_workflow", "chain"), ("retrieval", "retriever"), ("something_new", "other"),
    ],
)  # fmt: skip
def test_kind_from_operation_name(op, kind):
    sdk = Sdk()
    with sdk.tracer.start_as_current_span("s") as s:
        s.set_attribute(sc.GEN_AI_OPERATION_NAME, op)
    assert sdk.row("s")["kind"] == kind


def test_finish_reason_from_output_messages_when_no_attribute():
    sdk = Sdk()
    out = [{"role": "assistant", "parts": [{"type": "tool_call", "name": "f", "arguments": "{}"}],
            "finish_reason": "tool_call"}]  # fmt: skip
    with sdk.tracer.start_as_current_span("s") as s:
        s.set_attribute(sc.GEN_AI_OPERATION_NAME, "chat")
        s.set_attribute(sc.GEN_AI_OUTPUT_MESSAGES, json.dumps(out))
    r = sdk.row("s")
    assert r["finish_reason"] == "tool_call"
    assert r["output_text"] == "[tool_call] f({})"


def test_openai_style_messages_are_tolerated():
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url"}]},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]  # fmt: skip
    sdk = Sdk()
    with sdk.tracer.start_as_current_span("s") as s:
        s.set_attribute(sc.GEN_AI_INPUT_MESSAGES, json.dumps(msgs))
    r = sdk.row("s")
    assert r["input_text"] == 'Be brief.\n\nHi\n\n[tool_call] f({"x":1})\n\n[tool_result] 42'
    parts = [m["parts"] for m in json.loads(r["input_messages"])]
    assert parts[2] == [{"type": "tool_call", "name": "f", "id": "c1", "arguments": '{"x":1}'}]
    assert parts[3] == [{"type": "tool_call_response", "response": "42", "id": "c1"}]


def test_odd_values_are_ignored_and_kept_never_fatal():
    sdk = Sdk()
    with sdk.tracer.start_as_current_span("s") as s:
        s.set_attributes({
            sc.GEN_AI_OPERATION_NAME: "chat",
            sc.GEN_AI_REQUEST_TEMPERATURE: "hot",
            sc.GEN_AI_REQUEST_MAX_TOKENS: -5,
            sc.GEN_AI_REQUEST_TOP_P: float("nan"),
            sc.GEN_AI_USAGE_INPUT_TOKENS: "12",  # numeric strings are fine
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: [1, 2],
            sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: "fast",
            sc.GEN_AI_INPUT_MESSAGES: "plain prompt, not JSON",
            sc.GEN_AI_OUTPUT_MESSAGES: "[broken json",
            sc.GEN_AI_REQUEST_STREAM: 3,
            sc.GEN_AI_RESPONSE_FINISH_REASONS: [],
        })  # fmt: skip
    r = sdk.row("s")
    assert (r["temperature"], r["max_tokens"], r["top_p"], r["ttft_ms"]) == (None, None, None, None)
    assert (r["input_tokens"], r["output_tokens"], r["total_tokens"]) == (12, 0, 12)
    assert r["input_text"] == "plain prompt, not JSON"
    assert r["output_text"] == "[broken json"
    assert r["stream"] is False and r["finish_reason"] == ""
    assert r["attributes"] == {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_REQUEST_TEMPERATURE: "hot",
        sc.GEN_AI_REQUEST_MAX_TOKENS: "-5",
        sc.GEN_AI_REQUEST_TOP_P: "nan",
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: "[1,2]",
        sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: "fast",
        sc.GEN_AI_REQUEST_STREAM: "3",
    }


# --- llm-monitor convention ------------------------------------------------------------------------


def test_llm_monitor_chain_and_tool_spans():
    sdk = Sdk(scope="llm_monitor.decorators")
    with sdk.tracer.start_as_current_span("answer_question") as root:
        root.set_attributes({
            sc.LLM_MONITOR_SPAN_KIND: "chain",
            sc.LLM_MONITOR_INPUT: json.dumps({"question": "Weather in Paris?"}),
            sc.LLM_MONITOR_OUTPUT: json.dumps("Rainy."),
            sc.LLM_MONITOR_PROMPT_NAME: "weather-qa",
            sc.LLM_MONITOR_PROMPT_VERSION: "3",
            sc.LLM_MONITOR_TAGS: ["beta", "eu"],
            sc.LLM_MONITOR_METADATA_PREFIX + "tenant": "acme",
            sc.USER_ID: "u-1",
            sc.SESSION_ID: "s-1",
        })  # fmt: skip
        with sdk.tracer.start_as_current_span("get_weather") as tool:
            tool.set_attributes({
                sc.LLM_MONITOR_SPAN_KIND: "TOOL",
                sc.GEN_AI_TOOL_NAME: "get_weather",
                sc.GEN_AI_TOOL_CALL_ARGUMENTS: '{"city":"Paris"}',
                sc.GEN_AI_TOOL_CALL_RESULT: '{"sky":"rain"}',
            })  # fmt: skip
        chat_span(sdk, **{sc.LLM_MONITOR_PROMPT_NAME: "weather-qa"})
    rows = {r["name"]: r for r in sdk.rows()}
    chain, tool, llm = rows["answer_question"], rows["get_weather"], rows["chat gpt-4o-mini"]
    assert {r["convention"] for r in rows.values()} == {"llm-monitor"}
    assert (chain["kind"], tool["kind"], llm["kind"]) == ("chain", "tool", "llm")
    assert chain["input_text"] == '{"question": "Weather in Paris?"}'
    assert chain["output_text"] == "Rainy."
    assert (chain["prompt_name"], chain["prompt_version"], chain["tags"]) == (
        "weather-qa",
        "3",
        ["beta", "eu"],
    )
    assert chain["attributes"] == {"llm_monitor.metadata.tenant": "acme"}
    assert (tool["input_text"], tool["output_text"]) == ('{"city":"Paris"}', '{"sky":"rain"}')
    assert tool["parent_span_id"] == chain["span_id"] and llm["parent_span_id"] == chain["span_id"]
    # identity propagates from the root to the whole trace; the LLM span's own ids win
    assert (tool["user_id"], tool["session_id"]) == ("u-1", "s-1")
    assert (llm["user_id"], llm["session_id"]) == ("user-7", "conv-9")
    assert llm["prompt_name"] == "weather-qa" and llm["input_tokens"] == 42


def test_llm_monitor_recognised_by_attribute_alone():
    sdk = Sdk(scope="someone.else")
    with sdk.tracer.start_as_current_span("step") as s:
        s.set_attribute(sc.LLM_MONITOR_SPAN_KIND, "retriever")
        s.set_attribute(sc.LLM_MONITOR_OUTPUT, '["doc1", "doc2"]')
    r = sdk.row("step")
    assert (r["convention"], r["kind"], r["output_text"]) == ("llm-monitor", "retriever", '["doc1", "doc2"]')


# --- fallback, registry, propagation ---------------------------------------------------------------


def test_unknown_spans_are_kept_whole():
    sdk = Sdk()
    with sdk.tracer.start_as_current_span("GET /pay", kind=SpanKind.SERVER) as s:
        s.set_attribute("http.request.method", "GET")
        s.set_attribute("http.response.status_code", 200)
    with sdk.tracer.start_as_current_span("ChatModel") as s:
        s.set_attribute("llm.model_name", "mistral-large")
    rows = {r["name"]: r for r in sdk.rows(project="fallback-proj")}
    http, llm = rows["GET /pay"], rows["ChatModel"]
    assert (http["convention"], http["kind"], http["model"]) == ("unknown", "other", "")
    assert http["attributes"] == {"http.request.method": "GET", "http.response.status_code": "200"}
    assert http["project"] == "fallback-proj"
    assert (llm["convention"], llm["kind"], llm["model"]) == ("unknown", "llm", "mistral-large")


def test_conversation_id_is_the_session_unless_session_id_says_otherwise():
    sdk = Sdk()
    for name, attrs in (
        ("same", {sc.SESSION_ID: "s1", sc.GEN_AI_CONVERSATION_ID: "s1"}),
        ("differs", {sc.SESSION_ID: "s1", sc.GEN_AI_CONVERSATION_ID: "c2"}),
        ("only-conv", {sc.GEN_AI_CONVERSATION_ID: "c3"}),
    ):
        with sdk.tracer.start_as_current_span(name) as s:
            s.set_attributes({sc.GEN_AI_OPERATION_NAME: "chat", **attrs})
    rows = {r["name"]: r for r in sdk.rows()}
    assert (rows["same"]["session_id"], rows["same"]["attributes"]) == (
        "s1",
        {sc.GEN_AI_OPERATION_NAME: "chat"},
    )
    assert rows["differs"]["session_id"] == "s1"
    assert rows["differs"]["attributes"][sc.GEN_AI_CONVERSATION_ID] == "c2"
    assert rows["only-conv"]["session_id"] == "c3"


def test_identity_propagates_within_a_trace_only():
    sdk = Sdk()
    with sdk.tracer.start_as_current_span("root") as s:
        s.set_attribute(sc.USER_ID, "alice")
        with sdk.tracer.start_as_current_span("child"):
            pass
    with sdk.tracer.start_as_current_span("other-trace"):
        pass
    rows = {r["name"]: r for r in sdk.rows()}
    assert rows["child"]["user_id"] == "alice"
    assert rows["other-trace"]["user_id"] == ""
    assert sc.USER_ID not in rows["root"]["attributes"]


class _Custom(Normalizer):
    convention = "custom"

    def matches(self, span):
        return span.name == "special"

    def normalize(self, span, attrs, row):
        row["kind"] = "guardrail"
        attrs.pop("verdict", None)


class _Broken(Normalizer):
    convention = "broken"

    def matches(self, span):
        return True

    def normalize(self, span, attrs, row):
        raise RuntimeError("normalizer bug")


def test_registry_order_and_plugins():
    reg = default_registry().with_normalizer(_Custom())
    assert reg.conventions == [
        "custom", "llm-monitor", "langfuse", "openinference", "openlit", "openllmetry", "otel-genai", "unknown",
    ]  # fmt: skip
    sdk = Sdk()
    with sdk.tracer.start_as_current_span("special") as s:
        s.set_attribute("verdict", "pass")
        s.set_attribute(sc.GEN_AI_REQUEST_MODEL, "m")  # would match otel-genai, but custom comes first
    [r] = normalize_spans(otlp.decode_traces_protobuf(sdk.request().SerializeToString()), registry=reg)
    assert (r["convention"], r["kind"], r["attributes"]) == (
        "custom",
        "guardrail",
        {sc.GEN_AI_REQUEST_MODEL: "m"},
    )


def test_a_raising_normalizer_fails_tests_but_falls_back_in_production(monkeypatch):
    sdk = Sdk()
    with sdk.tracer.start_as_current_span("x") as s:
        s.set_attribute("llm.model_name", "m")
    spans = otlp.decode_traces_protobuf(sdk.request().SerializeToString())
    reg = NormalizerRegistry([_Broken()])
    with pytest.raises(RuntimeError, match="normalizer bug"):  # LLM_MONITOR_RAISE_INTERNAL=1 under test
        normalize_spans(spans, registry=reg)
    monkeypatch.delenv("LLM_MONITOR_RAISE_INTERNAL")
    [r] = normalize_spans(spans, registry=reg)
    assert (r["convention"], r["kind"], r["model"]) == ("unknown", "llm", "m")


def test_spans_without_times_are_dated_by_arrival():
    [span] = otlp.decode_traces_json(
        b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"%s","name":"n"}]}]}]}'
        % (b"ab" * 16, b"cd" * 8)
    )
    now = 1_800_000_000_000_000_000
    [r] = normalize_spans([span], now_ns=now)
    assert r["start_time"] == r["end_time"] == ns_to_datetime(now) and r["duration_ms"] == 0.0
    span.start_time_unix_nano, span.end_time_unix_nano = 0, now - 5_000_000
    [r] = normalize_spans([span], now_ns=now)
    assert r["start_time"] == r["end_time"] == ns_to_datetime(now - 5_000_000)
    # an implausible end (1 ns after the epoch) must not date the span in 1970, where the TTL would drop it
    span.start_time_unix_nano, span.end_time_unix_nano = 0, 1
    [r] = normalize_spans([span], now_ns=now)
    assert r["start_time"] == r["end_time"] == ns_to_datetime(now)


def test_timestamps_are_clamped_to_what_the_store_holds():
    assert ns_to_datetime(0) == EPOCH
    assert ns_to_datetime((1 << 64) - 1) == dt.datetime(2105, 1, 1, tzinfo=dt.timezone.utc)
    assert ns_to_datetime(1_700_000_000_123_456_789) == dt.datetime(
        2023, 11, 14, 22, 13, 20, 123456, dt.timezone.utc
    )


def _weird_value(rng: random.Random, depth: int = 0):
    choice = rng.randrange(9 if depth < 2 else 6)
    return [
        lambda: rng.choice(["", "x", "[", "{}", '"q"', "é\x00ü", "9" * 30, "-1", "nan"]),
        lambda: rng.choice([0, -1, 1, 2**63 - 1, -(2**63), 4_000_000_000]),
        lambda: rng.choice([0.0, -0.5, 1e308, float("inf"), float("nan"), 2.5]),
        lambda: rng.choice([True, False]),
        lambda: rng.randbytes(rng.randrange(4)),
        lambda: None,
        lambda: [_weird_value(rng, depth + 1) for _ in range(rng.randrange(3))],
        lambda: {
            rng.choice(["role", "parts", "type", "content", "k"]): _weird_value(rng, depth + 1)
            for _ in range(rng.randrange(3))
        },
        lambda: [{"role": "user", "parts": [_weird_value(rng, depth + 1)]}],
    ][choice]()


def test_weird_attribute_values_normalize_and_store(store):
    """Any AnyValue under any known key yields rows the store accepts (one bad row would block a batch)."""
    from collectors.testing import any_value_json

    rng = random.Random(1234)
    now = time.time_ns()
    keys = [k for k in vars(sc).values() if isinstance(k, str) and "." in k] + ["llm.model_name", "model"]
    spans_json = []
    for i in range(300):
        attrs = {rng.choice(keys): _weird_value(rng) for _ in range(rng.randrange(1, 8))}
        spans_json.append({
            "traceId": f"{rng.getrandbits(128):032x}", "spanId": f"{i + 1:016x}", "name": f"s{i}",
            "startTimeUnixNano": str(rng.choice([0, now, 2**64 - 1])),
            "endTimeUnixNano": str(rng.choice([0, 1, now + 10**9])),
            "status": {"code": rng.choice([0, 1, 2, 7])},
            "attributes": [{"key": k, "value": any_value_json(v)} for k, v in attrs.items()],
        })  # fmt: skip
    doc = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"intValue": "5"}}]},
                              "scopeSpans": [{"scope": {"name": "llm_monitor"}, "spans": spans_json[:150]},
                                             {"scope": {"name": "x"}, "spans": spans_json[150:]}]}]}  # fmt: skip
    rows = normalize_spans(otlp.decode_traces_json(json.dumps(doc).encode()))
    assert len(rows) == 300
    for r in rows:
        assert r["kind"] in sc.KINDS and r["status"] in ("ok", "error", "unset")
        assert all(isinstance(v, str) for v in r["attributes"].values())
        assert r["input_tokens"] >= 0 and r["total_tokens"] >= 0
        assert r["max_tokens"] is None or 0 <= r["max_tokens"] < 2**32
    StoreWriter(store).write("spans", rows)
    # every row survives the insert: none expired by the TTL, none rejected by the column types
    assert store.scalar(f"SELECT count() FROM {store.table('spans')}") == 300
