"""Segments and data quality in the API and ``/metrics`` (issue 18, item 4), over a store seeded
with ``segments: [country]``: the model goes wrong for Italy (window 24 on) and the pipeline
breaks (window 28 on: an unseen country ``ES``, amounts ×1000)."""
from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from driftloop.app.api import create_app
from driftloop.app.api.views import MAX_NEW_KEYS, data_quality_view
from tests.api.seed import Seeded
from tests.api.test_metrics import _scrape, _value

SEGMENTS = {"country=DE", "country=FR", "country=IT", "country=other", "country=(missing)"}


@pytest.fixture(scope="module")
def seg_client(segmented: Seeded) -> TestClient:
    with TestClient(create_app(segmented.cfg, segmented.store)) as c:
        yield c


@pytest.fixture(scope="module")
def status(segmented: Seeded) -> dict[str, Any]:
    """What the store holds: the monitor's status after the last window (saved with it)."""
    return segmented.monitor.status()


def _slot(status: dict[str, Any], label: str) -> dict[str, Any]:
    return next(s for s in status["segments"]["country"] if s["label"] == label)


def test_segments_endpoint(seg_client: TestClient, status: dict[str, Any]) -> None:
    r = seg_client.get("/api/models/fraud/segments")
    assert r.status_code == 200
    doc = r.json()
    # the seed stores a ModelMonitor snapshot (the form from before versions had monitors of their
    # own): read back as the champion "" of a VersionedMonitor, a status that names no version
    assert doc["source"] == "store" and doc["configured"] == ["country"] and doc["model_version"] is None
    segs = {s["segment"]: s for s in doc["segments"]}
    # the top values of the reference, then other and (missing): bounded, in the status' order
    assert set(segs) == SEGMENTS
    assert [s["segment"] for s in doc["segments"]][0] == "country=DE"
    assert [s["segment"] for s in doc["segments"]][-2:] == ["country=other", "country=(missing)"]
    # Italy: worse than all traffic, degraded, its detections listed; the figures are the status'
    it, slot = segs["country=IT"], _slot(status, "IT")
    acc = it["performance"]["metrics"]["accuracy"]
    assert acc["value"] == pytest.approx(slot["performance"]["metrics"]["accuracy"]["value"])
    overall = status["performance"]["last"]["metrics"]["accuracy"]["value"]
    assert it["vs"]["accuracy"] == pytest.approx(overall) and acc["value"] < overall - 0.05
    assert "accuracy" in it["degraded"] and acc["degraded"]
    assert {(f["kind"], f["detector"]) for f in it["firing"]} >= {("performance", "accuracy")}
    assert all(f["segment"] == {"country": "IT"} for f in it["firing"])
    assert it["rows"] == slot["rows"] and it["judged"]["labelled"] == slot["judged"]["labelled"] > 0
    amount = next(d for d in it["drift"] if d["kind"] == "data_drift" and d["feature"] == "amount")
    assert amount["drifting"] and amount["effect"] == pytest.approx(slot["data_drift"]["amount"]["effect"])
    assert any(d["kind"] == "prediction_drift" for d in it["drift"])
    # Germany is fine on accuracy; "other" has no reference rows of its own: no drift tests
    assert not segs["country=DE"]["performance"]["metrics"]["accuracy"]["degraded"]
    assert segs["country=other"]["drift"] == [] and segs["country=other"]["reference_rows"] == 0
    assert segs["country=(missing)"]["performance"] is None
    # all traffic, in the same shape
    assert doc["overall"]["segment"] is None and doc["overall"]["label"] == "all traffic"
    assert doc["overall"]["performance"]["metrics"]["accuracy"]["value"] == pytest.approx(overall)
    assert {"amount", "country"} <= set(doc["overall"]["drifting"])
    assert doc["window"]["predictions"]["end_ts"] == status["last_window"]["predictions"]["end_ts"]


