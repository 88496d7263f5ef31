"""The read endpoints over the seeded store, the health checks and the dashboard's files."""
from __future__ import annotations

import pytest

from tests.api.conftest import FakeMonitor, app_for
from tests.api.seed import WINDOW, Seeded


def test_health(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_models(client, seeded: Seeded) -> None:
    (m,) = client.get("/api/models").json()["models"]
    assert m["name"] == "fraud" and m["task"] == "classification" and m["champion_version"] == 2
    assert m["counts"]["predictions"] == seeded.windows * WINDOW and m["firing_alerts"] == 1
    assert m["last_judged_at"] == seeded.end_ms
    detail = client.get("/api/models/fraud").json()
    assert [v["version"] for v in detail["versions"]] == [1, 2]
    assert [a["feature"] for a in detail["alerts"]] == ["country"]
    assert client.get("/api/models/nope").status_code == 404
    assert client.get("/api/models/nope/drift").status_code == 404


def test_drift_history(client, seeded: Seeded) -> None:
    r = client.get("/api/models/fraud/drift", params={"feature": "amount", "kind": "data_drift"}).json()
    assert set(r["thresholds"]) == {"amount", "age", "country"}
    pts = [p for p in r["points"] if p["detector"] == "wasserstein"]
    assert len(pts) == seeded.windows and [p["seq"] for p in pts] == list(range(1, seeded.windows + 1))
    assert all(p["threshold"] > 0 for p in pts)
    recent = client.get("/api/models/fraud/drift", params={"since": seeded.end_ms - 1}).json()["points"]
    assert {p["ts"] for p in recent} == {seeded.end_ms}
    limited = client.get("/api/models/fraud/drift", params={"limit": 3, "details": True}).json()["points"]
    assert len(limited) == 3 and "details" in limited[0]
    assert client.get("/api/models/fraud/drift", params={"limit": 0}).status_code == 422


def test_performance_history(client, seeded: Seeded) -> None:
    pts = client.get("/api/models/fraud/performance", params={"metric": "accuracy"}).json()["points"]
    assert {p["source"] for p in pts} == {"realised", "estimated"}
    real = [p for p in pts if p["source"] == "realised"]
    assert all(p["ci_low"] <= p["value"] <= p["ci_high"] for p in real)
    assert client.get("/api/models/fraud/performance", params={"source": "guessed"}).status_code == 422


def test_alerts(client) -> None:
    active = client.get("/api/alerts", params={"status": "active"}).json()["alerts"]
    assert [(a["kind"], a["feature"], a["severity"]) for a in active] == [("data_drift", "country", "critical")]
    every = client.get("/api/alerts").json()["alerts"]
    assert len(every) > len(active)
    eps = client.get("/api/alerts/timeline", params={"model": "fraud"}).json()["episodes"]
    assert [e["end"] is None for e in eps].count(True) == 1
    assert all(e["end"] is None or e["end"] > e["start"] for e in eps)
    events = client.get("/api/alerts/events").json()["events"]
    assert {e["status"] for e in events} == {"firing", "resolved"}
    one = client.get(f"/api/alerts/{active[0]['alert_id']}").json()
    assert one["events"][0]["message"]["alert_id"] == active[0]["alert_id"]
    assert client.get("/api/alerts/nope").status_code == 404


def test_status_from_the_store_and_live(client, seeded: Seeded) -> None:
    r = client.get("/api/models/fraud/status").json()
    assert r["source"] == "store" and r["status"]["windows_judged"]["predictions"] == seeded.windows

    class Analyser:
        monitors = {"fraud": seeded.monitor}  # noqa: RUF012 - a test double, never mutated

    with app_for(seeded, analyser=Analyser()) as c:
        r = c.get("/api/models/fraud/status").json()
        assert r["source"] == "live"
        assert c.get("/api/models").json()["models"][0]["windows_judged"]["predictions"] == seeded.windows


def test_stats_and_jobs(client, seeded: Seeded) -> None:
    stats = client.get("/api/stats").json()
    assert stats["models"]["fraud"]["firing_alerts"] == 1
    assert stats["totals"]["predictions"] == seeded.windows * WINDOW
    assert client.get("/api/retrain/jobs").json() == {"jobs": []}


def test_monitor_figures(client, seeded: Seeded) -> None:
    assert client.get("/api/monitor").json() == {"in_process": False}
    with app_for(seeded, monitor=FakeMonitor()) as c:
        r = c.get("/api/monitor").json()
    assert r["in_process"] and r["batches"] == 12 and r["lag_total"] == 49 and len(r["assigned"]) == 2


@pytest.mark.parametrize("assigned", [True, False])
def test_readyz(seeded: Seeded, assigned: bool) -> None:
    import socket

    srv = socket.socket()          # a "broker" that accepts connections
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    cfg = seeded.cfg
    kafka = type(cfg.kafka)(bootstrap_servers=f"127.0.0.1:{srv.getsockname()[1]}")
    import msgspec

    with app_for(seeded, monitor=FakeMonitor(assigned=assigned)) as c:
        c.app.state.ctx.readiness.cfg = msgspec.structs.replace(cfg, kafka=kafka)
        r = c.get("/readyz")
    srv.close()
    body = r.json()
    assert body["checks"]["broker"]["ok"] is True and body["checks"]["store"]["ok"] is True
    assert body["checks"]["consumer"]["ok"] is assigned
    assert r.status_code == (200 if assigned else 503) and body["ready"] is assigned


def test_readyz_broker_down(seeded: Seeded) -> None:
    import socket

    import msgspec

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                      # nothing listens there now
    with app_for(seeded) as c:
        c.app.state.ctx.readiness.cfg = msgspec.structs.replace(
            seeded.cfg, kafka=type(seeded.cfg.kafka)(bootstrap_servers=f"127.0.0.1:{port}"))
        r = c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["broker"]["ok"] is False and r.json()["checks"]["consumer"]["ok"] is None


def test_dashboard_files(client) -> None:
    r = client.get("/")
    assert r.status_code == 200 and "<title>driftloop</title>" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    for path in ("/static/app.js", "/static/app.css", "/static/vendor/uPlot.iife.min.js",
                 "/static/vendor/uPlot.min.css"):
        assert client.get(path).status_code == 200, path
    assert client.get("/static/../app.py").status_code == 404


def test_errors_are_json(client) -> None:
    r = client.get("/api/nothing-here")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
