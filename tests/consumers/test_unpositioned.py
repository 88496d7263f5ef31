"""A rebalance while the store is down (no broker here: a fake consumer, real SQLite stores).

The rebalance listeners of the monitor and of the retrain worker must never raise: kafka-python
turns an exception of a listener into ``KafkaError("User rebalance callback throws an error")``
out of ``poll()``, and the process exits. A partition assigned while its stored offset cannot be
read is paused and unpositioned; no record of it is processed; once the store answers it is
sought to the stored offset and resumed; ``/readyz`` names it meanwhile.

The store fails for real: its SQLite file is in a folder renamed away (``unable to open database
file``), or another connection holds ``BEGIN EXCLUSIVE`` (``database is locked``).
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import TopicPartition

from consumers.monitor import Monitor, _SeekToStored
from driftloop.app.api.live import Readiness, monitor_snapshot
from driftloop.core.config import load_config_dict
from driftloop.core.store import Store
from driftloop.kafka.offsets import advance_offsets

GROUP = "g"


class FakeConsumer:
    """The calls of kafka-python's consumer that the listeners and the poll loop make."""

    def __init__(self, assigned: list[TopicPartition]) -> None:
        self.assigned = set(assigned)
        self._paused: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, Any] = {}
        self.to_poll: dict[TopicPartition, list[Any]] = {}

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def pause(self, *tps: TopicPartition) -> None:
        for tp in tps:
            if tp not in self.assigned:
                raise AssertionError(f"pause of {tp}, not assigned")
        self._paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self._paused.difference_update(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self.positions.update({tp: "beginning" for tp in tps})

    def seek_to_end(self, *tps: TopicPartition) -> None:
        self.positions.update({tp: "end" for tp in tps})

    def poll(self, **_: Any) -> dict[TopicPartition, list[Any]]:
        out, self.to_poll = self.to_poll, {}
        return out

    def highwater(self, tp: TopicPartition) -> None:
        return None


def record(tp: TopicPartition, offset: int) -> SimpleNamespace:
    return SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=offset, value=b"{}", key=None,
                           headers=[], timestamp=0)


@pytest.fixture
def cfg():
    return load_config_dict({"kafka": {"group_id": GROUP}, "models": {
        "fraud": {"task": "classification", "features": {"amount": "numeric"}}}}, environ={})


class SqliteFault:
    """A SQLite store whose folder can be renamed away (the file cannot be opened) and back."""

    def __init__(self, tmp_path: Path, offsets: dict[tuple[str, int], int]) -> None:
        self.dir = tmp_path / "store"
        self.away = tmp_path / "store-away"
        self.dir.mkdir()
        self.url = f"sqlite:///{self.dir}/driftloop.db"
        store = Store(self.url)
        store.create_schema()
        if offsets:
            with store.transaction() as conn:
                advance_offsets(store, conn, GROUP, {k: None for k in offsets}, offsets, 0)
        store.dispose()

    def break_(self) -> None:
        self.dir.rename(self.away)

    def repair(self) -> None:
        self.away.rename(self.dir)


@pytest.fixture
def fault(tmp_path):
    return SqliteFault(tmp_path, {("p", 0): 42, ("p", 1): 7})


P0, P1, P2 = TopicPartition("p", 0), TopicPartition("p", 1), TopicPartition("p", 2)


def monitor_with(cfg, fault: SqliteFault, consumer: FakeConsumer) -> Monitor:
    m = Monitor(cfg, Store(fault.url, busy_timeout_ms=200))   # never connected before the fault
    m.consumer = consumer
    m._last_expire = float("inf")      # no housekeeping writes in these tests
    return m


def due(positioner: Any) -> None:
    """The backoff has passed (rather than waiting for it)."""
    positioner._retry_at = 0.0


