"""``registry.backend: mlflow`` against a real MLflow tracking server (scripts/mlflow.sh, once per
session) and the real broker: decisions mirrored as runs, versions, tags and the alias; rollback;
an alias moved by hand; a version deleted in MLflow; MLflow down when a job decides. No mock of
MLflow anywhere here: the client talks HTTP to the server, as in production."""
from __future__ import annotations

import hashlib
import json
import signal
import threading
import time
from pathlib import Path

import pytest
import skops.io as sio

from driftloop.app.cli import main as cli_main
from driftloop.core.store import Store
from driftloop.kafka.topics import create_topics
from retrain.mlflow_client import MlflowGateway, MlflowUnavailable
from retrain.mlflow_registry import PAUSE_ENV, mirror_for
from retrain.policy import RetrainScheduler
from retrain.registry import Registry
from retrain.worker import RetrainWorker
from tests.fault_helpers import spawn, stop_process, wait_until
from tests.kafka_helpers import publish_outbox
from tests.retrain.helpers import agrawal, fitted_model, frame, insert_examples, job_row, write_config
from tests.retrain.mlflow_helpers import (
    Relay,
    client,
    history_events,
    mirror_state,
    mlflow_config_data,
    runs_with_key,
    version_tag,
    versions_with_key,
)

pytestmark = [pytest.mark.kafka, pytest.mark.mlflow]

T0 = int(time.time() * 1000) - 3_600_000


def _registry_with_champion(tmp_path, cfg, store):
    """v1, trained on Agrawal concept 0, registered as champion (and mirrored: the CLI does it too)."""
    reg = Registry(cfg, store)
    pre = agrawal(1500, function=0, seed=1)
    sio.dump(fitted_model(pre), tmp_path / "v1.skops")
    reg.register("agr", tmp_path / "v1.skops", frame(pre), actor="test", promote=True,
                 trust=sio.get_untrusted_types(file=tmp_path / "v1.skops"))
    return reg


def _set_up(tmp_path, uri, bootstrap, poll_s=60.0):
    """A store whose champion v1 is mirrored to MLflow at ``uri`` (alias on MLflow version 1), and
    1,500 labelled examples of a changed concept for a job to train on. Returns
    ``(config data, MLflow name, config path, config, store, registry)``."""
    data, name = mlflow_config_data(tmp_path, uri, bootstrap=bootstrap, poll_s=poll_s)
    path, cfg = write_config(tmp_path, data)
    store = Store.from_config(cfg.store)
    store.create_schema()
    create_topics(cfg)
    reg = _registry_with_champion(tmp_path, cfg, store)
    assert not mirror_for(cfg, store, reg).sync().errors
    insert_examples(store, "agr", agrawal(1500, function=2, seed=2), start_ts=T0, predictions=[1] * 1500)
    return data, name, path, cfg, store, reg


def _run_worker(cfg, **kw):
    worker = RetrainWorker(cfg, Store.from_config(cfg.store), worker_id="worker-mlflow", **kw)
    thread = threading.Thread(target=worker.run, kwargs={"max_seconds": 170}, daemon=True)
    thread.start()
    return worker, thread


