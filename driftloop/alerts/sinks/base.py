"""What every sink implements: ``send(message, key)`` that returns on success and raises
:class:`DeliveryError` otherwise (the dispatcher retries with backoff)."""
from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Sink", "DeliveryError"]


class DeliveryError(Exception):
    """A delivery attempt failed; the message must not contain secrets (sinks make sure).

    ``retry_after_s``: the receiver asked to wait this long (HTTP ``Retry-After``).
    ``permanent``: retrying the same request cannot succeed (e.g. HTTP 400); the dispatcher
    still retries at the maximum backoff so that a fixed configuration delivers it.
    """

    def __init__(self, message: str, *, retry_after_s: float | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.permanent = permanent


class Sink(Protocol):
    """A delivery target. ``send`` is called from the sink's own worker thread only."""

    name: str

    def send(self, message: dict[str, Any], key: str) -> None: ...

    def close(self) -> None: ...
