"""EDDM, the Early Drift Detection Method of Baena-García et al. (2006), on a 0/1 error stream.

>>> import numpy as np
>>> from detectors.concept.eddm import EDDM
>>> rng = np.random.default_rng(0)
>>> errors = np.r_[rng.random(5000) < 0.1, rng.random(5000) < 0.3].astype(float)
>>> EDDM(beta=0.8, alpha=0.85).update_many(errors).tolist()
[2757, 5293]
"""
from __future__ import annotations

import numpy as np

from detectors.concept._common import BatchDetector, carry_cumsum, check_binary, first_true

__all__ = ["EDDM"]


class EDDM(BatchDetector):
    """Early Drift Detection Method: alarm when errors come markedly closer together.

    EDDM tracks the distance (in events) between consecutive errors, its running mean
    :math:`p'` and standard deviation :math:`s'`, and the maximum :math:`m'` of
    :math:`p' + 2 s'`. Once ``warm_start`` events and ``warm_start`` errors have been seen it
    fires when :math:`(p' + 2 s') / m' < \\beta` (warning below :math:`\\alpha`). Distances
    only shrink when errors become more frequent, so the test is increase-only by nature,
    and it is scale-free (a ratio of distances). Same algorithm as River's
    ``drift.binary.EDDM``; the variance is computed from exact integer sums of distances
    instead of Welford's update, which can only matter when a ratio lands on ``beta`` to the
    last bit.

    Defaults are driftloop's, calibrated with :mod:`detectors.concept.calibration` to at most
    0.1 false alarms per 40,000 events on stationary 0/1 streams with error rates 2%-50%
    (fresh detector every 40k events); measured: 0.06, 0.04, 0 ... per 40k. River's defaults
    (30, 0.95, 0.9) raise 13-38 false alarms per 40k, and even the calibrated EDDM stays
    nearly deaf to moderate changes (bench/quality.py): it is not in the default set. River's are in parentheses.

    Parameters
    ----------
    warm_start
        Minimum number of events, and of errors, before a decision (River: 30).
    alpha
        Warning level of the ratio (sets :attr:`warning_detected`; River: 0.95).
    beta
        Drift level of the ratio; smaller is more conservative (River: 0.9).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(42)
    >>> eddm = EDDM(alpha=0.8, beta=0.75)
    >>> errors = np.r_[rng.random(1000) < 0.5, rng.random(1000) < 0.7].astype(float)
    >>> eddm.update_many(errors).tolist()
    []
    >>> eddm = EDDM(alpha=0.8, beta=0.75)
    >>> errors = np.r_[rng.random(3000) < 0.05, rng.random(1000) < 0.3].astype(float)
    >>> eddm.update_many(errors).tolist()
    [3462]

    References
    ----------
    .. [1] M. Baena-García, J. del Campo-Ávila, R. Fidalgo, A. Bifet, R. Gavaldà and
       R. Morales-Bueno, "Early drift detection method", 4th International Workshop on
       Knowledge Discovery from Data Streams, 2006.
    """

    _params = ("warm_start", "alpha", "beta")

    def __init__(self, warm_start: int = 300, alpha: float = 0.55, beta: float = 0.5) -> None:
        if alpha < beta:
            raise ValueError("alpha must be greater or equal to beta")
        self.warm_start = int(warm_start)
        self.alpha = float(alpha)
        self.beta = float(beta)
        super().__init__()

    @property
    def warning_detected(self) -> bool:
        """Whether the last tested error left the detector in the warning zone."""
        return self._warning

    def _validate(self, xs: np.ndarray) -> None:
        check_binary(xs, "EDDM")

    def _reset(self) -> None:
        self._n = 0
        self._last = 0
        self._k = 0
        self._s1 = 0.0
        self._s2 = 0.0
        self._max = -1.0
        self._warning = False

    def _scan(self, xs: np.ndarray) -> int:
        e = np.flatnonzero(xs)
        n0 = self._n
        self._n = n0 + len(xs)
        ne = len(e)
        if not ne:
            return -1
        pos = e + (n0 + 1)
        d = np.empty(ne)
        d[0] = pos[0] - self._last
        d[1:] = np.diff(pos)
        k = np.arange(self._k + 1, self._k + ne + 1, dtype=np.float64)
        s1 = carry_cumsum(self._s1, d)
        s2 = carry_cumsum(self._s2, d * d)
        mean = s1 / k
        var = np.maximum(s2 - s1 * mean, 0.0) / np.maximum(k - 1.0, 1.0)
        p2s = mean + 2.0 * np.sqrt(var)
        eligible = pos > self.warm_start
        run_max = np.maximum.accumulate(np.maximum(np.where(eligible, p2s, -np.inf), self._max))
        prev_max = np.empty(ne)
        prev_max[0] = self._max
        prev_max[1:] = run_max[:-1]
        tested = eligible & (p2s <= prev_max) & (k > self.warm_start)
        level = p2s / prev_max
        i = first_true(tested & (level < self.beta))
        if i >= 0:
            return int(e[i])
        self._last = int(pos[-1])
        self._k += ne
        self._s1 = float(s1[-1])
        self._s2 = float(s2[-1])
        self._max = float(run_max[-1])
        t = np.flatnonzero(tested)
        if len(t):
            self._warning = bool(level[t[-1]] < self.alpha)
        return -1
