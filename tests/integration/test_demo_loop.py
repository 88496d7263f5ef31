"""The whole loop, as `driftloop demo --fast` runs it on the real broker (issue 5 and 6 end to end):
drift -> alert -> retraining job -> challenger promoted -> monitor switches reference -> alert
resolved; then a second job, on data of the same concept, is rejected and the champion stays."""
from __future__ import annotations

import io
import shutil
import subprocess
import sys
import time

import orjson
import pytest
from rich.console import Console

from driftloop.config import load_config
from driftloop.demo import MODEL, run_demo
from driftloop.store import Store
from retrain.registry import Registry
from retrain.worker import RetrainWorker
from tests.kafka_helpers import ROOT, read_topic

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def demo(kafka_bootstrap):
    out = io.StringIO()
    result = run_demo(bootstrap=kafka_bootstrap, fast=True, keep=True, console=Console(file=out, width=120))
    yield result, out.getvalue()
    shutil.rmtree(result.workdir, ignore_errors=True)


def test_demo_fires_retrains_promotes_and_resolves(demo, kafka_bootstrap):
    result, printed = demo
    cfg = load_config(result.config_path, environ={})
    # from the alerts topic itself: an alert fired and the same alert_id resolved
    alerts = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap, cfg.topics.alerts)]
    fired = {a["alert_id"] for a in alerts if a["status"] == "firing"}
    resolved = {a["alert_id"] for a in alerts if a["status"] == "resolved"}
    assert fired and fired & resolved
    # from the registry: v2 is champion, promoted by a job whose reason names a fired alert
    store = Store.from_config(cfg.store)
    reg = Registry(cfg, store)
    assert reg.champion(MODEL).version == 2
    promoted = [h for h in reg.history(MODEL) if h.event == "promoted" and h.version == 2]
    assert len(promoted) == 1 and set(promoted[0].details["alert_ids"]) & fired
    metrics = promoted[0].details["metrics"]
    assert metrics["challenger"]["accuracy"] > metrics["champion"]["accuracy"]
    # the monitor switched its reference to v2
    row = store.detector_state_row(MODEL)
    assert row is not None and row[2] == "2"
    store.dispose()
    assert "REGISTRY PROMOTED loans v2" in printed


def test_second_job_without_improvement_is_rejected(demo, kafka_bootstrap):
    result, _ = demo
    cfg = load_config(result.config_path, environ={})
    enq = subprocess.run([sys.executable, "-m", "driftloop.cli", "retrain", "-c", str(result.config_path), MODEL,
                          "--reason", "manual-check"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert enq.returncode == 0, enq.stderr
    store = Store.from_config(cfg.store)
    worker = RetrainWorker(cfg, store, worker_id="test-worker")
    reg = Registry(cfg, store)
    deadline = time.monotonic() + 180
    worker.run(until=lambda: any(h.event == "rejected" for h in reg.history(MODEL)) or time.monotonic() > deadline)
    rejected = [h for h in reg.history(MODEL) if h.event == "rejected"]
    assert len(rejected) == 1
    assert reg.champion(MODEL).version == 2
    events = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap, cfg.topics.models)]
    assert [e["event"] for e in events if str(e["version"]) == str(rejected[0].version)] == ["rejected"], events
    store.dispose()
