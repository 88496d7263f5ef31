"""One page per incident change, on the real broker (issue 15).

A ``driftloop monitor`` process consumes a stream whose inputs move (two of four features), whose
predictions shift with them and whose accuracy falls (the labels follow another rule). Data
drift, prediction drift, performance and concept drift all fire for v1. Four paging sinks
(webhook, Slack, Alertmanager, PagerDuty) and one sink paging per alert (the behaviour before
incidents) point at a local HTTP receiver that counts what arrives.

Shown: one incident; each paging sink received exactly the incident's announced changes, once
each (PagerDuty's ``dedup_key`` and Alertmanager's ``incident_id`` label are the incident's);
the per-alert sink got one page per alert change (several); every alert message on the alerts
topic names the incident. The end is a condition (every record consumed, the incident open with
a performance member, every delivery sent), never a sleep.
"""
from __future__ import annotations

import time
from collections import Counter

import numpy as np
import orjson
import pandas as pd
import pytest
import sqlalchemy as sa

from driftloop.alerts import tables as t
from driftloop.core.store import Store
from tests.alerts.helpers import Receiver
from tests.fault_helpers import spawn, stop_process, wait_until
from tests.kafka_helpers import produce, read_topic

pytestmark = pytest.mark.kafka

FEATURES = {"x1": "numeric", "x2": "numeric", "x3": "numeric", "x4": "numeric"}
N_REF, N_OK, N_BAD = 3000, 600, 1500
DETECTORS = {"window_size": 500, "warmup": 0, "calibration_draws": 20, "cbpe": False,
             "performance_window_size": 500}
PAGING = {"/hook": "webhook", "/slack": "slack", "/am/api/v2/alerts": "alertmanager", "/pd": "pagerduty"}


def rows(n: int, seed: int, drifted: bool) -> pd.DataFrame:
    """Features, the model's prediction (rule x1 + x2 > 0, 8% of answers flipped) and the label
    (the same rule; after the drift another one: x1 + x2 > 2.5)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({f: rng.normal(size=n) for f in FEATURES})
    if drifted:
        df["x1"] += 1.5
        df["x2"] += 1.0
    score = df["x1"] + df["x2"]
    df["prediction"] = ((score > 0) ^ (rng.random(n) < 0.08)).astype(int)
    df["label"] = (score > (2.5 if drifted else 0)).astype(int)
    return df


def messages(cfg, df: pd.DataFrame, start: int, ts0: int) -> list[tuple[str, bytes, bytes]]:
    out = []
    for i, r in enumerate(df.itertuples(index=False)):
        eid = f"e{start + i}"
        out.append((cfg.topics.predictions, b"m", orjson.dumps({
            "event_id": eid, "model": "m", "model_version": "1", "ts": ts0 + start + i,
            "features": {f: float(getattr(r, f)) for f in FEATURES}, "prediction": int(r.prediction)})))
        out.append((cfg.topics.labels, b"m", orjson.dumps(
            {"event_id": eid, "model": "m", "ts": ts0 + start + i + 1, "label": int(r.label)})))
    return out


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_a_drifting_stream_that_loses_accuracy_pages_once_per_incident_change(
        kafka_bootstrap, make_config, receiver, tmp_path):
    rows(N_REF, 1, False).to_csv(tmp_path / "ref.csv", index=False)
    sinks = [{"name": kind, "type": kind, "url": receiver.base + path, "timeout_s": 5} for path, kind in PAGING.items()]
    sinks[2]["url"] = receiver.base + "/am"        # Alertmanager's base URL: the sink posts to /api/v2/alerts
    sinks[2]["resend_every_s"] = 0
    sinks[3]["routing_key"] = "R0UT1NG"
    sinks.append({"name": "per-alert", "type": "webhook", "url": receiver.base + "/per-alert", "page": "alerts",
                  "timeout_s": 5})
    path, cfg = make_config(
        kafka_bootstrap,
        models__m={"task": "classification", "features": FEATURES, "reference": str(tmp_path / "ref.csv"),
                   "detectors": DETECTORS},
        alerts__group_window_s=1, alerts__incidents={"wait_s": 5}, alerts__sinks=sinks,
        alerts__dispatch={"poll_interval_s": 0.1}, alerts__stale={"enabled": False})
    ts0 = int(time.time() * 1000) - 3_600_000
    log = tmp_path / "monitor.log"
    store = Store.from_config(cfg.store)
    proc = spawn("monitor", "-c", str(path), log=log)
    try:
        produce(kafka_bootstrap, messages(cfg, rows(N_OK, 2, False), 0, ts0)
                + messages(cfg, rows(N_BAD, 3, True), N_OK, ts0))

        def settled() -> bool:
            joined = store.read_counters().get("m", {}).get("joined", 0)
            with store.engine.connect() as c:
                incs = list(c.execute(sa.select(t.incidents.c.status, t.incidents.c.state)))
                deliveries = {r[0] for r in c.execute(sa.select(t.alert_deliveries.c.status))}
            kinds = set(t.loads(incs[0][1])["kinds"]) if incs else set()
            return (joined == N_OK + N_BAD and len(incs) == 1 and incs[0][0] == "open" and "performance" in kinds
                    and deliveries == {"sent"})
        wait_until(lambda: _quiet(settled), 120, "every record judged, the incident open with performance, "
                   "every delivery sent", proc=proc, log=log)
    finally:
        stop_process(proc, log=log)
    with store.engine.connect() as c:
        [inc] = list(c.execute(sa.select(t.incidents)))
        incident_events = list(c.execute(sa.select(t.alert_events).where(t.alert_events.c.alert_id == inc.incident_id)
                                         .order_by(t.alert_events.c.seq)))
        alert_changes = list(c.execute(sa.select(t.alert_events).where(t.alert_events.c.alert_id != inc.incident_id)))
    store.dispose()
    kinds = set(t.loads(inc.state)["kinds"])
    assert {"data_drift", "prediction_drift", "performance"} <= kinds, kinds
    keys = [e.idempotency_key for e in incident_events]
    assert [e.reason for e in incident_events][0] == "opened"
    for p, kind in PAGING.items():          # each paging sink: exactly the incident's changes, once each
        got = receiver.on(p)
        assert [r.key for r in got] == keys, (kind, [r.key for r in got], keys)
    assert {r.json()["dedup_key"] for r in receiver.on("/pd")} == {inc.incident_id}
    assert {a["labels"]["incident_id"] for r in receiver.on("/am/api/v2/alerts") for a in r.json()} == {inc.incident_id}
    hook = [r.json() for r in receiver.on("/hook")]
    assert all(m["type"] == "incident" and m["incident_id"] == inc.incident_id for m in hook)
    assert hook[0]["hint"]["text"].startswith("m v1: ")
    # before incidents: one page per alert change, several for the same problem
    per_alert = receiver.on("/per-alert")
    assert len(per_alert) == len(alert_changes) > len(keys)
    print(f"\npages per paging sink: {len(keys)} ({[e.reason for e in incident_events]}); "
          f"per alert: {len(per_alert)} ({Counter(t.loads(e.message)['kind'] for e in alert_changes)}); "
          f"the page: {hook[0]['summary']}")
    # the alerts topic: every alert message names the incident
    topic = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap, cfg.topics.alerts)]
    assert topic and {m["incident_id"] for m in topic} == {inc.incident_id}


def _quiet(cond) -> bool:
    """``cond()``, with store errors (the monitor holds the SQLite lock) read as not yet."""
    try:
        return cond()
    except sa.exc.OperationalError:
        return False
