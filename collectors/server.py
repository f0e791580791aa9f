"""The collector's OTLP/HTTP endpoint (DESIGN §3) on the standard library's threading HTTP server.

Why stdlib: the collector must run inside ``llm-monitor up`` next to chDB and Streamlit without another
event loop, and a thread per connection is plenty when each request only decodes, normalizes and appends
to a queue. HTTP/1.1 keep-alive matters because OTel exporters reuse their connection.

Request path for ``POST /v1/traces``: auth (401) → Content-Type (415) → Content-Encoding (415) → length
(411/413, checked before reading) → read → gunzip (bounded, 413) → decode (400) → normalize →
:meth:`BatchWriter.offer` (503 + Retry-After when full) → 200 with an ExportTraceServiceResponse in the
request's encoding. A span is acknowledged only once it sits in the queue; :meth:`CollectorServer.stop`
finishes in-flight requests and drains the queue, so everything acknowledged reaches the store.

Error bodies follow OTLP/HTTP: a ``google.rpc.Status`` in the request's encoding (protobuf for protobuf
requests, ``{"code", "message"}`` JSON otherwise), with a one-line message meant for humans.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import socketserver
import struct
import threading
import time
from collections import Counter
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from collectors import feedback as fb
from collectors import logs as otlp_logs
from collectors import otlp
from collectors.enrich import Enricher
from collectors.normalize import NormalizerRegistry, default_registry, normalize_spans
from collectors.otlp import MalformedPayload, PayloadTooLarge, RequestError, UnsupportedMedia
from collectors.pricing import Pricer
from collectors.spool import SpoolError
from collectors.unmapped import UNMAPPED_PATH, UnmappedCounter
from collectors.writer import BatchWriter, StoreWriter, Writer, WriterStats

if TYPE_CHECKING:
    from monitor.settings import Settings
    from monitor.store.client import Store

log = logging.getLogger("llm_monitor.collector")

TRACES_PATH = "/v1/traces"
LOGS_PATH = "/v1/logs"
GET_PATHS = ("/healthz", "/metrics", UNMAPPED_PATH)
POST_PATHS = (TRACES_PATH, LOGS_PATH, fb.FEEDBACK_PATH)
JSON_CT = "application/json"
PROTOBUF_CT = "application/x-protobuf"
METRICS_CT = "text/plain; version=0.0.4; charset=utf-8"
IDLE_TIMEOUT = 60.0  # seconds a keep-alive connection (or a stalled body) may sit silent


def _timeval(seconds: float) -> bytes:
    """A ``struct timeval`` for SO_RCVTIMEO (0: no timeout)."""
    whole = int(seconds)
    return struct.pack("@ll", whole, int((seconds - whole) * 1e6))


# After refusing a request whose body was not read, keep reading (and discarding) for this long / this much
# so the client finishes its upload and reads our 4xx, instead of hitting a reset mid-send (which exporters
# treat as a retryable network error and resend the same doomed request).
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 << 20

# HTTP status → google.rpc.Code for OTLP error bodies
_GRPC_CODES = {400: 3, 401: 16, 404: 5, 405: 12, 411: 3, 413: 8, 415: 3, 500: 13, 503: 14}


class CollectorError(RuntimeError):
    """The collector cannot start (e.g. the port is taken); ``str(err)`` is one line for the user."""


class LengthRequired(RequestError):
    status = 411
    reason = "length_required"


class Unauthorized(RequestError):
    status = 401
    reason = "unauthorized"


class CollectorServer:
    """OTLP/HTTP receiver feeding a :class:`BatchWriter`.

    Typical use (embedded or standalone)::

        server = CollectorServer(settings, store)   # or writer=MemoryWriter() in tests
        server.start()                               # binds settings.host:settings.port (0 = any free port)
        print(server.url)                            # real port once started
        ...
        server.stop()                                # graceful: in-flight requests finish, queue drains

    ``start``/``stop`` may be called from any thread; ``stop`` is idempotent.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        *,
        writer: Writer | None = None,
        registry: NormalizerRegistry | None = None,
    ) -> None:
        if writer is None:
            if store is None:
                raise ValueError("CollectorServer needs a store or a writer")
            writer = StoreWriter(store)
            if store.embedded:  # in-process: cannot hang, so RowBinary from the first request on
                writer.learn_types()  # (a server store's types are read by the writer thread)
        self.settings = settings
        self.batch = BatchWriter.from_settings(writer, settings)
        self.registry = registry or default_registry()
        self.enricher = Enricher(project=settings.project)  # log content + user/session across requests
        self.pricer = Pricer.from_settings(settings)  # ConfigError on a bad `prices:` entry, at start-up
        self.unmapped = UnmappedCounter()
        self._api_keys = tuple(k.encode("utf-8") for k in settings.api_keys)
        self._httpd: _HTTPServer | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[_Handler] = set()
        self._conn_cond = threading.Condition(self._lock)
        self._requests: Counter[int] = Counter()
        self._rejected_requests: Counter[str] = Counter()
        self._spans_received = 0
        self._spans_rejected: Counter[str] = Counter()
        # CPU seconds of the request threads per /v1/traces stage (see CPU_STAGES), for /metrics
        self._stage_cpu = dict.fromkeys((*CPU_STAGES, "other"), 0.0)
        self._stage_local = threading.local()  # this thread's current request: CPU its stages took

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Bind and serve on a background thread. Raises :class:`CollectorError` when binding fails.

        A stopped server cannot be restarted (its queue is closed): make a new one.
        """
        if self._httpd is not None:
            return
        if self._stopped.is_set():
            raise CollectorError("this collector was stopped; create a new CollectorServer to serve again")
        host, port = self.settings.host, self.settings.port
        try:
            httpd = _HTTPServer((host, port), _Handler, self)
        except OSError as e:
            raise CollectorError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
        try:
            self.batch.start()  # opens the spool: recovers what a previous run acknowledged
        except SpoolError as e:
            httpd.server_close()
            raise CollectorError(str(e)) from None
        self._httpd = httpd
        self._port = int(httpd.server_address[1])
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="llm-monitor-collector",
            daemon=True,
        )
        self._thread.start()
        log.info("collector listening on %s", self.url)

    @property
    def port(self) -> int:
        """The bound port (the real one when settings.port is 0); still readable after stop()."""
        if self._port is None:
            raise CollectorError("the collector is not started")
        return self._port

    @property
    def url(self) -> str:
        host = self.settings.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop accepting, let in-flight requests finish, write every acknowledged span.

        Returns True when everything acknowledged was written within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            self._stopping = True
            httpd.shutdown()
            httpd.server_close()
            if self._thread is not None:
                self._thread.join()
            with self._conn_cond:
                while self._connections:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        log.warning("%d connections still busy at shutdown", len(self._connections))
                        break
                    for h in self._connections:
                        if not h.busy:
                            h.wake()
                    self._conn_cond.wait(min(0.05, remaining))
        drained = self.batch.close(max(0.0, deadline - time.monotonic()))
        self._stopped.set()
        return drained

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` has finished (for a foreground command); True when it has."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> CollectorServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- request-side helpers (handler threads) -----------------------------------------------------
    def _register(self, h: _Handler) -> None:
        with self._lock:
            self._connections.add(h)

    def _unregister(self, h: _Handler) -> None:
        with self._conn_cond:
            self._connections.discard(h)
            self._conn_cond.notify_all()

    def _count_response(self, code: int, reason: str | None) -> None:
        with self._lock:
            self._requests[code] += 1
            if reason:
                self._rejected_requests[reason] += 1

    def authorized(self, headers: Message) -> bool:
        """Constant-time check of ``Authorization: Bearer`` / ``x-api-key`` against every configured key."""
        if not self._api_keys:
            return True
        given = []
        auth = headers.get("Authorization")
        if auth and auth[:7].lower() == "bearer ":
            given.append(auth[7:].strip())
        key = headers.get("x-api-key")
        if key:
            given.append(key.strip())
        ok = False
        for g in given:
            gb = g.encode("latin-1", "replace")  # http.client decoded the header bytes as latin-1
            for k in self._api_keys:
                ok |= hmac.compare_digest(gb, k)
        return ok

    def ingest(self, body: bytes, content_type: str | None, content_encoding: str | None) -> tuple[bool, int]:
        """Decode, normalize and queue one request body: (queued?, span count). Raises RequestError.

        Each stage's CPU time on this thread is added to ``stage_cpu_seconds_total`` (a few
        ``thread_time()`` reads a request).
        """
        tt = time.thread_time
        t0 = tt()
        fmt = otlp.media_type(content_type)
        data = otlp.decompress(body, content_encoding, self.settings.max_body_bytes)
        spans = otlp.decode_traces(data, fmt)
        t1 = tt()
        rows = normalize_spans(spans, project=self.settings.project, registry=self.registry, propagate=False)
        t2 = tt()
        # before the enricher: it keeps these rows and hands out copies later, so they must be final here
        self.pricer.apply(rows)  # cost_usd / cost_source / cache + reasoning tokens (collectors/pricing.py)
        t3 = tt()
        self.unmapped.observe(rows)  # per-key counts of attributes no mapping used
        t4 = tt()
        rows, evaluations = self.enricher.process_spans(spans, rows)  # may append updated earlier rows
        t5 = tt()
        queued = not evaluations or self.batch.offer(evaluations, table="feedback")
        # evaluations first: if they are refused the whole request is (the client retries, and both
        # tables' keys are deterministic, so a retry replaces rows rather than duplicating them)
        queued = queued and self.batch.offer(rows)
        t6 = tt()
        n = len(rows)
        del spans, rows, evaluations  # freed here, not in the caller: the "free" stage
        t7 = tt()
        with self._lock:
            self._spans_received += n
            if not queued:
                self._spans_rejected[self.batch.last_refusal() or "queue_full"] += n
            cpu = self._stage_cpu
            ticks = (t0, t1, t2, t3, t4, t5, t6, t7)
            for i, stage in enumerate(CPU_STAGES):
                cpu[stage] += ticks[i + 1] - ticks[i]
        self._stage_local.spent = t7 - t0
        return queued, n

    def begin_request_cpu(self) -> None:
        """A /v1/traces request starts on this thread (see :meth:`count_request_cpu`)."""
        self._stage_local.spent = 0.0

    def count_request_cpu(self, seconds: float) -> None:
        """A /v1/traces request's whole CPU time on its thread: what its stages did not take is "other"."""
        spent = getattr(self._stage_local, "spent", 0.0)
        with self._lock:
            self._stage_cpu["other"] += max(0.0, seconds - spent)

    def ingest_logs(
        self, body: bytes, content_type: str | None, content_encoding: str | None
    ) -> tuple[bool, int]:
        """``POST /v1/logs``: GenAI content joined to its spans, evaluations to feedback (collectors/enrich.py)."""
        fmt = otlp.media_type(content_type)
        data = otlp.decompress(body, content_encoding, self.settings.max_body_bytes)
        records = otlp_logs.decode_logs(data, fmt)
        updates, evaluations = self.enricher.process_logs(records)
        queued = not updates or self.batch.offer(updates)
        if queued and evaluations:
            queued = self.batch.offer(evaluations, table="feedback")
        return queued, len(records)

    def ingest_feedback(self, body: bytes, content_encoding: str | None) -> tuple[bool, int]:
        """Validate and queue one ``/v1/feedback`` body, all or nothing: (queued?, items). Raises RequestError."""
        limit = min(self.settings.max_body_bytes, fb.MAX_BODY_BYTES)
        data = otlp.decompress(body, content_encoding, limit)
        rows = fb.parse_feedback(data, project=self.settings.project)
        return self.batch.offer(rows, table="feedback"), len(rows)

    # --- status endpoints ---------------------------------------------------------------------------
    def pending_since(self) -> Any:
        """The oldest acceptance time of rows accepted but not yet stored, or ``None`` (see the writer)."""
        fn = getattr(self.batch, "pending_since", None)
        return fn() if fn is not None else None

    def health(self) -> dict[str, Any]:
        """``/healthz``: ``degraded`` while the store is down or the spool is over 90 % full."""
        st = self.batch.stats()
        out: dict[str, Any] = {
            "status": "ok" if st.healthy else "degraded",
            "queue_depth": st.queue_depth,
            "queue_capacity": st.queue_capacity,
            "received": st.received,
            "written": st.written,
            "store": "ok" if st.healthy else "down",
        }
        if st.spool is not None:
            sp = st.spool
            out["backlog"] = st.backlog
            out["spool"] = {"bytes": sp.bytes, "max_bytes": sp.max_bytes, "segments": sp.segments,
                            "used": round(sp.bytes / sp.max_bytes, 4)}  # fmt: skip
            if sp.bytes > 0.9 * sp.max_bytes:
                out["status"] = "degraded"
        return out

    def metrics_text(self) -> str:
        """Prometheus text exposition (format 0.0.4)."""
        st = self.batch.stats()
        with self._lock:
            requests = sorted(self._requests.items())
            rejected_req = sorted(self._rejected_requests.items())
            received = self._spans_received
            rejected_spans = dict(self._spans_rejected)
        p = "llm_monitor_collector_"
        lines: list[str] = []

        def family(name: str, kind: str, help_: str, samples: list[tuple[str, float | int]]) -> None:
            lines.append(f"# HELP {p}{name} {help_}")
            lines.append(f"# TYPE {p}{name} {kind}")
            lines.extend(f"{p}{name}{labels} {value}" for labels, value in samples)

        family(
            "spans_received_total", "counter", "Spans decoded from well-formed requests.", [("", received)]
        )
        family(
            "spans_accepted_total", "counter", "Spans acknowledged (queued for writing).", [("", st.received)]
        )
        family("spans_written_total", "counter", "Spans written to the store.", [("", st.written)])
        family(
            "spans_rejected_total",
            "counter",
            "Spans refused after decoding, by reason.",
            [
                (f'{{reason="{r}"}}', rejected_spans.get(r, 0))
                for r in sorted({"queue_full", "spool_full", *rejected_spans})
            ],
        )
        family(
            "spans_dropped_total",
            "counter",
            "Acknowledged spans lost (always 0: failed writes are retried).",
            [("", 0)],
        )
        family(
            "requests_total", "counter", "HTTP responses by status code.",
            [(f'{{code="{c}"}}', n) for c, n in requests],
        )  # fmt: skip
        family(
            "requests_rejected_total", "counter", "Refused requests by reason.",
            [(f'{{reason="{r}"}}', n) for r, n in rejected_req],
        )  # fmt: skip
        family("queue_depth", "gauge", "Rows accepted and not yet written.", [("", st.queue_depth)])
        family(
            "queue_capacity", "gauge", "Rows the queue holds before answering 503.", [("", st.queue_capacity)]
        )
        family(
            "write_failures_total",
            "counter",
            "Failed store writes (each is retried).",
            [("", st.write_failures)],
        )
        family("store_up", "gauge", "1 when the latest store write succeeded.", [("", int(st.healthy))])
        family(
            "write_latency_seconds", "summary", "Duration of successful store writes.",
            [("_sum", round(st.write_latency_sum, 6)), ("_count", st.write_count)],
        )  # fmt: skip
        family("write_latency_seconds_last", "gauge", "Duration of the latest successful store write.",
               [("", round(st.last_write_latency, 6))])  # fmt: skip
        with self._lock:
            stage_cpu = dict(self._stage_cpu)
        family(
            "stage_cpu_seconds_total", "counter",
            "CPU time of the request threads per /v1/traces stage: decode (incl. gunzip), normalize, price, "
            "unmapped, enrich, queue (encode + spool + durable wait), free (the request's objects), other "
            "(reading, parsing and answering HTTP).",
            [(f'{{stage="{k}"}}', round(v, 6)) for k, v in stage_cpu.items()],
        )  # fmt: skip
        lines.extend(_write_path_lines(p, st))
        lines.extend(self.pricer.metric_lines(p))
        lines.extend(self.unmapped.metric_lines(p))
        lines.extend(_enrich_lines(p, self.enricher.stats()))
        return "\n".join(lines) + "\n"


