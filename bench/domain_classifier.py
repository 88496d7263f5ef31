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

Prints, per setting: seconds per window (median), detections per kind, and the mean AUC.
Run: ``python bench/domain_classifier.py [--windows 30]`` (a few minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.base import Window
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


def run(settings: list[tuple[int, int, int]], windows: int, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    ref = Reference(sample(20_000, rng), TYPES, task="regression")
    kinds = ("null", "correlation", "interaction")
    data = {k: [sample(5_000, np.random.default_rng([seed, i, j])) if k == "null"
                else sample(5_000, np.random.default_rng([seed, i, j]), k) for i in range(windows)]
            for j, k in enumerate(kinds)}
    print(f"{'folds':>5} {'max_iter':>8} {'max_rows':>8} {'s/window':>9}   "
          + "   ".join(f"{k} (hits, mean AUC)" for k in kinds))
    for folds, max_iter, max_rows in settings:
        proto = DomainClassifierDrift(ref, folds=folds, max_iter=max_iter, max_rows=max_rows)
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
        print(f"{folds:>5} {max_iter:>8} {max_rows:>8} {statistics.median(times):>9.3f}   " + "   ".join(
            f"{c:>24}" for c in cells), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=30)
    args = ap.parse_args()
    run([(3, 50, 2000), (2, 50, 2000), (3, 30, 2000), (2, 30, 2000), (3, 50, 1000)], args.windows)


if __name__ == "__main__":
    main()
