"""Retraining latency and memory: from an alert (job enqueued) to the decision on ``driftloop.models``.

Setup (not timed): a fresh SQLite store holding N joined labelled examples of River's Agrawal
stream after an abrupt concept change (classification function 0 -> 2), a champion trained on
the old concept registered in the registry, fresh topics on the local broker, and one
``driftloop retrain-worker`` process, started and joined to its group.

Timed: the policy enqueues a job for a firing alert (``RetrainScheduler.on_alerts`` in a store
transaction, then the outbox is published, as the monitor does) -> the worker consumes it,
loads the window, fits the challenger, writes the files, re-scores the champion on the
held-out rows, decides and commits -> the decision arrives on ``driftloop.models``.

Prints the end-to-end time, the worker's phases (from the audit row), and the worker
process's peak RSS (``VmHWM``) before and after the job.

With ``--registry mlflow`` each estimator runs twice in the same run, on the built-in registry
and with ``registry.backend: mlflow`` against the tracking server at ``--mlflow-uri`` (default
``scripts/mlflow.sh``'s, http://127.0.0.1:5055), and the table adds what MLflow costs a decision:
the job's run logged before the decision (``mlflow run``), the mirror pass after it (version,
upload, tags, alias; ``mlflow sync``, from the worker's log), and alert -> alias moved in MLflow.

Usage: ``python bench/retrain.py [--rows 100000] [--estimator hgb|rf|both] [--trees 100]
[--registry local|mlflow] [--mlflow-uri URL]``
(the machine is shared: RandomForest uses one core, ``n_jobs=1``; the worker's OpenMP/BLAS
threads are capped by ``registry.threads`` = ``--threads``, default 1: with 2 threads on 2
busy cores HistGradientBoosting fits 20-30x slower).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgspec
import yaml
from kafka import KafkaConsumer

from driftloop.core.config import load_config
from driftloop.core.outbox import OutboxPublisher
from driftloop.core.store import Store
from driftloop.kafka.clients import make_producer
from driftloop.kafka.topics import create_topics
from retrain.events import decode_model_event
from retrain.policy import RetrainScheduler
from retrain.registry import Registry

FEATURES = {"salary": "numeric", "commission": "numeric", "age": "numeric", "elevel": "categorical",
            "car": "categorical", "zipcode": "categorical", "hvalue": "numeric", "hyears": "numeric",
            "loan": "numeric"}
ESTIMATORS = {
    "hgb": {"estimator": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"max_iter": 100}},
    "rf": {"estimator": "sklearn.ensemble.RandomForestClassifier",
           "params": {"n_estimators": 100, "min_samples_leaf": 5, "n_jobs": 1}},
}


def agrawal(n: int, function: int, seed: int) -> list[tuple[dict, int]]:
    from river.datasets import synth

    return [({k: (str(v) if FEATURES[k] == "categorical" else float(v)) for k, v in x.items()}, int(y))
            for x, y in synth.Agrawal(classification_function=function, seed=seed).take(n)]


def insert_examples(store: Store, rows: list[tuple[dict, int]], start_ts: int, preds: list) -> None:
    sql = ("INSERT INTO examples (model, event_id, pred_ts, model_version, payload, label_ts, label, created_at, "
           "joined_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
    now = int(time.time() * 1000) - 1000
    enc = msgspec.json.encode
    batch = []
    for i, ((x, y), p) in enumerate(zip(rows, preds)):
        ev = {"event_id": f"e{i}", "model": "bench", "ts": start_ts + i, "features": x, "prediction": str(p),
              "model_version": "1"}
        batch.append(("bench", f"e{i}", start_ts + i, "1", enc(ev), start_ts + i + 500, enc(y), now, now))
    with store.transaction() as conn:
        store.executemany(conn, sql, batch)


def vm(pid: int, key: str) -> float:
    """A /proc/<pid>/status memory figure in MiB (VmRSS, VmHWM = peak RSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(kind: str, rows: int, bootstrap: str, workdir: Path, threads: int, trees: int,
        mlflow_uri: str | None = None) -> dict:
    tag = uuid.uuid4().hex[:8]
    recipe = dict(ESTIMATORS[kind])
    if kind == "rf":
        recipe["params"] = dict(recipe["params"], n_estimators=trees)
    data = {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": f"bench-{tag}", "session_timeout_ms": 6000,
                  "heartbeat_interval_ms": 1000},
        "topics": {n: f"bench{tag}.{n}" for n in ("predictions", "labels", "alerts", "retrain", "models", "dlq")},
        "store": {"url": f"sqlite:///{workdir}/bench-{tag}.db"},
        "registry": {"artifact_dir": str(workdir / f"artifacts-{tag}"), "worker_group_id": f"bench-retrain-{tag}",
                     "poll_timeout_ms": 200, "threads": threads},
        "models": {"bench": {"task": "classification", "features": FEATURES,
                             "retrain": {"min_examples": 1000, "cooldown_s": 0, "max_examples": rows,
                                         "recipe": recipe}}},
    }
    if mlflow_uri is not None:
        data["registry"] |= {"backend": "mlflow", "mlflow": {"tracking_uri": mlflow_uri, "experiment": f"bench-{tag}",
                                                             "model_names": {"bench": f"bench-{tag}"}}}
    path = workdir / f"bench-{tag}.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path, environ={})
    store = Store.from_config(cfg.store)
    store.create_schema()
    create_topics(cfg)

    print(f"[{kind}] generating {rows} post-drift rows and a champion trained before the drift ...", flush=True)
    import pandas as pd
    import skops.io as sio

    from driftloop.core.config.retrain import RecipeConfig
    from retrain.recipe import build_estimator

    pre = agrawal(20_000, 0, 1)
    pre_df = pd.DataFrame([x for x, _ in pre]).assign(label=[str(y) for _, y in pre])
    champ = build_estimator(RecipeConfig(**recipe), "classification", FEATURES)
    champ.fit(pre_df[list(FEATURES)], pre_df["label"].to_numpy(dtype=object))
    sio.dump(champ, workdir / f"champ-{tag}.skops")
    Registry(cfg, store).register("bench", workdir / f"champ-{tag}.skops", pre_df, actor="bench", promote=True,
                                  trust=sio.get_untrusted_types(file=workdir / f"champ-{tag}.skops"))
    gateway = None
    if mlflow_uri is not None:       # champion v1 mirrored (and the alias on it) before the clock starts
        from retrain.mlflow_registry import mirror_for

        mirror = mirror_for(cfg, store)
        report = mirror.sync()
        if report.errors:
            raise SystemExit(f"MLflow at {mlflow_uri}: {report.errors}")
        gateway = mirror.gateway
    post = agrawal(rows, 2, 2)
    preds = champ.predict(pd.DataFrame([x for x, _ in post])[list(FEATURES)])
    insert_examples(store, post, int(time.time() * 1000) - 3_600_000, list(preds))
    del pre, pre_df, post, preds, champ

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log_path = workdir / f"worker-{tag}.log"
    worker = subprocess.Popen([sys.executable, "-m", "driftloop.app.cli", "retrain-worker", "-c", str(path)], cwd=ROOT,
                              env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115 - the child owns it
    try:
        deadline = time.monotonic() + 120
        while "; resuming from stored offsets" not in log_path.read_text():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        idle_rss = vm(worker.pid, "VmRSS")
        idle_hwm = vm(worker.pid, "VmHWM")
        consumer = KafkaConsumer(cfg.topics.models, bootstrap_servers=[bootstrap], auto_offset_reset="earliest",
                                 enable_auto_commit=False, group_id=None)
        consumer.poll(timeout_ms=1000)

        # --- timed: alert -> job enqueued -> ... -> decision on driftloop.models -------------
        t0 = time.perf_counter()
        with store.transaction() as conn:
            (job,) = RetrainScheduler(cfg, store).on_alerts(
                conn, "bench", [{"alert_id": "bench-alert", "kind": "concept_drift", "severity": "critical",
                                 "status": "firing"}], int(time.time() * 1000))
        producer = make_producer(cfg.kafka)
        OutboxPublisher(store, producer).publish_pending()
        producer.close()
        decision = None
        alias_s = None
        while decision is None and time.perf_counter() - t0 < 1800:
            for recs in consumer.poll(timeout_ms=200).values():
                for r in recs:
                    ev = decode_model_event(r.value)
                    if ev.job_id == job.job_id:
                        decision = ev
            if worker.poll() is not None:
                raise SystemExit(f"worker died:\n{log_path.read_text()[-3000:]}")
        elapsed = time.perf_counter() - t0
        while gateway is not None and alias_s is None and time.perf_counter() - t0 < 1800:
            if gateway.alias_target(f"bench-{tag}", "champion") == 2 or decision.event != "promoted":
                alias_s = time.perf_counter() - t0
            else:
                time.sleep(0.02)
        peak = vm(worker.pid, "VmHWM")
        consumer.close()
    finally:
        worker.terminate()
        worker.wait(30)
    if decision is None:
        raise SystemExit("no decision within 30 min")
    hist = Registry(cfg, store).history("bench")[-1]
    store.dispose()
    passes = [float(x) for x in re.findall(r"MLflow mirror pass in ([0-9.]+)s", log_path.read_text())]
    return {"kind": kind, "rows": rows, "elapsed_s": elapsed, "event": decision.event,
            "registry": "mlflow" if mlflow_uri else "local", "alias_s": alias_s, "sync_s": passes[-1] if passes else None,
            "decision": decision.decision, "metrics": decision.metrics, "timings": hist.details.get("timings_s", {}),
            "idle_rss_mib": idle_rss, "idle_hwm_mib": idle_hwm, "peak_rss_mib": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--estimator", choices=["hgb", "rf", "both"], default="both")
    ap.add_argument("--trees", type=int, default=100, help="RandomForest trees")
    ap.add_argument("--threads", type=int, default=1, help="registry.threads: BLAS/OpenMP threads of a job")
    ap.add_argument("--bootstrap", default=os.environ.get("DRIFTLOOP_TEST_BOOTSTRAP", "127.0.0.1:9092"))
    ap.add_argument("--registry", choices=["local", "mlflow"], default="local",
                    help="mlflow: each estimator on the built-in registry AND on MLflow, side by side")
    ap.add_argument("--mlflow-uri", default=os.environ.get("DRIFTLOOP_TEST_MLFLOW", "http://127.0.0.1:5055"))
    args = ap.parse_args()
    kinds = ["hgb", "rf"] if args.estimator == "both" else [args.estimator]
    backends = [None, args.mlflow_uri] if args.registry == "mlflow" else [None]
    with tempfile.TemporaryDirectory(prefix="bench-retrain-") as d:
        results = [run(k, args.rows, args.bootstrap, Path(d), args.threads, args.trees, uri)
                   for k in kinds for uri in backends]
    print()
    print(f"retraining {args.rows:,} labelled rows (80 % train / 20 % held out, the newest), alert -> decision on driftloop.models")
    print(f"{'model':<6}{'registry':<9}{'alert->decision':>17}{'load':>8}{'fit':>8}{'predict':>9}{'write':>8}"
          f"{'compare':>9}{'peak RSS':>11}{'idle RSS':>10}  decision")
    for r in results:
        t = r["timings"]
        m = r["metrics"]
        print(f"{r['kind']:<6}{r['registry']:<9}{r['elapsed_s']:>16.2f}s{t.get('load_s', 0):>7.1f}s{t.get('fit_s', 0):>7.1f}s"
              f"{t.get('predict_s', 0):>8.1f}s{t.get('write_s', 0):>7.1f}s{t.get('compare_s', 0):>8.1f}s"
              f"{r['peak_rss_mib']:>8.0f} MiB{r['idle_rss_mib']:>6.0f} MiB  {r['event']} "
              f"(accuracy {m['challenger']['accuracy']:.3f} vs {m['champion']['accuracy']:.3f}, "
              f"{r['decision']['test']} p={r['decision']['p_value']:.2g})")


    for local, ml in zip(results[::2], results[1::2]) if args.registry == "mlflow" else ():
        t = ml["timings"]
        print(f"MLflow ({ml['kind']}): +{ml['elapsed_s'] - local['elapsed_s']:.2f}s alert->decision over the built-in "
              f"registry ({ml['elapsed_s']:.2f}s vs {local['elapsed_s']:.2f}s); of it: run logged before the decision "
              f"{t.get('mlflow_run_s', float('nan')):.2f}s, mirror pass after it (files, version, tags, alias) "
              f"{ml['sync_s'] if ml['sync_s'] is not None else float('nan'):.2f}s; alert->alias moved in MLflow "
              f"{ml['alias_s'] if ml['alias_s'] is not None else float('nan'):.2f}s")


if __name__ == "__main__":
    main()
