"""Model performance on joined labels, per window, with confidence intervals.

Metric values come from :mod:`sklearn.metrics`: accuracy, precision, recall, F1, ROC AUC and
log loss for classifiers (binary or multiclass, labels of any text), MAE, RMSE and R² for
regressors. Confidence intervals come from a Poisson bootstrap computed in one shot: the
metrics are re-implemented here as weighted sums (:func:`weighted_metrics`), so ``B``
resamples cost a ``(B, n)`` matrix product, not ``B`` sklearn calls; with unit weights they
equal sklearn's values (the tests check it).

:class:`PerformanceDrift` compares each labelled window with the model's baseline: the same
metrics on the reference sample (which then needs the model's predictions, and scores for
ROC AUC and log loss), or else on the first labelled window. A metric has degraded when the
drop is significant (one-sided ``p < alpha`` with the window's and the baseline's bootstrap
standard errors) and at least ``min_degradation`` (absolute for bounded metrics, relative for
error metrics).

>>> import numpy as np
>>> y = np.array(["a", "b", "a", "a"], dtype=object)
>>> yhat = np.array(["a", "b", "b", "a"], dtype=object)
>>> metric_values("classification", y, yhat, None, ["a", "b"], metrics=("accuracy", "f1"))
{'accuracy': 0.75, 'f1': 0.6666666666666666}
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy.stats import norm
from sklearn import metrics as skm

from detectors import decision as dec
from detectors._threads import one_thread
from detectors.base import Detection, Window
from detectors.composite import Composite
from detectors.reference import Reference

__all__ = [
    "CLASSIFICATION_METRICS",
    "REGRESSION_METRICS",
    "HIGHER_IS_BETTER",
    "DEFAULT_MIN_DEGRADATION",
    "positive_class",
    "metric_values",
    "weighted_metrics",
    "PerformanceDrift",
]

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("mae", "rmse", "r2")
HIGHER_IS_BETTER = {"accuracy": True, "precision": True, "recall": True, "f1": True, "roc_auc": True,
                    "log_loss": False, "mae": False, "rmse": False, "r2": True}
RELATIVE = ("log_loss", "mae", "rmse")  # error metrics: degradation is relative to the baseline
DEFAULT_MIN_DEGRADATION = {"accuracy": 0.02, "precision": 0.02, "recall": 0.02, "f1": 0.02,
                           "roc_auc": 0.02, "log_loss": 0.05, "mae": 0.05, "rmse": 0.05, "r2": 0.02}
NEEDS_SCORES = ("roc_auc", "log_loss")
_NAMES = {"accuracy": "accuracy", "precision": "precision", "recall": "recall", "f1": "F1",
          "roc_auc": "ROC AUC", "log_loss": "log loss", "mae": "MAE", "rmse": "RMSE", "r2": "R²"}


def positive_class(classes: Sequence[str], positive_label: str | None = None) -> str | None:
    """The positive class of a binary problem: ``positive_label`` if given, else ``"1"`` /
    ``"True"`` / ``"yes"`` when present, else the last class in sorted order (sklearn's
    convention). ``None`` for multiclass.

    >>> positive_class(["0", "1"]), positive_class(["fraud", "ok"], "fraud"), positive_class(["a", "b", "c"])
    ('1', 'fraud', None)
    """
    if positive_label is not None:
        return str(positive_label)
    if len(classes) != 2:
        return None
    for cand in ("1", "True", "true", "yes", "positive"):
        if cand in classes:
            return cand
    return sorted(classes)[-1]


def _normalise_scores(scores: np.ndarray | None) -> np.ndarray | None:
    if scores is None:
        return None
    s = np.asarray(scores, dtype=np.float64)
    s = np.where(np.isfinite(s), np.clip(s, 0.0, 1.0), 0.0)
    tot = s.sum(axis=1, keepdims=True)
    k = s.shape[1]
    return np.where(tot > 0, s / np.where(tot > 0, tot, 1.0), 1.0 / max(k, 1))


def _usable_scores(scores: np.ndarray | None) -> np.ndarray:
    """Rows with at least one finite score."""
    if scores is None:
        return np.zeros(0, dtype=bool)
    return np.isfinite(scores).any(axis=1)


class _Labelled(NamedTuple):
    """A classifier's rows for :func:`metric_values`: labels and predictions as ``str``, scores
    renormalised (or ``None``), the class list and the positive class (``None``: macro average)."""

    y: np.ndarray
    yhat: np.ndarray
    scores: np.ndarray | None
    classes: Sequence[str]
    pos: str | None


def _labelled(y: np.ndarray, yhat: np.ndarray, scores: np.ndarray | None, classes: Sequence[str],
              positive: str | None) -> _Labelled:
    """Labels and predictions as ``str`` arrays, scores renormalised, the positive class resolved."""
    y = np.asarray(y, dtype=object).astype(str)
    yhat = np.asarray(yhat, dtype=object).astype(str)
    pos = positive_class(classes, positive) if len(classes) == 2 or positive else None
    return _Labelled(y, yhat, _normalise_scores(scores), classes, pos)


def _sk_accuracy(r: _Labelled) -> float | None:
    return float(skm.accuracy_score(r.y, r.yhat))


def _sk_by_class(fn: Callable[..., Any]) -> Callable[[_Labelled], float | None]:
    """Precision, recall or F1: of the positive class, else macro-averaged over the labels present."""
    def value(r: _Labelled) -> float | None:
        if r.pos is not None:
            return float(fn(r.y, r.yhat, labels=[r.pos], average="macro", zero_division=0))
        return float(fn(r.y, r.yhat, average="macro", zero_division=0))
    return value


def _sk_roc_auc(r: _Labelled) -> float | None:
    return _sk_auc(r.y, r.scores, r.classes, r.pos)


def _sk_log_loss(r: _Labelled) -> float | None:
    if r.scores is None or not set(r.y) <= set(r.classes):
        return None
    return float(skm.log_loss(r.y, y_proba=r.scores, labels=list(r.classes)))


def _sk_r2(y: np.ndarray, yhat: np.ndarray) -> float | None:
    return float(skm.r2_score(y, yhat)) if len(y) > 1 else None


#: sklearn's value of each classification metric.
_SK_CLASSIFICATION: dict[str, Callable[[_Labelled], float | None]] = {
    "accuracy": _sk_accuracy,
    "precision": _sk_by_class(skm.precision_score),
    "recall": _sk_by_class(skm.recall_score),
    "f1": _sk_by_class(skm.f1_score),
    "roc_auc": _sk_roc_auc,
    "log_loss": _sk_log_loss,
}
#: sklearn's value of each regression metric (rows with non-finite values already left out).
_SK_REGRESSION: dict[str, Callable[[np.ndarray, np.ndarray], float | None]] = {
    "mae": lambda y, yhat: float(skm.mean_absolute_error(y, yhat)),
    "rmse": lambda y, yhat: float(skm.root_mean_squared_error(y, yhat)),
    "r2": _sk_r2,
}


def _lookup(table: Mapping[str, Any], m: str, task: str) -> Any:
    fn = table.get(m)
    if fn is None:
        raise ValueError(f"unknown {task} metric {m!r}")
    return fn


def metric_values(
    task: str,
    y: np.ndarray,
    yhat: np.ndarray,
    scores: np.ndarray | None,
    classes: Sequence[str],
    positive: str | None = None,
    metrics: Sequence[str] | None = None,
) -> dict[str, float | None]:
    """Metric values with :mod:`sklearn.metrics` (``None`` where a metric is undefined).

    Binary precision, recall and F1 are those of the positive class; multiclass ones are
    macro-averaged over the labels present. ROC AUC is one-vs-rest, macro-averaged over the
    classes present with both outcomes. ``scores`` columns follow ``classes``; rows are
    renormalised to sum to 1.
    """
    metrics = tuple(metrics or (CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS))
    if len(y) == 0:
        return {m: None for m in metrics}
    if task == "regression":
        return _regression_values(y, yhat, metrics)
    rows = _labelled(y, yhat, scores, classes, positive)
    out: dict[str, float | None] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in metrics:
            out[m] = _lookup(_SK_CLASSIFICATION, m, "classification")(rows)
    return out


def _regression_values(y: np.ndarray, yhat: np.ndarray, metrics: Sequence[str]) -> dict[str, float | None]:
    """:func:`metric_values` of a regressor, on the rows where both values are finite."""
    y = np.asarray(y, dtype=np.float64)
    yhat = np.asarray(yhat, dtype=np.float64)
    ok = np.isfinite(y) & np.isfinite(yhat)
    y, yhat = y[ok], yhat[ok]
    out: dict[str, float | None] = {}
    for m in metrics:
        out[m] = None if len(y) == 0 else _lookup(_SK_REGRESSION, m, "regression")(y, yhat)
    return out


def _sk_auc(y: np.ndarray, s: np.ndarray | None, classes: Sequence[str], pos: str | None) -> float | None:
    if s is None:
        return None
    cls = list(classes)
    if pos is not None and len(cls) == 2:
        t = y == pos
        if t.all() or not t.any():
            return None
        return float(skm.roc_auc_score(t, s[:, cls.index(pos)]))
    aucs = []
    for k, c in enumerate(cls):
        t = y == c
        if t.any() and not t.all():
            aucs.append(skm.roc_auc_score(t, s[:, k]))
    return float(np.mean(aucs)) if aucs else None


# ---------------------------------------------------------------------------- weighted (bootstrap)
def _wauc(w: np.ndarray, truth: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Weighted ROC AUC per row of ``w`` (ties count one half), Mann–Whitney form."""
    order = np.argsort(score, kind="stable")
    s = score[order]
    starts = np.flatnonzero(np.concatenate([[True], s[1:] != s[:-1]]))
    wo = w[:, order]
    t = truth[order].astype(np.float64)
    pos_g = np.add.reduceat(wo * t, starts, axis=1)
    neg_g = np.add.reduceat(wo * (1.0 - t), starts, axis=1)
    below = np.cumsum(neg_g, axis=1) - neg_g
    p_tot = pos_g.sum(axis=1)
    n_tot = neg_g.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = np.sum(pos_g * (below + 0.5 * neg_g), axis=1) / (p_tot * n_tot)
    return np.where((p_tot > 0) & (n_tot > 0), auc, np.nan)


