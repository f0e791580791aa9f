"""The dashboard's pure helpers: message parsing, the span tree, the time window, number formats."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from dashboards import data
from dashboards.data import Filters, Message, Part, parse_messages, span_tree

UTC = dt.timezone.utc


# --- messages ------------------------------------------------------------------------------------------


def test_otel_parts_format() -> None:
    raw = json.dumps(
        [
            {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
            {
                "role": "user",
                "parts": [{"type": "text", "content": "Hi"}, {"type": "text", "content": "there"}],
            },
        ]
    )
    assert parse_messages(raw) == [
        Message("system", (Part("text", "Be brief."),)),
        Message("user", (Part("text", "Hi"), Part("text", "there"))),
    ]


def test_normalised_form_prefers_parts_over_duplicated_content() -> None:
    raw = json.dumps(
        [{"role": "assistant", "content": "Done.", "parts": [{"type": "text", "content": "Done."}]}]
    )
    assert parse_messages(raw) == [Message("assistant", (Part("text", "Done."),))]


def test_normalised_form_with_empty_parts_uses_content() -> None:
    raw = json.dumps([{"role": "user", "content": "Only content", "parts": []}])
    assert parse_messages(raw) == [Message("user", (Part("text", "Only content"),))]


def test_tool_calls_results_and_reasoning() -> None:
    raw = json.dumps(
        [
            {
                "role": "assistant",
                "parts": [
                    {"type": "reasoning", "content": "Need the weather."},
                    {"type": "tool_call", "id": "c1", "name": "get_weather", "arguments": {"city": "Oslo"}},
                ],
            },
            {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "rainy"}]},
        ]
    )
    msgs = parse_messages(raw)
    assert msgs is not None
    assert msgs[0].parts[0] == Part("reasoning", "Need the weather.")
    assert msgs[0].parts[1].kind == "tool_call" and msgs[0].parts[1].name == "get_weather"
    assert json.loads(msgs[0].parts[1].text) == {"city": "Oslo"}
    assert msgs[1] == Message("tool", (Part("tool_result", "rainy"),))


def test_openai_chat_shape() -> None:
    raw = json.dumps(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe"},
                    {"type": "image_url", "image_url": {"url": "https://x/cat.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}}
                ],
            },
        ]
    )
    msgs = parse_messages(raw)
    assert msgs is not None
    assert msgs[0].parts == (Part("text", "Describe"), Part("other", "[image_url: https://x/cat.png]"))
    assert msgs[1].parts == (Part("tool_call", '{"q": 1}', "lookup"),)


@pytest.mark.parametrize("raw", [None, "", "   ", "not json", "42", "[]", "{broken", '{"unrelated": 1}'])
def test_no_messages(raw: Any) -> None:
    assert parse_messages(raw) is None


def test_single_message_object_and_plain_strings() -> None:
    assert parse_messages('{"role": "user", "content": "hey"}') == [Message("user", (Part("text", "hey"),))]
    assert parse_messages('["just text"]') == [Message("user", (Part("text", "just text"),))]
    assert parse_messages([{"role": "user", "content": "already parsed"}]) is not None


# --- span tree -----------------------------------------------------------------------------------------


def s(span_id: str, parent: str = "") -> dict[str, str]:
    return {"span_id": span_id, "parent_span_id": parent}


def shape(tree: list[tuple[int, Any]]) -> list[tuple[int, str]]:
    return [(d, x["span_id"]) for d, x in tree]


def test_span_tree_depth_first_in_start_order() -> None:
    spans = [s("root"), s("a", "root"), s("a1", "a"), s("b", "root"), s("a2", "a")]
    assert shape(span_tree(spans)) == [(0, "root"), (1, "a"), (2, "a1"), (2, "a2"), (1, "b")]


def test_span_tree_orphans_become_roots() -> None:
    spans = [s("x", "missing-parent"), s("y", "x"), s("z")]
    assert shape(span_tree(spans)) == [(0, "x"), (1, "y"), (0, "z")]


def test_span_tree_survives_cycles_and_self_parents() -> None:
    spans = [s("a", "b"), s("b", "a"), s("c", "c")]
    out = shape(span_tree(spans))
    assert sorted(x for _, x in out) == ["a", "b", "c"]
    assert (0, "c") in out


# --- filters and formats -------------------------------------------------------------------------------


def test_preset_window_ends_now() -> None:
    now = dt.datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    assert Filters(range_label="Last 15 minutes").window(now) == (now - dt.timedelta(minutes=15), now)
    assert Filters(range_label="Last 7 days").window(now) == (now - dt.timedelta(days=7), now)


def test_custom_window_covers_whole_utc_days() -> None:
    f = Filters(range_label="Custom", custom=(dt.date(2025, 6, 1), dt.date(2025, 6, 2)))
    assert f.window() == (dt.datetime(2025, 6, 1, tzinfo=UTC), dt.datetime(2025, 6, 3, tzinfo=UTC))


def test_query_args_turn_empty_selections_into_no_filter() -> None:
    now = dt.datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    args = Filters(project="p", models=("gpt-4o",)).query_args(now)
    assert args == {
        "start": now - dt.timedelta(hours=1),
        "end": now,
        "project": "p",
        "service": None,
        "model": ["gpt-4o"],
    }


@pytest.mark.parametrize(
    ("fn", "value", "text"),
    [
        (data.fmt_ms, 850.4, "850 ms"),
        (data.fmt_ms, 1240.0, "1.24 s"),
        (data.fmt_ms, None, "—"),
        (data.fmt_ms, float("nan"), "—"),
        (data.fmt_pct, 0.25, "25.0%"),
        (data.fmt_pct, None, "—"),
        (data.fmt_cost, 0.0035, "$0.0035"),
        (data.fmt_cost, 12.5, "$12.50"),
        (data.fmt_cost, None, "—"),
        (data.fmt_compact, 950, "950"),
        (data.fmt_compact, 12_345, "12.3k"),
        (data.fmt_compact, 4.5e6, "4.5M"),
        (data.fmt_int, 1234, "1,234"),
    ],
)
def test_formats(fn: Any, value: Any, text: str) -> None:
    assert fn(value) == text


def test_plural() -> None:
    assert data.plural(1, "error") == "1 error"
    assert data.plural(0, "error") == "0 errors"
    assert data.plural(1204, "call") == "1,204 calls"
