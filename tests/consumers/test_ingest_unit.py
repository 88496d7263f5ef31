"""Pure-logic tests of decode -> validate -> join -> store, with fake records and SQLite."""
from __future__ import annotations

import msgspec
import orjson
import pytest

from consumers.ingest import RawRecord as Rec
from consumers.ingest import commit, prepare
from driftloop.app.stats import collect_stats
from driftloop.core.config import load_config_dict
from driftloop.core.store import Store
from driftloop.kafka.offsets import Fenced

NOW = 1_760_000_000_000


@pytest.fixture
def cfg():
    return load_config_dict({"models": {
        "fraud": {"task": "classification", "features": {"amount": "numeric", "country": "categorical"}},
        "price": {"task": "regression", "features": {"x": "numeric"}},
    }}, environ={})


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/t.db")
    s.create_schema()
    yield s
    s.dispose()


def pred(i, model="fraud", **kw):
    ev = {"event_id": f"e{i}", "model": model, "ts": NOW - 1000 + i,
          "features": {"amount": float(i), "country": "DE"}, "prediction": i % 2}
    ev.update(kw)
    return ev


def label(i, model="fraud", value=None):
    return {"event_id": f"e{i}", "model": model, "ts": NOW + i, "label": (i % 2) if value is None else value}


def run(store, cfg, recs, expected=None):
    batch = prepare(recs, cfg, NOW)
    exp = expected if expected is not None else {k: None for k in batch.next_offsets}
    return batch, commit(store, cfg, batch, group="g", expected=exp, now=NOW)


def recs(topic, events, start=0, partition=0):
    return [Rec(topic, partition, start + j, orjson.dumps(e)) for j, e in enumerate(events)]


def test_join_either_order_and_duplicates(cfg, store):
    P, L = cfg.topics.predictions, cfg.topics.labels
    # labels for 0..4 first, then predictions 0..9 (with a duplicate of e3), then labels 5..9 + dup of e0
    run(store, cfg, recs(L, [label(i) for i in range(5)]))
    _, res = run(store, cfg, recs(P, [pred(i) for i in range(10)] + [pred(3)]),
                 expected={(L, 0): 5, (P, 0): None})
    assert len(res.joined["fraud"].label) == 5
    _, res2 = run(store, cfg, recs(L, [label(i) for i in range(5, 10)] + [label(0)], start=5),
                  expected={(L, 0): 5, (P, 0): 11})
    joined = res2.joined["fraud"]
    assert sorted(e.event_id for e in joined.predictions.events) == [f"e{i}" for i in range(5, 10)]
    assert list(joined.label) == [str(i % 2) for i in range(5, 10)]
    assert list(joined.predictions.prediction) == [str(i % 2) for i in range(5, 10)]
    s = collect_stats(cfg, store)["models"]["fraud"]
    assert (s["predictions"], s["labels"], s["joined"], s["duplicates"]) == (10, 10, 10, 2)


@pytest.mark.parametrize("raw,reason", [
    (b"not json", "malformed"),
    (b'{"event_id":"\xff\xfe","model":"fraud"}', "UTF-8"),
    (orjson.dumps(pred(1, amount=None) | {"features": {"amount": "12"}}), "features.amount"),
    (orjson.dumps({k: v for k, v in pred(1).items() if k != "prediction"}), "prediction"),
    (orjson.dumps(pred(1, model="nope")), "unknown model"),
    (orjson.dumps(pred(1, ts="2024-01-01T00:00:00")), "time-zone"),
    (orjson.dumps(pred(1, ts=NOW + 10 * 86_400_000)), "future"),
    (b'{"event_id":"x","model":"fraud","ts":1,"features":{"amount":1e999},"prediction":1}', "out of range"),
    (orjson.dumps(pred(1, scores={"0": 1.5})), "[0, 1]"),
    (orjson.dumps(pred(1, event_id="")), "length >= 1"),
    (orjson.dumps(pred(1, price=3) | {"features": {"amount": [1]}}), "features"),
    (b"x" * 2_000_000, "too large"),
    (orjson.dumps(pred(1, schema_version=2)), "schema_version"),
    (orjson.dumps(pred(1, model="price", prediction="cat")), "regression"),
    (None, "tombstone"),
])
def test_invalid_inputs_are_dead_lettered_with_reason(cfg, store, raw, reason):
    batch, _ = run(store, cfg, [Rec(cfg.topics.predictions, 2, 41, raw)])
    assert len(batch.dead_letters) == 1
    dl = orjson.loads(batch.dead_letters[0][1])
    assert reason in dl["error"], dl["error"]
    assert (dl["source_topic"], dl["partition"], dl["offset"]) == (cfg.topics.predictions, 2, 41)
    assert collect_stats(cfg, store)["totals"]["invalid"] == 1
    assert store.unsent_outbox()[0].topic == cfg.topics.dlq


