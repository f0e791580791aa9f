"""Format analyzer (monitor.analyzers.format): who asked for JSON, parsing, schemas, batches."""

from __future__ import annotations

import json

import pytest

from monitor import semconv as sc
from monitor.analyzers import load
from monitor.analyzers.base import AnalyzerConfigError, Score
from monitor.analyzers.format import FormatAnalyzer, check_output, json_request

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
SCHEMA_TEXT = json.dumps(SCHEMA)


def _params(**params: object) -> dict[str, str]:
    return {sc.LLM_INVOCATION_PARAMETERS: json.dumps({"model": "gpt-4o-mini", **params})}


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({sc.GEN_AI_OUTPUT_TYPE: "json"}, (True, None)),
        ({sc.GEN_AI_OUTPUT_TYPE: "text"}, (False, None)),
        ({sc.GEN_AI_OPENAI_REQUEST_RESPONSE_FORMAT: "json_object"}, (True, None)),
        ({sc.GEN_AI_OPENAI_REQUEST_RESPONSE_FORMAT: "text"}, (False, None)),
        ({sc.LLM_MONITOR_OUTPUT_SCHEMA: SCHEMA_TEXT}, (True, SCHEMA_TEXT)),
        ({sc.GEN_AI_REQUEST_STRUCTURED_OUTPUT_SCHEMA: SCHEMA_TEXT}, (True, SCHEMA_TEXT)),
        (_params(response_format={"type": "json_object"}), (True, None)),
        (
            _params(response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}}),
            (True, SCHEMA),
        ),
        (_params(response_format={"type": "text"}), (False, None)),
        (_params(temperature=0.2), (False, None)),
        (
            _params(text={"format": {"type": "json_schema", "name": "p", "schema": SCHEMA}}),
            (True, SCHEMA),
        ),  # Responses
        (_params(format="json"), (True, None)),  # Ollama
        (_params(format=SCHEMA), (True, SCHEMA)),
        (_params(response_mime_type="application/json", response_schema=SCHEMA), (True, SCHEMA)),  # Gemini
        (
            {sc.LANGFUSE_MODEL_PARAMETERS: json.dumps({"response_format": {"type": "json_object"}})},
            (True, None),
        ),
        ({sc.LLM_INVOCATION_PARAMETERS: "{not json but says json"}, (False, None)),
        ({}, (False, None)),
        (None, (False, None)),
        ("gen_ai.output.type=json", (False, None)),
    ],
)
def test_json_request(attributes: object, expected: tuple[bool, object]) -> None:
    assert json_request(attributes) == expected


def test_schema_attribute_wins_over_parameters() -> None:
    attrs = {sc.LLM_MONITOR_OUTPUT_SCHEMA: SCHEMA_TEXT, **_params(response_format={"type": "json_object"})}
    assert json_request(attrs) == (True, SCHEMA_TEXT)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"name": "Aiko", "age": 31}', ("ok", False)),
        ('  \n{"name": "Aiko", "age": 31}\n', ("ok", False)),
        ('\ufeff{"a": 1}', ("ok", False)),
        ("[1, 2, 3]", ("ok", False)),
        ('```json\n{"a": 1}\n```', ("fenced", False)),
        ('```\n{"a": 1}\n```', ("fenced", False)),
        ('```json\n{"a": 1,}\n```', ("invalid_json", True)),
        ('Here is the JSON: {"a": 1}', ("invalid_json", True)),
        ('```json\n{"a": 1}\n```\nLet me know if you need more.', ("invalid_json", True)),
        ('{"a": 1', ("invalid_json", True)),  # truncated (finish_reason length)
        ('{"a": NaN}', ("invalid_json", True)),
        ("{'a': 1}", ("invalid_json", True)),
        ("[" * 100_000 + "]" * 100_000, ("invalid_json", True)),  # absurd nesting is not an answer
    ],
)
def test_check_output_without_schema(text: str, expected: tuple[str, bool]) -> None:
    assert check_output(text) == expected


def test_check_output_with_schema() -> None:
    import jsonschema

    v = jsonschema.Draft202012Validator(SCHEMA)
    assert check_output('{"name": "Aiko", "age": 31}', v) == ("ok", False)
    assert check_output('{"name": "Aiko", "age": "31"}', v) == ("schema_mismatch", True)
    assert check_output('{"name": "Aiko"}', v) == ("schema_mismatch", True)
    assert check_output('```json\n{"name": "Aiko", "age": 31}\n```', v) == ("fenced", False)
    assert check_output('```json\n{"name": "Aiko", "age": -1}\n```', v) == ("fenced,schema_mismatch", True)


def test_batch() -> None:
    schema_attrs = {sc.LLM_MONITOR_OUTPUT_SCHEMA: SCHEMA_TEXT}
    spans = [
        {"attributes": {sc.GEN_AI_OUTPUT_TYPE: "json"}, "output_text": '{"ok": true}'},
        {"attributes": {}, "output_text": "{ not asked for JSON"},  # did not ask: no row
        {"attributes": {sc.GEN_AI_OUTPUT_TYPE: "json"}, "output_text": ""},  # a tool call, no text: no row
        {"attributes": schema_attrs, "output_text": '{"name": "Aiko", "age": "31"}'},
        {"attributes": None, "output_text": "{}"},
        {"output_text": "{}"},
        {"attributes": schema_attrs, "output_text": '```json\n{"name": "Ken", "age": 4}\n```'},
        {"attributes": {sc.LLM_MONITOR_OUTPUT_SCHEMA: '{"type": 12}'}, "output_text": "[1]"},  # bad schema: parse only
        {"attributes": {sc.LLM_MONITOR_OUTPUT_SCHEMA: "not json"}, "output_text": "oops"},
        {"attributes": {sc.LLM_MONITOR_OUTPUT_SCHEMA: json.dumps({"$ref": "https://example.com/s.json"})},
         "output_text": '{"a": 1}'},  # an unresolvable $ref is the user's schema problem: parse only
        {"attributes": schema_attrs, "output_text": '{"name": "Mio", "age": 7}'},
    ]  # fmt: skip
    analyzer = load("format")()
    assert list(analyzer.score(spans)) == [
        Score(0, "output", 0.0, "ok"),
        Score(3, "output", 1.0, "schema_mismatch"),
        Score(6, "output", 0.0, "fenced"),
        Score(7, "output", 0.0, "ok"),
        Score(8, "output", 1.0, "invalid_json"),
        Score(9, "output", 0.0, "ok"),
        Score(10, "output", 0.0, "ok"),
    ]
    assert FormatAnalyzer.fields == ("attributes", "output_text")


def test_schemas_compile_once() -> None:
    analyzer = FormatAnalyzer()
    spans = [
        {"attributes": {sc.LLM_MONITOR_OUTPUT_SCHEMA: SCHEMA_TEXT}, "output_text": '{"name": "A", "age": 1}'}
    ] * 50
    assert [s.label for s in analyzer.score(spans)] == ["ok"] * 50
    assert len(analyzer._validators._cache) == 1


def test_fenced_invalid_option() -> None:
    spans = [{"attributes": {sc.GEN_AI_OUTPUT_TYPE: "json"}, "output_text": '```json\n{"a": 1}\n```'}]
    assert list(FormatAnalyzer({"fenced_invalid": True}).score(spans)) == [Score(0, "output", 1.0, "fenced")]
    with pytest.raises(AnalyzerConfigError, match="fenced_invalid must be bool"):
        FormatAnalyzer({"fenced_invalid": "yes"})
    with pytest.raises(AnalyzerConfigError, match="unknown option 'schema'"):
        FormatAnalyzer({"schema": {}})
