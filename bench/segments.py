"""False alarms with and without segments on a stationary stream (issue 18).

Issue 18's figure: "a stationary stream with 5 segments x 20 features over 1,000,000 events:
false alarms no more than without segments". One binary classifier with scores: 20 numeric
features (normal, skewed, discrete, one with 5% missing values) and a categorical ``country`` with
5 values at shares .30/.25/.20/.15/.10 (some features and the score depend on the country, so each
segment's reference differs from all traffic's); the model's accuracy is about 0.9 and its scores
are calibrated (the label is drawn from the score). The reference is 20,000 rows of that
generator; the stream is 1,000,000 more rows of it (another seed), so every firing detection is a
false alarm. Every prediction is also labelled at once: the stream is fed in batches of 5,000 to
``ModelMonitor.update_predictions`` and ``update_labelled`` (200 data windows and 200 labelled
windows at the default window size).

The same stream (same seed) goes through three monitors with the default detectors:

* ``no segments``: all traffic only;
* ``segments joint``: ``segments: [country]``, the default ``segment_family: joint`` (all traffic
  and every segment judged with a window in one multiple-testing family);
* ``segments separate``: ``segment_family: separate`` (each segment its own family, what slicing
  without a shared budget does).

All three at the default ``expected_run_time`` (1000 windows between false alarms, alpha 0.001
per window family) and at a looser one (20 by default, alpha 0.05), where false alarms are
frequent enough to count. Segments are judged on their rows of the judged windows, gathered
until ``segment_min_window`` (1000): with windows of 5,000 the 10% and 15% countries are judged
every second window.

Prints one side-by-side table per expected run time: firing detections (alert openings and
escalations; an open alert does not fire again until it has resolved) per kind, on all traffic
and on segments; the windows (batches of 5,000) with at least one; the segment judgements; and
seconds (building the monitor from the reference, then the stream). Below each table, every
segment alarm (its effect against its threshold, and its p-value adjusted in its family, the one
compared with alpha, and raw), and the segment alarms per country. Read the "total" rows: issue
18's target is ``segments joint`` <= ``no segments``. Concept drift, multivariate drift and data quality run on
all traffic only, so their rows are identical in the three columns (a check that the stream is
the same).

Usage: ``python bench/segments.py [--events 1000000] [--ert 1000,20] [--no-multivariate]``
(``--events 100000`` for a quick run; no broker needed). Seconds are one run each on a shared
machine: compare the columns of one run, not runs of different days.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.base import KINDS
from detectors.batch import LabelledBatch, PredictionBatch
from detectors.model_monitor import ModelMonitor

COUNTRIES = ("DE", "FR", "US", "IT", "BR")
SHARES = (0.30, 0.25, 0.20, 0.15, 0.10)
NUMERIC = 20
TYPES = {f"f{i:02d}": "numeric" for i in range(NUMERIC)} | {"country": "categorical"}
CLASSES = ["0", "1"]
# per country: a shift of f02's mean and of the model's log-odds (segments differ from all traffic)
F02_SHIFT = {"DE": 0.0, "FR": 0.4, "US": -0.3, "IT": 0.2, "BR": -0.5}
LOGIT_SHIFT = {"DE": 0.0, "FR": 0.5, "US": -0.5, "IT": 0.3, "BR": -0.3}
# the kinds a ModelMonitor emits (stale_stream and detector_failure come from the service), always shown
SHOWN = ("data_drift", "prediction_drift", "performance", "concept_drift", "multivariate_drift", "data_quality")
CONFIGS = (("no segments", {}),
           ("segments joint", {"segments": ["country"]}),
           ("segments separate", {"segments": ["country"], "segment_family": "separate"}))


def draw(rng: np.random.Generator, n: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """``n`` rows of the generator: features (``country`` an object array), predictions and labels
    (object arrays of ``"0"``/``"1"``) and the ``(n, 2)`` scores, rounded to 4 decimals as a
    service would send them."""
    country = rng.choice(np.array(COUNTRIES, dtype=object), size=n, p=SHARES)
    x = rng.normal(size=(n, NUMERIC))
    x[:, 2] += np.vectorize(F02_SHIFT.__getitem__, otypes=[float])(country)
    x[:, 15] = np.exp(0.8 * x[:, 15])                            # log-normal
    x[:, 16] = rng.gamma(2.0, 1.5, n)                            # skewed, positive
    x[:, 17] = rng.poisson(3.0, n)                               # discrete: ties
    x[:, 18] = rng.exponential(1.0, n) + (country == "BR")       # a per-country shape
    x[:, 19] = np.where(rng.random(n) < 0.05, np.nan, x[:, 19])  # 5% missing
    x = np.round(x, 4)
    feats: dict[str, np.ndarray] = {f"f{i:02d}": x[:, i] for i in range(NUMERIC)}
    feats["country"] = country
    logit = 5.0 * (0.8 * x[:, 0] + 0.6 * x[:, 1]) + np.vectorize(LOGIT_SHIFT.__getitem__, otypes=[float])(country)
    p1 = np.round(1.0 / (1.0 + np.exp(-logit)), 4)
    pred = np.where(p1 > 0.5, "1", "0").astype(object)
    label = np.where(rng.random(n) < p1, "1", "0").astype(object)     # calibrated scores: accuracy ~0.9
    return feats, pred, label, np.column_stack([1.0 - p1, p1])


def reference(rows: int, seed: int) -> pd.DataFrame:
    """The champion's sample: ``rows`` of the generator with ``prediction``, ``label``, ``score_0/1``."""
    feats, pred, label, scores = draw(np.random.default_rng(seed), rows)
    ref = pd.DataFrame(feats)
    ref["prediction"], ref["label"] = pred, label
    ref["score_0"], ref["score_1"] = scores[:, 0], scores[:, 1]
    return ref


