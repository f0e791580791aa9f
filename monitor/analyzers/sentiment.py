"""Sentiment and frustration of the end user's last message (English and Japanese).

Reads :func:`~monitor.analyzers.base.user_text` (the last ``user`` message, not the app's prompt).
Rows per span with user text:

* ``input``: negativity or frustration, whichever is larger, in [0, 1] (``max(-compound, 0)`` vs the
  frustration score); ``label``: ``frustrated`` (frustration ≥ ``frustration_threshold``, default 0.5),
  else ``negative`` (compound ≤ -0.05), ``positive`` (compound ≥ 0.05) or ``neutral``.
* ``input.compound``: the compound polarity mapped to [0, 1] as ``(1 - compound) / 2`` (1 = most negative,
  0.5 = neutral).
* ``input.frustration``: the frustration score alone.

**Polarity.** English words are scored by VADER's rules on VADER's lexicon (the ``vaderSentiment``
package ships both): :class:`Vader` is a re-implementation that gives the same compound score as
``SentimentIntensityAnalyzer.polarity_scores`` (the tests compare them on a corpus), several times faster
because it lower-cases the text once instead of once per lexicon word. Japanese has no spaces for VADER to
split on, so Japanese terms come from a shipped lexicon (``data/sentiment_ja.tsv``: valence on VADER's
scale and a frustration weight per term; the longest term at a position wins, so 良くない overrides 良い;
a booster such as とても up to 6 characters before a term adds 0.293 in the term's direction, as VADER's
boosters do). Both sums go through VADER's normalisation with its ``!``/``?`` emphasis, counting full-width
``！``/``？`` too; for text with no Japanese term and no full-width punctuation the compound equals
VADER's.

**Frustration** = 1 − Π(1 − wᵢ) over the distinct markers found: repeated ``!?``/``！？`` (0.3), shouting
(two or more all-caps words such as WHY, STILL, NOT: 0.4), "for the third time", "I already told you",
"are you kidding", "useless", "wtf"… (0.3–0.6, :data:`FRUSTRATION_EN`), and the Japanese terms'
weights (何度も 0.5, ふざけるな 0.8, 使えない 0.5…).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any, ClassVar

from monitor.analyzers._text import NeedleGate, all_of, check_options, has_cjk
from monitor.analyzers.base import Analyzer, AnalyzerConfigError, Score, user_text

__all__ = ["FRUSTRATION_EN", "JapaneseLexicon", "SentimentAnalyzer", "Vader", "frustration", "normalize"]

# --- VADER's constants (Hutto & Gilbert 2014), as published with the method --------------------------------
B_INCR = 0.293
C_INCR = 0.733
N_SCALAR = -0.74
ALPHA = 15.0


def normalize(score: float, alpha: float = ALPHA) -> float:
    """VADER's squashing of a valence sum into (-1, 1)."""
    return max(-1.0, min(1.0, score / math.sqrt(score * score + alpha)))


def _emphasis(text: str) -> float:
    """VADER's punctuation emphasis: up to four '!' (0.292 each) and two or more '?' (0.18 each, ≤ 0.96).

    Full-width ！/？ count like their ASCII forms (Japanese text uses them).
    """
    ep = text.count("!") + text.count("！")
    qm = text.count("?") + text.count("？")
    amp = min(ep, 4) * 0.292
    if qm > 1:
        amp += qm * 0.18 if qm <= 3 else 0.96
    return amp


