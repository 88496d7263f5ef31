"""Segments: the slice of traffic that broke, under the same false-alarm budget as all traffic.

A model can be fine overall and broken for one country, device or customer tier; averaged over
all traffic a slice's drift or accuracy drop vanishes. :class:`Segments` runs data drift,
prediction drift and realised performance per segment, on top of the same detectors over all
traffic (:class:`~detectors.model_monitor.ModelMonitor` holds both):

* **Which segments.** Per segment feature (a categorical feature, or a numeric one cut into
  ``buckets``), the ``top`` values most frequent in the reference (the traffic the model was
  trained for) each get a segment; every other value goes to ``other``, and an event without the
  feature to ``(missing)``. The set is fixed when the reference is loaded, which bounds the
  number of tests and of metric labels; a value that becomes frequent later is counted in
  ``other`` (and :mod:`detectors.data_quality` names it as an unseen category).
* **Wider windows for small segments, not noisier tests.** A segment is judged on its rows of
  the judged windows, gathered until it has ``min_window`` of them: a segment with a tenth of the
  traffic and windows of 5,000 is judged every second window, on 1,000 rows.
* **One false-alarm budget.** The tests of one window — all traffic and every segment judged
  with it, features × segments — form one family: their p-values are adjusted together (Holm
  by default; the monitor's ``correction``) before each detector decides. Holm bounds the
  family-wise error rate under any dependence between the tests (a segment's rows are part of
  all traffic, so its tests are not independent of the overall ones); the expected run time
  between false alarms, ``1 / alpha`` windows, therefore covers every segment, and adding
  segments does not raise the false-alarm rate of a stationary stream. (``family="separate"``
  gives each segment its own budget: what slicing without a shared budget does, kept for the
  bench that shows the difference.)
* **Evidence.** A detection carries ``segment`` (contract v1.1: ``{feature: value}``) and says
  how the segment compares with all traffic ("accuracy 0.71 in country=BR vs 0.93 overall").

A segment's drift tests need its own reference rows (at least ``min_reference``); a segment
with fewer is judged on performance only, against the all-traffic baseline. Concept drift and
the multivariate detectors run on all traffic only: the first is a sequential test on the error
stream that the per-segment performance windows cover, the second is the dearest detector and
would be paid once per segment.

>>> import numpy as np
>>> from detectors.base import Window
>>> from detectors.reference import Reference
>>> rng = np.random.default_rng(0)
>>> ref = Reference({"x": rng.normal(size=6000), "country": rng.choice(["DE", "FR", "BR"], 6000, p=[.5, .4, .1])},
...                 {"x": "numeric", "country": "categorical"}, task="regression")
>>> seg = Segments(parse_segments(["country"], ref.feature_types), ref, top=2, min_window=500)
>>> [s["label"] for s in seg.status()["country"]]
['DE', 'FR', 'other', '(missing)']
>>> spec = parse_segments([{"feature": "x", "buckets": [0, 1]}], ref.feature_types)[0]
>>> spec.labels(np.array([-1.0, 0.5, 2.0, np.nan])).tolist()
['< 0', '[0, 1)', '≥ 1', '(missing)']
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors import decision as dec
from detectors.base import Detection, Window, segment_text
from detectors.composite import Composite
from detectors.performance import DEFAULT_MIN_DEGRADATION, PerformanceDrift
from detectors.reference import Reference
from detectors.two_sample import is_missing
from detectors.univariate_drift import UnivariateDrift

__all__ = ["SegmentSpec", "Segments", "parse_segments", "OTHER", "MISSING", "FAMILIES"]

OTHER = "other"
MISSING = "(missing)"
FAMILIES = ("joint", "separate")
TS = "__ts__"


def _num(v: float) -> str:
    return f"{v:g}"


@dataclass(frozen=True, slots=True)
class SegmentSpec:
    """One segment feature: categorical (its values), or numeric cut at ``buckets`` (sorted edges)."""

    feature: str
    buckets: tuple[float, ...] | None = None

    def bucket_names(self) -> list[str]:
        """``< a``, ``[a, b)``, ..., ``≥ z`` for edges ``a < b < ... < z``."""
        e = self.buckets or ()
        return [f"< {_num(e[0])}"] + [f"[{_num(a)}, {_num(b)})" for a, b in zip(e, e[1:])] + [f"≥ {_num(e[-1])}"]

    def labels(self, values: np.ndarray) -> np.ndarray:
        """Each value's segment value (``(missing)`` for a null), before top-N: an object array."""
        if self.buckets is None:
            out = np.asarray(values, dtype=object).copy()
            out[is_missing(out)] = MISSING
            return out
        x = np.asarray(values, dtype=np.float64)
        names = np.array(self.bucket_names(), dtype=object)
        out = names[np.searchsorted(np.asarray(self.buckets), x, side="right")]
        out[np.isnan(x)] = MISSING
        return out


