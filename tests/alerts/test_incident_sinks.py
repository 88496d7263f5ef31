"""Incidents through the AlertManager and the sinks' formats: paging sinks get one message per
incident change, the Kafka topic and ``page: alerts`` sinks every alert change (with its
``incident_id``); PagerDuty, Alertmanager and Slack render incidents."""
from __future__ import annotations

from collections import Counter

import orjson
import sqlalchemy as sa

from driftloop.alerts import AlertDispatcher, AlertManager, AlertsConfig
from driftloop.alerts import tables as t
from driftloop.alerts.incidents import incident_id
from driftloop.alerts.sinks import formats
from tests.alerts.helpers import det

S = 1000
SINKS = [
    {"name": "pager", "type": "webhook", "url": "http://127.0.0.1:9/pager"},
    {"name": "perf-only", "type": "webhook", "url": "http://127.0.0.1:9/perf", "routes": [{"kinds": ["performance"]}]},
    {"name": "per-alert", "type": "webhook", "url": "http://127.0.0.1:9/alerts", "page": "alerts"},
]


def deliveries(store) -> Counter:
    with store.engine.connect() as c:
        return Counter((r.alert_id, r.sink) for r in c.execute(sa.select(t.alert_deliveries)))


def messages(store, subject: str) -> list[dict]:
    with store.engine.connect() as c:
        return [orjson.loads(r.message) for r in c.execute(
            sa.select(t.alert_events).where(t.alert_events.c.alert_id == subject).order_by(t.alert_events.c.seq))]


def test_paging_sinks_get_incident_changes_and_the_topic_every_alert_change(any_store):
    m = AlertManager(AlertsConfig.from_dict({"group_window_s": 0, "hold_down_s": 0, "cooldown_s": 0,
                                             "incidents": {"wait_s": 30}, "sinks": SINKS}), any_store)
    with any_store.transaction() as conn:
        drift = m.process(conn, "housing", "1", [det("Latitude"), det("Longitude")], 0)
        pred = m.process(conn, "housing", "1", [det(None, kind="prediction_drift")], 5 * S)
    iid = incident_id("housing", "1", 1)
    assert [c.state.incident_id for c in drift + pred] == [iid, iid]
    got = deliveries(any_store)
    assert {sink for (_a, sink) in got} == {"kafka", "per-alert"}          # nothing paged during the wait
    with any_store.transaction() as conn:
        assert m.tick(conn, 29 * S) == []
        m.tick(conn, 30 * S)
    assert deliveries(any_store)[(iid, "pager")] == 1 and (iid, "perf-only") not in deliveries(any_store)
    [opened] = messages(any_store, iid)
    assert (opened["type"], opened["reason"], opened["status"], len(opened["members"])) == (
        "incident", "opened", "firing", 2)
    assert opened["summary"].startswith("housing v1: incident opened: 2 alerts firing (data drift, prediction drift).")
    with any_store.transaction() as conn:        # performance joins: the incident grows, the perf route now matches
        m.process(conn, "housing", "1", [det(None, kind="performance", detector="accuracy")], 60 * S)
    got = deliveries(any_store)
    assert got[(iid, "pager")] == 2 and got[(iid, "perf-only")] == 1
    assert messages(any_store, iid)[-1]["reason"] == "grown"
    # every alert change on the topic names the incident
    with any_store.engine.connect() as c:
        alert_msgs = [orjson.loads(r.message) for r in c.execute(
            sa.select(t.alert_events).where(t.alert_events.c.alert_id != iid))]
    assert len(alert_msgs) == 3 and {a["incident_id"] for a in alert_msgs} == {iid}
    # everything resolves: the incident resolves once
    with any_store.transaction() as conn:
        m.process(conn, "housing", "1", [det("Latitude", firing=False), det("Longitude", firing=False),
                                         det(None, kind="prediction_drift", firing=False),
                                         det(None, kind="performance", detector="accuracy", firing=False)], 90 * S)
        m.tick(conn, 91 * S)
    last = messages(any_store, iid)[-1]
    assert (last["reason"], last["status"]) == ("resolved", "resolved")
    assert [x["reason"] for x in messages(any_store, iid)] == ["opened", "grown", "resolved"]


