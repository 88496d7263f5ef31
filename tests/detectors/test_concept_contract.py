"""Generic contract of every concept-drift detector, and batch == one-by-one exactness."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.base import StreamDetector
from detectors.concept import DETECTORS, make_detector
from tests.detectors.contract import check_all

# Sensitive settings so that the short contract streams contain detections (and resets).
SENSITIVE = {
    "adwin": {"delta": 0.1, "mode": "both"},
    "ddm": {"warm_start": 20, "drift_threshold": 2.0, "warning_threshold": 1.5},
    "eddm": {"warm_start": 30, "alpha": 0.95, "beta": 0.9},
    "hddm_a": {"drift_confidence": 0.01, "two_sided_test": True},
    "hddm_w": {"drift_confidence": 0.01, "two_sided_test": True},
    "page_hinkley": {"threshold": 8.0, "warmup": 50, "mode": "both"},
    "kswin": {"alpha": 0.01, "window_size": 60, "stat_size": 20, "mode": "both", "seed": 3},
}
BINARY = {"ddm", "eddm", "hddm_a", "hddm_w", "adwin"}


def _chunk(name: str, rng: np.random.Generator, n: int = 600, p: float | None = None) -> np.ndarray:
    p = rng.choice([0.05, 0.2, 0.5]) if p is None else p
    x = (rng.random(n) < p).astype(np.float64)
    if name in ("hddm_a", "hddm_w"):
        x *= rng.random(n)  # [0, 1] values, not only 0/1
    elif name not in BINARY:
        x = x * 3.0 + rng.normal(size=n)
    return x


def _feed(name: str):
    def feed(det, rng):
        return det.update_many(_chunk(name, rng))

    return feed


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_contract_defaults(name):
    check_all(lambda: make_detector(name), _feed(name))


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_contract_sensitive(name):
    check_all(lambda: make_detector(name, **SENSITIVE[name]), _feed(name))


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_is_stream_detector_with_params(name):
    det = make_detector(name)
    assert isinstance(det, StreamDetector)
    assert det._params and set(det.params()) == set(det._params)
    assert det.clone().params() == det.params()


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_snapshot_is_plain_and_exact_after_detections(name):
    det = make_detector(name, **SENSITIVE[name])
    rng = np.random.default_rng(5)
    hits = [det.update_many(_chunk(name, rng, p=p)).tolist() for p in (0.05, 0.5, 0.05, 0.5)]
    assert any(hits), "the sensitive settings should detect something on these chunks"
    twin = type(det).restore(det.snapshot())
    rest = [_chunk(name, rng) for _ in range(3)]
    assert [det.update_many(x).tolist() for x in rest] == [twin.update_many(x).tolist() for x in rest]


def _split_run(det, x, cuts):
    out, start = [], 0
    for c in [*sorted(set(cuts)), len(x)]:
        if c <= start:
            continue
        out.extend((start + det.update_many(x[start:c])).tolist())
        start = c
    return out


@pytest.mark.parametrize("name", sorted(DETECTORS))
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), cuts=st.lists(st.integers(0, 2000), max_size=8))
def test_update_many_equals_one_by_one(name, seed, cuts):
    rng = np.random.default_rng(seed)
    x = np.concatenate([_chunk(name, rng, 400) for _ in range(5)])
    if name == "kswin":
        x = x[:800]
    params = SENSITIVE[name]
    whole = make_detector(name, **params).update_many(x).tolist()
    assert _split_run(make_detector(name, **params), x, cuts) == whole
    det = make_detector(name, **params)
    single = [i for i, v in enumerate(x) if det.update(float(v)).drift_detected]
    assert single == whole


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_drift_detected_flag_and_empty_batch(name):
    det = make_detector(name, **SENSITIVE[name])
    rng = np.random.default_rng(11)
    x = np.concatenate([_chunk(name, rng) for _ in range(4)])
    hits = det.update_many(x)
    assert det.drift_detected == (len(hits) > 0 and hits[-1] == len(x) - 1)
    assert det.update_many(np.empty(0)).tolist() == [] and not det.drift_detected
    assert det.n_detections == len(hits)


def test_factory_rejects_unknown_names_and_bad_input():
    with pytest.raises(ValueError):
        make_detector("cusum")
    with pytest.raises(ValueError):
        make_detector("ddm").update_many(np.array([0.0, 0.5]))
    with pytest.raises(ValueError):
        make_detector("hddm_a").update_many(np.array([2.0]))
    with pytest.raises(ValueError):
        make_detector("page_hinkley").update_many(np.array([np.nan]))
    with pytest.raises(ValueError):
        make_detector("adwin", mode="sideways")
