"""The Kafka sink: every alert change to the ``driftloop.alerts`` topic (always configured).

The message key is the model name; the header ``driftloop-id`` carries the idempotency key
(``alert_id:status:seq``), the same header the outbox uses, so consumers drop repeats the same
way for every driftloop topic.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from driftloop.alerts import tables
from driftloop.alerts.sinks.base import DeliveryError
from driftloop.core.config.alerts import KAFKA_SINK

__all__ = ["KafkaSink"]

log = logging.getLogger(__name__)


class KafkaSink:
    """Publishes to one topic with a producer made on first use (in the sink's worker thread)."""

    resend_every_s = 0.0
    kind = "kafka"

    def __init__(self, topic: str, make_producer: Callable[[], Any], *, timeout_s: float = 30.0,
                 name: str = KAFKA_SINK) -> None:
        self.name = name
        self.topic = topic
        self._make_producer = make_producer
        self._producer: Any = None
        self.timeout_s = timeout_s

    def send(self, message: dict[str, Any], key: str) -> None:
        try:
            if self._producer is None:
                self._producer = self._make_producer()
            fut = self._producer.send(self.topic, key=str(message["model"]).encode(), value=tables.dumps(message),
                                      headers=[("driftloop-id", key.encode())])
            fut.get(timeout=self.timeout_s)
        except DeliveryError:
            raise
        except Exception as exc:  # noqa: BLE001 - any producer failure is a failed attempt
            raise DeliveryError(f"Kafka: {type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=5)
            except Exception:
                log.debug("alerts producer close failed", exc_info=True)
            self._producer = None