_ENRICH_GAUGES = {"pending_spans", "tracked_spans", "tracked_traces"}
# the stages of CollectorServer.ingest, in order, for stage_cpu_seconds_total (plus "other": the rest of
# the request's handling)
CPU_STAGES = ("decode", "normalize", "price", "unmapped", "enrich", "queue", "free")


def _enrich_lines(p: str, stats: dict[str, int]) -> list[str]:
    """The log-join and trace-identity counters of collectors/enrich.py (gauges for its three sizes)."""
    out = []
    for name in sorted(stats):
        kind = "gauge" if name in _ENRICH_GAUGES else "counter"
        metric = f"{p}enrich_{name}" + ("" if kind == "gauge" else "_total")
        out += [f"# TYPE {metric} {kind}", f"{metric} {stats[name]}"]
    return out


def _write_path_lines(p: str, st: WriterStats) -> list[str]:
    """The durable write path's families: rows by table and refusal reason, backlog, spool, fsync."""
    out: list[str] = []

    def family(name: str, kind: str, help_: str, samples: list[tuple[str, float | int]]) -> None:
        out.extend((f"# HELP {p}{name} {help_}", f"# TYPE {p}{name} {kind}"))
        out.extend(f"{p}{name}{labels} {value}" for labels, value in samples)

    family("rows_written_total", "counter", "Rows written to the store, by table.",
           [(f'{{table="{t}"}}', n) for t, n in sorted(st.written_by_table.items())])  # fmt: skip
    family("rows_rejected_total", "counter", "Rows refused by the write path (any table), by reason.",
           [(f'{{reason="{r}"}}', n) for r, n in sorted(st.rejected_by_reason.items())])  # fmt: skip
    family("backlog_rows", "gauge", "Rows acknowledged and not yet written (memory and spool).",
           [("", st.backlog)])  # fmt: skip
    family("quarantined_rows_total", "counter", "Rows the store refused for their data, set aside, by table.",
           [(f'{{table="{t}"}}', n) for t, n in sorted(st.quarantined_by_table.items())])  # fmt: skip
    sp = st.spool
    if sp is None:
        return out
    family("spooled_rows_total", "counter", "Rows appended to the spool.", [("", sp.appended_items)])
    family("spooled_bytes_total", "counter", "Bytes appended to the spool.", [("", sp.appended_bytes)])
    family("replayed_rows_total", "counter", "Rows written from the spool on disk (not from memory).",
           [("", st.replayed)])  # fmt: skip
    family("spool_bytes", "gauge", "Bytes the spool uses on disk.", [("", sp.bytes)])
    family("spool_capacity_bytes", "gauge", "Spool size at which requests get 503.", [("", sp.max_bytes)])
    family("spool_segments", "gauge", "Spool segment files.", [("", sp.segments)])
    family("spool_damaged_records_total", "counter", "Spool records skipped as damaged, by kind.",
           [('{kind="corrupt"}', sp.corrupt_records), ('{kind="torn"}', sp.torn_records)])  # fmt: skip
    family("spool_fsync_seconds", "summary", "Group-commit fsyncs (each covers every waiting request).",
           [("_sum", round(sp.fsync_seconds_sum, 6)), ("_count", sp.fsyncs)])  # fmt: skip
    family("spool_fsync_seconds_last", "gauge", "Duration of the latest spool fsync.",
           [("", round(sp.fsync_seconds_last, 6))])  # fmt: skip
    return out


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() waits for handlers itself, with a deadline
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[_Handler], collector: CollectorServer) -> None:
        self.collector = collector
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can stall start-up.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that vanish mid-request (reset, broken pipe) are routine, not worth a traceback on stderr.
        log.debug("connection from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "llm-monitor-collector"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    server: _HTTPServer

    # --- connection bookkeeping (for a graceful stop) -----------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.busy = False
        self.server.collector._register(self)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.collector._unregister(self)

    def parse_request(self) -> bool:
        self.busy = True  # a request line arrived: this connection is no longer idle
        return super().parse_request()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        finally:
            self.busy = False
            if self.server.collector._stopping:
                self.close_connection = True

    def wake(self) -> None:
        """Unblock an idle keep-alive read so the thread can exit (called by stop())."""
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # --- responses ----------------------------------------------------------------------------------
    def _send(
        self,
        code: int,
        body: bytes,
        content_type: str,
        headers: tuple[tuple[str, str], ...] = (),
        *,
        close: bool = False,
        reason: str | None = None,
    ) -> None:
        self.server.collector._count_response(code, reason)
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        if close and self.command == "POST" and not getattr(self, "_body_read", False):
            self._linger()

    def _linger(self) -> None:
        """Half-close, then drain what the client is still sending (bounded), so it can read our answer."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            drained = 0
            while drained < LINGER_BYTES:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.connection.settimeout(remaining)
                data = self.connection.recv(1 << 16)
                if not data:
                    break
                drained += len(data)
        except OSError:
            pass

    def _error(
        self,
        code: int,
        message: str,
        *,
        fmt: str | None = None,
        close: bool = False,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        grpc_code = _GRPC_CODES.get(code, 2)
        if fmt == otlp.PROTOBUF:
            from google.rpc.status_pb2 import Status

            body, ctype = Status(code=grpc_code, message=message).SerializeToString(), PROTOBUF_CT
        else:
            body, ctype = json.dumps({"code": grpc_code, "message": message}).encode(), JSON_CT
        self._send(code, body, ctype, headers, close=close, reason=reason)

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    def _not_found_or_not_allowed(self, path: str) -> None:
        # The request body (if any) was not read: close rather than misparse it as the next request.
        if path in GET_PATHS or path in POST_PATHS:
            allow = "GET" if path in GET_PATHS else "POST"
            self._error(405, f"method {self.command} not allowed on {path}", close=True,
                        reason="method_not_allowed", headers=(("Allow", allow),))  # fmt: skip
        else:
            self._error(404, f"no such endpoint: {path}", close=True, reason="not_found")

    # --- methods ------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        path = self._path()
        c = self.server.collector
        if path == "/healthz":
            self._send(200, json.dumps(c.health()).encode(), JSON_CT)
        elif path == "/metrics":
            self._send(200, c.metrics_text().encode(), METRICS_CT)
        elif path == UNMAPPED_PATH:
            self._send(200, json.dumps(c.unmapped.snapshot()).encode(), JSON_CT)
        else:
            self._not_found_or_not_allowed(path)

    def do_POST(self) -> None:
        path = self._path()
        if path != TRACES_PATH:
            self._post(path)
            return
        c = self.server.collector
        c.begin_request_cpu()
        t0 = time.thread_time()
        try:
            self._post(path)
        finally:
            c.count_request_cpu(time.thread_time() - t0)

    def _post(self, path: str) -> None:
        self._body_read = False  # per request: a kept-alive connection reuses this handler
        if path == fb.FEEDBACK_PATH:
            self._post_feedback()
            return
        if path != TRACES_PATH and path != LOGS_PATH:
            self._not_found_or_not_allowed(path)
            return
        fmt: str | None = None
        c = self.server.collector
        try:
            if not c.authorized(self.headers):
                raise Unauthorized(
                    "missing or invalid API key (send Authorization: Bearer <key> or x-api-key)"
                )
            fmt = otlp.media_type(self.headers.get("Content-Type"))
            encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
            if encoding not in ("", "identity", "gzip", "x-gzip"):
                raise UnsupportedMedia(f"unsupported Content-Encoding {encoding!r}: use gzip or identity")
            body = self._read_body(c.settings.max_body_bytes)
            ingest = c.ingest_logs if path == LOGS_PATH else c.ingest  # same empty response for both
            queued, n = ingest(body, self.headers.get("Content-Type"), encoding)
        except RequestError as e:
            headers = (("WWW-Authenticate", "Bearer"),) if e.status == 401 else ()
            self._error(
                e.status, str(e), fmt=fmt, close=not self._body_read, reason=e.reason, headers=headers
            )
            return
        except TimeoutError:  # the client stopped sending its body for the idle timeout: not our bug
            self._error(408, "request body not received in time", fmt=fmt, close=True, reason="timeout")
            return
        except Exception as e:  # our bug: answer 500, keep serving
            log.exception("internal error handling %s", path)
            self._error(500, f"internal error: {type(e).__name__}", fmt=fmt, close=True, reason="internal")
            return
        if not queued:
            why = c.batch.last_refusal() or "queue_full"
            retry = "1" if c.batch.healthy and why == "queue_full" else "5"
            what = {"spool_full": "spool is full", "closing": "is stopping"}.get(why, "queue is full")
            self._error(503, f"collector {what} ({n} spans refused); retry later", fmt=fmt,
                        reason=why, headers=(("Retry-After", retry),))  # fmt: skip
            return
        ctype = PROTOBUF_CT if fmt == otlp.PROTOBUF else JSON_CT
        self._send(200, otlp.encode_response(fmt), ctype)

    def _post_feedback(self) -> None:
        """``POST /v1/feedback`` (contract in collectors/feedback.py): JSON in and out, CORS on every answer."""
        c = self.server.collector
        cors = fb.cors_headers(self.headers.get("Origin"), c.settings.cors_origins)
        try:
            if not c.authorized(self.headers):
                raise Unauthorized(
                    "missing or invalid API key (send Authorization: Bearer <key> or x-api-key)"
                )
            fb.check_media(self.headers.get("Content-Type"))
            body = self._read_body(min(c.settings.max_body_bytes, fb.MAX_BODY_BYTES))
            queued, n = c.ingest_feedback(body, self.headers.get("Content-Encoding"))
        except RequestError as e:
            extra = (("WWW-Authenticate", "Bearer"),) if e.status == 401 else ()
            self._send(e.status, fb.error_body(e), JSON_CT, (*cors, *extra),
                       close=not self._body_read, reason=e.reason)  # fmt: skip
            return
        except Exception as e:  # our bug: answer 500, keep serving
            log.exception("internal error handling %s", fb.FEEDBACK_PATH)
            body = fb.error_json(500, f"internal error: {type(e).__name__}")
            self._send(500, body, JSON_CT, cors, close=True, reason="internal")
            return
        if not queued:
            why = c.batch.last_refusal() or "queue_full"
            retry = "1" if c.batch.healthy and why == "queue_full" else "5"
            what = {"spool_full": "spool is full", "closing": "is stopping"}.get(why, "queue is full")
            body = fb.error_json(503, f"collector {what} ({n} feedback items refused); retry later")
            self._send(503, body, JSON_CT, (*cors, ("Retry-After", retry)), reason=why)
            return
        self._send(200, json.dumps({"accepted": n}).encode(), JSON_CT, cors)

    def do_OPTIONS(self) -> None:
        """CORS preflight for ``/v1/feedback``; other paths do not take OPTIONS."""
        if self._path() == fb.FEEDBACK_PATH:
            allowed = self.server.collector.settings.cors_origins
            self._send(204, b"", JSON_CT, fb.preflight_headers(self.headers.get("Origin"), allowed))
        else:
            self._method_not_allowed()

    def _method_not_allowed(self) -> None:
        self._not_found_or_not_allowed(self._path())

    do_PUT = do_DELETE = do_PATCH = do_HEAD = _method_not_allowed

    # --- body ---------------------------------------------------------------------------------------
    def _read_body(self, limit: int) -> bytes:
        """The raw request body, refusing (before reading) anything announced larger than ``limit``."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = self._read_chunked(limit)
        else:
            cl = self.headers.get("Content-Length")
            if cl is None:
                raise LengthRequired("Content-Length required (or Transfer-Encoding: chunked)")
            try:
                n = int(cl.strip())
            except ValueError:
                n = -1
            if n < 0:
                raise MalformedPayload(f"invalid Content-Length {cl!r}")
            if n > limit:
                raise PayloadTooLarge(f"body of {n} bytes exceeds the limit of {limit} bytes")
            body = self._read_exact(n)
            if len(body) < n:
                raise MalformedPayload("body ended before Content-Length bytes arrived")
        self._body_read = True
        return body

    def _read_exact(self, n: int) -> bytes:
        """``n`` body bytes (fewer if the client closes), read with as few system calls as possible.

        ``rfile.read(n)`` wakes up for every segment the kernel has ready (often 64 KB), and each wake-up
        must win the GIL back from the threads normalizing other requests: under load that wait, not the
        network, was most of a large body's read time. So: what the header parser already buffered, then one
        blocking receive of the rest (``MSG_WAITALL``), the idle timeout enforced by the kernel
        (``SO_RCVTIMEO``) meanwhile; a client that stalls past it gets the usual timeout.
        """
        buf = bytearray(n)
        view = memoryview(buf)
        got = self.rfile.readinto1(view) if n else 0  # the bytes read ahead with the headers, if any
        if 0 < got < n:
            sock = self.connection
            timeout = sock.gettimeout()
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(timeout or IDLE_TIMEOUT))
                sock.settimeout(None)  # a blocking descriptor: MSG_WAITALL waits for everything in one call
                while got < n:
                    k = sock.recv_into(view[got:], n - got, socket.MSG_WAITALL)
                    if k == 0:
                        break
                    got += k
            except BlockingIOError:  # SO_RCVTIMEO expired with the body incomplete
                raise TimeoutError("timed out reading the request body") from None
            finally:
                sock.settimeout(timeout)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(0))
        return bytes(buf) if got == n else bytes(view[:got])

    def _read_chunked(self, limit: int) -> bytes:
        out = bytearray()
        while True:
            line = self.rfile.readline(1026)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                size = -1
            if size < 0 or not line.endswith(b"\n"):
                raise MalformedPayload("invalid chunk size line in chunked body")
            if size == 0:
                while self.rfile.readline(8194) not in (b"\r\n", b"\n", b""):
                    pass  # trailers are ignored
                return bytes(out)
            if len(out) + size > limit:
                raise PayloadTooLarge(f"chunked body exceeds the limit of {limit} bytes")
            chunk = self.rfile.read(size)
            if len(chunk) < size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise MalformedPayload("truncated chunked body")
            out += chunk
