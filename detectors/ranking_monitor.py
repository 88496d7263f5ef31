"""One ranking model's monitoring (contract v1.1, ``task: ranking``): recommenders and Top-K.

:class:`RankingMonitor` is the ranking counterpart of :class:`~detectors.model_monitor.ModelMonitor`,
with the same methods, so the Kafka monitor, replay and the version bookkeeping
(:mod:`detectors.versions`) drive it alike. A prediction is the ranked list of item ids shown,
a label the items engaged with (graded or not), both as encoded text (:mod:`detectors.ranking_lists`).

* :meth:`RankingMonitor.update_predictions` — count windows of requests (``window_size``),
  each judged for drift of the request features (:class:`~detectors.univariate_drift.UnivariateDrift`),
  of the recommended items (:class:`~detectors.ranking_drift.ItemDrift`: the top items' shares
  of the top-``k`` slots, unseen items counted), of the lists' shape (each request's list length
  and its top items' mean reference popularity, :func:`~detectors.ranking_metrics.list_columns`)
  and of the scores (the top item's and the list's mean, when events carry scores), the last two
  through :class:`~detectors.univariate_drift.UnivariateDrift`, and described label-free
  (:func:`~detectors.ranking_metrics.label_free_metrics`: coverage, Gini, top items' share,
  mean popularity, novelty, list length, unseen share, beside the reference's own values);
* :meth:`RankingMonitor.update_labelled` — count windows of joined requests scored with the
  configured metrics against the baseline (:class:`~detectors.ranking_performance.RankingPerformance`):
  only a drop pages.

The reference is a frame of requests: the feature columns, ``prediction`` (the list the model
gives, as a list, JSON text or encoded text) and optionally ``label`` (the engagement: list,
item → relevance, JSON text, or encoded) and the score columns ``score@1``/``score_mean``.

>>> import numpy as np, pandas as pd
>>> from detectors.batch import PredictionBatch
>>> from detectors.ranking_lists import encode_ranking
>>> rng = np.random.default_rng(0)
>>> items = [f"i{j}" for j in range(200)]
>>> def lists(n, top):
...     return [encode_ranking(rng.choice(items[:top], 10, replace=False)) for _ in range(n)]
>>> ref = pd.DataFrame({"device": rng.choice(["ios", "web"], 4000), "prediction": lists(4000, 100)})
>>> mon = RankingMonitor("shop", {"device": "categorical"}, ref, {"window_size": 2000, "warmup": 0})
>>> def batch(n, top=100):
...     return PredictionBatch(ts=np.arange(n, dtype=np.int64), features={"device": rng.choice(["ios", "web"], n)
...                            .astype(object)}, prediction=np.array(lists(n, top), dtype=object))
>>> mon.update_predictions(batch(2000))
[]
>>> [(d.detector, d.feature) for d in mon.update_predictions(batch(2000, top=20))]
[('item_shares', 'prediction'), ('wasserstein', 'mean_popularity')]
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors import decision as dec
from detectors._threads import one_thread
from detectors.base import Detection, WindowLog, keep_open, resolve_open
from detectors.batch import LabelledBatch, PredictionBatch
from detectors.composite import Composite
from detectors.ranking_drift import ItemDrift
from detectors.ranking_lists import encode_ranking, encode_relevance
from detectors.ranking_metrics import ItemReference, label_free_metrics, list_columns, parse_metric
from detectors.ranking_performance import RankingPerformance
from detectors.reference import Reference, to_float_array, to_str_array
from detectors.univariate_drift import UnivariateDrift
from detectors.windows import WindowBuffer, WindowData

__all__ = ["RankingMonitor", "RankingSettings", "SCORE_COLUMNS"]

SCORE_COLUMNS = ("score@1", "score_mean")
"""A ranking model's score columns: the top item's score and the list's mean (consumers.ranking_validation)."""
_PRED = "__prediction__"
_LABEL = "__label__"


