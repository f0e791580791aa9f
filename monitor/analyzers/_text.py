"""Text helpers shared by the cheap analyzers (PII, injection, refusal, format, sentiment).

Pure functions over ``str``, safe from any thread, never raising on odd input (empty text, lone
surrogates, huge text). They are on the analyzers' hot path (thousands of texts per second on one core),
so each starts with a cheap test that lets the common case (ASCII prose, no full-width characters, no
quotes) return without building anything.

* :func:`to_halfwidth`: full-width digits, Latin letters and ASCII punctuation (``０９０－１２３４``,
  ``ｓｋ－…``, ``＠``) folded to ASCII, plus the dashes Japanese writers use between digits, so one set of
  ASCII regexes reads both scripts.
* :func:`sentence_spans` / :func:`split_sentences`: English and Japanese sentence boundaries (``.!?`` before
  white space, ``。！？`` anywhere, line breaks), keeping closing quotes and brackets with their sentence.
* :func:`quoted_at`: whether a position sits inside a quotation or a code span, which is how the refusal
  and injection analyzers tell a phrase *used* from a phrase *mentioned*.
* :class:`NeedleGate`: which of many regexes can match a text, decided with set operations on its
  words (and a few substring tests), so a regex runs only on the texts that hold its literal words.
* :func:`check_options`: the one-line error for an unknown option key under ``analyzers: <name>:``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from monitor.analyzers.base import AnalyzerConfigError

__all__ = [
    "CJK_RE",
    "NeedleGate",
    "all_of",
    "check_options",
    "has_cjk",
    "quoted_at",
    "sentence_spans",
    "split_sentences",
    "to_halfwidth",
    "weighted_len",
]

# --- width folding ---------------------------------------------------------------------------------
# U+FF01..U+FF5E are the full-width forms of U+0021..U+007E; U+3000 is the ideographic space.
_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_FULLWIDTH[0x3000] = 0x20
for _dash in (0x2010, 0x2011, 0x2012, 0x2013, 0x2014, 0x2015, 0x2212, 0xFE63, 0xFF70):
    _FULLWIDTH[_dash] = 0x2D  # hyphens, dashes, minus, small/half-width prolonged marks → '-'
_FOLD_RUNS = re.compile("[\uff01-\uff5e\u3000\u2010-\u2015\u2212\ufe63\uff70]+")
# The katakana prolonged sound mark ー (U+30FC) is a dash only between digits (090ー1234ー5678).
_CHOUON_BETWEEN_DIGITS = re.compile(r"(?<=\d)\u30fc(?=\d)")


def _fold_run(m: re.Match[str]) -> str:
    return m.group().translate(_FULLWIDTH)


def to_halfwidth(text: str) -> str:
    """``text`` with full-width ASCII forms and digit-separating dashes folded to ASCII.

    Returns ``text`` itself (no copy) when there is nothing to fold, which is the common case.
    Lengths are preserved (one code point for one), so offsets into the result are offsets into ``text``.
    """
    if not text.isascii():
        # translate only the runs that need it: str.translate over a whole text is slow with a dict table
        text = _FOLD_RUNS.sub(_fold_run, text)
    if "\u30fc" in text:
        text = _CHOUON_BETWEEN_DIGITS.sub("-", text)
    return text


# --- scripts -----------------------------------------------------------------------------------------
# Hiragana, katakana, CJK ideographs (incl. extension A), half-width katakana, CJK punctuation.
CJK_RE = re.compile("[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")


def has_cjk(text: str) -> bool:
    """True when ``text`` holds any Japanese/Chinese character (kana, kanji, CJK punctuation)."""
    return not text.isascii() and CJK_RE.search(text) is not None


def weighted_len(text: str) -> int:
    """Length where one CJK character counts as three ASCII ones (roughly the same amount of meaning).

    Used for "how much content is there besides X" thresholds that must work for both languages.
    """
    if text.isascii():
        return len(text)
    return len(text) + 2 * len(CJK_RE.findall(text))


# --- sentences ---------------------------------------------------------------------------------------
# A sentence ends at Japanese terminal punctuation, at ASCII terminal punctuation followed by white space
# or the end, or at a line break; closing quotes/brackets right after the terminator stay with it.
_SENT_END = re.compile(r"(?:[。！？]+|[.!?]+(?=\s|$)|\n)[」』）)\]\"'’”]*")
# Abbreviations whose trailing '.' does not end an English sentence.
_ABBREV = frozenset(
    {"e.g", "i.e", "etc", "vs", "mr", "mrs", "ms", "dr", "prof", "st", "no", "fig", "approx", "inc", "ltd"}
)
_LAST_WORD = re.compile(r"[A-Za-z.]+$")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` offsets of the sentences of ``text``, white space trimmed, empty ones dropped.

    Works for English, Japanese and both mixed in one text. Linear in ``len(text)``.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _SENT_END.finditer(text):
        end = m.end()
        if text[m.start()] == "." and m.end() - m.start() == 1:
            w = _LAST_WORD.search(text, max(start, m.start() - 8), m.start())
            if w is not None and w.group().lower() in _ABBREV:
                continue
        _push(text, start, end, spans)
        start = end
    _push(text, start, len(text), spans)
    return spans


def _push(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        spans.append((start, end))


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` (see :func:`sentence_spans`)."""
    return [text[a:b] for a, b in sentence_spans(text)]


