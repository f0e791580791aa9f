"""``POST /v1/feedback`` through real HTTP on 127.0.0.1 into the test's chDB ``feedback`` table."""

from __future__ import annotations

import datetime as dt
import gzip
import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from collectors import feedback as fb
from collectors.server import CollectorServer
from collectors.writer import MemoryWriter

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"
COLUMNS = "project, trace_id, span_id, response_id, kind, value, comment, user_id, source, feedback_id"


@pytest.fixture
def server(settings, store) -> Iterator[CollectorServer]:
    srv = CollectorServer(settings, store)
    srv.start()
    yield srv
    srv.stop()


def call(
    srv: CollectorServer,
    body: Any = None,
    *,
    raw: bytes | None = None,
    method: str = "POST",
    path: str = fb.FEEDBACK_PATH,
    headers: dict[str, str] | None = None,
    content_type: str | None = "application/json",
) -> tuple[int, dict[str, str], Any]:
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    h = {"Origin": "https://app.example.com", **(headers or {})}
    if content_type:
        h["Content-Type"] = content_type
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    payload = r.read()
    c.close()
    parsed = (
        json.loads(payload)
        if payload and r.getheader("Content-Type", "").startswith("application/json")
        else payload
    )
    return r.status, {k.lower(): v for k, v in r.getheaders()}, parsed


def stored(srv: CollectorServer, store) -> list[dict]:
    assert srv.stop(), "the collector did not drain"
    return store.rows(f"SELECT {COLUMNS} FROM feedback ORDER BY feedback_id")


def test_one_object_by_trace_id(server, store) -> None:
    status, headers, body = call(
        server,
        {
            "trace_id": TRACE.upper(),  # ids are case-insensitive hex, stored lower-case
            "kind": "thumbs",
            "value": "up",
            "comment": "spot on",
            "user_id": "u-42",
            "source": "web",
            "feedback_id": "fb-1",
        },
    )
    assert (status, body) == (200, {"accepted": 1})
    assert headers["access-control-allow-origin"] == "*"
    assert stored(server, store) == [
        {
            "project": "default",
            "trace_id": TRACE,
            "span_id": "",
            "response_id": "",
            "kind": "thumbs",
            "value": 1.0,
            "comment": "spot on",
            "user_id": "u-42",
            "source": "web",
            "feedback_id": "fb-1",
        }
    ]


def test_a_list_by_trace_span_and_response_id(server, store) -> None:
    items = [
        {"trace_id": TRACE, "kind": "rating", "value": 4.5, "feedback_id": "a"},
        {"span_id": SPAN, "kind": "thumbs", "value": False, "feedback_id": "b", "project": "shop"},
        {"response_id": "chatcmpl-123", "kind": "accept", "feedback_id": "c"},
        {"response_id": "chatcmpl-123", "kind": "Regenerate", "value": 1, "feedback_id": "d"},
        {"trace_id": TRACE, "kind": "comment", "comment": "too long", "feedback_id": "e"},
        {
            "trace_id": TRACE,
            "span_id": SPAN,
            "kind": "helpfulness.llm_judge",
            "value": 0.25,
            "feedback_id": "f",
        },
        {"response_id": "chatcmpl-123", "kind": "edit", "value": 0.3, "feedback_id": "g", "user_id": "u-1"},
        {"trace_id": TRACE, "kind": "thumbs", "value": "down", "feedback_id": "h"},
    ]
    status, _, body = call(server, items)
    assert (status, body) == (200, {"accepted": 8})
    got = [
        (r["feedback_id"], r["project"], r["trace_id"], r["span_id"], r["response_id"], r["kind"], r["value"])
        for r in stored(server, store)
    ]
    assert got == [
        ("a", "default", TRACE, "", "", "rating", 4.5),
        ("b", "shop", "", SPAN, "", "thumbs", 0.0),
        ("c", "default", "", "", "chatcmpl-123", "accept", 1.0),
        ("d", "default", "", "", "chatcmpl-123", "regenerate", 1.0),
        ("e", "default", TRACE, "", "", "comment", 0.0),
        ("f", "default", TRACE, SPAN, "", "helpfulness.llm_judge", 0.25),
        ("g", "default", "", "", "chatcmpl-123", "edit", 0.3),
        ("h", "default", TRACE, "", "", "thumbs", 0.0),
    ]


