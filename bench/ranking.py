"""Ranking models (issue 19): requests/s through ``driftloop monitor``, and the window metrics
beside Evidently 0.7's recsys metrics on the same data.

The data (seeded, numpy): a shop of 5,000 items (``i0`` .. ``i4999``) and the four shopper
segments of :mod:`driftloop.app.demo_shop` (its ``FEATURES``: ``user_segment``, ``device``,
``basket_value``), each with its own Zipf taste (s = 1) over its own permutation of the items.
The recommender serves each request a list of L distinct items (L = 10 or 100) drawn from a
pool of 1,000 lists per segment, each drawn by the segment's taste; a shopper engages with
nothing in 35% of the requests, else with 1 to 3 items, each picked in the list (70%; with a
position bias ``1 / rank``) or elsewhere by the segment's taste (so sometimes an item not shown).
Half the labels are graded (item -> relevance: 3.0 for a purchase, 1.0 for a click, and 0.0 for
an item seen and skipped in 10% of them), the others plain lists. The stream is stationary.

Part 1, throughput, per list length (``--lengths 10,100``), on the local broker, ``--repeat``
runs of each (3; interleaved: 10, 100, 10, 100, ...; medians printed):

* N requests (``--requests``, 100,000; ``--quick`` 10,000) as pre-encoded JSON arrays of 500
  events per message (the contract's bulk form, and the ``Publisher`` SDK's default
  ``batch_size``; ``--bulk``): a prediction per request and its label (30 s of event time
  later), chunk by chunk, on fresh topics of 3 partitions;
* ``driftloop monitor -c CONFIG`` as a subprocess (the command itself: ingestion, and with the
  default ``analysis.mode: apart`` its judging child process; SQLite store, the HTTP API on a
  free port), model ``task: ranking`` with ``detectors: {}`` (the default ranking detectors:
  windows of 5,000 requests, request-feature drift, item drift, label-free metrics, NDCG@10,
  precision@10, recall@10, MAP@10, MRR and hit rate@10 with 200-draw bootstrap CIs) on a
  reference of 10,000 requests of the same shop (its lists and engagement, as JSON lines). It is
  started on the empty topics; once its judging child has loaded the detectors and taken over
  the journal and its consumer has its partitions (``bench/ingest.py --full`` also starts its
  clock once the judging child has taken over), this process publishes the events (in a thread;
  0.3-1 s, beside the monitor), and the clock runs from the start of the publishing until every
  request is counted and joined and the analysis journal is empty (every window judged);
* the anchor, right after on the same topics: a plain kafka-python reader (every partition of
  both topics assigned, batches of 5,000) that ``json.loads`` every value, from its first batch
  until it has read every event. With 500 events a message its per-message cost is spread thin,
  so its ratio cannot be compared with ``bench/ingest.py``'s one event a message;
* the :class:`~detectors.ranking_monitor.RankingMonitor` alone, in this process, on the same
  requests in batches of 5,000 (``update_predictions``, then ``update_labelled`` with the
  labels), and a ``snapshot()`` after each batch (the judging child saves the state with each
  judged batch): the detectors' share of the monitor's time, per 100,000 requests.

Part 2, the metrics on one window (``--window`` requests, 5,000; ``--quick`` 1,000; k = 10),
for lists of 10 and of 100 items: ours (:func:`detectors.ranking_metrics.window_metrics`,
value and its 200-draw bootstrap interval, and :func:`~detectors.ranking_metrics.label_free_metrics`
against an :class:`~detectors.ranking_metrics.ItemReference` of 10,000 reference requests)
beside Evidently 0.7's ``NDCG``, ``PrecisionTopK``, ``RecallTopK``, ``MAP``, ``MRR``,
``HitRate``, ``PopularityBiasMetric`` (ARP, coverage, Gini) and ``Novelty``, one ``Report`` per
metric (and one with the six labelled metrics together), in Evidently's own virtualenv
(``bench/.venv-evidently``, made by ``bench/window_tests.py``'s ``ensure_evidently``: Evidently
0.7 does not import with pandas 3) in a subprocess that reads the window from a CSV file. The
window as Evidently wants it: one row per (request, item) with the request as user id, the
shown items ranked 1..L (``recommendations_type="rank"``) and their relevance as target (0 when
not engaged), and each engaged item that was not shown as an extra row ranked after the list;
the reference's engagement rows (user, item) as ``current_train_data`` for the popularity metrics.

Definitions that differ are said in the table's note, with ours restated in Evidently's terms
from the same per-request values (a row of its own), never hidden:

* Evidently's labelled metrics leave out users with no relevant item by default
  (``no_feedback_users=False``); ours count every request (a recommender whose users stop
  engaging gets worse). Both are printed: ours over the requests with a relevant item beside
  Evidently's default, and ours over all requests beside ``no_feedback_users=True``.
* precision@k: Evidently divides by ``min(rows of the user, k)``, ours by k; the same here, as
  every list has at least k items.
* map@k: Evidently divides by the user's relevant count ``|R|`` (shown or not), ours by
  ``min(k, |R|)`` (the usual AP@k: a request whose relevant items all fill the top k scores 1).
  They agree whenever ``|R| <= k``, so at k = 10 on this data (``|R| <= 3``); a map@2 row shows
  where they part.
* ARP (mean popularity), novelty, coverage and Gini: Evidently's popularity is the number of
  training users who engaged with an item (ours: the share of reference requests), items never
  engaged are dropped from ARP and novelty (ours: popularity 0, novelty at its floor), coverage
  is over the engaged items (ours: the reference's catalogue, shown or engaged), and Gini is over
  the recommended items only with ``n - 1`` in the denominator (ours: over the catalogue and the
  unseen items, never-recommended ones counting 0, ``n`` in the denominator).

Evidently 0.7.23's API gives each top-k metric as a table of (rank, value) for k = 1..10; the
ranks of NDCG's and MRR's tables are one too high (their legacy series are already 1-based and
the table adds 1 again), so the runner reads each table at its k-th row, as the legacy result's
``current_value`` does.

Run (a full run takes about 3.5 minutes on the 2-core machine; ``--quick`` about 1):
``flock /work/runs/bench.lock .venv/bin/python bench/ranking.py [--quick] [--no-kafka]
[--no-evidently]``; the broker is the local one (``scripts/kafka.sh start``; ``--bootstrap``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import orjson
import pandas as pd

from detectors.batch import LabelledBatch, PredictionBatch
from detectors.ranking_lists import encode_ranking, encode_relevance
from detectors.ranking_metrics import ItemReference, label_free_metrics, request_metrics, window_metrics
from driftloop.app.demo_shop import FEATURES, SEGMENTS

sys.path.insert(0, str(ROOT / "bench"))
from window_tests import ensure_evidently  # the same venv as the window tests

MODEL = "shop"
SHARES = (0.4, 0.25, 0.2, 0.15)   # the segments' shares, as in demo_shop
DEVICES, DEVICE_P = ("ios", "android", "web"), (0.4, 0.35, 0.25)
POOL = 1000                        # lists per segment the recommender picks from
K = 10
METRICS = (f"ndcg@{K}", f"precision@{K}", f"recall@{K}", f"map@{K}", f"mrr@{K}", f"hit_rate@{K}")
REFERENCE_ROWS = 10_000
BATCH = 5000                       # the monitor's default ingest.max_poll_records, and the in-process batches


# ----------------------------------------------------------------------------- the shop
class Shop:
    """The recommender and its shoppers (module docstring): fixed for a seed and a list length."""

    def __init__(self, items: int, length: int, seed: int = 2026) -> None:
        rng = np.random.default_rng(seed)
        self.items, self.length = items, length
        self.ids = np.array([f"i{j}" for j in range(items)], dtype=object)
        w = 1.0 / np.arange(1, items + 1)
        self.taste_p = w / w.sum()
        # by_taste[s, r]: the item segment s likes r-th best
        self.by_taste = np.stack([self.ids[rng.permutation(items)] for _ in SEGMENTS])
        self.pool = np.stack([np.stack([self.by_taste[s, rng.choice(items, length, replace=False, p=self.taste_p)]
                                        for _ in range(POOL)]) for s in range(len(SEGMENTS))])
        bias = 1.0 / np.arange(1, length + 1)
        self.position_p = bias / bias.sum()

    def requests(self, n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, list[Any]]:
        """``n`` requests: their features, their lists (an (n, L) object array) and their labels
        (a list of item ids or item -> relevance each; ``[]``: nothing engaged)."""
        rng = np.random.default_rng(seed)
        seg = rng.choice(len(SEGMENTS), size=n, p=SHARES)
        X = pd.DataFrame({"user_segment": np.array(SEGMENTS, dtype=object)[seg],
                          "device": rng.choice(np.array(DEVICES, dtype=object), size=n, p=DEVICE_P),
                          "basket_value": np.round(rng.lognormal(3.5, 0.8, size=n), 2)})
        lists = self.pool[seg, rng.integers(0, POOL, size=n)]
        engaged = rng.random(n) >= 0.35
        count = np.minimum(rng.geometric(0.6, size=n), 3)
        in_list = rng.random((n, 3)) < 0.7
        pos = rng.choice(self.length, size=(n, 3), p=self.position_p)
        elsewhere = self.by_taste[seg[:, None], rng.choice(self.items, size=(n, 3), p=self.taste_p)]
        cand = np.where(in_list, lists[np.arange(n)[:, None], pos], elsewhere)
        graded = rng.random(n) < 0.5
        purchase = rng.random((n, 3)) < 0.2
        skipped = (rng.random(n) < 0.1) & graded
        skip_pos = rng.integers(0, self.length, size=n)
        labels: list[Any] = []
        for i in range(n):
            if not engaged[i]:
                labels.append([])
                continue
            picked = list(dict.fromkeys(cand[i, :count[i]].tolist()))
            if not graded[i]:
                labels.append(picked)
                continue
            label = {item: 3.0 if purchase[i, j] else 1.0 for j, item in enumerate(picked)}
            seen = lists[i, skip_pos[i]]
            if skipped[i] and seen not in label:
                label[seen] = 0.0      # seen and skipped: labelled, not relevant
            labels.append(label)
        return X, lists, labels


def encoded(lists: np.ndarray, labels: list[Any]) -> tuple[list[str], list[str]]:
    """The lists and labels as the pipeline carries them (:mod:`detectors.ranking_lists`)."""
    return [encode_ranking(row) for row in lists.tolist()], [encode_relevance(v) for v in labels]


def reference_frame(shop: Shop, seed: int) -> pd.DataFrame:
    """The champion's sample: 10,000 requests of the same shop, their lists and engagement."""
    X, lists, labels = shop.requests(REFERENCE_ROWS, seed)
    ref = X.copy()
    ref["prediction"] = lists.tolist()
    ref["label"] = labels
    return ref