def test_array_message_keeps_valid_elements(cfg, store):
    arr = [pred(1), {"event_id": "bad"}, pred(2), pred(3, model="price", prediction=1.5,
                                                      features={"x": 2.0})]
    batch, res = run(store, cfg, [Rec(cfg.topics.predictions, 0, 0, orjson.dumps(arr))])
    assert len(batch.dead_letters) == 1
    assert "event [1]" in orjson.loads(batch.dead_letters[0][1])["error"]
    assert len(res.new_predictions["fraud"].ts) == 2
    assert res.new_predictions["price"].prediction.tolist() == [1.5]


def test_rfc3339_and_string_labels(cfg, store):
    P, L = cfg.topics.predictions, cfg.topics.labels
    ev = pred(1, ts="2025-10-09T08:00:00.250+02:00", prediction=True, scores={"True": 0.8, "False": 0.2})
    run(store, cfg, recs(P, [ev]) + recs(L, [label(1, value=True)]))
    s = collect_stats(cfg, store)["models"]["fraud"]
    assert s["joined"] == 1


def test_fenced_batch_rolls_back(cfg, store):
    P = cfg.topics.predictions
    run(store, cfg, recs(P, [pred(i) for i in range(3)]))
    batch = prepare(recs(P, [pred(i) for i in range(3, 6)], start=3), cfg, NOW)
    with pytest.raises(Fenced):
        commit(store, cfg, batch, group="g", expected={(P, 0): None}, now=NOW)
    assert collect_stats(cfg, store)["models"]["fraud"]["predictions"] == 3


def test_payload_roundtrip_has_event(cfg, store):
    from driftloop.core.events import PredictionEvent
    P = cfg.topics.predictions
    run(store, cfg, recs(P, [pred(7, model_version="v2")]))
    import sqlalchemy as sa

    from driftloop.core.store import examples
    with store.engine.connect() as c:
        row = c.execute(sa.select(examples.c.payload, examples.c.model_version)).one()
    ev = msgspec.json.decode(row.payload, type=PredictionEvent)
    assert ev.event_id == "e7" and row.model_version == "v2"


def test_expiry_drops_old_halves_and_prunes_old_joined_examples(store, cfg):
    from consumers.join import expire_pending
    # e0: joined; e1: prediction only; e2: label only -- all created at NOW
    run(store, cfg, recs(cfg.topics.predictions, [pred(0), pred(1)]) + recs(cfg.topics.labels, [label(0), label(2)]))
    day = 86_400_000
    with store.transaction() as conn:          # one day later, TTLs of two days: nothing goes
        assert expire_pending(conn, NOW + day, 2 * day, 2 * day, 30 * day) == {}
    with store.transaction() as conn:          # three days later: the two halves expire, e0 stays
        out = expire_pending(conn, NOW + 3 * day, 2 * day, 2 * day, 30 * day)
        store.add_counters(conn, out)
    assert out == {("fraud", "expired_predictions"): 1, ("fraud", "expired_labels"): 1}
    with store.transaction() as conn:          # retention 0 keeps joined examples forever
        assert expire_pending(conn, NOW + 400 * day, 2 * day, 2 * day, 0) == {}
    with store.transaction() as conn:
        out = expire_pending(conn, NOW + 31 * day, 2 * day, 2 * day, 30 * day)
        store.add_counters(conn, out)
    assert out == {("fraud", "pruned_joined"): 1}
    st = collect_stats(cfg, store)["models"]["fraud"]
    assert (st["expired_predictions"], st["expired_labels"], st["pruned_joined"], st["pending_labels"]) == (1, 1, 1, 0)
    # a pruned event is past its dedupe horizon: its prediction counts again
    _batch, res = run(store, cfg, recs(cfg.topics.predictions, [pred(0)], start=2),
                      expected={(cfg.topics.predictions, 0): 2})
    assert res.deltas[("fraud", "predictions")] == 1


def test_retrain_window_longer_than_retention_is_refused():
    from driftloop.core.config import ConfigError
    with pytest.raises(ConfigError, match="joined_retention_s"):
        load_config_dict({"ingest": {"joined_retention_s": 86_400},
                          "models": {"m": {"task": "classification", "features": {"x": "numeric"},
                                           "retrain": {"window_s": 7 * 86_400}}}}, environ={})


def test_polling_outlives_retriable_kafka_errors_only():
    import threading

    from kafka.errors import KafkaConnectionError, SaslAuthenticationFailedError

    from driftloop.kafka.polling import run_polling
    calls = []

    def step():
        calls.append(1)
        if len(calls) <= 2:
            raise KafkaConnectionError("111 ECONNREFUSED")    # the broker is away: try again

    run_polling(step, threading.Event(), until=lambda: len(calls) >= 4, retry_s=0.01)
    assert len(calls) == 4

    def refused():
        raise SaslAuthenticationFailedError("bad password")    # not retriable: propagates
    with pytest.raises(SaslAuthenticationFailedError):
        run_polling(refused, threading.Event(), retry_s=0.01)
