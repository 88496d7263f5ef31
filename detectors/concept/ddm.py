"""DDM, the Drift Detection Method of Gama et al. (2004), on a 0/1 error stream.

>>> import numpy as np
>>> from detectors.concept.ddm import DDM
>>> rng = np.random.default_rng(0)
>>> errors = np.r_[rng.random(5000) < 0.1, rng.random(5000) < 0.3].astype(float)
>>> DDM().update_many(errors).tolist()
[5385]
"""
from __future__ import annotations

import numpy as np

from detectors.concept._common import BatchDetector, carry_cumsum, check_binary, first_true

__all__ = ["DDM"]


class DDM(BatchDetector):
    """Drift Detection Method: alarm when the error rate rises ``drift_threshold`` standard
    errors above its lowest point.

    With :math:`p_t` the error rate since the last reset and
    :math:`s_t = \\sqrt{p_t (1 - p_t) / t}`, DDM remembers :math:`(p_{min}, s_{min})` where
    :math:`p_t + s_t` was lowest and fires when :math:`p_t + s_t > p_{min} + d\\, s_{min}`
    (warning at :math:`w`). It only ever looks at increases of the error rate, and it is
    scale-free by construction (a rate and its binomial standard error). Same algorithm and
    same detections as River's ``drift.binary.DDM``. Its known weakness, inherited from the
    paper: :math:`p_t` is the mean since the last reset, so after a long stable stretch it
    reacts late (River's DDM took ~47,000 events after one million); driftloop's default set
    therefore does not rely on it.

    Defaults are driftloop's, calibrated with :mod:`detectors.concept.calibration` to at most
    0.1 false alarms per 40,000 events on stationary 0/1 streams with error rates 2%-50%
    (fresh detector every 40k events); measured: 0.10, 0.08, 0.04, 0.00, 0.02, 0.00 per 40k at
    2, 5, 10, 20, 30, 50% (River's defaults 30 / 2 / 3 give up to 3.6). River's are in parentheses.

    Parameters
    ----------
    warm_start
        No decision before this many values since the last reset (River: 30).
    warning_threshold
        :math:`w`, in standard errors (sets :attr:`warning_detected`; River: 2).
    drift_threshold
        :math:`d`, in standard errors (River: 3).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(42)
    >>> ddm = DDM()
    >>> errors = np.r_[rng.random(1000) < 0.5, rng.random(1000) < 0.7].astype(float)
    >>> ddm.update_many(errors).tolist()
    [1254]
    >>> [ddm.update(x).drift_detected for x in (1, 1, 0)]
    [False, False, False]

    References
    ----------
    .. [1] J. Gama, P. Medas, G. Castillo and P. Rodrigues, "Learning with drift detection",
       SBIA 2004, LNCS 3171, 286-295.
    """

    _params = ("warm_start", "warning_threshold", "drift_threshold")

    def __init__(
        self, warm_start: int = 1000, warning_threshold: float = 2.5, drift_threshold: float = 3.5
    ) -> None:
        self.warm_start = int(warm_start)
        self.warning_threshold = float(warning_threshold)
        self.drift_threshold = float(drift_threshold)
        super().__init__()

    @property
    def warning_detected(self) -> bool:
        """Whether the last value left the detector in the warning zone."""
        return self._warning

    def _validate(self, xs: np.ndarray) -> None:
        check_binary(xs, "DDM")

    def _reset(self) -> None:
        self._n = 0
        self._k = 0.0
        self._ps_min = float("inf")
        self._p_min = 0.0
        self._s_min = 0.0
        self._warning = False

    def _scan(self, xs: np.ndarray) -> int:
        m = len(xs)
        n = np.arange(self._n + 1, self._n + m + 1, dtype=np.float64)
        k = carry_cumsum(self._k, xs)
        p = k / n
        s = np.sqrt(p * (1.0 - p) / n)
        ps = p + s
        eligible = n > self.warm_start
        vals = np.where(eligible, ps, np.inf)
        run_min = np.minimum.accumulate(np.minimum(vals, self._ps_min))
        prev_min = np.empty(m)
        prev_min[0] = self._ps_min
        prev_min[1:] = run_min[:-1]
        is_new = eligible & (ps <= prev_min)
        idx = np.maximum.accumulate(np.where(is_new, np.arange(m), -1))
        have = idx >= 0
        j = np.where(have, idx, 0)
        p_min = np.where(have, p[j], self._p_min)
        s_min = np.where(have, s[j], self._s_min)
        i = first_true(eligible & (ps > p_min + self.drift_threshold * s_min))
        if i >= 0:
            return i
        self._n += m
        self._k = float(k[-1])
        self._ps_min = float(run_min[-1])
        self._p_min = float(p_min[-1])
        self._s_min = float(s_min[-1])
        if eligible[-1]:
            self._warning = bool(ps[-1] > p_min[-1] + self.warning_threshold * s_min[-1])
        return -1