# ----------------------------------------------------------------------------- part 1: throughput
def event_messages(X: pd.DataFrame, lists: np.ndarray, labels: list[Any], bulk: int
                   ) -> tuple[list[bytes], list[bytes]]:
    """The requests as prediction and label events, ``bulk`` events per message (JSON arrays)."""
    t0 = int(time.time() * 1000) - 3_600_000
    feats = X.to_dict("records")
    preds, labs = [], []
    for start in range(0, len(X), bulk):
        stop = min(start + bulk, len(X))
        preds.append(orjson.dumps([{"event_id": f"r{i}", "model": MODEL, "ts": t0 + 10 * i, "features": feats[i],
                                    "prediction": lists[i].tolist()} for i in range(start, stop)]))
        labs.append(orjson.dumps([{"event_id": f"r{i}", "model": MODEL, "ts": t0 + 10 * i + 30_000,
                                   "label": labels[i]} for i in range(start, stop)]))
    return preds, labs


def publish(bootstrap: str, pred_topic: str, label_topic: str, preds: list[bytes], labs: list[bytes]) -> float:
    """Seconds to publish the messages: each chunk's predictions, then the previous chunk's labels."""
    from kafka import KafkaProducer

    prod = KafkaProducer(bootstrap_servers=[bootstrap], acks=1, linger_ms=20, batch_size=1024 * 1024,
                         max_request_size=8 * 1024 * 1024)
    t = time.perf_counter()
    key = MODEL.encode()
    for i, value in enumerate(preds):
        prod.send(pred_topic, key=key, value=value, partition=i % 3)
        if i:
            prod.send(label_topic, key=key, value=labs[i - 1], partition=(i - 1) % 3)
    prod.send(label_topic, key=key, value=labs[-1], partition=(len(labs) - 1) % 3)
    prod.flush()
    prod.close()
    return time.perf_counter() - t


