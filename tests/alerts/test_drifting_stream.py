"""A real drifting stream through the real detectors and the alert service, in process: 15 of
18 features shift at once and on-call gets one grouped page that lists exactly those 15.

The path is the monitor's: ``consumers.ingest.prepare`` + ``commit`` with a ``DriftAnalyser``
whose detections go to ``AlertService.on_detections`` inside the batch transaction; the
scheduler's tick (here called with the batch clock) closes the group window. Alert settings
are the defaults (``group_window_s`` 10, ``group_min`` 2); only a sink is configured.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import orjson
import pandas as pd

from driftloop.alerts import AlertService
from driftloop.alerts import tables as t
from driftloop.alerts.lifecycle import group_fingerprint
from driftloop.core.config import load_config_dict
from driftloop.core.store import Store
from driftloop.monitoring.analysis import DriftAnalyser
from tests.alerts.test_manager import rows
from tests.consumers.test_analysis import run
from tests.consumers.test_ingest_unit import NOW

FEATURES = [f"f{i:02d}" for i in range(18)]
STEADY = {"f03", "f09", "f16"}                       # the three features that do not move
DRIFTED = [f for f in FEATURES if f not in STEADY]   # 15
WINDOW = 1000
# only the univariate data-drift family: the page under test is the data_drift one
DETECTORS = {"window_size": WINDOW, "warmup": 0, "calibration_draws": 20, "multivariate": False,
             "performance": False, "cbpe": False, "concept_drift": False, "prediction_drift": False}


def events(rng: np.random.Generator, start: int, n: int, drift: bool) -> list[bytes]:
    """``n`` prediction events; with ``drift`` every feature but the steady ones moves by 1-1.7 sd."""
    cols = {f: rng.normal(10.0 * i, 1.0 + i / 10, n) for i, f in enumerate(FEATURES)}
    if drift:
        for i, f in enumerate(FEATURES):
            if f in DRIFTED:
                cols[f] = cols[f] + (1.0 + i / 25) * (1.0 + i / 10)
    return [orjson.dumps({"event_id": f"e{start + j}", "model": "fraud", "model_version": "3",
                          "ts": NOW - 10**6 + start + j, "features": {f: float(cols[f][j]) for f in FEATURES},
                          "prediction": int(j % 2)}) for j in range(n)]


def test_fifteen_features_drifting_in_a_real_stream_page_once_with_the_list(tmp_path, receiver):
    rng = np.random.default_rng(11)
    ref = pd.DataFrame({f: rng.normal(10.0 * i, 1.0 + i / 10, 4000) for i, f in enumerate(FEATURES)})
    ref["label"] = rng.integers(0, 2, len(ref))
    ref.to_csv(tmp_path / "ref.csv", index=False)
    cfg = load_config_dict({
        "models": {"fraud": {"task": "classification", "features": dict.fromkeys(FEATURES, "numeric"),
                             "reference": "ref.csv", "detectors": DETECTORS}},
        "alerts": {"sinks": [{"name": "hook", "type": "webhook", "page": "alerts", "url": receiver.base + "/hook", "timeout_s": 5}]},
    }, base_dir=tmp_path, environ={})
    store = Store(f"sqlite:///{tmp_path}/stream.db")
    store.create_schema()
    alerts = AlertService(cfg, store, kafka=False)
    seen: list = []

    def on_detections(conn, model, dets, now):
        seen.extend(dets)
        return alerts.on_detections(conn, model, dets, now)

    analyser = DriftAnalyser(cfg, store, on_detections=on_detections)
    P = cfg.topics.predictions
    try:
        run(cfg, store, analyser, events(rng, 0, WINDOW, drift=False), 0, {(P, 0): None})
        assert seen == []                                          # the undrifted window is clean
        run(cfg, store, analyser, events(rng, WINDOW, WINDOW, drift=True), WINDOW, {(P, 0): WINDOW})
        # the detectors found exactly the 15 shifted features, each once
        assert sorted(d.feature for d in seen if d.firing) == DRIFTED
        assert {d.kind for d in seen} == {"data_drift"}
        # nothing is announced while the group window (default 10 s) is open ...
        assert rows(store, t.alert_events) == []
        assert alerts.manager.tick(now=NOW + 9_999) == []
        # ... then the scheduler's tick pages once, for the group
        [page] = alerts.manager.tick(now=NOW + 10_000)
        # a further drifted window only updates the firing alerts
        run(cfg, store, analyser, events(rng, 2 * WINDOW, WINDOW, drift=True), 2 * WINDOW, {(P, 0): 2 * WINDOW})
        assert alerts.manager.tick(now=NOW + 60_000) == []
        assert alerts.dispatcher.deliver_pending_once() == 1
        check_page(store, receiver, page)
    finally:
        store.dispose()


def check_page(store, receiver, page) -> None:
    assert (page.status, page.alert_id) == ("firing", group_fingerprint("fraud", "data_drift", "3"))
    [event] = [e for e in rows(store, t.alert_events) if e["alert_id"] == page.alert_id]   # (and its incident's)
    assert event["idempotency_key"] == page.idempotency_key
    assert Counter(r["sink"] for r in rows(store, t.alert_deliveries)) == {"kafka": 1, "hook": 1}
    [got] = receiver.on("/hook")
    for msg in (orjson.loads(event["message"]), got.json()):
        assert (msg["kind"], msg["detector"], msg["feature"]) == ("data_drift", "group", None)
        assert (msg["model"], msg["model_version"], msg["status"]) == ("fraud", "3", "firing")
        assert sorted(msg["evidence"]["features"]) == DRIFTED       # all 15, none of the steady three
        assert msg["evidence"]["count"] == 15 and len(msg["evidence"]["members"]) == 15
        assert msg["summary"].startswith(
            f"fraud v3: 15 features drifted at once over the last {WINDOW:,} predictions: ")
        assert "and 10 more" in msg["summary"]
