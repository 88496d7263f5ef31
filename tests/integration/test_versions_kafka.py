"""Each model version judged on its own, on the real broker (issue 14).

* The hand-over: v2 is promoted while v1's labels are still on their way, later than the alert
  cooldown. v1's late labels go to v1's (draining) detectors, never to v2's: no alert names v2
  for them, and v2's concept detectors find a later v2 degradation at the same position as
  detectors that never saw v1 (the offline clean start below).
* A canary: v1 healthy on ~90% of the traffic, v2 broken on the rest: the alerts name v2 and
  none names v1; and the reverse (a healthy canary beside a degrading champion).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import skops.io as sio

from detectors.batch import LabelledBatch
from detectors.model_monitor import ModelMonitor
from driftloop.core.store import Store
from driftloop.kafka.topics import create_topics
from tests.fault_helpers import wait_until
from tests.kafka_helpers import produce
from tests.retrain.helpers import AGRAWAL, agrawal, config_data, fitted_model, frame, predict, write_config

pytestmark = pytest.mark.kafka

T0 = int(time.time() * 1000) - 3_600_000
DETECTORS = {"window_size": 400, "warmup": 0, "multivariate": False, "calibration_draws": 20,
             "performance_window_size": 400}
ALERTS = {"group_window_s": 0, "cooldown_s": 1, "hold_down_s": 0}



class Running:
    """A ``MonitorService`` in a thread, with every detection it passes to the alerts recorded."""

    def __init__(self, tmp_path: Path, bootstrap: str, models: dict[int, tuple[Any, Any]],
                 retrain: dict[str, Any] | None = None) -> None:
        from driftloop.app.service import MonitorService
        from retrain.registry import Registry

        data = config_data(tmp_path, bootstrap=bootstrap)
        data["models"]["agr"]["detectors"] = DETECTORS
        data["models"]["agr"]["retrain"].update(retrain or {})
        data["versions"] = {"shadow_min_labels": 100}
        data["alerts"] = ALERTS
        data["analysis"] = {"mode": "inline"}   # the detections are recorded in this process
        _, self.cfg = write_config(tmp_path, data)
        self.store = Store.from_config(self.cfg.store)
        self.store.create_schema()
        create_topics(self.cfg)
        self.registry = Registry(self.cfg, self.store)
        for version, (est, sample) in sorted(models.items()):
            reference = sample.assign(prediction=est.predict(sample[list(AGRAWAL)]))  # the baseline
            path = tmp_path / f"v{version}.skops"
            sio.dump(est, path)
            self.registry.register("agr", path, reference, actor="test", promote=version == 1,
                                   trust=sio.get_untrusted_types(file=path))
        self.service = MonitorService(self.cfg)
        self.seen: list[Any] = []
        emit = self.service.analyser.on_detections

        def record(conn: Any, model: str, dets: list[Any], now: int) -> Any:
            self.seen += [d for d in dets if d.kind != "detector_failure"]
            return emit(conn, model, dets, now) if emit is not None else None
        self.service.analyser.on_detections = record
        self.thread = threading.Thread(target=self.service.run, kwargs={"max_seconds": 240}, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.service.stop()
        self.thread.join(30)
        self.store.dispose()

    def counts(self) -> dict[str, int]:
        return self.store.read_counters().get("agr", {})

    def wait_joined(self, n: int) -> None:
        wait_until(lambda: self.counts().get("joined", 0) >= n, 90, f"{n} joined")

    def fired(self, **match: Any) -> list[Any]:
        return [d for d in self.seen if d.firing and all(getattr(d, k) == v for k, v in match.items())]


def messages(cfg: Any, rows: list[Any], preds: np.ndarray, start: int, *, version: str | None,
             labels: bool = True, predictions: bool = True, shadow: bool = False) -> list[tuple[str, bytes, bytes]]:
    """Prediction events (``version`` None: the event names none; ``shadow``: a challenger's
    answer to the same request) and/or their labels."""
    out = []
    for i, ((x, y), p) in enumerate(zip(rows, preds)):
        eid = f"p{start + i}"
        if predictions:
            ev = {"event_id": eid, "model": "agr", "ts": T0 + start + i, "features": x, "prediction": str(p)}
            if version is not None:
                ev["model_version"] = version
            if shadow:
                ev["shadow"] = True
            out.append((cfg.topics.predictions, b"agr", orjson.dumps(ev)))
        if labels:
            out.append((cfg.topics.labels, b"agr", orjson.dumps({"event_id": eid, "model": "agr",
                                                                  "ts": T0 + start + i + 1, "label": y})))
    return out


def _clean_start_positions(reference: Any, rows: list[Any], preds: np.ndarray) -> dict[str, int]:
    """Where detectors that never saw anything but these rows find concept drift: detector ->
    the row (position in ``rows``) of its first concept-drift detection."""
    mon = ModelMonitor("agr", "classification", AGRAWAL, reference, DETECTORS)
    found: dict[str, int] = {}
    for start in range(0, len(rows), 250):
        chunk, p = rows[start:start + 250], preds[start:start + 250]
        feats = frame(chunk)
        batch = LabelledBatch(ts=np.arange(start, start + len(chunk), dtype=np.int64),
                              prediction=np.asarray([str(v) for v in p], dtype=object),
                              label=np.asarray([str(y) for _, y in chunk], dtype=object),
                              features={k: (feats[k].to_numpy(dtype=np.float64) if t == "numeric"
                                            else feats[k].astype(str).to_numpy(dtype=object))
                                        for k, t in AGRAWAL.items()})
        for d in mon.update_labelled(batch):
            if d.kind == "concept_drift" and d.firing:
                found.setdefault(d.detector, int(d.window.end_ts))
    return found


def test_promotion_hand_over_late_labels_go_to_the_old_champion(kafka_bootstrap: str, tmp_path: Path) -> None:
    old_rows, new_rows = agrawal(3000, function=0, seed=1), agrawal(3000, function=2, seed=2)
    v1, v2 = fitted_model(old_rows), fitted_model(new_rows)
    served_by_v1 = agrawal(1200, function=2, seed=3)          # the drift v1 was retrained for
    healthy = agrawal(1200, function=2, seed=4)
    degraded = agrawal(2400, function=4, seed=5)              # later, v2 degrades too
    with Running(tmp_path, kafka_bootstrap, {1: (v1, frame(old_rows)), 2: (v2, frame(new_rows))}) as run:
        cfg = run.cfg
        # v1 serves (events name no version: the champion's); the labels are not there yet
        produce(kafka_bootstrap, messages(cfg, served_by_v1, predict(v1, served_by_v1), 0, version=None,
                                          labels=False))
        wait_until(lambda: run.counts().get("predictions", 0) >= 1200, 60, "v1's predictions stored")
        run.registry.promote("agr", 2, actor="test", reason="retrained")
        wait_until(lambda: run.service.analyser.reference_version.get("agr") == "2", 60, "the monitor follows v2")
        time.sleep(1.5)        # later than the cooldown (1 s): nothing left to hide a wrong page
        promoted_at = len(run.seen)
        # v1's late labels, and v2 serving (unversioned events: now the champion's) with its labels
        produce(kafka_bootstrap, messages(cfg, served_by_v1, predict(v1, served_by_v1), 0, version=None,
                                          predictions=False)
                + messages(cfg, healthy, predict(v2, healthy), 10_000, version=None))
        run.wait_joined(2400)
        after = run.seen[promoted_at:]
        assert not [d.summary for d in after if d.firing and d.model_version == "2"], \
            "v1's late labels were judged against v2"
        assert not [d.summary for d in after if d.firing and d.model_version == "1"], "a draining v1 paged"
        mon = run.service.analyser.monitors["agr"]
        assert mon.phase == {"1": "draining", "2": "serving"} and mon.champion == "2"
        assert mon.versions["1"].status()["labelled"] == 1200, "v1's labels went to v1's detectors"
        assert mon.versions["2"].status()["labelled"] == 1200, "v2's detectors saw v2's rows only"

        # v2 degrades: its concept detectors find it where a clean start would
        produce(kafka_bootstrap, messages(cfg, degraded, predict(v2, degraded), 20_000, version="2"))
        run.wait_joined(4800)
        wait_until(lambda: run.fired(model_version="2", kind="concept_drift"), 30, "v2's concept drift found")
    live: dict[str, int] = {}
    for d in run.fired(model_version="2", kind="concept_drift"):     # event time -> row of healthy + degraded
        at = d.window.end_ts - T0
        live.setdefault(d.detector, at - 10_000 if at < 20_000 else at - 20_000 + len(healthy))
    clean = _clean_start_positions(frame(new_rows), healthy + degraded,
                                   np.concatenate([predict(v2, healthy), predict(v2, degraded)]))
    assert clean and live == clean, (live, clean)
    assert min(clean.values()) >= len(healthy), "found in the degraded rows, not before"
    assert not run.fired(model_version="1")


@pytest.mark.parametrize("broken", ["canary", "champion"])
def test_canary_beside_the_champion_each_pages_as_itself(kafka_bootstrap: str, tmp_path: Path, broken: str) -> None:
    rows = agrawal(3000, function=0, seed=1)
    good = fitted_model(rows)
    bad_rows = agrawal(3000, function=4, seed=6)
    bad = fitted_model(bad_rows)          # a model of another concept: wrong on this traffic
    stream = agrawal(4000, function=0, seed=7)
    rng = np.random.default_rng(8)
    canary = rng.random(len(stream)) < 0.12
    with Running(tmp_path, kafka_bootstrap, {1: (good, frame(rows)), 2: (good, frame(rows))}) as run:
        serve = {"1": bad if broken == "champion" else good, "2": bad if broken == "canary" else good}
        preds = {v: predict(est, stream) for v, est in serve.items()}
        msgs = []                              # the two versions serve side by side, request by request
        for i, on_canary in enumerate(canary):
            version = "2" if on_canary else "1"
            msgs += messages(run.cfg, stream[i:i + 1], preds[version][i:i + 1], i, version=version)
        produce(kafka_bootstrap, msgs)
        run.wait_joined(len(stream))
        bad_version = "2" if broken == "canary" else "1"
        wait_until(lambda: run.fired(model_version=bad_version, kind="performance"), 30,
                   f"the broken v{bad_version} pages")
        [page] = [d for d in run.fired(model_version=bad_version, kind="performance") if d.detector == "accuracy"][:1]
        versus = page.evidence["versus"]      # the two versions on the same window
        assert versus["worse"] and versus["p_value"] < 1e-6 and versus["version"] == f"v{bad_version}"
        assert versus["version_metric"] < versus["champion_metric"] - 0.2, versus
        assert versus["summary"] in page.summary
        good_version = "1" if bad_version == "2" else "2"
        assert not [d.summary for d in run.fired(model_version=good_version)], f"v{good_version} is healthy"
        assert not run.fired(model_version=None)


@pytest.mark.parametrize("challenger", ["better", "no better"])
def test_a_shadow_phase_decides_on_live_paired_evidence(kafka_bootstrap: str, tmp_path: Path, challenger: str) -> None:
    old_rows, new_rows = agrawal(3000, function=0, seed=1), agrawal(3000, function=2, seed=2)
    champion = fitted_model(old_rows)
    shadow = fitted_model(new_rows) if challenger == "better" else fitted_model(agrawal(3000, function=0, seed=9))
    traffic = agrawal(600, function=2 if challenger == "better" else 0, seed=3)
    policy = {"shadow": {"min_labels": 300, "max_hours": 1}}
    with Running(tmp_path, kafka_bootstrap, {1: (champion, frame(old_rows)), 2: (shadow, frame(new_rows))},
                 retrain=policy) as run:
        run.registry.start_shadow("agr", 2, actor="test", reason="try v2 on live traffic")
        # v1 serves; v2 answers the same requests in shadow; the labels come
        produce(kafka_bootstrap, messages(run.cfg, traffic, predict(champion, traffic), 0, version="1")
                + messages(run.cfg, traffic, predict(shadow, traffic), 0, version="2", shadow=True, labels=False))
        decided = wait_until(lambda: [h for h in run.registry.history("agr") if h.event in ("promoted", "rejected")
                                      and h.version == 2], 90, "the shadow phase decided")
        reports = [h for h in run.registry.history("agr") if h.event == "shadow_report"]
        if challenger == "better":
            wait_until(lambda: run.service.analyser.reference_version.get("agr") == "2", 60, "the monitor follows v2")
    [entry] = decided
    live = entry.details["metrics"]["live"]
    assert reports and all(r.details["metrics"]["shadow_version"] == "2" for r in reports)   # published as decided
    assert live["n"] >= 300 and live["test"] == "mcnemar" and live["served_version"] == "1"
    if challenger == "better":
        assert entry.event == "promoted" and live["better"] and live["p_value"] < 0.001
        assert run.registry.champion("agr").version == 2
    else:
        assert entry.event == "rejected" and not live["better"] and live["p_value"] is not None
        assert run.registry.champion("agr").version == 1
