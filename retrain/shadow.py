"""The shadow phase: a challenger judged on live traffic before it is promoted.

With ``retrain.shadow: {min_labels, max_hours}`` in a model's policy
(:class:`driftloop.core.config.retrain.ShadowPolicy`), a challenger that passes the worker's
offline gate is not promoted but put in shadow (registry status ``shadow``, event
``shadow_started``; :meth:`retrain.registry.Registry.start_shadow`, also ``driftloop models
shadow MODEL VERSION`` by hand). The ML service runs it beside the champion and publishes its
answers as shadow predictions (contract v1.1); the monitor keeps a paired comparison of both
on the same labelled requests (:class:`detectors.paired.ShadowComparison`) and, every
``versions.shadow_min_labels`` labels, calls :func:`on_shadow_report` in its batch transaction:

1. a ``shadow_report`` event goes out (``metrics``: the report), unless the version's last
   recorded report has the same ``n`` and ``served_version`` (a redelivered batch, a second
   monitor process);
2. once ``report["n"] >= min_labels`` and the report compares with the current champion:
   ``better`` (significantly, at the comparison's ``alpha``) promotes the shadow (event
   ``promoted``, which switches the monitor like any promotion); anything else rejects it
   (event ``rejected``) with the live evidence;
3. otherwise, a shadow started more than ``max_hours`` ago is rejected ("max_hours reached
   with n labelled requests"). :func:`expire_shadows` does the same for shadows that get no
   report at all (no shadow predictions, no labels); the monitor calls it periodically.

Every write is in the caller's ``conn`` transaction (the batch's, with its offsets), under the
model's lock: a report for a version that is no longer in shadow (already decided, or never
in shadow) is ignored, so a decision is taken exactly once. A model without ``retrain.shadow``
whose shadow was started by hand is judged with :class:`ShadowPolicy`'s defaults.

The ``promoted``/``rejected`` event of a shadow phase::

    {"event": "promoted", "model": "fraud", "version": "3", "champion_version": "3",
     "previous_champion": "2", "job_id": "...", "reason": ["a1b2..."],
     "metrics": {"phase": "shadow", "primary": "accuracy",
                 "live": {"n": 1200, "metric": "accuracy", "served_metric": 0.835,
                          "shadow_metric": 0.898, "difference": 0.063, "test": "mcnemar",
                          "p_value": 2e-12, "alpha": 0.05, "better": true, "worse": false,
                          "served_version": "2", "shadow_version": "3", "summary": "...", ...},
                 "offline": {"primary": "accuracy", "challenger": {...}, "champion": {...},
                             "holdout_rows": 600, "incumbent": "registry:2"},
                 "offline_decision": {"test": "mcnemar", "p_value": 1e-9, ...}},
     "decision": {"phase": "shadow", "promote": true, "test": "mcnemar", "p_value": 2e-12,
                  "alpha": 0.05, "n": 1200, "metric": "accuracy", "served_metric": 0.835,
                  "shadow_metric": 0.898, "difference": 0.063, "min_labels": 1000,
                  "max_hours": 72.0, "shadow_started_at": "...", "reason": "..."}, ...}
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection

from driftloop.core.config import Config, ConfigError
from driftloop.core.config.retrain import ShadowPolicy, retrain_policy
from retrain.events import ModelEvent, rfc3339
from retrain.registry import HistoryEntry, Registry, RegistryError, VersionInfo

__all__ = ["ACTOR", "shadow_policy", "on_shadow_report", "expire_shadows", "shadow_report_hook"]

log = logging.getLogger(__name__)

#: who decides in the audit trail
ACTOR = "driftloop-monitor (shadow phase)"


def shadow_policy(cfg: Config, model: str) -> ShadowPolicy:
    """The model's ``retrain.shadow``, or the defaults for a shadow started by hand."""
    try:
        policy = retrain_policy(cfg, model).shadow
    except ConfigError:
        policy = None
    return policy if policy is not None else ShadowPolicy()


def _version_number(value: Any) -> int | None:
    text = str(value).strip()
    if text[:1] in ("v", "V"):
        text = text[1:]
    try:
        return int(text)
    except ValueError:
        return None


def _started(registry: Registry, conn: Connection, v: VersionInfo) -> tuple[int, HistoryEntry | None]:
    """When ``v``'s shadow phase started (its last ``shadow_started`` row), and that row."""
    entry = registry.last_event(v.model, v.version, "shadow_started", conn)
    return (v.created_at if entry is None else entry.decided_at), entry


def _last_report(registry: Registry, conn: Connection, v: VersionInfo, since: int) -> dict[str, Any] | None:
    """The last live report recorded for ``v`` in this shadow phase (None if none)."""
    entry = registry.last_event(v.model, v.version, "shadow_report", conn)
    if entry is None or entry.decided_at < since:
        return None
    metrics = entry.details.get("metrics")
    return metrics if isinstance(metrics, dict) else None


