"""OTLP log records → the GenAI content and evaluations they carry (``POST /v1/logs``).

Why logs: the official OTel GenAI instrumentations put prompts and completions in **log records**, not on
the span, in their default mode (reference §1.4 generation 2: one ``gen_ai.{system,user,assistant,tool}.
message`` per input message and one ``gen_ai.choice`` per choice; generation 3: one
``gen_ai.client.inference.operation.details`` with structured ``gen_ai.input/output.messages``). Each record
points at its inference span by (trace_id, span_id); :class:`SpanContent` accumulates what arrived for one
span so that :mod:`collectors.enrich` can fill that span's row whichever of the two arrives first.
``gen_ai.evaluation.result`` records (and span events) become ``feedback`` rows.

Decoding reuses :mod:`collectors.otlp`'s content negotiation, limits and AnyValue conversion, so the two
endpoints refuse the same inputs with the same statuses. Everything here is pure and thread-safe.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from collectors import otlp
from collectors.normalize import messages as msgs
from collectors.normalize.common import as_float, as_str_list, maybe_json
from collectors.otlp import MalformedPayload, Span
from monitor import semconv as sc

EVENT_NAME_ATTR = "event.name"  # where older SDKs put the event name (LogRecord.event_name is newer)
DETAILS_EVENT = "gen_ai.client.inference.operation.details"
CHOICE_EVENT = "gen_ai.choice"
MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
CONTENT_EVENTS = frozenset((DETAILS_EVENT, CHOICE_EVENT, *MESSAGE_EVENTS))
EVALUATION_EVENT = "gen_ai.evaluation.result"
EVALUATION_SOURCE = "otel-evaluation"


@dataclass(slots=True)
class LogRecord:
    """One decoded log record; ``resource`` is shared by its ResourceLogs, never mutate it."""

    trace_id: str  # lowercase hex, "" when absent
    span_id: str
    event_name: str  # LogRecord.event_name, else the event.name attribute
    time_unix_nano: int  # time, else observed time
    attributes: dict[str, Any]
    body: Any = None
    resource: dict[str, Any] = field(default_factory=dict)


def _event_name(name: str, attrs: dict[str, Any]) -> str:
    if name:
        return name
    v = attrs.get(EVENT_NAME_ATTR)
    return v if type(v) is str else ""


# --- decoding ----------------------------------------------------------------------------------------


def decode_logs(body: bytes, fmt: str) -> list[LogRecord]:
    """Decode an ExportLogsServiceRequest in ``fmt`` (``otlp.PROTOBUF`` or ``otlp.JSON``)."""
    return decode_logs_protobuf(body) if fmt == otlp.PROTOBUF else decode_logs_json(body)


def encode_logs_response(fmt: str) -> bytes:
    """A full-success ExportLogsServiceResponse in the request's encoding."""
    return _EMPTY_RESPONSE_PB if fmt == otlp.PROTOBUF else b"{}"


_EMPTY_RESPONSE_PB = ExportLogsServiceResponse().SerializeToString()


def decode_logs_protobuf(data: bytes) -> list[LogRecord]:
    try:
        req = ExportLogsServiceRequest.FromString(data)
    except (DecodeError, RecursionError) as e:
        raise MalformedPayload(f"body is not a valid protobuf ExportLogsServiceRequest ({e})") from None
    out: list[LogRecord] = []
    for rl in req.resource_logs:
        resource = {kv.key: otlp._pb_value(kv.value) for kv in rl.resource.attributes}
        for sl in rl.scope_logs:
            for r in sl.log_records:
                attrs = {kv.key: otlp._pb_value(kv.value) for kv in r.attributes}
                out.append(
                    LogRecord(
                        trace_id=r.trace_id.hex(),
                        span_id=r.span_id.hex(),
                        event_name=_event_name(r.event_name, attrs),
                        time_unix_nano=r.time_unix_nano or r.observed_time_unix_nano,
                        attributes=attrs,
                        body=otlp._pb_value(r.body) if r.HasField("body") else None,
                        resource=resource,
                    )
                )
    return out