def run(ref: pd.DataFrame, settings: dict[str, Any], events: int, batch: int, seed: int) -> dict[str, Any]:
    """One monitor over the stream: its firing detections, segment judgements and seconds."""
    t = time.perf_counter()
    mon = ModelMonitor("bench", "classification", TYPES, ref, settings)
    build_s = time.perf_counter() - t
    rng = np.random.default_rng(seed)
    fired: list[tuple[int, Any]] = []
    stream_s = 0.0
    accuracy = [0, 0]
    for b, start in enumerate(range(0, events, batch)):
        n = min(batch, events - start)
        feats, pred, label, scores = draw(rng, n)
        accuracy[0] += int((pred == label).sum())
        accuracy[1] += n
        ts = np.arange(start, start + n, dtype=np.int64)
        t = time.perf_counter()
        out = mon.update_predictions(PredictionBatch(ts, feats, pred, scores, CLASSES))
        out += mon.update_labelled(LabelledBatch(ts, pred, label, scores, CLASSES, features=feats))
        stream_s += time.perf_counter() - t
        fired += [(b, d) for d in out if d.firing]
        for d in out:
            if d.firing:
                d.evidence["bench"] = _decision(mon, d)
    st = mon.status()
    judged = {"predictions": 0, "labelled": 0}
    for slots in (st.get("segments") or {}).values():
        for s in slots:
            for side in judged:
                judged[side] += s["judged"][side]
    return {"fired": fired, "build_s": build_s, "stream_s": stream_s, "judged": judged,
            "accuracy": accuracy[0] / max(accuracy[1], 1)}


def _decision(mon: ModelMonitor, d: Any) -> dict[str, Any]:
    """What a firing detection's decision rested on, read from its detector right after the
    window: the effect against its threshold and the p-value, adjusted (the one compared with
    alpha) and raw. A performance detection's ``p_value`` is the metric's raw p-value and its
    ``statistic``/``threshold`` the metric's value and the value it had to pass, so both are read
    from the detector's last judgement (a drift detection's ``p_value`` is already the adjusted one)."""
    slot = None
    if d.segment is not None and mon._segments is not None:
        (feature, label), = d.segment.items()
        slot = mon._segments._slots[feature][label]
    if d.kind == "performance":
        det = slot["perf"] if slot is not None else mon._perf
        j = det.last()["metrics"][d.detector] if det is not None else {}
        return {"effect": j.get("drop"), "threshold": j.get("threshold"),
                "p_adj": j.get("p_adjusted"), "p_raw": j.get("p_value")}
    if d.kind in ("data_drift", "prediction_drift"):
        which = "drift" if d.kind == "data_drift" else "pred_drift"
        det = slot[which] if slot is not None else (mon._data_drift if d.kind == "data_drift" else mon._pred_drift)
        key = f"{d.feature}:missing_rate" if d.detector == "missing_rate" else d.feature
        row = det.last().get(key, {}) if det is not None else {}
        return {"effect": d.statistic, "threshold": d.threshold, "p_adj": d.p_value, "p_raw": row.get("p_value")}
    return {"effect": d.statistic, "threshold": d.threshold, "p_adj": d.p_value, "p_raw": None}


def _p(v: float | None) -> str:
    return "-" if v is None else f"{v:.2g}"


def _counts(fired: list[tuple[int, Any]]) -> Counter:
    c: Counter = Counter()
    for _b, d in fired:
        scope = "all" if d.segment is None else "seg"
        c[(d.kind, scope)] += 1
        c[("total", scope)] += 1
    return c


