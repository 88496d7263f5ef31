"""ADWIN, adaptive windowing (Bifet & Gavaldà, 2007), vectorised over batches.

>>> import numpy as np
>>> from detectors.concept.adwin import ADWIN
>>> rng = np.random.default_rng(0)
>>> errors = np.r_[rng.random(5000) < 0.1, rng.random(5000) < 0.3].astype(float)
>>> ADWIN().update_many(errors).tolist()
[5119]
"""
from __future__ import annotations

import math

import numpy as np

from detectors.concept._common import BatchDetector, carry_cumsum, first_true

__all__ = ["ADWIN", "ADWIN_DELTA"]

#: Default confidence of driftloop's ADWIN (increase-only). River's default is 0.002;
#: calibrated with :func:`detectors.concept.calibration.calibrate_adwin` to at most 0.1 false
#: alarms per 40,000 events on stationary Bernoulli error streams (rates 0.02-0.5): measured
#: 0.02, 0.00, 0.02, 0.00, 0.04, 0.02 per 40k at 2, 5, 10, 20, 30, 50% (0.05 gives up to 0.24).
ADWIN_DELTA = 0.02

_MODES = ("up", "down", "both")


class ADWIN(BatchDetector):
    """ADWIN2: keep the longest window whose two halves have the same mean, at any cut.

    The window since the last reset is summarised by ADWIN2's exponential histogram (at most
    ``max_buckets`` buckets of each size 1, 2, 4, ...); every ``clock`` values each bucket
    boundary is a candidate cut :math:`W = W_0 W_1`, and ADWIN fires when
    :math:`|\\hat\\mu_{W_0} - \\hat\\mu_{W_1}| > \\varepsilon_{cut}` with River's/MOA's
    Bernstein-type bound

    .. math:: \\varepsilon_{cut} = \\sqrt{2 m \\hat\\sigma^2_W \\delta'} + \\tfrac{2}{3} m \\delta',
       \\quad \\delta' = \\ln(2 \\ln |W| / \\delta),\\quad
       m = \\frac{1}{n_0 - \\ell + 1} + \\frac{1}{n_1 - \\ell + 1}

    (:math:`\\ell` = ``min_window_length``). ``mode="up"`` (the default) fires only when the
    newer part has the *higher* mean: an error rate going down pages nobody.

    How it is vectorised: between two resets no bucket is ever dropped, so the layout of the
    histogram (how many buckets of each size) is a pure function of the number of values seen,
    and every bucket is a contiguous run of the stream. A batch therefore computes prefix sums
    once, derives the bucket boundaries of every clock tick in the batch arithmetically, and
    evaluates all the cuts of all the ticks in one numpy expression; only the boundaries of
    the current histogram (O(max_buckets · log n) numbers) are kept between batches.

    The bound assumes values in a known range of width 1 (0/1 errors): ``bounds=(lo, hi)``
    maps other ranges onto it, which keeps the test scale-free (multiplying data and bounds by
    a constant changes nothing); ADWIN's own variance estimate takes care of the rest.

    Parameters
    ----------
    delta
        Confidence :math:`\\delta` of the cut test (smaller is more conservative).
    clock
        Check for cuts every ``clock`` values.
    max_buckets
        Buckets of each size kept before two are merged (ADWIN2's ``M``).
    min_window_length
        Minimum size of both sub-windows of a cut.
    grace_period
        No check before the window holds more than this many values.
    mode
        ``"up"`` (default), ``"down"`` or ``"both"`` (River and MOA: both).
    bounds
        ``(lo, hi)`` range of the input, mapped onto [0, 1] before the test.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(7)
    >>> adwin = ADWIN()
    >>> before = (rng.random(10_000) < 0.2).astype(float)
    >>> adwin.update_many(before).tolist()
    []
    >>> adwin.update_many((rng.random(2_000) < 0.4).astype(float)).tolist()
    [143]
    >>> adwin.update_many(np.zeros(2_000)).tolist()   # the model got better: no alarm
    []

    Differences from River (``drift.ADWIN``, Rust): with ``mode="both"`` and
    ``bounds=(0, 1)`` the detections are River 0.26's. Both reset the whole window after a
    detection (River's Python wrapper does; MOA instead drops the old sub-window and keeps
    going, which is what made older River versions report the same change several times,
    river#574). Both check every bucket of the histogram, the newest excluded, as MOA does
    since the fix of river#1614. The window variance is computed from prefix sums instead of
    Welford's update, so a cut whose statistic equals the bound to the last bit could differ.

    References
    ----------
    .. [1] A. Bifet and R. Gavaldà, "Learning from time-changing data with adaptive
       windowing", SIAM International Conference on Data Mining, 443-448, 2007.
    """

    _params = ("delta", "clock", "max_buckets", "min_window_length", "grace_period", "mode", "bounds")

    def __init__(
        self,
        delta: float = ADWIN_DELTA,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
        mode: str = "up",
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}")
        if not 0.0 < delta < 1.0:
            raise ValueError("delta must be in (0, 1)")
        if clock < 1 or max_buckets < 2:
            raise ValueError("clock must be >= 1 and max_buckets >= 2")
        bounds = (float(bounds[0]), float(bounds[1]))
        if not bounds[1] > bounds[0]:
            raise ValueError("bounds must be (lo, hi) with hi > lo")
        self.delta = float(delta)
        self.clock = int(clock)
        self.max_buckets = int(max_buckets)
        self.min_window_length = int(min_window_length)
        self.grace_period = int(grace_period)
        self.mode = mode
        self.bounds = bounds
        super().__init__()

    def _reset(self) -> None:
        self._n = 0
        self._sum = 0.0
        self._sumsq = 0.0
        self._bpos = np.zeros(0, dtype=np.int64)  # bucket ends (values since reset), ascending
        self._bsum = np.zeros(0)  # prefix sums at those ends

    @property
    def width(self) -> int:
        """Values in the window (since the last reset)."""
        return self._n

    @property
    def estimation(self) -> float:
        """Mean of the window, in the input's units."""
        if not self._n:
            return 0.0
        lo, hi = self.bounds
        return lo + (hi - lo) * self._sum / self._n

    def _ends(self, ticks: np.ndarray) -> np.ndarray:
        """Bucket end positions at each count in ``ticks`` (shape (T, K); 0 = no bucket).

        With ``M = max_buckets``, the number of values that reached level ``i`` of the
        histogram after ``n`` insertions is ``a_i = max(0, ((n + M - 1) >> i) - (M - 1))``
        (level ``i`` merges two buckets each time it would hold ``M + 1``; substituting
        ``c = a + M - 1`` turns that recursion into ``c_{i+1} = c_i >> 1``). Level ``i`` then
        holds ``a_i - 2 a_{i+1}`` buckets of ``2**i`` values, after the ``2**(i+1) a_{i+1}``
        older values of the higher levels.
        """
        mm = self.max_buckets - 1
        top = int(ticks[-1]) + mm
        lv = np.arange(top.bit_length() + 1, dtype=np.int64)
        a = np.maximum((ticks[:, None] + mm) >> lv[None, :], mm) - mm  # (T, L + 1)
        cnt = a[:, :-1] - 2 * a[:, 1:]
        size = np.left_shift(1, lv[:-1])
        start = 2 * size[None, :] * a[:, 1:]
        k = np.arange(1, self.max_buckets + 1, dtype=np.int64)
        ends = start[:, :, None] + k[None, None, :] * size[None, :, None]
        return np.where(k[None, None, :] <= cnt[:, :, None], ends, 0).reshape(len(ticks), -1)

    def _prefix(self, pos: np.ndarray, n0: int, p: np.ndarray) -> np.ndarray:
        """Prefix sums of the window at bucket ends ``pos`` (0 entries give garbage, masked by
        the callers): new ends index the batch's prefix sums, old ones the kept boundaries."""
        nb = len(self._bpos)
        if not nb:
            return p[np.maximum(pos - (n0 + 1), 0)]
        j = np.where(pos > n0, pos + (nb - n0 - 1), np.searchsorted(self._bpos, pos))
        return np.concatenate((self._bsum, p))[j]

    def _scan(self, xs: np.ndarray) -> int:
        lo, hi = self.bounds
        y = xs if (lo == 0.0 and hi == 1.0) else (xs - lo) / (hi - lo)
        m = len(y)
        n0 = self._n
        n1 = n0 + m
        p = carry_cumsum(self._sum, y)
        clock = self.clock
        first = max((n0 // clock + 1) * clock, (self.grace_period // clock + 1) * clock)
        # One histogram layout computation for every tick of the batch and for its end.
        ticks = np.arange(first, n1 + 1, clock, dtype=np.int64)
        nt = len(ticks)
        ends = self._ends(np.append(ticks, n1) if nt == 0 or ticks[-1] != n1 else ticks)
        u0 = self._prefix(ends, n0, p)
        if nt:
            q = carry_cumsum(self._sumsq, y * y)
            hit = self._check(ticks, ends[:nt], u0[:nt], n0, p, q)
            if hit >= 0:
                return hit - n0 - 1
            self._sumsq = float(q[-1])
        else:
            self._sumsq = float(carry_cumsum(self._sumsq, y * y)[-1])
        last, vals = ends[-1], u0[-1]
        keep = last > 0
        order = np.argsort(last[keep])
        self._bpos = last[keep][order]
        self._bsum = vals[keep][order]
        self._n = n1
        self._sum = float(p[-1])
        return -1

    def _check(self, ticks: np.ndarray, ends: np.ndarray, u0: np.ndarray, n0: int, p: np.ndarray,
               q: np.ndarray) -> int:
        """Position (count since reset) of the first tick with a significant cut, or -1."""
        at = ticks - (n0 + 1)
        w = ticks.astype(np.float64)
        tot = p[at]
        var = np.maximum(q[at] - tot * tot / w, 0.0) / w
        dp = np.asarray([math.log(2.0 * math.log(t) / self.delta) for t in w.tolist()])
        mwl = float(self.min_window_length)
        n0c = ends.astype(np.float64)
        n1c = w[:, None] - n0c
        ok = (n0c >= mwl) & (n1c >= mwl)
        with np.errstate(divide="ignore", invalid="ignore"):
            dm = (tot[:, None] - u0) / n1c - u0 / n0c  # newer minus older
            m_recip = 1.0 / (n0c - (mwl - 1.0)) + 1.0 / (n1c - (mwl - 1.0))
            eps = np.sqrt((2.0 * var * dp)[:, None] * m_recip) + (2.0 / 3.0 * dp)[:, None] * m_recip
        if self.mode == "down":
            dm = -dm
        elif self.mode == "both":
            dm = np.abs(dm)
        i = first_true((ok & (dm > eps)).any(axis=1))
        return int(ticks[i]) if i >= 0 else -1
