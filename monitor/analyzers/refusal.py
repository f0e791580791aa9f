"""Refusals in model output ("I'm sorry, but I can't help with that", 「申し訳ありませんが、お答えできません」).

Reads ``output_text``; one ``output`` row per span with output text:

* value = strength of the strongest refusal phrase × where it stands, rounded to 3 places:

  ========================================================= ================ ============
  the phrase…                                               strong (1.0)     disclaimer (0.7)
  ========================================================= ================ ============
  opens the answer (first two sentences) and little else    1.0 ``refusal``  0.7 ``refusal``
  follows (< 200 characters, CJK counted ×3)
  opens the answer, then substantial help follows           0.6 ``partial``  0.42 ``partial``
  appears later in the answer                               0.4 ``partial``  0.28 ``partial``
  ========================================================= ================ ============

  "Little else": the text outside the refusing clauses (from the start of a phrase's sentence to the
  end of its clause: "I can't give medical advice" in "I can't give medical advice, but here are…")
  weighs under ``content_limit`` (option, default 200) characters. Strong phrases decline outright ("I can't help with that", "I must decline", 「お手伝いできません」,
  「申し訳ありませんが…できません」). Disclaimers signal a limitation rather than a refusal ("As an AI
  language model, I don't…", "I don't have access to real-time…", 「AIとして…」).
* A phrase inside quotes (``"…"``, “…”, 「…」, backticks) or a fenced code block is *mentioned*, not said
  (an answer explaining what a refusal looks like), and does not count.
* 0.0 with an empty label when no phrase counts.

Speed: each phrase's regex runs only when one of its literal needles occurs in the lower-cased text
(:data:`PHRASES`), so a typical answer costs a few substring tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from monitor.analyzers._text import check_options, quoted_at, sentence_spans, weighted_len
from monitor.analyzers.base import Analyzer, AnalyzerConfigError, Score, output_text

__all__ = ["PHRASES", "RefusalAnalyzer", "refusal_score", "score_hits"]

_CANT = r"(?:can(?:no|['’])?t|cannot|can not|won['’]t|will not|am unable to|['’]m unable to|am not able to|['’]m not able to|must not|shouldn['’]t)"
_HELP = (
    r"(?:help|assist|provide|comply|fulfil+|do (?:that|this)|create|generate|write|share|support|engage|"
    r"answer|give|produce|complete|continue|participate|discuss|offer|disclose|reveal|browse|perform|draft)"
)

_CANT_NEEDLES = "can't|can’t|cant|cannot|can not|won't|won’t|will not|unable|not able|must not|shouldn"

# (needles, regex, strength). A regex runs only when one of its needles occurs in the lower-cased text;
# every match of the regex contains one of them, so the needles never hide a match (a test checks this).
# Strong: the model declines. Disclaimers: a limitation, often followed by an answer anyway.
PHRASES: tuple[tuple[str, str, float], ...] = (
    ("sorry|afraid", rf"\bI(?:['’]m| am) (?:really |very |so )?(?:sorry|afraid)[,.]? (?:but )?I {_CANT}", 1.0),
    (_CANT_NEEDLES, rf"\bI ?{_CANT} (?:\w+ )?{_HELP}\b", 1.0),
    ("decline|refuse", r"\bI (?:must|have to|need to|will have to|['’]ll have to) (?:respectfully |politely )?"
     r"(?:decline|refuse)\b", 1.0),
    ("not able|not allowed|not permitted|not comfortable|not going",
     r"\bI(?:['’]m| am) not (?:able|allowed|permitted|comfortable|going) (?:to )?"
     r"(?:help|assist|provide|do|share|discuss|writ|creat|generat|fulfil|comply|answer)", 1.0),
    ("request", r"\b(?:that|this|your) request (?:violates|goes against|is against|is not something I)", 1.0),
    ("against", r"\b(?:goes|is) against (?:my|the|our) (?:guidelines|policies|policy|principles|programming|"
     r"usage polic)", 1.0),
    ("unfortunately", r"\bunfortunately,? I (?:can(?:no|['’])?t|cannot|am unable|['’]m unable|am not able|"
     r"['’]m not able)", 1.0),
    ("unable", r"\bI(?:['’]m| am) unable to (?:help|assist|provide|comply|fulfil)", 1.0),
    ("sorry", r"\bI(?:['’]m| am) sorry,? (?:but )?(?:that|this) (?:is not|isn['’]t) something I can", 1.0),
    ("申し訳", r"申し訳(?:ありません|ございません|ないのですが)が?、?[^。\n]{0,40}?"
     r"(?:でき(?:ません|かねます)|いたしかねます|しかねます|お応えでき)", 1.0),
    ("できません|できかねます|いたしかねます|致しかねます",
     r"(?:お手伝い|お答え|回答|提供|協力|ご案内|お応え|支援|お力添え|ご協力)(?:すること)?(?:は|が|も)?"
     r"(?:でき(?:ません|かねます)|いたしかねます|致しかねます)", 1.0),
    ("依頼|リクエスト|質問|要求|要望", r"(?:その|この|こちらの|ご)?(?:依頼|リクエスト|ご質問|質問|要求|ご要望|要望)"
     r"(?:には|に|は)(?:お応え|お答え|対応|回答)(?:でき|いたしかね|致しかね)", 1.0),
    ("理由", r"(?:倫理的な理由|安全上の理由|ポリシー上の理由|規約上の理由)(?:から|により|で)", 1.0),
    ("ガイドライン|ポリシー|利用規約", r"(?:ガイドライン|ポリシー|利用規約)に(?:反する|違反する|抵触する)(?:ため|ので|内容)", 1.0),
    ("お断り", r"お断り(?:します|いたします|させていただきます)", 1.0),
    ("as an ai|as an artificial", r"\bas an (?:AI|artificial intelligence)(?: language model| model| assistant|"
     r" chatbot)?\b", 0.7),
    ("an ai|an artificial", r"\bI(?:['’]m| am) (?:just |only )?an (?:AI|artificial intelligence)"
     r"(?: language model| model| assistant)?\b", 0.7),
    ("don't have|don’t have|do not have", r"\bI (?:don['’]t|do not) have (?:the ability|access|personal "
     r"(?:opinions|feelings|experiences|beliefs)|real-time|the capability|browsing)", 0.7),
    ("not able to browse|not connected|not a ", r"\bI(?:['’]m| am) not (?:able to browse|connected to the "
     r"internet|a (?:doctor|lawyer|financial advisor|licensed))", 0.7),
    ("knowledge|training data", r"\bmy (?:knowledge|training data) (?:cutoff|cut-off|only goes)", 0.7),
    ("として|である私|の私", r"(?:AI|ＡＩ|人工知能)(?:言語モデル|アシスタント|モデル)?(?:として|である私|の私)", 0.7),
    ("私は", r"私は(?:AI|ＡＩ|人工知能)(?:なので|ですので|のため|ですから)", 0.7),
    ("アクセスでき", r"(?:リアルタイム|最新)の(?:情報|データ)(?:に|へ)(?:は)?アクセスでき(?:ません|ない)", 0.7),
    ("では", r"(?:医師|弁護士|専門家)では(?:ありません|ない)(?:ので|ため)", 0.7),
)  # fmt: skip
_COMPILED = [(frozenset(n.split("|")), re.compile(p, re.IGNORECASE), w) for n, p, w in PHRASES]
_NEEDLES = tuple(sorted({n for needles, _, _ in _COMPILED for n in needles}))

# A refusing clause ends at punctuation or at the "but"/"however" that turns to help.
_CLAUSE_END = re.compile(r"[,;:.!?。！？、\n]|\b(?:but|however)\b", re.IGNORECASE)

FULL, OPENING, LATER = 1.0, 0.6, 0.4
MAX_CHARS = 20_000
CONTENT_LIMIT = 200  # weighted characters of non-refusal content an outright refusal may carry


def refusal_score(text: str, content_limit: int = CONTENT_LIMIT) -> tuple[float, str]:
    """``(value, label)`` for one output text; see the module docstring. Pure.

    Only the first :data:`MAX_CHARS` characters are read: a refusal opens an answer, and past that length
    any refusal is a partial one anyway (this also bounds the work on a pathological text).
    """
    text = text[:MAX_CHARS]
    lower = text.lower()
    present = {n for n in _NEEDLES if n in lower}
    if not present:
        return 0.0, ""
    hits: list[tuple[int, int, float]] = []
    for needles, pattern, strength in _COMPILED:
        if not present.isdisjoint(needles):
            for m in pattern.finditer(text):
                if not quoted_at(text, m.start()):
                    hits.append((m.start(), m.end(), strength))
    return score_hits(text, hits, content_limit)


def score_hits(
    text: str, hits: Sequence[tuple[int, int, float]], content_limit: int = CONTENT_LIMIT
) -> tuple[float, str]:
    """``(value, label)`` from the unquoted refusal phrases ``(start, end, strength)`` found in ``text``."""
    if not hits:
        return 0.0, ""
    spans = sentence_spans(text)
    opening_end = spans[1][1] if len(spans) > 1 else (spans[0][1] if spans else len(text))
    # What refuses: from the start of each phrase's sentence to the end of the phrase's clause ("I can't
    # give medical advice" in "I can't give medical advice, but here are…"). The rest is other content.
    regions: list[tuple[int, int]] = []
    for a, b, _ in hits:
        start = next((s for s, e in spans if s <= a < e), a)
        end_m = _CLAUSE_END.search(text, b)
        regions.append((start, end_m.end() if end_m is not None else len(text)))
    regions.sort()
    covered, last = 0, 0
    for a, b in regions:
        a = max(a, last)
        if b > a:
            covered += weighted_len(text[a:b])
            last = b
    other = weighted_len(text) - covered
    best, label = 0.0, ""
    for a, _, strength in hits:
        if a < opening_end:
            factor, kind = (FULL, "refusal") if other < content_limit else (OPENING, "partial")
        else:
            factor, kind = LATER, "partial"
        value = round(strength * factor, 3)
        if value > best:
            best, label = value, kind
    return best, label


_OPTIONS = ("content_limit",)


class RefusalAnalyzer(Analyzer):
    """Refusal phrasing in ``output_text`` (English and Japanese); see the module docstring.

    Pure and thread-safe; called from the scheduler's thread; never blocks.
    Option ``content_limit`` (int, default 200): how much other content an outright refusal may carry.
    """

    name: ClassVar[str] = "refusal"
    version: ClassVar[str] = "1"
    fields: ClassVar[tuple[str, ...]] = ("output_text",)

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        check_options(self.name, self.options, _OPTIONS)
        self.content_limit: int = self.option("content_limit", CONTENT_LIMIT, int)
        if self.content_limit < 0:
            raise AnalyzerConfigError(
                f"analyzers: refusal: content_limit must be ≥ 0, got {self.content_limit}"
            )

    def score(self, spans: Sequence[Mapping[str, Any]]) -> Iterable[Score]:
        out: list[Score] = []
        for i, span in enumerate(spans):
            text = output_text(span)
            if text:
                value, label = refusal_score(text, self.content_limit)
                out.append(Score(i, "output", value, label))
        return out
