"""Consumed offsets kept in the store, written in the batch's own transaction, with fencing.

The store, not Kafka's group coordinator, is the source of truth for where each partition
resumes: a batch's state changes and its next offsets commit together or not at all.

Fencing: each consumer remembers the offset it believes is stored for every partition it
owns. Before writing a batch it re-reads those rows (locked ``FOR UPDATE`` on PostgreSQL;
SQLite has one writer) and, if any differs, another member of the group has processed that
partition since a rebalance: the batch is rolled back (:class:`Fenced`) and the consumer seeks
back to what is stored. That is what keeps counts exact when partitions move mid-batch.
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from driftloop.store import Store, offsets

__all__ = ["Fenced", "TopicPartitionKey", "read_offsets", "advance_offsets", "seek_to_stored"]

TopicPartitionKey = tuple[str, int]


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
