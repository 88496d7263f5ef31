"""The detector contract, run on every detector class the ``detectors`` package holds.

Like River's ``test_estimators.py`` over ``river.checks``: :func:`tests.detectors.contract.discover`
walks ``detectors/`` (pkgutil + inspect) for every :class:`~detectors.base.Snapshotable`
subclass, and each concrete one is checked with every check
:func:`~tests.detectors.contract.yield_checks` gives it, once per parameter set of its
:class:`Case` in :data:`CASES`.

Why a table here rather than River's ``_unit_test_params()`` classmethod on each class: the
parameters of most detectors are a :class:`~detectors.reference.Reference` built from seeded
random data, and every class also needs a ``feed`` that knows its ``update`` signature
(columns, predictions and scores, labels, an error stream...). Both are test scaffolding;
on the classes they would put test data builders into ``detectors/`` (which ships, and which
the layer rules keep pure and small) and split one class's test set-up between two files.
Here they sit together, skips and their reasons in one reviewable place. A new class is
not forgotten: it is discovered, and the suite fails until it has a case (the failure says
what to add).

A class may opt out of a check only with a stated reason, in its case's ``skips``
(``{check_name: reason}``); skipped checks are not generated (as River does with
``_unit_test_skips()``), and :func:`test_skips_name_real_checks_and_give_reasons` checks the
table.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest

from detectors.base import Snapshotable, StreamDetector, Window, WindowDetector
from detectors.batch import LabelledBatch, PredictionBatch
from detectors.cbpe import CBPE
from detectors.composite import Composite
from detectors.concept import ADWIN, DDM, EDDM, HDDM_A, HDDM_W, KSWIN, PageHinkley
from detectors.concept._common import BatchDetector
from detectors.data_quality import DataQuality
from detectors.decision import AlertBook
from detectors.dle import DLE
from detectors.model_monitor import ModelMonitor, MonitorSettings
from detectors.multivariate import DomainClassifierDrift, PCAReconstructionDrift
from detectors.paired import ShadowComparison
from detectors.performance import PerformanceDrift
from detectors.ranking_drift import ItemDrift
from detectors.ranking_lists import encode_ranking, encode_relevance
from detectors.ranking_metrics import ItemReference
from detectors.ranking_monitor import RankingMonitor, RankingSettings
from detectors.ranking_performance import RankingPerformance
from detectors.reference import Reference
from detectors.segments import Segments, parse_segments
from detectors.univariate_drift import UnivariateDrift
from detectors.versions import VersionedMonitor
from detectors.windows import WindowBuffer
from tests.detectors.contract import ALL_CHECKS, Feed, discover, is_window_detector, yield_checks

Params = Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Case:
    """How to check one detector class: its parameter sets (each a zero-argument builder of
    constructor keyword arguments, so that references are built only when a test runs), the
    ``feed`` that pushes one seeded chunk of data through an instance, and the checks it opts
    out of, each with the reason."""

    params: tuple[Params, ...]
    feed: Feed
    skips: Mapping[str, str] = field(default_factory=dict)


#: Classes that are discovered but are bases, not detectors: what each is for. Their concrete
#: subclasses are checked.
BASES: dict[type, str] = {
    Snapshotable: "the state base class: plain-data snapshot, restore and clone",
    Composite: "the state base class of objects that hold other Snapshotables",
    StreamDetector: "the base of the streaming concept-drift detectors (River's shape)",
    BatchDetector: "the vectorised machinery shared by the concept-drift detectors",
}


# ------------------------------------------------------------------ data builders
@functools.cache
def _columns_reference() -> Reference:
    """Numeric and categorical columns, regression task (no labels needed)."""
    rng = np.random.default_rng(0)
    n = 1500
    z = rng.normal(size=n)
    return Reference({"a": z, "b": 0.9 * z + 0.44 * rng.normal(size=n), "d": rng.exponential(size=n),
                      "k": rng.choice(["x", "y", "z"], n).astype(object)},
                     {"a": "numeric", "b": "numeric", "d": "numeric", "k": "categorical"}, task="regression")


def _columns(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """A window of :func:`_columns_reference`'s columns, drifted or not (seeded choice)."""
    shift, corr = rng.choice([0.0, 0.0, 1.0]), rng.choice([0.9, -0.5])
    z = rng.normal(shift, 1.0, n)
    return {"a": z, "b": corr * z + np.sqrt(1 - corr**2) * rng.normal(size=n), "d": rng.exponential(size=n) + shift,
            "k": rng.choice(["x", "y", "z"], n, p=[0.6, 0.2, 0.2] if shift else None).astype(object)}


