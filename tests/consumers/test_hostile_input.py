"""Property-based: no input crashes decode + validate; each refused input gets exactly one reason."""
from __future__ import annotations

import json

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.ingest import prepare
from driftloop.core.config import load_config_dict
from tests.consumers.test_ingest_unit import NOW, Rec

CFG = load_config_dict({"models": {
    "fraud": {"task": "classification", "features": {"amount": "numeric", "country": "categorical"}},
    "price": {"task": "regression", "features": {"x": "numeric"}},
    "shop": {"task": "ranking", "features": {"x": "numeric"}}}}, environ={})

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)

event_like = st.fixed_dictionaries({}, optional={
    "event_id": st.one_of(st.text(max_size=130), json_values),
    "model": st.one_of(st.sampled_from(["fraud", "price", "shop", "nope"]), json_values),
    "ts": st.one_of(st.integers(-10, 2**63 - 1), st.text(max_size=40), st.just("2025-01-01T00:00:00Z"), json_values),
    "features": st.one_of(st.dictionaries(st.sampled_from(["amount", "country", "x", "other"]), json_values,
                                          max_size=4), json_values),
    "prediction": json_values, "scores": json_values, "label": json_values, "model_version": json_values,
    "schema_version": json_values,
})


def _check(raw: bytes, topic: str) -> None:
    batch = prepare([Rec(topic, 0, 7, raw)], CFG, NOW)
    accepted = sum(len(v.events) for v in batch.predictions.values()) + sum(
        len(v.events) for v in batch.labels.values())
    refused = len(batch.dead_letters)
    assert accepted + refused >= 1
    for _key, value in batch.dead_letters:
        body = orjson.loads(value)
        assert body["error"] and body["offset"] == 7


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(raw):
    _check(raw, CFG.topics.predictions)
    _check(raw, CFG.topics.labels)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(event_like, st.lists(event_like, max_size=5)))
def test_event_shaped_json_never_crashes(obj):
    raw = json.dumps(obj).encode()   # the stdlib writes integers beyond 64 bits too
    _check(raw, CFG.topics.predictions)
    _check(raw, CFG.topics.labels)


def test_deeply_nested_json_is_refused_not_crashing():
    raw = b"[" * 100_000 + b"]" * 100_000
    batch = prepare([Rec(CFG.topics.predictions, 0, 1, raw)], CFG, NOW)
    assert len(batch.dead_letters) == 1


def test_a_million_features_is_refused_by_size():
    feats = {f"f{i}": 1.0 for i in range(1_000_000)}
    raw = orjson.dumps({"event_id": "a", "model": "fraud", "ts": NOW, "features": feats, "prediction": 1})
    batch = prepare([Rec(CFG.topics.predictions, 0, 1, raw)], CFG, NOW)
    assert "too large" in orjson.loads(batch.dead_letters[0][1])["error"]
