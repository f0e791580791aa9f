"""Cost end to end: the real openai SDK (instrumented by ``monitor``) → OTLP/HTTP → collector → chDB.

The fake OpenAI server answers a request for ``gpt-4o-mini`` with the dated snapshot
``gpt-4o-mini-2024-07-18`` as the response model, as the real API does; the collector must price it from
the shipped table's ``gpt-4o-mini`` entry ($0.15 input / $0.60 output per 1M tokens).
"""

from __future__ import annotations

import openai

import monitor
from collectors.server import CollectorServer
from monitor.demo.fake_openai import FakeOpenAIServer


def test_sdk_span_is_priced_from_the_response_model(settings, store) -> None:
    collector = CollectorServer(settings, store)
    collector.start()
    try:
        with FakeOpenAIServer() as fake:
            monitor.init(service_name="cost-e2e", endpoint=collector.url)
            try:
                client = openai.OpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0)
                r = client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": "How long do refunds take? [[reply:Five days.]]"}],
                )
                embedded = client.embeddings.create(model="text-embedding-3-small", input="refund policy")
                assert monitor.flush(10)
            finally:
                monitor.shutdown()
    finally:
        assert collector.stop(), "the collector did not drain"
    assert r.model == "gpt-4o-mini-2024-07-18"
    rows = store.rows(
        "SELECT kind, request_model, response_model, input_tokens, output_tokens, cost_usd, cost_source "
        "FROM spans FINAL ORDER BY kind"
    )
    chat_in, chat_out = r.usage.prompt_tokens, r.usage.completion_tokens
    emb_in = embedded.usage.prompt_tokens
    # the fake counts tokens deterministically: 10 in / 2 out → 10·0.15 + 2·0.60 = 2.7 µ$; 2·0.02 = 0.04 µ$
    assert (chat_in, chat_out, emb_in) == (10, 2, 2)
    assert (rows[1]["cost_usd"], rows[0]["cost_usd"]) == (2.7e-06, 4e-08)
    assert rows == [
        {
            "kind": "embedding",
            "request_model": "text-embedding-3-small",
            "response_model": "text-embedding-3-small",
            "input_tokens": emb_in,
            "output_tokens": 0,
            "cost_usd": round(emb_in * 0.02 / 1e6, 12),
            "cost_source": "price_table",
        },
        {
            "kind": "llm",
            "request_model": "gpt-4o-mini",
            "response_model": "gpt-4o-mini-2024-07-18",
            "input_tokens": chat_in,
            "output_tokens": chat_out,
            "cost_usd": round((chat_in * 0.15 + chat_out * 0.60) / 1e6, 12),
            "cost_source": "price_table",
        },
    ]
