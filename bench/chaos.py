"""Chaos run: the monitor and the retrain worker under production's faults, compared with an
undisturbed run of the same events.

``python bench/chaos.py --store {sqlite,postgres} --minutes M --seed S [--rate R]``

1. Set-up, all of it the run's own (the shared broker on 9092 and the shared PostgreSQL are
   never touched): a Kafka broker (``tests.fault_helpers.DedicatedBroker``, free ports), for
   ``--store postgres`` a PostgreSQL server (``DedicatedPostgres``), and a tmpfs
   (``SmallDisk``) holding the store (the SQLite file, or PostgreSQL's data folder) so that
   the disk can fill. A champion (HistGradientBoosting on Agrawal concept 0) is registered
   with its reference sample for three models, ``alpha``, ``beta`` and ``drifty``.
2. The rate: the monitor's maximum, measured by draining a 40,000-message backlog of the
   same kind of events through the monitor (``driftloop.app.service.MonitorService``, all default
   detectors, the chosen store), as ``bench/soak.py`` does; the run publishes at ``--load``
   (50%) of it. ``--rate`` skips the measurement. (The maximum is the monitor's, not the
   producer's: kafka-python publishes ~10x faster than the monitor consumes, and at half of
   that the chaos run would be a backlog drain.)
3. The events, generated once from ``--seed`` and written to a file: for each model, one
   prediction per step and its label 40 steps later; ``drifty`` moves to Agrawal concept 2 with
   salaries +30% at 40% of the stream (data, prediction and concept drift, performance loss:
   alerts, and a retraining job); ~0.5% of the messages invalid (not JSON, an unknown model, a
   missing ``event_id``, a label of the wrong type), ~1% of predictions and ~0.5% of labels
   sent twice. A producer process publishes them in order at the rate for ``--minutes``
   (kafka-python, idempotent, ``acks=all``, buffering and retrying through broker outages).
4. The chaos pipeline (a ``driftloop monitor`` and a ``driftloop retrain-worker``, real
   processes) consumes meanwhile, and at seeded random moments (``--faults-per-kind``, one
   fault at a time, each in its own slot of the run) the harness: restarts the broker
   (stopped for a few seconds, started with its data); restarts PostgreSQL (fast shutdown) or
   locks the SQLite file from another process (``BEGIN EXCLUSIVE`` held); SIGKILLs the monitor
   and restarts it; starts a second monitor in the group and stops it (SIGTERM) later; fills
   the store's disk to the last byte and frees it. A process that exits by itself is recorded
   (with its log's last lines) and restarted, and the run fails.
5. Once the producer is done and the chaos monitor has consumed to the end of both topics and
   every retraining job is decided, an undisturbed pipeline (its own store, group, outputs
   topics and registry, same configuration) consumes the same topics from the start.
6. Compared (exit 1 on any difference), side by side:

   * counts per model and in total: predictions, labels, joined, duplicates, invalid,
     pending labels (``driftloop stats``). Exact.
   * alerts: the set of ``(model, kind, detector, feature, severity)`` that fired, and their
     number. Detections are functions of the event sequence (count windows; a model's
     predictions, and its labels, are each on one partition in event order, so each
     detector sees the same sequence whatever the batch cuts, crashes and rebalances), while
     the alert lifecycle runs on the wall clock (group window, hold-down, resolution): with
     ``group_window_s: 0``, no grouping and hold-down/cooldown of a day, each fingerprint fires
     once and never resolves within the run, so "what fired" is timing-independent; statuses,
     times and delivery order are not compared.
   * the detectors' stored state per model, decoded and compared value for value (as
     ``tests/integration/test_process_faults.py`` does): the strongest check that every event
     reached the detectors exactly once and in the same order.
   * retraining: the jobs ``(model, trigger, status, decision)`` and the registry's events.
     ``drifty``'s policy triggers on a critical ``performance`` or ``concept_drift`` alert,
     once (``cooldown_s`` a day), and sets ``min_delta: 1.0`` so the decision is always
     ``rejected``: the worker trains and evaluates a challenger on the job's window, but the
     champion is never replaced during the run. A promotion switches the monitor's reference
     at the moment the worker commits, a wall-clock point of the stream that differs between
     the runs, after which the detections differ legitimately; keeping the champion keeps
     every detection comparable. (``test_process_faults.py`` covers promotion under SIGKILL
     by gating the stream.) The challenger's metrics are not compared: the window is the
     examples joined when the job was requested, which depends on how far the labels'
     partition had been consumed at that moment.

Figures of the last runs: ``docs/operations.md`` ("Chaos run"). The CI version is
``tests/integration/test_chaos.py`` (``--minutes 2``).
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson
import yaml

MODELS = ("alpha", "beta", "drifty")
DRIFT_MODEL = "drifty"
DRIFT_AT = 0.4            # fraction of the stream after which drifty's world changes
LABEL_LAG = 40            # steps between a prediction and its label
POOL = 20_000             # distinct rows per world (cycled)
INVALID_P = 0.03          # per step (6 messages): ~0.5% of the messages
DUP_PRED_P = 0.01         # per prediction
DUP_LABEL_P = 0.005       # per label
KINDS = ("broker_restart", "store_fault", "monitor_sigkill", "second_monitor", "disk_full")
COUNTS = ("predictions", "labels", "joined", "duplicates", "invalid", "pending_labels")
log = logging.getLogger("chaos")


def now_s() -> str:
    return time.strftime("%H:%M:%S", time.gmtime())


# -- the events --------------------------------------------------------------------------------
@dataclass
class World:
    """The champion (a skops file), its reference sample, and the rows events are drawn from."""

    champion: Path
    reference: Any                       # pandas DataFrame
    trust: list[str]
    pools: dict[str, list[bytes]]        # world -> prediction bodies (no event_id/model/ts)
    labels: dict[str, list[int]]


def _bodies(model: Any, X: Any) -> list[bytes]:
    proba = model.predict_proba(X)
    out = []
    for row, pr in zip(X.to_dict("records"), proba):
        out.append(orjson.dumps({"features": row, "prediction": int(pr.argmax()),
                                 "scores": {"0": round(float(pr[0]), 4), "1": round(float(pr[1]), 4)},
                                 "model_version": "1"}, option=orjson.OPT_SERIALIZE_NUMPY))
    return out


def build_world(workdir: Path, seed: int) -> World:
    """Champion v1 on concept 0, its held-out reference, and the two worlds' rows."""
    import skops.io as sio

    from driftloop.app.demo_data import agrawal_frame, reference_frame, train_model

    X, y = agrawal_frame(13_000, concept=0, seed=seed)
    model = train_model(X.iloc[:8_000], y[:8_000])
    ref = reference_frame(model, X.iloc[8_000:].reset_index(drop=True), y[8_000:])
    path = workdir / "champion.skops"
    sio.dump(model, path)
    Xs, ys = agrawal_frame(POOL, concept=0, seed=seed + 1)
    Xd, yd = agrawal_frame(POOL, concept=2, seed=seed + 2, salary_shift=1.3)
    return World(path, ref, list(sio.get_untrusted_types(file=path)),
                 {"stable": _bodies(model, Xs), "drifted": _bodies(model, Xd)},
                 {"stable": [int(v) for v in ys], "drifted": [int(v) for v in yd]})