def parse_segments(items: Sequence[Any] | None, feature_types: Mapping[str, str]) -> tuple[SegmentSpec, ...]:
    """The ``segments`` of a model's configuration: each a feature name (categorical) or
    ``{feature: name, buckets: [edges]}`` (a numeric feature needs buckets). Errors name the
    entry (``segments[1]``).

    >>> parse_segments(["country", {"feature": "amount", "buckets": [10, 100]}],
    ...                {"country": "categorical", "amount": "numeric"})[1].buckets
    (10.0, 100.0)
    >>> parse_segments(["amount"], {"amount": "numeric"})
    Traceback (most recent call last):
    ...
    ValueError: segments[0]: numeric feature 'amount' needs buckets, e.g. {feature: amount, buckets: [10, 100]}
    """
    out: list[SegmentSpec] = []
    for i, item in enumerate(items or ()):
        where = f"segments[{i}]"
        if isinstance(item, str):
            name, buckets = item, None
        elif isinstance(item, Mapping) and set(item) <= {"feature", "buckets"} and "feature" in item:
            name, buckets = item["feature"], item.get("buckets")
        else:
            raise ValueError(f"{where}: expected a feature name or {{feature: name, buckets: [edges]}}, got {item!r}")
        if not isinstance(name, str) or name not in feature_types:
            raise ValueError(f"{where}: {name!r} is not a feature of the model (features: {sorted(feature_types)})")
        if any(s.feature == name for s in out):
            raise ValueError(f"{where}: {name!r} is segmented twice")
        out.append(SegmentSpec(name, _buckets(where, name, feature_types[name], buckets)))
    return tuple(out)


def _buckets(where: str, name: str, kind: str, buckets: Any) -> tuple[float, ...] | None:
    if kind == "categorical":
        if buckets is not None:
            raise ValueError(f"{where}: categorical feature {name!r} takes no buckets")
        return None
    if buckets is None:
        raise ValueError(f"{where}: numeric feature {name!r} needs buckets, e.g. {{feature: {name}, buckets: [10, 100]}}")
    if (not isinstance(buckets, Sequence) or isinstance(buckets, str) or not buckets
            or not all(isinstance(b, int | float) and not isinstance(b, bool) and math.isfinite(b) for b in buckets)):
        raise ValueError(f"{where}.buckets: a non-empty list of finite numbers, got {buckets!r}")
    edges = tuple(float(b) for b in buckets)
    if any(b >= a for a, b in zip(edges[1:], edges)):
        raise ValueError(f"{where}.buckets: edges must increase strictly, got {list(buckets)}")
    return edges


def _edges(buckets: Sequence[float] | None) -> tuple[float, ...] | None:
    return None if buckets is None else tuple(float(b) for b in buckets)


_SIDES = {"predictions": "data", "labelled": "labelled"}


