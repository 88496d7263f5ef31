"""The ranking demo's synthetic shop: requests, the shoppers' engagement, the champion ranker.

Four shopper segments (``user_segment``: students, families, pros, seniors) each like the
shop's 300 products in their own order (a Zipf law over a permutation of the catalogue).
A request shows a shopper the recommender's list; the shopper engages with 0 to 3 products
they like (a click: relevance 1; a purchase: relevance 3), seen in the list or found
elsewhere, and 35% of requests engage with nothing (an empty label, which counts).

When the world changes, 40 new products (``n000``–``n039``) launch and the students take to
them: 70% of their engagement goes to the new products. A champion fitted on yesterday's
engagement keeps recommending yesterday's products to the students, so NDCG@10 falls; a
challenger retrained on recent engagement learns the new products and NDCG recovers.

>>> X, y = shop_requests(1000, changed=False, seed=1)
>>> sorted(X.columns), len(y), sum(1 for v in y if not v) / len(y) > 0.25
(['basket_value', 'device', 'user_segment'], 1000, True)
>>> ranker = train_champion(X, y)
>>> len(ranker.predict(X.iloc[:1])[0].split("\\x1f"))
20
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from detectors.ranking_lists import decode_ranking, encode_relevance
from retrain.ranker import PopularityRanker

__all__ = ["FEATURES", "SEGMENTS", "shop_requests", "train_champion", "reference_frame", "ndcg_at_10"]

FEATURES = {"user_segment": "categorical", "device": "categorical", "basket_value": "numeric"}
SEGMENTS = ("students", "families", "pros", "seniors")
_SHARES = (0.4, 0.25, 0.2, 0.15)
_OLD = np.array([f"p{j:03d}" for j in range(300)], dtype=object)
_NEW = np.array([f"n{j:03d}" for j in range(40)], dtype=object)
_SHIFTED = "students"
_TO_NEW = 0.7


def _zipf(n: int, s: float = 1.1) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** s
    return w / w.sum()


def _tastes() -> dict[str, np.ndarray]:
    """Each segment's order of the old catalogue (fixed: the shop is the same in every run)."""
    rng = np.random.default_rng(2026)
    return {s: rng.permutation(len(_OLD)) for s in SEGMENTS}


def shop_requests(n: int, *, changed: bool, seed: int) -> tuple[pd.DataFrame, list[Any]]:
    """``n`` requests (features) and their engagement (labels as lists or item -> relevance)."""
    rng = np.random.default_rng(seed)
    seg = rng.choice(SEGMENTS, size=n, p=_SHARES)
    X = pd.DataFrame({"user_segment": seg.astype(object),
                      "device": rng.choice(["ios", "android", "web"], size=n, p=[0.4, 0.35, 0.25]).astype(object),
                      "basket_value": np.round(rng.lognormal(3.5, 0.8, size=n), 2)})
    tastes, old_p, new_p = _tastes(), _zipf(len(_OLD)), _zipf(len(_NEW))
    labels: list[Any] = []
    for i in range(n):
        if rng.random() < 0.35:
            labels.append([])
            continue
        k = min(int(rng.geometric(0.6)), 3)
        picked: list[str] = []
        while len(picked) < k:
            if changed and seg[i] == _SHIFTED and rng.random() < _TO_NEW:
                item = str(_NEW[rng.choice(len(_NEW), p=new_p)])
            else:
                item = str(_OLD[tastes[seg[i]][rng.choice(len(_OLD), p=old_p)]])
            if item not in picked:
                picked.append(item)
        labels.append({item: 3.0 if rng.random() < 0.2 else 1.0 for item in picked} if rng.random() < 0.5
                      else picked)
    return X, labels


def train_champion(X: pd.DataFrame, labels: list[Any]) -> PopularityRanker:
    """The shop's recommender before the change: popularity per segment on its engagement."""
    return PopularityRanker(segment_features=["user_segment"], half_life=50_000.0, k=20).fit(
        X, [encode_relevance(v) for v in labels])


def reference_frame(model: PopularityRanker, X: pd.DataFrame, labels: list[Any]) -> pd.DataFrame:
    """The reference sample: the requests' features, the champion's lists and the engagement."""
    ref = X.copy()
    ref["prediction"] = [decode_ranking(p) for p in model.predict(X)]
    ref["label"] = labels
    return ref


def ndcg_at_10(predictions: list[str], labels: list[Any]) -> float:
    """Mean NDCG@10 of encoded lists against the labels (for the demo's narration)."""
    from detectors.ranking_metrics import request_metrics

    return float(request_metrics(predictions, [encode_relevance(v) for v in labels], ["ndcg@10"])["ndcg@10"].mean())