def _invalid(rng: random.Random, step: int, ts: int) -> tuple[str, str, bytes]:
    kind = rng.randrange(4)
    if kind == 0:
        return "p", "alpha", b'{"event_id": "broken%d", "model": "alpha", "ts":' % step
    if kind == 1:
        return "p", "ghost", b'{"event_id":"g%d","model":"ghost","ts":%d,"features":{"x":1},"prediction":0}' % (step, ts)
    if kind == 2:
        return "p", "beta", b'{"model":"beta","ts":%d,"features":{"salary":1.0},"prediction":0}' % ts
    return "l", "alpha", b'{"event_id":"a%d","model":"alpha","ts":%d,"label":{"not":"a label"}}' % (step, ts)


@dataclass
class Stream:
    """The generated messages, in publishing order, and what they contain."""

    messages: list[tuple[str, str, bytes]] = field(default_factory=list)   # (p|l, key, value)
    steps: int = 0
    invalid: int = 0
    dup_predictions: int = 0
    dup_labels: int = 0


def generate(world: World, n_messages: int, seed: int) -> Stream:
    """About ``n_messages`` messages: per step one prediction per model and the labels due."""
    rng = random.Random(seed)
    steps = max(2 * LABEL_LAG, int(n_messages / (2 * len(MODELS)) / (1 + DUP_PRED_P)))
    drift_step = int(steps * DRIFT_AT)
    ts0 = int(time.time() * 1000) - 3 * 3_600_000 - steps * 10
    s = Stream(steps=steps)
    due: deque[tuple[int, str, bytes]] = deque()       # (step, kind, value): labels and repeats
    repeats: list[tuple[int, str, str, bytes]] = []
    for step in range(steps + LABEL_LAG + 1):
        if step < steps:
            _predictions(s, world, rng, step, ts0, drift_step, due, repeats)
        while due and due[0][0] <= step:
            _, key, value = due.popleft()
            s.messages.append(("l", key, value))
            if rng.random() < DUP_LABEL_P:
                repeats.append((step + rng.randint(1, 300), "l", key, value))
                s.dup_labels += 1
        if step < steps and rng.random() < INVALID_P:
            s.messages.append(_invalid(rng, step, ts0 + step * 10))
            s.invalid += 1
        _flush_repeats(s, repeats, step)
    _flush_repeats(s, repeats, None)
    return s


def _predictions(s: Stream, world: World, rng: random.Random, step: int, ts0: int, drift_step: int,
                 due: deque, repeats: list) -> None:
    ts = ts0 + step * 10
    for k, model in enumerate(MODELS):
        wname = "drifted" if model == DRIFT_MODEL and step >= drift_step else "stable"
        j = (step * 7 + k * 4_999) % POOL
        eid = f"{model[0]}{step}"
        value = b'{"event_id":"%s","model":"%s","ts":%d,' % (eid.encode(), model.encode(), ts) + world.pools[wname][j][1:]
        s.messages.append(("p", model, value))
        if rng.random() < DUP_PRED_P:
            repeats.append((step + rng.randint(1, 300), "p", model, value))
            s.dup_predictions += 1
        due.append((step + LABEL_LAG, model, b'{"event_id":"%s","model":"%s","ts":%d,"label":%d}'
                    % (eid.encode(), model.encode(), ts + 5_000, world.labels[wname][j])))


def _flush_repeats(s: Stream, repeats: list, step: int | None) -> None:
    keep = []
    for r in repeats:
        if step is None or r[0] <= step:
            s.messages.append((r[1], r[2], r[3]))
        else:
            keep.append(r)
    repeats[:] = keep


