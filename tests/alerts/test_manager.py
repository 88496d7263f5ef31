"""AlertManager on SQLite and PostgreSQL: state, history and deliveries in the caller's
transaction; routing; grouping; hold-down via tick; resolve on request; stale streams."""
from __future__ import annotations

import logging

import orjson
import pytest
import sqlalchemy as sa
import yaml

from driftloop.alerts import AlertDispatcher, AlertManager, AlertsConfig
from driftloop.alerts import tables as t
from driftloop.alerts.lifecycle import fingerprint, group_fingerprint
from driftloop.alerts.sinks import build_sinks, verify_signature
from driftloop.alerts.stale import StaleChecker
from driftloop.core.config import load_config
from driftloop.core.config.api import ApiConfig
from driftloop.core.store import now_ms
from tests.alerts.helpers import Behaviour, det

S = 1000
SINKS = [   # paging per alert: these tests are about the alerts' routing (incidents: test_incident_paging.py)
    {"name": "all", "type": "webhook", "url": "http://127.0.0.1:9/all", "page": "alerts"},
    {"name": "fraud-critical", "type": "webhook", "url": "http://127.0.0.1:9/fc", "page": "alerts",
     "routes": [{"models": ["fraud"], "min_severity": "critical"}]},
    {"name": "price-only", "type": "webhook", "url": "http://127.0.0.1:9/p", "page": "alerts",
     "routes": [{"models": ["price"]}]},
]


def manager(store, **kw) -> AlertManager:
    cfg = {"group_window_s": 0, "hold_down_s": 60, "cooldown_s": 600, "sinks": SINKS} | kw
    return AlertManager(AlertsConfig.from_dict(cfg), store)


def rows(store, table):
    with store.engine.connect() as c:
        return [r._asdict() for r in c.execute(sa.select(table))]


def deliveries(store) -> set[tuple[str, str]]:
    return {(r["idempotency_key"], r["sink"]) for r in rows(store, t.alert_deliveries)}


def test_process_writes_state_event_and_routed_deliveries_in_the_callers_transaction(any_store):
    m = manager(any_store)
    with any_store.transaction() as conn:
        [ch] = m.process(conn, "fraud", "3", [det("amount")], 1_000)
    key = ch.idempotency_key
    assert key == f"{fingerprint('fraud', 'data_drift', 'psi', 'amount', '3')}:firing:1"
    assert deliveries(any_store) == {(key, "kafka"), (key, "all")}      # not critical, not price
    [ev] = rows(any_store, t.alert_events)
    msg = orjson.loads(ev["message"])
    for field in ("alert_id", "status", "model", "model_version", "kind", "detector", "feature", "severity",
                  "statistic", "p_value", "threshold", "window", "detected_at", "summary", "evidence"):
        assert field in msg
    assert msg["summary"].startswith("fraud v3: feature `amount` drifted (PSI 0.31")
    assert msg["window"] == {"start_ts": 0, "end_ts": 60_000, "n": 5000}
    # escalation goes to the critical route too
    with any_store.transaction() as conn:
        [esc] = m.process(conn, "fraud", "3", [det("amount", severity="critical")], 2_000)
    assert {s for k, s in deliveries(any_store) if k == esc.idempotency_key} == {"kafka", "all", "fraud-critical"}


def test_a_rolled_back_batch_leaves_no_alert_behind(any_store):
    m = manager(any_store)
    with pytest.raises(RuntimeError), any_store.transaction() as conn:
        assert m.process(conn, "fraud", "3", [det("amount")], 1_000)
        raise RuntimeError("crash before commit")
    assert rows(any_store, t.alerts) == rows(any_store, t.alert_events) == rows(any_store, t.alert_deliveries) == []
    with any_store.transaction() as conn:      # the batch comes again: the same alert, once
        [ch] = m.process(conn, "fraud", "3", [det("amount")], 1_000)
    assert ch.seq == 1 and len(rows(any_store, t.alert_events)) == 1