def raw_read(bootstrap: str, topics: list[str], events: int) -> float:
    """The anchor: seconds for a plain kafka-python reader to ``json.loads`` every value of the
    topics until ``events`` events are read, from its first batch."""
    from kafka import KafkaConsumer, TopicPartition

    cons = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False, max_poll_records=BATCH)
    tps = [TopicPartition(t, p) for t in topics for p in sorted(cons.partitions_for_topic(t))]
    cons.assign(tps)
    cons.seek_to_beginning(*tps)
    got, t0 = 0, None
    while got < events:
        for recs in cons.poll(timeout_ms=500, max_records=BATCH).values():
            if t0 is None:
                t0 = time.perf_counter()
            for r in recs:
                v = json.loads(r.value)
                got += len(v) if isinstance(v, list) else 1
    dt = time.perf_counter() - t0
    cons.close()
    return dt


def monitor_config(bootstrap: str, tmp: Path, length: int, rep: int) -> tuple[Path, Any]:
    import yaml

    from driftloop.core.config import load_config

    tag = uuid.uuid4().hex[:8]
    data = {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": f"benchrank-{tag}"},
        "topics": {name: f"benchrank{tag}.{name}" for name in ("predictions", "labels", "dlq", "alerts", "retrain",
                                                               "models")} | {"partitions": 3},
        "store": {"url": f"sqlite:///{tmp}/monitor-{length}-{rep}.db"},
        "api": {"port": 0},
        "models": {MODEL: {"task": "ranking", "features": dict(FEATURES), "reference": f"reference-{length}.jsonl",
                           "detectors": {}}},
    }
    path = tmp / f"monitor-{length}-{rep}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, load_config(path, environ={})


def _ready(store: Any, log_path: Path) -> bool:
    """The judging child has taken over the journal (its detectors loaded) and the consumer has
    its partitions."""
    import sqlalchemy as sa

    from driftloop.core.tables import analysis_judge

    if "resuming from stored offsets" not in log_path.read_text(errors="replace"):
        return False
    try:
        with store.read_engine.connect() as c:
            return c.execute(sa.select(sa.func.count()).select_from(analysis_judge)).scalar() > 0
    except Exception:   # noqa: BLE001 - the monitor may not have made the schema yet
        return False


