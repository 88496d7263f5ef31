"""How far a consumer is behind, per partition, from what it already knows (no broker request).

The monitor's loop sets ``monitor.lag`` with :func:`partition_lag` after each poll; the API
(``driftloop.app.api.live``) and ``/metrics`` read it from their own thread.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["partition_lag"]


def partition_lag(consumer: Any, positions: Mapping[tuple[str, int], int | None]) -> dict[tuple[str, int], int]:
    """Messages behind per partition: the partition's high-water mark (as of the consumer's
    last fetch) minus the monitor's committed next offset. Partitions without either are left
    out. Call it from the consumer's own thread (the monitor loop), after a poll:

        self.lag = partition_lag(self.consumer, self.expected)

    >>> class C:
    ...     def highwater(self, tp): return {0: 120, 1: None}[tp.partition]
    >>> partition_lag(C(), {("t", 0): 100, ("t", 1): 5, ("t", 2): None})
    {('t', 0): 20}
    """
    from kafka import TopicPartition

    out: dict[tuple[str, int], int] = {}
    for (topic, partition), pos in list(positions.items()):
        if pos is None:
            continue
        hw = consumer.highwater(TopicPartition(topic, partition))
        if hw is None:
            continue
        out[(topic, partition)] = max(0, int(hw) - int(pos))
    return out
