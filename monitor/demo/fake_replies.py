"""What the fake OpenAI server answers: pure functions of the request, no I/O.

Kept apart from the HTTP plumbing in :mod:`monitor.demo.fake_openai` so the rules a test relies on
(token counting, reply choice, markers, tool-call arguments) read in one place and can be unit-tested
without a socket. See that module's docstring for the contract.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MODEL_ALIASES",
    "ApiError",
    "Choice",
    "Markers",
    "chat_choices",
    "count_message_tokens",
    "count_tokens",
    "embedding_vector",
    "resolve_model",
    "value_from_schema",
]

#: Requested model → the dated snapshot the real API reports in ``response.model``.
MODEL_ALIASES: dict[str, str] = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
    "gpt-3.5-turbo-instruct": "gpt-3.5-turbo-instruct",
    "text-embedding-3-small": "text-embedding-3-small",
}

_REPLIES = (
    "Thanks for reaching out! About '{topic}': you can change this from your account settings under Billing, and the change takes effect immediately.",
    "Good question. For '{topic}', the usual fix is to sign out, clear the app cache and sign back in. If it persists, our support team can take a closer look.",
    "Sure! Regarding '{topic}': orders ship within 2 business days and the tracking link is emailed as soon as the parcel leaves our warehouse.",
    "I can help with that. For '{topic}', refunds go back to the original payment method within 5 to 7 business days after we receive the return.",
    "Here are the steps for '{topic}': 1. Open the dashboard. 2. Select the item. 3. Click Save. Let me know if any step does not work as expected.",
    "According to our documentation, '{topic}' is supported on the Pro and Enterprise plans. The Free plan is limited to three projects.",
    "Happy to help! '{topic}' usually takes a few minutes to propagate, so please try again shortly and refresh the page.",
    "Let me explain '{topic}': your data is encrypted at rest and in transit, and you can export it at any time from the Privacy page.",
)
_REPLIES_JA = (
    "お問い合わせありがとうございます。「{topic}」については、アカウント設定の「請求」から変更できます。",
    "ご質問ありがとうございます。「{topic}」の件は、通常2営業日以内に対応いたします。",
    "承知しました。「{topic}」について、ダッシュボードの設定画面からご確認いただけます。",
)

#: status → (type, code, message) the way the real API words them.
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request (forced by [[error:400]])."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-fake****."),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported.",
    ),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you do not have access to it.",
    ),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again in 20ms."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
_TOKEN_RE = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
_MARKER_RE = re.compile(r"\[\[(error|reply|slow|json)(?::(.*?))?\]\]", re.DOTALL)
_ID_RE = re.compile(r"\b[A-Z]{1,4}-?\d{3,}\b|\b\d{4,}\b")
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
_NUMBER_RE = re.compile(r"\b\d+\b")


def count_tokens(text: str) -> int:
    """The fake's tokenizer: whitespace-separated words, each CJK character counting as one word.

    Deliberately simple so a test can predict ``usage`` exactly; the CJK rule keeps Japanese text
    from collapsing into a single "token".
    """
    return len(_TOKEN_RE.findall(text))


def _content_text(content: Any) -> str:
    """Plain text of a message's ``content``: a string, or the text parts of a parts list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _message_text(message: dict[str, Any]) -> str:
    """What a message costs: its content, plus the name and arguments of any tool calls it carries."""
    parts = [_content_text(message.get("content"))]
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        parts += [str(fn.get("name", "")), str(fn.get("arguments", ""))]
    return " ".join(p for p in parts if p)


def count_message_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """Prompt tokens of a chat request: ``count_tokens(text) + 3`` per message (3 = role framing)."""
    return sum(count_tokens(_message_text(m)) + 3 for m in messages)


def resolve_model(model: str) -> str:
    """The ``model`` a response reports for a requested one (see :data:`MODEL_ALIASES`)."""
    return MODEL_ALIASES.get(model, model)


def digest(*parts: Any) -> int:
    """A stable 64-bit hash of JSON-able parts (``hash()`` is salted per process, this is not)."""
    raw = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode()
    return int.from_bytes(hashlib.sha256(raw).digest()[:8], "big")


