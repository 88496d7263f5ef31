"""The API beside a real monitor on the real broker: live lag, batch figures, readiness, and the
drift history recorded in the batch transaction.

This test wires the two hooks the monitor needs the way ``driftloop monitor`` should:
``self.lag = partition_lag(self.consumer, self.expected)`` after each poll, and
``record_detector_statistics(conn, model, monitor.status(), now)`` after the detectors ran.
"""
from __future__ import annotations

import threading
import time
import urllib.request

import numpy as np
import orjson
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumers.monitor import Monitor
from driftloop.app.api import create_app, partition_lag, record_detector_statistics, serve_in_thread
from driftloop.core.store import Store
from driftloop.monitoring.analysis import DriftAnalyser
from tests.kafka_helpers import label, prediction, produce

pytestmark = pytest.mark.kafka

N = 3000


class LagMonitor(Monitor):
    def poll_once(self) -> int:
        n = super().poll_once()
        self.lag = partition_lag(self.consumer, self.expected)
        return n


class RecordingAnalyser(DriftAnalyser):
    def analyse(self, conn, result, now):  # type: ignore[override]  # a test double with the same call
        super().analyse(conn, result, now)
        for model, mon in self.monitors.items():
            record_detector_statistics(conn, model, mon.status(), now)


def _metrics(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_api_beside_the_monitor(kafka_bootstrap, make_config, tmp_path) -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"amount": rng.lognormal(3, 1, 3000), "age": rng.integers(18, 90, 3000),
                        "country": rng.choice(["DE", "FR", "US"], 3000), "label": rng.integers(0, 2, 3000)})
    ref.to_csv(tmp_path / "ref.csv", index=False)
    _, cfg = make_config(models__fraud={
        "task": "classification", "features": {"amount": "numeric", "age": "numeric", "country": "categorical"},
        "reference": str(tmp_path / "ref.csv"),
        "detectors": {"window_size": 1000, "warmup": 500, "calibration_draws": 10, "multivariate": False,
                      "bootstrap": 20}})
    store = Store.from_config(cfg.store)
    store.create_schema()
    analyser = RecordingAnalyser(cfg, store)
    mon = LagMonitor(cfg, store, analyser=analyser)
    handle = serve_in_thread(create_app(cfg, store, monitor=mon, analyser=analyser), "127.0.0.1", 0)
    loop = threading.Thread(target=mon.run, kwargs={"max_seconds": 120}, daemon=True)
    loop.start()
    try:
        msgs = [(cfg.topics.predictions, b"fraud", orjson.dumps(prediction(i))) for i in range(N)]
        msgs += [(cfg.topics.labels, b"fraud", orjson.dumps(label(i))) for i in range(N)]
        produce(kafka_bootstrap, msgs)
        deadline = time.monotonic() + 90
        m: dict = {}

        def amount_drift(m: dict) -> list[float]:
            """The Wasserstein statistic of `amount` (labelled by model version too, since 1.1)."""
            return [v for (name, labels), v in m.items() if name == "driftloop_drift_statistic"
                    and {("detector", "wasserstein"), ("feature", "amount"), ("kind", "data_drift"),
                         ("model", "fraud")} <= set(labels)]
        while time.monotonic() < deadline:
            m = _metrics(handle.url)
            if m.get(("driftloop_events_joined_total", (("model", "fraud"),))) == N and amount_drift(m):
                break
            time.sleep(0.5)
        assert amount_drift(m), "no drift statistic of `amount` in /metrics"
        assert m[("driftloop_events_total", (("model", "fraud"), ("stream", "predictions")))] == N
        assert m[("driftloop_events_joined_total", (("model", "fraud"),))] == N
        assert m[("driftloop_batches_total", ())] >= 1
        assert m[("driftloop_consumer_assigned_partitions", ())] == 2 * cfg.topics.partitions
        lags = {k: v for k, v in m.items() if k[0] == "driftloop_consumer_lag"}
        assert lags and all(v >= 0 for v in lags.values())
        with urllib.request.urlopen(handle.url + "/readyz", timeout=10) as r:
            ready = orjson.loads(r.read())
        assert ready["ready"] and ready["checks"]["consumer"]["ok"] is True
        with urllib.request.urlopen(handle.url + "/api/models/fraud/drift?feature=amount", timeout=10) as r:
            points = orjson.loads(r.read())["points"]
        assert len({p["seq"] for p in points}) >= 2      # one row set per judged window of 1000
        with urllib.request.urlopen(handle.url + "/api/models/fraud/status", timeout=10) as r:
            assert orjson.loads(r.read())["source"] == "live"
    finally:
        mon.stop()
        loop.join(30)
        handle.stop()
        store.dispose()
