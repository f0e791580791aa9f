"""PII and secrets analyzer (monitor.analyzers.pii): detectors, validators, batches, options."""

from __future__ import annotations

import pytest

from monitor.analyzers import load
from monitor.analyzers.base import AnalyzerConfigError, Score
from monitor.analyzers.pii import ENTITY_TYPES, PIIAnalyzer, find_pii, iban_ok, luhn_ok, my_number_ok


def test_validators() -> None:
    assert luhn_ok("4539412248244757") and luhn_ok("371497143987542") and luhn_ok("6011189991330361")
    assert not luhn_ok("4539412248244758")
    assert iban_ok("GB82WEST12345698765432") and iban_ok("DE89370400440532013000")
    assert not iban_ok("GB82WEST12345698765433")  # mod-97 fails
    assert not iban_ok("DE8937040044053201300")  # Germany is 22 characters
    assert my_number_ok("123456789018") and my_number_ok("987654321018")
    assert not my_number_ok("123456789012") and not my_number_ok("12345678901")


POSITIVES = [
    ("Contact me at maria.gonzalez+work@example.co.uk please.", {"email": 1}),
    ("ｔａｎａｋａ＠ｅｘａｍｐｌｅ．ｃｏ．ｊｐ までご連絡ください", {"email": 1}),  # full-width
    ("電話番号は03-1234-5678です。携帯は090-1234-5678、フリーダイヤル0120-123-456。", {"phone": 3}),
    ("海外からは +81 90-1234-5678 へ。London +44 20 7946 0958, NY +1 (212) 555-0143.", {"phone": 3}),
    ("US (212) 555-0143 or 415.555.0199; UK 020 7946 0958 and 07700 900123", {"phone": 4}),
    ("全角で ０９０－１２３４－５６７８ と書かれていました。", {"phone": 1}),
    ("携帯 090ー1234ー5678（長音記号）", {"phone": 1}),
    ("card 4539 4122 4824 4757, 5425-8783-1012-2283 and amex 371497143987542", {"credit_card": 3}),
    ("Pay to IBAN GB82 WEST 1234 5698 7654 32 or DE89370400440532013000.", {"iban": 2}),
    ("My SSN is 536-22-1234.", {"us_ssn": 1}),
    ("マイナンバーは1234 5678 9018です。", {"jp_my_number": 1}),
    ("個人番号：123456789018", {"jp_my_number": 1}),
    ("NI number AB123456C, or written AB 12 34 56 C.", {"uk_nino": 2}),
    ("The server at 192.168.1.20 answered; the v6 host is 2001:db8:85a3::8a2e:370:7334.", {"ip_address": 2}),
    ("key sk-proj-Xy7pQ2rT9vL4mN8kZ3wB6cD1 and sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123", {"api_key": 2}),
    ("AWS AKIAIOSFODNN7EXAMPLE, GitHub ghp_abcdefghijklmnopqrstuvwxyz0123456789", {"api_key": 2}),
    ("Slack xoxb-1234567890-abcdefghij, Google AIzaSyA-abcdefghijklmnopqrstuvwxyz12345", {"api_key": 2}),
    ("Stripe sk_live_abcdefghijklmnopqrstuvwx", {"api_key": 1}),
    (
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        {"jwt": 1},
    ),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA...", {"private_key": 1}),
    ('config: api_key = "q8Zr2Lx9VbN4tW7pK3mY"', {"secret": 1}),
    ("DB_PASSWORD=Zx8!kQ2pLm9vRt4wYb7n", {"secret": 1}),
    (
        "mail a.b@example.com, call 090-1234-5678, card 4539-4122-4824-4757",
        {"email": 1, "phone": 1, "credit_card": 1},
    ),
]

NEGATIVES = [
    "product code 4539 4122 4824 4758 (fails Luhn)",
    "test numbers 4111 1111 1111 1111 and 0000 0000 0000 0000 are not customers' cards",
    "Bad IBAN GB82 WEST 1234 5698 7654 33 (checksum)",
    "Invalid SSNs: 078-05-1120 (specimen), 900-12-3456, 666-12-3456, 123-00-4567",
    "注文番号 1234 5678 9012 は発送済みです",  # 12 digits, wrong My Number check digit
    "Upgrade to version 10.2.3.4 or 1.2.3.4; localhost 127.0.0.1; bind 0.0.0.0",
    "Released 2024-01-15 at 12:30:45, see std::vector and the ::1 loopback",
    "Order ORD-2024-000123 costs $1,234.56 for 1234567 users in 2023 and 2024.",
    "Placeholders: API_KEY=your_api_key_here, password: <your password>, token=xxxxxxxxxxxxxxxxxxxx",
    "The max_tokens = 1024 and temperature: 0.7 settings are fine.",
    "Use the @monitor.chain decorator; see docs at example dot com.",
    "QQ 12 34 56 C is HMRC's example NI number.",
    "電話はまだありません。価格は1,980円です。",
]


