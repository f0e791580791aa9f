"""A deterministic fake of Anthropic's Messages API, for the tests and the demo.

Why: the Anthropic instrumentor must be driven through the *real* ``anthropic`` SDK (its SSE parser,
its stream helpers, its error classes) without a key or network. This speaks the wire format on
127.0.0.1: ``POST /v1/messages`` (JSON, or ``text/event-stream`` with named events when
``stream`` is true) and ``POST /v1/messages/count_tokens``. The HTTP plumbing (threads, keep-alive,
request log, shutdown) is the OpenAI fake's; only the routes and the wire shapes differ.

Everything is a pure function of the request plus one piece of state, the prompt cache:

* Tokens follow :func:`~monitor.demo.fake_replies.count_tokens`. Input (:func:`count_input_tokens`) is
  the tool definitions, then the system blocks, then each message (``+3`` framing per message, and
  :data:`MEDIA_TOKENS` per image or document block). Output is the text of the blocks generated.
* Prompt caching as the real API does it: the prefix up to the last block marked ``cache_control``
  (order: tools, system, messages) is written on first sight (``cache_creation_input_tokens``) and read
  afterwards (``cache_read_input_tokens``); ``input_tokens`` counts only what follows the prefix.
* ``model`` in the response is :func:`resolve_model` of the requested one (dated snapshots).
* Tools: with ``tools`` and a last user turn that is not a ``tool_result``, the reply is a ``tool_use``
  of the first tool (``tool_choice`` ``{"type": "tool"}`` picks by name; ``auto`` adds a short text
  block first, as Claude does; ``none`` answers in text). After a ``tool_result`` it answers quoting it.
* ``thinking`` enabled: a thinking block (with a signature) comes first; its tokens are reported in
  ``usage.output_tokens_details.thinking_tokens``. ``stop_sequences`` and ``max_tokens`` cut the text
  (``stop_reason`` ``stop_sequence`` / ``max_tokens``). ``output_config.format`` of type ``json_schema``
  answers JSON matching the schema.

Control markers, in the last user turn's text or in the ``X-Fake-Markers`` header, as for the OpenAI
fake: ``[[error:529]]`` (Anthropic's error JSON and status; ``[[error:529:1]]`` fails only the first
attempt), ``[[reply:text]]``, ``[[slow:200]]`` (ms; when streaming, the wait sits before the first
content delta), ``[[json]]``; and two for streams: ``[[stream_error]]`` (an ``event: error`` of type
``overloaded_error`` after the first content delta) and ``[[cut]]`` (the connection drops there).
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from monitor.demo import fake_openai
from monitor.demo.fake_openai import MARKERS_HEADER, FakeOpenAIServer, fake_markers
from monitor.demo.fake_replies import (
    Markers,
    count_tokens,
    digest,
    reply_for,
    stream_pieces,
    strip_markers,
    truncate_tokens,
    value_from_schema,
)

__all__ = [
    "MEDIA_TOKENS",
    "MODEL_ALIASES",
    "AnthropicApiError",
    "FakeAnthropicServer",
    "count_input_tokens",
    "count_tokens",
    "fake_markers",
    "resolve_model",
]

#: Requested model → the dated snapshot the real API reports in ``message.model``.
MODEL_ALIASES: dict[str, str] = {
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-opus-4-5": "claude-opus-4-5-20251101",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-opus-4-1": "claude-opus-4-1-20250805",
    "claude-sonnet-4-0": "claude-sonnet-4-20250514",
    "claude-3-7-sonnet-latest": "claude-3-7-sonnet-20250219",
    "claude-3-5-haiku-latest": "claude-3-5-haiku-20241022",
}
MEDIA_TOKENS = 100  # what one image or document block costs
FRAMING_TOKENS = 3  # per message, as in the OpenAI fake

#: status → (error.type, message) as the real API words them.
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request (forced by [[error:400]])."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}
_EXTRA_MARKER_RE = re.compile(r"\[\[(stream_error|cut)\]\]")


def resolve_model(model: str) -> str:
    return MODEL_ALIASES.get(model, model)


class AnthropicApiError(Exception):
    """An Anthropic-shaped error answer: ``{"type": "error", "error": {"type", "message"}}``."""

    def __init__(self, status: int, message: str | None = None) -> None:
        typ, default = _ERRORS.get(
            status, ("api_error" if status >= 500 else "invalid_request_error", "Error")
        )
        super().__init__(message or default)
        self.status = status
        self.type = typ
        self.message = message or default

    def body(self, request_id: str) -> dict[str, Any]:
        return {
            "type": "error",
            "error": {"type": self.type, "message": self.message},
            "request_id": request_id,
        }


class _Cut(Exception):
    """Raised inside a stream to drop the connection without finishing the body."""


# ---------------------------------------------------------------------------------------------------
# Request → reply (pure, apart from the prompt cache the server passes in)
# ---------------------------------------------------------------------------------------------------


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


def _block_text(block: dict[str, Any]) -> str:
    """The text a content block carries (what it costs, what markers are read from)."""
    typ = block.get("type")
    if typ == "text":
        return str(block.get("text", ""))
    if typ == "tool_use":
        return f"{block.get('name', '')} {json.dumps(block.get('input', {}), ensure_ascii=False)}"
    if typ == "tool_result":
        return " ".join(_block_text(b) for b in _blocks(block.get("content")))
    if typ == "thinking":
        return str(block.get("thinking", ""))
    return ""


def _block_tokens(block: dict[str, Any]) -> int:
    if block.get("type") in ("image", "document"):
        return MEDIA_TOKENS
    if block.get("type") == "tool_result":
        return sum(_block_tokens(b) for b in _blocks(block.get("content")))
    return count_tokens(_block_text(block))


def _segments(body: dict[str, Any]) -> list[tuple[int, bool, Any]]:
    """The prompt in cache order as (tokens, is a cache breakpoint, canonical form) per piece."""
    out: list[tuple[int, bool, Any]] = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            name, description = str(tool.get("name", "")), str(tool.get("description", ""))
            text = f"{name} {description} {json.dumps(tool.get('input_schema', {}), sort_keys=True)}"
            out.append((count_tokens(text), "cache_control" in tool, ["tool", text]))
    system = body.get("system")
    blocks = _blocks(system) if system else []
    for i, b in enumerate(blocks):
        out.append(
            (count_tokens(_block_text(b)) + (FRAMING_TOKENS if i == 0 else 0), "cache_control" in b, b)
        )
    for m in body.get("messages") or []:
        for i, b in enumerate(_blocks(m.get("content"))):
            framing = FRAMING_TOKENS if i == 0 else 0
            out.append((_block_tokens(b) + framing, "cache_control" in b, [m.get("role"), b.get("type"), b]))
    return out


def count_input_tokens(body: dict[str, Any]) -> int:
    """All input tokens of a request (cached or not): what ``/v1/messages/count_tokens`` answers."""
    return sum(tokens for tokens, _, _ in _segments(body))


def _cache_prefix(body: dict[str, Any]) -> tuple[int, int | None]:
    """(tokens up to the last cache breakpoint, cache key of that prefix or None without one)."""
    segs = _segments(body)
    last = max((i for i, (_, brk, _) in enumerate(segs) if brk), default=-1)
    if last < 0:
        return 0, None
    return sum(t for t, _, _ in segs[: last + 1]), digest(
        body.get("model"), [c for _, _, c in segs[: last + 1]]
    )


def _last_user_text(messages: Sequence[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return " ".join(_block_text(b) for b in _blocks(m.get("content")) if b.get("type") == "text")
    return ""


@dataclass
class Block:
    """One generated content block."""

    type: str  # text | tool_use | thinking
    text: str = ""
    id: str = ""
    name: str = ""
    input: dict[str, Any] = field(default_factory=dict)
    signature: str = ""

    @property
    def tokens(self) -> int:
        if self.type == "tool_use":
            return count_tokens(f"{self.name} {json.dumps(self.input, ensure_ascii=False)}")
        return count_tokens(self.text)

    def wire(self) -> dict[str, Any]:
        if self.type == "tool_use":
            return {"type": "tool_use", "id": self.id, "name": self.name, "input": self.input}
        if self.type == "thinking":
            return {"type": "thinking", "thinking": self.text, "signature": self.signature}
        return {"type": "text", "text": self.text}


def _tool_answer(messages: Sequence[dict[str, Any]]) -> str:
    results = [b for b in _blocks(messages[-1].get("content")) if b.get("type") == "tool_result"]
    wanted = results[0].get("tool_use_id") if results else None
    name = "the tool"
    for m in messages:
        for b in _blocks(m.get("content")):
            if b.get("type") == "tool_use" and b.get("id") == wanted:
                name = str(b.get("name", name))
    result = _block_text(results[0]).strip() if results else ""
    if len(result) > 300:
        result = result[:297] + "..."
    return f"I looked that up with {name}: {result}. Let me know if there is anything else I can do."


def reply_blocks(body: dict[str, Any], markers: Markers) -> tuple[list[Block], str, str | None]:
    """(content blocks, stop_reason, stop_sequence) for a valid request."""
    messages: list[dict[str, Any]] = body["messages"]
    text = _EXTRA_MARKER_RE.sub(" ", _last_user_text(messages))
    canon = [[m.get("role"), " ".join(_block_text(b) for b in _blocks(m.get("content")))] for m in messages]
    seed = digest(canon)
    last = messages[-1]
    after_tool = last.get("role") == "user" and any(
        b.get("type") == "tool_result" for b in _blocks(last.get("content"))
    )
    blocks: list[Block] = []
    if (body.get("thinking") or {}).get("type") in ("enabled", "adaptive"):
        topic = " ".join(strip_markers(text).split()[:8]) or "the request"
        thought = f"The user asks: {topic}. A short, direct answer is best."
        blocks.append(Block("thinking", thought, signature=f"sig_fake_{seed % 10**10:010d}"))
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and "name" in t]
    choice = body.get("tool_choice") or {}
    wants_tool = (
        bool(tools) and last.get("role") == "user" and not after_tool and choice.get("type") != "none"
    )
    if markers.reply is None and wants_tool:
        tool = next((t for t in tools if t["name"] == choice.get("name")), tools[0])
        args = value_from_schema(tool.get("input_schema") or {"type": "object"}, tool["name"], text, seed)
        if choice.get("type", "auto") == "auto":
            blocks.append(Block("text", f"I'll look that up with {tool['name']}."))
        blocks.append(Block("tool_use", id=f"toolu_fake_{seed % 10**12:012d}", name=tool["name"], input=args))
        return blocks, "tool_use", None
    if markers.reply is not None:
        content = markers.reply
    elif after_tool:
        content = _tool_answer(messages)
    else:
        content = reply_for(text, seed)
    fmt = (body.get("output_config") or {}).get("format") or {}
    if markers.json or fmt.get("type") == "json_schema":
        schema = fmt.get("schema") if fmt.get("type") == "json_schema" else None
        obj = value_from_schema(schema, "root", text, seed) if schema else {"answer": content}
        blocks.append(Block("text", json.dumps(obj, ensure_ascii=False)))
        return blocks, "end_turn", None
    for stop in body.get("stop_sequences") or []:
        at = content.find(stop) if isinstance(stop, str) and stop else -1
        if at >= 0:
            blocks.append(Block("text", content[:at]))
            return blocks, "stop_sequence", stop
    content, cut = truncate_tokens(content, body.get("max_tokens"))
    blocks.append(Block("text", content))
    return blocks, "max_tokens" if cut else "end_turn", None


# ---------------------------------------------------------------------------------------------------
# HTTP (plumbing shared with the OpenAI fake)
# ---------------------------------------------------------------------------------------------------


class _Handler(fake_openai._Handler):
    server: fake_openai._Server

    @property
    def owner(self) -> FakeAnthropicServer:
        owner = self.server.owner
        assert isinstance(owner, FakeAnthropicServer)
        return owner

    def _reply_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send_json(status, obj, {"request-id": self._request_id, **(headers or {})})

    def _fail(self, err: AnthropicApiError) -> None:
        retry = (
            {"retry-after": "0", "retry-after-ms": "20"}
            if err.status in (429, 529) or err.status >= 500
            else {}
        )
        self._reply_json(err.status, err.body(self._request_id), retry)

    def _dispatch(self, method: str) -> None:
        owner = self.owner
        self._request_id = f"req_fake_{owner._next('req'):012d}"
        self._streaming = False
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            body: Any = json.loads(raw) if raw else {}
        except (ValueError, UnicodeDecodeError):
            body = None
        owner._record(path, body)
        owner._record_headers({k.lower(): v for k, v in self.headers.items()})
        if owner.latency_ms > 0:
            time.sleep(owner.latency_ms / 1000.0)
        try:
            route = {"/v1/messages": self._messages, "/v1/messages/count_tokens": self._count}.get(path)
            if route is None or method != "POST":
                raise AnthropicApiError(404, f"Not found: {method} {self.path}")
            if not (self.headers.get("x-api-key") or self.headers.get("authorization")):
                raise AnthropicApiError(401, "x-api-key header is required")
            if not isinstance(body, dict):
                raise AnthropicApiError(400, "There was an issue with your request body: invalid JSON")
            route(body)
        except AnthropicApiError as err:
            self._fail(err)
        except (BrokenPipeError, ConnectionResetError, _Cut):
            self.close_connection = True
        except Exception as exc:  # a bug here must still answer, or the client hangs until timeout
            if self._streaming:
                self.close_connection = True
                return
            self._fail(AnthropicApiError(500, f"fake server bug: {exc!r}"))

    # -- endpoints -----------------------------------------------------------------------------------

    def _validate(self, body: dict[str, Any], *, need_max_tokens: bool) -> None:
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise AnthropicApiError(400, "model: Field required")
        if need_max_tokens and not isinstance(body.get("max_tokens"), int):
            raise AnthropicApiError(400, "max_tokens: Field required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise AnthropicApiError(400, "messages: at least one message is required")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
                raise AnthropicApiError(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")

    def _count(self, body: dict[str, Any]) -> None:
        self._validate(body, need_max_tokens=False)
        self._reply_json(200, {"input_tokens": count_input_tokens(body)})

    def _messages(self, body: dict[str, Any]) -> None:
        self._validate(body, need_max_tokens=True)
        owner = self.owner
        text = _last_user_text(body["messages"]) + " " + unquote(self.headers.get(MARKERS_HEADER) or "")
        markers = Markers.parse(text)
        extra = set(_EXTRA_MARKER_RE.findall(text))
        if markers.error is not None:
            seen = owner._attempt(digest(body))
            if markers.error_times is None or seen <= markers.error_times:
                raise AnthropicApiError(markers.error)
        blocks, stop_reason, stop_sequence = reply_blocks(body, markers)
        prefix, key = _cache_prefix(body)
        hit = key is not None and owner._cache_seen(key)
        usage: dict[str, Any] = {
            "input_tokens": count_input_tokens(body) - prefix,
            "cache_creation_input_tokens": 0 if hit else prefix,
            "cache_read_input_tokens": prefix if hit else 0,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 0 if hit else prefix,
                "ephemeral_1h_input_tokens": 0,
            },
            "output_tokens": sum(b.tokens for b in blocks),
            "service_tier": "standard",
        }
        thinking = sum(b.tokens for b in blocks if b.type == "thinking")
        if thinking:
            usage["output_tokens_details"] = {"thinking_tokens": thinking}
        message = {
            "id": f"msg_fake_{owner._next('msg'):016d}",
            "type": "message",
            "role": "assistant",
            "model": resolve_model(body["model"]),
            "content": [b.wire() for b in blocks],
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": usage,
        }
        if not body.get("stream"):
            if markers.slow_ms:
                time.sleep(markers.slow_ms / 1000.0)
            self._reply_json(200, message)
            return
        self._sse(_events(message, blocks, markers.slow_ms / 1000.0, extra))

    def _sse(self, events: Iterator[tuple[str, dict[str, Any]]]) -> None:
        """Named SSE events over chunked transfer encoding (the connection stays reusable)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", self._request_id)
        self._streaming = True
        self.end_headers()
        self.wfile.flush()
        gap = self.owner.chunk_delay_ms / 1000.0
        for i, (name, data) in enumerate(events):
            if gap and i:
                time.sleep(gap)
            payload = f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _events(
    message: dict[str, Any], blocks: list[Block], first_delay: float, extra: set[str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The real event sequence: message_start, per block start/ping/deltas/stop, message_delta, message_stop."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {k: v for k, v in usage.items() if k != "output_tokens_details"} | {"output_tokens": 1}
    yield "message_start", {"type": "message_start", "message": start}
    first = True
    for i, block in enumerate(blocks):
        head = block.wire()
        if block.type == "text":
            head["text"] = ""
            deltas = [{"type": "text_delta", "text": p} for p in stream_pieces(block.text)]
        elif block.type == "thinking":
            head.update(thinking="", signature="")
            deltas = [{"type": "thinking_delta", "thinking": p} for p in stream_pieces(block.text)]
            deltas.append({"type": "signature_delta", "signature": block.signature})
        else:
            head["input"] = {}
            raw = json.dumps(block.input, ensure_ascii=False)
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in ["", *stream_pieces(raw, 1)]]
        yield "content_block_start", {"type": "content_block_start", "index": i, "content_block": head}
        if i == 0:
            yield "ping", {"type": "ping"}
        for delta in deltas:
            if first and first_delay > 0:
                time.sleep(first_delay)
            yield "content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}
            if first and "stream_error" in extra:
                yield (
                    "error",
                    {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                )
                return
            if first and "cut" in extra:
                raise _Cut
            first = False
        yield "content_block_stop", {"type": "content_block_stop", "index": i}
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    out_usage: dict[str, Any] = {"output_tokens": usage["output_tokens"]}
    if "output_tokens_details" in usage:
        out_usage["output_tokens_details"] = usage["output_tokens_details"]
    yield "message_delta", {"type": "message_delta", "delta": delta, "usage": out_usage}
    yield "message_stop", {"type": "message_stop"}


# ---------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------


class FakeAnthropicServer(FakeOpenAIServer):
    """The Anthropic fake on a background thread; ``Anthropic(base_url=srv.base_url, api_key=...)``.

    Same knobs and lifecycle as :class:`~monitor.demo.fake_openai.FakeOpenAIServer` (``latency_ms``,
    ``chunk_delay_ms``, ``requests``, ``clear()``). The prompt cache is per server; ``clear()`` empties it.
    Thread-safe.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cache: set[int] = set()
        self._headers: deque[dict[str, str]] = deque(maxlen=self._requests.maxlen)

    def start(self) -> FakeAnthropicServer:
        if self._httpd is not None:
            return self
        httpd = fake_openai._Server((self.host, self._want_port), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="fake-anthropic", daemon=True
        )
        self._thread.start()
        return self

    def __enter__(self) -> FakeAnthropicServer:
        return self.start()

    @property
    def base_url(self) -> str:
        """What to pass as ``Anthropic(base_url=...)`` (the SDK adds ``/v1/messages`` itself)."""
        return self.url

    @property
    def request_headers(self) -> list[dict[str, str]]:
        """A snapshot of each request's headers (names in lower case), in the order of ``requests``."""
        with self._lock:
            return list(self._headers)

    def clear(self) -> None:
        super().clear()
        with self._lock:
            self._cache.clear()
            self._headers.clear()

    def _record_headers(self, headers: dict[str, str]) -> None:
        with self._lock:
            self._headers.append(headers)

    def _cache_seen(self, key: int) -> bool:
        """True if ``key``'s prefix is cached already; remembers it otherwise (bounded)."""
        with self._lock:
            if key in self._cache:
                return True
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache.add(key)
            return False


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m monitor.demo.fake_anthropic``: serve in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Deterministic Anthropic Messages API fake server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    srv = FakeAnthropicServer(args.host, args.port, latency_ms=args.latency_ms).start()
    print(f"fake Anthropic API on {srv.base_url} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