class _WeightedRows(NamedTuple):
    """The rows of :func:`weighted_metrics` with their weights ``w`` ``(B, n)`` and row sums
    ``tot``; regression keeps the errors ``e = yhat - y`` (``yhat`` unused), classification
    the :class:`_Labelled` fields (``scores`` as given: each metric renormalises them)."""

    w: np.ndarray
    tot: np.ndarray
    y: np.ndarray
    yhat: np.ndarray
    e: np.ndarray
    scores: np.ndarray | None
    classes: Sequence[str]
    pos: str | None


def _regression_rows(y: np.ndarray, yhat: np.ndarray, w: np.ndarray) -> _WeightedRows:
    """The rows where both values are finite, their weights and errors."""
    y = np.asarray(y, dtype=np.float64)
    yhat = np.asarray(yhat, dtype=np.float64)
    ok = np.isfinite(y) & np.isfinite(yhat)
    y, yhat, w = y[ok], yhat[ok], w[:, ok]
    return _WeightedRows(w, w.sum(axis=1), y, yhat, yhat - y, None, (), None)


def _classification_rows(y: np.ndarray, yhat: np.ndarray, scores: np.ndarray | None, classes: Sequence[str],
                         positive: str | None, w: np.ndarray) -> _WeightedRows:
    """Labels and predictions as ``str``, the positive class resolved."""
    tot = w.sum(axis=1)
    y = np.asarray(y, dtype=object).astype(str)
    yhat = np.asarray(yhat, dtype=object).astype(str)
    pos = positive_class(classes, positive) if len(classes) == 2 or positive else None
    return _WeightedRows(w, tot, y, yhat, np.empty(0), scores, classes, pos)


