"""Shared pieces of the retrain tests: configs, River streams, examples written straight to the store."""
from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import sqlalchemy as sa
import yaml

from driftloop.core.config import Config, load_config
from driftloop.core.store import Store
from driftloop.core.tables import retrain_jobs
from tests.kafka_helpers import isolated_kafka

AGRAWAL = {"salary": "numeric", "commission": "numeric", "age": "numeric", "elevel": "categorical",
           "car": "categorical", "zipcode": "categorical", "hvalue": "numeric", "hyears": "numeric",
           "loan": "numeric"}
FAST_RECIPE = {"estimator": "sklearn.ensemble.RandomForestClassifier",
               "params": {"n_estimators": 30, "min_samples_leaf": 3, "n_jobs": 1}}

_INSERT = ("INSERT INTO examples (model, event_id, pred_ts, model_version, payload, label_ts, label, "
           "created_at, joined_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


def config_data(tmp_path: Path, *, store_url: str | None = None, bootstrap: str = "127.0.0.1:9092",
                retrain: dict[str, Any] | None = None, models: dict[str, Any] | None = None) -> dict[str, Any]:
    """A config dict with unique topics/groups and one Agrawal classifier ``agr``."""
    tag = uuid.uuid4().hex[:10]
    policy = {"min_examples": 500, "cooldown_s": 0, "holdout_fraction": 0.25, "recipe": FAST_RECIPE}
    policy.update(retrain or {})
    return {
        **isolated_kafka(bootstrap, tag),
        "store": {"url": store_url or f"sqlite:///{tmp_path}/driftloop-{tag}.db"},
        "ingest": {"poll_timeout_ms": 200, "max_poll_records": 2000},
        "registry": {"artifact_dir": str(tmp_path / f"artifacts-{tag}"), "worker_group_id": f"retrain-{tag}",
                     "poll_timeout_ms": 200},
        "models": models or {"agr": {"task": "classification", "features": AGRAWAL, "retrain": policy}},
    }


def write_config(tmp_path: Path, data: dict[str, Any]) -> tuple[Path, Config]:
    path = tmp_path / f"config-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, load_config(path, environ={})


def agrawal(n: int, function: int, seed: int) -> list[tuple[dict[str, Any], int]]:
    """``n`` rows of River's Agrawal generator with classification function ``function``;
    categorical features as strings (as a service would send them)."""
    from river.datasets import synth

    out = []
    for x, y in synth.Agrawal(classification_function=function, seed=seed).take(n):
        feats = {k: (str(v) if AGRAWAL[k] == "categorical" else float(v)) for k, v in x.items()}
        out.append((feats, int(y)))
    return out


def frame(rows: list[tuple[dict[str, Any], Any]]) -> pd.DataFrame:
    df = pd.DataFrame([x for x, _ in rows])
    df["label"] = [str(y) for _, y in rows]
    return df


def insert_examples(store: Store, model: str, rows: list[tuple[dict[str, Any], Any]], *, start_ts: int,
                    prefix: str = "e", predictions: list[Any] | None = None, joined_at: int | None = None) -> None:
    """Joined examples written straight into ``examples`` (what the monitor stores), 1 ms apart."""
    joined_at = joined_at or int(time.time() * 1000)
    recs = []
    for i, (x, y) in enumerate(rows):
        pred = predictions[i] if predictions is not None else y
        ev = {"event_id": f"{prefix}{i}", "model": model, "ts": start_ts + i, "features": x, "prediction": pred}
        recs.append((model, f"{prefix}{i}", start_ts + i, None, msgspec.json.encode(ev), start_ts + i,
                     msgspec.json.encode(y), joined_at, joined_at))
    with store.transaction() as conn:
        store.executemany(conn, _INSERT, recs)


def fitted_model(rows: list[tuple[dict[str, Any], Any]], n_estimators: int = 30) -> Any:
    """A RandomForest pipeline fitted on ``rows`` (string labels), as the retrain recipe builds it."""
    from driftloop.core.config.retrain import RecipeConfig
    from retrain.recipe import build_estimator

    recipe = RecipeConfig(estimator="sklearn.ensemble.RandomForestClassifier",
                          params={"n_estimators": n_estimators, "min_samples_leaf": 3, "n_jobs": 1})
    est = build_estimator(recipe, "classification", AGRAWAL)
    df = frame(rows)
    est.fit(df[list(AGRAWAL)], df["label"].to_numpy(dtype=object))
    return est


class Alert(msgspec.Struct):
    """The minimal alert shape the scheduler accepts."""

    alert_id: str
    kind: str = "concept_drift"
    severity: str = "critical"
    status: str = "firing"


def predict(est: Any, rows: list[tuple[dict[str, Any], Any]]) -> np.ndarray:
    return est.predict(frame(rows)[list(AGRAWAL)])


def job_row(store: Store, job_id: str) -> Any:
    """The ``retrain_jobs`` row of a job (None if there is none)."""
    with store.engine.connect() as c:
        return c.execute(sa.select(retrain_jobs).where(retrain_jobs.c.job_id == job_id)).first()


def service_following_v1(tmp_path: Path, data: dict[str, Any]) -> tuple[Any, Any, Store]:
    """A ``MonitorService`` on a fresh store whose registry holds ``agr`` v1 and v2 (Agrawal
    concept 0), v1 champion and the monitor switched to it: the detectors' state on v1 is
    stored. Returns ``(service, registry, store)``; the caller disposes of the store."""
    import skops.io as sio

    from driftloop.app.service import MonitorService
    from retrain.registry import Registry

    # analysis inline: the tests drive this process's switcher and detectors (apart, a child owns them)
    _, cfg = write_config(tmp_path, {**data, "analysis": {"mode": "inline"}})
    store = Store.from_config(cfg.store)
    store.create_schema()
    reg = Registry(cfg, store)
    for version, seed in ((1, 1), (2, 2)):
        rows = agrawal(600, function=0, seed=seed)
        f = tmp_path / f"v{version}.skops"
        sio.dump(fitted_model(rows), f)
        reg.register("agr", f, frame(rows), actor="test", trust=sio.get_untrusted_types(file=f))
    service = MonitorService(cfg)
    reg.promote("agr", 1, actor="test")
    service.switcher.apply("agr", "1", [], "promoted: agr v1")
    service.switcher.switched.clear()
    return service, reg, store
