"""The demo workload: a small "support assistant" app, instrumented with llm-monitor, talking to the fake.

Why it looks like a real app rather than a load generator: every panel of the dashboard and every
analyzer needs its kind of signal, and a new user should recognise their own app in it. So eight users
(two writing Japanese) hold multi-turn sessions; questions go through a ``answer_question`` chain
(retriever over embeddings, an order-lookup tool, one or two LLM calls under a versioned prompt), an
``order_agent`` that uses the OpenAI tools API, a JSON-mode triage chain and an async summary; prompt
``support-answer`` v1/v2 is assigned by user hash (an A/B test), with v2 getting better feedback.
Mixed in, on a fixed rota so even a short run shows each of them: toxic prompts and outputs, PII
(e-mail, US and Japanese phone numbers, a test card number), English and Japanese refusals, rate limits
the app absorbs, server errors it does not, a slow stream and a JSON reply.

Special outputs and errors are forced through the fake's ``X-Fake-Markers`` header, not the prompt, so the
captured prompts read like real user text. Everything is drawn from one ``random.Random(seed)``: the
same seed gives the same conversations, calls and counts (timings aside).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import openai

import monitor
from monitor.demo import _scenarios as sc
from monitor.demo.fake_openai import FakeOpenAIServer, fake_markers

__all__ = ["DemoStats", "Turn", "plan_turns", "run_demo"]

log = logging.getLogger(__name__)

SERVICE_NAME = "support-assistant-demo"
EMBEDDING_MODEL = "text-embedding-3-small"
_ORDER_RE = re.compile(r"\b[A-Z]-\d{4}\b")


@dataclass
class DemoStats:
    """What the workload did, counted on the app side (so tests can compare with what was stored).

    ``calls`` counts every OpenAI API call the app made (chat, embeddings; SDK retries not included),
    ``errors`` those that raised; ``chains``/``agents``/``tools``/``retrievals`` count decorated calls.
    """

    conversations: int = 0
    calls: int = 0
    errors: int = 0
    streamed: int = 0
    embeddings: int = 0
    chains: int = 0
    agents: int = 0
    tools: int = 0
    retrievals: int = 0
    feedback: int = 0
    failed_conversations: int = 0
    users: set[str] = field(default_factory=set)
    sessions: set[str] = field(default_factory=set)
    kinds: Counter[str] = field(default_factory=Counter)
    prompt_versions: Counter[str] = field(default_factory=Counter)
    models: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        return (
            f"{self.conversations} conversations from {len(self.users)} users in {len(self.sessions)} sessions: "
            f"{self.calls} API calls ({self.errors} errors, {self.streamed} streamed, {self.embeddings} embeddings), "
            f"{self.chains} chains, {self.agents} agent runs, {self.tools} tool calls, {self.feedback} feedback events"
        )


@dataclass(frozen=True)
class Turn:
    """One user message and everything the plan decided about it (pure data, no I/O)."""

    index: int
    kind: str
    user: sc.User
    session_id: str
    question: str
    stream: bool = False
    followup: bool = False
    markers: str = ""  # forced behaviour for the *answer* call, sent out of band
    latency_ms: int = 50
    feedback: tuple[str, float] | None = None

    @property
    def prompt_version(self) -> str:
        return prompt_version(self.user.user_id)

    @property
    def model(self) -> str:
        return "gpt-4o" if self.user.plan == "enterprise" or self.kind == "tools_4o" else "gpt-4o-mini"


def prompt_version(user_id: str) -> str:
    """A/B assignment by user hash: stable per user, roughly half the users each."""
    return "v2" if int(hashlib.sha256(f"support-answer:{user_id}".encode()).hexdigest(), 16) % 2 else "v1"


def plan_turns(seed: int = 7, run_id: str = "demo") -> Iterator[Turn]:
    """The endless, deterministic sequence of turns for ``seed``.

    Kinds follow :data:`_scenarios.ROTA` so every special case appears within the first
    ``len(ROTA)`` turns; users, questions, sessions, latencies and feedback come from the seeded RNG.
    """
    rng = random.Random(seed)
    session_no = {u.user_id: 1 for u in sc.USERS}
    for index in itertools.count():
        kind = sc.ROTA[index % len(sc.ROTA)]
        pool = [u for u in sc.USERS if u.locale == "ja"] if kind.startswith("ja_") else list(sc.USERS)
        if kind in sc.ENGLISH_ONLY:
            pool = [u for u in pool if u.locale == "en"]
        user = rng.choice(pool)
        if rng.random() < 0.3:  # a new session now and then; most sessions have several turns
            session_no[user.user_id] += 1
        session_id = f"{user.user_id[2:]}-{run_id}-{session_no[user.user_id]}"
        question, markers = sc.question_for(kind, user, rng)
        base = 120 if user.plan == "enterprise" else 40
        latency = int(base + rng.expovariate(1 / base))
        if kind == "slow":
            latency = 900
        liked = 0.8 if prompt_version(user.user_id) == "v2" else 0.6
        feedback: tuple[str, float] | None = None
        roll = rng.random()
        if kind in sc.ANSWERED and roll < 0.5:
            feedback = ("thumbs", 1.0 if rng.random() < liked else 0.0)
        elif kind in sc.ANSWERED and roll < 0.7:
            feedback = ("accept", 1.0) if rng.random() < liked else ("regenerate", 1.0)
        if kind in sc.DISLIKED and feedback is not None:
            feedback = ("thumbs", 0.0)
        yield Turn(
            index=index,
            kind=kind,
            user=user,
            session_id=session_id,
            question=question,
            stream=kind in ("stream", "slow") or (kind == "answer" and rng.random() < 0.2),
            followup=kind == "answer" and rng.random() < 0.3,
            markers=markers,
            latency_ms=latency,
            feedback=feedback,
        )


# ---------------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------------


def _similarity(a: list[float], b: list[float]) -> float:
    """Dot product: the fake's embeddings are unit vectors, so this is the cosine."""
    return sum(x * y for x, y in zip(a, b, strict=True))


