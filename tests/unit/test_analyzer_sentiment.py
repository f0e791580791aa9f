"""Sentiment analyzer (monitor.analyzers.sentiment): VADER compatibility, Japanese lexicon, frustration."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
import vaderSentiment.vaderSentiment as vs  # the test extra installs it: a missing one must fail, not skip

from monitor.analyzers import load
from monitor.analyzers.base import AnalyzerConfigError, Score
from monitor.analyzers.sentiment import JapaneseLexicon, SentimentAnalyzer, Vader, frustration, normalize


@pytest.fixture(scope="module")
def reference() -> Any:
    return vs.SentimentIntensityAnalyzer()


@pytest.fixture(scope="module")
def vader() -> Vader:
    return Vader()


ENGLISH = [
    "VADER is smart, handsome, and funny.",
    "VADER is smart, handsome, and funny!",
    "VADER is very smart, handsome, and funny.",
    "VADER is VERY SMART, handsome, and FUNNY!!!",
    "The book was good.",
    "At least it isn't a horrible book.",
    "The book was only kind of good.",
    "The plot was good, but the characters are uncompelling and the dialog is not great.",
    "Today SUX!",
    "Today only kinda sux! But I'll get by, lol",
    "Make sure you :) or :D today!",
    "Catch utf-8 emoji such as 💘 and 💋 and 😁",
    "Not bad at all",
    "Never so happy, without doubt the best",
    "This is the bomb, yeah right",
    "no problem, no good, no or nor bad",
    "least good, very least good, at least good",
    "Is it good?? Really??? Are you sure????",
    "I don't think this is useful, but thanks anyway!",
    "",
    "   ",
]


@pytest.mark.parametrize("text", ENGLISH)
def test_vader_compound_equals_the_reference(text: str, vader: Vader, reference: Any) -> None:
    assert round(vader.compound(text), 4) == reference.polarity_scores(text)["compound"]


def test_vader_compound_equals_the_reference_on_random_lexicon_text(vader: Vader, reference: Any) -> None:
    rng = random.Random(11)
    extra = ["not", "no", "never", "but", "very", "kind", "of", "least", "at", "so", "this", "without", "doubt",
             "the", "bomb", "isn't", "GREAT", "BAD", "!!!", "??", ":)", "😀", "😡", "nor", "or", "sort"]  # fmt: skip
    words = [*sorted(vader.lexicon)[::9], *extra]
    for _ in range(600):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 40)))
        assert round(vader.compound(text), 4) == reference.polarity_scores(text)["compound"], text


def test_japanese_lexicon_longest_term_wins_and_boosters() -> None:
    lex = JapaneseLexicon.shipped()
    assert lex.scan("この説明は良いです") == (1.8, {})
    assert lex.scan("この説明は良くないです") == (-1.8, {})  # 良くない, not 良い
    assert lex.scan("とても助かりました") == (pytest.approx(2.293), {})
    assert lex.scan("何度も言っていますが、まだ直らない") == (-2.5, {"何度も": 0.5, "まだ直らない": 0.6})
    assert lex.scan("設定ファイルの場所を教えてください") == (0.0, {})


def test_frustration_markers() -> None:
    assert frustration("How do I configure the timeout?") == 0.0
    assert frustration("Why??") == pytest.approx(0.3)
    assert frustration("WHY IS THIS STILL NOT WORKING") == pytest.approx(1 - 0.6 * 0.6 * 0.7)
    assert frustration("For the third time, that is not what I asked.") == pytest.approx(1 - 0.4 * 0.5)
    assert frustration("It still doesn't work") == pytest.approx(1 - 0.6 * 0.7)
    assert frustration("What is an API?") == 0.0  # one capitalised acronym is not shouting
    assert frustration("ふざけるな", {"ふざけるな": 0.8}) == pytest.approx(0.8)


def test_needles_never_hide_a_marker() -> None:
    texts = [t for t, *_ in CASES] + ENGLISH + [
        "Again it failed.", "still broken", "I just told you", "For the 3rd time!", "How many more times?",
        "What the hell", "are you even listening", "Stop apologising", "You never read it", "didn't work",
    ]  # fmt: skip
    texts += [t.upper() for t in texts] + [t.lower() for t in texts]
    for text in texts:
        assert frustration(text) == frustration(text, gated=False), text


def _c(x: float) -> float:
    return round((1 - x) / 2, 4)


CASES = [
    # (text, input value, label, compound) — compounds from VADER (English) or the lexicon sums (Japanese)
    ("Thanks, that worked perfectly!", 0.0, "positive", 0.8122),
    ("I love it", 0.0, "positive", 0.6369),
    ("How do I configure the timeout?", 0.0, "neutral", 0.0),
    ("The export is slow and the docs are confusing.", 0.2263, "negative", -0.2263),
    ("This is useless!!! I already told you the file is missing.", 0.79, "frustrated", -0.7074),
    ("It still doesn't work", 0.58, "frustrated", 0.0),
    ("ありがとうございます、とても助かりました。", 0.0, "positive", normalize(2.0 + 2.293)),
    ("この説明は良くないです", round(-normalize(-1.8), 4), "negative", normalize(-1.8)),
    ("設定ファイルの場所を教えてください。", 0.0, "neutral", 0.0),
    ("何度も言っていますが、まだ直らないです！！", 0.86, "frustrated", normalize(-2.5 - 2 * 0.292)),
    ("とても最悪！！", round(-normalize(-3.293 - 2 * 0.292), 4), "frustrated", normalize(-3.293 - 2 * 0.292)),
    ("ふざけるな", 0.8, "frustrated", normalize(-3.0)),
    # mixed: VADER's "great" halved by "but" plus 何度も; frustration from "again … not" and 何度も
    (
        "Great, but the answer was in English again, not Japanese. 何度も言いましたよね？",
        0.7,
        "frustrated",
        normalize(3.1 * 0.5 - 0.5),
    ),
]


@pytest.mark.parametrize(("text", "value", "label", "compound"), CASES)
def test_analyze(text: str, value: float, label: str, compound: float) -> None:
    got_value, got_compound, got_label, _ = SentimentAnalyzer().analyze(text)
    assert (got_value, got_label) == (value, label)
    assert got_compound == pytest.approx(compound, abs=5e-5)


def _messages(*msgs: tuple[str, str]) -> str:
    return json.dumps([{"role": r, "parts": [{"type": "text", "content": c}]} for r, c in msgs])


def test_batch() -> None:
    spans = [
        {  # the system prompt is the app's, not the user's: only the last user message is read
            "input_text": "You are a terrible, awful assistant.\nThanks, that worked perfectly!",
            "input_messages": _messages(
                ("system", "You are a terrible, awful assistant."),
                ("user", "useless answer"),
                ("assistant", "Sorry."),
                ("user", "Thanks, that worked perfectly!"),
            ),
        },
        {"input_text": "", "input_messages": ""},  # no text: no rows
        {"input_text": "ふざけるな", "input_messages": "[{broken"},  # bad JSON: input_text, batch goes on
        {"input_text": " \n "},
        {"input_text": "How do I configure the timeout?"},
    ]
    rows = list(load("sentiment")().score(spans))
    ref = vs.SentimentIntensityAnalyzer().polarity_scores("Thanks, that worked perfectly!")["compound"]
    fz = normalize(-3.0)
    assert rows == [
        Score(0, "input", 0.0, "positive"),
        Score(0, "input.compound", pytest.approx(_c(ref), abs=1e-4)),
        Score(0, "input.frustration", 0.0),
        Score(2, "input", 0.8, "frustrated"),
        Score(2, "input.compound", round((1 - fz) / 2, 4)),
        Score(2, "input.frustration", 0.8),
        Score(4, "input", 0.0, "neutral"),
        Score(4, "input.compound", 0.5),
        Score(4, "input.frustration", 0.0),
    ]
    assert SentimentAnalyzer.fields == ("input_text", "input_messages")


def test_options() -> None:
    a = SentimentAnalyzer({"frustration_threshold": 0.9})
    assert a.analyze("It still doesn't work")[2] == "neutral"
    with pytest.raises(AnalyzerConfigError, match=r"frustration_threshold must be in \(0, 1\]"):
        SentimentAnalyzer({"frustration_threshold": 0})
    with pytest.raises(AnalyzerConfigError, match="frustration_threshold must be a number"):
        SentimentAnalyzer({"frustration_threshold": True})
    with pytest.raises(AnalyzerConfigError, match="unknown option 'threshold'"):
        SentimentAnalyzer({"threshold": 0.5})


def test_huge_text_reads_its_ends() -> None:
    # 1 MB: the middle (a pasted log) is skipped; the user's own words at both ends decide
    text = "This is useless!! " + "log line ok\n" * 100_000 + " I already told you."
    value, _, label, frus = SentimentAnalyzer().analyze(text)
    assert (label, frus) == ("frustrated", round(1 - 0.7 * 0.6 * 0.5, 4))
    assert value == frus


def test_normalize_matches_vader() -> None:
    assert normalize(4.0) == pytest.approx(4 / math.sqrt(31))
    assert normalize(0.0) == 0.0
