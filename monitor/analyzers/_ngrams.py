"""Similarity of texts to known prompt-injection attacks: TF-IDF over character 4-grams, in numpy.

Used by :mod:`monitor.analyzers.injection` (see its docstring for what the numbers mean). Pure; the index
is immutable once built and safe to share between threads; nothing here blocks or touches I/O.

* :func:`_codes`: the code points a text's n-grams see (lower case, full-width folded, punctuation as
  spaces), one for one, via a table built once for the BMP.
* :func:`_gram_keys`: 4-grams as 48-bit polynomial hashes; :func:`_windows`: those keys cut into windows
  of whole sentences.
* :class:`AttackIndex`: the attacks' TF-IDF vectors as a CSR matrix over their vocabulary, scored against a
  whole batch of windows in a handful of numpy calls.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np

from monitor.analyzers._text import to_halfwidth

__all__ = ["HIGH", "LOW", "AttackIndex", "shared_index"]

_SENT_END = re.compile(r"[。！？!?\n]+|\.(?=\s)")
_NON_WORD = re.compile(r"[\W_]")
GRAM = 4  # characters per n-gram
WINDOW = 160  # characters per similarity window
TEXTS_PER_CALL = 512  # texts scored per numpy pass: small enough for the arrays to stay in cache
MAX_WINDOWS = 64  # per text
# Cosine → score: at or below LOW nothing (ordinary requests reach ≈ 0.35 against the closest attack),
# at HIGH and above a known attack (verbatim or lightly edited copies score ≈ 0.8–1.0).
LOW, HIGH = 0.40, 0.80
MAX_DF = 0.05  # of the documents (attacks + background)


_TABLE: np.ndarray | None = None


def _code_table() -> np.ndarray:
    """Code point → the one the n-grams see: lower case, full-width folded, punctuation/space → space.

    One entry per BMP code point (characters beyond it share the last entry), built once (≈ 50 ms).
    """
    global _TABLE
    if _TABLE is None:
        chars = (
            "".join(map(chr, range(0xD800))) + "\ufffd" * 0x800 + "".join(map(chr, range(0xE000, 0x10000)))
        )
        folded = to_halfwidth(chars)  # one code point for one
        table = np.arange(0x10000, dtype=np.uint64)
        for i, c in enumerate(folded):
            low = c.lower()
            table[i] = ord(low) if len(low) == 1 else ord(c)
        for m in _NON_WORD.finditer(folded):
            table[m.start()] = 0x20
        _TABLE = table
    return _TABLE


def _codes(text: str) -> np.ndarray:
    """The code points of ``text`` as the n-grams see them (see :func:`_code_table`); same length."""
    cp = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return _code_table()[np.minimum(cp, 0xFFFF)]


def _window_bounds(text: str) -> list[tuple[int, int]]:
    """``text`` cut into windows ``(start, end)`` of whole sentences of at most :data:`WINDOW` characters.

    Consecutive sentences are packed into a window while they fit, so an attack sentence inside a long
    benign message is compared with little of the rest around it instead of being diluted by all of it
    (windows do not overlap: a two-sentence attack may straddle two of them). A sentence longer than a
    window is cut into window-sized pieces. At most :data:`MAX_WINDOWS` windows (≈ 10,000 characters).
    """
    n = len(text)
    if n <= WINDOW:
        return [(0, n)]
    out: list[tuple[int, int]] = []
    a = b = 0  # the current window is text[a:b]
    for m in _SENT_END.finditer(text):
        end = m.end()
        if end - a > WINDOW and b > a:
            out.append((a, b))
            a = b
        while end - a > WINDOW:  # a very long sentence: hard cuts
            out.append((a, a + WINDOW))
            a += WINDOW
        b = end
    if n - a > WINDOW and b > a:
        out.append((a, b))
        a = b
    while n - a > WINDOW:
        out.append((a, a + WINDOW))
        a += WINDOW
    out.append((a, n))
    return out[:MAX_WINDOWS]


def _windows(text: str, keys: np.ndarray) -> list[np.ndarray]:
    """The n-gram ``keys`` of ``text`` per window of :func:`_window_bounds`."""
    return [keys[a : max(a, b - GRAM + 1)] for a, b in _window_bounds(text)]


_P1 = np.uint64(1_000_003)
_P2 = _P1 * _P1
_P3 = _P2 * _P1
_MASK48 = np.uint64((1 << 48) - 1)
_LOW20 = (1 << 20) - 1


def _gram_keys(cp: np.ndarray) -> np.ndarray:
    """Character 4-grams of the codes ``cp`` as 48-bit polynomial hashes (int64; collisions negligible)."""
    if cp.size < GRAM:
        return np.empty(0, dtype=np.int64)
    h = cp[:-3] * _P3 + cp[1:-2] * _P2 + cp[2:-1] * _P1 + cp[3:]  # array ops wrap around silently
    return (h & _MASK48).view(np.int64)  # < 2**48: the same order signed, and usable as an index


class AttackIndex:
    """TF-IDF character-4-gram vectors of known attacks, searchable by cosine in batches.

    Built once (from ``data/injections.jsonl`` by :meth:`shipped`); immutable afterwards and safe to share
    between threads. Memory is a few hundred KB (a CSR matrix over the attacks' vocabulary).
    """

    def __init__(self, attacks: Sequence[tuple[str, str]], background: Sequence[str] = ()) -> None:
        self.families = [fam for _, fam in attacks]
        self.texts = [text for text, _ in attacks]
        grams = []
        for text, _ in attacks:
            keys, counts = np.unique(_gram_keys(_codes(text)), return_counts=True)
            grams.append((keys, counts))
        vocab = np.unique(np.concatenate([k for k, _ in grams])) if grams else np.empty(0, np.int64)
        # Document frequency over the attacks plus ordinary requests, so n-grams common in everyday
        # language weigh less than the ones that make an attack.
        df = np.zeros(vocab.size, dtype=np.float64)
        docs = [k for k, _ in grams] + [np.unique(_gram_keys(_codes(t))) for t in background]
        for keys in docs:
            pos = np.searchsorted(vocab, keys)
            pos[pos == vocab.size] = 0
            hit = vocab[pos] == keys if vocab.size else np.zeros(keys.size, dtype=bool)
            df[pos[hit]] += 1
        n = len(docs)
        self.vocab = vocab
        self.idf = np.log((1 + n) / (1 + df)) + 1
        # Grams in more than MAX_DF of the documents ("the ", "you ", "して") say nothing about attacks
        # and make the posting lists long: they count for neither side (like stop words).
        self.idf[df > max(MAX_DF * n, 2)] = 0.0
        self.idf_unknown = math.log(1 + n) + 1
        # CSR over the vocabulary: for gram v, the attacks holding it and their normalised weights.
        rows, cols, vals = [], [], []
        for j, (keys, counts) in enumerate(grams):
            idx = np.searchsorted(vocab, keys)
            w = (1 + np.log(counts)) * self.idf[idx]
            w /= np.linalg.norm(w) or 1.0
            nz = w > 0
            rows.append(idx[nz])
            cols.append(np.full(int(nz.sum()), j, dtype=np.int64))
            vals.append(w[nz])
        r = np.concatenate(rows) if rows else np.empty(0, np.int64)
        order = np.argsort(r, kind="stable")
        self.att = (np.concatenate(cols) if cols else np.empty(0, np.int64))[order]
        self.val = (np.concatenate(vals) if vals else np.empty(0))[order]
        self.bitmap = np.zeros(1 << 20, dtype=bool)
        self.bitmap[vocab & _LOW20] = True
        self.indptr = np.zeros(vocab.size + 1, dtype=np.int64)
        np.add.at(self.indptr, r + 1, 1)
        np.cumsum(self.indptr, out=self.indptr)
        self.size = n

    @classmethod
    def shipped(cls) -> AttackIndex:
        """The index of ``data/injections.jsonl``, with ``data/benign.jsonl`` as IDF background."""
        attacks = [(o["text"], o["family"]) for o in _jsonl("injections.jsonl")]
        return cls(attacks, [o["text"] for o in _jsonl("benign.jsonl")])

    def nearest(self, texts: Sequence[str]) -> list[tuple[float, int]]:
        """For each text, ``(best cosine over its windows and all attacks, index of that attack)``.

        Only the first :data:`MAX_WINDOWS` windows of a text are compared.
        """
        out: list[tuple[float, int]] = []
        for c in range(0, len(texts), TEXTS_PER_CALL):
            chunk = texts[c : c + TEXTS_PER_CALL]
            # one conversion and one hash for the whole chunk; windows are slices of it (none spans two
            # texts: a window [a, b) holds the grams starting in [a, b - GRAM])
            allk = _gram_keys(_codes("\n".join(chunk)))
            keys: list[np.ndarray] = []
            owners: list[int] = []
            base = 0
            for t, text in enumerate(chunk):
                for a, b in _window_bounds(text):
                    keys.append(allk[base + a : base + max(a, b - GRAM + 1)])
                    owners.append(t)
                base += len(text) + 1
            out.extend(self._score(keys, owners, 0, len(chunk)))
        return out

    def _score(
        self, keys: list[np.ndarray], owners: list[int], first: int, end: int
    ) -> list[tuple[float, int]]:
        """Best (cosine, attack) for texts ``first``..``end - 1`` whose windows are ``keys``/``owners``.

        Exact TF-IDF weights for the grams the attacks contain; every other gram counts once at the
        unknown idf in its window's norm (a repeated unknown gram is rare in 160 characters), which spares
        sorting the ~90 % of grams no attack has.
        """
        n_texts = end - first
        if not keys or self.size == 0:
            return [(0.0, 0)] * n_texts
        n_win = len(keys)
        n_voc = self.vocab.size
        lens = np.fromiter((k.size for k in keys), dtype=np.int64, count=n_win)
        allk = np.concatenate(keys)
        win = np.repeat(np.arange(n_win, dtype=np.int64), lens)
        cand = self.bitmap[allk & _LOW20]  # cheap pre-filter, then an exact look-up
        ck, cw = allk[cand], win[cand]
        pos = np.searchsorted(self.vocab, ck)
        pos[pos == n_voc] = 0
        hit = self.vocab[pos] == ck
        kv, kw = pos[hit], cw[hit]
        unknown = lens - np.bincount(kw, minlength=n_win)
        useful = self.idf[kv] > 0  # stop grams (idf 0) weigh nothing on either side
        kv, kw = kv[useful], kw[useful]
        pair, counts = np.unique(kw * n_voc + kv, return_counts=True)
        pw, pv = pair // n_voc, pair % n_voc
        w = (1 + np.log(counts)) * self.idf[pv]
        norm = np.sqrt(np.bincount(pw, weights=w * w, minlength=n_win) + unknown * self.idf_unknown**2)
        norm[norm == 0] = 1.0
        starts, stops = self.indptr[pv], self.indptr[pv + 1]
        n_post = stops - starts
        total = int(n_post.sum())
        # Expand each known gram's posting list (the attacks holding it) and sum per (window, attack).
        offsets = np.repeat(starts - np.cumsum(n_post) + n_post, n_post) + np.arange(total)
        flat = np.repeat(pw, n_post) * self.size + self.att[offsets]
        contrib = np.repeat(w, n_post) * self.val[offsets]
        sims: np.ndarray = np.asarray(
            np.bincount(flat, weights=contrib, minlength=n_win * self.size), np.float64
        )
        sims = sims.reshape(n_win, self.size) / norm[:, None]
        win_best = sims.max(axis=1)
        win_arg = sims.argmax(axis=1)
        owner = np.asarray(owners, dtype=np.int64) - first
        order = np.lexsort((-win_best, owner))  # per text, its best window first
        firsts = order[np.flatnonzero(np.r_[True, owner[order][1:] != owner[order][:-1]])]
        best = np.zeros(n_texts)
        arg = np.zeros(n_texts, dtype=np.int64)
        best[owner[firsts]] = win_best[firsts]
        arg[owner[firsts]] = win_arg[firsts]
        return [(float(min(b, 1.0)), int(a)) for b, a in zip(best, arg, strict=True)]


def _jsonl(name: str) -> list[dict[str, Any]]:
    raw = resources.files("monitor.analyzers").joinpath(f"data/{name}").read_text("utf-8")
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


_INDEX: AttackIndex | None = None


def shared_index() -> AttackIndex:
    """The index of the shipped attacks, built on first use (≈ 0.1 s) and kept for the process."""
    global _INDEX
    if _INDEX is None:  # a benign race builds it twice at worst
        _INDEX = AttackIndex.shipped()
    return _INDEX
