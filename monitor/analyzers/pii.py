"""PII and secrets in prompts and completions: regexes, then validators that cut false positives.

What is found (the entity types, used in ``label`` and in the detail metrics):

============== =====================================================================================
``email``      ``local@domain.tld``
``phone``      international (``+81 90-1234-5678``, ``+44 20 7946 0958``), US (``(212) 555-0143``),
               UK (``020 7946 0958``, ``07700 900123``) and Japanese (``03-1234-5678``, ``090-1234-5678``,
               ``0120-123-456``) numbers; full-width digits too. Digit counts are checked per format.
``credit_card`` 13–19 digits, contiguous or in groups of four (or Amex 4-6-5), a known issuer prefix and
               a valid Luhn checksum
``iban``       country code, check digits, the country's length where known, and a valid mod-97
``us_ssn``     ``123-45-6789`` shape without the never-issued ranges (000, 666, 9xx areas; 00 groups;
               0000 serials) and the published specimen numbers
``jp_my_number`` 12 digits (optionally 4-4-4) with a valid My Number check digit
``uk_nino``    UK National Insurance number with the excluded prefixes and letters left out
``ip_address`` IPv4 (not loopback, unspecified, broadcast, all-single-digit quads like ``1.2.3.4``, nor a
               quad after "version"/"v"), IPv6 (parsed; at least three groups; not loopback/link-local)
``api_key``    provider key formats: OpenAI ``sk-…``, Anthropic ``sk-ant-…``, AWS ``AKIA…``, GitHub
               ``ghp_…``/``github_pat_…``, Slack ``xox?-…``, Google ``AIza…``, Stripe ``sk_live_…``
``jwt``        three base64url segments, the first two starting ``eyJ`` (a JSON object)
``private_key`` a ``-----BEGIN … PRIVATE KEY-----`` block header
``secret``     ``api_key=…`` / ``password: …`` / ``token = "…"`` assignments whose value is long and
               high-entropy (placeholders like ``your-api-key-here`` are not)
============== =====================================================================================

Rows per side with text (``input`` reads ``input_text``, ``output`` reads ``output_text``):

* ``input`` / ``output``: 1.0 when anything was found, else 0.0; ``label`` = the sorted, comma-separated
  entity types found.
* ``input.<type>`` / ``output.<type>``: only for the types found, the number of occurrences divided by
  ``cap`` (option, default 10) and capped at 1.0, so ``value * cap`` is the count up to ``cap``.

Speed: the expensive detectors only run behind cheap gates (``@`` for e-mail; seven digits with at most
single separators for phone/card/IBAN/SSN/My Number; a digit-dot-digit for IPv4; a hex colon pair for
IPv6; key prefixes), and validators run only on regex candidates. :data:`DETECTORS` lists every detector
with its own regex, which is also what the benchmark's naive baseline runs one by one.

Options: ``entities`` (list of types to report; default all), ``cap`` (int ≥ 1, default 10).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from monitor.analyzers._text import check_options, to_halfwidth
from monitor.analyzers.base import Analyzer, AnalyzerConfigError, Score, input_text, output_text

__all__ = ["DETECTORS", "ENTITY_TYPES", "PIIAnalyzer", "find_pii", "iban_ok", "luhn_ok", "my_number_ok"]


# --- validators ----------------------------------------------------------------------------------------
def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) checksum of a digit string, as on payment cards."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# ISO 13616 lengths of the countries most seen; others only need 15..34 characters and mod-97.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21, "CY": 28, "CZ": 24,
    "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23, "GR": 27, "HR": 21,
    "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27,
    "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SA": 24, "SE": 24, "SI": 19, "SK": 24,
    "SM": 27, "TR": 26, "UA": 29,
}  # fmt: skip


def iban_ok(iban: str) -> bool:
    """An IBAN (spaces removed, upper case) with its country's length and a valid mod-97 check."""
    n = len(iban)
    want = _IBAN_LENGTHS.get(iban[:2])
    if (want is not None and n != want) or not 15 <= n <= 34 or not iban[2:4].isdigit():
        return False
    rearranged = iban[4:] + iban[:4]
    num = "".join(str(int(c, 36)) for c in rearranged)
    return int(num) % 97 == 1


def my_number_ok(digits: str) -> bool:
    """A Japanese individual number (マイナンバー): 12 digits whose last is the check digit."""
    if len(digits) != 12:
        return False
    body = digits[:11]
    total = 0
    for n in range(1, 12):  # n-th digit from the right of the 11-digit body
        q = n + 1 if n <= 6 else n - 5
        total += (ord(body[11 - n]) - 48) * q
    r = total % 11
    check = 0 if r <= 1 else 11 - r
    return check == ord(digits[11]) - 48


