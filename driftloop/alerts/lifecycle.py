"""The alert state machine: pure logic, no I/O, driven by detections and a clock you pass in.

Every problem has a stable ``alert_id`` (:func:`fingerprint` of model, version, kind, detector and
feature) and one :class:`AlertState`. Its status moves like this::

             detect                 group window closes            clear               hold-down over
  resolved ─────────▶ pending ─────────────────────────▶ firing ─────────▶ resolving ─────────────▶ resolved
                │ clear (never announced)               ▲       re-detect     │
                └──────────▶ resolved                   └─────────────────────┘

* ``pending``: detected, not announced yet. It waits for the group window (so that alerts of
  one model and kind that start together page once) and, after a resolution, for the
  cooldown: a problem detected again within ``cooldown`` stays pending until the cooldown is
  over and fires then if it has not cleared meanwhile.
* ``firing``: announced once (an :class:`AlertChange` with status ``firing``). Re-detections
  only update the evidence; becoming ``critical`` announces it again when
  ``notify_escalation`` is on. Severity never goes down within an episode.
* ``resolving``: the detector cleared; if it stays clear for the hold-down, the alert
  resolves (an :class:`AlertChange` with status ``resolved``) and the cooldown starts.

Grouping: when at least ``group_min`` alerts of one (model, kind) become due together, they
page as one *group alert* (``detector`` ``group``, ``feature`` None, the members in its
evidence); members page nothing on their own. Alerts of that (model, kind) that start while
the group fires join it silently. The group resolves when its last member does.

Only announced changes produce :class:`AlertChange` objects; everything else is an update of
the state (``AlertLifecycle.dirty`` names what to write back).

>>> from detectors.base import Detection, Window
>>> book = AlertLifecycle(Policy(hold_down_ms=60_000, cooldown_ms=600_000, group_window_ms=0), {})
>>> det = Detection("data_drift", "psi", "amount", 0.31, 1e-7, 0.1, Window(0, 1, 5000))
>>> [(c.status, c.seq) for c in book.observe(det, "fraud", "3", now=1_000)]
[('firing', 1)]
>>> book.observe(det, "fraud", "3", now=2_000)          # re-detection: an update, no page
[]
>>> clear = Detection("data_drift", "psi", "amount", 0.02, 0.4, 0.1, Window(2, 3, 5000), firing=False)
>>> book.observe(clear, "fraud", "3", now=10_000), book.tick(now=69_999)
([], [])
>>> [(c.status, c.seq) for c in book.tick(now=70_000)]  # clear for the whole hold-down
[('resolved', 2)]
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["fingerprint", "group_fingerprint", "Policy", "AlertState", "AlertChange", "AlertLifecycle",
           "GROUP_DETECTOR", "ACTIVE", "severity_max"]

GROUP_DETECTOR = "group"
ACTIVE = ("pending", "firing", "resolving")
_RANK = {"warning": 0, "critical": 1}


def fingerprint(model: str, kind: str, detector: str, feature: str | None, version: str | None = None,
                segment: Mapping[str, str] | None = None) -> str:
    """Stable id of a problem: the same (model, version, kind, detector, feature, segment) always
    gives the same id (contract v1.1: each version served is judged on its own, so two versions
    with the same problem have two alerts; a segment's problem is not all traffic's). Without a
    version (events that name none, no registry) and a segment the id is the one earlier
    releases gave.

    >>> fingerprint("fraud", "data_drift", "psi", "amount")
    '9552703cc861a17fe44b'
    >>> fingerprint("fraud", "data_drift", "psi", "amount", "") == fingerprint("fraud", "data_drift", "psi", "amount")
    True
    >>> fingerprint("fraud", "data_drift", "psi", "amount", "2") != fingerprint("fraud", "data_drift", "psi", "amount", "3")
    True
    >>> fingerprint("fraud", "data_drift", "psi", None) != fingerprint("fraud", "data_drift", "psi", "None")
    True
    >>> br = fingerprint("fraud", "performance", "accuracy", None, "3", {"country": "BR"})
    >>> br != fingerprint("fraud", "performance", "accuracy", None, "3")
    True
    """
    key: list[Any] = [model, kind, detector, feature]
    if version or segment:
        key.append(version or "")
    if segment:
        key.append(sorted(segment.items()))
    raw = json.dumps(key, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def group_fingerprint(model: str, kind: str, version: str | None = None) -> str:
    """The id of the group alert of one (model, version, kind)."""
    return fingerprint(model, kind, GROUP_DETECTOR, None, version)


def severity_max(a: str, b: str) -> str:
    return a if _RANK.get(a, 0) >= _RANK.get(b, 0) else b


@dataclass(frozen=True)
class Policy:
    """Timings (milliseconds) and rules of the lifecycle; see :class:`~driftloop.core.config.alerts.AlertsConfig`."""

    hold_down_ms: int = 300_000
    cooldown_ms: int = 1_800_000
    group_window_ms: int = 10_000
    group_min: int = 2
    notify_escalation: bool = True
    critical: Mapping[str, float] = field(default_factory=dict)
    hold_down_by_kind: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Any) -> Policy:
        """From an :class:`~driftloop.core.config.alerts.AlertsConfig`."""
        return cls(hold_down_ms=int(cfg.hold_down_s * 1000), cooldown_ms=int(cfg.cooldown_s * 1000),
                   group_window_ms=int(cfg.group_window_s * 1000), group_min=cfg.group_min,
                   notify_escalation=cfg.notify_escalation, critical=dict(cfg.critical),
                   hold_down_by_kind={"stale_stream": int(cfg.stale.hold_down_s * 1000)})

    def hold_down(self, kind: str) -> int:
        return self.hold_down_by_kind.get(kind, self.hold_down_ms)

    def severity(self, det: Any) -> str:
        """The detector's severity, raised to ``critical`` when an effect size reaches its
        configured threshold (by detector name, or by a statistic in ``evidence["statistics"]``).

        >>> from detectors.base import Detection, Window
        >>> d = Detection("data_drift", "ks", "amount", 0.2, 1e-9, 0.1, Window(0, 1, 100),
        ...               evidence={"statistics": {"psi": 0.31}})
        >>> Policy().severity(d), Policy(critical={"psi": 0.25}).severity(d)
        ('warning', 'critical')
        """
        if det.severity == "critical":
            return "critical"
        stats = (det.evidence or {}).get("statistics") or {}
        for name, thr in self.critical.items():
            value = det.effect_size if det.detector == name else stats.get(name)
            if value is None and det.detector == name:
                value = det.statistic
            if value is not None and _finite(value) and abs(float(value)) >= thr:
                return "critical"
        return "warning"


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


@dataclass
class AlertState:
    """The current state of one alert (one row of the ``alerts`` table).

    Times are epoch milliseconds. ``detection`` holds the evidence of the last detection
    (``statistic``, ``p_value``, ``threshold``, ``window``, ``effect_size``, ``summary``,
    ``evidence``), ``clear`` that of the detection that cleared it. A group alert has
    ``members`` (alert ids); a member has ``group_id``. A top-level alert (a group, or an alert
    outside any) has the ``incident_id`` of its last incident.
    """

    alert_id: str
    model: str
    kind: str
    detector: str
    feature: str | None
    status: Literal["pending", "firing", "resolving", "resolved"] = "resolved"
    severity: str = "warning"
    model_version: str | None = None
    seq: int = 0
    group_id: str | None = None
    members: list[str] | None = None
    started_at: int | None = None
    fired_at: int | None = None
    detected_at: int | None = None
    cleared_at: int | None = None
    resolved_at: int | None = None
    cooldown_until: int | None = None
    due_at: int | None = None
    updated_at: int = 0
    detection: dict[str, Any] | None = None
    clear: dict[str, Any] | None = None
    resolve_reason: str | None = None
    incident_id: str | None = None   # the incident of a top-level alert (:mod:`driftloop.alerts.incidents`)
    segment: dict[str, str] | None = None   # contract v1.1: the slice of traffic (None: all traffic)

    @property
    def is_group(self) -> bool:
        return self.members is not None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AlertState:
        return cls(**d)


@dataclass(frozen=True)
class AlertChange:
    """An announced change: what goes to the alerts topic and the sinks.

    ``reason``: ``fired``, ``escalated``, ``cleared`` (hold-down over), ``resolved_by_request``
    (e.g. retraining answered it), ``members_resolved`` (a group whose last member resolved).
    ``state`` is a copy of the alert as of this change; ``members`` the states of a group's
    members (empty otherwise).
    """

    alert_id: str
    status: Literal["firing", "resolved"]
    seq: int
    reason: str
    at: int
    state: AlertState
    members: tuple[AlertState, ...] = ()
    previous_severity: str | None = None

    @property
    def idempotency_key(self) -> str:
        """``alert_id:status:seq``: the same change keeps its key through every retry.

        >>> AlertChange("abc", "firing", 3, "fired", 0, AlertState("abc", "m", "data_drift", "ks", "x")).idempotency_key
        'abc:firing:3'
        """
        return f"{self.alert_id}:{self.status}:{self.seq}"


def detection_record(det: Any) -> dict[str, Any]:
    """The evidence of a :class:`~detectors.base.Detection` as plain data."""
    w = det.window
    return {
        "statistic": det.statistic, "p_value": det.p_value, "threshold": det.threshold,
        "window": {"start_ts": w.start_ts, "end_ts": w.end_ts, "n": w.n},
        "effect_size": det.effect_size, "severity": det.severity, "summary": det.summary,
        "evidence": dict(det.evidence or {}), "model_version": det.model_version,
    }


class AlertLifecycle:
    """The alerts of one or more models, held in memory while a transaction runs, moved through
    their lifecycle (not :class:`detectors.decision.AlertBook`, which keeps one detector's firing
    keys so that it reports changes only).

    Build it from the stored states, feed it detections (:meth:`observe`), let time pass
    (:meth:`tick`) or resolve on request (:meth:`resolve`); each returns the announced
    changes. ``dirty`` is the set of alert ids whose state must be written back.
    """

    def __init__(self, policy: Policy, states: Mapping[str, AlertState]) -> None:
        self.policy = policy
        self.states: dict[str, AlertState] = dict(states)
        self.dirty: set[str] = set()

    # -- inputs --------------------------------------------------------------------------------
    def observe(self, det: Any, model: str, model_version: str | None, now: int) -> list[AlertChange]:
        """Apply one detection (firing or cleared), then whatever became due at ``now``."""
        changes = self._observe(det, model, model_version, now)
        return changes + self.tick(now)

    def observe_many(self, dets: Iterable[Any], model: str, model_version: str | None, now: int) -> list[AlertChange]:
        """Apply several detections made at the same time (one window), then :meth:`tick`."""
        changes: list[AlertChange] = []
        for det in dets:
            changes += self._observe(det, model, model_version, now)
        return changes + self.tick(now)

    def tick(self, now: int) -> list[AlertChange]:
        """End hold-downs and group windows that are over at ``now``."""
        changes: list[AlertChange] = []
        for st in sorted(self.states.values(), key=lambda s: s.alert_id):
            if st.status == "resolving" and st.due_at is not None and st.due_at <= now:
                changes += self._resolve_one(st, now, "cleared")
        due: dict[tuple[str, str, str], list[AlertState]] = {}
        for st in sorted(self.states.values(), key=lambda s: (s.started_at or 0, s.alert_id)):
            if st.status == "pending" and st.due_at is not None and st.due_at <= now:
                due.setdefault((st.model, st.model_version or "", st.kind), []).append(st)
        for (model, version, kind), items in sorted(due.items()):
            changes += self._fire(model, version, kind, items, now)
        return changes

    def resolve(self, alert_ids: Iterable[str], reason: str, now: int) -> list[AlertChange]:
        """Resolve alerts at once (no hold-down), e.g. because retraining answered them.

        A group id resolves the group and its members; the cooldown applies as usual.
        Unknown or already resolved ids are ignored.
        """
        changes: list[AlertChange] = []
        for aid in alert_ids:
            st = self.states.get(aid)
            if st is None or not st.active:
                continue
            if st.is_group:
                for mid in list(st.members or ()):
                    m = self.states.get(mid)
                    if m is not None and m.active and m.group_id == st.alert_id:
                        self._close(m, now, reason)
                changes.append(self._announce_resolved(st, now, reason))
            else:
                changes += self._resolve_one(st, now, reason)
        return changes

    # -- internals -----------------------------------------------------------------------------
    def _touch(self, st: AlertState, now: int) -> None:
        st.updated_at = now
        self.dirty.add(st.alert_id)

    def _observe(self, det: Any, model: str, model_version: str | None, now: int) -> list[AlertChange]:
        """Apply one detection to its alert's state; returns the changes to announce now."""
        version = det.model_version or model_version
        segment = getattr(det, "segment", None) or None
        fp = fingerprint(model, det.kind, det.detector, det.feature, version, segment)
        st = self.states.get(fp)
        if not det.firing:
            if st is not None and st.active:
                self._observe_cleared(st, det, now)
            return []
        if st is None:
            st = self.states[fp] = AlertState(fp, model, det.kind, det.detector, det.feature, model_version=version,
                                              segment=dict(segment) if segment else None)
        return self._observe_firing(st, det, version, now)

    def _observe_cleared(self, st: AlertState, det: Any, now: int) -> None:
        """The detector cleared: a pending alert is dropped quietly, a firing one starts its hold-down."""
        st.clear = detection_record(det)
        if st.status == "pending":        # never announced: drop it quietly
            st.status, st.due_at, st.resolved_at = "resolved", None, now
            st.resolve_reason = "cleared before it was announced"
        elif st.status == "firing":
            st.status, st.cleared_at = "resolving", now
            st.due_at = now + self.policy.hold_down(st.kind)
        self._touch(st, now)

    def _observe_firing(self, st: AlertState, det: Any, version: str | None, now: int) -> list[AlertChange]:
        """The detector fired: a new episode (pending), a worse pending one, or a firing one that
        may escalate."""
        sev = self.policy.severity(det)
        record = detection_record(det)
        st.detection, st.detected_at, st.model_version = record, now, version or st.model_version
        self._touch(st, now)
        if st.status == "resolved":            # a new episode
            st.status, st.severity, st.started_at = "pending", sev, now
            st.fired_at = st.cleared_at = st.resolved_at = None
            st.clear, st.group_id, st.resolve_reason, st.incident_id = None, None, None, None
            st.due_at = self._notify_at(st, now)
            return []
        if st.status == "pending":
            st.severity = severity_max(st.severity, sev)
            return []
        # firing or resolving: the problem is (still) there
        st.status, st.cleared_at, st.clear, st.due_at = "firing", None, None, None
        if _RANK.get(sev, 0) <= _RANK.get(st.severity, 0):
            return []
        return self._escalate(st, sev, now)

    def _escalate(self, st: AlertState, sev: str, now: int) -> list[AlertChange]:
        """``st`` got worse: its group is updated, or it is announced again if
        ``notify_escalation``."""
        previous, st.severity = st.severity, sev
        if st.group_id is not None:
            g = self.states.get(st.group_id)
            if g is not None and g.active:
                return self._update_group(g, now)
            return []
        if not self.policy.notify_escalation:
            return []
        return [self._announce(st, "firing", now, "escalated", previous_severity=previous)]

    def _notify_at(self, st: AlertState, now: int) -> int:
        gw = self.policy.group_window_ms
        closes = [o.started_at + gw for o in self.states.values()
                  if o is not st and o.status == "pending" and o.model == st.model and o.kind == st.kind
                  and (o.model_version or "") == (st.model_version or "")
                  and o.started_at is not None and o.started_at + gw >= now]
        window_close = min(closes) if closes else now + gw
        return max(window_close, st.cooldown_until or 0)

    def _fire(self, model: str, version: str, kind: str, items: list[AlertState], now: int) -> list[AlertChange]:
        gid = group_fingerprint(model, kind, version)
        group = self.states.get(gid)
        if group is not None and group.active:
            for st in items:
                self._join(st, group, now)
            return self._update_group(group, now)
        if len(items) >= self.policy.group_min:
            if group is None:
                group = self.states[gid] = AlertState(gid, model, kind, GROUP_DETECTOR, None, members=[],
                                                      model_version=version or None)
            group.members = []
            group.status, group.started_at = "firing", min(s.started_at or now for s in items)
            group.cleared_at = group.resolved_at = group.due_at = None
            group.resolve_reason = group.clear = group.incident_id = None
            group.severity = "warning"
            for st in items:
                self._join(st, group, now)
            self._summarise_group(group)
            group.fired_at = now
            self._touch(group, now)
            return [self._announce(group, "firing", now, "fired")]
        out = []
        for st in items:
            st.status, st.due_at, st.fired_at = "firing", None, now
            self._touch(st, now)
            out.append(self._announce(st, "firing", now, "fired"))
        return out

    def _join(self, st: AlertState, group: AlertState, now: int) -> None:
        st.status, st.due_at, st.fired_at, st.group_id = "firing", None, now, group.alert_id
        if st.alert_id not in (group.members or []):
            group.members = [*(group.members or []), st.alert_id]
        self._touch(st, now)

    def _update_group(self, group: AlertState, now: int) -> list[AlertChange]:
        """Members changed: refresh the group's evidence; announce an escalation."""
        previous = group.severity
        group.status, group.due_at = "firing", None
        self._summarise_group(group)
        self._touch(group, now)
        if self.policy.notify_escalation and _RANK.get(group.severity, 0) > _RANK.get(previous, 0):
            return [self._announce(group, "firing", now, "escalated", previous_severity=previous)]
        return []

    def _summarise_group(self, group: AlertState) -> None:
        members = self.group_members(group)
        active = [m for m in members if m.active] or members
        sev = group.severity
        for m in active:
            sev = severity_max(sev, m.severity)
        group.severity = sev
        strongest = min(active, key=lambda m: (*(-x for x in _strength(m)), m.feature or m.detector))
        group.detection = copy.deepcopy(strongest.detection)
        group.detected_at = max((m.detected_at or 0) for m in active)
        group.model_version = strongest.model_version

    def group_members(self, group: AlertState) -> list[AlertState]:
        return [self.states[m] for m in (group.members or []) if m in self.states]

    def _resolve_one(self, st: AlertState, now: int, reason: str) -> list[AlertChange]:
        if st.status == "pending":
            self._close(st, now, reason)
            return []
        if st.group_id is None:
            return [self._announce_resolved(st, now, reason)]
        self._close(st, now, reason)
        group = self.states.get(st.group_id)
        if group is None or not group.active:
            return []
        if any(m.active and m.group_id == group.alert_id for m in self.group_members(group)):
            self._summarise_group(group)
            self._touch(group, now)
            return []
        group.clear = st.clear
        return [self._announce_resolved(group, now, "members_resolved" if reason == "cleared" else reason)]

    def _close(self, st: AlertState, now: int, reason: str) -> None:
        was_announced = st.status != "pending"
        st.status, st.resolved_at, st.due_at, st.resolve_reason = "resolved", now, None, reason
        if was_announced and not st.is_group:
            st.cooldown_until = now + self.policy.cooldown_ms
        self._touch(st, now)

    def _announce_resolved(self, st: AlertState, now: int, reason: str) -> AlertChange:
        self._close(st, now, reason)
        return self._announce(st, "resolved", now, reason)

    def _announce(self, st: AlertState, status: Literal["firing", "resolved"], now: int, reason: str,
                  previous_severity: str | None = None) -> AlertChange:
        st.seq += 1
        self._touch(st, now)
        members = tuple(copy.deepcopy(m) for m in self.group_members(st)) if st.is_group else ()
        return AlertChange(st.alert_id, status, st.seq, reason, now, copy.deepcopy(st), members, previous_severity)


def _strength(st: AlertState) -> tuple[int, float]:
    """Order members by severity, then by how far the statistic is past its threshold."""
    d = st.detection or {}
    try:
        ratio = abs(float(d.get("statistic"))) / max(abs(float(d.get("threshold"))), 1e-12)  # type: ignore[arg-type]  # None: TypeError, handled below
    except (TypeError, ValueError):
        ratio = 0.0
    if not math.isfinite(ratio):
        ratio = 0.0
    return _RANK.get(st.severity, 0), ratio