def test_segments_without_segments_or_state(client: TestClient, seg_client: TestClient, tmp_path) -> None:
    plain = client.get("/api/models/fraud/segments").json()
    assert plain["source"] == "store" and plain["configured"] == [] and plain["segments"] == []
    assert plain["overall"]["performance"]["metrics"]["accuracy"]["value"] > 0
    # a version with no monitor: no status, nothing to show (not an error)
    none = seg_client.get("/api/models/fraud/segments", params={"model_version": "7"}).json()
    assert none["source"] == "none" and none["segments"] == [] and none["overall"]["drift"] == []
    assert seg_client.get("/api/models/fraud/data-quality", params={"model_version": "7"}).json()["checks"] == []
    assert seg_client.get("/api/models/nope/segments").status_code == 404
    assert seg_client.get("/api/models/nope/data-quality").status_code == 404
    # a fresh store: no detector state yet
    from driftloop.core.store import Store
    from tests.api.seed import make_config

    cfg = make_config(tmp_path, segments=True)
    store = Store(cfg.store.url)
    try:
        with TestClient(create_app(cfg, store)) as c:
            doc = c.get("/api/models/fraud/segments").json()
            assert doc["source"] == "none" and doc["configured"] == ["country"] and doc["segments"] == []
            dq = c.get("/api/models/fraud/data-quality").json()
            assert dq["checks"] == [] and dq["breaching"] == 0
    finally:
        store.dispose()


def test_data_quality_endpoint(seg_client: TestClient, status: dict[str, Any]) -> None:
    doc = seg_client.get("/api/models/fraud/data-quality").json()
    assert doc["source"] == "store" and doc["model_version"] is None
    checks = doc["checks"]
    assert len(checks) == len(status["data_quality"])
    # breaching first: the unseen country and the amounts out of range
    assert doc["breaching"] == 2
    assert [c["breach"] for c in checks] == [True, True] + [False] * (len(checks) - 2)
    by_key = {c["key"]: c for c in checks}
    assert {c["key"] for c in checks[:2]} == {"unseen_categories:country", "out_of_range:amount"}
    unseen, oor = by_key["unseen_categories:country"], by_key["out_of_range:amount"]
    assert unseen["firing"] and oor["firing"]
    assert unseen["share"] == pytest.approx(status["data_quality"]["unseen_categories:country"]["share"])
    assert unseen["share"] > unseen["threshold"] > unseen["expected"]
    assert unseen["evidence"]["top_unseen"][0][0] == "ES"
    lo, hi = oor["evidence"]["reference_range"]
    assert lo < hi and oor["evidence"]["examples"] and all(v > hi for v in oor["evidence"]["examples"])
    assert not by_key["missing_rate:age"]["breach"] and not by_key["missing_rate:age"]["firing"]
    assert doc["window"]["predictions"]["n"] == status["last_window"]["predictions"]["n"]


def test_alerts_name_their_segment(seg_client: TestClient) -> None:
    active = seg_client.get("/api/alerts", params={"status": "active", "model": "fraud"}).json()["alerts"]
    italy = [a for a in active if a["segment"] == {"country": "IT"}]
    assert {(a["kind"], a["detector"]) for a in italy} >= {("performance", "accuracy")}
    assert any(a["segment"] is None and a["kind"] == "data_quality" for a in active)
    events = seg_client.get("/api/alerts/events", params={"model": "fraud"}).json()["events"]
    assert any(e["segment"] == {"country": "IT"} for e in events)
    episodes = seg_client.get("/api/alerts/timeline", params={"model": "fraud"}).json()["episodes"]
    # a group's members announce nothing of their own: the episodes of segments are those outside a group
    assert any(e["segment"] == {"country": "IT"} for e in episodes)
    assert all(e["segment"] is None for e in episodes if e["detector"] == "group")


