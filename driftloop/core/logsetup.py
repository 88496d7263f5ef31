"""Logging for the command line: one format, and kafka-python's repeated complaints thinned.

During a broker outage kafka-python logs the same connection error several times a second
(~170 ERROR lines in 35 s). :class:`RepeatFilter` lets the first of each kind through, then at
most one per ``every_s`` seconds with the number held back, so on-call reads the outage, not
the noise; a connection error it logs with a stack trace is cut to one line. driftloop's own
lines pass untouched.

>>> f = RepeatFilter(every_s=30, clock=iter([0, 1, 2, 40]).__next__)
>>> rec = lambda: logging.LogRecord("kafka.conn", logging.ERROR, "", 0, "connect to %s failed", ("b:9092",), None)
>>> [f.filter(r) for r in (rec(), rec(), rec())]
[True, False, False]
>>> r = rec(); f.filter(r), r.getMessage()
(True, 'connect to b:9092 failed [2 more like this in the last 40s]')
"""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

__all__ = ["RepeatFilter", "configure", "log_failure"]


class RepeatFilter(logging.Filter):
    """Thin repeats of the same message template from loggers under ``prefix``."""

    def __init__(self, prefix: str = "kafka", every_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefix = prefix
        self.every_s = every_s
        self.clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, float, int]] = {}   # key -> (first, last shown, held)

    def filter(self, record: logging.LogRecord) -> bool:
        if not (record.name == self.prefix or record.name.startswith(self.prefix + ".")):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        first, shown, held = self._seen.get(key, (now, -float("inf"), 0))
        if now - shown < self.every_s:
            self._seen[key] = (first, shown, held + 1)
            return False
        _one_line_if_network(record)
        if held:
            record.msg = f"{record.msg} [{held} more like this in the last {now - shown:.0f}s]"
        self._seen[key] = (now, now, 0)
        if len(self._seen) > 1000:   # bounded: forget the oldest kinds
            for k in sorted(self._seen, key=lambda k: self._seen[k][1])[:500]:
                del self._seen[k]
        return True


def _one_line_if_network(record: logging.LogRecord) -> None:
    """kafka-python logs a lost connection (reset, broken pipe) with its stack trace: the
    trace says nothing on-call can act on, so the error's one line replaces it.

    >>> r = logging.LogRecord("kafka.net", logging.ERROR, "", 0, "Error sending", (), (None, None, None))
    >>> r.exc_info = (BrokenPipeError, BrokenPipeError(32, "Broken pipe"), None)
    >>> _one_line_if_network(r); r.exc_info, r.getMessage()
    (None, 'Error sending (BrokenPipeError: [Errno 32] Broken pipe)')

    The same for a socket kafka-python closed while one of its tasks still waited on it (seen
    while a broker came up: ``kafka.net.selector`` "Unhandled exception in task", ``ValueError:
    Invalid file descriptor: -1``; the client reconnects and goes on):

    >>> r.exc_info = (ValueError, ValueError("Invalid file descriptor: -1"), None)
    >>> r.msg = "Unhandled exception in task"
    >>> _one_line_if_network(r); r.exc_info, r.getMessage()
    (None, 'Unhandled exception in task (ValueError: Invalid file descriptor: -1)')

    And a socket closed under a read at shutdown (``kafka.net.transport`` "Error receiving network
    data closing socket", ``AttributeError: 'NoneType' object has no attribute 'recv'``; seen in a
    fresh-clone run as the retrain worker left its group):

    >>> r.exc_info = (AttributeError, AttributeError("'NoneType' object has no attribute 'recv'"), None)
    >>> r.msg = "Error receiving network data closing socket"
    >>> _one_line_if_network(r); r.exc_info is None
    True
    """
    exc = record.exc_info[1] if record.exc_info else None
    closed_socket = (isinstance(exc, ValueError) and str(exc).startswith("Invalid file descriptor")) or (
        isinstance(exc, AttributeError) and record.name.startswith("kafka.net")
        and str(exc).startswith("'NoneType' object has no attribute"))
    if (closed_socket or isinstance(exc, (ConnectionError, TimeoutError))
            or (isinstance(exc, OSError) and exc.errno is not None)):
        record.msg = f"{record.msg} ({type(exc).__name__}: {exc})"
        record.exc_info = None
        record.exc_text = None


def configure(verbose: bool = False) -> None:
    """Root logging to stderr; kafka-python at WARNING with repeats thinned, except its group
    coordinator at INFO (joins, generations, leaders, revocations: a few lines per rebalance,
    what explains a partition that moved or did not)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("kafka.coordinator").setLevel(logging.INFO)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(RepeatFilter())


def log_failure(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """Log a failed background pass: a store that is away (locked, disk full, connection lost)
    is one ERROR line naming it, since the next pass retries; anything else keeps its stack trace."""
    import sqlalchemy.exc

    if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
        logger.error("%s: store unavailable (%s); retrying", what, str(getattr(exc, "orig", exc) or exc)[:200])
    else:
        logger.error("%s", what, exc_info=exc)
