"""StoreWriter's two insert paths (JSON compact rows via orjson, native columns) store identical rows."""

from __future__ import annotations

import datetime as dt

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import collectors.writer as writer_mod
from collectors import otlp
from collectors.normalize import normalize_spans
from collectors.testing import attributes_pb
from collectors.writer import StoreWriter
from monitor.store.schema import SPAN_DEFAULTS


def _rows() -> list[dict]:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(
        attributes_pb({"service.name": "shop", "deployment.environment.name": "prod"})
    )
    ss = rs.scope_spans.add()
    start = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).timestamp()
    for i in range(20):
        s = ss.spans.add()
        s.trace_id = bytes([1]) * 15 + bytes([i // 5 + 1])
        s.span_id = (i + 1).to_bytes(8, "big")
        s.name = f"chat gpt-4o {i}"
        s.start_time_unix_nano = int(start * 1e9) + i * 1_000_123
        s.end_time_unix_nano = s.start_time_unix_nano + 42_000_789
        s.status.code = 2 if i == 3 else 1
        s.attributes.extend(
            attributes_pb(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.request.temperature": 0.3,
                    "gen_ai.usage.input_tokens": 100 + i,
                    "gen_ai.usage.output_tokens": 7 * i,
                    "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text","content":"héllo \\"q\\" 🚀\\n"}]}]',
                    "gen_ai.response.finish_reasons": ["stop"],
                    "custom.key": f"v{i}",
                    "user.id": "u-1" if i % 5 == 0 else "",
                }
            )
        )
    rows = normalize_spans(otlp.decode_traces_protobuf(req.SerializeToString()))
    # rows missing columns get the schema defaults on both paths; unknown keys are ignored on both
    rows.append({"trace_id": "t", "span_id": "partial", "start_time": rows[0]["start_time"], "extra": 1})
    return rows


def _stored(store) -> list[tuple]:
    cols = ", ".join(f"`{c}`" for c in SPAN_DEFAULTS)
    return store.query(f"SELECT {cols} FROM spans ORDER BY span_id").result_rows


def test_json_and_native_paths_store_the_same_rows(store, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _rows()
    StoreWriter(store).write("spans", rows)
    via_json = _stored(store)
    store.command("TRUNCATE TABLE spans")
    monkeypatch.setattr(writer_mod, "_compact_rows", lambda *a: None)
    StoreWriter(store).write("spans", rows)
    via_native = _stored(store)
    assert len(via_json) == len(rows)
    assert via_json == via_native
    partial = dict(zip(SPAN_DEFAULTS, next(r for r in via_json if r[4] == "partial"), strict=True))
    assert partial["kind"] == SPAN_DEFAULTS["kind"] and partial["project"] == SPAN_DEFAULTS["project"]


def test_unencodable_row_falls_back_to_native() -> None:
    rows = _rows()
    rows[0] = dict(rows[0], output_text="lone \ud800 surrogate")  # orjson refuses it
    assert (
        writer_mod._compact_rows(rows, SPAN_DEFAULTS, "ingested_at", dt.datetime.now(dt.timezone.utc)) is None
    )
