"""The MLflow backend's pure parts: its configuration (errors name the key), the default install
without MLflow, hostile answers and MLmodel files, the decision tags. The paths that register,
promote and load are tested against the real server (test_mlflow_registry.py, test_mlflow_import.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from driftloop.core.config import ConfigError, load_config_dict
from driftloop.core.config.retrain import registry_config, validate
from retrain.mlflow_client import MlflowGateway, MlflowNotFound, MlflowRefused, MlflowUnavailable
from retrain.mlflow_registry import _decision_tags, version_key
from retrain.mlmodel import MLmodelError, read_sklearn_flavour
from retrain.registry import VersionInfo

ROOT = Path(__file__).resolve().parents[2]


def _cfg(registry):
    return load_config_dict({"models": {"m": {"task": "classification", "features": {"x": "numeric"}}},
                             "registry": registry}, base_dir="/srv/dl", environ={})


def test_defaults_and_model_names():
    reg = registry_config(_cfg({"backend": "mlflow", "mlflow": {"tracking_uri": "http://mlflow:5000",
                                                                "model_names": {"m": "fraud-model"}}}))
    s = reg.mlflow_settings
    assert (s.experiment, s.alias, s.allow_pickle_import, s.poll_s, s.http_retries) == ("driftloop", "champion",
                                                                                         False, 30.0, 1)
    assert s.model_name("m") == "fraud-model" and s.model_name("other") == "other"
    assert registry_config(_cfg({})).backend == "local"
    # kept but unused with the local backend (the README's block; DRIFTLOOP__REGISTRY__BACKEND switches)
    assert registry_config(_cfg({"mlflow": {"tracking_uri": "http://h:1"}})).backend == "local"


@pytest.mark.parametrize("registry, message", [
    ({"backend": "mlflow"}, "registry.mlflow.tracking_uri: required with registry.backend: mlflow"),
    ({"backend": "mlflow", "mlflow": {}}, "registry.mlflow.tracking_uri: required"),
    ({"backend": "mlflow", "mlflow": {"tracking_uri": "file:///tmp/mlruns"}}, "registry.mlflow.tracking_uri: "),
    ({"backend": "mlflow", "mlflow": {"tracking_uri": "http://h:1", "alias": "latest"}}, "registry.mlflow.alias: "),
    ({"backend": "mlflow", "mlflow": {"tracking_uri": "http://h:1", "alias": "v3"}}, "registry.mlflow.alias: "),
    ({"backend": "mlflow", "mlflow": {"tracking_uri": "http://h:1", "poll_s": 0}}, "registry.mlflow.poll_s: must be"),
    ({"backend": "mlflow", "mlflow": {"tracking_uri": "http://h:1", "model_names": {"m": "a/b"}}},
     "registry.mlflow.model_names.m: "),
    ({"backend": "mlflow", "mlflow": {"tracking_uri": "http://h:1", "model_names": {"nope": "x"}}},
     "registry.mlflow.model_names.nope: no model named 'nope'"),
    ({"backend": "mlflow", "mlflow": {"tracking_uri": "http://h:1", "trackinguri": "x"}}, "unknown field `trackinguri`"),
    ({"backend": "mflow"}, "registry.backend"),
])
def test_invalid_mlflow_sections_name_the_key(registry, message):
    with pytest.raises(ConfigError) as err:
        validate(_cfg(registry))
    assert message in str(err.value)


def test_backend_mlflow_without_the_extra_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)       # as if mlflow-skinny were not installed
    with pytest.raises(ConfigError, match=r"registry.backend: mlflow needs the MLflow client.*pip install "
                                          r"'driftloop\[mlflow\]'"):
        validate(_cfg({"backend": "mlflow", "mlflow": {"tracking_uri": "http://h:1"}}))


def test_the_default_install_never_imports_mlflow():
    """The worker, the CLI and the registry on the local backend, with mlflow made unimportable."""
    code = ("import sys; sys.modules['mlflow'] = None\n"
            "import driftloop.app.cli, retrain.worker, retrain.mlflow_registry, retrain.mlflow_import\n"
            "from driftloop.core.config import load_config_dict\n"
            "from driftloop.core.config.retrain import validate\n"
            "validate(load_config_dict({'models': {'m': {'task': 'classification', 'features': {'x': 'numeric'}}}},"
            " environ={}))\n"
            "from retrain.mlflow_client import import_mlflow, MlflowMissing\n"
            "try:\n    import_mlflow()\nexcept MlflowMissing as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install 'driftloop[mlflow]'" in out.stdout


def test_a_server_that_is_not_there_is_unavailable_not_refused():
    from retrain.mlflow_client import MlflowConfig
    from tests.fault_helpers import free_port

    gw = MlflowGateway(MlflowConfig(tracking_uri=f"http://127.0.0.1:{free_port()}", http_retries=0,
                                    http_timeout_s=2))
    with pytest.raises(MlflowUnavailable, match="not reachable"):
        gw.ping()


class _Answers:
    """A stand-in client returning fixed (hostile) answers: the checks are pure logic."""

    def __init__(self, **answers):
        self.answers = answers

    def __getattr__(self, name):
        return lambda *a, **k: self.answers[name]


def _gateway(**answers):
    from retrain.mlflow_client import MlflowConfig

    gw = MlflowGateway(MlflowConfig(tracking_uri="http://mlflow.invalid"))
    gw._client = _Answers(**answers)
    return gw


@pytest.mark.parametrize("uri", ["file:///etc", "/etc/passwd", "runs:/abc/../../x", "C:/models"])
def test_download_locations_on_this_host_are_refused(uri):
    with pytest.raises(MlflowRefused, match="does not download from"):
        _gateway(get_model_version_download_uri=uri).download_uri("m", 1)


def test_hostile_answers_are_refused():
    from types import SimpleNamespace

    rm = SimpleNamespace(aliases={"champion": "1; DROP"})
    with pytest.raises(MlflowRefused, match="invalid version of alias"):
        _gateway(get_registered_model=rm).alias_target("m", "champion")
    with pytest.raises(MlflowRefused, match="not a map"):
        _gateway(get_registered_model=SimpleNamespace(aliases=["champion"])).alias_target("m", "champion")
    with pytest.raises(MlflowNotFound, match="no alias 'champion'"):
        _gateway(get_registered_model=SimpleNamespace(aliases={})).version_by_alias("m", "champion")


@pytest.mark.parametrize("text, message", [
    ("- a list", "`flavors` is missing"),
    ("flavors: {python_function: {}}", "not a scikit-learn model"),
    ("flavors: {sklearn: {pickled_model: m.bin, serialization_format: joblib}}", "unknown format 'joblib'"),
    ("flavors: {sklearn: {serialization_format: skops}}", "pickled_model: missing"),
    ("flavors: {sklearn: {pickled_model: /etc/passwd}}", "is not a file inside the model's folder"),
    ("flavors: {sklearn: {pickled_model: absent.skops, serialization_format: skops}}", "not a file inside"),
    ("!!python/object:os.system ls", "unreadable"),
])
def test_hostile_mlmodel_files(tmp_path, text, message):
    (tmp_path / "MLmodel").write_text(text)
    with pytest.raises(MLmodelError, match=message):
        read_sklearn_flavour(tmp_path)


def test_a_missing_format_is_pickle(tmp_path):
    (tmp_path / "model.pkl").write_bytes(b"x")
    (tmp_path / "MLmodel").write_text("flavors: {sklearn: {pickled_model: model.pkl, skops_trusted_types: [os.system]}}")
    f = read_sklearn_flavour(tmp_path)
    assert f.serialization_format == "pickle" and f.listed_trusted_types == ["os.system"]


def _version(**kw):
    base = dict(model="m", version=3, status="rejected", source="retrain", job_id=None, created_at=1700000000000,
                task="classification", features={}, classes=None, artifact_path="a", artifact_sha256="0" * 64,
                artifact_format="skops", trusted_types=[], reference_path="r", reference_sha256="1" * 64,
                reference_rows=1, holdout_path=None, holdout_sha256=None, holdout_rows=None, estimator=None,
                params={}, metrics={}, data_window={}, code_version=None, library_versions={}, note=None)
    return VersionInfo(**(base | kw))


def test_decision_tags_offline_and_shadow():
    offline = _version(metrics={"primary": "accuracy", "challenger": {"accuracy": 0.81}, "champion": {"accuracy": 0.8}})
    assert _decision_tags(offline) == {"driftloop.decision": "rejected", "driftloop.metric": "accuracy",
                                       "driftloop.challenger_score": "0.81", "driftloop.champion_score": "0.8"}
    shadow = _version(status="champion", metrics={"phase": "shadow", "primary": "accuracy",
                                                  "live": {"shadow_metric": 0.9, "served_metric": 0.7}})
    assert _decision_tags(shadow)["driftloop.challenger_score"] == "0.9"
    assert _decision_tags(_version(status="archived", metrics=offline.metrics)) == {}
    assert version_key(offline) == "m/3@1700000000000" and version_key(_version(job_id="j1")) == "j1"
