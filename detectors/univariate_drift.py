"""Univariate data drift and prediction drift over windows, all features at once.

:class:`UnivariateDrift` compares each window of a model's data with a reference sample,
feature by feature: numeric features with a significance test (KS by default, or
Cramér–von Mises) and an effect size (normalised Wasserstein by default, or PSI,
Jensen–Shannon, KS distance); categorical features with chi-square and PSI (or
Jensen–Shannon); numeric features also with a missing-rate check. A feature drifts when its
Holm-adjusted p-value is below ``alpha`` and its effect size is above
``max(calibrated threshold, min_effect)`` (see :mod:`detectors.decision`). One instance
serves data drift (the features) and another prediction drift (``prediction`` and the class
scores, as columns of their own reference).

Every statistic of the window is computed in a few vectorised numpy calls over all features
(:mod:`detectors.two_sample`).

Examples
--------
>>> import numpy as np
>>> from detectors.base import Window
>>> from detectors.reference import Reference
>>> rng = np.random.default_rng(0)
>>> ref = Reference({"a": rng.normal(size=20000), "b": rng.normal(size=20000)},
...                 {"a": "numeric", "b": "numeric"}, task="regression")
>>> det = UnivariateDrift(ref, calibration_n=5000, calibration_draws=20)
>>> cur = {"a": rng.normal(size=5000), "b": rng.normal(0.3, size=5000)}
>>> [(d.feature, d.detector, d.firing) for d in det.update(Window(0, 1, 5000), cur)]
[('b', 'wasserstein', True)]
>>> det.update(Window(1, 2, 5000), cur)  # still drifting: nothing new to say
[]
>>> det.firing()
['b']
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtr

from detectors import decision as dec
from detectors import two_sample as uv
from detectors.base import Detection, Window
from detectors.composite import Composite
from detectors.reference import Reference

__all__ = ["UnivariateDrift", "NUMERIC_EFFECTS", "CATEGORICAL_EFFECTS"]

NUMERIC_EFFECTS = ("wasserstein", "psi", "jensenshannon", "ks")
CATEGORICAL_EFFECTS = ("psi", "jensenshannon")
_LABELS = {"ks": "KS", "cvm": "CvM", "chi2": "chi2", "psi": "PSI", "jensenshannon": "JS",
           "wasserstein": "Wasserstein", "missing_rate": "missing rate"}


def _fmt(stat: str, v: float) -> str:
    if stat == "wasserstein":
        return f"{v:.2f}σ"
    if stat == "missing_rate":
        return f"{v:+.1%}"
    return f"{v:.3g}" if v < 0.01 else f"{v:.2f}"


def _constant(r: _Row) -> bool:
    """Whether the numeric row's reference (nearly) never varies: its spread is at the floor."""
    return bool(r.detail.get("reference_constant"))


def _constant_reference(r: _Row, effect: float) -> str:
    """A Wasserstein effect against a constant reference, in the column's own units.

    >>> row = _Row(key="n", column="n", type="numeric", detector="wasserstein", test="ks",
    ...            test_statistic=None, p=None, effect=3333.0, threshold=0.1, critical=1.0, n=10, stats={},
    ...            detail={"reference_constant": True, "reference_mean": 10.0})
    >>> _constant_reference(row, 3333.0)
    'Wasserstein distance 3.33 from a reference constant at 10'
    """
    return f"Wasserstein distance {effect * uv.STD_FLOOR:.3g} from a reference constant at {r.detail.get('reference_mean', 0.0):.3g}"


def _num(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) else None


