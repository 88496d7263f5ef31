"""Label-free performance estimates: NannyML 0.13 (the anchor) beside driftloop, on generated streams.

What is compared. Five seeded streams, windows of 5,000 rows (20 reference windows, 20
analysis windows by default); the model is fitted on a separate training sample drawn like
the reference:

* (a) ``binary``: a binary ``HistGradientBoostingClassifier`` under covariate shift only (the
  features move over the analysis windows, P(y|x) stays);
* (b) ``3-class``: a 3-class one under covariate shift;
* (c) ``binary+concept``: (a) while P(y|x) also moves (gradually, to a different rule);
* (d) ``3-class+concept``: (b) with P(y|x) moving too;
* (e) ``regression``: a ``HistGradientBoostingRegressor`` under covariate shift with
  heteroscedastic noise (the noise grows with ``|x0|``, and ``x0`` moves).

Estimators, each fitted on the reference windows and asked for every analysis window without
its labels:

* NannyML 0.13: ``CBPE`` for the classifiers (roc_auc, f1, precision, recall, specificity,
  accuracy, average_precision; macro averages for the 3-class model, for the metrics NannyML
  supports there), ``DLE`` for the regressor (mae, mse, rmse, mape, msle, rmsle). NannyML 0.13
  does not run with pandas 3, so it runs in its own virtualenv (``bench/.venv-nannyml``, created
  on first use with ``python3 -m venv`` and pip: ``nannyml==0.13.*``, ``pandas<3`` and
  ``statsmodels``, which NannyML imports without declaring it), in a
  subprocess that reads the streams from a file and writes its estimates as JSON.
* driftloop: ``detectors.cbpe.CBPE`` (classifiers) and ``detectors.dle.DLE`` (regressor), in
  this process, through the API they have when the script runs: a metric driftloop does not
  estimate yet is printed as "not estimated" (never a number). The "driftloop (10% labelled)"
  column is ``CBPE.estimate_with_labels`` (``DLE.estimate_with_labels`` for the regressor): the
  label-free estimate corrected by the labels of a seeded random 10% of each window's rows,
  those that arrived by its close, weighed against the track record of the windows already
  fully labelled (the rest of a window's labels arrive during the next window: a label lag of
  one window). The issue's target: under concept shift (c, d), half NannyML's error.

For each stream and metric the table gives the realised metric over the analysis windows
(mean, min-max), each estimator's mean absolute error against it, and each estimator's time
(fit on the reference + estimates of all analysis windows, every metric of the stream; import
and building the data frames / the reference excluded). Everything is printed by one run so
the figures are comparable (the machines are shared and noisy: compare within a run).

Run: ``python bench/label_free.py`` (about 20 windows each; writes ``docs/label_free.md``;
``--no-doc`` to skip that), ``python bench/label_free.py --quick`` (4 + 4 windows, no doc),
``--no-nannyml`` to skip the anchor.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import inspect
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sklearn import metrics as skm
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from detectors.base import Window
from detectors.reference import Reference

VENV = ROOT / "bench" / ".venv-nannyml"
DOC = ROOT / "docs" / "label_free.md"
N_FEATURES = 5
TRAIN_ROWS = 20_000

BINARY_METRICS = ["roc_auc", "f1", "precision", "recall", "specificity", "accuracy", "average_precision"]
MULTICLASS_METRICS = ["roc_auc", "f1", "precision", "recall", "specificity", "accuracy", "average_precision"]
REGRESSION_METRICS = ["mae", "mse", "rmse", "mape", "msle", "rmsle"]

NANNYML_RUNNER = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd
t_import = time.perf_counter()
import nannyml as nml
t_import = time.perf_counter() - t_import
data = np.load(sys.argv[1], allow_pickle=False)
spec = json.loads(sys.argv[2])
kind, window, metrics = spec["kind"], spec["window"], spec["metrics"]
feats = [f"x{i}" for i in range(data["ref_x"].shape[1])]

def frame(part, with_truth):
    df = pd.DataFrame(data[part + "_x"], columns=feats)
    df["y_pred"] = data[part + "_pred"]
    if kind == "binary":
        df["y_pred_proba"] = data[part + "_proba"][:, 1]
    elif kind == "multiclass":
        for k in range(data[part + "_proba"].shape[1]):
            df[f"p{k}"] = data[part + "_proba"][:, k]
    if with_truth:
        df["y_true"] = data[part + "_y"]
    return df

ref, ana = frame("ref", True), frame("ana", False)
out = {"version": nml.__version__, "seconds_import": t_import, "estimates": {}, "failed": {}}

def make(ms):
    if kind == "regression":
        return nml.DLE(feature_column_names=feats, y_pred="y_pred", y_true="y_true", metrics=ms,
                       chunk_size=window)
    proba = "y_pred_proba" if kind == "binary" else {k: f"p{k}" for k in range(data["ref_proba"].shape[1])}
    return nml.CBPE(y_pred_proba=proba, y_pred="y_pred", y_true="y_true", metrics=ms, chunk_size=window,
                    problem_type="classification_binary" if kind == "binary" else "classification_multiclass")

# the metrics this NannyML accepts for the task, found one by one (untimed), then fitted together
ok = []
for m in metrics:
    try:
        make([m])
        ok.append(m)
    except Exception as e:
        out["failed"][m] = f"{type(e).__name__}: {e}"[:200]
t0 = time.perf_counter()
est = make(ok)
est.fit(ref)
t_fit = time.perf_counter() - t0
t0 = time.perf_counter()
res = est.estimate(ana)
t_est = time.perf_counter() - t0
df = res.filter(period="analysis").to_df()
for m in ok:
    out["estimates"][m] = [None if v != v else float(v) for v in df[(m, "value")].tolist()]
out["seconds_fit"], out["seconds_estimate"] = t_fit, t_est
print(json.dumps(out))
"""