def _new_slot(feature: str, label: str, reference_rows: int, span: dict[str, int | None], drift: UnivariateDrift | None,
              pred_drift: UnivariateDrift | None, perf: PerformanceDrift | None) -> dict[str, Any]:
    """One segment as plain data (snapshots keep it as it is): its detectors, the rows it
    gathers until its next judgement and its ``span`` (judged windows it usually gathers)."""
    return {"feature": feature, "label": label, "reference_rows": int(reference_rows), "span": dict(span),
            "drift": drift, "pred_drift": pred_drift, "perf": perf, "data": [], "labelled": [],
            "judged": {"predictions": 0, "labelled": 0}, "rows": {"predictions": 0, "labelled": 0},
            "last_window": {"predictions": None, "labelled": None}}


def _pending(slot: dict[str, Any], side: str) -> int:
    return sum(len(c[TS]) for c in slot[_SIDES[side]])


def _gather(slot: dict[str, Any], side: str, cols: dict[str, np.ndarray], min_window: int) -> tuple[Window, dict] | None:
    """Add one judged window's rows to a segment; return its window (emptying the buffer) once
    it has ``min_window`` rows, or once it has gathered its ``span`` of windows with at least half
    that many (so that a segment with a tenth of the traffic is judged every second window
    whatever the sampling noise of its share, not sometimes every third)."""
    pending = slot[_SIDES[side]]
    pending.append(cols)
    slot["rows"][side] += len(cols[TS])
    n = _pending(slot, side)
    span = slot["span"].get(side)
    spanned = span is not None and len(pending) >= span and 2 * n >= min_window
    if n < min_window and not spanned:
        return None
    gathered = {k: np.concatenate([c[k] for c in pending]) for k in pending[0]}
    pending.clear()
    slot["judged"][side] += 1
    ts = gathered[TS]
    window = Window(int(ts.min()), int(ts.max()), len(ts))
    slot["last_window"][side] = {"start_ts": window.start_ts, "end_ts": window.end_ts, "n": window.n}
    return window, gathered


