"""Page–Hinkley test on the (standardised) error stream.

>>> import numpy as np
>>> from detectors.concept.page_hinkley import PageHinkley
>>> rng = np.random.default_rng(0)
>>> errors = np.r_[rng.random(5000) < 0.1, rng.random(5000) < 0.3].astype(float)
>>> PageHinkley().update_many(errors).tolist()
[5106]
"""
from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from detectors.concept._common import BatchDetector, carry_cumsum, first_true, scale_estimate

__all__ = ["PageHinkley", "PH_THRESHOLD", "PH_DELTA"]

#: Default threshold and drift allowance, in units of the reference standard deviation.
#: Calibrated with :func:`detectors.concept.calibration.calibrate_page_hinkley` to at most
#: 0.1 false alarms per 40,000 events on stationary Bernoulli error streams with error rates
#: 0.02-0.5 and on Gaussian noise, with a fresh detector (warm-up 500) every 40k events:
#: measured 0.08, 0, 0, 0, 0, 0 and 0 per 40k (2% errors is the hardest: h = 33 gives 0.44
#: there and <= 0.1 from 5% up).
PH_DELTA = 0.25
PH_THRESHOLD = 45.0

_MODES = ("up", "down", "both")


class PageHinkley(BatchDetector):
    """Page–Hinkley change detector, scale-free and increase-only by default.

    The statistic is River's: with :math:`\\bar z_t` the running mean since the last reset,
    :math:`S_t = \\alpha S_{t-1} + (z_t - \\bar z_t) - \\delta` and an alarm when
    :math:`S_t - \\min_{s \\le t} S_s > h` (``mode="up"``; ``"down"`` mirrors it with
    :math:`+\\delta` and the running maximum). River applies it to the raw values, so its
    ``threshold`` is in the units of the data; here the values are first standardised,
    :math:`z = (x - \\mu) / \\sigma`, with a reference ``(mu, sigma)`` given at construction or
    estimated from the first ``warmup`` values after each reset (a 0/1 warm-up uses the
    Jeffreys-smoothed error rate, so a warm-up without errors still has a scale). ``delta`` and
    ``threshold`` are therefore in units of the reference standard deviation, and the default
    threshold is calibrated to a false-alarm budget (see :data:`PH_THRESHOLD`). Set
    ``standardize=False`` to get River's detector exactly.

    Parameters
    ----------
    threshold
        Alarm threshold :math:`h` (in reference standard deviations when standardising).
    delta
        Drift allowance :math:`\\delta`: shifts smaller than about ``2 * delta`` are tolerated.
    alpha
        Forgetting factor of the cumulative sums (River's default is ``1 - 1e-4``; 1 is the
        textbook test).
    mode
        ``"up"`` (error increases only, the default: a model getting better pages nobody),
        ``"down"`` or ``"both"``.
    min_n
        No alarm before this many values since the last reset (River's ``min_instances``).
    warmup
        Values used to learn the reference after each reset when ``reference`` is None; no
        alarm is possible during the warm-up.
    reference
        ``(mean, std)`` of the error stream under the reference model, e.g. from validation.
    standardize
        Standardise the input (default). ``False`` runs the test on raw values, like River.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> ph = PageHinkley()
    >>> stable = (rng.random(20_000) < 0.2).astype(float)
    >>> worse = (rng.random(2_000) < 0.35).astype(float)
    >>> ph.update_many(stable).tolist()
    []
    >>> ph.update_many(worse).tolist()
    [546]
    >>> ph.update_many((rng.random(5_000) < 0.05).astype(float)).tolist()  # a better model: no alarm
    []

    References
    ----------
    .. [1] E. S. Page, "Continuous inspection schemes", Biometrika 41(1/2), 100-115, 1954.
    .. [2] D. V. Hinkley, "Inference about the change-point from cumulative sum tests",
       Biometrika 58(3), 509-523, 1971.
    .. [3] R. Sebastião and J. M. Fernandes, "Supporting the Page-Hinkley test with empirical
       mode decomposition for change detection", ISMIS 2017, 492-498.
    """

    _params = ("threshold", "delta", "alpha", "mode", "min_n", "warmup", "reference", "standardize")

    def __init__(
        self,
        threshold: float = PH_THRESHOLD,
        delta: float = PH_DELTA,
        alpha: float = 1.0,
        mode: str = "up",
        min_n: int = 30,
        warmup: int = 500,
        reference: tuple[float, float] | None = None,
        standardize: bool = True,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        if reference is not None:
            reference = (float(reference[0]), float(reference[1]))
            if not reference[1] > 0.0:
                raise ValueError("reference std must be positive")
        self.threshold = float(threshold)
        self.delta = float(delta)
        self.alpha = float(alpha)
        self.mode = mode
        self.min_n = int(min_n)
        self.warmup = int(warmup) if standardize and reference is None else 0
        self.reference = reference
        self.standardize = bool(standardize)
        super().__init__()

    def _reset(self) -> None:
        if not self.standardize:
            self._mu, self._sd = 0.0, 1.0
        elif self.reference is not None:
            self._mu, self._sd = self.reference
        else:
            self._mu, self._sd = None, None  # type: ignore[assignment]  # set from the warm-up before any use
        self._buf = np.empty(0)
        self._n = 0
        self._sum = 0.0
        self._inc = 0.0
        self._dec = 0.0
        self._min_inc = float("inf")
        self._max_dec = -1.0  # River's initial value

    def _scan(self, xs: np.ndarray) -> int:
        offset = 0
        if self._mu is None:
            need = self.warmup - len(self._buf)
            self._buf = np.concatenate((self._buf, xs[:need]))
            if len(self._buf) < self.warmup:
                return -1
            self._mu, self._sd = scale_estimate(self._buf)
            offset = len(self._buf) - min(need, len(xs))  # buffered values from earlier batches
            xs = np.concatenate((self._buf, xs[need:]))
            self._buf = np.empty(0)
        z = (xs - self._mu) / self._sd if self.standardize else xs
        n = self._n + np.arange(1, len(z) + 1, dtype=np.float64)
        csum = carry_cumsum(self._sum, z)
        dev = z - csum / n
        eligible = (n >= self.min_n) & (n > self.warmup)
        hit = np.zeros(len(z), dtype=bool)
        if self.mode != "down":
            inc = self._recurse(self._inc, dev - self.delta)
            min_inc = np.minimum.accumulate(np.minimum(inc, self._min_inc))
            hit |= inc - min_inc > self.threshold
            self._inc, self._min_inc = float(inc[-1]), float(min_inc[-1])
        if self.mode != "up":
            dec = self._recurse(self._dec, dev + self.delta)
            max_dec = np.maximum.accumulate(np.maximum(dec, self._max_dec))
            hit |= max_dec - dec > self.threshold
            self._dec, self._max_dec = float(dec[-1]), float(max_dec[-1])
        self._n = int(n[-1])
        self._sum = float(csum[-1])
        i = first_true(hit & eligible)
        return i - offset if i >= 0 else -1

    def _recurse(self, s0: float, u: np.ndarray) -> np.ndarray:
        if self.alpha == 1.0:
            return carry_cumsum(s0, u)
        return lfilter([1.0], [1.0, -self.alpha], u, zi=[self.alpha * s0])[0]
