"""Time of one full 20-feature window test: driftloop beside Evidently and a scipy loop.

The data: 20 continuous features (normal, log-normal, gamma, uniform, Student t; four of them
shifted), 10,000 reference rows and 10,000 current rows, seeded. Three contenders:

* driftloop: ``detectors.univariate_drift.UnivariateDrift.update`` — the whole decision for the window:
  KS (``ks_method="auto"``, i.e. scipy's default: exact at these sizes, like Evidently's),
  normalised Wasserstein, PSI, Jensen–Shannon and a missing-rate test per feature, Holm
  across the features, calibrated thresholds, alert lifecycle and the detections with their
  summaries. Fitting the reference (sorting it, bins, calibration) happens once per
  reference and is timed apart. The headline is the best of a few calls on fresh copies of
  the detector with the statistic caches cleared (a running monitor; the best run, as timeit
  reports, since the machine is shared); their median and the first call of the process,
  which pays Python's and numpy's first-use costs, are printed too.
* Evidently 0.7's ``Report([DataDriftPreset(num_method="ks")])`` (KS p-values per column, so
  they can be compared) and its default preset (at 10,000 rows it picks Wasserstein), one run
  each, in their own virtualenv (``bench/.venv-evidently``: Evidently 0.7 does not import
  with pandas 3), created on first use with ``python3 -m venv`` and pip.
* ``scipy.stats.ks_2samp`` in a Python loop over the features (scipy's default method).

KS p-values must be identical: the script prints the largest absolute difference.

Run: ``python bench/window_tests.py`` (``--no-evidently`` to skip it).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scipy import stats

from detectors import two_sample as uv
from detectors.base import Window
from detectors.reference import Reference
from detectors.univariate_drift import UnivariateDrift

VENV = ROOT / "bench" / ".venv-evidently"
EVIDENTLY_RUNNER = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd
t_import = time.perf_counter()
from evidently import Report
from evidently.presets import DataDriftPreset
t_import = time.perf_counter() - t_import
data = np.load(sys.argv[1])
names = [str(n) for n in data["names"]]
ref = pd.DataFrame(data["ref"].T, columns=names)
cur = pd.DataFrame(data["cur"].T, columns=names)
t0 = time.perf_counter()
snap = Report([DataDriftPreset(num_method="ks")]).run(cur, ref)
t_ks = time.perf_counter() - t0
out = snap.dict()
pvalues = {m["config"]["column"]: m["value"] for m in out["metrics"] if m["config"].get("type", "").endswith("ValueDrift")}
t0 = time.perf_counter()
Report([DataDriftPreset()]).run(cur, ref).dict()
t_default = time.perf_counter() - t0
import evidently
print(json.dumps({"version": evidently.__version__, "seconds_ks": t_ks, "seconds_default": t_default,
                  "seconds_import": t_import, "pvalues": pvalues}))
"""


def make_data(rows: int, features: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gens = [
        lambda n, s: rng.normal(s, 1.0, n),
        lambda n, s: rng.lognormal(3.0 + s * 0.5, 0.5, n),
        lambda n, s: rng.gamma(2.0, 2.0, n) + s * 2.8,
        lambda n, s: rng.uniform(0 + s, 10 + s, n),
        lambda n, s: rng.standard_t(5, n) + s * 1.3,
    ]
    shifts = {3: 0.1, 8: 0.25, 13: 0.05, 18: 0.5}  # in standard deviations (roughly)
    names = [f"f{i:02d}" for i in range(features)]
    ref = np.stack([gens[i % 5](rows, 0.0) for i in range(features)])
    cur = np.stack([gens[i % 5](rows, shifts.get(i, 0.0)) for i in range(features)])
    return names, ref, cur


def ensure_evidently() -> Path | None:
    py = VENV / "bin" / "python"
    if not py.exists():
        print(f"# creating {VENV.relative_to(ROOT)} (evidently 0.7, pandas<3) ...", flush=True)
        subprocess.run(["python3", "-m", "venv", str(VENV)], check=True)
        r = subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "evidently==0.7.*", "pandas<3"])
        if r.returncode != 0:
            return None
    check = subprocess.run([str(py), "-c", "import evidently"], capture_output=True)
    return py if check.returncode == 0 else None


