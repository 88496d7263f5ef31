"""Delivery to a real local HTTP receiver: every format, signed, once per idempotency key; a hung
or failing sink blocks neither ingestion nor the other sinks; order per alert holds."""
from __future__ import annotations

import logging
import threading
import time

import sqlalchemy as sa

from driftloop.alerts import AlertDispatcher, AlertManager, AlertsConfig
from driftloop.alerts import tables as t
from driftloop.alerts.sinks import build_sinks, verify_signature
from tests.alerts.helpers import Behaviour, Receiver, det

SECRET = "s3cret-for-tests"
PATHS = {"webhook": "/hook", "slack": "/slack", "alertmanager": "/am/api/v2/alerts", "pagerduty": "/pd"}


def alerts_cfg(receiver: Receiver, **kw) -> AlertsConfig:
    sinks = [{"name": typ, "type": typ, "page": "alerts", "url": receiver.base + path.removesuffix("/api/v2/alerts"),
              "secret": SECRET, "timeout_s": 5, **({"routing_key": "RK-123"} if typ == "pagerduty" else {})}
             for typ, path in PATHS.items()]   # paging per alert: the delivery guarantees are per change
    data = {"group_window_s": 0, "hold_down_s": 0, "cooldown_s": 0, "sinks": sinks,
            "dispatch": {"poll_interval_s": 0.05, "backoff_initial_s": 0.1, "backoff_max_s": 0.5, "lease_s": 10}}
    for key, value in kw.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return AlertsConfig.from_dict(data)


def setup(store, receiver, **kw) -> tuple[AlertManager, AlertDispatcher]:
    cfg = alerts_cfg(receiver, **kw)
    m = AlertManager(cfg, store)
    d = AlertDispatcher(store, cfg, build_sinks(None, cfg, kafka=False))
    m.add_listener(d.wake)
    return m, d


def keys(reqs) -> list[str]:
    return [r.key for r in reqs]