@dataclass(frozen=True)
class Markers:
    """Control markers found in a request's user text."""

    error: int | None = None
    error_times: int | None = None  # None: every attempt fails
    reply: str | None = None
    slow_ms: float = 0.0
    json: bool = False

    @classmethod
    def parse(cls, text: str) -> Markers:
        error = times = reply = None
        slow, as_json = 0.0, False
        for kind, arg in _MARKER_RE.findall(text):
            if kind == "error":
                code, _, n = arg.partition(":")
                error = int(code) if code.strip().isdigit() and 400 <= int(code) <= 599 else 500
                times = int(n) if n.strip().isdigit() else None
            elif kind == "reply":
                reply = arg
            elif kind == "slow":
                try:
                    slow = max(0.0, float(arg or 0))
                except ValueError:
                    slow = 0.0
            else:
                as_json = True
        return cls(error, times, reply, slow, as_json)


def strip_markers(text: str) -> str:
    return " ".join(_MARKER_RE.sub(" ", text).split())


def _topic(text: str) -> str:
    clean = strip_markers(text)
    if re.search(f"[{_CJK}]", clean):
        return clean[:20] or "ご質問"
    words = clean.split()
    topic = " ".join(words[:12]) + (" ..." if len(words) > 12 else "")
    return topic.rstrip("?.!,;:") or "your request"


def reply_for(text: str, seed: int) -> str:
    """A plausible support answer: Japanese questions get a Japanese answer."""
    topic = _topic(text)
    pool = _REPLIES_JA if re.search(f"[{_CJK}]", topic) else _REPLIES
    return pool[seed % len(pool)].format(topic=topic)


def truncate_tokens(text: str, limit: int | None) -> tuple[str, bool]:
    """Cut ``text`` after ``limit`` tokens, as ``max_tokens`` does (finish_reason ``length``)."""
    if limit is None:
        return text, False
    matches = list(_TOKEN_RE.finditer(text))
    if len(matches) <= limit:
        return text, False
    return (text[: matches[limit - 1].end()] if limit > 0 else ""), True


def value_from_schema(schema: dict[str, Any], name: str, text: str, seed: int, depth: int = 0) -> Any:
    """A deterministic value for a JSON schema, filled from the user's text where it plausibly fits.

    Used for tool-call arguments and ``json_schema`` replies, so ``lookup_order`` gets the order id
    the user typed and an ``email`` field gets the e-mail address in the question.
    """
    if schema.get("enum"):
        return schema["enum"][seed % len(schema["enum"])]
    typ = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "string")
    lname = name.lower()
    if typ == "object":
        if depth > 4:
            return {}
        props = schema.get("properties") or {}
        return {k: value_from_schema(v or {}, k, text, digest(seed, k), depth + 1) for k, v in props.items()}
    if typ == "array":
        return [value_from_schema(schema.get("items") or {}, name, text, seed, depth + 1)]
    if typ in ("integer", "number"):
        found = _NUMBER_RE.findall(text)
        value = int(found[0]) if found and len(found[0]) < 4 else 1 + seed % 9
        return value if typ == "integer" else float(value)
    if typ == "boolean":
        return True
    clean = strip_markers(text)
    if "email" in lname:
        m = _EMAIL_RE.search(clean)
        return m.group(0) if m else "customer@example.com"
    if lname == "id" or lname.endswith(("_id", "id", "number", "code")):
        m = _ID_RE.search(clean)
        return m.group(0) if m else f"ID-{seed % 10000:04d}"
    return clean[:120] or name


# ---------------------------------------------------------------------------------------------------
# Request → response (pure)
# ---------------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An OpenAI-shaped error answer; carries the HTTP status."""

    def __init__(self, status: int, message: str | None = None, *, param: str | None = None) -> None:
        typ, code, default = _ERRORS.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None, "Error.")
        )
        super().__init__(message or default)
        self.status = status
        self.body = {"error": {"message": message or default, "type": typ, "param": param, "code": code}}


