"""A broken model never stops the others, on the real broker with a real ``driftloop monitor``.

Two models: ``fraud`` (reference file, healthy; its events drift, so it alerts) and ``agr``,
whose registry champion's sample was tampered with after it was registered: its detectors cannot
be built (``ArtifactIntegrityError``). Today the monitor cannot even start. It must:

* count and store both models' events exactly, and keep ``fraud``'s detectors and alerts going;
* quarantine ``agr`` and raise a ``detector_failure`` alert naming it, the stage and the error;
* once the file is repaired, rebuild ``agr``'s detectors after the back-off, clear the alert, and
  analyse ``agr``'s next events;
* when a new champion whose sample was tampered with is promoted while it runs (the live
  ``promoted`` event), keep ``agr``'s previous reference and raise ``detector_failure``
  (detector ``champion_sample``), still counting everything.
"""
from __future__ import annotations

import random
import time

import orjson
import pandas as pd
import pytest
import skops.io as sio
import yaml

from driftloop.alerts import AlertManager
from driftloop.core.config import load_config
from driftloop.core.store import Store
from retrain.registry import Registry
from tests.fault_helpers import spawn, stop_process, wait_until
from tests.kafka_helpers import NOW_MS, isolated_kafka, label, prediction, produce, wait_for_counts
from tests.retrain.helpers import AGRAWAL, agrawal, fitted_model, frame

pytestmark = pytest.mark.kafka

N = 1000
DETECTORS = {"window_size": 500, "warmup": 0, "min_window": 200, "calibration_draws": 20, "multivariate": False,
             "cbpe": False}
QUARANTINE_KEYS = {"quarantine_retry_s": 1, "quarantine_max_retry_s": 2}
FRAUD = {"amount": "numeric", "age": "numeric", "country": "categorical"}


