"""Vectorised two-sample statistics, many features at once.

Every function takes one row per feature: a reference matrix ``(F, m)`` and a current matrix
``(F, n)``; numeric rows are float64 with ``NaN`` for missing values (ignored by the tests on
values, counted in a *missing* bin by the histogram statistics). The reference side is prepared
once (:func:`numeric_profile`, :func:`categorical_profile`: sorted rows, quantile bin edges,
category tables); a window then costs one sort of the current rows and one ``searchsorted`` per
feature, whatever the number of events.

Each statistic equals its scipy (or textbook) counterpart on the same data
(``tests/detectors/test_two_sample.py`` checks it to 1e-9):

========================  ======================================================================
:func:`ks_2samp`          :func:`scipy.stats.ks_2samp` (statistic and p-value, ``method`` alike)
:func:`cvm_2samp`         :func:`scipy.stats.cramervonmises_2samp` (asymptotic p-value)
:func:`wasserstein`       :func:`scipy.stats.wasserstein_distance` (divide by the reference's
                          standard deviation for the normalised form)
:func:`psi`               ``sum((a - e) * ln(a / e))`` over bins, empty bins set to ``eps``
:func:`jensenshannon`     :func:`scipy.spatial.distance.jensenshannon` (base 2)
:func:`chi2_homogeneity`  :func:`scipy.stats.chi2_contingency` (``correction=False``) on the
                          2 x K table reference/current x category
========================  ======================================================================

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> ref = rng.normal(size=(3, 2000))
>>> cur = rng.normal(size=(3, 1000)) + np.array([[0.0], [0.0], [0.5]])
>>> stat, p = ks_2samp(ref, cur)
>>> (p < 1e-6).tolist()
[False, False, True]
>>> prof = numeric_profile(ref, bins=10)
>>> res = numeric_tests(prof, cur, tests=("ks", "wasserstein", "psi"))
>>> np.round(res["wasserstein"], 2).tolist(), bool(np.allclose(res["ks"], stat))
([0.05, 0.05, 0.53], True)
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
from scipy import special, stats

__all__ = [
    "is_missing",
    "NUMERIC_TESTS",
    "CATEGORICAL_TESTS",
    "sort_rows",
    "ks_statistic_sorted",
    "ks_pvalue",
    "ks_2samp",
    "cvm_2samp",
    "wasserstein_sorted",
    "wasserstein",
    "psi",
    "jensenshannon",
    "chi2_homogeneity",
    "quantile_edges",
    "bin_counts_sorted",
    "numeric_profile",
    "numeric_tests",
    "categorical_profile",
    "encode_categories",
    "category_counts",
    "categorical_tests",
]

NUMERIC_TESTS = ("ks", "cvm", "wasserstein", "psi", "jensenshannon")
CATEGORICAL_TESTS = ("chi2", "psi", "jensenshannon")
PSI_EPS = 1e-4
_KS_MAX_AUTO_N = 10000  # scipy's threshold for method="auto"


def _rows(x: Any) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    return a[None, :] if a.ndim == 1 else a


# ---------------------------------------------------------------------------- sorting
def sort_rows(x: Any) -> tuple[np.ndarray, np.ndarray]:
    """Each row sorted ascending (``NaN`` last) and the number of non-missing values per row.

    >>> s, k = sort_rows([[3.0, float("nan"), 1.0]])
    >>> s.tolist(), k.tolist()
    ([[1.0, 3.0, nan]], [2])
    """
    a = np.ascontiguousarray(np.sort(_rows(x), axis=1))
    valid = a.shape[1] - np.isnan(a).sum(axis=1) if a.size else np.zeros(a.shape[0], dtype=np.int64)
    return a, np.asarray(valid, dtype=np.int64)


# ---------------------------------------------------------------------------- KS
def ks_statistic_sorted(
    ref_sorted: np.ndarray, ref_valid: np.ndarray, cur_sorted: np.ndarray, cur_valid: np.ndarray
) -> np.ndarray:
    """Two-sided KS statistic per row from sorted rows (``NaN`` last), as scipy computes it.

    ``F_ref - F_cur`` falls only at the current sample's points and rises only between them,
    so its extremes are at the current points (minimum) and just before the next distinct
    current point (maximum): one ``searchsorted`` of the current values into the reference
    gives every candidate. Candidates are compared exactly, in integers (``(F_ref - F_cur) m
    n``); the winner's float is then formed as scipy forms it (``a / m - b / n``), so the
    statistic is bit-identical to :func:`scipy.stats.ks_2samp`'s.
    """
    f, n = cur_sorted.shape
    out = np.full(f, np.nan)
    if n == 0 or ref_sorted.shape[1] == 0:
        return out
    r1, l1 = _reference_ranks(ref_sorted, ref_valid, cur_sorted)
    ext = _ks_extremes(r1, l1, cur_sorted, ref_valid, cur_valid)
    for i in range(f):
        mi, ni = int(ref_valid[i]), int(cur_valid[i])
        if mi == 0 or ni == 0:
            continue
        out[i] = _ks_row_statistic(i, mi, ni, r1, l1, ext)
    return out


def _reference_ranks(
    ref_sorted: np.ndarray, ref_valid: np.ndarray, cur_sorted: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each current value, the number of reference values ``<=`` it (``r1``) and ``<``
    it (``l1``; the same array as ``r1`` when no value ties), both ``(F, n)`` int64.

    >>> r1, l1 = _reference_ranks(np.array([[1.0, 2.0, 2.0]]), np.array([3]), np.array([[2.0, 5.0]]))
    >>> r1.tolist(), l1.tolist()
    ([[3, 3]], [[1, 3]])
    """
    f, n = cur_sorted.shape
    r1 = np.empty((f, n), dtype=np.int64)  # reference values <= each current value
    for i in range(f):  # one C-level binary search per feature, over all its values
        r1[i] = np.searchsorted(ref_sorted[i, : ref_valid[i]], cur_sorted[i], side="right")
    # l1: reference values < each current value (differs from r1 only where they tie)
    width = ref_sorted.shape[1]
    idx = r1 - 1
    np.maximum(idx, 0, out=idx)
    idx += (np.arange(f, dtype=np.int64) * width)[:, None]
    tied = ref_sorted.ravel().take(idx) == cur_sorted
    tied &= r1 > 0
    l1 = r1
    if tied.any():
        l1 = r1.copy()
        for row in np.flatnonzero(tied.any(axis=1)):
            cols = np.flatnonzero(tied[row])
            l1[row, cols] = np.searchsorted(ref_sorted[row, : ref_valid[row]], cur_sorted[row, cols], side="left")
    return r1, l1


