"""Every vectorised statistic equals scipy's (or the textbook formula's) on the same data."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon as scipy_js

from detectors import two_sample as uv

TOL = 1e-9


def _same(a: float, b: float) -> bool:
    """Equal within TOL, NaN matching NaN (scipy returns NaN p-values for degenerate sizes)."""
    return (np.isnan(a) and np.isnan(b)) or abs(a - b) <= TOL


def _pairs(seed: int, count: int = 60):
    """Samples of every kind that trips ECDF code: continuous, heavy ties, rounded, tiny."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        m, n = int(rng.integers(2, 400)), int(rng.integers(2, 400))
        kind = i % 4
        if kind == 0:
            a, b = rng.normal(size=m), rng.normal(rng.normal() * 0.3, size=n)
        elif kind == 1:
            a, b = rng.integers(0, 5, m).astype(float), rng.integers(0, 6, n).astype(float)
        elif kind == 2:
            a, b = np.round(rng.normal(size=m), 1), np.round(rng.normal(0.2, size=n), 1)
        else:
            a, b = rng.exponential(size=m), rng.exponential(1.3, size=n)
        yield a, b


@pytest.mark.parametrize("method", ["asymp", "exact", "auto"])
def test_ks_equals_scipy(method):
    for a, b in _pairs(1):
        d, p = uv.ks_2samp(a, b, method=method)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ref = stats.ks_2samp(a, b, method=method)
        assert abs(d[0] - ref.statistic) <= TOL
        assert abs(p[0] - ref.pvalue) <= TOL


def test_ks_statistic_is_bit_identical_and_vectorised_over_features():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(20, 3000))
    cur = rng.normal(size=(20, 2500)) + np.linspace(0, 0.3, 20)[:, None]
    d, p = uv.ks_2samp(ref, cur)
    for i in range(20):
        r = stats.ks_2samp(ref[i], cur[i], method="asymp")
        assert d[i] == r.statistic  # same integers divided the same way
        assert abs(p[i] - r.pvalue) <= TOL


def test_ks_exact_large_equal_sizes_matches_scipy():
    """Evidently's case: 10,000 vs 10,000 makes scipy's ``auto`` exact."""
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(3, 10000))
    cur = rng.normal(size=(3, 10000)) + np.array([[0.0], [0.02], [0.05]])
    d, p = uv.ks_2samp(ref, cur, method="auto")
    for i in range(3):
        r = stats.ks_2samp(ref[i], cur[i])
        assert d[i] == r.statistic
        assert abs(p[i] - r.pvalue) <= TOL


def test_ks_ignores_missing_values_per_feature():
    rng = np.random.default_rng(4)
    ref = rng.normal(size=(4, 500))
    cur = rng.normal(0.1, size=(4, 300))
    ref[rng.random(ref.shape) < 0.1] = np.nan
    cur[rng.random(cur.shape) < 0.3] = np.nan
    cur[3] = np.round(cur[3], 1)
    ref[3] = np.round(ref[3], 1)
    d, p = uv.ks_2samp(ref, cur)
    w = uv.wasserstein(ref, cur)
    for i in range(4):
        a, b = ref[i][~np.isnan(ref[i])], cur[i][~np.isnan(cur[i])]
        with np.errstate(divide="ignore", invalid="ignore"):
            r = stats.ks_2samp(a, b, method="asymp")
        assert d[i] == r.statistic and _same(p[i], r.pvalue)
        assert abs(w[i] - stats.wasserstein_distance(a, b)) <= TOL


def test_ks_empty_feature_gives_nan():
    d, p = uv.ks_2samp(np.array([[1.0, 2.0], [1.0, 2.0]]), np.array([[np.nan, np.nan], [1.5, 3.0]]))
    assert np.isnan(d[0]) and np.isnan(p[0]) and np.isfinite(d[1])


@settings(max_examples=60, deadline=None)
@given(
    a=st.lists(st.integers(-5, 5), min_size=1, max_size=40),
    b=st.lists(st.integers(-5, 5), min_size=1, max_size=40),
)
def test_ks_and_wasserstein_on_arbitrary_ties(a, b):
    a, b = np.array(a, float) / 2, np.array(b, float) / 2
    d, p = uv.ks_2samp(a, b, method="auto")
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        r = stats.ks_2samp(a, b)
    assert d[0] == r.statistic and _same(p[0], r.pvalue)
    assert abs(uv.wasserstein(a, b)[0] - stats.wasserstein_distance(a, b)) <= TOL


def test_cvm_equals_scipy():
    for a, b in _pairs(5, 40):
        t, p = uv.cvm_2samp(a, b)
        r = stats.cramervonmises_2samp(a, b)
        assert abs(t[0] - r.statistic) <= TOL * max(1.0, abs(r.statistic))
        assert abs(p[0] - r.pvalue) <= TOL


def test_wasserstein_equals_scipy_and_normalisation():
    for a, b in _pairs(6, 40):
        w = uv.wasserstein(a, b)[0]
        assert abs(w - stats.wasserstein_distance(a, b)) <= TOL * max(1.0, w)
    rng = np.random.default_rng(7)
    ref = rng.normal(10, 3, size=(1, 4000))
    cur = rng.normal(10.75, 3, size=(1, 2000))
    res = uv.numeric_tests(uv.numeric_profile(ref), cur, tests=("wasserstein",))
    expected = stats.wasserstein_distance(ref[0], cur[0]) / np.std(ref[0])
    assert abs(res["wasserstein"][0] - expected) <= TOL


