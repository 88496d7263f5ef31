"""One job through the worker's ``handle`` (no broker): decision, registry rows, offsets, failures."""
from __future__ import annotations

import time
from types import SimpleNamespace

import msgspec
import pytest
import skops.io as sio
import sqlalchemy as sa

from driftloop.core.store import Store, outbox
from driftloop.core.tables import champion_history, model_versions, retrain_jobs
from driftloop.kafka.offsets import read_offsets
from retrain.events import decode_model_event, encode
from retrain.policy import RetrainScheduler
from retrain.registry import Registry
from retrain.worker import RetrainWorker
from tests.retrain.helpers import (
    Alert,
    agrawal,
    config_data,
    fitted_model,
    frame,
    insert_examples,
    job_row,
    write_config,
)

NOW = int(time.time() * 1000)
PRE = agrawal(1500, function=0, seed=1)
POST = agrawal(2400, function=2, seed=2)


@pytest.fixture(scope="module")
def champion_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("champ") / "v1.skops"
    sio.dump(fitted_model(PRE), path)
    return path


@pytest.fixture
def env(tmp_path, champion_file):
    def make(register=True, examples=POST, **retrain):
        _, cfg = write_config(tmp_path, config_data(tmp_path, retrain=retrain))
        store = Store.from_config(cfg.store)
        store.create_schema()
        reg = Registry(cfg, store)
        if register:
            reg.register("agr", champion_file, frame(PRE), actor="test", trust=sio.get_untrusted_types(file=champion_file),
                         promote=True)
        insert_examples(store, "agr", examples, start_ts=NOW - 3_600_000, joined_at=NOW - 1000)
        return cfg, store, reg, RetrainScheduler(cfg, store), RetrainWorker(cfg, store, worker_id="w1")
    return make


def rec(job, offset, partition=0):
    return SimpleNamespace(topic="retrain", partition=partition, offset=offset,
                           value=job if isinstance(job, bytes) else encode(job))


def alert_job(store, sched, alert="a1", now=NOW):
    with store.transaction() as conn:
        (job,) = sched.on_alerts(conn, "agr", [Alert(alert)], now)
    return job


def events(store):
    with store.engine.connect() as c:
        vals = c.execute(sa.select(outbox.c.value).where(outbox.c.topic.like("%.models")).order_by(outbox.c.id))
        return [decode_model_event(v) for (v,) in vals]


def test_challenger_on_new_concept_is_promoted_then_an_equal_one_rejected(env):
    cfg, store, reg, sched, worker = env(min_delta=0.01)
    job = alert_job(store, sched)
    out = worker.handle(rec(job, 0), None)
    assert out.status == "done" and out.version == 2 and out.event.event == "promoted"
    ev = out.event
    assert (ev.champion_version, ev.previous_champion, ev.reason, ev.job_id) == ("2", "1", ["a1"], job.job_id)
    assert ev.metrics["incumbent"] == "registry:1" and ev.metrics["holdout_rows"] == 600
    assert ev.metrics["challenger"]["accuracy"] > ev.metrics["champion"]["accuracy"] + 0.1
    assert ev.decision["test"] == "mcnemar" and ev.decision["p_value"] < 1e-6
    v = reg.get("agr", 2)
    assert (v.status, v.source, v.job_id, v.reference_rows, v.holdout_rows) == ("champion", "retrain", job.job_id, 1800, 600)
    assert v.estimator.endswith("RandomForestClassifier") and v.params["n_estimators"] == 30
    assert v.data_window["rows"] == 2400 and v.data_window["first_event_id"] == "e0"
    assert v.data_window["last_event_id"] == "e2399" and v.library_versions["scikit-learn"]
    assert reg.get("agr", 1).status == "archived"
    ref = reg.load_reference("agr", 2)
    assert len(ref) == 1800 and ref["label"].tolist()[:5] == [str(y) for _, y in POST[:5]]
    hold = reg.load_reference("agr", 2, "holdout")
    assert {"prediction", "score_0", "score_1"} <= set(hold.columns) and len(hold) == 600
    with store.engine.connect() as c:
        assert read_offsets(c, worker.group, [("retrain", 0)]) == {("retrain", 0): 1}
    row = job_row(store, job.job_id)
    assert (row.status, row.decision, row.version, row.attempts, row.worker) == ("done", "promoted", 2, 1, "w1")

    job2 = sched.enqueue_manual("agr", now=NOW + 1)
    out = worker.handle(rec(job2, 1), 1)
    assert out.status == "done" and out.event.event == "rejected"
    assert out.event.champion_version == "2" and out.event.metrics["incumbent"] == "registry:2"
    assert "rejected" in out.event.decision["reason"]
    assert reg.champion("agr").version == 2 and reg.get("agr", 3).status == "rejected"
    assert [e.event for e in events(store)] == ["registered", "promoted", "promoted", "rejected"]


