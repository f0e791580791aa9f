"""Output format validity: when a call asked for JSON, did it get JSON (and JSON of the right shape)?

Which spans asked for JSON, read from ``attributes`` (a ``Map(String, String)``; the first source found
wins for the schema):

1. ``llm_monitor.output.schema``: a JSON-schema string recorded by our SDK (implies JSON).
2. ``gen_ai.request.structured_output_schema``: OpenLLMetry's copy of the request's schema.
3. ``llm.invocation_parameters`` (OpenInference) / ``langfuse.observation.model.parameters`` (Langfuse):
   the request's parameters as JSON. JSON was asked for by ``response_format`` ``{"type": "json_object"}``
   or ``{"type": "json_schema", "json_schema": {"schema": …}}`` (Chat Completions), ``text.format``
   (Responses API), ``format: "json"`` or a schema object (Ollama), or ``response_mime_type:
   "application/json"`` with an optional ``response_schema`` (Gemini).
4. ``gen_ai.output.type`` = ``json`` (OTel GenAI), or the older ``gen_ai.openai.request.response_format`` =
   ``json_object``/``json_schema``: JSON without a schema.

A span that asked for no JSON gets no row, nor does one without output text (a tool call). Otherwise one
``output`` row:

================================ ===== ================================================================
label                            value meaning
================================ ===== ================================================================
``ok``                           0.0   the output parses as JSON (and matches the schema, when one is known)
``fenced``                       0.0   the whole output is one Markdown fence (```json … ```) around JSON
                                       that parses (and matches); 1.0 with option ``fenced_invalid: true``
``invalid_json``                 1.0   the output (or the fence's content) does not parse
``schema_mismatch``              1.0   it parses but the schema rejects it (``fenced,schema_mismatch`` if
                                       it was fenced)
================================ ===== ================================================================

Parsing is strict JSON (no ``NaN``/``Infinity``, no trailing text). Schemas are validated with
``jsonschema`` (the draft the schema declares, 2020-12 by default; ``format`` is not asserted); a schema
that is itself invalid is ignored (the output is then only parsed). Compiled validators are cached by
schema text, so a service sending the same schema on every call compiles it once.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from monitor import semconv as sc
from monitor.analyzers._text import check_options
from monitor.analyzers.base import Analyzer, Score, output_text

__all__ = ["FormatAnalyzer", "check_output", "json_request"]

_JSON_TYPES = frozenset({"json_object", "json_schema", "json"})
_PARAM_KEYS = (sc.LLM_INVOCATION_PARAMETERS, sc.LANGFUSE_MODEL_PARAMETERS)


def _obj(raw: Any) -> Any:
    """A JSON string parsed (``None`` when it does not parse), any other value as is."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return None
    return raw


def _from_parameters(params: Any) -> tuple[bool, Any]:
    """``(asked for JSON, schema or None)`` from a request's parameters (any provider's shape)."""
    if not isinstance(params, dict):
        return False, None
    rf = _obj(params.get("response_format"))
    if isinstance(rf, str):
        return rf in _JSON_TYPES, None
    if isinstance(rf, dict):
        kind = rf.get("type")
        if kind == "json_schema":
            js = rf.get("json_schema")
            return True, (js.get("schema") if isinstance(js, dict) else None) or rf.get("schema")
        if kind in _JSON_TYPES:
            return True, rf.get("schema")
    text = params.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") in _JSON_TYPES:  # Responses API
        return True, fmt.get("schema")
    fmt = params.get("format")  # Ollama
    if fmt == "json":
        return True, None
    if isinstance(fmt, dict) and ("type" in fmt or "properties" in fmt):
        return True, fmt
    if params.get("response_mime_type") == "application/json":  # Gemini
        return True, params.get("response_schema")
    return False, None


def json_request(attributes: Any) -> tuple[bool, Any]:
    """``(asked for JSON, schema)`` for a span's ``attributes``; the schema is a dict, a string or ``None``.

    Pure; never raises (odd attribute values read as "no").
    """
    if not isinstance(attributes, Mapping) or not attributes:
        return False, None
    for key in (sc.LLM_MONITOR_OUTPUT_SCHEMA, sc.GEN_AI_REQUEST_STRUCTURED_OUTPUT_SCHEMA):
        schema = attributes.get(key)
        if isinstance(schema, str) and schema.strip():
            return True, schema
    for key in _PARAM_KEYS:
        raw = attributes.get(key)
        # most parameter blobs never mention JSON (an Ollama schema may not either: it is under "format")
        if isinstance(raw, str) and ("json" in raw.lower() or '"format"' in raw):
            asked, schema = _from_parameters(_obj(raw))
            if asked:
                return True, schema
    if attributes.get(sc.GEN_AI_OUTPUT_TYPE) == "json":
        return True, None
    return attributes.get(sc.GEN_AI_OPENAI_REQUEST_RESPONSE_FORMAT) in _JSON_TYPES, None