def test_psi_textbook_formula_and_bins():
    rng = np.random.default_rng(8)
    ref = rng.normal(size=(3, 5000))
    cur = rng.normal(0.3, 1.2, size=(3, 2000))
    cur[1, :100] = np.nan
    prof = uv.numeric_profile(ref, bins=10)
    res = uv.numeric_tests(prof, cur, tests=("psi", "jensenshannon"))
    for i in range(3):
        edges = np.quantile(ref[i], np.linspace(0, 1, 11)[1:-1])
        def hist(x):
            ok = x[~np.isnan(x)]
            counts = np.bincount(np.searchsorted(edges, ok, side="right"), minlength=10)  # noqa: B023 - called within this iteration
            return np.append(counts, np.isnan(x).sum()).astype(float)
        e, a = hist(ref[i]), hist(cur[i])
        e, a = e / e.sum(), a / a.sum()
        e[e == 0], a[a == 0] = 1e-4, 1e-4
        assert abs(res["psi"][i] - np.sum((a - e) * np.log(a / e))) <= TOL
        assert abs(res["jensenshannon"][i] - scipy_js(hist(ref[i]), hist(cur[i]), base=2)) <= TOL


def test_jensenshannon_equals_scipy():
    rng = np.random.default_rng(9)
    p = rng.integers(0, 50, size=(30, 7)).astype(float)
    q = rng.integers(0, 50, size=(30, 7)).astype(float)
    p[:, 0] = 0  # empty bins
    ours = uv.jensenshannon(p, q)
    for i in range(30):
        assert abs(ours[i] - scipy_js(p[i], q[i], base=2)) <= TOL


def test_chi2_equals_scipy_contingency():
    rng = np.random.default_rng(10)
    for _ in range(50):
        k = int(rng.integers(2, 9))
        a = rng.integers(0, 40, k)
        b = rng.integers(0, 40, k)
        a[0] += 1
        b[0] += 1
        a[-1] = b[-1] = 0  # a category empty on both sides is left out
        stat, p, dof = uv.chi2_homogeneity(a, b)
        table = np.array([a, b])
        table = table[:, table.sum(axis=0) > 0]
        r = stats.chi2_contingency(table, correction=False)
        assert abs(stat[0] - r.statistic) <= TOL * max(1.0, r.statistic)
        assert abs(p[0] - r.pvalue) <= TOL
        assert dof[0] == r.dof


def test_categorical_unseen_missing_and_other_buckets():
    ref = [np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 20, dtype=object)]
    prof = uv.categorical_profile(ref, max_categories=2)
    assert prof["categories"] == [["a", "b"]]
    cur = [np.array(["a"] * 40 + ["c"] * 10 + ["zz"] * 30 + [None] * 20, dtype=object)]
    res = uv.categorical_tests(prof, cur)
    names = uv.category_names(prof, 0)
    counts = dict(zip(names, res["counts"][0].tolist()))
    assert counts == {"a": 40, "b": 0, uv.OTHER: 10, uv.UNSEEN: 30, uv.MISSING: 20}
    assert res["unseen"][0] == 0.3 and res["missing"][0] == 0.2
    refc = dict(zip(names, prof["counts"][0].tolist()))
    assert refc == {"a": 50, "b": 30, uv.OTHER: 20, uv.UNSEEN: 0, uv.MISSING: 0}
    table = np.array([[50, 30, 20, 0, 0], [40, 0, 10, 30, 20]])
    r = stats.chi2_contingency(table, correction=False)
    assert abs(res["chi2"][0] - r.statistic) <= TOL * r.statistic
    assert res["psi"][0] > 1.0  # unseen categories weigh in (eps for the empty reference bucket)


def test_ks_pvalue_rejects_unknown_method():
    with pytest.raises(ValueError):
        uv.ks_pvalue(np.array([0.1]), 10, 10, "bogus")


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.lists(st.one_of(st.integers(-4, 4).map(float), st.just(float("nan"))), min_size=1, max_size=30),
            st.lists(st.one_of(st.integers(-4, 4).map(float), st.just(float("nan"))), min_size=1, max_size=30),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_ks_rows_with_different_missing_counts_and_ties(data):
    """Several features at once, each with its own missing values and ties."""
    width_r = max(len(a) for a, _ in data)
    width_c = max(len(b) for _, b in data)
    ref = np.full((len(data), width_r), np.nan)
    cur = np.full((len(data), width_c), np.nan)
    for i, (a, b) in enumerate(data):
        ref[i, : len(a)] = a
        cur[i, : len(b)] = b
    d, p = uv.ks_2samp(ref, cur)
    w = uv.wasserstein(ref, cur)
    for i in range(len(data)):
        a, b = ref[i][~np.isnan(ref[i])], cur[i][~np.isnan(cur[i])]
        if len(a) == 0 or len(b) == 0:
            assert np.isnan(d[i]) and np.isnan(w[i])
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            r = stats.ks_2samp(a, b, method="asymp")
        assert d[i] == r.statistic and _same(p[i], r.pvalue)
        assert abs(w[i] - stats.wasserstein_distance(a, b)) <= TOL