def write_stream(stream: Stream, path: Path) -> None:
    with open(path, "wb") as f:
        for kind, key, value in stream.messages:
            f.write(orjson.dumps([kind, key, value.decode()]) + b"\n")


# -- the producer process ----------------------------------------------------------------------
def produce(args: argparse.Namespace) -> None:
    """Publish the file's messages in order at ``--rate`` messages/s through any outage."""
    from kafka import KafkaProducer

    msgs = [orjson.loads(line) for line in Path(args.events).read_bytes().splitlines() if line]
    topic = {"p": args.predictions, "l": args.labels}
    errors: list[str] = []
    prod = KafkaProducer(bootstrap_servers=[args.bootstrap], acks="all", enable_idempotence=True, linger_ms=20,
                         batch_size=256 * 1024, delivery_timeout_ms=900_000,
                         max_block_ms=900_000, reconnect_backoff_max_ms=2000)
    per_tick = args.rate * 0.1
    start, sent, carry, tick = time.monotonic(), 0, 0.0, 0
    while sent < len(msgs):
        tick += 1
        carry += per_tick
        k, carry = int(carry), carry - int(carry)
        for kind, key, value in msgs[sent:sent + k]:
            prod.send(topic[kind], key=key.encode(), value=value.encode()).add_errback(
                lambda exc: errors.append(repr(exc)))
        sent = min(len(msgs), sent + k)
        sleep = start + tick * 0.1 - time.monotonic()
        if sleep > 0:
            time.sleep(sleep)
    publish_s = time.monotonic() - start
    prod.flush()
    prod.close()
    print(json.dumps({"sent": sent, "errors": len(errors), "first_errors": errors[:3], "publish_s": publish_s,
                      "acked_s": time.monotonic() - start}), flush=True)


# -- pipelines ---------------------------------------------------------------------------------
def pipeline_config(workdir: Path, name: str, bootstrap: str, store_url: str, shared: str,
                    trust: list[str], reference: Path) -> Path:
    """One pipeline's config: its group, store, output topics and registry; shared input topics."""
    tag = uuid.uuid4().hex[:8]
    retrain_off = {"enabled": False}
    retrain_on = {"on_kinds": ["performance", "concept_drift"], "min_severity": "critical", "min_examples": 1000,
                  "max_examples": 5000, "cooldown_s": 86400, "holdout_fraction": 0.25, "min_delta": 1.0,
                  "recipe": {"estimator": "sklearn.ensemble.RandomForestClassifier",
                             "params": {"n_estimators": 30, "min_samples_leaf": 3, "n_jobs": 1}}}
    from driftloop.app.demo_data import FEATURES
    data: dict[str, Any] = {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": f"{name}-{tag}", "session_timeout_ms": 6000,
                  "heartbeat_interval_ms": 1000},
        "topics": {"predictions": f"chaos{shared}.predictions", "labels": f"chaos{shared}.labels", "partitions": 3}
        | {t: f"chaos{shared}.{name}.{t}" for t in ("alerts", "retrain", "models", "dlq")},
        "store": {"url": store_url, "busy_timeout_ms": 2000},
        "ingest": {"poll_timeout_ms": 200},
        "api": {"enabled": False},
        "registry": {"artifact_dir": str(workdir / f"{name}-artifacts"), "worker_group_id": f"{name}-retrain-{tag}",
                     "poll_timeout_ms": 200, "trusted_types": trust, "max_attempts": 1000},
        "alerts": {"group_window_s": 0, "group_min": 1000, "hold_down_s": 86400, "cooldown_s": 86400,
                   "tick_every_s": 1, "stale": {"enabled": False}, "incidents": {"wait_s": 0}},
        "models": {m: {"task": "classification", "features": dict(FEATURES),
                       "retrain": retrain_on if m == DRIFT_MODEL else retrain_off} for m in MODELS},
    }
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class Pipeline:
    """A config, its store, and the processes running it (role -> process)."""

    name: str
    path: Path
    workdir: Path
    cfg: Any = None
    store: Any = None
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    sigterm_s: dict[str, float | None] = field(default_factory=dict)   # role -> SIGTERM-to-exit at the end

    def __post_init__(self) -> None:
        from driftloop.core.config import load_config
        from driftloop.core.store import Store

        self.cfg = load_config(self.path, environ={})
        self.store = Store.from_config(self.cfg.store)

    def log(self, role: str) -> Path:
        return self.workdir / f"{self.name}-{role}.log"

    def start(self, role: str) -> subprocess.Popen:
        from tests.fault_helpers import spawn

        cmd = "retrain-worker" if role == "worker" else "monitor"
        self.procs[role] = spawn(cmd, "-c", str(self.path), log=self.log(role))
        return self.procs[role]

    def register(self, world: World) -> None:
        """Champion v1 with its reference sample, for every model."""
        from retrain.registry import Registry

        self.store.create_schema()
        reg = Registry(self.cfg, self.store)
        for m in MODELS:
            reg.register(m, world.champion, world.reference, actor="chaos", promote=True, trust=world.trust)

    def stop_all(self, timeout_s: float = 60) -> dict[str, float | None]:
        """SIGTERM every process still running; role -> seconds to exit (None: SIGKILLed after
        ``timeout_s``, its log's last lines printed)."""
        from tests.fault_helpers import stop_process

        running = {role: proc for role, proc in self.procs.items() if proc.poll() is None}
        for proc in running.values():
            proc.send_signal(signal.SIGTERM)
        took: dict[str, float | None] = {}
        for role, proc in running.items():
            try:
                took[role] = stop_process(proc, timeout_s)
            except AssertionError:
                took[role] = None
                tail = "\n".join(self.log(role).read_text(errors="replace").splitlines()[-15:])
                print(f"[{now_s()}] {self.name} {role} ignored SIGTERM for {timeout_s:.0f}s: SIGKILLed; last lines:\n"
                      f"{tail}", flush=True)
        self.sigterm_s.update(took)
        return took


