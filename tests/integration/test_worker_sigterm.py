"""SIGTERM of ``driftloop retrain-worker`` in the middle of a job's training (a real fit of
several seconds, not a sleep): the process exits within a bound, the job is left undecided, and
a worker started afterwards redoes it and decides it exactly once (one registry decision, one
event on ``driftloop.models``).

The worker trains in a background thread while its main thread polls; on SIGTERM the main
thread abandons the job (nothing of its decision exists yet: the decision, the registry rows,
the models outbox row and the job's offset commit in one transaction at the end), leaves the
group and exits without waiting for the fit. See ``retrain/worker.py``'s docstring, case 2.
"""
from __future__ import annotations

import re
import time

import pytest
import sqlalchemy as sa

from driftloop.core.store import Store
from driftloop.core.tables import champion_history, model_versions
from driftloop.kafka.topics import create_topics
from retrain.events import decode_model_event
from retrain.policy import RetrainScheduler
from retrain.registry import Registry
from tests.fault_helpers import spawn, stop_process, wait_until
from tests.kafka_helpers import publish_outbox, read_topic
from tests.retrain.helpers import agrawal, config_data, insert_examples, job_row, write_config

pytestmark = pytest.mark.kafka

T0 = int(time.time() * 1000) - 3_600_000
ROWS = 4000
# a real fit of several seconds (3,000 training rows, 1,000 trees: 5-8 s on the 2-core machine)
SLOW_RECIPE = {"estimator": "sklearn.ensemble.RandomForestClassifier",
               "params": {"n_estimators": 1000, "min_samples_leaf": 1, "n_jobs": 1}}
INTO_TRAINING_S = 0.5     # after the worker logged the start of the fit
EXIT_BOUND_S = 10.0


def test_sigterm_mid_training_exits_within_bound_and_the_job_is_decided_once(kafka_bootstrap, tmp_path):
    path, cfg = write_config(tmp_path, config_data(tmp_path, bootstrap=kafka_bootstrap,
                                                   retrain={"recipe": SLOW_RECIPE}))
    store = Store.from_config(cfg.store)
    store.create_schema()
    create_topics(cfg)
    insert_examples(store, "agr", agrawal(ROWS, function=2, seed=2), start_ts=T0, predictions=[1] * ROWS)
    job = RetrainScheduler(cfg, store).enqueue_manual("agr", requested_by="test")
    publish_outbox(cfg, store)

    def row():
        return job_row(store, job.job_id)

    def count(table, *where) -> int:
        with store.engine.connect() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar())

    log_a, log_b = tmp_path / "worker-a.log", tmp_path / "worker-b.log"
    a = spawn("retrain-worker", "-c", str(path), log=log_a)
    try:
        wait_until(lambda: row().status == "running", 120, "worker A claimed the job", proc=a, log=log_a)
        wait_until(lambda: f"job {job.job_id}: fitting" in log_a.read_text(), 60, "worker A started the fit",
                   proc=a, log=log_a)
        time.sleep(INTO_TRAINING_S)     # a point inside the fit (checked below: the fit did not finish)
        assert a.poll() is None and row().status == "running"
        exit_s = stop_process(a, timeout_s=60)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait(10)
    text_a = log_a.read_text()
    assert a.returncode == 0, text_a[-3000:]
    assert "stopping in the middle of the job" in text_a, text_a[-3000:]
    assert f"job {job.job_id}: fitting" in text_a
    assert "held out), fit" not in text_a, "the fit had finished before SIGTERM: not mid-training"
    assert "Traceback" not in text_a, text_a[-3000:]
    r = row()
    # abandoned, nothing of a decision; the graceful stop gave its attempt back (not one of max_attempts)
    assert (r.status, r.attempts, r.decision) == ("running", 0, None)
    assert count(model_versions) == 0

    b = spawn("retrain-worker", "-c", str(path), log=log_b)
    try:
        wait_until(lambda: row().status in ("done", "failed"), 180, "worker B redid and decided the job",
                   proc=b, log=log_b)
        # B keeps running a while: a second decision (or a second event) would show up meanwhile
        wait_until(lambda: len(read_topic(kafka_bootstrap, cfg.topics.models, timeout_s=10)) >= 1, 60,
                   "the decision on driftloop.models", proc=b, log=log_b)
    finally:
        stop_process(b)
    text_b = log_b.read_text()
    assert "Traceback" not in text_b, text_b[-3000:]
    r = row()
    assert (r.status, r.attempts, r.decision, r.version) == ("done", 1, "promoted", 1), r
    assert f":{b.pid}" in r.worker
    assert count(model_versions) == 1
    assert count(champion_history, champion_history.c.job_id == job.job_id) == 1
    assert [h.event for h in Registry(cfg, store).history("agr")] == ["promoted"]
    recs = read_topic(kafka_bootstrap, cfg.topics.models)
    events = {dict(rec.headers)["driftloop-id"]: decode_model_event(rec.value) for rec in recs}  # at-least-once
    assert [(e.event, e.job_id, e.version) for e in events.values()] == [("promoted", job.job_id, "1")]
    store.dispose()
    fit = re.search(rf"job {re.escape(job.job_id)}: .* fit (\S+)s", text_b)
    print(f"\nworker SIGTERM {INTO_TRAINING_S:.1f}s into the fit: exited in {exit_s:.1f}s (bound "
          f"{EXIT_BOUND_S:.0f}s); redone by a new worker, fit {fit.group(1) if fit else '?'}s")
    assert exit_s < EXIT_BOUND_S
