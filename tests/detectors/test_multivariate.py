"""Multivariate drift: what univariate tests miss, the features that matter, false alarms."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from detectors.base import Window
from detectors.multivariate import DomainClassifierDrift, PCAReconstructionDrift, auc_pvalue
from detectors.reference import Reference
from detectors.univariate_drift import UnivariateDrift
from tests.detectors.contract import check_all

TYPES = {"a": "numeric", "b": "numeric", "c": "numeric", "d": "numeric", "k": "categorical"}


def _data(rng, n, corr=0.9, shift_d=0.0):
    z = rng.normal(size=n)
    a = z
    b = corr * z + np.sqrt(1 - corr**2) * rng.normal(size=n)
    return {"a": a, "b": b, "c": rng.normal(size=n), "d": rng.exponential(size=n) + shift_d,
            "k": rng.choice(["x", "y", "z"], n).astype(object)}


def _ref(rng, n=4000):
    return Reference(_data(rng, n), TYPES, task="regression")


def test_pca_sees_a_broken_correlation_that_univariate_tests_miss():
    rng = np.random.default_rng(0)
    ref = _ref(rng)
    pca = PCAReconstructionDrift(ref)
    uni = UnivariateDrift(ref, calibration_n=2000, calibration_draws=20)
    cur = _data(rng, 2000, corr=-0.9)  # same marginals, correlation reversed
    assert uni.update(Window(0, 1, 2000), cur) == []
    out = pca.update(Window(0, 1, 2000), cur)
    assert [d.detector for d in out] == ["pca_reconstruction"]
    d = out[0]
    assert d.kind == "multivariate_drift" and d.firing and d.p_value < 1e-6
    assert set(d.evidence["top_features"][:2]) == {"a", "b"}
    assert "`a`" in d.summary and "`b`" in d.summary


def test_pca_no_false_alarm_on_stationary_windows():
    rng = np.random.default_rng(1)
    pca = PCAReconstructionDrift(_ref(rng, 10000))
    fired = sum(d.firing for _ in range(40) for d in pca.update(Window(0, 1, 2000), _data(rng, 2000)))
    assert fired == 0


def test_pca_p_value_is_calibrated_on_stationary_windows():
    # the reference's errors are held out (each row's from components fitted without it): with
    # in-sample errors a stationary window's mean error sat ~4% above the reference's and its
    # p-value was below 1e-5 in every window (only min_increase kept it from paging)
    types = {f"f{i}": "numeric" for i in range(10)}
    p_values, increases = [], []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        pca = PCAReconstructionDrift(Reference({f: rng.normal(size=5000) for f in types}, types, task="regression"))
        for _ in range(5):
            pca.update(Window(0, 1, 5000), {f: rng.normal(size=5000) for f in types})
            p_values.append(pca.last()["p_value"])
            increases.append(pca.last()["increase"])
    assert abs(np.mean(increases)) < 0.01
    assert np.mean(np.array(p_values) < 0.05) <= 0.15   # 0.05 expected; 40 windows on 8 references
    assert min(p_values) > 1e-4


def test_domain_classifier_detects_and_names_the_feature():
    rng = np.random.default_rng(2)
    dc = DomainClassifierDrift(_ref(rng), max_rows=800, max_iter=30)
    assert dc.update(Window(0, 1, 1500), _data(rng, 1500)) == []
    out = dc.update(Window(1, 2, 1500), _data(rng, 1500, shift_d=0.7))
    assert [d.detector for d in out] == ["domain_classifier"]
    d = out[0]
    assert d.statistic >= 0.55 and d.evidence["top_features"][0] == "d"
    assert "domain-classifier AUC" in d.summary and "`d`" in d.summary


def test_domain_classifier_grows_small_trees_and_an_old_state_keeps_its_own(monkeypatch):
    """7 leaves per tree by default (``bench/domain_classifier.py``: more power than
    scikit-learn's 31 on a few thousand rows, at a third of the cost); a state saved before the
    parameter existed goes on with 31, so a restored detector continues as it was."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    grown: list[int] = []
    fit = HistGradientBoostingClassifier.fit

    def recording_fit(self, x, y, *a, **kw):
        out = fit(self, x, y, *a, **kw)
        grown.append(max(int(tree[0].nodes["is_leaf"].sum()) for tree in self._predictors))
        return out

    monkeypatch.setattr(HistGradientBoostingClassifier, "fit", recording_fit)
    rng = np.random.default_rng(6)
    ref = _ref(rng, 1500)
    dc = DomainClassifierDrift(ref, max_rows=600, max_iter=10)
    dc.update(Window(0, 1, 800), _data(rng, 800, shift_d=0.5))
    assert len(grown) == dc.folds and max(grown) <= 7
    del dc.__dict__["max_leaf_nodes"]             # as a snapshot written before the parameter
    old = DomainClassifierDrift.restore(dc.snapshot())
    assert old.max_leaf_nodes == 31
    grown.clear()
    old.update(Window(1, 2, 800), _data(rng, 800, shift_d=0.5))
    assert max(grown) > 7


def test_auc_pvalue_matches_mann_whitney():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=400), rng.normal(0.2, size=300)
    u = stats.mannwhitneyu(y, x, alternative="greater", method="asymptotic", use_continuity=False)
    auc = u.statistic / (len(x) * len(y))
    assert auc_pvalue(auc, len(x), len(y)) == pytest.approx(u.pvalue, rel=1e-9)


def test_contract_pca():
    ref = _ref(np.random.default_rng(4), 1500)

    def feed(det, rng):
        return det.update(Window(0, 1, 300), _data(rng, 300, corr=rng.choice([0.9, -0.5])))

    check_all(lambda: PCAReconstructionDrift(ref), feed)


def test_contract_domain_classifier():
    ref = _ref(np.random.default_rng(5), 600)

    def feed(det, rng):
        return det.update(Window(0, 1, 200), _data(rng, 200, shift_d=rng.choice([0.0, 1.5])))

    check_all(lambda: DomainClassifierDrift(ref, max_rows=120, max_iter=5, folds=2), feed)


def test_one_thread_limits_scikit_learns_openmp_too():
    """The limit must reach the OpenMP runtime HistGradientBoosting uses, even in a fresh process
    where no scikit-learn estimator ran before (else its first fits spin on every core)."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("from threadpoolctl import threadpool_info\n"
            "from detectors._threads import one_thread\n"
            "with one_thread():\n"
            "    print(sorted({i['num_threads'] for i in threadpool_info() if i['user_api'] == 'openmp'}))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[1]", out
