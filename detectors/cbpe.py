"""Label-free performance estimates while labels are late (confidence-based, CBPE).

A classifier's scores, once calibrated, say how likely each row is to be of each class. Treat
the calibrated probability ``p[i, c]`` as the chance that row ``i`` is truly of class ``c`` and
every classification metric has an expected value without a single label (NannyML's
confidence-based performance estimation). :class:`CBPE` estimates, per window, the metrics
:class:`~detectors.performance.PerformanceDrift` realises once labels arrive — ``accuracy``,
``precision``, ``recall``, ``f1``, ``roc_auc`` (its names) — and ``balanced_accuracy``,
``specificity`` and ``average_precision`` (:data:`CBPE_METRICS`). Binary models are judged on
the positive class (:func:`detectors.performance.positive_class`); multiclass ones are
macro-averaged one-vs-rest, as the realised metrics are.

Method
    *Calibration.* Per class, one-vs-rest, an isotonic regression of "row is of class ``c``" on
    the score of ``c``, fitted on the reference (its labels and the model's scores); multiclass
    rows are renormalised to sum to 1. NannyML's default is also isotonic, fitted
    cross-validated on the reference chunks, and it skips calibration when the scores already
    look calibrated. We always calibrate, on the whole reference: isotonic regression is
    monotone (it keeps the ranking, so ROC AUC of the calibrated scores is the model's),
    assumes no shape (unlike Platt scaling, which miscalibrates skewed models), and fitting it
    on thousands of reference rows is stable; an already calibrated model comes out almost
    unchanged.
    *Threshold metrics* come from the expected confusion matrix per class ``c``: expected
    TP = sum of ``p[:, c]`` over the rows predicted ``c``, FP = the count of those rows minus
    TP, expected positives P = sum of ``p[:, c]``, FN = P - TP, TN = n - P - predicted + TP.
    Precision = TP / predicted, recall = TP / P, F1 = 2 TP / (P + predicted), specificity =
    TN / (n - P), accuracy = sum over classes of TP / n, balanced accuracy = mean recall over
    the classes. (A ratio of expectations, as NannyML; the bias is O(1/n).)
    *Ranking metrics* follow the curve ordered by the model's scores (renormalised, as the
    realised metric ranks them; tied scores step together): the expected TP and FP counts above
    each threshold are cumulative sums of ``p`` and ``1 - p``, giving expected TPR, FPR and
    precision along the curve; ROC AUC is the trapezoid area under (FPR, TPR), average
    precision ``sum (R_i - R_{i-1}) P_i`` (sklearn's definition).
    The same code with ``p`` replaced by the one-hot true labels gives the realised metrics
    (equal to sklearn's; the tests check it), which CBPE keeps beside each window's estimate
    as the labels arrive (:meth:`CBPE.update_labels`, :meth:`CBPE.history_table`).
Band
    Monte Carlo: ``draws`` (200) label vectors are sampled from the calibrated probabilities,
    the metric is computed on each (all draws at once, vectorised), and the band is the
    estimate ± 1.96 times their standard deviation — the range the *realised* metric of the
    window falls in 95% of the time if the calibration holds. (The draws' 2.5 and 97.5
    percentiles covered 91–94% of 200 stationary windows: 200 draws make their tails short;
    the normal band covers 92–95.5%, ``tests/detectors/test_cbpe_metrics.py``.) The generator is seeded from ``seed`` and the window
    (its bounds and size), so the band is reproducible and a restored detector continues
    exactly. The draws' standard deviation is the metric's standard error (accuracy keeps its
    exact one, ``sqrt(sum p (1 - p)) / n``).
Alerting
    A metric alerts (detector ``cbpe_<metric>``) when its estimate is below the reference's
    realised value by at least ``min_degradation`` (absolute), the reference value lies above
    the band, and the drop is significant (one-sided ``p < alpha`` with the window's and the
    reference's standard errors); 2.5 times the degradation is critical.

The estimate holds when the relation between scores and outcomes stays as on the reference
(covariate shift); it cannot see concept drift by itself. Once a window's first labels arrive,
:meth:`CBPE.rectify` moves it towards what they show, weighed against the estimate's track
record on the fully labelled windows (:mod:`detectors.label_learning`), so under concept shift
the estimate approaches the truth before the window is fully labelled; the realised metrics
and the concept-drift detectors take over from there.

>>> import numpy as np
>>> from detectors.base import Window
>>> from detectors.reference import Reference
>>> rng = np.random.default_rng(0)
>>> p = rng.random(5000)
>>> y = np.where(rng.random(5000) < p, "1", "0").astype(object)   # calibrated scores
>>> ref = Reference({"x": p}, {"x": "numeric"}, label=y, scores=np.column_stack([1 - p, p]),
...                 classes=["0", "1"])
>>> est = CBPE(ref, metrics=("accuracy", "f1", "roc_auc"))
>>> {m: round(v, 2) for m, v in est.baseline.items()}
{'accuracy': 0.75, 'f1': 0.75, 'roc_auc': 0.84}
>>> hard = rng.uniform(0.3, 0.7, 2000)     # the live data moves to uncertain cases
>>> pred = np.where(hard > 0.5, "1", "0").astype(object)
>>> [d.summary.split(" (")[0] for d in est.update(Window(0, 1, 2000), pred, np.column_stack([1 - hard, hard]))]
['estimated accuracy dropped to 0.60', 'estimated F1 dropped to 0.59', 'estimated ROC AUC dropped to 0.63']
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from scipy.stats import norm, rankdata
from sklearn.isotonic import IsotonicRegression

from detectors import decision as dec
from detectors.base import Detection, Window
from detectors.composite import Composite
from detectors.label_learning import (
    RECENT_WINDOWS,
    ErrorPrior,
    checkpoint,
    error_prior,
    hold_early,
    in_time_order,
    learned_bias,
    release_early,
    track_record,
)
from detectors.performance import positive_class
from detectors.reference import Reference

__all__ = ["CBPE", "CBPE_METRICS", "fit_isotonic", "apply_isotonic", "metric_draws"]

#: The metrics CBPE estimates (the first five are PerformanceDrift's names).
CBPE_METRICS = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "specificity", "roc_auc",
                "average_precision")
_RANKING = ("roc_auc", "average_precision")
_NAMES = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "precision": "precision",
          "recall": "recall", "f1": "F1", "specificity": "specificity", "roc_auc": "ROC AUC",
          "average_precision": "average precision"}
_U64 = (1 << 64) - 1
_BLOCK = 4_000_000  # sampled cells per block of draws
_Z95 = 1.959963984540054


def fit_isotonic(score: np.ndarray, target: np.ndarray) -> list[np.ndarray]:
    """Fit an increasing map score -> probability; return its knots ``[x, y]``.

    ``np.interp(s, x, y)`` then equals ``IsotonicRegression(out_of_bounds="clip",
    y_min=0, y_max=1).predict(s)``.
    """
    ok = np.isfinite(score)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(score[ok], target[ok].astype(np.float64))
    # a list, not a tuple: the state codec cannot hold a tuple that starts with an array
    return [np.asarray(iso.X_thresholds_, dtype=np.float64), np.asarray(iso.y_thresholds_, dtype=np.float64)]


def apply_isotonic(score: np.ndarray, knots: list[np.ndarray]) -> np.ndarray:
    x, y = knots
    if len(x) == 0:
        return np.full(len(score), np.nan)
    if len(x) == 1:
        return np.full(len(score), float(y[0]))
    return np.interp(score, x, y)


def _rank_scores(scores: np.ndarray) -> np.ndarray:
    """Scores as the realised metrics rank them: clipped to [0, 1], rows renormalised."""
    s = np.asarray(scores, dtype=np.float64)
    s = np.where(np.isfinite(s), np.clip(s, 0.0, 1.0), 0.0)
    tot = s.sum(axis=1, keepdims=True)
    return np.where(tot > 0, s / np.where(tot > 0, tot, 1.0), 1.0 / max(s.shape[1], 1))


def _mean_over(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per draw, the mean of ``values`` ``(B, k)`` over the classes where ``mask``; NaN if none."""
    cnt = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, np.where(mask, values, 0.0).sum(axis=1) / np.maximum(cnt, 1), np.nan)