def run_evidently(py: Path, names: list[str], ref: np.ndarray, cur: np.ndarray) -> dict | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.npz")
        np.savez(path, names=np.array(names), ref=ref, cur=cur)
        r = subprocess.run([str(py), "-c", EVIDENTLY_RUNNER, path], capture_output=True, text=True)
    if r.returncode != 0:
        print("# Evidently failed:\n" + r.stderr[-2000:])
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-evidently", action="store_true")
    args = ap.parse_args(argv)
    names, ref, cur = make_data(args.rows, args.features, args.seed)

    # driftloop: fit once per reference, then the window test
    t0 = time.perf_counter()
    reference = Reference(dict(zip(names, ref)), {n: "numeric" for n in names}, task="regression")
    det = UnivariateDrift(reference, ks_method="auto", calibration_n=args.rows)
    t_fit = time.perf_counter() - t0
    columns = dict(zip(names, cur))
    blob = det.snapshot()
    t0 = time.perf_counter()
    detections = det.update(Window(0, 1, args.rows), columns)
    t_first = time.perf_counter() - t0  # includes the process's first-use costs
    times = []
    for _ in range(args.repeats):
        uv._quantile_grid.cache_clear()  # no help from earlier windows of the same size
        uv._kstwo_sf.cache_clear()
        fresh = UnivariateDrift.restore(blob)
        t0 = time.perf_counter()
        fresh.update(Window(0, 1, args.rows), columns)
        times.append(time.perf_counter() - t0)
    t_window = float(np.min(times))  # timeit's convention: the least disturbed run
    t_median = float(np.median(times))
    last = det.last()
    ours_p = np.array([last[n]["p_value"] for n in names])

    # scipy, feature by feature (scipy's default method: exact at these sizes)
    t0 = time.perf_counter()
    scipy_res = [stats.ks_2samp(ref[i], cur[i]) for i in range(len(names))]
    t_scipy = time.perf_counter() - t0
    scipy_p = np.array([r.pvalue for r in scipy_res])

    evid = None
    if not args.no_evidently:
        py = ensure_evidently()
        if py is None:
            print("# Evidently could not be installed or imported here; comparing with scipy only")
        else:
            evid = run_evidently(py, names, ref, cur)

    print(f"# {args.features} numeric features, {args.rows:,} reference rows vs {args.rows:,} current rows, "
          f"seed {args.seed}; one machine, shared (read ratios)")
    print(f"{'contender':58s} {'seconds':>9s} {'vs driftloop':>13s}")
    print("-" * 82)
    rows = [(f"driftloop UnivariateDrift.update (best of {args.repeats})", t_window),
            (f"driftloop UnivariateDrift.update (median of {args.repeats})", t_median),
            ("driftloop UnivariateDrift.update, first call of the process", t_first),
            ("scipy.stats.ks_2samp loop (KS only)", t_scipy)]
    if evid:
        rows += [(f"Evidently {evid['version']} DataDriftPreset(num_method='ks')", evid["seconds_ks"]),
                 (f"Evidently {evid['version']} DataDriftPreset() (default: Wasserstein)", evid["seconds_default"])]
    for label, t in rows:
        print(f"{label:58s} {t:9.4f} {t / t_window:12.1f}x")
    print(f"{'(driftloop reference fit: sort, bins, 50-draw calibration; once per reference)':58s} {t_fit:9.4f}")
    print()
    print(f"max |KS p driftloop - scipy.ks_2samp|      = {np.max(np.abs(ours_p - scipy_p)):.3g}")
    if evid:
        ev_p = np.array([evid["pvalues"][n] for n in names])
        print(f"max |KS p driftloop - Evidently|           = {np.max(np.abs(ours_p - ev_p)):.3g}")
        print(f"speed-up over Evidently's KS report (one run each) = {evid['seconds_ks'] / t_window:.0f}x "
              f"(first call of the process: {evid['seconds_ks'] / t_first:.0f}x; "
              f"counting the reference fit too: {evid['seconds_ks'] / (t_fit + t_window):.0f}x)")
    print(f"speed-up over the scipy KS loop                    = {t_scipy / t_window:.1f}x")
    print()
    print("drifting features (driftloop decision):",
          ", ".join(f"{d.feature} ({d.detector} {d.statistic:.2f} > {d.threshold:.2f})" for d in detections) or "none")
    raw_sig = [n for n, p in zip(names, scipy_p) if p < 0.05]
    print("KS p < 0.05 alone (Evidently's KS rule):", ", ".join(raw_sig) or "none")


if __name__ == "__main__":
    main()