def table(results: dict[str, dict[str, Any]], ert: float, args) -> None:
    names = list(results)
    counts = {k: _counts(r["fired"]) for k, r in results.items()}
    width = max(19, *(len(k) + 2 for k in names))
    kinds = [k for k in KINDS if k in SHOWN or any(c[(k, s)] for c in counts.values() for s in ("all", "seg"))]
    print()
    print(f"# expected_run_time {ert:g} (alpha {1 / ert:g} per window family); {args.events:,} events in batches of "
          f"{args.batch:,}, each labelled at once; {NUMERIC} numeric features + country (5 values, "
          f"{'/'.join(f'{s:.2f}' for s in SHARES)}); {args.reference_rows:,} reference rows; stream seed {args.seed}"
          + ("; multivariate OFF" if args.no_multivariate else "; default detectors (multivariate on)"))
    print(f"{'firing detections (openings + escalations)':<46}" + "".join(f"{k:>{width}}" for k in names))
    for kind in [*kinds, "total"]:
        for scope, what in (("all", "all traffic"), ("seg", "segments")):
            if scope == "seg" and kind not in ("data_drift", "prediction_drift", "performance", "total"):
                continue
            cells = [("-" if scope == "seg" and not results[k]["judged"]["predictions"] + results[k]["judged"]["labelled"]
                      else str(counts[k][(kind, scope)])) for k in names]
            print(f"{f'{kind}, {what}':<46}" + "".join(f"{c:>{width}}" for c in cells))
    print(f"{'total, all traffic + segments':<46}"
          + "".join(f"{counts[k][('total', 'all')] + counts[k][('total', 'seg')]:>{width}}" for k in names))
    print(f"{'windows (batches) with a firing detection':<46}"
          + "".join(f"{len({b for b, _d in results[k]['fired']}):>{width}}" for k in names))
    print(f"{'segment judgements (data / labelled)':<46}"
          + "".join(f"{'{predictions} / {labelled}'.format(**results[k]['judged']):>{width}}" for k in names))
    print(f"{'seconds: build (reference fit)':<46}" + "".join(f"{results[k]['build_s']:>{width}.1f}" for k in names))
    print(f"{'seconds: stream':<46}" + "".join(f"{results[k]['stream_s']:>{width}.1f}" for k in names))
    print(f"{'events/s (stream)':<46}"
          + "".join(f"{args.events / results[k]['stream_s']:>{width},.0f}" for k in names))
    print(f"(the stream's accuracy: {results[names[0]]['accuracy']:.3f})")
    for k in names:
        segs = [(b, d) for b, d in results[k]["fired"] if d.segment is not None]
        if not segs:
            continue
        per = Counter(next(iter(d.segment.values())) for _b, d in segs)
        print(f"  {k}: segment alarms per country: " + ", ".join(f"{c} {per.get(c, 0)}" for c in COUNTRIES))
        for b, d in segs:
            seg = ",".join(f"{f}={v}" for f, v in d.segment.items())
            e = d.evidence.get("bench", {})
            print(f"    window {b + 1:>4}  {seg:<12} {d.kind:<17} {d.detector:<14} {d.feature or '':<8} "
                  f"effect {e.get('effect', float('nan')):.4g} thr {e.get('threshold', float('nan')):.4g} "
                  f"p adj {_p(e.get('p_adj'))} raw {_p(e.get('p_raw'))}")
    alls = {k: Counter((d.kind, d.detector, d.feature) for _b, d in r["fired"] if d.segment is None)
            for k, r in results.items()}
    if any(alls.values()):
        print("  all-traffic alarms (kind, detector, feature: count per column):")
        for key in sorted(set().union(*alls.values()), key=lambda x: tuple(map(str, x))):
            print(f"    {key[0]:<17} {key[1]:<14} {key[2] or '':<8}" + "".join(f"{alls[k][key]:>6}" for k in names))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="stream length (default 1,000,000)")
    ap.add_argument("--batch", type=int, default=5000, help="events per update call (default 5,000)")
    ap.add_argument("--reference-rows", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1, help="the stream's seed (the reference's is seed + 1000)")
    ap.add_argument("--ert", default="1000,20", help="expected run times to run, comma-separated (default 1000,20)")
    ap.add_argument("--no-multivariate", action="store_true",
                    help="multivariate: false in every monitor (faster; on all traffic only either way)")
    args = ap.parse_args()
    ref = reference(args.reference_rows, args.seed + 1000)
    t0 = time.perf_counter()
    for ert in (float(v) for v in args.ert.split(",")):
        results = {}
        for name, extra in CONFIGS:
            settings = {"expected_run_time": ert, **extra}
            if args.no_multivariate:
                settings["multivariate"] = False
            results[name] = run(ref, settings, args.events, args.batch, args.seed)
            print(f"  ert {ert:g}, {name}: {results[name]['stream_s']:.1f}s, "
                  f"{sum(1 for _ in results[name]['fired'])} firing", flush=True)
        table(results, ert, args)
    print(f"\n# total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
