"""The promotion gate for ranking models (issue 19): champion and challenger re-rank the same
held-out requests, the paired bootstrap over requests decides on the primary metric."""
from __future__ import annotations

import numpy as np

from detectors.ranking_lists import encode_ranking, encode_relevance
from detectors.ranking_metrics import request_metrics
from retrain.dataset import _label_column
from retrain.evaluate import Outputs, decide, metrics


def _requests(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, a challenger that ranks the engaged item first 60% of the time, a champion 40%."""
    rng = np.random.default_rng(seed)
    items = [f"i{j}" for j in range(50)]
    labels, good, bad = [], [], []
    for _ in range(n):
        engaged = str(rng.choice(items))
        rest = [i for i in rng.choice(items, 12, replace=False).tolist() if i != engaged][:9]
        labels.append(encode_relevance([engaged]) if rng.random() > 0.3 else "")
        good.append(encode_ranking([engaged, *rest] if rng.random() < 0.6 else [*rest, engaged]))
        bad.append(encode_ranking([engaged, *rest] if rng.random() < 0.4 else [*rest, engaged]))
    return (np.array(labels, dtype=object), np.array(good, dtype=object), np.array(bad, dtype=object))


def test_a_better_ranker_is_promoted_on_ndcg_at_10_and_an_equal_one_is_not():
    y, good, bad = _requests(1500, 1)
    d = decide("ranking", y, Outputs(good), Outputs(bad), metric="ndcg@10", min_delta=0.01, alpha=0.05,
               bootstrap_samples=300, seed=3)
    assert d.promote and d.test == "paired_bootstrap" and d.details["ci_low"] > 0
    want = request_metrics(list(good), list(y), ["ndcg@10"])["ndcg@10"].mean()
    assert abs(d.challenger["ndcg@10"] - want) < 1e-12
    assert set(d.challenger) >= {"ndcg@10", "precision@10", "recall@10", "map@10", "mrr", "hit_rate@10"}
    same = decide("ranking", y, Outputs(bad), Outputs(bad.copy()), metric="ndcg@10", min_delta=0.0, alpha=0.05,
                  bootstrap_samples=300, seed=3)
    assert not same.promote and same.reason.startswith("rejected: no improvement")
    # another primary metric, not among the defaults, is scored too
    assert "ndcg@5" in decide("ranking", y, Outputs(good), Outputs(bad), metric="ndcg@5", bootstrap_samples=50).challenger
    assert metrics("ranking", y, Outputs(good))["hit_rate@10"] == 1.0 - float(np.mean(y == ""))


def test_stored_labels_are_never_read_as_json_even_when_an_item_id_starts_with_a_bracket():
    y, ok = _label_column(["[promo]\x1fb", "", None], "ranking", encoded=True)
    assert y.tolist() == ["[promo]\x1fb", "", None] and ok.tolist() == [True, True, False]
    y, ok = _label_column(['["a"]', {"a": 2}, ["b"]], "ranking")        # a sample's: lists or JSON text
    assert y.tolist() == ["a", "a\x1e2.0", "b"] and ok.all()
