"""One model's window-based monitoring: the object the Kafka monitor (and replay) calls.

:class:`ModelMonitor` takes a model's column batches as they come and returns
:class:`~detectors.base.Detection` objects, each a change of an alert's state (fired,
escalated to critical, resolved):

* :meth:`ModelMonitor.update_predictions` — :class:`~detectors.batch.PredictionBatch`: cut
  into windows (count or time, tumbling or sliding, :mod:`detectors.windows`); each complete
  window is tested for data drift per feature and prediction drift on ``prediction`` and the
  class scores (:mod:`detectors.univariate_drift`), multivariate drift (:mod:`detectors.multivariate`)
  and a label-free performance estimate (:mod:`detectors.cbpe` for classifiers,
  :mod:`detectors.dle` for regressors);
* :meth:`ModelMonitor.update_labelled` — :class:`~detectors.batch.LabelledBatch` (joined
  examples): the error stream feeds the concept-drift detectors of :mod:`detectors.concept`
  event by event, labelled windows are scored against the baseline
  (:mod:`detectors.performance`), and realised metrics join the CBPE (DLE) estimates;
* :meth:`ModelMonitor.set_reference` — a new champion: new reference, baselines and
  calibrations, fresh concept-drift detectors; the alerts still firing are resolved;
* :meth:`ModelMonitor.snapshot` / :meth:`ModelMonitor.restore` — exact state as bytes;
* :meth:`ModelMonitor.status` — the last statistics, for ``driftloop stats`` and dashboards.

Settings live in :class:`MonitorSettings` (every field documented, with its default).

>>> import numpy as np, pandas as pd
>>> from detectors.batch import PredictionBatch
>>> rng = np.random.default_rng(0)
>>> ref = pd.DataFrame({"amount": rng.lognormal(3, 1, 4000), "country": rng.choice(["DE", "FR"], 4000),
...                     "label": rng.choice([0, 1], 4000)})
>>> mon = ModelMonitor("fraud", "classification", {"amount": "numeric", "country": "categorical"}, ref,
...                    {"window_size": 2000, "multivariate": False, "calibration_draws": 20})
>>> def batch(n, shift=0.0):
...     return PredictionBatch(ts=np.arange(n, dtype=np.int64),
...                            features={"amount": rng.lognormal(3 + shift, 1, n),
...                                      "country": rng.choice(["DE", "FR"], n).astype(object)},
...                            prediction=rng.choice(["0", "1"], n).astype(object))
>>> mon.update_predictions(batch(2000))
[]
>>> [d.summary[:40] for d in mon.update_predictions(batch(2000, shift=0.5))]
['feature `amount` drifted (Wasserstein 0.']
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from detectors import concept as _concept
from detectors import decision as dec
from detectors._threads import one_thread
from detectors.base import Detection, StreamDetector, Window, WindowDetector, WindowLog, keep_open, resolve_open
from detectors.batch import LabelledBatch, PredictionBatch
from detectors.cbpe import CBPE, CBPE_METRICS
from detectors.composite import Composite
from detectors.data_quality import DataQuality
from detectors.dle import DLE, MIN_REFERENCE_ROWS, usable_rows
from detectors.multivariate import DomainClassifierDrift, PCAReconstructionDrift
from detectors.performance import PerformanceDrift, positive_class
from detectors.reference import Reference, to_float_array, to_str_array
from detectors.segments import FAMILIES, Segments, parse_segments
from detectors.univariate_drift import UnivariateDrift
from detectors.windows import WindowBuffer, WindowData

__all__ = ["ModelMonitor", "MonitorSettings"]

_PRED = "__prediction__"
_SCORES = "__scores__"
_LABEL = "__label__"


@dataclass(frozen=True)
class MonitorSettings(Composite):
    """Settings of a :class:`ModelMonitor`; every field has a working default.

    Windows
        ``window_kind`` (``"count"``: ``window_size`` predictions; ``"time"``:
        ``window_size`` milliseconds of event time), ``window_size`` (5000),
        ``window_step`` (``None``: tumbling; smaller than the size: sliding),
        ``allowed_lateness`` (time windows: ms to wait for late events, 0),
        ``warmup`` (events seen before any decision, 1000), ``min_window`` (smaller windows
        are not judged, 200).
    Univariate drift (data: features; prediction: ``prediction`` and class scores)
        ``numeric_test`` (``"ks"`` or ``"cvm"``), ``numeric_effect`` (``"wasserstein"``
        normalised by the reference's standard deviation, or ``"psi"``,
        ``"jensenshannon"``, ``"ks"``), ``categorical_effect`` (``"psi"`` or
        ``"jensenshannon"``; the categorical test is chi-square), ``ks_method``
        (``"asymp"``; ``"auto"``/``"exact"`` as scipy), ``bins`` (10 reference-quantile bins
        for numeric PSI/JS), ``max_categories`` (50), ``min_effect_numeric`` (0.1 σ),
        ``min_effect_categorical`` (PSI 0.1), ``critical_numeric`` (0.5 σ),
        ``critical_categorical`` (PSI 0.25), ``min_missing_change`` (0.05),
        ``prediction_drift`` (on).
    Decisions
        ``calibration`` (on: effect thresholds from the reference's own spread, ``mean + k std``
        over ``calibration_draws`` = 50 bootstrap chunks, ``calibration_k`` = 3, simulated at
        ``calibration_n`` = the window size (5000 for time windows), never below the
        ``min_effect_*`` floors), ``correction`` (``"holm"``, ``"bh"``, ``"bonferroni"``,
        ``"none"``, across the columns of a window), ``expected_run_time`` (1000 windows
        between false alarms of a test family under no drift: ``alpha = 1 / 1000``),
        ``resolve_after`` (2 clean windows resolve an alert).
    Performance (joined labels)
        ``performance`` (on), ``performance_metrics`` (``None``: all of the task's),
        ``performance_window_size`` (labelled examples per window — always count windows, since
        labels arrive late and out of order; ``None``: ``window_size`` for count windows, 5000
        for time windows), ``baseline`` (metric values
        given outright; by default computed on the reference when it has predictions or
        scores, else on the first labelled window), ``min_degradation`` (per-metric
        overrides of :data:`detectors.performance.DEFAULT_MIN_DEGRADATION`), ``bootstrap``
        (200 replicates), ``ci_level`` (0.95), ``positive_label`` (binary positive class).
    Label-free estimate
        ``cbpe`` (on when the reference has scores), ``cbpe_min_degradation`` (0.02).
        ``dle`` (regressors: on when the reference has labels and predictions; direct loss
        estimation of MAE, MSE, RMSE, MAPE), ``dle_min_degradation`` (0.05, relative increase).
    Multivariate
        ``multivariate`` (on), ``multivariate_methods`` (``("pca", "domain_classifier")``),
        ``pca_variance`` (0.65), ``min_reconstruction_increase`` (0.1),
        ``domain_classifier_rows`` (2000 per side), ``domain_classifier_folds`` (3),
        ``domain_classifier_leaves`` (7 leaves per boosted tree), ``min_auc`` (0.55). The
        domain classifier (the dearest detector: ``folds`` boosted models per window) judges a window when one of these holds, and skips it otherwise:
        a cheaper test hints at a change (a data- or prediction-drift p-value after the
        window's correction, PCA's p-value, or the Bonferroni-adjusted p-value of the largest
        change of a pairwise correlation of numeric features, below ``domain_classifier_gate``,
        0.05; a drift test counts only when its effect reached ``domain_classifier_gate_effect``,
        0.5, of its alert threshold);
        ``domain_classifier_every`` (10) windows have passed since it last ran (the net for a
        change only it sees); its own alert is open (it decides when that resolves). ``1``
        judges every window.
    Concept drift (error stream)
        ``concept_drift`` (on), ``concept_detectors`` (``None``: ``detectors.concept``'s default
        set for classifiers, Page–Hinkley for regressors), ``concept_params`` (per detector
        name, constructor parameters), ``concept_resolve_after`` (labelled events without a
        new detection before a concept alert resolves; ``None``: the performance window size).
    Data quality (:mod:`detectors.data_quality`)
        ``data_quality`` (on: null share, unseen categories, values out of the reference's
        range, constant features, wrong types, keys absent or new, duplicated events, as kind
        ``data_quality``; the null share then leaves data drift), ``dq_min_unseen_share`` (0.01),
        ``dq_min_out_of_range_share`` (0.1: a unit change puts nearly every value out of range, a drift of 1–2 standard deviations a few percent), ``dq_min_type_error_share`` (0.01),
        ``dq_schema_share`` (0.5), ``dq_min_duplicate_share`` (0.01); the null share uses
        ``min_missing_change``.
    Segments (:mod:`detectors.segments`)
        ``segments`` (the model's ``segments:`` configuration: feature names, or
        ``{feature, buckets}`` for a numeric feature; none by default), ``segment_top`` (5
        segments per feature besides ``other`` and ``(missing)``), ``segment_min_window`` (1000
        rows gathered before a segment is judged), ``segment_min_reference`` (200 reference rows
        for a segment's own drift tests), ``segment_max_reference`` (5000: a segment's detectors
        keep a seeded sample of at most this many of its reference rows, since the monitor's state
        is saved with every batch), ``segment_family`` (``"joint"``: all traffic and every
        segment in one family per window; ``"separate"``: one per segment).
    Reference
        ``score_prefix`` (``"score_"``: score columns of the reference frame),
        ``max_reference_rows`` (100,000: a larger reference is subsampled, seeded, which bounds
        the state and the calibration cost), ``seed`` (0).

    >>> s = MonitorSettings.from_dict({"window_size": 1000, "correction": "bh"})
    >>> s.window_size, s.alpha
    (1000, 0.001)
    """

    window_kind: Literal["count", "time"] = "count"
    window_size: int = 5000
    window_step: int | None = None
    allowed_lateness: int = 0
    warmup: int = 1000
    min_window: int = 200
    numeric_test: str = "ks"
    numeric_effect: str = "wasserstein"
    categorical_effect: str = "psi"
    ks_method: str = "asymp"
    bins: int = 10
    max_categories: int = 50
    min_effect_numeric: float = 0.1
    min_effect_categorical: float = 0.1
    critical_numeric: float = 0.5
    critical_categorical: float = 0.25
    min_missing_change: float = 0.05
    prediction_drift: bool = True
    calibration: bool = True
    calibration_n: int | None = None
    calibration_draws: int = 50
    calibration_k: float = 3.0
    correction: str = "holm"
    expected_run_time: float = 1000.0
    resolve_after: int = 2
    performance: bool = True
    performance_metrics: tuple[str, ...] | None = None
    performance_window_size: int | None = None
    baseline: dict[str, float] | None = None
    min_degradation: dict[str, float] | None = None
    bootstrap: int = 200
    ci_level: float = 0.95
    positive_label: str | None = None
    cbpe: bool = True
    cbpe_min_degradation: float = 0.02
    dle: bool = True
    dle_min_degradation: float = 0.05
    multivariate: bool = True
    multivariate_methods: tuple[str, ...] = ("pca", "domain_classifier")
    pca_variance: float = 0.65
    min_reconstruction_increase: float = 0.1
    domain_classifier_rows: int = 2000
    domain_classifier_folds: int = 3
    domain_classifier_leaves: int = 7
    domain_classifier_every: int = 10
    domain_classifier_gate: float = 0.05
    domain_classifier_gate_effect: float = 0.5
    min_auc: float = 0.55
    concept_drift: bool = True
    concept_detectors: tuple[str, ...] | None = None
    concept_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    concept_resolve_after: int | None = None
    data_quality: bool = True
    dq_min_unseen_share: float = 0.01
    dq_min_out_of_range_share: float = 0.1
    dq_min_type_error_share: float = 0.01
    dq_schema_share: float = 0.5
    dq_min_duplicate_share: float = 0.01
    segments: tuple[Any, ...] = ()
    segment_top: int = 5
    segment_min_window: int = 1000
    segment_min_reference: int = 200
    segment_max_reference: int = 5000
    segment_family: str = "joint"
    score_prefix: str = "score_"
    max_reference_rows: int = 100_000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.window_kind not in ("count", "time"):
            raise ValueError("window_kind must be 'count' or 'time'")
        if self.window_size <= 0:
            raise ValueError("window_size must be positive")
        bad = set(self.multivariate_methods) - {"pca", "domain_classifier"}
        if bad:
            raise ValueError(f"unknown multivariate methods {sorted(bad)}")
        if self.domain_classifier_every < 1:
            raise ValueError("domain_classifier_every must be at least 1 (1: every window)")
        if self.domain_classifier_leaves < 2:
            raise ValueError("domain_classifier_leaves must be at least 2 (leaves per boosted tree)")
        if not 0.0 <= self.domain_classifier_gate <= 1.0:
            raise ValueError("domain_classifier_gate must be a p-value between 0 and 1")
        if not 0.0 <= self.domain_classifier_gate_effect <= 1.0:
            raise ValueError("domain_classifier_gate_effect must be a share of the alert threshold, 0 to 1")
        if self.correction not in dec.CORRECTIONS:
            raise ValueError(f"correction must be one of {dec.CORRECTIONS}")
        if min(self.segment_top, self.segment_min_window, self.segment_min_reference, self.segment_max_reference) < 1:
            raise ValueError("segment_top, segment_min_window, segment_min_reference and segment_max_reference "
                             "must be at least 1")
        if self.segment_family not in FAMILIES:
            raise ValueError(f"segment_family must be one of {FAMILIES}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> MonitorSettings:
        """Settings from a mapping (e.g. the ``detectors:`` section of the YAML config);
        unknown keys are an error, lists become tuples."""
        data = dict(data or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown detector settings {unknown}; known: {sorted(names)}")
        for k, v in list(data.items()):
            if isinstance(v, list):
                data[k] = tuple(v)
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def alpha(self) -> float:
        """Per-window family-wise level: ``1 / expected_run_time``."""
        return dec.alpha_for_run_time(self.expected_run_time)


# every field is a constructor argument: clone() (Snapshotable's) rebuilds the settings from all of them
MonitorSettings._params = tuple(f.name for f in dataclasses.fields(MonitorSettings))


def _moved(stat: Mapping[str, Any], share: float) -> bool:
    """Whether a univariate test's effect reached ``share`` of its alert threshold (a test
    without an effect size counts): a p-value alone is no hint, since on large windows a
    negligible difference (scores rounded to 4 decimals against an unrounded reference) is
    significant in every window.

    >>> _moved({"effect": 0.02, "threshold": 0.1}, 0.5), _moved({"effect": 0.06, "threshold": 0.1}, 0.5)
    (False, True)
    """
    effect, threshold = stat.get("effect"), stat.get("threshold")
    if effect is None or threshold is None or not np.isfinite(effect) or not np.isfinite(threshold):
        return True
    return bool(effect >= share * threshold)


class ModelMonitor(WindowLog, Composite):
    """Window-based drift, performance and concept-drift monitoring of one model.

    Parameters
    ----------
    model : str
        The model's name (put on every detection).
    task : {"classification", "regression"}
    feature_types : mapping of str to {"numeric", "categorical"}
        The features to watch.
    reference : pandas.DataFrame or Reference
        The training sample: feature columns and ``label``; optionally ``prediction`` and
        ``score_<class>`` columns with the model's outputs on those rows (they give the
        prediction-drift reference, the performance baseline and the CBPE calibration).
    settings : MonitorSettings or mapping, optional
        See :class:`MonitorSettings`.
    reference_scores : array of shape (n, k), optional
        The model's scores on the reference rows, instead of score columns.
    classes : sequence of str, optional
        Column order of ``reference_scores`` (and the model's classes).
    """

    _params = ("model", "task", "feature_types", "reference", "settings")

    def __init__(
        self,
        model: str,
        task: Literal["classification", "regression"],
        feature_types: Mapping[str, str],
        reference: Any,
        settings: MonitorSettings | Mapping[str, Any] | None = None,
        *,
        reference_scores: Any = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', not {task!r}")
        self.model = str(model)
        self.task = task
        self.feature_types = {str(k): str(v) for k, v in feature_types.items()}
        self.settings = settings if isinstance(settings, MonitorSettings) else MonitorSettings.from_dict(settings)
        s = self.settings
        self._data_windows = WindowBuffer(s.window_kind, s.window_size, s.window_step, s.allowed_lateness)
        # labels come late and out of prediction-time order, so performance is judged over
        # count windows of joined examples whatever the prediction windows are
        self._label_windows = WindowBuffer("count", self._performance_n, None)
        self._n_predictions = 0
        self._n_labelled = 0
        self._n_errors = 0.0
        self._data_windows_judged = 0
        self._label_windows_judged = 0
        self._skipped_windows = 0
        self._model_version: str | None = None
        self._open: dict[str, dict[str, Any]] = {}
        self._last_window: dict[str, dict[str, Any] | None] = {"predictions": None, "labelled": None}
        self._recent_errors = np.empty(0)
        self.reference = self._make_reference(reference, reference_scores, classes)
        self._build()

    def _rebuild(self) -> None:
        """After a restore: fill attributes that snapshots of earlier versions lack."""
        self.__dict__.setdefault("_last_window", {"predictions": None, "labelled": None})
        self.__dict__.setdefault("_dle", None)  # snapshots from before DLE: none until a new reference
        self.__dict__.setdefault("_dc_since", 0)  # snapshots from before the gate: it runs next window
        self.__dict__.setdefault("_dc_runs", {"judged": 0, "skipped": 0, "last": None})
        self.__dict__.setdefault("_dq", None)        # snapshots from before data quality and segments:
        self.__dict__.setdefault("_segments", None)  # none until a new reference

    # ------------------------------------------------------------------ construction
    def _make_reference(self, reference: Any, scores: Any, classes: Sequence[str] | None) -> Reference:
        if isinstance(reference, Reference):
            if reference.feature_types != self.feature_types or reference.task != self.task:
                reference = Reference(
                    {f: reference.features[f] for f in self.feature_types}, self.feature_types, self.task,
                    label=reference.label, prediction=reference.prediction, scores=reference.scores,
                    classes=reference.classes or None,
                )
        else:
            reference = Reference.from_frame(
                reference, self.feature_types, self.task, scores=scores, classes=classes,
                score_prefix=self.settings.score_prefix,
            )
        return reference.sample(self.settings.max_reference_rows, self.settings.seed)

    @property
    def _performance_n(self) -> int:
        s = self.settings
        if s.performance_window_size:
            return int(s.performance_window_size)
        return int(s.window_size) if s.window_kind == "count" else 5000

    @property
    def _calibration_n(self) -> int:
        s = self.settings
        if s.calibration_n:
            return int(s.calibration_n)
        return int(s.window_size) if s.window_kind == "count" else 5000

    def _drift_kwargs(self) -> dict[str, Any]:
        s = self.settings
        return dict(
            numeric_test=s.numeric_test, numeric_effect=s.numeric_effect, categorical_effect=s.categorical_effect,
            ks_method=s.ks_method, bins=s.bins, max_categories=s.max_categories,
            min_effect_numeric=s.min_effect_numeric, min_effect_categorical=s.min_effect_categorical,
            critical_numeric=s.critical_numeric, critical_categorical=s.critical_categorical,
            min_missing_change=s.min_missing_change, calibrate=s.calibration, calibration_n=self._calibration_n,
            calibration_draws=s.calibration_draws, calibration_k=s.calibration_k, alpha=s.alpha,
            correction=s.correction, resolve_after=s.resolve_after, model=self.model, seed=s.seed,
            missing_rate=not s.data_quality,
        )

    def _prediction_columns(self) -> dict[str, str]:
        """Prediction-drift columns and their types."""
        cols = {"prediction": "categorical" if self.task == "classification" else "numeric"}
        if self.task == "classification" and self._pred_with_scores:
            if self._pos is not None:
                cols[f"scores[{self._pos}]"] = "numeric"
            elif len(self.classes) > 2:
                cols.update({f"scores[{c}]": "numeric" for c in self.classes})
        return cols

    def _prediction_values(self, prediction: np.ndarray | None, scores: np.ndarray | None, n: int) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if prediction is not None:
            out["prediction"] = prediction
        for name in self._prediction_columns():
            if name.startswith("scores["):
                k = self.classes.index(name[7:-1])
                out[name] = scores[:, k] if scores is not None else np.full(n, np.nan)
        return out

    def _build(self) -> None:
        """(Re)build every reference-dependent component from ``self.reference``."""
        ref = self.reference
        classification = self.task == "classification"
        self.classes = list(ref.classes) if classification else []
        self._pos = positive_class(self.classes, self.settings.positive_label) if classification else None
        desc = f"{ref.n:,} training rows"
        self._data_drift = UnivariateDrift(ref, kind="data_drift", reference_desc=desc, **self._drift_kwargs())
        self._build_prediction_drift(desc)
        self._pca: WindowDetector | None = self._multivariate("pca", desc)
        dc = self._multivariate("domain_classifier", desc)
        self._dc: DomainClassifierDrift | None = dc if isinstance(dc, DomainClassifierDrift) else None
        self._dc_since = 0                        # judged windows since it last ran (0: runs next)
        self._dc_runs: dict[str, Any] = {"judged": 0, "skipped": 0, "last": None}
        self._cbpe: CBPE | None = self._build_cbpe()
        self._dle: DLE | None = self._build_dle()
        self._perf: PerformanceDrift | None = self._build_performance()
        self._dq: DataQuality | None = self._build_data_quality(desc)
        self._segments: Segments | None = self._build_segments()
        self._concept: dict[str, StreamDetector] = {}
        self._concept_state: dict[str, dict[str, Any]] = {}
        self._build_concept()
        self._events_since_reference = 0

    def _build_prediction_drift(self, desc: str) -> None:
        """The prediction-drift detector: on the reference's predictions (and scores, if it has
        them) when it has predictions; else built later from the first judged window."""
        ref = self.reference
        self._pred_drift: UnivariateDrift | None = None
        self._pred_source = "none"
        # with reference predictions, watch what the reference has (scores only if it has them);
        # without, the first judged window of the stream becomes the reference of everything
        self._pred_with_scores = ref.prediction is None or ref.scores is not None
        if not self.settings.prediction_drift:
            return
        if ref.prediction is None:
            self._pred_source = "stream"
            return
        values = self._prediction_values(ref.prediction, ref.scores, ref.n)
        self._pred_drift = self._make_pred_drift(values, ref.n, f"the model's outputs on {desc}")
        self._pred_source = "reference"

    def _multivariate(self, method: str, desc: str) -> WindowDetector | None:
        """The multivariate detector ``method`` ("pca" or "domain_classifier"), or None when
        the settings leave it out (PCA also needs two features)."""
        s = self.settings
        if not s.multivariate or method not in s.multivariate_methods:
            return None
        if method == "pca":
            if len(self.feature_types) < 2:
                return None
            return PCAReconstructionDrift(self.reference, variance=s.pca_variance, alpha=s.alpha,
                                          min_increase=s.min_reconstruction_increase,
                                          resolve_after=s.resolve_after, reference_desc=desc, model=self.model)
        return DomainClassifierDrift(self.reference, max_rows=s.domain_classifier_rows,
                                     folds=s.domain_classifier_folds, max_leaf_nodes=s.domain_classifier_leaves,
                                     min_auc=s.min_auc, alpha=s.alpha,
                                     resolve_after=s.resolve_after, reference_desc=desc, model=self.model,
                                     seed=s.seed)

    def _build_cbpe(self) -> CBPE | None:
        """The label-free accuracy estimate: classifiers whose reference has scores and labels."""
        s, ref = self.settings, self.reference
        if not (s.cbpe and self.task == "classification" and ref.scores is not None and ref.label is not None):
            return None
        # the metrics of performance_metrics that CBPE can estimate (None: all it can)
        metrics = None if s.performance_metrics is None else tuple(
            m for m in s.performance_metrics if m in CBPE_METRICS) or ("accuracy",)
        return CBPE(ref, positive_label=s.positive_label, alpha=s.alpha, min_degradation=s.cbpe_min_degradation,
                    min_n=s.min_window, resolve_after=s.resolve_after, model=self.model, metrics=metrics,
                    seed=s.seed)

    def _build_dle(self) -> DLE | None:
        """The label-free error estimate: regressors whose reference has labels and predictions."""
        s, ref = self.settings, self.reference
        if not (s.dle and self.task == "regression" and usable_rows(ref) >= MIN_REFERENCE_ROWS):
            return None
        return DLE(ref, min_degradation=s.dle_min_degradation, ci_level=s.ci_level, min_n=s.min_window,
                   resolve_after=s.resolve_after, seed=s.seed, model=self.model)

    def _performance_kwargs(self) -> dict[str, Any]:
        s = self.settings
        return dict(task=self.task, classes=self.classes, metrics=s.performance_metrics, baseline=s.baseline,
                    positive_label=s.positive_label, alpha=s.alpha, min_degradation=s.min_degradation,
                    bootstrap=s.bootstrap, ci_level=s.ci_level, min_n=s.min_window, resolve_after=s.resolve_after,
                    model=self.model, seed=s.seed)

    def _build_performance(self) -> PerformanceDrift | None:
        """Performance against the baseline, on labelled windows."""
        if not self.settings.performance:
            return None
        return PerformanceDrift(reference=self.reference, **self._performance_kwargs())

    def _build_data_quality(self, desc: str) -> DataQuality | None:
        """The data-quality checks of every feature against the reference."""
        s = self.settings
        if not s.data_quality:
            return None
        return DataQuality(self.reference, alpha=s.alpha, correction=s.correction,
                           min_missing_change=s.min_missing_change, min_unseen_share=s.dq_min_unseen_share,
                           min_out_of_range_share=s.dq_min_out_of_range_share,
                           min_type_error_share=s.dq_min_type_error_share, schema_share=s.dq_schema_share,
                           min_duplicate_share=s.dq_min_duplicate_share, resolve_after=s.resolve_after,
                           model=self.model, reference_desc=desc)

    def _build_segments(self) -> Segments | None:
        """Per-segment drift and performance, when the model names segment features."""
        s = self.settings
        specs = parse_segments(s.segments, self.feature_types)
        if not specs:
            return None
        pred_cols = pred_ref = None
        if self._pred_source == "reference":
            pred_cols = self._prediction_columns()
            pred_ref = self._prediction_values(self.reference.prediction, self.reference.scores, self.reference.n)
        perf = self._performance_kwargs() if self._perf is not None else None
        baseline = self._perf.baseline_metrics() if self._perf is not None else None
        return Segments(specs, self.reference, top=s.segment_top, min_window=s.segment_min_window,
                        min_reference=s.segment_min_reference, max_reference=s.segment_max_reference,
                        family=s.segment_family, correction=s.correction,
                        window_size=s.window_size if s.window_kind == "count" else None,
                        labelled_window_size=self._performance_n,
                        drift_kwargs=self._drift_kwargs(), prediction_columns=pred_cols, prediction_reference=pred_ref,
                        performance_kwargs=perf, overall_baseline=baseline)

    def _concept_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """(name, constructor parameters) of the concept-drift detectors: the ones named in the
        settings, else the default set for classifiers and Page–Hinkley for regressors."""
        s = self.settings
        if s.concept_detectors is not None:
            return [(n, dict(s.concept_params.get(n, {}))) for n in tuple(s.concept_detectors)]
        if self.task == "classification":
            return [(n, {**p, **s.concept_params.get(n, {})}) for n, p in _concept.DEFAULT_SET]
        return [("page_hinkley", dict(s.concept_params.get("page_hinkley", {})))]

    def _build_concept(self) -> None:
        """Fresh concept-drift detectors on the error stream, and their alert state."""
        if not self.settings.concept_drift or _concept is None:
            return
        for name, params in self._concept_specs():
            self._concept[name] = _concept.make_detector(name, **params)
            self._concept_state[name] = {"firing": False, "since": 0, "detections": 0, "last_hit_ts": None}

    def _make_pred_drift(self, values: dict[str, np.ndarray], n: int, desc: str) -> UnivariateDrift:
        pcols = self._prediction_columns()
        pref = Reference({c: values[c] for c in pcols}, pcols, task=self.task)
        return UnivariateDrift(pref, kind="prediction_drift", reference_desc=desc, **self._drift_kwargs())

    # ------------------------------------------------------------------ inputs
    def _align_scores(self, scores: np.ndarray | None, classes: Sequence[str], n: int) -> np.ndarray | None:
        if self.task != "classification" or not self.classes:
            return None
        if scores is None:
            return None
        scores = np.asarray(scores, dtype=np.float64)
        out = np.full((n, len(self.classes)), np.nan)
        index = {str(c): i for i, c in enumerate(classes)}
        for k, c in enumerate(self.classes):
            if c in index:
                out[:, k] = scores[:, index[c]]
        return out

    def _feature_columns(self, features: Mapping[str, np.ndarray], n: int,
                         names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The batch layout of the features ``names`` (all by default; an absent one: all missing)."""
        out: dict[str, np.ndarray] = {}
        for name in self.feature_types if names is None else names:
            kind = self.feature_types[name]
            col = features.get(name)
            if kind == "numeric":
                out[name] = np.full(n, np.nan) if col is None else (
                    col if isinstance(col, np.ndarray) and col.dtype == np.float64 else to_float_array(col))
            else:
                out[name] = np.full(n, None, dtype=object) if col is None else (
                    col if isinstance(col, np.ndarray) and col.dtype == object else to_str_array(col))
        return out

    def _outputs(self, prediction: Any, n: int) -> np.ndarray:
        if self.task == "classification":
            p = np.asarray(prediction)
            return p if p.dtype == object else to_str_array(p)
        return np.asarray(prediction, dtype=np.float64)

    # ------------------------------------------------------------------ bookkeeping
    def _record(self, detections: list[Detection]) -> list[Detection]:
        return keep_open(self._open, detections, self._model_version)

    def _judge(self, wd: WindowData) -> bool:
        if wd.window.n < self.settings.min_window or self._events_since_reference < self.settings.warmup:
            self._skipped_windows += 1
            return False
        return True

    # ------------------------------------------------------------------ predictions
    def update_predictions(self, batch: PredictionBatch) -> list[Detection]:
        """Feed a batch of predictions; return the detections of the windows it completes."""
        n = len(batch)
        if n == 0:
            return []
        if batch.model_version is not None:
            self._model_version = batch.model_version
        self._n_predictions += n
        cols = self._feature_columns(batch.features, n)
        cols[_PRED] = self._outputs(batch.prediction, n)
        if self._dq is not None:    # the pipeline's marks travel with each event into its window
            cols.update(self._dq.columns(batch.marks, n))
        if self.task == "classification":
            sc = self._align_scores(batch.scores, batch.classes, n)
            cols[_SCORES] = sc if sc is not None else np.full((n, len(self.classes)), np.nan)
        out: list[Detection] = []
        windows = self._data_windows.push(batch.ts, cols)
        self._events_since_reference += n
        if windows:
            with one_thread():
                for wd in windows:
                    out.extend(self._on_data_window(wd))
        return self._record(out)

    def _on_data_window(self, wd: WindowData) -> list[Detection]:
        if not self._judge(wd):
            return []
        self._data_windows_judged += 1
        version = self._model_version
        w = wd.window
        self._last_window["predictions"] = {"start_ts": w.start_ts, "end_ts": w.end_ts, "n": w.n}
        c = wd.columns
        scores = c.get(_SCORES)
        values: dict[str, np.ndarray] = {}
        judge_pred = False
        if self.settings.prediction_drift:
            values = self._prediction_values(c[_PRED], scores, w.n)
            if self._pred_drift is None and self._pred_source == "stream":
                self._pred_drift = self._make_pred_drift(
                    values, w.n, f"the first {w.n:,} predictions of the stream")
                self._pred_source = "stream (built)"
            else:
                judge_pred = self._pred_drift is not None
        if self._segments is not None:
            feats = {f: c[f] for f in self.feature_types}
            out = self._segments.data_window(w, wd.ts, feats, values, self._data_drift,
                                             self._pred_drift if judge_pred else None, version)
        else:
            out = self._data_drift.update(w, c, version)
            if judge_pred:
                out += self._pred_drift.update(w, values, version)  # type: ignore[union-attr]  # judge_pred: not None
        broken: set[str] = set()
        if self._dq is not None:
            out += self._dq.update(w, c, version)
            broken = self._dq.pipeline_defects()
        if self._pca is not None:
            out += self._pca.update(w, c, version)
        if self._dc is not None:
            out += self._domain_classifier(self._dc, w, c, version, broken)
        if self._cbpe is not None and scores is not None:
            out += self._cbpe.update(w, c[_PRED], scores, version)
        if self._dle is not None:
            out += self._dle.update(w, c, c[_PRED], version)
        self._log_window()
        return out

    def _domain_classifier(self, dc: DomainClassifierDrift, w: Window, c: Mapping[str, np.ndarray],
                           version: str | None, broken: set[str]) -> list[Detection]:
        """The domain classifier ``dc`` on this window when :meth:`_domain_classifier_due` says so,
        without the ``broken`` features (the window's data-quality findings: nulls, a type change,
        a dropped or constant field would otherwise page a second time, as drift)."""
        why = self._domain_classifier_due(dc, c, int(w.n))
        self._dc_runs["last"] = why
        if why is None:
            self._dc_since += 1
            self._dc_runs["skipped"] += 1
            return []
        self._dc_since = 1
        self._dc_runs["judged"] += 1
        return dc.update(w, c, version, ignore=broken)

    def _domain_classifier_due(self, dc: DomainClassifierDrift, c: Mapping[str, np.ndarray], n: int) -> str | None:
        """Why the domain classifier ``dc`` judges the window ``c`` just tested by the cheaper
        detectors (their ``last()`` is this window's), or None to skip it."""
        s = self.settings
        if dc.firing():
            return "its alert is open"
        if self._dc_since == 0 or self._dc_since >= s.domain_classifier_every:
            return "cadence"
        share = s.domain_classifier_gate_effect
        hints = [(v.get("p_adjusted"), k) for k, v in self._data_drift.last().items() if _moved(v, share)]
        if self._pred_drift is not None:
            hints += [(v.get("p_adjusted"), k) for k, v in self._pred_drift.last().items() if _moved(v, share)]
        if self._pca is not None:
            hints.append((self._pca.last().get("p_value"), "pca_reconstruction"))
        hints.append((dc.correlation_p(c, n), "feature correlations"))
        moved = [(float(p), name) for p, name in hints if p is not None and np.isfinite(p) and p < s.domain_classifier_gate]
        if moved:
            p, name = min(moved)
            return f"{name} p={p:.2g}"
        return None

    def observe_pipeline(self, trailing: Mapping[str, Any] | None) -> None:
        """Events the pipeline dropped after a batch's last accepted prediction (refused for a
        feature's type, or duplicates: counts and examples), for the data-quality checks: counted
        on the next prediction (:meth:`detectors.data_quality.DataQuality.observe_pipeline`).
        Call it after :meth:`update_predictions` with that batch."""
        if self._dq is not None and trailing:
            self._dq.observe_pipeline(trailing)

    # ------------------------------------------------------------------ labels
    def update_labelled(self, batch: LabelledBatch) -> list[Detection]:
        """Feed joined examples; return concept-drift, performance (and CBPE-resolution)
        detections."""
        n = len(batch)
        if n == 0:
            return []
        if batch.model_version is not None:
            self._model_version = batch.model_version
        order = np.argsort(np.asarray(batch.ts), kind="stable")
        ts = np.asarray(batch.ts, dtype=np.int64)[order]
        pred = self._outputs(batch.prediction, n)[order]
        label = self._outputs(batch.label, n)[order]
        sc = self._align_scores(batch.scores, batch.classes, n)
        if sc is not None:
            sc = sc[order]
        self._n_labelled += n
        if self.task == "classification":
            errors = (pred != label).astype(np.float64)
            ok = np.ones(n, dtype=bool)
        else:
            errors = np.abs(pred - label)
            ok = np.isfinite(errors)
        out: list[Detection] = []
        out += self._concept_update(ts[ok], errors[ok])
        if self._cbpe is not None:
            self._cbpe.update_labels(ts, pred == label, label, pred, sc)
        if self._dle is not None:
            self._dle.update_labels(ts, pred, label, {f: np.asarray(v)[order] for f, v in batch.features.items()})
        if self._perf is not None:
            cols: dict[str, np.ndarray] = {_PRED: pred, _LABEL: label}
            if self.task == "classification":
                cols[_SCORES] = sc if sc is not None else np.full((n, len(self.classes)), np.nan)
            if self._segments is not None:
                feats = self._feature_columns(batch.features, n, [sp.feature for sp in self._segments.specs])
                cols.update({f: v[order] for f, v in feats.items()})
            for wd in self._label_windows.push(ts, cols):
                if wd.window.n < self.settings.min_window:
                    self._skipped_windows += 1
                    continue
                self._label_windows_judged += 1
                w = wd.window
                self._last_window["labelled"] = {"start_ts": w.start_ts, "end_ts": w.end_ts, "n": w.n}
                out += self._judge_labelled(wd)
                self._log_window()
        return self._record(out)

    def _judge_labelled(self, wd: WindowData) -> list[Detection]:
        """Performance on one labelled window: all traffic, and the segments it completes."""
        assert self._perf is not None
        c = wd.columns
        if self._segments is not None:
            return self._segments.labelled_window(wd.window, wd.ts, c, _LABEL, _PRED, _SCORES, self._perf,
                                                  self._model_version)
        return self._perf.update(wd.window, c[_LABEL], c[_PRED], c.get(_SCORES), self._model_version)

    def _concept_update(self, ts: np.ndarray, errors: np.ndarray) -> list[Detection]:
        if len(errors) == 0:
            return []
        before_n = self._n_labelled - len(errors)
        before_err = self._n_errors
        self._n_errors += float(errors.sum())
        history = np.concatenate([self._recent_errors, errors])
        recent = history[-1000:]
        self._recent_errors = recent
        if not self._concept:
            return []
        resolve_after = self.settings.concept_resolve_after or self._performance_n
        out: list[Detection] = []
        for name, det in self._concept.items():
            st = self._concept_state[name]
            hits = det.update_many(errors)
            if len(hits):
                last = int(hits[-1])
                st["detections"] += len(hits)
                st["last_hit_ts"] = int(ts[last])
                st["since"] = len(errors) - 1 - last
                if not st["firing"]:
                    st["firing"] = True
                    pos = len(history) - len(errors) + last
                    win = history[max(0, pos - 999): pos + 1]
                    rate = float(win.mean()) if len(win) else float("nan")
                    base = (before_err / before_n) if before_n > 0 else rate
                    out.append(self._concept_detection(name, det, ts, last, rate, base, len(win), True))
            else:
                st["since"] += len(errors)
                if st["firing"] and st["since"] >= resolve_after:
                    st["firing"] = False
                    rate = float(recent.mean()) if len(recent) else float("nan")
                    base = self._n_errors / self._n_labelled if self._n_labelled else rate
                    out.append(self._concept_detection(name, det, ts, len(errors) - 1, rate, base, len(recent), False))
        return out

    def _concept_detection(self, name: str, det: StreamDetector, ts: np.ndarray, pos: int, rate: float,
                           base: float, n: int, firing: bool) -> Detection:
        what = "error rate" if self.task == "classification" else "mean absolute error"
        label = {"adwin": "ADWIN", "ddm": "DDM", "eddm": "EDDM", "hddm_a": "HDDM-A", "hddm_w": "HDDM-W",
                 "page_hinkley": "Page–Hinkley", "kswin": "KSWIN"}.get(name, name)
        if firing:
            summary = (f"the model's {what} rose: {label} detected a change in the error stream ({what} "
                       f"{rate:.3g} over the last {n:,} labelled predictions vs {base:.3g} before); "
                       f"the relation between features and labels may have changed — check recent labels and "
                       f"consider retraining.")
        else:
            summary = (f"no new change in the error stream for a while ({label}); {what} {rate:.3g} over the last "
                       f"{n:,} labelled predictions.")
        start = int(ts[max(0, pos - n + 1)]) if len(ts) else None
        params = {k: v for k, v in det.params().items() if isinstance(v, int | float | str | bool | tuple | type(None))}
        return Detection(
            kind="concept_drift", detector=name, feature=None, statistic=float(rate), p_value=None,
            threshold=float(base), window=Window(start, int(ts[pos]), int(n)), firing=firing,
            severity="warning", effect_size=float(rate - base) if np.isfinite(rate - base) else None,
            summary=summary, model=self.model, model_version=self._model_version,
            evidence={"detector_params": params, "detections_so_far": self._concept_state[name]["detections"],
                      "error_rate_before": base, "recent_error_rate": rate, "labelled_seen": self._n_labelled},
        )

    # ------------------------------------------------------------------ lifecycle
    def flush(self) -> list[Detection]:
        """Judge the partial windows still buffered (end of a replay)."""
        out: list[Detection] = []
        for wd in self._data_windows.flush():
            out.extend(self._on_data_window(wd))
        if self._perf is not None:
            for wd in self._label_windows.flush():
                if wd.window.n >= self.settings.min_window:
                    self._label_windows_judged += 1
                    out += self._judge_labelled(wd)
                    self._log_window()
        return self._record(out)

    def set_reference(
        self, reference: Any, *, reference_scores: Any = None, classes: Sequence[str] | None = None
    ) -> list[Detection]:
        """Replace the reference (a new champion's training sample): new baselines and
        calibrations, fresh concept-drift detectors and windows. Returns the resolutions of
        the alerts that were firing, since they were about the old reference."""
        out = resolve_open(self._open)
        self._open = {}
        self.reference = self._make_reference(reference, reference_scores, classes)
        self._data_windows.reset()
        self._label_windows.reset()
        self._recent_errors = np.empty(0)
        self._build()
        return out

    def clear_open(self) -> None:
        """Forget the alerts open now: the caller has resolved them (a version that stopped being
        the champion, or was retired)."""
        self._open = {}

    # ------------------------------------------------------------------ status
    def firing(self) -> list[dict[str, Any]]:
        """The alerts firing now (the last detection of each)."""
        return [dict(v) for v in self._open.values()]

    def status(self) -> dict[str, Any]:
        """Counts and the last statistics of every detector, as plain JSON-able data."""
        out: dict[str, Any] = {
            "model": self.model,
            "task": self.task,
            "model_version": self._model_version,
            "reference_rows": self.reference.n,
            "reference_has_scores": self.reference.has_scores,
            "classes": list(self.classes),
            "predictions": self._n_predictions,
            "labelled": self._n_labelled,
            "windows_judged": {"predictions": self._data_windows_judged, "labelled": self._label_windows_judged},
            "windows_skipped": self._skipped_windows,
            "last_window": {k: (dict(v) if v else None) for k, v in self._last_window.items()},
            "pending": {"predictions": self._data_windows.pending, "labelled": self._label_windows.pending},
            "late_events": self._data_windows.late + self._label_windows.late,
            "data_drift": self._data_drift.last(),
            "thresholds": self._data_drift.thresholds(self._calibration_n),
            "prediction_drift": self._pred_drift.last() if self._pred_drift is not None else {},
            "prediction_reference": self._pred_source,
            "firing": [{"kind": v["kind"], "detector": v["detector"], "feature": v["feature"],
                        "segment": v.get("segment"), "severity": v["severity"], "summary": v["summary"]}
                       for v in self._open.values()],
        }
        if self._perf is not None:
            out["performance"] = {"baseline": self._perf.baseline_metrics(), "last": self._perf.last()}
        if self._cbpe is not None:
            out["cbpe"] = {"baseline_accuracy": self._cbpe.baseline_accuracy, "baseline": dict(self._cbpe.baseline),
                           "last": self._cbpe.last(),
                           "history": self._cbpe.history_table()}
        if self._dle is not None:
            out["dle"] = {"baseline": dict(self._dle.baseline), "reference_estimate": dict(self._dle.reference_estimate),
                          "last": self._dle.last(), "history": self._dle.history_table()}
        mv: dict[str, Any] = {}
        if self._pca is not None:
            mv["pca"] = self._pca.last()
        if self._dc is not None:
            mv["domain_classifier"] = {**self._dc.last(), "windows": dict(self._dc_runs)}
        out["multivariate"] = mv
        if self._dq is not None:
            out["data_quality"] = self._dq.last()
        if self._segments is not None:
            out["segments"] = self._segments.status()
        out["concept_drift"] = {
            "available": _concept is not None,
            "detectors": {k: dict(v) for k, v in self._concept_state.items()},
            "error_rate": (self._n_errors / self._n_labelled) if self._n_labelled else None,
        }
        return out

    summary = status
