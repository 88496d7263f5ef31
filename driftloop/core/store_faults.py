"""Store failures a retry can cure, how to name them, and waiting them out at start-up.

The batch loop (:mod:`consumers.monitor`) answers a failed batch with back-pressure; this module
holds what it shares with the start-up of every process: which errors are transient
(:data:`STORE_ERRORS`), one line naming one (:func:`describe_store_error`), and
:func:`retry_store`, which a process uses for each store step before its loop runs (creating the
schema, loading the detectors). Guarantee: a store that is locked, full or restarting while a
process starts delays the start, with one log line per attempt, instead of ending the process;
the steps retried are single transactions, so a retried step never half-applies.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy.exc

__all__ = ["STORE_ERRORS", "MAX_BACKOFF_S", "describe_store_error", "backoff_s", "retry_store"]

log = logging.getLogger(__name__)

STORE_ERRORS = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)
"""Store failures that a retry can cure: locked, disk full, I/O error, connection lost."""

MAX_BACKOFF_S = 10.0


def backoff_s(failures: int) -> float:
    """The wait after ``failures`` consecutive failures: 0.5 s, doubling, at most :data:`MAX_BACKOFF_S`.

    >>> [backoff_s(n) for n in (1, 2, 3, 10)]
    [0.5, 1.0, 2.0, 10.0]
    """
    return min(MAX_BACKOFF_S, 0.5 * 2 ** (failures - 1))


def describe_store_error(exc: BaseException) -> str:
    """One line naming a store failure: the driver's error class and message, with a hint.

    >>> import sqlite3
    >>> describe_store_error(sqlalchemy.exc.OperationalError("COMMIT", {}, sqlite3.OperationalError("database is locked")))
    'OperationalError: database is locked (another process holds the SQLite write lock)'
    """
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split())[:300]
    low = text.lower()
    hint = ""
    if "locked" in low or "lock timeout" in low:
        hint = " (another process holds the SQLite write lock)" if "database is locked" in low else " (lock wait)"
    elif "disk is full" in low or "no space" in low:
        hint = " (the disk holding the store is full)"
    elif "connection" in low or "server closed" in low or "terminating" in low or "shutting down" in low:
        hint = " (the database server is unreachable or restarting)"
    return f"{type(orig).__name__}: {text}{hint}"


def retry_store(fn: Callable[[], Any], what: str, *, stop: threading.Event | None = None,
                wait: Callable[[float], Any] | None = None) -> bool:
    """Call ``fn()`` until it gets through without a :data:`STORE_ERRORS` error, backing off
    (:func:`backoff_s`) and logging each failure; False if ``stop`` was set first. Any other
    error (a bad URL scheme, a bug) propagates at once.

    >>> import sqlite3
    >>> tries = []
    >>> def create_schema():
    ...     tries.append(1)
    ...     if len(tries) < 3:
    ...         raise sqlalchemy.exc.OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked"))
    >>> retry_store(create_schema, "creating the schema", wait=lambda s: None), len(tries)
    (True, 3)
    """
    stop = stop or threading.Event()
    pause = wait or stop.wait
    failures = 0
    while not stop.is_set():
        try:
            fn()
        except STORE_ERRORS as exc:
            failures += 1
            delay = backoff_s(failures)
            log.error("store unavailable while %s: %s; attempt %d failed, trying again in %.1fs",
                      what, describe_store_error(exc), failures, delay)
            pause(delay)
            continue
        if failures:
            log.warning("store available again: %s after %d failed attempt(s)", what, failures)
        return True
    return False
