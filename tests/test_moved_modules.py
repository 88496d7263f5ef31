"""Names written down before the layout's move (issue 13) still load after it.

A configuration file may name a module by its old path (a retraining recipe's ``factory``; the
demo writes ``driftloop.demo_data:make_estimator`` into the config it generates). Nothing in the
store or in a Kafka message names a module of the moved packages (the apscheduler jobs live in
memory; detector snapshots have their own table in ``detectors.composite``).
"""
from __future__ import annotations

import importlib

import pytest

from driftloop.core.config import load_config_dict
from driftloop.core.config.retrain import import_object, retrain_policy
from driftloop.core.moved import MOVED_MODULES, current_module
from retrain.recipe import build_estimator


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_every_new_path_imports_and_no_old_one_does(old):
    new = MOVED_MODULES[old]
    assert importlib.import_module(new).__name__ == new
    with pytest.raises(ImportError):
        importlib.import_module(old)


def test_a_config_naming_the_old_demo_factory_still_builds_its_estimator():
    cfg = load_config_dict({"models": {"m": {"task": "classification",
                                             "features": {"x": "numeric", "country": "categorical"},
                                             "retrain": {"recipe": {"factory": "driftloop.demo_data:make_estimator",
                                                                    "params": {"max_iter": 5}}}}}},
                           environ={})
    recipe = cfg.models["m"].retrain["recipe"]
    assert recipe["factory"] == "driftloop.demo_data:make_estimator"   # the file is not rewritten
    est = build_estimator(retrain_policy(cfg, "m").recipe, "classification", {"x": "numeric", "country": "categorical"})
    assert type(est).__name__ == "Pipeline"


def test_old_paths_of_submodules_and_dotted_names():
    assert current_module("driftloop.api.routes") == "driftloop.app.api.routes"
    assert current_module("driftloop.apiary") == "driftloop.apiary"
    assert import_object("driftloop.config.ConfigError").__module__ == "driftloop.core.config"
    assert import_object("retrain.config:import_object") is import_object
