"""The loop every long-running consumer of driftloop runs (the monitor, the retrain worker)."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka.errors import KafkaError

__all__ = ["run_polling", "retry_kafka"]

log = logging.getLogger(__name__)


def run_polling(step: Callable[[], Any], stop: threading.Event, *, until: Callable[[], bool] | None = None,
                max_seconds: float | None = None, retry_s: float = 1.0) -> None:
    """Call ``step()`` until ``stop`` is set, ``until()`` is true or ``max_seconds`` have passed.

    A retriable Kafka error out of ``step()`` (kafka-python 3.x's ``poll`` can raise one while
    the broker is away, e.g. ``KafkaConnectionError`` while it looks for the group coordinator)
    is logged in one line and the step is tried again after ``retry_s``: the broker coming back
    is the cure, not a restart. Other errors propagate.
    """
    t_end = None if max_seconds is None else time.monotonic() + max_seconds
    while not stop.is_set():
        try:
            step()
        except KafkaError as exc:
            if not exc.retriable:
                raise
            log.warning("Kafka unavailable (%s: %s); polling again in %.0f s", type(exc).__name__, exc, retry_s)
            stop.wait(retry_s)
        if until is not None and until():
            return
        if t_end is not None and time.monotonic() >= t_end:
            return


def retry_kafka(fn: Callable[[], Any], stop: threading.Event, what: str, *, retry_s: float = 1.0,
                max_retry_s: float = 5.0) -> bool:
    """Call ``fn()`` until it gets through without a retriable Kafka error (the broker went away
    between the start-up check and this call); False if ``stop`` was set first.

    >>> from kafka.errors import KafkaConnectionError
    >>> tries = []
    >>> def subscribe():
    ...     tries.append(1)
    ...     if len(tries) < 3:
    ...         raise KafkaConnectionError("socket disconnected")
    >>> retry_kafka(subscribe, threading.Event(), "subscribing", retry_s=0.01), len(tries)
    (True, 3)
    """
    delay = retry_s
    while not stop.is_set():
        try:
            fn()
            return True
        except KafkaError as exc:
            if not exc.retriable:
                raise
            log.warning("%s: Kafka unavailable (%s: %s); trying again in %.0f s", what, type(exc).__name__, exc,
                        delay)
            stop.wait(delay)
            delay = min(max_retry_s, delay * 2)
    return False
