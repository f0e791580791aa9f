"""Privacy in the export path: secret/PII redaction, the content size cap, and ``capture_content=False``.

Why in the export path and not where attributes are set: redaction is regex work over prompts and
outputs that may be tens of kilobytes; on the request path it would add that to every model call.
:class:`ContentPolicyExporter` wraps the span exporter, so it runs on the batch processor's daemon
thread, over spans that are already finished, and covers every span of the pipeline, including those
of other OpenTelemetry instrumentations sharing the provider.

What a policy does to each exported span (span attributes and event attributes, string values and
strings inside string arrays):

* ``capture_content=False``: attributes that carry prompt/output/argument text (:func:`is_content_key`)
  are removed, whichever instrumentation set them.
* redaction: matches are replaced with ``[REDACTED:<kind>]``. Secrets are on by default (OpenAI,
  Anthropic, AWS, GitHub, Slack and Google keys, JWTs, ``Bearer`` tokens, private key blocks); emails,
  phone numbers and card numbers (Luhn-checked) are opt-in; custom patterns may be added. A value that
  is JSON (``gen_ai.input.messages`` …) is redacted string by string and re-serialised, so it stays JSON.
* ``max_content_chars``: longer string values are cut (JSON values by shortening their longest strings,
  so they stay valid JSON), with a visible marker.

Specs (``init(redact=...)`` / ``LLM_MONITOR_REDACT``): ``True``/``"default"``/``"secrets"`` (default),
``False``/``"off"``/``"none"``, a comma-separated string or a list of names (``secrets``, ``email``,
``phone``, ``card``, ``pii`` = the three, ``all``) and, in a list, custom patterns as compiled regexes
(kind ``custom``) or ``(name, regex)`` pairs. A list replaces the default: write ``["secrets", "email"]``.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from monitor import semconv as sc
from monitor._guard import guard
from monitor._serialize import TRUNCATION_MARKER, truncate

__all__ = [
    "DEFAULT_MAX_CONTENT_CHARS",
    "PII_KINDS",
    "SECRET_KINDS",
    "ContentPolicy",
    "ContentPolicyExporter",
    "Redactor",
    "is_content_key",
    "luhn_ok",
    "parse_redact",
]

logger = logging.getLogger("monitor")

DEFAULT_MAX_CONTENT_CHARS = 64 * 1024
_MIN_CHARS = 6  # shorter strings cannot hold anything we redact ("a@b.co" is 6)
_MIN_STRING_SHARE = 64  # when shrinking JSON, no string is cut below this


@dataclass(frozen=True)
class _Rule:
    """One pattern and how to replace its matches.

    Patterns start with a literal where they can (the lookbehind comes after it), because ``re`` then
    skips through text at ``str.find`` speed; a leading lookbehind or character class makes it try
    every position. ``group``: which group is replaced (``Bearer`` keeps its keyword). ``alt``: kind
    used instead when group 1 matched (one scan tells OpenAI from Anthropic keys). ``check``: extra
    validation (Luhn). ``left``: characters the match extends over to its left (an email's local part,
    so the pattern itself can start at the ``@``).
    """

    kind: str
    pattern: re.Pattern[str]
    group: int = 0
    alt: str | None = None
    check: Callable[[str], bool] | None = None
    left: frozenset[str] | None = None
    priority: int = 100


def luhn_ok(text: str) -> bool:
    """Whether the digits of ``text`` (13 to 19 of them) pass the Luhn checksum of card numbers."""
    digits = [ord(c) - 48 for c in text if "0" <= c <= "9"]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_W = "[A-Za-z0-9_-]"  # characters of a key: the one before a key's prefix must not be one of them

SECRET_RULES: tuple[_Rule, ...] = (
    _Rule(
        "private_key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
            r"(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|(?:[A-Za-z0-9+/=\s]|\\[nr])*)"
        ),
        priority=0,
    ),
    _Rule(
        "openai_key",
        re.compile(rf"sk-(?<!{_W}sk-)(ant-)?[A-Za-z0-9_-]{{20,}}"),
        alt="anthropic_key",
        priority=1,
    ),
    _Rule("aws_access_key", re.compile(r"A[KS]IA(?<![A-Z0-9]A[KS]IA)[A-Z0-9]{16}(?![A-Z0-9])"), priority=2),
    _Rule("github_token", re.compile(rf"gh[pousr]_(?<!{_W}gh[pousr]_)[A-Za-z0-9]{{36,}}"), priority=3),
    _Rule("github_token", re.compile(rf"github_pat_(?<!{_W}github_pat_)[A-Za-z0-9_]{{22,}}"), priority=3),
    _Rule("slack_token", re.compile(rf"xox[abposr]-(?<!{_W}xox[abposr]-)[A-Za-z0-9-]{{10,}}"), priority=4),
    _Rule("google_api_key", re.compile(rf"AIza(?<!{_W}AIza)[0-9A-Za-z_-]{{35}}"), priority=5),
    _Rule(
        "bearer_token",
        re.compile(r"earer(?<=\b[Bb]earer)[ \t]+([A-Za-z0-9._~+/=-]{16,})"),
        group=1,
        priority=6,
    ),
    _Rule(
        "jwt",
        re.compile(rf"eyJ(?<!{_W}eyJ)[A-Za-z0-9_-]{{8,}}\.eyJ[A-Za-z0-9_-]{{8,}}\.[A-Za-z0-9_-]{{8,}}"),
        priority=7,
    ),
)
SECRET_KINDS = tuple(dict.fromkeys(k for r in SECRET_RULES for k in (r.kind, r.alt) if k))

_PHONE_END = r"(?![ .-]?\d|[\w-])"
PII_RULES: dict[str, tuple[_Rule, ...]] = {
    "email": (
        _Rule(
            "email",
            re.compile(r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b"),
            left=frozenset("._%+-"),  # and letters and digits of any script
            priority=20,
        ),
    ),
    "card": (
        _Rule("card", re.compile(r"\d(?<![\d.-]\d)(?:[ -]?\d){12,18}(?!\d)"), check=luhn_ok, priority=21),
    ),
    "phone": (
        _Rule(
            "phone",
            re.compile(
                r"[+(\d](?<![\w+][+(\d])(?<!\d[ .-][+(\d])(?:"
                r"(?<=\+)[1-9]\d{7,14}(?!\d)"
                r"|(?<=\+)\d{1,3}[ .-]?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])"
                rf"\d{{3,4}}[ .-]\d{{3,4}}{_PHONE_END}"
                rf"|(?<=\()\d{{2,4}}\)[ .-]?\d{{3,4}}[ .-]\d{{3,4}}{_PHONE_END}"
                rf"|(?<=\d)\d{{1,3}}[ .-]\d{{3,4}}[ .-]\d{{3,4}}{_PHONE_END})"
            ),
            priority=22,
        ),
    ),
}
PII_KINDS = tuple(PII_RULES)
_GROUPS = {"pii": PII_KINDS, "all": ("secrets", *PII_KINDS)}
_OFF = ("", "0", "false", "no", "off", "none")
_DEFAULT = ("1", "true", "yes", "on", "default")
_KIND_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_LOCAL_PART_MAX = 64


class Redactor:
    """Applies rules to text. Immutable after construction; safe from any thread; never raises for text."""

    __slots__ = ("rules",)

    def __init__(self, rules: Sequence[_Rule]) -> None:
        self.rules = tuple(sorted(rules, key=lambda r: r.priority))

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(k for r in self.rules for k in (r.kind, r.alt) if k))

    def candidates(self, text: str) -> tuple[_Rule, ...]:
        """The rules with a match somewhere in ``text`` (one search each; checks are not run)."""
        if len(text) < _MIN_CHARS:
            return ()
        return tuple(r for r in self.rules if r.pattern.search(text) is not None)

    def redact(self, text: str, rules: Sequence[_Rule] | None = None) -> str:
        """``text`` with every match replaced by ``[REDACTED:<kind>]`` (the same object when none)."""
        if len(text) < _MIN_CHARS:
            return text
        for rule in self.rules if rules is None else rules:
            text = _apply(rule, text)
        return text

    def redact_value(self, text: str, rules: Sequence[_Rule] | None = None) -> str:
        """Like :meth:`redact`, but a JSON document stays valid JSON (its strings are redacted one by one)."""
        out = self.redact(text, rules)
        if out is text or out == text:
            return text
        doc = _parse_json(text)
        if doc is _NOT_JSON:
            return out
        return _dumps(_map_strings(doc, functools.partial(self.redact, rules=rules)))


def _apply(rule: _Rule, text: str) -> str:
    if rule.left is None:
        return rule.pattern.sub(functools.partial(_replace, rule), text)
    pieces: list[str] = []
    pos = 0
    for m in rule.pattern.finditer(text):
        start = m.start()
        while start > pos and start > m.start() - _LOCAL_PART_MAX:
            ch = text[start - 1]
            if not (ch in rule.left or ch.isalnum()):  # internationalised local parts (RFC 6531)
                break
            start -= 1
        if start == m.start():
            continue
        pieces += (text[pos:start], f"[REDACTED:{rule.kind}]")
        pos = m.end()
    if not pieces:
        return text
    pieces.append(text[pos:])
    return "".join(pieces)


def _replace(rule: _Rule, m: re.Match[str]) -> str:
    secret = m.group(rule.group)
    if rule.check is not None and not rule.check(secret):
        return m.group(0)
    kind = rule.alt if rule.alt is not None and m.group(1) else rule.kind
    if rule.group == 0:
        return f"[REDACTED:{kind}]"
    whole = m.group(0)
    start = m.start(rule.group) - m.start(0)
    return f"{whole[:start]}[REDACTED:{kind}]{whole[start + len(secret) :]}"


_NOT_JSON: Any = object()


def _dumps(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _parse_json(text: str) -> Any:
    s = text.lstrip()
    if not s or s[0] not in '[{"':
        return _NOT_JSON
    try:
        return json.loads(text)
    except ValueError:
        return _NOT_JSON


def _map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [_map_strings(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: _map_strings(v, fn) for k, v in value.items()}
    return value


def _custom_rule(name: str, pattern: Any) -> _Rule:
    if not isinstance(name, str) or not _KIND_NAME.fullmatch(name):
        raise ValueError(
            f"redact: custom pattern name {name!r}: use 1-40 of a-z 0-9 _ starting with a letter"
        )
    if isinstance(pattern, re.Pattern):
        return _Rule(name, pattern)
    if not isinstance(pattern, str):
        raise ValueError(f"redact: pattern for {name!r} must be a regex string or re.Pattern")
    try:
        return _Rule(name, re.compile(pattern))
    except re.error as e:
        raise ValueError(f"redact: pattern for {name!r} is not a valid regex: {e}") from None


def parse_redact(spec: Any, origin: str = "redact") -> Redactor | None:
    """Turn an ``init(redact=...)`` value (or ``LLM_MONITOR_REDACT``) into a :class:`Redactor`.

    ``None`` means the default (secrets). Returns None when redaction is off. Raises ``ValueError``
    with ``origin`` in the message for an unknown name or a bad pattern (at ``init``, never later).
    """
    if spec is None or spec is True:
        return Redactor(SECRET_RULES)
    if spec is False:
        return None
    items: list[Any]
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s in _OFF:
            return None
        if s in _DEFAULT:
            return Redactor(SECRET_RULES)
        items = [p.strip() for p in s.split(",") if p.strip()]
    elif isinstance(spec, re.Pattern):
        items = [spec]
    elif isinstance(spec, Mapping):
        items = list(spec.items())
    elif isinstance(spec, Iterable):
        items = list(spec)
    else:
        raise ValueError(f"{origin}={spec!r}: expected true/false, names or patterns")
    rules: list[_Rule] = []
    for item in items:
        if isinstance(item, re.Pattern):
            rules.append(_Rule("custom", item))
        elif isinstance(item, tuple) and len(item) == 2:
            rules.append(_custom_rule(item[0], item[1]))
        elif isinstance(item, str):
            name = item.strip().lower()
            for n in _GROUPS.get(name, (name,)):
                if n == "secrets":
                    rules.extend(SECRET_RULES)
                elif n in PII_RULES:
                    rules.extend(PII_RULES[n])
                else:
                    known = ", ".join(("secrets", *PII_KINDS, "pii", "all", "off"))
                    raise ValueError(f"{origin}: unknown redaction {item!r} (known: {known})")
        else:
            raise ValueError(
                f"{origin}: {item!r} is neither a name, a compiled regex nor a (name, regex) pair"
            )
    unique = list({id(r): r for r in rules}.values())
    return Redactor(unique) if unique else None


# --- which attributes hold content -------------------------------------------------------------------

_CONTENT_KEYS = frozenset(
    {
        sc.GEN_AI_INPUT_MESSAGES,
        sc.GEN_AI_OUTPUT_MESSAGES,
        sc.GEN_AI_SYSTEM_INSTRUCTIONS,
        sc.GEN_AI_TOOL_CALL_ARGUMENTS,
        sc.GEN_AI_TOOL_CALL_RESULT,
        sc.LLM_MONITOR_INPUT,
        sc.LLM_MONITOR_OUTPUT,
        sc.LLM_MONITOR_PROMPT_TEMPLATE,
        sc.LLM_MONITOR_PROMPT_VARIABLES,
        sc.OPENINFERENCE_INPUT_VALUE,
        sc.OPENINFERENCE_OUTPUT_VALUE,
        sc.OPENINFERENCE_PROMPTS,
        sc.TRACELOOP_ENTITY_INPUT,
        sc.TRACELOOP_ENTITY_OUTPUT,
        sc.LANGFUSE_OBSERVATION_INPUT,
        sc.LANGFUSE_OBSERVATION_OUTPUT,
        sc.OPENLIT_CONTENT_PROMPT,
        sc.OPENLIT_CONTENT_COMPLETION,
        sc.GEN_AI_EVENT_CONTENT,
        sc.EVENT_CONTENT,
        sc.EVENT_MESSAGE,
    }
)
_CONTENT_PREFIXES = (
    sc.GEN_AI_PROMPT,  # gen_ai.prompt and OpenLLMetry's gen_ai.prompt.N.content
    sc.GEN_AI_COMPLETION,
    sc.OPENINFERENCE_INPUT_MESSAGES_PREFIX,
    sc.OPENINFERENCE_OUTPUT_MESSAGES_PREFIX,
    sc.OPENINFERENCE_PROMPT_TEMPLATE_PREFIX,
)


def is_content_key(key: str) -> bool:
    """Whether attribute ``key`` carries prompt/output/argument text under any convention we know."""
    return key in _CONTENT_KEYS or key.startswith(_CONTENT_PREFIXES)


# --- the policy and the exporter wrapper ---------------------------------------------------------------


def _shrink_json(doc: Any, limit: int) -> str | None:
    """JSON text of ``doc`` within ``limit`` characters, obtained by cutting its longest strings."""
    text = _dumps(doc)
    for _ in range(4):
        if len(text) <= limit:
            return text
        lengths = _string_lengths(doc, [])
        if not lengths:
            return None
        excess = len(text) - limit + 64 * len(lengths)  # room for the markers
        cap = max(_MIN_STRING_SHARE, _cap_for(sorted(lengths, reverse=True), excess))
        doc = _map_strings(doc, functools.partial(_cut, limit=cap))
        text = _dumps(doc)
    return text if len(text) <= limit else None


def _cut(text: str, limit: int) -> str:
    return truncate(text, limit)


def _string_lengths(value: Any, out: list[int]) -> list[int]:
    if isinstance(value, str):
        out.append(len(value))
    elif isinstance(value, list):
        for v in value:
            _string_lengths(v, out)
    elif isinstance(value, dict):
        for v in value.values():
            _string_lengths(v, out)
    return out


def _cap_for(lengths_desc: list[int], excess: int) -> int:
    """The largest per-string cap whose cuts remove at least ``excess`` characters."""
    removed = 0
    for i, n in enumerate(lengths_desc):
        nxt = lengths_desc[i + 1] if i + 1 < len(lengths_desc) else 0
        # Lowering the cap from n to nxt removes (n - nxt) from each of the i + 1 longest strings.
        if removed + (n - nxt) * (i + 1) >= excess:
            return n - -(-(excess - removed) // (i + 1))
        removed += (n - nxt) * (i + 1)
    return 0


class ContentPolicy:
    """What happens to a finished span's strings before export (see the module docstring).

    Pure and thread-safe; :meth:`apply` returns the same span object when nothing changes. The common
    case (nothing to redact, nothing too long) costs one search per rule over the span's strings
    joined together, not one per attribute.
    """

    __slots__ = ("capture_content", "max_chars", "redactor")

    def __init__(
        self,
        redactor: Redactor | None,
        max_chars: int | None = DEFAULT_MAX_CONTENT_CHARS,
        capture_content: bool = True,
    ) -> None:
        self.redactor = redactor
        self.max_chars = max_chars or None
        self.capture_content = capture_content

    @property
    def active(self) -> bool:
        return self.redactor is not None or self.max_chars is not None or not self.capture_content

    def value(self, text: str, rules: Sequence[_Rule] | None = None) -> str:
        """One string value, redacted (with ``rules``, default all) then capped."""
        if self.redactor is not None and rules != ():
            text = self.redactor.redact_value(text, rules)
        limit = self.max_chars
        if limit is not None and len(text) > limit:
            doc = _parse_json(text)
            shrunk = _shrink_json(doc, limit) if doc is not _NOT_JSON else None
            text = (
                shrunk if shrunk is not None else text[:limit] + TRUNCATION_MARKER.format(n=len(text) - limit)
            )
        return text

    def _survey(self, attr_maps: Sequence[Mapping[str, Any] | None]) -> tuple[Sequence[_Rule], bool]:
        """(rules with a candidate match in any string, whether any work is needed at all)."""
        strings: list[str] = []
        work = False
        limit = self.max_chars
        for attrs in attr_maps:
            if not attrs:
                continue
            for key, v in attrs.items():
                if isinstance(v, str):
                    if len(v) >= _MIN_CHARS:
                        strings.append(v)
                        if limit is not None and len(v) > limit:
                            work = True
                elif isinstance(v, (list, tuple)):
                    for x in v:
                        if isinstance(x, str) and len(x) >= _MIN_CHARS:
                            strings.append(x)
                            if limit is not None and len(x) > limit:
                                work = True
                if not self.capture_content and is_content_key(key):
                    work = True
        rules: Sequence[_Rule] = ()
        if self.redactor is not None and strings:
            rules = self.redactor.candidates(strings[0] if len(strings) == 1 else "\x00".join(strings))
        return rules, work or bool(rules)

    def attributes(
        self, attrs: Mapping[str, Any] | None, rules: Sequence[_Rule] | None = None
    ) -> dict[str, Any] | None:
        """Rewritten attributes, or None when nothing changed."""
        if not attrs:
            return None
        out: dict[str, Any] | None = None
        for key, v in attrs.items():
            if not self.capture_content and is_content_key(key):
                if out is None:
                    out = dict(attrs)
                del out[key]
                continue
            if isinstance(v, str):
                if len(v) < _MIN_CHARS:
                    continue
                nv: Any = self.value(v, rules)
                if nv is v:
                    continue
            elif isinstance(v, (list, tuple)) and v and any(isinstance(x, str) for x in v):
                items = [self.value(x, rules) if isinstance(x, str) else x for x in v]
                if all(a is b for a, b in zip(items, v, strict=True)):
                    continue
                nv = tuple(items)
            else:
                continue
            if out is None:
                out = dict(attrs)
            out[key] = nv
        return out

    def apply(self, span: ReadableSpan) -> ReadableSpan:
        """``span`` itself when nothing changes, else a copy with rewritten attributes and events."""
        events = span.events
        rules, work = self._survey([span.attributes, *(ev.attributes for ev in events)])
        if not work:
            return span
        attrs = self.attributes(span.attributes, rules)
        new_events: list[Event] | None = None
        for i, ev in enumerate(events):
            ev_attrs = self.attributes(ev.attributes, rules)
            if ev_attrs is not None:
                if new_events is None:
                    new_events = list(events)
                new_events[i] = Event(ev.name, ev_attrs, ev.timestamp, limit=None)
        if attrs is None and new_events is None:
            return span
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=span.attributes if attrs is None else attrs,
            events=events if new_events is None else new_events,
            links=span.links,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )


class ContentPolicyExporter(SpanExporter):
    """Applies a :class:`ContentPolicy` to each span, then hands the batch to the wrapped exporter.

    Runs on the batch processor's export thread (never the app's). A span our policy fails on is
    dropped, not exported unredacted, and counted in ``failed`` (the guard logs the first failure).
    """

    def __init__(self, inner: SpanExporter, policy: ContentPolicy) -> None:
        self.inner = inner
        self.policy = policy
        self.failed = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        out: list[ReadableSpan] = []
        for span in spans:
            done = False
            with guard("redact.span"):
                out.append(self.policy.apply(span))
                done = True
            if not done:
                self.failed += 1
        return self.inner.export(out) if out else SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        flush = getattr(self.inner, "force_flush", None)
        return bool(flush(timeout_millis)) if callable(flush) else True
