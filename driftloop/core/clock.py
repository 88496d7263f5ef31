"""Epoch-millisecond timestamps as text, the one format every message and log line uses.

>>> rfc3339(1_700_000_000_123)
'2023-11-14T22:13:20.123Z'
"""
from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["rfc3339"]


def rfc3339(ms: int | None) -> str | None:
    """Epoch milliseconds as an RFC 3339 UTC timestamp.

    >>> rfc3339(0), rfc3339(None)
    ('1970-01-01T00:00:00.000Z', None)
    """
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
