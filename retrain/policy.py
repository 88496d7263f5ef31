"""When a model is retrained: the per-model policy applied to alerts, a schedule, or a person.

:class:`RetrainScheduler` writes a job as a ``retrain_jobs`` row (``queued``) plus an outbox row
for ``driftloop.retrain``, in the caller's transaction: called from the monitor's batch
transaction, a job is exactly as durable as the alert that caused it (both commit or neither).

The gates, checked in this order under the model's lock (PostgreSQL advisory lock; SQLite
has one writer):

1. the policy is enabled; for alerts: a *firing* alert of a kind in ``on_kinds`` with
   severity at least ``min_severity``;
2. no job of the model in flight (``queued``/``running`` and younger than
   ``registry.job_timeout_s``), nor a version in shadow (:mod:`retrain.shadow`: the live
   comparison decides first; a new challenger would replace it before it has its labels);
3. for alerts only: the cooldown since the model's previous job has passed;
4. the window holds at least ``min_examples`` joined labelled examples.

What happens if the process dies: before the caller's transaction commits, neither the alert
nor the job exists (the batch is consumed again and decides again); after it, the job row is
``queued`` and its message an unsent outbox row, published by whichever process publishes the
outbox next (the retrain worker publishes the retrain rows every few seconds, the monitor at
its housekeeping); published but not yet marked sent: published again, and the worker skips the
repeat by job id. A job whose message never gets out blocks its model for ``job_timeout_s``.

Deduplication: one job in flight per model (2.); job ids are unique (primary key), scheduled
jobs get an id derived from the cron tick so that several monitor processes firing the same
tick enqueue it once; the worker skips a job id it has already decided (the outbox delivers
at least once).
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from driftloop.core.config import Config
from driftloop.core.config.retrain import RegistryConfig, RetrainPolicy, registry_config, retrain_policies
from driftloop.core.store import Store, examples, now_ms
from driftloop.core.tables import model_versions, retrain_jobs
from retrain.events import JobWindow, RetrainJob, encode, rfc3339

__all__ = ["AlertLike", "EnqueueRefused", "RetrainScheduler", "make_job_id"]

log = logging.getLogger(__name__)

_SEVERITY = {"warning": 1, "critical": 2}


class AlertLike(Protocol):
    """The least an alert change must offer (attributes or mapping keys)."""

    alert_id: str
    kind: str
    severity: str
    status: str


class EnqueueRefused(RuntimeError):
    """A manual or scheduled job was not enqueued; the message says which gate refused it."""


def _get(alert: Any, name: str) -> Any:
    """``name`` of an alert change: its own attribute/key, else its ``state``'s
    (:class:`driftloop.alerts.AlertChange` keeps kind and severity in ``state``)."""
    value = alert.get(name) if isinstance(alert, Mapping) else getattr(alert, name, None)
    if value is None:
        state = alert.get("state") if isinstance(alert, Mapping) else getattr(alert, "state", None)
        if state is not None and state is not alert:
            return _get(state, name)
    return value


def _members(alert: Any) -> list[Any]:
    members = alert.get("members") if isinstance(alert, Mapping) else getattr(alert, "members", None)
    return [m for m in (members or ()) if not isinstance(m, str)]


def make_job_id(model: str, trigger: str, ts_ms: int, reason: Iterable[str] = ()) -> str:
    """A readable, unique-enough job id: trigger, UTC time, hash of (model, trigger, time, reason).

    >>> make_job_id("fraud", "schedule", 1704067200000)
    'schedule-20240101T000000000Z-c7b97bf7e1'
    """
    stamp = datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y%m%dT%H%M%S") + f"{ts_ms % 1000:03d}Z"
    h = hashlib.blake2b(f"{model}\x00{trigger}\x00{ts_ms}\x00{','.join(sorted(reason))}".encode(),
                        digest_size=5).hexdigest()
    return f"{trigger}-{stamp}-{h}"


class RetrainScheduler:
    """Applies the retrain policies; see the module docstring.

    >>> # in the monitor's batch transaction, after the alert changes of ``model`` are known:
    >>> # jobs = scheduler.on_alerts(conn, "fraud", alert_changes, now)
    """

    def __init__(self, cfg: Config, store: Store, *, policies: dict[str, RetrainPolicy] | None = None,
                 reg: RegistryConfig | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.policies = policies if policies is not None else retrain_policies(cfg)
        self.reg = reg or registry_config(cfg)
        self._cron: Any = None

    # -- entry points ------------------------------------------------------------------------
    def on_alerts(self, conn: Connection, model: str, alert_changes: Iterable[Any], now_ms: int) -> list[RetrainJob]:
        """Enqueue a job for ``model`` if its policy says these alert changes call for one.

        Runs inside the caller's transaction; returns the jobs written (zero or one). Alert
        changes need ``alert_id``, ``kind``, ``severity`` and ``status`` (attributes or keys,
        or ``kind``/``severity`` on their ``state``, as :class:`driftloop.alerts.AlertChange`
        has them); only ``firing`` ones count; a group alert counts if it or one of its
        ``members`` (states) qualifies.
        """
        policy = self.policies.get(model)
        if policy is None or not policy.enabled:
            return []
        floor = _SEVERITY[policy.min_severity]

        def qualifies(a: Any) -> bool:
            return _get(a, "kind") in policy.on_kinds and _SEVERITY.get(str(_get(a, "severity")), 0) >= floor

        reasons = sorted({str(_get(a, "alert_id")) for a in alert_changes
                          if _get(a, "status") == "firing" and (qualifies(a) or any(map(qualifies, _members(a))))})
        if not reasons:
            return []
        refused = self._gate(conn, model, policy, now_ms, cooldown=True)
        if refused:
            log.info("retrain of %s not enqueued for alerts %s: %s", model, reasons, refused)
            return []
        job = self._write(conn, model, policy, "alert", reasons, now_ms, make_job_id(model, "alert", now_ms, reasons))
        return [] if job is None else [job]

    def enqueue_manual(self, model: str, *, reason: Iterable[str] = (), window_s: float | None = None,
                       force: bool = False, requested_by: str | None = None, now: int | None = None) -> RetrainJob:
        """``driftloop retrain MODEL``: enqueue now, ignoring the alert filters and the cooldown.

        A job already in flight refuses it unless ``force``; too few examples always do.
        Commits its own transaction; the caller publishes the outbox.
        """
        policy = self._policy(model)
        now = now_ms() if now is None else now
        with self.store.transaction() as conn:
            self.store.lock_models(conn, [model])
            refused = self._gate(conn, model, policy, now, cooldown=False, in_flight=not force,
                                 window_s=window_s)
            if refused:
                raise EnqueueRefused(f"retrain of {model} not enqueued: {refused}")
            job = self._write(conn, model, policy, "manual", sorted(reason), now,
                              make_job_id(model, "manual", now, reason), window_s=window_s, requested_by=requested_by)
        assert job is not None
        return job

    def cron_tick(self, model: str, now: int | None = None) -> RetrainJob | None:
        """The scheduled job of the cron tick containing ``now`` (no cooldown; other gates apply)."""
        policy = self._policy(model)
        now = now_ms() if now is None else now
        tick = now - now % 60_000
        with self.store.transaction() as conn:
            self.store.lock_models(conn, [model])
            refused = self._gate(conn, model, policy, now, cooldown=False)
            if refused:
                log.info("scheduled retrain of %s skipped: %s", model, refused)
                return None
            return self._write(conn, model, policy, "schedule", [], now, make_job_id(model, "schedule", tick))

    def start_cron(self) -> Any:
        """Start an APScheduler background scheduler with one cron job per model that has a
        ``schedule``; returns it (None if no model has one). Call :meth:`stop_cron` at exit."""
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.cron import CronTrigger

        scheduled = {m: p for m, p in self.policies.items() if p.enabled and p.schedule}
        if not scheduled:
            return None
        sched = BackgroundScheduler(timezone="UTC")
        for model, p in scheduled.items():
            sched.add_job(self._cron_job, CronTrigger.from_crontab(p.schedule, timezone=p.timezone), args=[model],
                          id=f"retrain:{model}", coalesce=True, max_instances=1, misfire_grace_time=300)
        sched.start()
        self._cron = sched
        log.info("retrain schedules: %s", {m: p.schedule for m, p in scheduled.items()})
        return sched

    def stop_cron(self) -> None:
        if self._cron is not None:
            self._cron.shutdown(wait=False)
            self._cron = None

    def _cron_job(self, model: str) -> None:
        try:
            job = self.cron_tick(model)
        except Exception:  # a failed tick must not kill the scheduler thread
            log.exception("scheduled retrain of %s failed to enqueue", model)
            return
        if job is not None:
            log.info("scheduled retrain of %s enqueued as %s", model, job.job_id)

    # -- gates -------------------------------------------------------------------------------
    def _policy(self, model: str) -> RetrainPolicy:
        if model not in self.policies:
            raise EnqueueRefused(f"unknown model {model!r} (configured: {', '.join(sorted(self.policies)) or 'none'})")
        return self.policies[model]

    def in_flight(self, conn: Connection, model: str, now: int) -> str | None:
        """The id of the model's job in flight, if any."""
        q = (sa.select(retrain_jobs.c.job_id)
             .where(retrain_jobs.c.model == model, retrain_jobs.c.status.in_(("queued", "running")),
                    retrain_jobs.c.requested_at >= now - int(self.reg.job_timeout_s * 1000))
             .limit(1))
        row = conn.execute(q).first()
        return None if row is None else row[0]

    def _gate(self, conn: Connection, model: str, policy: RetrainPolicy, now: int, *, cooldown: bool,
              in_flight: bool = True, window_s: float | None = None) -> str | None:
        if not policy.enabled:
            return "retraining is disabled for this model (retrain.enabled: false)"
        if in_flight:
            busy = self.in_flight(conn, model, now)
            if busy is not None:
                return f"job {busy} is already in flight"
            shadow = conn.execute(sa.select(model_versions.c.version).where(
                model_versions.c.model == model, model_versions.c.status == "shadow").limit(1)).scalar()
            if shadow is not None:
                return f"version {shadow} is in shadow (its live comparison decides first)"
        if cooldown and policy.cooldown_s > 0:
            last = conn.execute(sa.select(sa.func.max(retrain_jobs.c.requested_at), sa.func.max(retrain_jobs.c.finished_at))
                                .where(retrain_jobs.c.model == model)).first()
            latest = max((v for v in (last or ()) if v is not None), default=None)
            if latest is not None and now - latest < policy.cooldown_s * 1000:
                wait = policy.cooldown_s - (now - latest) / 1000
                return f"cooldown: the previous job was {(now - latest) / 1000:.0f}s ago ({wait:.0f}s to go)"
        start = now - int((window_s or policy.window_s) * 1000)
        sub = (sa.select(sa.literal(1)).select_from(examples)
               .where(examples.c.model == model, examples.c.joined_at.is_not(None), examples.c.joined_at <= now,
                      examples.c.pred_ts >= start, examples.c.pred_ts <= now)
               .limit(policy.min_examples).subquery())
        n = int(conn.execute(sa.select(sa.func.count()).select_from(sub)).scalar() or 0)
        if n < policy.min_examples:
            return f"only {n} labelled examples in the window, min_examples is {policy.min_examples}"
        return None

    def _write(self, conn: Connection, model: str, policy: RetrainPolicy, trigger: str, reason: list[str],
               now: int, job_id: str, *, window_s: float | None = None,
               requested_by: str | None = None) -> RetrainJob | None:
        window = JobWindow(start_ts=now - int((window_s or policy.window_s) * 1000), end_ts=now, as_of=now,
                           max_rows=policy.max_examples)
        job = RetrainJob(job_id=job_id, model=model, reason=reason, requested_at=rfc3339(now), window=window,
                         trigger=trigger, requested_by=requested_by)  # type: ignore[arg-type]  # trigger is one of JobTrigger's values, checked by the callers
        payload = encode(job)
        ins = self.store._insert(retrain_jobs).values(
            job_id=job_id, model=model, trigger=trigger, reason=reason, status="queued", requested_at=now,
            attempts=0, payload=payload).on_conflict_do_nothing(index_elements=["job_id"])
        if conn.execute(ins).rowcount == 0:
            log.info("job %s already exists; not enqueued again", job_id)
            return None
        self.store.add_outbox(conn, self.cfg.topics.retrain, [(model.encode(), payload)], now)
        log.info("retrain job %s enqueued for %s (%s%s)", job_id, model, trigger,
                 f": alerts {reason}" if reason else "")
        return job
