"""Everything the monitor needs for alerts, in one object.

>>> # in the monitor (sketch):
>>> # alerts = AlertService(cfg, store)            # validates cfg.alerts
>>> # alerts.start()                                 # dispatcher workers + scheduled jobs
>>> # ... inside each batch transaction, per model with detections:
>>> # alerts.process(conn, model, model_version, detections, now)
>>> # or, with driftloop.monitoring.analysis: DriftAnalyser(cfg, store, on_detections=alerts.on_detections)
>>> # alerts.stop()                                  # on shutdown
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.engine import Connection

from driftloop.alerts.dispatcher import AlertDispatcher
from driftloop.alerts.lifecycle import AlertChange
from driftloop.alerts.manager import AlertManager
from driftloop.alerts.scheduler import AlertScheduler
from driftloop.alerts.sinks import build_sinks
from driftloop.alerts.stale import StaleChecker
from driftloop.core.store import Store, now_ms

__all__ = ["AlertService"]


class AlertService:
    """:class:`AlertManager` + :class:`AlertDispatcher` + :class:`AlertScheduler` for one
    :class:`~driftloop.core.config.Config`. ``sinks`` replaces the configured ones (tests);
    ``kafka=False`` leaves out the alerts-topic sink (no broker)."""

    def __init__(self, config: Any, store: Store, *, sinks: Sequence[Any] | None = None, kafka: bool = True) -> None:
        self.config = config
        self.store = store
        self.manager = AlertManager(config, store)
        acfg = self.manager.cfg
        self.dispatcher = AlertDispatcher(store, acfg, build_sinks(config, acfg, kafka=kafka) if sinks is None else sinks)
        self.manager.add_listener(self.dispatcher.wake)
        self.stale = StaleChecker(self.manager, store, getattr(config, "models", {}) or {})
        self.scheduler = AlertScheduler(self.manager, self.stale)

    def process(self, conn: Connection, model: str, model_version: str | None, detections: Sequence[Any],
                now: int) -> list[AlertChange]:
        """See :meth:`AlertManager.process`."""
        return self.manager.process(conn, model, model_version, detections, now)

    def on_detections(self, conn: Connection, model: str, detections: list[Any], now: int) -> list[AlertChange]:
        """The ``on_detections`` hook of :class:`driftloop.monitoring.analysis.DriftAnalyser` (the model
        version comes from the detections)."""
        return self.manager.process(conn, model, None, detections, now)

    def resolve(self, conn: Connection, alert_ids: Iterable[str], reason: str, now: int) -> list[AlertChange]:
        """See :meth:`AlertManager.resolve`."""
        return self.manager.resolve(conn, alert_ids, reason, now)

    def start(self) -> None:
        self.store.create_schema()
        self.stale.started_at = now_ms()      # the monitor's start counts as activity
        self.dispatcher.start()
        self.scheduler.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self.scheduler.stop()
        self.dispatcher.stop(timeout_s)
