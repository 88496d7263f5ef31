"""A ranking model's events (contract v1.1, ``task: ranking``): what is accepted, and each
refusal's reason naming the field; a classifier or regressor refuses lists."""
from __future__ import annotations

import orjson
import pytest

from consumers.ingest import prepare
from detectors.ranking_lists import decode_ranking, decode_relevance
from driftloop.core.config import ConfigError, load_config_dict
from tests.consumers.test_ingest_unit import NOW, Rec

CFG = load_config_dict({"models": {
    "shop": {"task": "ranking", "features": {"segment": "categorical"}},
    "fraud": {"task": "classification", "features": {"segment": "categorical"}}}}, environ={})


def _prediction(prediction, model="shop", **extra) -> dict:
    return {"event_id": "e1", "model": model, "ts": NOW, "features": {"segment": "a"}, "prediction": prediction,
            **extra}


def _label(label, model="shop") -> dict:
    return {"event_id": "e1", "model": model, "ts": NOW, "label": label}


def _run(event: dict, topic: str):
    return prepare([Rec(topic, 0, 3, orjson.dumps(event))], CFG, NOW)


def _reason(event: dict, topic: str) -> str:
    batch = _run(event, topic)
    assert len(batch.dead_letters) == 1, batch
    return orjson.loads(batch.dead_letters[0][1])["error"]


def test_accepted_predictions_and_labels_travel_as_encoded_text():
    batch = _run(_prediction(["b", "a", "c"], scores={"b": 2.5, "a": 1.0, "c": -0.5}), CFG.topics.predictions)
    vp = batch.predictions["shop"]
    assert decode_ranking(vp.prediction[0]) == ["b", "a", "c"]
    assert vp.classes == ["score@1", "score_mean"] and vp.scores[0].tolist() == [2.5, 1.0]
    assert decode_ranking(_run(_prediction([7, 3]), CFG.topics.predictions).predictions["shop"].prediction[0]) == [
        "7", "3"]
    for label, relevance in ((["a", "c"], {"a": 1.0, "c": 1.0}), ({"a": 3, "b": 0}, {"a": 3.0, "b": 0.0}),
                             ([], {}), ([5], {"5": 1.0})):
        vl = _run(_label(label), CFG.topics.labels).labels["shop"]
        assert decode_relevance(vl.label[0]) == relevance


@pytest.mark.parametrize(("event", "topic", "reason"), [
    (_prediction([f"i{j}" for j in range(1001)]), "predictions", "prediction: 1,001 items > limit 1,000"),
    (_prediction(["a", "b", "a"]), "predictions", "prediction: item 'a' appears twice in the list (positions 1 and 3)"),
    (_prediction(["a", 1]), "predictions", "prediction: item ids of mixed types (int and str) in one list"),
    (_prediction(["a", 1.5]), "predictions", "Expected `int | str`, got `float` - at `$.prediction[1]`"),
    (_prediction(["a", ""]), "predictions", "prediction[1]: empty item id"),
    (_prediction(["a", "b\u001fc"]), "predictions", "prediction[1]: item id holds a control character"),
    (_prediction("a"), "predictions", "prediction: a ranking model predicts a list of item ids (best first), got str"),
    (_prediction(["a"], scores={"z": 1.0}), "predictions", "scores['z']: a score for an item not in the ranked list"),
    (_label({"a": -1}), "labels", "label: relevance of item 'a' is -1.0; a relevance is a number >= 0"),
    (_label({"a": 1, "b": "high"}), "labels", 'Expected `float`, got `str` - at `$.label["b"]`'),
    (_label(["a", 2]), "labels", "label: item ids of mixed types (int and str) in one list"),
    (_label(["a", "a"]), "labels", "label: item 'a' appears twice in the list (positions 1 and 2)"),
    (_label(1), "labels", "label: a ranking model's label is a list of item ids or an object item id -> relevance"),
    (_prediction(["a", "b"], model="fraud"), "predictions",
     "prediction: a list is a ranking model's prediction (task: ranking); this model's task is classification"),
    (_label({"a": 1}, model="fraud"), "labels",
     "label: a dict is a ranking model's label (task: ranking); this model's task is classification"),
])
def test_each_refusal_names_its_field(event, topic, reason):
    assert reason in _reason(event, getattr(CFG.topics, topic))


def test_a_relevance_beyond_a_float_is_refused():
    raw = b'{"event_id":"e1","model":"shop","ts":%d,"label":{"a":1e999}}' % NOW
    batch = prepare([Rec(CFG.topics.labels, 0, 3, raw)], CFG, NOW)
    assert "label" in orjson.loads(batch.dead_letters[0][1])["error"]


def test_a_ranking_model_is_configured_with_its_own_settings_and_metrics():
    base = {"task": "ranking", "features": {"segment": "categorical"}}
    cfg = load_config_dict({"models": {"shop": {**base, "detectors": {"k": 5, "metrics": ["ndcg@5", "mrr"]},
                                                "retrain": {"metric": "map@5"}}}}, environ={})
    assert cfg.models["shop"].task == "ranking"
    with pytest.raises(ConfigError, match=r"models.shop.detectors: unknown settings \['window_kind'\] for a ranking"):
        load_config_dict({"models": {"shop": {**base, "detectors": {"window_kind": "time"}}}}, environ={})
    with pytest.raises(ConfigError, match=r"models.shop.retrain.metric: .*ndcg"):
        load_config_dict({"models": {"shop": {**base, "retrain": {"metric": "ndcg"}}}}, environ={})
    with pytest.raises(ConfigError, match=r"models\.shop\.segments"):
        load_config_dict({"models": {"shop": {**base, "segments": ["segment"]}}}, environ={})
    with pytest.raises(ConfigError, match=r"models\.shop\.retrain\.shadow"):
        load_config_dict({"models": {"shop": {**base, "retrain": {"shadow": {}}}}}, environ={})
