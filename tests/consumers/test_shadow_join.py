"""Shadow predictions (contract v1.1) through the real path: prepare() then commit(), on SQLite and
on PostgreSQL (skipped locally without a server, failing under CI: tests/conftest.py).

A shadow prediction carries the served prediction's event_id and its own model_version; it is
deduped on (model, model_version, event_id), stored in ``shadow_examples``, and joined with the
label of the served row in ``examples`` (consumers/shadow_join.py).
"""
from __future__ import annotations

import msgspec
import numpy as np
import orjson
import pytest
import sqlalchemy as sa

from consumers.ingest import commit, prepare
from consumers.join import expire_pending
from consumers.shadow_join import same_version_reason
from driftloop.core.config import load_config_dict
from driftloop.core.events import PredictionEvent
from driftloop.core.store import Store
from driftloop.core.tables import examples, shadow_examples
from tests.consumers.test_ingest_unit import NOW, Rec, label, pred

DAY = 86_400_000


@pytest.fixture
def cfg():
    return load_config_dict({"models": {
        "fraud": {"task": "classification", "features": {"amount": "numeric", "country": "categorical"}},
    }}, environ={})


@pytest.fixture(params=["sqlite", "postgres"])
def any_store(request, tmp_path):
    """The same tests on SQLite and on PostgreSQL (tests/alerts/conftest.py does the same)."""
    url = f"sqlite:///{tmp_path}/t.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    store = Store(url)
    store.create_schema()
    yield store
    store.dispose()


def shadow(i, version="v2", **kw):
    """The shadow answer of version ``version`` to request ``e{i}`` (served: pred(i))."""
    return pred(i, model_version=version, shadow=True, prediction=(i + 1) % 2, **kw)


class Feed:
    """Batches on two partitions (predictions, labels), each continuing the stored offsets."""

    def __init__(self, cfg, store):
        self.cfg, self.store = cfg, store
        self.next: dict = {}

    def batch(self, preds=(), labels=(), *, now=NOW, analyser=None, redeliver=None):
        P, L = self.cfg.topics.predictions, self.cfg.topics.labels
        recs = []
        for topic, evs in ((P, preds), (L, labels)):
            start = self.next.get((topic, 0), 0)
            recs += [Rec(topic, 0, start + j, orjson.dumps(e)) for j, e in enumerate(evs)]
        batch = prepare(redeliver if redeliver is not None else recs, self.cfg, now)
        expected = {k: self.next.get(k) for k in batch.next_offsets}
        res = commit(self.store, self.cfg, batch, group="g", expected=expected, now=now, analyser=analyser)
        self.next.update(batch.next_offsets)
        return batch, res

    def counters(self):
        return self.store.read_counters().get("fraud", {})

    def dead_letters(self):
        return [orjson.loads(r.value) for r in self.store.unsent_outbox(10_000, [self.cfg.topics.dlq])]

    def shadow_rows(self):
        with self.store.engine.connect() as c:
            return sorted((r.event_id, r.model_version, r.joined_at is not None)
                          for r in c.execute(sa.select(shadow_examples)))


@pytest.fixture
def feed(cfg, any_store):
    return Feed(cfg, any_store)


def _check_joined(sj, rows):
    """``sj`` (a ShadowJoined) holds exactly ``rows``: (event_id, shadow version, served
    prediction, served version, label), in any order, every column aligned."""
    got = sorted(zip([e.event_id for e in sj.shadow.events], [e.model_version for e in sj.shadow.events],
                     sj.served_prediction.tolist(), sj.served_version, sj.label.tolist()))
    assert got == sorted(rows)
    n = len(rows)
    assert len(sj.shadow.ts) == len(sj.label_ts) == len(sj.shadow.prediction) == n
    assert all(e.shadow for e in sj.shadow.events)
    assert sj.served_prediction.dtype == object and sj.label.dtype == object      # classification: str
    # the shadow's own prediction, not the served one (shadow() predicts the other class)
    by_id = dict(zip([e.event_id for e in sj.shadow.events], sj.shadow.prediction.tolist()))
    assert all(by_id[e] != served for e, _v, served, _sv, _l in rows)