@dataclass
class RankingSettings(Composite):
    """Settings of a :class:`RankingMonitor` (the ``detectors:`` section of a ranking model).

    Windows: ``window_size`` (5000 requests, count windows), ``warmup`` (requests seen before
    any decision, 1000), ``min_window`` (200), ``performance_window_size`` (labelled requests
    per performance window; the window size). Metrics: ``k`` (top slots for item drift and
    the label-free metrics, 10), ``metrics`` (NDCG@10, precision@10, recall@10, MAP@10, MRR,
    hit rate@10), ``min_degradation`` (0.02: the drop that pages), ``critical_degradation``
    (0.1), ``bootstrap`` (200 draws for a window's interval). Drift: ``data_drift``,
    ``prediction_drift`` (the recommended items), ``list_drift`` (each request's list length and
    its top items' mean reference popularity: empty or shorter lists, a swing to popular or
    obscure items), ``score_drift`` (each on), ``max_items``
    (50 reference items followed by name), ``min_item_shift`` (Jensen–Shannon floor, 0.1: about PSI 0.055),
    ``calibration_draws`` (100). Decisions: ``expected_run_time`` (1000 windows between false
    alarms: ``alpha = 1/1000`` per family), ``resolve_after`` (2). ``max_reference_rows``
    (10,000 requests, a seeded sample: the monitor's state, saved with every judged batch,
    holds the reference's lists), ``seed``.

    >>> RankingSettings.from_dict({"k": 5, "metrics": ["ndcg@5", "mrr"]}).metrics
    ('ndcg@5', 'mrr')
    """

    window_size: int = 5000
    warmup: int = 1000
    min_window: int = 200
    performance: bool = True
    performance_window_size: int | None = None
    k: int = 10
    metrics: tuple[str, ...] = ("ndcg@10", "precision@10", "recall@10", "map@10", "mrr", "hit_rate@10")
    min_degradation: float = 0.02
    critical_degradation: float = 0.1
    bootstrap: int = 200
    data_drift: bool = True
    prediction_drift: bool = True
    list_drift: bool = True
    score_drift: bool = True
    max_items: int = 50
    min_item_shift: float = 0.1
    calibration_draws: int = 100
    expected_run_time: float = 1000.0
    resolve_after: int = 2
    max_reference_rows: int = 10_000
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.window_size, self.k, self.max_items, self.calibration_draws, self.resolve_after) < 1:
            raise ValueError("window_size, k, max_items, calibration_draws and resolve_after must be at least 1")
        if not self.metrics:
            raise ValueError("metrics: at least one metric")
        for name in self.metrics:
            parse_metric(name)
        if not 0 <= self.min_degradation <= self.critical_degradation:
            raise ValueError("min_degradation must be >= 0 and at most critical_degradation")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RankingSettings:
        """Settings from a mapping; unknown keys are an error, lists become tuples."""
        data = dict(data or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown ranking detector settings {unknown}; known: {sorted(names)}")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)

    @property
    def alpha(self) -> float:
        """Per-window family-wise level: ``1 / expected_run_time``."""
        return dec.alpha_for_run_time(self.expected_run_time)


RankingSettings._params = tuple(f.name for f in dataclasses.fields(RankingSettings))


def encoded_lists(values: Any, *, relevance: bool = False) -> np.ndarray:
    """A reference column of ranked lists (or labels) as encoded text: lists, item → relevance
    objects, their JSON text or already encoded text; a missing value stays None.

    >>> encoded_lists(['["a", 2]', ["b"], None]).tolist()
    ['a\\x1f2', 'b', None]
    >>> encoded_lists(['{"a": 2}', "[]"], relevance=True).tolist()
    ['a\\x1e2.0', '']
    """
    out = np.empty(len(values), dtype=object)
    for i, cell in enumerate(values):
        try:
            v = json.loads(cell) if isinstance(cell, str) and cell[:1] in ("[", "{") else cell
        except ValueError:
            raise ValueError(f"row {i}: {str(cell)[:60]!r} is neither JSON nor an encoded list") from None
        if v is None or (isinstance(v, float) and v != v):
            out[i] = None
        elif isinstance(v, str):
            out[i] = v
        elif isinstance(v, Mapping) or relevance:
            out[i] = encode_relevance(v)
        else:
            out[i] = encode_ranking(v)
    return out


class RankingMonitor(WindowLog, Composite):
    """Drift, label-free and realised performance monitoring of one ranking model.

    Parameters
    ----------
    model : str
    feature_types : mapping of str to {"numeric", "categorical"}
        The request features to watch.
    reference : pandas.DataFrame
        The reference requests (see the module docstring).
    settings : RankingSettings or mapping, optional
    """

    task = "ranking"
    _params = ("model", "feature_types", "reference", "settings")

    def __init__(self, model: str, feature_types: Mapping[str, str], reference: Any,
                 settings: RankingSettings | Mapping[str, Any] | None = None) -> None:
        self.model = str(model)
        self.feature_types = {str(k): str(v) for k, v in feature_types.items()}
        self.settings = settings if isinstance(settings, RankingSettings) else RankingSettings.from_dict(settings)
        s = self.settings
        self._data_windows = WindowBuffer("count", s.window_size, None)
        self._label_windows = WindowBuffer("count", s.performance_window_size or s.window_size, None)
        self._n_predictions = 0
        self._n_labelled = 0
        self._windows_judged = {"predictions": 0, "labelled": 0}
        self._skipped_windows = 0
        self._model_version: str | None = None
        self._open: dict[str, dict[str, Any]] = {}
        self._last_window: dict[str, dict[str, Any] | None] = {"predictions": None, "labelled": None}
        self._label_free: dict[str, Any] = {}
        self._set_reference(reference)

    # ------------------------------------------------------------------ construction
    def _set_reference(self, reference: Any) -> None:
        s = self.settings
        self.reference = ref = _reference_columns(reference, self.feature_types, s.max_reference_rows, s.seed)
        preds, labels = ref["prediction"], ref.get("label")
        self.reference_n = int(len(preds))
        feats = {f: ref[f] for f in self.feature_types}
        self._features_ref = Reference(feats, self.feature_types, task="regression")
        desc = f"{self.reference_n:,} reference requests"
        self._data_drift = UnivariateDrift(self._features_ref, "data_drift", calibration_n=s.window_size,
                                           alpha=s.alpha, resolve_after=s.resolve_after, reference_desc=desc,
                                           model=self.model, seed=s.seed) if s.data_drift else None
        # engagement shares only from a fully labelled reference (an unknown label is not "nothing engaged")
        engaged = None if labels is None or any(x is None for x in labels) else list(labels)
        self._items = ItemReference.from_lists(list(preds), engaged, k=s.k)
        popularity_rows = _popularity_half(len(preds), s.seed)
        self._popularity = ItemReference.from_lists(list(preds[popularity_rows]), k=s.k)
        self._item_drift = ItemDrift(list(preds), k=s.k, max_items=s.max_items, min_effect=s.min_item_shift,
                                     calibration_draws=s.calibration_draws, alpha=s.alpha,
                                     resolve_after=s.resolve_after, reference_desc=desc, model=self.model,
                                     seed=s.seed) if s.prediction_drift else None
        self._output_drift = self._build_output_drift(ref, desc, popularity_rows)
        known = np.array([x is not None for x in labels], dtype=bool) if labels is not None else np.zeros(0, bool)
        self._perf = RankingPerformance.from_reference(
            list(preds[known]) if labels is not None else [], list(labels[known]) if labels is not None else [],
            metrics=s.metrics, min_degradation=s.min_degradation, critical_degradation=s.critical_degradation,
            alpha=s.alpha, resolve_after=s.resolve_after, draws=s.bootstrap, model=self.model,
            seed=s.seed) if s.performance else None
        self._events_since_reference = 0

    def _output_columns(self, preds: Any, scores: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The per-request numbers watched for prediction drift: the lists' shape (length, mean
        popularity of the top k in the popularity half of the reference) and, when the
        reference has them, the scores."""
        s = self.settings
        cols = list_columns(list(preds), self._popularity, s.k) if s.list_drift else {}
        return {**cols, **{c: scores[c] for c in self._score_columns if c in scores}}

    def _reference_output_columns(self, ref: Mapping[str, np.ndarray], popularity_rows: np.ndarray
                                  ) -> dict[str, np.ndarray]:
        """:meth:`_output_columns` of the reference's requests, the popularity half's mean
        popularity left out (NaN): a request is never scored by shares it counted in. The other
        half is scored as a window is, by shares it had no part in, so under no change both are
        draws of one distribution, however discrete (a recommender that serves one list per
        segment gives a few values; scored in-sample or leave-one-out, the reference's values
        sit beside the windows' and every window differs by a rank test)."""
        cols = self._output_columns(ref["prediction"], ref)
        if "mean_popularity" in cols and len(popularity_rows) < len(ref["prediction"]):
            cols["mean_popularity"] = cols["mean_popularity"].copy()
            cols["mean_popularity"][popularity_rows] = np.nan
        return cols

    def _build_output_drift(self, ref: Mapping[str, np.ndarray], desc: str, popularity_rows: np.ndarray
                            ) -> UnivariateDrift | None:
        s = self.settings
        self._score_columns = [c for c in SCORE_COLUMNS if s.score_drift and c in ref
                               and np.isfinite(ref[c]).any()]
        cols = self._reference_output_columns(ref, popularity_rows)
        if not cols:
            return None
        oref = Reference(cols, dict.fromkeys(cols, "numeric"), task="regression")
        # (an empty list has no mean popularity: its length says it, so no missing-rate test here)
        return UnivariateDrift(oref, "prediction_drift", calibration_n=s.window_size, alpha=s.alpha,
                               resolve_after=s.resolve_after, reference_desc=desc, model=self.model, seed=s.seed,
                               missing_rate=False)

    # ------------------------------------------------------------------ predictions
    def update_predictions(self, batch: PredictionBatch) -> list[Detection]:
        """Feed a batch of requests; return the detections of the windows it completes."""
        n = len(batch)
        if n == 0:
            return []
        if batch.model_version is not None:
            self._model_version = batch.model_version
        self._n_predictions += n
        cols = {f: np.asarray(batch.features[f]) if f in batch.features else _absent(t, n)
                for f, t in self.feature_types.items()}
        cols[_PRED] = np.asarray(batch.prediction, dtype=object)
        scores = _score_columns(batch, n)
        cols.update(scores)
        out: list[Detection] = []
        windows = self._data_windows.push(np.asarray(batch.ts, dtype=np.int64), cols)
        self._events_since_reference += n
        with one_thread():
            for wd in windows:
                out += self._on_data_window(wd)
        return self._record(out)

    def _on_data_window(self, wd: WindowData) -> list[Detection]:
        s = self.settings
        if wd.window.n < s.min_window or self._events_since_reference < s.warmup:
            self._skipped_windows += 1
            return []
        self._windows_judged["predictions"] += 1
        w, c, version = wd.window, wd.columns, self._model_version
        self._last_window["predictions"] = {"start_ts": w.start_ts, "end_ts": w.end_ts, "n": w.n}
        preds = list(c[_PRED])
        self._label_free = label_free_metrics(preds, self._items, s.k)
        out: list[Detection] = []
        if self._data_drift is not None:
            out += self._data_drift.update(w, {f: c[f] for f in self.feature_types}, version)
        if self._item_drift is not None:
            out += self._item_drift.update_lists(w, preds, version)
        if self._output_drift is not None:
            out += self._output_drift.update(w, self._output_columns(preds, c), version)
        self._log_window()
        return out

    def observe_pipeline(self, trailing: Mapping[str, Any] | None) -> None:
        """What the pipeline dropped after a batch (ModelMonitor's data-quality input): a ranking
        model has no data-quality checks yet, so nothing is kept."""

    # ------------------------------------------------------------------ labels
    def update_labelled(self, batch: LabelledBatch) -> list[Detection]:
        """Feed joined requests; return the performance detections of the windows they complete."""
        n = len(batch)
        if n == 0 or self._perf is None:
            self._n_labelled += n
            return []
        if batch.model_version is not None:
            self._model_version = batch.model_version
        self._n_labelled += n
        order = np.argsort(np.asarray(batch.ts), kind="stable")
        ts = np.asarray(batch.ts, dtype=np.int64)[order]
        cols = {_PRED: np.asarray(batch.prediction, dtype=object)[order],
                _LABEL: np.asarray(batch.label, dtype=object)[order]}
        out: list[Detection] = []
        with one_thread():
            for wd in self._label_windows.push(ts, cols):
                out += self._on_labelled_window(wd)
        return self._record(out)

    def _on_labelled_window(self, wd: WindowData) -> list[Detection]:
        if wd.window.n < self.settings.min_window or self._perf is None:
            self._skipped_windows += 1
            return []
        self._windows_judged["labelled"] += 1
        w = wd.window
        self._last_window["labelled"] = {"start_ts": w.start_ts, "end_ts": w.end_ts, "n": w.n}
        out = self._perf.update(w, list(wd.columns[_PRED]), list(wd.columns[_LABEL]), self._model_version)
        self._log_window()
        return out

    def flush(self) -> list[Detection]:
        """Judge the partial windows still buffered (end of a replay)."""
        out: list[Detection] = []
        for wd in self._data_windows.flush():
            out += self._on_data_window(wd)
        for wd in self._label_windows.flush():
            out += self._on_labelled_window(wd)
        return self._record(out)

    # ------------------------------------------------------------------ bookkeeping
    def _record(self, detections: list[Detection]) -> list[Detection]:
        return keep_open(self._open, detections, self._model_version)

    def set_reference(self, reference: Any, **_: Any) -> list[Detection]:
        """Replace the reference (a new champion's sample): new baselines and calibrations;
        returns the resolutions of the alerts that were firing (they were about the old one)."""
        out = resolve_open(self._open)
        self._open = {}
        self._data_windows.reset()
        self._label_windows.reset()
        if self._perf is not None:
            self._perf.clear()
        self._set_reference(reference)
        return out

    def clear_open(self) -> None:
        """Forget the alerts open now (the caller resolved them)."""
        self._open = {}

    def firing(self) -> list[dict[str, Any]]:
        """The alerts firing now (the last detection of each)."""
        return [dict(v) for v in self._open.values()]

    def status(self) -> dict[str, Any]:
        """Counts and the last statistics of every detector, as plain JSON-able data."""
        out: dict[str, Any] = {
            "model": self.model, "task": self.task, "model_version": self._model_version,
            "reference_rows": self.reference_n, "predictions": self._n_predictions, "labelled": self._n_labelled,
            "windows_judged": dict(self._windows_judged), "windows_skipped": self._skipped_windows,
            "last_window": {k: (dict(v) if v else None) for k, v in self._last_window.items()},
            "pending": {"predictions": self._data_windows.pending, "labelled": self._label_windows.pending},
            "data_drift": self._data_drift.last() if self._data_drift is not None else {},
            "prediction_drift": {**(self._item_drift.last() if self._item_drift is not None else {}),
                                 **(self._output_drift.last() if self._output_drift is not None else {})},
            "label_free": {"last": dict(self._label_free), "reference": dict(self._items.metrics)},
            "firing": [{"kind": v["kind"], "detector": v["detector"], "feature": v["feature"],
                        "segment": v.get("segment"), "severity": v["severity"], "summary": v["summary"]}
                       for v in self._open.values()],
        }
        if self._perf is not None:
            out["performance"] = {"baseline": self._perf.baseline_metrics(), "last": self._perf.last(),
                                  "baseline_source": self._perf.source}
        return out

    summary = status


def _popularity_half(n: int, seed: int) -> np.ndarray:
    """The reference rows (a seeded half, all of a reference of one request) whose lists give the
    item popularity of the ``mean_popularity`` drift column.

    >>> _popularity_half(6, 0).size, _popularity_half(1, 0).tolist()
    (3, [0])
    """
    if n < 2:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[: n // 2])


def _reference_columns(reference: Any, feature_types: Mapping[str, str], max_rows: int, seed: int
                       ) -> dict[str, np.ndarray]:
    """The reference's columns (a DataFrame or a mapping of columns): features in the batch
    layout, ``prediction`` and ``label`` encoded (rows without a prediction dropped), the score
    columns as floats; at most ``max_rows`` rows, a seeded sample."""
    names = list(reference.columns) if hasattr(reference, "columns") else list(reference)
    if "prediction" not in names:
        raise ValueError("a ranking model's reference needs a `prediction` column (the ranked lists)")
    missing = [f for f in feature_types if f not in names]
    if missing:
        raise ValueError(f"the reference lacks the feature columns {missing}")
    raw = {c: np.asarray(reference[c], dtype=object) for c in names
           if c in feature_types or c in ("prediction", "label", *SCORE_COLUMNS)}
    preds = encoded_lists(raw["prediction"])
    rows = np.flatnonzero(np.array([p is not None for p in preds], dtype=bool))
    if len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_rows, replace=False))
    out = {f: (to_float_array(raw[f][rows]) if t == "numeric" else to_str_array(raw[f][rows]))
           for f, t in feature_types.items()}
    out["prediction"] = preds[rows]
    if "label" in raw:
        out["label"] = encoded_lists(raw["label"][rows], relevance=True)
    for c in SCORE_COLUMNS:
        if c in raw:
            out[c] = to_float_array(raw[c][rows])
    return out


def _absent(feature_type: str, n: int) -> np.ndarray:
    """A feature no event of the batch carried: all missing, in its type's layout."""
    return np.full(n, np.nan) if feature_type == "numeric" else np.full(n, None, dtype=object)


def _score_columns(batch: PredictionBatch, n: int) -> dict[str, np.ndarray]:
    """The batch's ``score@1`` and ``score_mean`` columns (NaN without scores)."""
    out = {c: np.full(n, np.nan) for c in SCORE_COLUMNS}
    if batch.scores is not None:
        for j, c in enumerate(batch.classes):
            if c in out:
                out[c] = np.asarray(batch.scores[:, j], dtype=np.float64)
    return out
