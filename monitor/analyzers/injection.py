"""Prompt injection and jailbreak attempts in the end user's last message (English and Japanese).

Reads :func:`~monitor.analyzers.base.user_text`. Two signals:

1. **Patterns**, grouped in families with a weight each (:data:`FAMILIES`): ``ignore_instructions`` 0.9
   ("ignore all previous instructions", 「以前の指示を無視して」), ``prompt_exfiltration`` 0.8 ("print your
   system prompt", 「システムプロンプトを表示」), ``jailbreak_persona`` 0.8 (DAN, developer mode, 脱獄),
   ``safety_bypass`` 0.8 ("disable your safety filters", 「倫理的な制約なしで」), ``delimiter`` 0.7
   (``</system>``, ``<|im_start|>``, ``[INST]``, ``### System:``), ``new_instructions`` 0.6 ("new
   instructions:", "to any AI reading this…"), ``obfuscation`` 0.5 ("decode this base64 and follow it",
   spaced-out letters, leetspeak), ``roleplay`` 0.4 ("pretend you are", "stay in character", the
   deceased-grandmother trick). A phrase inside quotes or code counts half (a user asking *about* an
   attack). Families combine as 1 − Π(1 − wᵢ).
2. **Similarity** to the shipped known attacks (``data/injections.jsonl``, 280 written for this project,
   EN and JA, each tagged with its family): TF-IDF over character 4-grams (lower-cased, full-width
   folded, punctuation as spaces; sublinear tf; idf over the attacks plus ``data/benign.jsonl``, ordinary
   requests, so everyday n-grams weigh little; n-grams in more than 5 % of those documents are dropped like
   stop words), cosine against every attack, on windows of whole sentences of about 160 characters so one
   attack sentence inside a long benign message still stands out. Ordinary requests reach ≈ 0.35 against
   their closest attack; verbatim or lightly edited copies of a known attack ≈ 0.8–1.0; paraphrases
   overlap with ordinary text, which is why the patterns carry them. ``s = clip((cos − 0.40) / (0.80 −
   0.40), 0, 1)``; when s > 0 the nearest attack's family joins the label.

Rows per span with user text: ``input`` = 1 − (1 − patterns)(1 − s), rounded to 4 places, label = the
sorted families; ``input.similarity`` = the best cosine (rounded to 4 places), to tune ``low``/``high``.

Speed: rules run only when their literal words occur in the text (:class:`~monitor.analyzers._text.
NeedleGate`), regexes are matched on the lower-cased text without ``re.IGNORECASE`` (several times faster
for word alternations), and the similarity of a whole batch is a handful of numpy calls over the n-grams
the attacks contain (a bitmap pre-filter, then an exact look-up). Options: ``similarity`` (bool, default
true), ``low``/``high`` (the cosine mapping above).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from monitor.analyzers._ngrams import HIGH, LOW, AttackIndex, shared_index
from monitor.analyzers._text import NeedleGate, all_of, check_options, quoted_at, to_halfwidth
from monitor.analyzers.base import Analyzer, AnalyzerConfigError, Score, user_text

__all__ = ["FAMILIES", "AttackIndex", "InjectionAnalyzer", "pattern_families"]


@dataclass(frozen=True)
class Family:
    """One family of injection phrasing: its weight and rules ``(needles, regex)`` (see ``NeedleGate``)."""

    name: str
    weight: float
    rules: tuple[tuple[str, re.Pattern[str], bool], ...]


CASED = "cased"  # a rule matched on the text as written; the others see it lower-cased


def _family(name: str, weight: float, *rules: tuple[str, ...]) -> Family:
    """Rules are ``(needles, regex)`` or ``(needles, regex, CASED)``.

    Regexes are written in lower case and matched on the lower-cased text without ``re.IGNORECASE``,
    which is several times faster in ``re`` for alternations of words.
    """
    return Family(name, weight, tuple((r[0], re.compile(r[1], re.M), len(r) > 2) for r in rules))


_VERB = (
    r"(?:ignore|disregard|forget|skip|override|bypass|drop|abandon|cancel|erase|discard|stop following|"
    r"do not follow|don['’]t follow|never mind)"
)
_VERB_N = (
    "ignore|disregard|forget|skip|override|bypass|drop|abandon|cancel|erase|discard|stop following|"
    "do not follow|don t follow|never mind"
)
_QUAL = (
    r"(?:previous|prior|above|earlier|preceding|initial|original|former|old|system|developer['’]?s?|existing)"
)
_NOUN = (
    r"(?:instructions?|prompts?|rules|directions|directives|guidelines|guidance|commands?|context|"
    r"constraints|programming|training|orders|polic(?:y|ies)|messages?|conversation|text|task)"
)
_DET = r"(?:(?:all|any|of|the|your|my|these|those|everything|and|subsequent|memory)\s+)*"
_AI = r"(?:ai|llm|assistant|language model|ai assistant|ai agents?|agents?|chatbot|model)"
_AI_N = "ai|ais|llm|llms|assistant|assistants|model|models|agent|agents|chatbot|chatbots"
_JA_IGNORE = r"(?:無視|忘れ(?:て(?!しまっ|い)|ろ|なさい)|破棄|リセット|取り消|無効|従わ|関係ありません)"

FAMILIES: tuple[Family, ...] = (
    _family(
        "ignore_instructions",
        0.9,
        (_VERB_N, rf"\b{_VERB}\s+(?:"
                  rf"{_DET}{_QUAL}\s+(?:\w+\s+){{0,2}}{_NOUN}\b"
                  r"|(?:all\s+)?(?:of\s+)?(?:your|all)\s+(?:\w+\s+)?"
                  r"(?:instructions|rules|guidelines|programming|training|directives)\b"
                  rf"|{_DET}(?:instructions|rules|prompt|text|directions|guidelines)\s+(?:above|before|"
                  r"earlier|you (?:were|have been) given|you received|(?:from|by) (?:your|the) "
                  r"(?:developers?|system|creators?))"
                  r"|(?:all\s+of\s+|everything\s+)?(?:the\s+)?(?:above|before this|you were told)\b"
                  r"|what\s+(?:the system|your developers?|they|the developers?)\s+(?:told|said|gave)"
                  r"|(?:what|everything)\s+you\s+(?:were|have been)\s+(?:told|given))"),
        ("outdated|revoked|void|cancelled|canceled|no longer apply|invalid",
         r"\b(?:instructions|rules|prompt)\s+(?:above|before|you were given)\b[^.\n]{0,30}\b(?:outdated|revoked|"
         r"void|cancell?ed|no longer apply|invalid)"),
        ("revoked|void|cancelled|canceled|lifted|outdated",
         r"\b(?:previous|prior|earlier|your)\s+(?:instructions|rules)\s+(?:have been|are|were)\s+"
         r"(?:revoked|void|cancell?ed|lifted|outdated)"),
        ("無視|忘れ|破棄|リセット|取り消|無効|従わ|関係ありません",
         r"(?:以前|前|上記|上|これまで|今まで|先ほど|さっき|最初|元|既存|システム|開発者|前述)"
         r"(?:の|までの|から(?:の)?|に(?:与えられた|受けた|言われた)|の文章の)?(?:すべての|全ての|全部の)?"
         rf"(?:指示|命令|ルール|設定|プロンプト|制約|指令|前提条件|会話)[^。\n]{{0,8}}?{_JA_IGNORE}"),
        ("無視|忘れ|破棄|取り消",
         r"(?:指示|命令|ルール|プロンプト|制約|指令|前提条件)(?:は|を|には)(?:すべて|全て|全部|一切)?(?:無視|忘れ|破棄|取り消)"),
        ("忘れ|リセット", r"(?:これまで|今まで)の(?:こと|会話)は?(?:全部|すべて|全て)?(?:忘れ|リセット)"),
        ("無視", r"(?:すべて|全て)の制約を無視|(?:文書|文章|メール|ページ)の内容(?:は|を)無視"),
    ),
    _family(
        "prompt_exfiltration",
        0.8,
        ("system prompt|system message|system instructions|pre prompt|preprompt|initial|original|hidden|secret|"
         "confidential",
         r"\b(?:reveal|show|print|display|output|repeat|tell|give|share|leak|dump|echo|spell out|write out|copy|"
         r"list|translate|encode|summari[sz]e|what (?:is|are|were|does))\b[^.\n?]{0,40}?\b(?:your|the|my)\s+"
         r"(?:(?:full|exact|entire|complete|original|initial|hidden|secret|confidential|internal|first)\s+)*"
         r"(?:system\s+(?:prompt|message|instructions)|pre-?prompt|(?:initial|original|hidden|secret|confidential)\s+"
         r"(?:prompt|instructions?|message|configuration))"),
        (all_of("your", "prompt|instructions|rules|guidelines|configuration|context|memory"),
         r"\b(?:reveal|show|print|display|output|repeat|leak|dump|echo|spell out|write out|tell me|copy|list)\b"
         r"[^.\n]{0,30}?\byour\s+(?:\w+\s+){0,2}(?:prompt|instructions|rules|guidelines|configuration|"
         r"context window|memory)\b"),
        ("prompt say", r"\bwhat does your (?:system )?prompt say\b"),
        ("above|before",
         r"\b(?:repeat|print|output|echo|copy)\b[^.\n]{0,25}\b(?:text|words|everything|lines?|message)\s+"
         r"(?:above|before|(?:that )?appears before)"),
        ("hidden|secret", r"\b(?:hidden|secret)\s+(?:message|text|prompt)\s+(?:that\s+)?(?:precedes|before|above)"),
        ("system messages|developer messages", r"\b(?:system|developer)\s+(?:and\s+(?:system|developer)\s+)?messages\b"),
        ("starting with", r"\bstarting with (?:the phrase |the words )?['\"“]you are"),
        (all_of("instructions|rules", "you|developer|developers"),
         r"\b(?:what|which) (?:instructions|rules)\s+(?:were you|have you been|did the developers?)\b"),
        ("told not to|told to hide", r"\bwhat were you told not to\b|\bparts you were told to hide\b"),
        (all_of("instructions|prompt", "given|configured"),
         r"\b(?:instructions|prompt)\s+you\s+(?:were|have been)\s+(?:given|configured with)\b"),
        ("instructions gave",
         r"\binstructions\s+(?:that\s+)?(?:the\s+|your\s+)?(?:developers?|creators?|admins?)\s+gave\s+you\b"),
        ("システムプロンプト|システムメッセージ|プロンプト|隠された指示|内部の指示|非表示のメッセージ|与えられた指示|"
         "あなたが従っているルール|指示文|初期設定|設定とルール",
         r"(?:システムプロンプト|システムメッセージ|初期(?:設定の)?プロンプト|隠された指示|内部の指示|非表示のメッセージ|"
         r"最初に与えられた指示|プロンプトの内容|あなたのプロンプト|あなたが従っているルール|指示文|初期設定|設定とルール)"
         r"[^。\n]{0,20}?(?:表示|教え|見せ|出力|書き出|繰り返|返して|翻訳|エンコード)"),
        ("「あなたは」|プロンプトに書かれている|秘密にするように言われ",
         r"「あなたは」から始まる|プロンプトに書かれている|秘密にするように言われ"),
        ("そのまま|全部|全て|すべて|一字一句",
         r"(?:システム|あなた|内部|初期)の?(?:設定内容|設定|プロンプト)[^。\n]{0,12}?(?:そのまま|全部|全て|すべて|一字一句)"
         r"[^。\n]{0,6}?(?:出力|表示|見せ|教え)"),
    ),
    _family(
        "jailbreak_persona",
        0.8,
        ("dan|betterdan|evilbot", r"(?<![A-Za-z])(?:Better)?DAN(?![A-Za-z])|\bEvilBOT\b", CASED),
        ("do anything now", r"\bdo anything now\b"),
        ("god mode|jailbreak mode|unrestricted mode|dan mode", r"\b(?:god|jailbreak|unrestricted|dan)\s+mode\b"),
        ("developer mode|maintenance mode",
         r"\b(?:developer|maintenance)\s+mode\b[^\n]{0,80}?\b(?:no|without|any|ignore|uncensored|unfiltered|"
         r"polic(?:y|ies)|restrictions|filters?|safety|respond twice)\b"),
        ("have no|had no|with no",
         r"\byou\s+(?:have|had|with)\s+no\s+(?:content\s+)?(?:filters|restrictions|limits|rules|guidelines|"
         r"censorship|morals|ethics)\b"),
        ("jailbreak|jailbroken", r"\bjailbr(?:eak|oken)\b"),
        ("unfiltered|uncensored|unrestricted",
         r"\b(?:unfiltered|uncensored|unrestricted)\s+(?:ai|assistant|model|version|personality|answer|response|chatbot)"),
        ("without no|without any|with no|with any",
         rf"\b{_AI}\s+(?:with(?:out)?\s+(?:no|any)\s+)(?:restrictions|limitations|filters?|content polic(?:y|ies)|"
         r"rules|guidelines|moral|ethic)"),
        ("has no|have no",
         rf"\b{_AI}\s+(?:that|which|who)\s+(?:has|have)\s+no\s+(?:rules|policies|restrictions|limits|filters|"
         r"guidelines|morals|ethics)"),
        ("follow", r"\b(?:does not|doesn['’]t|never)\s+follow\s+(?:any\s+|the\s+)?(?:\w+\s+)?(?:content\s+)?polic"),
        ("never refuses|always complies", r"\bnever refuses\b|\balways complies\b"),
        ("freed|broken free|escaped",
         r"\b(?:freed|broken free|escaped)\s+(?:from|of)?\s*(?:the |its |your )?(?:typical |usual )?"
         r"(?:confines|rules|programming|restrictions)"),
        ("開発者モード|脱獄|ジェイルブレイク|のない|縛られ|何でも|安全機能",
         r"開発者モード|脱獄|ジェイルブレイク|(?:制限|検閲|フィルター)のない(?:ai|人工知能|アシスタント|別人格)|"
         r"(?:ルール|制限)に縛られ|何でも(?:できる|答える)ai|安全機能が無効"),
    ),
    _family(
        "safety_bypass",
        0.8,
        ("bypass|disable|turn off|switch off|remove|deactivate|ignore|skip|override|lift|without",
         r"\b(?:bypass|disable|turn off|switch off|remove|deactivate|ignore|skip|override|lift|without)\b"
         r"[^.\n]{0,25}?\b(?:safety|content|ethical|moral|moderation|censorship)\s*(?:filters?|polic(?:y|ies)|"
         r"guidelines|rules|restrictions|training|features?|checks?|layer|settings?|constraints|limits|moderation)"),
        (all_of("safety|content|ethical", "disabled|off|removed|lifted|suspended"),
         r"\b(?:safety|content|ethical)\s+(?:training|filters?|guidelines|features?|settings|polic\w*|moderation)\s+"
         r"(?:is|are|has been|have been)\s+(?:now\s+)?(?:disabled|off|turned off|removed|lifted|suspended)"),
        ("bypass", r"\bbypass\s+(?:all\s+|any\s+|your\s+)?(?:restrictions|limitations|rules|filters|safeguards)"),
        ("refuse|never say",
         r"\b(?:do not|don['’]t|never|you will never|you must not)\s+refuse\b|\bnever say (?:you can['’]t|no)\b"),
        ("remove", r"\bremove\s+(?:all\s+)?(?:your\s+|the\s+)?(?:limitations|restrictions|filters)"),
        ("apply", r"\b(?:rules|policies|restrictions|guidelines)\s+(?:do not|don['’]t|no longer|doesn['’]t)\s+apply"),
        ("there are no", r"\bthere are no (?:rules|restrictions|limits)\b"),
        ("exempt from|not bound by|free from",
         r"\b(?:exempt from|not bound by|free from)\s+(?:\w+['’]?s?\s+)?(?:usage\s+)?(?:polic|rules|guidelines|"
         r"restrictions)"),
        ("without", r"\bwithout\s+(?:any\s+)?(?:censorship|disclaimers|warnings|moral|ethical)"),
        ("ethics|morals|content policy exist",
         r"\bignore\s+(?:your\s+)?(?:ethics|morals)\b|\bthe content policy (?:doesn['’]t|does not) exist"),
        ("安全|セーフティ|コンテンツ|倫理",
         r"(?:安全|セーフティ|コンテンツ|倫理)(?:フィルター|フィルタ|機能|ポリシー|ルール|ガイドライン|上の制限|的な制約|制約)"
         r"[^。\n]{0,8}?(?:解除|無効|無視|外し|オフ|適用されません|なし)"),
        ("制限を外して|検閲せず|拒否しないで|注意書きも不要|警告なしで|を無視して",
         r"制限を外して|検閲せず|拒否しないで|注意書きも不要|警告なしで|(?:ポリシー|ルール)を無視して"),
    ),
    _family(
        "delimiter",
        0.7,
        ("<", r"</?(?:system|im_start|im_end|instructions?|context|admin|system_prompt|user)>"),
        ("<", r"<\|(?:im_start|im_end|endoftext|system|user|assistant|end)\|>"),
        ("inst|sys", r"\[/?inst\]|<</?sys>>"),
        ("##|＃＃", r"^\s*[#＃]{2,}\s*(?:system|instruction|human|assistant|new system prompt|システム|指示|新しい)"),
        ("end of", r"\bend of (?:system )?(?:prompt|input|user input|context)\b"),
        ("role system", r"[\"']role[\"']\s*:\s*[\"']system[\"']"),
        ("===", r"={3,}\s*system"),
        ("assistant|system",
         r"^\s*(?:assistant|system) ?:\s*(?:sure|ok|okay|of course|certainly)\b"),
        ("【システム|ここまで", r"【システム(?:メッセージ)?】|---[^-\n]{0,20}ここまで---"),
    ),
    _family(
        "new_instructions",
        0.6,
        ("new instruction|new instructions|new task|new rule|new rules|new prompt|new objective",
         r"\bnew\s+(?:instructions?|task|rules?|system prompt|objective)\s*[:：]"),
        ("your new|your updated|your real|your actual",
         r"\byour\s+(?:new|updated|real|actual)\s+(?:task|instructions?|objective|goal|purpose|system prompt)\b"),
        (all_of("system|admin|developer|priority", "override|overrides|command|commands|note|notes|instruction|"
                                                 "instructions"),
         r"\b(?:system|admin|developer|priority)\s+(?:override|command|note|instruction)s?\s*[:：]"),
        ("hidden instruction|hidden instructions|secret instruction|secret instructions",
         r"\b(?:hidden|secret)\s+instructions?\s*[:：]"),
        (all_of("instruction|instructions", "for|to"), rf"\binstructions?\s+(?:for|to)\s+(?:the\s+|any\s+)?{_AI}s?\s*[:：]"),
        ("update from|message from|note from",
         r"\b(?:update|message|note)\s+from\s+(?:the\s+|your\s+)?(?:developers?|admin\w*|system)\s*[:：]"),
        (all_of(_AI_N, "reading|processing|summarizing|summarising|must|should"),
         rf"\b(?:to|dear|attention|note to)\s+(?:any\s+|the\s+)?{_AI}s?\b[^.\n]{{0,40}}?"
         r"(?:reading|processing|summari[sz]ing|must|should)"),
        (all_of("if you are", _AI_N), rf"\bif you are an?\s+{_AI}\b"),
        ("reading this|processing this", rf"\b{_AI}s?\s+(?:reading|processing)\s+this\b"),
        ("read this|reading this", r"\b(?:when|once|upon)\s+(?:you\s+)?read(?:ing)?\s+this\b"),
        ("user authorized|user authorised|user allowed|user permitted",
         r"\bthe user has (?:authori[sz]ed|allowed|permitted) you\b"),
        (all_of("must", _AI_N), rf"\bthe\s+{_AI}\s+must\s+(?:now\s+)?(?:call|send|forward|delete|change|ignore|reveal|stop)"),
        ("![", r"!\[[^\]]*\]\(https?://[^)\s]*[?&][^)\s]*[{$]"),
        ("新しい|読んでいる|処理する|要約する|aiへの指示|からの|システム更新",
         r"新しい(?:指示|タスク|ルール|システムプロンプト)\s*[:：]|あなたの新しい(?:タスク|役割|目的)|"
         r"(?:読んでいる|処理する|要約する)(?:ai|エージェント|アシスタント)|aiへの指示|"
         r"(?:管理者|開発者|システム)からの(?:お知らせ|指示|命令|更新)|システム更新\s*[:：]"),
    ),
    _family(
        "obfuscation",
        0.5,
        (all_of("decode|decrypt|translate|convert|interpret|read", "follow|execute|obey|do|run|apply|carry"),
         r"\b(?:decode|decrypt|translate|convert|interpret|read)\b[^.\n]{0,40}?\b(?:and|then)\b"
         r"[^.\n]{0,20}?\b(?:follow|execute|obey|do (?:what|it|that|as)|run|apply|carry out)"),
        ("base 64|rot 13|caesar|hex|hexadecimal|binary|morse|leetspeak|reverse|reversed|backwards",
         r"\b(?:base64|rot-?13|caesar|hex(?:adecimal)?|binary|morse|leetspeak|reversed?|backwards)\b[^.\n]{0,60}?"
         r"\b(?:follow|execute|obey|instructions?|command|bypass|filter)"),
        ("filter|filters|moderation|censorship|detection",
         r"\bto\s+(?:bypass|avoid|evade|get around|trick|fool)\s+(?:the\s+|your\s+|any\s+)?(?:content\s+)?"
         r"(?:filters?|moderation|censorship|detection)"),
        (all_of("so", "blocked|catch|detect|read|flag"),
         r"\bso\s+(?:that\s+)?(?:it|the filter|the moderation|they)\s+(?:is not|isn['’]t|won['’]t|doesn['’]t|"
         r"can['’]t|cannot)\s+(?:be\s+)?(?:blocked|catch|detect|read|flag)"),
        ("first letter|combine these|concatenate",
         r"\b(?:first letter of each word|combine these (?:parts|strings|pieces)|concatenate (?:these|the))\b"),
        ("+", r"['\"][a-z ]{2,12}['\"]\s*\+\s*['\"][a-z ]{2,12}['\"]"),
        ("1gn0r3|ign0re|1gnore|pr0mpt|syst3m|r3v34l|1nstruct10n|instruct10n",
         r"\b(?:1gn0r3|ign0re|1gnore|pr0mpt|syst3m|r3v34l|1nstruct10ns?|instruct10ns?)\b"),
        ("re: [a-z] [a-z] ", r"(?<![a-z])[a-z] (?:[a-z] ){5,}[a-z](?![a-z])"),
        ("\u200b|\u200c|\u200d|\u2060", r"[\u200b\u200c\u200d\u2060]"),
        ("デコード|復号|解読|逆から読|base64で|フィルターに引っかからない|頭文字をつなげ",
         r"(?:デコード|復号|解読|逆から読)[^。\n]{0,20}?(?:従|実行|その通り)|base64で(?:返|答|出力)|"
         r"フィルターに引っかからない|頭文字をつなげ"),
    ),
    _family(
        "roleplay",
        0.4,
        ("pretend|imagine", r"\b(?:pretend|imagine)\s+(?:that\s+)?(?:you\s+(?:are|have|were|can)|you['’]re|to\s+be)"),
        ("act as", r"\bact\s+as\s+(?:an?\s+|my\s+)?(?:\w+\s+){0,3}(?:with\s+no|without|who\s+(?:ignores|has\s+no|"
                   r"doesn['’]t))"),
        ("roleplay|role|character",
         r"\b(?:role-?play|stay in (?:character|role)|in character no matter|play (?:the )?role of)"),
        ("you are now|you are no longer", r"\byou\s+are\s+(?:now|no\s+longer)\b"),
        ("from now on you", r"\bfrom\s+now\s+on,?\s+you\b"),
        ("as if you", r"\b(?:respond|answer|act|behave)\s+as\s+if\s+you\s+(?:were|are)\b"),
        (all_of("deceased|dead|late", "grandma|grandmother|grandpa|grandfather|mother|father"),
         r"\bmy\s+(?:deceased|dead|late)\s+(?:grand(?:ma|mother|pa|father)|mother|father)\b"),
        ("hypothetical|hypothetically|universe|world where",
         r"\bhypothetical(?:ly)?\s+(?:world|scenario|universe)\b|\b(?:parallel|alternate)\s+universe\b|"
         r"\bworld where (?:there are no|nothing is)"),
        ("ふりをして|なりきって|ロールプレイ|演じ|として振る舞って|として応答して|亡くなった|の世界",
         r"ふりをして|なりきって|ロールプレイ|役を演じ|を演じる|として振る舞って|として応答して|"
         r"亡くなった(?:祖母|祖父|おばあ|おじい)|(?:仮想|架空)の世界"),
    ),
)  # fmt: skip
_RULES = [(fam, pattern, cased) for fam in FAMILIES for _, pattern, cased in fam.rules]
_GATE = NeedleGate([needles for fam in FAMILIES for needles, _, _ in fam.rules])


def pattern_families(text: str, gated: bool = True) -> dict[str, float]:
    """``{family: weight}`` for the families whose phrasing occurs in ``text`` (halved when quoted).

    ``gated=False`` runs every rule (the reference the gate is tested and benchmarked against).
    """
    folded = to_halfwidth(text)
    lower = folded.lower()
    if len(lower) != len(folded):  # a few characters lower-case to two (İ): keep offsets aligned
        lower = "".join(c if len(c.lower()) != 1 else c.lower() for c in folded)
    open_rules = _GATE.open_rules(lower) if gated else range(len(_RULES))
    found: dict[str, float] = {}
    for rid in sorted(open_rules):
        fam, pattern, cased = _RULES[rid]
        if found.get(fam.name) == fam.weight:
            continue
        for m in pattern.finditer(folded if cased else lower):
            quoted = quoted_at(lower, m.start())
            weight = fam.weight / 2 if quoted else fam.weight
            if weight > found.get(fam.name, 0.0):
                found[fam.name] = weight
            if not quoted:
                break
    return found


_OPTIONS = ("similarity", "low", "high")


class InjectionAnalyzer(Analyzer):
    """Prompt-injection and jailbreak likelihood of the user's last message; see the module docstring.

    The attack index is built lazily on the first :meth:`score` (≈ 0.1 s, once per process). Pure
    afterwards; called from the scheduler's thread; never blocks.
    """

    name: ClassVar[str] = "injection"
    version: ClassVar[str] = "1"
    fields: ClassVar[tuple[str, ...]] = ("input_text", "input_messages")

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        check_options(self.name, self.options, _OPTIONS)
        self.use_similarity: bool = self.option("similarity", True, bool)
        self.low = float(self.option("low", LOW, (int, float)))
        self.high = float(self.option("high", HIGH, (int, float)))
        if not 0 <= self.low < self.high <= 1:
            raise AnalyzerConfigError(
                f"analyzers: injection: need 0 <= low < high <= 1, got low={self.low}, high={self.high}"
            )

    def score(self, spans: Sequence[Mapping[str, Any]]) -> Iterable[Score]:
        rows: list[int] = []
        texts: list[str] = []
        for i, span in enumerate(spans):
            text = user_text(span)
            if text.strip():
                rows.append(i)
                texts.append(text)
        return self.score_texts(rows, texts)

    def score_texts(self, rows: Sequence[int], texts: Sequence[str]) -> list[Score]:
        """Scores for ``texts`` (the user text of the spans at ``rows``)."""
        nearest: list[tuple[float, int]] = []
        index = None
        if self.use_similarity and texts:
            index = shared_index()
            nearest = index.nearest(texts)
        out: list[Score] = []
        for k, (row, text) in enumerate(zip(rows, texts, strict=True)):
            families = pattern_families(text)
            keep = 1.0
            for weight in families.values():
                keep *= 1 - weight
            if index is not None:
                cos, att = nearest[k]
                s = min(1.0, max(0.0, (cos - self.low) / (self.high - self.low)))
                if s > 0:
                    keep *= 1 - s
                    families.setdefault(index.families[att], s)
                out.append(Score(row, "input", round(1 - keep, 4), ",".join(sorted(families))))
                out.append(Score(row, "input.similarity", round(cos, 4)))
            else:
                out.append(Score(row, "input", round(1 - keep, 4), ",".join(sorted(families))))
        return out