def test_old_payloads_stay_identical_and_the_flag_decodes():
    ev = PredictionEvent(event_id="e", model="m", ts=NOW, features={}, prediction=1.0)
    assert b"shadow" not in msgspec.json.encode(ev)
    assert msgspec.json.decode(orjson.dumps(shadow(1)), type=PredictionEvent).shadow is True


def test_shadow_before_label_joins_when_the_label_comes(feed):
    _b, res = feed.batch([pred(1, model_version="v1"), shadow(1)])
    assert res.shadow_joined == {}
    assert res.deltas[("fraud", "predictions")] == 1 and res.deltas[("fraud", "duplicates")] == 0
    assert [e.shadow for e in res.new_predictions["fraud"].events] == [False]   # never mixed in
    assert feed.shadow_rows() == [("e1", "v2", False)]
    _b, res = feed.batch(labels=[label(1)])
    _check_joined(res.shadow_joined["fraud"], [("e1", "v2", "1", "v1", "1")])
    assert res.shadow_joined["fraud"].label_ts.tolist() == [NOW + 1]
    assert feed.shadow_rows() == [("e1", "v2", True)]
    c = feed.counters()
    assert (c["shadow_predictions"], c["shadow_joined"], c["predictions"], c["joined"]) == (1, 1, 1, 1)
    with feed.store.engine.connect() as conn:   # the served row is the served prediction
        assert conn.execute(sa.select(examples.c.model_version)).scalars().all() == ["v1"]


def test_label_before_shadow_joins_on_arrival(feed):
    feed.batch([pred(2, model_version="v1")], [label(2)])
    _b, res = feed.batch([shadow(2, version="v7")])
    _check_joined(res.shadow_joined["fraud"], [("e2", "v7", "0", "v1", "0")])
    assert feed.counters()["shadow_joined"] == 1


def test_label_in_the_same_batch_joins_once(feed):
    _b, res = feed.batch([pred(3, model_version="v1"), shadow(3)], [label(3)])
    _check_joined(res.shadow_joined["fraud"], [("e3", "v2", "1", "v1", "1")])
    _b, res = feed.batch(labels=[label(3)])           # a repeated label: a duplicate, joins nothing again
    assert res.shadow_joined == {} and res.deltas[("fraud", "duplicates")] == 1
    assert (feed.counters()["shadow_joined"], feed.counters()["joined"]) == (1, 1)


def test_served_prediction_after_its_label_and_shadow_joins_the_shadow(feed):
    _b, res = feed.batch([shadow(4)], [label(4)])      # no served prediction yet: waits
    assert res.shadow_joined == {}
    _b, res = feed.batch([pred(4, model_version="v1")])
    _check_joined(res.shadow_joined["fraud"], [("e4", "v2", "0", "v1", "0")])


def test_two_shadow_versions_of_one_request(feed):
    feed.batch([shadow(5, "v2"), pred(5, model_version="v1"), shadow(5, "v3")])
    _b, res = feed.batch(labels=[label(5)])
    _check_joined(res.shadow_joined["fraud"], [("e5", "v2", "1", "v1", "1"), ("e5", "v3", "1", "v1", "1")])
    c = feed.counters()
    assert (c["shadow_predictions"], c.get("shadow_duplicates", 0), c["shadow_joined"]) == (2, 0, 2)


def test_duplicate_shadows_count_once_and_the_first_wins(feed):
    first = shadow(6)
    again = shadow(6, features={"amount": 99.0, "country": "FR"})
    _b, res = feed.batch([pred(6, model_version="v1"), first, again])   # a repeat within the batch
    assert res.deltas[("fraud", "shadow_duplicates")] == 1
    assert res.deltas[("fraud", "duplicates")] == 0       # not a duplicate of the served prediction
    _b, res = feed.batch([again, shadow(6, "v3")])        # a repeat of a stored one; another version is new
    assert res.deltas[("fraud", "shadow_duplicates")] == 1 and res.deltas[("fraud", "shadow_predictions")] == 1
    _b, res = feed.batch(labels=[label(6)])
    sj = res.shadow_joined["fraud"]
    assert sorted(e.model_version for e in sj.shadow.events) == ["v2", "v3"]
    amount = dict(zip([e.model_version for e in sj.shadow.events], sj.shadow.features["amount"].tolist()))
    assert amount["v2"] == 6.0                            # the first one stored
    c = feed.counters()
    assert (c["shadow_predictions"], c["shadow_duplicates"], c.get("duplicates", 0)) == (2, 2, 0)