# ---------------------------------------------------------------------------- streams
@dataclass
class Part:
    """Rows of one period: features, truth, the model's prediction and (classifiers) scores."""

    x: np.ndarray
    y: np.ndarray
    pred: np.ndarray
    proba: np.ndarray | None


@dataclass
class Stream:
    name: str
    kind: str  # binary | multiclass | regression
    window: int
    ref: Part
    ana: Part
    labelled: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # analysis rows labelled by window close
    truth: np.ndarray | None = None  # classifiers: the true P(y|x) of the analysis rows

    @property
    def metrics(self) -> list[str]:
        return {"binary": BINARY_METRICS, "multiclass": MULTICLASS_METRICS}.get(self.kind, REGRESSION_METRICS)

    @property
    def windows(self) -> int:
        return len(self.ana.y) // self.window


def features(rng: np.random.Generator, n: int, shift: np.ndarray) -> np.ndarray:
    """``n`` rows of 5 correlated features; ``shift`` (per row, 0..1) moves their distribution:
    x0's mean +1.5, x1's mean -1.0, x2's spread x1.5 at full shift."""
    z = rng.standard_normal((n, N_FEATURES))
    z[:, 1] = 0.5 * z[:, 0] + np.sqrt(0.75) * z[:, 1]
    z[:, 0] += 1.5 * shift
    z[:, 1] -= 1.0 * shift
    z[:, 2] *= 1.0 + 0.5 * shift
    return z


def binary_logit(x: np.ndarray, concept: np.ndarray) -> np.ndarray:
    """log-odds of y = 1; ``concept`` (0..1 per row) moves to a different rule (x1 flips sign)."""
    base = 1.5 * x[:, 0] - 1.0 * x[:, 1] + 0.8 * x[:, 2] * x[:, 3] + 0.5 * np.sin(2 * x[:, 4]) - 0.5
    return base + concept * (2.0 * x[:, 1] - 0.7 * x[:, 0] + 0.5)


