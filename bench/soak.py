"""Sustained load: the full monitor (all default detectors, labels joined) at 80% of its maximum.

1. Data: Agrawal rows (concept 0, no drift), a HistGradientBoosting champion, its 5,000-row
   reference sample; every prediction event carries 9 features and class scores, and every
   prediction gets its label ~2 s later (a stationary stream: alerts here are false alarms).
2. Maximum: a backlog of predictions + labels is published first, then the monitor (the same
   :class:`driftloop.app.service.MonitorService` that ``driftloop monitor`` runs, drift analysis,
   alerts and retraining policy included) drains it; messages/s = the maximum ingest rate.
3. Soak: a producer process publishes at ``--load`` (80%) of that rate for ``--minutes`` (10)
   while this process drives the monitor. Every ``--sample-s`` seconds it prints messages/s,
   consumer lag, p50/p99 batch latency and RSS; at the end: lag bound, RSS growth after warm-up
   (target: within 10%), errors logged, and exact counts (every message accepted once).

Usage: ``python bench/soak.py [--minutes 10] [--load 0.8] [--backlog 300000]`` (broker on
127.0.0.1:9092, ``scripts/kafka.sh start``).
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import orjson
import yaml

MODEL = "soak"
LABEL_DELAY_S = 2.0


# -- the producer process ------------------------------------------------------------------------
def produce(args: argparse.Namespace) -> None:
    """Publish ``rate`` messages/s (half predictions, half their labels) for ``seconds``."""
    from kafka import KafkaProducer

    pool = [line for line in Path(args.pool).read_bytes().splitlines() if line]
    labels = [int(x) for x in Path(args.pool + ".labels").read_text().split()]
    prod = KafkaProducer(bootstrap_servers=[args.bootstrap], acks=1, linger_ms=20, batch_size=256 * 1024)
    per_tick = args.rate / 2 * 0.1          # predictions per 100 ms (each brings one label)
    start = time.monotonic()
    sent = 0
    pending: deque[tuple[float, int]] = deque()   # (due, i): labels waiting for their delay
    carry = 0.0
    tick = 0
    while time.monotonic() - start < args.seconds:
        tick += 1
        carry += per_tick
        k, carry = int(carry), carry - int(carry)
        now_ms = int(time.time() * 1000)
        for _ in range(k):
            i = args.first + sent
            body = pool[i % len(pool)]
            prod.send(args.predictions, key=MODEL.encode(),
                      value=b'{"event_id":"s%d","ts":%d,' % (i, now_ms) + body[1:])
            pending.append((time.monotonic() + LABEL_DELAY_S, i))
            sent += 1
        due = time.monotonic()
        while pending and pending[0][0] <= due:
            _, i = pending.popleft()
            prod.send(args.labels, key=MODEL.encode(),
                      value=b'{"event_id":"s%d","model":"%s","ts":%d,"label":%d}'
                      % (i, MODEL.encode(), now_ms, labels[i % len(labels)]))
        sleep = start + tick * 0.1 - time.monotonic()
        if sleep > 0:
            time.sleep(sleep)
    for _, i in pending:                    # the last labels, so that every prediction joins
        prod.send(args.labels, key=MODEL.encode(),
                  value=b'{"event_id":"s%d","model":"%s","ts":%d,"label":%d}'
                  % (i, MODEL.encode(), int(time.time() * 1000), labels[i % len(labels)]))
    prod.flush()
    prod.close()
    print(sent, flush=True)


# -- set-up ----------------------------------------------------------------------------------------
def build(workdir: Path, bootstrap: str, pool_size: int) -> tuple[dict, Path]:
    """Champion, reference CSV, config and a pool of prediction bodies (without id and ts)."""
    from driftloop.app.demo_data import FEATURES, agrawal_frame, reference_frame, train_model

    X, y = agrawal_frame(8_000 + 5_000, concept=0, seed=7)
    model = train_model(X.iloc[:8_000], y[:8_000])
    reference_frame(model, X.iloc[8_000:].reset_index(drop=True), y[8_000:]).to_csv(workdir / "reference.csv",
                                                                                     index=False)
    Xs, ys = agrawal_frame(pool_size, concept=0, seed=11)
    proba = model.predict_proba(Xs)
    pred = proba.argmax(axis=1)
    lines = []
    for row, p, pr in zip(Xs.to_dict("records"), pred, proba):
        body = {"model": MODEL, "features": row, "prediction": int(p),
                "scores": {"0": round(float(pr[0]), 4), "1": round(float(pr[1]), 4)}, "model_version": "1"}
        lines.append(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY))
    pool = workdir / "pool.jsonl"
    pool.write_bytes(b"\n".join(lines) + b"\n")
    Path(str(pool) + ".labels").write_text(" ".join(str(int(v)) for v in ys))
    tag = uuid.uuid4().hex[:6]
    cfg = {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": f"soak-{tag}",
                  "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
        "topics": {name: f"soak-{tag}.{name}" for name in ("predictions", "labels", "alerts", "retrain", "models",
                                                            "dlq")} | {"partitions": 3},
        "store": {"url": f"sqlite:///{workdir}/soak.db"},
        "api": {"enabled": False},
        "models": {MODEL: {"task": "classification", "features": dict(FEATURES), "reference": "reference.csv"}},
    }
    path = workdir / "soak.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return cfg, pool


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def monitor_rss_mb(svc) -> float:
    """This process's RSS, plus its judging child's (``analysis.mode: apart``, the default)."""
    child = svc.judges.process.pid if svc.judges is not None and svc.judges.alive else None
    return rss_mb() + (rss_mb(child) if child else 0.0)


class ErrorCount(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.n = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.n += 1
        if len(self.first) < 5:
            self.first.append(self.format(record))


def start_producer(args: argparse.Namespace, cfg, pool: Path, rate: float, seconds: float,
                   first: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--produce", "--bootstrap", args.bootstrap, "--pool", str(pool),
         "--predictions", cfg.topics.predictions, "--labels", cfg.topics.labels, "--rate", str(rate),
         "--seconds", str(seconds), "--first", str(first)], stdout=subprocess.PIPE, text=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", default=os.environ.get("DRIFTLOOP_TEST_BOOTSTRAP", "127.0.0.1:9092"))
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--load", type=float, default=0.8, help="fraction of the measured maximum")
    ap.add_argument("--backlog", type=int, default=300_000,
                    help="predictions (+ as many labels) for the maximum (40,000 drained in seconds, while the "
                         "detectors' windows close in bursts: it overstated what the monitor sustains)")
    ap.add_argument("--sample-s", type=float, default=30.0)
    ap.add_argument("--warmup-s", type=float, default=120.0, help="RSS growth is judged after this")
    ap.add_argument("--inline", action="store_true", help="analysis.mode inline: this process judges (the "
                    "default, apart: a child judges; RSS: both; the maximum: until the last event is judged)")
    # producer mode (internal)
    ap.add_argument("--produce", action="store_true", help=argparse.SUPPRESS)
    for name in ("pool", "predictions", "labels"):
        ap.add_argument(f"--{name}", help=argparse.SUPPRESS)
    ap.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.produce:
        produce(args)
        return

    from driftloop.app.service import MonitorService
    from driftloop.app.stats import collect_stats
    from driftloop.core.config import load_config
    from driftloop.core.gctune import settle_heap
    from driftloop.kafka.topics import create_topics

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kafka-python 3.x warns when one of its I/O tasks ran > 0.1 s (big fetch responses on a busy
    # 2-core machine); that is timing noise here, not an error of the monitor
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
    errors = ErrorCount()
    logging.getLogger().addHandler(errors)
    workdir = Path(tempfile.mkdtemp(prefix="driftloop-soak-"))
    t_build = time.perf_counter()
    _data, pool = build(workdir, args.bootstrap, pool_size=20_000)
    cfg = load_config(workdir / "soak.yaml", environ={"DRIFTLOOP__ANALYSIS__MODE": "inline"} if args.inline else {})
    create_topics(cfg)
    print(f"data, champion and reference built in {time.perf_counter() - t_build:.0f}s; work folder {workdir}")

    # 1. the maximum: drain a backlog
    backlog = args.backlog
    fill = subprocess.run(
        [sys.executable, "-c", _BACKLOG, args.bootstrap, str(pool), cfg.topics.predictions, cfg.topics.labels,
         str(backlog)], check=True, capture_output=True, text=True)
    print(fill.stdout.strip())
    svc = MonitorService(cfg)
    settle_heap(cfg.ingest.gc_young_threshold)   # as `driftloop monitor` does once its service is built
    mon = svc.monitor
    if svc.judges is not None:
        svc.judges.start()     # alerts, retraining policy and the detectors run there
    else:
        svc.alerts.start()
    mon.start()
    t0 = None
    while mon.stats.records < 2 * backlog or (svc.judges is not None and svc._backlog()):
        n = mon.poll_once()
        if n and t0 is None:
            t0 = time.perf_counter() - mon.stats.last_batch_ms / 1000
    max_rate = 2 * backlog / (time.perf_counter() - t0)
    print(f"maximum: {max_rate:,.0f} messages/s ({max_rate / 2:,.0f} predictions/s + as many labels), "
          f"all default detectors")

    # 2. the soak
    rate = args.load * max_rate
    seconds = args.minutes * 60
    print(f"soak: {rate:,.0f} messages/s ({args.load:.0%} of the maximum) for {args.minutes:g} min\n")
    print(f"{'t s':>6}{'msg/s':>10}{'lag':>9}{'p50 ms':>9}{'p99 ms':>9}{'RSS MB':>9}{'errors':>8}")
    prod = start_producer(args, cfg, pool, rate=rate, seconds=seconds, first=backlog)
    start = time.monotonic()
    lat: list[float] = []
    samples: list[tuple[float, float, int, float]] = []
    next_sample = start + args.sample_s
    last_records = mon.stats.records
    max_lag = 0
    while prod.poll() is None:
        n = mon.poll_once()
        if n:
            lat.append(mon.stats.last_batch_ms)
        max_lag = max(max_lag, sum(mon.lag.values()))
        now = time.monotonic()
        if now >= next_sample:
            window = np.asarray(lat) if lat else np.zeros(1)
            rec = mon.stats.records
            rate_now = (rec - last_records) / args.sample_s
            lag = sum(mon.lag.values())
            samples.append((now - start, rate_now, lag, monitor_rss_mb(svc)))
            print(f"{now - start:>6.0f}{rate_now:>10,.0f}{lag:>9,}{np.percentile(window, 50):>9.0f}"
                  f"{np.percentile(window, 99):>9.0f}{samples[-1][3]:>9.0f}{errors.n:>8}", flush=True)
            last_records, lat, next_sample = rec, [], next_sample + args.sample_s
    produced = int(prod.stdout.read().strip() or 0)
    # drain what is left, then count
    deadline = time.monotonic() + 60
    expected = backlog + produced
    while time.monotonic() < deadline:
        mon.poll_once()
        totals = collect_stats(cfg, svc.store)["totals"]
        if totals["joined"] >= expected and not (svc.judges is not None and svc._backlog()):
            break
    mon.close()
    if svc.judges is not None:
        svc.judges.stop()
    else:
        svc.alerts.stop()
    totals = collect_stats(cfg, svc.store)["totals"]
    after = [s for s in samples if s[0] >= args.warmup_s] or samples
    rss = [s[3] for s in after]
    growth = (max(rss) - min(rss)) / min(rss) if rss else float("nan")
    print()
    print(f"published {expected:,} predictions + as many labels; stored: predictions {totals['predictions']:,}, "
          f"labels {totals['labels']:,}, joined {totals['joined']:,}, invalid {totals['invalid']}, "
          f"duplicates {totals['duplicates']}")
    print(f"exact: {totals['predictions'] == totals['labels'] == totals['joined'] == expected}")
    print(f"max lag during the soak: {max_lag:,} messages ({max_lag / rate:.1f} s of input)")
    print(f"RSS after {args.warmup_s:.0f}s warm-up: {min(rss):.0f}-{max(rss):.0f} MB, spread {growth:.1%} "
          f"(target <= 10%)")
    print(f"errors logged: {errors.n}" + "".join(f"\n  {e}" for e in errors.first))


# publishes the backlog with kafka-python in a child process (keeps this process's RSS clean)
_BACKLOG = r"""
import sys, time
from pathlib import Path
from kafka import KafkaProducer
bootstrap, pool, ptopic, ltopic, n = sys.argv[1:6]
n = int(n)
bodies = [l for l in Path(pool).read_bytes().splitlines() if l]
labels = Path(pool + ".labels").read_text().split()
prod = KafkaProducer(bootstrap_servers=[bootstrap], acks=1, linger_ms=50, batch_size=512 * 1024)
now = int(time.time() * 1000)
for i in range(n):
    prod.send(ptopic, key=b"soak", value=b'{"event_id":"s%d","ts":%d,' % (i, now) + bodies[i % len(bodies)][1:])
for i in range(n):
    prod.send(ltopic, key=b"soak", value=b'{"event_id":"s%d","model":"soak","ts":%d,"label":%s}'
              % (i, now, labels[i % len(labels)].encode()))
prod.flush()
print(f"backlog: {n:,} predictions + {n:,} labels published")
"""


if __name__ == "__main__":
    main()