class _KsExtremes(NamedTuple):
    """Where ``(F_ref - F_cur) m n`` may be extreme, per feature (rows), in exact integers.

    ``at_cur`` holds it at the current points, ``lo`` its minimum over the ends of runs of
    equal current values (``tie_end``); ``before`` holds it just before each next distinct
    current value (``-big`` where there is none) and ``hi`` its maximum.
    """

    tie_end: np.ndarray
    at_cur: np.ndarray
    lo: np.ndarray
    before: np.ndarray
    hi: np.ndarray
    big: int


def _ks_extremes(
    r1: np.ndarray, l1: np.ndarray, cur_sorted: np.ndarray, ref_valid: np.ndarray, cur_valid: np.ndarray
) -> _KsExtremes:
    """The candidates of the KS statistic's extremes, all features at once (see
    :func:`ks_statistic_sorted`)."""
    f, n = cur_sorted.shape
    uniform = bool((ref_valid == ref_valid[0]).all() and (cur_valid == cur_valid[0]).all())
    # scalars when every feature has the same counts (no missing values): cheaper broadcasting
    m = int(ref_valid[0]) if uniform else ref_valid[:, None]
    nn = int(cur_valid[0]) if uniform else cur_valid[:, None]
    pos1 = np.arange(1, n + 1, dtype=np.int64)[None, :]
    pm = pos1 * m
    # last of each run of equal current values (the ECDF is evaluated after the run)
    tie_end = np.empty((f, n), dtype=bool)
    np.not_equal(cur_sorted[:, :-1], cur_sorted[:, 1:], out=tie_end[:, :-1])
    tie_end[:, -1] = True
    if (cur_valid < n).any():
        tie_end &= pos1 <= nn
    all_ends = bool(tie_end.all())
    big = np.iinfo(np.int64).max
    at_cur = r1 * nn
    at_cur -= pm  # (F_ref - F_cur) * m * n at the current points
    lo = (at_cur if all_ends else np.where(tie_end, at_cur, big)).min(axis=1)
    # just before the next distinct current value (l1 of the next one)
    before = l1[:, 1:] * nn
    before -= pm[:, :-1]
    if not all_ends:  # ties or missing values: only run ends that have a next value count
        has_next = tie_end[:, :-1] & (pos1[:, :-1] < nn)
        np.copyto(before, -big, where=~has_next)
    hi = before.max(axis=1) if n > 1 else np.full(f, -big)
    return _KsExtremes(tie_end, at_cur, lo, before, hi, big)


def _ks_row_statistic(i: int, mi: int, ni: int, r1: np.ndarray, l1: np.ndarray, ext: _KsExtremes) -> float:
    """Feature ``i``'s statistic, its float formed as scipy forms it at the winning point."""
    # minimum: scipy's float at the current point(s) attaining it
    cols = np.flatnonzero(ext.tie_end[i] & (ext.at_cur[i] == ext.lo[i]))
    min_s = float(np.clip(-np.min(r1[i, cols] / mi - (cols + 1) / ni), 0, 1))
    # maximum: before the first current value, before each next one, or 0 at the end
    cands = [0.0, l1[i, 0] / mi]
    if ext.hi[i] > -ext.big:
        cols = np.flatnonzero(ext.before[i] == ext.hi[i])
        cands.append(float(np.max(l1[i, cols + 1] / mi - (cols + 1) / ni)))
    max_s = max(cands)
    return min_s if min_s > max_s else max_s


