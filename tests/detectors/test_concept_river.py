"""Cross-check against River 0.26: same algorithm settings, same detections.

Every detector here implements River's algorithm exactly when given River's settings (two-sided
where River is, no standardisation for Page–Hinkley), so the detection positions must be
identical on the same streams. The documented differences are in the defaults only (see each
class): increase-only modes, calibrated thresholds, standardisation.
"""
from __future__ import annotations

import numpy as np
import pytest

from detectors.concept import make_detector
from tests.deps import require_module


@pytest.fixture(scope="module")
def rdrift():
    """River's ``drift`` module (a missing River skips these tests locally, fails them under CI)."""
    return require_module("river.drift")


# our detector's settings, and River's detector with the same settings (built from ``river.drift``)
RIVER_EQUIVALENT = {
    "adwin": ({"delta": 0.002, "mode": "both"}, lambda d: d.ADWIN()),
    "ddm": ({"warm_start": 30, "warning_threshold": 2.0, "drift_threshold": 3.0}, lambda d: d.binary.DDM()),
    "eddm": ({"warm_start": 30, "alpha": 0.95, "beta": 0.9}, lambda d: d.binary.EDDM()),
    "hddm_a": ({"drift_confidence": 0.001, "warning_confidence": 0.005}, lambda d: d.binary.HDDMA()),
    "hddm_a_2s": ({"drift_confidence": 0.001, "warning_confidence": 0.005, "two_sided_test": True},
                  lambda d: d.binary.HDDMA(two_sided_test=True)),
    "hddm_w": ({"drift_confidence": 0.001, "warning_confidence": 0.005}, lambda d: d.binary.HDDMW()),
    "hddm_w_2s": ({"drift_confidence": 0.001, "warning_confidence": 0.005, "two_sided_test": True},
                  lambda d: d.binary.HDDMW(two_sided_test=True)),
    "page_hinkley": (
        {"threshold": 50.0, "delta": 0.005, "alpha": 1 - 1e-4, "mode": "both", "min_n": 30, "standardize": False},
        lambda d: d.PageHinkley(),
    ),
    "page_hinkley_up": (
        {"threshold": 20.0, "delta": 0.005, "alpha": 1 - 1e-4, "mode": "up", "min_n": 30, "standardize": False},
        lambda d: d.PageHinkley(threshold=20.0, mode="up"),
    ),
    "kswin": ({"alpha": 0.005, "window_size": 100, "stat_size": 30, "seed": 7, "mode": "both"},
              lambda d: d.KSWIN(seed=7)),
}


def _stream(kind: str, seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q = n // 4
    p = np.repeat([0.1, 0.35, 0.1, 0.5], q)
    x = (rng.random(4 * q) < p).astype(np.float64)
    if kind == "unit":
        x *= rng.random(len(x))
    elif kind == "real":
        x = 2.0 * x + rng.normal(size=len(x))
    return x


def _river_hits(factory, x):
    det, hits = factory(), []
    for i, v in enumerate(x.tolist()):
        det.update(v)
        if det.drift_detected:
            hits.append(i)
    return hits


CASES = [
    ("adwin", "binary", 40_000), ("adwin", "real", 20_000),
    ("ddm", "binary", 40_000),
    ("eddm", "binary", 40_000),
    ("hddm_a", "binary", 20_000), ("hddm_a", "unit", 20_000), ("hddm_a_2s", "binary", 20_000),
    ("hddm_w", "binary", 20_000), ("hddm_w", "unit", 20_000), ("hddm_w_2s", "binary", 20_000),
    ("page_hinkley", "real", 40_000), ("page_hinkley", "binary", 40_000), ("page_hinkley_up", "real", 40_000),
    ("kswin", "real", 2_000), ("kswin", "binary", 2_000),
]


@pytest.mark.parametrize("key,kind,n", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_same_detections_as_river(rdrift, key, kind, n, seed):
    params, factory = RIVER_EQUIVALENT[key]
    name = key.split("_2s")[0].removesuffix("_up")
    x = _stream(kind, seed, n)
    det = make_detector(name, **params)
    ours = []
    for k in range(0, len(x), 997):
        ours.extend((k + det.update_many(x[k : k + 997])).tolist())
    theirs = _river_hits(lambda: factory(rdrift), x)
    assert ours == theirs
    if key in ("adwin", "ddm", "hddm_a", "hddm_w") and kind == "binary":
        assert ours, "the stream should make River fire at least once"


def test_adwin_river_resets_whole_window_no_duplicates(rdrift):
    """River 0.26 (and we) reset after a detection: one change gives one detection (river#574)."""
    rng = np.random.default_rng(3)
    x = np.r_[rng.random(20_000) < 0.1, rng.random(20_000) < 0.6].astype(float)
    ours = make_detector("adwin", delta=0.002, mode="both").update_many(x).tolist()
    assert ours == _river_hits(rdrift.ADWIN, x)
    assert len([h for h in ours if h >= 20_000]) == 1


def test_ddm_eddm_warnings_like_river(rdrift):
    rng = np.random.default_rng(4)
    x = np.r_[rng.random(3000) < 0.2, rng.random(3000) < 0.3].astype(float)
    for name, params, factory in (
        ("ddm", RIVER_EQUIVALENT["ddm"][0], rdrift.binary.DDM),
        ("eddm", RIVER_EQUIVALENT["eddm"][0], rdrift.binary.EDDM),
        ("hddm_a", RIVER_EQUIVALENT["hddm_a"][0], rdrift.binary.HDDMA),
    ):
        ours, theirs = make_detector(name, **params), factory()
        for i, v in enumerate(x.tolist()):
            ours.update(v)
            theirs.update(v)
            assert ours.drift_detected == theirs.drift_detected, (name, i)
            if not theirs.drift_detected:  # River's EDDM keeps a stale warning on a drift step
                assert ours.warning_detected == theirs.warning_detected, (name, i)
