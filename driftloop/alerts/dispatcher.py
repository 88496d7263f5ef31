"""The dispatcher: delivers queued alert changes to their sinks, one worker thread per sink.

Delivery guarantees and failure modes (the alert's change was committed together with the
detector state and the offsets; see :mod:`driftloop.alerts.manager`):

1. the process dies before the batch transaction commits: no state, no event, no delivery row;
   the batch is consumed again and produces them again (once);
2. it dies after the commit, before a delivery is attempted: the rows are ``pending``; the next
   dispatcher (this process restarted, or another monitor on the same store) sends them;
3. it dies after claiming a row (``lease_until`` set) but before the receiver got it: the row
   is taken again when the lease expires (``dispatch.lease_s``);
4. it dies after the receiver accepted (2xx / broker ack) but before ``sent`` was written
   (accepted rows are marked at least every ``MARK_EVERY_S``, 50 ms, and at the end of a pass): the
   change is sent again **with the same idempotency key** (``alert_id:status:seq``, in the
   ``Idempotency-Key`` header, the webhook body and the Kafka header ``driftloop-id``). That
   is at-least-once delivery; receivers drop repeats by key (Alertmanager and PagerDuty do so
   by themselves: same labels / same ``dedup_key``).
5. a sink fails (error, non-2xx, timeout): the attempt is counted and the row retried after an
   exponential backoff with jitter (``backoff_initial_s`` doubling up to ``backoff_max_s``;
   ``Retry-After`` honoured), forever unless ``max_attempts`` is set (then ``failed``);
6. a sink hangs: only its own worker waits (each request has ``timeout_s``); the other sinks
   and the monitor's batches go on. The monitor never waits for a sink.

Order: per sink and alert, changes go out in the order they happened; a later change of the
same alert waits while an earlier one is being retried (a ``resolved`` never overtakes its
``firing``). Different alerts and different sinks are independent.

Several dispatchers (several monitors on one PostgreSQL store) may run at once: a row is
claimed with a conditional update before it is sent, so only one of them sends it.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from driftloop.alerts import tables as t
from driftloop.alerts.sinks.base import DeliveryError
from driftloop.core.config.alerts import AlertsConfig, DispatchConfig
from driftloop.core.logsetup import log_failure
from driftloop.core.store import Store, now_ms

__all__ = ["AlertDispatcher", "SinkStats", "backoff_s"]

log = logging.getLogger(__name__)


def backoff_s(attempts: int, cfg: DispatchConfig, rng: random.Random, retry_after_s: float | None = None) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: ``initial * 2**(n-1)``
    capped at ``backoff_max_s``, times a random factor in [0.5, 1] (jitter), at least
    ``Retry-After``.

    >>> cfg = DispatchConfig(backoff_initial_s=1, backoff_max_s=60)
    >>> [round(backoff_s(n, cfg, random.Random(0)), 2) for n in (1, 2, 3, 10)]
    [0.92, 1.84, 3.69, 55.33]
    """
    base = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2 ** min(max(attempts - 1, 0), 30))
    delay = base * rng.uniform(0.5, 1.0)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, cfg.backoff_max_s))
    return delay


@dataclass
class SinkStats:
    """What one sink's worker did in this process."""

    sent: int = 0
    failures: int = 0
    last_error: str | None = None
    last_sent_at: int | None = None
    in_flight: bool = False


