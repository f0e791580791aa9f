"""The native normalization fast path (collectors/_normalize_native.c) against the Python reference.

Differential: on the benchmark workload, on every span the tests in ``tests/unit/test_normalize_*.py``
normalize (re-run here with a wrapper that normalizes each request both ways), and on hypothesis-generated
GenAI spans (odd unicode and lone surrogates, huge strings, malformed or truncated JSON in the message
attributes, structured arrays instead of strings, missing fields, numbers as strings, NaN/inf...), the rows
must be identical: same keys in the same order, same values *and types*; where the reference raises, the
native path must raise the same exception type. The reference path (``LLM_MONITOR_NATIVE_NORMALIZE=0`` or
``_native.use_native(False)``) is exercised by every comparison.

This module doubles as a pytest plugin (``-p tests.unit.test_normalize_fast``) for that re-run: loaded as a
plugin, it wraps ``normalize_spans`` before the other test modules import it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors import otlp
from collectors.normalize import _native, messages, otel_genai, pipeline
from collectors.normalize.pipeline import default_registry, normalize_span, normalize_spans
from collectors.otlp import Span, SpanEvent
from monitor import semconv as sc
from monitor.store.schema import SPAN_DEFAULTS
from tests.unit.gil_probe import progress_during

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"

if _native.module is None:
    if shutil.which("cc") or shutil.which("gcc"):  # this machine can build it: a missing module is a bug
        raise RuntimeError("collectors._normalize_native is not built (pip install -e . builds it)")
    pytest.skip("native normalizer not built: no C compiler on this machine", allow_module_level=True)
NATIVE = _native.module


# --- comparison helpers --------------------------------------------------------------------------------------


def canon(x: Any) -> Any:
    """A comparable rendering that keeps types and key order apart (True vs 1, 1.0 vs 1) and NaN equal."""
    if isinstance(x, dict):
        return ("dict", [(canon(k), canon(v)) for k, v in x.items()])
    if isinstance(x, list):
        return ("list", [canon(v) for v in x])
    if isinstance(x, float):
        return ("float", "nan" if math.isnan(x) else repr(x))
    if isinstance(x, dt.datetime):
        return ("datetime", x.isoformat(), str(x.tzinfo))
    return (type(x).__name__, x)


def outcome(fn: Any, *args: Any) -> Any:
    """canon(fn(*args)) plus the arguments after the call (mutated in place), or the exception type."""
    try:
        out = fn(*args)
    except Exception as e:  # what matters is that both paths raise the same kind of error
        return ("raised", type(e).__name__)
    return canon(out), [canon(a) for a in args if isinstance(a, (dict, list))]


def both_paths(fn: Any, *args: Any, **kw: Any) -> tuple[Any, Any]:
    """fn run with the reference, then with the native path: (reference outcome, native outcome)."""
    was = _native.native is not None
    try:
        _native.use_native(False)
        ref = outcome(lambda: fn(*args, **kw))
        _native.use_native(True)
        fast = outcome(lambda: fn(*args, **kw))
    finally:
        _native.use_native(was)
    return ref, fast


def fresh_row(**kw: Any) -> dict[str, Any]:
    row = dict(SPAN_DEFAULTS)
    row.update(tags=[], attributes={}, resource={}, **kw)
    return row


def core_both(attrs: dict[str, Any], kind: str = "", session: str = "") -> None:
    """apply_genai_core, native vs reference, on copies of the same attributes and row."""
    a1, a2 = dict(attrs), dict(attrs)
    r1, r2 = fresh_row(session_id=session), fresh_row(session_id=session)
    ref = outcome(otel_genai.apply_genai_core, a1, r1, kind)
    fast = outcome(NATIVE.apply_genai_core, a2, r2, kind)
    assert fast == ref


def span_both(span: Span, now_ns: int = 1_800_000_000_000_000_000) -> Any:
    """One span through pipeline.normalize_span (reference) and the native normalize_span."""
    reg = default_registry()
    res = pipeline._resource_info(span.resource, "default")
    # the reference raises on a normalizer's failure only under LLM_MONITOR_RAISE_INTERNAL=1 (else it falls
    # back to the generic mapping); the native path always raises, leaving the span to the reference
    was = os.environ.get("LLM_MONITOR_RAISE_INTERNAL")
    os.environ["LLM_MONITOR_RAISE_INTERNAL"] = "1"
    try:
        ref = outcome(normalize_span, span, reg, res, now_ns)
    finally:
        if was is None:
            del os.environ["LLM_MONITOR_RAISE_INTERNAL"]
        else:
            os.environ["LLM_MONITOR_RAISE_INTERNAL"] = was
    got = outcome(NATIVE.normalize_span, span, reg, res, now_ns)
    if got[0] == ("NoneType", None):  # declined: the reference decides this span
        return "declined"
    if ref[0] == "raised":  # only our own bugs raise under test; the native path must raise too
        assert got[0] == "raised"
        return "raised"
    assert got == ref
    return "native"


# --- the benchmark workload --------------------------------------------------------------------------------


def workload_spans(n: int = 2500) -> list[list[Span]]:
    sys.path.insert(0, str(BENCH))
    try:
        import workload
    finally:
        sys.path.remove(str(BENCH))
    base = workload.base_time_ns(1_800_000_000_000_000_000)
    return [otlp.decode_traces_protobuf(b) for b in workload.requests(7, 500, n, base)]


def test_benchmark_workload_rows_are_identical_and_all_native():
    for spans in workload_spans():
        ref, fast = both_paths(normalize_spans, spans, now_ns=1)
        assert ref[0][0] == "list" and fast == ref
    # every workload span takes the native path (none declined, none fell back after an exception)
    one_request = workload_spans(500)[0]
    assert {span_both(s) for s in one_request} == {"native"}


def test_the_switch_and_the_environment_variable():
    assert _native.use_native(False) is False and _native.native is None
    assert _native.use_native(True) is True and _native.native is NATIVE
    code = "from collectors.normalize import _native; print(_native.native is None, _native.module is None)"
    env = {**os.environ, "LLM_MONITOR_NATIVE_NORMALIZE": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.split() == ["True", "False"]


# --- every span the normalize tests make, both ways (a pytest run with this module as a plugin) ------------


def _first_difference(a: Any, b: Any) -> str:
    if type(a) is not type(b) or not isinstance(a, (list, tuple)) or len(a) != len(b):
        return f"{a!r}\n  !=\n{b!r}"
    return next((_first_difference(x, y) for x, y in zip(a, b, strict=True) if x != y), "")


def _differential_normalize_spans(spans: Any, **kw: Any) -> list[dict[str, Any]]:
    kw.setdefault("now_ns", time.time_ns())  # both paths date time-less spans alike
    ref, fast = both_paths(_ORIGINAL, spans, **kw)
    if fast != ref:
        raise AssertionError("native and reference rows differ: " + _first_difference(ref, fast)[:3000])
    for s in spans:  # and span by span, where the native path must not fail where the reference does not
        span_both(s, kw["now_ns"])
    return _ORIGINAL(spans, **kw)  # the caller gets the path the process is switched to


_ORIGINAL = normalize_spans


def pytest_configure(config: pytest.Config) -> None:
    """Plugin mode: every normalize_spans call of the test session is checked both ways."""
    import collectors.normalize as pkg

    pkg.normalize_spans = pipeline.normalize_spans = _differential_normalize_spans  # type: ignore[assignment]


def test_every_normalize_test_fixture_gives_identical_rows(tmp_path):
    tests = sorted(
        str(p) for p in (ROOT / "tests" / "unit").glob("test_normalize_*.py") if p.name != Path(__file__).name
    )
    assert len(tests) >= 3
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.unit.test_normalize_fast",
            *tests,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and " failed" not in out.stdout


# --- hand-picked edge cases --------------------------------------------------------------------------------

EDGE_VALUES: list[Any] = [
    None, "", " ", "x", "[", "{", "[]", "{}", "[1]", '"q"', "null", "[null]", "[{}]", '{"role": 5}',
    "é\x00ü", "\ud800", "[\"\\ud800\"]", "9" * 30, " 12 ", "1_000", "١٢", "1e3", "-1", "nan", "inf", "-0.0",
    "true", "TRUE", "False", 0, -1, 1, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64, -(2**63), 10**30, 0.0, -0.5,
    2.0, 1e308, float("inf"), float("nan"), True, False, b"", b"\x00\xff", [], ["stop"], ["", "stop"], [1, "x"],
    {}, {"role": "user"}, [{"role": "tool", "content": {"a": 1}, "tool_call_id": None}],
    '[{"role":"assistant","content":null,"tool_calls":[{"id":"c","function":{"name":"f","arguments":"{}"}}]}]',
    '[{"role":"user","parts":[{"type":"tool_call_response","result":[1,2]}]}]',
    '[{"parts":[{"type":"blob","modality":"image","uri":"u"},{"type":"file","mime_type":7},{"type":"uri"}]}]',
    '[{"parts":[{"type":"server_tool_call","name":{"x":1}},{"type":"reasoning","content":"r"},"plain"]}]',
    '[{"parts":[{"type":"tool_call","name":"","arguments":"\\"quoted\\""},{"content":5},{"text":"t"}]}]',
    '[{"role":"","finish_reason":"","name":"n","parts":{"not":"a list"},"content":[{"type":"text"}]}]',
    '{"role":"assistant","parts":[{"type":"text","content":"a"},{"type":"text","content":"b"}],"finish_reason":"stop"}',
    '[{"role":"x","parts":[{"type":"function","function":"nope"},{"function":{"name":null}}]}]',
    "[" * 300 + "]" * 300,
    '[{"a": NaN}]',
    '[{"big": 123456789012345678901234567890}]',
]  # fmt: skip
GENAI_KEYS = [k for k in _native.KEYS] + [
    sc.ERROR_TYPE,
    sc.USER_ID,
    sc.SESSION_ID,
    "gen_ai.tool.call.arguments",
]


@pytest.mark.parametrize("key", GENAI_KEYS)
def test_every_key_with_every_edge_value(key):
    for v in EDGE_VALUES:
        for kind in ("", "tool", "llm"):
            core_both({sc.GEN_AI_OPERATION_NAME: "chat", key: v}, kind, session="s" if kind else "")


def test_message_parsers_on_edge_values():
    for v in EDGE_VALUES:
        for role in ("user", "assistant"):
            assert outcome(NATIVE.parse_messages, v, role) == outcome(messages.parse_messages, v, role)
        assert outcome(NATIVE.parse_parts, v) == outcome(messages.parse_parts, v)
        parsed = messages.parse_messages(v, "user")
        if parsed:
            assert outcome(NATIVE.messages_text, parsed) == outcome(messages.messages_text, parsed)


def test_declined_shapes_are_left_to_the_reference():
    base: dict[str, Any] = dict(trace_id="ab" * 16, span_id="cd" * 8, parent_span_id="", name="chat", kind=3)
    t = 1_700_000_000_000_000_000
    err = Span(**base, start_time_unix_nano=t, end_time_unix_nano=t + 5, attributes={}, status_code=2)
    assert span_both(err) == "declined"
    typed = Span(**base, start_time_unix_nano=t, end_time_unix_nano=t, attributes={sc.ERROR_TYPE: "E"})
    assert span_both(typed) == "declined"
    huge = Span(**base, start_time_unix_nano=2**64 - 1, end_time_unix_nano=2**64 - 1, attributes={})
    assert span_both(huge) == "declined"
    ok = Span(**base, start_time_unix_nano=0, end_time_unix_nano=t, attributes={"gen_ai.request.model": "m"})
    assert span_both(ok) == "native"
    # and normalize_spans gives the reference's rows for all of them
    for s in (err, typed, huge, ok):
        ref, fast = both_paths(normalize_spans, [s], now_ns=t)
        assert fast == ref


# --- hypothesis: generated GenAI spans ------------------------------------------------------------------------

any_text = st.text(st.characters(codec=None, categories=None), max_size=40)  # lone surrogates included
words = st.sampled_from(["", "user", "assistant", "tool", "system", "text", "tool_call", "tool_call_response",
                         "function", "blob", "file", "uri", "server_tool_call", "reasoning", "stop", "length"])  # fmt: skip
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    any_text, words, st.binary(max_size=6),
)  # fmt: skip
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(allow_nan=False), any_text, words
)
json_values = st.recursive(
    json_scalars, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.one_of(words, any_text), c, max_size=4)),
    max_leaves=12,
)  # fmt: skip
part = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"type": words},
        optional={"content": json_values, "text": json_values, "id": json_values, "name": json_values,
                  "arguments": json_values, "response": json_values, "result": json_values, "uri": json_values,
                  "modality": json_values, "mime_type": json_values, "function": json_values},
    ),
)  # fmt: skip
message = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={"role": st.one_of(words, json_values), "parts": st.one_of(st.lists(part, max_size=4), json_values),
                  "content": st.one_of(any_text, st.lists(part, max_size=3), part, json_values),
                  "tool_calls": st.one_of(st.lists(part, max_size=3), json_values), "tool_call_id": json_values,
                  "id": json_values, "name": st.one_of(words, json_values), "finish_reason": st.one_of(words, json_values)},
    ),
)  # fmt: skip


def _dumps(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False, allow_nan=True)


@st.composite
def message_value(draw: st.DrawFn) -> Any:
    """What a gen_ai.*.messages attribute may hold: JSON text (whole, truncated, huge), structure, junk."""
    msgs = draw(st.one_of(st.lists(message, max_size=4), message))
    how = draw(st.sampled_from(["json", "json", "truncated", "structured", "scalar", "huge", "ascii"]))
    if how == "json":
        return _dumps(msgs)
    if how == "ascii":
        return json.dumps(msgs)  # \u escapes, surrogate pairs written as escapes
    if how == "truncated":
        s = _dumps(msgs)
        return s[: draw(st.integers(0, max(0, len(s) - 1)))]
    if how == "huge":
        big = draw(any_text) * 4000 + "\u00e9"
        return _dumps([{"role": "user", "parts": [{"type": "text", "content": big}]}])
    if how == "structured":
        return msgs
    return draw(scalars)


numbers = st.one_of(
    scalars, st.sampled_from([" 12 ", "1_000", "١٢", "1e3", "-1", "inf", "nan", "0x10", "4294967296", "3.0"]),
    st.integers(0, 2**64).map(str),
)  # fmt: skip
OPTIONAL_ATTRS = {
    sc.GEN_AI_OPERATION_NAME: st.one_of(st.sampled_from(list(otel_genai.OPERATION_KINDS)), scalars),
    sc.GEN_AI_PROVIDER_NAME: st.one_of(st.sampled_from([" OpenAI ", "az.ai.openai", "Gemini", "ß"]), scalars),
    sc.GEN_AI_SYSTEM: st.one_of(st.sampled_from(["vertex_ai", "XAI"]), scalars),
    sc.GEN_AI_REQUEST_MODEL: scalars,
    sc.GEN_AI_RESPONSE_MODEL: scalars,
    sc.GEN_AI_RESPONSE_ID: scalars,
    sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: numbers,
    sc.GEN_AI_REQUEST_TEMPERATURE: numbers,
    sc.GEN_AI_REQUEST_TOP_P: numbers,
    sc.GEN_AI_REQUEST_MAX_TOKENS: numbers,
    sc.GEN_AI_REQUEST_STREAM: st.one_of(st.sampled_from(["true", "False", "TRUE", "yes"]), scalars),
    sc.GEN_AI_USAGE_INPUT_TOKENS: numbers,
    sc.GEN_AI_USAGE_PROMPT_TOKENS: numbers,
    sc.GEN_AI_USAGE_OUTPUT_TOKENS: numbers,
    sc.GEN_AI_USAGE_COMPLETION_TOKENS: numbers,
    _native.TOTAL_TOKEN_KEYS[0]: numbers,
    _native.TOTAL_TOKEN_KEYS[1]: numbers,
    sc.GEN_AI_CONVERSATION_ID: st.one_of(st.just("sess"), scalars),
    sc.GEN_AI_RESPONSE_FINISH_REASONS: st.one_of(
        st.lists(st.one_of(words, scalars), max_size=3), st.lists(words, max_size=3).map(json.dumps), scalars
    ),
    sc.GEN_AI_SYSTEM_INSTRUCTIONS: message_value(),
    sc.GEN_AI_INPUT_MESSAGES: message_value(),
    sc.GEN_AI_OUTPUT_MESSAGES: message_value(),
    sc.GEN_AI_PROMPT: message_value(),
    sc.GEN_AI_COMPLETION: message_value(),
    sc.USER_ID: st.one_of(st.just("u1"), scalars),
    sc.SESSION_ID: st.one_of(st.just("sess"), scalars),
    "gen_ai.request.user": scalars,
    sc.GEN_AI_TOOL_CALL_ARGUMENTS: st.one_of(message_value(), scalars),
    sc.GEN_AI_TOOL_CALL_RESULT: st.one_of(message_value(), scalars),
    "server.port": scalars,
    "other.list": st.lists(scalars, max_size=3),
    "other.map": st.dictionaries(any_text, scalars, max_size=3),
}
genai_attrs = st.fixed_dictionaries({}, optional=OPTIONAL_ATTRS)  # type: ignore[arg-type]


@st.composite
def genai_span(draw: st.DrawFn) -> Span:
    attrs = draw(genai_attrs)
    if draw(st.booleans()):  # most real spans carry the operation and the model
        attrs.setdefault(sc.GEN_AI_OPERATION_NAME, "chat")
        attrs.setdefault(sc.GEN_AI_REQUEST_MODEL, "gpt-4o")
    times = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 1_700_000_000_000_000_000]))
    events = draw(st.lists(st.builds(
        SpanEvent, name=st.sampled_from(["gen_ai.content.prompt", "gen_ai.content.completion", "exception", "x"]),
        time_unix_nano=times,
        attributes=st.fixed_dictionaries({}, optional={sc.GEN_AI_PROMPT: message_value(),
                                                       sc.GEN_AI_COMPLETION: message_value()}),
    ), max_size=2))  # fmt: skip
    return Span(
        trace_id=draw(st.sampled_from(["", "ab" * 16])),
        span_id="cd" * 8,
        parent_span_id=draw(st.sampled_from(["", "ef" * 8])),
        name=draw(any_text),
        kind=1,
        start_time_unix_nano=draw(times),
        end_time_unix_nano=draw(times),
        attributes=attrs,
        events=events,
        status_code=draw(st.sampled_from([0, 1, 1, 2, 7])),
        status_message=draw(any_text),
        resource=draw(st.sampled_from([{}, {"service.name": "svc", "telemetry.sdk.name": "openlit"}])),
        scope_name=draw(st.sampled_from(["opentelemetry.instrumentation.openai_v2", "llm_monitor", "x"])),
    )


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(genai_span(), st.sampled_from(["", "tool", "agent"]), st.sampled_from(["", "sess"]))
def test_generated_spans_map_identically(span, kind, session):
    core_both(span.attributes, kind, session)
    span_both(span)


@FUZZ
@given(st.lists(genai_span(), min_size=1, max_size=4))
def test_generated_requests_give_identical_rows(spans):
    ref, fast = both_paths(normalize_spans, spans, now_ns=1_750_000_000_000_000_000)
    assert fast == ref


@FUZZ
@given(st.one_of(message_value(), any_text, st.binary(max_size=64).map(lambda b: b.decode("latin-1"))))
def test_message_parsers_on_generated_values(value):
    for role in ("user", "assistant"):
        assert outcome(NATIVE.parse_messages, value, role) == outcome(messages.parse_messages, value, role)
    assert outcome(NATIVE.parse_parts, value) == outcome(messages.parse_parts, value)
    parsed = messages.parse_messages(value, "assistant")
    if parsed:
        assert outcome(NATIVE.messages_text, parsed) == outcome(messages.messages_text, parsed)


def test_native_entry_points_refuse_bad_arguments():
    with pytest.raises(TypeError):
        NATIVE.apply_genai_core([], {}, "")
    with pytest.raises(TypeError):
        NATIVE.apply_genai_core({}, {}, None)
    with pytest.raises(TypeError):
        NATIVE.normalize_span(None, None, (), 0)
    with pytest.raises(TypeError):
        NATIVE.messages_text("not a list")
    with pytest.raises(AttributeError):
        NATIVE.messages_text([1])
    with pytest.raises(TypeError):
        NATIVE.configure(1, 2, 3, 4, {}, {}, ())
    # a row without the columns the mapping reads: the same KeyError as the reference
    core = outcome(NATIVE.apply_genai_core, {sc.GEN_AI_CONVERSATION_ID: "c"}, {}, "")
    assert core == outcome(otel_genai.apply_genai_core, {sc.GEN_AI_CONVERSATION_ID: "c"}, {}, "")


# --- the direct message lane -------------------------------------------------------------------------------


def lane_both(attrs: dict[str, Any]) -> str:
    """core_both on an LLM span, and which way the native path took: ``"lane"`` or ``"declined"``."""
    _, h0, d0 = NATIVE.content_lane()
    core_both(attrs, "llm")
    _, h1, d1 = NATIVE.content_lane()
    assert (h1 - h0, d1 - d0) in ((1, 0), (0, 1))
    return "lane" if h1 > h0 else "declined"


def msgs(*items: Any) -> str:
    return json.dumps(list(items))


TEXT = {"type": "text", "content": "Hello"}
CALL = {
    "type": "tool_call",
    "id": "c1",
    "name": "lookup",
    "arguments": {"order": "A1", "n": [1, -2, True, None]},
}
IN, OUT, SYS = sc.GEN_AI_INPUT_MESSAGES, sc.GEN_AI_OUTPUT_MESSAGES, sc.GEN_AI_SYSTEM_INSTRUCTIONS

LANE_CASES: list[dict[str, Any]] = [
    {  # the usual call: system, user, assistant with a tool call and a finish reason
        SYS: json.dumps([{"type": "text", "content": "Be brief."}]),
        IN: msgs({"role": "user", "parts": [TEXT]}),
        OUT: msgs({"role": "assistant", "parts": [TEXT, CALL], "finish_reason": "tool_calls"}),
    },
    {  # every escape JSON has, raw UTF-8, emoji, keys in another order, whitespace everywhere
        IN: '[ { "parts" : [ { "content" : "a\\"b\\\\c\\/d\\n\\t\\r\\b\\f\\u00e9\\ud83d\\ude00\\u0001\\u001f" ,'
        ' "type" : "text" } ] , "role" : "user" } ] \n',
        OUT: json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": "grüße 😀 \u2028 \x7f"}]}],
            ensure_ascii=False,
        ),
    },
    {
        IN: msgs(
            "bare string",
            {
                "role": "user",
                "parts": ["a", {"type": "text", "text": "b"}, {"type": "text", "content": None, "text": "c"}],
            },
        )
    },
    {IN: msgs(1, None, [2], {"role": "user", "parts": [3, None, [4], {"type": "text", "content": "x"}]})},
    {OUT: json.dumps({"role": "assistant", "parts": [TEXT], "finish_reason": "length", "name": "bot"})},
    {
        IN: msgs(
            {"role": 7, "parts": [TEXT]}, {"role": "", "parts": [TEXT], "name": 5, "finish_reason": ["x"]}
        )
    },
    {  # keys the mapping ignores may hold anything valid, floats and big integers included
        IN: '[{"role":"user","parts":[{"type":"text","content":"x","meta":{"a":1.5,"a":2,"b":1e999}}],'
        '"extra":{"k":123456789012345678901234567890,"k":-0.0}}]'
    },
    {
        OUT: msgs(
            {
                "role": "assistant",
                "parts": [
                    {"type": "tool_call", "name": "f", "arguments": '{"as": "a string"}'},
                    {"type": "tool_call", "name": None, "arguments": {"z": {"y": [[], {}, -0, 0, 10**17]}}},
                    {"type": "tool_call", "id": "x"},
                    {"arguments": [True, False], "type": "tool_call", "name": ""},
                    {"type": "tool_call_response", "id": "c1", "response": {"ok": True, "eta": 3}},
                    {"type": "tool_call_response", "response": "plain"},
                    {"type": "tool_call_response", "id": "c2"},
                ],
            }
        )
        .replace('"z"', '"z" ')
        .replace("[[], {}, 0, 0,", "[[], {}, -0, 0,")
    },
    {IN: "[]", OUT: msgs({"role": "assistant", "parts": []})},
    {OUT: msgs({"role": "assistant", "parts": [{"type": "text", "content": ""}, TEXT, TEXT]})},
    {
        SYS: json.dumps({"type": "text", "content": "only a system part"}),
        OUT: msgs({"role": "a", "parts": [TEXT]}),
    },
    {
        IN: msgs({"role": "user", "parts": [TEXT]}),
        OUT: msgs({"role": "assistant", "parts": [TEXT]}),
        "gen_ai.prompt": "legacy, unused: the current key is there",
    },
]
LANE_DECLINED: list[dict[str, Any]] = [
    {
        OUT: msgs(
            {"role": "assistant", "parts": [{"type": "tool_call", "name": "f", "arguments": {"x": 1.5}}]}
        )
    },
    {OUT: msgs({"role": "assistant", "parts": [{"type": "tool_call", "name": "f", "arguments": 10**18}]})},
    {OUT: '[{"role":"assistant","parts":[{"type":"tool_call","name":"f","arguments":{"a":1,"a":2}}]}]'},
    {IN: '[{"role":"user","parts":[{"type":"text","content":"\\ud800"}]}]'},
    {IN: '[{"role":"user","parts":[{"type":"text","content":"raw\ttab"}]}]'},
    {IN: msgs({"role": "user", "parts": [TEXT]}) + " x"},
    {IN: '[{"role":"user","parts":[{"type":"text","content":"x"}]'},
    {OUT: msgs({"role": "assistant", "parts": [{"type": "reasoning", "content": "hm"}]})},
    {IN: msgs({"role": "user", "content": "OpenAI style"})},
    {IN: msgs({"role": "user", "parts": [TEXT], "role ": "x", "parts ": 1}).replace('"role "', '"role"')},
    {IN: msgs({})},
    {OUT: msgs({"role": "tool", "parts": [{"type": "tool_call_response", "result": "old spelling"}]})},
    {IN: msgs({"role": "user", "parts": [{"type": "text", "content": 42}]})},
    {OUT: msgs({"role": "assistant", "parts": [{"type": "tool_call", "name": 5}]})},
    {OUT: msgs({"role": "assistant", "parts": [TEXT]}), "gen_ai.prompt": "legacy prompt"},
    {SYS: "[]", IN: msgs({"role": "user", "parts": [TEXT]})},
    {SYS: "plain text instructions", IN: msgs({"role": "user", "parts": [TEXT]})},
    {
        OUT: msgs(
            {
                "role": "assistant",
                "parts": [{"type": "tool_call", "arguments": json.loads("[" * 70 + "]" * 70)}],
            }
        )
    },
    {IN: [{"role": "user", "parts": [TEXT]}]},  # structured (an AnyValue array), not a JSON string
    {IN: "", OUT: msgs({"role": "assistant", "parts": [TEXT]})},
]


@pytest.mark.parametrize("attrs", LANE_CASES, ids=[f"lane{i}" for i in range(len(LANE_CASES))])
def test_direct_lane_writes_what_the_reference_writes(attrs):
    assert lane_both(attrs) == "lane"


@pytest.mark.parametrize("attrs", LANE_DECLINED, ids=[f"declined{i}" for i in range(len(LANE_DECLINED))])
def test_direct_lane_declines_what_a_parse_and_dump_would_change(attrs):
    assert lane_both(attrs) == "declined"


def test_direct_lane_takes_the_workload_and_can_be_switched_off():
    spans = workload_spans(500)
    _, h0, d0 = NATIVE.content_lane()
    on = [normalize_spans(s, now_ns=1) for s in spans]
    on_state, h1, d1 = NATIVE.content_lane()
    assert on_state is True
    assert (h1 - h0, d1 - d0) == (300, 0)  # every chat span (3 of 5); spans without messages are not counted
    assert NATIVE.content_lane(False)[0] is False
    try:
        off = [normalize_spans(s, now_ns=1) for s in spans]
        assert NATIVE.content_lane()[1:] == (h1, d1)
    finally:
        NATIVE.content_lane(True)
    assert [canon(r) for r in on] == [canon(r) for r in off]


lane_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)  # no lone surrogates
lane_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**18) + 1, 10**18 - 1), lane_text),
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(lane_text, c, max_size=3)),
    max_leaves=8,
)
lane_part = st.one_of(
    lane_text,
    st.fixed_dictionaries({"type": st.just("text"), "content": lane_text}),
    st.fixed_dictionaries(
        {"type": st.just("tool_call")},
        optional={"id": lane_text, "name": st.one_of(st.none(), lane_text), "arguments": lane_json},
    ),
    st.fixed_dictionaries(
        {"type": st.just("tool_call_response")}, optional={"id": lane_text, "response": lane_json}
    ),
)
lane_message = st.one_of(
    lane_text,
    st.fixed_dictionaries(
        {"parts": st.lists(lane_part, max_size=4)},
        optional={
            "role": st.one_of(st.sampled_from(["user", "assistant", "tool"]), lane_text, lane_json),
            "name": st.one_of(lane_text, lane_json),
            "finish_reason": st.one_of(lane_text, lane_json),
            "other": lane_json,
        },
    ),
)


@st.composite
def lane_value(draw: st.DrawFn, item: Any) -> str:
    """Messages (or parts) in the lane's grammar, written the ways JSON writers write them."""
    value = (
        draw(st.lists(item, max_size=4))
        if draw(st.integers(0, 4))
        else draw(item.filter(lambda v: isinstance(v, dict)))
    )
    if isinstance(value, dict):  # keys in any order
        keys = draw(st.permutations(list(value)))
        value = {k: value[k] for k in keys}
    style = draw(st.sampled_from(["compact", "spaced", "indented", "ascii"]))
    if style == "compact":
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if style == "spaced":
        return json.dumps(value, ensure_ascii=False)
    if style == "indented":
        return json.dumps(value, ensure_ascii=False, indent=1)
    return json.dumps(value)  # \uXXXX escapes, surrogate pairs for astral characters


