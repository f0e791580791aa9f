from __future__ import annotations

import datetime as dt
import json

from monitor.queryfmt import format_result

COLS = ["model", "n", "cost", "at", "attrs"]
ROWS = [
    ("gpt-4o", 3, 0.5, dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), {"a": "1"}),
    ("gpt-4o-mini", 10, None, dt.datetime(2026, 1, 2, 3, 4, 6, tzinfo=dt.timezone.utc), {}),
]


def test_json_is_one_array_of_objects() -> None:
    out = json.loads(format_result(COLS, ROWS, "json"))
    assert out == [
        {"model": "gpt-4o", "n": 3, "cost": 0.5, "at": "2026-01-02T03:04:05+00:00", "attrs": {"a": "1"}},
        {"model": "gpt-4o-mini", "n": 10, "cost": None, "at": "2026-01-02T03:04:06+00:00", "attrs": {}},
    ]
    assert format_result(COLS, [], "json") == "[]\n"


def test_csv_and_table() -> None:
    csv = format_result(COLS, ROWS, "csv").splitlines()
    assert csv[0] == "model,n,cost,at,attrs"
    assert csv[1] == 'gpt-4o,3,0.5,2026-01-02T03:04:05+00:00,"{""a"": ""1""}"'
    assert csv[2].startswith("gpt-4o-mini,10,NULL,")
    table = format_result(COLS, ROWS, "table").splitlines()
    assert table[0].split() == COLS
    assert table[2].split()[:3] == ["gpt-4o", "3", "0.5"]
    assert table[-1] == "(2 rows)"
