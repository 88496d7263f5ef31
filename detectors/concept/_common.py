"""Shared machinery of the concept-drift detectors (private).

Every detector in :mod:`detectors.concept` processes a batch with a ``_scan`` method that runs
the detector's recurrence over the batch with numpy and returns the index of the first
detection in it (or -1). :class:`BatchDetector` turns that into River's contract: after a
detection the detector resets and scanning resumes on the rest of the batch, so
``update_many`` returns every detection and ``update(x)`` (a batch of one) gives exactly the
same detections, value for value.

Exactness across batch splits rests on three rules followed by every ``_scan``:

* running sums are carried with :func:`carry_cumsum` (``np.cumsum`` accumulates strictly left
  to right, so the sums are the same as a scalar loop's, whatever the batch boundaries);
* recurrences with a constant coefficient go through :func:`scipy.signal.lfilter`, which is
  the same left-to-right scalar recurrence;
* no transcendental function is applied elementwise (SIMD ``log``/``exp`` may round
  differently in the vector body and in the tail); only ``sqrt`` and the four operations,
  which IEEE 754 rounds exactly, are; logs of parameters are computed once.
"""
from __future__ import annotations

import math
from typing import Any, Self

import numpy as np

from detectors.base import StreamDetector

__all__ = ["BatchDetector", "carry_cumsum", "first_true", "check_binary", "check_unit", "scale_estimate"]

_EMPTY = np.empty(0, dtype=np.int64)


def carry_cumsum(start: float, xs: np.ndarray) -> np.ndarray:
    """``start + x0``, ``(start + x0) + x1``, ... as a scalar loop would add them."""
    out = np.empty(len(xs) + 1)
    out[0] = start
    out[1:] = xs
    np.cumsum(out, out=out)
    return out[1:]


def first_true(mask: np.ndarray) -> int:
    """Index of the first True in ``mask``, or -1."""
    i = int(mask.argmax()) if len(mask) else 0
    return i if len(mask) and mask[i] else -1


def check_binary(xs: np.ndarray, name: str) -> None:
    if not ((xs == 0.0) | (xs == 1.0)).all():
        raise ValueError(f"{name} takes a stream of 0/1 errors (1 = the model was wrong)")


def check_unit(xs: np.ndarray, name: str) -> None:
    if not ((xs >= 0.0) & (xs <= 1.0)).all():
        raise ValueError(f"{name} takes values in [0, 1] (e.g. 0/1 errors)")


def scale_estimate(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of a warm-up sample, made safe for error streams.

    For a 0/1 sample the variance is that of a Bernoulli with the Jeffreys-smoothed rate
    ``(k + 1/2) / (n + 1)``, so a warm-up without a single error still gives a usable scale.
    Otherwise it is the sample standard deviation; a constant sample (no scale at all) gives 1.
    """
    n = len(values)
    if n == 0:
        return 0.0, 1.0
    if bool(((values == 0.0) | (values == 1.0)).all()):
        p = (float(values.sum()) + 0.5) / (n + 1.0)
        return p, math.sqrt(p * (1.0 - p))
    mean = float(values.mean())
    sd = float(values.std(ddof=1)) if n > 1 else 0.0
    return mean, (sd if sd > 0.0 else 1.0)


class BatchDetector(StreamDetector):
    """Base of the vectorised detectors: ``update_many`` = repeated ``_scan`` + reset.

    Subclasses implement ``_reset()`` (fresh state, parameters untouched) and
    ``_scan(xs) -> int``: advance the state over ``xs`` and return the index of the first
    detection (the state after it is irrelevant: the detector resets) or -1.
    """

    def __init__(self) -> None:
        super().__init__()
        self._n_detections = 0
        self._reset()

    @property
    def n_detections(self) -> int:
        """Detections since construction (resets do not clear it)."""
        return self._n_detections

    def _reset(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _scan(self, xs: np.ndarray) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _validate(self, xs: np.ndarray) -> None:
        if not np.isfinite(xs).all():
            raise ValueError(f"{type(self).__name__} got a NaN or infinite value")

    def update(self, x: float) -> Self:
        """Feed one value; ``drift_detected`` then tells whether it completed a detection."""
        self.update_many(np.asarray([x], dtype=np.float64))
        return self

    def update_many(self, xs: Any) -> np.ndarray:
        """Feed a batch; return the positions in it at which drift was detected.

        Exactly the detections of feeding the values one by one with :meth:`update`.
        """
        xs = np.asarray(xs, dtype=np.float64).ravel()
        if not len(xs):
            self._drift_detected = False
            return _EMPTY
        self._validate(xs)
        hits: list[int] = []
        start = 0
        while start < len(xs):
            i = self._scan(xs[start:] if start else xs)
            if i < 0:
                break
            hits.append(start + i)
            self._n_detections += 1
            self._reset()
            start += i + 1
        self._drift_detected = bool(hits) and hits[-1] == len(xs) - 1
        return np.asarray(hits, dtype=np.int64) if hits else _EMPTY