def test_metrics_segments_and_data_quality(seg_client: TestClient, status: dict[str, Any]) -> None:
    m = _scrape(seg_client)
    assert "driftloop_scrape_errors_total" not in m
    it = _slot(status, "IT")
    acc = it["performance"]["metrics"]["accuracy"]
    labels = {"model": "fraud", "model_version": "", "segment": "country=IT"}   # the status names no version
    assert _value(m, "driftloop_segment_performance", metric="accuracy", **labels) == pytest.approx(acc["value"])
    assert _value(m, "driftloop_segment_performance_baseline", metric="accuracy", **labels) == pytest.approx(
        acc["baseline"])
    assert _value(m, "driftloop_segment_performance_degraded", metric="accuracy", **labels) == 1
    assert _value(m, "driftloop_segment_performance_degraded", metric="accuracy", segment="country=DE") == 0
    drift = {"kind": "data_drift", "detector": "wasserstein", "feature": "amount", **labels}
    assert _value(m, "driftloop_segment_drift_statistic", **drift) == pytest.approx(it["data_drift"]["amount"]["effect"])
    assert _value(m, "driftloop_segment_drift_threshold", **drift) == pytest.approx(
        it["data_drift"]["amount"]["threshold"])
    assert _value(m, "driftloop_segment_drift_detected", **drift) == 1
    assert _value(m, "driftloop_segment_drift_detected", kind="prediction_drift", feature="prediction", **labels) == 0
    assert _value(m, "driftloop_segment_rows", stream="labelled", **labels) == it["rows"]["labelled"]
    # bounded: only the segments of the status carry a segment label; one not judged has no figures
    seen = {s.labels["segment"] for name in m if name.startswith("driftloop_segment_") for s in m[name]}
    assert seen == SEGMENTS
    assert {s.labels["segment"] for s in m["driftloop_segment_rows"]} == SEGMENTS
    assert len(m["driftloop_segment_rows"]) == 2 * len(SEGMENTS)
    assert not [s for s in m["driftloop_segment_performance"] if s.labels["segment"] == "country=other"]
    # data quality: one series per check and feature of the last window
    dq = status["data_quality"]
    assert len(m["driftloop_data_quality_share"]) == len(dq)
    unseen = {"model": "fraud", "model_version": "", "check": "unseen_categories", "feature": "country"}
    assert _value(m, "driftloop_data_quality_share", **unseen) == pytest.approx(
        dq["unseen_categories:country"]["share"])
    assert _value(m, "driftloop_data_quality_threshold", **unseen) == pytest.approx(
        dq["unseen_categories:country"]["threshold"])
    assert _value(m, "driftloop_data_quality_breach", **unseen) == 1
    assert _value(m, "driftloop_data_quality_breach", check="out_of_range", feature="amount") == 1
    assert _value(m, "driftloop_data_quality_breach", check="missing_rate", feature="age") == 0
    # the overall figures are still there
    assert _value(m, "driftloop_performance", model_version="2", source="realised", metric="accuracy") > 0


def test_metrics_without_segments(client: TestClient) -> None:
    m = _scrape(client)
    assert not any(name.startswith("driftloop_segment_") for name in m)
    assert "# TYPE driftloop_segment_performance gauge" in client.get("/metrics").text
    assert m["driftloop_data_quality_share"]          # data quality is on by default
    assert "driftloop_scrape_errors_total" not in m


def _dq_status(new_keys: int) -> dict[str, Any]:
    checks = {f"schema_new:k{i}": {"check": "schema_new", "feature": f"k{i}", "share": i / 100, "expected": 0.0,
                                   "threshold": 0.5, "p_value": None, "p_adjusted": None, "n": 100,
                                   "breach": False, "evidence": {}} for i in range(new_keys)}
    checks["duplicates:"] = {"check": "duplicates", "feature": None, "share": 0.2, "expected": 0.0,
                             "threshold": 0.01, "p_value": None, "p_adjusted": None, "n": 100, "breach": True,
                             "evidence": {"duplicates": 20, "received": 100}}
    return {"model_version": None, "data_quality": checks,
            "firing": [{"kind": "data_quality", "detector": "duplicates", "feature": None, "segment": None}]}


def test_new_keys_are_bounded(seeded: Seeded) -> None:
    """``schema_new`` names whatever keys producers send: at most MAX_NEW_KEYS of them are listed
    and exported (the most frequent), so neither the panel nor /metrics grows with them."""
    status = _dq_status(3 * MAX_NEW_KEYS)
    view = data_quality_view(status)
    assert view[0]["key"] == "duplicates:" and view[0]["firing"] and view[0]["feature"] is None
    assert [c["feature"] for c in view[1:]] == [f"k{i}" for i in range(3 * MAX_NEW_KEYS - 1, 2 * MAX_NEW_KEYS - 1, -1)]
    from driftloop.app.api.metrics import make_registry

    reg = make_registry(seeded.cfg, seeded.store, status_of=lambda _m: (status, "live"))
    shares = [(s.labels["check"], s.labels["feature"], s.labels["model_version"], s.value)
              for fam in reg.collect() if fam.name == "driftloop_data_quality_share" for s in fam.samples]
    assert len(shares) == 1 + MAX_NEW_KEYS
    assert ("duplicates", "", "", 0.2) in shares
