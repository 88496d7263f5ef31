"""Loading a model trusts only the configuration, never the database; registry files resolve
inside ``registry.artifact_dir`` or are refused."""
from __future__ import annotations

import hashlib
import shutil

import pytest
import skops.io as sio

from driftloop.core.config import ConfigError
from driftloop.core.store import Store
from driftloop.core.tables import model_versions
from retrain.artifacts import ArtifactError, UntrustedArtifactError
from retrain.registry import Registry
from tests.retrain.helpers import agrawal, config_data, fitted_model, frame, write_config
from tests.retrain.test_worker_unit import alert_job, champion_file, env, rec  # noqa: F401  (fixtures)

ROWS = agrawal(400, function=0, seed=3)
EVIL = f"{__name__}.Evil"


class Evil:
    """Any importable type: a module an attacker can name is code skops would import and build."""


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ext") / "model.skops"
    sio.dump(fitted_model(ROWS), path)
    return path


def make(tmp_path, model_file, **registry):
    data = config_data(tmp_path)
    data["registry"].update(registry)
    _, cfg = write_config(tmp_path, data)
    store = Store.from_config(cfg.store)
    store.create_schema()
    reg = Registry(cfg, store)
    reg.register("agr", model_file, frame(ROWS), actor="t", trust=sio.get_untrusted_types(file=model_file),
                 promote=True)
    return cfg, store, reg


def point_version_at(store, path_text: str, data: bytes, trusted: list[str] | None = None, column="artifact") -> None:
    """What someone with write access to the database (not to the configuration) can do."""
    values = {f"{column}_path": path_text, f"{column}_sha256": hashlib.sha256(data).hexdigest()}
    if trusted is not None:
        values["trusted_types"] = trusted
    with store.transaction() as conn:
        conn.execute(model_versions.update().where(model_versions.c.model == "agr").values(**values))


def test_a_type_recorded_in_the_database_is_not_trusted(tmp_path, model_file):
    cfg, store, reg = make(tmp_path, model_file)
    data = sio.dumps(Evil())
    assert sio.get_untrusted_types(data=data) == [EVIL]
    (reg.root / "agr" / "evil.skops").write_bytes(data)
    point_version_at(store, "agr/evil.skops", data, trusted=[EVIL, "numpy.dtype"])
    with pytest.raises(UntrustedArtifactError, match=rf"\['{EVIL}'\].*registry\.trusted_types"):
        reg.load_model("agr", 1)
    store.dispose()


def test_registry_trusted_types_is_what_trusts_a_type(tmp_path, model_file):
    cfg, store, reg = make(tmp_path, model_file, trusted_types=[EVIL])
    data = sio.dumps(Evil())
    (reg.root / "agr" / "evil.skops").write_bytes(data)
    point_version_at(store, "agr/evil.skops", data, trusted=[])
    assert isinstance(reg.load_model("agr", 1), Evil)
    store.dispose()


@pytest.mark.parametrize("bad", [[""], ["not a type"], ["os.system; rm"], "numpy.dtype", [".x"]])
def test_registry_trusted_types_is_validated(tmp_path, bad):
    data = config_data(tmp_path)
    data["registry"]["trusted_types"] = bad
    with pytest.raises(ConfigError, match=r"registry\.trusted_types"):
        write_config(tmp_path, data)


@pytest.mark.parametrize("where", ["dotdot", "absolute", "symlink", "symlinked_folder"])
@pytest.mark.parametrize("column", ["artifact", "reference"])
def test_paths_outside_the_artifact_dir_are_refused(tmp_path, model_file, where, column):
    cfg, store, reg = make(tmp_path, model_file)
    v = reg.get("agr", 1)
    inside = reg.path(getattr(v, f"{column}_path"))
    outside = tmp_path / "elsewhere" / inside.name
    outside.parent.mkdir()
    shutil.copy(inside, outside)
    if where == "dotdot":
        text = "../" * (len(reg.root.parts) + 1) + str(outside).lstrip("/")
    elif where == "absolute":
        text = str(outside)
    elif where == "symlink":
        (reg.root / "agr" / f"link-{inside.name}").symlink_to(outside)
        text = f"agr/link-{inside.name}"
    else:
        (reg.root / "agr" / "linked").symlink_to(outside.parent, target_is_directory=True)
        text = f"agr/linked/{inside.name}"
    point_version_at(store, text, outside.read_bytes(), column=column)
    load = (lambda: reg.load_model("agr", 1)) if column == "artifact" else (lambda: reg.load_reference("agr", 1))
    with pytest.raises(ArtifactError, match=r"resolves to .*elsewhere.*outside registry\.artifact_dir"):
        load()
    assert text in str(pytest.raises(ArtifactError, load).value)  # noqa: RUF061 - the call form reads as one assertion
    store.dispose()


def test_register_refuses_a_trust_the_configuration_would_not_load(tmp_path):
    from driftloop.core.config.retrain import RecipeConfig
    from retrain.recipe import build_estimator
    from tests.retrain.helpers import AGRAWAL

    data = config_data(tmp_path)
    _, cfg = write_config(tmp_path, data)
    store = Store.from_config(cfg.store)
    store.create_schema()
    reg = Registry(cfg, store)
    df = frame(ROWS)
    est = build_estimator(RecipeConfig(**KNN), "classification", AGRAWAL)
    est.fit(df[list(AGRAWAL)], df["label"].to_numpy(dtype=object))
    f = tmp_path / "knn.skops"
    sio.dump(est, f)
    with pytest.raises(UntrustedArtifactError, match=r"KDTree.*registry\.trusted_types"):
        reg.register("agr", f, frame(ROWS), actor="t", trust=sio.get_untrusted_types(file=f))
    assert reg.versions("agr") == []
    store.dispose()


KNN = {"estimator": "sklearn.neighbors.KNeighborsClassifier", "params": {"n_neighbors": 5, "algorithm": "kd_tree"}}


def test_the_worker_fails_a_challenger_it_could_not_load_later(env):
    cfg, store, reg, sched, worker = env(recipe=KNN)
    job = alert_job(store, sched)
    out = worker.handle(rec(job, 0), None)
    assert out.status == "failed", out
    assert "registry.trusted_types" in out.error and "KDTree" in out.error
    assert [v.version for v in reg.versions("agr")] == [1]
    store.dispose()
