"""Per-version detectors on the real batch path (``prepare()`` then ``commit()`` with the analyser,
SQLite): shadow comparisons and their reports, the cap on live versions, retirement, and a
store written before versions had detectors of their own."""
from __future__ import annotations

import logging

import numpy as np
import orjson
import pandas as pd
import pytest

from consumers.ingest import commit, prepare
from detectors.model_monitor import ModelMonitor
from detectors.versions import VersionedMonitor
from driftloop.core.config import load_config_dict
from driftloop.core.store import Store
from driftloop.monitoring.analysis import DriftAnalyser
from tests.consumers.test_ingest_unit import NOW, Rec

SETTINGS = {"window_size": 300, "warmup": 0, "multivariate": False, "calibration_draws": 20}
FEATURES = {"amount": "numeric", "country": "categorical"}


@pytest.fixture
def setup(tmp_path):
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"amount": rng.normal(50, 10, 2000), "country": rng.choice(["DE", "FR"], 2000),
                        "label": rng.choice(["0", "1"], 2000)})
    ref["prediction"] = ref["label"]
    ref.to_csv(tmp_path / "ref.csv", index=False)

    def config(**versions):
        return load_config_dict({"models": {"fraud": {"task": "classification", "features": FEATURES,
                                                      "reference": "ref.csv", "detectors": SETTINGS}},
                                 "versions": versions}, base_dir=tmp_path, environ={})
    store = Store(f"sqlite:///{tmp_path}/t.db")
    store.create_schema()
    yield config, store, rng
    store.dispose()


class Stream:
    """Batches of predictions, shadow predictions and labels through ``commit``, offsets in order."""

    def __init__(self, cfg, store, analyser):
        self.cfg, self.store, self.analyser = cfg, store, analyser
        self.offsets = {cfg.topics.predictions: 0, cfg.topics.labels: 0}

    def send(self, preds=(), labels=(), now=NOW):
        recs, expected = [], {}
        for topic, values in ((self.cfg.topics.predictions, preds), (self.cfg.topics.labels, labels)):
            if not values:
                continue
            start = self.offsets[topic]
            expected[(topic, 0)] = start or None
            recs += [Rec(topic, 0, start + j, v) for j, v in enumerate(values)]
            self.offsets[topic] += len(values)
        return commit(self.store, self.cfg, prepare(recs, self.cfg, now), group="g", expected=expected, now=now,
                      analyser=self.analyser)


def prediction(i, rng, version=None, shadow=False, pred=None, later_ms=0):
    ev = {"event_id": f"e{i}", "model": "fraud", "ts": NOW - 10**6 + i + later_ms, "prediction": pred or "0",
          "features": {"amount": float(rng.normal(50, 10)), "country": str(rng.choice(["DE", "FR"]))}}
    if version is not None:
        ev["model_version"] = version
    if shadow:
        ev["shadow"] = True
    return orjson.dumps(ev)


def label(i, y):
    return orjson.dumps({"event_id": f"e{i}", "model": "fraud", "ts": NOW - 10**6 + i + 1, "label": y})


def test_a_shadow_is_compared_on_the_same_labelled_requests_and_reported(setup):
    config, store, rng = setup
    cfg = config(shadow_min_labels=100)
    reports = []
    an = DriftAnalyser(cfg, store, on_shadow_report=lambda conn, model, r, now: reports.append((model, r)))
    s = Stream(cfg, store, an)
    truth = rng.choice(["0", "1"], 450)
    served = np.where(rng.random(450) < 0.25, np.where(truth == "0", "1", "0"), truth)   # wrong 1 in 4
    for start in range(0, 450, 150):
        idx = range(start, start + 150)
        s.send(preds=[prediction(i, rng, "1", pred=str(served[i])) for i in idx]
               + [prediction(i, rng, "2", shadow=True, pred=str(truth[i])) for i in idx],   # the shadow is right
               labels=[label(i, str(truth[i])) for i in idx])
    mon = an.monitors["fraud"]
    report = mon.status()["shadows"]["2"]
    assert report["n"] == 450 and report["served_version"] == "1" and report["better"]
    assert report["served_metric"] == pytest.approx(np.mean(served == truth))
    assert [(m, r["n"]) for m, r in reports] == [("fraud", 150), ("fraud", 300), ("fraud", 450)]
    assert "2" not in mon.versions, "a shadow serves nobody: no monitor of its own"
    assert mon.versions["1"].status()["labelled"] == 450

    # the state is in the snapshot: a restart continues the comparison where it stood
    again = DriftAnalyser(cfg, store)
    assert again.monitors["fraud"].status()["shadows"]["2"] == report


