"""The alert manager: applies the lifecycle inside the caller's transaction and queues deliveries.

:meth:`AlertManager.process` is what the monitor calls inside each batch transaction, with the
detections of one model; :meth:`AlertManager.resolve` is what retraining calls for the alerts a
new model answers; :meth:`AlertManager.tick` ends hold-downs and group windows between batches.
Each writes, in the connection it is given and nothing else:

1. the alert states (``alerts``),
2. one history row per announced change (``alert_events``, with the message as sent),
3. one delivery row per change and sink (``alert_deliveries``): the Kafka alerts topic always,
   each configured sink whose routes match the alert's model, kind and severity.

So an alert's change commits or rolls back with the detector state and the offsets; the
:class:`~driftloop.alerts.dispatcher.AlertDispatcher` sends it afterwards.

The ``driftloop.alerts`` topic is a delivery sink here (``kafka``), not a row of the shared
outbox: that way it gets the same idempotency key as every other sink (header ``driftloop-id``
= ``alert_id:status:seq``, stable however the change is retried), the same per-alert ordering,
retries with backoff and per-sink status in ``driftloop alerts list``, and publishing runs in
the dispatcher's own thread, so a slow broker never delays a batch (the outbox is published by
the consumer loop itself).

Retraining, in its own process, resolves the alerts a new champion answers with
``AlertManager(cfg, store).resolve(conn, alert_ids, reason, now)``; the monitor's dispatcher
finds the queued deliveries at its next poll (``dispatch.poll_interval_s``).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from driftloop.alerts import tables as t
from driftloop.alerts.incident_messages import incident_message
from driftloop.alerts.incidents import IncidentBook, IncidentChange, IncidentPolicy, IncidentState
from driftloop.alerts.lifecycle import AlertChange, AlertLifecycle, AlertState, Policy
from driftloop.alerts.messages import alert_message, summary
from driftloop.core.config.alerts import KAFKA_SINK, AlertsConfig
from driftloop.core.store import Store, now_ms

__all__ = ["AlertManager"]

log = logging.getLogger(__name__)


class AlertManager:
    """Alert lifecycle + persistence + routing; see the module docstring.

    ``config`` is the whole :class:`~driftloop.core.config.Config` (its ``alerts`` section is
    validated here) or an :class:`~driftloop.core.config.alerts.AlertsConfig`.
    """

    def __init__(self, config: Any, store: Store) -> None:
        self.cfg: AlertsConfig = config if isinstance(config, AlertsConfig) else AlertsConfig.from_dict(config.alerts)
        self.store = store
        self.policy = Policy.from_config(self.cfg)
        self.incident_policy = IncidentPolicy.from_config(self.cfg)
        self._listeners: list[Callable[[], None]] = []
        self._change_hooks: list[Callable[[Connection, list[AlertChange], int], Any]] = []

    def add_listener(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` after a transaction that queued deliveries commits (the dispatcher's wake)."""
        self._listeners.append(fn)

    def add_change_hook(self, fn: Callable[[Connection, list[AlertChange], int], Any]) -> None:
        """Call ``fn(conn, changes, now)`` inside the transaction that announces changes, whichever
        entry point made them (a batch's detections, a tick ending a group window or hold-down,
        a resolve): e.g. the retraining policy enqueues its jobs atomically with the alert."""
        self._change_hooks.append(fn)

    # -- the three entry points --------------------------------------------------------------
    def process(self, conn: Connection, model: str, model_version: str | None, detections: Sequence[Any],
                now: int) -> list[AlertChange]:
        """Apply one model's detections (made at ``now``, epoch ms) inside the caller's transaction.

        Returns the announced changes (already queued for delivery). Cheap when there are no
        detections and nothing of the model is due. On PostgreSQL the caller holds the model's
        lock (``Store.lock_models``), as the monitor's batch transaction does.
        """
        if not detections and model not in t.due_models(conn, now):
            return []
        book = AlertLifecycle(self.policy, t.load_states(conn, models=[model]))
        changes = book.observe_many(detections, model, model_version, now)
        self._write(conn, book, changes, now)
        return changes

    def resolve(self, conn: Connection, alert_ids: Iterable[str], reason: str, now: int) -> list[AlertChange]:
        """Resolve alerts at once (no hold-down), e.g. ``reason="retrained: fraud v4 promoted"``.

        Group ids resolve the group and its members; unknown or resolved ids are ignored. Takes
        the models' locks itself, so it may run in any transaction.
        """
        ids = sorted(set(alert_ids))
        if not ids:
            return []
        models = {r[0] for r in conn.execute(sa.select(t.alerts.c.model).where(t.alerts.c.alert_id.in_(ids)))}
        if not models:
            return []
        self.store.lock_models(conn, models)
        book = AlertLifecycle(self.policy, t.load_states(conn, models=models))
        changes = book.resolve(ids, reason, now)
        self._write(conn, book, changes, now)
        return changes

    def tick(self, conn: Connection | None = None, now: int | None = None) -> list[AlertChange]:
        """End the hold-downs and group windows that are over (the scheduler runs this every
        ``tick_every_s``). Without ``conn`` it opens its own transaction only when something is due."""
        now = now_ms() if now is None else now
        if conn is not None:
            return self._tick(conn, now)
        with self.store.engine.connect() as c:
            if not t.due_models(c, now):
                return []
        with self.store.transaction() as c:
            return self._tick(c, now)

    def _tick(self, conn: Connection, now: int) -> list[AlertChange]:
        models = t.due_models(conn, now)
        if not models:
            return []
        self.store.lock_models(conn, models)
        book = AlertLifecycle(self.policy, t.load_states(conn, models=models))
        changes = book.tick(now)
        self._write(conn, book, changes, now)
        return changes

    # -- reading -------------------------------------------------------------------------------
    def states(self, conn: Connection | None = None, *, models: Iterable[str] | None = None) -> dict[str, AlertState]:
        with self.store._conn(conn) as c:
            return t.load_states(c, models=models)

    def sinks_for(self, state: AlertState) -> list[str]:
        """Names of the sinks an alert's changes go to: the Kafka topic, then every matching sink
        that pages per alert (``page: alerts``)."""
        return [KAFKA_SINK] + [s.name for s in self.cfg.sinks
                               if s.page == "alerts" and s.matches(state.model, state.kind, state.severity)]

    def incident_sinks_for(self, change: IncidentChange) -> list[str]:
        """Names of the sinks an incident's changes go to: each sink that pages per incident
        (the default) whose routes match one of its member alerts, at the incident's severity."""
        inc = change.state
        kinds = set(inc.kinds) | {m.kind for m in change.members}
        return [s.name for s in self.cfg.sinks
                if s.page == "incidents" and any(s.matches(inc.model, k, inc.severity) for k in sorted(kinds))]

    # -- writing -------------------------------------------------------------------------------
    def _incidents(self, conn: Connection, book: AlertLifecycle, changes: list[AlertChange], now: int
                   ) -> tuple[IncidentBook, list[IncidentChange]]:
        """The incidents of the models in ``book``, with ``changes`` folded in (and their waits ticked)."""
        models = {st.model for st in book.states.values()} | {ch.state.model for ch in changes}
        if not models:
            return IncidentBook(self.incident_policy, {}, {}), []
        incidents = t.load_incidents(conn, models=models, active_only=True)
        ibook = IncidentBook(self.incident_policy, incidents, t.incident_ordinals(conn, models), hint=_hint)
        return ibook, ibook.apply(changes, book, now)

    def _write(self, conn: Connection, book: AlertLifecycle, changes: list[AlertChange], now: int) -> None:
        summaries: dict[str, str] = {}
        events: list[dict[str, Any]] = []
        deliveries: list[dict[str, Any]] = []
        ibook, incident_changes = self._incidents(conn, book, changes, now)
        for ch in changes:
            msg = alert_message(ch)
            summaries[ch.alert_id] = msg["summary"]
            _queue(events, deliveries, ch.alert_id, ch, msg, self.sinks_for(ch.state), now)
            log.info("alert %s %s (%s, seq %d): %s", ch.alert_id, ch.status, ch.reason, ch.seq, msg["summary"])
        incident_summaries = self._queue_incidents(incident_changes, events, deliveries, now)
        dirty = [book.states[i] for i in sorted(book.dirty)]
        for st in dirty:
            if st.alert_id not in summaries:
                summaries[st.alert_id] = _state_summary(book, st)
        t.save_states(self.store, conn, dirty, summaries)
        t.save_incidents(self.store, conn, [ibook.incidents[i] for i in sorted(ibook.dirty)],
                         {i: incident_summaries.get(i) or _incident_state_summary(ibook.incidents[i])
                          for i in ibook.dirty})
        t.insert_events(conn, events, deliveries)
        if changes:
            for hook in self._change_hooks:
                hook(conn, changes, now)
        if deliveries and self._listeners:
            sa.event.listen(conn, "commit", self._on_commit, once=True)

    def _queue_incidents(self, changes: list[IncidentChange], events: list[dict[str, Any]],
                         deliveries: list[dict[str, Any]], now: int) -> dict[str, str]:
        """History and delivery rows of announced incident changes (in ``alert_events`` and
        ``alert_deliveries``, keyed by ``incident_id``); returns each incident's sentence."""
        out = {}
        for ch in changes:
            msg = incident_message(ch)
            out[ch.incident_id] = msg["summary"]
            _queue(events, deliveries, ch.incident_id, ch, msg, self.incident_sinks_for(ch), now)
            log.info("incident %s %s (%s, seq %d): %s", ch.incident_id, ch.status, ch.reason, ch.seq, msg["summary"])
        return out

    def _on_commit(self, _conn: Connection) -> None:
        for fn in self._listeners:
            try:
                fn()
            except Exception:  # a wake-up must never break the batch
                log.exception("alert listener failed")


