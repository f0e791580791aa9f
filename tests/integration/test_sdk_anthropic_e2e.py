"""Anthropic end to end: the real ``anthropic`` SDK (instrumented by ``monitor.init``) → OTLP/HTTP →
collector → chDB, through the collector's own normalizers and price table.

The fake answers ``claude-haiku-4-5`` with the snapshot ``claude-haiku-4-5-20251001``; the collector must
price it from the shipped ``claude-haiku-4-5`` entry ($1 input, $5 output, $0.10 cache read, $1.25 cache
write per 1M tokens), with the cached prefix billed at its own rates: the SDK reports
``gen_ai.usage.input_tokens`` including cached tokens and the cache counts beside it.
"""

from __future__ import annotations

import json

import anthropic

import monitor
from collectors.server import CollectorServer
from monitor.demo.fake_anthropic import FakeAnthropicServer, count_input_tokens, count_tokens

SYSTEM = [
    {
        "type": "text",
        "text": "You answer questions about refunds politely.",
        "cache_control": {"type": "ephemeral"},
    }
]
QUESTION = "How long do refunds take? [[reply:Five to seven business days.]]"


def test_anthropic_spans_are_normalized_and_priced(settings, store) -> None:
    collector = CollectorServer(settings, store)
    collector.start()
    try:
        with FakeAnthropicServer() as fake:
            monitor.init(service_name="anthropic-e2e", endpoint=collector.url)
            try:
                client = anthropic.Anthropic(base_url=fake.base_url, api_key="sk-ant-test", max_retries=0)
                msgs = [{"role": "user", "content": QUESTION}]
                with monitor.context(user_id="u-9"):
                    first = client.messages.create(
                        model="claude-haiku-4-5", max_tokens=50, system=SYSTEM, messages=msgs
                    )
                    with client.messages.stream(
                        model="claude-haiku-4-5", max_tokens=50, system=SYSTEM, messages=msgs
                    ) as stream:
                        second = stream.get_final_message()
                assert monitor.flush(10)
            finally:
                monitor.shutdown()
    finally:
        assert collector.stop(), "the collector did not drain"

    rows = store.rows(
        "SELECT name, kind, provider, request_model, response_model, input_tokens, output_tokens, cost_usd, "
        "cost_source, finish_reason, input_text, output_text, input_messages, user_id, status, convention, "
        "ttft_ms IS NOT NULL AS has_ttft FROM spans FINAL ORDER BY start_time"
    )
    prefix = count_tokens(SYSTEM[0]["text"]) + 3
    total = count_input_tokens({"system": SYSTEM, "messages": msgs})
    out = count_tokens("Five to seven business days.")
    # what the fake billed: the first call writes the cached prefix, the second reads it
    assert (first.usage.cache_creation_input_tokens, second.usage.cache_read_input_tokens) == (prefix, prefix)
    assert (first.usage.input_tokens, second.usage.input_tokens) == (total - prefix, total - prefix)
    write_cost = round(((total - prefix) * 1.0 + prefix * 1.25 + out * 5.0) / 1e6, 12)
    read_cost = round(((total - prefix) * 1.0 + prefix * 0.10 + out * 5.0) / 1e6, 12)
    common = {
        "name": "chat claude-haiku-4-5",  # one span per call: the SDK's own call span is not exported twice
        "kind": "llm",
        "provider": "anthropic",
        "request_model": "claude-haiku-4-5",
        "response_model": "claude-haiku-4-5-20251001",
        "input_tokens": total,
        "output_tokens": out,
        "cost_source": "price_table",
        "finish_reason": "end_turn",
        "output_text": "Five to seven business days.",
        "user_id": "u-9",
        "status": "unset",
    }
    assert len(rows) == 2
    for row, cost, ttft in ((rows[0], write_cost, 0), (rows[1], read_cost, 1)):
        assert {k: row[k] for k in common} == common
        assert row["cost_usd"] == cost
        assert row["has_ttft"] == ttft
        assert SYSTEM[0]["text"] in row["input_text"] and QUESTION in row["input_text"]
        assert [m["role"] for m in json.loads(row["input_messages"])] == ["system", "user"]