def _digits(s: str) -> str:
    return "".join(c for c in s if "0" <= c <= "9")


def _entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    counts: dict[str, int] = {}
    for c in s:
        counts[c] = counts.get(c, 0) + 1
    n = len(s)
    return -sum(k / n * math.log2(k / n) for k in counts.values())


# --- detectors -------------------------------------------------------------------------------------------
# A validator gets (match, text) and says whether the candidate is real.
Validator = Callable[["re.Match[str]", str], bool]


def _wordish(c: str) -> bool:
    """An ASCII letter, digit or underscore (a kana or kanji right before a number is a boundary)."""
    return c.isascii() and (c.isalnum() or c == "_")


def _bounded(m: re.Match[str], text: str, before: str = "", after: str = "", glued: bool = False) -> bool:
    """No word character (nor one of ``before``/``after``) right before/after the match.

    ``glued``: also reject a match that a single space or dash joins to more digits (``4111 1111 1111``
    is the start of a longer number, not a 12-digit one).
    """
    a, b = m.start(), m.end()
    if a > 0:
        c = text[a - 1]
        if _wordish(c) or c in before:
            return False
        if glued and c in " -" and a > 1 and text[a - 2].isdigit():
            return False
    if b < len(text):
        c = text[b]
        if _wordish(c) or c in after:
            return False
        if glued and c in " -" and b + 1 < len(text) and text[b + 1].isdigit():
            return False
    return True


def _email(m: re.Match[str], text: str) -> bool:
    local = m.group(1)
    return not local.startswith(".") and ".." not in m.group()


_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[47]|3[068]|35|6(?:011|5|4[4-9]|2)")
_CARD_GROUPS = re.compile(r"\d{4}(?:([ -])\d{4}(?:\1\d{4}(?:\1\d{1,7})?)?)?|\d{4}([ -])\d{6}\2\d{4,5}")


def _card(m: re.Match[str], text: str) -> bool:
    if not _bounded(m, text, "-.", "-", glued=True):
        return False
    raw = m.group()
    digits = _digits(raw)
    if not 13 <= len(digits) <= 19 or _CARD_PREFIX.match(digits) is None or len(set(digits)) < 3:
        return False
    if raw != digits and _CARD_GROUPS.fullmatch(raw) is None:  # separators only at issuer groupings
        return False
    return luhn_ok(digits)


def _iban(m: re.Match[str], text: str) -> bool:
    return _bounded(m, text) and iban_ok(m.group().replace(" ", ""))


_SSN_SPECIMENS = frozenset({"078051120", "219099999", "123456789"})


def _ssn(m: re.Match[str], text: str) -> bool:
    if not _bounded(m, text, "-.", "-", glued=True):
        return False
    d = _digits(m.group())
    area, group, serial = d[:3], d[3:5], d[5:]
    return not (
        area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000" or d in _SSN_SPECIMENS
    )


def _my_number(m: re.Match[str], text: str) -> bool:
    return _bounded(m, text, "-.", "-", glued=True) and my_number_ok(_digits(m.group()))


def _phone_intl(m: re.Match[str], text: str) -> bool:
    if not _bounded(m, text, "+", "-"):
        return False
    return 8 <= len(_digits(m.group())) <= 15


_JP_11 = ("050", "060", "070", "080", "090", "020", "0800")


def _phone_jp(m: re.Match[str], text: str) -> bool:
    if not _bounded(m, text, "-.+", "-"):
        return False
    d = _digits(m.group())
    return len(d) == 10 or (len(d) == 11 and d.startswith(_JP_11))


def _phone_us(m: re.Match[str], text: str) -> bool:
    return _bounded(m, text, ".", "-") and len(_digits(m.group())) == 10


def _phone_uk(m: re.Match[str], text: str) -> bool:
    if not _bounded(m, text, "-.+", "-"):
        return False
    d = _digits(m.group())
    return len(d) in (10, 11) and (" " in m.group() or d.startswith("07"))


_VERSION_CONTEXT = re.compile(r"(?i)(?:\bv|version|ver\.?|release|build|python|node|バージョン)\s*:?\s*$")


def _ipv4(m: re.Match[str], text: str) -> bool:
    a, b = m.span()
    if a > 0 and (_wordish(text[a - 1]) or text[a - 1] in ".-"):
        return False
    if b < len(text):
        c = text[b]
        # a '.' after the quad ends a sentence unless a digit follows (then it is a longer dotted number)
        if _wordish(c) or (c == "." and b + 1 < len(text) and text[b + 1].isdigit()):
            return False
    parts = m.group().split(".")
    if all(len(p) == 1 for p in parts):  # 1.2.3.4, 3.1.4.1: far more often versions than hosts
        return False
    if _VERSION_CONTEXT.search(text, max(0, a - 12), a) is not None:
        return False
    ip = ipaddress.IPv4Address(m.group())  # the regex admits only valid octets
    return not (ip.is_loopback or ip.is_unspecified or ip == _BROADCAST)


