"""Broker faults, on a broker of this module's own (``scripts/kafka.sh`` on free ports; the shared
broker is never touched): stopped for 30 s mid-stream and started again with its data, and down
when the monitor starts.

"Mid-stream" means: a producer keeps publishing at a steady pace before, during and after the
outage (kafka-python retrying and buffering what the broker cannot take: ``delivery_timeout_ms``
and ``max_block_ms`` well above the outage, idempotent so a retried batch is not written twice),
the monitor has consumed part of that stream when the broker stops and has the rest to do when it
comes back, and a retraining job is enqueued (``driftloop retrain``) while the broker is down.

``driftloop monitor`` and ``driftloop retrain-worker`` run as real processes and are never
restarted by the test: whatever works after the outage, they reconnected to by themselves.
"""
from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
import yaml
from kafka import KafkaProducer

from driftloop.alerts import tables as at
from driftloop.app.stats import collect_stats
from driftloop.core.config import Config, load_config
from driftloop.core.store import Store
from driftloop.core.tables import retrain_jobs
from tests.alerts.test_monitor_kafka import DETECTORS, events, reference
from tests.fault_helpers import DedicatedBroker, free_port, in_ci, readyz, spawn, stop_process, wait_until
from tests.kafka_helpers import isolated_kafka, produce, read_topic, wait_for_counts
from tests.retrain.helpers import FAST_RECIPE, job_row

pytestmark = pytest.mark.kafka