def _ks_exact_equal_n(n: int, ds: Sequence[float]) -> tuple[list[float], list[float]]:
    """scipy's exact two-sided p-values for equal sample sizes ``n``, rounding for rounding.

    For each statistic, scipy forms ``h = round(d n)`` and terms
    ``A_k = prod_j (n - k h - j) / (n + k h + j + 1)`` (k = 0..n // h), each by sequential
    multiply-then-divide, and combines them as ``P = A0 (1 - A1 (1 - A2 (...)))``. The same
    operations run here, vectorised across the terms of all the statistics at once (a row per
    statistic, finished rows masked) when there are many terms, in plain floats when there are
    few; so every float is scipy's — including the rare ``1 + 1 ulp`` that makes scipy fall
    back to the asymptotic p-value.
    """
    hs = [int(np.round(d * n)) for d in ds]
    d_out = [h * 1.0 / n for h in hs]
    many = [i for i, h in enumerate(hs) if h > 0 and n // h + 1 >= 16]
    terms = _ks_terms_block(n, hs, many) if many else {}
    probs = []
    for i, h in enumerate(hs):
        if h == 0:
            probs.append(1.0)
            continue
        t = terms[i] if i in terms else _ks_terms_scalar(n, h)
        probs.append(2 * _ks_alternating(t, n // h))
    return d_out, probs


def _ks_terms_block(n: int, hs: list[int], many: list[int]) -> dict[int, list[float]]:
    """The terms ``A_k`` of the statistics ``many`` (indices into ``hs``), vectorised: a row per
    statistic, each column a ``k``, multiplied then divided step ``j`` by step ``j``.

    Rows are sorted by ``h``: at step ``j`` only the rows with ``h > j`` work, and they need
    only the first ``n // h + 1`` terms of the smallest such ``h``, so the active block shrinks.
    """
    many = sorted(many, key=lambda i: hs[i])
    h_sorted = [hs[i] for i in many]
    width = n // h_sorted[0] + 1
    kh = np.arange(width, dtype=np.float64)[None, :] * np.array(h_sorted, dtype=np.float64)[:, None]
    num = n - kh  # n - k h - j, exact in float64
    den = n + kh + 1.0  # n + k h + j + 1
    p1 = np.ones((len(many), width))
    j = 0
    for row, h_row in enumerate(h_sorted):
        if j >= h_row:
            continue
        cols = n // h_row + 1
        blk, nb, db = p1[row:, :cols], num[row:, :cols], den[row:, :cols]
        while j < h_row:
            blk *= nb
            blk /= db
            nb -= 1.0
            db += 1.0
            j += 1
            if j % 64 == 0 and not blk.any():  # all underflowed to 0: they stay 0
                j = h_sorted[-1]
                break
    return {i: p1[row, : n // hs[i] + 1].tolist() for row, i in enumerate(many)}


def _ks_terms_scalar(n: int, h: int) -> list[float]:
    """The terms ``A_k`` (k = 0..n // h) of one statistic in plain floats (few terms).

    >>> _ks_terms_scalar(4, 2)
    [0.4000000000000001, 0.03571428571428571, 0.0]
    """
    t = []
    for k in range(n // h + 1):
        v = 1.0
        for j in range(h):
            v = (n - k * h - j) * v / (n + k * h + j + 1)
            if v == 0.0:  # underflowed: stays 0
                break
        t.append(v)
    return t


def _ks_alternating(terms: list[float], top: int) -> float:
    """``A0 (1 - A1 (1 - A2 (... A_top)))``, innermost first, as scipy sums it."""
    prob = 0.0
    for k in range(top, -1, -1):  # P = A0 (1 - A1 (1 - A2 (...)))
        prob = terms[k] * (1.0 - prob)
    return prob


def _ks_exact_general(n1: int, n2: int, d: float) -> tuple[bool, float, float]:
    from scipy.stats import _stats_py  # private, but the only exact implementation there is

    g = math.gcd(n1, n2)
    ok, d2, prob = _stats_py._attempt_exact_2kssamp(n1, n2, g, d, "two-sided")
    return bool(ok), float(d2), float(prob)


@lru_cache(maxsize=4096)
def _kstwo_sf(d: float, n: float) -> float:
    """``scipy.stats.kstwo.sf`` (evaluated element by element in Python by scipy anyway),
    cached: discrete features give the same tiny statistics window after window, where scipy
    takes its slowest path (a matrix power)."""
    with np.errstate(divide="ignore", invalid="ignore"):  # n = 0 (one value per side): NaN, as scipy
        return float(stats.kstwo.sf(d, n))


def ks_pvalue(
    d: np.ndarray, n1: np.ndarray, n2: np.ndarray, method: str = "asymp"
) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided KS p-values as :func:`scipy.stats.ks_2samp` computes them.

    Returns the (possibly rounded, for ``exact``) statistic and the p-value. ``asymp`` is
    vectorised (``kstwo.sf``); ``exact`` runs scipy's recursion per feature (the series for
    equal sizes is vectorised here); ``auto`` is exact when both sizes are at most 10,000.
    """
    d = np.atleast_1d(np.asarray(d, dtype=np.float64)).copy()
    n1 = np.broadcast_to(np.asarray(n1, dtype=np.int64), d.shape)
    n2 = np.broadcast_to(np.asarray(n2, dtype=np.int64), d.shape)
    if method not in ("asymp", "exact", "auto"):
        raise ValueError(f"KS method must be 'asymp', 'exact' or 'auto', not {method!r}")
    p = np.full(d.shape, np.nan)
    ok = np.isfinite(d) & (n1 > 0) & (n2 > 0)
    exact = ok & ((np.maximum(n1, n2) <= _KS_MAX_AUTO_N) if method == "auto" else np.full(d.shape, method == "exact"))
    asymp = ok & ~exact
    equal = exact & (n1 == n2)
    for size in np.unique(n1[equal]).tolist():  # equal sizes: scipy's series, all features at once
        idx = np.flatnonzero(equal & (n1 == size))
        d_new, probs = _ks_exact_equal_n(int(size), d[idx].tolist())
        d[idx] = d_new
        p[idx] = probs
        bad = idx[~((p[idx] >= 0.0) & (p[idx] <= 1.0))]
        asymp[bad] = True
    for i in np.flatnonzero(exact & ~equal):
        a, b, di = int(n1[i]), int(n2[i]), float(d[i])
        g = math.gcd(a, b)
        if (a // g) >= np.iinfo(np.int32).max / (b // g):
            asymp[i] = True
            continue
        else:
            success, d2, prob = _ks_exact_general(a, b, di)
            d[i] = d2
            if success:
                p[i] = prob
            else:
                asymp[i] = True
    if asymp.any():
        mm = np.maximum(n1[asymp], n2[asymp]).astype(np.float64)
        nn = np.minimum(n1[asymp], n2[asymp]).astype(np.float64)
        en = np.round(mm * nn / (mm + nn))
        p[asymp] = [_kstwo_sf(float(di), float(ni)) for di, ni in zip(d[asymp], en)]
    p = np.where(ok, np.clip(p, 0, 1), np.nan)
    return d, p


def ks_2samp(ref: Any, cur: Any, method: str = "asymp") -> tuple[np.ndarray, np.ndarray]:
    """KS statistic and p-value for each row pair (rows = features; ``NaN`` ignored).

    >>> import numpy as np
    >>> from scipy import stats
    >>> rng = np.random.default_rng(1)
    >>> a, b = rng.normal(size=500), rng.normal(0.2, size=400)
    >>> d, p = ks_2samp(a, b)
    >>> r = stats.ks_2samp(a, b, method="asymp")
    >>> bool(d[0] == r.statistic), bool(abs(p[0] - r.pvalue) < 1e-12)
    (True, True)
    """
    rs, rv = sort_rows(ref)
    cs, cv = sort_rows(cur)
    d = ks_statistic_sorted(rs, rv, cs, cv)
    return ks_pvalue(d, rv, cv, method)


# ---------------------------------------------------------------------------- CvM
def _cdf_cvm_inf(x: np.ndarray) -> np.ndarray:
    """CDF of the limiting Cramér–von Mises distribution (series as in scipy)."""
    x = np.asarray(x, dtype=np.float64)
    tot = np.zeros_like(x)
    cond = np.ones(x.shape, dtype=bool)
    k = 0
    while cond.any():
        xc = x[cond]
        u = math.exp(special.gammaln(k + 0.5) - special.gammaln(k + 1)) / (np.pi**1.5 * np.sqrt(xc))
        y = 4 * k + 1
        q = y**2 / (16 * xc)
        z = u * math.sqrt(y) * np.exp(-q) * special.kv(0.25, q)
        tot[cond] = tot[cond] + z
        cond[cond] = np.abs(z) >= 1e-7
        k += 1
    return tot


def cvm_2samp(ref: Any, cur: Any) -> tuple[np.ndarray, np.ndarray]:
    """Two-sample Cramér–von Mises statistic and asymptotic p-value per row.

    Equal to :func:`scipy.stats.cramervonmises_2samp` with ``method="asymptotic"`` (the
    method scipy's ``"auto"`` picks once a sample has more than 20 values). Mid-ranks for ties.

    >>> import numpy as np
    >>> from scipy import stats
    >>> rng = np.random.default_rng(2)
    >>> a, b = rng.normal(size=300), rng.normal(0.3, size=200)
    >>> t, p = cvm_2samp(a, b)
    >>> r = stats.cramervonmises_2samp(a, b, method="asymptotic")
    >>> bool(abs(t[0] - r.statistic) < 1e-9), bool(abs(p[0] - r.pvalue) < 1e-9)
    (True, True)
    """
    rs, rv = sort_rows(ref)
    cs, cv = sort_rows(cur)
    f, m = rs.shape
    n = cs.shape[1]
    allv = np.concatenate([rs, cs], axis=1)
    order = np.argsort(allv, axis=1, kind="stable")
    vals = np.take_along_axis(allv, order, axis=1)
    is_ref = order < m
    total = rv + cv
    pos = np.arange(m + n)[None, :]
    valid = pos < total[:, None]
    is_ref &= valid
    is_cur = ~is_ref & valid
    start = np.ones_like(vals, dtype=bool)
    start[:, 1:] = vals[:, 1:] != vals[:, :-1]
    first = np.maximum.accumulate(np.where(start, pos, 0), axis=1)
    end = np.ones_like(vals, dtype=bool)
    end[:, :-1] = vals[:, :-1] != vals[:, 1:]
    rpos = np.where(end, pos, m + n)
    last = np.minimum.accumulate(rpos[:, ::-1], axis=1)[:, ::-1]
    rank = (first + last) / 2.0 + 1.0
    c1 = np.cumsum(is_ref, axis=1)
    c2 = np.cumsum(is_cur, axis=1)
    nx = rv.astype(np.float64)
    ny = cv.astype(np.float64)
    ux = np.sum(np.where(is_ref, (rank - c1) ** 2, 0.0), axis=1)
    uy = np.sum(np.where(is_cur, (rank - c2) ** 2, 0.0), axis=1)
    u = nx * ux + ny * uy
    k = nx * ny
    big_n = nx + ny
    with np.errstate(divide="ignore", invalid="ignore"):
        t = u / (k * big_n) - (4 * k - 1) / (6 * big_n)
        et = (1 + 1 / big_n) / 6
        vt = (big_n + 1) * (4 * k * big_n - 3 * (nx**2 + ny**2) - 2 * k)
        vt = vt / (45 * big_n**2 * 4 * k)
        tn = 1 / 6 + (t - et) / np.sqrt(45 * vt)
    p = np.ones(f)
    big = np.isfinite(tn) & (tn >= 0.003)
    if big.any():
        p[big] = np.clip(1.0 - _cdf_cvm_inf(tn[big]), 0.0, None)
    bad = (rv < 2) | (cv < 2)
    t[bad] = np.nan
    p[bad] = np.nan
    small = ~bad & (np.maximum(rv, cv) <= 20)
    for i in np.flatnonzero(small):  # scipy's exact method for tiny samples
        r = stats.cramervonmises_2samp(rs[i, : rv[i]], cs[i, : cv[i]], method="exact")
        t[i], p[i] = r.statistic, r.pvalue
    return t, p


# ---------------------------------------------------------------------------- Wasserstein
@lru_cache(maxsize=64)
def _quantile_grid(m: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Breakpoints of the two empirical quantile functions, on the integer scale ``m * n``:
    reference index, current index and width of every piece of ``[0, 1)``."""
    b = np.concatenate([np.arange(m, dtype=np.int64) * n, np.arange(n, dtype=np.int64) * m])
    b.sort()
    keep = np.empty(len(b), dtype=bool)
    keep[0] = True
    np.not_equal(b[1:], b[:-1], out=keep[1:])
    b = b[keep]
    widths = np.diff(np.append(b, np.int64(m) * n)) / (float(m) * n)
    return b // n, b // m, widths


def wasserstein_sorted(
    ref_sorted: np.ndarray, ref_valid: np.ndarray, cur_sorted: np.ndarray, cur_valid: np.ndarray
) -> np.ndarray:
    """First Wasserstein distance per row from sorted rows: the area between the quantile
    functions, ``sum |F_ref^-1(u) - F_cur^-1(u)| du`` (equal to scipy's CDF form).
    """
    f = ref_sorted.shape[0]
    out = np.full(f, np.nan)
    rflat, cflat = ref_sorted.ravel(), cur_sorted.ravel()
    rw, cw = ref_sorted.shape[1], cur_sorted.shape[1]
    pairs = np.stack([ref_valid, cur_valid], axis=1)
    for m, n in {tuple(map(int, p)) for p in pairs}:
        if m == 0 or n == 0:
            continue
        rows = np.flatnonzero((ref_valid == m) & (cur_valid == n))
        ia, ib, w = _quantile_grid(m, n)
        a = rflat.take(rows[:, None] * rw + ia[None, :])
        a -= cflat.take(rows[:, None] * cw + ib[None, :])
        np.abs(a, out=a)
        out[rows] = a @ w
    return out


def wasserstein(ref: Any, cur: Any) -> np.ndarray:
    """First Wasserstein distance per row pair (``NaN`` ignored).

    >>> import numpy as np
    >>> from scipy import stats
    >>> rng = np.random.default_rng(3)
    >>> a, b = rng.normal(size=400), rng.normal(1, 2, size=300)
    >>> bool(abs(wasserstein(a, b)[0] - stats.wasserstein_distance(a, b)) < 1e-12)
    True
    """
    rs, rv = sort_rows(ref)
    cs, cv = sort_rows(cur)
    return wasserstein_sorted(rs, rv, cs, cv)


# ---------------------------------------------------------------------------- histograms
def psi(ref_counts: Any, cur_counts: Any, eps: float = PSI_EPS) -> np.ndarray:
    """Population stability index per row of bin counts.

    ``sum((a - e) * ln(a / e))`` with ``e``/``a`` the reference/current proportions; a bin
    empty on one side gets proportion ``eps`` (as Evidently does), so an unseen category or an
    emptied bin counts, and a bin empty on both sides adds nothing.

    >>> psi([[50, 50]], [[60, 40]]).round(4).tolist()
    [0.0405]
    """
    e = np.asarray(ref_counts, dtype=np.float64)
    a = np.asarray(cur_counts, dtype=np.float64)
    e = np.atleast_2d(e)
    a = np.atleast_2d(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = e / e.sum(axis=1, keepdims=True)
        a = a / a.sum(axis=1, keepdims=True)
    e = np.where(e == 0, eps, e)
    a = np.where(a == 0, eps, a)
    return np.sum((a - e) * np.log(a / e), axis=1)


def jensenshannon(p: Any, q: Any, base: float = 2.0) -> np.ndarray:
    """Jensen–Shannon distance per row, as :func:`scipy.spatial.distance.jensenshannon`.

    >>> jensenshannon([[1, 0]], [[0, 1]]).tolist()
    [1.0]
    """
    p = np.atleast_2d(np.asarray(p, dtype=np.float64))
    q = np.atleast_2d(np.asarray(q, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = p / np.sum(p, axis=1, keepdims=True)
        q = q / np.sum(q, axis=1, keepdims=True)
    m = (p + q) / 2.0
    left = special.rel_entr(p, m)
    right = special.rel_entr(q, m)
    js = np.sum(left, axis=1) + np.sum(right, axis=1)
    if base is not None:
        js /= np.log(base)
    return np.sqrt(js / 2.0)


def chi2_homogeneity(ref_counts: Any, cur_counts: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pearson chi-square test that two count vectors come from one distribution, per row.

    The 2 x K contingency table (reference/current x category) without the categories empty on
    both sides; equal to ``scipy.stats.chi2_contingency(table, correction=False)``. Returns
    statistic, p-value and degrees of freedom.

    >>> s, p, dof = chi2_homogeneity([[30, 70, 0]], [[45, 55, 0]])
    >>> round(float(s[0]), 4), round(float(p[0]), 4), int(dof[0])
    (4.8, 0.0285, 1)
    """
    a = np.atleast_2d(np.asarray(ref_counts, dtype=np.float64))
    b = np.atleast_2d(np.asarray(cur_counts, dtype=np.float64))
    col = a + b
    used = col > 0
    ra = a.sum(axis=1, keepdims=True)
    rb = b.sum(axis=1, keepdims=True)
    tot = ra + rb
    with np.errstate(divide="ignore", invalid="ignore"):
        ea = ra * col / tot
        eb = rb * col / tot
        terms = np.where(used, (a - ea) ** 2 / ea + (b - eb) ** 2 / eb, 0.0)
    stat = terms.sum(axis=1)
    dof = used.sum(axis=1) - 1
    p = np.where(dof > 0, stats.chi2.sf(stat, np.maximum(dof, 1)), 1.0)
    stat = np.where(dof > 0, stat, 0.0)
    bad = (ra[:, 0] == 0) | (rb[:, 0] == 0)
    stat[bad] = np.nan
    p[bad] = np.nan
    return stat, p, dof


def quantile_edges(ref_sorted: np.ndarray, ref_valid: np.ndarray, bins: int = 10) -> np.ndarray:
    """Inner bin edges at the reference's quantiles, ``(F, bins - 1)``; bin ``b`` is
    ``[edge[b-1], edge[b])`` (tied quantiles make empty bins, which add nothing)."""
    q = np.linspace(0, 1, bins + 1)[1:-1]
    out = np.full((ref_sorted.shape[0], bins - 1), np.nan)
    for i in range(ref_sorted.shape[0]):
        if ref_valid[i]:
            out[i] = np.quantile(ref_sorted[i, : ref_valid[i]], q)
    return out


def bin_counts_sorted(sorted_rows: np.ndarray, valid: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin from sorted rows, ``(F, bins + 1)``; the last column counts missing values.

    Equal to ``np.bincount(np.searchsorted(edge_row, x, side="right"))`` on the non-missing
    values, then the missing count.
    """
    f, nb = edges.shape[0], edges.shape[1] + 1
    out = np.zeros((f, nb + 1), dtype=np.int64)
    for i in range(f):
        k = int(valid[i])
        if k and not np.isnan(edges[i]).any():
            below = np.searchsorted(sorted_rows[i, :k], edges[i], side="left")
            out[i, :nb] = np.diff(np.concatenate([[0], below, [k]]))
        out[i, nb] = sorted_rows.shape[1] - k
    return out


# ---------------------------------------------------------------------------- numeric profile
STD_FLOOR = 1e-3   # the smallest reference spread a Wasserstein distance is divided by


def numeric_profile(ref: Any, bins: int = 10) -> dict[str, np.ndarray]:
    """Everything the numeric tests need from a reference ``(F, m)``, computed once.

    Keys: ``sorted`` rows (``NaN`` last), ``valid`` counts, ``std`` (population, floored at
    ``STD_FLOOR`` = 1e-3 like Evidently's normalised Wasserstein), ``mean``, ``median``, bin ``edges`` and
    reference ``counts`` per bin (last column: missing).
    """
    rs, rv = sort_rows(ref)
    edges = quantile_edges(rs, rv, bins)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(rs, axis=1) if rs.shape[1] else np.full(rs.shape[0], np.nan)
        std = np.nanstd(rs, axis=1) if rs.shape[1] else np.full(rs.shape[0], np.nan)
    median = np.array([np.median(rs[i, : rv[i]]) if rv[i] else np.nan for i in range(rs.shape[0])])
    return {
        "sorted": rs,
        "valid": rv,
        "mean": mean,
        "std": np.maximum(np.nan_to_num(std, nan=0.0), STD_FLOOR),
        "median": median,
        "edges": edges,
        "counts": bin_counts_sorted(rs, rv, edges),
    }


def numeric_tests(
    profile: dict[str, np.ndarray],
    cur: Any,
    tests: Sequence[str] = ("ks", "wasserstein", "psi", "jensenshannon"),
    ks_method: str = "asymp",
    presorted: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Run the requested tests of every row of ``cur`` (``(F, n)``) against the profile.

    Returns arrays of length F: ``ks`` / ``ks_p``, ``cvm`` / ``cvm_p``, ``wasserstein``
    (normalised by the reference's standard deviation) and ``wasserstein_raw``, ``psi``,
    ``jensenshannon``, plus ``n`` (non-missing current values), ``missing`` (current missing
    rate), ``mean`` and ``median`` of the current values and ``counts`` per bin.
    """
    unknown = set(tests) - set(NUMERIC_TESTS)
    if unknown:
        raise ValueError(f"unknown numeric tests {sorted(unknown)}; known: {NUMERIC_TESTS}")
    cs, cv = sort_rows(cur) if presorted is None else presorted
    rs, rv = profile["sorted"], profile["valid"]
    out: dict[str, np.ndarray] = {"n": cv, "missing": 1.0 - cv / max(cs.shape[1], 1)}
    if "ks" in tests:
        d = ks_statistic_sorted(rs, rv, cs, cv)
        out["ks"], out["ks_p"] = ks_pvalue(d, rv, cv, ks_method)
    if "cvm" in tests:
        out["cvm"], out["cvm_p"] = cvm_2samp(rs, cs)
    if "wasserstein" in tests:
        w = wasserstein_sorted(rs, rv, cs, cv)
        out["wasserstein_raw"] = w
        out["wasserstein"] = w / profile["std"]
    if "psi" in tests or "jensenshannon" in tests:
        counts = bin_counts_sorted(cs, cv, profile["edges"])
        out["counts"] = counts
        if "psi" in tests:
            out["psi"] = psi(profile["counts"], counts)
        if "jensenshannon" in tests:
            out["jensenshannon"] = jensenshannon(profile["counts"], counts)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out["mean"] = np.nanmean(cs, axis=1) if cs.shape[1] else np.full(cs.shape[0], np.nan)
    idx = np.maximum((cv - 1) // 2, 0)
    lo = np.take_along_axis(cs, idx[:, None], axis=1)[:, 0] if cs.shape[1] else np.full(cs.shape[0], np.nan)
    hi = np.take_along_axis(cs, np.minimum(cv // 2, max(cs.shape[1] - 1, 0))[:, None], axis=1)[:, 0] if cs.shape[1] else lo
    out["median"] = np.where(cv > 0, (lo + hi) / 2.0, np.nan)
    return out


# ---------------------------------------------------------------------------- categorical
OTHER, UNSEEN, MISSING = "(other)", "(unseen)", "(missing)"


def categorical_profile(columns: Sequence[np.ndarray], max_categories: int = 50) -> dict[str, Any]:
    """Category tables of reference columns (object arrays of ``str``, ``None`` = missing).

    Each feature keeps its ``max_categories`` most frequent reference categories; the rest of
    the reference's categories share an ``(other)`` bucket; values never seen in the reference
    go to ``(unseen)`` and missing values to ``(missing)``. ``counts`` is ``(F, K + 3)``,
    padded with zeros (a bucket empty on both sides adds nothing to any statistic).
    """
    cats: list[list[str]] = []
    full: list[list[str]] = []
    for given in columns:
        col = np.asarray(given, dtype=object)
        present = col[~is_missing(col)]
        if len(present):
            values, counts = np.unique(present.astype(str), return_counts=True)
            order = np.lexsort((values, -counts))
            ranked = [str(v) for v in values[order]]
        else:
            ranked = []
        cats.append(ranked[:max_categories])
        full.append(ranked)
    width = max([len(c) for c in cats], default=0) + 3
    prof: dict[str, Any] = {"categories": cats, "all_categories": full, "width": width}
    codes = [encode_categories(prof, i, col) for i, col in enumerate(columns)]
    prof["counts"] = category_counts(codes, [len(c) for c in cats], width)
    return prof


@lru_cache(maxsize=512)
def category_index(categories: tuple[str, ...]) -> Any:
    """A hash index of categories (a pandas Index), cached: the lookup structure, not state."""
    import pandas as pd

    return pd.Index(list(categories), dtype=object)


def is_missing(col: np.ndarray) -> np.ndarray:
    """Which values of a column are missing (``None`` or ``NaN``), vectorised (pandas' ``isna``).

    >>> is_missing(np.array(["a", None, "b"], dtype=object)).tolist(), is_missing(np.array([1.0, np.nan])).tolist()
    ([False, True, False], [False, True])
    """
    import pandas as pd

    return np.asarray(pd.isna(col), dtype=bool)


def encode_categories(profile: dict[str, Any], i: int, col: Any) -> np.ndarray:
    """Bucket codes of one column: ``0..K-1`` categories, ``K`` other, ``K+1`` unseen,
    ``K+2`` missing."""
    col = np.asarray(col, dtype=object)
    k = len(profile["categories"][i])
    full = profile["all_categories"][i]
    missing = is_missing(col)
    pos = category_index(tuple(full)).get_indexer(col) if len(full) else np.full(len(col), -1)
    codes = np.where(pos < 0, k + 1, np.where(pos >= k, k, pos))
    codes[missing] = k + 2
    return codes.astype(np.int64)


def category_counts(codes: Sequence[np.ndarray], ks: Sequence[int], width: int) -> np.ndarray:
    """Padded count matrix ``(F, width)`` from bucket codes (``other``/``unseen``/``missing``
    moved to the last three columns so that the padding sits between)."""
    out = np.zeros((len(codes), width), dtype=np.int64)
    for i, (c, k) in enumerate(zip(codes, ks)):
        cnt = np.bincount(c, minlength=k + 3)
        out[i, :k] = cnt[:k]
        out[i, width - 3 :] = cnt[k : k + 3]
    return out


def category_names(profile: dict[str, Any], i: int) -> list[str | None]:
    """Names of the columns of row ``i`` of a count matrix (``None`` for padding)."""
    k = len(profile["categories"][i])
    w = profile["width"]
    return list(profile["categories"][i]) + [None] * (w - 3 - k) + [OTHER, UNSEEN, MISSING]


def categorical_tests(
    profile: dict[str, Any], columns: Sequence[np.ndarray], tests: Sequence[str] = CATEGORICAL_TESTS
) -> dict[str, np.ndarray]:
    """Chi-square, PSI and Jensen–Shannon of current columns against the profile.

    Returns arrays of length F: ``chi2`` / ``chi2_p`` / ``chi2_dof``, ``psi``,
    ``jensenshannon``, ``n``, ``missing`` (current missing rate), ``unseen`` (current share of
    categories unknown to the reference) and the ``counts`` matrix.
    """
    unknown = set(tests) - set(CATEGORICAL_TESTS)
    if unknown:
        raise ValueError(f"unknown categorical tests {sorted(unknown)}; known: {CATEGORICAL_TESTS}")
    codes = [encode_categories(profile, i, c) for i, c in enumerate(columns)]
    w = profile["width"]
    counts = category_counts(codes, [len(c) for c in profile["categories"]], w)
    ref = profile["counts"]
    n = counts.sum(axis=1)
    out: dict[str, np.ndarray] = {"counts": counts, "n": n}
    with np.errstate(invalid="ignore", divide="ignore"):
        out["missing"] = counts[:, w - 1] / np.maximum(n, 1)
        out["unseen"] = counts[:, w - 2] / np.maximum(n, 1)
    if "chi2" in tests:
        out["chi2"], out["chi2_p"], out["chi2_dof"] = chi2_homogeneity(ref, counts)
    if "psi" in tests:
        out["psi"] = psi(ref, counts)
    if "jensenshannon" in tests:
        out["jensenshannon"] = jensenshannon(ref, counts)
    return out