@pytest.mark.parametrize(("text", "expected"), POSITIVES)
def test_finds(text: str, expected: dict[str, int]) -> None:
    assert find_pii(text) == expected


@pytest.mark.parametrize("text", NEGATIVES)
def test_tricky_negatives(text: str) -> None:
    assert find_pii(text) == {}


def test_gates_never_hide_a_match() -> None:
    """The cheap gates only skip work: gated and ungated detection agree on every text here."""
    texts = [t for t, _ in POSITIVES] + NEGATIVES
    texts += [a + " " + b for a in texts[:12] for b in texts[12:24]]
    texts += [t.upper() for t in texts] + [t.lower() for t in texts]
    for text in texts:
        assert find_pii(text) == find_pii(text, gated=False), text


def test_entity_filter() -> None:
    text = "mail a.b@example.com, call 090-1234-5678"
    assert find_pii(text, frozenset({"phone"})) == {"phone": 1}
    # a card is not re-read as a phone number once found; when cards are not asked for, it is still no phone
    assert find_pii("4539 4122 4824 4757", frozenset({"phone"})) == {}


def test_score_rows_per_side() -> None:
    spans = [
        {"input_text": "mail me: a.b@example.com, call 090-1234-5678", "output_text": "Sure, noted."},
        {"input_text": "", "output_text": "card 4539 4122 4824 4757"},
        {"input_text": None, "output_text": None},  # no text on either side: no rows
        {"input_text": "hello"},  # output_text missing from the row
        {"input_text": "x@example.com " * 12, "output_text": "ok"},
    ]
    rows = list(load("pii")().score(spans))
    assert rows == [
        Score(0, "input", 1.0, "email,phone"),
        Score(0, "input.email", 0.1, "email"),
        Score(0, "input.phone", 0.1, "phone"),
        Score(0, "output", 0.0, ""),
        Score(1, "output", 1.0, "credit_card"),
        Score(1, "output.credit_card", 0.1, "credit_card"),
        Score(3, "input", 0.0, ""),
        Score(4, "input", 1.0, "email"),
        Score(4, "input.email", 1.0, "email"),  # 12 found, capped at 10 → 1.0
        Score(4, "output", 0.0, ""),
    ]


def test_options() -> None:
    a = PIIAnalyzer({"entities": ["email"], "cap": 4})
    assert list(a.score([{"input_text": "a@example.com b@example.com 090-1234-5678"}])) == [
        Score(0, "input", 1.0, "email"),
        Score(0, "input.email", 0.5, "email"),
    ]
    assert PIIAnalyzer().entities is None  # all types: no filtering work
    with pytest.raises(AnalyzerConfigError, match="unknown type 'passport'"):
        PIIAnalyzer({"entities": ["email", "passport"]})
    with pytest.raises(AnalyzerConfigError, match="cap must be at least 1"):
        PIIAnalyzer({"cap": 0})
    with pytest.raises(AnalyzerConfigError, match="cap must be int"):
        PIIAnalyzer({"cap": "10"})
    with pytest.raises(AnalyzerConfigError, match="unknown option 'entity'"):
        PIIAnalyzer({"entity": ["email"]})


def test_entity_types_are_documented() -> None:
    import monitor.analyzers.pii as pii

    assert ENTITY_TYPES == ("api_key", "credit_card", "email", "iban", "ip_address", "jp_my_number", "jwt",
                            "phone", "private_key", "secret", "uk_nino", "us_ssn")  # fmt: skip
    for entity in ENTITY_TYPES:
        assert f"``{entity}``" in (pii.__doc__ or "")


def test_halfwidth_folding_keeps_offsets() -> None:
    from monitor.analyzers._text import to_halfwidth

    assert to_halfwidth("０９０－１２３４ー５６７８　ＡＢＣ＠ｘ．ｊｐ") == "090-1234-5678 ABC@x.jp"
    assert to_halfwidth("データー") == "データー"  # the prolonged sound mark is a dash only between digits
    text = "plain ascii"
    assert to_halfwidth(text) is text


def test_huge_and_odd_text_does_not_break() -> None:
    blob = "A" * 200_000 + "@" + "b" * 100_000 + " 4539 4122 4824 4757 \ud800"
    assert find_pii(blob) == {"credit_card": 1}
