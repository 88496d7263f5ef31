"""Multivariate drift: changes no single feature shows.

Two detectors, both naming the features that matter most in a detection:

* :class:`DomainClassifierDrift` trains a classifier (scikit-learn's histogram gradient
  boosting, which takes missing values and categories natively) to tell reference rows from
  current rows. Its cross-validated ROC AUC is 0.5 when they are alike; the detection fires
  when the AUC is significantly above 0.5 (Mann–Whitney normal approximation) and at least
  ``min_auc``. The features that matter are those whose permutation costs the held-out AUC
  most.
* :class:`PCAReconstructionDrift` fits PCA on the standardised reference (categories
  one-hot) keeping ``variance`` of it, and watches the mean reconstruction error of each
  window (NannyML's data reconstruction drift): a broken correlation raises it although every
  marginal stays put. It fires when the increase is significant and at least
  ``min_increase`` (relative); the features that matter are those whose residuals grew most.

>>> import numpy as np
>>> from detectors.base import Window
>>> from detectors.reference import Reference
>>> rng = np.random.default_rng(0)
>>> z = rng.normal(size=(2000, 1))
>>> ref = Reference({"a": z[:, 0] + 0.1 * rng.normal(size=2000), "b": z[:, 0] + 0.1 * rng.normal(size=2000)},
...                 {"a": "numeric", "b": "numeric"}, task="regression")
>>> pca = PCAReconstructionDrift(ref)
>>> cur = {"a": rng.normal(size=1000), "b": rng.normal(size=1000)}   # same marginals, no correlation
>>> [d.detector for d in pca.update(Window(0, 1, 1000), cur)]
['pca_reconstruction']
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from scipy.stats import norm

from detectors import decision as dec
from detectors._threads import one_thread
from detectors.base import Detection, Window
from detectors.composite import Composite
from detectors.reference import Reference
from detectors.two_sample import category_index

__all__ = ["DomainClassifierDrift", "PCAReconstructionDrift", "auc_pvalue", "correlation_change_p"]


def auc_pvalue(auc: float, n0: int, n1: int) -> float:
    """One-sided p-value of an AUC above 0.5 (Mann–Whitney U, normal approximation).

    >>> round(auc_pvalue(0.55, 1000, 1000), 5)
    5e-05
    """
    if n0 == 0 or n1 == 0 or not np.isfinite(auc):
        return float("nan")
    sd = np.sqrt((n0 + n1 + 1) / (12.0 * n0 * n1))
    return float(norm.sf((auc - 0.5) / sd))


def _imputed(x: np.ndarray) -> np.ndarray:
    """Columns with their missing values replaced by the column's median (0 if all missing)."""
    x = np.array(x, dtype=np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        med = np.array([np.median(c[np.isfinite(c)]) if np.isfinite(c).any() else 0.0 for c in x.T])
        x[bad] = np.broadcast_to(med, x.shape)[bad]
    return x


def _correlations(x: np.ndarray) -> np.ndarray:
    """Pearson correlations of the columns of ``x`` (a constant column: 0 with every other)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(_imputed(x), rowvar=False)
    return np.nan_to_num(np.atleast_2d(r), nan=0.0)


def correlation_change_p(ref_corr: np.ndarray, ref_n: int, x: np.ndarray) -> float:
    """Bonferroni-adjusted p-value of the largest change of a pairwise correlation between the
    columns of ``x`` and the reference's (Fisher's z test of two independent correlations).

    A cheap screen (``O(n d²)``) for what univariate tests cannot see: two features that start
    (or stop) moving together.

    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(size=(5000, 3))
    >>> cur = rng.normal(size=(5000, 3)); cur[:, 1] = 0.35 * cur[:, 0] + 0.94 * cur[:, 1]
    >>> correlation_change_p(_correlations(ref), 5000, cur) < 1e-10
    True
    >>> correlation_change_p(_correlations(ref), 5000, rng.normal(size=(5000, 3))) > 0.01
    True
    """
    d, n = x.shape[1], x.shape[0]
    if d < 2 or n < 4 or ref_n < 4:
        return 1.0
    iu = np.triu_indices(d, 1)
    z_ref = np.arctanh(np.clip(ref_corr[iu], -0.999999, 0.999999))
    z_cur = np.arctanh(np.clip(_correlations(x)[iu], -0.999999, 0.999999))
    stat = np.abs(z_cur - z_ref).max() / np.sqrt(1.0 / (n - 3) + 1.0 / (ref_n - 3))
    return float(min(1.0, 2.0 * norm.sf(stat) * len(z_ref)))


def _names(features: list[str]) -> str:
    return ", ".join(f"`{f}`" for f in features)


class _Encoder:
    """Column encodings fitted on the reference (plain data, kept by the detectors)."""

    @staticmethod
    def fit(reference: Reference, max_categories: int) -> dict[str, Any]:
        enc: dict[str, Any] = {"numeric": reference.numeric, "categorical": reference.categorical,
                               "median": [], "categories": []}
        for f in reference.numeric:
            v = reference.features[f]
            enc["median"].append(float(np.nanmedian(v)) if np.isfinite(v).any() else 0.0)
        for f in reference.categorical:
            v = reference.features[f]
            present = np.array([x for x in v.tolist() if x is not None], dtype=object)
            if len(present):
                vals, cnt = np.unique(present.astype(str), return_counts=True)
                order = np.lexsort((vals, -cnt))
                enc["categories"].append([str(x) for x in vals[order][:max_categories]])
            else:
                enc["categories"].append([])
        return enc


def _codes(categories: list[str], col: np.ndarray) -> np.ndarray:
    """Ordinal codes: known categories 0..K-1, unknown K, missing -1."""
    import pandas as pd

    col = np.asarray(col, dtype=object)
    pos = category_index(tuple(categories)).get_indexer(col) if categories else np.full(len(col), -1)
    codes = np.where(pos < 0, len(categories), pos)
    codes[np.asarray(pd.isna(col), dtype=bool)] = -1
    return codes


def _column(columns: Mapping[str, np.ndarray], name: str, n: int, numeric: bool) -> np.ndarray:
    col = columns.get(name)
    if col is None:
        return np.full(n, np.nan) if numeric else np.full(n, None, dtype=object)
    return np.asarray(col, dtype=np.float64 if numeric else object)


class PCAReconstructionDrift(Composite):
    """Mean PCA reconstruction error of each window against the reference's.

    Parameters
    ----------
    reference : Reference
    variance : float
        Share of the reference's variance the components keep (NannyML's default, 0.65).
    max_categories : int
        Categories one-hot encoded per feature (the rest share a column).
    alpha : float
        One-sided level of the test on the mean error.
    min_increase : float
        Relative increase of the mean error that matters (0.1 = +10 %).
    resolve_after : int
        Clean windows before an alert resolves.
    """

    _params = ("reference", "variance", "max_categories", "alpha", "min_increase", "resolve_after",
               "reference_desc", "model")

    def __init__(
        self,
        reference: Reference,
        variance: float = 0.65,
        max_categories: int = 10,
        alpha: float = 0.001,
        min_increase: float = 0.1,
        resolve_after: int = 2,
        reference_desc: str | None = None,
        model: str | None = None,
    ) -> None:
        if not 0 < variance <= 1:
            raise ValueError("variance must be in (0, 1]")
        self.reference = reference
        self.variance = float(variance)
        self.max_categories = int(max_categories)
        self.alpha = float(alpha)
        self.min_increase = float(min_increase)
        self.resolve_after = int(resolve_after)
        self.reference_desc = reference_desc if reference_desc is not None else f"{reference.n:,} training rows"
        self.model = model
        self._enc = _Encoder.fit(reference, self.max_categories)
        x, owner = self._raw(reference.features, reference.n)
        self._center = x.mean(axis=0)
        sd = x.std(axis=0)
        self._scale = np.where(sd > 1e-12, sd, 1.0)
        self._owner = owner
        z = (x - self._center) / self._scale
        _, sv, vt = np.linalg.svd(z, full_matrices=False)
        var = sv**2
        share = np.cumsum(var) / var.sum() if var.sum() > 0 else np.ones(len(var))
        k = int(np.searchsorted(share, self.variance - 1e-12) + 1)
        self._components = vt[: min(k, len(vt))]
        err, resid2 = self._held_out_errors(z)
        self._ref_mean = float(err.mean())
        self._ref_std = float(err.std(ddof=1)) if len(err) > 1 else 0.0
        self._ref_resid = self._per_feature(resid2.mean(axis=0))
        self._m = int(reference.n)
        self._book = dec.AlertBook(self.resolve_after)
        self._last: dict[str, Any] = {}

    def _raw(self, columns: Mapping[str, np.ndarray], n: int) -> tuple[np.ndarray, list[str]]:
        parts, owner = [], []
        for f, med in zip(self._enc["numeric"], self._enc["median"]):
            v = _column(columns, f, n, True)
            parts.append(np.where(np.isfinite(v), v, med))
            owner.append(f)
        for f, cats in zip(self._enc["categorical"], self._enc["categories"]):
            codes = _codes(cats, _column(columns, f, n, False))
            width = len(cats) + 1  # known categories + "other/unseen/missing"
            onehot = np.zeros((n, width))
            onehot[np.arange(n), np.where(codes < 0, len(cats), codes)] = 1.0
            parts.extend(onehot.T)
            owner.extend([f] * width)
        x = np.column_stack(parts) if parts else np.zeros((n, 0))
        return x, owner

    def _held_out_errors(self, z: np.ndarray, folds: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The reference rows' reconstruction errors, each from components fitted without it
        (``folds``-fold, a seeded split). Errors of the rows the components were fitted on are
        optimistic (the components fit their noise too): on a stationary stream of 10
        independent features a window's mean error was ~4% above them, and the window test's
        p-value below 1e-5. A reference too small to split gives its in-sample errors."""
        n, k = len(z), len(self._components)
        if n < 10 * folds or k == 0:
            return self._errors(z)
        fold = np.random.default_rng(0).permutation(n) % folds
        err, resid2 = np.empty(n), np.empty_like(z)
        for f in range(folds):
            held = fold == f
            _, _, vt = np.linalg.svd(z[~held], full_matrices=False)
            comp = vt[:k]
            r2 = (z[held] - (z[held] @ comp.T) @ comp) ** 2
            resid2[held], err[held] = r2, np.sqrt(r2.sum(axis=1))
        return err, resid2

    def _errors(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        recon = (z @ self._components.T) @ self._components
        resid2 = (z - recon) ** 2
        return np.sqrt(resid2.sum(axis=1)), resid2

    def _per_feature(self, col_values: np.ndarray) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, v in zip(self._owner, col_values.tolist()):
            out[name] = out.get(name, 0.0) + float(v)
        return out

    @property
    def n_components(self) -> int:
        return int(len(self._components))

    def last(self) -> dict[str, Any]:
        return dict(self._last)

    def firing(self) -> list[str]:
        return self._book.firing()

    def update(self, window: Window, columns: Mapping[str, np.ndarray], model_version: str | None = None) -> list[Detection]:
        """Test one window; return new, escalated or resolved alerts."""
        n = int(window.n)
        if n < 2:
            return []
        x, _ = self._raw(columns, n)
        z = (x - self._center) / self._scale
        with one_thread():
            err, resid2 = self._errors(z)
        cur = float(err.mean())
        p, rel = self._significance(cur, n)
        breach = bool(p < self.alpha and rel >= self.min_increase)
        severity = "critical" if breach and rel >= 5 * self.min_increase else "warning"
        growth, top = self._growth(resid2)
        self._last = {"reconstruction_error": cur, "reference_error": self._ref_mean, "increase": rel,
                      "p_value": p, "drifting": breach, "n": n, "components": self.n_components, "top_features": top}
        before = self._book.severity("pca")
        change = self._book.update("pca", breach, severity)
        if change is None:
            return []
        firing = change != "resolve"
        return [self._detection(window, n, cur, rel, p, growth, top, firing,
                                severity if firing else (before or "warning"), model_version)]

    def _significance(self, cur: float, n: int) -> tuple[float, float]:
        """One-sided p-value of a window's mean error ``cur`` above the reference's (standard
        error from the reference's spread and both sizes) and its relative increase."""
        se = self._ref_std * np.sqrt(1.0 / n + 1.0 / self._m)
        p = float(norm.sf((cur - self._ref_mean) / se)) if se > 0 else (0.0 if cur > self._ref_mean else 1.0)
        rel = cur / self._ref_mean - 1.0 if self._ref_mean > 0 else (np.inf if cur > 0 else 0.0)
        return p, rel

    def _growth(self, resid2: np.ndarray) -> tuple[dict[str, float], list[str]]:
        """Per feature, the growth of the mean squared residual over the reference's, and the
        (at most three) features whose residuals grew most."""
        cur_resid = self._per_feature(resid2.mean(axis=0))
        growth = {f: cur_resid[f] - self._ref_resid.get(f, 0.0) for f in cur_resid}
        top = [f for f, g in sorted(growth.items(), key=lambda kv: -kv[1]) if g > 0][:3]
        return growth, top

    def _detection(self, window: Window, n: int, cur: float, rel: float, p: float, growth: dict[str, float],
                   top: list[str], firing: bool, severity: str, model_version: str | None) -> Detection:
        over = f"over the last {n:,} predictions (reference: {self.reference_desc})"
        if firing:
            summary = (f"the joint distribution of the features changed (PCA reconstruction error {cur:.3g} vs "
                       f"{self._ref_mean:.3g}, {rel:+.0%}, {dec.format_p(p)}) {over}; the features that matter most: "
                       f"{_names(top)}.")
        else:
            summary = f"the joint distribution of the features is back to normal (PCA reconstruction error {rel:+.0%}) {over}."
        return Detection(
            kind="multivariate_drift", detector="pca_reconstruction", feature=None, statistic=cur, p_value=p,
            threshold=self._ref_mean * (1 + self.min_increase), window=window, firing=firing,
            severity=severity,  # type: ignore[arg-type]  # str from AlertBook; always a Severity value
            effect_size=float(rel), summary=summary, model=self.model, model_version=model_version,
            evidence={"reference_error": self._ref_mean, "reference_error_std": self._ref_std,
                      "components": self.n_components, "variance_kept": self.variance, "top_features": top,
                      "residual_growth": {f: growth[f] for f in top}, "alpha": self.alpha,
                      "min_increase": self.min_increase, "reference_n": self._m, "window_n": n},
        )


class DomainClassifierDrift(Composite):
    """Cross-validated ROC AUC of a classifier telling reference rows from current rows.

    Parameters
    ----------
    reference : Reference
    max_rows : int
        Rows drawn from each side (reference and window) per test.
    folds : int
        Cross-validation folds.
    min_auc : float
        AUC from which a difference matters.
    alpha : float
        One-sided level of the AUC test.
    max_iter : int
        Boosting iterations of the classifier.
    max_leaf_nodes : int
        Leaves per tree. Small trees on a few thousand rows overfit less: 7 leaves find more of
        ``bench/domain_classifier.py``'s shifts than scikit-learn's 31, in a third of the time.
    resolve_after : int
        Clean windows before an alert resolves.
    seed : int
        Seed of the row draws, folds and classifier.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors.base import Window
    >>> from detectors.reference import Reference
    >>> rng = np.random.default_rng(0)
    >>> ref = Reference({"a": rng.normal(size=1000), "b": rng.normal(size=1000)},
    ...                 {"a": "numeric", "b": "numeric"}, task="regression")
    >>> dc = DomainClassifierDrift(ref, max_rows=500, max_iter=20)
    >>> out = dc.update(Window(0, 1, 500), {"a": rng.normal(size=500), "b": rng.normal(1.0, size=500)})
    >>> out[0].evidence["top_features"][0], out[0].statistic > 0.7
    ('b', True)
    """

    _params = ("reference", "max_rows", "folds", "min_auc", "alpha", "max_iter", "max_leaf_nodes",
               "resolve_after", "reference_desc", "model", "seed")
    _derived = ("_ref_corr",)  # the reference's feature correlations: recomputed on restore

    def __init__(
        self,
        reference: Reference,
        max_rows: int = 2000,
        folds: int = 3,
        min_auc: float = 0.55,
        alpha: float = 0.001,
        max_iter: int = 50,
        max_leaf_nodes: int = 7,
        resolve_after: int = 2,
        reference_desc: str | None = None,
        model: str | None = None,
        seed: int = 0,
    ) -> None:
        self.reference = reference
        self.max_rows = int(max_rows)
        self.folds = int(folds)
        self.min_auc = float(min_auc)
        self.alpha = float(alpha)
        self.max_iter = int(max_iter)
        self.max_leaf_nodes = int(max_leaf_nodes)
        self.resolve_after = int(resolve_after)
        self.reference_desc = reference_desc if reference_desc is not None else f"{reference.n:,} training rows"
        self.model = model
        self.seed = int(seed)
        self._enc = _Encoder.fit(reference, 250)
        self._names = list(self._enc["numeric"]) + list(self._enc["categorical"])
        self._book = dec.AlertBook(self.resolve_after)
        self._windows = 0
        self._last: dict[str, Any] = {}
        self._rebuild()

    def _rebuild(self) -> None:
        # a state saved before max_leaf_nodes existed grew scikit-learn's default trees: it goes on so
        self.__dict__.setdefault("max_leaf_nodes", 31)
        numeric = self._enc["numeric"]
        self._ref_corr = _correlations(np.column_stack([self.reference.features[f] for f in numeric])
                                       if numeric else np.zeros((self.reference.n, 0)))

    def correlation_p(self, columns: Mapping[str, np.ndarray], n: int) -> float:
        """:func:`correlation_change_p` of a window's numeric features against the reference:
        the screen that tells the monitor to run this (dearer) detector on the window."""
        numeric = self._enc["numeric"]
        if len(numeric) < 2:
            return 1.0
        x = np.column_stack([_column(columns, f, n, True) for f in numeric])
        return correlation_change_p(self._ref_corr, self.reference.n, x)

    def _matrix(self, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        parts = [_column(columns, f, n, True) for f in self._enc["numeric"]]
        for f, cats in zip(self._enc["categorical"], self._enc["categories"]):
            codes = _codes(cats, _column(columns, f, n, False)).astype(np.float64)
            codes[codes < 0] = np.nan
            parts.append(codes)
        return np.column_stack(parts) if parts else np.zeros((n, 0))

    def last(self) -> dict[str, Any]:
        return dict(self._last)

    def firing(self) -> list[str]:
        return self._book.firing()

    def update(self, window: Window, columns: Mapping[str, np.ndarray], model_version: str | None = None,
               *, ignore: Iterable[str] = ()) -> list[Detection]:
        """Test one window; return new, escalated or resolved alerts. ``ignore``: features left
        out of this window's test (blanked on both sides), say those a data-quality check found
        broken: a pipeline defect is the data-quality alert's page, not a drift."""
        self._windows += 1
        with one_thread():  # OpenMP spinning on a shared machine costs far more than it gains
            return self._update(window, columns, model_version, set(ignore))

    def _update(self, window: Window, columns: Mapping[str, np.ndarray], model_version: str | None,
                ignore: set[str]) -> list[Detection]:
        from sklearn.metrics import roc_auc_score

        n = int(window.n)
        blank = [i for i, name in enumerate(self._names) if name in ignore]
        if n < 2 * self.folds or len(blank) == len(self._names):
            return []
        rng = np.random.default_rng([self.seed, self._windows])
        ref_x, cur_x = self._sample(columns, n, rng)
        ref_x[:, blank], cur_x[:, blank] = 0.0, 0.0
        x = np.vstack([ref_x, cur_x])
        y = np.concatenate([np.zeros(len(ref_x)), np.ones(len(cur_x))])
        oof, models, tests = self._cross_validate(x, y, rng)
        auc = float(roc_auc_score(y, oof))
        p = auc_pvalue(auc, len(ref_x), len(cur_x))
        breach = bool(np.isfinite(p) and p < self.alpha and auc >= self.min_auc)
        severity = "critical" if breach and auc >= 0.75 else "warning"
        importance, top = self._explain(breach, models, tests, x, y, rng)
        self._last = {"auc": auc, "p_value": p, "drifting": breach, "n": n, "top_features": top,
                      "left_out": sorted(self._names[i] for i in blank)}
        before = self._book.severity("domain_classifier")
        change = self._book.update("domain_classifier", breach, severity)
        if change is None:
            return []
        firing = change != "resolve"
        return [self._detection(window, n, auc, p, importance, top, [len(ref_x), len(cur_x)], firing,
                                severity if firing else (before or "warning"), model_version)]

    def _sample(self, columns: Mapping[str, np.ndarray], n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """At most ``max_rows`` random rows of the reference and of the window (in their
        order), encoded: the two sides of the classifier's training set."""
        ref_idx = rng.choice(self.reference.n, size=min(self.max_rows, self.reference.n), replace=False)
        cur_idx = rng.choice(n, size=min(self.max_rows, n), replace=False)
        ref_x = self._matrix({k: v[np.sort(ref_idx)] for k, v in self.reference.features.items()}, len(ref_idx))
        cur_x = self._matrix({k: np.asarray(v)[np.sort(cur_idx)] for k, v in columns.items()}, len(cur_idx))
        return ref_x, cur_x

    def _cross_validate(self, x: np.ndarray, y: np.ndarray,
                        rng: np.random.Generator) -> tuple[np.ndarray, list[Any], list[np.ndarray]]:
        """Out-of-fold probabilities of "current" for every row, with each fold's model and
        held-out rows (for the permutation importance)."""
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.model_selection import StratifiedKFold

        cat_mask = np.array([False] * len(self._enc["numeric"]) + [True] * len(self._enc["categorical"]))
        oof = np.zeros(len(y))
        models, tests = [], []
        skf = StratifiedKFold(self.folds, shuffle=True, random_state=int(rng.integers(2**31)))
        for train, test in skf.split(x, y):
            clf = HistGradientBoostingClassifier(
                max_iter=self.max_iter, max_leaf_nodes=self.max_leaf_nodes,
                categorical_features=cat_mask if cat_mask.any() else None, early_stopping=False,
                random_state=self.seed,
            )
            clf.fit(x[train], y[train])
            oof[test] = clf.predict_proba(x[test])[:, 1]
            models.append(clf)
            tests.append(test)
        return oof, models, tests

    def _detection(self, window: Window, n: int, auc: float, p: float, importance: dict[str, float],
                   top: list[str], rows_per_side: list[int], firing: bool, severity: str,
                   model_version: str | None) -> Detection:
        over = f"over the last {n:,} predictions (reference: {self.reference_desc})"
        if firing:
            summary = (f"current data can be told apart from the reference (domain-classifier AUC {auc:.2f} ≥ "
                       f"{self.min_auc:.2f}, {dec.format_p(p)}) {over}; the features that matter most: {_names(top)}.")
            if self._last.get("left_out"):
                summary += f" Left out of this test (data-quality findings): {_names(self._last['left_out'])}."
        else:
            summary = f"current data is again like the reference (domain-classifier AUC {auc:.2f}) {over}."
        return Detection(
            kind="multivariate_drift", detector="domain_classifier", feature=None, statistic=auc, p_value=p,
            threshold=self.min_auc, window=window, firing=firing,
            severity=severity,  # type: ignore[arg-type]  # str from AlertBook; always a Severity value
            effect_size=auc - 0.5, summary=summary, model=self.model, model_version=model_version,
            evidence={"top_features": top, "importance": {f: importance[f] for f in top}, "folds": self.folds,
                      "rows_per_side": rows_per_side, "alpha": self.alpha, "reference_n": self.reference.n,
                      "window_n": n},
        )

    def _explain(self, breach: bool, models: list[Any], tests: list[np.ndarray], x: np.ndarray, y: np.ndarray,
                 rng: np.random.Generator) -> tuple[dict[str, float], list[str]]:
        """The features' importance and the (at most three) that matter most; computed only
        for a breach or while the alert fires (its resolution names them), else empty."""
        if not (breach or self._book.severity("domain_classifier") is not None):
            return {}, []
        importance = self._importance(models, tests, x, y, rng)
        top = [f for f, v in sorted(importance.items(), key=lambda kv: -kv[1]) if v > 0][:3]
        return importance, top

    def _importance(self, models: list[Any], tests: list[np.ndarray], x: np.ndarray, y: np.ndarray,
                    rng: np.random.Generator) -> dict[str, float]:
        """Held-out AUC lost when each feature is permuted, averaged over the folds."""
        from sklearn.metrics import roc_auc_score

        drops = np.zeros(x.shape[1])
        for clf, test in zip(models, tests):
            xt, yt = x[test], y[test]
            base = roc_auc_score(yt, clf.predict_proba(xt)[:, 1])
            for j in range(x.shape[1]):
                xp = xt.copy()
                xp[:, j] = xp[rng.permutation(len(xp)), j]
                drops[j] += base - roc_auc_score(yt, clf.predict_proba(xp)[:, 1])
        drops /= max(len(models), 1)
        return {name: float(d) for name, d in zip(self._names, drops)}