def multiclass_logits(x: np.ndarray, concept: np.ndarray) -> np.ndarray:
    """Class log-odds (n, 3); ``concept`` swaps what x0 and x1 say about the classes."""
    w = np.array([[1.2, -0.4, -0.8], [-0.6, 1.0, -0.4], [0.3, -0.3, 0.6], [0.0, 0.5, -0.5], [0.4, 0.0, -0.4]])
    d = np.array([[-1.2, 1.6, -0.4], [1.2, -1.4, 0.2], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    logits = x @ w
    logits[:, 2] += 0.7 * x[:, 2] * x[:, 3]
    return logits + concept[:, None] * (x @ d)


def true_proba(kind: str, x: np.ndarray, concept: np.ndarray) -> np.ndarray:
    """The true P(y|x) of a classifier stream, ``(n, k)``."""
    if kind == "binary":
        p1 = 1 / (1 + np.exp(-binary_logit(x, concept)))
        return np.column_stack([1 - p1, p1])
    lg = multiclass_logits(x, concept)
    p = np.exp(lg - lg.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def draw_labels(rng: np.random.Generator, kind: str, x: np.ndarray, concept: np.ndarray) -> np.ndarray:
    """Labels from the true P(y|x) (classes 0..k-1) or the regression target."""
    if kind == "binary":
        return (rng.random(len(x)) < true_proba(kind, x, concept)[:, 1]).astype(np.int64)
    if kind == "multiclass":
        cum = np.cumsum(true_proba(kind, x, concept), axis=1)
        return (rng.random(len(x))[:, None] > cum[:, :-1]).sum(axis=1).astype(np.int64)
    mean = 20 + 3 * x[:, 0] + 2 * np.sin(x[:, 1]) + 1.5 * x[:, 2] * x[:, 3] + x[:, 4]
    return np.maximum(mean + rng.standard_normal(len(x)) * (0.5 + 1.0 * np.abs(x[:, 0])), 0.1)


def fit_model(kind: str, x: np.ndarray, y: np.ndarray, seed: int) -> Any:
    if kind == "regression":
        return HistGradientBoostingRegressor(max_iter=100, random_state=seed).fit(x, y)
    return HistGradientBoostingClassifier(max_iter=100, random_state=seed).fit(x, y)


def score(model: Any, kind: str, x: np.ndarray, y: np.ndarray) -> Part:
    if kind == "regression":
        return Part(x, y, np.maximum(model.predict(x), 0.0), None)
    proba = model.predict_proba(x)
    return Part(x, y, proba.argmax(axis=1).astype(np.int64), proba)


def make_stream(name: str, kind: str, concept: bool, ref_windows: int, ana_windows: int, window: int,
                seed: int) -> Stream:
    """Reference windows from the training distribution; over the analysis windows the
    covariate shift (and with ``concept`` the change of P(y|x)) grows linearly from 0 to 1."""
    rng = np.random.default_rng(seed)
    x_tr = features(rng, TRAIN_ROWS, np.zeros(TRAIN_ROWS))
    model = fit_model(kind, x_tr, draw_labels(rng, kind, x_tr, np.zeros(TRAIN_ROWS)), seed)
    n_ref, n_ana = ref_windows * window, ana_windows * window
    x_ref = features(rng, n_ref, np.zeros(n_ref))
    ref = score(model, kind, x_ref, draw_labels(rng, kind, x_ref, np.zeros(n_ref)))
    level = np.repeat(np.linspace(0.0, 1.0, ana_windows), window)
    x_ana = features(rng, n_ana, level)
    concept_level = level if concept else np.zeros(n_ana)
    ana = score(model, kind, x_ana, draw_labels(rng, kind, x_ana, concept_level))
    truth = None if kind == "regression" else true_proba(kind, x_ana, concept_level)
    return Stream(name, kind, window, ref, ana, labelled=rng.random(n_ana) < 0.10, truth=truth)


def make_streams(ref_windows: int, ana_windows: int, window: int, seed: int) -> list[Stream]:
    specs = [("(a) binary, covariate", "binary", False), ("(b) 3-class, covariate", "multiclass", False),
             ("(c) binary, cov+concept", "binary", True), ("(d) 3-class, cov+concept", "multiclass", True),
             ("(e) regression, covariate", "regression", False)]
    return [make_stream(n, k, c, ref_windows, ana_windows, window, seed + i) for i, (n, k, c) in enumerate(specs)]


# ---------------------------------------------------------------------------- realised metrics
def _specificity(y: np.ndarray, pred: np.ndarray, classes: list[int]) -> float:
    """Binary: TN / (TN + FP) of class 1; multiclass: the macro mean over one-vs-rest."""
    cls = [1] if len(classes) == 2 else classes
    vals = []
    for c in cls:
        neg = y != c
        vals.append(float(np.mean(pred[neg] != c)) if neg.any() else float("nan"))
    return float(np.mean(vals))


def realised(kind: str, metric: str, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None) -> float:
    """The metric on one labelled window, as NannyML defines it (macro averages for 3 classes)."""
    if kind == "regression":
        return {"mae": lambda: skm.mean_absolute_error(y, pred),
                "mse": lambda: skm.mean_squared_error(y, pred),
                "rmse": lambda: np.sqrt(skm.mean_squared_error(y, pred)),
                "mape": lambda: skm.mean_absolute_percentage_error(y, pred),
                "msle": lambda: skm.mean_squared_log_error(y, pred),
                "rmsle": lambda: np.sqrt(skm.mean_squared_log_error(y, pred))}[metric]()
    assert proba is not None
    classes = list(range(proba.shape[1]))
    binary = len(classes) == 2
    avg = "binary" if binary else "macro"
    if metric == "roc_auc":
        return float(skm.roc_auc_score(y, proba[:, 1]) if binary
                     else skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes))
    if metric == "average_precision":
        return float(skm.average_precision_score(y, proba[:, 1]) if binary
                     else skm.average_precision_score(np.eye(len(classes))[y], proba, average="macro"))
    if metric == "accuracy":
        return float(np.mean(y == pred))
    if metric == "specificity":
        return _specificity(y, pred, classes)
    fn = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}[metric]
    return float(fn(y, pred, average=avg, labels=None if binary else classes, zero_division=0))


def realised_table(s: Stream) -> dict[str, np.ndarray]:
    out = {}
    for m in s.metrics:
        vals = []
        for w in range(s.windows):
            sl = slice(w * s.window, (w + 1) * s.window)
            vals.append(realised(s.kind, m, s.ana.y[sl], s.ana.pred[sl],
                                 None if s.ana.proba is None else s.ana.proba[sl]))
        out[m] = np.array(vals)
    return out


def noise_floor(s: Stream, draws: int = 40, seed: int = 0) -> dict[str, float]:
    """The error no estimator of a window's metric can avoid without its labels: per window the
    labels are drawn again from the true P(y|x) ``draws`` times, the metric computed on each,
    and the mean absolute deviation of those from their mean is the error of an oracle that
    knows the expected metric exactly (the realised metric is that expectation plus this
    noise); averaged over the windows. Classifier streams only."""
    assert s.truth is not None
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {m: [] for m in s.metrics}
    for w in range(s.windows):
        sl = slice(w * s.window, (w + 1) * s.window)
        cum = np.cumsum(s.truth[sl], axis=1)[:, :-1]
        per: dict[str, list[float]] = {m: [] for m in s.metrics}
        for _ in range(draws):
            y = (rng.random(len(cum))[:, None] > cum).sum(axis=1)
            for m in s.metrics:
                per[m].append(realised(s.kind, m, y, s.ana.pred[sl], s.ana.proba[sl]))  # type: ignore[index]  # classifiers have scores
        for m, v in per.items():
            a = np.asarray(v)
            out[m].append(float(np.mean(np.abs(a - a.mean()))))
    return {m: float(np.mean(v)) for m, v in out.items()}


# ---------------------------------------------------------------------------- driftloop
@dataclass
class Result:
    """One estimator on one stream: per metric the window estimates, or why there are none."""

    estimates: dict[str, np.ndarray] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # metric -> the cell's text
    seconds: float | None = None
    note: str = ""


def _labels(a: np.ndarray, kind: str) -> np.ndarray:
    return a.astype(np.float64) if kind == "regression" else np.array([str(v) for v in a], dtype=object)


def build_reference(s: Stream) -> Reference:
    feats = {f"x{i}": s.ref.x[:, i] for i in range(s.ref.x.shape[1])}
    types = {f: "numeric" for f in feats}
    if s.kind == "regression":
        return Reference(feats, types, task="regression", label=s.ref.y.astype(float), prediction=s.ref.pred)
    classes = [str(k) for k in range(s.ref.proba.shape[1])]  # type: ignore[union-attr]  # classifiers have scores
    return Reference(feats, types, task="classification", label=_labels(s.ref.y, s.kind),
                     prediction=_labels(s.ref.pred, s.kind), scores=s.ref.proba, classes=classes)


def _history_value(row: dict[str, Any], metric: str) -> float | None:
    """The estimate of ``metric`` in one ``history_table()`` row: ``metrics[m]["value"]`` (CBPE)
    or ``["estimate"]`` (DLE); the accuracy-only CBPE kept ``estimated_accuracy``."""
    entry = (row.get("metrics") or {}).get(metric)
    if isinstance(entry, dict):
        for key in ("value", "estimate"):
            if entry.get(key) is not None:
                return float(entry[key])
    if row.get(f"estimated_{metric}") is not None:
        return float(row[f"estimated_{metric}"])
    return None


def _supported(module: Any, constant: str, fallback: tuple[str, ...], wanted: list[str]) -> list[str]:
    """The wanted metrics the driftloop detector estimates (its ``*_METRICS`` constant)."""
    known = getattr(module, constant, fallback)
    return [m for m in wanted if m in known]


def _kwargs_for(cls: Any, metrics: list[str], windows: int) -> dict[str, Any]:
    params = inspect.signature(cls).parameters
    kw: dict[str, Any] = {}
    if "metrics" in params:
        kw["metrics"] = list(metrics)
    if "history" in params:
        kw["history"] = windows + 1
    return kw


def _collect(s: Stream, rows: list[dict[str, Any]], seconds: float) -> Result:
    res = Result(seconds=seconds)
    rows = rows[-s.windows:]
    for m in s.metrics:
        vals = [_history_value(r, m) for r in rows]
        if len(rows) == s.windows and all(v is not None for v in vals):
            res.estimates[m] = np.array(vals, dtype=float)
        else:
            res.missing[m] = "not estimated"
    return res


def _window(s: Stream, w: int) -> tuple[slice, Window]:
    return slice(w * s.window, (w + 1) * s.window), Window(w * s.window, (w + 1) * s.window - 1, s.window)


def run_driftloop_cbpe(s: Stream, ref: Reference) -> Result:
    import detectors.cbpe as mod

    metrics = _supported(mod, "CBPE_METRICS", ("accuracy",), s.metrics)
    t0 = time.perf_counter()
    est = mod.CBPE(ref, **_kwargs_for(mod.CBPE, metrics, s.windows))
    for w in range(s.windows):
        sl, win = _window(s, w)
        est.update(win, _labels(s.ana.pred[sl], s.kind), s.ana.proba[sl])  # type: ignore[index]  # classifiers have scores
    return _collect(s, est.history_table(), time.perf_counter() - t0)


def run_driftloop_dle(s: Stream, ref: Reference) -> Result:
    try:
        mod = importlib.import_module("detectors.dle")
    except ImportError:
        return Result(missing={m: "not estimated" for m in s.metrics}, note="detectors.dle does not exist yet")
    metrics = _supported(mod, "DLE_METRICS", (), s.metrics)
    feats = [f"x{i}" for i in range(s.ana.x.shape[1])]
    t0 = time.perf_counter()
    est = mod.DLE(ref, **_kwargs_for(mod.DLE, metrics, s.windows))
    for w in range(s.windows):
        sl, win = _window(s, w)
        est.update(win, {f: s.ana.x[sl, i] for i, f in enumerate(feats)}, s.ana.pred[sl])
    return _collect(s, est.history_table(), time.perf_counter() - t0)


def run_driftloop(s: Stream) -> Result:
    ref = build_reference(s)
    try:
        return run_driftloop_dle(s, ref) if s.kind == "regression" else run_driftloop_cbpe(s, ref)
    except Exception as e:  # noqa: BLE001 - an API in the middle of a change: say so, invent nothing
        return Result(missing={m: "failed" for m in s.metrics}, note=f"driftloop failed: {type(e).__name__}: {e}")


def run_with_labels(s: Stream) -> Result:
    """driftloop's estimate that also learns from the labels already in by each window's close
    (a seeded random 10% of its rows) and from its track record: the rest of a window's labels
    arrive during the next window (a label lag of one window), so when window ``w`` closes the
    windows before ``w - 1``... are fully labelled and ``w - 1`` is too by the time it is
    estimated. Per window: ``estimate_with_labels`` (CBPE: ``label`` None where not yet known;
    DLE: NaN), then ``update`` and ``update_labels`` with the labels that arrived."""
    import detectors.cbpe as cbpe
    import detectors.dle as dle

    regression = s.kind == "regression"
    mod: Any = dle if regression else cbpe
    cls = mod.DLE if regression else mod.CBPE
    if not hasattr(cls, "estimate_with_labels"):
        return Result(missing={m: "not built yet" for m in s.metrics})
    metrics = _supported(mod, "DLE_METRICS" if regression else "CBPE_METRICS", ("accuracy",), s.metrics)
    feats = [f"x{i}" for i in range(s.ana.x.shape[1])]
    try:
        t0 = time.perf_counter()
        est = cls(build_reference(s), **_kwargs_for(cls, metrics, s.windows))
        rows = []

        def arrive(sl: slice, mask: np.ndarray) -> None:
            ts = np.arange(sl.start, sl.stop)[mask]
            pred, y = _labels(s.ana.pred[sl][mask], s.kind), _labels(s.ana.y[sl][mask], s.kind)
            if regression:
                est.update_labels(ts, pred, y, {f: s.ana.x[sl][mask, i] for i, f in enumerate(feats)})
            else:
                est.update_labels(ts, pred == y, y, pred, s.ana.proba[sl][mask])  # type: ignore[index]  # classifiers have scores

        for w in range(s.windows):
            sl, win = _window(s, w)
            if w:                                   # the rest of the previous window's labels
                prev = _window(s, w - 1)[0]
                arrive(prev, ~s.labelled[prev])
            label = _labels(s.ana.y[sl], s.kind)
            pred = _labels(s.ana.pred[sl], s.kind)
            if regression:
                label[~s.labelled[sl]] = np.nan
                cols = {f: s.ana.x[sl, i] for i, f in enumerate(feats)}
                out = est.estimate_with_labels(cols, pred, label)
                est.update(win, cols, pred)
            else:
                label[~s.labelled[sl]] = None
                out = est.estimate_with_labels(win, pred, s.ana.proba[sl], label)  # type: ignore[index]  # classifiers have scores
                est.update(win, pred, s.ana.proba[sl])  # type: ignore[index]  # classifiers have scores
            arrive(sl, s.labelled[sl])              # this window's first tenth
            rows.append({"metrics": out})
        return _collect(s, rows, time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 - an API in the middle of a change: say so, invent nothing
        return Result(missing={m: "failed" for m in s.metrics},
                      note=f"estimate_with_labels failed: {type(e).__name__}: {e}")


# ---------------------------------------------------------------------------- NannyML
# NannyML 0.13 imports statsmodels without declaring it (category-encoders no longer brings it)
NANNYML_REQUIREMENTS = ["nannyml==0.13.*", "pandas<3", "statsmodels"]


def _importable(py: Path) -> bool:
    return subprocess.run([str(py), "-c", "import nannyml"], capture_output=True).returncode == 0


def ensure_nannyml() -> Path | None:
    """The virtualenv's python, created and filled with pip on first use (and topped up once if
    ``import nannyml`` fails there); ``None`` if NannyML cannot be installed or imported."""
    py = VENV / "bin" / "python"
    if py.exists() and _importable(py):
        return py
    print(f"# installing {' '.join(NANNYML_REQUIREMENTS)} into {VENV.relative_to(ROOT)} ...", flush=True)
    t0 = time.perf_counter()
    if not py.exists():
        subprocess.run(["python3", "-m", "venv", str(VENV)], check=True)
    r = subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", *NANNYML_REQUIREMENTS])
    print(f"# ... {time.perf_counter() - t0:.0f} s", flush=True)
    return py if r.returncode == 0 and _importable(py) else None


def run_nannyml(py: Path, s: Stream) -> tuple[Result, str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "stream.npz")
        arrays = {"ref_x": s.ref.x, "ref_y": s.ref.y, "ref_pred": s.ref.pred,
                  "ana_x": s.ana.x, "ana_y": s.ana.y, "ana_pred": s.ana.pred}
        if s.ref.proba is not None and s.ana.proba is not None:
            arrays |= {"ref_proba": s.ref.proba, "ana_proba": s.ana.proba}
        np.savez(path, **arrays)  # type: ignore[arg-type]  # numpy's stub wants positional arrays
        spec = {"kind": s.kind, "window": s.window, "metrics": s.metrics}
        r = subprocess.run([str(py), "-c", NANNYML_RUNNER, path, json.dumps(spec)], capture_output=True, text=True)
    if r.returncode != 0:
        msg = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
        return Result(missing={m: "failed" for m in s.metrics}, note=f"NannyML failed: {msg}"), ""
    out = json.loads(r.stdout.strip().splitlines()[-1])
    res = Result(seconds=out["seconds_fit"] + out["seconds_estimate"])
    for m in s.metrics:
        vals = out["estimates"].get(m)
        if vals is None:
            res.missing[m] = "not supported"
        elif len(vals) != s.windows or any(v is None for v in vals):
            res.missing[m] = "failed"
        else:
            res.estimates[m] = np.array(vals, dtype=float)
    if out["failed"]:
        res.note = "NannyML rejects: " + "; ".join(f"{m} ({why.split(':')[0]})" for m, why in out["failed"].items())
    return res, out["version"]


# ---------------------------------------------------------------------------- table
def _mae(res: Result, metric: str, truth: np.ndarray) -> str:
    if metric in res.missing or metric not in res.estimates:
        return res.missing.get(metric, "not estimated")
    return f"{float(np.mean(np.abs(res.estimates[metric] - truth))):.4f}"


def _fmt_real(v: np.ndarray) -> str:
    big = float(np.max(np.abs(v))) >= 100
    f = "{:.1f}" if big else "{:.3f}"
    return f"{f.format(np.mean(v))} ({f.format(np.min(v))}-{f.format(np.max(v))})"


def _ratio(dl: str, nml: str) -> str:
    try:
        return f"{float(dl) / float(nml):.2f}"
    except (ValueError, ZeroDivisionError):
        return "-"


def _secs(res: Result | None) -> str:
    return "-" if res is None or res.seconds is None else f"{res.seconds:.2f}"


HEADER = ["stream", "metric", "realised mean (min-max)", "NannyML MAE", "driftloop MAE", "dl/NML",
          "driftloop (10% labelled)", "10%/NML", "floor", "NannyML s", "driftloop s"]


def table_rows(streams: list[Stream], truths: list[dict[str, np.ndarray]], nml: list[Result | None],
               ours: list[Result], labelled: list[Result], floors: list[dict[str, float]]) -> list[list[str]]:
    rows = []
    for s, truth, n_res, d_res, l_res, floor in zip(streams, truths, nml, ours, labelled, floors):
        for i, m in enumerate(s.metrics):
            n_cell = _mae(n_res, m, truth[m]) if n_res is not None else "skipped"
            d_cell = _mae(d_res, m, truth[m])
            l_cell = _mae(l_res, m, truth[m])
            rows.append([s.name if i == 0 else "", m, _fmt_real(truth[m]), n_cell, d_cell, _ratio(d_cell, n_cell),
                         l_cell, _ratio(l_cell, n_cell), f"{floor[m]:.4f}" if m in floor else "-",
                         _secs(n_res) if i == 0 else "",
                         _secs(d_res) if i == 0 else ""])
    return rows


def agreement(streams: list[Stream], nml: list[Result | None], ours: list[Result]) -> list[str]:
    """Per stream, how far driftloop's window estimates are from NannyML's (same windows)."""
    out = []
    for s, n_res, d_res in zip(streams, nml, ours):
        both = [m for m in s.metrics if n_res is not None and m in n_res.estimates and m in d_res.estimates]
        if both:
            gap = max(float(np.max(np.abs(n_res.estimates[m] - d_res.estimates[m])))  # type: ignore[union-attr]  # both is empty when n_res is None
                      for m in both)
            out.append(f"{s.name}: largest |driftloop - NannyML| window estimate over {len(both)} metrics = {gap:.2g}")
    return out


def render(rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(HEADER)]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if k < 3 else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths))).rstrip()

    return "\n".join([line(HEADER), "-" * (sum(widths) + 2 * (len(widths) - 1))] + [line(r) for r in rows])


