"""Incidents: the alerts of one model version that fire together page as one problem.

Pure logic, no I/O, driven by the announced :class:`~driftloop.alerts.lifecycle.AlertChange`
objects and a clock you pass in (as :mod:`driftloop.alerts.lifecycle`, one level up). The
members of an incident are *top-level* alerts: group alerts and alerts outside any group (a
group's own members page nothing; they are reached through their group). Its status::

             first member fires          wait_ms over               every member resolved
  (none) ─────────────────────▶ pending ──────────────▶ open ─────────────────────────▶ resolved
                                   │ every member resolved (never paged)
                                   └────────────────────────────────────────────────▶ resolved

* ``pending``: a top-level alert of (model, version) fired and no incident of that version was
  active: a new incident waits ``wait_ms`` (like Alertmanager's ``group_wait``) so that the
  data drift, prediction drift and performance alerts that fire in the same minutes page once.
* ``open``: announced (an :class:`IncidentChange` ``opened``). A top-level alert of the same
  version that fires while it is open joins it (``grown``, announced); a member turning critical
  raises it (``escalated``, announced once).
* ``resolved``: its last active member resolved (``resolved``, announced if it was open).

``incident_id`` is stable and the same live and in a replay of the same events: the hash of
(model, version, the incident's ordinal for that version).

>>> from driftloop.alerts.lifecycle import AlertLifecycle, Policy
>>> from detectors.base import Detection, Window
>>> alerts = AlertLifecycle(Policy(group_window_ms=0, hold_down_ms=0), {})
>>> book = IncidentBook(IncidentPolicy(wait_ms=30_000), {}, {})
>>> drift = Detection("data_drift", "psi", "amount", 0.31, 1e-7, 0.1, Window(0, 1, 5000))
>>> book.apply(alerts.observe(drift, "fraud", "3", now=1_000), alerts, now=1_000)    # pending: nothing paged
[]
>>> perf = Detection("performance", "accuracy", None, 0.61, None, 0.8, Window(0, 1, 1000))
>>> book.apply(alerts.observe(perf, "fraud", "3", now=20_000), alerts, now=20_000)
[]
>>> [(c.reason, c.seq, len(c.state.members)) for c in book.apply([], alerts, now=31_000)]
[('opened', 1, 2)]
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from driftloop.alerts.lifecycle import AlertChange, AlertLifecycle, AlertState, fingerprint, severity_max

__all__ = ["IncidentPolicy", "IncidentState", "IncidentChange", "IncidentBook", "incident_id", "leaf_alerts",
           "ACTIVE_INCIDENT"]

ACTIVE_INCIDENT = ("pending", "open")
_RANK = {"warning": 0, "critical": 1}


def incident_id(model: str, version: str | None, ordinal: int) -> str:
    """The id of the ``ordinal``-th incident (1, 2, ...) of a model version.

    >>> incident_id("fraud", "3", 1) == incident_id("fraud", "3", 1) != incident_id("fraud", "3", 2)
    True
    """
    return fingerprint(model, "incident", "incident", str(ordinal), version)


@dataclass(frozen=True)
class IncidentPolicy:
    """``wait_ms``: how long a new incident waits for more alerts before it pages (0: at once)."""

    wait_ms: int = 30_000

    @classmethod
    def from_config(cls, cfg: Any) -> IncidentPolicy:
        """From an :class:`~driftloop.core.config.alerts.AlertsConfig`."""
        return cls(wait_ms=int(cfg.incidents.wait_s * 1000))


@dataclass
class IncidentState:
    """One incident (a row of the ``incidents`` table). Times are epoch ms; ``members`` are the
    top-level alert ids in the order they joined; ``hint`` is ``{"text", "parts"}``
    (:mod:`driftloop.alerts.hint`), refreshed whenever a member changes."""

    incident_id: str
    model: str
    model_version: str | None
    ordinal: int
    status: Literal["pending", "open", "resolved"] = "pending"
    severity: str = "warning"
    seq: int = 0
    members: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    started_at: int = 0
    opened_at: int | None = None
    due_at: int | None = None
    updated_at: int = 0
    resolved_at: int | None = None
    resolve_reason: str | None = None
    hint: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_INCIDENT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IncidentState:
        return cls(**d)


@dataclass(frozen=True)
class IncidentChange:
    """An announced change of an incident: ``reason`` is ``opened``, ``grown`` (``joined``
    names the new members), ``escalated`` or ``resolved``; ``status`` is ``firing`` for the first
    three (the sinks' vocabulary). ``members`` are copies of the member alerts' states and
    ``leaves`` of the alerts the hint reads (a group's members instead of the group)."""

    incident_id: str
    status: Literal["firing", "resolved"]
    seq: int
    reason: str
    at: int
    state: IncidentState
    members: tuple[AlertState, ...] = ()
    joined: tuple[str, ...] = ()
    previous_severity: str | None = None

    @property
    def idempotency_key(self) -> str:
        """``incident_id:status:seq``, stable through every retry (as an alert change's)."""
        return f"{self.incident_id}:{self.status}:{self.seq}"


def leaf_alerts(members: Iterable[AlertState], states: Mapping[str, AlertState]) -> list[AlertState]:
    """The alerts behind top-level ``members``: a group's members in its place."""
    out: list[AlertState] = []
    for m in members:
        if m.is_group:
            out += [states[i] for i in (m.members or []) if i in states]
        else:
            out.append(m)
    return out


class IncidentBook:
    """The incidents of some models, in memory while a transaction runs.

    ``incidents``: the stored ones (at least every active one of these models); ``ordinals``:
    the number of incidents each (model, version) has had so far. :meth:`apply` takes the alert
    changes a transaction announced and the :class:`AlertLifecycle` that made them (it sets
    ``incident_id`` on the member alerts and marks them dirty there); ``dirty`` names the
    incidents to write back. ``hint`` renders a member list into ``{"text", "parts"}``.
    """

    def __init__(self, policy: IncidentPolicy, incidents: Mapping[str, IncidentState],
                 ordinals: Mapping[tuple[str, str], int], *, hint: Any = None) -> None:
        self.policy = policy
        self.incidents: dict[str, IncidentState] = dict(incidents)
        self.ordinals: dict[tuple[str, str], int] = dict(ordinals)
        self.dirty: set[str] = set()
        self._hint = hint

    def apply(self, changes: Sequence[AlertChange], alerts: AlertLifecycle, now: int) -> list[IncidentChange]:
        """Fold announced alert changes into incidents, then open the ones whose wait is over."""
        out: list[IncidentChange] = []
        joined: dict[str, list[str]] = {}
        for ch in changes:
            live = alerts.states.get(ch.alert_id, ch.state)
            if live.group_id is not None:      # a member: its group is what the incident holds
                continue
            if ch.status == "firing" and ch.reason == "fired":
                inc = self._join(live, alerts, now)
                ch.state.incident_id = inc.incident_id      # the change's copy names it too (its message)
                if inc.status == "open" and live.alert_id not in joined.setdefault(inc.incident_id, []):
                    joined[inc.incident_id].append(live.alert_id)
            elif ch.status == "firing":
                inc_ = self._of(live)
                if inc_ is not None:
                    out += self._raise(inc_, alerts, now)
            else:
                inc_ = self._of(live)
                if inc_ is not None:
                    out += self._member_resolved(inc_, alerts, ch.reason, now)
        for iid, ids in joined.items():
            inc = self.incidents[iid]
            if inc.status == "open" and ids:
                out.append(self._announce(inc, alerts, "firing", "grown", now, joined=tuple(ids)))
        out += self.tick(alerts, now)
        self._refresh_hints(alerts)
        return out

    def tick(self, alerts: AlertLifecycle, now: int) -> list[IncidentChange]:
        """Open the pending incidents whose wait is over at ``now``."""
        out = []
        for inc in sorted(self.incidents.values(), key=lambda i: (i.started_at, i.incident_id)):
            if inc.status == "pending" and inc.due_at is not None and inc.due_at <= now:
                inc.status, inc.opened_at, inc.due_at = "open", now, None
                out.append(self._announce(inc, alerts, "firing", "opened", now))
        return out

    # -- internals -------------------------------------------------------------------------------
    def _touch(self, inc: IncidentState, alerts: AlertLifecycle, now: int) -> None:
        inc.updated_at = now
        members = self._members(inc, alerts)
        inc.kinds = sorted({leaf.kind for leaf in leaf_alerts(members, alerts.states)} | {m.kind for m in members
                                                                                          if not m.is_group})
        if self._hint is not None:
            inc.hint = self._hint(inc, leaf_alerts(members, alerts.states))
        self.dirty.add(inc.incident_id)

    def _refresh_hints(self, alerts: AlertLifecycle) -> None:
        """Re-read the hint of each incident touched in this transaction, and of each active one
        a member of which changed here without an announcement (a firing alert's evidence moves
        every window), from the members' states as the transaction leaves them. So a stored hint
        is a function of its members' last states, not of which member changed last: live and
        replay, whose micro-batches are cut differently, store the same hint."""
        if self._hint is None:
            return
        for inc in self.incidents.values():
            leaves = leaf_alerts(self._members(inc, alerts), alerts.states)
            changed = inc.active and any(a.alert_id in alerts.dirty for a in leaves)
            if inc.incident_id in self.dirty or changed:
                hint = self._hint(inc, leaves)
                if hint != inc.hint:
                    inc.hint = hint
                    self.dirty.add(inc.incident_id)

    def _members(self, inc: IncidentState, alerts: AlertLifecycle) -> list[AlertState]:
        return [alerts.states[i] for i in inc.members if i in alerts.states]

    def _of(self, alert: AlertState) -> IncidentState | None:
        inc = self.incidents.get(alert.incident_id or "")
        if inc is not None:
            return inc
        return next((i for i in self.incidents.values() if alert.alert_id in i.members and i.active), None)

    def _active_for(self, model: str, version: str) -> IncidentState | None:
        return next((i for i in self.incidents.values()
                     if i.active and i.model == model and (i.model_version or "") == version), None)

    def _join(self, alert: AlertState, alerts: AlertLifecycle, now: int) -> IncidentState:
        version = alert.model_version or ""
        inc = self._active_for(alert.model, version)
        if inc is None:
            n = self.ordinals.get((alert.model, version), 0) + 1
            self.ordinals[(alert.model, version)] = n
            inc = IncidentState(incident_id(alert.model, version, n), alert.model, version or None, n,
                                started_at=now, due_at=now + self.policy.wait_ms)
            self.incidents[inc.incident_id] = inc
        if alert.alert_id not in inc.members:
            inc.members.append(alert.alert_id)
        inc.severity = severity_max(inc.severity, alert.severity)
        alert.incident_id = inc.incident_id
        alerts.dirty.add(alert.alert_id)
        self._touch(inc, alerts, now)
        return inc

    def _raise(self, inc: IncidentState, alerts: AlertLifecycle, now: int) -> list[IncidentChange]:
        """A member escalated: the incident follows; announced if it is open and got worse."""
        previous = inc.severity
        for m in self._members(inc, alerts):
            if m.active:
                inc.severity = severity_max(inc.severity, m.severity)
        self._touch(inc, alerts, now)
        if inc.status == "open" and _RANK.get(inc.severity, 0) > _RANK.get(previous, 0):
            return [self._announce(inc, alerts, "firing", "escalated", now, previous_severity=previous)]
        return []

    def _member_resolved(self, inc: IncidentState, alerts: AlertLifecycle, reason: str,
                         now: int) -> list[IncidentChange]:
        self._touch(inc, alerts, now)
        if not inc.active or any(m.active for m in self._members(inc, alerts)):
            return []
        was_open = inc.status == "open"
        inc.status, inc.resolved_at, inc.due_at = "resolved", now, None
        inc.resolve_reason = "every member resolved" if reason in ("cleared", "members_resolved") else reason
        if not was_open:
            inc.resolve_reason = "every member resolved before it paged"
            return []
        return [self._announce(inc, alerts, "resolved", "resolved", now)]

    def _announce(self, inc: IncidentState, alerts: AlertLifecycle, status: Literal["firing", "resolved"],
                  reason: str, now: int, *, joined: tuple[str, ...] = (),
                  previous_severity: str | None = None) -> IncidentChange:
        inc.seq += 1
        self._touch(inc, alerts, now)
        members = tuple(copy.deepcopy(m) for m in self._members(inc, alerts))
        return IncidentChange(inc.incident_id, status, inc.seq, reason, now, copy.deepcopy(inc), members, joined,
                              previous_severity)