def decode_logs_json(data: bytes) -> list[LogRecord]:
    """OTLP/JSON logs: hex ids, int64 as strings, camelCase or snake_case keys (as for traces)."""
    doc = otlp.load_json_object(data, "resourceLogs")
    d = otlp._JSONDecoder()
    path = d.path.parts
    out: list[LogRecord] = []
    for i, rl in enumerate(d.list_of(doc, "resourceLogs", "resource_logs")):
        path[:] = ["resourceLogs", i]
        if not isinstance(rl, dict):
            raise d.fail("", "expected an object")
        resource = d.attrs(d.obj(rl, "resource", "resource").get("attributes"))
        for j, sl in enumerate(d.list_of(rl, "scopeLogs", "scope_logs")):
            path[2:] = ["scopeLogs", j]
            if not isinstance(sl, dict):
                raise d.fail("", "expected an object")
            for k, r in enumerate(d.list_of(sl, "logRecords", "log_records")):
                path[4:] = ["logRecords", k]
                if not isinstance(r, dict):
                    raise d.fail("", "expected an object")
                attrs = d.attrs(r.get("attributes"))
                body = r.get("body")
                out.append(
                    LogRecord(
                        trace_id=d.ident(r, "traceId", "trace_id", 16),
                        span_id=d.ident(r, "spanId", "span_id", 8),
                        event_name=_event_name(d.string(r, "eventName", "event_name"), attrs),
                        time_unix_nano=d.uint(r, "timeUnixNano", "time_unix_nano")
                        or d.uint(r, "observedTimeUnixNano", "observed_time_unix_nano"),
                        attributes=attrs,
                        body=None if body is None else d.value(body),
                        resource=resource,
                    )
                )
    return out


# --- content -----------------------------------------------------------------------------------------


def _body_dict(body: Any) -> dict[str, Any]:
    """A map body (kvlist or JSON object string); a plain string body is the message content."""
    parsed = maybe_json(body)
    if isinstance(parsed, dict):
        return parsed
    if type(parsed) is str:
        return {"content": parsed}
    return {}


def _event_message(role: str, body: Any) -> msgs.Message | None:
    """A v1.27–1.36 ``gen_ai.*.message`` body ``{content, role?, tool_calls?, id?}`` → internal message."""
    b = _body_dict(body)
    m: dict[str, Any] = {
        "role": b.get("role") or role,
        "content": b.get("content"),
        "tool_calls": b.get("tool_calls"),
    }
    if role == "tool" and b.get("id") is not None:
        m["tool_call_id"] = b["id"]
    found = msgs.parse_messages([m], role)
    return found[0] if found else None


def _choice(body: Any) -> tuple[int, msgs.Message] | None:
    """A ``gen_ai.choice`` body ``{index, finish_reason, message:{content, role?}, tool_calls?}``."""
    b = _body_dict(body)
    inner = b.get("message")
    m: dict[str, Any] = dict(inner) if isinstance(inner, dict) else {}
    if b.get("tool_calls") is not None and m.get("tool_calls") is None:
        m["tool_calls"] = b["tool_calls"]
    m["role"] = m.get("role") or "assistant"
    if type(b.get("finish_reason")) is str:
        m["finish_reason"] = b["finish_reason"]
    found = msgs.parse_messages([m], "assistant")
    index = b.get("index")
    return ((index if type(index) is int else 0), found[0]) if found else None