def machine_note() -> str:
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (f"{platform.node() or 'machine'}: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, load average {load} at the end of the run (shared machine)")


def write_doc(path: Path, table: str, notes: list[str], header: str, seconds: float) -> None:
    today = _dt.date.today().isoformat()
    doc = __doc__.split("\n\n", 1)[1].rsplit("\n\nRun:", 1)[0]
    text = (f"# Label-free performance estimates: NannyML 0.13 beside driftloop\n\n"
            f"Generated by `python bench/label_free.py` on {today}; {machine_note()}. Whole run {seconds:.0f} s.\n\n"
            f"{doc}\n\n## Results ({today})\n\n{header}\n\n```\n{table}\n```\n\n"
            + ("".join(f"* {n}\n" for n in notes) + "\n" if notes else "")
            + "`MAE` is the mean over the analysis windows of |estimate - realised|; `dl/NML` is driftloop's MAE "
              "over NannyML's (below 1: driftloop closer), `10%/NML` the same for the estimate with 10% of each "
              "window labelled (the issue's target under concept shift: 0.5 or below). `floor` (classifiers): the "
              "error of an oracle that knows each window's expected metric under the true P(y|x) (labels drawn "
              "again 40 times per window): the realised metric's own noise, which no estimate without the "
              "window's labels avoids, and which 10% of them reduce by about 5% only. Times: fit on the reference and estimates of every "
              "analysis window, all metrics of the stream together (seconds, one run; compare within the run).\n")
    path.write_text(text)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 reference + 4 analysis windows, no doc")
    ap.add_argument("--ref-windows", type=int, default=20)
    ap.add_argument("--windows", type=int, default=20, help="analysis windows")
    ap.add_argument("--window", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-nannyml", action="store_true")
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--streams", default="abcde", help="which streams, by letter (default all: abcde); "
                    "fewer than all implies --no-doc")
    args = ap.parse_args(argv)
    if sorted(set(args.streams)) != list("abcde"):
        args.no_doc = True
    if args.quick:
        args.ref_windows, args.windows, args.no_doc = 4, 4, True
    t_start = time.perf_counter()
    streams = [s for s in make_streams(args.ref_windows, args.windows, args.window, args.seed)
               if s.name[1] in args.streams]
    truths = [realised_table(s) for s in streams]
    py = None if args.no_nannyml else ensure_nannyml()
    if py is None and not args.no_nannyml:
        print("# NannyML could not be installed or imported here; driftloop only")
    nml: list[Result | None] = []
    version = "0.13"
    for s in streams:
        if py is None:
            nml.append(None)
            continue
        r, v = run_nannyml(py, s)
        nml.append(r)
        version = v or version
    ours = [run_driftloop(s) for s in streams]
    labelled = [run_with_labels(s) for s in streams]
    floors = [noise_floor(s) if s.truth is not None else {} for s in streams]
    rows = table_rows(streams, truths, nml, ours, labelled, floors)
    table = render(rows)
    header = (f"{args.ref_windows} reference + {args.windows} analysis windows of {args.window:,} rows per stream, "
              f"seed {args.seed}; NannyML {version} beside driftloop (commit "
              f"{_git_head()}); MAE against the realised metric over the analysis windows")
    notes = [f"{s.name}: {r.note}" for group in (nml, ours, labelled) for s, r in zip(streams, group)
             if r is not None and r.note]
    notes += agreement(streams, nml, ours)
    seconds = time.perf_counter() - t_start
    print("# " + header)
    print(table)
    for n in notes:
        print("# " + n)
    print(f"# whole run {seconds:.0f} s; {machine_note()}")
    if not args.no_doc:
        write_doc(DOC, table, notes, header, seconds)
        print(f"# wrote {DOC.relative_to(ROOT)}")


def _git_head() -> str:
    """HEAD's short hash, naming the estimators' files that differ from it (work in progress)."""
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    st = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "detectors/cbpe.py", "detectors/dle.py",
                         "detectors/label_learning.py"],
                        capture_output=True, text=True)
    changed = [line[3:] for line in st.stdout.splitlines() if line.strip()]
    return (r.stdout.strip() or "?") + (f", uncommitted {' and '.join(changed)}" if changed else "")


if __name__ == "__main__":
    main()