def end_offsets(cfg: Any) -> dict[tuple[str, int], int]:
    from kafka import KafkaConsumer, TopicPartition

    cons = KafkaConsumer(bootstrap_servers=cfg.kafka.bootstrap_servers.split(","))
    try:
        tps = [TopicPartition(t, p) for t in (cfg.topics.predictions, cfg.topics.labels)
               for p in sorted(cons.partitions_for_topic(t) or ())]
        return {(tp.topic, tp.partition): int(v) for tp, v in cons.end_offsets(tps).items()}
    finally:
        cons.close()


def stored_offsets(pipe: Pipeline) -> dict[tuple[str, int], int]:
    import sqlalchemy as sa

    from driftloop.core.store import offsets
    with pipe.store.engine.connect() as c:
        return {(r.topic, r.partition): int(r.next_offset)
                for r in c.execute(sa.select(offsets).where(offsets.c.group_id == pipe.cfg.kafka.group_id))}


def job_rows(pipe: Pipeline) -> list[Any]:
    import sqlalchemy as sa

    from driftloop.core.tables import retrain_jobs
    with pipe.store.engine.connect() as c:
        return list(c.execute(sa.select(retrain_jobs).order_by(retrain_jobs.c.requested_at)))


def settled(pipe: Pipeline, ends: dict[tuple[str, int], int]) -> bool:
    """Consumed to the end of both topics, every batch judged (analysis.mode apart), every job
    decided, no alert waiting for a tick."""
    import sqlalchemy as sa

    from driftloop.alerts import tables as at
    from driftloop.monitoring.journal import backlog
    try:
        got = stored_offsets(pipe)
        if any(got.get(k, 0) < v for k, v in ends.items()):
            return False
        if any(j.status not in ("done", "failed") for j in job_rows(pipe)):
            return False
        with pipe.store.engine.connect() as c:
            if backlog(c).entries:
                return False
            return not c.execute(sa.select(at.alerts.c.alert_id).where(at.alerts.c.status == "pending")).first()
    except Exception:  # noqa: BLE001 - the store may be failing (a fault): not settled yet
        return False


# -- faults ------------------------------------------------------------------------------------
@dataclass
class Fault:
    kind: str
    at_s: float                 # planned start, seconds after the producer started
    planned_s: float            # planned duration (down, locked, full, second member's stay, restart delay)
    started_s: float = 0.0
    actual_s: float = 0.0       # measured: fault on -> fault off
    note: str = ""


DURATIONS = {"broker_restart": (3, 15), "store_fault": (3, 12), "monitor_sigkill": (0, 3),
             "second_monitor": (10, 40), "disk_full": (3, 12)}


def plan_faults(rng: random.Random, seconds: float, per_kind: int) -> list[Fault]:
    """``per_kind`` faults of each kind, shuffled, one per slot of the run, at a random point of it."""
    kinds = [k for k in KINDS for _ in range(per_kind)]
    rng.shuffle(kinds)
    slot = seconds * 0.9 / len(kinds)
    out = []
    for i, kind in enumerate(kinds):
        lo, hi = DURATIONS[kind]
        dur = rng.uniform(lo, min(hi, max(lo, slot * 0.5)))
        out.append(Fault(kind, seconds * 0.05 + i * slot + rng.uniform(0.0, 0.3) * slot, round(dur, 1)))
    return out


@dataclass
class Exit:
    t_s: float
    role: str
    code: int
    during: str
    tail: str


