"""Counting attributes no mapping used (collectors/unmapped.py): folding, bounds, /metrics, JSON, CLI."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from collectors import unmapped
from collectors.server import CollectorServer
from collectors.unmapped import OTHER, UnmappedCounter, fold_key
from collectors.writer import MemoryWriter
from monitor import cli
from monitor import semconv as sc


def rows(*attr_maps: dict[str, str]) -> list[dict]:
    return [{"attributes": a} for a in attr_maps]


@pytest.mark.parametrize(
    ("key", "folded"),
    [
        ("llm.input_messages.3.message.role", "llm.input_messages.{i}.message.role"),
        ("a.0.b.12.c", "a.{i}.b.{i}.c"),
        ("tags.7", "tags.{i}"),
        ("items[3].sku", "items[{i}].sku"),
        ("gpt4.v2.x", "gpt4.v2.x"),  # only whole numeric segments fold
        ("http.status_code", "http.status_code"),
        ("k" * 300, "k" * 199 + "…"),
    ],
)
def test_fold_key(key: str, folded: str) -> None:
    assert fold_key(key) == folded


def test_counts_spans_per_folded_key() -> None:
    c = UnmappedCounter()
    c.observe(
        rows(
            {"app.items.0.sku": "a", "app.items.1.sku": "b", "app.tenant": "t1"},  # one span, folded once
            {"app.tenant": "t2"},
            {},
        )
    )
    c.observe(rows({"app.items.5.sku": "c"}))
    snap = c.snapshot()
    assert snap == {
        "spans_observed": 4,
        "spans_with_unmapped": 3,
        "keys": [
            {"key": "app.items.{i}.sku", "spans": 2, "share": 0.5},
            {"key": "app.tenant", "spans": 2, "share": 0.5},
        ],
        "other_spans": 0,
        "tracked_keys": 2,
        "max_keys": unmapped.MAX_KEYS,
    }


def test_cardinality_is_bounded_with_an_other_bucket() -> None:
    c = UnmappedCounter(max_keys=3)
    c.observe(rows({"k1": "", "k2": ""}, {"k1": "", "k3": ""}))
    c.observe(rows({"k4": "", "k1": ""}, {"k5": ""}, {"k4": ""}))
    snap = c.snapshot()
    assert [(k["key"], k["spans"]) for k in snap["keys"]] == [("k1", 3), ("k2", 1), ("k3", 1)]
    assert snap["other_spans"] == 3  # k4 twice, k5 once: counted, not listed
    lines = c.metric_lines("p_")
    assert lines[2:6] == [
        'p_unmapped_attribute_spans_total{key="k1"} 3',
        'p_unmapped_attribute_spans_total{key="k2"} 1',
        'p_unmapped_attribute_spans_total{key="k3"} 1',
        f'p_unmapped_attribute_spans_total{{key="{OTHER}"}} 3',
    ]
    assert "p_spans_with_unmapped_attributes_total 5" in lines
    assert "p_spans_observed_for_unmapped_total 5" in lines
    assert c.snapshot(limit=1)["other_spans"] == 5  # the JSON view folds unlisted keys into other too


def test_label_values_are_escaped() -> None:
    c = UnmappedCounter()
    c.observe(rows({'we"ird\\key': "x"}))
    assert 'x_unmapped_attribute_spans_total{key="we\\"ird\\\\key"} 1' in c.metric_lines("x_")


# --- through a live collector ---------------------------------------------------------------------


def otlp_body() -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("some.app")
    for i in range(3):
        with tracer.start_as_current_span(f"chat {i}") as s:
            s.set_attributes(
                {
                    sc.GEN_AI_OPERATION_NAME: "chat",
                    sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
                    sc.GEN_AI_USAGE_INPUT_TOKENS: 100,
                    sc.GEN_AI_USAGE_OUTPUT_TOKENS: 10,
                    "app.tenant": "acme",
                    f"app.docs.{i}.id": f"d{i}",
                    f"app.docs.{i + 1}.id": f"d{i + 1}",
                }
            )
            if i == 0:
                s.set_attribute("app.experiment", "b")
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


@pytest.fixture
def live(settings) -> Iterator[CollectorServer]:
    with CollectorServer(settings, writer=MemoryWriter()) as srv:
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        c.request("POST", "/v1/traces", body=otlp_body(), headers={"Content-Type": "application/x-protobuf"})
        assert c.getresponse().status == 200
        c.close()
        yield srv


def get(srv: CollectorServer, path: str) -> tuple[int, str, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    out = r.status, r.getheader("Content-Type", ""), r.read()
    c.close()
    return out


def test_metrics_and_json_endpoint(live: CollectorServer) -> None:
    status, _, body = get(live, "/v1/unmapped")
    assert status == 200
    data = json.loads(body)
    assert (data["spans_observed"], data["spans_with_unmapped"]) == (3, 3)
    keys = {k["key"]: k["spans"] for k in data["keys"]}
    # mapped keys (model, tokens, operation) are gone; ours are counted per span, indexes folded
    assert keys["app.tenant"] == 3 and keys["app.docs.{i}.id"] == 3 and keys["app.experiment"] == 1
    assert not {sc.GEN_AI_REQUEST_MODEL, sc.GEN_AI_USAGE_INPUT_TOKENS, sc.GEN_AI_USAGE_OUTPUT_TOKENS} & set(
        keys
    )
    text = get(live, "/metrics")[2].decode()
    assert 'llm_monitor_collector_unmapped_attribute_spans_total{key="app.docs.{i}.id"} 3' in text
    assert 'llm_monitor_collector_unmapped_attribute_spans_total{key="__other__"} 0' in text
    assert "# TYPE llm_monitor_collector_unmapped_attribute_spans_total counter" in text
    assert 'llm_monitor_collector_priced_spans_total{source="price_table"} 3' in text


def test_cli_attributes_reads_a_running_collector(
    live: CollectorServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray ./llm-monitor.yaml
    assert cli.main(["attributes", "--endpoint", live.url, "--format", "json"]) == 0
    listed = {r["key"]: r["spans"] for r in json.loads(capsys.readouterr().out)}
    assert listed["app.tenant"] == 3 and listed["app.experiment"] == 1
    assert cli.main(["attributes", "--endpoint", live.url, "--limit", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["key", "spans", "share"]
    assert any(line.split()[:3] == ["app.docs.{i}.id", "3", "100.0%"] for line in out)
    assert out[-1].startswith("3 of 3 spans carried unmapped attributes;")
    # a collector that is not there: one line, exit 1
    assert cli.main(["attributes", "--endpoint", "http://127.0.0.1:9"]) == 1
    assert "(is `llm-monitor up` running?)" in capsys.readouterr().err
