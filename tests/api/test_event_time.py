"""The dashboard's series on EVENT time (issue 15, item 3), at the API.

A replay: 32 windows of 15 minutes whose events are a year old, all judged within the same
wall-clock second (``seed(judged_ms=...)``). The series endpoints must place each window at its
end in event time (distinct x values over the 8 hours of events, not one vertical line), the
range must count back from the model's newest event (not the wall clock), ``range_ms=0`` or
none gives everything, and the counts must be those of ``driftloop stats --json``.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from driftloop.app.api import create_app
from tests.api.seed import STEP_MS, Seeded, seed

YEAR_MS = 365 * 86_400_000
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    """Events a year old, judged within one wall-clock second; alerts grouped (a group and its
    members), so the firing count differs when members are counted."""
    now = int(time.time() * 1000)
    s = seed(tmp_path_factory.mktemp("replayed"), end_ms=now - YEAR_MS, judged_ms=now,
             alerts={"group_window_s": 0.005})
    yield s
    s.store.dispose()


@pytest.fixture(scope="module")
def rclient(replayed: Seeded) -> TestClient:
    with TestClient(create_app(replayed.cfg, replayed.store)) as c:
        yield c


def _amount(points: list[dict]) -> list[dict]:
    return [p for p in points if p["feature"] == "amount" and p["detector"] == "wasserstein"]


def test_the_store_is_a_replay(replayed: Seeded, rclient: TestClient) -> None:
    pts = _amount(rclient.get("/api/models/fraud/drift").json()["points"])
    judged = {p["ts"] for p in pts}
    assert len(pts) == replayed.windows and max(judged) - min(judged) < 1000     # one wall-clock second


def test_drift_points_stand_at_their_window_end_in_event_time(replayed: Seeded, rclient: TestClient) -> None:
    r = rclient.get("/api/models/fraud/drift").json()
    pts = _amount(r["points"])
    xs = [p["t"] for p in pts]
    assert len(set(xs)) == replayed.windows                                      # not one vertical line
    assert xs == sorted(xs) and xs == [p["window_end"] for p in pts]
    assert all(p["t_source"] == "event" and p["window_start"] < p["t"] for p in pts)
    assert max(xs) - min(xs) == (replayed.windows - 1) * STEP_MS                  # 7 h 45 min of events
    assert max(xs) == replayed.end_ms - 1 and max(xs) < time.time() * 1000 - YEAR_MS + 60_000
    # every drift kind is on the same axis
    for kind in ("data_drift", "prediction_drift", "multivariate_drift"):
        ks = [p["t"] for p in r["points"] if p["kind"] == kind]
        assert ks and max(ks) - min(ks) == (replayed.windows - 1) * STEP_MS, kind


def test_performance_points_on_event_time(replayed: Seeded, rclient: TestClient) -> None:
    pts = rclient.get("/api/models/fraud/performance", params={"metric": "accuracy"}).json()["points"]
    for source in ("realised", "estimated"):
        xs = [p["t"] for p in pts if p["source"] == source]
        assert len(set(xs)) == len(xs) >= 20, source
        assert max(xs) - min(xs) >= 10 * STEP_MS and max(xs) <= replayed.end_ms


def test_range_counts_back_from_the_newest_event(replayed: Seeded, rclient: TestClient) -> None:
    newest = replayed.end_ms - 1
    # the dashboard's default, 24 hours: every window of this replay (8 hours of events a year ago)
    for path in ("/api/models/fraud/drift", "/api/models/fraud/performance"):
        r = rclient.get(path, params={"range_ms": DAY_MS}).json()
        assert r["range"]["newest"] == newest and r["range"]["since"] == newest - DAY_MS
        assert r["range"]["first"] == replayed.start_ms
        assert r["points"], path
    day = _amount(rclient.get("/api/models/fraud/drift", params={"range_ms": DAY_MS}).json()["points"])
    assert len(day) == replayed.windows
    # one hour of events: the windows that ended within the hour before the newest event
    hour = _amount(rclient.get("/api/models/fraud/drift", params={"range_ms": 3_600_000}).json()["points"])
    assert [p["t"] for p in hour] == [newest - k * STEP_MS for k in (4, 3, 2, 1, 0)]
    perf = rclient.get("/api/models/fraud/performance", params={"range_ms": 3_600_000}).json()["points"]
    assert perf and all(p["t"] >= newest - 3_600_000 for p in perf)
    # since/until are event time too: the wall clock's last day holds none of these windows
    wall_day = rclient.get("/api/models/fraud/drift", params={"since": int(time.time() * 1000) - DAY_MS}).json()
    assert wall_day["points"] == []
    mid = replayed.start_ms + 10 * STEP_MS
    part = _amount(rclient.get("/api/models/fraud/drift", params={"since": mid, "until": mid + STEP_MS}).json()["points"])
    assert [p["t"] for p in part] == [mid + STEP_MS - 1]


def test_all_returns_everything(replayed: Seeded, rclient: TestClient) -> None:
    every = rclient.get("/api/models/fraud/drift").json()["points"]
    zero = rclient.get("/api/models/fraud/drift", params={"range_ms": 0}).json()
    assert zero["points"] == every and zero["range"]["since"] is None
    assert len(_amount(every)) == replayed.windows
    perf_all = rclient.get("/api/models/fraud/performance", params={"range_ms": 0}).json()["points"]
    assert perf_all == rclient.get("/api/models/fraud/performance").json()["points"]
    assert len({p["t"] for p in perf_all if p["source"] == "realised"}) >= 20


def _cli_stats(s: Seeded) -> dict:
    from driftloop.alerts.cli import firing_counts
    from driftloop.alerts.incidents_cli import open_incident_counts
    from driftloop.app.stats import collect_stats

    return collect_stats(s.cfg, s.store, firing_alerts=firing_counts(s.store),
                         open_incidents=open_incident_counts(s.store))


def test_counts_are_those_of_driftloop_stats(replayed: Seeded, rclient: TestClient) -> None:
    from driftloop.app.api import queries

    expected = _cli_stats(replayed)
    fraud = expected["models"]["fraud"]
    with replayed.store.engine.connect() as c:
        rows = queries.firing_counts(c)["fraud"]         # every active row, members included
    assert fraud["firing_alerts"] < rows                 # the store has a group: counting members differs
    [m] = rclient.get("/api/models").json()["models"]
    assert m["firing_alerts"] == fraud["firing_alerts"]
    assert m["open_incidents"] == fraud["open_incidents"]
    assert m["counts"]["predictions"] == fraud["predictions"]
    assert rclient.get("/api/stats").json() == expected
    detail = rclient.get("/api/models/fraud").json()
    assert sum(v["firing_alerts"] for v in detail["live_versions"].values()) <= fraud["firing_alerts"]


def test_reference_source_and_event_extent(replayed: Seeded, rclient: TestClient, tmp_path: Path) -> None:
    [m] = rclient.get("/api/models").json()["models"]
    assert m["reference"] == {"source": "registry", "champion_version": 2, "path": None}
    assert m["events"] == {"first": replayed.start_ms, "newest": replayed.end_ms - 1}
    # no registry champion: the configured reference file
    from driftloop.core.config import load_config_dict
    from driftloop.core.store import Store

    (tmp_path / "ref.csv").write_text("amount,label\n1.0,0\n")
    cfg = load_config_dict({"store": {"url": f"sqlite:///{tmp_path}/c.db"},
                            "models": {"fraud": {"task": "classification", "features": {"amount": "numeric"},
                                                 "reference": "ref.csv"}}}, base_dir=tmp_path)
    store = Store(cfg.store.url)
    store.create_schema()
    try:
        with TestClient(create_app(cfg, store)) as c:
            [m] = c.get("/api/models").json()["models"]
            assert m["champion_version"] is None
            assert m["reference"] == {"source": "config", "champion_version": None, "path": "ref.csv"}
            assert m["events"] == {"first": None, "newest": None}
            empty = c.get("/api/models/fraud/drift", params={"range_ms": DAY_MS}).json()
            assert empty["points"] == [] and empty["range"]["newest"] is None
    finally:
        store.dispose()


def test_timeline_episodes_carry_event_time(replayed: Seeded, rclient: TestClient) -> None:
    eps = [e for e in rclient.get("/api/alerts/timeline", params={"model": "fraud"}).json()["episodes"]
           if e.get("kind")]
    assert eps
    starts = {e["start_event"] for e in eps}
    assert None not in starts and all(replayed.start_ms <= t < replayed.end_ms for t in starts)
    assert len(starts) > 1                              # fired on different windows, one wall-clock second
    ended = [e for e in eps if e["end"] is not None]
    assert all(e["end_event"] is None or e["end_event"] >= e["start_event"] for e in ended)


@pytest.mark.postgres
def test_event_time_on_postgres(postgres_url, tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    s = seed(tmp_path, windows=8, end_ms=now - YEAR_MS, judged_ms=now, store_url=postgres_url)
    try:
        with TestClient(create_app(s.cfg, s.store)) as c:
            pts = _amount(c.get("/api/models/fraud/drift", params={"range_ms": 3_600_000}).json()["points"])
            assert [p["t"] for p in pts] == [s.end_ms - 1 - k * STEP_MS for k in (4, 3, 2, 1, 0)]
            assert len(_amount(c.get("/api/models/fraud/drift", params={"range_ms": 0}).json()["points"])) == 8
            perf = c.get("/api/models/fraud/performance", params={"range_ms": DAY_MS}).json()
            assert perf["points"] and perf["range"]["newest"] == s.end_ms - 1
            [m] = c.get("/api/models").json()["models"]
            assert m["firing_alerts"] == _cli_stats(s)["models"]["fraud"]["firing_alerts"]
    finally:
        s.store.dispose()