class Chaos:
    """Runs the faults against one pipeline and restarts what dies by itself (recording it)."""

    LOCKER = ("import sqlite3, sys, time\n"
              "c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=120)\n"
              "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True)\n"
              "time.sleep(float(sys.argv[2])); c.execute('ROLLBACK')\n")

    def __init__(self, pipe: Pipeline, broker: Any, pg: Any, disk: Any, sqlite_path: Path | None) -> None:
        self.pipe, self.broker, self.pg, self.disk, self.sqlite_path = pipe, broker, pg, disk, sqlite_path
        self.t0 = time.monotonic()
        self.expected_down: set[str] = set()
        self.current = "-"
        self.exits: list[Exit] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._supervise, daemon=True, name="supervisor")

    def t(self) -> float:
        return time.monotonic() - self.t0

    # supervision
    def _supervise(self) -> None:
        while not self.stop.wait(0.5):
            with self.lock:
                for role, proc in list(self.pipe.procs.items()):
                    if proc.poll() is None or role in self.expected_down:
                        continue
                    tail = "\n".join(self.pipe.log(role).read_text(errors="replace").splitlines()[-25:])
                    self.exits.append(Exit(self.t(), role, proc.returncode, self.current, tail))
                    print(f"[{now_s()}] t={self.t():.0f}s UNEXPECTED EXIT of {role} (code {proc.returncode}) "
                          f"during {self.current}; restarted", flush=True)
                    if role == "monitor2":
                        del self.pipe.procs[role]
                    else:
                        self.pipe.start(role)

    def run(self, faults: list[Fault]) -> None:
        self.thread.start()
        for f in faults:
            wait = self.t0 + f.at_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            f.started_s = self.t()
            self.current = f"{f.kind}@{f.started_s:.0f}s"
            print(f"[{now_s()}] t={f.started_s:.0f}s fault {f.kind} ({f.planned_s:.1f}s)", flush=True)
            t = time.monotonic()
            getattr(self, f.kind)(f)
            if not f.actual_s:
                f.actual_s = time.monotonic() - t
            self.current = "-"

    # the faults
    def broker_restart(self, f: Fault) -> None:
        t = time.monotonic()
        stop_s = self.broker.stop()
        time.sleep(f.planned_s)
        start_s = self.broker.start()
        f.actual_s = time.monotonic() - t
        f.note = f"stopped (took {stop_s:.1f}s), started again with its data (took {start_s:.1f}s)"

    def store_fault(self, f: Fault) -> None:
        if self.pg is not None:
            t = time.monotonic()
            stop_s = self.pg.stop()
            time.sleep(f.planned_s)
            start_s = self.pg.start()
            f.actual_s = time.monotonic() - t
            f.note = f"PostgreSQL fast shutdown (took {stop_s:.1f}s), started again (took {start_s:.1f}s)"
            return
        proc = subprocess.Popen([sys.executable, "-c", self.LOCKER, str(self.sqlite_path), str(f.planned_s)],
                                stdout=subprocess.PIPE, text=True)
        waited = time.monotonic()
        proc.stdout.readline()
        t = time.monotonic()
        proc.wait()
        f.actual_s = time.monotonic() - t
        f.note = f"BEGIN EXCLUSIVE from another process (got it after {t - waited:.1f}s)"

    def monitor_sigkill(self, f: Fault) -> None:
        with self.lock:
            self.expected_down.add("monitor")
            proc = self.pipe.procs["monitor"]
            alive = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        time.sleep(f.planned_s)
        with self.lock:
            self.pipe.start("monitor")
            self.expected_down.discard("monitor")
        f.note = "SIGKILL, restarted" + ("" if alive else " (it was not running!)")

    def second_monitor(self, f: Fault) -> None:
        from tests.fault_helpers import stop_process

        log = self.pipe.log("monitor2")
        seen = log.read_text().count("resuming from stored offsets") if log.exists() else 0
        with self.lock:
            proc = self.pipe.start("monitor2")
        t = time.monotonic()
        deadline = t + 90           # it joins once imported and connected: its stay counts from then
        while (proc.poll() is None and time.monotonic() < deadline
               and log.read_text().count("resuming from stored offsets") <= seen):
            time.sleep(0.1)
        joined_s = time.monotonic() - t
        time.sleep(f.planned_s)
        with self.lock:
            self.expected_down.add("monitor2")
        try:
            took = stop_process(proc)
        except AssertionError as exc:
            took, f.note = -1.0, f"{exc}; "
        joined = log.read_text().count("resuming from stored offsets") > seen
        f.note += (f"started, {'got partitions' if joined else 'NO partitions logged'} {joined_s:.1f}s later, "
                   f"stayed {f.planned_s:.0f}s, left with SIGTERM in {took:.1f}s (exit {proc.returncode})")
        with self.lock:
            self.pipe.procs.pop("monitor2", None)
            self.expected_down.discard("monitor2")

    def disk_full(self, f: Fault) -> None:
        if self.sqlite_path is not None:
            import sqlite3
            try:
                db = sqlite3.connect(str(self.sqlite_path), timeout=30)
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")   # the next write must grow the WAL file
                db.close()
            except sqlite3.Error as exc:
                f.note = f"(checkpoint: {exc}) "
        t = time.monotonic()
        self.disk.fill()
        time.sleep(f.planned_s)
        self.disk.free()
        f.actual_s = time.monotonic() - t
        f.note += "store's disk filled to the last byte, then freed"
        if self.pg is not None and not self._pg_running():
            self.pg.start()
            f.note += "; PostgreSQL had stopped (PANIC on a full disk): started again"

    def _pg_running(self) -> bool:
        return subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "status"], env=self.pg.env,
                              capture_output=True).returncode == 0

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(5)


# -- outcome -----------------------------------------------------------------------------------
# CBPE and DLE join each label to the estimated windows that exist when the label is joined
# ("realised so far", for the dashboard): a label joined before its window closed is not counted,
# so these depend on how far the labels' partition was consumed when a predictions window closed:
# the counts, the labelled rows a window keeps, its realised metrics and the learning estimate
# kept when it is complete, and whether it is (DLE: done) (detectors/cbpe.py, detectors/dle.py)
TIMING_KEYS = frozenset({"realised_n", "realised_correct", "realised_sum", "rows", "realised", "learning",
                         "done"})


