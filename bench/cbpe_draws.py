"""CBPE's Monte-Carlo band: one window's 200 draws of the eight metrics, beside scikit-learn.

CBPE (``detectors/cbpe.py``) estimates a window's metrics from calibrated scores and gives each
a standard error from ``draws`` (200) label vectors sampled from those probabilities. This
times the draws' metrics for one binary window of ``--rows`` (5,000) scored predictions, two
ways, on the same sampled labels:

* driftloop's :func:`detectors.cbpe.metric_draws`, all draws at once (what ``CBPE.update``
  runs; the rows come best first, as ``CBPE._draws`` sorts them), and the whole
  ``CBPE.update`` of the window (calibration, the expected metrics, the draws, the decision);
* the anchor: scikit-learn's metric functions (``accuracy_score``, ``balanced_accuracy_score``,
  ``precision_score``, ``recall_score``, ``f1_score``, specificity as the negative class's
  recall, ``roc_auc_score``, ``average_precision_score``) called per draw.

It prints the seconds of each and the largest difference between the two sets of values (the
same metrics to 1e-9, else the script fails).

Run: ``python bench/cbpe_draws.py [--rows 5000] [--draws 200]`` (under a minute).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.base import Window
from detectors.cbpe import CBPE, CBPE_METRICS, metric_draws
from detectors.reference import Reference


def best_of(fn, repeat: int) -> float:
    """The fastest of ``repeat`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def sklearn_draws(labels: np.ndarray, pred: np.ndarray, score: np.ndarray) -> dict[str, np.ndarray]:
    """The eight metrics per draw (a row of ``labels``) with scikit-learn's functions."""
    from sklearn import metrics as skm

    out: dict[str, list[float]] = {m: [] for m in CBPE_METRICS}
    for y in labels:
        out["accuracy"].append(skm.accuracy_score(y, pred))
        out["balanced_accuracy"].append(skm.balanced_accuracy_score(y, pred))
        out["precision"].append(skm.precision_score(y, pred, zero_division=0))
        out["recall"].append(skm.recall_score(y, pred, zero_division=0))
        out["f1"].append(skm.f1_score(y, pred, zero_division=0))
        out["specificity"].append(skm.recall_score(y, pred, pos_label=0, zero_division=0))
        out["roc_auc"].append(skm.roc_auc_score(y, score))
        out["average_precision"].append(skm.average_precision_score(y, score))
    return {m: np.asarray(v) for m, v in out.items()}


def window(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores rounded to 4 decimals (ties, as services send them), their labels and predictions."""
    rng = np.random.default_rng(seed)
    p1 = np.round(1 / (1 + np.exp(-rng.normal(0, 1.2, rows))), 4)
    y = (rng.random(rows) < p1).astype(int)
    return np.stack([1 - p1, p1], axis=1), y, (p1 > 0.5).astype(int)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--draws", type=int, default=200)
    args = ap.parse_args()

    scores, _, pred = window(args.rows, seed=1)
    order = np.argsort(-scores[:, 1], kind="stable")           # best first, as CBPE._draws has them
    scores, pred = scores[order], pred[order]
    rng = np.random.default_rng(2)
    labels = (rng.random((args.draws, args.rows)) < scores[:, 1]).astype(int)

    def ours() -> dict[str, np.ndarray]:
        return metric_draws(lambda c: labels == c, pred, scores, 2, 1, CBPE_METRICS, True)

    t_ours = best_of(ours, 10)
    t0 = time.perf_counter()
    theirs = sklearn_draws(labels, pred, scores[:, 1])
    t_sklearn = time.perf_counter() - t0
    got = ours()
    diff = max(float(np.max(np.abs(got[m] - theirs[m]))) for m in CBPE_METRICS)

    ref_scores, ref_y, _ = window(20_000, seed=3)
    ref = Reference({"x": ref_scores[:, 1]}, {"x": "numeric"}, label=ref_y.astype(str), scores=ref_scores,
                    classes=["0", "1"])
    cbpe = CBPE(ref, draws=args.draws)
    win = Window(start_ts=0, end_ts=1, n=args.rows)
    t_update = best_of(lambda: cbpe.update(win, pred.astype(str), scores), 5)

    print(f"one binary window of {args.rows:,} scored predictions, {args.draws} draws, 8 metrics; best of 10 (sklearn: one run)")
    print(f"{'contender':<52}{'seconds':>9}{'vs driftloop':>14}")
    print("-" * 75)
    print(f"{'driftloop metric_draws (all draws at once)':<52}{t_ours:>9.4f}{'1.0x':>14}")
    print(f"{'driftloop CBPE.update (calibration, estimate, draws)':<52}{t_update:>9.4f}{t_update / t_ours:>13.1f}x")
    print(f"{'scikit-learn metric functions, per draw':<52}{t_sklearn:>9.4f}{t_sklearn / t_ours:>13.1f}x")
    print(f"\nmax |driftloop - scikit-learn| over the draws and metrics = {diff:.2e}")
    if not diff < 1e-9:
        raise SystemExit("the draws' metrics differ from scikit-learn's")


if __name__ == "__main__":
    main()
