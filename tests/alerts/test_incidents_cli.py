"""``driftloop incidents list/show`` and ``/api/incidents``: the same rows, the hint ranked, the
members (a group's under it) and the timeline with the deliveries per sink."""
from __future__ import annotations

import argparse
import io
import json

import yaml
from fastapi.testclient import TestClient

from driftloop.alerts import AlertManager
from driftloop.alerts.incidents import incident_id
from driftloop.alerts.incidents_cli import cmd_incidents_list, cmd_incidents_show, list_incidents
from driftloop.app.api import create_app
from driftloop.app.stats import collect_stats
from driftloop.core.config import load_config
from driftloop.core.store import Store
from tests.alerts.helpers import det

S = 1000


def make_store(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "store": {"url": f"sqlite:///{tmp_path}/i.db"}, "api": {"enabled": False},
        "models": {"housing": {"task": "classification", "features": {"Latitude": "numeric"}, "reference": "r.csv"}},
        "alerts": {"group_window_s": 0, "hold_down_s": 0, "incidents": {"wait_s": 0},
                   "sinks": [{"name": "pager", "type": "webhook", "url": "http://127.0.0.1:9/p"}]}}))
    (tmp_path / "r.csv").write_text("Latitude,label\n1.0,0\n2.0,1\n")
    cfg = load_config(path, environ={})
    store = Store.from_config(cfg.store)
    store.create_schema()
    m = AlertManager(cfg, store)
    with store.transaction() as conn:
        m.process(conn, "housing", "1", [det("Latitude"), det("Longitude")], 0)           # a group of two
        m.process(conn, "housing", "1", [det(None, kind="performance", detector="accuracy")], 5 * S)
        m.process(conn, "housing", "2", [det("Latitude")], 6 * S)
        m.process(conn, "housing", "2", [det("Latitude", firing=False)], 9 * S)
    return path, cfg, store


def args(path, **kw):
    return argparse.Namespace(config=str(path), json=False, status=None, model=None, limit=100, **kw)


def test_list_and_show_print_the_incidents_their_hint_members_and_timeline(tmp_path):
    path, cfg, store = make_store(tmp_path)
    out = io.StringIO()
    assert cmd_incidents_list(args(path), out) == 0
    text = out.getvalue()
    i1, i2 = incident_id("housing", "1", 1), incident_id("housing", "2", 1)
    assert text.index(i2) < text.index(i1)                       # newest change first
    assert " open " in text.splitlines()[2] and " resolved " in text.splitlines()[1]
    out = io.StringIO()
    assert cmd_incidents_show(args(path, incident_id=i1), out) == 0
    shown = out.getvalue()
    assert "hint: housing v1: inputs moved (" in shown and "1. [inputs]" in shown and "2. [metrics]" in shown
    assert shown.count("\n    firing") == 2                     # the group's two members, under it
    assert "#1 opened" in shown and "#2 grown" in shown and "pager pending" in shown
    out = io.StringIO()
    assert cmd_incidents_list(_json(args(path)), out) == 0
    rows = json.loads(out.getvalue())
    assert [r["incident_id"] for r in rows] == [i2, i1] and rows[1]["kinds"] == ["data_drift", "performance"]
    assert cmd_incidents_show(args(path, incident_id="nope"), io.StringIO()) == 1
    # the API gives the same, and stats count the open incident
    with TestClient(create_app(cfg, store)) as client:
        assert client.get("/api/incidents").json()["incidents"] == list_incidents(store)
        assert [i["incident_id"] for i in client.get("/api/incidents?status=active").json()["incidents"]] == [i1]
        doc = client.get(f"/api/incidents/{i1}").json()
        assert [e["reason"] for e in doc["timeline"]] == ["opened", "grown"] and len(doc["members"]) == 4
        assert client.get("/api/incidents/nope").status_code == 404
    assert collect_stats(cfg, store, open_incidents={"housing": 1})["models"]["housing"]["open_incidents"] == 1
    store.dispose()


def _json(ns):
    ns.json = True
    return ns