OUTAGE_S = 30.0
N = 600            # predictions per detector window; each has its label
STREAM_SLICE = 6   # the third window is published 6 events (12 messages) every 0.4 s: ~40 s in all
STREAM_EVERY_S = 0.4


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
    alerts grouped over 20 s (so an alert detected just before the outage fires during it: the
    stream goes on a few seconds and the broker takes a few more to stop)."""
    reference(tmp_path / "ref.csv")
    tag = uuid.uuid4().hex[:10]
    data: dict[str, Any] = {
        **isolated_kafka(bootstrap, tag),
        "store": {"url": f"sqlite:///{tmp_path}/driftloop.db"},
        "ingest": {"poll_timeout_ms": 200, "max_poll_records": 500},
        "api": {"enabled": True, "port": api_port},
        "registry": {"artifact_dir": str(tmp_path / "artifacts"), "worker_group_id": f"retrain-{tag}",
                     "poll_timeout_ms": 200},
        "alerts": {"group_window_s": 20, "hold_down_s": 3600, "tick_every_s": 1, "stale": {"enabled": False},
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
    """The keys of the alert changes (what the alerts topic carries; an incident's changes, also rows
    of ``alert_events``, go to the paging sinks only)."""
    e = at.alert_events
    with store.engine.connect() as c:
        return {r[0] for r in c.execute(sa.select(e.c.idempotency_key).where(
            e.c.alert_id.not_in(sa.select(at.incidents.c.incident_id))))}


def topic_keys(bootstrap: str, topic: str) -> set[str]:
    return {dict(r.headers)["driftloop-id"].decode() for r in read_topic(bootstrap, topic, timeout_s=10)}


class SteadyProducer(threading.Thread):
    """Publishes ``msgs`` (pairs: a prediction and its label) in slices at a steady pace, through
    a broker outage: kafka-python buffers and retries what the broker cannot take (delivery
    timeout and max block 240 s, far above the outage), idempotent so that a batch written
    before the broker stopped but not acknowledged is not written twice when retried."""

    def __init__(self, bootstrap: str, msgs: list[tuple[str, bytes, bytes]]) -> None:
        super().__init__(daemon=True, name="steady-producer")
        self.bootstrap, self.msgs = bootstrap, msgs
        self.sent = 0          # events handed to the producer so far
        self.acked = 0         # events whose prediction and label the broker acknowledged
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def _ack(self, n: list[int], _meta: Any) -> None:
        with self._lock:
            n[0] += 1
            if n[0] == 2:
                self.acked += 1

    def _err(self, exc: BaseException) -> None:
        with self._lock:
            self.errors.append(exc)

    def run(self) -> None:
        prod = KafkaProducer(bootstrap_servers=self.bootstrap.split(","), acks="all", enable_idempotence=True,
                             linger_ms=20, delivery_timeout_ms=240_000, max_block_ms=240_000,
                             request_timeout_ms=30_000, reconnect_backoff_max_ms=2_000)
        try:
            per = 2 * STREAM_SLICE
            t_next = time.monotonic()
            for i in range(0, len(self.msgs), per):
                for j in range(i, min(i + per, len(self.msgs)), 2):
                    n = [0]
                    for topic, key, value in self.msgs[j:j + 2]:
                        fut = prod.send(topic, key=key, value=value)
                        fut.add_callback(self._ack, n)
                        fut.add_errback(self._err)
                    self.sent += 1
                t_next += STREAM_EVERY_S
                if self.stop.wait(max(0.0, t_next - time.monotonic())):   # pacing, not synchronisation
                    break
            if not self.stop.is_set():
                prod.flush(240)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self._err(exc)
        finally:
            prod.close(timeout=0 if self.stop.is_set() else 10)


def interleaved(cfg: Config, start: int, n: int, drift: bool, ts0: int) -> list[tuple[str, bytes, bytes]]:
    """``messages()``, each prediction directly followed by its label (a live stream's order)."""
    msgs = messages(cfg, start, n, drift, ts0)
    return [m for pair in zip(msgs[:n], msgs[n:]) for m in pair]


def counted(cfg: Config, store: Store) -> int:
    """Predictions the monitor has counted (committed) so far."""
    return int(collect_stats(cfg, store)["models"]["fraud"]["predictions"])


def test_broker_stopped_30s_mid_stream(running_broker, tmp_path):
    """The broker stops for 30 s mid-stream, right after a drift was detected (its alert fires
    during the outage) and restarts with its data. The third window is published at a steady
    pace through the outage: the monitor has counted part of it when the broker stops, the rest
    is buffered by the producer or waits on the broker. A retraining job is enqueued with
    ``driftloop retrain`` while the broker is down (its event stays in the outbox). Without any
    restart of theirs, the monitor and the retrain worker reconnect: ``/readyz`` is 503 during
    the outage and 200 after; the counts are exact (nothing lost, nothing twice); every alert
    change in the store reaches the alerts topic; the job enqueued during the outage is
    published and decided by the worker after it."""
    broker = running_broker
    api_port = free_port()
    path, cfg = write_config(tmp_path, broker.bootstrap, api_port)
    store = Store.from_config(cfg.store)
    store.create_schema()
    ts0 = int(time.time() * 1000) - 600_000
    mlog, wlog, rlog = tmp_path / "monitor.log", tmp_path / "worker.log", tmp_path / "retrain.log"
    monitor = spawn("monitor", "-c", str(path), log=mlog)
    worker = spawn("retrain-worker", "-c", str(path), log=wlog)
    stream = SteadyProducer(broker.bootstrap, interleaved(cfg, 2 * N, N, True, ts0))
    enqueue = None
    try:
        produce(broker.bootstrap, messages(cfg, 0, N, False, ts0))
        wait_for_counts(cfg, want(N), timeout_s=90, proc=monitor)
        # ready before the drift (a rebalance after the first batches answers 503 briefly): from here on the
        # 20 s group window of the alert below is not spent waiting
        wait_until(lambda: (r := readyz(api_port)) is not None and r[0] == 200, 30, "/readyz 200 before the outage",
                   proc=monitor, log=mlog)
        produce(broker.bootstrap, messages(cfg, N, N, True, ts0))
        wait_for_counts(cfg, want(2 * N), timeout_s=90, proc=monitor)
        wait_until(lambda: any(s == "pending" for _, s in alert_rows(store)), 30, "a drift alert pending",
                   proc=monitor, log=mlog)
        before = topic_keys(broker.bootstrap, cfg.topics.alerts)
        assert before == set(), "the alert is still in its group window"

        # mid-stream: the third window flows; the broker stops once the monitor has counted part of it
        stream.start()
        wait_until(lambda: counted(cfg, store) >= 2 * N + 5 * STREAM_SLICE, 60,
                   "the monitor consuming the live stream", proc=monitor, log=mlog)
        t_stop = time.monotonic()
        broker.stop()
        t_down = time.monotonic()
        stop_s = t_down - t_stop
        sent_at_down, acked_at_down = stream.sent, stream.acked
        # a job enqueued while the broker is down: `driftloop retrain` writes it (an outbox row) and
        # gives up publishing after 10 s; the worker publishes it once the broker is back
        enqueue = spawn("retrain", "fraud", "-c", str(path), log=rlog)
        not_ready = []
        while time.monotonic() - t_down < OUTAGE_S or enqueue.poll() is None:
            assert time.monotonic() - t_down < 3 * OUTAGE_S, f"`driftloop retrain` hangs:\n{rlog.read_text()}"
            r = readyz(api_port)
            not_ready.append(r is not None and r[0] == 503 and not r[1]["checks"]["broker"]["ok"])
            assert monitor.poll() is None and worker.poll() is None, "a process died during the outage"
            time.sleep(1.0)
        assert sum(not_ready) >= len(not_ready) - 7, f"/readyz must report the outage: {not_ready}"
        assert any(s == "firing" for _, s in alert_rows(store)), "the alert fired during the outage"
        out = rlog.read_text()
        assert enqueue.returncode == 0 and "not published yet" in out, out
        m = re.search(r"enqueued (\S+) for fraud", out)
        assert m, out
        job_id = m.group(1)
        assert job_row(store, job_id).status == "queued"
        counted_down = counted(cfg, store)        # all the monitor could count: the broker is away
        sent_at_up = stream.sent
        in_flight = 2 * N + sent_at_up - counted_down
        assert counted_down < 3 * N and in_flight > 0, "the monitor still has work when the broker returns"
        assert sent_at_up > sent_at_down, "the producer kept publishing during the outage"
        outage_s = time.monotonic() - t_down

        broker.start()
        t_up = time.monotonic()
        wait_until(lambda: counted(cfg, store) > counted_down, 120, "the monitor consuming after the outage",
                   proc=monitor, log=mlog)
        consuming_s = time.monotonic() - t_up
        stream.join(300)
        assert not stream.is_alive(), "the producer did not finish"
        assert not stream.errors, f"the producer lost records: {stream.errors[:3]}"
        wait_until(lambda: stream.acked == N, 30, "every event of the live window acknowledged")
        assert stream.sent == N and not stream.errors
        wait_for_counts(cfg, want(3 * N), timeout_s=180, proc=monitor)
        wait_until(lambda: (r := readyz(api_port)) is not None and r[0] == 200, 60, "/readyz 200 after the outage",
                   proc=monitor, log=mlog)
        ready_s = time.monotonic() - t_up
        keys = event_keys(store)
        wait_until(lambda: keys <= topic_keys(broker.bootstrap, cfg.topics.alerts), 90,
                   "the alert fired during the outage on the alerts topic", proc=monitor, log=mlog)
        alert_s = time.monotonic() - t_up

        # the worker: the job enqueued during the outage is published after it, consumed and decided
        wait_until(lambda: job_row(store, job_id).status in ("done", "failed"), 180,
                   "the retraining job decided by the worker", proc=worker, log=wlog)
        job_s = time.monotonic() - t_up
        job = job_row(store, job_id)
        with store.engine.connect() as c:
            assert c.execute(sa.select(sa.func.count()).select_from(retrain_jobs)).scalar() == 1
        # every alert change (including the resolutions the new champion brings) reaches the topic
        wait_until(lambda: event_keys(store) <= topic_keys(broker.bootstrap, cfg.topics.alerts), 90,
                   "every alert change on the alerts topic", proc=monitor, log=mlog)
    finally:
        stream.stop.set()
        stream.join(15)
        if enqueue is not None and enqueue.poll() is None:
            enqueue.kill()
            enqueue.wait(10)
        t_monitor = stop_process(monitor)
        t_worker = stop_process(worker)
        store.dispose()
    stats = wait_for_counts(cfg, want(3 * N), timeout_s=5)
    assert stats["models"]["fraud"]["pending_labels"] == 0
    for log in (mlog, wlog):
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    print(f"\nbroker stopped ({stop_s:.1f}s to stop) after the monitor counted {counted_down - 2 * N} of {N} "
          f"events of the live window; down {outage_s:.1f}s; the producer sent {sent_at_up - sent_at_down} events "
          f"during the outage; {in_flight} events in flight (sent, not counted) when the broker returned, "
          f"{acked_at_down - (counted_down - 2 * N)} of them acknowledged by the broker before it stopped; "
          f"job {job.status}/{job.decision} enqueued during the outage\n"
          f"broker back -> consuming {consuming_s:.1f}s, /readyz 200 {ready_s:.1f}s, alert delivered "
          f"{alert_s:.1f}s, job decided {job_s:.1f}s; final counts {stats['models']['fraud']['predictions']} "
          f"predictions, {stats['models']['fraud']['joined']} joined, 0 duplicates; "
          f"SIGTERM monitor {t_monitor:.1f}s, worker {t_worker:.1f}s")


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
