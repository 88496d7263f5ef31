"""Label-free error estimate of a regressor while labels are late (direct loss estimation).

A regressor gives no score that says how wrong it is, but how wrong it tends to be can be
learnt: on the reference (features, the model's ``prediction`` and the ``label``) a second
model learns the *loss* — the absolute error, the squared error, the absolute percentage
error — from the features and the prediction. On a live window the mean predicted loss is the
estimated MAE (MSE, MAPE, MSLE; RMSE and RMSLE are the square roots of the estimated MSE and
MSLE). This is the idea of
NannyML's direct loss estimation; the implementation here is its own.

:class:`DLE` fits, per loss, two scikit-learn ``HistGradientBoostingRegressor`` models by
cross-fitting: the reference rows are split in two seeded halves, each model learns on one
half and predicts the other, so every reference row has an honest (out-of-fold) predicted loss.
Those give the reference's estimate (beside its realised metric, the baseline) and the spread
of the loss model's residuals. A live window is predicted by the mean of the two models.

Band (for the realised metric of the window)
    ``realised - estimate`` is the mean over the window's rows of ``loss_i - predicted_i``.
    On the reference the out-of-fold residuals scale with the predicted loss (exactly so for
    noise of any location-scale family: the absolute error of ``N(0, s^2)`` noise has mean
    ``0.80 s`` and standard deviation ``0.60 s``), so their variance is modelled as
    ``k^2 * predicted^2`` with ``k^2 = sum(residual^2) / sum(predicted^2)`` over the reference.
    A window's standard error is ``sqrt(k^2 * sum(predicted_i^2) / n^2 + se_model^2)``,
    ``se_model`` the standard error of the mean out-of-fold residual (the loss model's own
    calibration uncertainty), and the band ``estimate +- z * se`` (``ci_level``, two-sided;
    RMSE's band is the square root of MSE's). The scale model keeps the band honest under
    covariate shift to noisier regions, where a constant residual spread would be too narrow.
MAPE
    A model of the absolute percentage error ``|y - yhat| / max(|y|, eps)`` itself (sklearn's
    definition), not ``predicted |error| / |yhat|``: the latter replaces ``1 / |y|`` by
    ``1 / |yhat|`` and is biased whenever errors are not small against the label (``1 / |y|``
    is convex). MAPE is left out of the default metrics when a reference label is zero.
Alerts
    On *increases* only: a metric degrades when its estimate exceeds the reference's realised
    value by more than ``min_degradation`` (relative) and the baseline lies below the band.
    One alert per metric, detector ``dle_<metric>``.
Snapshots
    scikit-learn models are not plain data (:mod:`detectors.state` holds numbers, strings,
    containers and arrays only), so a snapshot keeps the reference, the baselines, the spread
    and the per-window history; the models are refitted on restore, deterministically (seeded,
    one thread), which gives identical predictions.

The estimate holds while the relation between features and loss stays as on the reference
(covariate shift, within the reference's support: trees do not extrapolate).

Learning from the first labels
    Given the labelled rows' features (:meth:`DLE.update_labels`), a window keeps each labelled
    row's realised and predicted loss until it is fully labelled; :meth:`DLE.rectify` moves
    the estimate by their mean difference, weighed against the track record of the fully
    labelled windows (:mod:`detectors.label_learning`), so under concept shift (the noise
    grew, the relation changed) the estimate approaches the truth before the window is fully
    labelled. ``history_table`` gives per window the share labelled, the learning estimate
    (at each tenth labelled) and the realised value; ``track_record`` the past error of both.

>>> import numpy as np
>>> from detectors.base import Window
>>> from detectors.reference import Reference
>>> rng = np.random.default_rng(0)
>>> x = rng.uniform(-3, 3, 4000)
>>> y = x + rng.normal(size=4000) * (0.2 + np.abs(x))      # noisier at large |x|
>>> ref = Reference({"x": x}, {"x": "numeric"}, "regression", label=y, prediction=x)
>>> est = DLE(ref, metrics=("mae", "rmse"))
>>> round(est.baseline["mae"], 1)
1.4
>>> live = rng.uniform(2, 3, 2000)                          # the live data moves to large |x|
>>> [d.detector for d in est.update(Window(0, 1, 2000), {"x": live}, live)]
['dle_mae', 'dle_rmse']
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.ensemble import HistGradientBoostingRegressor

from detectors import decision as dec
from detectors._threads import one_thread
from detectors.base import Detection, Window
from detectors.composite import Composite
from detectors.label_learning import (
    ErrorPrior,
    checkpoint,
    error_prior,
    hold_early,
    in_time_order,
    learned_bias,
    release_early,
    track_record,
)
from detectors.reference import Reference, to_float_array

__all__ = ["DLE", "DLE_METRICS", "MIN_REFERENCE_ROWS", "usable_rows"]

DLE_METRICS = ("mae", "mse", "rmse", "mape", "msle", "rmsle")
#: the loss each metric is the mean of (RMSE: the square root of MSE's)
_LOSS = {"mae": "abs", "mse": "sq", "rmse": "sq", "mape": "ape", "msle": "sle", "rmsle": "sle"}
_NAMES = {"mae": "MAE", "mse": "MSE", "rmse": "RMSE", "mape": "MAPE", "msle": "MSLE", "rmsle": "RMSLE"}
_ROOT = ("rmse", "rmsle")   # the square root of the mean loss (the band and the test: the mean's)
_EPS = float(np.finfo(np.float64).eps)  # sklearn's MAPE denominator floor
_MAX_CATEGORIES = 250                    # HGB categorical codes must stay below max_bins (255)
MIN_REFERENCE_ROWS = 50                  # fewer reference rows with a label and a prediction: no DLE


def usable_rows(reference: Reference) -> int:
    """Reference rows with a finite label and prediction (what DLE learns from)."""
    if reference.label is None or reference.prediction is None:
        return 0
    return int(np.sum(np.isfinite(reference.label) & np.isfinite(reference.prediction)))


def _losses(y: np.ndarray, yhat: np.ndarray, kinds: Sequence[str]) -> dict[str, np.ndarray]:
    err = y - yhat
    out: dict[str, np.ndarray] = {}
    for k in kinds:
        if k == "abs":
            out[k] = np.abs(err)
        elif k == "sq":
            out[k] = err * err
        elif k == "sle":   # squared log error (sklearn's MSLE; negative values count as 0)
            out[k] = (np.log1p(np.maximum(y, 0.0)) - np.log1p(np.maximum(yhat, 0.0))) ** 2
        else:
            out[k] = np.abs(err) / np.maximum(np.abs(y), _EPS)
    return out


class DLE(Composite):
    """Estimated MAE, MSE, RMSE, MAPE, MSLE and RMSLE of each window from a model of the loss.

    Parameters
    ----------
    reference : Reference
        A regression reference with labels and the model's predictions.
    metrics : sequence of str, optional
        Among :data:`DLE_METRICS`; by default all (MAPE only if no reference label is zero,
        MSLE and RMSLE only if no reference label or prediction is negative).
    min_degradation : float
        Smallest relative increase over the reference's realised metric that matters.
    ci_level : float
        Two-sided level of the band for the realised metric.
    min_n : int
        Windows with fewer predictions are not judged.
    history : int
        Windows kept with their estimate, for the realised metrics to join.
    resolve_after : int
        Clean windows before an alert resolves.
    max_iter : int
        Boosting iterations of each loss model (no early stopping: stopping on a held-out 10%
        ended the squared-error models early and doubled the MSE/RMSE estimates' error on
        ``bench/label_free.py``'s regressor; 200 iterations at learning rate 0.1 put every
        metric's error below NannyML's there).
    seed : int
        Seed of the reference split and of the models.
    model : str, optional
        The monitored model's name (put on detections).
    learn_min_labels : int
        Labelled rows a window needs before its learning estimate (:meth:`rectify`) is made.
    """

    _params = ("reference", "metrics", "min_degradation", "ci_level", "min_n", "history", "resolve_after",
               "max_iter", "seed", "model", "learn_min_labels")
    _derived: ClassVar[tuple[str, ...]] = ("_models",)

    def __init__(
        self,
        reference: Reference,
        metrics: Sequence[str] | None = None,
        min_degradation: float = 0.05,
        ci_level: float = 0.95,
        min_n: int = 30,
        history: int = 50,
        resolve_after: int = 2,
        max_iter: int = 200,
        seed: int = 0,
        model: str | None = None,
        learn_min_labels: int = 50,
    ) -> None:
        if reference.task != "regression" or reference.label is None or reference.prediction is None:
            raise ValueError("DLE needs a regression reference with labels and predictions")
        self.reference = reference
        self.min_degradation = float(min_degradation)
        self.ci_level = float(ci_level)
        self.min_n = int(min_n)
        self.history = int(history)
        self.resolve_after = int(resolve_after)
        self.max_iter = int(max_iter)
        self.seed = int(seed)
        self.model = model
        self.learn_min_labels = int(learn_min_labels)
        y, yhat = reference.label, reference.prediction
        ok = np.isfinite(y) & np.isfinite(yhat)
        if int(ok.sum()) < MIN_REFERENCE_ROWS:
            raise ValueError(f"DLE needs at least {MIN_REFERENCE_ROWS} reference rows with a finite label and "
                             "prediction")
        if metrics is None:
            zero = bool(np.any(np.abs(y[ok]) <= _EPS))
            negative = bool(np.any(y[ok] < 0) or np.any(yhat[ok] < 0))
            metrics = tuple(m for m in DLE_METRICS
                            if not (m == "mape" and zero) and not (m in ("msle", "rmsle") and negative))
        bad = sorted(set(metrics) - set(DLE_METRICS))
        if bad:
            raise ValueError(f"unknown DLE metrics {bad}; known: {list(DLE_METRICS)}")
        self.metrics = tuple(metrics)
        self._kinds = sorted({_LOSS[m] for m in self.metrics})
        self._features = list(reference.feature_types)
        self._categories = {f: self._top_categories(reference.features[f][ok])
                            for f in reference.categorical}
        self._rows = np.flatnonzero(ok)
        # the seeded halves of the cross-fit
        perm = np.random.default_rng(self.seed).permutation(len(self._rows))
        self._fold = np.zeros(len(self._rows), dtype=np.int8)
        self._fold[perm[len(perm) // 2:]] = 1
        self._models: dict[str, list[HistGradientBoostingRegressor]] = {}
        oof = self._fit()
        target = _losses(y[ok], yhat[ok], self._kinds)
        m = len(self._rows)
        # per loss: the spread of the out-of-fold residuals (scale model) and the calibration se
        self._k2: dict[str, float] = {}
        self._se_model: dict[str, float] = {}
        ref_mean: dict[str, float] = {}
        real_mean: dict[str, float] = {}
        for k in self._kinds:
            r = target[k] - oof[k]
            den = float(np.sum(oof[k] ** 2))
            self._k2[k] = float(np.sum(r * r) / den) if den > 0 else 0.0
            self._se_model[k] = float(np.std(r, ddof=1) / np.sqrt(m))
            ref_mean[k] = float(np.mean(oof[k]))
            real_mean[k] = float(np.mean(target[k]))
        self.baseline = {mt: self._metric(mt, real_mean) for mt in self.metrics}
        self.reference_estimate = {mt: self._metric(mt, ref_mean) for mt in self.metrics}
        self._book = dec.AlertBook(self.resolve_after)
        self._history: list[dict[str, Any]] = []
        self._early: dict[str, np.ndarray] | None = None   # labels before their window (hold_early)
        self._last: dict[str, Any] = {}

    # ------------------------------------------------------------------ fitting
    @staticmethod
    def _top_categories(values: np.ndarray) -> list[str]:
        s = pd.Series(values, dtype=object).dropna()
        if s.empty:
            return []
        counts = s.value_counts()
        order = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
        return [str(k) for k, _ in order[:_MAX_CATEGORIES]]

    def _design(self, columns: Mapping[str, Any], prediction: np.ndarray) -> np.ndarray:
        """Features (categories as codes, unknown ones missing) and the prediction, as floats."""
        n = len(prediction)
        cols: list[np.ndarray] = []
        for f in self._features:
            v = columns.get(f)
            if f in self._categories:
                if v is None or not self._categories[f]:
                    cols.append(np.full(n, np.nan))
                    continue
                idx = pd.Index(self._categories[f], dtype=object).get_indexer(np.asarray(v, dtype=object))
                cols.append(np.where(idx >= 0, idx, np.nan).astype(np.float64))
            else:
                cols.append(np.full(n, np.nan) if v is None else to_float_array(v))
        cols.append(np.asarray(prediction, dtype=np.float64))
        return np.column_stack(cols)

    def _new_model(self) -> HistGradientBoostingRegressor:
        cat = np.array([bool(self._categories.get(f)) for f in self._features] + [False])
        return HistGradientBoostingRegressor(
            loss="squared_error", max_iter=self.max_iter, learning_rate=0.1, early_stopping=False,
            categorical_features=cat if cat.any() else None, random_state=self.seed,
        )

    def _fit(self) -> dict[str, np.ndarray]:
        """Fit the two models of each loss on the reference halves; return the out-of-fold
        predicted losses (clipped at 0)."""
        ref = self.reference
        assert ref.label is not None and ref.prediction is not None  # checked in __init__
        rows = self._rows
        X = self._design({f: ref.features[f][rows] for f in self._features}, ref.prediction[rows])
        target = _losses(ref.label[rows], ref.prediction[rows], self._kinds)
        oof: dict[str, np.ndarray] = {}
        self._models = {}
        with one_thread():  # deterministic, whatever the machine's thread count
            for k in self._kinds:
                pair = []
                pred = np.empty(len(rows))
                for fold in (0, 1):
                    train = self._fold == fold
                    mdl = self._new_model().fit(X[train], target[k][train])
                    pred[~train] = mdl.predict(X[~train])
                    pair.append(mdl)
                self._models[k] = pair
                oof[k] = np.maximum(pred, 0.0)
        return oof

    def _rebuild(self) -> None:
        """After a restore: refit the loss models (the snapshot holds no sklearn objects), and
        what snapshots from before the learning estimate lack."""
        self.__dict__.setdefault("learn_min_labels", 50)
        self.__dict__.setdefault("_early", None)       # snapshots from before the early labels
        self._fit()

    # ------------------------------------------------------------------ estimate
    def predicted_losses(self, columns: Mapping[str, Any], prediction: np.ndarray) -> dict[str, np.ndarray]:
        """Per row, the predicted loss of each kind (``abs``, ``sq``, ``ape``), clipped at 0."""
        X = self._design(columns, prediction)
        out = {}
        with one_thread():  # OpenMP threads cost more than they give on a window's rows
            for k, (a, b) in self._models.items():
                out[k] = np.maximum(0.5 * (a.predict(X) + b.predict(X)), 0.0)
        return out

    @staticmethod
    def _metric(metric: str, mean: Mapping[str, float]) -> float:
        v = mean[_LOSS[metric]]
        return float(np.sqrt(v)) if metric in _ROOT else float(v)

    def estimate(self, columns: Mapping[str, Any], prediction: np.ndarray) -> dict[str, dict[str, Any]]:
        """Estimate, band and standard error of each metric over the rows of one window."""
        pred = np.asarray(prediction, dtype=np.float64)
        ok = np.isfinite(pred)
        cols = {f: np.asarray(v)[ok] for f, v in columns.items() if f in self._features}
        n = int(ok.sum())
        if n == 0:
            return {}
        loss = self.predicted_losses(cols, pred[ok])
        z = float(norm.isf((1 - self.ci_level) / 2))
        per: dict[str, tuple[float, float]] = {}
        for k, a in loss.items():
            se = float(np.sqrt(self._k2[k] * np.sum(a * a) / n**2 + self._se_model[k] ** 2))
            per[k] = (float(np.mean(a)), se)
        out: dict[str, dict[str, Any]] = {}
        for mt in self.metrics:
            est, se = per[_LOSS[mt]]
            lo, hi = max(est - z * se, 0.0), est + z * se
            if mt in _ROOT:
                out[mt] = {"estimate": float(np.sqrt(est)), "band": [float(np.sqrt(lo)), float(np.sqrt(hi))],
                           "se": se / (2 * np.sqrt(est)) if est > 0 else 0.0, "_mean": est, "_se": se}
            else:
                out[mt] = {"estimate": est, "band": [lo, hi], "se": se, "_mean": est, "_se": se}
        return out

    # ------------------------------------------------------------------ update
    def update(
        self, window: Window, columns: Mapping[str, Any], prediction: np.ndarray, model_version: str | None = None
    ) -> list[Detection]:
        """Estimate one window of predictions (and their features); return new, escalated or
        resolved alerts."""
        pred = np.asarray(prediction, dtype=np.float64)
        n = int(np.isfinite(pred).sum())
        if n < self.min_n:
            return []
        est = self.estimate(columns, pred)
        metrics: dict[str, dict[str, Any]] = {}
        out: list[Detection] = []
        for mt in self.metrics:
            e = est[mt]
            b = self.baseline[mt]
            need = self.min_degradation * abs(b)
            rise = e["estimate"] - b
            # the test on the mean loss (for RMSE: MSE's, the same ordering)
            b_mean = b * b if mt in _ROOT else b
            p = float(norm.sf((e["_mean"] - b_mean) / e["_se"])) if e["_se"] > 0 else float(rise <= 0)
            breach = bool(rise >= need and e["band"][0] > b)
            severity = "critical" if breach and rise >= 2.5 * need else "warning"
            # CBPE's shape (value, ci, ...): the history rows and dashboards read both alike
            metrics[mt] = {"value": e["estimate"], "ci": list(e["band"]), "se": e["se"], "p_value": p,
                           "baseline": b, "threshold": b + need, "degraded": breach}
            out += self._alert(mt, metrics[mt], b, need, severity, window, n, model_version)
        means = {_LOSS[mt]: [e["_mean"], e["_se"]] for mt, e in est.items()}
        entry = {"start_ts": window.start_ts, "end_ts": window.end_ts, "n": n, "metrics": metrics, "means": means,
                 "realised_n": 0, "realised_sum": {k: 0.0 for k in self._kinds}, "rows": None}
        self._history.append(entry)
        if len(self._history) > self.history:
            self._history = self._history[-self.history:]
        if window.start_ts is not None and window.end_ts is not None:   # labels that came before it
            covered, self._early = release_early(self._early, int(window.start_ts), int(window.end_ts))
            if covered is not None:
                self._join(entry, covered)
        self._last = {"start_ts": window.start_ts, "end_ts": window.end_ts, "n": n,
                      "metrics": {m: dict(v, ci=list(v["ci"])) for m, v in metrics.items()}}
        return out

    def _alert(self, mt: str, judged: dict[str, Any], b: float, need: float, severity: str, window: Window,
               n: int, model_version: str | None) -> list[Detection]:
        before = self._book.severity(mt)
        change = self._book.update(mt, judged["degraded"], severity)
        if change is None:
            return []
        firing = change != "resolve"
        e = judged["value"]
        lo, hi = judged["ci"]
        name = _NAMES[mt]
        level = f"{self.ci_level:.0%}"
        if firing:
            summary = (f"estimated {name} rose to {e:.4g} ({level} band {lo:.4g}–{hi:.4g}, "
                       f"{dec.format_p(judged['p_value'])}) over the last {n:,} predictions, from {b:.4g} on the "
                       f"reference; labels have not arrived yet (direct loss estimation from the features and "
                       f"predictions).")
        else:
            summary = (f"estimated {name} is back to {e:.4g} ({level} band {lo:.4g}–{hi:.4g}) over the last "
                       f"{n:,} predictions (reference {b:.4g}).")
        return [Detection(
            kind="performance", detector=f"dle_{mt}", feature=None, statistic=e, p_value=judged["p_value"],
            threshold=b + need, window=window, firing=firing,
            severity=severity if firing else (before or "warning"),  # type: ignore[arg-type]  # always a Severity value
            effect_size=e - b, summary=summary, model=self.model, model_version=model_version,
            evidence={"estimate": e, "band": [lo, hi], "baseline": b, "reference_estimate": self.reference_estimate[mt],
                      "se": judged["se"], "ci_level": self.ci_level, "min_degradation": self.min_degradation,
                      "window_n": n, "reference_n": self.reference.n},
        )]

    def update_labels(self, ts: np.ndarray, prediction: np.ndarray, label: np.ndarray,
                      columns: Mapping[str, Any] | None = None) -> None:
        """Join realised losses (labelled predictions at their prediction time ``ts``) to the
        estimated windows that cover them. With the rows' features (``columns``) a window also
        keeps each labelled row's realised and predicted losses, in prediction-time order,
        until all its predictions are labelled (for :meth:`history_table`'s learning estimate);
        then only the sums, and the learning estimate with a tenth labelled (for
        :meth:`track_record`)."""
        if len(ts) == 0:
            return
        ts = np.asarray(ts, dtype=np.int64)
        y, yhat = np.asarray(label, dtype=np.float64), np.asarray(prediction, dtype=np.float64)
        ok = np.isfinite(y) & np.isfinite(yhat)
        loss = _losses(y[ok], yhat[ok], self._kinds)
        rows = {"ts": ts[ok], **{f"loss_{k}": loss[k] for k in self._kinds}}
        if columns is not None and ok.any():
            guess = self.predicted_losses({f: np.asarray(v)[ok] for f, v in columns.items()}, yhat[ok])
            rows.update({f"pred_{k}": guess[k] for k in self._kinds})
        for h in self._history:
            if h["start_ts"] is None:
                continue
            inside = (rows["ts"] >= h["start_ts"]) & (rows["ts"] <= h["end_ts"])
            if inside.any():
                self._join(h, {k: v[inside] for k, v in rows.items()})
        newest = self._history[-1]["start_ts"] if self._history else None
        self._early = hold_early(self._early, rows, newest)

    def _join(self, h: dict[str, Any], rows: Mapping[str, np.ndarray]) -> None:
        """Add the labelled ``rows`` of window ``h`` (their losses; ``pred_*``, the predicted
        losses, when the features came too) to its sums and rows; once every prediction of it
        is labelled, keep the sums and the learning estimate with a tenth labelled."""
        h["realised_n"] += len(rows["ts"])
        for k in self._kinds:
            h["realised_sum"][k] += float(rows[f"loss_{k}"].sum())
        if "means" not in h or h.get("done"):
            return
        if f"pred_{self._kinds[0]}" in rows:
            old = h.get("rows") or {key: v[:0] for key, v in rows.items()}
            h["rows"] = in_time_order({key: np.concatenate([old[key], v]) for key, v in rows.items() if key in old})
        if h["realised_n"] >= h["n"]:
            h["learning"] = self._learn(h, first_checkpoint=True)
            h["done"], h["rows"] = True, None

    # ------------------------------------------------------------------ learning from the first labels
    def rectify(self, means: Mapping[str, Sequence[float]], loss: Mapping[str, np.ndarray],
                predicted: Mapping[str, np.ndarray],
                priors: Mapping[str, ErrorPrior | None] | None = None) -> dict[str, dict[str, Any]]:
        """A window's estimates corrected by what its first labelled rows show.

        ``means``: per loss, the window's estimated mean loss and its standard error;
        ``loss`` and ``predicted``: per loss, the realised and the predicted loss of each
        labelled row. Per loss the correction is the mean of (realised − predicted) over the
        labelled rows, its noise the standard error of that mean (the residuals' variance on
        those rows, or the scale model's ``k² mean(predicted²)`` if larger: a few rows can look
        calmer than they are);
        :func:`detectors.label_learning.learned_bias` decides how much of it to apply, given
        ``priors`` (per loss, where the mean loss's error has been lately:
        :meth:`error_priors`). ``correction`` and ``bias`` are on the mean loss (for RMSE and
        RMSLE: of MSE and MSLE)."""
        rows = len(next(iter(loss.values()), ()))
        if rows < self.learn_min_labels:
            return {}
        z = float(norm.isf((1 - self.ci_level) / 2))
        fixed: dict[str, tuple[float, float, float, float, float]] = {}
        for k in self._kinds:
            a, real = np.asarray(predicted[k]), np.asarray(loss[k])
            corr = float(np.mean(real) - np.mean(a))
            spread = max(float(np.var(real - a, ddof=1)), self._k2[k] * float(np.mean(a * a)))
            noise = float(np.sqrt(spread / rows))
            bias, weight, extra = learned_bias(corr, noise, (priors or {}).get(k))
            est, se = means[k]
            fixed[k] = (max(est + bias, 0.0), float(np.hypot(se, extra)), corr, weight, bias)
        out: dict[str, dict[str, Any]] = {}
        for mt in self.metrics:
            mean, se, corr, weight, bias = fixed[_LOSS[mt]]
            lo, hi = max(mean - z * se, 0.0), mean + z * se
            value, ci = (float(np.sqrt(mean)), [float(np.sqrt(lo)), float(np.sqrt(hi))]) if mt in _ROOT else (
                mean, [lo, hi])
            out[mt] = {"value": value, "ci": ci, "correction": corr, "weight": weight, "bias": bias,
                       "labelled": rows}
        return out

    def error_priors(self, before: int | None = None) -> dict[str, ErrorPrior | None]:
        """Per loss, where the estimated mean loss's error (realised − estimate) has been on
        the fully labelled windows kept (those before position ``before`` of the history)."""
        done = [h for h in self._history[:before] if h.get("done") and "means" in h and h["realised_n"]]
        return {k: error_prior([h["realised_sum"][k] / h["realised_n"] - h["means"][k][0] for h in done])
                for k in self._kinds}

    def estimate_with_labels(self, columns: Mapping[str, Any], prediction: np.ndarray,
                             label: np.ndarray) -> dict[str, dict[str, Any]]:
        """A window's estimates with the labels known so far (``label``: NaN where not yet):
        :meth:`estimate`, then :meth:`rectify` on the labelled rows with the track record of
        the fully labelled windows kept (the plain estimate while fewer than
        ``learn_min_labels`` are labelled).

        >>> import numpy as np
        >>> from detectors.reference import Reference
        >>> rng = np.random.default_rng(1)
        >>> x = rng.uniform(-3, 3, 4000)
        >>> ref = Reference({"x": x}, {"x": "numeric"}, "regression", label=x + rng.normal(size=4000), prediction=x)
        >>> est = DLE(ref, metrics=("mae",), max_iter=50)
        >>> live = rng.uniform(-3, 3, 2000)
        >>> y = live + 2 * rng.normal(size=2000)                  # concept shift: twice the noise
        >>> known = np.where(rng.random(2000) < 0.1, y, np.nan)   # a tenth labelled
        >>> plain = est.estimate({"x": live}, live)["mae"]["estimate"]
        >>> learned = est.estimate_with_labels({"x": live}, live, known)["mae"]["value"]
        >>> round(plain, 1), round(learned, 1), round(float(np.mean(np.abs(y - live))), 1)
        (0.8, 1.6, 1.6)
        """
        pred = np.asarray(prediction, dtype=np.float64)
        y = np.asarray(label, dtype=np.float64)
        est = self.estimate(columns, pred)
        plain = {mt: {"value": e["estimate"], "ci": list(e["band"]), "se": e["se"]} for mt, e in est.items()}
        known = np.isfinite(y) & np.isfinite(pred)
        if not plain or int(known.sum()) < self.learn_min_labels:
            return plain
        cols = {f: np.asarray(v)[known] for f, v in columns.items()}
        means = {_LOSS[mt]: (e["_mean"], e["_se"]) for mt, e in est.items()}
        fixed = self.rectify(means, _losses(y[known], pred[known], self._kinds),
                             self.predicted_losses(cols, pred[known]), self.error_priors())
        return {mt: fixed.get(mt, e) for mt, e in plain.items()}

    def _learn(self, h: dict[str, Any], *, first_checkpoint: bool = False) -> dict[str, Any] | None:
        """A window's learning estimate from its labelled rows, at checkpoints (every tenth of
        the window, at least ``learn_min_labels`` rows; ``first_checkpoint``: the first, kept
        for :meth:`track_record`), as CBPE's: a function of the events, not of the batches."""
        rows = h.get("rows")
        if not rows or "means" not in h:
            return None
        n = max(int(h["n"]), 1)
        c = checkpoint(n, len(rows["ts"]), self.learn_min_labels, first=first_checkpoint)
        if c is None:
            return None
        at = next(i for i, w in enumerate(self._history) if w is h)
        fixed = self.rectify(h["means"], {k: rows[f"loss_{k}"][:c] for k in self._kinds},
                             {k: rows[f"pred_{k}"][:c] for k in self._kinds}, self.error_priors(at))
        return {"share_labelled": c / n, "rows": c, "metrics": fixed} if fixed else None

    def track_record(self) -> dict[str, dict[str, Any]]:
        """Per metric, the mean absolute error of the label-free estimate and of the learning
        estimate with a tenth of the window labelled, over the fully labelled windows kept."""
        return track_record(
            (h["metrics"], self._realised_metrics(h), (h.get("learning") or {}).get("metrics") or {})
            for h in self._history if h.get("done"))

    def _realised_metrics(self, h: dict[str, Any]) -> dict[str, float] | None:
        rn = h["realised_n"]
        if not rn:
            return None
        mean = {k: s / rn for k, s in h["realised_sum"].items()}
        return {m: self._metric(m, mean) for m in h["metrics"]}

    def history_table(self) -> list[dict[str, Any]]:
        """Each kept window: per metric the estimate, its band, (so far) the realised value and
        the learning estimate (``metrics``: ``{m: {"value", "ci", "realised", "learning"}}``, as
        CBPE's), and the share of its predictions labelled."""
        out = []
        for h in self._history:
            real = self._realised_metrics(h) or {}
            learning = (h.get("learning") if h.get("done") else self._learn(h)) or {}
            metrics = {m: {"value": v["value"], "ci": list(v["ci"]), "realised": real.get(m)}
                       for m, v in h["metrics"].items()}
            for m, e in (learning.get("metrics") or {}).items():
                if m in metrics:
                    metrics[m]["learning"] = {"value": e["value"], "ci": list(e["ci"]), "labelled": e["labelled"]}
            out.append({"start_ts": h["start_ts"], "end_ts": h["end_ts"], "n": h["n"], "realised_n": h["realised_n"],
                        "share_labelled": min(h["realised_n"] / max(h["n"], 1), 1.0),
                        "learning_share": learning.get("share_labelled"), "metrics": metrics})
        return out

    def last(self) -> dict[str, Any]:
        """The last judged window: ``start_ts``, ``end_ts``, ``n`` and per metric ``value``,
        ``ci``, ``se``, ``p_value``, ``baseline``, ``threshold``, ``degraded``."""
        if not self._last:
            return {}
        return {**self._last, "metrics": {m: dict(v, ci=list(v["ci"])) for m, v in self._last["metrics"].items()},
                "track_record": self.track_record()}

    def firing(self) -> list[str]:
        return self._book.firing()