def test_shadow_with_the_served_version_is_dead_lettered_and_counted_invalid_once(feed):
    feed.batch([pred(7, model_version="v3")])
    _b, res = feed.batch([shadow(7, "v3"), shadow(7, "v4")])
    dead = feed.dead_letters()
    assert [d["error"] for d in dead] == [same_version_reason("v3")]
    assert same_version_reason("v3") == \
        "model_version: a shadow prediction's version must differ from the served one (v3)"
    assert dead[0]["offset"] == 1 and dead[0]["model"] == "fraud"
    assert orjson.loads(dead[0]["raw"]) == shadow(7, "v3")
    c = feed.counters()
    assert (c["invalid"], c["shadow_predictions"]) == (1, 1)
    assert feed.shadow_rows() == [("e7", "v4", False)]
    # the same version arriving with its served prediction in one batch is refused the same way
    feed.batch([pred(8, model_version="v1"), shadow(8, "v1")])
    assert [d["error"] for d in feed.dead_letters()][1:] == [same_version_reason("v1")]
    assert feed.counters()["invalid"] == 2


def test_served_version_stamped_by_the_analyser_counts(feed):
    class Stamping:                                       # as the analyser stamps the champion
        def stamp_versions(self, predictions, conn):
            for vp in predictions.values():
                for ev in vp.events:
                    ev.model_version = ev.model_version or "v1"

        def analyse(self, conn, result, now):
            pass
    feed.batch([pred(9), shadow(9, "v1")], analyser=Stamping())
    assert [d["error"] for d in feed.dead_letters()] == [same_version_reason("v1")]


def test_shadow_without_model_version_is_dead_lettered(feed):
    no_version = pred(10, shadow=True)
    _b, res = feed.batch([pred(10), no_version])
    dead = feed.dead_letters()
    assert [d["error"] for d in dead] == ["model_version: a shadow prediction must name its version"]
    assert feed.counters()["invalid"] == 1 and feed.counters()["predictions"] == 1
    assert feed.shadow_rows() == []


@pytest.mark.parametrize("is_shadow", [False, True])
def test_a_version_over_128_characters_is_refused_for_both_kinds(feed, is_shadow):
    ev = pred(11, model_version="v" * 129, shadow=is_shadow)
    ok = pred(12, model_version="v" * 128, shadow=is_shadow)
    feed.batch([ev, ok])
    dead = feed.dead_letters()
    assert [d["error"] for d in dead] == ["Expected `str` of length <= 128 - at `$.model_version`"]
    c = feed.counters()
    assert c["invalid"] == 1
    assert c.get("shadow_predictions" if is_shadow else "predictions", 0) == 1


def test_shadow_expiry_and_retention(feed, cfg):
    ttl, keep = int(cfg.ingest.prediction_ttl_s * 1000), 30 * DAY
    feed.batch([pred(13, model_version="v1"), shadow(13), shadow(14)], [label(13)])   # e13 joined, e14 waits
    with feed.store.transaction() as conn:
        assert expire_pending(conn, NOW + ttl - 1, ttl, 10 * ttl, keep) == {}
    with feed.store.transaction() as conn:
        out = expire_pending(conn, NOW + ttl + 1, ttl, 10 * ttl, keep)
        feed.store.add_counters(conn, out)
    assert out == {("fraud", "expired_shadows"): 1}
    assert feed.shadow_rows() == [("e13", "v2", True)]
    with feed.store.transaction() as conn:
        out = expire_pending(conn, NOW + keep + 1, ttl, 10 * ttl, keep)
        feed.store.add_counters(conn, out)
    assert out == {("fraud", "pruned_joined"): 1, ("fraud", "pruned_shadows"): 1}
    assert feed.shadow_rows() == []
    c = feed.counters()
    assert (c["expired_shadows"], c["pruned_shadows"]) == (1, 1)
    _b, res = feed.batch([shadow(14)])           # past its dedupe horizon: new again
    assert res.deltas[("fraud", "shadow_predictions")] == 1