@FUZZ
@given(
    st.fixed_dictionaries(
        {},
        optional={
            SYS: lane_value(st.one_of(lane_text, lane_part.filter(lambda p: isinstance(p, dict)))).filter(
                lambda v: json.loads(v) not in ([], "")
            ),
            IN: lane_value(lane_message),
            OUT: lane_value(lane_message),
        },
    ).filter(lambda a: IN in a or OUT in a)
)
def test_direct_lane_on_generated_messages(attrs):
    """Everything in the lane's grammar is taken by the lane (not declined) and matches the reference."""
    assert lane_both(attrs) == "lane"


# --- content_batch: a request's message JSON parsed up front, with the GIL released -------------------------


def lane_spans(cases: list[dict[str, Any]]) -> list[Span]:
    t = 1_700_000_000_000_000_000
    base: dict[str, Any] = dict(trace_id="ab" * 16, parent_span_id="", name="chat", kind=3)
    times = dict(start_time_unix_nano=t, end_time_unix_nano=t + 1000)
    return [
        Span(**base, **times, span_id=f"{i + 1:016x}", attributes={sc.GEN_AI_OPERATION_NAME: "chat", **attrs})
        for i, attrs in enumerate(cases)
    ]


def rows_without_batch(spans: list[Span]) -> list[Any]:
    reg, now = default_registry(), 1_800_000_000_000_000_000
    res = pipeline._resource_info({}, "default")
    return [outcome(NATIVE.normalize_span, s, reg, res, now) for s in spans]