def _w_mae(r: _WeightedRows) -> np.ndarray:
    return (r.w @ np.abs(r.e)) / r.tot


def _w_rmse(r: _WeightedRows) -> np.ndarray:
    e = r.e
    return np.sqrt((r.w @ (e * e)) / r.tot)


def _w_r2(r: _WeightedRows) -> np.ndarray:
    w, y, e, tot = r.w, r.y, r.e, r.tot
    yc = y - (y.mean() if len(y) else 0.0)
    ss_res = w @ (e * e)
    ss_tot = w @ (yc * yc) - (w @ yc) ** 2 / tot
    r2 = 1.0 - ss_res / ss_tot
    return np.where(ss_tot > 0, r2, np.where(ss_res == 0, 1.0, 0.0))


def _w_accuracy(r: _WeightedRows) -> np.ndarray:
    correct = (r.y == r.yhat).astype(np.float64)
    return (r.w @ correct) / r.tot


def _w_class_counts(r: _WeightedRows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted true positives, predicted and true counts ``(B, labels)``: of the positive
    class, else of every label present."""
    w, y, yhat = r.w, r.y, r.yhat
    labels = [r.pos] if r.pos is not None else sorted(set(y.tolist()) | set(yhat.tolist()))
    tp = np.stack([w @ ((y == c) & (yhat == c)).astype(np.float64) for c in labels], axis=1)
    pred = np.stack([w @ (yhat == c).astype(np.float64) for c in labels], axis=1)
    true = np.stack([w @ (y == c).astype(np.float64) for c in labels], axis=1)
    return tp, pred, true


def _w_precision(r: _WeightedRows) -> np.ndarray:
    tp, pred, _ = _w_class_counts(r)
    return np.where(pred > 0, tp / pred, 0.0).mean(axis=1)


def _w_recall(r: _WeightedRows) -> np.ndarray:
    tp, _, true = _w_class_counts(r)
    return np.where(true > 0, tp / true, 0.0).mean(axis=1)


def _w_f1(r: _WeightedRows) -> np.ndarray:
    tp, pred, true = _w_class_counts(r)
    return np.where(pred + true > 0, 2 * tp / (pred + true), 0.0).mean(axis=1)


def _w_roc_auc(r: _WeightedRows) -> np.ndarray:
    s = _normalise_scores(r.scores)
    if s is None:
        return np.full(len(r.w), np.nan)
    w, y, cls = r.w, r.y, list(r.classes)
    if r.pos is not None and len(cls) == 2:
        return _wauc(w, y == r.pos, s[:, cls.index(r.pos)])
    per = [_wauc(w, y == c, s[:, k]) for k, c in enumerate(cls) if (y == c).any() and not (y == c).all()]
    return np.nanmean(np.stack(per), axis=0) if per else np.full(len(w), np.nan)


def _w_log_loss(r: _WeightedRows) -> np.ndarray:
    s = _normalise_scores(r.scores)
    y = r.y
    if s is None or not set(y.tolist()) <= set(r.classes):
        return np.full(len(r.w), np.nan)
    import pandas as pd

    col = pd.Index(list(r.classes), dtype=object).get_indexer(y.astype(object))
    eps = np.finfo(np.float64).eps
    p = np.clip(s[np.arange(len(y)), col], eps, 1 - eps)
    return (r.w @ -np.log(p)) / r.tot


#: The weighted form of each metric, one value per row of weights.
_WEIGHTED: dict[str, dict[str, Callable[[_WeightedRows], np.ndarray]]] = {
    "regression": {"mae": _w_mae, "rmse": _w_rmse, "r2": _w_r2},
    "classification": {"accuracy": _w_accuracy, "precision": _w_precision, "recall": _w_recall, "f1": _w_f1,
                       "roc_auc": _w_roc_auc, "log_loss": _w_log_loss},
}


def weighted_metrics(
    task: str,
    y: np.ndarray,
    yhat: np.ndarray,
    scores: np.ndarray | None,
    classes: Sequence[str],
    positive: str | None,
    metrics: Sequence[str],
    weights: np.ndarray,
) -> dict[str, np.ndarray]:
    """The metrics of :func:`metric_values` under row weights ``(B, n)``, one value per row.

    With ``weights = np.ones((1, n))`` each equals sklearn's value; with Poisson(1) weights
    the rows are bootstrap replicates. Metrics the task does not have are left out.

    >>> y = np.array([1.0, 2.0, 4.0])
    >>> weighted_metrics("regression", y, y + 1, None, [], None, ("mae", "f1"), np.ones((2, 3)))
    {'mae': array([1., 1.])}
    """
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        if task == "regression":
            rows = _regression_rows(y, yhat, w)
            table = _WEIGHTED["regression"]
        else:
            rows = _classification_rows(y, yhat, scores, classes, positive, w)
            table = _WEIGHTED["classification"]
        return {m: table[m](rows) for m in metrics if m in table}


def _task_metrics(task: str, metrics: Sequence[str] | None) -> tuple[str, ...]:
    """The metrics to watch: those given, checked against the task's, else all of the task's.

    >>> _task_metrics("regression", None)
    ('mae', 'rmse', 'r2')
    """
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be classification or regression, not {task!r}")
    allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    metrics = tuple(metrics) if metrics else allowed
    bad = set(metrics) - set(allowed)
    if bad:
        raise ValueError(f"metrics {sorted(bad)} do not apply to {task}; choose from {allowed}")
    return metrics


# ---------------------------------------------------------------------------- detector
class PerformanceDrift(Composite):
    """Windowed model performance against a baseline, with bootstrap intervals.

    Parameters
    ----------
    task : {"classification", "regression"}
    classes : list of str
        Classes, in the column order of the scores (classification).
    metrics : tuple of str, optional
        Metrics to compute and alert on; by default all of the task's
        (:data:`CLASSIFICATION_METRICS` or :data:`REGRESSION_METRICS`; ROC AUC and log loss only
        count when scores are present).
    reference : Reference, optional
        Baseline sample: labels and the model's predictions (and scores) on them.
    baseline : dict, optional
        Baseline metric values given outright (their standard error is then taken as 0).
    positive_label : str, optional
        Positive class of a binary problem (see :func:`positive_class`).
    alpha : float
        One-sided level of the degradation test.
    min_degradation : dict, optional
        Per metric, the smallest drop that matters (defaults:
        :data:`DEFAULT_MIN_DEGRADATION`: absolute for bounded metrics, a fraction of the
        baseline for log loss, MAE and RMSE). Drops of 2.5 times as much are ``critical``.
    bootstrap : int
        Poisson-bootstrap replicates per window (and for the baseline).
    ci_level : float
        Level of the reported intervals.
    min_n : int
        Windows with fewer labelled examples are not judged.
    resolve_after : int
        Clean windows before an alert resolves.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors.base import Window
    >>> from detectors.reference import Reference
    >>> rng = np.random.default_rng(0)
    >>> y = rng.choice(["no", "yes"], size=4000).astype(object)
    >>> good = np.where(rng.random(4000) < 0.9, y, np.where(y == "yes", "no", "yes"))
    >>> ref = Reference({"x": rng.normal(size=4000)}, {"x": "numeric"}, label=y, prediction=good)
    >>> det = PerformanceDrift("classification", ["no", "yes"], metrics=("accuracy",), reference=ref)
    >>> round(det.baseline_metrics()["accuracy"], 3)
    0.907
    >>> bad = np.where(rng.random(2000) < 0.8, y[:2000], np.where(y[:2000] == "yes", "no", "yes"))
    >>> [d.summary.split(" (")[0] for d in det.update(Window(0, 1, 2000), y[:2000], bad)]
    ['accuracy dropped to 0.80']
    """

    _params = ("task", "classes", "metrics", "reference", "baseline", "positive_label", "alpha",
               "min_degradation", "bootstrap", "ci_level", "min_n", "resolve_after", "model", "seed")

    def __init__(
        self,
        task: str,
        classes: Sequence[str] = (),
        metrics: Sequence[str] | None = None,
        reference: Reference | None = None,
        baseline: dict[str, float] | None = None,
        positive_label: str | None = None,
        alpha: float = 0.001,
        min_degradation: dict[str, float] | None = None,
        bootstrap: int = 200,
        ci_level: float = 0.95,
        min_n: int = 30,
        resolve_after: int = 2,
        model: str | None = None,
        seed: int = 0,
    ) -> None:
        metrics = _task_metrics(task, metrics)
        self.task = task
        self.classes = [str(c) for c in classes]
        self.metrics = metrics
        self.reference = reference
        self.baseline = None if baseline is None else {k: float(v) for k, v in baseline.items()}
        self.positive_label = positive_label
        self.alpha = float(alpha)
        self.min_degradation = None if min_degradation is None else dict(min_degradation)
        self.bootstrap = int(bootstrap)
        self.ci_level = float(ci_level)
        self.min_n = int(min_n)
        self.resolve_after = int(resolve_after)
        self.model = model
        self.seed = int(seed)
        self._pos = positive_class(self.classes, positive_label) if task == "classification" else None
        self._min_deg = {**DEFAULT_MIN_DEGRADATION, **(self.min_degradation or {})}
        self._book = dec.AlertBook(self.resolve_after)
        self._base: dict[str, float | None] = {}
        self._base_se: dict[str, float] = {}
        self._base_desc = ""
        self._windows = 0
        self._last: dict[str, Any] = {}
        self._initial_baseline()

    def _initial_baseline(self) -> None:
        """The baseline known at start: the configured values (standard error 0), else the
        reference's when it has labels and predictions; otherwise the stream will give it."""
        reference = self.reference
        if self.baseline is not None:
            self._base = {m: self.baseline.get(m) for m in self.metrics}
            self._base_se = {m: 0.0 for m in self.metrics}
            self._base_desc = "the configured baseline"
        elif reference is not None and reference.label is not None and reference.prediction is not None:
            self._set_baseline(reference.label, reference.prediction, reference.scores,
                               f"the reference ({reference.n:,} rows)")

    # ------------------------------------------------------------------ evaluation
    def _evaluate(
        self, y: np.ndarray, yhat: np.ndarray, scores: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[dict[str, float | None], dict[str, np.ndarray]]:
        """Metric values (sklearn) and Poisson-bootstrap replicates; score-based metrics use
        only the rows that have scores."""
        plain = [m for m in self.metrics if m not in NEEDS_SCORES]
        scored = [m for m in self.metrics if m in NEEDS_SCORES]
        values: dict[str, float | None] = {m: None for m in self.metrics}
        boot: dict[str, np.ndarray] = {}
        if plain:
            values.update(metric_values(self.task, y, yhat, None, self.classes, self._pos, plain))
            boot.update(self._replicates(y, yhat, None, plain, rng))
        if scored and scores is not None:
            usable = _usable_scores(scores)
            if usable.any():
                sy, syh, ss = y[usable], yhat[usable], scores[usable]
                values.update(metric_values(self.task, sy, syh, ss, self.classes, self._pos, scored))
                boot.update(self._replicates(sy, syh, ss, scored, rng))
        return values, boot

    def _replicates(self, y: np.ndarray, yhat: np.ndarray, scores: np.ndarray | None, metrics: list[str],
                    rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Poisson-bootstrap replicates, in blocks of at most ~4 million weights."""
        block = max(1, min(self.bootstrap, 4_000_000 // max(len(y), 1)))
        parts: list[dict[str, np.ndarray]] = []
        for start in range(0, self.bootstrap, block):
            b = min(block, self.bootstrap - start)
            w = rng.poisson(1.0, size=(b, len(y))).astype(np.float64)
            parts.append(weighted_metrics(self.task, y, yhat, scores, self.classes, self._pos, metrics, w))
        return {m: np.concatenate([p[m] for p in parts]) for m in parts[0]} if parts else {}

    def _set_baseline(self, y: np.ndarray, yhat: np.ndarray, scores: np.ndarray | None, desc: str) -> None:
        with one_thread():
            values, boot = self._evaluate(y, yhat, scores, np.random.default_rng([self.seed, 1]))
        self._base = values
        self._base_se = {}
        for m in self.metrics:
            reps = boot.get(m)
            ok = reps[np.isfinite(reps)] if reps is not None else np.empty(0)
            self._base_se[m] = float(np.std(ok, ddof=1)) if len(ok) > 1 else 0.0
        self._base_desc = desc

    def baseline_metrics(self) -> dict[str, float | None]:
        """The baseline metric values (empty until known)."""
        return dict(self._base)

    def last(self) -> dict[str, Any]:
        """The last window's metrics, intervals and decisions."""
        return dict(self._last)

    def firing(self) -> list[str]:
        return self._book.firing()

    # ------------------------------------------------------------------ update
    def update(
        self,
        window: Window,
        y: np.ndarray,
        yhat: np.ndarray,
        scores: np.ndarray | None = None,
        model_version: str | None = None,
    ) -> list[Detection]:
        """Judge one window of joined examples; return new, escalated or resolved alerts.

        ``scores`` columns follow ``classes`` (``NaN`` where missing; rows without any score
        are left out of ROC AUC and log loss).
        """
        judged = self.assess(window, y, yhat, scores)
        return self.conclude(judged, {m: j["p_value"] for m, j in judged.items()}, window, model_version)

    def assess(self, window: Window, y: np.ndarray, yhat: np.ndarray,
               scores: np.ndarray | None = None) -> dict[str, dict[str, Any]]:
        """The first half of :meth:`update`: each metric of the window against its baseline, with
        its raw one-sided p-value, undecided (empty: too few examples, or the window became the
        baseline). A caller pooling several detectors' tests into one family
        (:mod:`detectors.segments`) adjusts the p-values together and calls :meth:`conclude`."""
        self._windows += 1
        n = len(y)
        if n < self.min_n:
            return {}
        with one_thread():
            values, boot = self._evaluate(y, yhat, scores, np.random.default_rng([self.seed, 2, self._windows]))
        win = {"start_ts": window.start_ts, "end_ts": window.end_ts, "n": window.n}
        if not self._base:
            # no baseline from the reference: the first judged window becomes it
            self._set_baseline(y, yhat, scores, f"the first {n:,} labelled predictions")
            self._last = {"n": n, "window": win, "baseline_from_stream": True,
                          "metrics": {m: {"value": values.get(m)} for m in self.metrics}}
            return {}
        judged: dict[str, dict[str, Any]] = {}
        for m in self.metrics:
            v, b = values.get(m), self._base.get(m)
            if v is None or b is None or m not in boot:
                continue
            judged[m] = self._judge(m, v, b, boot[m])
        self._last = {"n": n, "window": win, "metrics": judged}
        return judged

    def conclude(self, judged: dict[str, dict[str, Any]], p_adjusted: Mapping[str, float], window: Window,
                 model_version: str | None = None) -> list[Detection]:
        """The second half of :meth:`update`: decide each metric of :meth:`assess` with its
        (family-adjusted) p-value; returns the alerts that changed."""
        out: list[Detection] = []
        for m, j in judged.items():
            pa = float(p_adjusted.get(m, j["p_value"]))
            j["p_adjusted"] = pa
            j["degraded"] = bool(pa < self.alpha and j["drop"] >= j["threshold"])
            detection = self._alert(m, j, window, model_version, int(self._last["n"]))
            if detection is not None:
                out.append(detection)
        return out

    def _judge(self, m: str, v: float, b: float, boot: np.ndarray) -> dict[str, Any]:
        """One metric of a window against its baseline: the interval from the bootstrap
        replicates ``boot``, the drop and its one-sided p-value (the entry of :meth:`last`'s
        ``metrics``; :meth:`conclude` adds whether it is a degradation)."""
        lo_q, hi_q = (1 - self.ci_level) / 2, 1 - (1 - self.ci_level) / 2
        reps = boot[np.isfinite(boot)]
        se_w = float(np.std(reps, ddof=1)) if len(reps) > 1 else 0.0
        ci = (float(np.quantile(reps, lo_q)), float(np.quantile(reps, hi_q))) if len(reps) else (v, v)
        se = float(np.hypot(se_w, self._base_se.get(m, 0.0)))
        drop = (b - v) if HIGHER_IS_BETTER[m] else (v - b)
        need = self._min_deg.get(m, 0.0) * (abs(b) if m in RELATIVE else 1.0)
        p = float(norm.sf(drop / se)) if se > 0 else (0.0 if drop > 0 else 1.0)
        return {"value": v, "baseline": b, "ci": ci, "se": se_w, "drop": drop, "p_value": p, "threshold": need}

    def _alert(self, m: str, judged: dict[str, Any], window: Window, model_version: str | None,
               n: int) -> Detection | None:
        """Pass a judged metric to the alert book; the detection if its alert changed."""
        breach, drop, need = judged["degraded"], judged["drop"], judged["threshold"]
        severity = "critical" if breach and drop >= 2.5 * need else "warning"
        before = self._book.severity(m)
        change = self._book.update(m, breach, severity)
        if change is None:
            return None
        firing = change != "resolve"
        # the p-value the decision rests on: family-adjusted when a caller pooled tests (segments)
        p = judged.get("p_adjusted", judged["p_value"])
        return self._detection(m, judged["value"], judged["baseline"], judged["ci"], p, need, drop,
                               window, firing, severity if firing else (before or "warning"), model_version, n,
                               raw_p=judged["p_value"])

    def _detection(self, m: str, v: float, b: float, ci: tuple[float, float], p: float, need: float, drop: float,
                   window: Window, firing: bool, severity: str, model_version: str | None, n: int,
                   raw_p: float | None = None) -> Detection:
        name = _NAMES[m]
        level = f"{self.ci_level:.0%}"
        verb = "dropped to" if HIGHER_IS_BETTER[m] else "rose to"
        if firing:
            summary = (f"{name} {verb} {v:.2f} ({level} CI {ci[0]:.2f}–{ci[1]:.2f}, {dec.format_p(p)}) over the last "
                       f"{n:,} labelled predictions, from {b:.2f} on {self._base_desc}.")
        else:
            summary = (f"{name} is back to {v:.2f} ({level} CI {ci[0]:.2f}–{ci[1]:.2f}) over the last {n:,} "
                       f"labelled predictions (baseline {b:.2f} on {self._base_desc}).")
        threshold = (b - need) if HIGHER_IS_BETTER[m] else (b + need)
        return Detection(
            kind="performance", detector=m, feature=None, statistic=float(v), p_value=float(p),
            threshold=float(threshold), window=window, firing=firing, severity=severity,  # type: ignore[arg-type]  # str from AlertBook; always a Severity value
            effect_size=float(drop), summary=summary, model=self.model, model_version=model_version,
            evidence={"baseline": b, "baseline_source": self._base_desc, "baseline_se": self._base_se.get(m, 0.0),
                      "ci": list(ci), "ci_level": self.ci_level, "degradation": drop, "min_degradation": need,
                      "alpha": self.alpha, "window_n": n, "bootstrap": self.bootstrap,
                      **({"p_value_raw": raw_p} if raw_p is not None and raw_p != p else {})},
        )
