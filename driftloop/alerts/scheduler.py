"""Scheduled alert jobs (APScheduler 3.x, a background thread): the lifecycle tick (hold-downs
and group windows that end between batches) and the stale-stream check.

Jobs never overlap themselves (``max_instances=1``) and missed runs collapse into one
(``coalesce``); a failing job logs and runs again at its next time.
"""
from __future__ import annotations

import logging
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from driftloop.core.logsetup import log_failure

__all__ = ["AlertScheduler"]

log = logging.getLogger(__name__)


class AlertScheduler:
    """``start()`` / ``stop()`` the two jobs for one :class:`~driftloop.alerts.manager.AlertManager`."""

    def __init__(self, manager: Any, stale_checker: Any | None) -> None:
        self.manager = manager
        self.stale_checker = stale_checker
        self._sched: BackgroundScheduler | None = None

    def start(self) -> None:
        if self._sched is not None:
            return
        cfg = self.manager.cfg
        sched = BackgroundScheduler(daemon=True, job_defaults={"max_instances": 1, "coalesce": True,
                                                               "misfire_grace_time": None})
        sched.add_job(self._tick, "interval", seconds=cfg.tick_every_s, id="alerts-tick")
        if self.stale_checker is not None and cfg.stale.enabled:
            sched.add_job(self._stale, "interval", seconds=cfg.stale.check_every_s, id="alerts-stale")
        for name in ("apscheduler.scheduler", "apscheduler.executors.default"):
            lg = logging.getLogger(name)      # one INFO line per job run is noise in the monitor's log
            if lg.level == logging.NOTSET:
                lg.setLevel(logging.WARNING)
        sched.start()
        self._sched = sched

    def stop(self) -> None:
        if self._sched is not None:
            self._sched.shutdown(wait=True)
            self._sched = None

    def _tick(self) -> None:
        try:
            self.manager.tick()
        except Exception as exc:  # noqa: BLE001 - try again at the next tick
            log_failure(log, "alert tick failed", exc)

    def _stale(self) -> None:
        try:
            assert self.stale_checker is not None, "scheduled only with a stale checker"
            self.stale_checker.check()
        except Exception as exc:  # noqa: BLE001 - try again at the next check
            log_failure(log, "stale-stream check failed", exc)
