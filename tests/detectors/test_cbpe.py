"""CBPE: calibration equals sklearn's isotonic regression, estimates track realised accuracy."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from detectors.base import Window
from detectors.cbpe import CBPE, apply_isotonic, fit_isotonic
from detectors.reference import Reference
from tests.detectors.contract import check_all


def _binary(rng, n, lo=0.0, hi=1.0, skew=1.0):
    """Scores ``s`` with true P(y = 1 | s) = s ** skew (skew != 1: miscalibrated scores)."""
    s = rng.uniform(lo, hi, n)
    y = np.where(rng.random(n) < s**skew, "1", "0").astype(object)
    return s, y


def _ref(rng, n=6000, skew=1.0):
    s, y = _binary(rng, n, skew=skew)
    return Reference({"x": s}, {"x": "numeric"}, label=y, scores=np.column_stack([1 - s, s]), classes=["0", "1"])


def test_isotonic_knots_reproduce_sklearn():
    rng = np.random.default_rng(0)
    s, y = _binary(rng, 2000, skew=2.0)
    knots = fit_isotonic(s, y == "1")
    iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(s, (y == "1").astype(float))
    q = np.concatenate([rng.uniform(-0.2, 1.2, 500), s[:100]])
    assert np.allclose(apply_isotonic(q, knots), iso.predict(q), atol=1e-12)


def test_estimate_tracks_realised_accuracy_under_covariate_shift():
    """Miscalibrated scores (true P = s^2): the calibrated estimate still matches reality."""
    rng = np.random.default_rng(1)
    est = CBPE(_ref(rng, skew=2.0))
    assert est.reference_expected_accuracy == pytest.approx(est.baseline_accuracy, abs=0.01)
    for lo, hi in [(0.0, 1.0), (0.3, 0.8), (0.6, 1.0)]:
        s, y = _binary(rng, 4000, lo, hi, skew=2.0)
        pred = np.where(s > 0.5, "1", "0").astype(object)
        e, se = est.expected(pred, np.column_stack([1 - s, s]))
        realised = float(np.mean(pred == y))
        assert abs(e - realised) < 4 * se + 0.01, (lo, hi, e, realised)


def test_multiclass_estimate():
    rng = np.random.default_rng(2)
    n, k = 6000, 3
    logits = rng.normal(size=(n, k)) * 2
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    classes = ["a", "b", "c"]
    y = np.array([rng.choice(classes, p=row) for row in p], dtype=object)
    ref = Reference({"x": rng.normal(size=n)}, {"x": "numeric"}, label=y, scores=p, classes=classes)
    est = CBPE(ref)
    pred = np.array(classes, dtype=object)[p.argmax(axis=1)]
    e, _ = est.expected(pred, p)
    assert e == pytest.approx(float(np.mean(pred == y)), abs=0.02)


def test_alert_and_realised_join():
    rng = np.random.default_rng(3)
    est = CBPE(_ref(rng), min_n=50)
    s, y = _binary(rng, 2000)
    pred = np.where(s > 0.5, "1", "0").astype(object)
    assert est.update(Window(0, 999, 2000), pred, np.column_stack([1 - s, s])) == []
    s2, y2 = _binary(rng, 2000, 0.35, 0.65)  # uncertain cases only: accuracy ~0.58
    pred2 = np.where(s2 > 0.5, "1", "0").astype(object)
    out = est.update(Window(1000, 1999, 2000), pred2, np.column_stack([1 - s2, s2]))
    # every estimated metric drops here; accuracy comes first
    assert out[0].detector == "cbpe_accuracy" and all(d.detector.startswith("cbpe_") for d in out)
    d = out[0]
    assert d.kind == "performance" and d.firing and d.statistic < d.threshold
    assert "labels have not arrived yet" in d.summary
    # labels arrive later: they join the windows by prediction time
    est.update_labels(np.linspace(1000, 1999, 2000).astype(np.int64), pred2 == y2)
    hist = est.history_table()
    assert hist[0]["realised_n"] == 0 and hist[1]["realised_n"] == 2000
    assert hist[1]["realised_accuracy"] == pytest.approx(hist[1]["estimated_accuracy"], abs=0.04)


def test_needs_scores_and_labels():
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError):
        CBPE(Reference({"x": rng.normal(size=10)}, {"x": "numeric"}, label=np.array(["0", "1"] * 5)))


def test_contract():
    ref = _ref(np.random.default_rng(5), 2000)

    def feed(est, rng):
        lo = rng.choice([0.0, 0.4])
        s, y = _binary(rng, 300, lo, 1.0 - lo)
        pred = np.where(s > 0.5, "1", "0").astype(object)
        out = est.update(Window(0, 10, 300), pred, np.column_stack([1 - s, s]))
        est.update_labels(np.arange(300), pred == y)
        return out

    check_all(lambda: CBPE(ref, min_n=50), feed)
