"""A kafka-python consumer call that never returns, or a consumer that polls but never gets the
records its partitions hold (both seen after broker outages with kafka-python 3.0.12): the
consumer is replaced, and the monitor and the retrain worker go on on the real broker, counting
exactly."""
from __future__ import annotations

import threading
import time

import orjson
import pytest
from kafka.future import Future

from consumers.monitor import Monitor
from driftloop.app.stats import collect_stats
from driftloop.core.store import Store
from driftloop.kafka.stuck_calls import CallWatchdog, StallCheck
from driftloop.kafka.topics import create_topics
from retrain.policy import RetrainScheduler
from retrain.worker import RetrainWorker
from tests.fault_helpers import wait_until
from tests.kafka_helpers import consumed_to_end, produce, publish_outbox, wait_for_counts
from tests.retrain.helpers import agrawal, config_data, insert_examples, job_row, write_config

pytestmark = pytest.mark.kafka

T0 = int(time.time() * 1000) - 3_600_000


def predictions(cfg, start: int, n: int) -> list[tuple[str, bytes, bytes]]:
    rows = agrawal(n, function=0, seed=start)
    return [(cfg.topics.predictions, b"agr", orjson.dumps({
        "event_id": f"p{start + i}", "model": "agr", "ts": T0 + start + i, "features": x, "prediction": str(y)}))
        for i, (x, y) in enumerate(rows)]


def jam_next_fetch(consumer) -> threading.Event:
    """The consumer's next fetch waits on the IO loop for a future that never completes: the
    state the watchdog was written for. Returns an event set when the jam is entered."""
    entered = threading.Event()
    fetcher = consumer._fetcher
    original = fetcher.send_fetches

    def jammed():
        fetcher.send_fetches = original          # only once
        entered.set()
        return consumer._net.run(consumer._manager.wait_for, Future(), None)

    fetcher.send_fetches = jammed
    return entered


def starve(consumer) -> None:
    """The consumer's polls return nothing from now on, whatever its partitions hold. Returns
    once a poll has called the starved ``fetch_records``: one that was already waiting in the
    real one (up to the poll timeout) is over, so records produced now can only reach a new
    consumer."""
    called = threading.Event()

    def nothing(*_a, **_kw):
        called.set()
        return {}, True

    consumer._fetcher.fetch_records = nothing
    assert called.wait(30), "the consumer never polled again"


def quick_watchdog(owner: str) -> CallWatchdog:
    return CallWatchdog(owner, nudge_after_s=0.5, give_up_after_s=2.0, check_every_s=0.1)


