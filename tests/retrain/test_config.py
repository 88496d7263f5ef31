"""The registry and retrain sections: defaults, and clear errors naming the key."""
from __future__ import annotations

import pytest

from driftloop.core.config import ConfigError, load_config_dict
from driftloop.core.config.retrain import RegistryConfig, RetrainPolicy, registry_config, retrain_policy, validate


def _cfg(retrain=None, registry=None, task="classification"):
    return load_config_dict({"models": {"m": {"task": task, "features": {"x": "numeric"},
                                               "retrain": retrain or {}}},
                             "registry": registry or {}}, base_dir="/srv/dl", environ={})


def test_defaults_are_documented_values():
    p = retrain_policy(_cfg(), "m")
    assert (p.enabled, p.min_severity, p.min_examples, p.cooldown_s, p.schedule) == (True, "critical", 1000, 3600.0, None)
    assert "stale_stream" not in p.on_kinds and "concept_drift" in p.on_kinds
    assert (p.holdout_fraction, p.min_delta, p.alpha, p.primary_metric) == (0.2, 0.0, 0.05, "accuracy")
    assert retrain_policy(_cfg(task="regression"), "m").primary_metric == "rmse"
    reg = registry_config(_cfg())
    assert str(reg.artifact_path) == "/srv/dl/artifacts" and reg.worker_group_id == "driftloop-retrain"


@pytest.mark.parametrize("section, message", [
    ({"min_examples": 0}, "models.m.retrain.min_examples: must be positive"),
    ({"holdout_fraction": 1.5}, "models.m.retrain.holdout_fraction: must be between 0 and 1"),
    ({"metric": "rmse"}, "models.m.retrain.metric: 'rmse' is not a classification metric"),
    ({"min_severity": "fatal"}, "models.m.retrain.min_severity"),
    ({"schedule": "every day"}, "models.m.retrain.schedule: 'every day' is not a 5-field crontab"),
    ({"recipe": {"estimator": "sklearn.nope.Model"}}, "models.m.retrain.recipe.estimator: cannot import module"),
    ({"recipe": {"estimator": "sklearn.linear_model.LogisticRegression", "params": {"Cee": 1}}},
     "models.m.retrain.recipe.params: sklearn.linear_model.LogisticRegression does not accept"),
    ({"recipe": {"factory": "json:loads", "estimator": "sklearn.linear_model.Ridge"}}, "not both"),
    ({"recipe": {"factory": "json.loads"}}, "must be 'module:function'"),
    ({"cooldown": 5}, "unknown field `cooldown`"),
    ({"task": "regression"}, "models.m.retrain.task: unknown key"),
])
def test_invalid_retrain_sections_name_the_key(section, message):
    with pytest.raises(ConfigError) as err:
        validate(_cfg(retrain=section))
    assert message in str(err.value)


def test_invalid_registry_section():
    with pytest.raises(ConfigError, match=r"registry.max_attempts: must be positive"):
        validate(_cfg(registry={"max_attempts": 0}))
    with pytest.raises(ConfigError, match="unknown field `artifacts`"):
        RegistryConfig.from_dict({"artifacts": "x"})


def test_schedule_and_factory_accepted():
    p = RetrainPolicy.from_dict({"schedule": "0 3 * * 1", "timezone": "Europe/Berlin",
                                 "recipe": {"factory": "tests.retrain.test_config:make_model", "params": {"C": 2.0}}},
                                task="classification")
    assert p.schedule == "0 3 * * 1" and p.recipe.factory.endswith(":make_model")


def make_model(C: float = 1.0):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C)
