"""The built-in ranker (retrain/ranker.py, issue 19): per-segment popularity with recency decay,
as a scikit-learn estimator the retraining path fits, saves with skops and builds from a recipe."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline

from detectors.ranking_lists import decode_ranking, encode_relevance
from driftloop.core.config.retrain import RecipeConfig
from retrain.artifacts import BUILTIN_TRUSTED, UntrustedArtifactError, load_model, save_model
from retrain.ranker import PopularityRanker
from retrain.recipe import build_estimator

RANKER = "retrain.ranker.PopularityRanker"
FEATURES = {"price": "numeric", "country": "categorical", "device": "categorical"}
NO_DECAY = 1e12


def requests(segments: Sequence[tuple[str | None, str | None]], labels: Sequence[Any], seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Requests in the training layout (categorical text with NaN for missing, numeric float64)
    and their labels encoded."""
    rng = np.random.default_rng(seed)
    country = np.array([np.nan if c is None else c for c, _ in segments], dtype=object)
    device = np.array([np.nan if d is None else d for _, d in segments], dtype=object)
    X = pd.DataFrame({"price": rng.normal(size=len(segments)), "country": country, "device": device})
    y = np.empty(len(labels), dtype=object)
    y[:] = [encode_relevance(v) for v in labels]
    return X, y


def lists(ranker: PopularityRanker, X: pd.DataFrame) -> list[list[str]]:
    return [decode_ranking(r) for r in ranker.predict(X)]


def one(country: str | None, device: str | None = "web") -> pd.DataFrame:
    return pd.DataFrame({"price": [1.0], "country": np.array([country], dtype=object),
                         "device": np.array([device], dtype=object)})


