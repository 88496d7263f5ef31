"""The message of an :class:`~driftloop.alerts.incidents.IncidentChange`: what a paging sink
receives (contract v1.1 extension, see the README's "Incidents").

Fields: ``type`` (``incident``), ``incident_id``, ``status`` (``firing``/``resolved``),
``reason`` (``opened``, ``grown``, ``escalated``, ``resolved``), ``model``, ``model_version``,
``severity``, ``summary`` (the sentence: what changed, how many alerts, then the root-cause hint),
``hint`` (``{"text", "parts"}``), ``members`` (one entry per member alert: ``alert_id``, ``kind``,
``detector``, ``feature``, ``status``, ``severity``, ``summary``, ``count`` for a group),
``kinds``, ``joined`` (the members that made it grow), ``sequence``, ``idempotency_key``
(``incident_id:status:seq``), ``started_at``, ``opened_at``, ``detected_at`` (this change),
``resolved_at``, ``previous_severity``. Sinks render their formats from this dict as from an
alert's (:mod:`driftloop.alerts.sinks.formats`).

>>> from driftloop.alerts.incidents import IncidentChange, IncidentState
>>> from driftloop.alerts.lifecycle import AlertState
>>> inc = IncidentState("i1", "housing", "1", 1, status="open", members=["a1"], kinds=["data_drift"],
...                     started_at=0, opened_at=30_000, hint={"text": "housing v1: inputs moved (Latitude 1.6σ).", "parts": []})
>>> a1 = AlertState("a1", "housing", "data_drift", "psi", "Latitude", status="firing")
>>> msg = incident_message(IncidentChange("i1", "firing", 1, "opened", 30_000, inc, (a1,)))
>>> msg["summary"]
'housing v1: incident opened: 1 alert firing (data drift). Inputs moved (Latitude 1.6σ).'
>>> msg["idempotency_key"], msg["members"][0]["feature"]
('i1:firing:1', 'Latitude')
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from detectors.base import segment_text
from driftloop.alerts.incidents import IncidentChange
from driftloop.alerts.lifecycle import AlertState
from driftloop.alerts.messages import duration, model_label, rfc3339

__all__ = ["incident_message", "incident_summary", "member_entry"]

_VERBS = {"opened": "incident opened", "grown": "incident grew", "escalated": "incident now critical",
          "resolved": "incident resolved"}


def _kinds(members: tuple[AlertState, ...]) -> str:
    """``data drift ×2, performance``: the kinds of the members, most frequent first."""
    counts = Counter(m.kind.replace("_", " ") for m in members)
    return ", ".join(k if n == 1 else f"{k} ×{n}" for k, n in counts.most_common())


def incident_summary(change: IncidentChange) -> str:
    """One sentence: what happened to the incident, its alerts, then the root-cause hint."""
    inc = change.state
    head = model_label(inc.model, inc.model_version)
    members = change.members
    firing = [m for m in members if m.active]
    verb = _VERBS.get(change.reason, change.reason)
    if change.status == "resolved":
        took = f" after {duration(change.at - inc.started_at)}" if inc.started_at else ""
        return f"{head}: {verb}{took}: all {len(members)} alert{'s' * (len(members) != 1)} back to normal " \
               f"({_kinds(members)})."
    hint = (inc.hint or {}).get("text") or ""
    if hint.startswith(f"{head}: "):       # the sentence already names the model version
        hint = hint[len(head) + 2:]
        hint = hint[:1].upper() + hint[1:]
    n = len(firing)
    new = f"; new: {', '.join(_member_name(m) for m in members if m.alert_id in change.joined)}" \
        if change.joined else ""
    text = f"{head}: {verb}: {n} alert{'s' * (n != 1)} firing ({_kinds(tuple(firing) or members)}){new}."
    return f"{text} {hint}".strip()


def _member_name(m: AlertState) -> str:
    kind = m.kind.replace("_", " ")
    name = f"{kind} `{m.feature}`" if m.feature else kind
    where = segment_text(m.segment)
    return f"{name} in {where}" if where else name


def member_entry(m: AlertState) -> dict[str, Any]:
    """One member alert in an incident's message (a group also gives its member count)."""
    d = m.detection or {}
    entry: dict[str, Any] = {"alert_id": m.alert_id, "kind": m.kind, "detector": m.detector, "feature": m.feature,
                             "segment": m.segment, "status": m.status, "severity": m.severity, "statistic": d.get("statistic"),
                             "threshold": d.get("threshold"), "summary": d.get("summary")}
    if m.is_group:
        entry["count"] = len(m.members or [])
    return entry


def incident_message(change: IncidentChange) -> dict[str, Any]:
    """The message paging sinks receive for one incident change (JSON-ready)."""
    inc = change.state
    firing = change.status == "firing"
    return {
        "type": "incident",
        "incident_id": inc.incident_id,
        "status": change.status,
        "reason": change.reason,
        "model": inc.model,
        "model_version": inc.model_version,
        "severity": inc.severity,
        "summary": incident_summary(change),
        "hint": inc.hint or {"text": "", "parts": []},
        "members": [member_entry(m) for m in change.members],
        "kinds": list(inc.kinds),
        "joined": list(change.joined),
        "sequence": change.seq,
        "idempotency_key": change.idempotency_key,
        "started_at": rfc3339(inc.started_at),
        "opened_at": rfc3339(inc.opened_at),
        "detected_at": rfc3339(change.at),
        "resolved_at": None if firing else rfc3339(change.at),
        "previous_severity": change.previous_severity,
    }
