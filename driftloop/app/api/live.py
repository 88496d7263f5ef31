"""Live figures of the in-process monitor, read safely from the API's thread.

kafka-python's consumer is not thread-safe, so the API never calls it. The monitor's loop
records what the API shows:

* ``monitor.stats`` (:class:`consumers.monitor.MonitorStats`): plain numbers, read as they are;
* ``monitor.expected``: the assigned partitions and their committed next offsets (copied, not
  iterated, since the loop may change it meanwhile);
* ``monitor.lag``: ``{(topic, partition): messages behind}``, which the loop sets after each
  poll with :func:`driftloop.kafka.lag.partition_lag` (local values only: no request to the broker);
* ``monitor.unpositioned``: a frozenset of the assigned partitions whose stored offsets could
  not be read yet (replaced, never changed in place, by the loop).

The readiness checks (:class:`Readiness`) need nothing from the loop but the stats.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from driftloop.core.store import Store, now_ms
from driftloop.core.tables import api_heartbeat
from driftloop.kafka.lag import partition_lag  # re-exported: the API's view of the monitor's lag

__all__ = ["partition_lag", "monitor_snapshot", "Readiness", "api_heartbeat", "unpositioned_detail"]


def _copy(obj: Any, attr: str) -> dict[Any, Any]:
    value = getattr(obj, attr, None)
    if not isinstance(value, Mapping):
        return {}
    for _ in range(3):  # dict(d) is one C call, but be safe against a concurrent resize
        try:
            return dict(value)
        except RuntimeError:
            continue
    return {}


def monitor_snapshot(monitor: Any) -> dict[str, Any]:
    """The monitor's running figures as plain data (``{}`` without a monitor).

    >>> from consumers.monitor import MonitorStats
    >>> class M:
    ...     stats = MonitorStats(batches=2, records=10)
    ...     expected = {("p", 0): 5}
    ...     lag = {("p", 0): 3}
    >>> s = monitor_snapshot(M())
    >>> s["batches"], s["assigned"], s["lag"], s["lag_total"]
    (2, [{'topic': 'p', 'partition': 0, 'next_offset': 5}], [{'topic': 'p', 'partition': 0, 'lag': 3}], 3)
    """
    if monitor is None:
        return {}
    stats = getattr(monitor, "stats", None)
    out: dict[str, Any] = dataclasses.asdict(stats) if dataclasses.is_dataclass(stats) and not isinstance(stats, type) else {}
    expected = _copy(monitor, "expected")
    lag = _copy(monitor, "lag")
    out["assigned"] = [{"topic": t, "partition": p, "next_offset": o} for (t, p), o in sorted(expected.items())]
    out["lag"] = [{"topic": t, "partition": p, "lag": int(v)} for (t, p), v in sorted(lag.items())]
    out["lag_total"] = sum(int(v) for v in lag.values()) if lag else None
    out["lag_known"] = hasattr(monitor, "lag")
    out["unpositioned"] = [{"topic": t, "partition": p}
                           for t, p in sorted(frozenset(getattr(monitor, "unpositioned", None) or ()))]
    return out


def unpositioned_detail(monitor: Any) -> str | None:
    """Why the monitor is not ready while some assigned partitions are unpositioned, naming
    them; None when there are none.

    >>> class M:
    ...     unpositioned = frozenset({("t.labels", 1), ("t.predictions", 0)})
    ...     unpositioned_error = "OperationalError: database is locked"
    >>> unpositioned_detail(M())
    '2 assigned partitions not positioned (paused until their stored offsets can be read): t.labels[1], t.predictions[0]; last error: OperationalError: database is locked'
    """
    parts = getattr(monitor, "unpositioned", None)
    if not parts:
        return None
    parts = sorted(frozenset(parts))
    names = ", ".join(f"{t}[{p}]" for t, p in parts)
    error = getattr(monitor, "unpositioned_error", None) or "unknown"
    return (f"{len(parts)} assigned partitions not positioned (paused until their stored offsets can be read): "
            f"{names}; last error: {error}")


class Readiness:
    """``/readyz``: the broker answers, the store takes a write, the consumer has partitions.

    * broker: a TCP connection to one of ``kafka.bootstrap_servers`` within the timeout
      (cached for ``cache_s``: probes must not hammer the broker);
    * store: if the in-process monitor committed a batch since the last check, that proves it;
      otherwise one row of ``api_heartbeat`` is written, waiting at most the timeout for the
      write lock (SQLite has one writer; PostgreSQL gets a ``lock_timeout``);
    * consumer: the in-process monitor has assigned partitions, every one of them positioned
      (``monitor.unpositioned`` is empty: a partition assigned while its stored offset could not
      be read waits, paused, and the detail names it), is not backing off from a store
      failure (``monitor.store_error``) and has not been paused for the analysis backlog longer
      than ``analysis.max_pause_s`` (``analysis.mode: apart``; the detail says how many events
      wait); skipped without a monitor.
    """

    def __init__(self, cfg: Any, store: Store, monitor: Any = None, *, timeout_s: float = 2.0,
                 cache_s: float = 5.0, name: str | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.monitor = monitor
        self.timeout_s = timeout_s
        self.cache_s = cache_s
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._broker: tuple[float, bool, str] | None = None
        self._batches_seen = -1
        self._engine: sa.engine.Engine | None = None

    # -- broker ------------------------------------------------------------------------------
    def broker(self) -> tuple[bool, str]:
        now = time.monotonic()
        if self._broker is not None and now - self._broker[0] < self.cache_s:
            return self._broker[1], self._broker[2]
        ok, detail = False, "no bootstrap servers configured"
        for server in self.cfg.kafka.bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            try:
                with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=self.timeout_s):
                    ok, detail = True, f"{server.strip()} accepts connections"
                    break
            except (OSError, ValueError) as exc:
                detail = f"{server.strip()}: {exc}"
        self._broker = (now, ok, detail)
        return ok, detail

    # -- store -------------------------------------------------------------------------------
    def _probe_engine(self) -> sa.engine.Engine:
        if self._engine is None:
            if self.store.is_sqlite:
                self._engine = sa.create_engine(self.store.url, poolclass=sa.pool.NullPool,
                                                connect_args={"timeout": self.timeout_s, "isolation_level": None})
            else:
                self._engine = sa.create_engine(self.store.url, poolclass=sa.pool.NullPool,
                                                connect_args={"connect_timeout": max(1, int(self.timeout_s))})
        return self._engine

    def store_writable(self) -> tuple[bool, str]:
        batches = getattr(getattr(self.monitor, "stats", None), "batches", None)
        if batches is not None and self._batches_seen >= 0 and batches > self._batches_seen:
            self._batches_seen = batches
            return True, "the monitor committed a batch since the last check"
        if batches is not None:
            self._batches_seen = batches
        ms = int(self.timeout_s * 1000)
        try:
            with self._probe_engine().connect() as conn:
                if self.store.is_sqlite:
                    conn.exec_driver_sql(f"PRAGMA busy_timeout={ms}")
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    conn.begin()
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {ms}")
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {ms}")
                try:
                    n = conn.execute(api_heartbeat.update().where(api_heartbeat.c.name == self.name)
                                     .values(ts=now_ms())).rowcount
                    if not n:
                        conn.execute(api_heartbeat.insert().values(name=self.name, ts=now_ms()))
                    conn.exec_driver_sql("COMMIT") if self.store.is_sqlite else conn.commit()
                except BaseException:
                    conn.exec_driver_sql("ROLLBACK") if self.store.is_sqlite else conn.rollback()
                    raise
            return True, "a write committed"
        except sa.exc.SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc   # DBAPIError has the driver's; others do not
            return False, f"write failed: {type(cause).__name__}: {str(cause)[:200]}"

    # -- consumer ----------------------------------------------------------------------------
    def consumer(self) -> tuple[bool | None, str]:
        if self.monitor is None:
            return None, "no monitor in this process"
        unpositioned = unpositioned_detail(self.monitor)
        if unpositioned:
            return False, unpositioned
        store_error = getattr(self.monitor, "store_error", None)
        if store_error:
            return False, f"consumption paused: the last batch could not be committed ({store_error}); retrying"
        paused = getattr(self.monitor, "analysis_paused_since", None)
        if paused is not None:
            held = time.monotonic() - paused
            detail = (f"consumption paused {held:.0f} s: {getattr(self.monitor, 'analysis_backlog', '?')} events wait "
                      f"to be judged (analysis.max_backlog_events {self.cfg.analysis.max_backlog_events})")
            if held > self.cfg.analysis.max_pause_s:
                return False, detail + f", longer than analysis.max_pause_s {self.cfg.analysis.max_pause_s:g}"
        assigned = _copy(self.monitor, "expected")
        if assigned:
            waiting = getattr(self.monitor, "analysis_backlog", None)
            behind = "" if waiting is None else f"; {waiting} events wait to be judged"
            return True, f"{len(assigned)} partitions assigned{behind}"
        return False, "no partitions assigned (joining the group, or more consumers than partitions)"

    def check(self) -> dict[str, Any]:
        """``{"ready": bool, "checks": {name: {"ok": bool | None, "detail": str}}}``; a check
        with ``ok`` None was skipped."""
        checks = {}
        for name, fn in (("broker", self.broker), ("store", self.store_writable), ("consumer", self.consumer)):
            ok, detail = fn()
            checks[name] = {"ok": ok, "detail": detail}
        return {"ready": all(c["ok"] is not False for c in checks.values()), "checks": checks}

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
