"""OpenAI instrumentor, driven through the real ``openai`` SDK against the deterministic fake server.

Non-streaming paths, errors, tool calls, embeddings, legacy completions, content capture and
patching. Streams are in ``test_sdk_openai_stream.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from opentelemetry.trace import SpanKind, StatusCode

import monitor
from monitor import _guard, _tracing
from monitor import semconv as sc
from monitor.demo.fake_openai import FakeOpenAIServer, count_message_tokens, count_tokens
from monitor.instrumentation import _openai_extract
from monitor.instrumentation.openai import OpenAIInstrumentor
from monitor.testing import SpanRecorder, recording, reset_global_tracer_provider

REPLY = "Refunds take 5 to 7 business days."
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a support agent."},
    {"role": "user", "content": f"How long do refunds take? [[reply:{REPLY}]]"},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Find an order by id.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def rec() -> Iterator[SpanRecorder]:
    with recording(service_name="test", instrument=["openai"]) as r:
        yield r
    reset_global_tracer_provider()


@pytest.fixture
def client(server: FakeOpenAIServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)


@pytest.fixture
def aclient(server: FakeOpenAIServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)


def chat_attributes(server: FakeOpenAIServer, response_id: str, **extra: Any) -> dict[str, Any]:
    """The exact attributes of a non-streamed ``MESSAGES`` call with temperature/max_tokens/top_p."""
    return {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_PROVIDER_NAME: "openai",
        sc.LLM_MONITOR_SPAN_KIND: "llm",
        sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
        sc.OPENAI_API_TYPE: "chat_completions",
        sc.SERVER_ADDRESS: "127.0.0.1",
        sc.SERVER_PORT: server.port,
        sc.GEN_AI_REQUEST_TEMPERATURE: 0.3,
        sc.GEN_AI_REQUEST_MAX_TOKENS: 50,
        sc.GEN_AI_REQUEST_TOP_P: 0.9,
        sc.GEN_AI_SYSTEM_INSTRUCTIONS: json.dumps(
            [{"type": "text", "content": "You are a support agent."}], separators=(",", ":")
        ),
        sc.GEN_AI_INPUT_MESSAGES: json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": MESSAGES[1]["content"]}]}],
            separators=(",", ":"),
        ),
        sc.GEN_AI_RESPONSE_ID: response_id,
        sc.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
        sc.GEN_AI_USAGE_INPUT_TOKENS: count_message_tokens(MESSAGES),
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: count_tokens(REPLY),
        sc.OPENAI_RESPONSE_SYSTEM_FINGERPRINT: "fp_fake",
        sc.OPENAI_RESPONSE_SERVICE_TIER: "default",
        sc.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",),
        sc.GEN_AI_OUTPUT_MESSAGES: json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": REPLY}], "finish_reason": "stop"}],
            separators=(",", ":"),
        ),
        **extra,
    }


def test_chat_sync_exact_attributes(
    rec: SpanRecorder, client: openai.OpenAI, server: FakeOpenAIServer
) -> None:
    resp = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, temperature=0.3, max_tokens=50, top_p=0.9
    )
    assert resp.choices[0].message.content == REPLY
    (span,) = rec.spans()
    assert span.name == "chat gpt-4o-mini"
    assert span.kind is SpanKind.CLIENT
    assert span.parent is None
    assert span.status.status_code is StatusCode.UNSET
    assert span.instrumentation_scope.name == "llm_monitor.openai"
    assert dict(span.attributes) == chat_attributes(server, resp.id)
    assert span.resource.attributes[sc.SERVICE_NAME] == "test"


def test_chat_async_matches_sync(
    rec: SpanRecorder, aclient: openai.AsyncOpenAI, server: FakeOpenAIServer
) -> None:
    async def call() -> Any:
        return await aclient.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, temperature=0.3, max_completion_tokens=50, top_p=0.9
        )

    resp = asyncio.run(call())
    (span,) = rec.spans()
    assert span.name == "chat gpt-4o-mini"
    assert span.kind is SpanKind.CLIENT
    assert dict(span.attributes) == chat_attributes(server, resp.id)


def test_request_parameters(rec: SpanRecorder, client: openai.OpenAI) -> None:
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "[[reply:ok]] hi"}],
        n=2,
        seed=7,
        stop="END",
        frequency_penalty=0.5,
        presence_penalty=-0.5,
        response_format={"type": "json_object"},
        service_tier="flex",
    )
    attrs = rec.one("chat gpt-4o-mini").attributes
    assert attrs[sc.GEN_AI_REQUEST_CHOICE_COUNT] == 2
    assert attrs[sc.GEN_AI_REQUEST_SEED] == 7
    assert attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] == ("END",)
    assert attrs[sc.GEN_AI_REQUEST_FREQUENCY_PENALTY] == 0.5
    assert attrs[sc.GEN_AI_REQUEST_PRESENCE_PENALTY] == -0.5
    assert attrs[sc.GEN_AI_OUTPUT_TYPE] == "json"
    assert attrs[sc.OPENAI_REQUEST_SERVICE_TIER] == "flex"
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop", "stop")
    assert len(json.loads(attrs[sc.GEN_AI_OUTPUT_MESSAGES])) == 2
    assert sc.GEN_AI_REQUEST_STREAM not in attrs


def test_rate_limit_error_is_recorded_and_reraised(rec: SpanRecorder, client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "[[error:429]]"}]
        )
    assert info.value.status_code == 429
    assert info.value.__cause__ is None
    (span,) = rec.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description.startswith("RateLimitError: ")
    assert span.attributes[sc.ERROR_TYPE] == "RateLimitError"
    assert span.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 429
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"].endswith("RateLimitError")
    assert sc.GEN_AI_RESPONSE_ID not in span.attributes


def test_server_error_500(rec: SpanRecorder, client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="fake-error", messages=[{"role": "user", "content": "hi"}])
    span = rec.one("chat fake-error")
    assert span.attributes[sc.ERROR_TYPE] == "InternalServerError"
    assert span.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 500


def test_exception_object_and_traceback_are_the_sdks(rec: SpanRecorder, client: openai.OpenAI) -> None:
    sentinel = openai.APIConnectionError(request=None)  # type: ignore[arg-type]

    def failing_post(*args: Any, **kwargs: Any) -> Any:
        raise sentinel

    client.chat.completions._post = failing_post  # type: ignore[method-assign]
    with pytest.raises(openai.APIConnectionError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert info.value is sentinel
    assert info.value.__context__ is None
    frames = [tb.tb_frame.f_code.co_name for tb in _walk(info.value.__traceback__)]
    assert frames[-1] == "failing_post"
    assert rec.one("chat gpt-4o-mini").attributes[sc.ERROR_TYPE] == "APIConnectionError"


def _walk(tb: Any) -> Iterator[Any]:
    while tb is not None:
        yield tb
        tb = tb.tb_next


def test_tool_call_round_trip(rec: SpanRecorder, client: openai.OpenAI) -> None:
    question = {"role": "user", "content": "Where is my order ORD-1234?"}
    first = client.chat.completions.create(model="gpt-4o-mini", messages=[question], tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup_order"
    tool_result = '{"status": "shipped"}'
    second = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            question,
            first.choices[0].message,  # the SDK's own model object, as apps pass it back
            {"role": "tool", "tool_call_id": call.id, "content": tool_result},
        ],
        tools=TOOLS,
    )
    s1, s2 = rec.spans()
    assert s1.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("tool_calls",)
    assert json.loads(s1.attributes[sc.GEN_AI_TOOL_DEFINITIONS]) == TOOLS
    assert json.loads(s1.attributes[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": call.id,
                    "name": "lookup_order",
                    "arguments": json.loads(call.function.arguments),
                }
            ],
            "finish_reason": "tool_call",
        }
    ]
    assert json.loads(s2.attributes[sc.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": question["content"]}]},
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": call.id,
                    "name": "lookup_order",
                    "arguments": json.loads(call.function.arguments),
                }
            ],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": call.id, "response": tool_result}]},
    ]
    assert json.loads(s2.attributes[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"] == [
        {"type": "text", "content": second.choices[0].message.content}
    ]


def test_multimodal_content_parts(rec: SpanRecorder, client: openai.OpenAI) -> None:
    content = [
        {"type": "text", "text": "What is this? [[reply:A cat.]]"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": content}],
    )
    attrs = rec.one("chat gpt-4o-mini").attributes
    assert json.loads(attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS]) == [{"type": "text", "content": "Be brief."}]
    assert json.loads(attrs[sc.GEN_AI_INPUT_MESSAGES]) == [
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "What is this? [[reply:A cat.]]"},
                {"type": "uri", "modality": "image", "uri": "https://example.com/cat.png"},
                {"type": "blob", "modality": "image", "mime_type": "image/png"},
            ],
        }
    ]


def test_capture_content_false_drops_texts(client: openai.OpenAI) -> None:
    with recording(instrument=["openai"], capture_content=False) as rec:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS)
        (span,) = rec.spans()
    reset_global_tracer_provider()
    for key in (
        sc.GEN_AI_INPUT_MESSAGES,
        sc.GEN_AI_OUTPUT_MESSAGES,
        sc.GEN_AI_SYSTEM_INSTRUCTIONS,
        sc.GEN_AI_TOOL_DEFINITIONS,
    ):
        assert key not in span.attributes
    assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == count_message_tokens(MESSAGES)
    assert span.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)  # [[reply]] beats tools


def test_azure_deployment_client(rec: SpanRecorder, server: FakeOpenAIServer) -> None:
    azure = openai.AzureOpenAI(
        azure_endpoint=server.url,
        api_key="k",
        api_version="2024-10-21",
        azure_deployment="gpt-4o",
        max_retries=0,
    )
    resp = azure.chat.completions.create(model="my-gpt4o", messages=MESSAGES, temperature=0.3)
    assert server.requests[-1][0] == "/openai/deployments/gpt-4o/chat/completions"
    no_model = azure.chat.completions.create(model=None, messages=MESSAGES)  # type: ignore[arg-type]
    s1, s2 = rec.spans()
    assert s1.name == "chat my-gpt4o"
    assert {k: s1.attributes[k] for k in (sc.GEN_AI_PROVIDER_NAME, sc.SERVER_ADDRESS, sc.SERVER_PORT)} == {
        sc.GEN_AI_PROVIDER_NAME: "azure.ai.openai",
        sc.SERVER_ADDRESS: "127.0.0.1",
        sc.SERVER_PORT: server.port,
    }
    assert s1.attributes[sc.GEN_AI_REQUEST_MODEL] == "my-gpt4o"  # what the app asked for
    assert s1.attributes[sc.GEN_AI_RESPONSE_MODEL] == resp.model == "gpt-4o-2024-08-06"  # what served it
    assert s1.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == count_message_tokens(MESSAGES)
    assert s2.name == "chat gpt-4o"  # no model given: the deployment is the model
    assert s2.attributes[sc.GEN_AI_REQUEST_MODEL] == "gpt-4o"
    assert s2.attributes[sc.GEN_AI_RESPONSE_ID] == no_model.id


def test_azure_endpoint_client_streams_and_responses(rec: SpanRecorder, server: FakeOpenAIServer) -> None:
    azure = openai.AzureOpenAI(
        azure_endpoint=server.url, api_key="k", api_version="2024-10-21", max_retries=0
    )
    chunks = list(azure.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert server.requests[-1][0] == "/openai/deployments/gpt-4o-mini/chat/completions"
    resp = azure.responses.create(model="gpt-4o-mini", input=MESSAGES[1]["content"])
    assert server.requests[-1][0] == "/openai/responses"
    s1, s2 = rec.spans()
    assert (
        s1.attributes[sc.GEN_AI_PROVIDER_NAME] == s2.attributes[sc.GEN_AI_PROVIDER_NAME] == "azure.ai.openai"
    )
    assert s1.attributes[sc.GEN_AI_RESPONSE_ID] == chunks[0].id
    assert s1.attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert s2.attributes[sc.OPENAI_API_TYPE] == "responses"
    assert s2.attributes[sc.GEN_AI_RESPONSE_ID] == resp.id


def test_azure_error_keeps_provider(rec: SpanRecorder, server: FakeOpenAIServer) -> None:
    azure = openai.AzureOpenAI(
        azure_endpoint=server.url,
        api_key="k",
        api_version="2024-10-21",
        azure_deployment="gpt-4o",
        max_retries=0,
    )
    with pytest.raises(openai.BadRequestError):  # Azure's /openai/responses needs the deployment as model
        azure.responses.create(input="hi")
    span = rec.one("chat gpt-4o")
    assert span.attributes[sc.GEN_AI_PROVIDER_NAME] == "azure.ai.openai"
    assert span.attributes[sc.ERROR_TYPE] == "BadRequestError"


def test_embeddings_sync_and_async(
    rec: SpanRecorder, client: openai.OpenAI, aclient: openai.AsyncOpenAI, server: FakeOpenAIServer
) -> None:
    client.embeddings.create(model="text-embedding-3-small", input=["hello world", "refund please now"])

    async def call() -> None:
        await aclient.embeddings.create(
            model="text-embedding-3-small", input="hi", dimensions=8, encoding_format="float"
        )

    asyncio.run(call())
    s1, s2 = rec.spans()
    assert s1.name == s2.name == "embeddings text-embedding-3-small"
    assert dict(s1.attributes) == {
        sc.GEN_AI_OPERATION_NAME: "embeddings",
        sc.GEN_AI_PROVIDER_NAME: "openai",
        sc.LLM_MONITOR_SPAN_KIND: "embedding",
        sc.GEN_AI_REQUEST_MODEL: "text-embedding-3-small",
        sc.SERVER_ADDRESS: "127.0.0.1",
        sc.SERVER_PORT: server.port,
        sc.GEN_AI_RESPONSE_MODEL: "text-embedding-3-small",
        sc.GEN_AI_USAGE_INPUT_TOKENS: count_tokens("hello world") + count_tokens("refund please now"),
        sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT: 16,
    }
    assert s2.attributes[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == 8
    assert s2.attributes[sc.GEN_AI_REQUEST_ENCODING_FORMATS] == ("float",)
    assert s2.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 1


def test_legacy_text_completion(rec: SpanRecorder, client: openai.OpenAI) -> None:
    resp = client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="Say hi [[reply:hi there]]", max_tokens=5
    )
    (span,) = rec.spans()
    assert span.name == "text_completion gpt-3.5-turbo-instruct"
    attrs = span.attributes
    assert attrs[sc.GEN_AI_OPERATION_NAME] == "text_completion"
    assert attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] == 5
    assert attrs[sc.GEN_AI_RESPONSE_ID] == resp.id
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == resp.usage.completion_tokens
    assert json.loads(attrs[sc.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Say hi [[reply:hi there]]"}]}
    ]
    assert json.loads(attrs[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": resp.choices[0].text}],
            "finish_reason": "stop",
        }
    ]


def test_llm_span_nests_under_decorated_spans(rec: SpanRecorder, client: openai.OpenAI) -> None:
    @monitor.tool
    def answer(question: str) -> str:
        msgs = [{"role": "user", "content": question}]
        return client.chat.completions.create(model="gpt-4o-mini", messages=msgs).choices[0].message.content

    @monitor.chain
    def pipeline(question: str) -> str:
        return answer(question)

    assert pipeline("[[reply:done]] go") == "done"
    llm, tool_span, chain_span = rec.spans()
    assert (llm.name, tool_span.name, chain_span.name) == (
        "chat gpt-4o-mini",
        "execute_tool answer",
        "invoke_workflow pipeline",
    )
    assert chain_span.parent is None
    assert tool_span.parent.span_id == chain_span.context.span_id
    assert llm.parent.span_id == tool_span.context.span_id
    assert len({s.context.trace_id for s in (llm, tool_span, chain_span)}) == 1


def test_instrument_and_uninstrument_are_idempotent_and_restore() -> None:
    from openai.resources.chat.completions.completions import AsyncCompletions, Completions
    from openai.resources.embeddings import Embeddings

    originals = (vars(Completions)["create"], vars(AsyncCompletions)["create"], vars(Embeddings)["create"])
    inst = OpenAIInstrumentor()
    inst.instrument()
    inst.instrument()
    patched = vars(Completions)["create"]
    assert patched is not originals[0]
    assert patched.__wrapped__ is originals[0]  # wrapped once, not twice
    assert inst.active
    inst.uninstrument()
    inst.uninstrument()
    assert (
        vars(Completions)["create"],
        vars(AsyncCompletions)["create"],
        vars(Embeddings)["create"],
    ) == originals
    assert not inst.active


def test_patched_methods_look_like_the_originals_and_every_dispatch_records_the_same_span(
    server: FakeOpenAIServer, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three ways our wrapper can sit on the SDK class: the deferred request path in C (``_fastcall``, the
    default for sync methods), a plain Python function (``LLM_MONITOR_NATIVE_SDK=0``, and every async
    method), wrapt's proxy (``PLAIN_METHODS`` off). Each looks like the original and records the same span."""
    import inspect

    import wrapt
    from openai.resources.chat.completions.completions import AsyncCompletions, Completions

    from monitor.instrumentation import base

    sync_original, async_original = vars(Completions)["create"], vars(AsyncCompletions)["create"]
    seen: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for mode, sync_type in (("native", "FastMethod"), ("plain", "function"), ("wrapt", "FunctionWrapper")):
        base.PLAIN_METHODS = mode != "wrapt"
        monkeypatch.setenv("LLM_MONITOR_NATIVE_SDK", "1" if mode == "native" else "0")
        try:
            with recording(service_name="test", instrument=["openai"]) as r:
                patched, apatched = vars(Completions)["create"], vars(AsyncCompletions)["create"]
                assert isinstance(patched, wrapt.FunctionWrapper) is (mode == "wrapt")
                assert type(patched).__name__ == sync_type
                assert type(apatched).__name__ == ("FunctionWrapper" if mode == "wrapt" else "function")
                for p, o in ((patched, sync_original), (apatched, async_original)):
                    assert (p.__name__, p.__qualname__, p.__doc__, p.__module__, p.__wrapped__) == (
                        o.__name__,
                        o.__qualname__,
                        o.__doc__,
                        o.__module__,
                        o,
                    )
                    assert inspect.signature(p) == inspect.signature(o)
                    assert inspect.iscoroutinefunction(p) is inspect.iscoroutinefunction(o)
                # bound like the original: on an instance a method whose signature drops self
                bound = client.chat.completions.create
                assert bound.__self__ is client.chat.completions
                unbound = sync_original.__get__(client.chat.completions)
                assert inspect.signature(bound) == inspect.signature(unbound)
                kw: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
                a = client.chat.completions.create(**kw)
                b = Completions.create(client.chat.completions, **kw)  # called through the class
                c = bound(**kw)  # through the bound-method object
                aclient = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
                d = asyncio.run(aclient.chat.completions.create(**kw))  # a fresh client per event loop
                assert all(x.choices[0].message.content for x in (a, b, c, d))
                spans = r.spans()
                if mode != "wrapt":  # (wrapt calls our wrapper without an instance: a failed span)
                    with pytest.raises(TypeError, match="self"):  # no self: the original's own error
                        Completions.create(**kw)
                    assert len(r.spans()) == len(spans)
        finally:
            base.PLAIN_METHODS = True
        reset_global_tracer_provider()
        assert (vars(Completions)["create"], vars(AsyncCompletions)["create"]) == (
            sync_original,
            async_original,
        )
        drop = {sc.GEN_AI_RESPONSE_ID, sc.SERVER_PORT}
        seen[mode] = [(s.name, {k: v for k, v in s.attributes.items() if k not in drop}) for s in spans]
        assert len(seen[mode]) == 4 and all(name == "chat gpt-4o-mini" for name, _ in seen[mode])
    assert seen["native"] == seen["plain"] == seen["wrapt"]


