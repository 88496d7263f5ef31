"""Behaviour of driftloop's concept-drift detectors at their defaults: pinned detections,
increase-only, scale-free, false alarms on stationary streams, the default set."""
from __future__ import annotations

import numpy as np
import pytest

from detectors.concept import DEFAULT_SET, DETECTORS, default_set, make_detector


def _stream(seed: int) -> np.ndarray:
    """0.1 -> 0.3 at 8000, better (0.05) at 12000, much worse (0.5) at 16000."""
    rng = np.random.default_rng(seed)
    return np.r_[rng.random(8000) < 0.1, rng.random(4000) < 0.3, rng.random(4000) < 0.05, rng.random(4000) < 0.5].astype(float)


PINNED = {
    "adwin": [[8063, 16063], [8095, 16063]],
    "ddm": [[8586, 16232], [8502, 16232]],
    "eddm": [[], []],  # calibrated EDDM is deaf to these changes: see its docstring
    "hddm_a": [[8132, 16056], [8130, 16039]],
    "hddm_w": [[16186], [16154]],
    "page_hinkley": [[8074, 16115], [8077, 16103]],
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_detections_at_defaults(name):
    got = [make_detector(name).update_many(_stream(seed)).tolist() for seed in (0, 1)]
    assert got == PINNED[name]


def test_pinned_kswin():
    x = _stream(0)[6000:12000]
    assert make_detector("kswin", alpha=1e-4).update_many(x).tolist() == [2113]
    rng = np.random.default_rng(9)
    y = np.r_[rng.normal(0, 1, 2000), rng.normal(1.5, 1, 1000)]
    assert make_detector("kswin").update_many(y).tolist() == PINNED_KSWIN_REAL


PINNED_KSWIN_REAL = [2047]


def _improving(seed: int, n: int = 30_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = np.r_[np.full(n // 3, 0.3), np.linspace(0.3, 0.02, n // 3), np.full(n - 2 * (n // 3), 0.02)]
    return (rng.random(n) < p).astype(float)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_increase_only_an_improving_model_never_fires(name):
    for seed in (0, 1, 2):
        x = _improving(seed, 9000 if name == "kswin" else 30_000)
        assert make_detector(name).update_many(x).tolist() == [], (name, seed)
    # abrupt improvement too
    rng = np.random.default_rng(5)
    x = np.r_[rng.random(5000) < 0.4, rng.random(5000) < 0.02].astype(float)
    if name == "kswin":
        x = x[3000:7000]
    assert make_detector(name).update_many(x).tolist() == []


@pytest.mark.parametrize("name", ["page_hinkley", "adwin", "hddm_a", "ddm"])
def test_two_sided_settings_do_fire_on_an_improvement(name):
    """The increase-only silence above is the mode, not deafness."""
    params = {"page_hinkley": {"mode": "both"}, "adwin": {"mode": "both"},
              "hddm_a": {"two_sided_test": True}, "ddm": {}}[name]
    rng = np.random.default_rng(5)
    x = np.r_[rng.random(5000) < 0.4, rng.random(5000) < 0.02].astype(float)
    hits = make_detector(name, **params).update_many(x).tolist()
    if name == "ddm":  # DDM is one-sided by construction
        assert hits == []
    else:
        assert hits and 5000 <= hits[0] < 5400


@pytest.mark.parametrize("scale,shift", [(1.0, 0.0), (1e-3, 5.0), (250.0, -40.0)])
def test_page_hinkley_is_scale_free(scale, shift):
    rng = np.random.default_rng(12)
    base = np.r_[rng.normal(0, 1, 6000), rng.normal(0.6, 1, 2000)]
    ref = make_detector("page_hinkley").update_many(base).tolist()
    assert ref and ref[0] >= 6000
    assert make_detector("page_hinkley").update_many(base * scale + shift).tolist() == ref
    # a reference given at construction instead of the warm-up
    given = make_detector("page_hinkley", reference=(shift, scale)).update_many(base * scale + shift).tolist()
    assert given == make_detector("page_hinkley", reference=(0.0, 1.0)).update_many(base).tolist()


def test_adwin_and_kswin_are_scale_free():
    rng = np.random.default_rng(13)
    x = np.r_[rng.random(6000) < 0.1, rng.random(3000) < 0.3].astype(float)
    ref = make_detector("adwin").update_many(x).tolist()
    assert ref and make_detector("adwin", bounds=(10.0, 30.0)).update_many(10.0 + 20.0 * x).tolist() == ref
    y = np.r_[rng.normal(0, 1, 2000), rng.normal(1.5, 1, 800)]
    ks = make_detector("kswin").update_many(y).tolist()
    assert ks and make_detector("kswin").update_many(np.exp(y) * 1e4).tolist() == ks


def test_page_hinkley_warmup_without_errors_still_has_a_scale():
    x = np.r_[np.zeros(500), np.ones(60)]
    hits = make_detector("page_hinkley").update_many(x).tolist()
    assert hits and 500 <= hits[0] < 510


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_false_alarms_on_stationary_streams(name):
    """Calibrated to <= 0.1 per 40k events (see detectors.concept.calibration); here a smaller
    sample: at most two alarms over 240k events (6 x 40k, rates 2%-50%) per detector."""
    n = 40_000 if name != "kswin" else 4_000
    alarms = 0
    for i, p in enumerate((0.02, 0.05, 0.1, 0.2, 0.3, 0.5)):
        x = (np.random.default_rng(100 + i).random(n) < p).astype(float)
        alarms += len(make_detector(name).update_many(x))
    assert alarms <= 2


def test_default_set():
    assert [name for name, _ in DEFAULT_SET] == ["adwin", "page_hinkley"]
    dets = default_set()
    assert set(dets) == {"adwin", "page_hinkley"}
    assert all(d.mode == "up" for d in dets.values())
    hits = {name: d.update_many(_stream(0)).tolist() for name, d in dets.items()}
    assert hits == {"adwin": PINNED["adwin"][0], "page_hinkley": PINNED["page_hinkley"][0]}
    assert default_set()["adwin"] is not dets["adwin"]