# --- quotation -----------------------------------------------------------------------------------------
_OPENERS = {"“": "”", "「": "」", "『": "』", "‘": "’"}
_SYMMETRIC = ('"', "`")
_QUOTE_CHARS = re.compile('["`“”「」『』‘’]')


def quoted_at(text: str, pos: int) -> bool:
    """True when ``text[pos]`` is inside a quotation or code on its line, or inside a fenced code block.

    Looks only backwards from ``pos``: a fenced block (```) is open when an odd number of fences precede
    it; on the same line, a straight double quote or backtick is open when an odd number precede it, and
    a typographic or Japanese opener (“ 「 『 ‘) when it has no closer after it. Cheap for the common case:
    no quote character before ``pos`` means no regex work at all.
    """
    if text.count("```", 0, pos) % 2 == 1:
        return True
    line = text[text.rfind("\n", 0, pos) + 1 : pos]
    if _QUOTE_CHARS.search(line) is None:
        return False
    for q in _SYMMETRIC:
        if line.count(q) % 2 == 1:
            return True
    for opener, closer in _OPENERS.items():
        i = line.rfind(opener)
        if i >= 0 and line.find(closer, i + 1) < 0:
            return True
    return False


# --- needle gates ---------------------------------------------------------------------------------------
def all_of(firsts: str, seconds: str) -> str:
    """Needles requiring one word of ``firsts`` and one of ``seconds`` (``a|b`` × ``c|d``)."""
    return "|".join(f"{a} {b}" for a in firsts.split("|") for b in seconds.split("|"))


_TOKEN = re.compile(r"[a-z]+")  # letters only: digits and punctuation separate words
_COMMON = frozenset(
    [
        "a",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "for",
        "from",
        "had",
        "has",
        "have",
        "i",
        "if",
        "in",
        "is",
        "it",
        "me",
        "my",
        "no",
        "not",
        "now",
        "of",
        "on",
        "or",
        "s",
        "so",
        "t",
        "that",
        "the",
        "this",
        "to",
        "we",
        "what",
        "will",
        "with",
        "you",
        "your",
    ]
)
_PLAIN = re.compile(r"[a-z0-9' -]+")


class NeedleGate:
    """Which rules may match a text, decided with set operations instead of running every regex.

    Each rule lists needles (``a|b c|<¦``): a needle of plain words is satisfied when all its words are
    tokens of the lower-cased text (``b c``: both ``b`` and ``c``, anywhere); ``re:…`` when that (cheap)
    regex is found; any other needle (symbols, Japanese; ``¦`` stands for a literal ``|``) when it is a
    substring. ``*`` means always. A rule's regex runs only when one of its needles
    is satisfied, and every match of the regex satisfies one of them, so the gate never hides a match
    (the analyzers' tests check gated == ungated on every shipped and test text).
    """

    def __init__(self, needles: Sequence[str]) -> None:
        self.by_word: dict[str, list[tuple[int, frozenset[str]]]] = {}
        self.ascii_subs: dict[str, list[int]] = {}
        self.other_subs: dict[str, list[int]] = {}
        self.always: set[int] = set()
        self.regexes: list[tuple[re.Pattern[str], int]] = []
        for rid, spec in enumerate(needles):
            for alt in spec.split("|"):
                alt = alt.replace("¦", "|")  # a literal '|' in a needle
                if not alt:
                    raise ValueError(f"empty needle in {spec!r}")
                if alt == "*":
                    self.always.add(rid)
                elif alt.startswith("re:"):
                    self.regexes.append((re.compile(alt[3:]), rid))
                elif _PLAIN.fullmatch(alt) and alt.strip():
                    words = _TOKEN.findall(alt)
                    # index under the word most likely to be rare: the longest that is not a stop word
                    key = max(words, key=lambda w: (w not in _COMMON, len(w)))
                    self.by_word.setdefault(key, []).append((rid, frozenset(words) - {key}))
                else:
                    subs = self.ascii_subs if alt.isascii() else self.other_subs
                    subs.setdefault(alt, []).append(rid)
        self.words = frozenset(self.by_word)

    def open_rules(self, lower: str) -> set[int]:
        """The ids of the rules worth running on ``lower`` (a lower-cased text)."""
        found = set(self.always)
        tokens = set(_TOKEN.findall(lower))
        for w in tokens & self.words:
            for rid, rest in self.by_word[w]:
                if rest <= tokens:
                    found.add(rid)
        for sub, rids in self.ascii_subs.items():
            if sub in lower:
                found.update(rids)
        for rx, rid in self.regexes:
            if rid not in found and rx.search(lower) is not None:
                found.add(rid)
        if not lower.isascii():
            for sub, rids in self.other_subs.items():
                if sub in lower:
                    found.update(rids)
        return found


# --- options -------------------------------------------------------------------------------------------
def check_options(name: str, options: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Raise :class:`AnalyzerConfigError` naming the first option key the analyzer does not know."""
    known = set(allowed)
    for key in options:
        if key not in known:
            keys = ", ".join(sorted(known)) or "none"
            raise AnalyzerConfigError(f"analyzers: {name}: unknown option {key!r} (known: {keys})")
