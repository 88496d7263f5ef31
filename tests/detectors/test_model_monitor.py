"""ModelMonitor end to end: the integration point the Kafka monitor calls."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from detectors import model_monitor as mm
from detectors.base import KINDS
from detectors.batch import LabelledBatch, PredictionBatch
from detectors.model_monitor import ModelMonitor, MonitorSettings
from tests.detectors.contract import check_all

FEATURES = {"x1": "numeric", "x2": "numeric", "c": "categorical"}
CLASSES = ["no", "yes"]


def _frame(rng, n, shift=0.0, flip=0.0):
    x1 = rng.normal(shift, 1, n)
    x2 = rng.normal(size=n)
    c = rng.choice(["a", "b", "c"], n)
    p = 1 / (1 + np.exp(-(1.5 * x1 - x2 + (c == "a"))))
    y = rng.random(n) < p
    if flip:
        y = np.where(rng.random(n) < flip, ~y, y)
    return pd.DataFrame({"x1": x1, "x2": x2, "c": c, "label": np.where(y, "yes", "no"),
                         "score_no": 1 - p, "score_yes": p})


class Stream:
    """Turns frames into batches with increasing event times, predictions then labels."""

    def __init__(self, mon: ModelMonitor, rng: np.random.Generator) -> None:
        self.mon, self.rng, self.t = mon, rng, 0

    def feed(self, df: pd.DataFrame, labels: bool = True, classes: list[str] = CLASSES):
        n = len(df)
        ts = np.arange(self.t, self.t + n, dtype=np.int64) * 10
        self.t += n
        pred = np.where(df.score_yes > 0.5, "yes", "no").astype(object)
        scores = df[[f"score_{c}" for c in classes]].to_numpy()
        feats = {"x1": df.x1.to_numpy(), "x2": df.x2.to_numpy(), "c": df.c.to_numpy().astype(object)}
        out = self.mon.update_predictions(PredictionBatch(ts, feats, pred, scores, list(classes), "v7"))
        if labels:
            lb = LabelledBatch(ts, pred, df.label.to_numpy().astype(object), scores, list(classes))
            out += self.mon.update_labelled(lb)
        return out


def _monitor(rng, n_ref=6000, **settings):
    base = {"window_size": 2000, "calibration_draws": 20, "domain_classifier_rows": 600}
    return ModelMonitor("fraud", "classification", FEATURES, _frame(rng, n_ref), {**base, **settings})


def test_end_to_end_classification():
    rng = np.random.default_rng(0)
    mon = _monitor(rng)
    s = Stream(mon, rng)
    quiet = [d for _ in range(4) for d in s.feed(_frame(rng, 1000))]
    assert quiet == []
    # the world changes: x1 moves (covariate shift)
    shift = [d for _ in range(4) for d in s.feed(_frame(rng, 1000, shift=1.0))]
    kinds = {(d.kind, d.detector, d.feature) for d in shift if d.firing}
    assert ("data_drift", "wasserstein", "x1") in kinds
    assert ("prediction_drift", "wasserstein", "scores[yes]") in kinds
    assert ("multivariate_drift", "domain_classifier", None) in kinds
    for d in shift:
        assert d.kind in KINDS and d.model == "fraud" and d.model_version == "v7" and d.summary
        assert d.window.n > 0 and d.window.start_ts is not None
    # then the concept changes: labels flip
    flip = [d for _ in range(4) for d in s.feed(_frame(rng, 1000, shift=1.0, flip=0.35))]
    fk = {(d.kind, d.detector) for d in flip if d.firing}
    assert ("performance", "accuracy") in fk
    assert any(k == "concept_drift" for k, _ in fk)
    for d in quiet + shift + flip:
        json.dumps(d.to_dict())  # what the alert publisher serialises
    st = mon.status()
    json.dumps(st)  # plain data
    assert st["predictions"] == st["labelled"] == 12000
    assert st["windows_judged"] == {"predictions": 6, "labelled": 6}
    assert st["last_window"]["predictions"] == {"start_ts": 100000, "end_ts": 119990, "n": 2000}
    assert st["data_drift"]["x1"]["drifting"] and st["prediction_reference"] == "reference"
    assert st["cbpe"]["history"][0]["realised_n"] > 0
    assert {f["feature"] for f in mon.firing() if f["kind"] == "data_drift"} == {"x1"}


def test_snapshot_restore_continues_exactly_and_set_reference_resolves():
    rng = np.random.default_rng(1)
    mon = _monitor(rng, multivariate_methods=("pca",))
    s = Stream(mon, rng)
    s.feed(_frame(rng, 2000))
    s.feed(_frame(rng, 2000, shift=1.0))
    assert mon.firing()
    blob = mon.snapshot()
    twin = ModelMonitor.restore(blob)
    assert twin.snapshot() == blob
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    out_a = [d.to_dict() for _ in range(3) for d in Stream(mon, rng_a).feed(_frame(rng_a, 1500, shift=1.5))]
    out_b = [d.to_dict() for _ in range(3) for d in Stream(twin, rng_b).feed(_frame(rng_b, 1500, shift=1.5))]
    assert out_a == out_b and mon.snapshot() == twin.snapshot()
    firing = {(f["kind"], f["detector"], f["feature"]) for f in mon.firing()}
    # a new champion trained on the shifted world
    res = mon.set_reference(_frame(rng, 6000, shift=1.5))
    assert {(d.kind, d.detector, d.feature) for d in res} == firing
    assert all(not d.firing and "reference was replaced" in d.summary for d in res)
    assert mon.firing() == [] and mon.status()["concept_drift"]["detectors"]["adwin"]["detections"] == 0
    s2 = Stream(mon, rng)
    after = [d for _ in range(3) for d in s2.feed(_frame(rng, 2000, shift=1.5)) if d.kind != "concept_drift"]
    assert after == []


def test_reference_without_outputs_uses_the_stream():
    """No predictions or scores in the reference: the first judged window is the prediction
    reference and the performance baseline."""
    rng = np.random.default_rng(2)
    ref = _frame(rng, 5000).drop(columns=["score_no", "score_yes"])
    mon = ModelMonitor("m", "classification", FEATURES, ref,
                       {"window_size": 2000, "calibration_draws": 10, "multivariate": False})
    s = Stream(mon, rng)
    assert s.feed(_frame(rng, 2000)) == []
    st = mon.status()
    assert st["prediction_reference"] == "stream (built)" and "cbpe" not in st
    assert st["performance"]["last"]["baseline_from_stream"]
    s.feed(_frame(rng, 2000))
    out = s.feed(_frame(rng, 2000, shift=1.2))
    pd_ = [d for d in out if d.kind == "prediction_drift"]
    assert pd_ and "first 2,000 predictions of the stream" in pd_[0].summary


def test_scores_are_aligned_by_class_name():
    rng = np.random.default_rng(3)
    mon_a = _monitor(rng, multivariate=False)
    mon_b = ModelMonitor.restore(mon_a.snapshot())
    df = _frame(np.random.default_rng(9), 2000, shift=0.8)
    out_a = Stream(mon_a, rng).feed(df, classes=["no", "yes"])
    out_b = Stream(mon_b, rng).feed(df, classes=["yes", "no"])
    assert [d.to_dict() for d in out_a] == [d.to_dict() for d in out_b]


def test_time_windows_and_flush():
    rng = np.random.default_rng(4)
    mon = _monitor(rng, window_kind="time", window_size=10_000, multivariate=False, min_window=100)
    s = Stream(mon, rng)  # 10 ms between events: a window is 1,000 events
    s.feed(_frame(rng, 2500))
    assert mon.status()["windows_judged"]["predictions"] == 2
    out = s.feed(_frame(rng, 1400, shift=1.5), labels=False)
    out += mon.flush()
    assert ("data_drift", "x1") in {(d.kind, d.feature) for d in out}
    assert mon.status()["pending"]["predictions"] == 0


def test_regression_monitor():
    rng = np.random.default_rng(5)
    n = 6000
    x = rng.normal(size=n)
    ref = pd.DataFrame({"x": x, "label": 2 * x + rng.normal(size=n), "prediction": 2 * x})
    mon = ModelMonitor("price", "regression", {"x": "numeric"}, ref,
                       {"window_size": 2000, "calibration_draws": 10, "multivariate": False})
    t = 0
    def feed(noise):
        nonlocal t
        xs = rng.normal(size=2000)
        ts = np.arange(t, t + 2000, dtype=np.int64)
        t += 2000
        pred = 2 * xs
        out = mon.update_predictions(PredictionBatch(ts, {"x": xs}, pred))
        return out + mon.update_labelled(LabelledBatch(ts, pred, 2 * xs + rng.normal(size=2000) * noise))
    assert feed(1.0) == []
    out = feed(2.0)
    assert {"mae", "rmse", "r2"} <= {d.detector for d in out if d.kind == "performance"}
    assert any(d.kind == "concept_drift" and d.detector == "page_hinkley" for d in out)


def test_large_reference_is_subsampled_and_missing_columns_are_named():
    rng = np.random.default_rng(7)
    mon = _monitor(rng, n_ref=3000, max_reference_rows=1000, multivariate=False)
    assert mon.reference.n == 1000 and mon.status()["reference_rows"] == 1000
    with pytest.raises(ValueError, match="lacks the feature columns"):
        ModelMonitor("m", "classification", {**FEATURES, "x9": "numeric"}, _frame(rng, 100))


def test_settings():
    s = MonitorSettings.from_dict({"multivariate_methods": ["pca"], "expected_run_time": 500})
    assert s.multivariate_methods == ("pca",) and s.alpha == 0.002
    with pytest.raises(ValueError, match="unknown detector settings"):
        MonitorSettings.from_dict({"windw_size": 3})
    with pytest.raises(ValueError):
        MonitorSettings(window_kind="rows")
    with pytest.raises(ValueError):
        MonitorSettings(multivariate_methods=("umap",))
    assert MonitorSettings.from_dict(s.to_dict()) == s


def test_domain_classifier_runs_on_a_hint_on_its_cadence_or_while_its_alert_is_open():
    rng = np.random.default_rng(11)
    mon = _monitor(rng, domain_classifier_every=4, warmup=0)
    calls = []
    update = mon._dc.update
    mon._dc.update = lambda *a, **k: calls.append(mon._data_windows_judged) or update(*a, **k)
    s = Stream(mon, rng)
    for _ in range(6):                                   # stationary: the first window, then every 4th
        s.feed(_frame(rng, 2000), labels=False)
    assert calls == [1, 5]
    runs = mon.status()["multivariate"]["domain_classifier"]["windows"]
    assert (runs["judged"], runs["skipped"]) == (2, 4)
    out = s.feed(_frame(rng, 2000, shift=1.0), labels=False)   # x1 moves: the univariate test's hint
    assert calls[-1] == 7 and mon._dc_runs["last"].startswith("x1 p=")
    assert any(d.detector == "domain_classifier" and d.firing for d in out)
    s.feed(_frame(rng, 2000), labels=False)             # back: it runs while its alert is open
    assert calls[-1] == 8 and mon._dc_runs["last"] == "its alert is open"
    del mon._dc.update                                  # (the spy is no detector state)
    restored = ModelMonitor.restore(mon.snapshot())     # the cadence survives a restart
    assert restored._dc_since == mon._dc_since and restored._dc_runs == mon._dc_runs


def test_a_significant_but_negligible_drift_is_no_hint(monkeypatch):
    """On large windows a negligible difference is significant in every window (a service's
    scores rounded to 4 decimals against an unrounded reference: p=0 on every window of the
    soak, so the classifier ran on all of them): a drift test hints only with its effect at
    ``domain_classifier_gate_effect`` (0.5) of its threshold."""
    rng = np.random.default_rng(14)
    mon = _monitor(rng, domain_classifier_every=10, warmup=0)
    mon._dc_since = 1
    monkeypatch.setattr(mon._dc, "correlation_p", lambda *a: 1.0)
    monkeypatch.setattr(mon._pca, "last", lambda: {"p_value": 0.9})
    cols, n = {"x1": np.zeros(10)}, 2000
    for effect, why in ((0.02, None), (0.049, None), (0.05, "x1 p=1e-09"), (None, "x1 p=1e-09")):
        monkeypatch.setattr(mon._data_drift, "last",
                            lambda e=effect: {"x1": {"p_adjusted": 1e-9, "effect": e, "threshold": 0.1}})
        assert mon._domain_classifier_due(mon._dc, cols, n) == why
    mon.settings = MonitorSettings.from_dict({**mon.settings.to_dict(), "domain_classifier_gate_effect": 0.0})
    monkeypatch.setattr(mon._data_drift, "last", lambda: {"x1": {"p_adjusted": 1e-9, "effect": 0.001, "threshold": 0.1}})
    assert mon._domain_classifier_due(mon._dc, cols, n) == "x1 p=1e-09"     # 0: any significant test
    with pytest.raises(ValueError, match="domain_classifier_gate_effect"):
        MonitorSettings(domain_classifier_gate_effect=2.0)
    with pytest.raises(ValueError, match="domain_classifier_leaves"):
        MonitorSettings(domain_classifier_leaves=1)


def test_a_correlation_change_no_marginal_shows_sends_the_domain_classifier_in():
    rng = np.random.default_rng(13)
    mon = _monitor(rng, domain_classifier_every=10, warmup=0)
    s = Stream(mon, rng)
    s.feed(_frame(rng, 2000), labels=False)             # its first window (cadence)
    s.feed(_frame(rng, 2000), labels=False)
    assert mon._dc_runs == {"judged": 1, "skipped": 1, "last": None}
    df = _frame(rng, 2000)
    df["x2"] = 0.6 * df.x1 + 0.8 * rng.normal(size=2000)   # both still N(0, 1)
    s.feed(df, labels=False)
    assert mon._dc_runs["judged"] == 2 and mon._dc_runs["last"].startswith("feature correlations p=")


def test_domain_classifier_every_1_judges_every_window():
    rng = np.random.default_rng(12)
    mon = _monitor(rng, domain_classifier_every=1, warmup=0)
    s = Stream(mon, rng)
    for _ in range(3):
        s.feed(_frame(rng, 2000), labels=False)
    assert mon.status()["multivariate"]["domain_classifier"]["windows"]["judged"] == 3
    with pytest.raises(ValueError, match="domain_classifier_every"):
        MonitorSettings(domain_classifier_every=0)
    with pytest.raises(ValueError, match="domain_classifier_gate"):
        MonitorSettings(domain_classifier_gate=1.5)


def test_without_concept_package(monkeypatch):
    monkeypatch.setattr(mm, "_concept", None)
    rng = np.random.default_rng(6)
    mon = _monitor(rng, multivariate=False)
    Stream(mon, rng).feed(_frame(rng, 2000, flip=0.4))
    st = mon.status()["concept_drift"]
    assert st["available"] is False and st["detectors"] == {}


def test_contract():
    ref = _frame(np.random.default_rng(0), 1500)
    settings = {"window_size": 300, "warmup": 0, "min_window": 50, "calibration_draws": 8,
                "multivariate_methods": ("pca",), "bootstrap": 30}

    def feed(mon, rng):
        df = _frame(rng, 400, shift=rng.choice([0.0, 1.0]), flip=rng.choice([0.0, 0.4]))
        return Stream(mon, rng).feed(df)

    def make():
        return ModelMonitor("m", "classification", FEATURES, ref, settings)

    check_all(make, feed)