def wait_until(pred, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def delivery_rows(store):
    with store.engine.connect() as c:
        return {(r.idempotency_key, r.sink): r for r in c.execute(sa.select(t.alert_deliveries))}


def test_every_format_gets_firing_and_resolution_once_signed(any_store, receiver):
    m, d = setup(any_store, receiver)
    with any_store.transaction() as conn:
        [fire] = m.process(conn, "fraud", "3", [det("amount", severity="critical")], 1_700_000_000_000)
    assert d.deliver_pending_once() == 4
    assert d.deliver_pending_once() == 0                    # sent rows are never sent again
    with any_store.transaction() as conn:
        [res] = m.process(conn, "fraud", "3", [det("amount", firing=False)], 1_700_000_060_000)
    assert d.deliver_pending_once() == 4
    d.deliver_pending_once()
    want = [fire.idempotency_key, res.idempotency_key]
    for typ, path in PATHS.items():
        got = receiver.on(path)
        assert keys(got) == want, typ
        assert all(verify_signature(SECRET.encode(), r.body, r.headers, max_age_s=600) for r in got), typ
    hook = [r.json() for r in receiver.on("/hook")]
    assert [h["status"] for h in hook] == ["firing", "resolved"] and hook[0]["idempotency_key"] == want[0]
    slack = receiver.on("/slack")[0].json()
    assert slack["text"].startswith(":rotating_light: [CRITICAL] fraud v3: feature `amount` drifted")
    assert slack["blocks"][0]["type"] == "section"
    am_fire, am_res = (r.json() for r in receiver.on(PATHS["alertmanager"]))
    assert am_fire[0]["labels"] | {} == {"alertname": "driftloop_data_drift", "alert_id": fire.alert_id,
                                         "model": "fraud", "kind": "data_drift", "detector": "psi",
                                         "severity": "critical", "feature": "amount"}
    assert am_fire[0]["startsAt"] == "2023-11-14T22:13:20.000Z" and "endsAt" in am_fire[0]
    assert am_res[0]["endsAt"] == "2023-11-14T22:14:20.000Z"
    pd_fire, pd_res = (r.json() for r in receiver.on("/pd"))
    assert (pd_fire["event_action"], pd_fire["dedup_key"], pd_fire["routing_key"]) == ("trigger", fire.alert_id,
                                                                                      "RK-123")
    assert pd_fire["payload"]["severity"] == "critical" and pd_fire["payload"]["summary"].startswith("fraud v3:")
    assert (pd_res["event_action"], pd_res["dedup_key"]) == ("resolve", fire.alert_id)


def test_background_workers_deliver_and_a_second_dispatcher_sends_nothing_twice(sqlite_store, receiver):
    m, d = setup(sqlite_store, receiver)
    other = AlertDispatcher(sqlite_store, d.cfg, build_sinks(None, d.cfg, kafka=False))
    d.start()
    other.start()
    try:
        with sqlite_store.transaction() as conn:
            [fire] = m.process(conn, "fraud", "3", [det("amount")], 1_000)
        for path in PATHS.values():
            receiver.wait_for(path, 1)
        with sqlite_store.transaction() as conn:
            [res] = m.process(conn, "fraud", "3", [det("amount", firing=False)], 2_000)
        for path in PATHS.values():
            receiver.wait_for(path, 2)
    finally:
        d.stop()
        other.stop()
    for path in PATHS.values():
        assert keys(receiver.on(path)) == [fire.idempotency_key, res.idempotency_key]
    assert {(k, r.status, r.attempts, r.lease_until, r.last_error) for k, r in delivery_rows(sqlite_store).items() if r.status != "sent" and k[1] != "kafka"} == set()


def test_a_hung_sink_blocks_neither_ingestion_nor_the_other_sinks(sqlite_store, receiver):
    hung = receiver.behaviour["/slack"] = Behaviour(hang=True)
    m, d = setup(sqlite_store, receiver)
    d.sinks["slack"].timeout_s = 0.5       # hung requests time out and are retried with backoff
    d.start()
    try:
        with sqlite_store.transaction() as conn:
            [fire] = m.process(conn, "fraud", "3", [det("amount")], 1_000)
        assert hung.hanging.wait(10)
        # while the Slack request hangs: the other sinks deliver ...
        for path in ("/hook", PATHS["alertmanager"], "/pd"):
            receiver.wait_for(path, 1)
        # ... and batches keep committing, with alerts, without waiting for any sink
        for i in range(20):
            with sqlite_store.transaction() as conn:
                m.process(conn, "price", "1", [det(f"x{i}", firing=i % 2 == 0)], 2_000 + i)
        receiver.wait_for("/hook", 2)
        assert not hung.release.is_set() and receiver.on("/slack") == []
        receiver.wait_for_attempts("/slack", 2)   # the first request timed out; the retry hangs too
        hung.release.set()                  # the sink recovers
        wait_until(lambda: delivery_rows(sqlite_store)[(fire.idempotency_key, "slack")].status == "sent")
    finally:
        d.stop()
    slack_keys = set(keys(receiver.on("/slack")))
    assert fire.idempotency_key in slack_keys
    row = delivery_rows(sqlite_store)[(fire.idempotency_key, "slack")]
    assert row.status == "sent" and row.attempts >= 2      # timed out at least once, then delivered


def test_a_failing_sink_is_retried_with_the_same_key_and_order_per_alert_holds(sqlite_store, receiver, caplog):
    receiver.behaviour["/pd"] = Behaviour(fail=3, fail_status=500)
    m, d = setup(sqlite_store, receiver)
    caplog.set_level(logging.WARNING)
    with sqlite_store.transaction() as conn:
        [fire] = m.process(conn, "fraud", "3", [det("amount")], 1_000)
    d.deliver_pending_once()
    with sqlite_store.transaction() as conn:   # resolved while the firing is still being retried
        [res] = m.process(conn, "fraud", "3", [det("amount", firing=False)], 2_000)
    d.start()
    try:
        receiver.wait_for("/pd", 2)
        receiver.wait_for("/hook", 2)
    finally:
        d.stop()
    attempts = [r for r in receiver.attempts if r.path == "/pd"]
    assert keys(attempts) == [fire.idempotency_key] * 4 + [res.idempotency_key]   # resolved waited for firing
    assert keys(receiver.on("/pd")) == [fire.idempotency_key, res.idempotency_key]
    # the healthy sink got both changes before the failing one recovered
    hook_done = receiver.on("/hook")[0].at
    assert hook_done < receiver.on("/pd")[0].at
    rows = delivery_rows(sqlite_store)
    assert rows[(fire.idempotency_key, "pagerduty")].attempts == 4
    assert "HTTP 500" in caplog.text and "RK-123" not in caplog.text and receiver.base not in caplog.text
    assert SECRET not in caplog.text                   # the HMAC secret of the failing sink neither


def test_gives_up_after_max_attempts_when_configured(sqlite_store, receiver):
    receiver.behaviour["/hook"] = Behaviour(fail=100, fail_status=503)
    m, d = setup(sqlite_store, receiver, dispatch={"max_attempts": 2, "backoff_initial_s": 0.01,
                                                   "backoff_max_s": 0.01})
    with sqlite_store.transaction() as conn:
        [fire] = m.process(conn, "fraud", "3", [det("amount")], 1_000)
    for _ in range(3):
        d.deliver_pending_once("webhook")
        threading.Event().wait(0.03)
    row = delivery_rows(sqlite_store)[(fire.idempotency_key, "webhook")]
    assert (row.status, row.attempts, row.last_error) == ("failed", 2, "HTTP 503")