class Vader:
    """VADER's rule set over its own lexicon, scored the way ``vaderSentiment`` 3.3.2 scores.

    Loads the lexicon and constants from the installed ``vaderSentiment`` package once (≈ 7,500 words).
    :meth:`valences` returns the per-token valences; :meth:`compound` the normalised score. Pure after
    construction, safe from any thread.
    """

    def __init__(self) -> None:
        from vaderSentiment import vaderSentiment as v  # the lexicon files live in the package

        ref = v.SentimentIntensityAnalyzer()
        self.lexicon: dict[str, float] = ref.lexicon
        # The reference replaces emoji one character at a time, so only one-character keys ever apply.
        self.emojis: dict[str, str] = {k: d for k, d in ref.emojis.items() if len(k) == 1}
        self._emoji_set = frozenset(self.emojis)
        self.boosters: dict[str, float] = dict(v.BOOSTER_DICT)
        self.negate: frozenset[str] = frozenset(v.NEGATE)
        self.special: dict[str, float] = dict(v.SPECIAL_CASES)

    def _demojize(self, text: str) -> str:
        if self._emoji_set.isdisjoint(text):  # a set test: a 1,200-emoji regex class is slow in `re`
            return text
        out: list[str] = []
        prev_space = True
        for ch in text:
            desc = self.emojis.get(ch)
            if desc is None:
                out.append(ch)
                prev_space = ch == " "
            else:
                if not prev_space:
                    out.append(" ")
                out.append(desc)
                prev_space = False
        return "".join(out)

    def prepare(self, text: str) -> str:
        """The text VADER scores: emoji replaced by their descriptions, outer white space stripped."""
        if not text.isascii():
            text = self._demojize(text)
        return text.strip()

    def _tokens(self, text: str) -> list[str]:
        punct = string.punctuation
        out = []
        for tok in text.split():
            stripped = tok.strip(punct)
            out.append(tok if len(stripped) <= 2 else stripped)
        return out

    def _negated(self, word: str) -> bool:
        return word in self.negate or "n't" in word

    def valences(self, text: str) -> list[float]:
        """The valence of each whitespace token of a :meth:`prepare`-d text (0 for non-sentiment words)."""
        words = self._tokens(text)
        lower = list(map(str.lower, words))
        n = len(words)
        caps = sum(map(str.isupper, words))
        cap_diff = 0 < n - caps < n
        lex, boosters = self.lexicon, self.boosters
        out = [0.0] * n
        # Only lexicon words get a valence; find them with C-level map instead of a loop over every token.
        for i, base in enumerate(map(lex.get, lower)):
            if base is None:
                continue
            wl = lower[i]
            if wl in boosters or (wl == "kind" and i < n - 1 and lower[i + 1] == "of"):
                continue
            val = base
            if wl == "no" and i != n - 1 and lower[i + 1] in lex:
                val = 0.0
            if (
                (i > 0 and lower[i - 1] == "no")
                or (i > 1 and lower[i - 2] == "no")
                or (i > 2 and lower[i - 3] == "no" and lower[i - 1] in ("or", "nor"))
            ):
                val = base * N_SCALAR
            if cap_diff and words[i].isupper():
                val = val + C_INCR if val > 0 else val - C_INCR
            for k in range(3):
                j = i - k - 1
                if j < 0 or lower[j] in lex:
                    continue
                s = boosters.get(lower[j], 0.0)
                if s:
                    if val < 0:
                        s = -s
                    if cap_diff and words[j].isupper():
                        s = s + C_INCR if val > 0 else s - C_INCR
                    if k == 1:
                        s *= 0.95
                    elif k == 2:
                        s *= 0.9
                val += s
                val = self._negation(val, lower, k, i)
                if k == 2:
                    val = self._idioms(val, lower, i)
            if (
                i > 0
                and lower[i - 1] == "least"
                and "least" not in lex
                and (i == 1 or lower[i - 2] not in ("at", "very"))
            ):
                val *= N_SCALAR
            out[i] = val
        if "but" in lower:
            self._but(lower.index("but"), out)
        return out

    def _negation(self, val: float, lower: list[str], k: int, i: int) -> float:
        if k == 0:
            return val * N_SCALAR if self._negated(lower[i - 1]) else val
        if k == 1:
            if lower[i - 2] == "never" and lower[i - 1] in ("so", "this"):
                return val * 1.25
            if lower[i - 2] == "without" and lower[i - 1] == "doubt":
                return val
            return val * N_SCALAR if self._negated(lower[i - 2]) else val
        if (lower[i - 3] == "never" and lower[i - 2] in ("so", "this")) or lower[i - 1] in ("so", "this"):
            return val * 1.25
        if lower[i - 3] == "without" and "doubt" in (lower[i - 2], lower[i - 1]):
            return val
        return val * N_SCALAR if self._negated(lower[i - 3]) else val

    def _idioms(self, val: float, lower: list[str], i: int) -> float:
        special, boosters, n = self.special, self.boosters, len(lower)
        w3, w2, w1, w0 = lower[i - 3], lower[i - 2], lower[i - 1], lower[i]
        for seq in (f"{w1} {w0}", f"{w2} {w1} {w0}", f"{w2} {w1}", f"{w3} {w2} {w1}", f"{w3} {w2}"):
            if seq in special:
                val = special[seq]
                break
        if n - 1 > i and (seq := f"{w0} {lower[i + 1]}") in special:
            val = special[seq]
        if n - 1 > i + 1 and (seq := f"{w0} {lower[i + 1]} {lower[i + 2]}") in special:
            val = special[seq]
        for seq in (f"{w3} {w2} {w1}", f"{w3} {w2}", f"{w2} {w1}"):
            if seq in boosters:
                val += boosters[seq]
        return val

    @staticmethod
    def _but(bi: int, vals: list[float]) -> None:
        # VADER's contrast rule: halve what precedes the first "but", scale what follows by 1.5. The
        # reference finds each value's position with list.index (the first equal value), so repeated
        # values are scaled at their first position; we keep that to give the same scores. Zeros stay 0.
        for k in range(len(vals)):
            v = vals[k]
            if v == 0:
                continue
            si = vals.index(v)
            if si < bi:
                vals[si] = v * 0.5
            elif si > bi:
                vals[si] = v * 1.5

    def compound(self, text: str) -> float:
        """VADER's compound score of ``text`` in [-1, 1] (unrounded)."""
        text = self.prepare(text)
        vals = self.valences(text)
        if not vals:
            return 0.0
        total = sum(vals)
        if total > 0:
            total += _emphasis(text)
        elif total < 0:
            total -= _emphasis(text)
        return normalize(total)