def test_content_batch_gives_the_rows_a_span_by_span_parse_gives():
    spans = lane_spans(LANE_CASES + LANE_DECLINED) + workload_spans(500)[0]
    reg, now = default_registry(), 1_800_000_000_000_000_000
    res = pipeline._resource_info({}, "default")
    lanes = NATIVE.content_batch(spans)
    # parsed: every lane case, 3 of 5 workload spans (the chat spans), and the declined cases that only the
    # parse itself declines (the others are left at the look-up: legacy keys, non-str values...)
    parsed_declined = sum(NATIVE.content_batch(lane_spans([c])).counts()[1] for c in LANE_DECLINED)
    assert 0 < parsed_declined < len(LANE_DECLINED)
    n_lane = len(LANE_CASES) + 300
    assert lanes.counts() == (len(spans), n_lane + parsed_declined)
    _, h0, d0 = NATIVE.content_lane()
    batched = [outcome(NATIVE.normalize_span, s, reg, res, now, lanes, i) for i, s in enumerate(spans)]
    _, h1, d1 = NATIVE.content_lane()
    assert (h1 - h0, d1 - d0) == (n_lane, len(LANE_DECLINED))
    assert lanes.counts() == (len(spans), 0)  # each parse used once, then freed
    assert batched == rows_without_batch(spans)
    # and through the pipeline, against the Python reference
    ref, fast = both_paths(normalize_spans, spans, now_ns=now)
    assert ref[0][0] == "list" and fast == ref


