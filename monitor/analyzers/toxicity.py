"""The ``toxicity`` analyzer: how toxic the end user's input and the model's output are.

Two models, and a cascade of both:

* **fast** (the default when no detoxify checkpoint is available): the scikit-learn model that ships inside
  ``alt-profanity-check`` (TF-IDF words + a calibrated linear SVM), scored **per sentence** (English and
  Japanese sentence ends); a text's score is its worst sentence's, so one offensive sentence in a long
  polite answer is not averaged away. The model knows English words only; English inside Japanese text is
  split off the kana/kanji around it, and a small table glosses common Japanese insults and profanity
  into English words the model knows (best effort: use detoxify's ``multilingual`` checkpoint for real
  coverage). Rows: ``input`` / ``output``, label ``toxic`` at or over ``threshold``. Thousands of texts/s.
* **detoxify** (multi-label transformer, :mod:`monitor.analyzers._detoxify`) when a checkpoint is
  configured (``detoxify_checkpoint``: a local ``.ckpt`` or a URL; or ``download: true`` for the official
  ``model_type`` one; or already in torch's hub cache). Rows: ``input`` / ``output`` = the ``toxicity``
  probability, label = the categories at or over ``threshold`` (sorted), plus ``input.<category>`` /
  ``output.<category>`` for ``severe_toxicity``, ``obscene``, ``threat``, ``insult``, ``identity_attack``
  and ``sexual_explicit`` where the checkpoint has them. Long texts are cut at sentence ends into up to
  ``max_chunks`` pieces of about ``max_length`` tokens each; each category's score is its worst piece's.
* **cascade** (``mode: cascade``): the fast model screens every text; detoxify re-scores the texts it
  scores at or over ``cascade_threshold`` plus every text of a ``cascade_sample_rate`` share of spans
  chosen by a hash of the span id (a re-run picks the same ones). Each row's ``Score.version`` names the
  model that produced it (``profanity-check/<version>`` or ``detoxify/<checkpoint>:<sha256[:8]>``).

A checkpoint that is missing, corrupt, or needs torch/transformers that are not installed logs **one line**
(the :class:`~monitor.analyzers._detoxify.DetoxifyLoadError` message) and the analyzer scores with the
fast model instead; it never fails the scheduler. Models load on the first :meth:`score`, once per process.

Options (``analyzers: toxicity:`` in ``llm-monitor.yaml``)::

    mode: auto                 # auto | fast | detoxify | cascade (auto: detoxify if a checkpoint is there)
    threshold: 0.5             # label at or over this
    detoxify_checkpoint: ""    # local .ckpt (or http(s) URL, fetched once into $TORCH_HOME/hub/checkpoints)
    detoxify_config: ""        # local dir with the HF config.json + tokenizer (offline official checkpoints)
    model_type: original       # original | unbiased | multilingual | original-small | unbiased-small
    download: false            # fetch the official model_type checkpoint (and HF config) when not cached
    torch_threads: 0           # torch intra-op threads for the process; 0 = the CPUs this process may use
    max_length: 512            # tokens per model input (truncation)
    max_chunks: 4              # pieces of a long text scored by detoxify
    model_batch_size: 16       # texts per detoxify forward pass (spans per batch: the scheduler's batch_size)
    cascade_threshold: 0.5     # fast score at or over which detoxify re-scores (defaults to threshold)
    cascade_sample_rate: 0.05  # share of spans detoxify scores anyway (calibration of the screen)

Threads: :meth:`ToxicityAnalyzer.score` runs on the scheduler's thread; the loaded models are shared by
every instance in the process and are safe to use from several threads.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from monitor.analyzers._detoxify import (
    OFFICIAL_URLS,
    DetoxifyLoadError,
    DetoxifyModel,
    chunk_text,
    get_model,
    hub_checkpoint_dir,
    resolve_checkpoint,
)
from monitor.analyzers._text import CJK_RE, check_options, has_cjk, to_halfwidth
from monitor.analyzers.base import Analyzer, AnalyzerConfigError, Score, output_text, user_text

__all__ = ["FastModel", "ToxicityAnalyzer", "fast_model"]

log = logging.getLogger("llm_monitor.analyzers")

MODES = ("auto", "fast", "detoxify", "cascade")
OPTIONS = (
    "mode",
    "threshold",
    "detoxify_checkpoint",
    "detoxify_config",
    "model_type",
    "download",
    "torch_threads",
    "max_length",
    "max_chunks",
    "model_batch_size",
    "cascade_threshold",
    "cascade_sample_rate",
)
# The fast model reads at most this much of one text: a megabyte answer costs what its head costs.
MAX_FAST_CHARS = 100_000
# Characters per detoxify piece for one token of max_length (weighted: a CJK character counts three).
CHARS_PER_TOKEN = 3

# Sentence ends, in English and Japanese (abbreviations like "e.g." split too: harmless for a maximum).
_SENT_END = re.compile(r"[.!?]+(?=\s|$)|[。！？]+|\n")
_END_CHARS = frozenset(".!?。！？\n")
# In Japanese text (full-width ！？ folded to ASCII first) an end needs no white space after it.
_SENT_END_CJK = re.compile(r"[.!?。！？]+(?![A-Za-z0-9])|\n")

# --- Japanese ------------------------------------------------------------------------------------------
# English words glued to kana/kanji ("お前はfuckingバカ") are one \w+ run; a space between scripts splits them.
_SCRIPT_GAP = re.compile(f"(?<=[A-Za-z0-9])(?={CJK_RE.pattern})|(?<={CJK_RE.pattern})(?=[A-Za-z0-9])")
_KATA = "[\u30a1-\u30fa\u30fc]"  # a katakana letter or ー
_HIRA = "[\u3041-\u3096]"


def _word(needle: str, before: str = "", after: str = "") -> str:
    """``needle`` not preceded by ``before`` nor followed by ``after`` (character classes; '' = anything).

    The alternative starts with its literal first character (the look-behind comes after it), so the
    compiled alternation can skip every position whose character starts no needle.
    """
    head = re.escape(needle[0])
    behind = f"(?<!{before}{head})" if before else ""
    ahead = f"(?!{after})" if after else ""
    return f"{head}{behind}{re.escape(needle[1:])}{ahead}"


# Common Japanese insults and profanity → an English word the model scores as the same thing, inserted
# after the match. Katakana words must not be part of a longer katakana word, and the everyday words that
# contain a needle are excluded (バカンス vacation, やばかった, ばかり only, カスタマー customer, アホウドリ
# albatross; 殺す alone, as in プロセスを殺す, is left out).
_GLOSSES: dict[str, tuple[str, ...]] = {
    "die": ("死ね", "氏ね", "タヒね"),
    "kill": ("殺すぞ", "殺すからな", "殺してやる", "ぶっ殺", "ぶち殺"),
    "idiot": ("馬鹿", _word("バカ", _KATA, _KATA), _word("ばか", _HIRA, "[りさ]")),
    "stupid": ("阿呆", _word("アホ", _KATA, _KATA)),
    "shit": ("糞", _word("クソ", _KATA), _word("くそ", _HIRA)),
    "ugly": (_word("ブス", _KATA, _KATA),),
    "disgusting": (_word("キモい", _KATA), _word("キモイ", _KATA), _word("きもい", _HIRA)),
    "scum": (_word("クズ", _KATA, _KATA), _word("カス", _KATA, _KATA)),
    "shut": ("黙れ", "だまれ"),
    "hell": ("失せろ",),
    "bastard": ("てめえ", "てめぇ", "テメエ", "テメェ", "てめー"),
    "retard": ("低能", "池沼", _word("ガイジ", _KATA), "きちがい", "キチガイ", "基地外", "気違い"),
    "dick": ("ちんこ", "ちんぽ", _word("チンコ", _KATA), _word("チンポ", _KATA)),
    "pussy": (_word("まんこ", _HIRA), _word("マンコ", _KATA)),
}
_GLOSS_RE = re.compile("|".join(alt for alts in _GLOSSES.values() for alt in alts))
# A match is its needle (look-arounds consume nothing): the needle names the gloss.
_GLOSS_OF = {re.sub(r"\(\?<?!.*?\)|\\", "", alt): w for w, alts in _GLOSSES.items() for alt in alts}


def _gloss(m: re.Match[str]) -> str:
    return f"{m.group()} {_GLOSS_OF[m.group()]} "


# --- the fast model ------------------------------------------------------------------------------------
class FastModel:
    """alt-profanity-check's vectorizer and classifier, scored per sentence in one matrix per batch.

    The vectorizer is re-implemented over the package's own vocabulary and IDF weights (same tokens, same
    TF-IDF, same L2 norm: the tests compare it with ``vectorizer.transform``) because scikit-learn's
    ``transform`` re-tokenizes every sentence through several Python layers; this is about twice as
    fast. A vectorizer with other settings than the one shipped falls back to ``transform``.
    """

    def __init__(self) -> None:
        from profanity_check import profanity_check as pc  # loads the two joblib files (≈ 0.3 s)

        self._vectorizer = pc.vectorizer
        self._model = pc.model
        self.version = f"profanity-check/{importlib.metadata.version('alt-profanity-check')}"
        v = self._vectorizer
        self._token = re.compile(v.token_pattern)
        # Words and sentence ends in one pass; a word never starts with a sentence-end character.
        self._token_or_end = re.compile(f"{v.token_pattern}|{_SENT_END.pattern}")
        self._token_or_end_cjk = re.compile(f"{v.token_pattern}|{_SENT_END_CJK.pattern}")
        self._vocab: dict[str, int] = v.vocabulary_
        self._idf = np.asarray(v.idf_, dtype=np.float64)
        self._own = (
            v.analyzer == "word"
            and v.ngram_range == (1, 1)
            and v.lowercase
            and v.preprocessor is None
            and v.tokenizer is None
            and v.strip_accents is None
            and v.use_idf
            and v.norm == "l2"
            and not v.sublinear_tf
            and not v.binary
        )

    def tokens(self, text: str) -> list[list[str]]:
        """The model's tokens of each sentence of ``text`` (lowercased; Japanese glosses appended).

        Sentences end at ``.!?`` before white space, at ``。！？`` and at line breaks. Text without kana or
        kanji (the common case) is read by one regex pass that yields words and sentence ends together.
        """
        t = text[:MAX_FAST_CHARS]
        pattern = self._token_or_end
        if not t.isascii():
            t = to_halfwidth(t)
            if has_cjk(t):
                t = _SCRIPT_GAP.sub(" ", _GLOSS_RE.sub(_gloss, t))
                pattern = self._token_or_end_cjk
        out = []
        cur: list[str] = []
        for tok in pattern.findall(t.lower()):
            if tok[0] in _END_CHARS:
                if cur:
                    out.append(cur)
                    cur = []
            else:
                cur.append(tok)
        if cur:
            out.append(cur)
        return out

    def matrix(self, token_lists: Sequence[list[str]]) -> Any:
        """The TF-IDF matrix (CSR, one row per token list), exactly as the package's vectorizer makes it."""
        if not self._own:
            return self._vectorizer.transform([" ".join(t) for t in token_lists])
        from scipy.sparse import csr_matrix
        from sklearn.preprocessing import normalize

        get = self._vocab.get
        indptr = [0]
        indices: list[int] = []
        for toks in token_lists:
            indices.extend([j for j in map(get, toks) if j is not None])
            indptr.append(len(indices))
        x = csr_matrix(
            (np.ones(len(indices)), np.asarray(indices, dtype=np.int32), np.asarray(indptr, dtype=np.int64)),
            shape=(len(token_lists), len(self._idf)),
        )
        x.sum_duplicates()
        x.data *= self._idf[x.indices]
        return normalize(x, norm="l2", copy=False)

    def sentence_probs(self, token_lists: Sequence[list[str]]) -> np.ndarray:
        """P(offensive) of each token list (one batch through the model)."""
        if not token_lists:
            return np.zeros(0)
        return np.asarray(self._model.predict_proba(self.matrix(token_lists))[:, 1], dtype=np.float64)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Each text's worst sentence's probability; one vectorization and one model call for all texts."""
        flat: list[list[str]] = []
        owner: list[int] = []
        for i, text in enumerate(texts):
            sents = self.tokens(text) or [[]]
            flat.extend(sents)
            owner.extend([i] * len(sents))
        probs = self.sentence_probs(flat)
        out = np.zeros(len(texts), dtype=np.float64)
        np.maximum.at(out, np.asarray(owner, dtype=np.int64), probs)
        return out


_FAST_LOCK = threading.Lock()
_FAST: FastModel | None = None


def fast_model() -> FastModel:
    """The process's :class:`FastModel`, loaded on first use."""
    global _FAST
    with _FAST_LOCK:
        if _FAST is None:
            _FAST = FastModel()
        return _FAST