def monitor_run(cfg_path: Path, cfg: Any, n: int, preds: list[bytes], labs: list[bytes], bootstrap: str,
                timeout_s: float = 900.0) -> dict[str, Any]:
    """``driftloop monitor`` in a subprocess: started on the empty topics, the events published
    once it is ready, timed from the start of the publishing (the monitor idle, waiting) until
    every request is counted, joined and judged."""
    from driftloop.alerts.cli import firing_counts
    from driftloop.app.stats import collect_stats
    from driftloop.core.store import Store
    from driftloop.monitoring.history import read_performance_history
    from driftloop.monitoring.journal import backlog

    log_path = cfg_path.with_suffix(".log")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "driftloop.app.cli", "monitor", "-c", str(cfg_path)],
                                cwd=cfg_path.parent, env=env, stdout=log, stderr=subprocess.STDOUT)
    store = None
    out: dict[str, Any] = {}
    try:
        t_start = time.perf_counter()
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"driftloop monitor exited with {proc.returncode}:\n"
                                 + log_path.read_text(errors="replace")[-3000:])
            if store is None and Path(cfg.store.url.removeprefix("sqlite:///")).exists():
                store = Store.from_config(cfg.store)
            if store is not None and _ready(store, log_path):
                break
            if time.perf_counter() - t_start > 300:
                raise SystemExit("driftloop monitor not ready in 300 s:\n" + log_path.read_text()[-3000:])
            time.sleep(0.2)
        out["ready_s"] = time.perf_counter() - t_start
        pub: dict[str, float] = {}
        thread = threading.Thread(target=lambda: pub.setdefault(
            "s", publish(bootstrap, cfg.topics.predictions, cfg.topics.labels, preds, labs)))
        t_pub = time.perf_counter()
        thread.start()
        t_first = t_counted = None
        while True:
            now = time.perf_counter()
            row = collect_stats(cfg, store)["models"][MODEL]
            if t_first is None and row["predictions"] + row["labels"] + row["invalid"] > 0:
                t_first = now
            if t_counted is None and row["predictions"] + row["invalid"] >= n and row["joined"] >= n - row["invalid"]:
                t_counted = now
            if t_counted is not None:
                with store.read_engine.connect() as c:
                    if backlog(c).entries == 0:
                        break
            if now - t_pub > timeout_s:
                raise SystemExit(f"not every request counted and judged in {timeout_s:.0f} s: {row}")
            if proc.poll() is not None:
                raise SystemExit(f"driftloop monitor exited with {proc.returncode}:\n"
                                 + log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.05)
        t_end = time.perf_counter()
        thread.join()
        stats = collect_stats(cfg, store, firing_alerts=firing_counts(store))["models"][MODEL]
        with store.read_engine.connect() as c:
            windows = [r for r in read_performance_history(c, MODEL, metrics=[f"ndcg@{K}"])
                       if r.get("source") == "realised"]
        out.update(seconds=t_end - t_pub, ingest_s=t_counted - t_pub, publish_s=pub.get("s", float("nan")),
                   first_count_s=t_first - t_pub, stats=stats, windows=len(windows),
                   ndcg=[round(float(r["value"]), 4) for r in windows if r.get("value") is not None])
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if store is not None:
            store.dispose()
    found = re.findall(r"monitor stopped after (\d+) batches, (\d+) records", log_path.read_text(errors="replace"))
    out["batches"] = int(found[-1][0]) if found else -1
    return out


def monitor_alone(ref: pd.DataFrame, X: pd.DataFrame, preds: list[str], labels: list[str]) -> dict[str, float]:
    """The RankingMonitor in this process on the same requests (batches of 5,000): seconds to
    build it on the reference, to take the predictions, the labels, and a snapshot per batch."""
    from detectors.ranking_monitor import RankingMonitor

    t = time.perf_counter()
    mon = RankingMonitor(MODEL, FEATURES, ref, {})
    build = time.perf_counter() - t
    n = len(preds)
    ts = np.arange(n, dtype=np.int64) + 1_700_000_000_000
    feats = {f: (X[f].to_numpy(dtype=np.float64) if kind == "numeric" else X[f].to_numpy(dtype=object))
             for f, kind in FEATURES.items()}
    pred_col, label_col = np.array(preds, dtype=object), np.array(labels, dtype=object)
    spent = {"predictions": 0.0, "labelled": 0.0, "snapshot": 0.0}
    detections = 0
    for s in range(0, n, BATCH):
        e = min(s + BATCH, n)
        t = time.perf_counter()
        detections += len(mon.update_predictions(PredictionBatch(
            ts=ts[s:e], features={f: v[s:e] for f, v in feats.items()}, prediction=pred_col[s:e])))
        spent["predictions"] += time.perf_counter() - t
        t = time.perf_counter()
        detections += len(mon.update_labelled(LabelledBatch(ts=ts[s:e], prediction=pred_col[s:e],
                                                            label=label_col[s:e])))
        spent["labelled"] += time.perf_counter() - t
        t = time.perf_counter()
        mon.snapshot()
        spent["snapshot"] += time.perf_counter() - t
    st = mon.status()
    return {"build": build, **spent, "detections": detections, "windows": st["windows_judged"]["labelled"],
            "ndcg": (st.get("performance", {}).get("last") or {}).get(f"ndcg@{K}", {}).get("value")}


@dataclass
class Stream:
    """One list length's requests, ready to publish and to feed the in-process monitor."""

    length: int
    X: pd.DataFrame
    preds: list[bytes]      # the Kafka messages
    labs: list[bytes]
    enc_preds: list[str]    # the same requests as the pipeline's encoded columns
    enc_labels: list[str]
    size: float             # bytes per event, on average


def make_stream(args: argparse.Namespace, tmp: Path, length: int, shop: Shop) -> Stream:
    """The requests of one list length, their messages, and the reference file."""
    n = args.requests
    X, lists, labels = shop.requests(n, seed=100 + length)
    reference_frame(shop, seed=200 + length).to_json(tmp / f"reference-{length}.jsonl", orient="records", lines=True)
    preds, labs = event_messages(X, lists, labels, args.bulk)
    enc_preds, enc_labels = encoded(lists, labels)
    size = (sum(map(len, preds)) + sum(map(len, labs))) / (2 * n)
    print(f"lists of {length}: {n:,} requests, {len(preds):,} + {len(labs):,} messages of {args.bulk} events "
          f"({size:.0f} B per event on average)", flush=True)
    return Stream(length, X, preds, labs, enc_preds, enc_labels, size)


def throughput(args: argparse.Namespace, tmp: Path, stream: Stream, rep: int) -> dict[str, Any]:
    """One run of one list length: the monitor, then the raw reader on its topics, then the
    RankingMonitor alone."""
    from driftloop.core.frames import read_frame
    from driftloop.kafka.topics import create_topics

    n, length = args.requests, stream.length
    cfg_path, cfg = monitor_config(args.bootstrap, tmp, length, rep)
    create_topics(cfg)
    res = monitor_run(cfg_path, cfg, n, stream.preds, stream.labs, args.bootstrap)
    raw_s = raw_read(args.bootstrap, [cfg.topics.predictions, cfg.topics.labels], 2 * n)
    alone = monitor_alone(read_frame(tmp / f"reference-{length}.jsonl"), stream.X, stream.enc_preds,
                          stream.enc_labels)
    print(f"  run {rep + 1}, lists of {length}: monitor ready in {res['ready_s']:.1f} s, {n / res['seconds']:,.0f} "
          f"requests/s; raw reader {n / raw_s:,.0f}; the RankingMonitor alone "
          f"{n / (alone['predictions'] + alone['labelled'] + alone['snapshot']):,.0f}", flush=True)
    return {"length": length, "rep": rep, "n": n, "size": stream.size, "raw_s": raw_s, "alone": alone, **res}


