"""Metrics, significance tests and the promotion rule."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from retrain.evaluate import Outputs, decide, mcnemar, metrics, paired_bootstrap


def _clf(seed=0, n=2000, k=3):
    rng = np.random.default_rng(seed)
    classes = [str(c) for c in range(k)]
    y = rng.choice(classes, n).astype(object)
    pred = np.where(rng.random(n) < 0.7, y, rng.choice(classes, n)).astype(object)
    scores = rng.dirichlet(np.ones(k), n)
    return y, Outputs(pred, scores, classes)


def test_classification_metrics_match_scikit_learn():
    y, out = _clf()
    m = metrics("classification", y, out)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, out.prediction))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, out.prediction))
    assert m["f1_macro"] == pytest.approx(skm.f1_score(y, out.prediction, average="macro"))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, out.scores, labels=out.classes))
    assert "roc_auc" not in m          # multiclass: not offered
    yb, ob = _clf(1, k=2)
    assert metrics("classification", yb, ob)["roc_auc"] == pytest.approx(
        skm.roc_auc_score(yb == "1", ob.scores[:, 1]))


def test_regression_metrics_match_scikit_learn():
    rng = np.random.default_rng(2)
    y = rng.normal(size=500)
    p = y + rng.normal(scale=0.4, size=500)
    m = metrics("regression", y, Outputs(p))
    assert m["rmse"] == pytest.approx(skm.mean_squared_error(y, p) ** 0.5)
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert m["r2"] == pytest.approx(skm.r2_score(y, p))


def test_mcnemar_exact_one_sided():
    # 10 discordant pairs, 9 in the challenger's favour: P(X >= 9 | 10, 1/2) = 11/1024
    champ = np.array([0] * 9 + [1] + [1] * 50, dtype=bool)
    chall = np.array([1] * 9 + [0] + [1] * 50, dtype=bool)
    p, b, c = mcnemar(champ, chall)
    assert (b, c) == (1, 9) and p == pytest.approx(11 / 1024)
    assert mcnemar(chall, chall) == (1.0, 0, 0)


def _noisy_models(rng, n, acc_a, acc_b):
    y = rng.choice(["0", "1"], n).astype(object)
    flip = {"0": "1", "1": "0"}
    a = np.array([v if rng.random() < acc_a else flip[v] for v in y], dtype=object)
    b = np.array([v if rng.random() < acc_b else flip[v] for v in y], dtype=object)
    return y, Outputs(a), Outputs(b)


@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy"])
def test_false_promotions_stay_near_alpha_when_models_are_equal(metric):
    rng = np.random.default_rng(3)
    promoted = 0
    runs = 150
    for i in range(runs):
        y, a, b = _noisy_models(rng, 400, 0.8, 0.8)
        promoted += decide("classification", y, a, b, metric=metric, alpha=0.05, bootstrap_samples=300, seed=i).promote
    assert promoted / runs <= 0.10


def test_real_improvement_is_promoted_and_small_or_noisy_ones_are_not():
    rng = np.random.default_rng(4)
    y, champ, chall = _noisy_models(rng, 5000, 0.80, 0.86)
    d = decide("classification", y, chall, champ, metric="f1_macro", alpha=0.05, bootstrap_samples=500)
    assert d.promote and d.test == "paired_bootstrap" and d.details["ci_low"] > 0
    # significant, but smaller than min_delta
    d = decide("classification", y, chall, champ, metric="accuracy", min_delta=0.2)
    assert not d.promote and "below min_delta" in d.reason and d.p_value < 0.05
    # large observed improvement on a handful of rows: not significant
    y, champ, chall = _noisy_models(np.random.default_rng(5), 12, 0.6, 0.8)
    d = decide("classification", y, chall, champ, metric="accuracy")
    assert not d.promote


def test_regression_decision_with_bootstrap():
    rng = np.random.default_rng(6)
    y = rng.normal(size=3000)
    good, bad = Outputs(y + rng.normal(scale=0.5, size=3000)), Outputs(y + rng.normal(scale=0.6, size=3000))
    d = decide("regression", y, good, bad, metric="rmse", bootstrap_samples=400)
    assert d.promote and d.delta > 0
    assert not decide("regression", y, bad, good, metric="rmse", bootstrap_samples=400).promote
    boot = paired_bootstrap("regression", "mae", y, good, good, samples=200)
    assert boot["delta"] == 0.0 and boot["p_value"] == 1.0


def test_no_incumbent_promotes_and_unscorable_incumbent_rejects():
    y, out = _clf(7, k=2)
    assert decide("classification", y, out, None, metric="log_loss").promote
    d = decide("classification", y, out, Outputs(out.prediction), metric="log_loss")
    assert not d.promote and "cannot be scored on log_loss" in d.reason
