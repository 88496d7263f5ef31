"""The whole path on the real broker: monitor + detectors + alerts in a subprocess, killed with
SIGKILL after the alert is committed and before a sink accepted it; the restarted monitor
delivers it once per key, to the webhook and to the alerts topic."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import numpy as np
import orjson
import pandas as pd
import pytest
import sqlalchemy as sa

from driftloop.alerts import tables as t
from driftloop.alerts.sinks import verify_signature
from driftloop.core.store import Store
from tests.alerts.helpers import Behaviour
from tests.kafka_helpers import ROOT, produce, read_topic

pytestmark = pytest.mark.kafka

N_REF, N_OK, N_DRIFT = 2000, 600, 600
DETECTORS = {"window_size": 600, "warmup": 0, "min_window": 200, "calibration_draws": 20, "multivariate": False,
             "performance": False, "cbpe": False, "concept_drift": False, "prediction_drift": False}


def events(start: int, n: int, drift: bool, ts0: int) -> list[dict]:
    rng = np.random.default_rng(start)
    amount = rng.lognormal(3 + (1.0 if drift else 0.0), 1, n)
    country = rng.choice(["DE", "FR", "US"], n, p=[0.1, 0.1, 0.8] if drift else [0.4, 0.4, 0.2])
    age = rng.integers(18, 90, n)
    return [{"event_id": f"e{start + i}", "model": "fraud", "model_version": "3", "ts": ts0 + start + i,
             "features": {"amount": float(amount[i]), "age": int(age[i]), "country": str(country[i])},
             "prediction": int(i % 2)} for i in range(n)]


def reference(path) -> None:
    rng = np.random.default_rng(7)
    pd.DataFrame({"amount": rng.lognormal(3, 1, N_REF), "age": rng.integers(18, 90, N_REF),
                  "country": rng.choice(["DE", "FR", "US"], N_REF, p=[0.4, 0.4, 0.2]),
                  "label": rng.integers(0, 2, N_REF)}).to_csv(path, index=False)


def spawn(config_path, log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.alerts.monitor_child", str(config_path), "120"], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)


def wait(pred, timeout_s: float, proc: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"monitor exited with {proc.returncode} waiting for {what}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_monitor_killed_between_alert_and_delivery(kafka_bootstrap, make_config, receiver, tmp_path):
    reference(tmp_path / "ref.csv")
    receiver.behaviour["/hook"] = down = Behaviour(fail=10**6, fail_status=503)
    path, cfg = make_config(
        kafka_bootstrap,
        models__fraud={"task": "classification", "features": {"amount": "numeric", "age": "numeric",
                                                                "country": "categorical"},
                       "reference": str(tmp_path / "ref.csv"), "detectors": DETECTORS},
        alerts__group_window_s=0,
        alerts__sinks=[{"name": "hook", "type": "webhook", "page": "alerts", "url": receiver.base + "/hook", "secret": "k",
                        "timeout_s": 2}],
        alerts__dispatch={"poll_interval_s": 0.1, "backoff_initial_s": 0.2, "backoff_max_s": 0.5, "lease_s": 5},
        alerts__stale={"enabled": False},
    )
    ts0 = int(time.time() * 1000) - 600_000
    produce(kafka_bootstrap, [(cfg.topics.predictions, b"fraud", orjson.dumps(e))
                              for e in events(0, N_OK, False, ts0) + events(N_OK, N_DRIFT, True, ts0)])
    store = Store.from_config(cfg.store)

    def event_keys() -> list[str]:
        try:
            with store.engine.connect() as c:
                e = t.alert_events      # the alert changes (an incident's are rows too: not on the topic)
                return [r[0] for r in c.execute(sa.select(e.c.idempotency_key).where(
                    e.c.alert_id.not_in(sa.select(t.incidents.c.incident_id))))]
        except sa.exc.OperationalError:
            return []


    with open(tmp_path / "monitor.log", "ab") as log:
        first = spawn(path, log)
        try:
            wait(lambda: event_keys() and down.fail < 10**6, 90, first, "an alert committed and a failed delivery")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        keys = event_keys()
        assert receiver.on("/hook") == []          # nothing accepted before the kill
    down.fail = 0                                   # the sink is back; restart (in-process: saves an import)
    from consumers.monitor import Monitor
    from driftloop.alerts import AlertService
    from driftloop.monitoring.analysis import DriftAnalyser

    alerts = AlertService(cfg, store)
    monitor = Monitor(cfg, store, analyser=DriftAnalyser(cfg, store, on_detections=alerts.on_detections))
    alerts.start()
    runner = threading.Thread(target=monitor.run, kwargs={"max_seconds": 60}, daemon=True)
    runner.start()
    try:
        def delivered() -> bool:
            with store.engine.connect() as c:
                st = [r[0] for r in c.execute(sa.select(t.alert_deliveries.c.status))]
            return bool(st) and set(st) == {"sent"}
        wait(delivered, 60, what="every delivery sent after the restart")
    finally:
        monitor.stop()
        runner.join(30)
        alerts.stop()
    # one grouped page for the drifted features, delivered once per key to the webhook
    assert event_keys() == keys and len(keys) == 1
    got = receiver.on("/hook")
    assert [r.key for r in got] == keys
    assert verify_signature(b"k", got[0].body, got[0].headers)
    body = got[0].json()
    assert body["status"] == "firing" and body["detector"] == "group"
    assert {"amount", "country"} <= set(body["evidence"]["features"])
    assert body["summary"].startswith("fraud v3: ")
    # and to the alerts topic (at-least-once: repeats would carry the same driftloop-id)
    recs = read_topic(kafka_bootstrap, cfg.topics.alerts)
    ids = {dict(r.headers)["driftloop-id"].decode() for r in recs}
    assert ids == set(keys)
    msg = orjson.loads(recs[0].value)
    assert msg["alert_id"] == body["alert_id"] and msg["idempotency_key"] == keys[0]
    store.dispose()