def _curve(t: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC and average precision per draw, ``t`` ``(B, n)`` the weight of "row is
    positive", rows ranked by ``score`` (descending, ties stepping together).

    AUC is the Mann-Whitney form with mid-ranks, ``(t @ midrank - P(P+1)/2) / (P N)``: one
    matrix-vector product per call, equal to the trapezoid area with tied rows counting half,
    for fractional weights too. Average precision needs the running count of positives at
    the end of each tie group: one cumulative sum per draw (no gather when the rows already
    come best first, as :meth:`CBPE._draws` sorts them).
    """
    n = len(score)
    if n == 0:
        nan = np.full(len(t), np.nan)
        return nan, nan
    descending = bool(np.all(score[:-1] >= score[1:]))
    order = None if descending else np.argsort(-score, kind="stable")
    s = score if order is None else score[order]
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True))   # the last row of each tie group
    counts = t.dtype == np.bool_      # 0/1 labels (draws, realised): integer sums, 3x faster than float
    ranked = t if order is None else t[:, order]
    ctp = np.cumsum(ranked, axis=1, dtype=np.int32 if counts else None)[:, ends].astype(np.float64)
    pos = ctp[:, -1]
    neg = n - pos
    tp_g = np.diff(ctp, axis=1, prepend=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (t @ rankdata(score) - pos * (pos + 1) / 2) / (pos * neg)
        ap = (tp_g * ctp) @ (1.0 / (ends + 1.0)) / pos
    return np.where((pos > 0) & (neg > 0), auc, np.nan), np.where(pos > 0, ap, np.nan)


def metric_draws(
    truth: Callable[[int], np.ndarray],
    pred: np.ndarray,
    scores: np.ndarray | None,
    k: int,
    pos: int | None,
    metrics: Sequence[str],
    binary: bool,
) -> dict[str, np.ndarray]:
    """Metrics per draw (one value per row of ``truth(c)``).

    ``truth(c)`` is ``(B, n)``: the weight of "row is of class ``c``" — calibrated
    probabilities (``B = 1``: the expected metrics), sampled labels (Monte-Carlo draws) or the
    one-hot true labels (the realised metrics). ``pred`` holds the predicted class indices
    (``-1``: none of the classes), ``scores`` the renormalised scores ``(n, k)`` (``None``: no
    ranking metrics), ``pos`` the positive class index (``None``: macro one-vs-rest);
    ``binary``: ranking metrics on the positive class (else macro, as sklearn's one-vs-rest).
    Multiclass averages run over the classes present (true or predicted), as sklearn's.

    >>> p = np.array([[0.1, 0.9], [0.3, 0.7], [0.8, 0.2]])
    >>> d = metric_draws(lambda c: p[None, :, c], np.array([1, 1, 0]), p, 2, 1, ("precision", "recall"), True)
    >>> round(float(d["precision"][0]), 3), round(float(d["recall"][0]), 3)   # 1.6 / 2, 1.6 / 1.8
    (0.8, 0.889)
    """
    n = len(pred)
    tps, ps = [], []
    pp = np.array([(pred == c).sum() for c in range(k)], dtype=np.float64)
    truths = [truth(c) for c in range(k)]
    for c in range(k):
        t = truths[c]
        tps.append(t @ (pred == c).astype(np.float64))
        ps.append(t.sum(axis=1))
    tp, p = np.stack(tps, axis=1), np.stack(ps, axis=1)   # (B, k)
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(pp > 0, tp / pp, 0.0)
        rec = np.where(p > 0, tp / p, 0.0)
        f1 = np.where(p + pp > 0, 2 * tp / (p + pp), 0.0)
        neg = n - p
        spec = np.where(neg > 0, (n - p - pp + tp) / np.where(neg > 0, neg, 1.0), 0.0)
    present = (p > 0) | (pp > 0)
    per = {"precision": prec, "recall": rec, "f1": f1, "specificity": spec}
    for m in metrics:
        if m == "accuracy":
            out[m] = tp.sum(axis=1) / n if n else np.full(len(tp), np.nan)
        elif m == "balanced_accuracy":
            out[m] = _mean_over(rec, p > 0)
        elif m in per:
            out[m] = per[m][:, pos] if pos is not None else _mean_over(per[m], present)
    ranking = [m for m in metrics if m in _RANKING]
    if ranking:
        if scores is None:
            for m in ranking:
                out[m] = np.full(len(tp), np.nan)
        else:
            cols = [pos] if binary and pos is not None else range(k)
            curves = [_curve(truths[c], scores[:, c]) for c in cols]
            auc = np.stack([a for a, _ in curves], axis=1)
            ap = np.stack([b for _, b in curves], axis=1)
            if "roc_auc" in ranking:
                out["roc_auc"] = _mean_over(np.nan_to_num(auc), np.isfinite(auc))
            if "average_precision" in ranking:
                out["average_precision"] = _mean_over(np.nan_to_num(ap), np.isfinite(ap))
    return {m: out[m] for m in metrics if m in out}


class CBPE(Composite):
    """Expected classification metrics of each window from calibrated scores, with Monte-Carlo
    bands, against the reference's realised values.

    Parameters
    ----------
    reference : Reference
        Needs labels and the model's scores (columns in ``reference.classes`` order).
    positive_label : str, optional
        Positive class of a binary model (see :func:`detectors.performance.positive_class`).
    metrics : sequence of str, optional
        Metrics to estimate and alert on, among :data:`CBPE_METRICS` (default: all).
    alpha : float
        One-sided level of the drop test.
    min_degradation : float
        Smallest drop of an estimate below the reference's value that matters (absolute).
    min_n : int
        Windows with fewer scored predictions are not judged.
    history : int
        Windows kept with their estimate, for the realised metrics to join.
    resolve_after : int
        Clean windows before an alert resolves.
    draws : int
        Monte-Carlo label draws per window for the bands.
    seed : int
        Seed of the draws (combined with each window's bounds).
    """

    _params = ("reference", "positive_label", "alpha", "min_degradation", "min_n", "history",
               "resolve_after", "model", "metrics", "draws", "seed")

    _derived: ClassVar[tuple[str, ...]] = ("_learned",)

    def __init__(
        self,
        reference: Reference,
        positive_label: str | None = None,
        alpha: float = 0.001,
        min_degradation: float = 0.02,
        min_n: int = 30,
        history: int = 50,
        resolve_after: int = 2,
        model: str | None = None,
        metrics: Sequence[str] | None = None,
        draws: int = 200,
        seed: int = 0,
        learn_min_labels: int = 50,
    ) -> None:
        if reference.task != "classification" or reference.scores is None or reference.label is None:
            raise ValueError("CBPE needs a classification reference with labels and scores")
        metrics = tuple(metrics) if metrics else CBPE_METRICS
        bad = sorted(set(metrics) - set(CBPE_METRICS))
        if bad:
            raise ValueError(f"CBPE cannot estimate {bad}; choose from {CBPE_METRICS}")
        self.reference = reference
        self.positive_label = positive_label
        self.alpha = float(alpha)
        self.min_degradation = float(min_degradation)
        self.min_n = int(min_n)
        self.history = int(history)
        self.resolve_after = int(resolve_after)
        self.model = model
        self.metrics = metrics
        self.draws = int(draws)
        self.seed = int(seed)
        self.learn_min_labels = int(learn_min_labels)
        self.classes = list(reference.classes)
        self._pos = positive_class(self.classes, positive_label)
        y = reference.label
        s = reference.scores
        if self._pos is not None and len(self.classes) == 2:
            k = self.classes.index(self._pos)
            self._knots = [fit_isotonic(s[:, k], y == self._pos)]
        else:
            self._knots = [fit_isotonic(s[:, k], y == c) for k, c in enumerate(self.classes)]
        self._book = dec.AlertBook(self.resolve_after)
        self._history: list[dict[str, Any]] = []
        self._early: dict[str, np.ndarray] | None = None   # labels before their window (hold_early)
        self._last: dict[str, Any] = {}
        self._learned: dict[tuple[Any, ...], dict[str, Any] | None] = {}   # _learn's cache (derived)
        self._fit_baseline()

    def _fit_baseline(self) -> None:
        """The reference's realised metrics (the baselines), their standard errors (Monte Carlo
        under the calibrated probabilities) and its expected metrics."""
        ref = self.reference
        y, s, pred = ref.label, ref.scores, ref.prediction
        assert y is not None and s is not None and pred is not None  # checked in __init__; prediction derived
        usable = np.isfinite(s).any(axis=1)
        m = int(usable.sum())
        yi, pi = self._index(y[usable]), self._index(pred[usable])
        rank = _rank_scores(s[usable])
        real = self._realised(yi, pi, rank)
        acc = float(np.mean(pred[usable] == y[usable])) if m else float("nan")
        self.baseline_accuracy = acc
        self._base_se = float(np.sqrt(acc * (1 - acc) / m)) if m else 0.0
        self.baseline = {k: v for k, v in real.items()}
        if "accuracy" in self.baseline:
            self.baseline["accuracy"] = acc
        cal = self.calibrated(s[usable]) if m else np.zeros((0, len(self.classes)))
        exp = self._estimate(cal, pi, rank)
        self.reference_expected = exp
        self.reference_expected_accuracy = self.expected(pred[usable], s[usable])[0]
        draws = self._draws(cal, pi, rank, np.random.default_rng([self.seed, 1]), min(self.draws, 100))
        self.baseline_se = {k: (self._base_se if k == "accuracy" else _std(v)) for k, v in draws.items()}

    def _rebuild(self) -> None:
        """After a restore: the learning cache, and what snapshots of the accuracy-only CBPE lack."""
        self._learned = {}
        self.__dict__.setdefault("_early", None)       # snapshots from before the early labels
        if "baseline" not in self.__dict__:
            self.metrics = ("accuracy",)
            self.draws, self.seed = 200, 0
            self._fit_baseline()

    # ------------------------------------------------------------------ estimate
    def calibrated(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities ``(n, k)`` (rows sum to 1)."""
        s = np.asarray(scores, dtype=np.float64)
        if len(self._knots) == 1:
            k = self.classes.index(self._pos)  # type: ignore[arg-type]  # _pos is set for binary tasks, the only ones with one knot list
            p = np.clip(apply_isotonic(s[:, k], self._knots[0]), 0, 1)
            out = np.empty_like(s)
            out[:, k] = p
            out[:, 1 - k] = 1 - p
            return out
        cal = np.column_stack([apply_isotonic(s[:, k], kn) for k, kn in enumerate(self._knots)])
        cal = np.where(np.isfinite(cal), cal, 0.0)
        tot = cal.sum(axis=1, keepdims=True)
        return np.where(tot > 0, cal / np.where(tot > 0, tot, 1), 1.0 / len(self.classes))

    def expected(self, prediction: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
        """Expected accuracy of predictions and its standard error."""
        if len(prediction) == 0:
            return float("nan"), float("nan")
        cal = self.calibrated(scores)
        col = self._index(prediction)
        p = np.where(col >= 0, cal[np.arange(len(col)), np.maximum(col, 0)], 0.0)
        n = len(p)
        return float(p.mean()), float(np.sqrt(np.sum(p * (1 - p))) / n)

    def _index(self, values: np.ndarray) -> np.ndarray:
        """Class index of each value (``-1``: not a class)."""
        import pandas as pd

        return np.asarray(pd.Index(self.classes, dtype=object).get_indexer(
            np.asarray(values, dtype=object).astype(str).astype(object)), dtype=np.int64)

    def _args(self) -> tuple[int, int | None, bool]:
        k = len(self.classes)
        pos = self.classes.index(self._pos) if self._pos is not None and self._pos in self.classes else None
        return k, pos, k == 2

    def _estimate(self, cal: np.ndarray, pred: np.ndarray, rank: np.ndarray) -> dict[str, float]:
        k, pos, binary = self._args()
        if len(pred) == 0:
            return {m: float("nan") for m in self.metrics}
        d = metric_draws(lambda c: cal[None, :, c], pred, rank, k, pos, self.metrics, binary)
        return {m: float(v[0]) for m, v in d.items()}

    def _realised(self, y: np.ndarray, pred: np.ndarray, rank: np.ndarray | None) -> dict[str, float]:
        """The metrics given the true class indices ``y`` (rows of unknown class left out)."""
        k, pos, binary = self._args()
        ok = y >= 0
        y, pred = y[ok], pred[ok]
        rank = rank[ok] if rank is not None else None
        if len(y) == 0:
            return {m: float("nan") for m in self.metrics}
        d = metric_draws(_one_hot(y[None]), pred, rank, k, pos, self.metrics, binary)
        return {m: float(v[0]) for m, v in d.items()}

    def _draws(self, cal: np.ndarray, pred: np.ndarray, rank: np.ndarray, rng: np.random.Generator,
               draws: int) -> dict[str, np.ndarray]:
        """The metrics on ``draws`` label vectors sampled from the calibrated probabilities."""
        k, pos, binary = self._args()
        n = len(pred)
        if n == 0 or draws <= 0:
            return {m: np.empty(0) for m in self.metrics}
        if binary and pos is not None:   # best first, so the one ranking curve needs no gather
            order = np.argsort(-rank[:, pos], kind="stable")
            cal, pred, rank = cal[order], pred[order], rank[order]
        cum = np.cumsum(cal, axis=1)[:, :-1]
        block = max(1, min(draws, _BLOCK // max(n * k, 1)))
        parts: list[dict[str, np.ndarray]] = []
        for start in range(0, draws, block):
            b = min(block, draws - start)
            u = rng.random((b, n))
            lab = (u[:, :, None] >= cum[None]).sum(axis=2)   # class index per row and draw
            parts.append(metric_draws(_one_hot(lab), pred, rank, k, pos, self.metrics, binary))
        return {m: np.concatenate([p[m] for p in parts]) for m in parts[0]}

    def _rng(self, window: Window, n: int) -> np.random.Generator:
        """The draws' generator: from ``seed`` and the window, so a replay draws the same."""
        a = 0 if window.start_ts is None else int(window.start_ts) & _U64
        b = 0 if window.end_ts is None else int(window.end_ts) & _U64
        return np.random.default_rng([self.seed, 2, a, b, int(n)])

    def estimate(self, window: Window, prediction: np.ndarray, scores: np.ndarray) -> dict[str, dict[str, Any]]:
        """Per metric, the window's estimate, its 95% Monte-Carlo band and standard error
        (rows without any finite score are left out)."""
        usable = np.isfinite(scores).any(axis=1)
        s = np.asarray(scores, dtype=np.float64)[usable]
        pred = self._index(np.asarray(prediction)[usable])
        cal = self.calibrated(s)
        rank = _rank_scores(s)
        est = self._estimate(cal, pred, rank)
        draws = self._draws(cal, pred, rank, self._rng(window, len(pred)), self.draws)
        out: dict[str, dict[str, Any]] = {}
        for m in self.metrics:
            se = _std(draws[m])
            if m == "accuracy" and len(pred):
                se = self.expected(np.asarray(prediction)[usable], s)[1]
            lo, hi = max(0.0, est[m] - _Z95 * se), min(1.0, est[m] + _Z95 * se)
            out[m] = {"value": est[m], "ci": [lo, hi], "se": se}
        return out

    # ------------------------------------------------------------------ update
    def update(
        self, window: Window, prediction: np.ndarray, scores: np.ndarray | None, model_version: str | None = None
    ) -> list[Detection]:
        """Estimate one window of predictions; return new, escalated or resolved alerts."""
        if scores is None:
            return []
        usable = np.isfinite(scores).any(axis=1)
        n = int(usable.sum())
        if n < self.min_n:
            return []
        estimates = self.estimate(window, prediction, scores)
        judged: dict[str, dict[str, Any]] = {}
        for m in self.metrics:
            judged[m] = self._judge(m, estimates[m])
        entry: dict[str, Any] = {"start_ts": window.start_ts, "end_ts": window.end_ts, "n": n,
                                 "window_n": int(window.n) if window.n is not None else n,
                                 "metrics": {m: {"value": j["value"], "ci": j["ci"]} for m, j in judged.items()},
                                 "realised_n": 0, "realised_correct": 0, "realised": None, "rows": None}
        if "accuracy" in judged:
            a = judged["accuracy"]
            entry.update({"estimated_accuracy": a["value"], "ci": a["ci"], "se": a["se"], "p_value": a["p_value"],
                          "degraded": a["degraded"]})
        self._history.append(entry)
        if len(self._history) > self.history:
            self._history = self._history[-self.history:]
        if window.start_ts is not None and window.end_ts is not None:   # labels that came before it
            covered, self._early = release_early(self._early, int(window.start_ts), int(window.end_ts))
            if covered is not None:
                self._join(entry, covered)
        self._last = {k: v for k, v in entry.items() if k not in ("rows", "realised", "realised_n",
                                                                  "realised_correct", "window_n")}
        self._last["metrics"] = judged
        out: list[Detection] = []
        for m in self.metrics:
            det = self._alert(m, judged[m], window, n, model_version)
            if det is not None:
                out.append(det)
        return out

    def _judge(self, m: str, e: dict[str, Any]) -> dict[str, Any]:
        """One estimate against the reference's value: drop, p-value, whether it degraded."""
        est, (lo, hi), se_est = e["value"], e["ci"], e["se"]
        b = self.baseline.get(m, float("nan"))
        se = float(np.hypot(se_est, self.baseline_se.get(m, 0.0)))
        drop = b - est
        if not np.isfinite(drop):
            p, breach = 1.0, False
        else:
            p = float(norm.sf(drop / se)) if se > 0 else (0.0 if drop > 0 else 1.0)
            breach = bool(p < self.alpha and drop >= self.min_degradation and b > hi)
        return {"value": est, "ci": [lo, hi], "se": se_est, "baseline": b, "baseline_se": self.baseline_se.get(m, 0.0),
                "reference_expected": self.reference_expected.get(m), "drop": drop, "p_value": p,
                "threshold": b - self.min_degradation, "degraded": breach}

    def _alert(self, m: str, j: dict[str, Any], window: Window, n: int, model_version: str | None) -> Detection | None:
        breach, drop = j["degraded"], j["drop"]
        severity = "critical" if breach and drop >= 2.5 * self.min_degradation else "warning"
        before = self._book.severity(m)
        change = self._book.update(m, breach, severity)
        if change is None:
            return None
        firing = change != "resolve"
        est, b, p = j["value"], j["baseline"], j["p_value"]
        lo, hi = j["ci"]
        name = _NAMES[m]
        if firing:
            summary = (f"estimated {name} dropped to {est:.2f} (95% band {lo:.2f}–{hi:.2f}, {dec.format_p(p)}) over "
                       f"the last {n:,} predictions, from {b:.2f} on the reference; labels have not arrived yet "
                       f"(confidence-based estimate from the scores).")
        else:
            summary = (f"estimated {name} is back to {est:.2f} (95% band {lo:.2f}–{hi:.2f}) over the last {n:,} "
                       f"predictions (reference {b:.2f}).")
        evidence: dict[str, Any] = {
            "metric": m, "estimate": est, "ci": [lo, hi], "band_method": f"monte_carlo_{self.draws}",
            "baseline": b, "baseline_se": j["baseline_se"], "reference_expected": j["reference_expected"],
            "se": j["se"], "alpha": self.alpha, "min_degradation": self.min_degradation, "window_n": n,
            "reference_n": self.reference.n}
        if m == "accuracy":
            evidence.update({"baseline_accuracy": b, "reference_expected_accuracy": self.reference_expected_accuracy})
        return Detection(
            kind="performance", detector=f"cbpe_{m}", feature=None, statistic=est, p_value=p,
            threshold=b - self.min_degradation, window=window, firing=firing,
            severity=severity if firing else (before or "warning"),  # type: ignore[arg-type]  # str from AlertBook; always a Severity value
            effect_size=drop, summary=summary, model=self.model, model_version=model_version, evidence=evidence,
        )

    # ------------------------------------------------------------------ labels
    def update_labels(
        self,
        ts: np.ndarray,
        correct: np.ndarray,
        label: np.ndarray | None = None,
        prediction: np.ndarray | None = None,
        scores: np.ndarray | None = None,
    ) -> None:
        """Join realised outcomes to the estimated windows that cover them (by prediction time
        ``ts``). ``correct`` gives the realised accuracy; with ``label`` and ``prediction``
        (and ``scores``, columns in class order, for ROC AUC and average precision) every metric
        is realised. A window keeps its labelled rows until all its predictions are labelled,
        then only the realised metrics. Labels of predictions no estimated window covers yet
        (their window is still filling) are held until it is estimated
        (:func:`detectors.label_learning.hold_early`)."""
        if len(ts) == 0:
            return
        rows: dict[str, np.ndarray] = {"ts": np.asarray(ts, dtype=np.int64), "correct": np.asarray(correct, dtype=bool)}
        if label is not None and prediction is not None:
            rows["y"], rows["pred"] = self._index(np.asarray(label)), self._index(np.asarray(prediction))
            rows["scores"] = (np.full((len(rows["ts"]), len(self.classes)), np.nan) if scores is None
                              else np.asarray(scores, dtype=np.float64))
        for h in self._history:
            if h["start_ts"] is None:
                continue
            inside = (rows["ts"] >= h["start_ts"]) & (rows["ts"] <= h["end_ts"])
            if inside.any():
                self._join(h, {k: v[inside] for k, v in rows.items()})
        newest = self._history[-1]["start_ts"] if self._history else None
        self._early = hold_early(self._early, rows, newest)

    def _join(self, h: dict[str, Any], rows: Mapping[str, np.ndarray]) -> None:
        """Add the labelled ``rows`` of window ``h`` (``y``, ``pred``, ``scores``: absent when
        only the accuracy is known) to its realised counts and rows; when every prediction of
        it is labelled, keep only the realised metrics."""
        h["realised_n"] += len(rows["ts"])
        h["realised_correct"] += int(rows["correct"].sum())
        if "y" not in rows or "metrics" not in h or h.get("realised") is not None:
            return
        old = h.get("rows") or {"ts": np.zeros(0, np.int64), "y": np.zeros(0, np.int64),
                                "pred": np.zeros(0, np.int64), "scores": np.zeros((0, len(self.classes)))}
        h["rows"] = in_time_order({k: np.concatenate([old.get(k, np.zeros(0, np.int64)), rows[k]])
                                   for k in ("ts", "y", "pred", "scores")})
        if h["realised_n"] >= h.get("window_n", h["n"]):
            h["learning"] = self._learn(h, first_checkpoint=True)    # for the track record
            h["realised"] = self._realised_rows(h["rows"])
            h["rows"] = None

    # ------------------------------------------------------------------ learning from the first labels
    def rectify(self, estimates: dict[str, dict[str, Any]], label: np.ndarray, prediction: np.ndarray,
                scores: np.ndarray, rng: np.random.Generator,
                priors: Mapping[str, ErrorPrior | None] | None = None) -> dict[str, dict[str, Any]]:
        """The window's ``estimates`` corrected by what its first labelled rows show.

        ``label``, ``prediction`` and ``scores`` are the labelled rows. Per metric the
        correction is (realised − estimated) on those rows, its noise ``s`` the metric's
        Monte-Carlo spread on them; :func:`detectors.label_learning.learned_bias` decides how
        much of it to apply, given ``priors`` (per metric, where the label-free error has been
        on the last fully labelled windows: :meth:`error_priors`). Under concept shift the
        calibrated probabilities are wrong on the labelled rows as on the others, and the
        correction removes that bias. ``correction`` says how far the label-free estimate was
        off on the labelled rows, ``weight`` how much of it was applied, ``bias`` what was added.
        """
        y, pred = self._index(np.asarray(label)), self._index(np.asarray(prediction))
        s = np.asarray(scores, dtype=np.float64)
        ok = (y >= 0) & np.isfinite(s).any(axis=1)
        y, pred, s = y[ok], pred[ok], s[ok]
        if len(y) < self.learn_min_labels:
            return {}
        cal, rank = self.calibrated(s), _rank_scores(s)
        est_l, real_l = self._estimate(cal, pred, rank), self._realised(y, pred, rank)
        spread = self._draws(cal, pred, rank, rng, self.draws)
        out: dict[str, dict[str, Any]] = {}
        for m, e in estimates.items():
            corr = real_l.get(m, float("nan")) - est_l.get(m, float("nan"))
            if not np.isfinite(corr):
                continue
            bias, weight, extra = learned_bias(float(corr), _std(spread[m]), (priors or {}).get(m))
            value = float(np.clip(e["value"] + bias, 0.0, 1.0))
            se = float(np.hypot(e.get("se") or 0.0, extra))
            out[m] = {"value": value, "ci": [max(0.0, value - _Z95 * se), min(1.0, value + _Z95 * se)], "se": se,
                      "correction": float(corr), "weight": float(weight), "bias": float(bias),
                      "labelled": int(len(y))}
        return out

    def error_priors(self, before: int | None = None) -> dict[str, ErrorPrior | None]:
        """Per metric, where the label-free estimate's error (realised − estimate) has been on
        the fully labelled windows kept (those before position ``before`` of the history)."""
        done = [h for h in self._history[:before] if h.get("realised")]
        return {m: error_prior([h["realised"].get(m, float("nan")) - h["metrics"][m]["value"]
                                for h in done if m in (h.get("metrics") or {})]) for m in self.metrics}

    def estimate_with_labels(self, window: Window, prediction: np.ndarray, scores: np.ndarray,
                             label: np.ndarray) -> dict[str, dict[str, Any]]:
        """A window's estimates with the labels known so far (``label``: ``None`` where not yet):
        :meth:`estimate`, then :meth:`rectify` on the labelled rows with the track record of
        the fully labelled windows kept (the plain estimate while fewer than
        ``learn_min_labels`` are labelled)."""
        est = self.estimate(window, prediction, scores)
        known = np.array([v is not None and v == v for v in np.asarray(label, dtype=object)], dtype=bool)
        fixed = self.rectify(est, np.asarray(label, dtype=object)[known], np.asarray(prediction)[known],
                             np.asarray(scores, dtype=np.float64)[known], self._rng(window, int(known.sum())),
                             self.error_priors())
        return {m: fixed.get(m, e) for m, e in est.items()}

    def _learn(self, h: dict[str, Any], *, first_checkpoint: bool = False) -> dict[str, Any] | None:
        """A window's learning estimate from its labelled rows (held in prediction-time order,
        so it is a function of the events, whatever the batches that brought the labels: the
        detectors' state must be, for replay = live and the SIGKILL and chaos comparisons). At
        checkpoints: every tenth of the window, at least ``learn_min_labels`` rows, the last
        one reached (``first_checkpoint``: the first one, the estimate with a tenth labelled,
        kept once the window is complete for :meth:`track_record`)."""
        rows = h.get("rows")
        if not rows or "metrics" not in h:
            return None
        n = max(int(h.get("window_n", h["n"])), 1)
        c = checkpoint(n, len(rows["y"]), self.learn_min_labels, first=first_checkpoint)
        if c is None:
            return None
        # the track record it learns from: the fully labelled windows before it
        at = next(i for i, w in enumerate(self._history) if w is h)
        record = tuple((w["start_ts"], w["end_ts"]) for w in self._history[:at] if w.get("realised"))
        # status() reads it after every judgement: computed again only when its inputs changed,
        # the first c rows among them (labels still arriving add rows, maybe before the c-th)
        key = (h["start_ts"], h["end_ts"], n, c, _digest(rows, c), record[-RECENT_WINDOWS:])
        if key not in self._learned:
            pending = {(w["start_ts"], w["end_ts"]) for w in self._history if w.get("rows") is not None}
            self._learned = {k: v for k, v in self._learned.items() if k[:2] in pending and k[:3] != key[:3]}
            self._learned[key] = self._rectify_first(h, rows, c, n, self.error_priors(at))
        return self._learned[key]

    def _rectify_first(self, h: dict[str, Any], rows: dict[str, np.ndarray], c: int, n: int,
                       priors: Mapping[str, ErrorPrior | None]) -> dict[str, Any] | None:
        """The learning estimate of a window from its first ``c`` labelled rows."""
        y = rows["y"][:c]
        labels = np.asarray(self.classes, dtype=object)[np.clip(y, 0, None)]
        labels[y < 0] = None
        preds = np.asarray(self.classes, dtype=object)[np.clip(rows["pred"][:c], 0, None)]
        fixed = self.rectify(h["metrics"], labels, preds, rows["scores"][:c],
                             np.random.default_rng([self.seed, 3, c, n]), priors)
        return {"share_labelled": c / n, "rows": c, "metrics": fixed} if fixed else None

    def track_record(self) -> dict[str, dict[str, Any]]:
        """How far the estimates were from the realised metrics, over the windows fully labelled
        (so on-call can see how far to trust the current ones): per metric the mean absolute
        error of the label-free estimate and of the learning estimate with a tenth of the
        window labelled (its first checkpoint), and the windows counted."""
        return track_record((h.get("metrics") or {}, h.get("realised"),
                             (h.get("learning") or {}).get("metrics") or {}) for h in self._history)

    def _realised_rows(self, rows: dict[str, np.ndarray]) -> dict[str, float]:
        """Realised metrics of joined rows: threshold metrics on all, ranking metrics on the rows
        with scores."""
        y, pred, s = rows["y"], rows["pred"], rows["scores"]
        out = self._realised(y, pred, None)
        ranked = [m for m in self.metrics if m in _RANKING]
        usable = np.isfinite(s).any(axis=1)
        if ranked:
            r = self._realised(y[usable], pred[usable], _rank_scores(s[usable])) if usable.any() else {}
            for m in ranked:
                out[m] = r.get(m, float("nan"))
        return out

    def history_table(self) -> list[dict[str, Any]]:
        """Each kept window: per metric the estimate, its band and (so far) the realised value
        (``metrics``: ``{m: {"value", "ci", "realised"}}``), and the accuracy-only fields."""
        out = []
        for h in self._history:
            row = {k: v for k, v in h.items() if k not in ("rows", "realised", "metrics")}
            row["realised_accuracy"] = h["realised_correct"] / h["realised_n"] if h["realised_n"] else None
            real = h.get("realised")
            if real is None and h.get("rows") is not None:
                real = self._realised_rows(h["rows"])
            metrics = {}
            for m, e in (h.get("metrics") or {}).items():
                v = (real or {}).get(m)
                if m == "accuracy" and v is None:
                    v = row["realised_accuracy"]
                metrics[m] = {"value": e["value"], "ci": list(e["ci"]),
                              "realised": None if v is None or not np.isfinite(v) else float(v)}
            row["metrics"] = metrics
            learning = (h.get("learning") if h.get("realised") else self._learn(h)) or {}
            row["share_labelled"] = (1.0 if h.get("realised") else
                                     len((h.get("rows") or {}).get("y", ())) / max(int(h.get("window_n", h["n"])), 1))
            row["learning_share"] = learning.get("share_labelled")
            for m, e in (learning.get("metrics") or {}).items():
                if m in metrics:
                    metrics[m]["learning"] = {"value": e["value"], "ci": list(e["ci"]), "labelled": e["labelled"]}
            out.append(row)
        return out

    def last(self) -> dict[str, Any]:
        """The newest window's estimates, and the ``track_record`` of the past ones."""
        return {**self._last, "track_record": self.track_record()} if self._last else {}

    def firing(self) -> list[str]:
        return self._book.firing()


def _digest(rows: Mapping[str, np.ndarray], c: int) -> bytes:
    """A fingerprint of the first ``c`` of a window's labelled rows (every column)."""
    h = hashlib.blake2b(digest_size=16)
    for k in sorted(rows):
        h.update(np.ascontiguousarray(rows[k][:c]).tobytes())
    return h.digest()


def _one_hot(labels: np.ndarray) -> Callable[[int], np.ndarray]:
    """``truth`` of :func:`metric_draws` from class indices ``(B, n)`` (booleans: the weights 0/1)."""
    def col(c: int) -> np.ndarray:
        return labels == c
    return col


def _std(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.std(x, ddof=1)) if len(x) > 1 else 0.0