def test_content_batch_result_is_not_used_for_changed_or_other_spans():
    a, b = lane_spans(LANE_CASES[:2])
    lanes = NATIVE.content_batch([a, b])
    assert lanes.counts() == (2, 2)
    # the span's message changed after the batch: its own (new) text is what the row gets
    new = msgs({"role": "user", "parts": [{"type": "text", "content": "changed afterwards"}]})
    a.attributes = {**a.attributes, IN: new}
    reg, res, now = default_registry(), pipeline._resource_info({}, "default"), 1_800_000_000_000_000_000
    row = NATIVE.normalize_span(a, reg, res, now, lanes, 0)
    assert "changed afterwards" in row["input_text"]
    assert row == NATIVE.normalize_span(a, reg, res, now)
    # another span's slot, an index out of range, a negative one: parsed span by span, the same rows
    assert NATIVE.normalize_span(b, reg, res, now, lanes, 0) == NATIVE.normalize_span(b, reg, res, now)
    assert NATIVE.normalize_span(b, reg, res, now, lanes, 7) == NATIVE.normalize_span(b, reg, res, now)
    assert NATIVE.normalize_span(b, reg, res, now, lanes, -1) == NATIVE.normalize_span(b, reg, res, now)
    assert lanes.counts() == (2, 2)  # neither slot matched its span: both wait, freed with the object
    with pytest.raises(TypeError):
        NATIVE.normalize_span(b, reg, res, now, "not lanes", 1)
    with pytest.raises(TypeError):
        NATIVE.normalize_span(b, reg, res, now, lanes)
    with pytest.raises(TypeError):
        NATIVE.content_batch(5)
    # things that are not spans, attributes that are not dicts: no slot, no error (normalize_span reports them)
    listed = lane_spans(LANE_CASES[:1])[0]
    listed.attributes = [(IN, LANE_CASES[0][IN])]  # type: ignore[assignment]
    odd = NATIVE.content_batch([object(), listed, b, None])
    assert odd.counts() == (4, 1)
    assert NATIVE.content_batch([]).counts() == (0, 0)


