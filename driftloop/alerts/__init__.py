"""Alerts: detections in, pages out — once, with evidence, never lost.

The path of an alert, module by module:

* :mod:`~driftloop.alerts.lifecycle` — pure state machine: fingerprint, pending → firing →
  resolving → resolved, hold-down, cooldown, severity, grouping (no I/O; fake clocks in tests);
* :mod:`~driftloop.alerts.messages` — the ``driftloop.alerts`` message and its one-sentence summary;
* :mod:`~driftloop.alerts.manager` — :class:`AlertManager`: runs the lifecycle inside the
  monitor's batch transaction and writes state, history and delivery rows
  (:mod:`~driftloop.alerts.tables`) in that same transaction;
* :mod:`~driftloop.alerts.dispatcher` — :class:`AlertDispatcher`: one worker per sink sends the
  queued changes afterwards, with retries, backoff and at-least-once semantics (its docstring
  lists every failure mode);
* :mod:`~driftloop.alerts.sinks` — Kafka topic, webhook, Slack, Alertmanager v2, PagerDuty v2;
* :mod:`~driftloop.alerts.stale` and :mod:`~driftloop.alerts.scheduler` — stale streams and the
  scheduled tick (APScheduler 3.x);
* :mod:`~driftloop.alerts.service` — :class:`AlertService`, all of the above for the monitor;
* :mod:`~driftloop.alerts.cli` — ``driftloop alerts list``;
* :mod:`~driftloop.core.config.alerts` — :class:`AlertsConfig`, the validated ``alerts:`` section.

The alerts layer sits above the monitoring (whose detections it turns into alerts) and below
the retraining. May import: ``driftloop.monitoring``, ``detectors``, ``consumers``,
``driftloop.kafka``, ``driftloop.core``.
"""
from driftloop.alerts.dispatcher import AlertDispatcher
from driftloop.alerts.lifecycle import AlertChange, AlertState, fingerprint
from driftloop.alerts.manager import AlertManager
from driftloop.alerts.service import AlertService
from driftloop.core.config.alerts import AlertsConfig

__all__ = ["AlertsConfig", "AlertManager", "AlertDispatcher", "AlertService", "AlertChange", "AlertState",
           "fingerprint"]