class CountingStallCheck(StallCheck):
    """A :class:`StallCheck` that records each check's verdict: a test waits for checks to have
    run, not for the time they should take."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.verdicts: list[bool] = []

    def check(self, consumer, timeout_ms: int = 5000) -> bool:
        verdict = super().check(consumer, timeout_ms)
        self.verdicts.append(verdict)
        return verdict


def counts(cfg, model: str = "agr") -> dict[str, int]:
    store = Store.from_config(cfg.store)
    try:
        return collect_stats(cfg, store)["models"][model]
    finally:
        store.dispose()


def test_monitor_replaces_a_stuck_consumer_and_counts_exactly(kafka_bootstrap, tmp_path):
    path, cfg = write_config(tmp_path, config_data(tmp_path, bootstrap=kafka_bootstrap))
    create_topics(cfg)
    monitor = Monitor(cfg, Store.from_config(cfg.store))
    monitor.watchdog = quick_watchdog("monitor-test")
    t = threading.Thread(target=monitor.run, kwargs={"max_seconds": 120}, daemon=True)
    t.start()
    try:
        produce(kafka_bootstrap, predictions(cfg, 0, 500))
        wait_for_counts(cfg, {"predictions": 500}, model="agr", timeout_s=60)
        jammed = jam_next_fetch(monitor.consumer)
        assert jammed.wait(30), "the monitor never fetched again"
        produce(kafka_bootstrap, predictions(cfg, 500, 500) + predictions(cfg, 0, 100))   # 100 duplicates
        wait_for_counts(cfg, {"predictions": 1000, "duplicates": 100}, model="agr", timeout_s=60)
        assert monitor.consumers_replaced == 1
        assert monitor.watchdog.give_ups == 1 and monitor.watchdog.nudges == 1
        # nothing arrives twice after the replacement: once the store's offsets reached the end of
        # every partition nothing more can be counted, and the counts are still exact
        wait_until(lambda: consumed_to_end(cfg), 60, "the monitor's offsets at the end of the topics")
        got = counts(cfg)
        assert (got["predictions"], got["duplicates"]) == (1000, 100), got
    finally:
        monitor.stop()
        t.join(30)
    assert not t.is_alive()


@pytest.mark.parametrize("fault", ["stuck_call", "starved"])
def test_worker_replaces_a_broken_consumer_and_decides_the_next_job(kafka_bootstrap, tmp_path, fault):
    path, cfg = write_config(tmp_path, config_data(tmp_path, bootstrap=kafka_bootstrap))
    store = Store.from_config(cfg.store)
    store.create_schema()
    create_topics(cfg)
    worker = RetrainWorker(cfg, Store.from_config(cfg.store), worker_id="worker-stuck")
    worker.watchdog = quick_watchdog("worker-test")
    worker.stall = StallCheck("worker-test", check_after_s=1.0, replace_after_s=2.0)
    t = threading.Thread(target=worker.run, kwargs={"max_seconds": 120}, daemon=True)
    t.start()
    try:
        wait_until(lambda: worker.expected, 60, "the worker assigned its partitions")
        if fault == "stuck_call":
            jammed = jam_next_fetch(worker.consumer)
            assert jammed.wait(30), "the worker never fetched again"
        else:
            starve(worker.consumer)
        insert_examples(store, "agr", agrawal(600, function=0, seed=3), start_ts=T0)
        job = RetrainScheduler(cfg, store).enqueue_manual("agr", requested_by="test")
        publish_outbox(cfg, store, [cfg.topics.retrain])

        def status():
            return job_row(store, job.job_id).status

        wait_until(lambda: status() in ("done", "failed"), 60, "the job decided after the replacement")
        assert worker.consumers_replaced == 1
        assert (worker.watchdog.give_ups, worker.stall.stalls) == ((1, 0) if fault == "stuck_call" else (0, 1))
    finally:
        worker.stop()
        t.join(30)
    assert not t.is_alive()


def test_a_starved_monitor_consumer_is_replaced_and_nothing_is_lost(kafka_bootstrap, tmp_path):
    path, cfg = write_config(tmp_path, config_data(tmp_path, bootstrap=kafka_bootstrap))
    create_topics(cfg)
    monitor = Monitor(cfg, Store.from_config(cfg.store))
    monitor.stall = stall = CountingStallCheck("monitor-test", check_after_s=1.0, replace_after_s=2.0)
    t = threading.Thread(target=monitor.run, kwargs={"max_seconds": 120}, daemon=True)
    t.start()
    try:
        produce(kafka_bootstrap, predictions(cfg, 0, 300))
        wait_for_counts(cfg, {"predictions": 300}, model="agr", timeout_s=60)
        wait_until(lambda: consumed_to_end(cfg), 60, "the monitor caught up")
        idle_from = len(stall.verdicts)
        # idle, caught up: two checks run (check_after_s apart) and find nothing behind
        wait_until(lambda: len(stall.verdicts) >= idle_from + 2, 30, "two stall checks while idle", every_s=0.1)
        assert stall.verdicts[idle_from:] == [False] * (len(stall.verdicts) - idle_from)
        assert stall.stalls == 0 and monitor.consumers_replaced == 0
        starve(monitor.consumer)
        produce(kafka_bootstrap, predictions(cfg, 300, 300))
        wait_for_counts(cfg, {"predictions": 600, "duplicates": 0}, model="agr", timeout_s=60)
        assert monitor.stall.stalls == 1 and monitor.consumers_replaced == 1
    finally:
        monitor.stop()
        t.join(30)
    assert not t.is_alive()