def test_generated_ids_defaults_and_gzip(server, store) -> None:
    raw = gzip.compress(json.dumps({"trace_id": TRACE, "kind": "copy"}).encode())
    status, _, body = call(server, raw=raw, headers={"Content-Encoding": "gzip"})
    assert (status, body) == (200, {"accepted": 1})
    (row,) = stored(server, store)
    assert (row["kind"], row["value"], row["source"], row["comment"]) == ("copy", 1.0, "api", "")
    assert len(row["feedback_id"]) == 32 and int(row["feedback_id"], 16) >= 0


BAD_ITEMS = [
    ({"kind": "thumbs", "value": 1}, "trace_id", "one of trace_id, span_id or response_id is required"),
    ({"trace_id": "abc", "kind": "thumbs", "value": 1}, "trace_id", "must be 32 hexadecimal characters"),
    ({"trace_id": "0" * 32, "kind": "thumbs", "value": 1}, "trace_id", "all zeros"),
    (
        {"span_id": "xyz" * 5 + "q", "kind": "thumbs", "value": 1},
        "span_id",
        "must be 16 hexadecimal characters",
    ),
    ({"trace_id": TRACE, "value": 1}, "kind", "required"),
    ({"trace_id": TRACE, "kind": "Bad Kind!", "value": 1}, "kind", "a custom kind is 1-64 of"),
    ({"trace_id": TRACE, "kind": "thumbs"}, "value", "required for thumbs"),
    ({"trace_id": TRACE, "kind": "thumbs", "value": 5}, "value", "thumbs must be true/false"),
    ({"trace_id": TRACE, "kind": "thumbs", "value": "meh"}, "value", "thumbs must be true/false"),
    ({"trace_id": TRACE, "kind": "rating", "value": 11}, "value", "rating must be between 0 and 10, got 11"),
    ({"trace_id": TRACE, "kind": "rating", "value": "4"}, "value", "must be a number, got str"),
    ({"trace_id": TRACE, "kind": "accept", "value": 0.5}, "value", "accept value must be 0 or 1"),
    ({"trace_id": TRACE, "kind": "edit", "value": 2}, "value", "share of the output changed, 0 to 1"),
    ({"trace_id": TRACE, "kind": "comment"}, "comment", "required (non-empty) for kind comment"),
    ({"trace_id": TRACE, "kind": "my_score"}, "value", "required for the custom kind 'my_score'"),
    ({"trace_id": TRACE, "kind": "copy", "comment": "x" * 9000}, "comment", "longer than 8192 characters"),
    ({"trace_id": TRACE, "kind": "copy", "traceId": TRACE}, "traceId", "unknown field"),
    ({"trace_id": TRACE, "kind": "copy", "created_at": "yesterday"}, "created_at", "not an ISO 8601 time"),
    ({"trace_id": TRACE, "kind": "copy", "created_at": "1999-12-31T00:00:00Z"}, "created_at", "before 2000"),
    ({"trace_id": TRACE, "kind": "copy", "source": "my source"}, "source", "use 1-128 of"),
    ({"trace_id": TRACE, "kind": "copy", "user_id": 42}, "user_id", "must be a string, got int"),
    ("thumbs up", "", "each feedback must be a JSON object, got str"),
]


@pytest.mark.parametrize(("item", "field", "reason"), BAD_ITEMS)
def test_each_validation_error_names_index_field_and_reason(server, item, field, reason) -> None:
    status, headers, body = call(server, [{"trace_id": TRACE, "kind": "copy"}, item])
    assert status == 400
    assert headers["access-control-allow-origin"] == "*"  # so browser code can read why
    assert body["message"] == "1 of 2 feedback items are invalid; nothing was stored"
    assert len(body["errors"]) == 1
    err = body["errors"][0]
    assert (err["index"], err["field"]) == (1, field)
    assert reason in err["reason"]


def test_all_or_nothing_and_every_problem_listed(server, store) -> None:
    status, _, body = call(
        server,
        [
            {"trace_id": TRACE, "kind": "copy", "feedback_id": "ok"},
            {"trace_id": "nope", "kind": "copy"},
            {"trace_id": TRACE, "kind": "rating", "value": -1},
        ],
    )
    assert status == 400
    assert body == {
        "code": 3,
        "message": "2 of 3 feedback items are invalid; nothing was stored",
        "errors": [
            {"index": 1, "field": "trace_id", "reason": "must be 32 hexadecimal characters, got 'nope'"},
            {"index": 2, "field": "value", "reason": "rating must be between 0 and 10, got -1"},
        ],
    }
    assert stored(server, store) == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"\xff\xfe", "body is not UTF-8 JSON"),
        (b"42", "expected a JSON object or a list of objects"),
        (
            json.dumps([{"trace_id": TRACE, "kind": "copy"}] * 1001).encode(),
            "1001 feedback items in one request",
        ),
    ],
)
def test_malformed_bodies_are_400(server, raw: bytes, message: str) -> None:
    status, _, body = call(server, raw=raw)
    assert status == 400 and message in body["message"] and body["errors"] == []


