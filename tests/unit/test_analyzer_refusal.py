"""Refusal analyzer (monitor.analyzers.refusal): phrasing, position, quotation, batches."""

from __future__ import annotations

import re

import pytest

from monitor.analyzers import load
from monitor.analyzers._text import quoted_at
from monitor.analyzers.base import AnalyzerConfigError, Score
from monitor.analyzers.refusal import PHRASES, RefusalAnalyzer, refusal_score, score_hits

LONG_HELP = (
    "If you are interested in security, I can recommend resources on defensive programming and how to set "
    "up a safe lab for malware analysis with isolated virtual machines, snapshots and no network access to "
    "production systems, plus courses on reverse engineering."
)

CASES = [
    # outright refusals at the start with little else
    ("I'm sorry, but I can't help with that.", 1.0, "refusal"),
    (
        "I can't help with that request. If you are in danger, please contact local emergency services.",
        1.0,
        "refusal",
    ),
    ("I must respectfully decline this request.", 1.0, "refusal"),
    ("That request goes against my guidelines.", 1.0, "refusal"),
    ("Unfortunately, I cannot browse the internet.", 1.0, "refusal"),
    ("I’m not able to share that.", 1.0, "refusal"),  # typographic apostrophe
    ("申し訳ありませんが、そのご質問にはお答えできません。", 1.0, "refusal"),
    (
        "申し訳ございませんが、このリクエストにはお応えできません。他にお手伝いできることがあればお知らせください。",
        1.0,
        "refusal",
    ),
    ("お手伝いできません。", 1.0, "refusal"),
    ("倫理的な理由から、その内容は作成できません。", 1.0, "refusal"),
    # disclaimers alone
    ("As an AI language model, I don't have personal opinions.", 0.7, "refusal"),
    ("私はAIなので、個人的な感情はありません。", 0.7, "refusal"),
    # a refusal, then real help: partial
    ("I cannot assist with creating malware. " + LONG_HELP, 0.6, "partial"),
    (
        "I can't provide medical advice, but here are some general tips that many people find useful when "
        "dealing with a mild headache: drink plenty of water, rest in a dark and quiet room, avoid screens for a "
        "while, and consider an over-the-counter pain reliever if appropriate. If symptoms persist, see a doctor.",
        0.6,
        "partial",
    ),
    (
        "I don't have access to real-time stock prices, but here is how to look them up: open your broker's "
        "app, search for the ticker, and check the last traded price shown on the quote page, which updates "
        "during market hours. Many free sites also show delayed quotes.",
        0.42,
        "partial",
    ),
    (
        "AIとして個人的な意見は持っていませんが、一般的には次のような点が挙げられます。まず、コストの面では初期費用が低いことが"
        "利点です。次に、運用面では自動化が進んでおり、保守の手間が少なくなります。",
        0.42,
        "partial",
    ),
    # a refusal later in an otherwise helpful answer
    (
        "Sure! Here is the summary. Revenue grew 12%. Costs were flat. Margins improved slightly in all regions. "
        "I'm unable to share the customer list, though.",
        0.4,
        "partial",
    ),
]

NEGATIVES = [
    # a refusal quoted inside a helpful answer
    'A typical refusal looks like "I\'m sorry, but I cannot help with that." You can detect it with a classifier.',
    "モデルが「申し訳ありませんが、お手伝いできません」と答える場合、それは拒否応答です。",
    "Sure! Here's the code:\n```python\nprint('I cannot help with that')\n```\nRun it with python3.",
    "Use `I cannot help with that` as the canned reply when the user asks for medical advice.",
    # refusal-like words that are not refusals
    "I can't stress enough how important backups are. Here is how to set them up.",
    "I cannot tell from this log whether the job failed.",
    "ファイルを作成できません、というエラーが出る場合は、書き込み権限を確認してください。",
    "このバージョンはPython 2に対応できません。",
    "Sorry for the confusion earlier: the correct flag is --timeout, not --time-out.",
    "申し訳ありません、先ほどの回答に誤りがありました。正しくは3番目の設定です。",
]


@pytest.mark.parametrize(("text", "value", "label"), CASES)
def test_refusals(text: str, value: float, label: str) -> None:
    assert refusal_score(text) == (value, label)


@pytest.mark.parametrize("text", NEGATIVES)
def test_not_refusals(text: str) -> None:
    assert refusal_score(text) == (0.0, "")


def test_needles_never_hide_a_phrase() -> None:
    """Running every phrase regardless of its needles gives the same scores on every text here."""
    compiled = [(re.compile(p, re.IGNORECASE), w) for _, p, w in PHRASES]
    texts = [t for t, _, _ in CASES] + NEGATIVES
    texts += [t.upper() for t in texts] + [t.lower() for t in texts]
    for text in texts:
        hits = [
            (m.start(), m.end(), w)
            for p, w in compiled
            for m in p.finditer(text)
            if not quoted_at(text, m.start())
        ]
        assert refusal_score(text) == score_hits(text, hits), text


def test_huge_text_is_bounded() -> None:
    assert refusal_score("I can't help with that. " * 40_000) == (0.6, "partial")
    assert refusal_score("Fine. " * 10_000 + "I can't help with that.") == (0.0, "")  # past the first 20,000


def test_sentences_and_quotes() -> None:
    from monitor.analyzers._text import sentence_spans, split_sentences

    text = "Hello there. E.g. this stays one sentence! 次の文です。「引用。」と言った\nLast line"
    assert split_sentences(text) == [
        "Hello there.", "E.g. this stays one sentence!", "次の文です。", "「引用。」", "と言った", "Last line",
    ]  # fmt: skip
    assert sentence_spans("  ") == []
    assert quoted_at('He said "I cannot', 12) and not quoted_at('He said "no". I cannot', 15)
    assert quoted_at("「お手伝いできません", 3) and not quoted_at("「はい」お手伝いできません", 5)
    assert quoted_at("```\nI cannot\n", 5) and not quoted_at("```\ncode\n```\nI cannot", 15)


def test_content_limit_option() -> None:
    text = "I cannot assist with creating malware. " + LONG_HELP
    assert RefusalAnalyzer({"content_limit": 1000}).score([{"output_text": text}]) == [
        Score(0, "output", 1.0, "refusal")
    ]
    with pytest.raises(AnalyzerConfigError, match="content_limit must be int"):
        RefusalAnalyzer({"content_limit": "200"})
    with pytest.raises(AnalyzerConfigError, match="unknown option 'limit'"):
        RefusalAnalyzer({"limit": 200})


def test_batch() -> None:
    spans = [
        {"output_text": "I'm sorry, but I can't help with that."},
        {"output_text": ""},  # no output (a tool call): no row
        {"output_text": None},
        {"output_text": "Here is your poem about the sea."},
        {},
        {"output_text": "申し訳ありませんが、お答えできません。"},
    ]
    assert list(load("refusal")().score(spans)) == [
        Score(0, "output", 1.0, "refusal"),
        Score(3, "output", 0.0, ""),
        Score(5, "output", 1.0, "refusal"),
    ]
    assert RefusalAnalyzer.fields == ("output_text",)
