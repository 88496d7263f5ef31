"""The ``driftloop.alerts`` message of an :class:`~driftloop.alerts.lifecycle.AlertChange`, and
the one-sentence ``summary`` a person on call can act on.

The message has every field of the contract (``alert_id``, ``status``, ``model``,
``model_version``, ``kind``, ``detector``, ``feature``, ``severity``, ``statistic``,
``p_value``, ``threshold``, ``window``, ``detected_at``, ``summary``, ``evidence``) plus
``sequence``, ``idempotency_key``, ``reason``, ``started_at``, ``resolved_at`` and
``previous_severity``. Sinks render their formats from this one dict.

>>> from detectors.base import Detection, Window
>>> from driftloop.alerts.lifecycle import AlertLifecycle, Policy
>>> det = Detection("data_drift", "psi", "amount", 0.31, 3e-9, 0.1, Window(0, 60_000, 5000),
...     summary="feature `amount` drifted (PSI 0.31 > 0.1, KS p<1e-6) over the last 5,000 predictions "
...             "(reference: 20,000 training rows).")
>>> [change] = AlertLifecycle(Policy(group_window_ms=0), {}).observe(det, "fraud", "3", now=1_700_000_000_000)
>>> msg = alert_message(change)
>>> msg["summary"]
'fraud v3: feature `amount` drifted (PSI 0.31 > 0.1, KS p<1e-6) over the last 5,000 predictions (reference: 20,000 training rows).'
>>> msg["status"], msg["severity"], msg["detected_at"], msg["idempotency_key"] == change.idempotency_key
('firing', 'warning', '2023-11-14T22:13:20.000Z', True)
"""
from __future__ import annotations

import math
from typing import Any

from detectors.base import segment_text
from driftloop.alerts.lifecycle import AlertChange, AlertState
from driftloop.core.clock import rfc3339  # re-exported: the alerts' messages and sinks use it

__all__ = ["alert_message", "summary", "rfc3339", "model_label", "duration", "finite_number", "DETECTOR_LABELS"]

DETECTOR_LABELS = {
    "psi": "PSI", "ks": "KS", "cvm": "Cramér–von Mises", "chi2": "χ²", "wasserstein": "Wasserstein",
    "jensenshannon": "Jensen–Shannon", "missing_rate": "missing rate", "adwin": "ADWIN", "ddm": "DDM",
    "eddm": "EDDM", "hddm_a": "HDDM-A", "hddm_w": "HDDM-W", "page_hinkley": "Page–Hinkley",
    "kswin": "KSWIN", "accuracy": "accuracy", "no_predictions": "no predictions", "no_labels": "no labels",
    "detectors": "detectors", "champion_sample": "champion sample",
    "unseen_categories": "unseen categories", "out_of_range": "out of range", "constant": "constant",
    "type_change": "wrong type", "schema_absent": "key absent", "schema_new": "new key", "duplicates": "duplicates",
}

_GROUP_NOUNS = {   # kind -> (one, many, verb)
    "data_drift": ("feature", "features", "drifted"),
    "prediction_drift": ("prediction output", "prediction outputs", "drifted"),
    "concept_drift": ("concept-drift detector", "concept-drift detectors", "fired"),
    "performance": ("performance metric", "performance metrics", "degraded"),
    "multivariate_drift": ("multivariate test", "multivariate tests", "fired"),
    "stale_stream": ("stream", "streams", "went quiet"),
    "data_quality": ("data-quality check", "data-quality checks", "failed"),
    "detector_failure": ("failure", "failures", "happened"),
}
_LIST_MAX = 5


def model_label(model: str, version: str | None) -> str:
    """``fraud v3`` for version ``3``; other version strings as they are.

    >>> model_label("fraud", "3"), model_label("fraud", "v3"), model_label("fraud", "2024-05"), model_label("fraud", None)
    ('fraud v3', 'fraud v3', 'fraud 2024-05', 'fraud')
    """
    if not version:
        return model
    if version[0].isdigit() and "-" not in version:
        return f"{model} v{version}"
    return f"{model} {version}"