def _two_proportion_p(p0: np.ndarray, p1: np.ndarray, m: int, n: int) -> np.ndarray:
    """Two-sided p-values of the pooled two-proportion z-test, vectorised."""
    pooled = (p0 * m + p1 * n) / max(m + n, 1)
    se = np.sqrt(pooled * (1 - pooled) * (1 / max(m, 1) + 1 / max(n, 1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(p1 - p0) / se
    p = 2 * ndtr(-z)
    return np.where(se > 0, p, np.where(p0 == p1, 1.0, 0.0))


@dataclass(frozen=True, slots=True)
class _Row:
    """One test of a window's family: a column's drift test, or a numeric column's
    missing-rate test (``detector == "missing_rate"``).

    ``p`` is the raw p-value (``None`` if undefined), ``effect`` the effect size the
    ``threshold`` (and ``critical``) apply to, ``stats`` every statistic reported,
    ``detail`` what the detection's evidence adds, ``histogram`` the reference-quantile
    bins (edges, reference counts, current counts) of a numeric drift test.
    """

    key: str
    column: str
    type: str
    detector: str
    test: str
    test_statistic: float | None
    p: float | None
    effect: float | None
    threshold: float
    critical: float
    n: int
    stats: dict[str, float | None]
    detail: dict[str, Any]
    histogram: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


class UnivariateDrift(Composite):
    """Window-by-window drift of every column of a reference, with alert lifecycle.

    Parameters
    ----------
    reference : Reference
        The columns to watch are its features (numeric and categorical).
    kind : {"data_drift", "prediction_drift"}
        The ``kind`` of the detections.
    numeric_test : {"ks", "cvm"}
        Significance test of numeric columns.
    numeric_effect : {"wasserstein", "psi", "jensenshannon", "ks"}
        Effect size of numeric columns (Wasserstein is divided by the reference's standard
        deviation: "the distribution moved by x sigma").
    categorical_effect : {"psi", "jensenshannon"}
        Effect size of categorical columns (their test is chi-square).
    report : tuple of str
        Numeric statistics computed and reported besides the two above.
    ks_method : {"asymp", "exact", "auto"}
        As in :func:`scipy.stats.ks_2samp`.
    bins, max_categories : int
        Reference-quantile bins of numeric PSI/JS; categories kept per feature.
    min_effect_numeric, min_effect_categorical : float
        Effect sizes below which nothing fires, whatever the p-value: the "harmless" floor.
    critical_numeric, critical_categorical : float
        Effect sizes from which a detection is ``critical`` rather than ``warning``.
    min_missing_change : float
        Numeric columns: the absolute change of the missing rate that counts as drift.
    missing_rate : bool
        Test numeric columns' missing rate (default). A monitor with data-quality checks
        (:mod:`detectors.data_quality`) turns it off: the null share is then a data-quality
        finding, of every feature.
    calibrate : bool
        Calibrate effect thresholds on the reference (default) or use the floors alone.
    calibration_n, calibration_draws, calibration_k : int, int, float
        Window size the calibration simulates; bootstrap draws; ``mean + k * std``.
    alpha : float
        Family-wise level per window (see :func:`detectors.decision.alpha_for_run_time`).
    correction : {"holm", "bh", "bonferroni", "none"}
        Correction across the columns tested in a window.
    resolve_after : int
        Clean windows before a firing alert resolves.
    reference_desc : str
        How summaries name the reference ("20,000 training rows" by default).
    model : str, optional
        Model name put on detections.
    seed : int
        Seed of the calibration draws.
    """

    _params = (
        "reference", "kind", "numeric_test", "numeric_effect", "categorical_effect", "report",
        "ks_method", "bins", "max_categories", "min_effect_numeric", "min_effect_categorical",
        "critical_numeric", "critical_categorical", "min_missing_change", "missing_rate", "calibrate",
        "calibration_n", "calibration_draws", "calibration_k", "alpha", "correction",
        "resolve_after", "reference_desc", "model", "seed",
    )

    def __init__(
        self,
        reference: Reference,
        kind: str = "data_drift",
        numeric_test: str = "ks",
        numeric_effect: str = "wasserstein",
        categorical_effect: str = "psi",
        report: tuple[str, ...] = ("ks", "wasserstein", "psi", "jensenshannon"),
        ks_method: str = "asymp",
        bins: int = 10,
        max_categories: int = 50,
        min_effect_numeric: float = 0.1,
        min_effect_categorical: float = 0.1,
        critical_numeric: float = 0.5,
        critical_categorical: float = 0.25,
        min_missing_change: float = 0.05,
        missing_rate: bool = True,
        calibrate: bool = True,
        calibration_n: int = 5000,
        calibration_draws: int = 50,
        calibration_k: float = 3.0,
        alpha: float = 0.001,
        correction: str = "holm",
        resolve_after: int = 2,
        reference_desc: str | None = None,
        model: str | None = None,
        seed: int = 0,
    ) -> None:
        if kind not in ("data_drift", "prediction_drift"):
            raise ValueError(f"kind must be data_drift or prediction_drift, not {kind!r}")
        if numeric_test not in ("ks", "cvm"):
            raise ValueError(f"numeric_test must be 'ks' or 'cvm', not {numeric_test!r}")
        if numeric_effect not in NUMERIC_EFFECTS:
            raise ValueError(f"numeric_effect must be one of {NUMERIC_EFFECTS}")
        if categorical_effect not in CATEGORICAL_EFFECTS:
            raise ValueError(f"categorical_effect must be one of {CATEGORICAL_EFFECTS}")
        if correction not in dec.CORRECTIONS:
            raise ValueError(f"correction must be one of {dec.CORRECTIONS}")
        if not 0 < alpha < 1:
            raise ValueError("alpha must be in (0, 1)")
        self.reference = reference
        self.kind = kind
        self.numeric_test = numeric_test
        self.numeric_effect = numeric_effect
        self.categorical_effect = categorical_effect
        self.report = tuple(report)
        self.ks_method = ks_method
        self.bins = int(bins)
        self.max_categories = int(max_categories)
        self.min_effect_numeric = float(min_effect_numeric)
        self.min_effect_categorical = float(min_effect_categorical)
        self.critical_numeric = float(critical_numeric)
        self.critical_categorical = float(critical_categorical)
        self.min_missing_change = float(min_missing_change)
        self.missing_rate = bool(missing_rate)
        self.calibrate = bool(calibrate)
        self.calibration_n = int(calibration_n)
        self.calibration_draws = int(calibration_draws)
        self.calibration_k = float(calibration_k)
        self.alpha = float(alpha)
        self.correction = correction
        self.resolve_after = int(resolve_after)
        self.reference_desc = reference_desc if reference_desc is not None else f"{reference.n:,} training rows"
        self.model = model
        self.seed = int(seed)

        self._numeric = reference.numeric
        self._categorical = reference.categorical
        rng = np.random.default_rng(self.seed)
        self._num_prof: dict[str, Any] | None = None
        self._num_cal: dict[str, Any] | None = None
        self._rebuild()
        if self._numeric and self.calibrate:
            self._num_cal = dec.calibrate_numeric(
                self._num_prof,  # type: ignore[arg-type]  # _rebuild() has just set it
                numeric_effect, self.calibration_n, self.calibration_draws,
                self.calibration_k, rng,
            )
        self._cat_prof: dict[str, Any] | None = None
        self._cat_cal: dict[str, Any] | None = None
        if self._categorical:
            self._cat_prof = uv.categorical_profile(
                [reference.features[c] for c in self._categorical], self.max_categories
            )
            if self.calibrate:
                self._cat_cal = dec.calibrate_categorical(
                    self._cat_prof, categorical_effect, self.calibration_n, self.calibration_draws,
                    self.calibration_k, rng,
                )
        self._book = dec.AlertBook(self.resolve_after)
        self._last: dict[str, dict[str, Any]] = {}
        self._windows = 0

    _derived = ("_num_prof",)  # the sorted reference: recomputed on restore, not stored

    def _rebuild(self) -> None:
        self.__dict__.setdefault("missing_rate", True)   # states saved before it was a setting
        if self._numeric:
            self._num_prof = uv.numeric_profile(self.reference.numeric_matrix(self._numeric).T, self.bins)

    # ------------------------------------------------------------------ info
    @property
    def columns(self) -> list[str]:
        return self._numeric + self._categorical

    def firing(self) -> list[str]:
        """Keys (``column`` or ``column:missing_rate``) of the alerts now firing."""
        return self._book.firing()

    def last(self) -> dict[str, dict[str, Any]]:
        """Statistics of the last window per column (for stats pages)."""
        return {k: dict(v) for k, v in self._last.items()}

    def thresholds(self, n: int) -> dict[str, float]:
        """Effect-size thresholds in force for a window of ``n`` values, per column."""
        out: dict[str, float] = {}
        if self._numeric:
            t = self._numeric_threshold(np.full(len(self._numeric), n))
            out.update(zip(self._numeric, t.tolist()))
        if self._categorical:
            t = self._categorical_threshold(np.full(len(self._categorical), n))
            out.update(zip(self._categorical, t.tolist()))
        return out

    def _numeric_threshold(self, n: np.ndarray) -> np.ndarray:
        floor = np.full(len(self._numeric), self.min_effect_numeric)
        if self._num_cal is None:
            return floor
        cal = self._num_cal
        m = self._num_prof["valid"]  # type: ignore[index]  # set by _rebuild() when there are numeric features
        t = dec.scale_threshold(self.numeric_effect, cal["threshold"], n, m, cal["n_cal"], cal["m_cal"])
        return np.fmax(floor, t)

    def _categorical_threshold(self, n: np.ndarray) -> np.ndarray:
        floor = np.full(len(self._categorical), self.min_effect_categorical)
        if self._cat_cal is None:
            return floor
        cal = self._cat_cal
        m = self._cat_prof["counts"].sum(axis=1)  # type: ignore[index]  # set by _rebuild() when there are categorical features
        t = dec.scale_threshold(self.categorical_effect, cal["threshold"], n, m, cal["n_cal"], cal["m_cal"])
        return np.fmax(floor, t)

    # ------------------------------------------------------------------ update
    def update(
        self,
        window: Window,
        columns: Mapping[str, np.ndarray],
        model_version: str | None = None,
    ) -> list[Detection]:
        """Test one window; return the detections it causes (new, escalated, resolved).

        Parameters
        ----------
        window : Window
            The window's event-time range and size (put on the detections).
        columns : mapping of str to array
            The window's values of every watched column (numeric ``float64``, categorical
            ``object`` of ``str``). A column absent from the mapping counts as all missing.
        model_version : str, optional
            Put on the detections.
        """
        rows = self.tests(window, columns)
        return self.decide(rows, dec.adjust_pvalues(self.p_values(rows), self.correction), window, model_version)

    def tests(self, window: Window, columns: Mapping[str, np.ndarray]) -> list[_Row]:
        """The first half of :meth:`update`: every test of the window, undecided. A caller that
        pools several detectors' tests into one family (:mod:`detectors.segments`) adjusts their
        :meth:`p_values` together and hands each detector its part with :meth:`decide`."""
        self._windows += 1
        n_rows = int(window.n)
        rows: list[_Row] = []  # one per test in the family
        if self._numeric:
            rows += self._numeric_rows(columns, n_rows)
        if self._categorical:
            rows += self._categorical_rows(columns, n_rows)
        return rows

    @staticmethod
    def p_values(rows: list[_Row]) -> np.ndarray:
        """The raw p-values of :meth:`tests`' rows (``NaN``: no test)."""
        return np.array([np.nan if r.p is None else r.p for r in rows], dtype=np.float64)

    def decide(self, rows: list[_Row], p_adjusted: np.ndarray, window: Window,
               model_version: str | None = None) -> list[Detection]:
        """The second half of :meth:`update`: judge each test with its adjusted p-value."""
        out: list[Detection] = []
        for r, pa in zip(rows, p_adjusted):
            detection = self._judge(r, pa, window, model_version)
            if detection is not None:
                out.append(detection)
        return out

    def _judge(self, r: _Row, pa: float, window: Window, model_version: str | None) -> Detection | None:
        """Decide one test with its adjusted p-value ``pa``: record it in :meth:`last`, pass it
        to the alert book, and return the detection if its alert changed."""
        eff = r.effect
        p_adjusted = _num(pa)
        breach = bool(np.isfinite(pa) and pa < self.alpha and eff is not None and eff > r.threshold)
        severity = "critical" if breach and eff is not None and eff >= r.critical else "warning"
        self._last[r.key] = {
            "type": r.type, "detector": r.detector, "effect": eff, "threshold": r.threshold,
            "test": r.test, "p_value": r.p, "p_adjusted": p_adjusted, "n": r.n,
            "drifting": breach, **r.stats,
        }
        before = self._book.severity(r.key)
        change = self._book.update(r.key, breach, severity)
        if change is None:
            return None
        firing = change != "resolve"
        sev = severity if firing else (before or "warning")
        return self._detection(r, p_adjusted, window, firing, sev, model_version)

    def _numeric_matrix(self, columns: Mapping[str, np.ndarray], n_rows: int) -> np.ndarray:
        """The window's numeric columns as an ``(F, n)`` matrix (an absent column: all ``NaN``)."""
        mat = np.empty((len(self._numeric), n_rows))
        for i, name in enumerate(self._numeric):
            col = columns.get(name)
            mat[i] = np.nan if col is None else np.asarray(col, dtype=np.float64)
        return mat

    def _numeric_rows(self, columns: Mapping[str, np.ndarray], n_rows: int) -> list[_Row]:
        """Per numeric column, its drift test and its missing-rate test (a two-proportion
        z-test on the share of missing values), all columns' statistics in one vectorised call."""
        tests = set(self.report) | {self.numeric_test, self.numeric_effect}
        tests &= set(uv.NUMERIC_TESTS)
        res = uv.numeric_tests(self._num_prof, self._numeric_matrix(columns, n_rows), tuple(sorted(tests)),  # type: ignore[arg-type]  # set by _rebuild() when there are numeric features
                               self.ks_method)
        thr = self._numeric_threshold(res["n"])
        prof = self._num_prof
        assert prof is not None
        ref_missing = 1.0 - prof["valid"] / max(prof["sorted"].shape[1], 1)
        p_missing = _two_proportion_p(ref_missing, res["missing"], prof["sorted"].shape[1], n_rows)
        rows: list[_Row] = []
        for i, name in enumerate(self._numeric):
            rows.append(self._numeric_row(i, name, tests, res, float(thr[i]), prof, ref_missing))
            if not self.missing_rate:
                continue
            p0, p1 = float(ref_missing[i]), float(res["missing"][i])
            rows.append(_Row(
                key=f"{name}:missing_rate", column=name, type="numeric", detector="missing_rate",
                test="two-proportion z", test_statistic=p1 - p0, p=float(p_missing[i]) if n_rows else None,
                effect=abs(p1 - p0), threshold=self.min_missing_change, critical=0.5, n=n_rows,
                stats={"missing_rate": p1, "reference_missing_rate": p0},
                detail={"reference_missing_rate": p0, "current_missing_rate": p1},
            ))
        return rows

    def _numeric_row(self, i: int, name: str, tests: set[str], res: dict[str, np.ndarray], threshold: float,
                     prof: dict[str, Any], ref_missing: np.ndarray) -> _Row:
        """The drift test of numeric column ``i`` from the window's vectorised results ``res``."""
        stats = {t: _num(res[t][i]) for t in tests}
        return _Row(
            key=name, column=name, type="numeric", detector=self.numeric_effect,
            test=self.numeric_test, test_statistic=_num(res[self.numeric_test][i]),
            p=_num(res[self.numeric_test + "_p"][i]),
            effect=_num(res[self.numeric_effect][i]), threshold=threshold,
            critical=self.critical_numeric, n=int(res["n"][i]), stats=stats,
            histogram=(prof["edges"][i], prof["counts"][i], res["counts"][i]) if "counts" in res else None,
            detail={
                "reference_mean": _num(prof["mean"][i]), "current_mean": _num(res["mean"][i]),
                "reference_constant": bool(prof["std"][i] <= uv.STD_FLOOR),
                "reference_median": _num(prof["median"][i]), "current_median": _num(res["median"][i]),
                "reference_missing_rate": _num(ref_missing[i]), "current_missing_rate": _num(res["missing"][i]),
            },
        )

    def _categorical_rows(self, columns: Mapping[str, np.ndarray], n_rows: int) -> list[_Row]:
        """Per categorical column, its chi-square test with the effect size (an absent column:
        all missing), all columns in one vectorised call."""
        cols = []
        for name in self._categorical:
            col = columns.get(name)
            if col is None:
                col = np.full(n_rows, None, dtype=object)
            cols.append(np.asarray(col, dtype=object))
        res = uv.categorical_tests(self._cat_prof, cols)  # type: ignore[arg-type]  # set by _rebuild() when there are categorical features
        thr = self._categorical_threshold(res["n"])
        prof = self._cat_prof
        assert prof is not None
        ref_counts = prof["counts"]
        rows: list[_Row] = []
        for i, name in enumerate(self._categorical):
            stats = {t: _num(res[t][i]) for t in ("chi2", "psi", "jensenshannon")}
            rows.append(_Row(
                key=name, column=name, type="categorical", detector=self.categorical_effect,
                test="chi2", test_statistic=_num(res["chi2"][i]), p=_num(res["chi2_p"][i]),
                effect=_num(res[self.categorical_effect][i]), threshold=float(thr[i]),
                critical=self.critical_categorical, n=int(res["n"][i]), stats=stats,
                detail=self._category_detail(i, ref_counts[i], res["counts"][i], res),
            ))
        return rows

    def _category_detail(self, i: int, ref: np.ndarray, cur: np.ndarray, res: dict[str, np.ndarray]) -> dict[str, Any]:
        names = uv.category_names(self._cat_prof, i)  # type: ignore[arg-type]  # set by _rebuild() when there are categorical features
        pr = ref / max(ref.sum(), 1)
        pc = cur / max(cur.sum(), 1)
        diff = pc - pr
        order = np.argsort(-np.abs(diff), kind="stable")
        top = [
            {"category": names[j], "reference_share": float(pr[j]), "current_share": float(pc[j])}
            for j in order[:5]
            if names[j] is not None and abs(diff[j]) > 0
        ]
        return {
            "top_changes": top,
            "unseen_share": float(res["unseen"][i]),
            "current_missing_rate": float(res["missing"][i]),
        }

    # ------------------------------------------------------------------ detections
    def _subject(self, column: str) -> str:
        if self.kind == "data_drift":
            return f"feature `{column}`"
        if column.startswith("scores[") and column.endswith("]"):
            return f"the score of class `{column[7:-1]}`"
        return f"the model's `{column}`"

    def _detection(
        self, r: _Row, p_adjusted: float | None, window: Window, firing: bool, severity: str, model_version: str | None
    ) -> Detection:
        eff, thr, det = r.effect, r.threshold, r.detector
        n = r.n if r.detector != "missing_rate" else window.n
        return Detection(
            kind=self.kind,
            detector=det,
            feature=r.column,
            statistic=float(eff) if eff is not None else float("nan"),
            p_value=p_adjusted,
            threshold=float(thr),
            window=window,
            firing=firing,
            severity=severity,  # type: ignore[arg-type]  # str from AlertBook; always a Severity value
            effect_size=eff,
            summary=self._summary(r, p_adjusted, window, firing),
            model=self.model,
            model_version=model_version,
            evidence=self._evidence(r, n),
        )

    def _summary(self, r: _Row, p_adjusted: float | None, window: Window, firing: bool) -> str:
        """The detection's sentence: what drifted (or is back to normal), by how much, on what."""
        over = f"over the last {window.n:,} predictions (reference: {self.reference_desc})"
        subject = self._subject(r.column)
        if r.detector == "missing_rate":
            d = r.detail
            what = f"missing rate {d['reference_missing_rate']:.1%} → {d['current_missing_rate']:.1%}"
            if firing:
                return f"{subject} is missing more or less often ({what}, {dec.format_p(p_adjusted)}) {over}."
            return f"{subject}'s missing rate is back to normal ({what}) {over}."
        eff, thr, det = r.effect, r.threshold, r.detector
        extra = [f"{_LABELS[r.test]} {dec.format_p(p_adjusted)}"]
        for s in ("psi", "wasserstein", "jensenshannon"):
            v = r.stats.get(s)
            if s != det and v is not None and s in ("psi", "wasserstein"):
                extra.append(_constant_reference(r, v) if s == "wasserstein" and _constant(r)
                             else f"{_LABELS[s]} {_fmt(s, v)}")
        if det == "wasserstein" and eff is not None and _constant(r):
            # in units of a spread the reference does not have, the effect would read "3333σ"
            nums, bound = _constant_reference(r, eff), ""
        else:
            nums = f"{_LABELS[det]} {_fmt(det, eff) if eff is not None else 'n/a'}"
            bound = f" > {_fmt(det, thr)}" if firing else f", threshold {_fmt(det, thr)}"
        if firing:
            summary = f"{subject} drifted ({nums}{bound}, {', '.join(extra)}) {over}"
            return summary + self._what_changed(r) + "."
        return f"{subject} no longer drifts ({nums}{bound}, {', '.join(extra)}) {over}."

    def _evidence(self, r: _Row, n: int) -> dict[str, Any]:
        """The detection's evidence: the test, the decision's settings, every statistic, the
        row's detail and, for a numeric drift test, the histogram."""
        evidence = {
            "test": r.test,
            "test_statistic": r.test_statistic,
            "p_value_raw": r.p,
            "alpha": self.alpha,
            "correction": self.correction,
            "threshold_floor": self.min_effect_numeric if r.type == "numeric" else self.min_effect_categorical,
            "calibrated": self.calibrate,
            "statistics": dict(r.stats),
            "reference_n": self.reference.n,
            "reference": self.reference_desc,
            "window_n": int(n),
            **r.detail,
        }
        if r.detector == "missing_rate":
            evidence["threshold_floor"] = self.min_missing_change
        elif r.histogram is not None:
            edges, ref_counts, cur_counts = r.histogram
            evidence["histogram"] = {
                "edges": [float(e) for e in edges],  # bin b is [edges[b-1], edges[b]); the last bin: missing
                "reference": [int(c) for c in ref_counts],
                "current": [int(c) for c in cur_counts],
            }
        return evidence

    def _what_changed(self, r: _Row) -> str:
        d = r.detail
        if r.type == "numeric":
            rm, cm = d.get("reference_mean"), d.get("current_mean")
            rmed, cmed = d.get("reference_median"), d.get("current_median")
            if rm is None or cm is None:
                return ""
            return f": mean {cm:.3g} vs {rm:.3g} in the reference, median {cmed:.3g} vs {rmed:.3g}"
        parts = [
            f"`{t['category']}` {t['reference_share']:.0%} → {t['current_share']:.0%}" for t in d["top_changes"][:3]
        ]
        text = f": {', '.join(parts)}" if parts else ""
        if d.get("unseen_share", 0) > 0:
            text += f"; {d['unseen_share']:.1%} of values are categories the reference never had"
        return text