def print_throughput(rows: list[dict[str, Any]]) -> None:
    n = rows[0]["n"]
    print()
    print(f"{n:,} requests per run (a request = its prediction event and its label event, in JSON arrays); raw = a "
          "kafka-python reader json.loads-ing every value of both topics, run right after the monitor on its topics")
    print(f"{'list':>5}{'run':>4}{'B/event':>8}{'monitor req/s':>14}{'raw req/s':>11}{'ratio':>7}{'ingest only':>12}"
          f"{'judged +s':>10}{'1st count s':>12}{'publish s':>10}{'batches':>8}{'windows':>8}{'alerts':>7}"
          f"{'invalid':>8}")
    for r in rows:
        st = r["stats"]
        print(f"{r['length']:>5}{r['rep'] + 1:>4}{r['size']:>8.0f}{n / r['seconds']:>14,.0f}{n / r['raw_s']:>11,.0f}"
              f"{r['raw_s'] / r['seconds']:>7.2f}{n / r['ingest_s']:>12,.0f}{r['seconds'] - r['ingest_s']:>10.1f}"
              f"{r['first_count_s']:>12.2f}{r['publish_s']:>10.1f}{r['batches']:>8}{r['windows']:>8}"
              f"{st['firing_alerts']:>7}{st['invalid']:>8}")
    lengths = sorted({r["length"] for r in rows})
    if len(rows) > len(lengths):
        for length in lengths:
            runs = [r for r in rows if r["length"] == length]
            rate = [n / r["seconds"] for r in runs]
            raw = [n / r["raw_s"] for r in runs]
            ratio = [r["raw_s"] / r["seconds"] for r in runs]
            print(f"lists of {length}, median of {len(runs)} runs: monitor {statistics.median(rate):,.0f} requests/s "
                  f"({min(rate):,.0f}-{max(rate):,.0f}), raw {statistics.median(raw):,.0f} "
                  f"({min(raw):,.0f}-{max(raw):,.0f}), ratio {statistics.median(ratio):.2f} "
                  f"({min(ratio):.2f}-{max(ratio):.2f})")
    print("monitor req/s: from the start of the publishing (the monitor idle and ready) until every request was "
          "counted, joined and judged; 'ingest only': until the last one was counted and joined; 'judged +s': how "
          "much later the judging child had judged the last window; '1st count s': when the store first counted "
          "events; 'batches': the monitor's poll batches; 'windows': labelled windows in the statistics history "
          f"(expected {n // 5000} per run; NDCG@10 per window: "
          + "; ".join(f"lists of {length} {min(v):.3f}-{max(v):.3f}" for length in lengths
                      if (v := [x for r in rows if r["length"] == length for x in r["ndcg"]])) + ")")
    print()
    print("the RankingMonitor alone (this process, batches of 5,000, default settings), seconds per 100,000 "
          "requests:")
    print(f"{'list':>5}{'run':>4}{'predictions':>12}{'labelled':>10}{'snapshot':>10}{'total':>8}{'req/s':>10}"
          f"{'build s':>9}{'of monitor':>11}{'windows':>8}")
    for r in rows:
        a, per = r["alone"], 100_000 / n
        total = a["predictions"] + a["labelled"] + a["snapshot"]
        print(f"{r['length']:>5}{r['rep'] + 1:>4}{a['predictions'] * per:>12.2f}{a['labelled'] * per:>10.2f}"
              f"{a['snapshot'] * per:>10.2f}{total * per:>8.2f}{n / total:>10,.0f}{a['build']:>9.2f}"
              f"{total / r['seconds']:>11.0%}{a['windows']:>8}")
    print("'predictions': update_predictions (feature drift, item drift, label-free metrics); 'labelled': "
          "update_labelled (the six metrics with bootstrap CIs, the performance decision); 'snapshot': one per batch; "
          "'build s': building it on the 10,000-request reference (once per champion; not in the monitor's clock); "
          "'of monitor': its total over the monitor's seconds (the judging child does this beside ingestion); "
          "'windows': labelled windows judged")


# ----------------------------------------------------------------------------- part 2: metrics vs Evidently
EVIDENTLY_RUNNER = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import logging
logging.disable(logging.WARNING)
import pandas as pd
t_import = time.perf_counter()
import evidently
from evidently import DataDefinition, Dataset, Report
from evidently.core.datasets import Recsys
from evidently.metrics import MAP, MRR, NDCG, HitRate, Novelty, PopularityBiasMetric, PrecisionTopK, RecallTopK
t_import = time.perf_counter() - t_import
cur_path, train_path, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
cur = pd.read_csv(cur_path, dtype={"user_id": str, "item_id": str})
train = pd.read_csv(train_path, dtype={"user_id": str, "item_id": str})
ds = Dataset.from_pandas(cur, data_definition=DataDefinition(
    numerical_columns=["prediction", "target"], categorical_columns=["user_id", "item_id"],
    ranking=[Recsys(recommendations_type="rank")]))