@dataclass
class Choice:
    """One generated choice: text or tool calls, and why it ended."""

    content: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str = "stop"

    @property
    def tokens(self) -> int:
        if self.tool_calls:
            return sum(count_tokens(_message_text({"tool_calls": [c]})) for c in self.tool_calls)
        return count_tokens(self.content or "")


def last_user_text(messages: Sequence[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return _content_text(m.get("content"))
    return ""


def _tool_answer(messages: Sequence[dict[str, Any]]) -> str:
    """Final answer after a ``tool`` message: names the tool and quotes its result."""
    last = messages[-1]
    call_id = last.get("tool_call_id")
    name = "the tool"
    for m in messages:
        for call in m.get("tool_calls") or []:
            if call.get("id") == call_id:
                name = (call.get("function") or {}).get("name", name)
    result = _content_text(last.get("content")).strip()
    if len(result) > 300:
        result = result[:297] + "..."
    return f"I looked that up with {name}: {result}. Let me know if there is anything else I can do."


def _json_reply(body: dict[str, Any], text: str, base: str, seed: int) -> str:
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None
    if schema:
        obj = value_from_schema(schema, "root", text, seed)
    else:
        obj = {"answer": base, "topic": _topic(text), "confidence": round(0.5 + (seed % 50) / 100, 2)}
    return json.dumps(obj, ensure_ascii=False)


def chat_choices(body: dict[str, Any], markers: Markers) -> list[Choice]:
    """The choices a chat request gets (``n`` of them), before any wire formatting."""
    messages: list[dict[str, Any]] = body["messages"]
    text = last_user_text(messages)
    canon = [[m.get("role"), _message_text(m), m.get("tool_call_id")] for m in messages]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    tools = [t for t in body.get("tools") or [] if t.get("type", "function") == "function"]
    choice_opt = body.get("tool_choice")
    fmt_type = (body.get("response_format") or {}).get("type")
    out = []
    for i in range(max(1, int(body.get("n") or 1))):
        seed = digest(canon) if i == 0 else digest(canon, i)
        last_role = messages[-1].get("role")
        if markers.reply is not None:
            content = markers.reply
        elif tools and last_role == "user" and choice_opt != "none":
            tool = tools[0]
            if isinstance(choice_opt, dict) and choice_opt.get("function"):
                wanted = choice_opt["function"].get("name")
                tool = next((t for t in tools if t["function"].get("name") == wanted), tool)
            fn = tool["function"]
            args = value_from_schema(fn.get("parameters") or {"type": "object"}, fn["name"], text, seed)
            call = {
                "id": f"call_fake_{seed % 10**12:012d}",
                "type": "function",
                "function": {"name": fn["name"], "arguments": json.dumps(args, ensure_ascii=False)},
            }
            out.append(Choice(None, [call], "tool_calls"))
            continue
        elif last_role == "tool":
            content = _tool_answer(messages)
        else:
            content = reply_for(text, seed)
        if markers.json or fmt_type in ("json_object", "json_schema"):
            content = _json_reply(body, text, content, seed)
            out.append(Choice(content))  # never truncate JSON into invalid JSON
            continue
        content, cut = truncate_tokens(content, limit)
        out.append(Choice(content, finish_reason="length" if cut else "stop"))
    return out


def stream_pieces(text: str, words: int = 3) -> list[str]:
    """Split text into stream deltas of a few words; concatenating them gives ``text`` back exactly."""
    toks = re.findall(r"\s*\S+", text)
    if toks and text[len("".join(toks)) :]:
        toks[-1] += text[len("".join(toks)) :]
    return ["".join(toks[i : i + words]) for i in range(0, len(toks), words)] or [text]


def usage_block(prompt: int, completion: int, chat: bool = True) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if chat:
        usage["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
        usage["completion_tokens_details"] = {"reasoning_tokens": 0, "audio_tokens": 0}
    return usage


def embedding_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector for ``text`` (same text → same vector, across runs and machines)."""
    rng = random.Random(digest("embedding", text))
    vec = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = sum(v * v for v in vec) ** 0.5 or 1.0
    return [v / norm for v in vec]