def finite_number(x: Any) -> float | None:
    """``x`` as a finite float, or None (a missing, non-numeric, NaN or infinite statistic).

    >>> finite_number("0.5"), finite_number(None), finite_number(float("nan"))
    (0.5, None, None)
    """
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def duration(ms: int) -> str:
    """Compact duration: ``45 s``, ``5 min``, ``2 h 10 min``."""
    s = max(0, round(ms / 1000))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{round(s / 60)} min"
    h, m = divmod(round(s / 60), 60)
    return f"{h} h {m} min" if m else f"{h} h"


def _fallback(st: AlertState, d: dict[str, Any]) -> str:
    """A sentence from the numbers when the detector gave no summary."""
    subject = f"feature `{st.feature}`" if st.feature else st.kind.replace("_", " ")
    label = DETECTOR_LABELS.get(st.detector, st.detector)
    stat, thr, p = finite_number(d.get("statistic")), finite_number(d.get("threshold")), finite_number(d.get("p_value"))
    parts = []
    if stat is not None:
        parts.append(f"{label} {stat:.3g}" + (f" vs threshold {thr:.3g}" if thr is not None else ""))
    if p is not None:
        parts.append(f"p={p:.2g}")
    n = (d.get("window") or {}).get("n")
    over = f" over the last {n:,} events" if isinstance(n, int) and n > 0 else ""
    return f"{subject}: {label} detected a problem ({', '.join(parts) or 'no statistic'}){over}."


def _member_label(m: AlertState) -> str:
    d = m.detection or {}
    name = f"`{m.feature}`" if m.feature else DETECTOR_LABELS.get(m.detector, m.detector)
    where = segment_text(m.segment)
    if where:
        name = f"{name} in {where}"
    stat = finite_number(d.get("statistic"))
    label = DETECTOR_LABELS.get(m.detector, m.detector)
    value = f"{stat:.0%}" if m.kind == "data_quality" and stat is not None else f"{stat:.2g}"
    return f"{name} ({label} {value})" if stat is not None and (m.feature or where) else name


def summary(change: AlertChange) -> str:
    """One sentence for a person on call: what, on which model, the numbers, and why it changed."""
    st = change.state
    head = model_label(st.model, st.model_version)
    d = st.detection or {}
    what = (d.get("summary") or "").strip() or _fallback(st, d)
    if st.is_group:
        return _group_summary(change, head)
    if change.status == "firing":
        if change.reason == "escalated":
            return f"{head}: now critical (was {change.previous_severity}): {what}"
        return f"{head}: {what}"
    return f"{head}: resolved ({_why_resolved(change)}). Was: {what}"


def _why_resolved(change: AlertChange) -> str:
    st = change.state
    if change.reason in ("cleared", "members_resolved"):
        clear = (st.clear or {}).get("summary") or "the detector cleared"
        held = f" for {duration(change.at - st.cleared_at)}" if st.cleared_at is not None else ""
        return f"{clear.rstrip('.')}; no new detection{held}" if change.reason == "cleared" else \
            "every member is back to normal"
    return change.reason


def _group_summary(change: AlertChange, head: str) -> str:
    """The sentence for a group alert: how many members fired, the strongest first."""
    st = change.state
    members = list(change.members)
    one, many, verb = _GROUP_NOUNS.get(st.kind, ("detector", "detectors", "fired"))
    if change.status == "resolved":
        why = "all are back to normal" if change.reason == "members_resolved" else change.reason
        return f"{head}: resolved ({why}); {len(members)} {many} had {verb} together."
    active = _ranked_active(members)
    lead = "now critical: " if change.reason == "escalated" else ""
    count = f"{len(active)} {one if len(active) == 1 else many}"
    if len(active) < len(members):
        count += f" (of {len(members)})"
    worst = _worst_segments(members)
    where = f" Worst segments: {', '.join(worst[:3])}." if worst else ""
    return (f"{head}: {lead}{count} {verb}{' at once' if len(members) > 1 else ''}{_group_window(st)}: "
            f"{_member_list(active)}.{where}{_strongest(active)}")