class SupportApp:
    """The instrumented application. One instance per run; used from one thread at a time."""

    def __init__(self, base_url: str, stats: DemoStats, latency_scale: float = 1.0) -> None:
        self.base_url = base_url
        self.latency_scale = latency_scale
        self.stats = stats
        self.client = openai.OpenAI(
            base_url=base_url, api_key="sk-demo-not-a-real-key", max_retries=1, timeout=30
        )
        self.doc_vectors: list[list[float]] = []
        self._turn: Turn | None = None
        self.response_id = ""  # of the answer the user sees, for feedback

    def close(self) -> None:
        self.client.close()

    # -- API helpers: count what the app sends, let errors propagate like any app would ---------------

    def _headers(self, markers: str = "", share: float = 1.0) -> dict[str, str]:
        """Out-of-band steering for the fake: this call's latency plus any forced behaviour."""
        latency = (self._turn.latency_ms if self._turn else 20) * share * self.latency_scale
        return fake_markers(f"[[slow:{latency:.0f}]]", markers)

    def _embed(self, texts: list[str]) -> list[list[float]]:
        self.stats.calls += 1
        self.stats.embeddings += 1
        try:
            resp = self.client.embeddings.create(
                model=EMBEDDING_MODEL, input=texts, extra_headers=self._headers()
            )
        except openai.APIError:
            self.stats.errors += 1
            raise
        return [d.embedding for d in resp.data]

    def _chat(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str,
        markers: str = "",
        stream: bool = False,
        **kw: Any,
    ) -> Any:
        """One chat call; returns the ChatCompletion, or (text, response id) for a stream it consumed."""
        self.stats.calls += 1
        self.stats.models[model] += 1
        # Messages are plain dicts here, as in most apps; the SDK's TypedDict overloads don't help.
        create: Any = self.client.chat.completions.create
        try:
            if not stream:
                return create(model=model, messages=messages, extra_headers=self._headers(markers), **kw)
            self.stats.streamed += 1
            chunks = create(
                model=model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                extra_headers=self._headers(markers),
                **kw,
            )
            parts, rid = [], ""
            for chunk in chunks:
                rid = chunk.id
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
            return "".join(parts), rid
        except openai.APIError:
            self.stats.errors += 1
            raise

    # -- the pieces the dashboard shows as spans ------------------------------------------------------

    def index_knowledge_base(self) -> None:
        """Embed the help-centre articles once at start-up (outside any user's context)."""
        with monitor.span("index_knowledge_base", kind="chain"):
            self.doc_vectors = self._embed([f"{d['title']}. {d['text']}" for d in sc.DOCS])

    @monitor.retriever(name="search_docs")
    def search_docs(self, query: str, top_k: int = 2) -> list[dict[str, Any]]:
        self.stats.retrievals += 1
        (qv,) = self._embed([query])
        scored = sorted(((_similarity(qv, dv), i) for i, dv in enumerate(self.doc_vectors)), reverse=True)[
            :top_k
        ]
        return [{**sc.DOCS[i], "score": round(s, 4)} for s, i in scored]

    @monitor.tool(name="lookup_order")
    def lookup_order(self, order_id: str) -> dict[str, Any]:
        self.stats.tools += 1
        return sc.ORDERS.get(order_id, {"order_id": order_id, "status": "not_found"})

    @property
    def turn(self) -> Turn:
        if self._turn is None:
            raise RuntimeError("no turn in progress")
        return self._turn

    @monitor.chain(name="answer_question")
    def answer_question(self, question: str) -> str:
        """Retrieve, look up the order if one is named, answer under the user's prompt version.

        Takes only the question (the turn's knobs are on ``self``) so the chain span's captured input
        is what a real app would show, not the demo's steering.
        """
        turn = self.turn
        self.stats.chains += 1
        docs = self.search_docs(question)
        m = _ORDER_RE.search(question)
        order = self.lookup_order(m.group(0)) if m else None
        version = turn.prompt_version
        template = sc.SYSTEM_PROMPTS[version]
        variables = {
            "docs": "\n".join(f"- {d['title']}: {d['text']}" for d in docs),
            "order": json.dumps(order) if order else "none",
            "language": "Japanese" if turn.user.locale == "ja" else "English",
        }
        messages = [
            {"role": "system", "content": template.format(**variables)},
            {"role": "user", "content": question},
        ]
        self.stats.prompt_versions[version] += 1
        with monitor.prompt("support-answer", version, template=template, variables=variables):
            try:
                result = self._chat(
                    messages,
                    model=turn.model,
                    markers=turn.markers,
                    stream=turn.stream,
                    temperature=0.2 if version == "v1" else 0.7,
                    max_tokens=400,
                )
            except openai.RateLimitError:
                # What real apps do with a 429 after the SDK's own retry: degrade, don't crash.
                return sc.BUSY_MESSAGE
        if turn.stream:
            answer, self.response_id = result
        else:
            answer, self.response_id = result.choices[0].message.content or "", result.id
        if turn.followup:
            with monitor.prompt("suggest-followup", "v1", template=sc.FOLLOWUP_PROMPT):
                self._chat(
                    [{"role": "system", "content": sc.FOLLOWUP_PROMPT}, {"role": "user", "content": answer}],
                    model="gpt-4o-mini",
                    max_tokens=60,
                )
        return answer

    @monitor.agent(name="order_agent")
    def order_agent(self, question: str) -> str:
        """The OpenAI tools loop: the model asks for ``lookup_order``, we run it, it answers."""
        turn = self.turn
        self.stats.agents += 1
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": sc.AGENT_PROMPT},
            {"role": "user", "content": question},
        ]
        with monitor.prompt("order-agent", "v1", template=sc.AGENT_PROMPT):
            for _ in range(3):  # bounded, as a careful agent loop is
                resp = self._chat(messages, model=turn.model, tools=sc.TOOLS, markers=turn.markers)
                msg = resp.choices[0].message
                if not msg.tool_calls:
                    self.response_id = resp.id
                    return msg.content or ""
                messages.append(msg.model_dump(exclude_none=True))
                for call in msg.tool_calls:
                    args = json.loads(call.function.arguments or "{}")
                    if call.function.name == "lookup_order":
                        result: Any = self.lookup_order(str(args.get("order_id", "")))
                    else:
                        result = {"error": f"unknown tool {call.function.name}"}
                    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
        return sc.BUSY_MESSAGE

    @monitor.chain(name="triage_ticket")
    def triage_ticket(self, question: str) -> dict[str, Any]:
        """JSON mode: route the ticket before a human sees it."""
        self.stats.chains += 1
        with monitor.prompt("ticket-triage", "v1", template=sc.TRIAGE_PROMPT):
            resp = self._chat(
                [{"role": "system", "content": sc.TRIAGE_PROMPT}, {"role": "user", "content": question}],
                model="gpt-4o-mini",
                response_format={"type": "json_object"},
                temperature=0.0,
            )
        return json.loads(resp.choices[0].message.content or "{}")

    @monitor.chain(name="summarize_session")
    async def summarize_session(self, question: str) -> str:
        """Async path: a title and a summary of the session, asked concurrently."""
        self.stats.chains += 1
        self.stats.calls += 2
        self.stats.models["gpt-4o-mini"] += 2
        async with openai.AsyncOpenAI(
            base_url=self.base_url, api_key="sk-demo-not-a-real-key", max_retries=1
        ) as ac:
            with monitor.prompt("session-summary", "v1", template=sc.SUMMARY_PROMPT):
                title, summary = await asyncio.gather(
                    *(
                        ac.chat.completions.create(
                            model="gpt-4o-mini",
                            messages=[
                                {"role": "system", "content": p},
                                {"role": "user", "content": question},
                            ],
                            extra_headers=self._headers(),
                        )
                        for p in (sc.TITLE_PROMPT, sc.SUMMARY_PROMPT)
                    )
                )
        return f"{title.choices[0].message.content} — {summary.choices[0].message.content}"

    # -- one turn, as the web handler would run it ----------------------------------------------------

    def handle(self, turn: Turn) -> None:
        """Run one turn inside the user's context; the app survives any API error, as it should."""
        self._turn, self.response_id = turn, ""
        st = self.stats
        st.users.add(turn.user.user_id)
        st.sessions.add(turn.session_id)
        st.kinds[turn.kind] += 1
        tags = ["demo", f"plan:{turn.user.plan}", f"locale:{turn.user.locale}"]
        meta = {"plan": turn.user.plan, "locale": turn.user.locale, "scenario": turn.kind}
        with monitor.context(user_id=turn.user.user_id, session_id=turn.session_id, tags=tags, metadata=meta):
            try:
                if turn.kind in ("tools", "tools_4o"):
                    self.order_agent(turn.question)
                elif turn.kind == "json":
                    self.triage_ticket(turn.question)
                elif turn.kind == "async_summary":
                    asyncio.run(self.summarize_session(turn.question))
                else:
                    self.answer_question(turn.question)
                if self.response_id and turn.feedback is not None:
                    self._send_feedback(self.response_id, *turn.feedback)
            except openai.APIError as exc:
                st.failed_conversations += 1
                log.debug("demo turn %d (%s) failed: %s", turn.index, turn.kind, exc)
        self._turn = None

    def _send_feedback(self, response_id: str, kind: str, value: float) -> None:
        """Explicit thumbs go through ``monitor.feedback``; implicit signals through ``monitor.track``."""
        # Until the SDK ships feedback (DESIGN §4) the demo simply sends none.
        send = getattr(monitor, "feedback" if kind == "thumbs" else "track", None)
        if send is None:
            return
        if kind == "thumbs":
            send(response_id=response_id, kind="thumbs", value=value)
        else:
            send(kind, response_id=response_id)
        self.stats.feedback += 1