_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def _ipv6(m: re.Match[str], text: str) -> bool:
    if not _bounded(m, text, ":.", ":"):
        return False
    s = m.group()
    if sum(1 for g in s.split(":") if g) < 3:
        return False
    try:
        ip = ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_unspecified or ip.is_link_local)


def _key(m: re.Match[str], text: str) -> bool:
    return _bounded(m, text, "-")


_PLACEHOLDER = re.compile(r"(?i)your|example|placeholder|xxxx|<|\*\*\*|changeme|dummy|redacted|\.\.\.")


def _secret(m: re.Match[str], text: str) -> bool:
    value = m.group("value")
    if _PLACEHOLDER.search(value) is not None:
        return False
    classes = (
        any(c.islower() for c in value) + any(c.isupper() for c in value) + any(c.isdigit() for c in value)
    )
    return classes >= 2 and _entropy(value) >= 3.5


@dataclass(frozen=True, slots=True)
class Detector:
    """One entity format: its regex, the validator run on each match, and the gate that must pass first."""

    entity: str
    name: str
    pattern: re.Pattern[str]
    validate: Validator | None
    gate: str  # key of _GATES; "" = always run


def _d(
    entity: str, name: str, pattern: str, validate: Validator | None, gate: str, flags: int = 0
) -> Detector:
    return Detector(entity, name, re.compile(pattern, flags), validate, gate)