def drop_keys(obj: Any, keys: frozenset[str]) -> Any:
    """``obj`` without the dict entries named in ``keys``, at any depth.

    >>> drop_keys({"a": 1, "realised_n": 3, "h": [{"realised_n": 1, "n": 2}]}, TIMING_KEYS)
    {'a': 1, 'h': [{'n': 2}]}
    """
    if isinstance(obj, dict):
        return {k: drop_keys(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, (list, tuple)):
        return type(obj)(drop_keys(v, keys) for v in obj)
    return obj


def outcome(pipe: Pipeline) -> dict[str, Any]:
    """What must equal between the runs (see the module docstring for why)."""
    import sqlalchemy as sa

    from detectors.state import loads
    from driftloop.alerts import tables as at
    from driftloop.app.stats import collect_stats
    from driftloop.core.store import detector_state
    from retrain.registry import Registry
    from tests.integration.test_process_faults import canonical

    stats = collect_stats(pipe.cfg, pipe.store)
    counts = {m: {k: row[k] for k in COUNTS} for m, row in stats["models"].items()}
    counts["(unknown models)"] = {"invalid": stats["unattributed"]["invalid"]}
    counts["total"] = {k: stats["totals"].get(k, sum(c.get(k, 0) for c in counts.values())) for k in COUNTS}
    with pipe.store.engine.connect() as c:
        alerts = sorted(tuple(r) for r in c.execute(sa.select(
            at.alerts.c.model, at.alerts.c.kind, at.alerts.c.detector, at.alerts.c.feature, at.alerts.c.severity)))
        states = {r.model: canonical(drop_keys(loads(bytes(r.state)), TIMING_KEYS)) for r in c.execute(
            sa.select(detector_state.c.model, detector_state.c.state))}
    reg = Registry(pipe.cfg, pipe.store)
    registry = [(m, h.event, h.version) for m in MODELS for h in reg.history(m)]
    jobs = sorted((j.model, j.trigger, j.status, j.decision) for j in job_rows(pipe))
    return {"counts": counts, "alerts": alerts, "states": states, "jobs": jobs, "registry": registry}


def first_diff(a: Any, b: Any, path: str = "") -> str:
    """Where two canonical states first differ (a path of keys and indexes) and the two values."""
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                key = x[0] if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) else i
                return first_diff(x, y, f"{path}/{key}")
    return f"{path or '/'}: chaos {str(a)[:160]} != undisturbed {str(b)[:160]}"


def compare(chaos: dict[str, Any], ref: dict[str, Any], stream: Stream) -> list[str]:
    """Print the figures side by side; returns the mismatches."""
    bad: list[str] = []
    print(f"\n{'figure':<32}{'chaos':>12}{'undisturbed':>14}  same")
    for model, row in ref["counts"].items():
        for k, v in row.items():
            got = chaos["counts"].get(model, {}).get(k)
            same = got == v
            bad += [] if same else [f"{model} {k}: chaos {got} != undisturbed {v}"]
            if model in ("total", "(unknown models)") or k in ("predictions", "joined", "duplicates", "invalid") or not same:
                print(f"{model + ' ' + k:<32}{got!s:>12}{v!s:>14}  {'yes' if same else 'NO'}")
    print(f"(generated: {stream.steps:,} predictions and as many labels per model, {stream.dup_predictions:,} "
          f"repeated predictions, {stream.dup_labels:,} repeated labels, {stream.invalid:,} invalid messages)")
    for key, what in (("alerts", "alerts fired"), ("jobs", "retraining jobs"), ("registry", "registry events")):
        same = chaos[key] == ref[key]
        bad += [] if same else [f"{what}: chaos {chaos[key]} != undisturbed {ref[key]}"]
        print(f"{what:<32}{len(chaos[key]):>12}{len(ref[key]):>14}  {'yes' if same else 'NO'}")
    same = chaos["states"] == ref["states"]
    diff = sorted(m for m in set(chaos["states"]) | set(ref["states"]) if chaos["states"].get(m) != ref["states"].get(m))
    bad += [] if same else [f"detector state differs for {diff}"]
    for m in diff:
        print(f"  {m}: first difference at {first_diff(chaos['states'].get(m), ref['states'].get(m))}")
    print(f"{'detector state, value for value':<32}{len(chaos['states']):>12}{len(ref['states']):>14}  "
          f"{'yes' if same else 'NO: ' + ', '.join(diff)}")
    print("\nalerts fired (model, kind, detector, feature, severity):")
    for a in ref["alerts"]:
        print(f"  {'  ' if a in chaos['alerts'] else '- '}{a}")
    for a in chaos["alerts"]:
        if a not in ref["alerts"]:
            print(f"  + {a}  (chaos only)")
    print(f"retraining jobs (model, trigger, status, decision): chaos {chaos['jobs']}, undisturbed {ref['jobs']}")
    return bad


# -- the run -----------------------------------------------------------------------------------
def measure_max(env: Env, world: World, stream: Stream, n: int) -> float:
    """Messages/s of the monitor draining ``n`` messages of the stream (a pipeline of its own)."""
    from kafka import KafkaProducer

    from driftloop.app.service import MonitorService
    from driftloop.kafka.topics import create_topics

    pipe = Pipeline("calib", pipeline_config(env.workdir, "calib", env.broker.bootstrap, env.store_url("calib"),
                                             "-calib", world.trust, env.reference), env.workdir)
    create_topics(pipe.cfg)
    pipe.register(world)
    prod = KafkaProducer(bootstrap_servers=[env.broker.bootstrap], acks=1, linger_ms=50, batch_size=512 * 1024)
    topic = {"p": pipe.cfg.topics.predictions, "l": pipe.cfg.topics.labels}
    msgs = stream.messages[:n]
    for kind, key, value in msgs:
        prod.send(topic[kind], key=key.encode(), value=value)
    prod.flush()
    prod.close()
    svc = MonitorService(pipe.cfg, pipe.store)
    mon = svc.monitor
    svc.alerts.start()
    mon.start()
    t0, deadline = None, time.monotonic() + 300
    try:
        while mon.stats.records < len(msgs) and time.monotonic() < deadline:
            if mon.poll_once() and t0 is None:
                t0 = time.perf_counter() - mon.stats.last_batch_ms / 1000
        return mon.stats.records / (time.perf_counter() - (t0 or time.perf_counter() - 1))
    finally:
        mon.close()
        svc.alerts.stop()
        pipe.store.dispose()


