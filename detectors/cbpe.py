"""Label-free performance estimate while labels are late (confidence-based, CBPE-style).

A classifier's scores, once calibrated, say how likely each prediction is to be right: the
expected accuracy of a window is the mean calibrated probability of the predicted class
(NannyML's confidence-based performance estimation). :class:`CBPE` calibrates the scores on
the reference (isotonic regression per class, one-vs-rest, on the reference's scores and
labels), estimates every window's accuracy with a standard error
(``sqrt(sum p (1 - p)) / n``, the spread of the realised accuracy if the calibrated
probabilities are right), alerts when the estimate drops below the reference's accuracy, and
keeps each estimate beside the accuracy realised once the window's labels arrive.

The estimate holds when the relation between scores and correctness stays as on the
reference (covariate shift); it cannot see concept drift — that is what the realised metric
and the concept-drift detectors are for.

>>> import numpy as np
>>> from detectors.base import Window
>>> from detectors.reference import Reference
>>> rng = np.random.default_rng(0)
>>> p = rng.random(5000)
>>> y = np.where(rng.random(5000) < p, "1", "0").astype(object)   # calibrated scores
>>> ref = Reference({"x": p}, {"x": "numeric"}, label=y, scores=np.column_stack([1 - p, p]),
...                 classes=["0", "1"])
>>> est = CBPE(ref)
>>> round(est.baseline_accuracy, 2)
0.75
>>> hard = rng.uniform(0.3, 0.7, 2000)     # the live data moves to uncertain cases
>>> pred = np.where(hard > 0.5, "1", "0").astype(object)
>>> [d.summary.split(" (")[0] for d in est.update(Window(0, 1, 2000), pred, np.column_stack([1 - hard, hard]))]
['estimated accuracy dropped to 0.60']
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import norm
from sklearn.isotonic import IsotonicRegression

from detectors import decision as dec
from detectors.base import Detection, Window
from detectors.composite import Composite
from detectors.performance import positive_class
from detectors.reference import Reference

__all__ = ["CBPE", "fit_isotonic", "apply_isotonic"]


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


class CBPE(Composite):
    """Expected accuracy of each window from calibrated scores, against the reference's.

    Parameters
    ----------
    reference : Reference
        Needs labels and the model's scores (columns in ``reference.classes`` order).
    positive_label : str, optional
        Positive class of a binary model (see :func:`detectors.performance.positive_class`).
    alpha : float
        One-sided level of the drop test.
    min_degradation : float
        Smallest drop of expected accuracy that matters (absolute).
    min_n : int
        Windows with fewer scored predictions are not judged.
    history : int
        Windows kept with their estimate, for the realised accuracy to join.
    resolve_after : int
        Clean windows before an alert resolves.
    """

    _params = ("reference", "positive_label", "alpha", "min_degradation", "min_n", "history",
               "resolve_after", "model")

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
    ) -> None:
        if reference.task != "classification" or reference.scores is None or reference.label is None:
            raise ValueError("CBPE needs a classification reference with labels and scores")
        self.reference = reference
        self.positive_label = positive_label
        self.alpha = float(alpha)
        self.min_degradation = float(min_degradation)
        self.min_n = int(min_n)
        self.history = int(history)
        self.resolve_after = int(resolve_after)
        self.model = model
        self.classes = list(reference.classes)
        self._pos = positive_class(self.classes, positive_label)
        y = reference.label
        s = reference.scores
        if self._pos is not None and len(self.classes) == 2:
            k = self.classes.index(self._pos)
            self._knots = [fit_isotonic(s[:, k], y == self._pos)]
        else:
            self._knots = [fit_isotonic(s[:, k], y == c) for k, c in enumerate(self.classes)]
        pred = reference.prediction
        assert pred is not None  # derived from the scores when absent
        usable = np.isfinite(s).any(axis=1)
        acc = float(np.mean(pred[usable] == y[usable])) if usable.any() else float("nan")
        m = int(usable.sum())
        self.baseline_accuracy = acc
        self._base_se = float(np.sqrt(acc * (1 - acc) / m)) if m else 0.0
        exp_ref, _ = self.expected(pred[usable], s[usable])
        self.reference_expected_accuracy = exp_ref
        self._book = dec.AlertBook(self.resolve_after)
        self._history: list[dict[str, Any]] = []
        self._last: dict[str, Any] = {}

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
        import pandas as pd

        col = pd.Index(self.classes, dtype=object).get_indexer(np.asarray(prediction, dtype=object))
        p = np.where(col >= 0, cal[np.arange(len(col)), np.maximum(col, 0)], 0.0)
        n = len(p)
        return float(p.mean()), float(np.sqrt(np.sum(p * (1 - p))) / n)

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
        est, se_est = self.expected(prediction[usable], scores[usable])
        b = self.baseline_accuracy
        se = float(np.hypot(se_est, self._base_se))
        drop = b - est
        p = float(norm.sf(drop / se)) if se > 0 else (0.0 if drop > 0 else 1.0)
        breach = bool(p < self.alpha and drop >= self.min_degradation)
        severity = "critical" if breach and drop >= 2.5 * self.min_degradation else "warning"
        z = float(norm.isf(0.025))
        entry = {"start_ts": window.start_ts, "end_ts": window.end_ts, "n": n, "estimated_accuracy": est,
                 "ci": [est - z * se_est, est + z * se_est], "se": se_est, "p_value": p, "degraded": breach,
                 "realised_n": 0, "realised_correct": 0}
        self._history.append(entry)
        if len(self._history) > self.history:
            self._history = self._history[-self.history:]
        self._last = dict(entry)
        before = self._book.severity("accuracy")
        change = self._book.update("accuracy", breach, severity)
        if change is None:
            return []
        firing = change != "resolve"
        lo, hi = entry["ci"]  # type: ignore[misc]  # the (low, high) pair stored a few lines up
        if firing:
            summary = (f"estimated accuracy dropped to {est:.2f} (95% CI {lo:.2f}–{hi:.2f}, {dec.format_p(p)}) over the "
                       f"last {n:,} predictions, from {b:.2f} on the reference; labels have not arrived yet "
                       f"(confidence-based estimate from the scores).")
        else:
            summary = (f"estimated accuracy is back to {est:.2f} (95% CI {lo:.2f}–{hi:.2f}) over the last {n:,} "
                       f"predictions (reference {b:.2f}).")
        return [Detection(
            kind="performance", detector="cbpe_accuracy", feature=None, statistic=est, p_value=p,
            threshold=b - self.min_degradation, window=window, firing=firing,
            severity=severity if firing else (before or "warning"),  # type: ignore[arg-type]  # str from AlertBook; always a Severity value
            effect_size=drop, summary=summary, model=self.model, model_version=model_version,
            evidence={"baseline_accuracy": b, "reference_expected_accuracy": self.reference_expected_accuracy,
                      "se": se_est, "ci": [lo, hi], "alpha": self.alpha, "min_degradation": self.min_degradation,
                      "window_n": n, "reference_n": self.reference.n},
        )]

    def update_labels(self, ts: np.ndarray, correct: np.ndarray) -> None:
        """Join realised outcomes (``correct`` per labelled prediction, at its prediction
        time ``ts``) to the estimated windows that cover them."""
        if not self._history or len(ts) == 0:
            return
        ts = np.asarray(ts, dtype=np.int64)
        correct = np.asarray(correct, dtype=bool)
        for h in self._history:
            if h["start_ts"] is None:
                continue
            inside = (ts >= h["start_ts"]) & (ts <= h["end_ts"])
            if inside.any():
                h["realised_n"] += int(inside.sum())
                h["realised_correct"] += int(correct[inside].sum())

    def history_table(self) -> list[dict[str, Any]]:
        """Each kept window: estimate, interval and (so far) realised accuracy."""
        out = []
        for h in self._history:
            row = dict(h)
            row["realised_accuracy"] = h["realised_correct"] / h["realised_n"] if h["realised_n"] else None
            out.append(row)
        return out

    def last(self) -> dict[str, Any]:
        return dict(self._last)

    def firing(self) -> list[str]:
        return self._book.firing()
