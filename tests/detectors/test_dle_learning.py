"""DLE's estimate that learns from a window's first labels: the correction by hand, half the
label-free error or better under concept shift with 10% labelled, close to it without one,
the per-window record (share labelled, learning, realised, track record), batching-independent
state and snapshot/restore."""
from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from detectors.base import Window
from detectors.dle import DLE
from detectors.reference import Reference


def _stream(rng: np.random.Generator, n: int, noise: float = 1.0) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """``y = 3 x + e``, ``e`` with standard deviation ``noise * (0.3 + |x|)``; the model predicts ``3 x``."""
    x = rng.uniform(-2, 2, n)
    y = 3 * x + rng.normal(size=n) * noise * (0.3 + np.abs(x))
    return {"x": x}, y, 3 * x


@functools.cache
def _reference() -> Reference:
    feats, y, pred = _stream(np.random.default_rng(0), 4000)
    return Reference(feats, {"x": "numeric"}, "regression", label=y, prediction=pred)


def _dle() -> DLE:
    return DLE(_reference(), metrics=("mae", "rmse"), max_iter=50)


def test_the_correction_is_realised_minus_predicted_loss_on_the_labelled_rows() -> None:
    est = _dle()
    means = {"abs": (1.0, 0.01), "sq": (2.0, 0.05)}
    predicted = {"abs": np.full(100, 1.0), "sq": np.full(100, 2.0)}
    loss = {"abs": np.full(100, 1.5), "sq": np.full(100, 4.0)}      # 0.5 and 2.0 worse than predicted
    fixed = est.rectify(means, loss, predicted)
    assert fixed["mae"]["correction"] == pytest.approx(0.5) and fixed["rmse"]["correction"] == pytest.approx(2.0)
    w = fixed["mae"]["weight"]
    assert 0.9 < w <= 1 and fixed["mae"]["value"] == pytest.approx(1.0 + w * 0.5)
    w2 = fixed["rmse"]["weight"]
    assert fixed["rmse"]["value"] == pytest.approx(np.sqrt(2.0 + w2 * 2.0))       # RMSE: on the mean loss
    assert fixed["mae"]["labelled"] == 100
    few = {k: v[:10] for k, v in loss.items()}
    assert est.rectify(means, few, {k: v[:10] for k, v in predicted.items()}) == {}   # < learn_min_labels


def _run(noise: float, seed: int, windows: int = 12, share: float = 0.10) -> tuple[dict[str, list[float]], dict[str, list[float]], DLE]:
    """Windows of 2,000 whose labels are ``share`` in by the close, the rest during the next window;
    per metric the error of the plain and of the learning estimate against the realised one."""
    est = _dle()
    rng = np.random.default_rng(seed)
    plain: dict[str, list[float]] = {"mae": [], "rmse": []}
    learned: dict[str, list[float]] = {"mae": [], "rmse": []}
    late: tuple[np.ndarray, dict[str, Any], np.ndarray, np.ndarray] | None = None
    for w in range(windows):
        feats, y, pred = _stream(rng, 2000, noise)
        ts = np.arange(w * 2000, (w + 1) * 2000)
        if late is not None:
            est.update_labels(late[0], late[3], late[2], late[1])
        first = rng.random(2000) < share
        base = est.estimate(feats, pred)
        fixed = est.estimate_with_labels(feats, pred, np.where(first, y, np.nan))
        err = y - pred
        real = {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err * err)))}
        for m in plain:
            plain[m].append(abs(base[m]["estimate"] - real[m]))
            learned[m].append(abs(fixed[m]["value"] - real[m]))
        est.update(Window(int(ts[0]), int(ts[-1]), 2000), feats, pred)
        est.update_labels(ts[first], pred[first], y[first], {"x": feats["x"][first]})
        late = (ts[~first], {"x": feats["x"][~first]}, y[~first], pred[~first])
    return plain, learned, est


def test_under_concept_shift_ten_percent_labelled_halves_the_error_or_better() -> None:
    plain, learned, _ = _run(noise=1.6, seed=1)           # the noise grew: the loss model underestimates
    for m in plain:
        assert np.mean(plain[m]) > 0.2, m
        assert np.mean(learned[m]) <= 0.5 * np.mean(plain[m]), (m, np.mean(learned[m]), np.mean(plain[m]))


def test_without_concept_shift_the_labels_cost_little() -> None:
    plain, learned, _ = _run(noise=1.0, seed=2)
    for m in plain:
        assert np.mean(learned[m]) <= 1.25 * np.mean(plain[m]), (m, np.mean(learned[m]), np.mean(plain[m]))


def test_the_window_record_and_track_record_survive_a_restore() -> None:
    _, _, est = _run(noise=1.6, seed=3, windows=4, share=0.15)     # past the first checkpoint (a tenth)
    table = est.history_table()
    assert [r["share_labelled"] for r in table[:3]] == [1.0, 1.0, 1.0] and 0.1 < table[3]["share_labelled"] < 0.2
    assert table[3]["learning_share"] == 0.1
    newest = table[-1]["metrics"]["mae"]
    assert newest["realised"] is not None and set(newest["learning"]) == {"value", "ci", "labelled"}
    record = est.track_record()
    assert record["mae"]["windows"] == 3
    assert record["mae"]["learning_mae"] < record["mae"]["estimate_mae"]
    assert est.last()["track_record"] == record
    twin = DLE.restore(est.snapshot())
    assert twin.history_table() == table and twin.track_record() == record


def test_the_learning_estimate_does_not_depend_on_how_labels_were_batched() -> None:
    feats, y, pred = _stream(np.random.default_rng(4), 2000, noise=1.6)
    ts = np.arange(2000)
    tables = []
    for cuts in ([0, 130, 400, 2000], [0, 7, 250, 251, 1100, 1999, 2000], [0, 1500, 2000]):
        est = _dle()
        est.update(Window(0, 1999, 2000), feats, pred)
        for a, b in zip(cuts, cuts[1:]):
            est.update_labels(ts[a:b], pred[a:b], y[a:b], {"x": feats["x"][a:b]})
        tables.append(est.history_table()[0]["metrics"]["mae"]["learning"])
    assert tables[0] == tables[1] == tables[2]


def test_labels_that_arrive_before_their_window_is_estimated_are_joined_to_it() -> None:
    """As CBPE's: a label of a window still filling counts once the window is estimated, and
    the state equals the one where every label came after the window's close."""
    feats, y, pred = _stream(np.random.default_rng(8), 4000)
    ts = np.arange(4000)

    def labels(est: DLE, a: int, b: int) -> None:
        est.update_labels(ts[a:b], pred[a:b], y[a:b], {"x": feats["x"][a:b]})

    def update(est: DLE, a: int, b: int) -> None:
        est.update(Window(a, b - 1, b - a), {"x": feats["x"][a:b]}, pred[a:b])

    early, late = _dle(), _dle()
    labels(early, 0, 1500)
    update(early, 0, 2000)
    labels(early, 1500, 3000)
    update(early, 2000, 4000)
    labels(early, 3000, 4000)
    update(late, 0, 2000)
    update(late, 2000, 4000)
    labels(late, 0, 4000)
    got, want = early.history_table(), late.history_table()
    assert [r["share_labelled"] for r in got] == [1.0, 1.0]
    for g, w in zip(got, want):          # the sums differ in their last bits (other batches)
        for m in ("mae", "rmse"):
            assert g["metrics"][m]["realised"] == pytest.approx(w["metrics"][m]["realised"], rel=1e-12)
            assert g["metrics"][m]["learning"] == w["metrics"][m]["learning"]