class AlertDispatcher:
    """Runs beside the monitor: :meth:`start` one worker per sink, :meth:`stop` them.

    :meth:`deliver_pending_once` does one pass over every sink in the calling thread (tests,
    tools). ``clock`` returns epoch ms (tests may pass a fake one).
    """

    MARK_EVERY_S = 0.05
    """Accepted deliveries are marked ``sent`` at least this often (one transaction for all the
    ones accepted meanwhile): the window in which a crash causes a repeat (same key)."""

    def __init__(self, store: Store, cfg: AlertsConfig, sinks: Sequence[Any], *,
                 clock: Callable[[], int] = now_ms, rng: random.Random | None = None) -> None:
        self.store = store
        self.cfg = cfg
        self.dcfg = cfg.dispatch
        self.sinks = {s.name: s for s in sinks}
        self.clock = clock
        self.rng = rng or random.Random()
        self.stats = {name: SinkStats() for name in self.sinks}
        self._stop = threading.Event()
        self._wake = {name: threading.Event() for name in self.sinks}
        self._threads: list[threading.Thread] = []
        self._last_resend: dict[str, float] = {}

    @classmethod
    def from_config(cls, config: Any, store: Store, *, kafka: bool = True, **kw: Any) -> AlertDispatcher:
        """Sinks from the whole :class:`~driftloop.core.config.Config` (Kafka topic + ``alerts.sinks``)."""
        from driftloop.alerts.sinks import build_sinks

        acfg = AlertsConfig.from_dict(config.alerts)
        return cls(store, acfg, build_sinks(config, acfg, kafka=kafka), **kw)

    # -- threads -------------------------------------------------------------------------------
    def start(self) -> None:
        """One daemon thread per sink."""
        if self._threads:
            return
        self._stop = stop = threading.Event()   # a fresh one: a worker left hanging by stop() stays stopped
        for name in self.sinks:
            th = threading.Thread(target=self._run, args=(name, stop), name=f"alerts-{name}", daemon=True)
            th.start()
            self._threads.append(th)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the workers; a worker stuck in a hung request is left to its timeout (daemon)."""
        self._stop.set()
        for ev in self._wake.values():
            ev.set()
        deadline = time.monotonic() + timeout_s
        for th in self._threads:
            th.join(max(0.0, deadline - time.monotonic()))
        for name, sink in self.sinks.items():
            if not any(th.is_alive() and th.name == f"alerts-{name}" for th in self._threads):
                sink.close()
        self._threads = []

    def wake(self) -> None:
        """Look for new deliveries now (the manager calls this after a commit that queued some)."""
        for ev in self._wake.values():
            ev.set()

    def _run(self, name: str, stop: threading.Event) -> None:
        wake = self._wake[name]
        while not stop.is_set():
            try:
                n, next_due = self._pass(name)
                self._maybe_resend(name)
            except Exception as exc:  # noqa: BLE001 - the worker must outlive a database hiccup
                log_failure(log, f"alert sink {name}: dispatcher pass failed", exc)
                n, next_due = 0, None
            if n:
                continue
            wait = self.dcfg.poll_interval_s
            if next_due is not None:
                wait = min(wait, max(0.0, (next_due - self.clock()) / 1000))
            if wake.wait(wait):
                wake.clear()
                time.sleep(0.02)   # the waking commit may still be finishing

    # -- one pass ------------------------------------------------------------------------------
    def deliver_pending_once(self, sink: str | None = None) -> int:
        """Send everything due now (all sinks, or one) in this thread, one attempt per delivery;
        returns how many were sent. Failed deliveries wait for their backoff."""
        total = 0
        for name in ([sink] if sink else list(self.sinks)):
            while n := self._pass(name)[0]:
                total += n
        return total

    def _pass(self, name: str) -> tuple[int, int | None]:
        """Deliver what is due for one sink; returns (sent, earliest future due time or None).

        Per alert only its oldest pending change is considered (order per alert); those that
        are due are claimed in one statement, then sent one by one in id order.
        """
        now = self.clock()
        due, next_due = self._due(name, now)
        if not due:
            return 0, next_due
        claimed = self._claim([r.id for r in due], now)
        due = [r for r in due if r.id in claimed]
        if not due:
            return 0, next_due
        e = t.alert_events
        with self.store.engine.connect() as conn:
            messages = dict(conn.execute(sa.select(e.c.idempotency_key, e.c.message).where(
                e.c.idempotency_key.in_([r.idempotency_key for r in due]))).all())
        sent, failed_due = self._send_due(name, due, messages)
        return sent, _earliest(next_due, failed_due)

    def _due(self, name: str, now: int) -> tuple[list[Any], int | None]:
        """The oldest pending delivery of each alert that is due at ``now`` (id order), and the
        earliest due time of those that are not yet."""
        d = t.alert_deliveries
        q = (sa.select(d.c.id, d.c.idempotency_key, d.c.alert_id, d.c.attempts, d.c.next_attempt_at,
                       d.c.lease_until)
             .where(d.c.sink == name, d.c.status == "pending").order_by(d.c.id).limit(self.dcfg.batch))
        with self.store.engine.connect() as conn:
            rows = list(conn.execute(q))
        seen: set[str] = set()
        due, next_due = [], None
        for row in rows:
            if row.alert_id in seen:
                continue
            seen.add(row.alert_id)
            wait_until = max(row.next_attempt_at, row.lease_until or 0)
            if wait_until > now:
                next_due = _earliest(next_due, wait_until)
            else:
                due.append(row)
        return due, next_due

    def _send_due(self, name: str, due: list[Any], messages: dict[str, Any]) -> tuple[int, int | None]:
        """Send the claimed ``due`` rows in order; returns (sent, earliest retry time of a failure).

        Sent rows are marked every ``MARK_EVERY_S`` and at the end (also on an error); a stop
        releases the lease of the rows not tried yet."""
        sent, next_due = 0, None
        st = self.stats[name]
        marks: list[int] = []
        last_flush = time.monotonic()
        try:
            for i, row in enumerate(due):
                if self._stop.is_set():
                    self._release([r.id for r in due[i:]])
                    break
                ok, failed_due = self._send_one(name, row, messages)
                if not ok:
                    next_due = _earliest(next_due, failed_due)
                    continue
                marks.append(row.id)
                st.sent += 1
                st.last_sent_at = self.clock()
                sent += 1
                if time.monotonic() - last_flush >= self.MARK_EVERY_S:
                    self._sent(marks, self.clock())
                    marks, last_flush = [], time.monotonic()
        finally:
            self._sent(marks, self.clock())
        return sent, next_due

    def _send_one(self, name: str, row: Any, messages: dict[str, Any]) -> tuple[bool, int | None]:
        """One attempt: (sent, the retry time if a :class:`DeliveryError` failed it).

        Any other exception (a bug in a sink, a missing message) is a failed attempt too."""
        st = self.stats[name]
        st.in_flight = True
        try:
            self.sinks[name].send(t.loads(messages[row.idempotency_key]), row.idempotency_key)
        except DeliveryError as exc:
            return False, self._failed(name, row, exc)
        except Exception as exc:  # a bug in a sink is a failed attempt, not a dead worker
            log.exception("alert sink %s: unexpected error", name)
            self._failed(name, row, DeliveryError(type(exc).__name__))
            return False, None
        finally:
            st.in_flight = False
        return True, None

    def _claim(self, ids: list[int], now: int) -> set[int]:
        """Take a lease on the rows no other dispatcher holds; returns the ids taken."""
        d = t.alert_deliveries
        with self.store.transaction() as conn:
            res = conn.execute(d.update().where(
                d.c.id.in_(ids), d.c.status == "pending",
                sa.or_(d.c.lease_until.is_(None), d.c.lease_until <= now)).values(
                lease_until=now + int(self.dcfg.lease_s * 1000)).returning(d.c.id))
            return {r[0] for r in res}

    def _release(self, ids: list[int]) -> None:
        d = t.alert_deliveries
        with self.store.transaction() as conn:
            conn.execute(d.update().where(d.c.id.in_(ids), d.c.status == "pending").values(lease_until=None))

    def _sent(self, ids: list[int], now: int) -> None:
        if not ids:
            return
        d = t.alert_deliveries
        with self.store.transaction() as conn:
            conn.execute(d.update().where(d.c.id.in_(ids)).values(
                status="sent", sent_at=now, attempts=d.c.attempts + 1, lease_until=None, last_error=None))

    def _failed(self, name: str, row: Any, exc: DeliveryError) -> int | None:
        attempts = row.attempts + 1
        st = self.stats[name]
        st.failures += 1
        st.last_error = str(exc)
        now = self.clock()
        give_up = self.dcfg.max_attempts and attempts >= self.dcfg.max_attempts
        delay = self.dcfg.backoff_max_s if exc.permanent else backoff_s(attempts, self.dcfg, self.rng, exc.retry_after_s)
        due = now + int(delay * 1000)
        d = t.alert_deliveries
        with self.store.transaction() as conn:
            conn.execute(d.update().where(d.c.id == row.id).values(
                status="failed" if give_up else "pending", attempts=attempts, next_attempt_at=due,
                lease_until=None, last_error=str(exc)[:500]))
        level = logging.ERROR if (give_up or exc.permanent) else logging.WARNING
        log.log(level, "alert sink %s: delivery %s failed (attempt %d): %s; %s", name, row.idempotency_key,
                attempts, exc, "giving up" if give_up else f"retrying in {delay:.1f}s")
        return None if give_up else due

    # -- Alertmanager wants firing alerts repeated -----------------------------------------------
    def _maybe_resend(self, name: str) -> None:
        sink = self.sinks[name]
        every = getattr(sink, "resend_every_s", 0.0) or 0.0
        if every <= 0:
            return
        mono = time.monotonic()
        last = self._last_resend.setdefault(name, mono)
        if mono - last < every:
            return
        self._last_resend[name] = mono
        for key, message in self.firing_messages(name):
            try:
                sink.send(message, key)
            except DeliveryError as exc:
                log.warning("alert sink %s: re-sending firing alert %s failed: %s", name, key, exc)
                return

    def firing_messages(self, sink: str) -> list[tuple[str, dict[str, Any]]]:
        """The last ``firing`` message of each alert still firing, and of each incident still
        open, that this sink received."""
        a, i, e, d = t.alerts, t.incidents, t.alert_events, t.alert_deliveries
        sent = sa.and_(d.c.idempotency_key == e.c.idempotency_key, d.c.sink == sink)
        alerts_q = (sa.select(e.c.idempotency_key, e.c.message, e.c.alert_id, e.c.seq)
                    .join(a, a.c.alert_id == e.c.alert_id).join(d, sent)
                    .where(a.c.status.in_(("firing", "resolving")), a.c.group_id.is_(None), e.c.status == "firing",
                           d.c.status == "sent"))
        incidents_q = (sa.select(e.c.idempotency_key, e.c.message, e.c.alert_id, e.c.seq)
                       .join(i, i.c.incident_id == e.c.alert_id).join(d, sent)
                       .where(i.c.status == "open", e.c.status == "firing", d.c.status == "sent"))
        last: dict[str, tuple[str, dict[str, Any]]] = {}
        with self.store.engine.connect() as conn:
            for q in (alerts_q, incidents_q):
                for key, msg, aid, _seq in conn.execute(q.order_by(e.c.alert_id, e.c.seq)):
                    last[aid] = (key, t.loads(msg))
        return list(last.values())



def _earliest(a: int | None, b: int | None) -> int | None:
    """The smaller of two optional times (``None`` is "no time")."""
    if a is None:
        return b
    return a if b is None else min(a, b)
