"""``driftloop models import --from-mlflow``: existing MLflow models (logged by MLflow's own
``mlflow.sklearn.log_model`` on the session's real server) brought under monitoring without
retraining; pickle-based ones refused unless ``registry.mlflow.allow_pickle_import``."""
from __future__ import annotations

import pytest
import skops.io as sio

from driftloop.app.cli import main as cli_main
from driftloop.core.store import Store
from retrain.mlflow_registry import mirror_for
from retrain.registry import Registry
from tests.retrain.helpers import AGRAWAL, agrawal, fitted_model, frame, write_config
from tests.retrain.mlflow_helpers import client, mlflow_config_data

pytestmark = pytest.mark.mlflow


def _log_with_mlflow(uri, name, est, fmt, trusted=None):
    """What an ML team does today: log and register an sklearn model with MLflow's own API."""
    import mlflow
    import mlflow.sklearn

    mlflow.set_tracking_uri(uri)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(est, name="model", serialization_format=fmt, registered_model_name=name,
                                        pip_requirements=["scikit-learn"],
                                        **({"skops_trusted_types": trusted} if trusted else {}))
    return int(info.registered_model_version)


def test_import_skops_model_refuse_pickle_unless_allowed(mlflow_uri, tmp_path, capsys):
    data, name = mlflow_config_data(tmp_path, mlflow_uri)
    path, cfg = write_config(tmp_path, data)
    rows = agrawal(800, function=0, seed=1)
    est = fitted_model(rows)
    frame(rows).to_csv(tmp_path / "ref.csv", index=False)
    sio.dump(est, tmp_path / "est.skops")
    trust = sio.get_untrusted_types(file=tmp_path / "est.skops")
    assert _log_with_mlflow(mlflow_uri, name, est, "skops", trust) == 1
    mc = client(mlflow_uri)
    mc.set_registered_model_alias(name, "champion", "1")
    assert _log_with_mlflow(mlflow_uri, name, est, "pickle") == 2

    # the skops one, by alias, as champion: monitored as driftloop v1 = MLflow version 1
    args = ["models", "import", "-c", str(path), "--from-mlflow", name, "@champion", "--reference",
            str(tmp_path / "ref.csv"), "--promote", "--no-publish", "--trust", *trust]
    assert cli_main(args) == 0
    assert f"imported MLflow {name} version 1 (skops) as agr version 1 as champion" in capsys.readouterr().out
    store = Store.from_config(cfg.store)
    reg = Registry(cfg, store)
    v1 = reg.get("agr", 1)
    assert (v1.source, v1.status, v1.mlflow_version, v1.mlflow_state) == ("mlflow", "champion", 1, "synced")
    assert (reg.load_model("agr", 1).predict(frame(rows[:50])[list(AGRAWAL)]) == est.predict(
        frame(rows[:50])[list(AGRAWAL)])).all()
    assert mc.get_model_version(name, "1").tags["driftloop.imported_as"] == "agr v1"
    assert mc.get_registered_model(name).aliases == {"champion": "1"}     # already there: not moved
    # the same version twice: refused
    assert cli_main(args) == 1
    assert "is driftloop agr version 1 already" in capsys.readouterr().err

    # the pickle one: refused, naming the setting ...
    pickled = ["models", "import", "-c", str(path), "--from-mlflow", name, "2", "--reference",
               str(tmp_path / "ref.csv"), "--no-publish", "--trust", *trust]
    assert cli_main(pickled) == 1
    err = capsys.readouterr().err
    assert "saved with pickle" in err and "registry.mlflow.allow_pickle_import" in err
    assert len(reg.versions("agr")) == 1
    # ... and, allowed by it, loaded once and kept as skops
    data["registry"]["mlflow"]["allow_pickle_import"] = True
    path2, _ = write_config(tmp_path, data)
    pickled[3] = str(path2)
    assert cli_main(pickled) == 0
    v2 = reg.get("agr", 2)
    assert (v2.mlflow_version, v2.artifact_format) == (2, "skops")
    assert reg.load_model("agr", 2) is not None
    store.dispose()


def test_import_a_version_driftloop_mirrored_takes_its_logged_reference(mlflow_uri, tmp_path, capsys):
    """Another driftloop (a new store: a migration, a second region) monitors a version the first
    one mirrored: the reference sample comes from MLflow, SHA-256 checked."""
    data, name = mlflow_config_data(tmp_path, mlflow_uri)
    _, cfg = write_config(tmp_path, data)
    store = Store.from_config(cfg.store)
    store.create_schema()
    rows = agrawal(600, function=0, seed=3)
    sio.dump(fitted_model(rows), tmp_path / "m.skops")
    reg = Registry(cfg, store)
    reg.register("agr", tmp_path / "m.skops", frame(rows), actor="test", promote=True,
                 trust=sio.get_untrusted_types(file=tmp_path / "m.skops"))
    assert not mirror_for(cfg, store, reg).sync().errors
    first = reg.get("agr", 1)
    store.dispose()

    other = dict(data, store={"url": f"sqlite:///{tmp_path}/other.db"},
                 registry=data["registry"] | {"artifact_dir": str(tmp_path / "other-artifacts")})
    path2, cfg2 = write_config(tmp_path, other)
    assert cli_main(["models", "import", "-c", str(path2), "--from-mlflow", name, "--no-publish", "--trust",
                     *sio.get_untrusted_types(file=tmp_path / "m.skops")]) == 0
    store2 = Store.from_config(cfg2.store)
    v = Registry(cfg2, store2).get("agr", 1)
    assert (v.mlflow_version, v.reference_rows, v.source) == (1, 600, "mlflow")
    assert (v.reference_sha256, v.artifact_sha256) == (first.reference_sha256, first.artifact_sha256)
    store2.dispose()