def write_config(tmp_path, tag: str):
    rnd = random.Random(1)
    # fraud's reference: amounts four times those served, so its data_drift fires
    pd.DataFrame({"amount": [round(rnd.lognormvariate(3, 1) * 4, 2) for _ in range(2000)],
                  "age": [rnd.randint(18, 90) for _ in range(2000)],
                  "country": [rnd.choice(["DE", "FR", "US"]) for _ in range(2000)],
                  "label": [i % 2 for i in range(2000)]}).to_csv(tmp_path / "fraud_ref.csv", index=False)
    data = {
        **isolated_kafka("127.0.0.1:9092", tag),
        "store": {"url": f"sqlite:///{tmp_path}/driftloop.db"},
        "ingest": {"poll_timeout_ms": 200, "max_poll_records": 500, **QUARANTINE_KEYS},
        "api": {"enabled": False},
        "registry": {"artifact_dir": str(tmp_path / "artifacts"), "worker_group_id": f"retrain-{tag}"},
        "alerts": {"group_window_s": 0, "hold_down_s": 1, "tick_every_s": 1, "stale": {"enabled": False}},
        "models": {
            "fraud": {"task": "classification", "features": FRAUD, "reference": "fraud_ref.csv",
                      "detectors": DETECTORS},
            "agr": {"task": "classification", "features": AGRAWAL, "detectors": DETECTORS},
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, load_config(path, environ={})


def fraud_events(cfg, start: int, n: int):
    P, L = cfg.topics.predictions, cfg.topics.labels
    return ([(P, b"fraud", orjson.dumps(prediction(i))) for i in range(start, start + n)]
            + [(L, b"fraud", orjson.dumps(label(i))) for i in range(start, start + n)])


def agr_events(cfg, rows, start: int):
    P, L = cfg.topics.predictions, cfg.topics.labels
    out = []
    for i, (x, y) in enumerate(rows, start):
        out.append((P, b"agr", orjson.dumps({"event_id": f"a{i}", "model": "agr", "ts": NOW_MS - 3_600_000 + i,
                                             "features": x, "prediction": str(y)})))
        out.append((L, b"agr", orjson.dumps({"event_id": f"a{i}", "model": "agr", "ts": NOW_MS - 1_000_000 + i,
                                             "label": str(y)})))
    return out


def want(n: int) -> dict[str, int]:
    return {"predictions": n, "labels": n, "joined": n, "duplicates": 0}


def alerts(cfg, store, kind: str, model: str):
    return [s for s in AlertManager(cfg, store).states().values() if s.kind == kind and s.model == model]


def test_a_model_with_a_tampered_champion_sample_does_not_stop_the_others(tmp_path):
    import uuid

    path, cfg = write_config(tmp_path, uuid.uuid4().hex[:10])
    store = Store.from_config(cfg.store)
    store.create_schema()
    reg = Registry(cfg, store)
    rows = agrawal(600, function=0, seed=1)
    f = tmp_path / "v1.skops"
    sio.dump(fitted_model(rows), f)
    reg.register("agr", f, frame(rows), actor="test", trust=sio.get_untrusted_types(file=f), promote=True)
    info = reg.get("agr", 1)
    sample = reg.path(info.holdout_path or info.reference_path)
    good = sample.read_bytes()
    sample.write_bytes(good[:-10] + b"tampered!!")          # same size, other bytes

    log = tmp_path / "monitor.log"
    proc = spawn("monitor", "-c", str(path), log=log)
    try:
        produce("127.0.0.1:9092", fraud_events(cfg, 0, N) + agr_events(cfg, agrawal(N, function=0, seed=2), 0))
        wait_for_counts(cfg, want(N), timeout_s=120, model="fraud", proc=proc)   # today: the monitor exited
        wait_for_counts(cfg, want(N), timeout_s=60, model="agr", proc=proc)
        # the healthy model's detectors and alerts go on
        wait_until(lambda: any(a.status == "firing" for a in alerts(cfg, store, "data_drift", "fraud")), 60,
                   "fraud's data_drift alert fires", proc=proc, log=log)
        assert store.detector_state_row("fraud") is not None
        # the broken one is quarantined, and says so
        wait_until(lambda: any(a.status == "firing" for a in alerts(cfg, store, "detector_failure", "agr")), 30,
                   "agr's detector_failure alert fires", proc=proc, log=log)
        [alert] = alerts(cfg, store, "detector_failure", "agr")
        ev = alert.detection["evidence"]
        assert alert.detector == "detectors" and alert.severity == "critical"
        assert ev["stage"] == "rebuild" and ev["error_class"] == "ArtifactIntegrityError" and ev["since"] > 0
        assert store.detector_state_row("agr") is None, "no detectors ran for agr"
        assert "detectors QUARANTINED" in log.read_text()

        # repaired: rebuilt after the back-off (at most 2 s), the alert clears, agr's next events are analysed
        sample.write_bytes(good)
        t_repair = time.monotonic()
        wait_until(lambda: all(a.status == "resolved" for a in alerts(cfg, store, "detector_failure", "agr")), 30,
                   "agr's detector_failure alert resolves", proc=proc, log=log)
        cleared_s = time.monotonic() - t_repair
        produce("127.0.0.1:9092", fraud_events(cfg, N, N) + agr_events(cfg, agrawal(N, function=0, seed=3), N))
        wait_for_counts(cfg, want(2 * N), timeout_s=60, model="agr", proc=proc)
        wait_for_counts(cfg, want(2 * N), timeout_s=60, model="fraud", proc=proc)
        wait_until(lambda: store.detector_state_row("agr") is not None, 30, "agr's detectors save their state",
                   proc=proc, log=log)

        # a live promotion of a version whose sample was tampered with: the previous reference stays
        rows2 = agrawal(600, function=0, seed=4)
        f2 = tmp_path / "v2.skops"
        sio.dump(fitted_model(rows2), f2)
        reg.register("agr", f2, frame(rows2), actor="test", trust=sio.get_untrusted_types(file=f2))
        info2 = reg.get("agr", 2)
        sample2 = reg.path(info2.holdout_path or info2.reference_path)
        sample2.write_bytes(sample2.read_bytes() + b"tampered")
        reg.promote("agr", 2, actor="test", reason="retrained")     # the monitor publishes the event, then reads it
        wait_until(lambda: any(a.status == "firing" and a.detector == "champion_sample"
                               for a in alerts(cfg, store, "detector_failure", "agr")), 60,
                   "agr's champion_sample alert fires", proc=proc, log=log)
        [switch] = [a for a in alerts(cfg, store, "detector_failure", "agr") if a.detector == "champion_sample"]
        assert switch.detection["evidence"]["champion_version"] == "2"
        assert switch.detection["evidence"]["error_class"] == "ArtifactIntegrityError"
        assert store.detector_reference_version("agr") == (True, "1")
        produce("127.0.0.1:9092", agr_events(cfg, agrawal(N, function=0, seed=5), 2 * N))
        wait_for_counts(cfg, want(3 * N), timeout_s=60, model="agr", proc=proc)
        assert store.detector_reference_version("agr") == (True, "1")
        assert proc.poll() is None
        attempts = log.read_text().count("detectors QUARANTINED")
    finally:
        stop_process(proc)
        store.dispose()
    print(f"\nbroken model: {attempts} failed rebuild(s) while tampered; alert resolved {cleared_s:.1f} s after "
          "the repair (back-off <= 2 s, hold-down 1 s)")
