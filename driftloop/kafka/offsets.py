"""Consumed offsets kept in the store, written in the batch's own transaction, with fencing.

The store, not Kafka's group coordinator, is the source of truth for where each partition
resumes: a batch's state changes and its next offsets commit together or not at all.

Fencing: each consumer remembers the offset it believes is stored for every partition it
owns. Before writing a batch it re-reads those rows (locked ``FOR UPDATE`` on PostgreSQL;
SQLite has one writer) and, if any differs, another member of the group has processed that
partition since a rebalance: the batch is rolled back (:class:`Fenced`) and the consumer seeks
back to what is stored. That is what keeps counts exact when partitions move mid-batch.

Positioning (:class:`Positioner`): a partition assigned while its stored offset cannot be read
(the store is down during a rebalance) is NOT an error of the rebalance. kafka-python turns any
exception of a rebalance listener into a ``KafkaError`` out of ``poll()``, which would end the
process. Instead the partition is paused and held *unpositioned*: it has no entry in the owner's
``expected`` (so no batch can be committed for it, and no record of it is processed), and the
poll loop tries again with backoff (0.5 s doubling, at most :data:`MAX_POSITION_BACKOFF_S`).
Once the store answers it is sought to the stored offset, enters ``expected`` and the owner
resumes it. Whatever the consumer fetched for it meanwhile is discarded by that seek.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from driftloop.core.store import Store, offsets

__all__ = ["Fenced", "TopicPartitionKey", "read_offsets", "advance_offsets", "seek_to_stored", "Positioner",
           "MAX_POSITION_BACKOFF_S"]

log = logging.getLogger(__name__)

TopicPartitionKey = tuple[str, int]

MAX_POSITION_BACKOFF_S = 10.0
"""Longest wait between two tries to read the stored offsets of unpositioned partitions."""


class Fenced(RuntimeError):
    """Another consumer advanced one of this batch's partitions: the batch must be dropped."""

    def __init__(self, moved: dict[TopicPartitionKey, int | None]) -> None:
        super().__init__(f"partitions processed by another consumer: {sorted(moved)}")
        self.moved = moved


def read_offsets(conn: Connection, group: str, keys: list[TopicPartitionKey], *,
                 for_update: bool = False) -> dict[TopicPartitionKey, int]:
    out: dict[TopicPartitionKey, int] = {}
    topics = sorted({t for t, _ in keys})
    if not topics:
        return out
    q = sa.select(offsets.c.topic, offsets.c.partition, offsets.c.next_offset).where(
        offsets.c.group_id == group, offsets.c.topic.in_(topics))
    if for_update:
        q = q.with_for_update()
    wanted = set(keys)
    for topic, partition, nxt in conn.execute(q):
        if (topic, partition) in wanted:
            out[(topic, partition)] = int(nxt)
    return out


def advance_offsets(store: Store, conn: Connection, group: str,
                    expected: dict[TopicPartitionKey, int | None],
                    new: dict[TopicPartitionKey, int], ts: int) -> None:
    """Check ``expected`` against the stored offsets, then store ``new``; raise :class:`Fenced`."""
    stored = read_offsets(conn, group, list(new), for_update=not store.is_sqlite)
    moved = {k: stored.get(k) for k in new if stored.get(k) != expected.get(k)}
    if moved:
        raise Fenced(moved)
    ins = store._insert(offsets)
    conn.execute(ins.on_conflict_do_update(
        index_elements=["group_id", "topic", "partition"],
        set_={"next_offset": ins.excluded.next_offset, "updated_at": ins.excluded.updated_at}),
        [{"group_id": group, "topic": t, "partition": p, "next_offset": o, "updated_at": ts}
         for (t, p), o in sorted(new.items())])


def seek_to_stored(consumer: Any, store: Store, group: str, assigned: list[Any], *,
                   start_from: str = "earliest") -> dict[TopicPartitionKey, int | None]:
    """Seek each assigned partition to its stored offset (or to ``start_from`` when none is
    stored); returns the stored offset per partition, what the next batch expects to find."""
    keys = [(tp.topic, tp.partition) for tp in assigned]
    with store.engine.connect() as conn:
        stored = read_offsets(conn, group, keys)
    for tp, key in zip(assigned, keys):
        if key in stored:
            consumer.seek(tp, stored[key])
        elif start_from == "latest":
            consumer.seek_to_end(tp)
        else:
            consumer.seek_to_beginning(tp)
    return {key: stored.get(key) for key in keys}


def _key(tp: Any) -> TopicPartitionKey:
    return (tp.topic, tp.partition)


def _names(keys: Iterable[TopicPartitionKey]) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in sorted(keys))