def _state_summary(book: AlertLifecycle, st: AlertState) -> str:
    """The sentence for a state that changed without an announcement (listings only)."""
    status: Literal["firing", "resolved"] = "resolved" if st.status == "resolved" else "firing"
    reason = (st.resolve_reason or "cleared") if status == "resolved" else "fired"
    members = tuple(book.group_members(st)) if st.is_group else ()
    text = summary(AlertChange(st.alert_id, status, st.seq, reason, st.updated_at, st, members))
    if st.status == "pending":
        return f"(pending) {text}"
    if st.group_id is not None and st.status != "resolved":
        return f"(in group {st.group_id}) {text}"
    return text


def _queue(events: list[dict[str, Any]], deliveries: list[dict[str, Any]], subject: str,
           change: AlertChange | IncidentChange, message: dict[str, Any], sinks: list[str], now: int) -> None:
    """The history row of an announced change (an alert's or an incident's: ``subject`` is its
    id) and one pending delivery row per sink."""
    key = change.idempotency_key
    events.append({"idempotency_key": key, "alert_id": subject, "seq": change.seq, "status": change.status,
                   "model": change.state.model, "severity": change.state.severity, "reason": change.reason,
                   "created_at": now, "message": t.dumps(message)})
    deliveries += [{"idempotency_key": key, "alert_id": subject, "sink": sink, "status": "pending", "attempts": 0,
                    "next_attempt_at": now, "lease_until": None, "last_error": None, "created_at": now,
                    "sent_at": None} for sink in sinks]


def _hint(inc: IncidentState, leaves: list[AlertState]) -> dict[str, Any]:
    """The root-cause hint of an incident as stored and sent: ``{"text", "parts"}``."""
    from driftloop.alerts.hint import root_cause_hint

    hint = root_cause_hint(inc.model, inc.model_version, leaves)
    return {"text": hint.text, "parts": list(hint.parts)}


def _incident_state_summary(inc: IncidentState) -> str:
    """The sentence of an incident that changed without an announcement (listings only)."""
    hint = (inc.hint or {}).get("text") or ""
    prefix = {"pending": "(pending) ", "resolved": f"resolved ({inc.resolve_reason}). "}.get(inc.status, "")
    return f"{prefix}{hint}".strip()
