"""`driftloop demo --fast --registry mlflow` (issue 20) against the session's real MLflow server:
the demo's loop with MLflow as the model registry, and the promotion as MLflow shows it (the
alias, the version's tags, the job's run) and as `driftloop models show` shows it (MLflow's
version numbers beside driftloop's).

The registered model ``loans`` already holds a version driftloop did not make (an ML team's; on a
server used before, also an earlier demo's), so MLflow's numbers of the demo's versions are not
driftloop's and the test tells which one is printed."""
from __future__ import annotations

import json
import re
import uuid

import pytest

from driftloop.app.cli import main as cli_main
from driftloop.app.demo import MODEL
from driftloop.core.config import load_config
from driftloop.core.store import Store
from retrain.registry import Registry
from tests.integration.demo_helpers import run_demo
from tests.retrain.mlflow_helpers import client

pytestmark = [pytest.mark.kafka, pytest.mark.mlflow]


def _a_version_driftloop_did_not_make(mc, name: str) -> int:
    """A version of registered model ``name`` made in MLflow by someone else (with a run of its own)."""
    from mlflow.exceptions import MlflowException

    try:
        mc.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    run = mc.create_run(mc.create_experiment(f"ml-team-{uuid.uuid4().hex[:8]}"))
    mv = mc.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id,
                                 tags={"owner": "ml-team"}, await_creation_for=0)
    return int(mv.version)


def test_demo_loop_on_the_mlflow_backend(kafka_bootstrap, mlflow_uri, tmp_path, capsys, monkeypatch):
    # this process's MLflow client: a generous timeout per request on a loaded machine (the
    # demo's own client follows its configuration, whatever the environment says)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    mc = client(mlflow_uri)
    theirs = _a_version_driftloop_did_not_make(mc, MODEL)
    demo = run_demo(kafka_bootstrap, tmp_path, "--registry", "mlflow", "--mlflow-uri", mlflow_uri)
    # exit code 0: the loop closed and MLflow's alias follows the promotion (the demo checks it too)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "REGISTRY PROMOTED loans v2" in demo.stdout

    cfg = load_config(demo.config_path, environ={})
    store = Store.from_config(cfg.store)
    try:
        reg = Registry(cfg, store)
        v1, v2 = reg.get(MODEL, 1), reg.champion(MODEL)
        [promoted] = [h for h in reg.history(MODEL) if h.event == "promoted" and h.version == 2]
    finally:
        store.dispose()
    assert v2 is not None and v2.version == 2 and v2.job_id and promoted.job_id == v2.job_id
    assert (v1.mlflow_state, v2.mlflow_state) == ("synced", "synced")
    m1, m2 = v1.mlflow_version, v2.mlflow_version
    assert m1 is not None and m2 is not None and theirs < m1 < m2      # MLflow's own numbering

    # MLflow: the alias on the promoted version, which carries the job, the decision and both scores
    assert mc.get_registered_model(MODEL).aliases.get("champion") == str(m2)
    assert f"registered model {MODEL}, alias champion -> version {m2}" in demo.stdout
    tags = mc.get_model_version(MODEL, str(m2)).tags
    metrics = v2.metrics
    primary = metrics["primary"]
    assert tags["driftloop.key"] == tags["driftloop.job_id"] == v2.job_id
    assert (tags["driftloop.version"], tags["driftloop.status"]) == ("2", "champion")
    assert (tags["driftloop.decision"], tags["driftloop.metric"]) == ("promoted", primary)
    assert tags["driftloop.challenger_score"] == f"{metrics['challenger'][primary]:.6g}"
    assert tags["driftloop.champion_score"] == f"{metrics['champion'][primary]:.6g}"
    assert float(tags["driftloop.challenger_score"]) > float(tags["driftloop.champion_score"])
    assert tags["driftloop.artifact_sha256"] == v2.artifact_sha256
    old = mc.get_model_version(MODEL, str(m1)).tags      # the previous champion: driftloop's v1, archived
    assert (old["driftloop.version"], old["driftloop.status"]) == ("1", "archived")
    # ... and the job's run: what caused it, the estimator and its params, the decision's scores
    run = mc.get_run(mc.get_model_version(MODEL, str(m2)).run_id)
    assert run.info.run_id == v2.mlflow_run_id and run.info.status == "FINISHED"
    assert run.data.tags["driftloop.job_id"] == v2.job_id and run.data.tags["driftloop.trigger"] == "alert"
    assert json.loads(run.data.tags["driftloop.alert_ids"]) == promoted.details["alert_ids"] != []
    assert run.data.params["estimator"] == v2.estimator and set(v2.params) <= set(run.data.params)
    assert run.data.metrics[f"challenger_{primary}"] == metrics["challenger"][primary]
    assert run.data.metrics[f"champion_{primary}"] == metrics["champion"][primary]
    assert {"model/model.skops", "model/MLmodel", "model/reference.json.gz"} <= {
        a.path for a in mc.list_artifacts(run.info.run_id, "model")}

    # `driftloop models show`: the champion with MLflow's version number, the history in both numberings
    capsys.readouterr()
    assert cli_main(["models", "show", "-c", str(demo.config_path), MODEL]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^{MODEL} version 2 +\[champion\]", out, re.M), out
    assert re.search(rf"^ +mlflow +{MODEL} version {m2}, run {v2.mlflow_run_id}; alias 'champion' -> {m2} ",
                     out, re.M), out
    assert re.search(rf" promoted +v2/m{m2} +champion: v1/m{m1} -> v2/m{m2} +by demo-worker ", out), out
