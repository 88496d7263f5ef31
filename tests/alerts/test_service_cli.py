"""The service with its scheduler (hold-down ends between batches), Alertmanager re-sends, sink
formats in detail, and ``driftloop alerts list``."""
from __future__ import annotations

import argparse
import io
import json
import time

import yaml

from driftloop.alerts import AlertService
from driftloop.alerts.cli import add_commands, cmd_alerts_list, firing_counts
from driftloop.alerts.sinks import formats
from driftloop.core.config import load_config
from driftloop.core.store import Store, now_ms
from tests.alerts.helpers import det


def wait_until(pred, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def config_file(tmp_path, receiver, **alerts) -> tuple:
    data = {"store": {"url": f"sqlite:///{tmp_path}/svc.db"},
            "models": {"fraud": {"task": "classification", "features": {"amount": "numeric"}}},
            "alerts": {"group_window_s": 0, "sinks": [
                {"name": "am", "type": "alertmanager", "page": "alerts", "url": receiver.base, "resend_every_s": 0.3},
                {"name": "hook", "type": "webhook", "page": "alerts", "url": receiver.base + "/hook"}],
                "dispatch": {"poll_interval_s": 0.05}} | alerts}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, load_config(path, environ={})


def test_service_resolves_after_hold_down_between_batches_and_resends_to_alertmanager(tmp_path, receiver):
    path, cfg = config_file(tmp_path, receiver, hold_down_s=0.3, tick_every_s=0.1)
    store = Store.from_config(cfg.store)
    svc = AlertService(cfg, store, kafka=False)
    svc.start()
    try:
        with store.transaction() as conn:
            [fire] = svc.on_detections(conn, "fraud", [det("amount")], now_ms())
        # Alertmanager gets the firing alert, then the same alert again while it fires (re-send)
        wait_until(lambda: len(receiver.on("/api/v2/alerts")) >= 2)
        assert {r.key for r in receiver.on("/api/v2/alerts")} == {fire.idempotency_key}
        with store.transaction() as conn:      # the detector clears; no more batches come
            svc.process(conn, "fraud", None, [det("amount", firing=False)], now_ms())
        wait_until(lambda: any(r.json()["status"] == "resolved" for r in receiver.on("/hook")))
        resolved_at = next(r.json()["resolved_at"] for r in receiver.on("/hook") if r.json()["status"] == "resolved")
        # each sink has its own worker: wait for Alertmanager's copy of the resolution as well
        wait_until(lambda: any(r.json()[0]["endsAt"] == resolved_at for r in receiver.on("/api/v2/alerts")))
    finally:
        svc.stop()
    hook = [r.json() for r in receiver.on("/hook")]
    assert [h["status"] for h in hook] == ["firing", "resolved"]
    assert "no new detection for" in hook[1]["summary"]
    am = [r.json()[0] for r in receiver.on("/api/v2/alerts")]
    assert am[-1]["endsAt"] == hook[1]["resolved_at"]           # the resolution reached Alertmanager too
    assert all(a["labels"]["alert_id"] == fire.alert_id for a in am)
    store.dispose()


def test_scheduled_stale_check_fires_and_events_resolve_it(tmp_path, receiver):
    path, cfg = config_file(tmp_path, receiver, stale={"check_every_s": 0.1, "predictions_after_s": 0.5})
    store = Store.from_config(cfg.store)
    svc = AlertService(cfg, store, kafka=False)
    svc.start()
    try:
        wait_until(lambda: len(receiver.on("/hook")) >= 1)
        fired = receiver.on("/hook")[0].json()
        assert (fired["status"], fired["kind"], fired["detector"], fired["model"]) == (
            "firing", "stale_stream", "no_predictions", "fraud")
        with store.transaction() as conn:      # events arrive
            store.add_counters(conn, {("fraud", "predictions"): 5})
        wait_until(lambda: len(receiver.on("/hook")) >= 2)
    finally:
        svc.stop()
    resolved = receiver.on("/hook")[1].json()
    assert (resolved["status"], resolved["alert_id"]) == ("resolved", fired["alert_id"])
    assert len(receiver.on("/hook")) == 2
    store.dispose()


def test_alerts_list_table_and_json_newest_first(tmp_path, receiver):
    path, cfg = config_file(tmp_path, receiver)
    store = Store.from_config(cfg.store)
    svc = AlertService(cfg, store, kafka=False)
    store.create_schema()
    with store.transaction() as conn:
        svc.process(conn, "fraud", "3", [det("amount")], 1_000)
        svc.process(conn, "fraud", "3", [det(None, kind="multivariate_drift", detector="domain_classifier")], 2_000)
        svc.process(conn, "fraud", "3", [det(f"g{i}", kind="prediction_drift") for i in range(3)], 3_000)
    svc.dispatcher.deliver_pending_once()
    assert firing_counts(store) == {"fraud": 3}              # two alerts and one group

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    out = io.StringIO()
    args = parser.parse_args(["alerts", "list", "-c", str(path), "--json"])
    assert cmd_alerts_list(args, out) == 0
    rows = json.loads(out.getvalue())
    assert [r["updated_at"] for r in rows] == sorted((r["updated_at"] for r in rows), reverse=True)
    group = next(r for r in rows if r["detector"] == "group")
    assert len(group["members"]) == 3 and group["deliveries"]["hook"]["status"] == "sent"
    assert group["deliveries"]["kafka"]["status"] == "pending"
    first = next(r for r in rows if r["feature"] == "amount")
    assert first["summary"].startswith("fraud v3: feature `amount` drifted (PSI 0.31")

    out = io.StringIO()
    assert cmd_alerts_list(parser.parse_args(["alerts", "list", "-c", str(path), "--status", "firing"]), out) == 0
    table = out.getvalue().splitlines()
    assert table[0].split()[:4] == ["updated", "status", "severity", "model"]
    assert len(table) == 1 + 6 and "3 members" in out.getvalue()
    store.dispose()


def test_formats_escalation_escaping_and_resolve():
    msg = {"alert_id": "a1", "status": "firing", "model": "fraud", "model_version": None, "kind": "data_drift",
           "detector": "psi", "feature": None, "severity": "critical", "summary": "x < y & z",
           "detected_at": "2024-01-01T00:00:00.000Z", "started_at": "2024-01-01T00:00:00.000Z",
           "resolved_at": None, "sequence": 2, "idempotency_key": "a1:firing:2", "previous_severity": "warning"}
    am = formats.alertmanager(msg, now_ms=0, resend_every_s=0)
    assert [a["labels"]["severity"] for a in am] == ["critical", "warning"]
    assert "endsAt" not in am[0] and am[1]["endsAt"] == "1970-01-01T00:00:00.000Z"
    assert "feature" not in am[0]["labels"]
    assert formats.slack(msg)["text"] == ":rotating_light: [CRITICAL] x &lt; y &amp; z"
    resolved = msg | {"status": "resolved", "resolved_at": "2024-01-01T01:00:00.000Z", "previous_severity": None}
    assert formats.alertmanager(resolved, now_ms=0, resend_every_s=300)[0]["endsAt"] == "2024-01-01T01:00:00.000Z"
    assert formats.pagerduty(resolved, "K") == {"routing_key": "K", "event_action": "resolve", "dedup_key": "a1"}
    assert formats.slack(resolved)["text"].startswith(":white_check_mark: [RESOLVED]")
