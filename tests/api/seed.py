"""A store full of realistic history for the API and dashboard tests (no broker needed).

:func:`seed` streams a drifting classification model through the real detectors
(:class:`detectors.model_monitor.ModelMonitor`), the real alert manager and the real
registry, with a simulated clock, calling :func:`driftloop.monitoring.history.record_detector_statistics`
as the monitor's batch transaction does. What happens, window by window (15 simulated minutes
each, ending now):

* windows 0-9: the stream looks like the reference;
* from window 10: ``amount`` shifts up (data drift, then prediction drift and a performance
  drop: the label now depends on the shifted amount);
* window 18: version 2 is registered and promoted (its sample - the drifted data - becomes the
  reference); the alerts about version 1 resolve;
* window 22 on: ``country`` changes mix (a smaller drift).

With ``segments=True`` (issue 18) the model is configured with ``segments: [country]`` and two
more things happen:

* window 24 on: the model is wrong for Italy (a third of its labels there flip): a segment's
  performance drop that all traffic dilutes;
* window 28 on: the pipeline breaks: 6% of the events carry a country never seen in training
  (``ES``) and 15% of the amounts arrive in the wrong unit (×1000, out of the reference's range).

Run it as a script to serve the dashboard by hand: ``python -m tests.api.seed [PORT] [--segments]``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detectors.batch import LabelledBatch, PredictionBatch
from detectors.model_monitor import ModelMonitor
from driftloop.core.config import Config, load_config_dict
from driftloop.core.store import Store
from driftloop.monitoring.history import record_detector_statistics

WINDOW = 1000
STEP_MS = 15 * 60 * 1000
FEATURES = {"amount": "numeric", "age": "numeric", "country": "categorical"}
SETTINGS = {"window_size": WINDOW, "warmup": WINDOW, "calibration_draws": 20, "bootstrap": 40,
            "multivariate_methods": ["pca"], "min_window": 200}


@dataclasses.dataclass
class Seeded:
    cfg: Config
    store: Store
    monitor: ModelMonitor
    start_ms: int
    end_ms: int
    windows: int
    alert_ids: list[str]


def _frame(rng: np.random.Generator, n: int, shift: float = 0.0, mix: float = 0.5) -> pd.DataFrame:
    amount = rng.lognormal(3.0 + shift, 0.8, n)
    age = rng.normal(40, 12, n)
    country = np.where(rng.uniform(size=n) < mix, "DE", np.where(rng.uniform(size=n) < 0.5, "FR", "IT"))
    # the truth: fraud when amount is large for the age (a shift in amount changes the base rate)
    logit = (np.log(amount) - 3.4) * 2.5 - (age - 40) / 30
    p1 = 1 / (1 + np.exp(-logit))
    label = (rng.uniform(size=n) < p1).astype(int).astype(str)
    return pd.DataFrame({"amount": amount, "age": age, "country": country, "label": label, "_p1": p1})


def _model_scores(df: pd.DataFrame, rng: np.random.Generator, stale: bool) -> np.ndarray:
    """Version 1 learned the old relation; after the shift it is overconfident on large amounts."""
    logit = (np.log(df["amount"].to_numpy()) - 3.4) * 2.5 - (df["age"].to_numpy() - 40) / 30
    if stale:
        logit = logit - 2.0
    p1 = 1 / (1 + np.exp(-(logit + rng.normal(0, 0.3, len(df)))))
    return np.c_[1 - p1, p1]


def _reference(df: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    ref = df[["amount", "age", "country", "label"]].copy()
    ref["prediction"] = np.where(scores[:, 1] >= 0.5, "1", "0")
    ref["score_0"], ref["score_1"] = scores[:, 0], scores[:, 1]
    return ref


SEGMENTS = ["country"]
SEGMENT_SETTINGS = {"segment_min_window": 200}   # Italy's quarter of a window is judged every window
BROKEN_FROM, WRONG_FROM = 28, 24   # segments=True: the pipeline breaks; the model is wrong for Italy


def _break(df: pd.DataFrame, rng: np.random.Generator, w: int) -> None:
    """``segments=True``: from window ``WRONG_FROM`` a third of Italy's labels flip (the model is
    wrong there); from ``BROKEN_FROM`` 6% of the countries are ``ES`` (never seen in training)
    and 15% of the amounts are ×1000 (out of range). In place, after the scores are drawn."""
    n = len(df)
    if w >= WRONG_FROM:
        flip = (df["country"].to_numpy() == "IT") & (rng.uniform(size=n) < 1 / 3)
        df.loc[flip, "label"] = np.where(df.loc[flip, "label"] == "1", "0", "1")
    if w >= BROKEN_FROM:
        df.loc[rng.uniform(size=n) < 0.06, "country"] = "ES"
        df.loc[rng.uniform(size=n) < 0.15, "amount"] *= 1000.0


def make_config(tmp: Path, *, store_url: str | None = None, alerts: dict[str, Any] | None = None,
                segments: bool = False) -> Config:
    model: dict[str, Any] = {"task": "classification", "features": FEATURES}
    if segments:
        model.update(segments=SEGMENTS, detectors=dict(SEGMENT_SETTINGS))
    return load_config_dict({
        "store": {"url": store_url or f"sqlite:///{tmp}/driftloop.db"},
        "models": {"fraud": model},
        "alerts": {"hold_down_s": 600, "group_window_s": 0, "cooldown_s": 600, **(alerts or {})},
        "registry": {"artifact_dir": str(tmp / "artifacts")},
    }, base_dir=tmp)


def _register(conn: Any, registry: Any, version_note: str, now: int, metrics: dict[str, Any],
              event_end: int | None = None) -> int:
    from retrain.artifacts import FileInfo

    fake = FileInfo(path=registry.root / "fraud" / f"{version_note}.skops", sha256=hashlib.sha256(
        version_note.encode()).hexdigest(), size=0, rows=4000)
    version = registry.add_version(
        conn, model="fraud", status="registered", source="retrain", task="classification", features=FEATURES,
        classes=["0", "1"], artifact=fake, reference=fake, holdout=None,
        estimator="sklearn.ensemble.HistGradientBoostingClassifier", params={"max_iter": 100}, metrics=metrics,
        data_window={"start_ts": (now if event_end is None else event_end) - 4 * STEP_MS,
                     "end_ts": now if event_end is None else event_end}, job_id=f"job-{version_note}", note=version_note,
        now=now, lib_versions={"python": "3"})
    registry.record_event(conn, model="fraud", event="registered", version=version, champion_version=None,
                          previous_champion=None, actor="seed", reason="trained", now=now)
    return version


def seed(tmp: Path, *, windows: int = 32, seed: int = 7, end_ms: int | None = None,
         store_url: str | None = None, judged_ms: int | None = None,
         alerts: dict[str, Any] | None = None, segments: bool = False) -> Seeded:
    """Fill a fresh store (SQLite under ``tmp``, or ``store_url``); returns what the tests need.

    ``end_ms``: the event time the last window ends (default: now). ``judged_ms``: a replay's
    wall clock: window ``w`` is judged (and alerts, registry events, history rows stamped) at
    ``judged_ms + w`` ms, so every window is judged within the same second whatever its event
    time (default: each window is judged when it ends, as a live stream is). ``alerts``: settings
    over the seed's alert policy (e.g. ``{"group_window_s": 0.01}`` to group alerts).
    ``segments``: the model judges the segments of ``country`` and the stream breaks in Italy and in
    its pipeline late in the run (see the module's docstring).
    """
    from driftloop.alerts.manager import AlertManager
    from retrain.registry import Registry

    rng = np.random.default_rng(seed)
    cfg = make_config(tmp, store_url=store_url, alerts=alerts, segments=segments)
    store = Store(cfg.store.url)
    store.create_schema()
    end_ms = int(time.time() * 1000) if end_ms is None else end_ms
    start_ms = end_ms - windows * STEP_MS
    ref_df = _frame(rng, 4000)
    mon = ModelMonitor("fraud", "classification", FEATURES, _reference(ref_df, _model_scores(ref_df, rng, False)),
                       {**SETTINGS, **(cfg.models["fraud"].monitor_settings() if segments else {})})
    alerts = AlertManager(cfg, store)
    registry = Registry(cfg, store)
    first = start_ms - STEP_MS if judged_ms is None else judged_ms - 1
    with store.transaction() as conn:
        v1 = _register(conn, registry, "v1", first, {"accuracy": 0.81, "roc_auc": 0.88}, start_ms - STEP_MS)
        registry.make_champion(conn, "fraud", v1)
        registry.record_event(conn, model="fraud", event="promoted", version=v1, champion_version=v1,
                              previous_champion=None, actor="seed", reason="first version", now=first)
    version, pending = str(v1), None
    for w in range(windows):
        event_now = start_ms + (w + 1) * STEP_MS         # the window's end in event time
        now = event_now if judged_ms is None else judged_ms + w   # when it is judged (wall clock)
        shift = 0.6 if w >= 10 else 0.0
        mix = 0.25 if w >= 22 else 0.5
        df = _frame(rng, WINDOW, shift, mix)
        scores = _model_scores(df, rng, stale=(w >= 10 and int(version) == v1))
        pred = np.where(scores[:, 1] >= 0.5, "1", "0").astype(object)
        if segments:
            _break(df, rng, w)
        ts = np.linspace(event_now - STEP_MS, event_now - 1, WINDOW).astype(np.int64)
        with store.transaction() as conn:
            if w == 18:  # retrained on the drifted data: promote version 2, new reference
                v2 = _register(conn, registry, "v2", now, {"accuracy": 0.84, "roc_auc": 0.9}, event_now)
                prev = registry.make_champion(conn, "fraud", v2)
                registry.record_event(conn, model="fraud", event="promoted", version=v2, champion_version=v2,
                                      previous_champion=prev, actor="seed", reason="challenger beat the champion",
                                      now=now,
                                      metrics={"challenger": {"accuracy": 0.84}, "champion": {"accuracy": 0.71}})
                version = str(v2)
                new_ref = _frame(rng, 4000, shift, mix)
                dets = mon.set_reference(_reference(new_ref, _model_scores(new_ref, rng, False)))
                alerts.process(conn, "fraud", version, dets, now)
                pending = None
            batch = PredictionBatch(ts=ts, features={"amount": df["amount"].to_numpy(), "age": df["age"].to_numpy(),
                                                     "country": df["country"].to_numpy().astype(object)},
                                    prediction=pred, scores=scores, classes=["0", "1"], model_version=version)
            dets = mon.update_predictions(batch)
            if pending is not None:  # labels arrive one window late
                dets += mon.update_labelled(pending)
            pending = LabelledBatch(ts=ts, prediction=pred, label=df["label"].to_numpy().astype(object),
                                    scores=scores, classes=["0", "1"], model_version=version,
                                    features=dict(batch.features) if segments else {})
            alerts.process(conn, "fraud", version, dets, now)
            alerts.tick(conn, now)
            record_detector_statistics(conn, "fraud", mon.status(), now)
            store.add_counters(conn, {("fraud", "predictions"): WINDOW, ("fraud", "labels"): WINDOW if w else 0,
                                      ("fraud", "joined"): WINDOW if w else 0, ("fraud", "invalid"): 3,
                                      ("fraud", "duplicates"): 1})
            store.save_detector_state(conn, "fraud", mon.snapshot(), now)
    with store.engine.connect() as c:
        from driftloop.app.api import queries

        ids = [a["alert_id"] for a in queries.alerts_list(c, limit=1000)]
    return Seeded(cfg, store, mon, start_ms, end_ms, windows, ids)


if __name__ == "__main__":  # pragma: no cover - manual use
    import sys
    import tempfile

    from driftloop.app.api import create_app, serve_in_thread

    d = Path(tempfile.mkdtemp())
    args = [a for a in sys.argv[1:] if a != "--segments"]
    s = seed(d, segments="--segments" in sys.argv[1:])
    port = int(args[0]) if args else 8321
    h = serve_in_thread(create_app(s.cfg, s.store, token="dev"), "127.0.0.1", port)
    print(h.url, "token: dev")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        h.stop()
