"""Detectors inside the batch transaction: detections, saved state, rollback to stored state."""
from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from consumers.ingest import commit, prepare
from driftloop.core.config import load_config_dict
from driftloop.core.store import Store
from driftloop.kafka.offsets import Fenced
from driftloop.monitoring.analysis import DriftAnalyser
from tests.consumers.test_ingest_unit import NOW, Rec

SETTINGS = {"window_size": 1000, "warmup": 500, "multivariate": False, "calibration_draws": 20}


@pytest.fixture
def setup(tmp_path):
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"amount": rng.normal(50, 10, 4000), "country": rng.choice(["DE", "FR"], 4000),
                        "label": rng.choice([0, 1], 4000)})
    ref.to_csv(tmp_path / "ref.csv", index=False)
    cfg = load_config_dict({"models": {"fraud": {
        "task": "classification", "features": {"amount": "numeric", "country": "categorical"},
        "reference": "ref.csv", "detectors": SETTINGS}}}, base_dir=tmp_path, environ={})
    store = Store(f"sqlite:///{tmp_path}/t.db")
    store.create_schema()
    yield cfg, store, rng
    store.dispose()


def events(rng, start, n, shift=0.0):
    return [orjson.dumps({"event_id": f"e{i}", "model": "fraud", "ts": NOW - 10**6 + i,
                          "features": {"amount": float(rng.normal(50 + shift, 10)),
                                       "country": str(rng.choice(["DE", "FR"]))},
                          "prediction": int(rng.integers(2))}) for i in range(start, start + n)]


def run(cfg, store, analyser, values, offset, expected):
    recs = [Rec(cfg.topics.predictions, 0, offset + j, v) for j, v in enumerate(values)]
    return commit(store, cfg, prepare(recs, cfg, NOW), group="g", expected=expected, now=NOW, analyser=analyser)


def test_detections_and_state_saved_in_the_transaction(setup):
    cfg, store, rng = setup
    seen = []
    an = DriftAnalyser(cfg, store, on_detections=lambda conn, model, dets, now: seen.extend(dets))
    P = cfg.topics.predictions
    run(cfg, store, an, events(rng, 0, 2000), 0, {(P, 0): None})
    assert seen == []
    run(cfg, store, an, events(rng, 2000, 2000, shift=8.0), 2000, {(P, 0): 2000})
    assert any(d.firing and d.feature == "amount" and d.kind == "data_drift" for d in seen)
    stored = store.load_detector_state("fraud")
    assert stored == an.monitors["fraud"].snapshot()
    # a restarted analyser continues from the stored state
    again = DriftAnalyser(cfg, store)
    assert again.monitors["fraud"].snapshot() == stored


def test_fenced_batch_is_refused_before_the_detectors_see_it(setup):
    cfg, store, rng = setup
    an = DriftAnalyser(cfg, store)
    P = cfg.topics.predictions
    run(cfg, store, an, events(rng, 0, 1500), 0, {(P, 0): None})
    committed = store.load_detector_state("fraud")
    with pytest.raises(Fenced):
        run(cfg, store, an, events(rng, 1500, 1500), 1500, {(P, 0): 999})  # another consumer moved it
    assert an.monitors["fraud"].snapshot() == committed


def test_rollback_restores_the_committed_state(setup):
    cfg, store, rng = setup

    def alerting_fails(conn, model, dets, now):
        raise RuntimeError("alert store unavailable")

    an = DriftAnalyser(cfg, store, on_detections=alerting_fails)
    P = cfg.topics.predictions
    run(cfg, store, an, events(rng, 0, 1500), 0, {(P, 0): None})
    committed = store.load_detector_state("fraud")
    with pytest.raises(RuntimeError):
        run(cfg, store, an, events(rng, 1500, 1500, shift=8.0), 1500, {(P, 0): 1500})
    assert store.load_detector_state("fraud") == committed   # the transaction rolled back
    assert an.monitors["fraud"].snapshot() != committed     # the detectors saw the failed batch...
    an.rollback()
    assert an.monitors["fraud"].snapshot() == committed     # ...and are back to the stored state


def test_two_processes_hand_a_model_over_through_the_store(setup, tmp_path):
    """Process B takes over after process A (a rebalance): B reloads A's state before its batch,
    so the detectors end exactly where one process would have."""
    cfg, store, rng = setup
    P = cfg.topics.predictions
    batches = [events(rng, 0, 1500), events(rng, 1500, 1500, shift=8.0), events(rng, 3000, 1500)]
    a, b = DriftAnalyser(cfg, store), DriftAnalyser(cfg, store)    # both load at start
    run(cfg, store, a, batches[0], 0, {(P, 0): None})
    run(cfg, store, b, batches[1], 1500, {(P, 0): 1500})
    run(cfg, store, a, batches[2], 3000, {(P, 0): 3000})
    solo_store = Store(f"sqlite:///{tmp_path}/solo.db")
    solo_store.create_schema()
    solo = DriftAnalyser(cfg, solo_store)
    for i, values in enumerate(batches):
        run(cfg, solo_store, solo, values, 1500 * i, {(P, 0): None if i == 0 else 1500 * i})
    assert store.load_detector_state("fraud") == solo_store.load_detector_state("fraud")
    solo_store.dispose()


def _drift_history(store):
    from driftloop.monitoring.history import read_drift_history

    with store.engine.connect() as conn:
        return [(r["seq"], r["statistic"], r["window_start"], r["window_end"])
                for r in read_drift_history(conn, "fraud", features=["amount"], kinds=["data_drift"])]


def test_every_window_is_in_the_history_however_the_batches_cut_the_stream(setup, tmp_path):
    """One batch that completes four windows records four, the same rows as four batches of a
    window each (the status holds only the last window; the monitors log one per window)."""
    cfg, store, rng = setup
    values = events(rng, 0, 2000) + events(rng, 2000, 2000, shift=8.0)
    P = cfg.topics.predictions
    run(cfg, store, DriftAnalyser(cfg, store), values, 0, {(P, 0): None})
    bulk = _drift_history(store)
    apart = Store(f"sqlite:///{tmp_path}/apart.db")
    apart.create_schema()
    try:
        an = DriftAnalyser(cfg, apart)
        for k in range(4):
            run(cfg, apart, an, values[1000 * k: 1000 * (k + 1)], 1000 * k, {(P, 0): 1000 * k or None})
        assert [r[0] for r in bulk] == [1, 2, 3, 4]
        assert bulk == _drift_history(apart)
    finally:
        apart.dispose()
