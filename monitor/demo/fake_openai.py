"""A deterministic OpenAI-compatible fake server for the demo and the tests.

Why a fake: the demo must run on a laptop without an API key or network, and the instrumentor tests
must drive the *real* ``openai`` SDK (its retries, its SSE parser, its types) rather than a mock of it.
So this speaks the wire format — JSON bodies, OpenAI-shaped errors, ``text/event-stream`` with chunked
transfer encoding on HTTP/1.1 keep-alive — on 127.0.0.1, built on the stdlib only.

Everything is a pure function of the request, so a test can compute what it will get:

* Replies are picked from a fixed list by a SHA-256 of the messages (``stream`` and other options do
  not enter the hash, so a streamed answer reassembles to the non-streamed one).
* Tokens follow :func:`count_tokens`; a chat prompt costs ``count_tokens(content) + 3`` per message
  (:func:`count_message_tokens`), the completion costs ``count_tokens(reply)``.
* ``model`` in the response is :func:`resolve_model` of the requested one (``gpt-4o-mini`` →
  ``gpt-4o-mini-2024-07-18``, as the real API reports dated snapshots; unknown names echo back).

Control markers in the last user message (or the legacy ``prompt``) steer a request:
``[[error:429]]`` (any 4xx/5xx; ``[[error:429:1]]`` fails only the first attempt of that exact request,
so SDK retries can succeed), ``[[reply:exact text]]``, ``[[slow:200]]`` (milliseconds; for streams the
wait sits between the headers and the first chunk, so time-to-first-token is visible) and ``[[json]]``.
Model ``fake-error`` always answers 500.

The same markers may instead travel in a ``X-Fake-Markers`` request header (percent-encoded, e.g.
through ``extra_headers=fake_markers("[[reply:...]]")``). The demo uses that so the prompts an
instrumentor captures read like real user text: a forced toxic *output* must not make the *input*
look toxic too.

Stream faults (best sent in the header, as the reply text does not strip them):
``[[break:N]]`` cuts the connection after N stream events, without the closing chunk, as a dropped
network does (the SDK raises ``APIConnectionError`` mid-iteration); ``[[fail:response.failed]]`` and
``[[fail:error]]`` end a Responses stream after its first delta with that event (non-streamed, the
request answers 500).

Endpoints: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``, ``/v1/responses``
(rules in :mod:`monitor.demo.fake_responses`), ``GET /v1/models``, and Azure OpenAI's URL shapes
``/openai/deployments/{deployment}/{chat/completions|completions|embeddings}?api-version=...`` and
``/openai/responses?api-version=...`` (also ``/openai/v1/...``). On a deployment path the deployment
names the model, as on Azure (the body's ``model`` is ignored); a missing ``api-version`` is a 404.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from monitor.demo.fake_replies import (
    MODEL_ALIASES,
    ApiError,
    Markers,
    chat_choices,
    count_message_tokens,
    count_tokens,
    digest,
    embedding_vector,
    last_user_text,
    reply_for,
    resolve_model,
    stream_pieces,
    truncate_tokens,
    usage_block,
)
from monitor.demo.fake_responses import plan_response, response_object, stream_events

__all__ = [
    "MARKERS_HEADER",
    "MODEL_ALIASES",
    "FakeOpenAIServer",
    "count_message_tokens",
    "count_tokens",
    "fake_markers",
    "resolve_model",
    "serve",
]

log = logging.getLogger(__name__)

#: Request header carrying control markers out of band (see the module docstring).
MARKERS_HEADER = "X-Fake-Markers"

_FAULT_RE = re.compile(r"\[\[(break|fail):([^\]]*)\]\]")
_AZURE_DEPLOYMENT_RE = re.compile(r"/openai/deployments/([^/]+)(/chat/completions|/completions|/embeddings)")
_AZURE_RESPONSES = ("/openai/responses", "/openai/v1/responses")


def fake_markers(*markers: str) -> dict[str, str]:
    """``extra_headers`` that apply ``markers`` (e.g. ``"[[error:429]]"``) without touching the prompt."""
    return {MARKERS_HEADER: quote(" ".join(markers), safe="")}


# ---------------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FakeOpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hang up mid-connection all the time (pool closes, stream aborts): not worth a traceback."""
        log.debug("fake OpenAI server: connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    """One connection. Runs on the server's per-connection thread; never raises out of a request."""

    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 60  # idle keep-alive connections end on their own

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and the demo share stdout
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body (and each SSE chunk) are separate writes: without this, Nagle's algorithm
        # meets the client's delayed ACK and every response stalls ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, add=False)

    # -- plumbing ------------------------------------------------------------------------------------

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", self._request_id)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error(self, err: ApiError) -> None:
        headers = {"retry-after-ms": "20"} if err.status == 429 or err.status >= 500 else {}
        self._send_json(err.status, err.body, headers)

    def _stream(
        self,
        events: Iterator[Any],
        first_delay: float,
        *,
        named: bool = False,
        done: bool = True,
        cut_after: int | None = None,
    ) -> None:
        """SSE over chunked transfer encoding, so the connection stays reusable after ``[DONE]``.

        ``named`` adds ``event: <type>`` lines (Responses API), ``done=False`` leaves out ``[DONE]``,
        ``cut_after`` drops the connection after that many events without the closing chunk.
        """
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self._streaming = True
        self.send_header("x-request-id", self._request_id)
        self.end_headers()
        self.wfile.flush()
        if first_delay > 0:
            time.sleep(first_delay)
        gap = self.server.owner.chunk_delay_ms / 1000.0
        for i, event in enumerate([*events, "[DONE]"] if done else events):
            if cut_after is not None and i >= cut_after:
                self.close_connection = True  # no terminating chunk: the client sees a broken body
                return
            if gap and i:
                time.sleep(gap)
            payload = event if isinstance(event, str) else json.dumps(event, ensure_ascii=False)
            head = f"event: {event['type']}\n" if named and isinstance(event, dict) else ""
            data = f"{head}data: {payload}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        owner = self.server.owner
        self._request_id = f"req_fake_{owner._next('req')}"
        self._streaming = False
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        path = path.rstrip("/")
        try:
            body: Any = json.loads(raw) if raw else {}
        except (ValueError, UnicodeDecodeError):
            body = None
        owner._record(path, body)
        if owner.latency_ms > 0:
            time.sleep(owner.latency_ms / 1000.0)
        try:
            if method == "GET" and path == "/v1/models":
                data = [
                    {"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"}
                    for m in MODEL_ALIASES
                ]
                self._send_json(200, {"object": "list", "data": data})
                return
            routes = {
                "/chat/completions": self._chat,
                "/completions": self._completions,
                "/embeddings": self._embeddings,
                "/responses": self._responses,
            }
            route = routes.get(path[3:]) if path.startswith("/v1/") else None
            azure = _AZURE_DEPLOYMENT_RE.fullmatch(path)
            if azure is not None or path in _AZURE_RESPONSES:
                if path != "/openai/v1/responses" and not parse_qs(query).get("api-version"):
                    raise ApiError(404, "Resource not found")
                route = routes[azure.group(2)] if azure is not None else self._responses
            if route is None or method != "POST":
                raise ApiError(404, f"Invalid URL ({method} {self.path})")
            if not isinstance(body, dict):
                raise ApiError(400, "We could not parse the JSON body of your request.")
            if azure is not None:  # the deployment decides the model on Azure
                body = {**body, "model": unquote(azure.group(1))}
            route(body)
        except ApiError as err:
            self._send_error(err)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a bug here must still answer, or the client hangs until timeout
            if self._streaming:  # mid-stream: no clean way to answer, so end the connection
                self.close_connection = True
                return
            self._send_error(ApiError(500, f"fake server bug: {exc!r}"))

    # -- endpoints -----------------------------------------------------------------------------------

    def _check(self, body: dict[str, Any], text: str, required: str) -> Markers:
        """Common validation and the forced-error / slow markers; returns the markers."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ApiError(400, "you must provide a model parameter", param="model")
        if body.get(required) in (None, "", []):
            raise ApiError(400, f"Missing required parameter: '{required}'.", param=required)
        markers = Markers.parse(text + " " + unquote(self.headers.get(MARKERS_HEADER) or ""))
        if model == "fake-error":
            raise ApiError(500)
        if markers.error is not None:
            seen = self.server.owner._attempt(digest(body))
            if markers.error_times is None or seen <= markers.error_times:
                raise ApiError(markers.error)
        return markers

    def _faults(self, text: str) -> dict[str, str]:
        """The stream-fault markers (``[[break:N]]``, ``[[fail:...]]``) in ``text`` and the header."""
        return dict(_FAULT_RE.findall(text + " " + unquote(self.headers.get(MARKERS_HEADER) or "")))

    @staticmethod
    def _cut(faults: dict[str, str]) -> int | None:
        value = faults.get("break", "").strip()
        return int(value) if value.isdigit() else None

    def _chat(self, body: dict[str, Any]) -> None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise ApiError(400, "'messages' must be a list of message objects.", param="messages")
        markers = self._check(body, last_user_text(messages) if messages else "", "messages")
        choices = chat_choices(body, markers)
        owner = self.server.owner
        rid = f"chatcmpl-fake-{owner._next('chat')}"
        model = resolve_model(body["model"])
        usage = usage_block(count_message_tokens(messages), sum(c.tokens for c in choices))
        base = {"id": rid, "created": int(time.time()), "model": model, "system_fingerprint": "fp_fake"}
        if not body.get("stream"):
            if markers.slow_ms:
                time.sleep(markers.slow_ms / 1000.0)
            out = []
            for i, c in enumerate(choices):
                msg: dict[str, Any] = {"role": "assistant", "content": c.content, "refusal": None}
                if c.tool_calls:
                    msg["tool_calls"] = c.tool_calls
                out.append({"index": i, "message": msg, "logprobs": None, "finish_reason": c.finish_reason})
            self._send_json(
                200,
                {
                    **base,
                    "object": "chat.completion",
                    "choices": out,
                    "usage": usage,
                    "service_tier": "default",
                },
            )
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def events() -> Iterator[dict[str, Any]]:
            extra: dict[str, Any] = {"usage": None} if include_usage else {}

            def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
                ch = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
                return {**base, "object": "chat.completion.chunk", "choices": [ch], **extra}

            for i, c in enumerate(choices):
                yield chunk(
                    i, {"role": "assistant", "content": "" if not c.tool_calls else None, "refusal": None}
                )
                for k, call in enumerate(c.tool_calls):
                    fn = call["function"]
                    head = {
                        "index": k,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": fn["name"], "arguments": ""},
                    }
                    yield chunk(i, {"tool_calls": [head]})
                    for piece in stream_pieces(fn["arguments"], 2):
                        yield chunk(i, {"tool_calls": [{"index": k, "function": {"arguments": piece}}]})
                for piece in stream_pieces(c.content or "") if c.content else []:
                    yield chunk(i, {"content": piece})
                yield chunk(i, {}, c.finish_reason)
            if include_usage:
                yield {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}

        faults = self._faults(last_user_text(messages))
        self._stream(events(), markers.slow_ms / 1000.0, cut_after=self._cut(faults))

    def _completions(self, body: dict[str, Any]) -> None:
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else [str(p) for p in prompt or []]
        markers = self._check(body, prompts[-1] if prompts else "", "prompt")
        owner = self.server.owner
        texts: list[tuple[str, str]] = []
        for p in prompts:
            text = markers.reply if markers.reply is not None else " " + reply_for(p, digest("completion", p))
            text, cut = truncate_tokens(text, body.get("max_tokens"))
            texts.append((text, "length" if cut else "stop"))
        usage = usage_block(
            sum(count_tokens(p) for p in prompts), sum(count_tokens(t) for t, _ in texts), chat=False
        )
        base = {
            "id": f"cmpl-fake-{owner._next('cmpl')}",
            "created": int(time.time()),
            "model": resolve_model(body["model"]),
        }
        if not body.get("stream"):
            if markers.slow_ms:
                time.sleep(markers.slow_ms / 1000.0)
            choices = [
                {"text": t, "index": i, "logprobs": None, "finish_reason": f}
                for i, (t, f) in enumerate(texts)
            ]
            self._send_json(200, {**base, "object": "text_completion", "choices": choices, "usage": usage})
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def events() -> Iterator[dict[str, Any]]:
            def chunk(i: int, text: str, finish: str | None) -> dict[str, Any]:
                ch = {"text": text, "index": i, "logprobs": None, "finish_reason": finish}
                return {**base, "object": "text_completion", "choices": [ch]}

            for i, (text, finish) in enumerate(texts):
                for piece in stream_pieces(text):
                    yield chunk(i, piece, None)
                yield chunk(i, "", finish)
            if include_usage:
                yield {**base, "object": "text_completion", "choices": [], "usage": usage}

        self._stream(events(), markers.slow_ms / 1000.0)

    def _responses(self, body: dict[str, Any]) -> None:
        raw = body.get("input")
        if not isinstance(raw, (str, list)) or (
            isinstance(raw, list) and not all(isinstance(i, dict) for i in raw)
        ):
            raise ApiError(
                400, "Invalid type for 'input': expected a string or an array of input items.", param="input"
            )
        plan_text = last_user_text([{"role": "user", "content": raw}] if isinstance(raw, str) else raw)
        markers = self._check(body, plan_text, "input")
        faults = self._faults(plan_text)
        owner = self.server.owner
        plan = plan_response(body, markers, lambda kind: f"{kind}_fake_{owner._next(kind)}", int(time.time()))
        if not body.get("stream"):
            if faults.get("fail"):
                raise ApiError(500)
            if markers.slow_ms:
                time.sleep(markers.slow_ms / 1000.0)
            self._send_json(200, response_object(plan))
            return
        events = stream_events(plan, faults.get("fail") or None)
        self._stream(events, markers.slow_ms / 1000.0, named=True, done=False, cut_after=self._cut(faults))

    def _embeddings(self, body: dict[str, Any]) -> None:
        raw = body.get("input")
        inputs = (
            [raw] if isinstance(raw, str) else [x if isinstance(x, str) else json.dumps(x) for x in raw or []]
        )
        markers = self._check(body, inputs[-1] if inputs else "", "input")
        if markers.slow_ms:
            time.sleep(markers.slow_ms / 1000.0)
        dims = int(body.get("dimensions") or 16)
        if dims < 1:
            raise ApiError(400, "dimensions must be at least 1.", param="dimensions")
        data = []
        for i, text in enumerate(inputs):
            vec = embedding_vector(text, dims)
            emb: Any = vec
            if body.get("encoding_format") == "base64":
                emb = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(count_tokens(t) for t in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        self._send_json(
            200, {"object": "list", "data": data, "model": resolve_model(body["model"]), "usage": usage}
        )


# ---------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------


class FakeOpenAIServer:
    """The fake, on a background thread. ``port=0`` picks a free port (read ``.port`` after start).

    ``latency_ms`` delays every request (network + queueing); ``chunk_delay_ms`` spaces stream chunks
    so a streamed call lasts visibly longer than its time to first token. ``record_limit`` bounds the
    recorded ``requests`` (oldest dropped) so a demo left running for days does not grow without end.
    Thread-safe: ``requests`` may be read while the server runs.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0.0,
        chunk_delay_ms: float = 0.0,
        record_limit: int = 10_000,
    ) -> None:
        self.host = host
        self._want_port = port
        self.latency_ms = latency_ms
        self.chunk_delay_ms = chunk_delay_ms
        self._lock = threading.Lock()
        self._requests: deque[tuple[str, Any]] = deque(maxlen=record_limit)
        self._counters: dict[str, int] = {}
        self._attempts: dict[int, int] = {}
        self._conns: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        if self._httpd is not None:
            return self
        httpd = _Server((self.host, self._want_port), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, then cut open keep-alive connections so no handler thread lingers."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- introspection -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeOpenAIServer is not running; call start() first")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Root URL, without ``/v1``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to pass as ``OpenAI(base_url=...)``."""
        return f"{self.url}/v1"

    @property
    def requests(self) -> list[tuple[str, Any]]:
        """A snapshot of (path, parsed JSON body) per request received; body is None if unparseable."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._attempts.clear()

    # -- called from handler threads -----------------------------------------------------------------

    def _record(self, path: str, body: Any) -> None:
        with self._lock:
            self._requests.append((path, body))

    def _next(self, name: str) -> int:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + 1
            return self._counters[name]

    def _attempt(self, key: int) -> int:
        with self._lock:
            if len(self._attempts) > 10_000:  # bounded, like the request log
                self._attempts.clear()
            self._attempts[key] = self._attempts.get(key, 0) + 1
            return self._attempts[key]

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)


def serve(host: str = "127.0.0.1", port: int = 8000, latency_ms: float = 0.0) -> None:
    """Run the fake in the foreground until Ctrl-C (for ``python -m monitor.demo.fake_openai``)."""
    srv = FakeOpenAIServer(host, port, latency_ms=latency_ms).start()
    print(f"fake OpenAI API on {srv.base_url} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Deterministic OpenAI-compatible fake server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.latency_ms)


if __name__ == "__main__":
    main()
