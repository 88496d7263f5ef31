"""detectors.paired: the McNemar gate test, the running shadow comparison and the canary window test."""
from __future__ import annotations

from math import comb

import numpy as np
import pytest
from scipy import stats

from detectors.paired import ShadowComparison, compare_windows, mcnemar


# ------------------------------------------------------------------ data
def _pairs(rng: np.random.Generator, n: int, acc: float, fixes: float = 0.0, breaks: float = 0.0,
           ) -> tuple[np.ndarray, np.ndarray]:
    """Served correctness at ``acc``; the shadow agrees except that it fixes a share ``fixes`` of
    the served errors and breaks a share ``breaks`` of the served successes."""
    served = rng.random(n) < acc
    u = rng.random(n)
    shadow = np.where(served, u >= breaks, u < fixes)
    return served, shadow


def _equal_pairs(rng: np.random.Generator, n: int, acc: float = 0.8, disagree: float = 0.15,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Two versions with the same accuracy that disagree on a share of requests (exchangeable)."""
    served = rng.random(n) < acc
    shadow = served.copy()
    swap = rng.random(n) < disagree
    shadow[swap] = rng.random(int(swap.sum())) < acc
    served[swap] = rng.random(int(swap.sum())) < acc
    return served, shadow


def _feed(cmp: ShadowComparison, served: np.ndarray, shadow: np.ndarray, batch: int = 97) -> ShadowComparison:
    for i in range(0, len(served), batch):
        if cmp.task == "classification":
            cmp.update(served[i:i + batch], shadow[i:i + batch])
        else:
            cmp.update_errors(served[i:i + batch], shadow[i:i + batch])
    return cmp


# ------------------------------------------------------------------ mcnemar (the promotion gate's test)
def test_mcnemar_known_counts():
    # 10 discordant pairs, 9 for the challenger: P(X >= 9 | 10, 1/2) = (C(10,9) + C(10,10)) / 2^10 = 11/1024
    champ = np.array([0] * 9 + [1] + [1] * 50, dtype=bool)
    chall = np.array([1] * 9 + [0] + [1] * 50, dtype=bool)
    assert mcnemar(champ, chall) == (pytest.approx(11 / 1024), 1, 9)
    assert mcnemar(chall, chall) == (1.0, 0, 0)
    # the challenger worse: one-sided in its favour, so p is large
    p, b, c = mcnemar(chall, champ)
    assert (b, c) == (9, 1) and p == pytest.approx(1 - 1 / 1024)


def test_retrain_evaluate_still_exports_the_same_mcnemar():
    from retrain import evaluate

    assert evaluate.mcnemar is mcnemar and "mcnemar" in evaluate.__all__


# ------------------------------------------------------------------ shadow: classification
def test_shadow_counts_and_two_sided_p_by_hand():
    served = np.array([1] * 50 + [1] + [0] * 9 + [0] * 5, dtype=bool)
    shadow = np.array([1] * 50 + [0] + [1] * 9 + [0] * 5, dtype=bool)
    r = ShadowComparison("v1", "v2", min_n=10).update(served, shadow).report()
    assert (r["n"], r["b"], r["c"]) == (65, 1, 9)
    assert r["served_metric"] == pytest.approx(51 / 65) and r["shadow_metric"] == pytest.approx(59 / 65)
    assert r["difference"] == pytest.approx(8 / 65)
    # two-sided exact: 2 * P(X >= 9 | 10, 1/2) = 22/1024
    assert r["p_value"] == pytest.approx(22 / 1024)
    assert r["p_value"] == pytest.approx(stats.binomtest(9, 10, 0.5).pvalue)
    assert (r["test"], r["metric"], r["better"], r["worse"]) == ("mcnemar", "accuracy", True, False)
    # the same pairs the other way round: worse, same p
    r2 = ShadowComparison("v1", "v2", min_n=10).update(shadow, served).report()
    assert (r2["b"], r2["c"], r2["better"], r2["worse"]) == (9, 1, False, True)
    assert r2["p_value"] == pytest.approx(r["p_value"])


def test_shadow_batches_add_up_to_one_batch():
    served, shadow = _pairs(np.random.default_rng(0), 1000, 0.8, fixes=0.3, breaks=0.05)
    one = ShadowComparison("v1", "v2").update(served, shadow).report()
    many = _feed(ShadowComparison("v1", "v2"), served, shadow, batch=33).report()
    assert one == many


def test_a_better_shadow_is_found_better_at_n_1000():
    # served 80 %, the shadow fixes 25 % of its errors and breaks 3 % of its successes: ~0.826 vs 0.80
    hits = 0
    for seed in range(20):
        served, shadow = _pairs(np.random.default_rng(seed), 1000, 0.80, fixes=0.25, breaks=0.03)
        r = _feed(ShadowComparison("v2", "v3"), served, shadow).report()
        assert not r["worse"]
        hits += r["better"]
    assert hits >= 16                                   # power ~0.9 at this margin; measured 18 of 20


def test_equal_shadows_are_rarely_called_better_or_worse():
    runs, alpha = 200, 0.05
    better = worse = 0
    for seed in range(runs):
        served, shadow = _equal_pairs(np.random.default_rng(1000 + seed), 1000)
        r = ShadowComparison("v2", "v3", alpha=alpha).update(served, shadow).report()
        better += r["better"]
        worse += r["worse"]
    assert (better + worse) / runs <= alpha + 0.03          # two-sided: both verdicts together
    assert better / runs <= alpha / 2 + 0.03


def test_summary_reads_as_a_sentence():
    served = np.r_[np.ones(1000, bool), np.zeros(200, bool)]
    shadow = served.copy()
    shadow[:40] = False          # b = 40: the served version right only
    shadow[1000:1124] = True     # c = 124: the shadow right only
    r = ShadowComparison("v2", "v3").update(served, shadow).report()
    p = stats.binomtest(124, 164, 0.5).pvalue
    assert r["summary"] == (f"shadow v3 accuracy 0.903 vs served v2 0.833 on the same 1,200 labelled requests "
                            f"(McNemar b=40 c=124, p={p:.2g}): shadow significantly better at alpha 0.05")


def test_no_verdict_before_min_n_and_no_nan_when_empty():
    empty = ShadowComparison("v1", "v2").report()
    assert empty["n"] == 0 and empty["p_value"] is None and empty["served_metric"] is None
    assert not empty["better"] and not empty["worse"] and "not enough" in empty["summary"]
    served = np.zeros(20, bool)
    r = ShadowComparison("v1", "v2", min_n=30).update(served, ~served).report()
    assert r["p_value"] < 0.05 and not r["better"] and "too few" in r["summary"]


def test_bad_input_is_refused():
    cmp = ShadowComparison("v1", "v2")
    with pytest.raises(ValueError, match="same length"):
        cmp.update(np.ones(3, bool), np.ones(4, bool))
    with pytest.raises(ValueError, match="0/1"):
        cmp.update(np.array([0, 1, 2]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="update_errors"):
        ShadowComparison("v1", "v2", task="regression").update(np.ones(3, bool), np.ones(3, bool))
    with pytest.raises(ValueError, match="update\\(\\)"):
        cmp.update_errors(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        ShadowComparison("v1", "v2", task="regression").update_errors(np.array([1.0, np.nan]), np.ones(2))
    with pytest.raises(ValueError, match="unknown task"):
        ShadowComparison("v1", "v2", task="ranking")  # type: ignore[arg-type]  # the wrong task on purpose


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_snapshot_restore_mid_stream_gives_identical_reports(task):
    rng = np.random.default_rng(5)
    if task == "classification":
        served, shadow = _pairs(rng, 2000, 0.8, fixes=0.2, breaks=0.05)
    else:
        served = np.abs(rng.normal(size=2000))
        shadow = np.abs(served + rng.normal(0, 0.5, 2000))
    a = ShadowComparison("v1", "v2", task=task)
    b = ShadowComparison("v1", "v2", task=task)
    _feed(a, served[:900], shadow[:900])
    _feed(b, served[:900], shadow[:900])
    b = ShadowComparison.restore(b.snapshot())
    assert b.report() == a.report()
    _feed(a, served[900:], shadow[900:])
    _feed(b, served[900:], shadow[900:])
    assert b.report() == a.report() and a.snapshot() == b.snapshot()
    assert b.clone().report()["n"] == 0 and b.clone().params() == a.params()


# ------------------------------------------------------------------ shadow: regression
def test_paired_t_matches_scipy_over_batches():
    rng = np.random.default_rng(6)
    served = np.abs(rng.normal(size=3000)) + 5.0        # an offset: running moments must not lose precision
    shadow = np.abs(served + rng.normal(-0.05, 0.4, 3000))
    r = _feed(ShadowComparison("v1", "v2", task="regression"), served, shadow, batch=211).report()
    ref = stats.ttest_rel(shadow, served)
    assert r["test"] == "paired_t" and r["metric"] == "mae"
    assert r["t"] == pytest.approx(ref.statistic, rel=1e-9) and r["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert r["served_metric"] == pytest.approx(served.mean()) and r["shadow_metric"] == pytest.approx(shadow.mean())
    assert r["mean_diff"] == pytest.approx((shadow - served).mean())
    assert r["sd_diff"] == pytest.approx((shadow - served).std(ddof=1))


def test_regression_better_shadow_is_found_and_equal_ones_mostly_not():
    hits = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        noise = rng.normal(size=1000)
        served_err, shadow_err = np.abs(noise + 0.3), np.abs(noise + 0.1 + rng.normal(0, 0.1, 1000))
        r = _feed(ShadowComparison("v2", "v3", task="regression"), served_err, shadow_err).report()
        assert not r["worse"] and r["difference"] < 0
        hits += r["better"]
    assert hits >= 16                                   # measured 19 of 20
    flagged, runs = 0, 200
    for seed in range(runs):
        rng = np.random.default_rng(2000 + seed)
        noise = rng.normal(size=1000)
        r = ShadowComparison("v2", "v3", task="regression").update_errors(
            np.abs(noise + rng.normal(0, 0.3, 1000)), np.abs(noise + rng.normal(0, 0.3, 1000))).report()
        flagged += r["better"] or r["worse"]
    assert flagged / runs <= 0.05 + 0.03


def test_regression_degenerate_differences():
    cmp = ShadowComparison("v1", "v2", task="regression", min_n=2)
    r = cmp.update_errors(np.ones(5), np.ones(5)).report()
    assert r["p_value"] == 1.0 and not r["better"] and not r["worse"]
    r = ShadowComparison("v1", "v2", task="regression", min_n=2).update_errors(np.ones(5), np.zeros(5)).report()
    assert r["p_value"] == 0.0 and r["better"]
    one = ShadowComparison("v1", "v2", task="regression").update_errors(np.ones(1), np.zeros(1)).report()
    assert one["p_value"] is None and one["shadow_metric"] == 0.0


# ------------------------------------------------------------------ canary: compare_windows
def _fisher_less_by_hand(k1: int, n1: int, k2: int, n2: int) -> float:
    """P(X <= k1), X hypergeometric: n1 draws from n1 + n2 requests of which k1 + k2 were right."""
    total, right = n1 + n2, k1 + k2
    lo = max(0, n1 - (total - right))
    return sum(comb(right, x) * comb(total - right, n1 - x) for x in range(lo, k1 + 1)) / comb(total, n1)


def test_fisher_p_value_by_hand():
    r = compare_windows((7, 12), (18, 20), version="v2", champion="v1")
    assert r["test"] == "fisher_exact"
    assert r["p_value"] == pytest.approx(_fisher_less_by_hand(7, 12, 18, 20), rel=1e-9)
    assert (r["version_n"], r["champion_n"]) == (12, 20)
    assert r["version_metric"] == pytest.approx(7 / 12) and r["difference"] == pytest.approx(7 / 12 - 18 / 20)
    # arrays of correctness and counts are the same input
    arrays = compare_windows(np.arange(12) < 7, np.arange(20) < 18, version="v2", champion="v1")
    assert arrays == r


def test_broken_canary_is_worse():
    rng = np.random.default_rng(8)
    r = compare_windows(rng.random(300) < 0.6, rng.random(5700) < 0.95, version="v2", champion="champion v1")
    assert r["worse"] and r["p_value"] < 1e-20
    assert r["summary"].startswith("v2 accuracy 0.6") and "vs champion v1 0.9" in r["summary"]
    assert "(n=300 vs 5,700, Fisher p=" in r["summary"] and r["summary"].endswith("v2 significantly worse at alpha 0.05")
    # a better canary is not "worse"
    assert not compare_windows((290, 300), (5415, 5700))["worse"]


def test_equal_canaries_are_mostly_not_worse():
    runs = 200
    worse = sum(compare_windows(rng.random(300) < 0.95, rng.random(5700) < 0.95)["worse"]
                for rng in (np.random.default_rng(3000 + s) for s in range(runs)))
    assert worse / runs <= 0.05 + 0.03


def test_mann_whitney_canary():
    # known value: every canary error above every champion error, exact one-sided p = 1 / C(6, 3)
    r = compare_windows(np.array([4.0, 5.0, 6.0]), np.array([1.0, 2.0, 3.0]), task="regression", alpha=0.1)
    assert r["test"] == "mannwhitneyu" and r["p_value"] == pytest.approx(1 / 20) and r["worse"]
    assert r["version_metric"] == 5.0 and r["champion_metric"] == 2.0 and r["difference"] == 3.0
    rng = np.random.default_rng(9)
    bad = compare_windows(np.abs(rng.normal(0, 1.5, 300)), np.abs(rng.normal(0, 1.0, 5700)),
                          task="regression", version="v2", champion="v1")
    assert bad["worse"] and bad["metric"] == "mae" and "Mann-Whitney p=" in bad["summary"]
    flagged = sum(compare_windows(np.abs(g.normal(size=300)), np.abs(g.normal(size=3000)), task="regression")["worse"]
                  for g in (np.random.default_rng(4000 + s) for s in range(200)))
    assert flagged / 200 <= 0.05 + 0.03


def test_empty_window_side_gives_no_verdict():
    r = compare_windows((0, 0), (90, 100), version="v2", champion="v1")
    assert r["p_value"] is None and r["version_metric"] is None and not r["worse"]
    assert "no labelled requests of v2" in r["summary"]
    with pytest.raises(ValueError, match="correct <= n"):
        compare_windows((5, 3), (1, 2))
