"""Multiple-testing corrections, run-time alpha, calibration and the alert lifecycle."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from detectors import decision as dec
from detectors import two_sample as uv
from tests.detectors.contract import check_all


def _holm_brute(p: np.ndarray) -> np.ndarray:
    k = len(p)
    order = np.argsort(p, kind="stable")
    out = np.empty(k)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (k - rank) * p[i]))
        out[i] = running
    return out


def test_holm_matches_the_textbook_procedure():
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = rng.random(int(rng.integers(1, 25))) ** 3
        assert np.allclose(dec.adjust_pvalues(p, "holm"), _holm_brute(p), rtol=0, atol=1e-15)


def test_bh_matches_scipy():
    rng = np.random.default_rng(1)
    for _ in range(200):
        p = rng.random(int(rng.integers(1, 25))) ** 3
        assert np.allclose(dec.adjust_pvalues(p, "bh"), stats.false_discovery_control(p, method="bh"), atol=1e-15)


def test_corrections_leave_nan_out_of_the_family():
    p = np.array([0.01, np.nan, 0.02])
    out = dec.adjust_pvalues(p, "bonferroni")
    assert np.isnan(out[1]) and out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.04)
    assert dec.adjust_pvalues(p, "none")[2] == 0.02
    with pytest.raises(ValueError):
        dec.adjust_pvalues(p, "sidak")


def test_holm_controls_familywise_error_under_the_null():
    rng = np.random.default_rng(2)
    p = rng.random((20000, 20))
    rejections = np.array([(dec.adjust_pvalues(row, "holm") < 0.05).any() for row in p[:4000]])
    assert rejections.mean() < 0.06


def test_alpha_for_run_time_and_geometric_run_length():
    assert dec.alpha_for_run_time(500) == 0.002
    with pytest.raises(ValueError):
        dec.alpha_for_run_time(0.5)


def test_scale_threshold_laws():
    assert dec.scale_threshold("psi", 1.0, 5000, 20000, 5000, 20000) == pytest.approx(1.0)
    # halving both sizes doubles a PSI threshold and multiplies a KS one by sqrt(2)
    assert dec.scale_threshold("psi", 1.0, 2500, 10000, 5000, 20000) == pytest.approx(2.0)
    assert dec.scale_threshold("ks", 1.0, 2500, 10000, 5000, 20000) == pytest.approx(np.sqrt(2.0))


@pytest.mark.parametrize("stat", ["wasserstein", "ks", "psi", "jensenshannon"])
def test_calibrated_threshold_bounds_the_null_statistic(stat):
    """Windows drawn from the reference's own distribution rarely exceed mean + 3 std."""
    rng = np.random.default_rng(3)
    truth = rng.normal(size=(5, 20000))
    prof = uv.numeric_profile(truth)
    cal = dec.calibrate_numeric(prof, stat, n_cal=2000, draws=40, rng=np.random.default_rng(4))
    assert cal["threshold"].shape == (5,)
    exceed = 0
    for _ in range(20):
        cur = rng.normal(size=(5, 2000))
        res = uv.numeric_tests(prof, cur, tests=(stat,))
        exceed += int((res[stat] > cal["threshold"]).sum())
    assert exceed <= 3  # of 100 feature-windows
    # a real shift clears it
    shifted = uv.numeric_tests(prof, rng.normal(0.3, size=(5, 2000)), tests=(stat,))
    assert (shifted[stat] > cal["threshold"]).all()


def test_categorical_calibration():
    rng = np.random.default_rng(5)
    cols = [rng.choice(list("abcde"), p=[0.4, 0.3, 0.15, 0.1, 0.05], size=20000).astype(object)]
    prof = uv.categorical_profile(cols)
    cal = dec.calibrate_categorical(prof, "psi", 2000, draws=60, rng=np.random.default_rng(6))
    null = [uv.categorical_tests(prof, [rng.choice(list("abcde"), p=[0.4, 0.3, 0.15, 0.1, 0.05], size=2000)
                                          .astype(object)])["psi"][0] for _ in range(30)]
    assert np.mean(np.array(null) > cal["threshold"][0]) <= 0.1
    with pytest.raises(ValueError):
        dec.calibrate_categorical(prof, "ks", 2000)


def test_alert_book_lifecycle():
    book = dec.AlertBook(resolve_after=2)
    seq = [(True, "warning"), (True, "warning"), (True, "critical"), (False, "warning"), (True, "warning"),
           (False, "warning"), (False, "warning"), (False, "warning")]
    out = [book.update("k", b, s) for b, s in seq]
    assert out == ["fire", None, "escalate", None, None, None, "resolve", None]
    assert book.firing() == []
    book.update("a", True)
    assert book.clear() == ["a"] and book.firing() == []


def test_alert_book_contract():
    def feed(book, rng):
        return [book.update(k, bool(b)) for k, b in zip(itertools.cycle("abc"), rng.random(9) < 0.5)]

    check_all(lambda: dec.AlertBook(2), feed)


def test_format_p():
    assert dec.format_p(1e-9) == "p<1e-6" and dec.format_p(0.0123) == "p=0.012" and dec.format_p(None) == "p n/a"
