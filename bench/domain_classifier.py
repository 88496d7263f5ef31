"""Cost and power of the domain classifier (``DomainClassifierDrift``) per setting.

The domain classifier is the dearest default detector: every window fits ``folds``
gradient-boosting models on ``2 x max_rows`` rows. This bench asks whether cheaper settings
see as much. Data: 8 numeric and 2 categorical features (20,000 reference rows); windows of
5,000 rows of three kinds, each judged by a fresh detector (no alert hysteresis):

* ``null``: the reference distribution again (every detection is a false alarm);
* ``correlation``: ``f1`` becomes correlated with ``f0`` (rho 0 -> 0.35), marginals unchanged,
  so no univariate test can see it;
* ``interaction``: ``f2`` shifts by +0.8 for ``country == "DE"`` only (a quarter of the rows),
  a small marginal shift that a multivariate view sees better.

Prints, per setting (folds, boosting iterations, rows per side, leaves per tree): seconds per
window (median), detections per kind, and the mean AUC.
Run: ``python bench/domain_classifier.py [--windows 30] [--seed 7]`` (a few minutes on 2 cores).

``--gate``: the monitor's schedule of the domain classifier (``domain_classifier_every`` and
``domain_classifier_gate``) against judging every window, through a whole
:class:`~detectors.model_monitor.ModelMonitor` (univariate data drift, PCA and the domain
classifier; alert hysteresis on). Per kind and seed, one stream: 10 reference-like windows,
then 20 of the kind (``null``: 30 reference-like windows). Prints per schedule and kind: the
multivariate false alarms before the change, the windows from the change to the first
multivariate alert (PCA or the domain classifier) and to the first alert of any kind, the
domain classifier's runs, and the detectors' seconds per window.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.base import Window
from detectors.batch import PredictionBatch
from detectors.model_monitor import ModelMonitor, MonitorSettings
from detectors.multivariate import DomainClassifierDrift
from detectors.reference import Reference

TYPES = {f"f{i}": "numeric" for i in range(8)} | {"country": "categorical", "device": "categorical"}


def sample(n: int, rng: np.random.Generator, kind: str = "null") -> dict[str, np.ndarray]:
    cols = {f"f{i}": rng.normal(size=n) for i in range(8)}
    cols["country"] = rng.choice(np.array(["DE", "FR", "US", "GB"], dtype=object), size=n)
    cols["device"] = rng.choice(np.array(["ios", "android", "web"], dtype=object), size=n, p=[0.3, 0.5, 0.2])
    if kind == "correlation":
        rho = 0.35
        cols["f1"] = rho * cols["f0"] + np.sqrt(1 - rho**2) * rng.normal(size=n)
    elif kind == "interaction":
        cols["f2"] = cols["f2"] + 0.8 * (cols["country"] == "DE")
    return cols


def run(settings: list[tuple[int, int, int, int]], windows: int, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    ref = Reference(sample(20_000, rng), TYPES, task="regression")
    kinds = ("null", "correlation", "interaction")
    data = {k: [sample(5_000, np.random.default_rng([seed, i, j])) if k == "null"
                else sample(5_000, np.random.default_rng([seed, i, j]), k) for i in range(windows)]
            for j, k in enumerate(kinds)}
    print(f"{'folds':>5} {'max_iter':>8} {'max_rows':>8} {'leaves':>6} {'s/window':>9}   "
          + "   ".join(f"{k} (hits, mean AUC)" for k in kinds))
    for folds, max_iter, max_rows, leaves in settings:
        proto = DomainClassifierDrift(ref, folds=folds, max_iter=max_iter, max_rows=max_rows, max_leaf_nodes=leaves)
        times, cells = [], []
        for k in kinds:
            hits, aucs = 0, []
            for i, cols in enumerate(data[k]):
                det = proto.clone()
                det.seed = i
                t = time.perf_counter()
                out = det.update(Window(0, 1, 5_000), cols)
                times.append(time.perf_counter() - t)
                hits += any(d.firing for d in out)
                aucs.append(det.last()["auc"])
            cells.append(f"{hits:>3}/{windows} {np.mean(aucs):.3f}")
        print(f"{folds:>5} {max_iter:>8} {max_rows:>8} {leaves:>6} {statistics.median(times):>9.3f}   " + "   ".join(
            f"{c:>24}" for c in cells), flush=True)


def _monitor(ref_cols: dict[str, np.ndarray], every: int) -> ModelMonitor:
    settings = {"performance": False, "cbpe": False, "dle": False, "prediction_drift": False,
                "concept_drift": False, "domain_classifier_every": every}
    return ModelMonitor("bench", "regression", TYPES, pd.DataFrame(ref_cols), settings)


def _stream(mon: ModelMonitor, kind: str, seed: int, before: int, after: int) -> dict[str, Any]:
    """Feed one stream; the first window of each alert kind (1-based, after the change) and the
    multivariate alerts before it."""
    first: dict[str, int | None] = {"multivariate": None, "any": None}
    false_mv, seconds = 0, 0.0
    for i in range(before + after):
        cols = sample(5_000, np.random.default_rng([seed, 99, i]), "null" if i < before else kind)
        batch = PredictionBatch(np.arange(i * 5_000, (i + 1) * 5_000, dtype=np.int64), cols,
                                np.zeros(5_000))
        t = time.perf_counter()
        out = mon.update_predictions(batch)
        seconds += time.perf_counter() - t
        fired = [d for d in out if d.firing]
        mv = any(d.kind == "multivariate_drift" for d in fired)
        if i < before:
            false_mv += mv
            continue
        k = i - before + 1
        if mv and first["multivariate"] is None:
            first["multivariate"] = k
        if fired and first["any"] is None:
            first["any"] = k
    runs = mon.status()["multivariate"]["domain_classifier"]["windows"]
    return {"false_mv": false_mv, **first, "dc_runs": runs["judged"], "s_per_window": seconds / (before + after)}


def _hits(rows: list[dict[str, Any]], key: str, kind: str, seeds: int) -> str:
    """``found/seeds @mean first window`` of the streams that raised alert ``key``."""
    got = [r[key] for r in rows if r[key] is not None]
    return "-" if kind == "null" else f"{len(got)}/{seeds} @{np.mean(got):.1f}" if got else f"0/{seeds}"


def gate_run(seeds: int) -> None:
    """The domain classifier on every window against the monitor's default schedule."""
    kinds = ("null", "correlation", "interaction")
    default = MonitorSettings()
    schedules = {"every window (every=1)": 1,
                 f"default (every={default.domain_classifier_every}, gate {default.domain_classifier_gate})":
                     default.domain_classifier_every}
    print(f"# {seeds} seed(s) per kind; streams of 10 reference-like windows then 20 of the kind (null: 30); "
          "windows of 5,000, 20,000 reference rows")
    print(f"{'schedule':32} {'kind':12} {'mv false alarms':>15} {'first mv alert':>15} {'first alert':>12} "
          f"{'dc runs':>8} {'s/window':>9}")
    for name, every in schedules.items():
        for kind in kinds:
            rows = []
            for seed in range(seeds):
                ref = sample(20_000, np.random.default_rng([seed, 7]))
                before, after = (30, 0) if kind == "null" else (10, 20)
                rows.append(_stream(_monitor(ref, every), kind, seed, before, after))
            mv, anything = (_hits(rows, key, kind, seeds) for key in ("multivariate", "any"))
            print(f"{name:32} {kind:12} {sum(r['false_mv'] for r in rows):>15} {mv:>15} "
                  f"{anything:>12} {np.mean([r['dc_runs'] for r in rows]):>8.1f} "
                  f"{np.mean([r['s_per_window'] for r in rows]):>9.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=30)
    ap.add_argument("--gate", action="store_true", help="the monitor's schedule against every window")
    ap.add_argument("--seeds", type=int, default=5, help="--gate: streams per kind")
    ap.add_argument("--seed", type=int, default=7, help="the windows' seed (without --gate)")
    args = ap.parse_args()
    if args.gate:
        gate_run(args.seeds)
        return
    # the default (7 leaves per tree), scikit-learn's 31 (the default before), and cheaper variants
    run([(3, 50, 2000, 7), (3, 50, 2000, 31), (3, 50, 2000, 4), (3, 30, 2000, 7), (2, 50, 2000, 7)], args.windows,
        args.seed)


if __name__ == "__main__":
    main()
