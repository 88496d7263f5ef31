"""Concept-drift detectors on the error stream of joined examples.

Each detector takes the per-event error of a model (0/1 for classification; any bounded or
real value where the algorithm allows it) one value at a time with ``update(x)`` or, the fast
path, a batch at a time with ``update_many(xs)``, which returns the positions in the batch at
which a drift was detected (exactly those ``update`` would have reported one by one). After a
detection a detector resets itself. All are pure numpy/scipy with plain-data state, so
``snapshot()``/``restore()`` continue bit for bit.

========================  =========================================  ======================
name                      algorithm                                  input
========================  =========================================  ======================
``adwin``                 :class:`~detectors.concept.adwin.ADWIN`     values in ``bounds``
``ddm``                   :class:`~detectors.concept.ddm.DDM`         0/1
``eddm``                  :class:`~detectors.concept.eddm.EDDM`       0/1
``hddm_a``                :class:`~detectors.concept.hddm_a.HDDM_A`   [0, 1]
``hddm_w``                :class:`~detectors.concept.hddm_w.HDDM_W`   [0, 1]
``page_hinkley``          :class:`~detectors.concept.page_hinkley.PageHinkley`  real
``kswin``                 :class:`~detectors.concept.kswin.KSWIN`     real
========================  =========================================  ======================

Defaults differ from River's where River's are unsafe for paging: every detector is
increase-only (a model getting better pages nobody), the real-valued ones are scale-free
(Page–Hinkley is standardised on a reference, KSWIN is rank-based, ADWIN works on a declared
range), and the thresholds of ADWIN, Page–Hinkley and KSWIN are calibrated to a false-alarm
budget by :mod:`detectors.concept.calibration`.

:data:`DEFAULT_SET` is driftloop's default concept-drift detector set for the error stream,
built by :func:`default_set`: ADWIN (increase-only) for its guarantees on small and gradual
changes, plus a calibrated Page–Hinkley that reacts fastest to abrupt ones. ``bench/quality.py``
holds the measurements behind the choice.

>>> import numpy as np
>>> from detectors.concept import make_detector, default_set
>>> rng = np.random.default_rng(0)
>>> errors = np.r_[rng.random(20_000) < 0.1, rng.random(2_000) < 0.25].astype(float)
>>> make_detector("hddm_a").update_many(errors).tolist()
[20288]
>>> {name: det.update_many(errors).tolist() for name, det in default_set().items()}
{'adwin': [20159], 'page_hinkley': [20179]}
"""
from __future__ import annotations

from typing import Any

from detectors.base import StreamDetector
from detectors.concept.adwin import ADWIN
from detectors.concept.ddm import DDM
from detectors.concept.eddm import EDDM
from detectors.concept.hddm_a import HDDM_A
from detectors.concept.hddm_w import HDDM_W
from detectors.concept.kswin import KSWIN
from detectors.concept.page_hinkley import PageHinkley

__all__ = [
    "ADWIN",
    "DDM",
    "EDDM",
    "HDDM_A",
    "HDDM_W",
    "KSWIN",
    "PageHinkley",
    "DETECTORS",
    "DEFAULT_SET",
    "make_detector",
    "default_set",
]

#: Registry of the concept-drift detectors by name.
DETECTORS: dict[str, type[StreamDetector]] = {
    "adwin": ADWIN,
    "ddm": DDM,
    "eddm": EDDM,
    "hddm_a": HDDM_A,
    "hddm_w": HDDM_W,
    "page_hinkley": PageHinkley,
    "kswin": KSWIN,
}

#: driftloop's default concept-drift detector set for the error stream: ``(name, params)``
#: pairs, every member at its calibrated, increase-only defaults. An alarm of either member
#: is a concept-drift alarm. Measured by ``bench/quality.py`` (see bench/README.md): recall
#: 1.0 on abrupt drifts, well under 0.3 false alarms per 40,000 stationary events, and a
#: median delay below River's ADWIN with increase-only filtering (Page–Hinkley fires first on
#: abrupt changes, ADWIN catches the smaller and slower ones).
DEFAULT_SET: tuple[tuple[str, dict[str, Any]], ...] = (
    ("adwin", {}),
    ("page_hinkley", {}),
)


def make_detector(name: str, **params: Any) -> StreamDetector:
    """A new concept-drift detector by name (see :data:`DETECTORS`), with ``params``."""
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown concept-drift detector {name!r}; expected one of {sorted(DETECTORS)}") from None
    return cls(**params)


def default_set() -> dict[str, StreamDetector]:
    """Fresh instances of :data:`DEFAULT_SET`, by name."""
    return {name: make_detector(name, **params) for name, params in DEFAULT_SET}
