"""Privacy on the export path: secret redaction by default, opt-in PII, custom patterns, the content cap
and ``capture_content=False``, on spans from the real ``openai`` SDK, decorators, events and other
instrumentations sharing the provider."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from opentelemetry import trace

import monitor
from monitor import _redact
from monitor import semconv as sc
from monitor._redact import ContentPolicy, luhn_ok, parse_redact
from monitor._tracing import SdkConfig
from monitor.demo.fake_openai import FakeOpenAIServer
from monitor.testing import recording, reset_global_tracer_provider

OPENAI_KEY = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8t"
ANTHROPIC_KEY = "sk-ant-api03-" + "x" * 40
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
GITHUB_KEY = "ghp_" + "a1B2" * 9
GITHUB_PAT = "github_pat_11ABCDEFG0" + "z" * 40
SLACK_KEY = "xoxb-123456789012-abcdefABCDEF"
GOOGLE_KEY = "AIza" + "SyD-abc_123" * 3 + "ab"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1L\nab+cd/ef==\n-----END RSA PRIVATE KEY-----"


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    yield
    monitor.shutdown()
    reset_global_tracer_provider()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"key {OPENAI_KEY}.", "key [REDACTED:openai_key]."),
        (f"OPENAI_API_KEY={OPENAI_KEY}", "OPENAI_API_KEY=[REDACTED:openai_key]"),
        (f"claude: {ANTHROPIC_KEY}", "claude: [REDACTED:anthropic_key]"),
        (f"aws {AWS_KEY} ok", "aws [REDACTED:aws_access_key] ok"),
        (f"{GITHUB_KEY} and {GITHUB_PAT}", "[REDACTED:github_token] and [REDACTED:github_token]"),
        (f"slack={SLACK_KEY}", "slack=[REDACTED:slack_token]"),
        (f"maps {GOOGLE_KEY}", "maps [REDACTED:google_api_key]"),
        (f"token {JWT} end", "token [REDACTED:jwt] end"),
        ("Authorization: Bearer abc.DEF-123_456~789", "Authorization: Bearer [REDACTED:bearer_token]"),
        ("authorization: bearer abcdefghijklmnopqrstu", "authorization: bearer [REDACTED:bearer_token]"),
        (f"cert:\n{PEM}\ndone", "cert:\n[REDACTED:private_key]\ndone"),
        ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg", "[REDACTED:private_key]"),  # cut off: still hidden
    ],
)
def test_secrets_are_redacted_by_default(text: str, expected: str) -> None:
    redactor = parse_redact(None)
    assert redactor is not None
    assert redactor.redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "sk-test is a placeholder",  # too short to be a key
        "task-abcdefghijklmnopqrstuvwxyz0123 is a task id",  # 'sk-' inside a word
        "gpt-4o-mini-2024-07-18",
        "chatcmpl-AbCdEfGhIjKlMnOpQrStUvWx",
        "0af7651916cd43dd8448eb211c80319c",
        "550e8400-e29b-41d4-a716-446655440000",
        "The bearer of this letter is welcome.",
        "mail john@example.com or call 415-555-2671",  # PII is opt-in
    ],
)
def test_no_false_positives_on_ordinary_values(text: str) -> None:
    redactor = parse_redact(None)
    assert redactor is not None
    assert redactor.redact(text) is text


def test_pii_is_opt_in_and_cards_are_luhn_checked() -> None:
    redactor = parse_redact(["secrets", "pii"])
    assert redactor is not None
    text = (
        "Mail john.doe+shop@example.co.uk, call (415) 555-2671, +44 20 7946 0958 or +14155552671. "
        "Card 4111 1111 1111 1111, also 4111-1111-1111-1111; not a card: 4111 1111 1111 1112. "
        "Order 2024-07-18, ip 192.168.100.200, version 1.2.3, ts 1700000000."
    )
    assert redactor.redact(text) == (
        "Mail [REDACTED:email], call [REDACTED:phone], [REDACTED:phone] or [REDACTED:phone]. "
        "Card [REDACTED:card], also [REDACTED:card]; not a card: 4111 1111 1111 1112. "
        "Order 2024-07-18, ip 192.168.100.200, version 1.2.3, ts 1700000000."
    )
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112") and not luhn_ok("12345")
    only_email = parse_redact("email")
    assert only_email is not None and only_email.kinds == ("email",)
    assert only_email.redact(f"a@b.io {OPENAI_KEY}") == f"[REDACTED:email] {OPENAI_KEY}"  # a list replaces


def test_custom_patterns_and_off() -> None:
    redactor = parse_redact(["secrets", re.compile(r"ACME-\d{4}"), ("employee_id", r"EMP\d{6}")])
    assert redactor is not None
    assert redactor.redact(f"ACME-1234 EMP123456 {AWS_KEY}") == (
        "[REDACTED:custom] [REDACTED:employee_id] [REDACTED:aws_access_key]"
    )
    assert parse_redact({"ticket": r"T-\d+"}).redact("see T-42") == "see [REDACTED:ticket]"  # type: ignore[union-attr]
    for off in (False, "off", "none", "false", "0", ""):
        assert parse_redact(off) is None
    for default in (None, True, "true", "default", "secrets"):
        assert parse_redact(default).kinds == _redact.SECRET_KINDS  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("secrets,emails", "unknown redaction 'emails'"),
        ([("Bad Name", "x")], "custom pattern name 'Bad Name'"),
        ([("ok", "(")], "pattern for 'ok' is not a valid regex"),
        ([42], "42 is neither a name"),
    ],
)
def test_bad_redact_spec_is_one_clear_error_at_init(spec: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        monitor.init(redact=spec, instrument=False)
    assert not monitor._tracing.is_initialized()


def test_env_variables() -> None:
    cfg = SdkConfig.resolve(
        environ={"LLM_MONITOR_REDACT": "secrets,email", "LLM_MONITOR_MAX_CONTENT_CHARS": "1000"}
    )
    assert (cfg.redact, cfg.max_content_chars) == ("secrets,email", 1000)
    assert (
        SdkConfig.resolve(redact=False, environ={"LLM_MONITOR_REDACT": "all"}).redact is False
    )  # argument wins
    assert SdkConfig.resolve(environ={}).max_content_chars == 64 * 1024
    with pytest.raises(ValueError, match="LLM_MONITOR_REDACT: unknown redaction 'phones'"):
        SdkConfig.resolve(environ={"LLM_MONITOR_REDACT": "phones"})
    with pytest.raises(ValueError, match="LLM_MONITOR_MAX_CONTENT_CHARS='lots'"):
        SdkConfig.resolve(environ={"LLM_MONITOR_MAX_CONTENT_CHARS": "lots"})
    with pytest.raises(ValueError, match="max_content_chars=10: expected a whole number"):
        SdkConfig.resolve(max_content_chars=10, environ={})


def test_json_messages_stay_valid_json() -> None:
    redactor = parse_redact("all")
    assert redactor is not None
    messages = [
        {"role": "user", "parts": [{"type": "text", "content": f'my key "{OPENAI_KEY}"\nand {PEM}'}]},
        {"role": "assistant", "parts": [{"type": "text", "content": "Write to ops@example.com"}]},
    ]
    text = json.dumps(messages, separators=(",", ":"))
    out = redactor.redact_value(text)
    assert json.loads(out) == [
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": 'my key "[REDACTED:openai_key]"\nand [REDACTED:private_key]'}
            ],
        },
        {"role": "assistant", "parts": [{"type": "text", "content": "Write to [REDACTED:email]"}]},
    ]
    escaped = json.dumps([{"content": "joséé@example.com"}])  # ensure_ascii: \u00e9 escapes before the @
    assert json.loads(redactor.redact_value(escaped)) == [{"content": "[REDACTED:email]"}]


def test_openai_call_is_redacted_on_export(server: FakeOpenAIServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    prompt = f"Why does {OPENAI_KEY} fail? Reply: [[reply:Rotate {AWS_KEY} too.]]"
    with recording(instrument=["openai"]) as rec:
        resp = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
        )
        (span,) = rec.spans()
    assert resp.choices[0].message.content == f"Rotate {AWS_KEY} too."  # the app sees the real text
    inputs = json.loads(span.attributes[sc.GEN_AI_INPUT_MESSAGES])
    outputs = json.loads(span.attributes[sc.GEN_AI_OUTPUT_MESSAGES])
    assert inputs[0]["parts"][0]["content"] == "Why does [REDACTED:openai_key] fail? Reply: " + (
        "[[reply:Rotate [REDACTED:aws_access_key] too.]]"
    )
    assert outputs[0]["parts"][0]["content"] == "Rotate [REDACTED:aws_access_key] too."
    assert span.attributes[sc.GEN_AI_RESPONSE_ID] == resp.id  # other attributes untouched


def test_decorators_and_events_are_redacted_and_it_runs_on_the_export_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[str] = []
    real_apply = ContentPolicy.apply

    def spy(self: ContentPolicy, span: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real_apply(self, span)

    monkeypatch.setattr(ContentPolicy, "apply", spy)

    @monitor.tool
    def deploy(token: str) -> str:
        raise PermissionError(f"token {token} was revoked")

    with recording(instrument=False) as rec:
        with pytest.raises(PermissionError, match=GITHUB_KEY):  # the app's exception keeps the text
            deploy(GITHUB_KEY)
        (span,) = rec.spans()
    assert span.attributes[sc.LLM_MONITOR_INPUT] == '{"token":"[REDACTED:github_token]"}'
    assert span.attributes[sc.GEN_AI_TOOL_CALL_ARGUMENTS] == '{"token":"[REDACTED:github_token]"}'
    (event,) = span.events
    assert event.attributes[sc.EXCEPTION_MESSAGE] == "token [REDACTED:github_token] was revoked"
    assert "[REDACTED:github_token]" in event.attributes["exception.stacktrace"]
    assert GITHUB_KEY not in event.attributes["exception.stacktrace"]
    assert span.status.description == f"PermissionError: token {GITHUB_KEY} was revoked"  # not a string attr
    assert threads and threading.main_thread().name not in threads


def test_redact_false_and_pii_through_init() -> None:
    @monitor.chain
    def f(text: str) -> str:
        return text

    with recording(instrument=False, redact=False) as rec:
        f(OPENAI_KEY)
        (span,) = rec.spans()
    assert span.attributes[sc.LLM_MONITOR_OUTPUT] == json.dumps(OPENAI_KEY)
    with recording(instrument=False, redact=["secrets", "email"]) as rec:
        f(f"{OPENAI_KEY} ann@example.org")
        (span,) = rec.spans()
    assert span.attributes[sc.LLM_MONITOR_OUTPUT] == '"[REDACTED:openai_key] [REDACTED:email]"'


def test_content_cap_keeps_json_valid() -> None:
    @monitor.chain
    def f(text: str) -> str:
        return text

    long_text = "word " * 2000  # 10,000 characters
    with recording(instrument=False, max_content_chars=1000) as rec:
        f(long_text)
        with trace.get_tracer("other.instrumentation").start_as_current_span("raw") as raw:
            raw.set_attribute("note", "x" * 5000)
            raw.set_attribute(
                sc.GEN_AI_INPUT_MESSAGES,
                json.dumps([{"role": "user", "parts": [{"type": "text", "content": long_text}]}]),
            )
        chain, raw_span = rec.spans()
    out = chain.attributes[sc.LLM_MONITOR_OUTPUT]  # a JSON string: cut inside, so it stays JSON
    assert len(out) <= 1000 and json.loads(out).startswith("word word")
    assert json.loads(out).endswith(" chars]") and "…[truncated" in json.loads(out)
    assert len(chain.attributes[sc.LLM_MONITOR_INPUT]) <= 1000
    note = raw_span.attributes["note"]
    assert note == "x" * 1000 + "…[truncated 4000 chars]"
    messages = raw_span.attributes[sc.GEN_AI_INPUT_MESSAGES]
    assert len(messages) <= 1000
    assert json.loads(messages)[0]["parts"][0]["content"].startswith("word word")
    with recording(instrument=False, max_content_chars=0) as rec:  # 0: no cap
        f(long_text)
        (span,) = rec.spans()
    assert json.loads(span.attributes[sc.LLM_MONITOR_OUTPUT]) == long_text


def test_capture_content_false_drops_text_everywhere(server: FakeOpenAIServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)

    @monitor.tool
    def lookup(order_id: str) -> dict[str, str]:
        return {"status": "shipped"}

    with recording(instrument=["openai"], capture_content=False) as rec:
        with monitor.prompt("support", version=2, template="Answer {q}", variables={"q": "refunds"}):
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
            )
        lookup("o-1")
        with trace.get_tracer("openllmetry.like").start_as_current_span("foreign") as foreign:
            foreign.set_attribute("gen_ai.prompt.0.content", "secret prompt")
            foreign.set_attribute("gen_ai.completion.0.content", "secret answer")
            foreign.set_attribute("input.value", "openinference input")
            foreign.set_attribute("gen_ai.request.model", "gpt-4o")
        llm, tool, other = rec.spans()
    for span in (llm, tool, other):
        leaked = [k for k in span.attributes if _redact.is_content_key(k)]
        assert leaked == [], (span.name, leaked)
    assert llm.attributes[sc.LLM_MONITOR_PROMPT_NAME] == "support"
    assert llm.attributes[sc.LLM_MONITOR_PROMPT_VERSION] == "2"
    assert llm.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] > 0
    assert tool.attributes[sc.GEN_AI_TOOL_NAME] == "lookup"
    assert dict(other.attributes) == {"gen_ai.request.model": "gpt-4o"}


def test_policy_leaves_clean_spans_untouched() -> None:
    with recording(instrument=False) as rec:
        with monitor.span("plain", kind="other") as s:
            s.set_attribute("note", "nothing secret here, just a long enough sentence")
        (span,) = rec.spans()
    policy = ContentPolicy(parse_redact(None))
    assert policy.apply(span) is span  # same object: no copy when nothing changes
