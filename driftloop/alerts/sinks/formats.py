"""Request bodies of each sink format, rendered from the alert message (pure functions).

* :func:`webhook` — the message itself (the ``driftloop.alerts`` format);
* :func:`slack` — Slack incoming-webhook JSON (``text`` + Block Kit ``blocks``);
* :func:`alertmanager` — Prometheus Alertmanager API v2 (``POST /api/v2/alerts``): a list of
  alerts with ``labels``, ``annotations``, ``startsAt`` and ``endsAt``;
* :func:`pagerduty` — PagerDuty Events API v2: ``trigger`` / ``resolve`` with
  ``dedup_key`` = ``alert_id``.

Each renders an incident's message too (``type: incident``, :mod:`driftloop.alerts.incident_messages`):
PagerDuty's ``dedup_key`` is the ``incident_id`` (each change updates one PagerDuty incident, the
last resolves it), Alertmanager gets one alert per incident (``alertname=driftloop_incident``,
label ``incident_id``), Slack one message per change naming the incident and its members.

>>> msg = {"alert_id": "a1", "status": "firing", "model": "fraud", "model_version": "3",
...        "kind": "data_drift", "detector": "psi", "feature": "amount", "severity": "critical",
...        "summary": "fraud v3: feature `amount` drifted", "detected_at": "2024-01-01T00:00:00.000Z",
...        "started_at": "2024-01-01T00:00:00.000Z", "resolved_at": None, "sequence": 1,
...        "idempotency_key": "a1:firing:1", "previous_severity": None, "statistic": 0.31,
...        "p_value": 1e-9, "threshold": 0.1, "window": {"start_ts": 0, "end_ts": 1, "n": 5000},
...        "evidence": {}, "reason": "fired"}
>>> [a["labels"]["severity"] for a in alertmanager(msg, now_ms=0, resend_every_s=300)]
['critical']
>>> alertmanager(msg, now_ms=0, resend_every_s=300)[0]["endsAt"]
'1970-01-01T00:20:00.000Z'
>>> pd = pagerduty(msg, "R0UT1NG")
>>> pd["event_action"], pd["dedup_key"], pd["payload"]["severity"], pd["payload"]["source"]
('trigger', 'a1', 'critical', 'driftloop/fraud')
>>> slack(msg)["text"]
':rotating_light: [CRITICAL] fraud v3: feature `amount` drifted'
"""
from __future__ import annotations

from typing import Any

from driftloop.alerts.messages import rfc3339

__all__ = ["webhook", "slack", "alertmanager", "pagerduty", "FORMATS"]


def webhook(message: dict[str, Any]) -> dict[str, Any]:
    return message


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _is_incident(message: dict[str, Any]) -> bool:
    return message.get("type") == "incident"


def _slack_incident_context(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The blocks under an incident's sentence: its members (at most 10), then the ids."""
    members = message.get("members") or []
    lines = [f"• {m['kind'].replace('_', ' ')}" + (f" `{m['feature']}`" if m.get("feature") else "")
             + f" ({m['status']}, {m['severity']})" for m in members[:10]]
    if len(members) > 10:
        lines.append(f"• and {len(members) - 10} more")
    context = " · ".join(str(x) for x in (f"incident `{message['incident_id']}`", message.get("reason"),
                                           f"seq {message['sequence']}", message.get("detected_at")) if x)
    blocks: list[dict[str, Any]] = []
    if lines:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape("\n".join(lines))}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_escape(context)}]})
    return blocks


def slack(message: dict[str, Any]) -> dict[str, Any]:
    """Slack incoming webhook: a fallback ``text`` and blocks (the sentence, then the ids; an
    incident's members between them)."""
    firing = message["status"] == "firing"
    if not firing:
        icon, tag = ":white_check_mark:", "RESOLVED"
    elif message["severity"] == "critical":
        icon, tag = ":rotating_light:", "CRITICAL"
    else:
        icon, tag = ":warning:", "WARNING"
    text = _slack_escape(f"{icon} [{tag}] {message['summary']}")
    if _is_incident(message):
        return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}},
                                         *_slack_incident_context(message)]}
    context = " · ".join(str(x) for x in (
        f"alert `{message['alert_id']}`", message["kind"], message["detector"],
        message.get("feature") and f"feature `{message['feature']}`", f"seq {message['sequence']}",
        message.get("detected_at")) if x)
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_escape(context)}]},
        ],
    }


