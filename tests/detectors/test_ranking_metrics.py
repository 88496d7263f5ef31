"""Ranking metrics equal textbook implementations (scikit-learn's ndcg_score, hand-worked cases,
a slow per-request reference); bootstrap intervals; label-free metrics against a reference."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import ndcg_score

from detectors import ranking_metrics as rm
from detectors.ranking_lists import decode_ranking, decode_relevance, encode_ranking, encode_relevance
from detectors.ranking_metrics import (
    LABEL_FREE_METRICS,
    RANKING_METRICS,
    ItemReference,
    bootstrap_mean,
    label_free_metrics,
    parse_metric,
    request_metrics,
    window_metrics,
)

TOL = 1e-9
LOG2_3 = math.log2(3)


# ------------------------------------------------------------------------------------------
# the slow, obviously-correct reference: one request at a time, straight from the definitions


def slow_metric(shown: list[str], rel: dict[str, float], base: str, k: int | None) -> float:
    relevant = {i for i, r in rel.items() if r > 0}
    top = shown if k is None else shown[:k]
    hits = sum(1 for i in top if i in relevant)
    if base == "precision":
        assert k is not None
        return hits / k
    if base == "recall":
        return hits / len(relevant) if relevant else 0.0
    if base == "hit_rate":
        return 1.0 if hits else 0.0
    if base == "mrr":
        for rank, item in enumerate(top, start=1):
            if item in relevant:
                return 1.0 / rank
        return 0.0
    if base == "ndcg":
        assert k is not None
        dcg = sum(rel.get(item, 0.0) / math.log2(rank + 1) for rank, item in enumerate(top, start=1))
        ideal = sorted(rel.values(), reverse=True)[:k]
        idcg = sum(gain / math.log2(rank + 1) for rank, gain in enumerate(ideal, start=1))
        return dcg / idcg if idcg > 0 else 0.0
    if base == "map":
        assert k is not None
        if not relevant:
            return 0.0
        total, seen = 0.0, 0
        for rank, item in enumerate(top, start=1):
            if item in relevant:
                seen += 1
                total += seen / rank  # precision@rank
        return total / min(k, len(relevant))
    raise AssertionError(base)


def slow_metrics(predictions: list[str], labels: list[str], metrics: list[str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for name in metrics:
        base, k = parse_metric(name)
        out[name] = [slow_metric(decode_ranking(p), decode_relevance(y), base, k) for p, y in zip(predictions, labels)]
    return out


def sklearn_ndcg(shown: list[str], rel: dict[str, float], k: int) -> float:
    """scikit-learn's NDCG@k of one request: y_true over the shown and labelled items, y_score
    decreasing along the shown list and lowest for labelled items not shown."""
    unshown = [i for i in rel if i not in shown]
    items = shown + unshown
    y_true = np.array([[rel.get(i, 0.0) for i in items]])
    y_score = np.array([[float(len(shown) - r) for r in range(len(shown))] + [-1.0] * len(unshown)])
    return float(ndcg_score(y_true, y_score, k=k))


ALL = ["precision@1", "precision@3", "precision@5", "recall@3", "recall@5", "ndcg@1", "ndcg@3", "ndcg@5",
       "map@1", "map@3", "map@5", "mrr", "mrr@1", "mrr@3", "hit_rate@1", "hit_rate@3", "hit_rate@5"]


# ------------------------------------------------------------------------------------------
# parse_metric


@pytest.mark.parametrize(("name", "expected"), [
    ("ndcg@10", ("ndcg", 10)), ("mrr", ("mrr", None)), ("mrr@10", ("mrr", 10)), ("precision@1", ("precision", 1)),
    ("recall@5", ("recall", 5)), ("map@20", ("map", 20)), ("hit_rate@3", ("hit_rate", 3)),
])
def test_parse_metric(name: str, expected: tuple[str, int | None]) -> None:
    assert parse_metric(name) == expected


@pytest.mark.parametrize("name", ["ndcg", "precision", "recall", "map", "hit_rate", "ndcg@0", "ndcg@-1",
                                  "ndcg@1.5", "ndcg@010", "NDCG@10", "ndcg@ 10", "foo@3", "mrr@", "", "hitrate@3"])
def test_parse_metric_refuses_with_the_valid_forms(name: str) -> None:
    with pytest.raises(ValueError, match="valid forms") as err:
        parse_metric(name)
    assert repr(name) in str(err.value)
    assert "ndcg@k" in str(err.value) and "mrr" in str(err.value)


def test_every_base_name_parses() -> None:
    for base in RANKING_METRICS:
        assert parse_metric(f"{base}@4") == (base, 4)


# ------------------------------------------------------------------------------------------
# hand-worked cases

# R1: shown a b c d e; label b:1, e:2, z:1 (z engaged but not shown). Relevant {b, e, z}, |R| = 3.
# R2: shown a b; nothing engaged (empty label): every metric 0.
# R3: shown c a; label c:0, a:1. Relevance 0 is not relevant: relevant {a}, |R| = 1; the list
#     (2 items) is shorter than k = 3.
# R4: nothing shown (empty list); label a:1. Relevant {a} never shown: every metric 0.
# R5: shown a b c; label a b c d (plain: relevance 1 each). |R| = 4 is more than k = 2 or 3.
HAND_PRED = [encode_ranking("abcde"), encode_ranking("ab"), encode_ranking("ca"), encode_ranking([]),
             encode_ranking("abc")]
HAND_LAB = [encode_relevance({"b": 1, "e": 2, "z": 1}), encode_relevance([]),
            encode_relevance({"c": 0, "a": 1}), encode_relevance(["a"]), encode_relevance(list("abcd"))]
# R1 at 5: DCG = 1/log2(3) + 2/log2(6); IDCG = 2/log2(2) + 1/log2(3) + 1/log2(4) (relevances 2, 1, 1)
R1_NDCG5 = (1 / LOG2_3 + 2 / math.log2(6)) / (2 + 1 / LOG2_3 + 0.5)  # = 1.40464 / 3.13093 = 0.448632
# R1 at 3: DCG = 1/log2(3) (b at rank 2); IDCG@3 is the same as at 5 (three relevances)
R1_NDCG3 = (1 / LOG2_3) / (2 + 1 / LOG2_3 + 0.5)
# R5 at 5: DCG = 1 + 1/log2(3) + 1/log2(4) (3 shown); IDCG@5 adds d's 1/log2(5): 2.1309 / 2.5616 = 0.8319
R5_NDCG5 = (1 + 1 / LOG2_3 + 0.5) / (1 + 1 / LOG2_3 + 0.5 + 1 / math.log2(5))
HAND = {
    # precision@k = hits in top-k / k
    "precision@3": [1 / 3, 0.0, 1 / 3, 0.0, 1.0],  # R1: b; R3: a (2 items shown, still / 3)
    "precision@5": [2 / 5, 0.0, 1 / 5, 0.0, 3 / 5],  # R1: b, e; R5: 3 shown, / 5
    # recall@k = hits in top-k / |R|
    "recall@3": [1 / 3, 0.0, 1.0, 0.0, 3 / 4],
    "recall@5": [2 / 3, 0.0, 1.0, 0.0, 3 / 4],
    # ndcg@k
    "ndcg@3": [R1_NDCG3, 0.0, 1 / LOG2_3, 0.0, 1.0],  # R3: DCG = 1/log2(3) (a at rank 2), IDCG = 1
    "ndcg@5": [R1_NDCG5, 0.0, 1 / LOG2_3, 0.0, R5_NDCG5],
    # map@k = sum of precision@rank at the relevant ranks <= k / min(k, |R|)
    "map@2": [(1 / 2) / 2, 0.0, (1 / 2) / 1, 0.0, (1 + 1) / 2],  # R5: P@1 + P@2 over min(2, 4) = 2
    "map@3": [(1 / 2) / 3, 0.0, (1 / 2) / 1, 0.0, 3 / 3],  # R1: P@2 = 1/2, min(3, 3) = 3; R3: P@2 / min(3, 1)
    "map@5": [(1 / 2 + 2 / 5) / 3, 0.0, 0.5, 0.0, 3 / 4],  # R1: P@2 + P@5 = 1/2 + 2/5 -> 0.3; R5: 3 / min(5, 4)
    # mrr = 1 / rank of the first relevant item (within k)
    "mrr": [1 / 2, 0.0, 1 / 2, 0.0, 1.0],
    "mrr@1": [0.0, 0.0, 0.0, 0.0, 1.0],
    "mrr@2": [1 / 2, 0.0, 1 / 2, 0.0, 1.0],
    # hit_rate@k = any relevant item in top-k
    "hit_rate@1": [0.0, 0.0, 0.0, 0.0, 1.0],
    "hit_rate@3": [1.0, 0.0, 1.0, 0.0, 1.0],
}


def test_hand_worked_values() -> None:
    got = request_metrics(HAND_PRED, HAND_LAB, list(HAND))
    assert list(got) == list(HAND)
    for name, expected in HAND.items():
        assert got[name].dtype == np.float64
        np.testing.assert_allclose(got[name], expected, rtol=0, atol=TOL, err_msg=name)
    assert abs(HAND["map@5"][0] - 0.3) < TOL and abs(R1_NDCG5 - 0.448632) < 1e-6 and abs(R5_NDCG5 - 0.8319) < 1e-4


def test_graded_relevance_counts_for_ndcg_only() -> None:
    # shown x y; label x:0.5, y:3 -> precision@2 = 1 (both relevant, grades ignored); ndcg@2 < 1, the ideal
    # order puts y first: DCG = 0.5 + 3/log2(3) = 2.3928, IDCG = 3 + 0.5/log2(3) = 3.3155 -> 0.7217
    got = request_metrics([encode_ranking("xy")], [encode_relevance({"x": 0.5, "y": 3})], ["precision@2", "ndcg@2"])
    assert got["precision@2"][0] == 1.0
    assert abs(got["ndcg@2"][0] - (0.5 + 3 / LOG2_3) / (3 + 0.5 / LOG2_3)) < TOL


def test_duplicate_label_items_resolve_as_decode_relevance() -> None:
    # "a" then "a" with relevance 0: decode_relevance keeps the last (0), so nothing is relevant
    label = "a\x1fa\x1e0.0"
    assert decode_relevance(label) == {"a": 0.0}
    got = request_metrics([encode_ranking("ab")], [label], ["hit_rate@2", "ndcg@2", "recall@2"])
    assert all(v[0] == 0.0 for v in got.values())


def test_mixed_plain_and_graded_labels_in_one_column() -> None:
    preds = [encode_ranking("abc"), encode_ranking("abc"), encode_ranking("cba")]
    labels = [encode_relevance(["b"]), encode_relevance({"b": 2, "c": 1}), "a\x1fc\x1e4"]
    metrics = ["ndcg@2", "map@3", "mrr"]
    got = request_metrics(preds, labels, metrics)
    for name, expected in slow_metrics(preds, labels, metrics).items():
        np.testing.assert_allclose(got[name], expected, rtol=0, atol=TOL)


def test_empty_inputs_and_errors() -> None:
    assert all(len(v) == 0 for v in request_metrics([], [], ["ndcg@3", "mrr"]).values())
    assert request_metrics(HAND_PRED, HAND_LAB, []) == {}
    with pytest.raises(ValueError, match="differ in length"):
        request_metrics(HAND_PRED, HAND_LAB[:2], ["mrr"])
    with pytest.raises(ValueError, match="needs a cut-off"):
        request_metrics(HAND_PRED, HAND_LAB, ["ndcg"])


# ------------------------------------------------------------------------------------------
# NDCG against scikit-learn


NDCG_CASES = [
    # (shown, label, k)
    ("graded", list("abcdef"), {"b": 3.0, "d": 1.0, "a": 0.5}, 3),
    ("graded, whole list", list("abcdef"), {"b": 3.0, "d": 1.0, "a": 0.5}, 6),
    ("binary", list("pqrst"), {"q": 1.0, "t": 1.0}, 5),
    ("binary, k=1", list("pqrst"), {"p": 1.0, "t": 1.0}, 1),
    ("empty label", list("abc"), {}, 3),
    ("labelled items not shown", list("abcd"), {"x": 2.0, "b": 1.0, "y": 3.0}, 4),
    ("only unshown items engaged", list("abcd"), {"x": 1.0}, 2),
    ("ties in relevance", list("abcdefg"), {"a": 1.0, "c": 1.0, "e": 1.0, "g": 2.0, "f": 2.0}, 5),
    ("relevance 0 in label", list("abc"), {"a": 0.0, "c": 2.0}, 3),
    ("long list", [f"i{j}" for j in range(40)], {"i3": 2.0, "i17": 1.0, "i39": 4.0, "zz": 1.0}, 20),
]


@pytest.mark.parametrize(("case", "shown", "rel", "k"), NDCG_CASES, ids=[c[0] for c in NDCG_CASES])
def test_ndcg_equals_sklearn(case: str, shown: list[str], rel: dict[str, float], k: int) -> None:
    got = request_metrics([encode_ranking(shown)], [encode_relevance(rel)], [f"ndcg@{k}"])[f"ndcg@{k}"][0]
    assert abs(got - sklearn_ndcg(shown, rel, k)) < TOL


def test_ndcg_equals_sklearn_over_requests_of_different_lengths() -> None:
    rng = np.random.default_rng(7)
    preds, labels, rels, shown_lists = [], [], [], []
    for _ in range(150):
        length = int(rng.integers(3, 30))
        shown = [f"i{j}" for j in rng.choice(60, length, replace=False)]
        engaged = rng.choice(60, int(rng.integers(0, 6)), replace=False)
        rel = {f"i{j}": float(rng.choice([0.0, 1.0, 1.0, 2.0, 3.0, 0.5])) for j in engaged}
        preds.append(encode_ranking(shown))
        labels.append(encode_relevance(rel))
        rels.append(rel)
        shown_lists.append(shown)
    got = request_metrics(preds, labels, ["ndcg@1", "ndcg@3", "ndcg@10"])
    for k in (1, 3, 10):
        for i, (shown, rel) in enumerate(zip(shown_lists, rels)):
            if k <= len(shown):
                assert abs(got[f"ndcg@{k}"][i] - sklearn_ndcg(shown, rel, k)) < TOL


# ------------------------------------------------------------------------------------------
# property tests: random requests against the slow reference

ITEMS = [f"it{j}" for j in range(12)]
GRADES = st.sampled_from([0.0, 0.5, 1.0, 1.0, 2.0, 3.0])


@st.composite
def requests(draw: st.DrawFn) -> tuple[list[str], list[str], list[int]]:
    n = draw(st.integers(0, 8))
    preds, labels = [], []
    for _ in range(n):
        shown = draw(st.lists(st.sampled_from(ITEMS), unique=True, max_size=10))
        if draw(st.booleans()):
            label = encode_relevance(draw(st.lists(st.sampled_from(ITEMS), unique=True, max_size=5)))
        else:
            label = encode_relevance(draw(st.dictionaries(st.sampled_from(ITEMS), GRADES, max_size=6)))
        preds.append(encode_ranking(shown))
        labels.append(label)
    ks = draw(st.lists(st.integers(1, 12), min_size=1, max_size=3))
    return preds, labels, ks


@settings(max_examples=120, deadline=None)
@given(requests())
def test_metrics_equal_the_slow_reference(data: tuple[list[str], list[str], list[int]]) -> None:
    preds, labels, ks = data
    metrics = ["mrr"] + [f"{base}@{k}" for k in ks for base in RANKING_METRICS]
    got = request_metrics(preds, labels, metrics)
    expected = slow_metrics(preds, labels, metrics)
    assert set(got) == set(metrics)
    for name in metrics:
        assert got[name].shape == (len(preds),)
        np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=TOL, err_msg=name)


@settings(max_examples=60, deadline=None)
@given(requests())
def test_ndcg_equals_sklearn_on_random_requests(data: tuple[list[str], list[str], list[int]]) -> None:
    preds, labels, ks = data
    got = request_metrics(preds, labels, [f"ndcg@{k}" for k in ks])
    for k in ks:
        for i, (p, y) in enumerate(zip(preds, labels)):
            shown, rel = decode_ranking(p), decode_relevance(y)
            if 1 <= k <= len(shown) and len(set(shown) | set(rel)) >= 2:
                assert abs(got[f"ndcg@{k}"][i] - sklearn_ndcg(shown, rel, k)) < TOL


# ------------------------------------------------------------------------------------------
# bootstrap


def test_bootstrap_is_deterministic_per_seed_and_contains_the_mean() -> None:
    v = np.random.default_rng(0).exponential(size=500)
    a = bootstrap_mean(v, seed=3)
    assert a == bootstrap_mean(v, seed=3)
    assert a != bootstrap_mean(v, seed=4)
    mean, low, high = a
    assert mean == pytest.approx(v.mean(), abs=TOL)
    assert low < mean < high


def test_bootstrap_does_not_depend_on_memory_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    v = np.random.default_rng(1).random(300)
    whole = bootstrap_mean(v, draws=50, seed=2)
    monkeypatch.setattr(rm, "_MAX_CELLS", 1000)  # three draws per chunk
    assert bootstrap_mean(v, draws=50, seed=2) == whole


def test_bootstrap_edge_cases() -> None:
    assert all(math.isnan(x) for x in bootstrap_mean(np.array([])))
    assert bootstrap_mean(np.array([0.25])) == (0.25, 0.25, 0.25)
    assert bootstrap_mean(np.full(40, 0.5)) == (0.5, 0.5, 0.5)
    for bad in ({"draws": 0}, {"level": 1.0}, {"level": 0.0}):
        with pytest.raises(ValueError):
            bootstrap_mean(np.ones(3), **bad)


def test_bootstrap_interval_covers_the_true_mean_about_95_percent() -> None:
    rng = np.random.default_rng(12)
    true_mean, covered, reps = 0.3, 0, 200
    for rep in range(reps):
        sample = (rng.random(150) < true_mean).astype(float)  # hit-rate-like 0/1 values
        _, low, high = bootstrap_mean(sample, draws=200, seed=rep)
        covered += low <= true_mean <= high
    assert 0.90 * reps <= covered <= 0.99 * reps


def test_window_metrics_are_means_with_the_same_bootstrap() -> None:
    rng = np.random.default_rng(5)
    preds = [encode_ranking(rng.choice(ITEMS, 6, replace=False)) for _ in range(80)]
    labels = [encode_relevance(list(rng.choice(ITEMS, int(rng.integers(0, 3)), replace=False))) for _ in range(80)]
    metrics = ["ndcg@5", "mrr", "hit_rate@3"]
    got = window_metrics(preds, labels, metrics, draws=150, level=0.9, seed=9)
    per_request = request_metrics(preds, labels, metrics)
    assert list(got) == metrics
    for name in metrics:
        assert set(got[name]) == {"value", "ci_low", "ci_high", "n"}
        assert got[name]["n"] == 80
        assert got[name]["value"] == pytest.approx(per_request[name].mean(), abs=TOL)
        mean, low, high = bootstrap_mean(per_request[name], draws=150, level=0.9, seed=9)
        assert (got[name]["ci_low"], got[name]["ci_high"]) == (low, high)


def test_window_metrics_of_an_empty_window() -> None:
    got = window_metrics([], [], ["ndcg@10"])
    assert got["ndcg@10"]["n"] == 0 and math.isnan(got["ndcg@10"]["value"])


# ------------------------------------------------------------------------------------------
# label-free metrics

# Reference, read at top-2 (4 requests): r1 a b c | r2 a b d | r3 a c e | r4 b a
#   top-2 lists: {a,b} {a,b} {a,c} {b,a}   -> shown share a 4/4, b 3/4, c 1/4, d 0, e 0
#   labels: r1 b | r2 (nothing) | r3 c:2, g:0 | r4 a, b -> engaged share a 1/4, b 2/4, c 1/4, g 0
#   catalogue: items of the lists and labels, plus "f" given -> a b c d e f g (7 items)
REF_PRED = [encode_ranking("abc"), encode_ranking("abd"), encode_ranking("ace"), encode_ranking("ba")]
REF_LAB = [encode_relevance(["b"]), encode_relevance([]), encode_relevance({"c": 2, "g": 0}),
           encode_relevance(["a", "b"])]
# Window at top-2: w1 a b x | w2 d h | w3 (empty list) | w4 a d c
#   slots: a b | d h | - | a d -> 6 slots; counts a 2, b 1, d 2, h 1 (h unseen)
WIN_PRED = [encode_ranking("abx"), encode_ranking("dh"), encode_ranking([]), encode_ranking("adc")]
NOVELTY_FLOOR = -math.log2(1 / 5)  # 1 / (n_requests + 1) = 1/5 for items never shown in the reference


@pytest.fixture
def reference() -> ItemReference:
    return ItemReference.from_lists(REF_PRED, REF_LAB, k=2, catalogue=["f"])


def test_item_reference_holds_catalogue_and_popularity(reference: ItemReference) -> None:
    assert reference.catalogue == list("abcdefg")
    np.testing.assert_allclose(reference.shown, [1, 0.75, 0.25, 0, 0, 0, 0])
    assert reference.engaged is not None
    np.testing.assert_allclose(reference.engaged, [0.25, 0.5, 0.25, 0, 0, 0, 0])
    assert reference.n_requests == 4 and reference.k == 2
    # the reference's own values: 8 slots a 4, b 3, c 1; lists of 3, 3, 3, 2
    own = reference.metrics
    assert set(own) == set(LABEL_FREE_METRICS)
    assert own["coverage"] == pytest.approx(3 / 7) and own["unseen_share"] == 0.0
    assert own["list_length"] == pytest.approx(2.75) and own["n"] == 4
    assert own["mean_popularity"] == pytest.approx((4 * 1 + 3 * 0.75 + 1 * 0.25) / 8)
    assert own == label_free_metrics(REF_PRED, reference, k=2)


def test_label_free_metrics_hand_checked(reference: ItemReference) -> None:
    got = label_free_metrics(WIN_PRED, reference, k=2)
    assert set(got) == set(LABEL_FREE_METRICS)
    assert got["n"] == 4
    assert got["list_length"] == pytest.approx((3 + 2 + 0 + 3) / 4)  # before the top-2 cut
    assert got["coverage"] == pytest.approx(3 / 7)  # a, b, d of the 7 catalogue items
    assert got["unseen_share"] == pytest.approx(1 / 6)  # h holds 1 of 6 slots
    # Gini over a b c d e f g h = 2 1 0 2 0 0 0 1 -> sorted 0 0 0 0 1 1 2 2, n = 8, sum 6;
    # sum (2j - 9) x_j = 1*1 + 3*1 + 5*2 + 7*2 = 28 -> 28 / (8 * 6)
    assert got["gini"] == pytest.approx(28 / 48, abs=TOL)
    assert got["top_share"] == 1.0  # 4 distinct items, all among the top 10
    # ARP: a 1, b 0.75, d 0, h 0, a 1, d 0 -> 2.75 / 6
    assert got["mean_popularity"] == pytest.approx(2.75 / 6, abs=TOL)
    # novelty: -log2 of a 1 -> 0 (twice), b 0.75 -> 0.415, d and h floored at 1/5 -> 2.3219 (three slots)
    assert got["novelty"] == pytest.approx((-math.log2(0.75) + 3 * NOVELTY_FLOOR) / 6, abs=TOL)


def test_label_free_metrics_with_engaged_popularity(reference: ItemReference) -> None:
    got = label_free_metrics(WIN_PRED, reference, k=2, popularity="engaged")
    # a 1/4, b 2/4, d 0, h 0, a 1/4, d 0 -> 1 / 6; novelty a 2, b 1, a 2, three floors
    assert got["mean_popularity"] == pytest.approx(1 / 6, abs=TOL)
    assert got["novelty"] == pytest.approx((2 + 1 + 2 + 3 * NOVELTY_FLOOR) / 6, abs=TOL)
    with pytest.raises(ValueError, match="labels"):
        label_free_metrics(WIN_PRED, ItemReference.from_lists(REF_PRED), popularity="engaged")
    with pytest.raises(ValueError, match="popularity"):
        label_free_metrics(WIN_PRED, reference, popularity="clicks")


def test_label_free_metrics_on_whole_lists(reference: ItemReference) -> None:
    got = label_free_metrics(WIN_PRED, reference)
    # slots a b x | d h | - | a d c -> 8; unseen x, h; catalogue items a b c d -> coverage 4/7
    assert got["unseen_share"] == pytest.approx(2 / 8)
    assert got["coverage"] == pytest.approx(4 / 7)
    assert got["mean_popularity"] == pytest.approx((1 + 0.75 + 0 + 0 + 0 + 1 + 0 + 0.25) / 8)


def test_top_share_takes_the_ten_most_recommended() -> None:
    # 12 distinct items: "a" in every one of 5 lists, "b" in 3, items c..l once each in one list
    lists = [["a", "b", "c", "d"], ["a", "b", "e", "f"], ["a", "b", "g"], ["a", "h", "i", "j"], ["a", "k", "l"]]
    reference = ItemReference.from_lists([encode_ranking(x) for x in lists])
    got = label_free_metrics([encode_ranking(x) for x in lists], reference)
    # 18 slots; the top 10 counts are 5, 3 and eight 1s -> 16 / 18
    assert got["top_share"] == pytest.approx(16 / 18)
    assert got["coverage"] == 1.0 and got["unseen_share"] == 0.0


def test_label_free_metrics_of_empty_windows(reference: ItemReference) -> None:
    none = label_free_metrics([], reference)
    assert none["n"] == 0 and math.isnan(none["list_length"]) and math.isnan(none["novelty"])
    empty_lists = label_free_metrics([encode_ranking([])] * 3, reference)
    assert empty_lists["n"] == 3 and empty_lists["list_length"] == 0.0 and empty_lists["coverage"] == 0.0
    assert math.isnan(empty_lists["gini"]) and math.isnan(empty_lists["mean_popularity"])


def test_gini_extremes() -> None:
    catalogue = [encode_ranking([f"i{j}"]) for j in range(5)]
    reference = ItemReference.from_lists(catalogue)
    assert label_free_metrics(catalogue, reference)["gini"] == pytest.approx(0.0)  # every item once
    # everything on one item of 5: (2*5 - 6) x / (5 x) = 4/5 = 1 - 1/n
    assert label_free_metrics([encode_ranking(["i0"])] * 7, reference)["gini"] == pytest.approx(0.8)


def test_item_reference_is_plain_picklable_data(reference: ItemReference) -> None:
    back = pickle.loads(pickle.dumps(reference))
    assert back.catalogue == reference.catalogue and back.metrics == reference.metrics
    np.testing.assert_array_equal(back.shown, reference.shown)
    assert label_free_metrics(WIN_PRED, back, k=2) == label_free_metrics(WIN_PRED, reference, k=2)


def test_item_reference_errors() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        ItemReference.from_lists(REF_PRED, REF_LAB[:1])
    with pytest.raises(ValueError, match="k must be"):
        ItemReference.from_lists(REF_PRED, k=0)
    with pytest.raises(ValueError, match="k must be"):
        label_free_metrics(REF_PRED, ItemReference.from_lists(REF_PRED), k=-1)