class JapaneseLexicon:
    """The shipped Japanese terms: valence sum and frustration markers of a text, longest match first."""

    def __init__(self, rows: Iterable[tuple[str, str, float]]) -> None:
        self.terms: dict[str, tuple[float, float]] = {}
        self.boosters: set[str] = set()
        for term, valence, weight in rows:
            if valence == "boost":
                self.boosters.add(term)
            else:
                self.terms[term] = (float(valence), weight)
        # One alternation, longest terms first: at each position the longest term wins, and the scan
        # resumes after it (so 良くない is read, not 良い). Faster in `re` than a Python loop over positions.
        terms = sorted([*self.terms, *self.boosters], key=lambda t: (-len(t), t))
        self._re = re.compile("|".join(re.escape(t) for t in terms))

    @classmethod
    def shipped(cls) -> JapaneseLexicon:
        text = resources.files("monitor.analyzers").joinpath("data/sentiment_ja.tsv").read_text("utf-8")
        rows = []
        for line in text.splitlines():
            if line and not line.startswith("#"):
                term, valence, weight = line.split("\t")
                rows.append((term, valence, float(weight)))
        return cls(rows)

    def scan(self, text: str) -> tuple[float, dict[str, float]]:
        """``(valence sum, {term: frustration weight})`` for ``text``."""
        total = 0.0
        markers: dict[str, float] = {}
        last_boost = -100
        for m in self._re.finditer(text):
            term = m.group()
            a, pos = m.span()
            if term in self.boosters:
                last_boost = pos
                continue
            valence, weight = self.terms[term]
            if a - last_boost <= 6:
                valence += B_INCR if valence > 0 else -B_INCR
            total += valence
            if weight > 0:
                markers[term] = weight
        return total, markers


# English frustration markers: (needles, pattern, weight). A pattern runs only when its needles pass
# (see ``NeedleGate``: words that every match contains). Matched case-insensitively.
FRUSTRATION_EN: tuple[tuple[str, str, float], ...] = (
    (all_of("again|still", "not|t|broken|wrong|same|fail|fails|failed|failing|failure"),
     r"\b(?:again|still)\b[^.!?\n]{0,30}\b(?:not|\w*n['’]t|broken|wrong|fail(?:s|ed|ing|ure)?|same)\b", 0.4),
    (all_of("already|just|literally", "told|said|asked|explained|gave|showed"),
     r"\bI (?:already|just|literally) (?:told|said|asked|explained|gave|showed)\b", 0.5),
    ("for time", r"\bfor the (?:second|third|fourth|fifth|tenth|hundredth|nth|last|\d+(?:st|nd|rd|th)) time\b", 0.6),
    ("how many times", r"\bhow many (?:more )?times\b", 0.6),
    ("useless|pointless|worthless|ridiculous|unacceptable|pathetic|hopeless|garbage|stupid",
     r"\b(?:useless|pointless|worthless|ridiculous|unacceptable|pathetic|hopeless|garbage|stupid)\b", 0.4),
    ("wtf|wth|ffs|fml|smh|what the hell|what the heck|what the fuck",
     r"\b(?:wtf|wth|ffs|fml|smh|what the (?:hell|heck|fuck))\b", 0.5),
    (all_of("are you", "kidding|serious|listening|reading"),
     r"\bare you (?:kidding|serious|even (?:listening|reading))\b", 0.6),
    (all_of("not what", "asked|wanted|said|meant"), r"\bnot what I (?:asked|wanted|said|meant)\b", 0.5),
    (all_of("stop|quit", "doing|giving|repeating|apologizing|apologising|saying|making"),
     r"\b(?:stop|quit) (?:doing|giving|repeating|apologi[sz]ing|saying|making)\b", 0.5),
    (all_of("you", "keep|always|never"), r"\byou (?:keep|always|never)\b", 0.4),
    (all_of("doesn t|does not|didn t|won t|still not", "work|works|working|worked"),
     r"\b(?:doesn['’]t|does not|didn['’]t|won['’]t|still not) work(?:s|ing|ed)?\b", 0.3),
)  # fmt: skip
_FRUSTRATION_EN = [(re.compile(p, re.IGNORECASE), w) for _, p, w in FRUSTRATION_EN]
_GATE = NeedleGate([n for n, _, _ in FRUSTRATION_EN])
_REPEATED_PUNCT = re.compile("[!?！？]{2,}")
_CAPS_PAIR = re.compile("[A-Z]{2}")
_SHOUT = re.compile(
    r"\b(?:THIS|IS|NOT|WHY|WHAT|YOU|STILL|AGAIN|STOP|DOESN['’]T|DON['’]T|CAN['’]T|WRONG|NEVER|JUST|FIX|"
    r"ANSWER|WORK(?:ING|S)?|HELP|PLEASE|READ|LISTEN)\b"
)


