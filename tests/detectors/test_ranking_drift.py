"""ItemDrift (detectors/ranking_drift.py): no false alarms on stationary recommenders, new and
swapped items found and named, resolution, exact snapshots, edge cases, the contract."""
from __future__ import annotations

import functools
from collections import Counter
from typing import Any

import numpy as np
import pytest
from scipy.spatial import distance

from detectors import two_sample as uv
from detectors.base import Window
from detectors.ranking_drift import MAX_CALIBRATIONS, ItemDrift
from detectors.ranking_lists import ITEM_SEP, decode_ranking, encode_ranking
from tests.detectors.contract import check_all, check_window_detector

SEGMENTS = 20


@functools.cache
def _catalogue(n_items: int, exponent: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Item names, the Zipf popularity's CDF over ranks, and per request segment, popularity
    rank -> item: each segment has its own favourites among the 300 most popular items, so one
    list's items are chosen together (requests, not slots, are the independent units)."""
    names = np.array([f"i{j}" for j in range(n_items)], dtype=object)
    w = 1.0 / np.arange(1, n_items + 1) ** exponent
    rng = np.random.default_rng(99)
    perms = np.tile(np.arange(n_items), (SEGMENTS, 1))
    for s in range(SEGMENTS):
        perms[s, :300] = rng.permutation(300)
    return names, np.cumsum(w) / w.sum(), perms


def served(rng: np.random.Generator, n: int, length: int, n_items: int = 2000, exponent: float = 1.1) -> list[str]:
    """``n`` ranked lists of up to ``length`` distinct items (Zipf popularity, popular first)."""
    names, cdf, perms = _catalogue(n_items, exponent)
    seg = rng.integers(0, SEGMENTS, n)
    ranks = np.sort(np.searchsorted(cdf, rng.random((n, length))), axis=1)
    keep = np.ones(ranks.shape, dtype=bool)
    keep[:, 1:] = ranks[:, 1:] != ranks[:, :-1]
    items = perms[seg[:, None], ranks]
    return [ITEM_SEP.join(names[row[m]]) for row, m in zip(items, keep)]


@functools.cache
def reference(length: int, n: int = 20_000) -> tuple[str, ...]:
    return tuple(served(np.random.default_rng(length), n, length))


def with_new_items(lists: list[str], rng: np.random.Generator) -> list[str]:
    """Two of five new items put first in every list: about 20% of the top-10 slots."""
    new = np.array([f"new{j}" for j in range(5)], dtype=object)
    return [encode_ranking([*rng.choice(new, 2, replace=False), *decode_ranking(s)[:8]]) for s in lists]


def renamed(lists: list[str], old: str, new: str) -> list[str]:
    return [ITEM_SEP.join(new if i == old else i for i in decode_ranking(s)) for s in lists]


def judged(det: ItemDrift) -> dict[str, Any]:
    return det.last()["prediction"]


# ------------------------------------------------------------------ no false alarms
@pytest.mark.parametrize("length", [10, 100])
def test_a_stationary_recommender_does_not_fire(length: int) -> None:
    """200 windows of 1,000 requests from the reference's own process, at the monitor's alpha
    (1 / expected_run_time = 0.001): the default detector never breaches, and the calibrated
    threshold alone (no floor) breaches at most twice (0.2 expected)."""
    det = ItemDrift(list(reference(length)), alpha=0.001)
    bare = ItemDrift(list(reference(length)), alpha=0.001, min_effect=0.0)
    rng = np.random.default_rng(1000 + length)
    out: list[Any] = []
    breaches = bare_breaches = 0
    for w in range(200):
        lists = served(rng, 1000, length)
        out += det.update_lists(Window(w, w + 1, 1000), lists)
        out += bare.update_lists(Window(w, w + 1, 1000), lists)
        breaches += judged(det)["drifting"]
        bare_breaches += judged(bare)["drifting"]
    assert breaches == 0
    assert bare_breaches <= 2, bare_breaches
    assert len(out) <= 2 * bare_breaches
    # the calibrated threshold is the null's spread, not the floor: a window of 1,000 requests
    # from the same process sits below it, and the floor sits above it
    assert 0.01 < bare.threshold(1000) < det.threshold(1000) == det.min_effect


def test_a_long_tail_of_new_items_is_expected_not_paged() -> None:
    """100,000 items with a long tail: every window shows items the reference never did (about
    1.3% of slots here). Compared with a reference share of 0 that alone is a Jensen–Shannon
    distance near 0.085, over the floor in every window; the Good–Turing smoothed reference
    expects it, so nothing fires, and new items still count once they exceed it."""
    rng = np.random.default_rng(21)
    det = ItemDrift(served(rng, 20_000, 20, 100_000, 0.9))
    unseen = []
    for w in range(30):
        assert det.update_lists(Window(w, w + 1, 2000), served(rng, 2000, 20, 100_000, 0.9)) == []
        assert not judged(det)["drifting"]
        unseen.append(judged(det)["unseen_share"])
    assert np.mean(unseen) > 0.01
    assert det._unseen == pytest.approx(np.mean(unseen), rel=0.2)
    [d] = det.update_lists(Window(30, 31, 2000), with_new_items(served(rng, 2000, 20, 100_000, 0.9), rng))
    assert d.evidence["expected_unseen_share"] == det._unseen
    assert f"of slots hold items unseen in the reference ({d.evidence['expected_unseen_share']:.0%} expected)" in d.summary


def test_calibration_is_per_window_size_seeded_and_bounded() -> None:
    ref = list(reference(10))
    a, b = ItemDrift(ref, calibration_draws=30), ItemDrift(ref, calibration_draws=30)
    sizes = [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200]
    ta = [a.threshold(n) for n in sizes]
    assert ta == [b.threshold(n) for n in reversed(sizes)][::-1]   # order of sizes does not matter
    assert len(a._cal) == MAX_CALIBRATIONS and sizes[0] not in a._cal
    bare = ItemDrift(ref, calibration_draws=30, min_effect=0.0)
    t = [bare.threshold(n) for n in sizes]
    assert all(x > y for x, y in zip(t, t[1:]))   # larger windows, smaller null spread


# ------------------------------------------------------------------ drift found, named, resolved
def test_new_items_fire_with_their_share_then_resolve() -> None:
    det = ItemDrift(list(reference(10)), model="recs")
    rng = np.random.default_rng(5)
    assert det.update_lists(Window(0, 1, 2000), served(rng, 2000, 10)) == []
    [d] = det.update_lists(Window(1, 2, 2000), with_new_items(served(rng, 2000, 10), rng), "v3")
    assert (d.kind, d.detector, d.feature, d.firing, d.severity) == ("prediction_drift", "item_shares", "prediction",
                                                                     True, "critical")
    assert (d.model, d.model_version, d.window) == ("recs", "v3", Window(1, 2, 2000))
    assert d.statistic == d.effect_size and d.statistic > 2 * d.threshold >= 2 * det.min_effect
    assert d.p_value is not None and d.p_value < det.alpha
    ev = d.evidence
    assert ev["unseen_share"] == pytest.approx(0.2, abs=0.01)
    assert {u["item"] for u in ev["top_unseen"]} == {f"new{j}" for j in range(5)}
    assert all(m["item"].startswith("new") and m["reference_share"] == 0 for m in ev["top_movers"][:3])
    assert ev["reference_n"] == 20_000 and ev["window_n"] == 2000 and ev["psi"] > 0.1
    assert "of slots hold items unseen in the reference" in d.summary and "(new)" in d.summary
    assert d.summary.endswith("over the last 2,000 requests (reference: 20,000 requests).")
    # still drifting: nothing new to say; back to normal: resolved after resolve_after = 2 windows
    assert det.update_lists(Window(2, 3, 2000), with_new_items(served(rng, 2000, 10), rng)) == []
    assert det.firing() == ["prediction"]
    assert det.update_lists(Window(3, 4, 2000), served(rng, 2000, 10)) == []
    [r] = det.update_lists(Window(4, 5, 2000), served(rng, 2000, 10))
    assert (r.firing, r.severity) == (False, "critical")
    assert r.summary.startswith("recommended items are back to the reference's mix")
    assert det.firing() == []


def test_a_new_top_item_is_named_with_the_one_it_replaced() -> None:
    ref = list(reference(100))
    slots = Counter(i for s in ref for i in decode_ranking(s)[:10])
    (top, top_n), tail = slots.most_common(1)[0], "i1999"
    det = ItemDrift(ref)
    rng = np.random.default_rng(6)
    [d] = det.update_lists(Window(0, 1, 3000), renamed(served(rng, 3000, 100), top, tail))
    movers = d.evidence["top_movers"]
    assert [m["item"] for m in movers[:2]] in ([top, tail], [tail, top])
    by_item = {m["item"]: m for m in movers}
    assert by_item[top]["reference_share"] == pytest.approx(top_n / sum(slots.values()))
    assert by_item[top]["current_share"] == 0
    assert by_item[tail]["current_share"] == pytest.approx(by_item[top]["reference_share"], rel=0.2)
    assert f"`{top}`" in d.summary and f"`{tail}`" in d.summary


def test_statistics_and_summary_on_a_hand_checked_case() -> None:
    ref = [encode_ranking(["a", "b"])] * 500 + [encode_ranking(["b", "c"])] * 500
    det = ItemDrift(ref, k=2, max_items=2, calibration_draws=20)
    [d] = det.update_lists(Window(0, 1, 1000), [encode_ranking(["n", "a", "zzz"])] * 1000)
    # categories: a, b (the top 2; b first, it fills more slots), other (c), unseen
    ref_shares, cur_shares = [0.5, 0.25, 0.25, 0.0], [0.0, 0.5, 0.0, 0.5]   # b, a, c, unseen
    assert d.statistic == pytest.approx(distance.jensenshannon(ref_shares, cur_shares, base=2), abs=1e-12)
    assert d.evidence["psi"] == pytest.approx(float(uv.psi([ref_shares], [cur_shares])[0]), abs=1e-12)
    assert (d.evidence["unseen_share"], d.evidence["other_share"], d.evidence["reference_other_share"]) == (0.5, 0.0, 0.25)
    assert d.evidence["top_unseen"] == [{"item": "n", "current_share": 0.5}]
    assert d.summary == (f"recommended items moved (Jensen–Shannon {d.statistic:.2f} > {d.threshold:.2f}): `n` 50% of top-2 slots "
                         "(new), `b` 0% (was 50%), `a` 50% (was 25%); 50% of slots hold items unseen in the "
                         "reference, over the last 1,000 requests (reference: 1,000 requests).")


# ------------------------------------------------------------------ edge cases
def test_empty_windows_and_empty_lists() -> None:
    det = ItemDrift(list(reference(10)) + [""] * 500)   # a reference with empty lists is fine
    rng = np.random.default_rng(8)
    assert det.update_lists(Window(0, 1, 0), []) == []
    assert det.update(Window(0, 1, 0), {}) == []                         # no column: no request
    assert det.update(Window(0, 1, 3), {"prediction": np.array(["", "", ""], dtype=object)}) == []
    assert judged(det) == {"n": 3, "slots": 0, "judged": False}
    lists = served(rng, 1000, 10)
    lists[::4] = [""] * len(lists[::4])
    assert det.update(Window(1, 2, 1000), {"prediction": np.array([*lists, None], dtype=object)}) == []
    assert judged(det)["n"] == 1000 and judged(det)["slots"] < 10 * 750
    # an alert stays open through windows with nothing to judge: they are no evidence of recovery
    [d] = det.update_lists(Window(2, 3, 1000), with_new_items(served(rng, 1000, 10), rng))
    assert d.evidence["empty_lists"] == 0
    for w in range(3, 6):
        assert det.update_lists(Window(w, w + 1, 0), []) == []
    assert det.firing() == ["prediction"]


def test_only_the_top_k_slots_count() -> None:
    """Lists shorter than k fill fewer slots; items past the k-th are not looked at."""
    ref = [encode_ranking(s) for s in (["a", "b", "c"], ["b", "c", "a"], ["c"])] * 300
    det = ItemDrift(ref, k=3, calibration_draws=20)
    tails = [encode_ranking([*decode_ranking(s), "new1", "new2"]) if len(s) > 1 else s for s in ref]   # past k
    assert det.update_lists(Window(0, 1, 900), tails) == []
    assert judged(det)["unseen_share"] == 0 and judged(det)["jensenshannon"] == pytest.approx(0.0, abs=1e-12)
    short = ItemDrift(ref, k=10, calibration_draws=20)   # k beyond every list: the lists as they are
    assert short.update_lists(Window(0, 1, 900), ref) == [] and judged(short)["slots"] == 7 * 300


def test_invalid_settings_and_references() -> None:
    with pytest.raises(ValueError, match="every list is empty"):
        ItemDrift(["", ""])
    with pytest.raises(ValueError, match="at least 1"):
        ItemDrift(["a"], k=0)
    with pytest.raises(ValueError, match="alpha"):
        ItemDrift(["a"], alpha=1.0)


# ------------------------------------------------------------------ state and contract
def _small_reference() -> list[str]:
    return list(reference(10, 3000))


def _feed(det: ItemDrift, rng: np.random.Generator) -> Any:
    lists = served(rng, int(rng.integers(200, 400)), 10)
    if rng.random() < 0.4:
        lists = with_new_items(lists, rng)
    return det.update(Window(0, 1, len(lists)), {"prediction": np.array(lists, dtype=object)})


def test_snapshot_restore_continues_exactly() -> None:
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    a, b = ItemDrift(_small_reference(), calibration_draws=30), ItemDrift(_small_reference(), calibration_draws=30)
    out_a = [[d.to_dict() for d in _feed(a, rng_a)] for _ in range(12)]
    out_b = [[d.to_dict() for d in _feed(b, rng_b)] for _ in range(6)]
    blob = b.snapshot()
    b = ItemDrift.restore(blob)
    assert b.snapshot() == blob
    out_b += [[d.to_dict() for d in _feed(b, rng_b)] for _ in range(6)]
    assert out_a == out_b and any(out_a)
    assert a.snapshot() == b.snapshot() and a.last() == b.last()


def test_contract() -> None:
    def make() -> ItemDrift:
        return ItemDrift(_small_reference(), calibration_draws=20, model="m")

    check_all(make, _feed)
    check_window_detector(make, _feed)