def _feed_columns(det: WindowDetector, rng: np.random.Generator) -> Any:
    n = 300
    return det.update(Window(0, 1, n), _columns(rng, n))


def _feed_data_quality(det: DataQuality, rng: np.random.Generator) -> Any:
    """A window of columns, some scaled ×1000 or emptied, with validation's marks (refused types,
    duplicates, absent and new keys) and sometimes a batch's trailing refusals."""
    n = 300
    cols = _columns(rng, n)
    if rng.random() < 0.3:
        cols["d"] = cols["d"] * 1000
    if rng.random() < 0.3:
        cols["a"] = np.where(rng.random(n) < 0.5, np.nan, cols["a"])
    refused = (rng.random(n) < rng.choice([0.0, 0.2])).astype(np.int32)
    marks = {"refused": refused, "refused:a": refused, "duplicates": (rng.random(n) < rng.choice([0.0, 0.1])).astype(np.int32),
             "absent:b": np.full(n, int(rng.choice([0, 1])), np.int32),
             "unknown": np.full(n, rng.choice([None, "b2"]), dtype=object)}
    if rng.random() < 0.3:
        det.observe_pipeline({"refused": 5, "refused:a": 5, "examples": ["a\x00str 'x'"]})
    return det.update(Window(0, 1, n), {**cols, **det.columns(marks, n)})


def _segments_params() -> dict[str, Any]:
    ref = _columns_reference()
    return {"specs": parse_segments(["k", {"feature": "d", "buckets": [0.5, 1.5]}], ref.feature_types),
            "reference": ref, "top": 2, "min_window": 150,
            "drift_kwargs": {"calibration_draws": 8, "model": "m"}}


def _feed_segments(seg: Segments, rng: np.random.Generator) -> Any:
    """A window of all traffic (judged by a fresh overall detector) and the segments it completes."""
    n = 300
    cols = _columns(rng, n)
    overall = UnivariateDrift(_columns_reference(), calibrate=False, model="m")
    return seg.data_window(Window(0, 1, n), np.arange(n, dtype=np.int64), cols, {}, overall, None, "1")


