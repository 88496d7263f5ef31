"""Performance metrics equal sklearn's; intervals; degradation decisions; contract."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from detectors.base import Window
from detectors.performance import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    PerformanceDrift,
    metric_values,
    positive_class,
    weighted_metrics,
)
from detectors.reference import Reference
from tests.detectors.contract import check_all

TOL = 1e-9


def _clf(rng, n, classes, noise=0.3):
    k = len(classes)
    y = rng.choice(np.array(classes, dtype=object), n)
    idx = np.array([classes.index(v) for v in y])
    raw = rng.random((n, k)) * noise
    raw[np.arange(n), idx] += rng.random(n)
    s = raw / raw.sum(axis=1, keepdims=True)
    yhat = np.array(classes, dtype=object)[s.argmax(axis=1)]
    return y, yhat, s


@pytest.mark.parametrize("classes", [["0", "1"], ["no", "yes"], ["False", "True"], ["cat", "dog", "eel"]])
def test_classification_metrics_equal_sklearn(classes):
    rng = np.random.default_rng(0)
    y, yhat, s = _clf(rng, 700, classes)
    ours = metric_values("classification", y, yhat, s, classes)
    pos = positive_class(classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if pos is not None:
            want = {
                "accuracy": skm.accuracy_score(y, yhat),
                "precision": skm.precision_score(y, yhat, pos_label=pos),
                "recall": skm.recall_score(y, yhat, pos_label=pos),
                "f1": skm.f1_score(y, yhat, pos_label=pos),
                "roc_auc": skm.roc_auc_score(y == pos, s[:, classes.index(pos)]),
                "log_loss": skm.log_loss(y, y_proba=s, labels=classes),
            }
        else:
            want = {
                "accuracy": skm.accuracy_score(y, yhat),
                "precision": skm.precision_score(y, yhat, average="macro"),
                "recall": skm.recall_score(y, yhat, average="macro"),
                "f1": skm.f1_score(y, yhat, average="macro"),
                "roc_auc": skm.roc_auc_score(y, s, multi_class="ovr", labels=classes),
                "log_loss": skm.log_loss(y, y_proba=s, labels=classes),
            }
    for m in CLASSIFICATION_METRICS:
        assert abs(ours[m] - want[m]) <= TOL, m
    # the weighted (bootstrap) implementation agrees with unit weights
    w = weighted_metrics("classification", y, yhat, s, classes, None, CLASSIFICATION_METRICS, np.ones((1, len(y))))
    for m in CLASSIFICATION_METRICS:
        assert abs(w[m][0] - want[m]) <= TOL, m


def test_weighted_metrics_equal_sklearn_sample_weight():
    """Integer weights = repeated rows: the bootstrap replicates are exact metric values."""
    rng = np.random.default_rng(1)
    classes = ["a", "b"]
    y, yhat, s = _clf(rng, 300, classes)
    wts = rng.poisson(1.0, 300).astype(float)
    got = weighted_metrics("classification", y, yhat, s, classes, None, CLASSIFICATION_METRICS, wts[None, :])
    rep = np.repeat(np.arange(300), wts.astype(int))
    want = metric_values("classification", y[rep], yhat[rep], s[rep], classes)
    for m in CLASSIFICATION_METRICS:
        assert abs(got[m][0] - want[m]) <= TOL, m
    yr = rng.normal(size=300)
    pr = yr + rng.normal(size=300) * 0.4
    got = weighted_metrics("regression", yr, pr, None, [], None, REGRESSION_METRICS, wts[None, :])
    want = metric_values("regression", yr[rep], pr[rep], None, [])
    for m in REGRESSION_METRICS:
        assert abs(got[m][0] - want[m]) <= TOL, m


def test_regression_metrics_equal_sklearn():
    rng = np.random.default_rng(2)
    y = rng.normal(100, 10, 500)
    p = y + rng.normal(size=500) * 3
    p[:5] = np.nan  # rows without a value are left out
    ours = metric_values("regression", y, p, None, [])
    ok = ~np.isnan(p)
    assert abs(ours["mae"] - skm.mean_absolute_error(y[ok], p[ok])) <= TOL
    assert abs(ours["rmse"] - skm.root_mean_squared_error(y[ok], p[ok])) <= TOL
    assert abs(ours["r2"] - skm.r2_score(y[ok], p[ok])) <= TOL
    w = weighted_metrics("regression", y, p, None, [], None, REGRESSION_METRICS, np.ones((1, 500)))
    for m in REGRESSION_METRICS:
        assert abs(w[m][0] - ours[m]) <= TOL


def test_bootstrap_interval_covers_truth():
    """95 % intervals from the Poisson bootstrap cover the true accuracy about 95 % of the time."""
    rng = np.random.default_rng(3)
    classes = ["0", "1"]
    det = PerformanceDrift("classification", classes, metrics=("accuracy",), baseline={"accuracy": 0.8},
                           bootstrap=200, min_n=10)
    covered = 0
    for i in range(100):
        y = rng.choice(np.array(classes, dtype=object), 500)
        yhat = np.where(rng.random(500) < 0.8, y, np.where(y == "1", "0", "1")).astype(object)
        det.update(Window(i, i, 500), y, yhat)
        lo, hi = det.last()["metrics"]["accuracy"]["ci"]
        covered += lo <= 0.8 <= hi
    assert 88 <= covered <= 100


def test_degradation_detected_and_resolved_with_reference_baseline():
    rng = np.random.default_rng(4)
    classes = ["a", "b", "c"]
    y, yhat, s = _clf(rng, 5000, classes)
    ref = Reference({"x": rng.normal(size=5000)}, {"x": "numeric"}, label=y, prediction=yhat, scores=s, classes=classes)
    det = PerformanceDrift("classification", classes, reference=ref, min_n=100)
    base = det.baseline_metrics()
    assert base["accuracy"] == pytest.approx(skm.accuracy_score(y, yhat))
    y2, yhat2, s2 = _clf(rng, 2000, classes)
    assert det.update(Window(0, 1, 2000), y2, yhat2, s2) == []
    y3, yhat3, s3 = _clf(rng, 2000, classes, noise=1.2)  # a worse model
    out = det.update(Window(1, 2, 2000), y3, yhat3, s3)
    assert {d.detector for d in out} >= {"accuracy", "f1", "roc_auc", "log_loss"}
    acc = next(d for d in out if d.detector == "accuracy")
    assert acc.kind == "performance" and acc.firing and acc.p_value < 1e-3
    assert acc.statistic < acc.threshold < base["accuracy"]
    assert "accuracy dropped to" in acc.summary and "labelled predictions" in acc.summary
    assert acc.evidence["ci"][1] < base["accuracy"]
    det.update(Window(2, 3, 2000), y2, yhat2, s2)
    res = det.update(Window(3, 4, 2000), y2, yhat2, s2)
    assert {d.detector for d in res} == {d.detector for d in out} and not any(d.firing for d in res)


def test_small_drop_at_large_n_is_not_an_alert():
    """A significant but immaterial drop (0.7 points of accuracy) stays below min_degradation."""
    rng = np.random.default_rng(5)
    det = PerformanceDrift("classification", ["0", "1"], metrics=("accuracy",),
                           baseline={"accuracy": 0.900}, min_n=10)
    y = rng.choice(np.array(["0", "1"], dtype=object), 60_000)
    yhat = np.where(rng.random(60_000) < 0.893, y, np.where(y == "1", "0", "1")).astype(object)
    assert det.update(Window(0, 1, 60_000), y, yhat) == []
    assert det.last()["metrics"]["accuracy"]["p_value"] < 1e-3


def test_regression_baseline_from_first_window():
    rng = np.random.default_rng(6)
    det = PerformanceDrift("regression", metrics=("mae", "rmse"), min_n=10)
    y = rng.normal(size=1000)
    assert det.update(Window(0, 1, 1000), y, y + rng.normal(size=1000) * 0.5) == []
    assert det.last()["baseline_from_stream"]
    out = det.update(Window(1, 2, 1000), y, y + rng.normal(size=1000) * 0.8)
    assert {d.detector for d in out} == {"mae", "rmse"}
    assert all("rose to" in d.summary and "first 1,000 labelled predictions" in d.summary for d in out)


def test_positive_class_rules_and_bad_metrics():
    assert positive_class(["False", "True"]) == "True" and positive_class(["ham", "spam"]) == "spam"
    with pytest.raises(ValueError):
        PerformanceDrift("regression", metrics=("accuracy",))
    with pytest.raises(ValueError):
        PerformanceDrift("ranking")


def test_contract():
    rng0 = np.random.default_rng(0)
    classes = ["n", "y"]
    y, yhat, s = _clf(rng0, 1000, classes)
    ref = Reference({"x": rng0.normal(size=1000)}, {"x": "numeric"}, label=y, prediction=yhat, scores=s,
                    classes=classes)

    def feed(det, rng):
        noise = rng.choice([0.3, 1.5])
        yy, pp, ss = _clf(rng, 400, classes, noise=noise)
        ss[:10] = np.nan  # a few events without scores
        return det.update(Window(0, 1, 400), yy, pp, ss)

    check_all(lambda: PerformanceDrift("classification", classes, reference=ref, bootstrap=50, min_n=50), feed)
