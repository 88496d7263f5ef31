"""The estimate that learns from a window's first labels (CBPE.rectify): the difference
estimator by hand, half the label-free error or better under concept shift with 10% labelled,
its band, the per-window record (share labelled, learning estimate, realised, track record)
and snapshot/restore."""
from __future__ import annotations

import numpy as np
import pytest

from detectors.base import Window
from detectors.cbpe import CBPE
from detectors.label_learning import error_prior
from detectors.reference import Reference

METRICS = ("accuracy", "f1", "roc_auc")


def calibrated_reference(n: int = 20_000, seed: int = 0) -> Reference:
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    y = np.where(rng.random(n) < p, "1", "0").astype(object)
    return Reference({"x": p}, {"x": "numeric"}, label=y, scores=np.column_stack([1 - p, p]), classes=["0", "1"])


def window(rng: np.random.Generator, n: int, flip: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores as on the reference; labels drawn from them, then a share ``flip`` of the rows whose
    score is above 0.5 get the other label (concept shift: the same inputs, other outcomes)."""
    p = rng.random(n)
    y = (rng.random(n) < p).astype(int)
    shifted = (p > 0.5) & (rng.random(n) < flip)
    y[shifted] = 1 - y[shifted]
    pred = np.where(p > 0.5, "1", "0").astype(object)
    return pred, np.column_stack([1 - p, p]), y.astype(str).astype(object)


def test_the_correction_is_realised_minus_estimated_on_the_labelled_rows():
    est = CBPE(calibrated_reference(), metrics=("accuracy",), learn_min_labels=3)
    p = np.array([0.9, 0.8, 0.3, 0.2])
    scores = np.column_stack([1 - p, p])
    pred = np.array(["1", "1", "0", "0"], dtype=object)
    label = np.array(["1", "0", "1", "0"], dtype=object)          # 2 of 4 right
    cal = est.calibrated(scores)
    expected_right = np.mean([cal[0, 1], cal[1, 1], cal[2, 0], cal[3, 0]])
    fixed = est.rectify({"accuracy": {"value": 0.7, "ci": [0.6, 0.8], "se": 0.05}}, label, pred, scores,
                        np.random.default_rng(0))
    corr = 0.5 - expected_right
    assert fixed["accuracy"]["correction"] == pytest.approx(corr)
    w = fixed["accuracy"]["weight"]          # 4 rows: the correction is within its noise, dropped
    assert w == 0 and fixed["accuracy"]["value"] == pytest.approx(0.7) and fixed["accuracy"]["bias"] == 0
    assert fixed["accuracy"]["labelled"] == 4 and fixed["accuracy"]["se"] == pytest.approx(0.05)
    # a track record that the label-free estimate has been 0.2 too optimistic: the correction is
    # weighed against it (posterior mean between the two, nearer the less noisy)
    prior = {"accuracy": error_prior([-0.2, -0.21, -0.19, -0.2])}
    moved = est.rectify({"accuracy": {"value": 0.7, "ci": [0.6, 0.8], "se": 0.05}}, label, pred, scores,
                        np.random.default_rng(0), prior)["accuracy"]
    assert moved["bias"] == pytest.approx(prior["accuracy"].mean + moved["weight"] * (corr - prior["accuracy"].mean))
    assert moved["value"] == pytest.approx(0.7 + moved["bias"]) and moved["se"] > 0.05
    assert est.rectify({"accuracy": {"value": 0.7, "ci": [0.6, 0.8], "se": 0.05}}, label[:2], pred[:2],
                       scores[:2], np.random.default_rng(0)) == {}      # fewer than learn_min_labels


def test_under_concept_shift_ten_percent_labelled_halves_the_error_or_better():
    est = CBPE(calibrated_reference(), metrics=METRICS, draws=100)
    rng = np.random.default_rng(1)
    plain, learned, covered = {m: [] for m in METRICS}, {m: [] for m in METRICS}, []
    for w in range(20):
        pred, scores, label = window(rng, 5000, flip=0.35)
        first = rng.random(5000) < 0.10                      # the labels that came in time
        partial = np.where(first, label, None)
        win = Window(w * 5000, w * 5000 + 4999, 5000)
        base = est.estimate(win, pred, scores)
        fixed = est.estimate_with_labels(win, pred, scores, partial)
        real = est._realised(est._index(label), est._index(pred), scores)    # the whole window, labelled
        for m in METRICS:
            plain[m].append(abs(base[m]["value"] - real[m]))
            learned[m].append(abs(fixed[m]["value"] - real[m]))
        covered.append(fixed["accuracy"]["ci"][0] <= real["accuracy"] <= fixed["accuracy"]["ci"][1])
    for m in METRICS:
        assert np.mean(plain[m]) > 0.05, m                     # the label-free estimate misses by far
        assert np.mean(learned[m]) <= 0.5 * np.mean(plain[m]), (m, np.mean(learned[m]), np.mean(plain[m]))
    assert np.mean(covered) >= 0.85


def test_under_covariate_shift_only_the_labels_cost_little():
    """No concept shift: the label-free estimate is right and the correction is mostly noise;
    shrunk, it leaves the error close to the label-free one (unshrunk it was 1.5-3.7 times it)."""
    est = CBPE(calibrated_reference(), metrics=METRICS, draws=100)
    rng = np.random.default_rng(3)
    plain, learned = {m: [] for m in METRICS}, {m: [] for m in METRICS}
    for w in range(20):
        pred, scores, label = window(rng, 5000, flip=0.0)
        partial = np.where(rng.random(5000) < 0.10, label, None)
        win = Window(w * 5000, w * 5000 + 4999, 5000)
        base, fixed = est.estimate(win, pred, scores), est.estimate_with_labels(win, pred, scores, partial)
        real = est._realised(est._index(label), est._index(pred), scores)
        for m in METRICS:
            plain[m].append(abs(base[m]["value"] - real[m]))
            learned[m].append(abs(fixed[m]["value"] - real[m]))
    for m in METRICS:
        assert np.mean(learned[m]) <= 1.5 * np.mean(plain[m]), (m, np.mean(learned[m]), np.mean(plain[m]))


def test_the_window_record_share_labelled_learning_realised_and_track_record():
    est = CBPE(calibrated_reference(), metrics=METRICS, draws=100)
    rng = np.random.default_rng(2)
    for w in range(3):
        pred, scores, label = window(rng, 2000, flip=0.35)
        ts = np.arange(w * 2000, (w + 1) * 2000)
        est.update(Window(int(ts[0]), int(ts[-1]), 2000), pred, scores)
        first = ts[:200]                                       # 10% labelled by the window's close
        est.update_labels(first, pred[:200] == label[:200], label[:200], pred[:200], scores[:200])
        row = est.history_table()[-1]
        assert row["share_labelled"] == pytest.approx(0.1)
        assert set(row["metrics"]["accuracy"]["learning"]) == {"value", "ci", "labelled"}
        assert row["metrics"]["accuracy"]["realised"] is not None          # so far, on the 200
        est.update_labels(ts[200:], pred[200:] == label[200:], label[200:], pred[200:], scores[200:])
    record = est.track_record()
    assert record["accuracy"]["windows"] == 3
    assert record["accuracy"]["learning_mae"] < record["accuracy"]["estimate_mae"]
    assert est.last()["track_record"] == record
    twin = CBPE.restore(est.snapshot())
    assert twin.history_table() == est.history_table() and twin.track_record() == record


def test_the_learning_estimate_does_not_depend_on_how_labels_were_batched():
    """A replay, a restart or a rebalance cuts the label stream elsewhere: the detectors' state
    must be a function of the events only (the SIGKILL and chaos runs compare it value for value)."""
    rng = np.random.default_rng(4)
    pred, scores, label = window(rng, 2000, flip=0.35)
    ts = np.arange(2000)
    states = []
    for cuts in ([0, 130, 400, 2000], [0, 7, 250, 251, 1100, 1999, 2000], [0, 1500, 2000]):
        est = CBPE(calibrated_reference(), metrics=METRICS, draws=50)
        est.update(Window(0, 1999, 2000), pred, scores)
        for a, b in zip(cuts, cuts[1:]):
            est.update_labels(ts[a:b], pred[a:b] == label[a:b], label[a:b], pred[a:b], scores[a:b])
        states.append(est.snapshot())
    assert states[0] == states[1] == states[2]


def _stateful(flip: float, seed: int, windows: int = 12) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """As in production: a tenth of each window labelled by its close, the rest during the next
    window, so the track record of the fully labelled windows is there to learn from."""
    est = CBPE(calibrated_reference(), metrics=METRICS, draws=100)
    rng = np.random.default_rng(seed)
    plain: dict[str, list[float]] = {m: [] for m in METRICS}
    learned: dict[str, list[float]] = {m: [] for m in METRICS}
    late = None
    for w in range(windows):
        pred, scores, label = window(rng, 5000, flip=flip)
        ts = np.arange(w * 5000, (w + 1) * 5000)
        if late is not None:
            est.update_labels(*late)
        first = rng.random(5000) < 0.10
        win = Window(int(ts[0]), int(ts[-1]), 5000)
        base, fixed = est.estimate(win, pred, scores), est.estimate_with_labels(win, pred, scores,
                                                                                 np.where(first, label, None))
        real = est._realised(est._index(label), est._index(pred), scores)
        for m in METRICS:
            plain[m].append(abs(base[m]["value"] - real[m]))
            learned[m].append(abs(fixed[m]["value"] - real[m]))
        est.update(win, pred, scores)
        est.update_labels(ts[first], pred[first] == label[first], label[first], pred[first], scores[first])
        rest = ~first
        late = (ts[rest], pred[rest] == label[rest], label[rest], pred[rest], scores[rest])
    return plain, learned


def test_with_a_track_record_covariate_shift_keeps_the_label_free_estimate():
    """The label-free estimate has been right on the past windows: the noisy corrections of the
    next ones are weighed against that (empirical Bayes), and the error stays close to the
    label-free one (with the correction alone, James-Stein shrunk, it was 1.2-1.5 times it)."""
    plain, learned = _stateful(flip=0.0, seed=5)
    for m in METRICS:
        assert np.mean(learned[m]) <= 1.15 * np.mean(plain[m]), (m, np.mean(learned[m]), np.mean(plain[m]))


def test_with_a_track_record_a_steady_concept_shift_is_corrected_better():
    """A steady bias seen on the past windows is corrected even where this window's correction is
    noisy: 0.08-0.09 of the label-free error (the correction alone: 0.15-0.17)."""
    plain, learned = _stateful(flip=0.35, seed=6)
    for m in METRICS:
        assert np.mean(learned[m]) <= 0.12 * np.mean(plain[m]), (m, np.mean(learned[m]), np.mean(plain[m]))


def test_the_learning_estimate_is_computed_again_only_when_its_first_rows_change(monkeypatch):
    """status() reads the learning estimate after every judgement while labels arrive: it is
    computed once per checkpoint, and again when a late label lands before the checkpoint's row."""
    est = CBPE(calibrated_reference(), metrics=METRICS, draws=50)
    rng = np.random.default_rng(6)
    pred, scores, label = window(rng, 2000, flip=0.35)
    ts = np.arange(2000)
    est.update(Window(0, 1999, 2000), pred, scores)
    calls = []
    real = CBPE._rectify_first
    monkeypatch.setattr(CBPE, "_rectify_first", lambda self, *a: calls.append(a[2]) or real(self, *a))

    def labels(rows: np.ndarray) -> None:
        est.update_labels(ts[rows], pred[rows] == label[rows], label[rows], pred[rows], scores[rows])

    labels(np.arange(0, 200, 2))         # 100 rows: the first checkpoint (a tenth: 200) not reached
    labels(np.arange(200, 400))          # 300 rows: checkpoint 200
    first = est.history_table()[-1]["metrics"]["accuracy"]["learning"]
    labels(np.arange(400, 420))          # after the checkpoint's rows: the same 200 first rows
    est.history_table()
    assert calls == [200]
    labels(np.arange(1, 60, 2))          # late labels before the 200th row: other first rows
    again = est.history_table()[-1]["metrics"]["accuracy"]["learning"]
    assert calls == [200, 200] and again != first


def test_labels_that_arrive_before_their_window_is_estimated_are_joined_to_it():
    """A label often comes while its prediction's window is still filling: the window, once
    estimated, has it (all labelled: realised, rows dropped), and the state is the same as
    when every label came after the window's close."""
    rng = np.random.default_rng(7)
    pred, scores, label = window(rng, 4000, flip=0.2)
    ts = np.arange(4000)

    def labels(est: CBPE, a: int, b: int) -> None:
        est.update_labels(ts[a:b], pred[a:b] == label[a:b], label[a:b], pred[a:b], scores[a:b])

    early, late = CBPE(calibrated_reference(), metrics=METRICS, draws=50), CBPE(calibrated_reference(), metrics=METRICS, draws=50)
    labels(early, 0, 1500)                                   # before the first window is estimated
    early.update(Window(0, 1999, 2000), pred[:2000], scores[:2000])
    labels(early, 1500, 3000)                                # the rest of it, and half the next one early
    early.update(Window(2000, 3999, 2000), pred[2000:], scores[2000:])
    labels(early, 3000, 4000)
    for a, b in ((0, 2000), (2000, 4000)):
        late.update(Window(a, b - 1, 2000), pred[a:b], scores[a:b])
    labels(late, 0, 4000)
    rows = early.history_table()
    assert [r["share_labelled"] for r in rows] == [1.0, 1.0]
    assert all(r["metrics"]["roc_auc"]["realised"] is not None for r in rows)
    assert early.snapshot() == late.snapshot()
    assert len(early._early["ts"]) == 2000 and early._early["ts"].min() == 2000   # only the newest window's