extra = {"current_train_data": Dataset.from_pandas(train, data_definition=DataDefinition(
    categorical_columns=["user_id", "item_id"]))}

def at_k_of(value, k):
    # the new API's table of (rank, value): its ranks are the legacy series' index + 1, and NDCG's and
    # MRR's series are already 1-based (their table starts at rank 2), so value at k is at rank k + first - 1
    first = min(value["rank"].values())
    return next(value["value"][i] for i, r in value["rank"].items() if r == k + first - 1)

def at_k(value):
    return at_k_of(value, k)

def run(metrics, with_train=False):
    t0 = time.perf_counter()
    snap = Report(metrics).run(ds, None, additional_data=extra if with_train else None)
    seconds = time.perf_counter() - t0
    return snap.dict()["metrics"], seconds

out = {"version": evidently.__version__, "import_s": t_import, "rows": len(cur), "values": {}, "seconds": {}}
labelled = {"ndcg": NDCG, "precision": PrecisionTopK, "recall": RecallTopK, "map": MAP, "mrr": MRR, "hit_rate": HitRate}
for nf in (False, True):
    for name, cls in labelled.items():
        [m], s = run([cls(k=k, no_feedback_users=nf)])
        key = f"{name}|{nf}"
        out["values"][key], out["seconds"][key] = float(at_k(m["value"])), s
    ms, s = run([cls(k=k, no_feedback_users=nf) for cls in labelled.values()])
    out["seconds"][f"all six|{nf}"] = s
    [m], s = run([MAP(k=2, no_feedback_users=nf)])     # a k below some requests' relevant count
    out["values"][f"map@2|{nf}"], out["seconds"][f"map@2|{nf}"] = float(at_k_of(m["value"], 2)), s
for name, metric in (("arp", PopularityBiasMetric(k=k, metric="arp")),
                     ("coverage", PopularityBiasMetric(k=k, metric="coverage")),
                     ("gini", PopularityBiasMetric(k=k, metric="gini")), ("novelty", Novelty(k=k))):
    [m], s = run([metric], with_train=True)
    out["values"][name], out["seconds"][name] = float(m["value"]), s
print(json.dumps(out))
"""


def evidently_frames(lists: np.ndarray, labels: list[Any], ref_labels: list[Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The window as Evidently's rows (module docstring) and the reference's engagement rows."""
    n, length = lists.shape
    users = np.array([f"r{i:06d}" for i in range(n)], dtype=object)
    rel = [v if isinstance(v, dict) else dict.fromkeys(v, 1.0) for v in labels]
    shown = pd.DataFrame({"user_id": np.repeat(users, length), "item_id": lists.ravel(),
                          "prediction": np.tile(np.arange(1, length + 1), n),
                          "target": [r.get(item, 0.0) for r, row in zip(rel, lists.tolist(), strict=True)
                                     for item in row]})
    extra_rows = []
    for i, (r, row) in enumerate(zip(rel, lists.tolist(), strict=True)):
        rank = length
        for item, value in r.items():
            if item not in row:
                rank += 1
                extra_rows.append((users[i], item, rank, value))
    extra = pd.DataFrame(extra_rows, columns=["user_id", "item_id", "prediction", "target"])
    cur = pd.concat([shown, extra], ignore_index=True).sort_values(["user_id", "prediction"], kind="stable")
    train = pd.DataFrame([(f"t{i:06d}", item) for i, v in enumerate(ref_labels)
                          for item, value in (v.items() if isinstance(v, dict) else dict.fromkeys(v, 1.0).items())
                          if value > 0], columns=["user_id", "item_id"])
    return cur, train


