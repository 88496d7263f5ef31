"""``driftloop replay`` throughput: N prediction events x F numeric features, default detectors.

The issue-17 figure: 1,000,000 events x 20 features through :func:`driftloop.app.replay.replay`
(the live monitor's prepare + commit + detectors, without Kafka) with the default detectors of
a binary classifier with scores (univariate drift, PCA, the gated domain classifier, CBPE), on a
stationary stream. Prints events/s for the whole replay (the file's reading included) and, side
by side in the same run, with ``multivariate: false`` and with the detectors off (no reference):
what each part costs.

Usage: ``python bench/replay.py [--events 1000000] [--features 20]`` (no broker needed).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import orjson
import pandas as pd


def write_events(path: Path, n: int, features: int, seed: int = 1) -> None:
    """``n`` prediction events of model ``bench``, one JSON line each, written in chunks."""
    rng = np.random.default_rng(seed)
    t0 = int(time.time() * 1000) - 86_400_000
    with path.open("wb") as out:
        for start in range(0, n, 100_000):
            m = min(100_000, n - start)
            x = np.round(rng.normal(0, 1, (m, features)), 4)
            p1 = np.round(1 / (1 + np.exp(-x[:, 0])), 4)
            names = [f"f{j}" for j in range(features)]
            lines = [orjson.dumps({"event_id": f"e{start + i}", "model": "bench", "ts": t0 + start + i,
                                   "features": dict(zip(names, row)), "prediction": int(p > 0.5),
                                   "scores": {"0": 1 - p, "1": p}})
                     for i, (row, p) in enumerate(zip(x.tolist(), p1.tolist()))]
            out.write(b"\n".join(lines) + b"\n")


def reference(features: int, rows: int = 10_000, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (rows, features))
    p1 = 1 / (1 + np.exp(-x[:, 0]))
    df = pd.DataFrame(x, columns=[f"f{j}" for j in range(features)])
    return df.assign(label=(rng.random(rows) < p1).astype(int), prediction=(p1 > 0.5).astype(int),
                     score_0=1 - p1, score_1=p1)


def run(tmp: Path, events: Path, features: int, detectors: dict | None, label: str, n: int) -> float:
    from driftloop.app.replay import replay
    from driftloop.core.config import load_config_dict

    model: dict = {"task": "classification", "features": {f"f{j}": "numeric" for j in range(features)}}
    if detectors is not None:
        model |= {"reference": "ref.csv", "detectors": detectors}
    cfg = load_config_dict({"store": {"url": f"sqlite:///{tmp}/{label}.db"}, "models": {"bench": model}},
                           base_dir=str(tmp), environ={})
    t0 = time.perf_counter()
    out = replay(cfg, events, registry=False)
    secs = time.perf_counter() - t0
    fired = sum(1 for a in out["alerts"] if a.get("status") == "firing")
    print(f"  {label:<34}{n / secs:>12,.0f} events/s  ({secs:.1f} s; {fired} alerts fired)", flush=True)
    return n / secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=20)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="driftloop-replay-"))
    events = tmp / "predictions.jsonl"
    t0 = time.perf_counter()
    write_events(events, args.events, args.features)
    reference(args.features).to_csv(tmp / "ref.csv", index=False)
    print(f"{args.events:,} events x {args.features} numeric features written in {time.perf_counter() - t0:.0f} s "
          f"({events.stat().st_size / 1e6:,.0f} MB); stationary; work folder {tmp}")
    print("driftloop replay (prepare + commit + detectors, SQLite, batches of 5,000), one run each:")
    from driftloop.app.replay import replay  # noqa: F401 - imported before the heap settles, as the CLI does
    from driftloop.core.gctune import settle_heap

    settle_heap()   # the default ingest.gc_young_threshold
    run(tmp, events, args.features, {}, "default detectors", args.events)
    run(tmp, events, args.features, {"multivariate": False}, "without multivariate", args.events)
    run(tmp, events, args.features, None, "detectors off (no reference)", args.events)
    print("goal (issue 17): >= 100,000 events/s with the default detectors")


if __name__ == "__main__":
    main()
