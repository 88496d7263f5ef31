"""KSWIN, Kolmogorov–Smirnov windowing (Raab, Heusinger & Schleif, 2020), vectorised.

>>> import numpy as np
>>> from detectors.concept.kswin import KSWIN
>>> rng = np.random.default_rng(0)
>>> errors = np.r_[rng.random(5000) < 0.1, rng.random(5000) < 0.4].astype(float)
>>> KSWIN(seed=1).update_many(errors).tolist()
[]
"""
from __future__ import annotations

import random
import warnings
from functools import lru_cache

import numpy as np
from scipy import stats

from detectors.concept._common import BatchDetector, first_true

__all__ = ["KSWIN", "KSWIN_ALPHA"]

#: Default significance of driftloop's (one-sided) KSWIN. Calibrated with
#: :func:`detectors.concept.calibration.calibrate_kswin` on 100,000 events per null (KSWIN
#: is slow): one alarm in 700,000 events over Bernoulli streams (rates 0.02-0.5) and Gaussian
#: noise (0.06 per 40k overall, 0.4 on the 30% stream alone, where every alpha down to 1e-5
#: gave that same single alarm); Gaussian noise gives 10 per 40k at 1e-3, 0 from 1e-4 on.
KSWIN_ALPHA = 1e-5

_MODES = ("up", "both")


@lru_cache(maxsize=64)
def _critical_count(r: int, alpha: float, mode: str, min_stat: float) -> int:
    """Smallest ``k`` such that two samples of size ``r`` at KS distance ``k / r`` give
    River's alarm (``p <= alpha and D > min_stat``), with scipy's own p-value."""
    alt = "two-sided" if mode == "both" else "greater"
    a = np.arange(r, dtype=np.float64)
    for k in range(r + 1):
        with warnings.catch_warnings():  # scipy falls back to the asymptotic p for big k
            warnings.simplefilter("ignore", RuntimeWarning)
            res = stats.ks_2samp(a, a + k, alternative=alt, method="auto")
        if res.pvalue <= alpha and res.statistic > min_stat:
            return k
    return r + 1  # never


class KSWIN(BatchDetector):
    """KSWIN: a Kolmogorov–Smirnov test between the newest values and a sample of older ones.

    A sliding window of ``window_size`` values is kept; each step (once it is full) draws
    ``stat_size`` of its older ``window_size - stat_size`` values at random and compares them
    with the newest ``stat_size`` values by a two-sample KS test; an alarm is raised when the
    p-value is at most ``alpha`` and the KS distance exceeds ``min_stat`` (River's 0.1). The
    test is rank-based, so the detector is scale-free without any standardisation. With
    ``mode="up"`` (the default) the one-sided test (``alternative="greater"``: newest values
    stochastically larger) is used, so a falling error rate never fires.

    Vectorised: the KS statistic of every step of a batch is computed at once from a sort of
    the two samples (handling ties as scipy does), and compared with the smallest critical
    count :math:`k` (distance :math:`k / r`) at which scipy's exact p-value crosses ``alpha``,
    computed once. The random draws use Python's :class:`random.Random` seeded with ``seed``
    and re-seeded at each reset, exactly as River does, so with ``mode="both"`` the
    detections are River's; its state is kept as plain data (``getstate()``).

    Parameters
    ----------
    alpha
        Significance of each test (it is repeated every step: see :data:`KSWIN_ALPHA` for the
        false-alarm calibration of the default).
    window_size
        Size of the sliding window.
    stat_size
        Size of the newest part, and of the sample of older values.
    seed
        Seed of the sampling.
    mode
        ``"up"`` (default, one-sided) or ``"both"`` (River's two-sided test).
    min_stat
        The KS distance must also exceed this.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> ks = KSWIN(seed=42)
    >>> ks.update_many(rng.normal(0.0, 1.0, 3000)).tolist()
    []
    >>> ks.update_many(rng.normal(2.0, 1.0, 500)).tolist()
    [24]
    >>> ks.update_many(rng.normal(-1.0, 1.0, 500)).tolist()   # values fell: no alarm
    []

    References
    ----------
    .. [1] C. Raab, M. Heusinger and F.-M. Schleif, "Reactive soft prototype computing for
       concept drift streams", Neurocomputing 416, 340-351, 2020.
    """

    _params = ("alpha", "window_size", "stat_size", "seed", "mode", "min_stat")

    def __init__(
        self,
        alpha: float = KSWIN_ALPHA,
        window_size: int = 300,
        stat_size: int = 100,
        seed: int = 0,
        mode: str = "up",
        min_stat: float = 0.1,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}")
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        if not 0 < stat_size < window_size or window_size - stat_size < stat_size:
            raise ValueError("need 0 < stat_size <= window_size - stat_size")
        self.alpha = float(alpha)
        self.window_size = int(window_size)
        self.stat_size = int(stat_size)
        self.seed = int(seed)
        self.mode = mode
        self.min_stat = float(min_stat)
        self._k_crit = _critical_count(self.stat_size, self.alpha, self.mode, self.min_stat)
        super().__init__()

    def _reset(self) -> None:
        self._window = np.empty(0)
        self._rng_state = random.Random(self.seed).getstate()

    def _scan(self, xs: np.ndarray) -> int:
        ws, r = self.window_size, self.stat_size
        w0 = len(self._window)
        buf = np.concatenate((self._window, xs)) if w0 else xs
        m = len(xs)
        j0 = max(0, ws - w0 - 1)
        hit = -1
        if j0 < m:
            rng = random.Random()
            rng.setstate(self._rng_state)
            pool = range(ws - r)
            idx = np.asarray([rng.sample(pool, r) for _ in range(m - j0)], dtype=np.int64)
            self._rng_state = rng.getstate()
            start = np.arange(j0, m, dtype=np.int64) + (w0 + 1 - ws)
            old = buf[start[:, None] + idx]
            new = buf[start[:, None] + (ws - r + np.arange(r))]
            hit = first_true(self._ks_counts(old, new) >= self._k_crit)
            if hit >= 0:
                return j0 + hit
        self._window = buf[-ws:].copy()
        return -1

    def _ks_counts(self, old: np.ndarray, new: np.ndarray) -> np.ndarray:
        """``r`` times the KS statistic (one- or two-sided) of each row pair, exactly."""
        r = old.shape[1]
        both = np.concatenate((old, new), axis=1)
        order = np.argsort(both, axis=1, kind="stable")
        vals = np.take_along_axis(both, order, axis=1)
        diff = np.cumsum(np.where(order < r, 1, -1), axis=1)  # #old <= v  -  #new <= v
        last = np.ones(vals.shape, dtype=bool)
        last[:, :-1] = vals[:, 1:] != vals[:, :-1]  # ECDFs are compared after each tie group
        up = np.where(last, diff, 0).max(axis=1)
        if self.mode == "up":
            return up
        return np.maximum(up, np.where(last, -diff, 0).max(axis=1))