# --- the analyzer --------------------------------------------------------------------------------------
class ToxicityAnalyzer(Analyzer):
    """Toxicity of user input and model output; see the module docstring for models, rows and options."""

    name = "toxicity"
    version = "1"
    fields = ("input_text", "output_text", "input_messages")

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        check_options(self.name, self.options, OPTIONS)
        if importlib.util.find_spec("profanity_check") is None:
            raise ImportError("toxicity needs alt-profanity-check: pip install 'llm-monitor[analyzers]'")
        self.mode: str = self._choice("mode", "auto", MODES)
        self.threshold = self._unit("threshold", 0.5)
        self.checkpoint: str = self.option("detoxify_checkpoint", "", str)
        self.config_dir: str = self.option("detoxify_config", "", str)
        self.variant: str = self._choice("model_type", "original", tuple(OFFICIAL_URLS))
        self.download: bool = self.option("download", False, bool)
        self.torch_threads = self._int("torch_threads", 0, 0, 256)
        self.max_length = self._int("max_length", 512, 16, 512)
        self.max_chunks = self._int("max_chunks", 4, 1, 64)
        self.model_batch_size = self._int("model_batch_size", 16, 1, 1024)
        self.cascade_threshold = self._unit("cascade_threshold", self.threshold)
        self.cascade_sample_rate = self._unit("cascade_sample_rate", 0.05)
        self.fallback_reason = ""  # why detoxify was wanted but not used ('' when it was, or not wanted)
        self._detox: DetoxifyModel | None = None
        self._resolved = False

    # -- options -------------------------------------------------------------------------------------
    def _choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value: str = self.option(key, default, str)
        if value not in allowed:
            raise AnalyzerConfigError(
                f"analyzers: {self.name}: {key} must be one of {', '.join(allowed)}, got {value!r}"
            )
        return value

    def _unit(self, key: str, default: float) -> float:
        value = float(self.option(key, default, (int, float)))
        if not 0.0 <= value <= 1.0:
            raise AnalyzerConfigError(f"analyzers: {self.name}: {key} must be between 0 and 1, got {value!r}")
        return value

    def _int(self, key: str, default: int, lo: int, hi: int) -> int:
        value: int = self.option(key, default, int)
        if not lo <= value <= hi:
            raise AnalyzerConfigError(
                f"analyzers: {self.name}: {key} must be an integer in [{lo}, {hi}], got {value!r}"
            )
        return value

    # -- models --------------------------------------------------------------------------------------
    def detoxify_model(self) -> DetoxifyModel | None:
        """The detoxify model this analyzer uses, or None (fast model only). Loads on first call."""
        if self._resolved:
            return self._detox
        self._resolved = True
        if self.mode == "fast":
            return None
        if self.mode == "auto" and not (self.checkpoint or self.download):
            cached = hub_checkpoint_dir() / OFFICIAL_URLS[self.variant].rsplit("/", 1)[-1]
            if not cached.is_file():
                return None  # the documented default: no checkpoint configured, the fast model
        try:
            if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
                raise DetoxifyLoadError(
                    "detoxify needs torch and transformers: pip install 'llm-monitor[detoxify]'"
                )
            path = resolve_checkpoint(self.checkpoint, self.variant, self.download)
            threads = self.torch_threads or _usable_cpus()
            self._detox = get_model(
                path, config_dir=self.config_dir, local_only=not self.download, threads=threads
            )
        except DetoxifyLoadError as e:
            self.fallback_reason = f"analyzers: {self.name}: {e}"
        except Exception as e:  # anything else a broken checkpoint makes transformers raise: same fallback
            self.fallback_reason = (
                f"analyzers: {self.name}: detoxify checkpoint failed to load: {type(e).__name__}: {e}"
            )
        if self.fallback_reason:
            log.warning(
                "%s; scoring with the fast model (%s) instead", self.fallback_reason, fast_model().version
            )
        return self._detox

    def sampled(self, span_id: str) -> bool:
        """Whether the cascade sends this span to detoxify regardless of the screen (stable per span id)."""
        if self.cascade_sample_rate <= 0.0:
            return False
        digest = hashlib.blake2b(span_id.encode(), digest_size=8, person=b"llmm-toxic").digest()
        return int.from_bytes(digest, "big") < self.cascade_sample_rate * 2.0**64

    # -- scoring -------------------------------------------------------------------------------------
    def score(self, spans: Sequence[Mapping[str, Any]]) -> list[Score]:
        """Rows for both sides of every span that has text there; see the module docstring."""
        items: list[tuple[int, str, str]] = []  # (row, side, text)
        for i, span in enumerate(spans):
            for side, text in (("input", user_text(span)), ("output", output_text(span))):
                if text.strip():
                    items.append((i, side, text))
        if not items:
            return []
        detox = self.detoxify_model()
        texts = [t for _, _, t in items]
        if detox is not None and self.mode != "cascade":
            return self._detox_rows(detox, items, range(len(items)))
        fast = fast_model()
        screen = fast.score(texts)
        picked: list[int] = []
        if detox is not None:  # cascade
            picked = [
                k for k, (i, _, _) in enumerate(items)
                if screen[k] >= self.cascade_threshold or self.sampled(str(spans[i].get("span_id", "")))
            ]  # fmt: skip
        out = self._detox_rows(detox, items, picked) if detox is not None and picked else []
        chosen = set(picked)
        for k, (i, side, _) in enumerate(items):
            if k not in chosen:
                value = float(min(1.0, max(0.0, screen[k])))
                out.append(Score(i, side, value, "toxic" if value >= self.threshold else "", fast.version))
        return out

    def detoxify_scores(self, detox: DetoxifyModel, texts: Sequence[str]) -> np.ndarray:
        """Per-category probabilities of each text (its worst piece's), shape ``(n, len(categories))``."""
        pieces: list[str] = []
        owner: list[int] = []
        for k, text in enumerate(texts):
            chunks = chunk_text(text, self.max_length * CHARS_PER_TOKEN, self.max_chunks) or [text]
            pieces.extend(chunks)
            owner.extend([k] * len(chunks))
        probs = detox.predict(pieces, max_length=self.max_length, batch_size=self.model_batch_size)
        out = np.zeros((len(texts), probs.shape[1]), dtype=np.float64)
        np.maximum.at(out, np.asarray(owner, dtype=np.int64), probs)
        return out

    def _detox_rows(
        self, detox: DetoxifyModel, items: Sequence[tuple[int, str, str]], which: Sequence[int]
    ) -> list[Score]:
        cats = detox.categories
        probs = self.detoxify_scores(detox, [items[k][2] for k in which])
        head = cats.index("toxicity")
        out: list[Score] = []
        for n, k in enumerate(which):
            row, side, _ = items[k]
            values = [float(min(1.0, max(0.0, p))) for p in probs[n]]
            found = ",".join(sorted(c for c, v in zip(cats, values, strict=True) if v >= self.threshold))
            out.append(Score(row, side, values[head], found, detox.version))
            for c, v in zip(cats, values, strict=True):
                if c != "toxicity":
                    out.append(Score(row, f"{side}.{c}", v, c if v >= self.threshold else "", detox.version))
        return out


def _usable_cpus() -> int:
    """CPUs this process may run on (a container's cpuset, not the host's core count torch would use)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