def frustration(text: str, ja_markers: Mapping[str, float] | None = None, gated: bool = True) -> float:
    """1 − Π(1 − wᵢ) over the distinct frustration markers in ``text`` (plus Japanese ``ja_markers``).

    ``gated=False`` runs every English pattern whatever its needles say (the reference for the tests).
    """
    keep = 1.0
    marks = text.count("!") + text.count("?") + text.count("！") + text.count("？")
    if marks >= 2 and _REPEATED_PUNCT.search(text) is not None:
        keep *= 1 - 0.3
    if _CAPS_PAIR.search(text) is not None and len(_SHOUT.findall(text)) >= 2:
        keep *= 1 - 0.4
    for rid in _GATE.open_rules(text.lower()) if gated else range(len(_FRUSTRATION_EN)):
        pattern, weight = _FRUSTRATION_EN[rid]
        if pattern.search(text) is not None:
            keep *= 1 - weight
    for weight in (ja_markers or {}).values():
        keep *= 1 - weight
    return 1 - keep


_OPTIONS = ("frustration_threshold",)
MAX_CHARS = 20_000


class SentimentAnalyzer(Analyzer):
    """Negativity and frustration of the user's last message; see the module docstring.

    The lexicons load lazily on the first :meth:`score` (once per instance). Pure afterwards; called from
    the scheduler's thread; never blocks.
    """

    name: ClassVar[str] = "sentiment"
    version: ClassVar[str] = "1"
    fields: ClassVar[tuple[str, ...]] = ("input_text", "input_messages")

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        check_options(self.name, self.options, _OPTIONS)
        self.threshold: float = float(self.option("frustration_threshold", 0.5, (int, float)))
        if not 0 < self.threshold <= 1:
            raise AnalyzerConfigError(
                f"analyzers: sentiment: frustration_threshold must be in (0, 1], got {self.threshold}"
            )
        self._vader: Vader | None = None
        self._ja: JapaneseLexicon | None = None

    def analyze(self, text: str) -> tuple[float, float, str, float]:
        """``(input value, compound, label, frustration)`` for one text.

        A text over :data:`MAX_CHARS` is read as its first and last halves of that size (a pasted log in the
        middle says nothing about the user's mood, and VADER's contrast rule is quadratic in the worst case).
        """
        if self._vader is None or self._ja is None:
            self._vader, self._ja = Vader(), JapaneseLexicon.shipped()
        if len(text) > MAX_CHARS:
            text = text[: MAX_CHARS // 2] + "\n" + text[-MAX_CHARS // 2 :]
        vader = self._vader
        prepared = vader.prepare(text)
        vals = vader.valences(prepared)
        total = sum(vals)
        markers: dict[str, float] = {}
        if has_cjk(prepared):
            ja_total, markers = self._ja.scan(prepared)
            total += ja_total
        compound = 0.0
        if total:
            amp = _emphasis(prepared)
            compound = normalize(total + amp if total > 0 else total - amp)
        frus = frustration(prepared, markers)
        if frus >= self.threshold:
            label = "frustrated"
        elif compound <= -0.05:
            label = "negative"
        elif compound >= 0.05:
            label = "positive"
        else:
            label = "neutral"
        return round(max(frus, -compound, 0.0), 4), compound, label, round(frus, 4)

    def score(self, spans: Sequence[Mapping[str, Any]]) -> Iterable[Score]:
        out: list[Score] = []
        for i, span in enumerate(spans):
            text = user_text(span)
            if not text.strip():
                continue
            value, compound, label, frus = self.analyze(text)
            out.append(Score(i, "input", value, label))
            out.append(Score(i, "input.compound", round((1 - compound) / 2, 4)))
            out.append(Score(i, "input.frustration", frus))
        return out