def on_shadow_report(conn: Connection, cfg: Config, registry: Registry, model: str, report: dict[str, Any],
                     now: int, *, actor: str = ACTOR) -> str | None:
    """Record a live paired comparison of a shadow and decide under the model's policy (module
    docstring). All writes in ``conn``. Returns ``"promoted"``, ``"rejected"`` or None."""
    version = _version_number(report.get("shadow_version"))
    if version is None:
        log.debug("shadow report for %s without a usable shadow_version (%r): ignored", model,
                  report.get("shadow_version"))
        return None
    registry.store.lock_models(conn, [model])
    try:
        v = registry.get(model, version, conn)
    except RegistryError:
        log.debug("shadow report for %s version %s: no such version; ignored", model, version)
        return None
    if v.status != "shadow":
        log.debug("shadow report for %s version %s (status %s, not shadow): ignored", model, version, v.status)
        return None
    started_at, started = _started(registry, conn, v)
    champion = registry.champion(model, conn)
    cv = None if champion is None else champion.version
    n = int(report.get("n") or 0)
    last = _last_report(registry, conn, v, started_at)
    if last is None or (last.get("n"), last.get("served_version")) != (n, report.get("served_version")):
        registry.record_event(conn, model=model, event="shadow_report", version=v.version, champion_version=cv,
                              previous_champion=cv, actor=actor, now=now, metrics=dict(report),
                              reason=str(report.get("summary") or f"live comparison on {n} labelled requests"))
    policy = shadow_policy(cfg, model)
    served = report.get("served_version")
    against_champion = served is None or (cv is not None and _version_number(served) == cv)
    if n >= policy.min_labels and against_champion:
        return _decide(conn, registry, v, started_at, started, report, policy, now, actor,
                       promote=bool(report.get("better"))).event
    if now - started_at >= policy.max_ms:
        return _decide(conn, registry, v, started_at, started, report, policy, now, actor, promote=False,
                       expired=True).event
    return None


def expire_shadows(conn: Connection, cfg: Config, registry: Registry, now: int, *,
                   actor: str = ACTOR) -> list[ModelEvent]:
    """Reject every shadow started more than its ``max_hours`` ago (for shadows no report
    reaches). In ``conn``; returns the ``rejected`` events."""
    events = []
    for v in registry.shadows(conn=conn):
        if v.model not in cfg.models:
            continue
        policy = shadow_policy(cfg, v.model)
        started_at, started = _started(registry, conn, v)
        if now - started_at < policy.max_ms:
            continue
        registry.store.lock_models(conn, [v.model])
        if registry.get(v.model, v.version, conn).status != "shadow":   # decided meanwhile
            continue
        report = _last_report(registry, conn, v, started_at)
        events.append(_decide(conn, registry, v, started_at, started, report, policy, now, actor, promote=False,
                              expired=True))
    return events


def _decide(conn: Connection, registry: Registry, v: VersionInfo, started_at: int, started: HistoryEntry | None,
            report: dict[str, Any] | None, policy: ShadowPolicy, now: int, actor: str, *, promote: bool,
            expired: bool = False) -> ModelEvent:
    """Promote or reject the shadow ``v`` with the live evidence ``report``; returns the event."""
    live = dict(report) if report is not None else None
    n = int(live.get("n") or 0) if live is not None else 0
    summary = (live or {}).get("summary") or "no live comparison reached the registry"
    if promote:
        reason = f"promoted after the shadow phase: {summary}"
    elif expired:
        reason = (f"rejected: shadow phase max_hours ({policy.max_hours:g}) reached with {n} labelled requests "
                  f"(min_labels {policy.min_labels}); last live comparison: {summary}")
    else:
        reason = f"rejected after the shadow phase: {summary}"
    details = started.details if started is not None else {}
    metrics = {"phase": "shadow", "primary": (live or {}).get("metric"), "live": live,
               "offline": v.metrics or None, "offline_decision": details.get("decision")}
    keys = ("test", "p_value", "alpha", "metric", "served_metric", "shadow_metric", "difference", "better",
            "worse", "served_version")
    decision = {"phase": "shadow", "promote": promote, "n": n, **{k: (live or {}).get(k) for k in keys},
                "min_labels": policy.min_labels, "max_hours": policy.max_hours, "expired": expired,
                "shadow_started_at": rfc3339(started_at), "reason": reason}
    job_id = started.job_id if started is not None else v.job_id
    trigger = details.get("trigger")
    alert_ids = [str(a) for a in (details.get("alert_ids") or [])]
    if promote:
        previous = registry.make_champion(conn, v.model, v.version)
        ev = registry.record_event(conn, model=v.model, event="promoted", version=v.version,
                                   champion_version=v.version, previous_champion=previous, actor=actor,
                                   reason=reason, now=now, job_id=job_id, trigger=trigger, alert_ids=alert_ids,
                                   metrics=metrics, decision=decision)
        log.info("%s version %s promoted after its shadow phase: %s", v.model, v.version, summary)
        return ev
    champion = registry.champion(v.model, conn)
    cv = None if champion is None else champion.version
    registry.set_status(conn, v.model, v.version, "rejected")
    ev = registry.record_event(conn, model=v.model, event="rejected", version=v.version, champion_version=cv,
                               previous_champion=cv, actor=actor, reason=reason, now=now, job_id=job_id,
                               trigger=trigger, alert_ids=alert_ids, metrics=metrics, decision=decision)
    log.info("%s version %s rejected after its shadow phase: %s", v.model, v.version, reason)
    return ev


def shadow_report_hook(cfg: Config, registry: Registry) -> Callable[[Connection, str, dict[str, Any], int], None]:
    """The ``on_shadow_report(conn, model, report, now)`` callback the monitor's analyser takes."""
    def hook(conn: Connection, model: str, report: dict[str, Any], now: int) -> None:
        on_shadow_report(conn, cfg, registry, model, report, now)
    return hook