def test_repeated_delivery_and_fencing(env):
    cfg, store, reg, sched, worker = env()
    job = alert_job(store, sched)
    # another worker already advanced this partition: the result is dropped
    with store.transaction() as conn:
        from driftloop.kafka.offsets import advance_offsets
        advance_offsets(store, conn, worker.group, {}, {("retrain", 0): 1}, NOW)
    out = worker.handle(rec(job, 0), None)
    assert out.status == "fenced" and reg.version_for_job(job.job_id) is None
    out = worker.handle(rec(job, 1), 1)            # the job again, now expected offsets are right
    assert out.status == "done"
    again = worker.handle(rec(job, 2), 2)          # the outbox published it twice
    assert again.status == "skipped" and "already done" in again.error
    with store.engine.connect() as c:
        n_versions = c.execute(sa.select(sa.func.count()).select_from(model_versions)
                               .where(model_versions.c.job_id == job.job_id)).scalar()
        n_hist = c.execute(sa.select(sa.func.count()).select_from(champion_history)
                           .where(champion_history.c.job_id == job.job_id)).scalar()
        assert (n_versions, n_hist) == (1, 1)
        assert read_offsets(c, worker.group, [("retrain", 0)]) == {("retrain", 0): 3}


def test_jobs_that_cannot_succeed_are_marked_failed(env, tmp_path):
    cfg, store, reg, sched, worker = env(register=False)
    job = alert_job(store, sched)
    # the window of a second job holds nothing
    empty = msgspec.structs.replace(job, job_id="empty", window=msgspec.structs.replace(job.window, start_ts=1, end_ts=2))
    out = worker.handle(rec(empty, 0), None)
    assert out.status == "failed" and "only 0 labelled examples" in out.error
    assert job_row(store, "empty").status == "failed"
    # a message that is not a job: dead-lettered, offset advanced
    out = worker.handle(rec(b'{"job": 1}', 1), 1)
    assert out.status == "skipped"
    with store.engine.connect() as c:
        dlq = c.execute(sa.select(outbox.c.value).where(outbox.c.topic == cfg.topics.dlq)).scalars().all()
        assert len(dlq) == 1 and b"not a retraining job" in dlq[0]
        assert read_offsets(c, worker.group, [("retrain", 0)]) == {("retrain", 0): 2}
    # a job that killed its worker max_attempts times
    with store.transaction() as conn:
        conn.execute(retrain_jobs.update().where(retrain_jobs.c.job_id == job.job_id).values(attempts=3, status="running"))
    out = worker.handle(rec(job, 2), 2)
    assert out.status == "failed" and "gave up after 3 attempts" in out.error


def test_no_registry_champion_compares_with_the_logged_predictions(env):
    # the served model always predicted "1"; the examples carry its predictions
    cfg, store, reg, sched, worker = env(register=False, examples=[])
    insert_examples(store, "agr", POST, start_ts=NOW - 3_600_000, predictions=[1] * len(POST), joined_at=NOW - 1000)
    out = worker.handle(rec(alert_job(store, sched), 0), None)
    assert out.event.event == "promoted" and out.event.metrics["incumbent"] == "logged"
    assert out.event.previous_champion is None and reg.champion("agr").version == 1


