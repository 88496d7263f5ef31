"""The outbox: messages written in a batch's transaction, published to Kafka afterwards.

Failure modes, step by step:

1. crash before the batch transaction commits: neither the state nor the outbox rows exist;
   the batch is consumed again and produces them again (once);
2. crash after the commit, before publishing: the rows are unsent and go out on restart;
3. crash after Kafka acknowledged, before ``sent_at`` is written: the rows go out again.
   Delivery is at-least-once; every message carries the header ``driftloop-id`` (the outbox
   row id, stable across retries) so a receiver can drop the repeat.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from kafka.errors import CorruptRecordError, InvalidRecordError, MessageSizeTooLargeError

from driftloop.core.store import Store, now_ms

__all__ = ["OutboxPublisher", "DROPPED"]

DROPPED = -1
"""``sent_at`` of a row set aside is ``DROPPED * time``: negative, never delivered."""

# a record refused for good, whatever we retry: by kafka-python at send() (over
# max_request_size), or by the broker (over the topic's max.message.bytes, an invalid record).
# After a broker-side refusal kafka-python 3.0.12's producer fails everything it is given
# ("Aborting producer batches due to fatal error"): it must be replaced.
_PERMANENT = (MessageSizeTooLargeError, InvalidRecordError, CorruptRecordError)

log = logging.getLogger(__name__)


class OutboxPublisher:
    """Publishes unsent outbox rows in id order and marks what the broker acknowledged.

    ``topics`` limits it to the rows of those topics: the retrain worker and the CLI publish
    only their own (jobs, registry events), so they never reorder the monitor's messages.
    """

    def __init__(self, store: Store, producer: Any, topics: Iterable[str] | None = None, *, batch: int = 1000,
                 timeout_s: float = 30.0, new_producer: Callable[[], Any] | None = None) -> None:
        self.store = store
        self.producer = producer
        self.new_producer = new_producer   # to replace a producer a broker-side refusal left broken
        self.topics = None if topics is None else sorted(set(topics))
        self.batch = batch
        self.timeout_s = timeout_s
        self.published = 0
        self.dropped = 0

    def publish_pending(self) -> int:
        """Send everything unsent; returns how many rows were acknowledged.

        A row refused for good is set aside, with an ERROR line, instead of holding back every
        row after it: its ``sent_at`` is stored negative (see :data:`DROPPED`). Refused by the
        producer (over ``max_request_size``, 1 MiB: see :func:`driftloop.kafka.clients.make_producer`),
        the row is known at once. Refused by the broker (a topic whose ``max.message.bytes`` is
        smaller), every row sent with it fails too: with ``new_producer`` the broken producer is
        replaced and the rows are sent one at a time until the culprit is found. Any other
        failure leaves the row and those after it unsent.
        """
        total = 0
        while True:
            rows = self.store.unsent_outbox(self.batch, self.topics)
            if not rows:
                return total
            done, failure, refused = self._send(rows)
            if isinstance(failure, _PERMANENT) and refused is None and self.new_producer is not None:
                self._replace_producer(failure, "sending the rows one at a time to find it")
                more, failure, refused = self._send_one_by_one(rows[len(done):])
                done += more
            dropped: list[int] = []
            if refused is not None:
                log.error("outbox row %s (topic %s, %d bytes) refused for good, set aside: %s",
                          refused.id, refused.topic, len(refused.value), failure)
                dropped.append(refused.id)
            elif failure is not None:
                log.warning("outbox row %s not delivered yet: %s", rows[len(done)].id, failure)
            now = now_ms()
            self.store.mark_sent(done, now)
            self.store.mark_sent(dropped, DROPPED * now)
            total += len(done)
            self.published += len(done)
            self.dropped += len(dropped)
            if failure is not None and refused is None:
                return total

    def _replace_producer(self, why: Exception, then: str) -> None:
        log.warning("outbox: the broker refused a record for good (%s); replacing the producer it left "
                    "failing everything, then %s", why, then)
        old, self.producer = self.producer, self.new_producer()   # type: ignore[misc]  # producer is replaced on purpose (a broken one)
        try:
            old.close(timeout=0)
        except Exception as exc:  # noqa: BLE001 - it is being thrown away
            log.info("outbox: closing the replaced producer: %s", exc)

    def _send_one_by_one(self, rows: list[Any]) -> tuple[list[int], Exception | None, Any]:
        """Each row on its own: the ids acknowledged, then the first failure and, when the
        broker refused that row for good, the row (the producer is replaced after it)."""
        done: list[int] = []
        for row in rows:
            ok, failure, refused = self._send([row])
            done += ok
            if failure is not None:
                if isinstance(failure, _PERMANENT) and refused is None:
                    self._replace_producer(failure, f"setting row {row.id} aside")
                    refused = row
                return done, failure, refused
        return done, None, None

    def _send(self, rows: list[Any]) -> tuple[list[int], Exception | None, Any]:
        """Send ``rows`` in order: the ids acknowledged before the first failure, that failure,
        and the row refused at ``send()`` when that is what stopped it (None otherwise)."""
        futures = []
        failure: Exception | None = None
        refused = None
        for row in rows:
            try:
                futures.append(self.producer.send(row.topic, key=row.key, value=row.value,
                                                  headers=[("driftloop-id", str(row.id).encode())]))
            except _PERMANENT as exc:           # kafka-python's own checks, before anything is sent
                failure, refused = exc, row
                break
        self.producer.flush(timeout=self.timeout_s)
        done: list[Any] = []
        for row, fut in zip(rows, futures):
            try:
                fut.get(timeout=0)
            except Exception as exc:  # noqa: BLE001 - any failure: this row and the rest stay unsent
                return done, exc, None
            done.append(row.id)
        return done, failure, refused