# ---------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------


def _quiet_http_logs() -> None:
    """Hush the SDK's per-request INFO lines (``llm-monitor up`` logs at INFO) unless the host set a level."""
    for name in ("httpx2", "httpx", "openai"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def run_demo(
    endpoint: str = "http://127.0.0.1:4318",
    *,
    iterations: int | None = None,
    duration: float | None = None,
    interval: float = 0.3,
    seed: int = 7,
    stop_event: threading.Event | None = None,
    on_progress: Callable[[int], None] | None = None,
    init_sdk: bool = True,
    run_id: str | None = None,
    latency_scale: float = 1.0,
) -> DemoStats:
    """Drive the support-assistant workload until ``iterations`` turns, ``duration`` seconds or ``stop_event``.

    Starts a :class:`FakeOpenAIServer`, calls ``monitor.init`` pointing at ``endpoint`` (unless
    ``init_sdk=False``: then the caller has set the SDK up, e.g. with an in-memory exporter in a test),
    runs, then flushes and shuts the SDK down and stops the fake. ``on_progress`` gets the number of
    finished turns. ``run_id`` goes into session ids so two runs never merge sessions (default: random).
    ``latency_scale`` shrinks the simulated model latencies (tests use a fraction to run fast).
    Blocks the calling thread; errors from the app's API calls are absorbed, as the app would.
    """
    stats = DemoStats()
    stop = stop_event or threading.Event()
    _quiet_http_logs()
    deadline = None if duration is None else time.monotonic() + duration
    with FakeOpenAIServer(chunk_delay_ms=8 * latency_scale, record_limit=0) as fake:
        if init_sdk:
            monitor.init(
                service_name=SERVICE_NAME, endpoint=endpoint, capture_content=True, instrument="auto"
            )
        app = SupportApp(fake.base_url, stats, latency_scale)
        try:
            app.index_knowledge_base()
            for turn in plan_turns(seed, run_id or uuid.uuid4().hex[:6]):
                if iterations is not None and stats.conversations >= iterations:
                    break
                if stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
                    break
                app.handle(turn)
                stats.conversations += 1
                if on_progress is not None:
                    on_progress(stats.conversations)
                last = iterations is not None and stats.conversations >= iterations
                if interval > 0 and not last and stop.wait(interval):
                    break
        finally:
            app.close()
            if init_sdk:
                monitor.shutdown()
            else:
                monitor.flush()
    return stats