def test_reports_come_once_per_multiple_of_shadow_min_labels(setup):
    config, store, rng = setup
    cfg = config(shadow_min_labels=200)
    reports = []
    an = DriftAnalyser(cfg, store, on_shadow_report=lambda conn, model, r, now: reports.append(r["n"]))
    s = Stream(cfg, store, an)
    for start in range(0, 500, 125):
        idx = range(start, start + 125)
        s.send(preds=[prediction(i, rng, "1") for i in idx] + [prediction(i, rng, "2", shadow=True) for i in idx],
               labels=[label(i, "0") for i in idx])
    assert reports == [250, 500]       # passed 200 at 250, 400 at 500


def test_the_cap_keeps_further_versions_out_of_the_detectors_not_out_of_the_store(setup, caplog):
    config, store, rng = setup
    cfg = config(max_live=2)
    an = DriftAnalyser(cfg, store)
    s = Stream(cfg, store, an)
    with caplog.at_level(logging.WARNING, logger="driftloop.monitoring.analysis"):
        s.send(preds=[prediction(i, rng, str(1 + i % 3)) for i in range(300)])
        s.send(preds=[prediction(i, rng, "3") for i in range(300, 330)])
    mon = an.monitors["fraud"]
    # the champion ('': no registry) holds one place, the first new version the other
    assert sorted(mon.versions) == ["", "1"]
    refused = ["2", "3"]
    assert mon.capped == {"2": 100, "3": 130}
    assert store.read_counters()["fraud"]["predictions"] == 330, "every event stored and counted"
    assert sum("gets no detectors" in r.getMessage() for r in caplog.records) == len(refused), "one line per version"


def test_an_idle_version_retires_and_its_open_alerts_resolve(setup):
    config, store, rng = setup
    cfg = config(retire_after_s=10)
    seen = []
    an = DriftAnalyser(cfg, store, on_detections=lambda conn, model, dets, now: seen.extend(dets))
    s = Stream(cfg, store, an)
    # v2 serves wrong answers beside the unversioned stream, and pages
    s.send(preds=[prediction(i, rng, "2", pred="1") for i in range(600)],
           labels=[label(i, "0") for i in range(600)])
    assert any(d.firing and d.model_version == "2" and d.kind == "performance" for d in seen)
    # event time decides, not the wall clock: a batch much later on the wall clock retires nothing
    s.send(preds=[prediction(i, rng, later_ms=5_000) for i in range(600, 700)], now=NOW + 3_600_000)
    assert "2" in an.monitors["fraud"]
    s.send(preds=[prediction(i, rng, later_ms=20_000) for i in range(700, 800)])
    assert "2" not in an.monitors["fraud"], "no event of v2 for 20 s of event time > retire_after_s"
    resolved = [d for d in seen if not d.firing and d.model_version == "2"]
    assert resolved and all("retired" in d.summary for d in resolved)


def test_a_store_written_before_versions_restores_as_the_champions_detectors(setup):
    config, store, rng = setup
    cfg = config()
    ref = pd.read_csv(cfg.resolve("ref.csv"))
    old = ModelMonitor("fraud", "classification", FEATURES, ref, SETTINGS)
    with store.transaction() as conn:
        store.save_detector_state(conn, "fraud", old.snapshot(), NOW, generation=4)
    an = DriftAnalyser(cfg, store)
    mon = an.monitors["fraud"]
    assert isinstance(mon, VersionedMonitor) and list(mon.versions) == [""] and mon.champion == ""
    assert mon.versions[""].snapshot() == old.snapshot()
    Stream(cfg, store, an).send(preds=[prediction(i, rng) for i in range(10)])
    assert an.monitors["fraud"].versions[""].status()["predictions"] == 10


def test_a_shadow_hook_that_raises_leaves_nothing_half_written_and_the_batch_commits(setup):
    import sqlalchemy as sa

    config, store, rng = setup
    cfg = config(shadow_min_labels=50)
    with store.transaction() as conn:
        conn.execute(sa.text("CREATE TABLE hook_writes (n INTEGER)"))

    def hook(conn, model, report, now):
        conn.execute(sa.text("INSERT INTO hook_writes VALUES (:n)"), {"n": report["n"]})
        raise RuntimeError("the live gate is broken")
    an = DriftAnalyser(cfg, store, on_shadow_report=hook)
    Stream(cfg, store, an).send(preds=[prediction(i, rng, "1") for i in range(100)]
                                + [prediction(i, rng, "2", shadow=True) for i in range(100)],
                                labels=[label(i, "0") for i in range(100)])
    assert store.read_counters()["fraud"]["shadow_joined"] == 100, "the batch committed"
    with store.engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM hook_writes")).scalar() == 0, "the hook's write rolled back"