class Positioner:
    """Seeks assigned partitions to their stored offsets, and never raises doing so.

    The owner (the monitor, the retrain worker) calls :meth:`assign` and :meth:`revoke` from
    its rebalance listener and :meth:`retry` from its poll loop, before each poll; see the
    module docstring for the guarantee. ``unpositioned`` is a frozenset, replaced (never
    changed in place), so another thread (the API's ``/readyz``) may read it at any time.

    >>> class Consumer:   # the calls a kafka-python consumer answers here
    ...     def __init__(self): self.assigned, self.paused, self.at = set(), set(), {}
    ...     def assignment(self): return set(self.assigned)
    ...     def pause(self, *tps): self.paused.update(tps)
    ...     def seek(self, tp, offset): self.at[tp] = offset
    >>> from kafka import TopicPartition
    >>> down = [True]
    >>> def read(group, keys):
    ...     if down[0]: raise OSError("the store is down")
    ...     return {k: 7 for k in keys}
    >>> clock = iter(range(0, 100, 1)).__next__
    >>> pos = Positioner(read, "g", clock=lambda: clock())
    >>> c, tp, expected = Consumer(), TopicPartition("t", 0), {}
    >>> c.assigned.add(tp)
    >>> pos.assign(c, [tp], expected)       # in the listener: no exception, the partition waits
    []
    >>> sorted(pos.unpositioned), tp in c.paused, expected
    ([('t', 0)], True, {})
    >>> down[0] = False
    >>> pos.retry(c, expected) == [tp], c.at[tp], expected, pos.unpositioned
    (True, 7, {('t', 0): 7}, frozenset())
    """

    def __init__(self, read: Callable[[str, list[TopicPartitionKey]], Mapping[TopicPartitionKey, int]], group: str,
                 *, start_from: str = "earliest", owner: str = "consumer",
                 describe: Callable[[BaseException], str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.read = read
        self.group = group
        self.start_from = start_from
        self.owner = owner
        self.describe = describe or (lambda exc: f"{type(exc).__name__}: {exc}")
        self.clock = clock
        self.unpositioned: frozenset[TopicPartitionKey] = frozenset()
        self.error: str | None = None       # why the last try failed (None once all are positioned)
        self.failures = 0                   # consecutive failed tries
        self._retry_at = 0.0

    @classmethod
    def for_store(cls, store: Store, group: str, **kw: Any) -> Positioner:
        """A positioner reading ``store``'s ``offsets`` table."""
        def read(grp: str, keys: list[TopicPartitionKey]) -> dict[TopicPartitionKey, int]:
            with store.engine.connect() as conn:
                return read_offsets(conn, grp, keys)
        return cls(read, group, **kw)

    def assign(self, consumer: Any, partitions: Iterable[Any],
               expected: dict[TopicPartitionKey, int | None]) -> list[Any]:
        """Seek ``partitions`` to their stored offsets and record them in ``expected``; never
        raises. Returns the partitions positioned; on failure none is: they are paused, left
        out of ``expected`` and held for :meth:`retry`."""
        tps = list(partitions)
        if not tps:
            return []
        keys = [_key(tp) for tp in tps]
        try:
            stored = self.read(self.group, keys)
            for tp, key in zip(tps, keys):
                self._seek(consumer, tp, stored.get(key))
        except Exception as exc:  # noqa: BLE001 - a rebalance listener must never raise
            self._failed(consumer, tps, expected, exc)
            return []
        expected.update({key: stored.get(key) for key in keys})
        self.unpositioned = self.unpositioned.difference(keys)
        if self.failures and not self.unpositioned:
            log.warning("%s: stored offsets read again after %d failed tries; %s positioned", self.owner,
                        self.failures, _names(keys))
        if not self.unpositioned:
            self.failures, self.error = 0, None
        log.info("%s assigned %s; resuming from stored offsets %s", self.owner, _names(keys), dict(stored))
        return tps

    def _seek(self, consumer: Any, tp: Any, offset: int | None) -> None:
        if offset is not None:
            consumer.seek(tp, offset)
        elif self.start_from == "latest":
            consumer.seek_to_end(tp)
        else:
            consumer.seek_to_beginning(tp)

    def _failed(self, consumer: Any, tps: list[Any], expected: dict[TopicPartitionKey, int | None],
                exc: BaseException) -> None:
        keys = [_key(tp) for tp in tps]
        for key in keys:
            expected.pop(key, None)
        self.unpositioned = self.unpositioned.union(keys)
        self.failures += 1
        self.error = self.describe(exc)
        delay = min(MAX_POSITION_BACKOFF_S, 0.5 * 2 ** (self.failures - 1))
        self._retry_at = self.clock() + delay
        try:
            consumer.pause(*tps)
        except Exception as pause_exc:  # noqa: BLE001 - revoked meanwhile: nothing to hold back
            log.info("%s: pausing %s: %s", self.owner, _names(keys), pause_exc)
        log.error("%s: the stored offsets of %s cannot be read (%s): the partitions are paused and unpositioned "
                  "(none of their records is processed); try %d again in %.1fs", self.owner, _names(keys),
                  self.error, self.failures + 1, delay)

    def revoke(self, partitions: Iterable[Any], expected: dict[TopicPartitionKey, int | None]) -> None:
        """Forget revoked partitions (positioned or not)."""
        keys = [_key(tp) for tp in partitions]
        for key in keys:
            expected.pop(key, None)
        if self.unpositioned.intersection(keys):
            self.unpositioned = self.unpositioned.difference(keys)

    def clear(self) -> None:
        """The consumer is being replaced: its assignment, and so what was unpositioned, is gone."""
        self.unpositioned = frozenset()
        self.failures, self.error = 0, None

    def retry(self, consumer: Any, expected: dict[TopicPartitionKey, int | None]) -> list[Any]:
        """From the poll loop, before each poll: keep every unpositioned partition paused
        (something may have resumed it), forget those no longer assigned and, once the backoff
        has passed, try to position them again. Returns the partitions positioned by this call;
        they stay paused, the owner resumes them when it consumes."""
        if not self.unpositioned or consumer is None:
            return []
        assigned = {_key(tp): tp for tp in consumer.assignment()}
        self.unpositioned = self.unpositioned.intersection(assigned)
        tps = [assigned[key] for key in sorted(self.unpositioned)]
        if not tps:
            self.failures, self.error = 0, None
            return []
        consumer.pause(*tps)
        if self.clock() < self._retry_at:
            return []
        return self.assign(consumer, tps, expected)

    def hold(self, consumer: Any, polled: Mapping[Any, list[Any]]) -> None:
        """Pause any partition of ``polled`` that is unpositioned (its records are not processed:
        they are not in ``expected``; its later seek discards the position they moved)."""
        stray = [tp for tp in polled if _key(tp) in self.unpositioned]
        if stray:
            consumer.pause(*stray)