def test_fifteen_drifted_features_raise_one_grouped_page(any_store):
    m = manager(any_store)
    with any_store.transaction() as conn:
        changes = m.process(conn, "fraud", "3", [det(f"feature_{i:02d}", stat=0.2 + i / 100) for i in range(15)], S)
    [ch] = changes
    assert ch.alert_id == group_fingerprint("fraud", "data_drift", "3")
    [ev] = rows(any_store, t.alert_events)
    msg = orjson.loads(ev["message"])
    assert msg["detector"] == "group" and msg["feature"] is None
    assert sorted(msg["evidence"]["features"]) == [f"feature_{i:02d}" for i in range(15)]
    assert msg["summary"].startswith("fraud v3: 15 features drifted at once over the last 5,000 predictions: "
                                     "`feature_14` (PSI 0.34)")
    assert "and 10 more" in msg["summary"]
    assert len(rows(any_store, t.alert_deliveries)) == 2           # one page per sink, not 15
    assert len(rows(any_store, t.alerts)) == 16                    # 15 members + the group


def test_tick_resolves_after_hold_down_and_resolve_on_request(any_store):
    m = manager(any_store)
    with any_store.transaction() as conn:
        [a] = m.process(conn, "fraud", "3", [det("amount")], 0)
        [b] = m.process(conn, "price", "7", [det("x")], 0)
    with any_store.transaction() as conn:
        assert m.process(conn, "fraud", "3", [det("amount", firing=False)], 10 * S) == []
    assert m.tick(now=69 * S) == []
    [res] = m.tick(now=70 * S)
    assert (res.alert_id, res.status) == (a.alert_id, "resolved")
    with any_store.transaction() as conn:
        [res2] = m.resolve(conn, [b.alert_id, "nope"], "retrained: price v8 promoted", 80 * S)
    assert res2.status == "resolved"
    msg = orjson.loads([r for r in rows(any_store, t.alert_events) if r["idempotency_key"] == res2.idempotency_key][0]
                       ["message"])
    assert msg["summary"].startswith("price v7: resolved (retrained: price v8 promoted). Was: feature `x` drifted")
    # the price-only sink got the price alert's firing and resolution
    assert {(k, s) for k, s in deliveries(any_store) if s == "price-only"} == {
        (b.idempotency_key, "price-only"), (res2.idempotency_key, "price-only")}
    states = m.states()
    assert states[a.alert_id].status == states[b.alert_id].status == "resolved"


def test_nothing_due_and_no_detections_writes_nothing(any_store):
    m = manager(any_store)
    with any_store.transaction() as conn:
        assert m.process(conn, "fraud", "3", [], 0) == []
    assert rows(any_store, t.alerts) == []


def test_stale_stream_fires_without_events_and_resolves_with_them(any_store):
    m = manager(any_store, stale={"predictions_after_s": 60, "labels_after_s": 300, "models": {
        "price": {"enabled": False}}})
    checker = StaleChecker(m, any_store, ["fraud", "price"], started_at=0)
    with any_store.transaction() as conn:
        any_store.add_counters(conn, {("fraud", "predictions"): 10, ("fraud", "labels"): 5})
    assert checker.check(now=0) == []
    assert checker.check(now=59 * S) == []
    [ch] = checker.check(now=60 * S)
    assert (ch.status, ch.state.kind, ch.state.detector) == ("firing", "stale_stream", "no_predictions")
    msg = orjson.loads(rows(any_store, t.alert_events)[0]["message"])
    assert msg["summary"] == ("fraud: no predictions received for 60 s (limit 60 s); check the service that "
                              "publishes them and the predictions topic.")
    assert checker.check(now=90 * S) == []                       # still stale: an update, no second page
    with any_store.transaction() as conn:
        any_store.add_counters(conn, {("fraud", "predictions"): 3})
    [res] = checker.check(now=120 * S)
    assert (res.alert_id, res.status) == (ch.alert_id, "resolved")
    assert "predictions are arriving again (3 new since the last check)" in orjson.loads(
        [e for e in rows(any_store, t.alert_events) if e["alert_id"] == ch.alert_id][-1]["message"])["summary"]
    # labels have a longer limit; the disabled model never fires
    [lab] = checker.check(now=300 * S)
    assert lab.state.detector == "no_labels" and lab.state.model == "fraud"