# --- parsing -----------------------------------------------------------------------------------------------
_FENCE = re.compile(r"\A```[ \t]*(?:json5?|JSON)?[ \t]*\r?\n(.*?)\r?\n?[ \t]*```\Z", re.DOTALL)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_decoder = json.JSONDecoder(parse_constant=_no_constants)
_MISSING = object()


def _parse(text: str) -> Any:
    """The JSON value of ``text`` (surrounding white space allowed), or :data:`_MISSING`."""
    try:
        return _decoder.decode(text)
    except ValueError:  # JSONDecodeError and our NaN/Infinity refusal
        return _MISSING
    except RecursionError:  # absurdly deep nesting is not an answer anyone can use
        return _MISSING


# --- schemas -------------------------------------------------------------------------------------------------
class _Validators:
    """Compiled ``jsonschema`` validators by schema text (bounded LRU); ``None`` for an unusable schema."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._cache: OrderedDict[str, Any] = OrderedDict()

    def get(self, schema: Any) -> Any:
        key = schema if isinstance(schema, str) else json.dumps(schema, sort_keys=True, default=str)
        hit = self._cache.get(key, _MISSING)
        if hit is not _MISSING:
            self._cache.move_to_end(key)
            return hit
        validator = self._compile(schema)
        self._cache[key] = validator
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return validator

    @staticmethod
    def _compile(schema: Any) -> Any:
        import jsonschema  # imported on first use: `up` must start fast

        obj = _obj(schema)
        if not isinstance(obj, (dict, bool)):
            return None
        cls = jsonschema.validators.validator_for(obj, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(obj)
        except jsonschema.exceptions.SchemaError:
            return None
        return cls(obj)


def _matches(validator: Any, value: Any) -> bool | None:
    """Whether ``value`` satisfies the schema; ``None`` when the schema cannot be applied (unresolvable
    ``$ref``, a pathological pattern): the user's schema, not our bug, so the output is only parsed."""
    try:
        return bool(validator.is_valid(value))
    except Exception:
        return None


def check_output(text: str, validator: Any = None) -> tuple[str, bool]:
    """``(label, bad)`` for one output; ``validator`` is a compiled jsonschema validator or ``None``."""
    fenced = False
    text = text.strip().lstrip("\ufeff")
    value = _parse(text)
    if value is _MISSING:
        m = _FENCE.match(text)
        if m is None:
            return "invalid_json", True
        value = _parse(m.group(1))
        if value is _MISSING:
            return "invalid_json", True
        fenced = True
    if validator is not None and _matches(validator, value) is False:
        return ("fenced,schema_mismatch" if fenced else "schema_mismatch"), True
    return ("fenced", False) if fenced else ("ok", False)


_OPTIONS = ("fenced_invalid",)


class FormatAnalyzer(Analyzer):
    """JSON validity of outputs that were asked to be JSON; see the module docstring.

    Called from the scheduler's thread; keeps a bounded cache of compiled schemas (not thread-safe: one
    scheduler thread per analyzer instance); never blocks.
    """

    name: ClassVar[str] = "format"
    version: ClassVar[str] = "1"
    fields: ClassVar[tuple[str, ...]] = ("attributes", "output_text")

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        check_options(self.name, self.options, _OPTIONS)
        self.fenced_invalid: bool = self.option("fenced_invalid", False, bool)
        self._validators = _Validators()

    def score(self, spans: Sequence[Mapping[str, Any]]) -> Iterable[Score]:
        out: list[Score] = []
        for i, span in enumerate(spans):
            text = output_text(span)
            if not text:
                continue
            asked, schema = json_request(span.get("attributes"))
            if not asked:
                continue
            validator = self._validators.get(schema) if schema is not None else None
            label, bad = check_output(text, validator)
            if label == "fenced" and self.fenced_invalid:
                bad = True
            out.append(Score(i, "output", 1.0 if bad else 0.0, label))
        return out