def run_evidently(py: Path, tmp: Path, cur: pd.DataFrame, train: pd.DataFrame, length: int) -> dict | None:
    cur_path, train_path = tmp / f"evidently-window-{length}.csv", tmp / f"evidently-train-{length}.csv"
    cur.to_csv(cur_path, index=False)
    train.to_csv(train_path, index=False)
    r = subprocess.run([str(py), "-c", EVIDENTLY_RUNNER, str(cur_path), str(train_path), str(K)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print("# Evidently failed:\n" + r.stderr[-3000:])
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def _timed(fn: Any, repeats: int = 3) -> tuple[Any, float]:
    """``fn()``'s result and its best time of ``repeats`` calls (ms)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, 1000 * best


def ours_metrics(lists: np.ndarray, labels: list[Any], ref: pd.DataFrame) -> dict[str, Any]:
    """Our window and label-free metrics, their times, and the restatements in Evidently's terms."""
    preds, labs = encoded(lists, labels)
    rel = [v if isinstance(v, dict) else dict.fromkeys(v, 1.0) for v in labels]
    n_rel = np.array([sum(1 for x in r.values() if x > 0) for r in rel], dtype=np.float64)
    has = n_rel > 0
    per_request = request_metrics(preds, labs, METRICS)
    out: dict[str, Any] = {"values": {}, "ms": {}, "n": len(preds), "with_relevant": int(has.sum())}
    for m in METRICS:
        w, ms = _timed(lambda m=m: window_metrics(preds, labs, [m]))
        base = m.split("@")[0]
        out["values"][f"{base}|True"] = w[m]["value"]
        out["values"][f"{base}|False"] = float(per_request[m][has].mean())
        out["ms"][base] = ms
    _, out["ms"]["all six"] = _timed(lambda: window_metrics(preds, labs, list(METRICS)))
    # map@k restated: the same sum of precisions divided by |R| (Evidently) instead of min(k, |R|); at k = 10
    # the two agree (no request has more than 3 relevant items), at k = 2 they differ where |R| = 3
    per_request["map@2"] = request_metrics(preds, labs, ["map@2"])["map@2"]
    w2, out["ms"]["map@2"] = _timed(lambda: window_metrics(preds, labs, ["map@2"]))
    out["values"]["map@2|True"], out["values"]["map@2|False"] = w2["map@2"]["value"], float(per_request["map@2"][has].mean())
    out["beyond_2"] = int((n_rel > 2).sum())
    for name, k in ((f"map@{K}", K), ("map@2", 2)):
        restated = per_request[name] * np.minimum(n_rel, k) / np.where(has, n_rel, 1.0)
        out["values"][f"{name} restated|False"] = float(restated[has].mean())
        out["values"][f"{name} restated|True"] = float(restated.mean())
    # label-free, against the reference's lists and engagement (popularity = engaged, as Evidently's)
    ref_preds, ref_labs = encoded(np.array(ref["prediction"].tolist(), dtype=object), list(ref["label"]))
    item_ref, out["ms"]["item reference"] = _timed(lambda: ItemReference.from_lists(ref_preds, ref_labs, k=K), 1)
    lf, out["ms"]["label-free"] = _timed(lambda: label_free_metrics(preds, item_ref, K, popularity="engaged"))
    lf_shown = label_free_metrics(preds, item_ref, K)
    out["label_free"], out["label_free_shown"] = lf, lf_shown
    out["restated"] = restate_label_free(lists, item_ref, list(ref["label"]))
    out["catalogue"] = len(item_ref.catalogue)
    return out


def restate_label_free(lists: np.ndarray, item_ref: ItemReference, ref_labels: list[Any]) -> dict[str, float]:
    """Our popularity counts put in Evidently's definitions (module docstring): ARP and novelty
    over the engaged items only (popularity a count of users; novelty against the users who
    engaged), per request then averaged; coverage over the engaged items; Gini over the
    recommended items with ``n - 1``."""
    top = lists[:, :K]
    n_ref = item_ref.n_requests
    engaged_users = sum(1 for v in ref_labels if any(x > 0 for x in (v.values() if isinstance(v, dict) else [1.0] * len(v))))
    count = pd.Series(np.round(item_ref.engaged * n_ref), index=item_ref.catalogue)
    c = count.reindex(top.ravel()).to_numpy().reshape(top.shape)
    c = np.where(c > 0, c, np.nan)
    arp = np.nanmean(c, axis=1)
    novelty = np.nanmean(-np.log2(c / engaged_users), axis=1)
    recommended = pd.Series(top.ravel()).value_counts().sort_values().to_numpy(dtype=np.float64)
    m = len(recommended)
    gini = float(((2 * np.arange(1, m + 1) - m - 1) * recommended).sum() / ((m - 1) * recommended.sum()))
    engaged_items = set(count.index[count > 0])
    coverage = len(engaged_items & set(top.ravel().tolist())) / len(engaged_items)
    return {"arp": float(np.nanmean(arp)), "novelty": float(np.nanmean(novelty)), "gini": gini, "coverage": coverage,
            "engaged_users": engaged_users, "n_ref": n_ref}


def print_metrics(length: int, window: int, ours: dict[str, Any], ev: dict | None) -> None:
    ev_values = ev["values"] if ev else {}
    ev_s = ev["seconds"] if ev else {}
    rows: list[tuple[str, float, float | None, str, str, str]] = []

    def add(name: str, value: float, ev_value: float | None, ours_ms: float | None, ev_seconds: float | None,
            note: str) -> None:
        rows.append((name, value, ev_value, "" if ours_ms is None else f"{ours_ms:.1f}",
                     "" if ev_seconds is None else f"{1000 * ev_seconds:,.0f}", note))

    v = ours["values"]
    for flag, who in ((False, "requests with a relevant item; Evidently's default"),
                      (True, "all requests; Evidently no_feedback_users=True")):
        for base, note in (("ndcg", ""), ("precision", "both / k (lists >= k)"), ("recall", ""),
                           ("map", "ours / min(k, |R|), Evidently / |R|: the same here, |R| <= 3 < k"),
                           ("mrr", ""), ("hit_rate", "")):
            add(f"{base}@{K} ({'all' if flag else '>=1 rel'})", v[f"{base}|{flag}"], ev_values.get(f"{base}|{flag}"),
                ours["ms"][base], ev_s.get(f"{base}|{flag}"), note or who)
            if base == "map":
                add(f"map@2 ({'all' if flag else '>=1 rel'})", v[f"map@2|{flag}"], ev_values.get(f"map@2|{flag}"),
                    ours["ms"]["map@2"], ev_s.get(f"map@2|{flag}"),
                    f"k = 2 < |R| = 3 in {ours['beyond_2']:,} requests: ours / 2 there, Evidently / 3")
                add("  map@2 ours / |R|", v[f"map@2 restated|{flag}"], ev_values.get(f"map@2|{flag}"), None, None,
                    "ours restated: / |R|")
        add(f"all six ({'all' if flag else '>=1 rel'})", float("nan"), None, ours["ms"]["all six"],
            ev_s.get(f"all six|{flag}"), "one window_metrics call with CIs; one Report")
    lf, rs = ours["label_free"], ours["restated"]
    lf_ms = ours["ms"]["label-free"]
    add("ARP (mean popularity)", lf["mean_popularity"], ev_values.get("arp"), lf_ms, ev_s.get("arp"),
        "ours: share of reference requests that engaged; Evidently: count of users, never-engaged items dropped")
    add("  ARP, Evidently's terms", rs["arp"], ev_values.get("arp"), None, None,
        "ours restated: counts, never-engaged dropped, mean per request")
    add("novelty", lf["novelty"], ev_values.get("novelty"), lf_ms, ev_s.get("novelty"),
        f"ours: -log2 share of all {rs['n_ref']:,} reference requests, floor for never-engaged; "
        f"Evidently: of the {rs['engaged_users']:,} users who engaged, never-engaged dropped")
    add("  novelty, Evidently's terms", rs["novelty"], ev_values.get("novelty"), None, None, "ours restated")
    add("coverage", lf["coverage"], ev_values.get("coverage"), lf_ms, ev_s.get("coverage"),
        f"ours: of the reference catalogue ({ours['catalogue']:,} items shown or engaged); Evidently: of the "
        "items engaged in the reference")
    add("  coverage, Evidently's terms", rs["coverage"], ev_values.get("coverage"), None, None, "ours restated")
    add("gini", lf["gini"], ev_values.get("gini"), lf_ms, ev_s.get("gini"),
        "ours: over catalogue + unseen (zeros count), / n; Evidently: recommended items only, / (n - 1)")
    add("  gini, Evidently's terms", rs["gini"], ev_values.get("gini"), None, None, "ours restated")
    print()
    who = f"Evidently {ev['version']} (import {ev['import_s']:.1f} s, not counted)" if ev else "Evidently: not run"
    print(f"window of {window:,} requests x {length} items, k = {K}: {ours['with_relevant']:,} requests with a relevant "
          f"item; {who}; ours ms: the best of 3 calls (window_metrics: value and 200-draw bootstrap CI), "
          f"Evidently ms: one Report.run per row")
    print(f"{'metric':<28}{'ours':>12}{'Evidently':>12}{'|diff|':>10}{'ours ms':>9}{'Evid. ms':>10}  note")
    for name, value, ev_value, ms, ems, note in rows:
        val = "" if value != value else f"{value:.6f}"
        evv = "" if ev_value is None else f"{ev_value:.6f}"
        diff = "" if ev_value is None or value != value else f"{abs(value - ev_value):.1e}"
        print(f"{name:<28}{val:>12}{evv:>12}{diff:>10}{ms:>9}{ems:>10}  {note}")
    print(f"label-free with ours' default popularity (shown, the monitor's): mean_popularity "
          f"{ours['label_free_shown']['mean_popularity']:.4f}, novelty {ours['label_free_shown']['novelty']:.3f}; "
          f"ItemReference.from_lists of the 10,000 reference requests {ours['ms']['item reference']:.0f} ms "
          "(once per reference)")


def metrics_part(args: argparse.Namespace, tmp: Path, length: int, shop: Shop, py: Path | None) -> None:
    _, lists, labels = shop.requests(args.window, seed=300 + length)
    ref = reference_frame(shop, seed=200 + length)
    ours = ours_metrics(lists, labels, ref)
    ev = None
    if py is not None:
        cur, train = evidently_frames(lists, labels, list(ref["label"]))
        ev = run_evidently(py, tmp, cur, train, length)
    print_metrics(length, args.window, ours, ev)


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=None, help="requests per list length (default 100,000; "
                                                                 "--quick 10,000)")
    ap.add_argument("--window", type=int, default=None, help="requests in the metrics window (default 5,000; "
                                                               "--quick 1,000)")
    ap.add_argument("--lengths", default="10,100", help="list lengths (default 10,100)")
    ap.add_argument("--items", type=int, default=5000, help="items in the shop (default 5,000)")
    ap.add_argument("--bulk", type=int, default=500,
                    help="events per Kafka message (default 500: the Publisher SDK's batch_size)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="throughput runs per list length, interleaved (default 3; --quick 1); medians printed")
    ap.add_argument("--quick", action="store_true", help="10,000 requests, a window of 1,000, one run")
    ap.add_argument("--no-kafka", action="store_true", help="only the metrics part")
    ap.add_argument("--no-metrics", action="store_true", help="only the throughput part")
    ap.add_argument("--no-evidently", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (configs, monitor logs, stores)")
    ap.add_argument("--bootstrap", default=os.environ.get("DRIFTLOOP_TEST_BOOTSTRAP", "127.0.0.1:9092"))
    args = ap.parse_args()
    args.requests = args.requests or (10_000 if args.quick else 100_000)
    args.window = args.window or (1000 if args.quick else 5000)
    args.repeat = args.repeat or (1 if args.quick else 3)
    lengths = [int(x) for x in args.lengths.split(",")]
    if min(lengths) < K:
        ap.error(f"list lengths must be at least k = {K} (precision@k and map@k then mean the same in both tools)")
    t0 = time.perf_counter()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"# commit {commit}; {time.strftime('%Y-%m-%d %H:%M')}; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores; {args.items:,} items; seeds fixed", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="driftloop-bench-ranking-"))
    shops = {length: Shop(args.items, length) for length in lengths}
    if not args.no_kafka:
        streams = [make_stream(args, tmp, length, shops[length]) for length in lengths]
        rows = [throughput(args, tmp, stream, rep) for rep in range(args.repeat) for stream in streams]
        print_throughput(rows)
        del streams
    if not args.no_metrics:
        py = None
        if not args.no_evidently:
            py = ensure_evidently()
            if py is None:
                print("# Evidently could not be installed or imported here; ours only")
        for length in lengths:
            metrics_part(args, tmp, length, shops[length], py)
    if args.keep:
        print(f"# kept {tmp}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n# total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