@dataclass
class Env:
    """The run's own broker, PostgreSQL (or None) and the tmpfs holding the store."""

    workdir: Path
    store: str
    broker: Any = None
    pg: Any = None
    disk: Any = None
    reference: Path = Path()
    shared: str = ""
    pipes: list[Pipeline] = field(default_factory=list)
    keep: bool = False

    def store_url(self, name: str) -> str:
        if self.pg is None:
            return f"sqlite:///{self.workdir}/{name}.db" if name != "chaos" else f"sqlite:///{self.disk.path}/chaos.db"
        import psycopg
        with psycopg.connect(self.pg.url, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.pg.url.rsplit("/", 1)[0] + f"/{name}"

    def start(self, disk_size: str) -> None:
        from tests.fault_helpers import DedicatedBroker, DedicatedPostgres, SmallDisk

        self.broker = DedicatedBroker(heap="512m")
        self.broker.start()
        if self.store == "postgres":
            self.pg = DedicatedPostgres()
            self.disk = SmallDisk(self.pg.dir, disk_size)
            self.disk.mount()
            self.pg.start()
        else:
            self.disk = SmallDisk(self.workdir / "disk", disk_size)
            self.disk.mount()

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.stop_all()
        for what in (self.pg, self.broker):
            if what is not None:
                try:
                    what.stop()
                except Exception as exc:  # noqa: BLE001 - shutting down: report and go on stopping the rest
                    print(f"stopping {type(what).__name__}: {exc}")
        if self.disk is not None:
            if self.keep and self.pg is None:          # the chaos store, off the tmpfs before it goes
                import shutil
                for f in self.disk.path.glob("chaos.db*"):
                    shutil.copy(f, self.workdir / f.name)
            self.disk.close()
        for what in (self.pg, self.broker):
            if what is not None:
                what.close()


def start_producer(env: Env, pipe: Pipeline, events: Path, rate: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--produce", "--events", str(events), "--bootstrap",
                             env.broker.bootstrap, "--predictions", pipe.cfg.topics.predictions, "--labels",
                             pipe.cfg.topics.labels, "--rate", str(rate)], stdout=subprocess.PIPE, text=True)


def wait_settled(pipe: Pipeline, timeout_s: float, chaos: Chaos | None = None) -> float:
    t = time.monotonic()
    ends = end_offsets(pipe.cfg)
    while not settled(pipe, ends):
        if time.monotonic() - t > timeout_s:
            raise TimeoutError(f"{pipe.name}: not consumed to {ends} within {timeout_s:.0f}s "
                               f"(stored {stored_offsets(pipe)}, jobs {[tuple(j)[:6] for j in job_rows(pipe)]})")
        time.sleep(1.0)
    return time.monotonic() - t


def run_chaos(env: Env, args: argparse.Namespace, world: World, stream: Stream, rate: float) -> tuple[Pipeline, Chaos, list[Fault], dict]:
    from driftloop.kafka.topics import create_topics
    from tests.fault_helpers import wait_until

    shared = uuid.uuid4().hex[:6]
    env.shared = shared
    pipe = Pipeline("chaos", pipeline_config(env.workdir, "chaos", env.broker.bootstrap, env.store_url("chaos"),
                                             shared, world.trust, env.reference), env.workdir)
    env.pipes.append(pipe)
    create_topics(pipe.cfg)
    pipe.register(world)
    events = env.workdir / "events.jsonl"
    write_stream(stream, events)
    for role in ("monitor", "worker"):
        pipe.start(role)
    wait_until(lambda: "resuming from stored offsets" in pipe.log("monitor").read_text(), 120, "the chaos monitor assigned",
               proc=pipe.procs["monitor"], log=pipe.log("monitor"))
    seconds = args.minutes * 60
    faults = plan_faults(random.Random(args.seed), seconds, args.faults_per_kind)
    chaos = Chaos(pipe, env.broker, env.pg, env.disk, None if env.pg else env.disk.path / "chaos.db")
    prod = start_producer(env, pipe, events, rate)
    print(f"[{now_s()}] producing {len(stream.messages):,} messages at {rate:,.0f}/s; {len(faults)} faults planned",
          flush=True)
    try:
        chaos.run(faults)
        out, _ = prod.communicate(timeout=seconds * 3 + 600)
        if prod.returncode != 0:
            raise RuntimeError(f"the producer failed (exit {prod.returncode}): {out[-2000:]}")
        produced = json.loads(out.strip().splitlines()[-1])
        print(f"[{now_s()}] producer done: {produced}", flush=True)
        drain = wait_settled(pipe, max(600.0, seconds * 2), chaos)
        produced["drain_s"] = drain
        print(f"[{now_s()}] chaos pipeline consumed everything {drain:.0f}s after the producer finished", flush=True)
    finally:
        chaos.close()
        if prod.poll() is None:
            prod.kill()
        pipe.stop_all()
    return pipe, chaos, faults, produced


