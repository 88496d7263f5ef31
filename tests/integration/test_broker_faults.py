"""Broker faults, on a broker of this module's own (``scripts/kafka.sh`` on free ports; the shared
broker is never touched): stopped for 30 s mid-stream and started again with its data, and down
when the monitor starts.

``driftloop monitor`` and ``driftloop retrain-worker`` run as real processes and are never
restarted by the test: whatever works after the outage, they reconnected to by themselves.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
import yaml

import retrain  # noqa: F401 - the registry's tables
from driftloop.alerts import tables as at
from driftloop.config import Config, load_config
from driftloop.store import Store
from retrain.policy import RetrainScheduler
from retrain.tables import retrain_jobs
from tests.alerts.test_monitor_kafka import DETECTORS, events, reference
from tests.fault_helpers import DedicatedBroker, free_port, in_ci, readyz, spawn, stop_process, wait_until
from tests.kafka_helpers import produce, publish_outbox, read_topic, wait_for_counts
from tests.retrain.helpers import FAST_RECIPE

pytestmark = pytest.mark.kafka

OUTAGE_S = 30.0
N = 600            # predictions per detector window; each has its label


@pytest.fixture(scope="module")
def broker() -> Iterator[DedicatedBroker]:
    b = DedicatedBroker()
    try:
        b.start()
    except (RuntimeError, OSError) as exc:
        b.close()
        msg = f"the dedicated broker did not start (needs .kafka/lib: scripts/kafka.sh fetch): {exc}"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    yield b
    b.close()


@pytest.fixture
def running_broker(broker: DedicatedBroker) -> DedicatedBroker:
    broker.start()       # idempotent: a test that stopped it leaves it for the next
    return broker


def write_config(tmp_path: Path, bootstrap: str, api_port: int) -> tuple[Path, Config]:
    """The fraud model with a reference sample, data-drift detectors on 600-event windows and
    alerts grouped over 10 s (so an alert detected just before the outage fires during it)."""
    reference(tmp_path / "ref.csv")
    tag = uuid.uuid4().hex[:10]
    data: dict[str, Any] = {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": f"test-{tag}", "session_timeout_ms": 6000,
                  "heartbeat_interval_ms": 1000},
        "topics": {name: f"t{tag}.{name}" for name in ("predictions", "labels", "alerts", "retrain", "models", "dlq")}
        | {"partitions": 3},
        "store": {"url": f"sqlite:///{tmp_path}/driftloop.db"},
        "ingest": {"poll_timeout_ms": 200, "max_poll_records": 500},
        "api": {"enabled": True, "port": api_port},
        "registry": {"artifact_dir": str(tmp_path / "artifacts"), "worker_group_id": f"retrain-{tag}",
                     "poll_timeout_ms": 200},
        "alerts": {"group_window_s": 10, "hold_down_s": 3600, "tick_every_s": 1, "stale": {"enabled": False},
                   "dispatch": {"poll_interval_s": 0.2, "backoff_initial_s": 0.5, "backoff_max_s": 2}},
        "models": {"fraud": {"task": "classification",
                             "features": {"amount": "numeric", "age": "numeric", "country": "categorical"},
                             "reference": str(tmp_path / "ref.csv"), "detectors": DETECTORS,
                             # no job from the alert itself: the test enqueues one (else "already in flight", by timing)
                             "retrain": {"on_kinds": [], "min_examples": 500, "cooldown_s": 0,
                                         "recipe": FAST_RECIPE}}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, load_config(path, environ={})


def messages(cfg: Config, start: int, n: int, drift: bool, ts0: int) -> list[tuple[str, bytes, bytes]]:
    evs = events(start, n, drift, ts0)
    return ([(cfg.topics.predictions, b"fraud", orjson.dumps(e)) for e in evs]
            + [(cfg.topics.labels, b"fraud", orjson.dumps({"event_id": e["event_id"], "model": "fraud",
                                                           "ts": e["ts"] + 1000, "label": i % 2}))
               for i, e in enumerate(evs)])


def want(n: int) -> dict[str, int]:
    return {"predictions": n, "labels": n, "joined": n, "duplicates": 0, "invalid": 0}


def alert_rows(store: Store) -> list[Any]:
    with store.engine.connect() as c:
        return list(c.execute(sa.select(at.alerts.c.alert_id, at.alerts.c.status)))


def event_keys(store: Store) -> set[str]:
    with store.engine.connect() as c:
        return {r[0] for r in c.execute(sa.select(at.alert_events.c.idempotency_key))}


def topic_keys(bootstrap: str, topic: str) -> set[str]:
    return {dict(r.headers)["driftloop-id"].decode() for r in read_topic(bootstrap, topic, timeout_s=10)}


def test_broker_stopped_30s_mid_stream(running_broker, tmp_path):
    """The broker stops for 30 s mid-stream, right after a drift was detected (its alert fires
    during the outage) and restarts with its data. Without any restart of theirs, the monitor
    and the retrain worker reconnect: ``/readyz`` is 503 during the outage and 200 after; the
    counts are exact (nothing lost, nothing twice); every alert change in the store reaches
    the alerts topic; a retraining job published after the outage is decided by the worker."""
    broker = running_broker
    api_port = free_port()
    path, cfg = write_config(tmp_path, broker.bootstrap, api_port)
    store = Store.from_config(cfg.store)
    store.create_schema()
    ts0 = int(time.time() * 1000) - 600_000
    mlog, wlog = tmp_path / "monitor.log", tmp_path / "worker.log"
    monitor = spawn("monitor", "-c", str(path), log=mlog)
    worker = spawn("retrain-worker", "-c", str(path), log=wlog)
    try:
        produce(broker.bootstrap, messages(cfg, 0, N, False, ts0) + messages(cfg, N, N, True, ts0))
        wait_for_counts(cfg, want(2 * N), timeout_s=90, proc=monitor)
        wait_until(lambda: any(s == "pending" for _, s in alert_rows(store)), 30, "a drift alert pending",
                   proc=monitor, log=mlog)
        assert wait_until(lambda: readyz(api_port), 30, "/readyz answers")[0] == 200
        before = topic_keys(broker.bootstrap, cfg.topics.alerts)
        assert before == set(), "the alert is still in its group window"

        broker.stop()
        t_down = time.monotonic()
        not_ready = []
        while time.monotonic() - t_down < OUTAGE_S:
            r = readyz(api_port)
            not_ready.append(r is not None and r[0] == 503 and not r[1]["checks"]["broker"]["ok"])
            assert monitor.poll() is None and worker.poll() is None, "a process died during the outage"
            time.sleep(1.0)
        assert sum(not_ready) >= len(not_ready) - 7, f"/readyz must report the outage: {not_ready}"
        assert any(s == "firing" for _, s in alert_rows(store)), "the alert fired during the outage"

        broker.start()
        t_up = time.monotonic()
        produce(broker.bootstrap, messages(cfg, 2 * N, N, True, ts0))
        wait_for_counts(cfg, want(3 * N), timeout_s=90, proc=monitor)
        consuming_s = time.monotonic() - t_up
        wait_until(lambda: (r := readyz(api_port)) is not None and r[0] == 200, 60, "/readyz 200 after the outage",
                   proc=monitor, log=mlog)
        ready_s = time.monotonic() - t_up
        keys = event_keys(store)
        wait_until(lambda: keys <= topic_keys(broker.bootstrap, cfg.topics.alerts), 60,
                   "the alert fired during the outage on the alerts topic", proc=monitor, log=mlog)
        alert_s = time.monotonic() - t_up

        # the worker: a job published after the outage is consumed and decided
        job = RetrainScheduler(cfg, store).enqueue_manual("fraud", requested_by="test")
        publish_outbox(cfg, store, [cfg.topics.retrain])

        def decided() -> bool:
            with store.engine.connect() as c:
                return c.execute(sa.select(retrain_jobs.c.status).where(retrain_jobs.c.job_id == job.job_id)
                                 ).scalar() in ("done", "failed")
        wait_until(decided, 90, "the retraining job decided by the worker", proc=worker, log=wlog)
        # every alert change (including the resolutions the new champion brings) reaches the topic
        wait_until(lambda: event_keys(store) <= topic_keys(broker.bootstrap, cfg.topics.alerts), 60,
                   "every alert change on the alerts topic", proc=monitor, log=mlog)
    finally:
        t_monitor = stop_process(monitor)
        t_worker = stop_process(worker)
        store.dispose()
    stats = wait_for_counts(cfg, want(3 * N), timeout_s=5)
    assert stats["models"]["fraud"]["pending_labels"] == 0
    for log in (mlog, wlog):
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    print(f"\nbroker back -> consuming {consuming_s:.1f}s, /readyz 200 {ready_s:.1f}s, alert delivered "
          f"{alert_s:.1f}s; SIGTERM monitor {t_monitor:.1f}s, worker {t_worker:.1f}s")


def test_monitor_started_while_the_broker_is_down(running_broker, tmp_path):
    """A clear line every few seconds and retries, no stack trace; consuming once the broker is up."""
    broker = running_broker
    path, cfg = write_config(tmp_path, broker.bootstrap, free_port())
    broker.stop()
    mlog = tmp_path / "monitor.log"
    monitor = spawn("monitor", "-c", str(path), log=mlog)
    try:
        wait_until(lambda: mlog.read_text().count("not reachable yet") >= 2, 60,
                   "the monitor says the broker is not reachable, twice", proc=monitor, log=mlog)
        t_up = time.monotonic()
        broker.start()
        produce(broker.bootstrap, messages(cfg, 0, N, False, int(time.time() * 1000) - 600_000))
        wait_for_counts(cfg, want(N), timeout_s=90, proc=monitor)
        took = time.monotonic() - t_up
    finally:
        stop_process(monitor)
    text = mlog.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert "Kafka broker at" in text and "answers after" in text
    print(f"\nbroker started -> events counted in {took:.1f}s")