def test_monitor_listener_does_not_raise_while_the_store_is_down(cfg, fault):
    consumer = FakeConsumer([P0, P1, P2])
    fault.break_()
    monitor = monitor_with(cfg, fault, consumer)
    _SeekToStored(monitor).on_partitions_assigned({P0, P1, P2})     # the old listener raised here
    assert consumer.paused() == {P0, P1, P2} and consumer.positions == {}
    assert monitor.expected == {}, "an unpositioned partition has no expected offset"
    assert monitor.unpositioned == {("p", 0), ("p", 1), ("p", 2)}
    ok, detail = Readiness(cfg, monitor.store, monitor).consumer()
    assert ok is False and "p[0], p[1], p[2]" in detail and "unable to open database file" in detail
    assert monitor_snapshot(monitor)["unpositioned"] == [{"topic": "p", "partition": i} for i in range(3)]


def test_monitor_processes_no_record_of_an_unpositioned_partition_and_positions_it_later(cfg, fault):
    consumer = FakeConsumer([P0, P1, P2])
    fault.break_()
    monitor = monitor_with(cfg, fault, consumer)
    processed: list[Any] = []
    monitor._process = processed.extend                               # type: ignore[method-assign]  # the test records what the monitor would process
    _SeekToStored(monitor).on_partitions_assigned({P0, P1, P2})
    consumer.resume(P0, P1, P2)            # something resumed them (a store-backoff resume, say)...
    consumer.to_poll = {P0: [record(P0, 3)], P1: [record(P1, 0)]}     # ...and records came
    assert monitor.poll_once() == 0 and processed == []
    assert consumer.paused() == {P0, P1, P2}, "paused again, before the poll and after it"
    due(monitor.positioner)
    monitor.poll_once()                    # the store still fails: still unpositioned
    assert monitor.unpositioned == {("p", 0), ("p", 1), ("p", 2)} and monitor.positioner.failures == 2

    fault.repair()
    monitor.poll_once()                    # within the backoff: not tried yet
    assert monitor.expected == {} and consumer.paused() == {P0, P1, P2}
    due(monitor.positioner)
    consumer.to_poll = {P0: [record(P0, 42)]}
    monitor.poll_once()
    assert consumer.positions == {P0: 42, P1: 7, P2: "beginning"}
    assert monitor.expected == {("p", 0): 42, ("p", 1): 7, ("p", 2): None}
    assert monitor.unpositioned == frozenset() and consumer.paused() == set()
    assert [(r.partition, r.offset) for r in processed] == [(0, 42)]
    assert Readiness(cfg, monitor.store, monitor).consumer()[0] is True


def test_a_store_backoff_resume_leaves_unpositioned_partitions_paused(cfg, fault):
    consumer = FakeConsumer([P0, P1])
    monitor = monitor_with(cfg, fault, consumer)
    monitor.seek_to_stored([P0])           # positioned while the store answered
    fault.break_()
    monitor.store.dispose()
    _SeekToStored(monitor).on_partitions_assigned({P1})
    consumer.pause(P0)                     # a batch failed: consumption paused, retry due now
    monitor._retry_at, monitor.store_failures = 0.0, 1
    monitor.poll_once()
    assert consumer.paused() == {P1} and monitor.unpositioned == {("p", 1)}


def test_monitor_revoke_and_a_new_assignment_forget_unpositioned_partitions(cfg, fault):
    consumer = FakeConsumer([P0, P1])
    fault.break_()
    monitor = monitor_with(cfg, fault, consumer)
    listener = _SeekToStored(monitor)
    listener.on_partitions_assigned({P0, P1})
    listener.on_partitions_revoked({P0, P1})
    assert monitor.unpositioned == frozenset()
    listener.on_partitions_assigned({P1})
    consumer.assigned = {P2}               # the consumer was replaced meanwhile: P1 is not ours any more
    monitor.poll_once()
    assert monitor.unpositioned == frozenset() and monitor.positioner.error is None