def run_reference(env: Env, world: World, chaos_pipe: Pipeline) -> tuple[Pipeline, float]:
    from driftloop.kafka.topics import create_topics

    pipe = Pipeline("undisturbed", pipeline_config(env.workdir, "undisturbed", env.broker.bootstrap,
                                                   env.store_url("undisturbed"), env.shared, world.trust,
                                                   env.reference), env.workdir)
    env.pipes.append(pipe)
    create_topics(pipe.cfg)
    pipe.register(world)
    t = time.monotonic()
    for role in ("monitor", "worker"):
        pipe.start(role)
    try:
        wait_settled(pipe, 1800)
        for role, proc in pipe.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"undisturbed {role} exited with {proc.returncode}")
    finally:
        pipe.stop_all()
    return pipe, time.monotonic() - t


def print_faults(faults: list[Fault], exits: list[Exit]) -> None:
    print(f"\n{'t s':>6}  {'fault':<16}{'planned s':>10}{'actual s':>10}  note")
    for f in faults:
        print(f"{f.started_s:>6.0f}  {f.kind:<16}{f.planned_s:>10.1f}{f.actual_s:>10.1f}  {f.note}")
    for e in exits:
        print(f"\nUNEXPECTED EXIT t={e.t_s:.0f}s: {e.role} exited with {e.code} during {e.during}; last lines:\n{e.tail}")


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate", type=float, default=None, help="messages/s (default: --load of the measured maximum)")
    ap.add_argument("--load", type=float, default=0.5)
    ap.add_argument("--backlog", type=int, default=40_000, help="messages drained to measure the maximum")
    ap.add_argument("--faults-per-kind", type=int, default=None, help="default: 1 per 5 minutes, at least 1")
    ap.add_argument("--disk-size", default="8g", help="the tmpfs holding the store")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--produce", action="store_true", help=argparse.SUPPRESS)
    for name in ("events", "bootstrap", "predictions", "labels"):
        ap.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.produce:
        produce(args)
        return 0
    args.faults_per_kind = args.faults_per_kind or max(1, round(args.minutes / 5))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGTERM, _terminate)       # clean up (processes, broker, mounts) on SIGTERM too
    env = Env(Path(tempfile.mkdtemp(prefix="driftloop-chaos-")), args.store, keep=args.keep)
    t_start = time.monotonic()
    print(f"[{now_s()}] chaos run: store {args.store}, {args.minutes:g} min, seed {args.seed}; work folder {env.workdir}")
    try:
        return _run(env, args, t_start)
    finally:
        env.close()
        if not args.keep:
            import shutil
            shutil.rmtree(env.workdir, ignore_errors=True)


def _run(env: Env, args: argparse.Namespace, t_start: float) -> int:
    env.start(args.disk_size)
    world = build_world(env.workdir, args.seed)
    env.reference = env.workdir / "reference.csv"
    world.reference.to_csv(env.reference, index=False)
    rate = args.rate
    if rate is None:
        calib = generate(world, args.backlog, args.seed + 100)
        top = measure_max(env, world, calib, args.backlog)
        rate = args.load * top
        print(f"[{now_s()}] maximum: {top:,.0f} messages/s (the monitor draining a {args.backlog:,}-message backlog, "
              f"{args.store}); the run publishes at {args.load:.0%}: {rate:,.0f}/s")
    stream = generate(world, int(rate * args.minutes * 60), args.seed)
    chaos_pipe, chaos, faults, produced = run_chaos(env, args, world, stream, rate)
    print(f"[{now_s()}] undisturbed run on the same topics ...", flush=True)
    ref_pipe, ref_s = run_reference(env, world, chaos_pipe)
    print(f"[{now_s()}] undisturbed run consumed everything in {ref_s:.0f}s")
    got, want = outcome(chaos_pipe), outcome(ref_pipe)
    print_faults(faults, chaos.exits)
    bad = compare(got, want, stream)
    if produced.get("errors"):
        bad.append(f"the producer had {produced['errors']} failed sends: {produced.get('first_errors')}")
    bad += [f"{e.role} exited by itself (code {e.code}) at t={e.t_s:.0f}s during {e.during}" for e in chaos.exits]
    for pipe in (chaos_pipe, ref_pipe):
        print(f"{pipe.name}: SIGTERM at the end -> exit " + ", ".join(
            f"{role} {'NOT within 60s (SIGKILLed)' if s is None else f'{s:.1f}s'}" for role, s in pipe.sigterm_s.items()))
    slow = [f"{p.name} {r}" for p in (chaos_pipe, ref_pipe) for r, s in p.sigterm_s.items() if s is None or s > 10]
    if slow:
        print(f"WARNING (not compared): SIGTERM took more than 10 s for {', '.join(slow)}")
    print(f"\nrate {rate:,.0f} messages/s for {args.minutes:g} min: {produced.get('sent', 0):,} messages; "
          f"total {time.monotonic() - t_start:.0f}s")
    for pipe in (chaos_pipe, ref_pipe):
        pipe.store.dispose()
    if bad:
        print("\nMISMATCH:\n  " + "\n  ".join(bad))
        return 1
    print("\nequal: the chaos run's outcome is the undisturbed run's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