class Segments(Composite):
    """Per-segment drift and performance of one model, decided in one family with all traffic.

    Parameters
    ----------
    specs : sequence of SegmentSpec
        From :func:`parse_segments`.
    reference : Reference
        The model's reference (all traffic); each segment's reference is its rows.
    top : int
        Segments per feature besides ``other`` and ``(missing)``.
    min_window : int
        Rows a segment gathers before it is judged.
    min_reference : int
        Reference rows a segment needs for its own drift tests.
    max_reference : int
        Reference rows a segment's detectors keep at most (a seeded sample of its rows): they are
        part of the monitor's state, which is saved with every batch, so they are kept small; the
        calibrated thresholds account for the reference's size.
    window_size, labelled_window_size : int, optional
        Rows of a judged window of all traffic (count windows) and of a labelled window, from
        which each segment's usual span is known: ``round(min_window / (share × size))`` windows,
        ``share`` its share of the reference's rows. None (time windows): a segment is judged when
        it has ``min_window`` rows.
    family : {"joint", "separate"}
        One family per window for all traffic and every segment (the default), or one per segment.
    correction : str
        The multiple-testing correction of a family (:func:`detectors.decision.adjust_pvalues`).
    drift_kwargs : mapping
        Keyword arguments of the segments' :class:`UnivariateDrift` (the monitor's).
    prediction_columns : mapping, optional
        Prediction-drift columns and their types; with ``prediction_reference`` (the reference's
        values of those columns) each segment gets prediction drift.
    performance_kwargs : mapping, optional
        Keyword arguments of the segments' :class:`PerformanceDrift` (None: no performance).
    overall_baseline : mapping, optional
        All traffic's baseline metrics, for segments whose reference cannot give their own.
    """

    _params = ("specs", "reference", "top", "min_window", "min_reference", "max_reference", "window_size",
               "labelled_window_size", "family", "correction", "drift_kwargs", "prediction_columns",
               "prediction_reference", "performance_kwargs", "overall_baseline")

    def __init__(self, specs: Sequence[SegmentSpec], reference: Reference, *, top: int = 5, min_window: int = 1000,
                 min_reference: int = 200, max_reference: int = 5000, window_size: int | None = None,
                 labelled_window_size: int | None = None, family: str = "joint", correction: str = "holm",
                 drift_kwargs: Mapping[str, Any] | None = None, prediction_columns: Mapping[str, str] | None = None,
                 prediction_reference: Mapping[str, np.ndarray] | None = None,
                 performance_kwargs: Mapping[str, Any] | None = None,
                 overall_baseline: Mapping[str, float | None] | None = None) -> None:
        if family not in FAMILIES:
            raise ValueError(f"segment family must be one of {FAMILIES}, not {family!r}")
        if top < 1 or min_window < 1:
            raise ValueError("segment top and min_window must be at least 1")
        self._specs = [(sp.feature, None if sp.buckets is None else list(sp.buckets))
                       for sp in (x if isinstance(x, SegmentSpec) else SegmentSpec(x[0], _edges(x[1])) for x in specs)]
        self.reference = reference
        self.top, self.min_window, self.min_reference = int(top), int(min_window), int(min_reference)
        self.max_reference = int(max_reference)
        self.window_size = None if window_size is None else int(window_size)
        self.labelled_window_size = None if labelled_window_size is None else int(labelled_window_size)
        self.family, self.correction = family, correction
        self.drift_kwargs = dict(drift_kwargs or {})
        self.prediction_columns = dict(prediction_columns or {})
        self.prediction_reference = dict(prediction_reference or {})
        self.performance_kwargs = None if performance_kwargs is None else dict(performance_kwargs)
        self.overall_baseline = None if overall_baseline is None else dict(overall_baseline)
        self._labels: dict[str, list[str]] = {}
        self._slots: dict[str, dict[str, dict[str, Any]]] = {}
        for spec in self.specs:
            self._build(spec)

    @property
    def specs(self) -> tuple[SegmentSpec, ...]:
        """The segment features (kept as plain data in the state)."""
        return tuple(SegmentSpec(f, _edges(b)) for f, b in self._specs)

    # ------------------------------------------------------------------ construction
    def _build(self, spec: SegmentSpec) -> None:
        ref = self.reference
        labels = spec.labels(ref.features[spec.feature])
        values, counts = np.unique(labels[labels != MISSING].astype(str), return_counts=True)
        order = np.lexsort((values, -counts))[: self.top]
        top = [str(values[i]) for i in order]
        self._labels[spec.feature] = top
        ref_labels = self._assign(spec, labels)
        self._slots[spec.feature] = {
            label: self._slot(spec, label, ref_labels == label) for label in [*top, OTHER, MISSING]}

    def _assign(self, spec: SegmentSpec, labels: np.ndarray) -> np.ndarray:
        """Segment values to segments: the top values keep theirs, the rest is ``other``."""
        top = self._labels[spec.feature]
        keep = np.isin(labels.astype(str), np.asarray(top, dtype=str)) | (labels == MISSING)
        out = labels.astype(object).copy()
        out[~keep] = OTHER
        return out

    def _slot(self, spec: SegmentSpec, label: str, rows: np.ndarray) -> dict[str, Any]:
        ref, n = self.reference, int(rows.sum())
        own = n >= self.min_reference
        idx = self._sample(np.flatnonzero(rows), label)
        features = [f for f in ref.feature_types if f != spec.feature]
        desc = f"{len(idx):,} training rows with {spec.feature}={label}"
        span = {"predictions": self._span(n, self.window_size), "labelled": self._span(n, self.labelled_window_size)}
        typical = {side: self._typical(n, span[side], size)
                   for side, size in (("predictions", self.window_size), ("labelled", self.labelled_window_size))}
        kw = {**self.drift_kwargs, **self._floors(len(idx), typical["predictions"]),
              "calibration_n": typical["predictions"], "reference_desc": desc}
        drift = UnivariateDrift(ref.take(idx, features), kind="data_drift", **kw) if own and features else None
        pred = None
        if own and self.prediction_columns and self.prediction_reference:
            pref = Reference({c: np.asarray(v)[idx] for c, v in self.prediction_reference.items()},
                             self.prediction_columns, task=ref.task)
            pred = UnivariateDrift(pref, kind="prediction_drift", **{**kw, "reference_desc": f"the model's outputs on {desc}"})
        perf = self._performance(idx if own else None, typical["labelled"])
        return _new_slot(spec.feature, label, n, span, drift, pred, perf)

    def _typical(self, rows: int, span: int | None, size: int | None) -> int:
        """The rows a segment's window usually has: its share of ``span`` windows of ``size``
        (``min_window`` when the window size is not known, as with time windows)."""
        if span is None or not size:
            return self.min_window
        return max(1, round(rows / max(self.reference.n, 1) * size * span))

    def _floors(self, m: int, n: int) -> dict[str, float]:
        """The effect floors of a segment's drift tests: all traffic's, held to the same evidence.

        A floor ("smaller than this does not matter") is what keeps all traffic's tests quiet on a
        stationary stream: at a window of 5,000 rows a 0.1 σ shift lies many null standard
        deviations out, so all traffic spends almost none of its false-alarm budget. A segment's
        window of ``n`` rows (:meth:`_typical`) against ``m`` reference rows is noisier, and the same floor
        would lie only a few null deviations out: its tests would spend the budget and page more
        than all traffic does. So a segment's floor is all traffic's scaled by how much noisier
        its statistic is (:func:`detectors.decision.scale_threshold`: ``sqrt(1/n + 1/m)`` for
        Wasserstein, KS and Jensen–Shannon, ``1/n + 1/m`` for PSI), never lower. Gathering more
        rows (a larger ``min_window``) lowers it: wider windows, not noisier tests.
        """
        kw = self.drift_kwargs
        n_all, m_all = int(kw.get("calibration_n", 5000)), self.reference.n

        def floor(name: str, stat: str, default: float) -> float:
            grow = float(dec.scale_threshold(stat, 1.0, n, max(m, 1), n_all, m_all))
            return float(kw.get(name, default)) * max(1.0, grow)

        return {"min_effect_numeric": floor("min_effect_numeric", kw.get("numeric_effect", "wasserstein"), 0.1),
                "min_effect_categorical": floor("min_effect_categorical", kw.get("categorical_effect", "psi"), 0.1),
                "min_missing_change": floor("min_missing_change", "ks", 0.05)}

    def _degradations(self, n: int) -> dict[str, float]:
        """The performance floors of a segment (``min_degradation``), all traffic's scaled by how
        much noisier a metric is on the segment's ``n`` labelled rows than on all traffic's window
        (``sqrt(size / n)``, never lower): the same evidence, as :meth:`_floors`."""
        kw = self.performance_kwargs or {}
        size = self.labelled_window_size or n
        grow = max(1.0, math.sqrt(size / max(n, 1)))
        return {m: v * grow for m, v in {**DEFAULT_MIN_DEGRADATION, **(kw.get("min_degradation") or {})}.items()}

    def _sample(self, idx: np.ndarray, label: str) -> np.ndarray:
        """At most ``max_reference`` of a segment's reference rows (seeded by the segment): its
        detectors keep their reference in the monitor's state, saved with every batch."""
        if len(idx) <= self.max_reference:
            return idx
        rng = np.random.default_rng([int(self.drift_kwargs.get("seed", 0)), zlib.crc32(label.encode())])
        return np.sort(rng.choice(idx, self.max_reference, replace=False))

    def _span(self, rows: int, size: int | None) -> int | None:
        """Windows of ``size`` that give a segment with ``rows`` of the reference's rows about
        ``min_window`` rows (rounded: a share of 0.098 in the reference is a tenth of the traffic)."""
        expected = rows / max(self.reference.n, 1) * (size or 0)
        return max(1, round(self.min_window / expected)) if expected > 0 else None

    def _performance(self, idx: np.ndarray | None, n: int) -> PerformanceDrift | None:
        """The segment's performance: against its own reference rows (``idx``) when they have
        labels and predictions, else against all traffic's baseline."""
        if self.performance_kwargs is None:
            return None
        kw = {**self.performance_kwargs, "min_n": min(int(self.performance_kwargs.get("min_n", 1)), self.min_window),
              "min_degradation": self._degradations(n)}
        ref = self.reference
        if idx is not None and ref.label is not None and ref.prediction is not None:
            return PerformanceDrift(reference=ref.take(idx, features=[]), **kw)
        baseline = {k: v for k, v in (self.overall_baseline or {}).items() if v is not None} or None
        return PerformanceDrift(reference=None, **{**kw, "baseline": baseline or kw.get("baseline")})

    # ------------------------------------------------------------------ windows
    def _split(self, spec: SegmentSpec, values: np.ndarray) -> dict[str, np.ndarray]:
        """Row positions of each segment among ``values`` (the segment feature's column)."""
        labels = self._assign(spec, spec.labels(values))
        return {label: np.flatnonzero(labels == label) for label in self._slots[spec.feature]}

    def _gathered(self, side: str, ts: np.ndarray, cols: Mapping[str, np.ndarray]) -> list[tuple[dict, Window, dict]]:
        """Add a judged window's rows to their segments; the segments now due, with their rows."""
        due: list[tuple[dict, Window, dict]] = []
        for spec in self.specs:
            for label, rows in self._split(spec, cols[spec.feature]).items():
                if len(rows) == 0:
                    continue
                slot = self._slots[spec.feature][label]
                got = _gather(slot, side, {TS: ts[rows], **{k: v[rows] for k, v in cols.items()}}, self.min_window)
                if got is not None:
                    due.append((slot, *got))
        return due

    def data_window(self, window: Window, ts: np.ndarray, cols: Mapping[str, np.ndarray],
                    pred_values: Mapping[str, np.ndarray], overall: UnivariateDrift,
                    overall_pred: UnivariateDrift | None, version: str | None) -> list[Detection]:
        """All traffic's data and prediction drift on ``cols`` (one judged window) and every
        segment that has gathered enough rows, each family decided together."""
        both = {**cols, **{f"__pred__{k}": v for k, v in pred_values.items()}}
        due = self._gathered("predictions", ts, both)
        out = self._drift_family(overall, window, cols, [(s, w, c, s["drift"], c) for s, w, c in due], version)
        if overall_pred is not None:
            parts = [(s, w, c, s["pred_drift"], {k[8:]: v for k, v in c.items() if k.startswith("__pred__")})
                     for s, w, c in due]
            out += self._drift_family(overall_pred, window, pred_values, parts, version)
        return out

    def _drift_family(self, overall: UnivariateDrift, window: Window, cols: Mapping[str, np.ndarray],
                      due: list[tuple[dict, Window, dict, UnivariateDrift | None, dict]],
                      version: str | None) -> list[Detection]:
        parts: list[tuple[UnivariateDrift, list, Window, dict | None]] = [(overall, overall.tests(window, cols), window, None)]
        parts += [(det, det.tests(w, c), w, slot) for slot, w, _, det, c in due if det is not None]
        adjusted = self._adjust([det.p_values(rows) for det, rows, _, _ in parts])
        out: list[Detection] = []
        for (det, rows, w, slot), p_adj in zip(parts, adjusted):
            found = det.decide(rows, p_adj, w, version)
            out += found if slot is None else self._tag(slot, found, lambda d, where: _drift_versus(overall, d, where))
        return out

    def labelled_window(self, window: Window, ts: np.ndarray, cols: Mapping[str, np.ndarray], label: str,
                        pred: str, scores: str, overall: PerformanceDrift, version: str | None) -> list[Detection]:
        """All traffic's performance on one labelled window and every segment due, one family."""
        due = self._gathered("labelled", ts, cols)
        parts: list[tuple[PerformanceDrift, dict[str, dict[str, Any]], Window, dict | None]] = [
            (overall, overall.assess(window, cols[label], cols[pred], cols.get(scores)), window, None)]
        for slot, w, c in due:
            if slot["perf"] is not None:
                parts.append((slot["perf"], slot["perf"].assess(w, c[label], c[pred], c.get(scores)), w, slot))
        raw = [np.array([j["p_value"] for j in judged.values()], dtype=np.float64) for _, judged, _, _ in parts]
        # separate: each part decided as it is without segments (a metric on its own p-value)
        adjusted = raw if self.family == "separate" else self._adjust(raw)
        out: list[Detection] = []
        for (det, judged, w, owner), p_adj in zip(parts, adjusted):
            found = det.conclude(judged, dict(zip(judged, p_adj.tolist())), w, version)
            out += found if owner is None else self._tag(owner, found,
                                                         lambda d, where: _performance_versus(overall, d, where))
        return out

    def _adjust(self, p_parts: list[np.ndarray]) -> list[np.ndarray]:
        """Adjust the p-values of every part of a window's tests: one family, or one per part."""
        if self.family == "separate":
            return [dec.adjust_pvalues(p, self.correction) for p in p_parts]
        joint = dec.adjust_pvalues(np.concatenate(p_parts) if p_parts else np.empty(0), self.correction)
        return np.split(joint, np.cumsum([len(p) for p in p_parts])[:-1])

    @staticmethod
    def _tag(slot: dict[str, Any], found: list[Detection], versus: Any) -> list[Detection]:
        """Put the segment on a slot's detections and say how it compares with all traffic."""
        segment = {slot["feature"]: slot["label"]}
        where = segment_text(segment)
        for d in found:
            d.segment = dict(segment)
            lead, tail, compare = versus(d, where)
            d.evidence = {**d.evidence, "segment": where, "overall": compare}
            d.summary = f"{lead or f'in {where}'}: {d.summary}{tail if d.firing else ''}"
        return found

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, list[dict[str, Any]]]:
        """Per segment feature, each segment's rows, judgements and last statistics."""
        out: dict[str, list[dict[str, Any]]] = {}
        for feature, slots in self._slots.items():
            out[feature] = [{
                "label": s["label"], "reference_rows": s["reference_rows"], "span": s["span"], "rows": dict(s["rows"]),
                "judged": dict(s["judged"]),
                "last_window": dict(s["last_window"]),
                "pending": {"predictions": _pending(s, "predictions"), "labelled": _pending(s, "labelled")},
                "data_drift": s["drift"].last() if s["drift"] is not None else None,
                "prediction_drift": s["pred_drift"].last() if s["pred_drift"] is not None else None,
                "performance": s["perf"].last() if s["perf"] is not None else None,
            } for s in slots.values()]
        return out


def _drift_versus(overall: UnivariateDrift, d: Detection, where: str | None) -> tuple[str | None, str, Any]:
    """What all traffic's last window said of the same column and test."""
    key = f"{d.feature}:missing_rate" if d.detector == "missing_rate" else (d.feature or "")
    last = overall.last().get(key)
    if not last or last.get("effect") is None:
        return None, "", None
    compare = {"effect": last.get("effect"), "threshold": last.get("threshold"), "drifting": last.get("drifting")}
    state = "drifting too" if last.get("drifting") else "not drifting"
    return None, f" All traffic: {state} ({d.detector} {last['effect']:.3g}).", compare


def _performance_versus(overall: PerformanceDrift, d: Detection, where: str | None) -> tuple[str | None, str, Any]:
    """``accuracy 0.71 in country=BR vs 0.93 overall``: the metric in all traffic's last labelled window."""
    last = (overall.last().get("metrics") or {}).get(d.detector) or {}
    value = last.get("value")
    if value is None:
        return None, "", None
    name = d.detector.replace("_", " ")
    return f"{name} {d.statistic:.2f} in {where} vs {value:.2f} overall", "", {"value": value,
                                                                              "baseline": last.get("baseline")}