def test_content_batch_off_when_the_lane_is_off():
    spans = lane_spans(LANE_CASES[:3])
    assert NATIVE.content_lane(False)[0] is False
    try:
        assert NATIVE.content_batch(spans).counts() == (3, 0)
    finally:
        NATIVE.content_lane(True)


def test_content_batch_lets_other_threads_run_while_it_parses():
    """The point of the batch: the parse runs without the GIL, so the other request threads are not held up."""
    big = "word " * 20_000  # ≈ 100 KB of text per message: a parse long enough to observe
    spans = lane_spans([{IN: msgs({"role": "user", "parts": [{"type": "text", "content": big}]})}] * 40)
    lanes, during = progress_during(lambda: NATIVE.content_batch(spans))
    assert lanes.counts() == (40, 40)
    assert during > 0


def test_the_lane_leaves_no_reference_behind():
    spans = lane_spans(LANE_CASES + LANE_DECLINED)
    # the message attributes' strs (what the lane reads and holds), not shared ones like "chat"
    values = [
        v for s in spans for k, v in s.attributes.items() if k in (IN, OUT, SYS) and isinstance(v, str) and v
    ]
    assert len(values) > 20
    before = [sys.getrefcount(v) for v in values]
    reg, res, now = default_registry(), pipeline._resource_info({}, "default"), 1_800_000_000_000_000_000
    for _ in range(20):
        lanes = NATIVE.content_batch(spans)
        for i, s in enumerate(spans):
            outcome(NATIVE.normalize_span, s, reg, res, now, lanes, i)
            outcome(NATIVE.normalize_span, s, reg, res, now)
        del lanes
        NATIVE.content_batch(spans)  # slots never taken: released with the object
    assert [sys.getrefcount(v) for v in values] == before