def shop(n_old: int, n_new: int, seed: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    """A shop whose tastes shift: DE and FR engage with old0..old4; in the last ``n_new``
    requests DE turns to new0..new2 while FR carries on."""
    rng = np.random.default_rng(seed)
    segs: list[tuple[str | None, str | None]] = []
    labels: list[list[str]] = []
    old = [f"old{i}" for i in range(5)]
    new = [f"new{i}" for i in range(3)]
    for i in range(n_old + n_new):
        country = "DE" if rng.random() < 0.5 else "FR"
        pool = new if (i >= n_old and country == "DE") else old
        m = 0 if rng.random() < 0.2 else int(rng.integers(1, 4))
        labels.append(rng.choice(pool, size=min(m, len(pool)), replace=False).tolist())
        segs.append((country, "web"))
    return requests(segs, labels, seed)


# -- what it predicts -------------------------------------------------------------------------
def test_each_segment_gets_its_most_engaged_items() -> None:
    segs = [("DE", "web")] * 60 + [("FR", "web")] * 60
    labels = [["a", "b"], ["a"], ["a", "b", "c"]] * 20 + [["x"], ["x", "y"], []] * 20
    X, y = requests(segs, labels)
    r = PopularityRanker(k=3, half_life=NO_DECAY, prior=1.0, min_segment_requests=10).fit(X, y)
    assert r.segment_features_ == ["country", "device"]        # the categorical columns, not price
    assert lists(r, pd.concat([one("DE"), one("FR")], ignore_index=True)) == [["a", "b", "c"], ["x", "y", "a"]]
    # FR engaged with two items only: the third place is the global most popular (a, 60 of 180)
    out = r.predict(X)
    assert out.dtype == object and len(out) == len(X) and all(isinstance(v, str) for v in out)


def test_ties_fall_to_the_item_id_and_repeat() -> None:
    segs = [("DE", "web")] * 10
    labels = [["b", "a", "d", "c"]] * 10          # every item engaged in the same rows: equal scores
    X, y = requests(segs, labels)
    params: dict[str, Any] = {"k": 4, "half_life": 50.0, "min_segment_requests": 1}
    first = lists(PopularityRanker(**params).fit(X, y), one("DE"))
    assert first == [["a", "b", "c", "d"]]
    assert lists(PopularityRanker(**params).fit(X, y), one("DE")) == first
    assert lists(PopularityRanker(**params).fit(X.iloc[::-1].reset_index(drop=True), y[::-1]), one("DE")) == first


def test_an_unseen_or_small_segment_gets_the_global_list() -> None:
    segs = [("DE", "web")] * 60 + [("FR", "web")] * 30 + [("IT", "web")] * 5
    labels = [["a"]] * 60 + [["b"]] * 30 + [["c"]] * 5
    X, y = requests(segs, labels)
    r = PopularityRanker(k=2, half_life=NO_DECAY, min_segment_requests=10).fit(X, y)
    glob = decode_ranking(r.global_ranking_)
    assert glob == ["a", "b"]
    assert lists(r, one("ES")) == [glob]                      # never seen
    assert lists(r, one("DE", "ios")) == [glob]               # a new combination of known values
    assert lists(r, one("IT")) == [glob]                      # 5 requests < min_segment_requests
    assert lists(r, one("FR")) == [["b", "a"]]
    assert '["IT", "web"]' not in r.segment_rankings_ and r.segment_requests_['["IT", "web"]'] == 5


def test_missing_values_are_one_segment_of_their_own() -> None:
    segs = [(None, "web")] * 30 + [("DE", "web")] * 30
    labels = [["m"]] * 30 + [["d"]] * 30
    X, y = requests(segs, labels)
    X.loc[:14, "country"] = None                               # None and NaN alike
    r = PopularityRanker(k=1, half_life=NO_DECAY, prior=1.0, min_segment_requests=10).fit(X, y)
    assert r.segment_requests_['["(missing)", "web"]'] == 30
    assert lists(r, one(None)) == [["m"]]
    assert lists(r, pd.DataFrame({"price": [0.0], "country": [float("nan")], "device": ["web"]})) == [["m"]]


def test_empty_labels_count_as_requests_with_nothing_engaged() -> None:
    segs = [("FR", "web")] * 200 + [("DE", "web")] * 50
    labels = [["g"]] * 200 + [["d"]] * 3 + [[]] * 47
    X, y = requests(segs, labels)
    r = PopularityRanker(k=2, half_life=NO_DECAY, prior=1.0, min_segment_requests=50).fit(X, y)
    assert r.segment_requests_['["DE", "web"]'] == 50           # the empty labels counted
    assert lists(r, one("DE")) == [["d", "g"]]
    # without the empty rows the segment is too small for a list of its own: the global one
    keep = np.r_[np.arange(203)]
    r2 = PopularityRanker(k=2, half_life=NO_DECAY, prior=1.0, min_segment_requests=50).fit(
        X.iloc[keep].reset_index(drop=True), y[keep])
    assert lists(r2, one("DE")) == [["g", "d"]]
    assert r.n_requests_ == 250 and r.n_items_ == 2


def test_graded_relevance_weighs() -> None:
    segs = [("DE", "web")] * 4
    labels = [{"a": 3}, ["b"], ["b"], {"c": 0.5, "b": 0.0}]
    X, y = requests(segs, labels)
    r = PopularityRanker(k=5, half_life=NO_DECAY, min_segment_requests=1).fit(X, y)
    assert lists(r, one("DE")) == [["a", "b", "c"]]            # 3 > 2 x 1 > 0.5; relevance 0 adds nothing
    assert r.global_scores_ == pytest.approx({"a": 3 / 5.5, "b": 2 / 5.5, "c": 0.5 / 5.5})


def test_shrinkage_towards_the_global_popularity() -> None:
    segs = [("DE", "web")] * 1000 + [("FR", "web")] * 10
    labels = [["pop"]] * 1000 + [["niche"]] * 2 + [[]] * 8
    X, y = requests(segs, labels)
    weak = PopularityRanker(k=2, half_life=NO_DECAY, prior=20.0, min_segment_requests=10).fit(X, y)
    strong = PopularityRanker(k=2, half_life=NO_DECAY, prior=0.5, min_segment_requests=10).fit(X, y)
    assert lists(weak, one("FR")) == [["pop", "niche"]]        # 2 engagements < 20 x share of pop (~1.0)
    assert lists(strong, one("FR")) == [["niche", "pop"]]


def test_segment_features_given_explicitly() -> None:
    segs = [("DE", "web"), ("DE", "ios")] * 30
    labels = [["w"], ["i"]] * 30
    X, y = requests(segs, labels)
    by_device = PopularityRanker(segment_features=["device"], k=1, half_life=NO_DECAY, min_segment_requests=5)
    assert lists(by_device.fit(X, y), one("FR", "ios")) == [["i"]]
    one_list = PopularityRanker(segment_features=[], k=2, half_life=NO_DECAY, min_segment_requests=5).fit(X, y)
    assert one_list.segment_features_ == [] and lists(one_list, one("DE", "ios")) == [["i", "w"]]
    with pytest.raises(ValueError, match=r"lacks the segment features \['shop'\]"):
        PopularityRanker(segment_features=["shop"]).fit(X, y)


# -- recency ----------------------------------------------------------------------------------
def test_after_tastes_shift_the_refitted_ranker_ranks_the_new_items_first_where_they_shifted() -> None:
    n_old, n_new = 3000, 600
    X, y = shop(n_old, n_new)
    params: dict[str, Any] = {"k": 5, "half_life": 150.0, "prior": 5.0, "min_segment_requests": 50}
    champion = PopularityRanker(**params).fit(X.iloc[:n_old], y[:n_old])
    challenger = PopularityRanker(**params).fit(X, y)
    de, fr = one("DE"), one("FR")
    new = {"new0", "new1", "new2"}
    assert set(lists(challenger, de)[0][:3]) == new              # the new items first, in DE
    assert not new & set(lists(challenger, fr)[0])               # and not in FR
    assert not new & set(lists(champion, de)[0])                 # yesterday's model keeps yesterday's items
    # the decay is what does it: with none, 3,000 old requests outweigh 300 recent DE ones
    flat = PopularityRanker(**{**params, "half_life": NO_DECAY}).fit(X, y)
    assert lists(flat, de)[0][0] not in new


def test_recency_weights_by_position() -> None:
    segs = [("DE", "web")] * 3
    X, y = requests(segs, [["a"], ["a"], ["b"]])
    # with a half-life of 1 request: a weighs 0.25 + 0.5, b 1.0
    r = PopularityRanker(k=2, half_life=1.0, min_segment_requests=1).fit(X, y)
    assert lists(r, one("DE")) == [["b", "a"]]
    assert r.global_scores_ == pytest.approx({"b": 1 / 1.75, "a": 0.75 / 1.75})
    slow = PopularityRanker(k=2, half_life=100.0, min_segment_requests=1).fit(X, y)
    assert lists(slow, one("DE")) == [["a", "b"]]


# -- the estimator contract -------------------------------------------------------------------
def test_a_scikit_learn_estimator() -> None:
    feats = ["country"]
    r = PopularityRanker(segment_features=feats, half_life=10.0, k=3, prior=2.0, min_segment_requests=7)
    assert r.segment_features is feats                          # stored as given
    assert r.get_params() == {"segment_features": feats, "half_life": 10.0, "k": 3, "prior": 2.0,
                              "min_segment_requests": 7}
    c = clone(r)
    assert c.get_params() == r.get_params()
    with pytest.raises(NotFittedError):
        r.predict(one("DE"))
    X, y = requests([("DE", "web")] * 10, [["a"]] * 10)
    r.fit(X, y)
    assert r.segment_features is feats and feats == ["country"]  # fit leaves the parameter alone
    with pytest.raises(NotFittedError):
        clone(r).predict(one("DE"))


@pytest.mark.parametrize(("params", "message"), [
    ({"half_life": 0.0}, "half_life"), ({"k": 0}, "k must"), ({"prior": -1.0}, "prior"),
    ({"min_segment_requests": -1}, "min_segment_requests"), ({"segment_features": "country"}, "segment_features")])
def test_bad_parameters_are_refused_at_fit(params: dict[str, Any], message: str) -> None:
    X, y = requests([("DE", "web")] * 3, [["a"]] * 3)
    with pytest.raises(ValueError, match=message):
        PopularityRanker(**params).fit(X, y)


@pytest.mark.parametrize(("labels", "message"), [
    (["", "", ""], "no engagement"),
    (["a", None, "b"], r"y\[1\] is None"),
    (["a", "b\x1e-1.0", "c"], r"y\[1\]: relevance -1.0 of item 'b'"),
    (["a", "b\x1ehigh", "c"], r"y\[1\]: relevance 'high'"),
    (["a", "b"], "3 rows but y has 2 labels")])
def test_bad_labels_are_refused(labels: list[str | None], message: str) -> None:
    X, _ = requests([("DE", "web")] * 3, [[]] * 3)
    with pytest.raises(ValueError, match=message):
        PopularityRanker().fit(X, np.array(labels, dtype=object))


def test_predict_on_no_rows() -> None:
    X, y = requests([("DE", "web")] * 3, [["a"]] * 3)
    out = PopularityRanker().fit(X, y).predict(X.iloc[:0])
    assert out.dtype == object and out.shape == (0,)


# -- artifacts --------------------------------------------------------------------------------
def test_round_trip_through_skops_gives_the_same_predictions(tmp_path: Path) -> None:
    X, y = shop(2000, 400)
    r = PopularityRanker(k=5, half_life=300.0, min_segment_requests=20).fit(X, y)
    info = save_model(r, tmp_path / "model.skops")
    assert info.trusted_types == (RANKER,)                      # the class is the only type it adds
    assert RANKER in BUILTIN_TRUSTED
    loaded = load_model(info.path, info.sha256, BUILTIN_TRUSTED)
    assert type(loaded) is PopularityRanker and loaded.get_params() == r.get_params()
    probe = pd.concat([X, one("ES"), one(None, None)], ignore_index=True)
    assert loaded.predict(probe).tolist() == r.predict(probe).tolist()
    assert loaded.segment_rankings_ == r.segment_rankings_ and loaded.global_ranking_ == r.global_ranking_


def test_loading_is_refused_when_the_class_is_not_trusted(tmp_path: Path) -> None:
    X, y = shop(200, 0)
    info = save_model(PopularityRanker(min_segment_requests=5).fit(X, y), tmp_path / "model.skops")
    without = tuple(t for t in BUILTIN_TRUSTED if t != RANKER)
    with pytest.raises(UntrustedArtifactError, match=r"\['retrain\.ranker\.PopularityRanker'\]"):
        load_model(info.path, info.sha256, without)


# -- as a recipe ------------------------------------------------------------------------------
def make_ranker(**params: Any) -> PopularityRanker:
    """A recipe factory (``factory: "tests.retrain.test_ranker:make_ranker"``)."""
    return PopularityRanker(**params)


def test_a_factory_recipe_builds_the_ranker_given_raw_features() -> None:
    recipe = RecipeConfig(factory=f"{__name__}:make_ranker", params={"k": 3, "half_life": 100.0},
                          preprocess="none")
    est = build_estimator(recipe, "ranking", FEATURES)
    assert type(est) is PopularityRanker and est.k == 3 and est.half_life == 100.0
    assert not hasattr(est, "segment_rankings_")               # unfitted
    X, y = shop(1000, 300)
    est.fit(X, y)                                               # as retrain/training.py does
    assert set(lists(est, one("DE"))[0]) == {"new0", "new1", "new2"}


def test_the_estimator_path_works_too() -> None:
    recipe = RecipeConfig(estimator=RANKER, params={"k": 2}, preprocess="none")
    est = build_estimator(recipe, "ranking", FEATURES)
    assert type(est) is PopularityRanker and est.k == 2


def test_behind_the_one_hot_preprocessing_it_cannot_see_the_segments() -> None:
    """Why a ranking recipe takes the raw request features (``preprocess: none``): ``preprocess:
    auto``, as it wraps a plain estimator for the other tasks, would put a one-hot encoder in
    front of the ranker, which would get a numeric matrix instead of the segments' values."""
    est = build_estimator(RecipeConfig(factory=f"{__name__}:make_ranker"), "classification", FEATURES)
    assert isinstance(est, Pipeline) and [name for name, _ in est.steps] == ["preprocess", "model"]
    X, y = shop(300, 0)
    with pytest.raises(TypeError, match="must be a pandas DataFrame"):
        est.fit(X, y)