def test_tampered_champion_fails_the_job_with_a_clear_error(env):
    cfg, store, reg, sched, worker = env()
    p = reg.path(reg.champion("agr").artifact_path)
    data = bytearray(p.read_bytes())
    data[len(data) // 3] ^= 0x01
    p.write_bytes(bytes(data))
    job = alert_job(store, sched)
    out = worker.handle(rec(job, 0), None)
    assert out.status == "failed" and "ArtifactIntegrityError" in out.error and "refusing to load it" in out.error
    assert job_row(store, job.job_id).error == out.error and reg.champion("agr").version == 1


def test_champion_changed_during_training_is_compared_again(env, champion_file):
    cfg, store, reg, sched, _ = env()
    trust = sio.get_untrusted_types(file=champion_file)

    def meanwhile(job):   # an operator registers and promotes a model while the job trains
        reg.register("agr", champion_file, frame(PRE), actor="op", trust=trust, promote=True)

    worker = RetrainWorker(cfg, store, train_hook=meanwhile)
    out = worker.handle(rec(alert_job(store, sched), 0), None)
    assert out.status == "done" and out.event.metrics["incumbent"] == "registry:2"
    assert out.event.previous_champion == "2" and out.version == 3


def test_mixing_the_reference_into_the_training_set(env):
    cfg, store, reg, sched, worker = env(mix_reference=True)
    out = worker.handle(rec(alert_job(store, sched), 0), None)
    v = reg.get("agr", out.version)
    assert v.data_window["reference_rows_mixed"] == 1500 and v.data_window["train_rows"] == 1800
    ref = reg.load_reference("agr", out.version)
    assert len(ref) == 1500 + 1800 and v.holdout_rows == 600       # held-out rows never come from the reference
    assert ref["label"].tolist()[:3] == [str(y) for _, y in PRE[:3]]


def make_pipeline(C=1.0):
    """A user recipe: their own preprocessing and model."""
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline as mk
    from sklearn.preprocessing import StandardScaler

    numeric = ["salary", "commission", "age", "hvalue", "hyears", "loan"]
    return mk(make_column_transformer((mk(SimpleImputer(), StandardScaler()), numeric)),
              LogisticRegression(C=C, max_iter=500))


def test_factory_recipe_and_regression_task(tmp_path):
    data = config_data(tmp_path, retrain={"recipe": {"factory": "tests.retrain.test_worker_unit:make_pipeline",
                                                     "params": {"C": 0.3}, "preprocess": "none"}})
    data["models"]["price"] = {"task": "regression", "features": {"x1": "numeric", "x2": "numeric", "c": "categorical"},
                               "retrain": {"min_examples": 300, "cooldown_s": 0, "metric": "mae",
                                           "bootstrap_samples": 300,
                                           "recipe": {"estimator": "sklearn.linear_model.Ridge"}}}
    _, cfg = write_config(tmp_path, data)
    store = Store.from_config(cfg.store)
    store.create_schema()
    insert_examples(store, "agr", POST, start_ts=NOW - 3_600_000, joined_at=NOW - 1000)
    import numpy as np
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(800):
        x1, x2, c = float(rng.normal()), float(rng.normal()), str(rng.choice(["a", "b"]))
        rows.append(({"x1": x1, "x2": x2, "c": c}, 2 * x1 - x2 + (1.5 if c == "a" else 0) + float(rng.normal(0, .3))))
    insert_examples(store, "price", rows, start_ts=NOW - 3_600_000, prefix="r",
                    predictions=[0.0] * len(rows), joined_at=NOW - 1000)
    sched, worker, reg = RetrainScheduler(cfg, store), RetrainWorker(cfg, store), Registry(cfg, store)
    out = worker.handle(rec(alert_job(store, sched), 0), None)
    assert out.status == "done", out.error
    v = reg.get("agr", out.version)
    assert v.estimator.endswith("LogisticRegression") and v.params["C"] == 0.3
    with store.transaction() as conn:
        (job,) = sched.on_alerts(conn, "price", [Alert("p1", kind="performance")], NOW)
    out = worker.handle(rec(job, 0, partition=1), None)
    assert out.status == "done" and out.event.event == "promoted", out.error
    m = out.event.metrics
    assert m["incumbent"] == "logged" and m["challenger"]["mae"] < 0.5 < m["champion"]["mae"]
    assert out.event.decision["test"] == "paired_bootstrap" and out.event.decision["ci_low"] > 0
    ref = reg.load_reference("price", out.version)
    assert ref["label"].dtype == float and set(ref["c"].dropna()) == {"a", "b"}