def _ranked_active(members: list[AlertState]) -> list[AlertState]:
    """The active members (all of them if none is), critical first, then by statistic/threshold."""
    active = [m for m in members if m.active] or members
    active.sort(key=lambda m: (-(m.severity == "critical"), -_ratio(m), m.feature or m.detector))
    return active


def _member_list(active: list[AlertState]) -> str:
    """The first ``_LIST_MAX`` members' labels, and how many more there are."""
    shown = ", ".join(_member_label(m) for m in active[:_LIST_MAX])
    more = f" and {len(active) - _LIST_MAX} more" if len(active) > _LIST_MAX else ""
    return shown + more


def _group_window(st: AlertState) -> str:
    """`` over the last N predictions`` (empty for a stale stream or an unknown window)."""
    n = ((st.detection or {}).get("window") or {}).get("n")
    return f" over the last {n:,} predictions" if isinstance(n, int) and n > 0 and st.kind != "stale_stream" else ""


def _strongest(active: list[AlertState]) -> str:
    """`` Strongest: <summary>`` of the first ranked member (empty if it has none)."""
    strongest = ((active[0].detection or {}).get("summary") or "").strip() if active else ""
    return f" Strongest: {strongest}" if strongest else ""


def _worst_segments(members: list[AlertState]) -> list[str]:
    """The segments a group's active members are about, worst first (critical, then furthest past
    the threshold): what a page names instead of paging once per segment."""
    return list(dict.fromkeys(w for m in _ranked_active(members) if (w := segment_text(m.segment))))


def _ratio(m: AlertState) -> float:
    d = m.detection or {}
    s, t = finite_number(d.get("statistic")), finite_number(d.get("threshold"))
    if s is None or not t:
        return 0.0
    return abs(s / t)


def _member_entry(m: AlertState) -> dict[str, Any]:
    d = m.detection or {}
    return {"alert_id": m.alert_id, "detector": m.detector, "feature": m.feature, "segment": m.segment, "status": m.status,
            "severity": m.severity, "statistic": d.get("statistic"), "p_value": d.get("p_value"),
            "threshold": d.get("threshold"), "summary": d.get("summary")}


def alert_message(change: AlertChange) -> dict[str, Any]:
    """The contract's alert message for one change (JSON-ready; NaN statistics become null
    when encoded with orjson), with the ``incident_id`` it belongs to (contract v1.1)."""
    st = change.state
    d = st.detection or {}
    firing = change.status == "firing"
    evidence: dict[str, Any] = dict(d.get("evidence") or {})
    if d.get("effect_size") is not None:
        evidence.setdefault("effect_size", d.get("effect_size"))
    if st.is_group:
        members = [_member_entry(m) for m in change.members]
        evidence = {"group": True, "count": len(members),
                    "features": [m.feature for m in change.members if m.feature is not None],
                    "members": members, "strongest": evidence}
        worst = _worst_segments(list(change.members))
        if worst:
            evidence["segments"] = worst
    if not firing:
        evidence["resolution"] = {"reason": change.reason, "cleared_at": rfc3339(st.cleared_at),
                                  "clear": _clear_entry(st.clear)}
    window = d.get("window") or {"start_ts": None, "end_ts": None, "n": 0}
    return {
        "alert_id": st.alert_id,
        "status": change.status,
        "model": st.model,
        "model_version": st.model_version,
        "kind": st.kind,
        "detector": st.detector,
        "feature": st.feature,
        "segment": st.segment,
        "severity": st.severity,
        "statistic": d.get("statistic"),
        "p_value": d.get("p_value"),
        "threshold": d.get("threshold"),
        "window": window,
        "detected_at": rfc3339(st.detected_at if firing else change.at),
        "summary": summary(change),
        "evidence": evidence,
        "sequence": change.seq,
        "idempotency_key": change.idempotency_key,
        "reason": change.reason,
        "started_at": rfc3339(st.started_at),
        "resolved_at": None if firing else rfc3339(change.at),
        "previous_severity": change.previous_severity,
        "incident_id": st.incident_id,
    }


def _clear_entry(clear: dict[str, Any] | None) -> dict[str, Any] | None:
    if not clear:
        return None
    return {k: clear.get(k) for k in ("statistic", "p_value", "threshold", "window", "summary")}