def test_config_errors_are_clear():
    from driftloop.core.config import ConfigError

    for bad, msg in [
        ({"hold_down_s": -1}, "alerts.hold_down_s: must be >= 0"),
        ({"group_min": 1}, "alerts.group_min"),
        ({"sinks": [{"type": "webhook"}]}, "alerts.sinks[0].url: required"),
        ({"sinks": [{"type": "webhook", "url": "ftp://x"}]}, "http:// or https://"),
        ({"sinks": [{"type": "pagerduty"}]}, "alerts.sinks[0].routing_key: required"),
        ({"sinks": [{"type": "slack", "url_env": "NOPE_NOT_SET"}]}, "environment variable NOPE_NOT_SET is not set"),
        ({"sinks": [{"type": "webhook", "url": "http://a"}, {"name": "webhook", "type": "slack", "url": "http://b"}]},
         "used twice"),
        ({"sinks": [{"type": "webhook", "url": "http://a", "routes": [{"min_severity": "high"}]}]},
         "alerts.sinks[0].routes[0].min_severity"),
        ({"stale": {"every": 3}}, "unknown field `every`"),
        ({"sinks": [{"type": "webhook", "url": "http://a", "routes": [{"kinds": ["drift"]}]}]},
         "alerts.sinks[0].routes[0].kinds: unknown kinds ['drift']"),
    ]:
        with pytest.raises(ConfigError, match=msg.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
            AlertsConfig.from_dict(bad, environ={})


def test_secrets_never_appear_in_repr_or_logs(tmp_path, sqlite_store, receiver, caplog):
    token, secret, routing_key, api_token = "TOKENXYZ", "hunter2", "ROUTINGKEY", "APITOKEN42"
    cfg = AlertsConfig.from_dict({"sinks": [
        {"type": "slack", "url": "https://hooks.slack.com/services/T0/B0/TOKENXYZ", "secret": "hunter2"},
        {"type": "pagerduty", "routing_key_env": "PD_KEY"}]}, environ={"PD_KEY": "ROUTINGKEY"})
    text = repr(cfg) + str(cfg.sinks)
    assert "TOKENXYZ" not in text and "hunter2" not in text and "ROUTINGKEY" not in text
    # the whole configuration, loaded from a file with the secrets inline
    slack_path = f"/services/T0/B0/{token}"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "alerts": {"group_window_s": 0, "sinks": [
            {"name": "slack", "type": "slack", "url": receiver.base + slack_path, "secret": secret, "timeout_s": 5,
             "headers": {"Authorization": f"Bearer {api_token}"}, "page": "alerts"},
            {"name": "pd", "type": "pagerduty", "url": receiver.base + "/pd", "routing_key": routing_key,
             "secret": secret, "timeout_s": 5, "page": "alerts"}],
            "dispatch": {"poll_interval_s": 0.05, "backoff_initial_s": 0.05, "backoff_max_s": 0.1}},
        "api": {"token": api_token}}))
    config = load_config(path, environ={})
    acfg = AlertsConfig.from_dict(config.alerts)
    secrets = (token, secret, routing_key, api_token, receiver.base)
    for text in (repr(config), str(config), repr(acfg), repr(ApiConfig.from_dict(config.api))):
        assert "<hidden>" in text
        assert [s for s in secrets if s in text] == []
    # the logs, at every level, of deliveries that fail (HTTP 500) and are retried
    receiver.behaviour[slack_path] = Behaviour(fail=2, fail_status=500)
    receiver.behaviour["/pd"] = Behaviour(fail=2, fail_status=500)
    caplog.set_level(logging.DEBUG)
    m = AlertManager(acfg, sqlite_store)
    d = AlertDispatcher(sqlite_store, acfg, build_sinks(config, acfg, kafka=False))
    m.add_listener(d.wake)
    d.start()
    try:
        with sqlite_store.transaction() as conn:
            [fire] = m.process(conn, "fraud", "3", [det("amount")], now_ms())
        got = receiver.wait_for(slack_path, 1) + receiver.wait_for("/pd", 1)
    finally:
        d.stop()
    assert [r.key for r in got] == [fire.idempotency_key] * 2
    assert all(verify_signature(secret.encode(), r.body, r.headers) for r in got)   # the secret was in use
    assert got[1].json()["routing_key"] == routing_key                              # and so was the key
    assert caplog.text.count("HTTP 500") >= 4 and "retrying in" in caplog.text      # the failures were logged
    assert [s for s in secrets if s in caplog.text] == []
