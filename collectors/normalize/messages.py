"""One internal message shape for every convention, and its plain-text rendering.

Every convention's prompt/completion representation (OTel GenAI parts JSON, OpenAI-style ``content`` +
``tool_calls``, later the indexed OpenLLMetry/OpenInference forms) is converted to::

    [{"role": str, "content": str, "parts": [Part, ...], "name"?: str, "finish_reason"?: str}]

``parts`` keeps the OTel GenAI part objects (``text``, ``tool_call``, ``tool_call_response``, ``blob``…)
so structure survives into ``spans.input_messages``; ``content`` is the concatenated text parts
(reference §7 rule 3). :func:`messages_text` is what analyzers read (``spans.input_text``): the text parts
plus readable renderings of tool calls and results, without reasoning or binary content.

All functions are pure and never raise on odd input: what cannot be understood is skipped.
"""

from __future__ import annotations

from typing import Any

from collectors.normalize.common import display_text, loads, to_json

Message = dict[str, Any]


def parse_messages(value: Any, default_role: str) -> list[Message] | None:
    """Messages from a ``gen_ai.*.messages`` value: JSON string, structured list, or one message.

    A string that is not JSON is taken as the text of a single ``default_role`` message (some
    instrumentations put plain prompts there). ``None`` when nothing usable is present.
    """
    v = value
    if type(v) is str:
        if not v:
            return None
        if v[0] in "[{":
            try:
                v = loads(v)
            except ValueError:
                return [_text_message(default_role, value)]
        else:
            return [_text_message(default_role, v)]
    if isinstance(v, dict):
        v = [v]
    if not isinstance(v, list):
        return None
    out = []
    for m in v:
        msg = _message(m, default_role)
        if msg is not None:
            out.append(msg)
    return out


def parse_parts(value: Any) -> list[dict[str, Any]]:
    """Parts from ``gen_ai.system_instructions``: JSON string, structured list, or plain text."""
    v = value
    if type(v) is str:
        if not v:
            return []
        if v[0] in "[{":
            try:
                v = loads(v)
            except ValueError:
                return [{"type": "text", "content": value}]
        else:
            return [{"type": "text", "content": v}]
    if isinstance(v, dict):
        v = [v]
    if not isinstance(v, list):
        return []
    return [p for p in (_part(x) for x in v) if p is not None]


def system_message(parts: list[dict[str, Any]]) -> Message:
    return {"role": "system", "content": _content(parts), "parts": parts}


def _text_message(role: str, text: str) -> Message:
    return {"role": role, "content": text, "parts": [{"type": "text", "content": text}]}


def _message(m: Any, default_role: str) -> Message | None:
    if type(m) is str:
        return _text_message(default_role, m)
    if not isinstance(m, dict):
        return None
    role = m.get("role")
    if type(role) is not str or not role:
        role = default_role
    raw_parts = m.get("parts")
    parts: list[dict[str, Any]] = []
    if isinstance(raw_parts, list):
        for p in raw_parts:
            np = _part(p)
            if np is not None:
                parts.append(np)
    else:
        _openai_style_parts(m, parts)
    msg: Message = {"role": role, "content": _content(parts), "parts": parts}
    name = m.get("name")
    if type(name) is str and name:
        msg["name"] = name
    finish = m.get("finish_reason")
    if type(finish) is str and finish:
        msg["finish_reason"] = finish
    return msg


def _openai_style_parts(m: dict[str, Any], parts: list[dict[str, Any]]) -> None:
    """``{role, content, tool_calls?, tool_call_id?}`` (OpenAI chat, gen_ai log event bodies) → parts."""
    content = m.get("content")
    call_id = m.get("tool_call_id", m.get("id"))
    if m.get("role") == "tool" and content is not None:
        part: dict[str, Any] = {"type": "tool_call_response", "response": content}
        if call_id is not None:
            part["id"] = call_id
        parts.append(part)
    elif type(content) is str:
        if content:
            parts.append({"type": "text", "content": content})
    elif isinstance(content, list):
        for p in content:
            np = _part(p)
            if np is not None:
                parts.append(np)
    elif isinstance(content, dict):
        np = _part(content)
        if np is not None:
            parts.append(np)
    calls = m.get("tool_calls")
    if isinstance(calls, list):
        for c in calls:
            np = _part(c)
            if np is not None:
                parts.append(np)


def _part(p: Any) -> dict[str, Any] | None:
    if type(p) is str:
        return {"type": "text", "content": p}
    if not isinstance(p, dict):
        return None
    t = p.get("type")
    if t == "text" or (t is None and ("content" in p or "text" in p)):
        c = p.get("content")
        if c is None:
            c = p.get("text")  # OpenAI content part spelling
        return {"type": "text", "content": c if type(c) is str else display_text(c)}
    fn = p.get("function")
    if t == "function" or (t is None and isinstance(fn, dict)):
        if not isinstance(fn, dict):
            fn = {}
        call: dict[str, Any] = {"type": "tool_call", "name": fn.get("name", "")}
        if p.get("id") is not None:
            call["id"] = p["id"]
        if "arguments" in fn:
            call["arguments"] = fn["arguments"]
        return call
    if t == "tool_call_response" and "response" not in p and "result" in p:
        fixed = dict(p)
        fixed["response"] = fixed.pop("result")
        return fixed
    return p


def _content(parts: list[dict[str, Any]]) -> str:
    texts = [p["content"] for p in parts if p.get("type") == "text" and p.get("content")]
    if len(texts) == 1:
        return texts[0]
    return "\n".join(texts)


def _value_text(v: Any) -> str:
    return v if type(v) is str else display_text(v)


def part_text(p: dict[str, Any]) -> str:
    """Readable text of one part for ``input_text``/``output_text`` ("" when it has none)."""
    t = p.get("type")
    if t == "text":
        c = p.get("content")
        return c if type(c) is str else ""
    if t == "tool_call":
        args = p.get("arguments")
        return f"[tool_call] {p.get('name') or ''}({'' if args is None else _value_text(args)})"
    if t == "tool_call_response":
        return f"[tool_result] {_value_text(p.get('response'))}"
    if t == "server_tool_call":
        return f"[server_tool_call] {p.get('name') or ''}"
    if t in ("blob", "file", "uri"):
        label = p.get("modality") or p.get("mime_type") or t
        uri = p.get("uri")
        return f"[{label}: {uri}]" if type(uri) is str else f"[{label}]"
    return ""  # reasoning, compaction, unknown: kept in the parts, not in the text analyzers read


def message_text(msg: Message) -> str:
    pieces = []
    for p in msg.get("parts", ()):
        if p.get("type") == "text":  # the common case, inlined: part_text() would return the same
            x = p.get("content")
            if type(x) is not str:
                continue
        else:
            x = part_text(p)
        if x:
            pieces.append(x)
    return "\n".join(pieces)


def messages_text(messages: list[Message]) -> str:
    texts = []
    for m in messages:
        x = message_text(m)
        if x:
            texts.append(x)
    return "\n\n".join(texts)


def finish_reason(messages: list[Message]) -> str:
    for m in messages:
        f = m.get("finish_reason")
        if f:
            return str(f)
    return ""


def messages_json(messages: list[Message]) -> str:
    return to_json(messages) if messages else ""
