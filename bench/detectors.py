"""Throughput of the streaming concept-drift detectors beside River 0.26's.

One seeded 1,000,000-event 0/1 error stream (error rate alternating 0.1 / 0.3 every 100,000
events, so every detector has drifts to find and resets to do). driftloop's detectors are fed
with ``update_many`` in batches of 1,000; River's one value at a time (its only API). Each
pair runs with the same algorithm settings (River's defaults, two-sided where River is), so
the detections can be compared as well (``same`` column); driftloop's calibrated defaults are
timed too. River's KSWIN runs at ~4k updates/s, so it (and only it) is timed on the first
20,000 events. One run each; numbers vary with the machine's load.

Then, in the same run, the time of one full 20-feature window test beside Evidently's
``DataDriftPreset`` report and a scipy KS loop (``bench/window_tests.py``; ``--no-window`` skips
it, ``--no-evidently`` skips Evidently).

Run: ``python bench/detectors.py [--batch 1000]`` (about two minutes).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from river import drift as rdrift

from detectors.concept import make_detector

N, BATCH = 1_000_000, 1000

PAIRS = {
    "adwin": ({"delta": 0.002, "mode": "both"}, rdrift.ADWIN, N),
    "ddm": ({"warm_start": 30, "warning_threshold": 2.0, "drift_threshold": 3.0}, rdrift.binary.DDM, N),
    "eddm": ({"warm_start": 30, "alpha": 0.95, "beta": 0.9}, rdrift.binary.EDDM, N),
    "hddm_a": ({"drift_confidence": 0.001, "warning_confidence": 0.005}, rdrift.binary.HDDMA, N),
    "hddm_w": ({"drift_confidence": 0.001, "warning_confidence": 0.005}, rdrift.binary.HDDMW, N),
    "page_hinkley": (
        {"threshold": 50.0, "delta": 0.005, "alpha": 1 - 1e-4, "mode": "both", "min_n": 30, "standardize": False},
        rdrift.PageHinkley,
        N,
    ),
    "kswin": (
        {"alpha": 0.005, "window_size": 100, "stat_size": 30, "seed": 42, "mode": "both"},
        lambda: rdrift.KSWIN(seed=42),
        20_000,
    ),
}


def stream() -> np.ndarray:
    rng = np.random.default_rng(2024)
    p = np.repeat(np.tile([0.1, 0.3], 5), N // 10)
    return (rng.random(N) < p).astype(np.float64)


def run_ours(name: str, params: dict, x: np.ndarray, batch: int = BATCH) -> tuple[float, list[int]]:
    det = make_detector(name, **params)
    hits: list[int] = []
    t = time.perf_counter()
    for k in range(0, len(x), batch):
        h = det.update_many(x[k : k + batch])
        if len(h):
            hits.extend((k + h).tolist())
    return len(x) / (time.perf_counter() - t), hits


def run_river(factory, x: np.ndarray) -> tuple[float, list[int]]:
    det = factory()
    values = x.tolist()
    hits = []
    t = time.perf_counter()
    for i, v in enumerate(values):
        det.update(v)
        if det.drift_detected:
            hits.append(i)
    return len(values) / (time.perf_counter() - t), hits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=BATCH,
                    help="values per update_many call (the monitor feeds up to ingest.max_poll_records = 5000)")
    ap.add_argument("--no-window", action="store_true", help="skip the 20-feature window test")
    ap.add_argument("--no-evidently", action="store_true", help="window test without Evidently")
    args = ap.parse_args()
    batch = args.batch
    x = stream()
    head = f"{'detector':<13} {'events':>9} {'River/s':>10} {'ours/s':>11} {'ratio':>7} {'same':>5} {'ours default/s':>15} {'ratio':>7}"
    print(head)
    print("-" * len(head))
    t0 = time.perf_counter()
    for name, (params, factory, n) in PAIRS.items():
        xs = x[:n]
        river_rate, river_hits = run_river(factory, xs)
        ours_rate, ours_hits = run_ours(name, params, xs, batch)
        dflt_n = min(n, 100_000) if name == "kswin" else n
        dflt_rate, _ = run_ours(name, {}, x[:dflt_n], batch)
        print(
            f"{name:<13} {n:>9,} {river_rate:>10,.0f} {ours_rate:>11,.0f} {ours_rate / river_rate:>6.1f}x "
            f"{'yes' if ours_hits == river_hits else 'NO':>5} {dflt_rate:>15,.0f} {dflt_rate / river_rate:>6.1f}x",
            flush=True,
        )
    print(f"# total {time.perf_counter() - t0:.0f}s; batches of {batch}; 'same' = identical detection positions")
    if not args.no_window:
        print()
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import window_tests

        window_tests.main(["--no-evidently"] if args.no_evidently else [])


if __name__ == "__main__":
    main()