class SpanContent:
    """The content log records received so far for one span; not thread-safe (the enricher locks).

    Rendering is a pure function of the records held, independent of their arrival order (inputs sort
    by record time, then arrival; choices by index), so a span gets the same row whichever came first.
    """

    __slots__ = ("details", "inputs", "outputs", "records")

    def __init__(self) -> None:
        self.details: dict[str, Any] | None = None
        # keyed by (time, event, body) so a re-sent record (an exporter retry) is not a second message
        self.inputs: dict[tuple[int, str, str], tuple[int, int, msgs.Message]] = {}
        self.outputs: dict[int, msgs.Message] = {}
        self.records = 0

    def add(self, rec: LogRecord, seq: int) -> bool:
        """Take one record; False when it carries no content this class understands."""
        name = rec.event_name
        if name == DETAILS_EVENT:
            self.details = {**(self.details or {}), **rec.attributes}
        elif name == CHOICE_EVENT:
            choice = _choice(rec.body)
            if choice is None:
                return False
            self.outputs[choice[0]] = choice[1]
        elif name in MESSAGE_EVENTS:
            k = (rec.time_unix_nano, name, repr(rec.body))
            if k in self.inputs:
                return True
            m = _event_message(MESSAGE_EVENTS[name], rec.body)
            if m is None:
                return False
            self.inputs[k] = (rec.time_unix_nano, seq, m)
        else:
            return False
        self.records += 1
        return True

    def input_messages(self) -> list[msgs.Message]:
        d = self.details or {}
        found = msgs.parse_messages(d.get(sc.GEN_AI_INPUT_MESSAGES), "user") or []
        system = msgs.parse_parts(d.get(sc.GEN_AI_SYSTEM_INSTRUCTIONS)) if d else []
        if system:
            found = [msgs.system_message(system), *found]
        if found:
            return found
        return [m for _, _, m in sorted(self.inputs.values(), key=lambda x: (x[0], x[1]))]

    def output_messages(self) -> list[msgs.Message]:
        d = self.details or {}
        found = msgs.parse_messages(d.get(sc.GEN_AI_OUTPUT_MESSAGES), "assistant")
        if found:
            return found
        return [self.outputs[i] for i in sorted(self.outputs)]

    def apply(self, row: dict[str, Any], has_input: bool, has_output: bool, has_finish: bool) -> None:
        """Fill the parts of ``row`` its span did not carry itself (span attributes win, reference §7.3)."""
        if not has_input:
            found = self.input_messages()
            if found:
                row["input_messages"] = msgs.messages_json(found)
                row["input_text"] = msgs.messages_text(found)
        outputs: list[msgs.Message] = []
        if not has_output:
            outputs = self.output_messages()
            if outputs:
                row["output_messages"] = msgs.messages_json(outputs)
                row["output_text"] = msgs.messages_text(outputs)
        if not has_finish:
            reasons = as_str_list((self.details or {}).get(sc.GEN_AI_RESPONSE_FINISH_REASONS))
            row["finish_reason"] = (reasons[0] if reasons else "") or msgs.finish_reason(
                outputs or self.output_messages()
            )


# --- evaluations → feedback --------------------------------------------------------------------------


def evaluation_feedback(
    attrs: dict[str, Any], trace_id: str, span_id: str, time_ns: int, project: str
) -> dict[str, Any] | None:
    """A ``feedback`` row for one ``gen_ai.evaluation.result`` (log record or span event), None if unnamed.

    ``feedback_id`` hashes (trace, span, name, time) so a re-sent record replaces instead of duplicating.
    """
    name = attrs.get("gen_ai.evaluation.name")
    if type(name) is not str or not name:
        return None
    score = as_float(attrs.get("gen_ai.evaluation.score.value"))
    explanation = attrs.get("gen_ai.evaluation.explanation")
    label = attrs.get("gen_ai.evaluation.score.label")
    comment = explanation if type(explanation) is str and explanation else label if type(label) is str else ""
    response_id = attrs.get(sc.GEN_AI_RESPONSE_ID)
    key = f"{trace_id}|{span_id}|{name}|{time_ns}".encode()
    return {
        "project": project,
        "trace_id": trace_id,
        "span_id": span_id,
        "response_id": response_id if type(response_id) is str else "",
        "kind": name,
        "value": 0.0 if score is None else score,
        "comment": comment,
        "user_id": "",
        "source": EVALUATION_SOURCE,
        "feedback_id": hashlib.sha256(key).hexdigest()[:32],
    }


def project_of(resource: dict[str, Any], default: str) -> str:
    p = resource.get(sc.LLM_MONITOR_PROJECT)
    return p if type(p) is str and p else default


def span_event_feedback(spans: Iterable[Span], default_project: str) -> list[dict[str, Any]]:
    """Feedback rows from ``gen_ai.evaluation.result`` span events (a loop over events only)."""
    out = []
    for s in spans:
        if not s.events:
            continue
        for ev in s.events:
            if ev.name == EVALUATION_EVENT:
                row = evaluation_feedback(
                    ev.attributes,
                    s.trace_id,
                    s.span_id,
                    ev.time_unix_nano,
                    project_of(s.resource, default_project),
                )
                if row is not None:
                    out.append(row)
    return out