def _labels(message: dict[str, Any], severity: str) -> dict[str, str]:
    if _is_incident(message):
        labels = {"alertname": "driftloop_incident", "incident_id": message["incident_id"],
                  "model": message["model"], "severity": severity}
        if message.get("model_version"):
            labels["model_version"] = str(message["model_version"])
        return labels
    labels = {
        "alertname": f"driftloop_{message['kind']}",
        "alert_id": message["alert_id"],
        "model": message["model"],
        "kind": message["kind"],
        "detector": message["detector"],
        "severity": severity,
    }
    if message.get("feature") is not None:
        labels["feature"] = str(message["feature"])
    return labels


def alertmanager(message: dict[str, Any], *, now_ms: int, resend_every_s: float) -> list[dict[str, Any]]:
    """Alertmanager v2 alerts. Firing: ``endsAt`` four resend intervals ahead (re-sent while
    firing, as Prometheus does), none when ``resend_every_s`` is 0. Resolved: ``endsAt`` = the
    resolution time. An escalation also ends the alert of the previous severity (a different
    label set, hence a different alert for Alertmanager)."""
    firing = message["status"] == "firing"
    annotations = {"summary": message["summary"], "idempotency_key": message["idempotency_key"]}
    if message.get("model_version"):
        annotations["model_version"] = str(message["model_version"])
    alert: dict[str, Any] = {"labels": _labels(message, message["severity"]), "annotations": annotations,
                             "startsAt": message.get("started_at") or message["detected_at"]}
    if not firing:
        alert["endsAt"] = message.get("resolved_at") or rfc3339(now_ms)
    elif resend_every_s > 0:
        alert["endsAt"] = rfc3339(now_ms + int(4 * resend_every_s * 1000))
    out = [alert]
    prev = message.get("previous_severity")
    if firing and prev and prev != message["severity"]:
        out.append({"labels": _labels(message, prev), "annotations": annotations,
                    "startsAt": alert["startsAt"], "endsAt": rfc3339(now_ms)})
    return out


def pagerduty(message: dict[str, Any], routing_key: str) -> dict[str, Any]:
    """PagerDuty Events API v2 event; the alert id is the ``dedup_key``, so a trigger for an
    open incident updates it and the resolve closes it."""
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger" if message["status"] == "firing" else "resolve",
        "dedup_key": message["incident_id"] if _is_incident(message) else message["alert_id"],
    }
    if message["status"] == "firing" and _is_incident(message):
        body["payload"] = _pagerduty_payload(message, ",".join(message.get("kinds") or []), "incident", (
            "model_version", "reason", "hint", "members", "joined", "idempotency_key", "sequence"))
    elif message["status"] == "firing":
        body["payload"] = _pagerduty_payload(message, message["kind"], message["detector"], (
            "model_version", "feature", "statistic", "p_value", "threshold", "window", "idempotency_key", "sequence"))
    return body


def _pagerduty_payload(message: dict[str, Any], group: str, klass: str, details: tuple[str, ...]) -> dict[str, Any]:
    """A trigger's ``payload``: the sentence, the model as source and component, ``details`` of
    the message as ``custom_details``."""
    return {"summary": message["summary"][:1024], "source": f"driftloop/{message['model']}",
            "severity": message["severity"] if message["severity"] in ("critical", "warning") else "warning",
            "timestamp": message.get("detected_at"), "component": message["model"], "group": group, "class": klass,
            "custom_details": {k: message.get(k) for k in details}}


FORMATS = ("webhook", "slack", "alertmanager", "pagerduty")