def incident_msg(status: str = "firing") -> dict:
    return {"type": "incident", "incident_id": "inc1", "status": status, "reason": "opened", "model": "housing",
            "model_version": "1", "severity": "critical", "summary": "housing v1: incident opened: 2 alerts firing.",
            "hint": {"text": "housing v1: inputs moved (Latitude 1.6σ).", "parts": []},
            "members": [{"alert_id": "a1", "kind": "data_drift", "detector": "group", "feature": None,
                         "status": "firing", "severity": "critical", "count": 7},
                        {"alert_id": "a2", "kind": "performance", "detector": "accuracy", "feature": None,
                         "status": "firing", "severity": "warning"}],
            "kinds": ["data_drift", "performance"], "joined": [], "sequence": 1, "idempotency_key": "inc1:firing:1",
            "started_at": "2025-01-01T00:00:00.000Z", "opened_at": "2025-01-01T00:00:30.000Z",
            "detected_at": "2025-01-01T00:00:30.000Z", "resolved_at": None, "previous_severity": None}


def test_pagerduty_alertmanager_and_slack_render_an_incident():
    pd = formats.pagerduty(incident_msg(), "KEY")
    assert (pd["dedup_key"], pd["event_action"], pd["payload"]["class"]) == ("inc1", "trigger", "incident")
    assert pd["payload"]["group"] == "data_drift,performance"
    assert formats.pagerduty(incident_msg("resolved"), "KEY") == {"routing_key": "KEY", "event_action": "resolve",
                                                                  "dedup_key": "inc1"}
    [am] = formats.alertmanager(incident_msg(), now_ms=0, resend_every_s=0)
    assert am["labels"] == {"alertname": "driftloop_incident", "incident_id": "inc1", "model": "housing",
                            "severity": "critical", "model_version": "1"}
    sl = formats.slack(incident_msg())
    assert sl["text"].startswith(":rotating_light: [CRITICAL] housing v1: incident opened")
    assert "data drift (firing, critical)" in sl["blocks"][1]["text"]["text"]
    assert "incident `inc1`" in sl["blocks"][2]["elements"][0]["text"]


class Recording:
    """A sink that accepts everything (``name``, ``send``, ``close``, as the real ones)."""

    def __init__(self, name: str) -> None:
        self.name, self.sent = name, []

    def send(self, message: dict, key: str) -> None:
        self.sent.append(key)

    def close(self) -> None:
        pass


def test_an_open_incident_is_what_alertmanager_is_sent_again(sqlite_store):
    """The resend (Alertmanager wants firing alerts repeated) covers incidents: the last firing
    message of each open incident the sink received, none once it resolved."""
    cfg = AlertsConfig.from_dict({"group_window_s": 0, "hold_down_s": 0, "incidents": {"wait_s": 0},
                                  "sinks": [{"name": "pager", "type": "webhook", "url": "http://127.0.0.1:9/p"}]})
    m, sink = AlertManager(cfg, sqlite_store), Recording("pager")
    d = AlertDispatcher(sqlite_store, cfg, [sink])
    with sqlite_store.transaction() as conn:
        m.process(conn, "housing", "1", [det("Latitude")], 0)
        m.process(conn, "housing", "1", [det(None, kind="performance", detector="accuracy")], 5 * S)
    d.deliver_pending_once()
    iid = incident_id("housing", "1", 1)
    assert sink.sent == [f"{iid}:firing:1", f"{iid}:firing:2"]
    assert [k for k, _m in d.firing_messages("pager")] == [f"{iid}:firing:2"]
    with sqlite_store.transaction() as conn:
        m.process(conn, "housing", "1", [det("Latitude", firing=False),
                                         det(None, kind="performance", detector="accuracy", firing=False)], 9 * S)
    d.deliver_pending_once()
    assert sink.sent[-1] == f"{iid}:resolved:3" and d.firing_messages("pager") == []
