"""A small publisher for ML services: batches events per model and sends them keyed by model.

Usage (needs a broker, so not a doctest; the integration tests and the demo publish this way)::

    from driftloop import Publisher

    with Publisher("127.0.0.1:9092") as pub:
        pub.prediction("fraud", "ev-1", {"amount": 12.5, "country": "DE"}, prediction=0,
                       scores={"0": 0.9, "1": 0.1})
        pub.label("fraud", "ev-1", 0)

Events are validated against the schema before they leave the service (a bad event raises
``ValueError`` at the call site instead of landing in the dead-letter topic), buffered, and
sent as one JSON array per model and flush (``batch_size`` events or ``linger_s`` seconds).
"""
from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from typing import Any

import msgspec

from driftloop.core.events import LabelEvent, PredictionEvent

__all__ = ["Publisher"]

_enc = msgspec.json.Encoder()


def _now_ms() -> int:
    return int(time.time() * 1000)


class Publisher:
    """Publish prediction and label events to driftloop's topics."""

    def __init__(self, bootstrap_servers: str | list[str] = "127.0.0.1:9092", *,
                 predictions_topic: str = "driftloop.predictions", labels_topic: str = "driftloop.labels",
                 batch_size: int = 500, linger_s: float = 0.5, producer: Any = None, **kafka_kwargs: Any) -> None:
        if producer is None:
            from kafka import KafkaProducer
            servers = bootstrap_servers.split(",") if isinstance(bootstrap_servers, str) else bootstrap_servers
            producer = KafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=5, **kafka_kwargs)
        self._producer = producer
        self._topics: dict[type, str] = {PredictionEvent: predictions_topic, LabelEvent: labels_topic}
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._buf: dict[tuple[str, str], list[Any]] = defaultdict(list)
        self._since = time.monotonic()
        self._lock = threading.Lock()

    def prediction(self, model: str, event_id: str, features: dict[str, Any], prediction: Any, *,
                   scores: dict[str, float] | None = None, model_version: str | None = None,
                   ts: int | str | None = None, shadow: bool = False) -> None:
        """One prediction event; ``shadow``: a challenger's answer to the request ``event_id``
        (contract v1.1: it must name its ``model_version``, another than the served one's)."""
        if shadow and not model_version:
            raise ValueError("model_version: a shadow prediction must name its version")
        for name, value in [*features.items(), ("prediction", prediction), *(scores or {}).items()]:
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name}: {value} is not a finite number (JSON has no NaN/inf)")
        self._add(msgspec.convert({
            "event_id": event_id, "model": model, "ts": _now_ms() if ts is None else ts,
            "features": features, "prediction": prediction, "scores": scores, "model_version": model_version,
            "shadow": shadow,
        }, PredictionEvent))

    def label(self, model: str, event_id: str, label: Any, *, ts: int | str | None = None) -> None:
        self._add(msgspec.convert({"event_id": event_id, "model": model,
                                   "ts": _now_ms() if ts is None else ts, "label": label}, LabelEvent))

    def _add(self, event: Any) -> None:
        topic = self._topics[type(event)]
        with self._lock:
            buf = self._buf[(topic, event.model)]
            buf.append(event)
            full = len(buf) >= self._batch_size
        if full or time.monotonic() - self._since >= self._linger_s:
            self.flush(wait=False)

    def flush(self, *, wait: bool = True) -> None:
        """Send every buffered event; with ``wait`` block until the broker acknowledged them."""
        with self._lock:
            pending, self._buf = self._buf, defaultdict(list)
            self._since = time.monotonic()
        for (topic, model), events in pending.items():
            if events:
                self._producer.send(topic, key=model.encode(), value=_enc.encode(events))
        if wait:
            self._producer.flush()

    def close(self) -> None:
        self.flush()
        self._producer.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