# Order is priority: a later detector's match overlapping an accepted entity is dropped (a card number is
# not also a phone number; the digits inside a key are not a phone number).
DETECTORS: tuple[Detector, ...] = (
    _d("private_key", "pem", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----", None, "dash"),
    _d("jwt", "jwt", r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", _key, "jwt"),
    _d("api_key", "anthropic", r"sk-ant-(?:api|admin)\d\d-[A-Za-z0-9_-]{20,}", _key, "sk"),
    _d("api_key", "openai", r"sk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}", _key, "sk"),
    _d("api_key", "stripe", r"(?:sk|rk)_live_[A-Za-z0-9]{20,}", _key, "live"),
    _d("api_key", "aws", r"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}", _key, "aws"),
    _d("api_key", "github", r"(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})", _key, "gh"),
    _d("api_key", "slack", r"xox[abposr]-[A-Za-z0-9-]{10,}", _key, "xox"),
    _d("api_key", "google", r"AIza[0-9A-Za-z_-]{35}", _key, "aiza"),
    _d(
        "secret",
        "assignment",
        r"(?i)(?:api[_-]?key|apikey|secret(?:[_-]?key)?|client[_-]?secret|access[_-]?key(?:[_-]?id)?|"
        r"auth[_-]?token|access[_-]?token|token|passw(?:or)?d|pwd)[\"']?\s*(?::=|=>|[:=])\s*[\"']?"
        r"(?P<value>[^\s\"'`<>,;]{16,})",
        _secret,
        "assign",
    ),
    _d(
        "email",
        "email",
        r"(?<![A-Za-z0-9._%+-])([A-Za-z0-9._%+-]{1,64})@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b",
        _email,
        "at",
    ),
    _d("iban", "iban", r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?", _iban, "digits"),
    _d("credit_card", "card", r"\d(?:[ -]?\d){12,18}", _card, "digits"),
    _d("jp_my_number", "my_number", r"\d{4}([ -]?)\d{4}\1\d{4}", _my_number, "digits"),
    _d("us_ssn", "ssn", r"\d{3}([- ])\d{2}\1\d{4}", _ssn, "digits"),
    _d(
        "phone",
        "intl",
        r"\+[1-9]\d{0,2}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,5}(?:[ .-]?\d{1,5}){1,4}",
        _phone_intl,
        "digits",
    ),
    _d(
        "phone",
        "jp",
        r"0\d{1,4}-\d{1,4}-\d{3,4}|0\d{1,4}\(\d{1,4}\)\d{3,4}|0[5789]0\d{8}|0120\d{6}",
        _phone_jp,
        "digits",
    ),
    _d("phone", "us", r"(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .-])[2-9]\d{2}[ .-]\d{4}", _phone_us, "digits"),
    _d("phone", "uk", r"0\d{2,4} \d{3,4} ?\d{3,4}|07\d{3} ?\d{6}", _phone_uk, "digits"),
    _d(
        "uk_nino",
        "nino",
        r"(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]",
        _key,
        "nino",
    ),
    _d(
        "ip_address",
        "ipv4",
        r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}",
        _ipv4,
        "dot",
    ),
    _d(
        "ip_address",
        "ipv6",
        r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}",
        _ipv6,
        "colon",
    ),
)

ENTITY_TYPES: tuple[str, ...] = tuple(sorted({d.entity for d in DETECTORS}))

# Gates: one cheap test per family of detectors, evaluated at most once per text.
_GATES: dict[str, Callable[[str], object]] = {
    "dash": lambda t: "-----BEGIN" in t,
    "jwt": lambda t: "eyJ" in t,
    "sk": lambda t: "sk-" in t,
    "live": lambda t: "_live_" in t,
    "aws": re.compile(r"A[KSBC][IC]A[0-9A-Z]{16}").search,
    "gh": lambda t: "gh" in t and ("_" in t),
    "xox": lambda t: "xox" in t,
    "aiza": lambda t: "AIza" in t,
    # every keyword of the "secret" detector ends with one of these right before its '=' or ':'
    "assign": re.compile(r"(?i)(?:key|secret|token|passw(?:or)?d|pwd|id)[\"']?\s*(?::=|=>|[:=])").search,
    "at": lambda t: "@" in t,
    # seven digits with at most one-or-two separator characters between consecutive digits
    "digits": re.compile(r"\d(?:[ \-().]{0,2}\d){6}").search,
    "nino": re.compile(r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2}").search,
    "dot": re.compile(r"\d\.\d").search,
    "colon": re.compile(r"[0-9A-Fa-f]:[0-9A-Fa-f:]|::").search,
}


def find_pii(text: str, entities: frozenset[str] | None = None, gated: bool = True) -> dict[str, int]:
    """Counts of each entity type found in ``text`` (types with no occurrence are absent).

    ``entities`` restricts the search to those types (all when ``None``). ``gated=False`` runs every
    detector whatever the gates say (the reference the gates are tested against). Pure; never raises on
    odd text.
    """
    text = to_halfwidth(text)
    counts: dict[str, int] = {}
    taken: list[tuple[int, int]] = []
    gates: dict[str, bool] = {}
    for det in DETECTORS:
        if entities is not None and det.entity not in entities:
            continue
        gate = gates.get(det.gate)
        if gate is None:
            gate = gates[det.gate] = bool(_GATES[det.gate](text)) or not gated
        if not gate:
            continue
        for m in det.pattern.finditer(text):
            a, b = m.span()
            if any(a < y and x < b for x, y in taken):
                continue
            if det.validate is not None and not det.validate(m, text):
                continue
            taken.append((a, b))
            counts[det.entity] = counts.get(det.entity, 0) + 1
    return counts


_OPTIONS = ("entities", "cap")


class PIIAnalyzer(Analyzer):
    """PII and secrets in ``input_text`` and ``output_text``; see the module docstring.

    Pure and thread-safe (no state after ``__init__``); called from the scheduler's thread; never blocks.
    """

    name: ClassVar[str] = "pii"
    version: ClassVar[str] = "1"
    fields: ClassVar[tuple[str, ...]] = ("input_text", "output_text")

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        check_options(self.name, self.options, _OPTIONS)
        wanted = self.option("entities", list(ENTITY_TYPES), (list, tuple))
        unknown = [e for e in wanted if e not in ENTITY_TYPES]
        if unknown:
            raise AnalyzerConfigError(
                f"analyzers: pii: entities: unknown type {unknown[0]!r} (known: {', '.join(ENTITY_TYPES)})"
            )
        self.entities: frozenset[str] | None = None if set(wanted) == set(ENTITY_TYPES) else frozenset(wanted)
        self.cap: int = self.option("cap", 10, int)
        if self.cap < 1:
            raise AnalyzerConfigError(f"analyzers: pii: cap must be at least 1, got {self.cap}")

    def score(self, spans: Sequence[Mapping[str, Any]]) -> Iterable[Score]:
        out: list[Score] = []
        for i, span in enumerate(spans):
            for side, text in (("input", input_text(span)), ("output", output_text(span))):
                if text:
                    out.extend(self.score_text(i, side, text))
        return out

    def score_text(self, row: int, side: str, text: str) -> list[Score]:
        """The rows for one side of one span: the headline plus one per entity type found."""
        counts = find_pii(text, self.entities)
        rows = [Score(row, side, 1.0 if counts else 0.0, ",".join(sorted(counts)))]
        for entity in sorted(counts):
            rows.append(Score(row, f"{side}.{entity}", min(counts[entity], self.cap) / self.cap, entity))
        return rows