def test_shutdown_uninstruments(client: openai.OpenAI) -> None:
    from openai.resources.chat.completions.completions import Completions

    original = vars(Completions)["create"]
    with recording(instrument=["openai"]) as rec:
        assert vars(Completions)["create"] is not original
    reset_global_tracer_provider()
    assert vars(Completions)["create"] is original
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert rec.exporter.get_finished_spans() == ()


def test_internal_error_in_extraction_does_not_break_the_call(
    rec: SpanRecorder,
    client: openai.OpenAI,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv(_guard.RAISE_INTERNAL_ENV, raising=False)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug in our extractor")

    monkeypatch.setattr(_openai_extract, "completion_attributes", boom)
    before = _guard.internal_error_count()
    with caplog.at_level(logging.WARNING, logger="monitor"):
        for _ in range(3):
            resp = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            assert resp.choices[0].message.content == REPLY
    spans = rec.spans()
    assert len(spans) == 3  # each span still ends, just without response attributes
    assert all(sc.GEN_AI_RESPONSE_ID not in s.attributes for s in spans)
    assert all(s.status.status_code is StatusCode.UNSET for s in spans)
    assert _guard.internal_error_count() - before == 3
    logged = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert len(logged) == 1  # once per call site


@pytest.mark.parametrize("defer", ["1", "0"])
def test_internal_error_in_the_request_extractor_still_records_the_call(
    client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch, defer: str
) -> None:
    """Our request extractor raising loses the request attributes only: the span keeps its name, model,
    usage (so its cost), response and status, marked with llm_monitor.telemetry.error; logged once."""
    monkeypatch.setenv("LLM_MONITOR_DEFER", defer)  # "1": built on the finisher thread, "0": on the app's
    monkeypatch.delenv(_guard.RAISE_INTERNAL_ENV, raising=False)
    monkeypatch.setattr(_openai_extract, "input_messages", lambda *a: 1 / 0)
    before = _guard.internal_error_count()
    with recording(service_name="test", instrument=["openai"]) as rec:
        assert _tracing._state is not None
        (inst,) = _tracing._state.instrumentors
        assert (inst._fast is None) is (defer == "0")  # type: ignore[attr-defined]
        resp = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert resp.choices[0].message.content == REPLY
        (span,) = rec.spans()
    reset_global_tracer_provider()
    a = dict(span.attributes)
    assert span.name == "chat gpt-4o-mini"
    assert span.status.status_code is StatusCode.UNSET
    assert {k: a[k] for k in list(a)[:5]} == {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_PROVIDER_NAME: "openai",
        sc.LLM_MONITOR_SPAN_KIND: "llm",
        sc.LLM_MONITOR_TELEMETRY_ERROR: "request_attributes",
        sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
    }
    assert sc.GEN_AI_INPUT_MESSAGES not in a and sc.GEN_AI_REQUEST_TEMPERATURE not in a
    assert a[sc.GEN_AI_RESPONSE_ID] == resp.id
    assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == resp.usage.prompt_tokens
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == resp.usage.completion_tokens
    assert json.loads(a[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"] == [{"type": "text", "content": REPLY}]
    assert _guard.internal_error_count() - before == 1


def test_internal_error_raises_under_test_flag(
    rec: SpanRecorder, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_guard.RAISE_INTERNAL_ENV, "1")
    monkeypatch.setattr(_openai_extract, "input_messages", lambda *a: 1 / 0)
    # The span is built after the call, on the finisher thread: the app's call still succeeds, and our
    # bug surfaces from the next flush (which tests always reach through ``rec.spans()``).
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert resp.choices[0].message.content == REPLY
    with pytest.raises(ZeroDivisionError):
        rec.spans()
    assert rec.spans() == []  # reported once; nothing half-built was exported


def test_internal_error_raises_on_the_eager_path_under_test_flag(
    rec: SpanRecorder, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_guard.RAISE_INTERNAL_ENV, "1")
    monkeypatch.setattr(_openai_extract, "input_messages", lambda *a: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        # a raw response is upgraded to its eager span on the app's thread, so the bug raises right here
        client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)


def test_structured_output_parse(rec: SpanRecorder, client: openai.OpenAI) -> None:
    from pydantic import BaseModel

    class Answer(BaseModel):
        answer: str
        confidence: float

    resp = client.chat.completions.parse(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Is it shipped?"}], response_format=Answer
    )
    assert isinstance(resp.choices[0].message.parsed, Answer)
    (span,) = rec.spans()
    assert span.attributes[sc.GEN_AI_OUTPUT_TYPE] == "json"
    assert span.attributes[sc.GEN_AI_RESPONSE_ID] == resp.id
    assert json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"] == [
        {"type": "text", "content": resp.choices[0].message.content}
    ]


def test_parallel_tool_calls_and_results_in_the_input(rec: SpanRecorder, client: openai.OpenAI) -> None:
    calls = [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "lookup_order", "arguments": '{"order_id": "A"}'},
        },
        {"id": "call_b", "type": "function", "function": {"name": "lookup_order", "arguments": "not json"}},
    ]
    messages = [
        {"role": "user", "content": "Where are orders A and B?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_a", "content": "shipped"},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "pending"}]},
    ]
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
    (span,) = rec.spans()
    assert json.loads(span.attributes[sc.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Where are orders A and B?"}]},
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "call_a", "name": "lookup_order", "arguments": {"order_id": "A"}},
                {"type": "tool_call", "id": "call_b", "name": "lookup_order", "arguments": "not json"},
            ],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_a", "response": "shipped"}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_b", "response": "pending"}]},
    ]
    assert (
        span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS]
        == resp.usage.prompt_tokens
        == count_message_tokens(messages)
    )