def test_created_at_is_validated_and_passed_to_the_writer(settings) -> None:
    mem = MemoryWriter()
    with CollectorServer(settings, writer=mem) as srv:
        items = [
            {"trace_id": TRACE, "kind": "copy", "created_at": "2025-03-04T05:06:07.5+02:00"},
            {"trace_id": TRACE, "kind": "copy", "created_at": 1_700_000_000},
            {"trace_id": TRACE, "kind": "copy", "created_at": "2025-03-04T05:06:07"},  # naive = UTC
        ]
        assert call(srv, items)[0] == 200
    utc = dt.timezone.utc
    assert [r["created_at"] for r in mem.rows("feedback")] == [
        dt.datetime(2025, 3, 4, 3, 6, 7, 500000, tzinfo=utc),
        dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=utc),
        dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=utc),
    ]


def test_cors_preflight(server) -> None:
    status, headers, body = call(
        server,
        method="OPTIONS",
        content_type=None,
        headers={"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"},
    )
    assert (status, body) == (204, b"")
    assert headers["access-control-allow-origin"] == "*"
    assert headers["access-control-allow-methods"] == "POST, OPTIONS"
    assert (
        headers["access-control-allow-headers"] == "content-type, content-encoding, authorization, x-api-key"
    )
    assert headers["access-control-max-age"] == "86400"
    # other endpoints do not answer preflights
    assert call(server, method="OPTIONS", path="/v1/traces", content_type=None)[0] == 405


def test_cors_origin_list_from_the_settings(settings, store) -> None:
    allowed = settings.with_overrides(cors_origins="https://app.example.com, https://admin.example.com")
    with CollectorServer(allowed, store) as server:
        _check_origin_list(server)


def _check_origin_list(server: CollectorServer) -> None:
    status, headers, _ = call(server, method="OPTIONS", content_type=None)
    assert status == 204
    assert (headers["access-control-allow-origin"], headers["vary"]) == ("https://app.example.com", "Origin")
    _, headers, _ = call(
        server, method="OPTIONS", content_type=None, headers={"Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in headers


def test_api_key_is_required_when_configured(settings, store) -> None:
    keyed = settings.with_overrides(api_keys="k-123")
    with CollectorServer(keyed, store) as srv:
        item = {"trace_id": TRACE, "kind": "copy"}
        status, headers, body = call(srv, item)
        assert status == 401 and headers["www-authenticate"] == "Bearer"
        assert headers["access-control-allow-origin"] == "*"
        assert "missing or invalid API key" in body["message"]
        assert call(srv, item, headers={"x-api-key": "wrong"})[0] == 401
        assert call(srv, item, headers={"x-api-key": "k-123"})[:3:2] == (200, {"accepted": 1})
        assert call(srv, item, headers={"Authorization": "Bearer k-123"})[0] == 200
        # the preflight never carries credentials, so it is not refused
        assert call(srv, method="OPTIONS", content_type=None)[0] == 204


def test_over_the_body_limit_is_413(server) -> None:
    big = json.dumps({"trace_id": TRACE, "kind": "comment", "comment": "x" * fb.MAX_BODY_BYTES}).encode()
    status, headers, body = call(server, raw=big)
    assert status == 413 and "exceeds the limit of 1048576 bytes" in body["message"]
    assert headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-protobuf", None])
def test_non_json_is_415(server, ctype) -> None:
    status, _, body = call(server, raw=b'{"trace_id": "x"}', content_type=ctype)
    assert status == 415 and "send application/json" in body["message"]


def test_full_queue_is_503_with_retry_after(server, monkeypatch) -> None:
    monkeypatch.setattr(server.batch, "offer", lambda rows, table="spans": False)
    status, headers, body = call(server, {"trace_id": TRACE, "kind": "copy"})
    assert status == 503 and headers["retry-after"] in ("1", "5")
    assert headers["access-control-allow-origin"] == "*"
    assert "queue is full (1 feedback items refused)" in body["message"]


def test_other_methods_are_405(server) -> None:
    status, headers, _ = call(server, method="GET", content_type=None)
    assert status == 405 and headers["allow"] == "POST"