def test_sqlite_locked_by_another_process_during_the_assignment(cfg, fault):
    """``database is locked`` (BEGIN EXCLUSIVE held elsewhere) instead of a missing file."""
    consumer = FakeConsumer([P0])
    monitor = monitor_with(cfg, fault, consumer)
    locker = sqlite3.connect(str(fault.dir / "driftloop.db"), isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        _SeekToStored(monitor).on_partitions_assigned({P0})
        assert monitor.unpositioned == {("p", 0)} and "database is locked" in (monitor.unpositioned_error or "")
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    due(monitor.positioner)
    monitor.poll_once()
    assert monitor.expected == {("p", 0): 42} and consumer.positions == {P0: 42}


def test_positioner_backs_off_doubling_up_to_the_cap():
    from driftloop.kafka.offsets import Positioner

    now = [0.0]
    calls: list[float] = []

    def read(group, keys):
        calls.append(now[0])
        raise OSError("down")

    pos = Positioner(read, GROUP, clock=lambda: now[0])
    consumer, expected = FakeConsumer([P0]), {}
    pos.assign(consumer, [P0], expected)
    for _ in range(400):
        now[0] += 0.25
        pos.retry(consumer, expected)
    gaps = [b - a for a, b in zip(calls, calls[1:])]
    assert gaps[:6] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0] and set(gaps[6:]) == {10.0}


def test_positioner_hold_pauses_stray_records_of_unpositioned_partitions():
    from driftloop.kafka.offsets import Positioner

    pos = Positioner(lambda g, k: (_ for _ in ()).throw(OSError("down")), GROUP)
    consumer, expected = FakeConsumer([P0, P1]), {("p", 1): 5}
    pos.assign(consumer, [P0], expected)
    consumer.resume(P0)
    pos.hold(consumer, {P0: [record(P0, 0)], P1: [record(P1, 5)]})
    assert consumer.paused() == {P0}


# -- the retrain worker's listener -----------------------------------------------------------
@pytest.fixture
def worker_env(tmp_path):
    from tests.retrain.helpers import config_data, write_config

    _, wcfg = write_config(tmp_path, config_data(tmp_path))
    return wcfg, SqliteFault(tmp_path, {}), wcfg.topics.retrain


def test_worker_listener_does_not_raise_while_the_store_is_down(worker_env):
    from driftloop.core.config.retrain import registry_config
    from retrain.worker import RetrainWorker, _Listener

    wcfg, fault, topic = worker_env
    group = registry_config(wcfg).worker_group_id
    store = Store(fault.url, busy_timeout_ms=200)
    with store.transaction() as conn:
        advance_offsets(store, conn, group, {(topic, 0): None}, {(topic, 0): 9}, 0)
    store.dispose()
    fault.break_()
    t0, t1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    worker = RetrainWorker(wcfg, Store(fault.url, busy_timeout_ms=200), worker_id="w")
    worker.consumer = consumer = FakeConsumer([t0, t1])
    _Listener(worker).on_partitions_assigned({t0, t1})                 # the old listener raised here
    assert consumer.paused() == {t0, t1} and worker.expected == {}
    consumer.resume(t0, t1)     # the end of a job resumes every paused partition
    consumer.to_poll = {t0: [record(t0, 0)]}
    outcome = worker.poll_once()
    assert outcome is None and consumer.paused() == {t0, t1}, "no job of an unpositioned partition runs"
    fault.repair()
    due(worker.positioner)
    worker.busy.set()             # positioned during a job: stays paused until the job ends
    worker.position_pending()
    assert worker.expected == {(topic, 0): 9, (topic, 1): None} and consumer.paused() == {t0, t1}
    assert consumer.positions == {t0: 9, t1: "beginning"}
    worker.busy.clear()
    consumer.resume(t0, t1)       # the job ended
    fault.break_()
    worker.store.dispose()        # (a pooled connection would still read the renamed file)
    _Listener(worker).on_partitions_revoked({t1})
    _Listener(worker).on_partitions_assigned({t1})
    assert consumer.paused() == {t1} and worker.expected == {(topic, 0): 9}
    fault.repair()
    due(worker.positioner)
    worker.position_pending()
    assert consumer.paused() == set(), "positioned when no job runs: resumed"
    assert worker.expected == {(topic, 0): 9, (topic, 1): None}
