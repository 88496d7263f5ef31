"""The whole loop, as CI runs `driftloop demo --fast --keep` on the real broker (issues 5 and 6 end to
end): drift -> alert -> retraining job -> challenger promoted -> monitor switches reference -> the
alerts the promotion answered resolve; then a second job, on data of the same concept, is rejected
and the champion stays.

The demo runs as the real command, in a subprocess (its exit code and printed summary are checked);
its kept work folder (store, registry, config) and its topics are then read back."""
from __future__ import annotations

import re
import subprocess
import sys
import time

import orjson
import pytest

from driftloop.app.demo import MODEL
from driftloop.core.config import load_config
from driftloop.core.config.retrain import retrain_policy
from driftloop.core.store import Store
from retrain.registry import Registry
from retrain.worker import RetrainWorker
from tests.integration.demo_helpers import run_demo
from tests.kafka_helpers import ROOT, read_topic


@pytest.fixture(scope="module")
def demo(kafka_bootstrap, tmp_path_factory):
    yield run_demo(kafka_bootstrap, tmp_path_factory.mktemp("demo"))


@pytest.mark.kafka
def test_demo_fires_retrains_promotes_and_resolves(demo, kafka_bootstrap):
    # the command: exit code 0 (the loop closed) and the summary it prints
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    out = demo.stdout
    assert "REGISTRY PROMOTED loans v2" in out
    assert "the service now serves champion v2" in out
    summary = re.search(r"alerts: (\d+) fired \(([^)]*)\), (\d+) resolved; retraining jobs: (\d+); "
                        r"registry: ([^;]*); champion now v(\w+)", out)
    assert summary, out[-3000:]
    n_fired, kinds, n_resolved, n_jobs, registry_events, champion = summary.groups()
    assert int(n_fired) >= 1 and int(n_resolved) >= 1 and int(n_jobs) >= 1
    assert "promoted v2" in registry_events and champion == "2"
    paged = re.search(r"on-call was paged per incident: (\d+) incident\(s\) for (\d+) fired alerts", out)
    assert paged and 1 <= int(paged.group(1)) <= int(paged.group(2)) == int(n_fired), out[-3000:]
    assert f"config:{demo.config_path}" in re.sub(r"\s+", "", out)   # (Rich may wrap a long path)
    cfg = load_config(demo.config_path, environ={})
    # from the alerts topic itself
    alerts, keys = [], set()
    for r in read_topic(kafka_bootstrap, cfg.topics.alerts):   # at-least-once: drop repeats by driftloop-id
        key = dict(r.headers or []).get("driftloop-id")
        if key is None or key not in keys:
            keys.add(key)
            alerts.append(orjson.loads(r.value))
    firing = [a for a in alerts if a["status"] == "firing"]        # escalations are announced again
    fired = {a["alert_id"] for a in firing}
    resolved = {a["alert_id"]: a for a in alerts if a["status"] == "resolved"}
    # the demo stops reading before its monitor stops: the topic may hold a change or two more
    assert fired and len(firing) >= int(n_fired)
    assert len(resolved) >= int(n_resolved)
    # from the registry: v2 is champion, promoted by a job whose reason names fired alerts
    store = Store.from_config(cfg.store)
    reg = Registry(cfg, store)
    assert reg.champion(MODEL).version == 2
    promoted = [h for h in reg.history(MODEL) if h.event == "promoted" and h.version == 2]
    assert len(promoted) == 1
    answered = set(promoted[0].details["alert_ids"])
    assert answered and answered <= fired
    # ... and those alerts were resolved by the promotion (not merely "some alert resolved"). A
    # concept-drift alert may have resolved by itself first: its change-point detectors clear once
    # the error stream settles (at its new, worse level), and on a slow machine the job can take
    # longer than the hold-down. A performance or drift alert does not: v1 stays as wrong as it was
    # until the promotion.
    assert answered <= set(resolved), (answered, set(resolved))
    for alert_id in answered:
        msg = resolved[alert_id]
        reason = msg["evidence"]["resolution"]["reason"]
        by_itself = msg["kind"] == "concept_drift" and reason in ("cleared", "members_resolved")
        assert by_itself or reason == f"retrained: promoted: {MODEL} v2", (alert_id, msg["kind"], reason)
    metrics = promoted[0].details["metrics"]
    assert metrics["challenger"]["accuracy"] > metrics["champion"]["accuracy"]
    # the monitor switched its reference to v2
    row = store.detector_state_row(MODEL)
    assert row is not None and row[2] == "2"
    store.dispose()


@pytest.mark.kafka
def test_second_job_without_improvement_is_rejected(demo, kafka_bootstrap):
    cfg = load_config(demo.config_path, environ={})
    enq = subprocess.run([sys.executable, "-m", "driftloop.app.cli", "retrain", "-c", str(demo.config_path), MODEL,
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


@pytest.mark.kafka
def test_shadow_demo_promotes_through_a_shadow_phase(kafka_bootstrap, tmp_path):
    """`driftloop demo --shadow` (issue 14): the challenger that passes the offline gate runs in
    shadow, the service publishes its answers beside the champion's, the monitor reports the
    live paired comparison, and the shadow phase promotes it with its live McNemar p-value."""
    run = run_demo(kafka_bootstrap, tmp_path, "--shadow")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    for line in ("REGISTRY SHADOW_STARTED loans v2", "the service now also runs v2 in shadow",
                 "REGISTRY SHADOW_REPORT loans v2: shadow accuracy", "REGISTRY PROMOTED loans v2 on live evidence",
                 "the service now serves champion v2"):
        assert line in out, (line, out[-3000:])
    cfg = load_config(run.config_path, environ={})
    policy = retrain_policy(cfg, MODEL).shadow
    assert policy is not None
    store = Store.from_config(cfg.store)
    reg = Registry(cfg, store)
    assert reg.champion(MODEL).version == 2 and not reg.shadows(MODEL)
    events = [h.event for h in reg.history(MODEL) if h.version == 2]
    assert events.index("shadow_started") < events.index("shadow_report") < events.index("promoted"), events
    [promoted] = [h for h in reg.history(MODEL) if h.event == "promoted" and h.version == 2]
    metrics = promoted.details["metrics"]
    live = metrics["live"]
    assert metrics["phase"] == "shadow" and live["test"] == "mcnemar" and live["better"]
    assert live["n"] >= policy.min_labels and live["p_value"] < 0.05
    assert live["served_version"] == "1" and live["shadow_version"] == "2"
    store.dispose()
    # the shadow's answers on the predictions topic: the served requests' event ids, v2, never served
    shadows, served = {}, {}
    for r in read_topic(kafka_bootstrap, cfg.topics.predictions):
        for e in orjson.loads(r.value) if r.value.startswith(b"[") else [orjson.loads(r.value)]:
            (shadows if e.get("shadow") else served)[e["event_id"]] = e.get("model_version")
    assert shadows and set(shadows.values()) == {"2"}
    assert set(shadows) <= set(served) and all(served[i] == "1" for i in shadows)


def test_demo_without_river_names_the_extra():
    """River is the `demo` extra, not a dependency: without it the command says what to install
    (exit code 2) before it touches a broker or trains anything."""
    hide = "import sys; sys.modules['river'] = None; from driftloop.app.cli import main; sys.exit(main(['demo', '--fast']))"
    proc = subprocess.run([sys.executable, "-c", hide], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "pip install 'driftloop[demo]'" in proc.stderr
    assert "Traceback" not in proc.stderr and "driftloop demo" not in proc.stdout