def test_failed_response_object_maps_to_error() -> None:
    """A ``Response`` with ``status="failed"`` (as background responses end) is a failure, not a success."""
    from openai.types.responses import Response

    from monitor.demo.fake_replies import Markers
    from monitor.demo.fake_responses import FAILURE_MESSAGE, plan_response, response_object
    from monitor.instrumentation._openai_responses import responses_failure, responses_response_attributes

    body = {"model": "gpt-4o", "input": "[[reply:partial answer]]"}
    plan = plan_response(body, Markers.parse(body["input"]), lambda k: f"{k}_1", 0)
    error = {"code": "server_error", "message": FAILURE_MESSAGE}
    failed = Response.construct(**response_object(plan, "failed", error))
    assert responses_failure(failed) == ("server_error", f"server_error: {FAILURE_MESSAGE}")
    assert responses_response_attributes(failed, True) == {
        sc.GEN_AI_RESPONSE_ID: "resp_1",
        sc.GEN_AI_RESPONSE_MODEL: "gpt-4o-2024-08-06",
        sc.OPENAI_RESPONSE_SERVICE_TIER: "default",
        sc.GEN_AI_RESPONSE_FINISH_REASONS: ["failed"],
        sc.GEN_AI_OUTPUT_MESSAGES: '[{"role":"assistant","parts":[],"finish_reason":"error"}]',
    }
    done = Response.construct(**response_object(plan))
    assert responses_failure(done) is None
