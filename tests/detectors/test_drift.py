"""Univariate data drift: false alarms at scale, detection delay, lifecycle, contract."""
from __future__ import annotations

import numpy as np
import pytest

from detectors.base import Window
from detectors.batch import PredictionBatch
from detectors.model_monitor import ModelMonitor
from detectors.reference import Reference
from detectors.univariate_drift import UnivariateDrift
from tests.detectors.contract import check_all

N_NUM, N_CAT = 16, 4
CATS = np.array(["DE", "FR", "IT", "ES", "NL", "PL"], dtype=object)
CAT_P = np.array([0.35, 0.25, 0.15, 0.12, 0.08, 0.05])


def _features(rng: np.random.Generator, n: int, shift: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """20 features of assorted shapes: normal, skewed, integer-valued, with missing values,
    and categories. ``shift`` adds ``k`` standard deviations to a feature's values."""
    shift = shift or {}
    out: dict[str, np.ndarray] = {}
    for i in range(N_NUM):
        kind = i % 4
        if kind == 0:
            v, sd = rng.normal(0.0, 1.0, n), 1.0
        elif kind == 1:
            v, sd = rng.lognormal(3.0, 0.5, n), np.sqrt((np.exp(0.25) - 1) * np.exp(6.25))
        elif kind == 2:
            v, sd = rng.poisson(4.0, n).astype(np.float64), 2.0
        else:
            v, sd = rng.gamma(2.0, 2.0, n), np.sqrt(8.0)
            v[rng.random(n) < 0.05] = np.nan
        out[f"num{i}"] = v + shift.get(f"num{i}", 0.0) * sd
    for j in range(N_CAT):
        out[f"cat{j}"] = rng.choice(CATS, size=n, p=CAT_P)
    return out


FEATURE_TYPES = {**{f"num{i}": "numeric" for i in range(N_NUM)}, **{f"cat{j}": "categorical" for j in range(N_CAT)}}


def _monitor(rng: np.random.Generator, m: int = 20000, **settings) -> ModelMonitor:
    import pandas as pd

    ref = pd.DataFrame(_features(rng, m))
    ref["label"] = rng.normal(size=m)
    ref["prediction"] = rng.normal(size=m)
    base = {"window_size": 5000, "multivariate_methods": ("pca",), "performance": False, "concept_drift": False}
    return ModelMonitor("m", "regression", FEATURE_TYPES, ref, {**base, **settings})


def _batch(rng: np.random.Generator, n: int, t0: int, shift: dict[str, float] | None = None) -> PredictionBatch:
    return PredictionBatch(ts=np.arange(t0, t0 + n, dtype=np.int64), features=_features(rng, n, shift),
                           prediction=rng.normal(size=n))


@pytest.fixture(scope="module")
def monitor_blob() -> bytes:
    """A monitor on a 20,000-row reference, built once; each test restores its own copy."""
    return _monitor(np.random.default_rng(99)).snapshot()


def test_stationary_million_events_at_most_one_false_alarm(monitor_blob):
    """1,000,000 events, 200 windows of 5,000, 20 features (plus the prediction): at most one
    false alarm in total (multivariate checks have their own tests)."""
    rng = np.random.default_rng(2024)
    mon = ModelMonitor.restore(monitor_blob)
    mon._pca = None  # the univariate contract only; PCA's false alarms are tested elsewhere
    alarms = []
    for w in range(200):
        alarms += [d for d in mon.update_predictions(_batch(rng, 5000, w * 5000)) if d.firing]
    st = mon.status()
    assert st["predictions"] == 1_000_000 and st["windows_judged"]["predictions"] == 200
    last = st["data_drift"]
    print(f"\nstationary: {len(alarms)} false alarm(s) in 200 windows x 20 features "
          f"(last window: max effect/threshold {max(v['effect'] / v['threshold'] for v in last.values()):.2f})")
    assert len(alarms) <= 1, [a.summary for a in alarms]


@pytest.mark.parametrize("feature", ["num0", "num1", "num2"])
def test_quarter_sigma_mean_shift_detected_within_two_windows(feature, monitor_blob):
    rng = np.random.default_rng(7)
    mon = ModelMonitor.restore(monitor_blob)
    for w in range(3):
        assert not [d for d in mon.update_predictions(_batch(rng, 5000, w * 5000)) if d.firing]
    found = None
    for w in range(2):
        out = mon.update_predictions(_batch(rng, 5000, (3 + w) * 5000, {feature: 0.25}))
        hits = [d for d in out if d.firing and d.kind == "data_drift"]
        if hits:
            found = (w + 1, hits)
            break
    assert found is not None, f"0.25 sigma shift of {feature} not detected within 2 windows"
    windows, hits = found
    assert [d.feature for d in hits] == [feature]
    d = hits[0]
    print(f"\n{feature}: detected in window {windows} after the shift: {d.summary}")
    assert d.detector == "wasserstein" and d.statistic > d.threshold and d.p_value < 1e-6
    assert f"feature `{feature}` drifted" in d.summary and "5,000 predictions" in d.summary
    assert "20,000 training rows" in d.summary
    hist = d.evidence["histogram"]
    assert len(hist["edges"]) == 9 and sum(hist["reference"]) == 20000 and sum(hist["current"]) == 5000


def _ref(rng, m=4000):
    return Reference(
        {"x": rng.normal(size=m), "y": rng.exponential(size=m), "c": rng.choice(["a", "b", "c"], m).astype(object)},
        {"x": "numeric", "y": "numeric", "c": "categorical"}, task="regression",
    )


def test_categorical_unseen_and_missing_rate_and_lifecycle():
    rng = np.random.default_rng(1)
    det = UnivariateDrift(_ref(rng), calibration_n=2000, calibration_draws=20, resolve_after=2)
    ok = {"x": rng.normal(size=2000), "y": rng.exponential(size=2000), "c": rng.choice(["a", "b", "c"], 2000).astype(object)}
    assert det.update(Window(0, 1, 2000), ok) == []
    bad = dict(ok)
    bad["c"] = np.where(rng.random(2000) < 0.3, "new", ok["c"]).astype(object)
    bad["y"] = np.where(rng.random(2000) < 0.2, np.nan, ok["y"])
    out = det.update(Window(1, 2, 2000), bad)
    got = {(d.feature, d.detector) for d in out}
    assert got == {("c", "psi"), ("y", "missing_rate")}
    cat = next(d for d in out if d.feature == "c")
    assert "`(unseen)` 0% → 3" in cat.summary and cat.evidence["unseen_share"] == pytest.approx(0.3, abs=0.05)
    assert cat.severity == "critical" and cat.evidence["test"] == "chi2"
    assert det.update(Window(2, 3, 2000), ok) == []  # one clean window: not yet resolved
    res = det.update(Window(3, 4, 2000), ok)
    assert {(d.feature, d.firing) for d in res} == {("c", False), ("y", False)}
    assert all("no longer drifts" in d.summary or "back to normal" in d.summary for d in res)
    assert det.firing() == []


def test_escalation_to_critical_and_effect_floor():
    rng = np.random.default_rng(2)
    det = UnivariateDrift(_ref(rng), calibration_n=2000, calibration_draws=20)
    def win(shift):
        return {"x": rng.normal(shift, 1, 2000), "y": rng.exponential(size=2000),
                "c": rng.choice(["a", "b", "c"], 2000).astype(object)}
    out = det.update(Window(0, 1, 2000), win(0.3))
    assert [(d.feature, d.severity) for d in out] == [("x", "warning")]
    out = det.update(Window(1, 2, 2000), win(0.8))
    assert [(d.feature, d.severity, d.firing) for d in out] == [("x", "critical", True)]


def test_large_windows_do_not_fire_on_harmless_shifts():
    """At n = 100,000 a 0.05 sigma shift is wildly significant yet below the effect floor."""
    rng = np.random.default_rng(3)
    ref = Reference({"x": rng.normal(size=100_000)}, {"x": "numeric"}, task="regression")
    det = UnivariateDrift(ref, calibration_n=100_000, calibration_draws=10)
    out = det.update(Window(0, 1, 100_000), {"x": rng.normal(0.05, 1, 100_000)})
    last = det.last()["x"]
    assert last["p_value"] < 1e-10 and out == []
    nofloor = UnivariateDrift(ref, calibration_n=100_000, calibration_draws=10, min_effect_numeric=0.0)
    assert [d.feature for d in nofloor.update(Window(0, 1, 100_000), {"x": rng.normal(0.05, 1, 100_000)})] == ["x"]


def test_cvm_test_and_absent_column():
    rng = np.random.default_rng(4)
    det = UnivariateDrift(_ref(rng), numeric_test="cvm", calibrate=False)
    out = det.update(Window(0, 1, 1000), {"x": rng.normal(1.0, 1, 1000), "c": rng.choice(["a", "b", "c"], 1000).astype(object)})
    by = {(d.feature, d.detector) for d in out}
    assert ("x", "wasserstein") in by and ("y", "missing_rate") in by  # y absent = all missing
    x = next(d for d in out if d.feature == "x")
    assert x.evidence["test"] == "cvm" and x.threshold == 0.1


def test_thresholds_scale_with_window_size():
    rng = np.random.default_rng(5)
    det = UnivariateDrift(_ref(rng), calibration_n=2000, calibration_draws=20, min_effect_numeric=0.0,
                          min_effect_categorical=0.0)
    small, large = det.thresholds(200), det.thresholds(2000)
    assert small["x"] > large["x"] * 1.5 and small["c"] > large["c"] * 3


def test_bad_parameters():
    rng = np.random.default_rng(6)
    ref = _ref(rng, 100)
    for kw in ({"kind": "x"}, {"numeric_test": "t"}, {"numeric_effect": "cvm"}, {"categorical_effect": "chi2"},
               {"correction": "x"}, {"alpha": 0.0}):
        with pytest.raises(ValueError):
            UnivariateDrift(ref, calibrate=False, **kw)


def _feed(det, rng):
    n = 500
    shift = rng.choice([0.0, 0.0, 0.8])
    cols = {"x": rng.normal(shift, 1, n), "y": rng.exponential(size=n),
            "c": rng.choice(["a", "b", "c", "d"], n, p=[0.3, 0.3, 0.3, 0.1] if shift else [0.34, 0.33, 0.33, 0.0]).astype(object)}
    return det.update(Window(0, 1, n), cols)


def test_contract():
    ref = _ref(np.random.default_rng(0), 1500)
    check_all(lambda: UnivariateDrift(ref, calibration_n=500, calibration_draws=8, model="m"), _feed)
