"""Assembles the monitor process: consumers, detectors, alerts (and, as configured, the
retraining policy and the HTTP API). ``driftloop monitor`` and ``driftloop demo`` both run this.

With ``analysis.mode: inline``, inside each batch transaction: the consumers write the batch, the
detectors run on it (:class:`driftloop.monitoring.analysis.DriftAnalyser`), their detections
become alert state changes (:class:`driftloop.alerts.AlertService`) and, by policy, retraining
jobs; everything commits together with the offsets. Beside the consumer loop: the alert
dispatcher (one worker per sink) and the scheduled checks (stale streams, periodic retraining).

With ``analysis.mode: apart`` (the default) the work is shared by two processes
(:mod:`driftloop.app.judge_process`): this one ingests (the batch transaction journals what the
detectors would have judged: :mod:`driftloop.monitoring.journal`), publishes the outbox and
serves the API; a child process judges the journal (:mod:`driftloop.monitoring.judge`) and runs
everything the judgements drive: alerts and their dispatcher, the retraining policy and its
cron, the champion switches. The child is restarted if it dies, stopped with this process, and
ends by itself once this process is gone (even SIGKILLed).
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from consumers.monitor import Monitor
from driftloop.alerts import AlertService
from driftloop.app.judge_process import JudgeProcess
from driftloop.core.config import Config
from driftloop.core.logsetup import log_failure
from driftloop.core.store import Store
from driftloop.core.store_faults import STORE_ERRORS, backoff_s, describe_store_error, retry_store
from driftloop.monitoring.analysis import DriftAnalyser
from driftloop.monitoring.champion_switch import ChampionSwitcher, RegistryReferences
from driftloop.monitoring.journal import JournalWriter, backlog

__all__ = ["MonitorService"]

if TYPE_CHECKING:   # annotations only: imported where they are used
    from detectors.versions import VersionedMonitor
    from driftloop.core.config import ModelConfig
    from retrain.registry import HistoryEntry

log = logging.getLogger(__name__)


class MonitorService:
    """The monitor with everything that runs beside it; ``run()`` blocks until stopped."""

    def __init__(self, cfg: Config, store: Store | None = None, *, references: dict[str, Any] | None = None,
                 alert_sinks: list[Any] | None = None, on_alert_changes: Any = None,
                 ingest_only: bool | None = None) -> None:
        """``ingest_only``: journal the batches for a judging child process (the default with
        ``analysis.mode: apart``); False: this process judges (inline, or it is that child)."""
        from retrain.events import switch_target
        from retrain.policy import RetrainScheduler
        from retrain.registry import Registry
        from retrain.shadow import shadow_report_hook

        self.cfg = cfg
        if ingest_only is None:
            ingest_only = cfg.analysis.mode == "apart"
        self.store = store or Store.from_config(cfg.store)
        # a store locked, full or restarting at start delays the start (one line per attempt), not ends it
        retry_store(self.store.create_schema, "creating the schema")
        self.alerts = AlertService(cfg, self.store, sinks=alert_sinks)
        self.retrain = RetrainScheduler(cfg, self.store)
        self.on_alert_changes = on_alert_changes
        self.registry = Registry(cfg, self.store)
        self.analyser = DriftAnalyser(cfg, self.store, on_detections=self._on_detections,
                                      reference_source=RegistryReferences(cfg, self.store, references,
                                                                          registry=self.registry),
                                      # the shadow phase's live gate (retrain.shadow), in the batch transaction
                                      on_shadow_report=shadow_report_hook(cfg, self.registry), load=False)
        self.switcher = ChampionSwitcher(cfg, self.store, self.analyser, self.alerts, switch_target=switch_target)
        self.judges: JudgeProcess | None = None
        if ingest_only:     # analysis.mode: apart, this process: the child judges (and loads the detectors)
            self.judges = JudgeProcess(cfg, references)
            writer = JournalWriter(cfg.models, champion=lambda model, conn: self.analyser.source.current_version(model, conn))
            self.monitor = Monitor(cfg, self.store, analyser=writer, on_idle=self.judges.tend,
                                   backlog=self._backlog)
        else:
            retry_store(self.analyser.load, "loading the detectors")
            self.monitor = Monitor(cfg, self.store, analyser=self.analyser, on_idle=self._idle)
        self.catch_up_every_s = 30.0
        self._last_catch_up = time.monotonic()
        self.alerts.manager.add_change_hook(self._on_alert_changes)
        self.api: Any = None
        self.broker_wait_s = 120.0   # how long ``run()`` waits for the broker at start

    def _backlog(self) -> int:
        """Journalled events not judged yet (the monitor's back-pressure reads it, without a lock)."""
        with self.store.read_engine.connect() as conn:
            return backlog(conn).events

    def _on_detections(self, conn: Connection, model: str, detections: list[Any], now: int) -> None:
        self.alerts.on_detections(conn, model, detections, now)

    def _on_alert_changes(self, conn: Connection, changes: list[Any], now: int) -> None:
        """Announced alert changes, in their transaction: the retraining policy may enqueue a job
        (written to the outbox, so exactly as durable as the alert)."""
        by_model: dict[str, list[Any]] = {}
        for ch in changes:
            by_model.setdefault(ch.state.model, []).append(ch)
        for model, model_changes in by_model.items():
            if model in self.cfg.models:
                self.retrain.on_alerts(conn, model, model_changes, now)
            if self.on_alert_changes is not None:
                self.on_alert_changes(conn, model, model_changes, now)

    def _idle(self) -> None:
        """After every poll, in the monitor's thread: live champion switches, and every
        ``catch_up_every_s`` a check that the stored detectors follow the registry's champion, and
        the shadows past ``retrain.shadow.max_hours`` rejected."""
        self.switcher.poll()
        if time.monotonic() - self._last_catch_up >= self.catch_up_every_s:
            self._last_catch_up = time.monotonic()
            try:
                self.catch_up_champions()
            except Exception as exc:  # noqa: BLE001 - the next check retries
                log_failure(log, "checking that the detectors follow the champion", exc)
            try:
                self.expire_shadows()
            except Exception as exc:  # noqa: BLE001 - the next check retries
                log_failure(log, "rejecting shadows past retrain.shadow.max_hours", exc)

    def expire_shadows(self) -> list[Any]:
        """Reject the shadows no live report decided within their ``retrain.shadow.max_hours``
        (:func:`retrain.shadow.expire_shadows`); returns their ``rejected`` events."""
        from driftloop.core.store import now_ms
        from retrain.shadow import expire_shadows

        with self.store.transaction() as conn:
            return expire_shadows(conn, self.cfg, self.registry, now_ms())

    def catch_up_champions(self) -> list[str]:
        """Apply the champion changes the stored detectors have not followed; returns the models.

        At start: the switcher follows ``driftloop.models`` from its end, so a
        promotion decided while the monitor was down (or killed) would otherwise only rebuild
        the detectors on the new reference and leave the alerts of the old one, and the ones the
        retraining answered, firing for ever. While running (every ``catch_up_every_s``):
        a ``promoted`` event whose switch failed on a store error (the
        record is consumed; the store kept the old reference). Either way the detectors stored
        for the old reference are restored and switched exactly as a live ``promoted`` event
        does (:meth:`ChampionSwitcher.apply`): same detector state, same resolutions.
        """
        from retrain.registry import Registry

        registry = Registry(self.cfg, self.store)
        done = []
        for model, mcfg in self.cfg.models.items():
            current = self.analyser.source.current_version(model)
            if current is None:
                continue
            behind = self._detectors_behind(model, mcfg, current)
            if behind is None:
                continue
            mon, generation, stored_version = behind
            entry = next((h for h in reversed(registry.history(model)) if h.event in ("promoted", "rolled_back")
                          and str(h.champion_version) == current), None)
            self._switch_stored(model, current, mon, generation, stored_version, entry)
            done.append(model)
        return done

    def _detectors_behind(self, model: str, mcfg: ModelConfig,
                          current: str) -> tuple[VersionedMonitor, int, str | None] | None:
        """The stored detectors of ``model`` if they were built on another reference than the
        champion ``current`` and can be restored for this model's task and features:
        (monitor, generation, reference version); else None."""
        stored, stored_version = self.store.detector_reference_version(model)
        if not stored or stored_version == current:
            return None
        row = self.store.detector_state_row(model)
        if row is None:
            return None
        blob, generation, stored_version = row
        try:
            mon = self.analyser.restore_stored(blob, stored_version)
        except Exception as exc:  # noqa: BLE001 - a state of another code version: start over
            log.warning("model %s: cannot restore the detectors of v%s (%s); starting over", model,
                        stored_version, exc)
            return None
        if mon.task != mcfg.task or mon.feature_types != dict(mcfg.features):
            return None
        return mon, generation, stored_version

    def _switch_stored(self, model: str, current: str, mon: VersionedMonitor, generation: int,
                       stored_version: str | None, entry: HistoryEntry | None) -> None:
        """Put the stored detectors back in the analyser and switch them to ``current`` as a live
        promotion does, resolving the alerts ``entry`` (the registry's decision, if found) answered."""
        resolves = [str(a) for a in (entry.details.get("alert_ids") or [])] if entry is not None else []
        self.analyser.monitors[model] = mon
        self.analyser.generation[model] = generation
        self.analyser.reference_version[model] = stored_version
        why = f"{entry.event if entry is not None else 'champion changed'}: {model} v{current}"
        log.info("model %s: v%s became champion while no monitor ran; switching from v%s now (%s)",
                 model, current, stored_version, why)
        self.switcher.apply(model, current, resolves, why)

    def install_signal_handlers(self) -> None:
        self.monitor.install_signal_handlers()

    def stop(self) -> None:
        self.monitor.stop()

    def run(self, *, max_seconds: float | None = None) -> Any:
        from driftloop.kafka.clients import wait_for_broker

        # before anything makes a Kafka client: a broker that is not up yet gives one clear
        # line every few seconds and a retry, not a stack trace from the first client
        if not wait_for_broker(self.cfg.kafka, timeout_s=self.broker_wait_s, stop=self.monitor.stop_event):
            return self.monitor.stats      # SIGTERM while waiting
        if self.judges is not None:   # analysis.mode: apart: the child judges; the API shows the stored state
            self.judges.start()
            try:
                return self._serve(None, max_seconds)
            finally:
                self.judges.stop()
        if not self._start_judging_side(self.monitor.stop_event):
            return self.monitor.stats      # SIGTERM while the store was unavailable
        try:
            self.switcher.start()
            return self._serve(self.analyser, max_seconds)
        finally:
            self._stop_judging_side()

    def _serve(self, analyser: DriftAnalyser | None, max_seconds: float | None) -> Any:
        """The HTTP API (``analyser``: the in-process detectors, for their live status) and the
        monitor's loop until it stops; then the API stops."""
        from driftloop.app.api.runner import start_api

        api = None
        try:
            api = start_api(self.cfg, self.store, monitor=self.monitor, analyser=analyser, alerts=self.alerts)
            if api is not None:
                log.info("HTTP API and dashboard on %s", api.url)
            self.api = api
            return self.monitor.run(max_seconds=max_seconds)
        finally:
            if api is not None:
                api.stop()

    def _start_judging_side(self, stop: Any) -> bool:
        """What runs beside the detectors (inline monitor, or the judging child): the champion
        catch-up, the alert dispatcher and scheduler, the retraining cron. False: stopped while
        the store was unavailable."""
        if not (retry_store(self.catch_up_champions, "catching up with the registry's champions", stop=stop)
                and retry_store(self.alerts.start, "starting the alert dispatcher", stop=stop)):
            return False
        self.retrain.start_cron()
        return True

    def _stop_judging_side(self) -> None:
        self.switcher.close()
        self.retrain.stop_cron()
        self.alerts.stop()

    def run_judge(self, alive: Callable[[], bool]) -> int:
        """The judging child's loop (``analysis.mode: apart``): judge the journal until stopped,
        with the alerts, the retraining policy and the champion switches running beside it as in
        the inline monitor. Once ``alive()`` is false (the monitor was killed), it judges on until
        nothing waits or a newer judging process has taken over (a monitor restarted at once
        must not leave the journal unjudged while its own child starts). Returns the entries
        judged."""
        from driftloop.kafka.clients import wait_for_broker
        from driftloop.monitoring.judge import Judge

        stop = self.monitor.stop_event
        if not wait_for_broker(self.cfg.kafka, timeout_s=self.broker_wait_s, stop=stop):
            return 0
        if not (retry_store(self.analyser.load, "loading the detectors", stop=stop)
                and self._start_judging_side(stop)):
            return 0
        judge = Judge(self.cfg, self.store, self.analyser)
        failures = 0
        try:
            if not retry_store(lambda: judge.take_over(f"{socket.gethostname()}:{os.getpid()}"),
                               "taking over the judging", stop=stop):
                return 0
            self.switcher.start()
            log.info("judging process %d: judging the journal (detectors loaded, alerts and switches running)",
                     os.getpid())
            while not stop.is_set():
                try:
                    judged = judge.judge_pending()
                    if not alive() and (not judged or judge.superseded()):
                        break       # orphaned: judge on until nothing waits or a newer process took over
                    self._idle()    # (the switcher's poll runs the analyser's idle step too)
                except STORE_ERRORS as exc:
                    failures += 1
                    log.error("judging: store unavailable (%s); nothing judged is lost, retry %d in %.1fs",
                              describe_store_error(exc), failures, backoff_s(failures))
                    stop.wait(backoff_s(failures))
                    continue
                failures = 0
                if not judged:
                    stop.wait(0.05)
        finally:
            self._stop_judging_side()
        return judge.judged_entries