def _binary(rng: np.random.Generator, n: int, lo: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Scores ``s`` of class "1" and labels with P(y = "1" | s) = s."""
    s = rng.uniform(lo, 1.0 - lo, n)
    return s, np.where(rng.random(n) < s, "1", "0").astype(object)


@functools.cache
def _scored_reference() -> Reference:
    rng = np.random.default_rng(1)
    s, y = _binary(rng, 2000)
    yhat = np.where(s > 0.5, "1", "0").astype(object)
    return Reference({"x": rng.normal(size=2000)}, {"x": "numeric"}, label=y, prediction=yhat,
                     scores=np.column_stack([1 - s, s]), classes=["0", "1"])


def _feed_cbpe(det: CBPE, rng: np.random.Generator) -> Any:
    s, y = _binary(rng, 300, lo=rng.choice([0.0, 0.4]))
    pred = np.where(s > 0.5, "1", "0").astype(object)
    out = det.update(Window(0, 10, 300), pred, np.column_stack([1 - s, s]))
    det.update_labels(np.arange(300), pred == y)
    return out


@functools.cache
def _regression_reference() -> Reference:
    """A regressor's reference with labels and predictions (noise growing with |x|)."""
    rng = np.random.default_rng(3)
    x = rng.uniform(-3, 3, 1000)
    return Reference({"x": x, "k": rng.choice(["u", "v"], 1000).astype(object)}, {"x": "numeric", "k": "categorical"},
                     task="regression", label=x + rng.normal(size=1000) * (0.2 + np.abs(x)), prediction=x)


def _feed_dle(det: DLE, rng: np.random.Generator) -> Any:
    x = rng.uniform(float(rng.choice([0.0, 2.0])), 3.0, 300) * rng.choice([-1, 1], 300)
    t0 = int(rng.integers(0, 10**6))
    out = det.update(Window(t0, t0 + 299, 300), {"x": x, "k": rng.choice(["u", "v"], 300).astype(object)}, x)
    det.update_labels(np.arange(t0, t0 + 300), x, x + rng.normal(size=300) * (0.2 + np.abs(x)))
    return out


def _feed_performance(det: PerformanceDrift, rng: np.random.Generator) -> Any:
    s, y = _binary(rng, 400)
    flip = rng.random(400) < rng.choice([0.0, 0.4])
    yhat = np.where((s > 0.5) ^ flip, "1", "0").astype(object)
    scores = np.column_stack([1 - s, s])
    scores[:10] = np.nan  # a few events without scores
    return det.update(Window(0, 1, 400), y, yhat, scores)


def _feed_alert_book(book: AlertBook, rng: np.random.Generator) -> Any:
    return [book.update(k, bool(b)) for k, b in zip(itertools.cycle("abc"), rng.random(9) < 0.5, strict=False)]


def _feed_window_buffer(buf: WindowBuffer, rng: np.random.Generator) -> Any:
    n = int(rng.integers(1, 300))
    ts = np.sort(rng.integers(0, 50_000, n)) if buf.kind == "time" else np.arange(n)
    out = buf.push(ts, {"x": rng.normal(size=n), "c": rng.choice(np.array(["a", "b", None], dtype=object), n)})
    return [(w.window.n, w.window.start_ts, w.window.end_ts, float(w.columns["x"].sum())) for w in out]


def _monitor_frame(rng: np.random.Generator, n: int, shift: float = 0.0, flip: float = 0.0) -> pd.DataFrame:
    x1, x2 = rng.normal(shift, 1, n), rng.normal(size=n)
    c = rng.choice(["a", "b", "c"], n)
    p = 1 / (1 + np.exp(-(1.5 * x1 - x2 + (c == "a"))))
    y = rng.random(n) < p
    y = np.where(rng.random(n) < flip, ~y, y)
    return pd.DataFrame({"x1": x1, "x2": x2, "c": c, "label": np.where(y, "yes", "no"),
                         "score_no": 1 - p, "score_yes": p})


_MONITOR_FEATURES = {"x1": "numeric", "x2": "numeric", "c": "categorical"}


def _monitor_params() -> dict[str, Any]:
    return {"model": "m", "task": "classification", "feature_types": _MONITOR_FEATURES,
            "reference": _monitor_frame(np.random.default_rng(2), 1500),
            "settings": {"window_size": 300, "warmup": 0, "min_window": 50, "calibration_draws": 8,
                         "multivariate_methods": ("pca",), "bootstrap": 30}}


def _feed_monitor(mon: ModelMonitor, rng: np.random.Generator) -> Any:
    n = 400
    df = _monitor_frame(rng, n, shift=rng.choice([0.0, 1.0]), flip=rng.choice([0.0, 0.4]))
    t0 = int(rng.integers(0, 10**6))
    ts = np.arange(t0, t0 + n, dtype=np.int64)
    pred = np.where(df.score_yes > 0.5, "yes", "no").astype(object)
    scores = df[["score_no", "score_yes"]].to_numpy()
    feats = {"x1": df.x1.to_numpy(), "x2": df.x2.to_numpy(), "c": df.c.to_numpy().astype(object)}
    out = mon.update_predictions(PredictionBatch(ts, feats, pred, scores, ["no", "yes"], "v1"))
    return out + mon.update_labelled(LabelledBatch(ts, pred, df.label.to_numpy().astype(object), scores, ["no", "yes"]))


def _feed_versions(vm: VersionedMonitor, rng: np.random.Generator) -> Any:
    """Two versions, the champion and a canary, each on its own rows; now and then a promotion."""
    out = []
    for version in ("1", "2"):
        if version not in vm:
            vm.add(version, ModelMonitor(**_monitor_params()), reference_of=version)
        out += _feed_monitor(vm.versions[version], rng)
    if rng.random() < 0.3:
        out += vm.promote("2" if vm.champion == "1" else "1", None, reference_of="2", why="test")
    return [d.to_dict() for d in out] + [vm.status()["versions"]]


def _feed_reference(ref: Reference, rng: np.random.Generator) -> Any:
    """A reference does not change; what it answers must not either."""
    sample = ref.sample(50, seed=int(rng.integers(1000)))
    return [ref.numeric, ref.categorical, sample.numeric_matrix().tolist()]


def _feed_settings(s: MonitorSettings | RankingSettings, rng: np.random.Generator) -> Any:
    return [dataclasses.asdict(s), s.alpha]


def _feed_shadow(cmp: ShadowComparison, rng: np.random.Generator) -> Any:
    n = int(rng.integers(1, 200))
    if cmp.task == "classification":
        served = rng.random(n) < 0.8
        return cmp.update(served, np.where(rng.random(n) < rng.choice([0.05, 0.3]), ~served, served)).report()
    served_err = np.abs(rng.normal(size=n))
    return cmp.update_errors(served_err, np.abs(served_err + rng.normal(0.0, 0.3, n))).report()


def _errors(kind: str) -> Feed:
    """A feed of error streams: 0/1 errors, [0, 1] values or real values."""
    def feed(det: StreamDetector, rng: np.random.Generator) -> Any:
        x = (rng.random(600) < rng.choice([0.05, 0.2, 0.5])).astype(np.float64)
        if kind == "unit":
            x *= rng.random(600)
        elif kind == "real":
            x = x * 3.0 + rng.normal(size=600)
        return det.update_many(x)

    return feed


def _kw(**kwargs: Any) -> Params:
    return lambda: dict(kwargs)


_ITEMS = np.array([f"i{j}" for j in range(120)], dtype=object)


def _ranked(rng: np.random.Generator, n: int, top: int = 100) -> tuple[list[str], list[str]]:
    """``n`` requests: lists of 10 of the first ``top`` items (Zipf-like), and engagement with
    the first items of each list more often than the last (a third engage with nothing)."""
    p = 1 / np.arange(1, top + 1)
    lists = [rng.choice(_ITEMS[:top], 10, replace=False, p=p / p.sum()) for _ in range(n)]
    labels = []
    for items in lists:
        hit = rng.random(10) < np.linspace(0.25, 0.02, 10)
        labels.append(encode_relevance({str(i): float(rng.choice([1, 3])) for i in items[hit]})
                      if rng.random() > 0.33 else "")
    return [encode_ranking(x) for x in lists], labels


@functools.cache
def _ranking_reference() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    preds, labels = _ranked(rng, 1500)
    return pd.DataFrame({"x": rng.normal(size=1500), "k": rng.choice(["a", "b"], 1500), "prediction": preds,
                         "label": labels})


def _feed_item_drift(det: ItemDrift, rng: np.random.Generator) -> Any:
    n = 300
    return det.update(Window(0, 1, n), {"prediction": np.array(_ranked(rng, n, int(rng.choice([100, 30])))[0],
                                                               dtype=object)})


def _feed_item_reference(ref: ItemReference, rng: np.random.Generator) -> Any:
    from detectors.ranking_metrics import label_free_metrics

    return label_free_metrics(_ranked(rng, 50)[0], ref, 10)


def _feed_ranking_performance(perf: RankingPerformance, rng: np.random.Generator) -> Any:
    preds, labels = _ranked(rng, 300)
    if rng.random() < 0.4:       # the engagement moves to the bottom of the lists
        labels = [encode_relevance([p.split("\x1f")[-1]]) for p in preds]
    return perf.update(Window(0, 1, 300), preds, labels)


def _feed_ranking_monitor(mon: RankingMonitor, rng: np.random.Generator) -> Any:
    n = 400
    preds, labels = _ranked(rng, n, int(rng.choice([100, 30])))
    t0 = int(rng.integers(0, 10**6))
    ts = np.arange(t0, t0 + n, dtype=np.int64)
    feats = {"x": rng.normal(rng.choice([0.0, 1.0]), 1, n), "k": rng.choice(["a", "b"], n).astype(object)}
    pred = np.array(preds, dtype=object)
    out = mon.update_predictions(PredictionBatch(ts, feats, pred, None, [], "v1"))
    return out + mon.update_labelled(LabelledBatch(ts, pred, np.array(labels, dtype=object)))


def _ranking_performance_params() -> dict[str, Any]:
    ref, metrics = _ranking_reference(), ["ndcg@10", "mrr", "precision@5"]
    perf = RankingPerformance.from_reference(list(ref["prediction"]), list(ref["label"]), metrics=metrics)
    return {"metrics": metrics, "baseline": perf.baseline, "baseline_source": perf.source, "draws": 30}


def _ranking_monitor_params() -> dict[str, Any]:
    return {"model": "m", "feature_types": {"x": "numeric", "k": "categorical"}, "reference": _ranking_reference(),
            "settings": {"window_size": 300, "warmup": 0, "min_window": 50, "calibration_draws": 20,
                         "bootstrap": 30}}


# ------------------------------------------------------------------ the table
#: Every concrete detector class, how to build it and feed it. Default parameters first, then
#: sensitive ones where the defaults would detect nothing on the short contract streams.
CASES: dict[type, Case] = {
    ADWIN: Case((_kw(), _kw(delta=0.1, mode="both")), _errors("binary")),
    DDM: Case((_kw(), _kw(warm_start=20, drift_threshold=2.0, warning_threshold=1.5)), _errors("binary")),
    EDDM: Case((_kw(), _kw(warm_start=30, alpha=0.95, beta=0.9)), _errors("binary")),
    HDDM_A: Case((_kw(), _kw(drift_confidence=0.01, two_sided_test=True)), _errors("unit")),
    HDDM_W: Case((_kw(), _kw(drift_confidence=0.01, two_sided_test=True)), _errors("unit")),
    KSWIN: Case((_kw(), _kw(alpha=0.01, window_size=60, stat_size=20, mode="both", seed=3)), _errors("real")),
    PageHinkley: Case((_kw(), _kw(threshold=8.0, warmup=50, mode="both")), _errors("real")),
    UnivariateDrift: Case(
        (lambda: {"reference": _columns_reference(), "calibration_n": 300, "calibration_draws": 8, "model": "m"},),
        _feed_columns),
    PCAReconstructionDrift: Case((lambda: {"reference": _columns_reference()},), _feed_columns),
    Segments: Case((_segments_params, lambda: {**_segments_params(), "family": "separate"}), _feed_segments),
    DataQuality: Case((lambda: {"reference": _columns_reference(), "model": "m"},
                       lambda: {"reference": _columns_reference(), "correction": "bh", "schema_share": 0.2}),
                      _feed_data_quality),
    DomainClassifierDrift: Case(
        (lambda: {"reference": _columns_reference(), "max_rows": 120, "max_iter": 5, "folds": 2},), _feed_columns),
    CBPE: Case((lambda: {"reference": _scored_reference(), "min_n": 50},), _feed_cbpe),
    DLE: Case((lambda: {"reference": _regression_reference(), "min_n": 50, "max_iter": 30},), _feed_dle),
    PerformanceDrift: Case(
        (lambda: {"task": "classification", "classes": ["0", "1"], "reference": _scored_reference(),
                  "bootstrap": 50, "min_n": 50},),
        _feed_performance),
    ModelMonitor: Case((_monitor_params,), _feed_monitor),
    AlertBook: Case((_kw(resolve_after=2),), _feed_alert_book),
    WindowBuffer: Case(
        (_kw(kind="count", size=50), _kw(kind="count", size=50, step=20), _kw(kind="time", size=5000),
         _kw(kind="time", size=5000, step=1000, allowed_lateness=500)),
        _feed_window_buffer),
    Reference: Case((lambda: {"features": dict(_columns_reference().features),
                              "feature_types": _columns_reference().feature_types, "task": "regression"},),
                    _feed_reference),
    MonitorSettings: Case((_kw(), _kw(window_size=1000, correction="bh", concept_params={"adwin": {"delta": 0.1}})),
                          _feed_settings),
    VersionedMonitor: Case((_kw(model="m", task="classification", feature_types=_MONITOR_FEATURES),
                            _kw(model="m", task="classification", feature_types=_MONITOR_FEATURES, max_live=2,
                                retire_after_ms=1000)),
                           _feed_versions),
    ItemDrift: Case((lambda: {"reference": list(_ranking_reference()["prediction"]), "calibration_draws": 20},
                     lambda: {"reference": list(_ranking_reference()["prediction"]), "k": 5, "max_items": 10,
                              "calibration_draws": 20, "min_effect": 0.02}),
                    _feed_item_drift),
    ItemReference: Case((lambda: vars(ItemReference.from_lists(list(_ranking_reference()["prediction"]),
                                                               list(_ranking_reference()["label"]), k=10)),),
                        _feed_item_reference),
    RankingPerformance: Case((_ranking_performance_params,
                              lambda: {"metrics": ["hit_rate@3"], "draws": 30}),
                             _feed_ranking_performance),
    RankingMonitor: Case((_ranking_monitor_params,), _feed_ranking_monitor),
    RankingSettings: Case((_kw(), _kw(k=5, metrics=("ndcg@5", "mrr"))), _feed_settings),
    ShadowComparison: Case((_kw(served_version="v1", shadow_version="v2"),
                            _kw(served_version="v1", shadow_version="v2", task="regression", alpha=0.01, min_n=10)),
                           _feed_shadow),
}

#: Classes the discovery must find (so that a broken discovery cannot pass by finding nothing).
KNOWN = {ADWIN, DDM, EDDM, HDDM_A, HDDM_W, KSWIN, PageHinkley, UnivariateDrift, PCAReconstructionDrift, DataQuality, Segments,
         DomainClassifierDrift, CBPE, DLE, PerformanceDrift, ModelMonitor, AlertBook, WindowBuffer, Reference,
         MonitorSettings, VersionedMonitor, ShadowComparison, ItemDrift, ItemReference, RankingPerformance,
         RankingMonitor, RankingSettings}
KNOWN_WINDOW_DETECTORS = {UnivariateDrift, PCAReconstructionDrift, DomainClassifierDrift, DataQuality, ItemDrift}


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def missing_case_message(cls: type) -> str:
    """What to add for a discovered class that has no case."""
    return (f"{_name(cls)} is a detector class (a Snapshotable in detectors/) with no contract parameters: "
            f"add `{cls.__qualname__}: Case(params=(lambda: {{...constructor kwargs...}},), feed=...)` to CASES "
            f"in tests/detectors/test_contract.py (skips={{check_name: reason}} to opt out of a check), "
            f"or, if it is a base class and not a detector, to BASES with what it is for")


def _concrete() -> list[type]:
    return [c for c in discover() if c not in BASES]


def _generate() -> list[Any]:
    """One pytest param per (class, parameter set, check); a class without a case gets one
    param that fails with :func:`missing_case_message`."""
    out = []
    for cls in _concrete():
        case = CASES.get(cls)
        if case is None:
            out.append(pytest.param(cls, -1, None, id=f"{cls.__qualname__}:no-case"))
            continue
        for i, check in itertools.product(range(len(case.params)), yield_checks(cls)):
            if check.__name__ not in case.skips:
                out.append(pytest.param(cls, i, check, id=f"{cls.__qualname__}[{i}]:{check.__name__}"))
    return out


@pytest.mark.parametrize(("cls", "i", "check"), _generate())
def test_contract(cls: type, i: int, check: Any) -> None:
    case = CASES.get(cls)
    if case is None:
        pytest.fail(missing_case_message(cls))
    kwargs = case.params[i]

    def make() -> Any:
        return cls(**kwargs())

    check(make, case.feed)


def test_discovery_finds_the_known_detectors() -> None:
    found = set(discover())
    assert found >= KNOWN, f"the discovery lost {sorted(map(_name, KNOWN - found))}"
    assert found >= set(BASES)


def test_every_detector_class_has_a_case() -> None:
    missing = [c for c in _concrete() if c not in CASES]
    assert not missing, "\n".join(map(missing_case_message, missing))
    stale = sorted(_name(c) for c in CASES if c not in set(_concrete()))
    assert not stale, f"CASES names classes the discovery does not find: {stale}"


def test_a_new_class_without_parameters_fails_with_what_to_add() -> None:
    msg = missing_case_message(ADWIN)
    assert "detectors.concept.adwin.ADWIN" in msg and "CASES" in msg and "tests/detectors/test_contract.py" in msg


def test_skips_name_real_checks_and_give_reasons() -> None:
    names = {c.__name__ for c in ALL_CHECKS}
    for cls, case in CASES.items():
        for check, reason in case.skips.items():
            assert check in names, f"{_name(cls)} skips unknown check {check!r}"
            assert isinstance(reason, str) and reason.strip(), f"{_name(cls)} skips {check} without a reason"


def test_window_detectors_are_the_known_ones() -> None:
    found = {c for c in _concrete() if is_window_detector(c)}
    assert found == KNOWN_WINDOW_DETECTORS
    assert all(issubclass(c, WindowDetector) for c in found)