def test_exactly_once_across_a_failed_transaction_and_a_redelivered_batch(feed):
    class Failing:
        def stamp_versions(self, predictions, conn):
            pass

        def analyse(self, conn, result, now):
            raise RuntimeError("the detectors failed")
    feed.batch([pred(15, model_version="v1")])
    evs = [shadow(15), shadow(15, "v1"), shadow(16)]
    P = feed.cfg.topics.predictions
    records = [Rec(P, 0, 1 + j, orjson.dumps(e)) for j, e in enumerate(evs)] + \
        [Rec(feed.cfg.topics.labels, 0, 0, orjson.dumps(label(15)))]
    with pytest.raises(RuntimeError):
        feed.batch(redeliver=records, analyser=Failing())
    assert feed.shadow_rows() == [] and feed.dead_letters() == []          # nothing of it stayed
    assert "shadow_predictions" not in feed.counters() and "invalid" not in feed.counters()
    feed.next = {(P, 0): 1}                                                 # the consumer re-seeks
    _b, res = feed.batch(redeliver=records)                                 # the same records again
    _check_joined(res.shadow_joined["fraud"], [("e15", "v2", "1", "v1", "1")])
    once = {k: feed.counters()[k] for k in ("shadow_predictions", "shadow_joined", "invalid", "labels", "joined")}
    assert once == {"shadow_predictions": 2, "shadow_joined": 1, "invalid": 1, "labels": 1, "joined": 1}
    assert len(feed.dead_letters()) == 1
    # delivered once more after the commit (e.g. published twice): duplicates, nothing joins again
    feed.next = {}
    moved = [Rec(r.topic, 1, r.offset, r.value) for r in records]          # a partition not consumed yet
    _b, res = feed.batch(redeliver=moved)
    assert res.shadow_joined == {}
    assert res.deltas[("fraud", "shadow_duplicates")] == 2 and res.deltas[("fraud", "shadow_predictions")] == 0
    assert {k: feed.counters()[k] for k in once} == once | {"invalid": 2}   # the same-version one is refused again
    assert feed.shadow_rows() == [("e15", "v2", True), ("e16", "v2", False)]


def test_a_label_joins_shadows_another_process_stored(cfg, any_store):
    a = Feed(cfg, any_store)
    a.batch([pred(17, model_version="v1"), shadow(17)])
    other = Store(str(any_store.engine.url.render_as_string(hide_password=False)))   # a second monitor process
    try:
        b = Feed(cfg, other)
        b.next = dict(a.next)
        _b, res = b.batch(labels=[label(17)])
    finally:
        other.dispose()
    _check_joined(res.shadow_joined["fraud"], [("e17", "v2", "1", "v1", "1")])


def test_no_shadow_traffic_changes_nothing(feed):
    _b, res = feed.batch([pred(i) for i in range(20)], [label(i) for i in range(10)])
    assert res.shadow_joined == {} and not any(k[1].startswith("shadow") for k in res.deltas)
    assert np.array_equal(res.new_predictions["fraud"].ts, np.arange(20) + NOW - 1000)
    assert feed.shadow_rows() == []


def test_a_batch_of_shadows_alone_locks_its_model(feed, monkeypatch):
    """Two monitors on PostgreSQL: the shadows' model is locked like any other (its dedupe read
    and insert must not interleave with another process's batch of the same model)."""
    locked: list[set] = []
    real = feed.store.lock_models

    def spy(conn, models):
        locked.append(set(models))
        real(conn, models)
    monkeypatch.setattr(feed.store, "lock_models", spy)
    feed.batch([shadow(18)])
    assert locked == [{"fraud"}]
