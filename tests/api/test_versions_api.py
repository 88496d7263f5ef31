"""Issue 14, item 6: each model version in ``/metrics`` (label ``model_version``), its share of the
traffic, the JSON API's live versions and the shadow comparison.

The store here is built by :func:`versioned_store`: a :class:`~detectors.versions.VersionedMonitor`
with two versions of ``fraud`` (v1 the champion, v2 a canary), real detectors fed with the
seed's data (:mod:`tests.api.seed`), their statistics recorded per version as the analyser does,
the state committed, and 900 + 100 stored predictions (a 90/10 split) in ``examples``.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from detectors.batch import LabelledBatch, PredictionBatch
from detectors.model_monitor import ModelMonitor
from detectors.paired import ShadowComparison
from detectors.versions import VersionedMonitor
from driftloop.core.config import Config
from driftloop.core.store import Store
from driftloop.core.tables import examples
from driftloop.monitoring.history import latest_drift, latest_performance, record_detector_statistics
from tests.api.conftest import app_for
from tests.api.seed import FEATURES, _frame, _model_scores, _reference, make_config

SETTINGS = {"window_size": 500, "warmup": 0, "calibration_draws": 10, "bootstrap": 20, "multivariate": False,
            "min_window": 200}
SHARE = {"1": 900, "2": 100}


@dataclasses.dataclass
class Versioned:
    cfg: Config
    store: Store
    vm: VersionedMonitor
    now: int


def _add(vm: VersionedMonitor, version: str, mon: ModelMonitor) -> None:
    """``VersionedMonitor.add`` with or without its ``now`` (the clock moved into the monitor)."""
    try:
        assert vm.add(version, mon, reference_of=version)
    except TypeError:
        assert vm.add(version, mon, reference_of=version, now=0)  # type: ignore[call-arg]  # the signature before the event-time clock


def _monitor(rng: np.random.Generator) -> ModelMonitor:
    ref = _frame(rng, 2000)
    return ModelMonitor("fraud", "classification", FEATURES, _reference(ref, _model_scores(ref, rng, False)), SETTINGS)


def _feed(mon: ModelMonitor, rng: np.random.Generator, version: str, n: int, t0: int, shift: float) -> None:
    df = _frame(rng, n, shift)
    scores = _model_scores(df, rng, stale=shift > 0)
    pred = np.where(scores[:, 1] >= 0.5, "1", "0").astype(object)
    ts = np.arange(t0, t0 + n, dtype=np.int64)
    feats = {"amount": df["amount"].to_numpy(), "age": df["age"].to_numpy(),
             "country": df["country"].to_numpy().astype(object)}
    mon.update_predictions(PredictionBatch(ts=ts, features=feats, prediction=pred, scores=scores, classes=["0", "1"],
                                           model_version=version))
    mon.update_labelled(LabelledBatch(ts=ts, prediction=pred, label=df["label"].to_numpy().astype(object),
                                      scores=scores, classes=["0", "1"], features={}, model_version=version))


def save(store: Store, vm: VersionedMonitor, now: int, *, record: bool = True) -> None:
    """What the analyser's batch transaction writes: the state, and each version's statistics."""
    with store.transaction() as conn:
        if record:
            for v in sorted(vm.versions):
                record_detector_statistics(conn, "fraud", vm.version_status(v), now)
        store.save_detector_state(conn, "fraud", vm.snapshot(), now)


def versioned_store(tmp: Path, *, store_url: str | None = None) -> Versioned:
    rng = np.random.default_rng(11)
    cfg = make_config(tmp, store_url=store_url)
    store = Store(cfg.store.url)
    store.create_schema()
    now = int(time.time() * 1000)
    vm = VersionedMonitor("fraud", "classification", FEATURES)
    _add(vm, "1", _monitor(rng))
    vm.champion = "1"
    _add(vm, "2", _monitor(rng))
    _feed(vm.versions["1"], rng, "1", 1000, now - 60_000, 0.0)
    _feed(vm.versions["2"], rng, "2", 500, now - 60_000, 0.8)       # the canary's traffic drifted
    save(store, vm, now)
    with store.transaction() as conn:
        rows = [{"model": "fraud", "event_id": f"{v}-{i}", "pred_ts": now - 1000 * i, "model_version": v,
                 "payload": b"{}", "created_at": now} for v, n in SHARE.items() for i in range(n)]
        rows.append({"model": "fraud", "event_id": "old", "pred_ts": now - 7_200_000, "model_version": "0",
                     "payload": b"{}", "created_at": now})                  # outside the hour: not counted
        conn.execute(examples.insert(), rows)
    return Versioned(cfg, store, vm, now)


@pytest.fixture(scope="module")
def versioned(tmp_path_factory: pytest.TempPathFactory) -> Versioned:
    """Read-only, but for the retirement test, which works on a store of its own."""
    v = versioned_store(tmp_path_factory.mktemp("versioned"))
    yield v
    v.store.dispose()


class FakeAnalyser:
    """The in-process analyser as the API reads it: ``monitors[model].status()``."""

    def __init__(self, **monitors: Any) -> None:
        self.monitors = monitors


class WithShadow:
    """A VersionedMonitor whose status has the ``shadows`` block another item adds."""

    def __init__(self, vm: VersionedMonitor, shadows: dict[str, dict[str, Any]]) -> None:
        self.vm, self.shadows = vm, shadows

    def status(self) -> dict[str, Any]:
        return {**self.vm.status(), "shadows": self.shadows}


def scrape(client: Any) -> list[Any]:
    r = client.get("/metrics")
    assert r.status_code == 200
    return [s for fam in text_string_to_metric_families(r.text) for s in fam.samples]


def series(samples: list[Any], name: str, **labels: str) -> list[Any]:
    return [s for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def value(samples: list[Any], name: str, **labels: str) -> float:
    found = series(samples, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return float(found[0].value)


# -- /metrics -----------------------------------------------------------------------------------
def test_statistics_per_version_from_the_store(versioned: Versioned) -> None:
    with app_for(versioned) as c:
        m = scrape(c)
    # every detector statistic carries its version; both live versions have their own series
    for name in ("driftloop_drift_statistic", "driftloop_drift_detected", "driftloop_performance"):
        assert {s.labels["model_version"] for s in series(m, name, model="fraud")} == {"1", "2"}, name
    key = {"model": "fraud", "kind": "data_drift", "detector": "wasserstein", "feature": "amount"}
    assert value(m, "driftloop_drift_detected", model_version="2", **key) == 1      # the canary drifted
    assert value(m, "driftloop_drift_detected", model_version="1", **key) == 0
    for v in ("1", "2"):
        assert 0 < value(m, "driftloop_performance", model="fraud", model_version=v, source="realised",
                         metric="accuracy") <= 1
    assert value(m, "driftloop_drift_window_end_timestamp_seconds", model="fraud") == versioned.now / 1000
    # the live versions: phase, predictions, labelled, traffic share (900 of 1,000 stored in the hour)
    assert value(m, "driftloop_version_live", model="fraud", model_version="1", phase="serving") == 1
    assert value(m, "driftloop_version_live", model="fraud", model_version="2", phase="serving") == 1
    assert value(m, "driftloop_version_predictions", model="fraud", model_version="1") == 1000
    assert value(m, "driftloop_version_predictions", model="fraud", model_version="2") == 500
    assert value(m, "driftloop_version_labelled", model="fraud", model_version="2") == 500
    assert value(m, "driftloop_version_traffic_share", model="fraud", model_version="1") == pytest.approx(0.9)
    assert value(m, "driftloop_version_traffic_share", model="fraud", model_version="2") == pytest.approx(0.1)
    assert value(m, "driftloop_versions_capped", model="fraud") == 0
    # no shadow in the status: no shadow series
    assert not [s for s in m if s.name.startswith("driftloop_shadow_")]
    assert not series(m, "driftloop_scrape_errors_total")


def test_label_cardinality_stays_with_the_live_versions(tmp_path: Path) -> None:
    """Statistics of a version no longer live (v0 below) and of a capped one are never exposed,
    and the same statistics of one version are one series."""
    v = versioned_store(tmp_path)
    try:
        with v.store.transaction() as conn:   # an old version's history: in the table, not live
            old = v.vm.version_status("1")
            old["model_version"] = "0"
            assert record_detector_statistics(conn, "fraud", old, v.now - 10) > 0
        v.vm.refuse("9", 40)                  # a version the cap kept out
        save(v.store, v.vm, v.now + 1, record=False)
        with app_for(v) as c:
            m = scrape(c)
            again = scrape(c)
        versions = {s.labels["model_version"] for s in m if "model_version" in s.labels
                    and not s.name.startswith("driftloop_shadow_")}
        assert versions == {"1", "2"}
        assert value(m, "driftloop_versions_capped", model="fraud") == 1
        seen = [(s.name, tuple(sorted(s.labels.items()))) for s in m]
        assert len(seen) == len(set(seen))                         # no duplicate series
        assert sorted(seen) == sorted((s.name, tuple(sorted(s.labels.items()))) for s in again)
        with v.store.engine.connect() as conn:                      # the read functions keep v0 apart
            assert {r["model_version"] for r in latest_drift(conn, "fraud")} == {"0", "1", "2"}
            assert {r["model_version"] for r in latest_drift(conn, "fraud", model_version="2")} == {"2"}
            assert {r["model_version"] for r in latest_performance(conn, "fraud")} == {"0", "1", "2"}
    finally:
        v.store.dispose()


def test_a_retired_version_disappears(tmp_path: Path) -> None:
    v = versioned_store(tmp_path)
    try:
        with app_for(v) as c:
            assert series(scrape(c), "driftloop_drift_statistic", model_version="2")
            # v2 retired: the committed state has only v1's monitor (its history rows stay)
            vm = VersionedMonitor("fraud", "classification", FEATURES)
            _add(vm, "1", v.vm.versions["1"])
            vm.champion = "1"
            save(v.store, vm, v.now + 5_000, record=False)
            m = scrape(c)
        assert {s.labels["model_version"] for s in m if "model_version" in s.labels} == {"1"}
        assert series(m, "driftloop_drift_statistic", model="fraud", model_version="1")
        assert not series(m, "driftloop_version_live", model_version="2")
        assert value(m, "driftloop_version_traffic_share", model="fraud", model_version="1") == pytest.approx(0.9)
    finally:
        v.store.dispose()


def test_live_analyser_and_draining_phase(versioned: Versioned) -> None:
    vm = VersionedMonitor.restore(versioned.vm.snapshot())
    vm.phase["2"] = "draining"
    with app_for(versioned, analyser=FakeAnalyser(fraud=vm)) as c:
        m = scrape(c)
        detail = c.get("/api/models/fraud").json()
    assert value(m, "driftloop_version_live", model="fraud", model_version="2", phase="draining") == 1
    assert not series(m, "driftloop_version_live", model_version="2", phase="serving")
    assert detail["status_source"] == "live" and detail["live_versions"]["2"]["phase"] == "draining"


def _shadow_report(n: int = 2000) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    served_ok = rng.random(n) < 0.80
    shadow_ok = np.where(rng.random(n) < 0.5, served_ok, rng.random(n) < 0.95)   # the shadow is better
    return ShadowComparison("1", "3").update(served_ok, shadow_ok).report()


def test_shadow_comparison_gauges(versioned: Versioned) -> None:
    report = _shadow_report()
    assert report["better"] and report["p_value"] < 0.01
    live = WithShadow(versioned.vm, {"3": report})
    with app_for(versioned, analyser=FakeAnalyser(fraud=live)) as c:
        m = scrape(c)
        detail = c.get("/api/models/fraud").json()
    who = {"model": "fraud", "model_version": "3", "served_version": "1"}
    assert value(m, "driftloop_shadow_labelled", **who) == 2000
    assert value(m, "driftloop_shadow_metric", side="served", metric="accuracy", **who) == pytest.approx(
        report["served_metric"])
    assert value(m, "driftloop_shadow_metric", side="shadow", metric="accuracy", **who) == pytest.approx(
        report["shadow_metric"])
    assert value(m, "driftloop_shadow_p_value", metric="accuracy", **who) == pytest.approx(report["p_value"])
    assert value(m, "driftloop_shadow_verdict", **who) == 1
    assert detail["shadows"]["3"]["summary"] == report["summary"]
    assert detail["shadows"]["3"]["summary"].startswith("shadow 3 accuracy")


def test_shadow_without_a_verdict(versioned: Versioned) -> None:
    report = ShadowComparison("1", "3").report()          # nothing labelled yet: no p-value, no verdict
    with app_for(versioned, analyser=FakeAnalyser(fraud=WithShadow(versioned.vm, {"3": report}))) as c:
        m = scrape(c)
    who = {"model": "fraud", "model_version": "3", "served_version": "1"}
    assert value(m, "driftloop_shadow_labelled", **who) == 0
    assert not series(m, "driftloop_shadow_p_value")
    assert value(m, "driftloop_shadow_verdict", **who) == 0
    assert not series(m, "driftloop_scrape_errors_total")


# -- the JSON API -------------------------------------------------------------------------------
def test_model_detail_has_the_live_versions(versioned: Versioned) -> None:
    with app_for(versioned) as c:
        detail = c.get("/api/models/fraud").json()
    live = detail["live_versions"]
    assert sorted(live) == ["1", "2"]
    assert live["1"]["champion"] and not live["2"]["champion"]
    assert live["1"]["phase"] == live["2"]["phase"] == "serving"
    assert live["1"]["predictions"] == 1000 and live["2"]["labelled"] == 500
    assert live["1"]["traffic_share"] == pytest.approx(0.9) and live["2"]["traffic_share"] == pytest.approx(0.1)
    assert {v["firing_alerts"] for v in live.values()} == {0}     # no alert manager ran here
    assert detail["traffic"]["n"] == 1000 and detail["traffic"]["window_ms"] == 3_600_000
    assert detail["status_source"] == "store" and detail["versions_capped"] == {}
    assert "shadows" not in detail
    assert detail["versions"] == []                               # the registry's list: unchanged meaning


def test_history_filtered_by_version(versioned: Versioned) -> None:
    with app_for(versioned) as c:
        every = c.get("/api/models/fraud/drift").json()["points"]
        v2 = c.get("/api/models/fraud/drift", params={"model_version": "2"}).json()
        perf = c.get("/api/models/fraud/performance", params={"model_version": "1"}).json()
        none = c.get("/api/models/fraud/performance", params={"model_version": ""}).json()
        bad = c.get("/api/models/fraud/drift", params={"model_version": "x" * 129})
    assert {p["model_version"] for p in every} == {"1", "2"}
    assert v2["points"] and {p["model_version"] for p in v2["points"]} == {"2"}
    assert v2["model_version"] == "2"
    assert len(v2["points"]) == sum(p["model_version"] == "2" for p in every)
    assert perf["points"] and {p["model_version"] for p in perf["points"]} == {"1"}
    assert none["points"] == []                                   # every row here names its version
    assert bad.status_code == 422


def test_seeded_store_shows_its_newest_version(client) -> None:
    """A detector state written before versions had monitors (the seed's) names no version: each
    statistic is shown once, as the newest version's (v2 after the promotion)."""
    m = scrape(client)
    assert {s.labels["model_version"] for s in series(m, "driftloop_drift_statistic")} == {"2"}
    assert {s.labels["model_version"] for s in series(m, "driftloop_performance")} == {"2"}


def test_traffic_share_is_a_bounded_indexed_read(versioned: Versioned) -> None:
    from driftloop.app.api.queries import traffic_share

    with versioned.store.engine.connect() as conn:
        got = traffic_share(conn, "fraud", versioned.now, sample=200)
        plan = " ".join(str(r[-1]) for r in conn.execute(sa.text(
            "EXPLAIN QUERY PLAN SELECT model_version FROM examples WHERE model = 'fraud' AND pred_ts >= 0 "
            "ORDER BY pred_ts DESC LIMIT 200")))
    assert got["n"] == 200 and got["shares"] == {"1": pytest.approx(0.5), "2": pytest.approx(0.5)}  # newest 200
    assert "ix_examples_model_pred_ts" in plan and "TEMP B-TREE" not in plan


@pytest.mark.postgres
def test_versions_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    v = versioned_store(tmp_path, store_url=postgres_url)
    try:
        with app_for(v) as c:
            m = scrape(c)
            detail = c.get("/api/models/fraud").json()
            v2 = c.get("/api/models/fraud/drift", params={"model_version": "2"}).json()["points"]
        assert {s.labels["model_version"] for s in series(m, "driftloop_drift_statistic")} == {"1", "2"}
        assert value(m, "driftloop_version_traffic_share", model="fraud", model_version="2") == pytest.approx(0.1)
        assert detail["live_versions"]["1"]["traffic_share"] == pytest.approx(0.9)
        assert v2 and {p["model_version"] for p in v2} == {"2"}
    finally:
        v.store.dispose()