def test_decisions_rollback_and_changes_made_in_mlflow(kafka_bootstrap, mlflow_uri, tmp_path, capsys):
    data, name, path, cfg, store, reg = _set_up(tmp_path, mlflow_uri, kafka_bootstrap)
    mirror = mirror_for(cfg, store, reg)
    mc = client(mlflow_uri)
    assert mc.get_registered_model(name).aliases == {"champion": "1"}

    # the concept changes: a job for two alerts; the worker trains, decides, and mirrors the decision
    with store.transaction() as conn:
        (job,) = RetrainScheduler(cfg, store).on_alerts(conn, "agr", [_alert("a-concept"), _alert("a-perf")],
                                                        int(time.time() * 1000))
    publish_outbox(cfg, store, [cfg.topics.retrain])
    worker, thread = _run_worker(cfg)
    try:
        wait_until(lambda: (r := job_row(store, job.job_id)) is not None and r.status == "done", 90, "job decided")
        wait_until(lambda: mc.get_registered_model(name).aliases.get("champion") == "2", 30, "alias on version 2")
        v2 = reg.get("agr", 2)
        assert (v2.status, v2.mlflow_state, v2.mlflow_version) == ("champion", "synced", 2)
        # the version: tags with the job, the hashes, the decision and both scores
        mv = mc.get_model_version(name, "2")
        assert mv.tags["driftloop.key"] == job.job_id == mv.tags["driftloop.job_id"]
        assert mv.tags["driftloop.artifact_sha256"] == v2.artifact_sha256
        wait_until(lambda: version_tag(mlflow_uri, name, 2, "driftloop.status") == "champion", 30,
                   "version 2 tagged champion")
        mv = mc.get_model_version(name, "2")
        assert mv.tags["driftloop.decision"] == "promoted" and mv.tags["driftloop.metric"] == "accuracy"
        assert float(mv.tags["driftloop.challenger_score"]) > float(mv.tags["driftloop.champion_score"])
        # the run: params, the data window, the alert ids, library versions, git sha; the files
        run = mc.get_run(mv.run_id)
        assert run.info.run_id == v2.mlflow_run_id and run.info.status == "FINISHED"
        tags = run.data.tags
        assert json.loads(tags["driftloop.alert_ids"]) == sorted(job.reason) or \
            json.loads(tags["driftloop.alert_ids"]) == list(job.reason)
        assert json.loads(tags["driftloop.data_window"])["rows"] == 1500
        assert "scikit-learn" in json.loads(tags["driftloop.lib_versions"])
        assert tags.get("mlflow.source.git.commit")
        assert run.data.params["estimator"].endswith("RandomForestClassifier")
        assert run.data.metrics["challenger_accuracy"] > run.data.metrics["champion_accuracy"]
        files = {a.path for a in mc.list_artifacts(mv.run_id, "model")}
        assert {"model/model.skops", "model/MLmodel", "model/reference.json.gz", "model/holdout.json.gz"} <= files
        got = mc.download_artifacts(mv.run_id, "model/model.skops", str(tmp_path))
        assert hashlib.sha256(Path(got).read_bytes()).hexdigest() == v2.artifact_sha256

        # a second job on the same concept: no better, rejected, tagged so with both scores
        job2 = RetrainScheduler(cfg, store).enqueue_manual("agr", requested_by="test")
        publish_outbox(cfg, store, [cfg.topics.retrain])
        wait_until(lambda: job_row(store, job2.job_id).status == "done", 90, "job 2 decided")
        wait_until(lambda: version_tag(mlflow_uri, name, 3, "driftloop.status") == "rejected", 30,
                   "version 3 tagged rejected")
        rej = mc.get_model_version(name, "3").tags
        assert rej["driftloop.decision"] == "rejected" and {"driftloop.challenger_score",
                                                           "driftloop.champion_score"} <= set(rej)
        assert mc.get_registered_model(name).aliases == {"champion": "2"}
    finally:
        worker.stop()
        thread.join(60)

    # rollback (the CLI): the alias moves back with driftloop's champion
    assert cli_main(["models", "rollback", "-c", str(path), "agr", "--no-publish"]) == 0
    assert mc.get_registered_model(name).aliases == {"champion": "1"}
    # someone moves the alias by hand in MLflow: recorded once, as an external change
    mc.set_registered_model_alias(name, "champion", "3")
    mirror.sync()
    mirror.sync()
    ext = [h for h in history_events(store) if h.event == "external_change"]
    assert len(ext) == 1 and ext[0].details["mlflow"]["found"] == 3 and ext[0].details["mlflow"]["expected"] == 1
    assert reg.champion("agr").version == 1          # driftloop's champion is its own decision
    # ... and deletes that version in MLflow: reported (history, the version marked), nothing crashes
    mc.delete_model_version(name, "3")
    mirror.sync()
    report = mirror.sync()
    assert not report.errors
    deleted = [h for h in history_events(store) if h.event == "mlflow_deleted"]
    assert len(deleted) == 1 and deleted[0].version == 3 and reg.get("agr", 3).mlflow_state == "deleted"
    assert reg.load_model("agr", 3) is not None       # driftloop's own copy still loads (SHA-256 checked)

    # models show: the same answers as on the local backend, with MLflow's numbers beside
    capsys.readouterr()
    assert cli_main(["models", "show", "-c", str(path), "agr", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["version"]["mlflow_version"] == 1 and out["mlflow"]["alias_seen"] is None
    events = [(h["event"], h["version"], h["mlflow_version"]) for h in out["history"]]
    assert events == [("registered", 1, 1), ("promoted", 1, 1), ("promoted", 2, 2), ("rejected", 3, 3),
                      ("rolled_back", 2, 2), ("external_change", 3, 3), ("mlflow_deleted", 3, 3)]
    assert cli_main(["models", "list", "-c", str(path), "agr"]) == 0
    listing = capsys.readouterr().out
    assert "mlflow" in listing.splitlines()[0] and "3 (deleted)" in listing


def _alert(alert_id):
    from tests.retrain.helpers import Alert

    return Alert(alert_id)


def test_mlflow_down_when_the_job_decides_the_decision_waits(kafka_bootstrap, mlflow_uri, tmp_path):
    """The server goes away after the challenger is trained, before the decision: the job is not
    failed, its attempt is given back, it waits while MLflow is down, and once MLflow answers it
    is decided once, with one run and one version."""
    relay = Relay(mlflow_uri)
    try:
        data, name, _, cfg, store, _ = _set_up(tmp_path, relay.url, kafka_bootstrap)
        job = RetrainScheduler(cfg, store).enqueue_manual("agr", requested_by="test")
        publish_outbox(cfg, store, [cfg.topics.retrain])
        outcomes = []
        fits = []

        def after_fit(_job):          # MLflow goes down between the fit and the decision (first attempt)
            fits.append(1)
            if len(fits) == 1:
                relay.cut()

        def on_outcome(o):
            outcomes.append(o.status)
            if outcomes.count("retry") == 2:      # it waited twice (once claimed, once unclaimed): back up
                relay.restore()

        worker, thread = _run_worker(cfg, train_hook=after_fit, on_outcome=on_outcome)
        try:
            wait_until(lambda: job_row(store, job.job_id).status == "done", 120, "job decided after MLflow is back")
            wait_until(lambda: client(mlflow_uri).get_registered_model(name).aliases.get("champion") == "2", 30,
                       "the alias on the job's version")
        finally:
            worker.stop()
            thread.join(60)
        row = job_row(store, job.job_id)
        assert outcomes == ["retry", "retry", "done"], outcomes
        assert (row.decision, row.attempts, row.give_backs) == ("promoted", 1, 1)   # the outage's attempt given back
        assert len(versions_with_key(mlflow_uri, name, job.job_id)) == 1
        assert len(runs_with_key(mlflow_uri, data["registry"]["mlflow"]["experiment"], job.job_id)) == 1
        assert client(mlflow_uri).get_registered_model(name).aliases == {"champion": "2"}
        assert [h.event for h in history_events(store) if h.job_id == job.job_id] == ["promoted"]
    finally:
        relay.close()


def test_worker_killed_between_create_model_version_and_the_alias_move(kafka_bootstrap, mlflow_uri, tmp_path):
    """SIGKILL of a real worker process right after MLflow created the job's version, before
    driftloop recorded it or moved the alias: after a restart, exactly one MLflow version for the
    job, one decision, and the alias on it."""
    data, name, path, cfg, store, reg = _set_up(tmp_path, mlflow_uri, kafka_bootstrap)
    job = RetrainScheduler(cfg, store).enqueue_manual("agr", requested_by="test")
    publish_outbox(cfg, store, [cfg.topics.retrain])
    mc = client(mlflow_uri)

    log_a, log_b = tmp_path / "worker-a.log", tmp_path / "worker-b.log"
    a = spawn("retrain-worker", "-c", str(path), log=log_a, env={PAUSE_ENV: "120"})
    try:
        wait_until(lambda: "pausing after MLflow's create_model_version" in log_a.read_text(), 120,
                   "worker A paused right after create_model_version", proc=a, log=log_a)
        # MLflow has the version; driftloop has decided but not recorded it, the alias is still on v1
        assert [v.version for v in versions_with_key(mlflow_uri, name, job.job_id)] == ["2"]
        assert job_row(store, job.job_id).status == "done" and reg.get("agr", 2).mlflow_state == "pending"
        assert mc.get_registered_model(name).aliases == {"champion": "1"}
    finally:
        a.send_signal(signal.SIGKILL)
        a.wait(10)
    b = spawn("retrain-worker", "-c", str(path), log=log_b)
    try:
        wait_until(lambda: mc.get_registered_model(name).aliases.get("champion") == "2", 120,
                   "worker B's mirror moved the alias to the job's version", proc=b, log=log_b)
        wait_until(lambda: reg.get("agr", 2).mlflow_state == "synced", 30, "version 2 recorded", proc=b, log=log_b)
    finally:
        stop_process(b, log=log_b)
    assert [v.version for v in versions_with_key(mlflow_uri, name, job.job_id)] == ["2"]
    assert sorted(v.version for v in mc.search_model_versions(f"name = '{name}'")) == ["1", "2"]
    assert len(runs_with_key(mlflow_uri, data["registry"]["mlflow"]["experiment"], job.job_id)) == 1
    assert "pausing after MLflow's create_model_version" not in log_b.read_text()     # found, not created again
    row = job_row(store, job.job_id)
    assert (row.status, row.decision, row.attempts) == ("done", "promoted", 1)
    assert [h.event for h in history_events(store) if h.job_id == job.job_id] == ["promoted"]
    assert reg.get("agr", 2).mlflow_version == 2 and reg.champion("agr").version == 2


def test_two_versions_from_one_retried_request_the_lowest_stays(kafka_bootstrap, mlflow_uri, tmp_path, monkeypatch,
                                                                 capsys):
    """MLflow's HTTP client resent a ``create_model_version`` the server had already acted on: two
    versions carry one ``driftloop.key``. Here every such request is sent twice to the real server
    (the retry), in both places the mirror meets it: v1's registration, whose pass finds the two
    right after creating them; and a job's promoted version, whose pass ends there (the retry's
    answer is lost too), so the two are found by the next pass, `driftloop models sync` (racing
    another process's pass to the delete). Each time exactly one version stays for the key, the
    lowest, with the alias on it, and driftloop records that number."""
    made: list[tuple[str, int]] = []          # (driftloop.key, MLflow version) of every version MLflow made
    real_create = MlflowGateway.create_version

    def create_version_retried(self, name, run_id, artifact_path, tags):
        for _ in range(2):                    # the request, then the client's retry of it
            made.append((tags["driftloop.key"], real_create(self, name, run_id, artifact_path, tags)))
        if len(made) > 2:                     # the job's version: the retry's answer is lost as well
            raise MlflowUnavailable(f"creating a version of {name!r}: connection reset (test)")
        return made[-1][1]

    monkeypatch.setattr(MlflowGateway, "create_version", create_version_retried)
    # v1's pass (in _set_up) made two versions and kept the lowest
    data, name, path, cfg, store, reg = _set_up(tmp_path, mlflow_uri, kafka_bootstrap, poll_s=3600)
    mc = client(mlflow_uri)
    [(key1, m1), (key1_again, m1_dup)] = made
    assert key1 == key1_again and m1 < m1_dup
    assert [int(v.version) for v in versions_with_key(mlflow_uri, name, key1)] == [m1]
    assert reg.get("agr", 1).mlflow_version == m1 and mc.get_registered_model(name).aliases == {"champion": str(m1)}

    checked = mirror_state(store).checked_at
    worker, thread = _run_worker(cfg)
    try:
        # the job only once the worker's mirror thread made its first pass (its next is an hour
        # away): the pass after the decision is the one that meets the job's version
        wait_until(lambda: mirror_state(store).checked_at != checked, 120, "the mirror thread's first pass")
        job = RetrainScheduler(cfg, store).enqueue_manual("agr", requested_by="test")
        publish_outbox(cfg, store, [cfg.topics.retrain])
        wait_until(lambda: (r := job_row(store, job.job_id)) is not None and r.status == "done", 120, "job decided")
        wait_until(lambda: len(made) == 4, 60, "the worker's pass created the job's version (twice)")
    finally:
        worker.stop()
        thread.join(120)
    assert not thread.is_alive()
    [(key2, m2), (key2_again, m2_dup)] = made[2:]
    assert key2 == key2_again == job.job_id and m1_dup < m2 < m2_dup
    # driftloop decided (v2 champion) but recorded no MLflow version; MLflow holds two for the job
    assert job_row(store, job.job_id).decision == "promoted"
    v2 = reg.get("agr", 2)
    assert (v2.status, v2.mlflow_state, v2.mlflow_version) == ("champion", "pending", None)
    assert sorted(int(v.version) for v in versions_with_key(mlflow_uri, name, job.job_id)) == [m2, m2_dup]
    assert mc.get_registered_model(name).aliases == {"champion": str(m1)}

    # `models sync` finds the two; another process's pass (a second worker's mirror) deletes the
    # duplicate between this pass's search and its own delete: already gone is as good as deleted
    real_delete = MlflowGateway.delete_version

    def delete_after_another_pass(self, name, version):
        mc.delete_model_version(name, str(version))
        real_delete(self, name, version)

    monkeypatch.setattr(MlflowGateway, "delete_version", delete_after_another_pass)
    capsys.readouterr()
    assert cli_main(["models", "sync", "-c", str(path), "agr"]) == 0, capsys.readouterr().err
    assert f"agr v2 is MLflow {name} version {m2}" in capsys.readouterr().out
    assert [int(v.version) for v in versions_with_key(mlflow_uri, name, job.job_id)] == [m2]
    assert sorted(int(v.version) for v in mc.search_model_versions(f"name = '{name}'")) == [m1, m2]
    [run] = runs_with_key(mlflow_uri, data["registry"]["mlflow"]["experiment"], job.job_id)   # one run still
    v2 = reg.get("agr", 2)
    assert (v2.mlflow_state, v2.mlflow_version, v2.mlflow_run_id) == ("synced", m2, run.info.run_id)
    assert mc.get_registered_model(name).aliases == {"champion": str(m2)}
    tags = mc.get_model_version(name, str(m2)).tags
    assert (tags["driftloop.version"], tags["driftloop.status"], tags["driftloop.decision"]) == ("2", "champion",
                                                                                                 "promoted")
    assert mc.get_model_version(name, str(m1)).tags["driftloop.status"] == "archived"
    # the deleted duplicates are driftloop's own clean-up: no history rows, one decision for the job
    assert [h.event for h in history_events(store)] == ["registered", "promoted", "promoted"]
    assert [h.event for h in history_events(store) if h.job_id == job.job_id] == ["promoted"]
    assert not mirror_for(cfg, store, reg).sync().done          # nothing left to do
