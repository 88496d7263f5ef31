"""The monitor's consumer loop: one consumer group over predictions and labels.

Per poll: :func:`consumers.ingest.prepare` (decode, validate) then
:func:`consumers.ingest.commit` (state + offsets, one transaction), then the outbox goes out.
Offsets live in the store: on every partition assignment the consumer seeks to what is stored,
so Kafka's own committed offsets (also written, best effort, for lag tooling) never decide where
processing resumes. SIGTERM finishes the batch in hand, commits it and leaves the group.

Faults that are not crashes (see docs/operations.md, "Faults"):

* the broker goes away: kafka-python reconnects by itself (backoff capped at
  :data:`RECONNECT_BACKOFF_MAX_MS`), the group is re-joined and every partition resumes from the
  store; outbox rows that could not be published stay unsent and go out later;
* the store fails a batch (SQLite locked beyond ``store.busy_timeout_ms``, disk full,
  PostgreSQL restarting: :data:`STORE_ERRORS`): the batch is NOT skipped. Its partitions are
  rewound to the batch's first offsets, consumption pauses (the consumer keeps polling, so it
  stays in the group) and the batch is consumed and committed again after a backoff (0.5 s,
  doubling, at most :data:`driftloop.core.store_faults.MAX_BACKOFF_S`); ``store_error`` names the problem for ``/readyz``
  and every retry logs it;
* the group rebalances while the store fails (a member joins or leaves, a deploy, the broker
  coming back): the rebalance listener never raises (kafka-python would turn that into a
  ``KafkaError`` out of ``poll`` and end the process). A partition whose stored offset cannot be
  read is paused and *unpositioned* (:class:`driftloop.kafka.offsets.Positioner`): it is not in
  ``expected``, so none of its records is processed and no batch commits for it; the loop
  tries the store again before each poll (0.5 s doubling, at most 10 s), then seeks it to the
  stored offset and resumes it. ``unpositioned`` names those partitions, and ``/readyz``
  answers 503 until there are none;
* the analysis falls behind (``analysis.mode: apart``, ``backlog=`` given): once more than
  ``analysis.max_backlog_events`` journalled events wait to be judged, every assigned partition
  is paused (the consumer keeps polling, so it stays in the group) until the backlog is under
  half of that; nothing is dropped. ``analysis_paused_since`` says since when (``/readyz``
  answers 503 once that is longer than ``analysis.max_pause_s``).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.structs import OffsetAndMetadata

from consumers.ingest import BatchAnalyser, commit, prepare
from consumers.join import expire_pending
from driftloop.core.config import Config
from driftloop.core.outbox import OutboxPublisher
from driftloop.core.stop_signals import StopSignals
from driftloop.core.store import Store, now_ms
from driftloop.core.store_faults import STORE_ERRORS, backoff_s, describe_store_error, retry_store
from driftloop.kafka import lean_records
from driftloop.kafka.clients import make_consumer, make_producer, wait_for_broker
from driftloop.kafka.lag import partition_lag
from driftloop.kafka.offsets import Fenced, Positioner, TopicPartitionKey
from driftloop.kafka.polling import retry_kafka, run_polling
from driftloop.kafka.stuck_calls import CallWatchdog, ConsumerStuck, GuardedConsumer, StallCheck, abandon_consumer
from driftloop.kafka.topics import create_topics

__all__ = ["Monitor", "MonitorStats", "STORE_ERRORS", "describe_store_error", "KAFKA_RESILIENCE"]

log = logging.getLogger(__name__)

RECONNECT_BACKOFF_MAX_MS = 2000
KAFKA_RESILIENCE = {"reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS}
"""Extra kafka-python settings of the monitor's and the worker's clients: after a broker outage
reconnect within 2 s of its return (kafka-python's default backoff grows to 30 s)."""


@dataclass
class MonitorStats:
    """Running figures of this process (the store's counters are the durable ones)."""

    batches: int = 0
    records: int = 0
    fenced: int = 0
    last_batch_ms: float = 0.0
    poll_s: float = 0.0       # time inside consumer.poll (Kafka fetch + record parsing)
    prepare_s: float = 0.0    # decode + validate
    commit_s: float = 0.0     # join + counters + offsets, one transaction
    outbox_s: float = 0.0


class _SeekToStored(ConsumerRebalanceListener):
    """On assignment, resume each partition from the offset stored with the state.

    Never raises (kafka-python would turn it into a ``KafkaError`` out of ``poll``): a partition
    whose stored offset cannot be read stays paused and unpositioned (see the module docstring).
    """

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        try:
            self.monitor.positioner.revoke(revoked, self.monitor.expected)
        except Exception:  # must not raise; the next assignment replaces the state
            log.exception("monitor[%s]: on_partitions_revoked(%s)", self.monitor.group, revoked)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        try:
            self.monitor.seek_to_stored(assigned)
        except Exception:  # seek_to_stored does not raise; belt and braces
            log.exception("monitor[%s]: on_partitions_assigned(%s)", self.monitor.group, assigned)


class Monitor(GuardedConsumer):
    """Consumes predictions and labels into the store; see the module docstring."""

    def __init__(self, cfg: Config, store: Store, *, analyser: BatchAnalyser | None = None,
                 on_batch: Callable[[Any], None] | None = None, on_idle: Callable[[], Any] | None = None,
                 backlog: Callable[[], int] | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.analyser = analyser
        self.on_batch = on_batch
        self.on_idle = on_idle      # runs in the loop's thread after every poll (champion switches)
        self.backlog = backlog      # journalled events not judged yet (analysis.mode: apart)
        self.analysis_backlog: int | None = None
        self.analysis_paused_since: float | None = None   # monotonic time the backlog paused consumption
        self.group = cfg.kafka.group_id
        self.expected: dict[TopicPartitionKey, int | None] = {}
        self.stats = MonitorStats()
        self.lag: dict[TopicPartitionKey, int] = {}   # messages behind, per partition (for /metrics)
        self._stop = threading.Event()
        self.consumer: Any = None
        self.producer: Any = None
        self.outbox: OutboxPublisher | None = None
        self._last_expire = 0.0
        self._last_report = time.monotonic()
        self.report_every_s = 30.0
        self._last_outbox = 0.0
        self.outbox_every_s = 1.0
        # store-fault back-pressure: while set, consumption is paused until the monotonic time
        self.store_error: str | None = None
        self.store_failures = 0             # consecutive failed attempts (0 when healthy)
        self._retry_at: float | None = None
        self._analyser_stale = False        # detectors saw an uncommitted batch and could not reload yet
        self._last_housekeeping_error = 0.0
        self._outbox_failing = False
        self.watchdog = CallWatchdog(f"monitor[{self.group}]")
        self.stall = StallCheck(self.watchdog.owner)
        self.consumers_replaced = 0
        self.positioner = Positioner.for_store(store, self.group, start_from=cfg.ingest.start_from,
                                               owner=f"monitor[{self.group}]", describe=describe_store_error)

    @property
    def unpositioned(self) -> frozenset[TopicPartitionKey]:
        """Assigned partitions not sought yet: their stored offsets could not be read (safe to
        read from another thread)."""
        return self.positioner.unpositioned

    @property
    def unpositioned_error(self) -> str | None:
        """Why the stored offsets of ``unpositioned`` could not be read, at the last try."""
        return self.positioner.error

    # -- lifecycle ---------------------------------------------------------------------------
    def stop(self, *_: Any) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the loop (through a relay thread: no lock in the handler,
        see :mod:`driftloop.core.stop_signals`)."""
        StopSignals(self._stop).install()

    @property
    def stop_event(self) -> threading.Event:
        """Set by ``stop()`` (SIGTERM/SIGINT)."""
        return self._stop

    def start(self) -> None:
        """Connect and subscribe; returns without a consumer if stopped while waiting for the broker."""
        if not wait_for_broker(self.cfg.kafka, timeout_s=120, stop=self._stop):
            return
        if not retry_store(self.store.create_schema, "creating the schema", stop=self._stop):
            return
        if not retry_kafka(lambda: create_topics(self.cfg), self._stop, "creating topics"):
            return
        self.producer = self._make_producer()
        self.outbox = OutboxPublisher(self.store, self.producer, new_producer=self._make_producer)
        if not self._subscribe():
            return
        self._publish_outbox()

    def _make_producer(self) -> Any:
        # max_block_ms: a send to a topic whose metadata is unknown while the broker is away
        # gives up after 5 s (the row stays unsent) instead of holding the loop for a minute
        return make_producer(self.cfg.kafka, max_block_ms=5_000, **KAFKA_RESILIENCE)

    def _subscribe(self) -> bool:
        """A new consumer joins the group; retried while the broker is away (False: stopped)."""
        def attempt() -> None:
            self.consumer = make_consumer(self.cfg.kafka, group_id=self.group,
                                          max_poll_records=self.cfg.ingest.max_poll_records,
                                          max_message_bytes=self.cfg.ingest.max_message_bytes, **KAFKA_RESILIENCE)
            lean_records.install(self.consumer)     # the same records, half kafka-python's unpacking cost
            try:
                topics = [self.cfg.topics.predictions, self.cfg.topics.labels]
                self._await_topic_metadata(topics)
                self.consumer.subscribe(topics, listener=_SeekToStored(self))
            except Exception:
                failed, self.consumer = self.consumer, None
                abandon_consumer(failed, self.watchdog.owner)
                raise
        return retry_kafka(attempt, self._stop, f"monitor joining {self.group}")

    def _await_topic_metadata(self, topics: list[str], timeout_s: float = 30.0) -> None:
        """Know the topics' partitions before joining the group.

        Joining with no metadata for a freshly created topic gives an empty assignment that
        kafka-python only corrects at its next metadata refresh.
        """
        deadline = time.monotonic() + timeout_s
        for topic in topics:
            while not self.consumer.partitions_for_topic(topic) and time.monotonic() < deadline:
                time.sleep(0.2)

    def close(self) -> None:
        self.watchdog.close()
        if self.consumer is not None:
            self._commit_kafka_offsets()
            self.consumer.close(autocommit=False)
        if self.outbox is not None and not self._outbox_failing:   # a last try, unless the broker is away
            try:
                self.outbox.publish_pending()
            except Exception as exc:  # noqa: BLE001 - shutting down: the rows go out at the next start
                log.warning("outbox not fully published at shutdown (the rows go out at the next start): %s", exc)
        # the outbox may have replaced the producer (a broker-side refusal breaks it)
        producer = self.outbox.producer if self.outbox is not None else self.producer
        if producer is not None:
            producer.close(timeout=0 if self._outbox_failing else 10)

    def _commit_kafka_offsets(self) -> None:
        """At shutdown, Kafka's committed offsets (lag tooling) catch up with the stored ones:
        the asynchronous commit of the last batch may still be in flight."""
        done = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                for (t, p), o in list(self.expected.items()) if o is not None}
        if not done:
            return
        try:
            self.consumer.commit(done)
        except Exception as exc:  # noqa: BLE001 - informational only
            log.info("Kafka-side offsets not committed at shutdown (the store has them): %s", exc)

    def run(self, *, until: Callable[[], bool] | None = None, max_seconds: float | None = None) -> MonitorStats:
        """Consume until stopped (SIGTERM/SIGINT, ``stop()``, ``until()`` or ``max_seconds``)."""
        self.start()
        try:
            if self.consumer is not None:
                run_polling(self.poll_once, self._stop, until=until, max_seconds=max_seconds)
        finally:
            self.close()
        return self.stats

    # -- one step ----------------------------------------------------------------------------
    def seek_to_stored(self, assigned: list[TopicPartition]) -> list[TopicPartition]:
        """Seek to the stored offsets; never raises. Returns the partitions positioned: the
        others are paused and unpositioned until :meth:`_position_pending` succeeds."""
        return self.positioner.assign(self.consumer, assigned, self.expected)

    def _position_pending(self) -> None:
        """Before each poll: position the partitions the store could not position before
        (with backoff); resume them unless consumption is paused for a store failure."""
        if self.consumer is None:
            return
        done = self.positioner.retry(self.consumer, self.expected)
        if done and self._retry_at is None and self.analysis_paused_since is None:
            self.consumer.resume(*done)

    def _replace_consumer(self, why: ConsumerStuck | str) -> None:
        self.positioner.clear()     # the new consumer gets a new assignment
        super()._replace_consumer(why)

    def poll_once(self) -> int:
        self._position_pending()
        self._hold_for_backlog()
        if self._retry_at is not None and not self._ready_to_retry():
            return 0
        t0 = time.perf_counter()
        polled = self._poll_guarded(timeout_ms=self.cfg.ingest.poll_timeout_ms,
                                    max_records=self.cfg.ingest.max_poll_records)
        if polled is None:      # the consumer was replaced
            return 0
        self.stats.poll_s += time.perf_counter() - t0
        self.positioner.hold(self.consumer, polled)
        records = [r for batch in polled.values() for r in batch
                   if (r.topic, r.partition) in self.expected]
        if records:
            self._process(records)
        self.lag = partition_lag(self.consumer, self.expected)
        if self.on_idle is not None and self._retry_at is None:
            try:
                self.on_idle()
            except STORE_ERRORS as exc:
                log.error("store unavailable in the idle step (%s); trying again after the next poll",
                          describe_store_error(exc))
        self._housekeeping()
        return len(records)

    # -- the analysis falls behind: back-pressure ---------------------------------------------
    def _hold_for_backlog(self) -> None:
        """Before every poll (one small query: the bound holds to a batch), pause every assigned
        partition while the analysis backlog is over its bound; resume the positioned ones once
        it is under half."""
        if self.backlog is None or self.consumer is None or self._retry_at is not None:
            return      # (while the store fails, consumption is paused anyway: no read to wait on)
        now = time.monotonic()
        try:
            waiting = self.analysis_backlog = self.backlog()
        except STORE_ERRORS as exc:      # the batch commit says the same, and backs off
            self._housekeeping_failed("reading the analysis backlog", exc)
            return
        bound = self.cfg.analysis.max_backlog_events
        if waiting > bound:
            self.consumer.pause(*self.consumer.assignment())   # again each time: a rebalance may add some
            if self.analysis_paused_since is None:
                self.analysis_paused_since = now
                log.warning("analysis backlog: %d events wait to be judged (> analysis.max_backlog_events %d); "
                            "consumption paused until it is under %d", waiting, bound, bound // 2)
        elif self.analysis_paused_since is not None and waiting <= bound // 2:
            log.info("analysis backlog down to %d events after %.1f s: consumption resumes", waiting,
                     now - self.analysis_paused_since)
            self.analysis_paused_since = None
            self._resume_positioned()

    def _resume_positioned(self) -> None:
        """Resume the paused partitions, except those not positioned yet (they stay paused until
        their stored offsets are read)."""
        unpositioned = self.positioner.unpositioned
        self.consumer.resume(*[tp for tp in self.consumer.paused() if (tp.topic, tp.partition) not in unpositioned])

    # -- store faults: back-pressure ---------------------------------------------------------
    def _store_failed(self, exc: BaseException, records: list[Any]) -> None:
        """A batch did not commit because the store failed: rewind, pause, back off."""
        self.store_failures += 1
        self.store_error = describe_store_error(exc)
        delay = backoff_s(self.store_failures)
        first: dict[TopicPartitionKey, int] = {}
        for r in records:
            key = (r.topic, r.partition)
            first[key] = min(first.get(key, r.offset), r.offset)
        for (t, p), off in first.items():   # not one offset past what is committed
            self.consumer.seek(TopicPartition(t, p), off)
        self.consumer.pause(*self.consumer.assignment())
        self._retry_at = time.monotonic() + delay
        self._analyser_stale = self.analyser is not None and hasattr(self.analyser, "rollback")
        log.error("store unavailable: %s; the batch of %d records was NOT committed (nothing skipped): "
                  "consumption paused, partitions rewound to %s, retry %d in %.1fs",
                  self.store_error, len(records), {f"{t}[{p}]": o for (t, p), o in sorted(first.items())},
                  self.store_failures, delay)

    def _ready_to_retry(self) -> bool:
        """While backing off: keep polling (paused, so the group membership stays alive); once
        the time has come, reload the detectors and resume. False while still backing off."""
        try:
            stray = self._poll(timeout_ms=min(200, self.cfg.ingest.poll_timeout_ms))
        except ConsumerStuck as exc:
            self._replace_consumer(exc)
            if self.consumer is None:     # stopped while joining again
                return False
            stray = {}
        for tp, recs in stray.items():      # a partition (re)assigned meanwhile is not paused
            self.consumer.seek(tp, min(r.offset for r in recs))
            self.consumer.pause(tp)
        if self._retry_at is not None and time.monotonic() < self._retry_at:
            return False
        if self._analyser_stale:
            try:
                self.analyser.rollback()   # type: ignore[union-attr]  # set whenever _analyser_stale is
            except STORE_ERRORS as exc:
                self.store_failures += 1
                self.store_error = describe_store_error(exc)
                delay = backoff_s(self.store_failures)
                self._retry_at = time.monotonic() + delay
                log.error("store unavailable: %s; the detectors cannot reload their committed state yet: "
                          "retry %d in %.1fs", self.store_error, self.store_failures, delay)
                return False
            self._analyser_stale = False
        self._retry_at = None
        if self.analysis_paused_since is not None:
            log.info("retrying the uncommitted batch once the analysis backlog is down")
            return True
        self._resume_positioned()
        log.info("retrying the uncommitted batch after %d failed attempt(s)", self.store_failures)
        return True

    def _store_recovered(self) -> None:
        if self.store_failures:
            log.warning("store available again after %d failed attempt(s); the batch committed", self.store_failures)
        self.store_failures = 0
        self.store_error = None

    def _publish_outbox(self) -> None:
        """Publish unsent outbox rows; a broker or store failure leaves them for the next try."""
        if self.outbox is None:
            return
        try:
            self.outbox.publish_pending()
        except Exception as exc:  # noqa: BLE001 - rows stay unsent; retried within outbox_every_s
            self._outbox_failing = True
            self._housekeeping_failed("outbox not published yet", exc)
        else:
            self._outbox_failing = False

    def _housekeeping_failed(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_housekeeping_error >= 10.0:     # one line per 10 s, not per poll
            self._last_housekeeping_error = now
            text = describe_store_error(exc) if isinstance(exc, STORE_ERRORS) else f"{type(exc).__name__}: {exc}"
            log.warning("%s: %s; will retry", what, text)

    def _process(self, records: list[Any]) -> None:
        t0 = time.perf_counter()
        now = now_ms()
        batch = prepare(records, self.cfg, now)
        t1 = time.perf_counter()
        self.stats.prepare_s += t1 - t0
        try:
            result = commit(self.store, self.cfg, batch, group=self.group,
                            expected={k: self.expected.get(k) for k in batch.next_offsets},
                            now=now, analyser=self.analyser)
        except Fenced as exc:
            self.stats.fenced += 1
            log.warning("%s; rolling back the batch and resuming from stored offsets", exc)
            self._rollback_analyser()
            # every partition of the batch goes back: the rollback undid its records too
            self.seek_to_stored([TopicPartition(t, p) for t, p in batch.next_offsets
                                 if (t, p) in self.expected])
            return
        except STORE_ERRORS as exc:
            self._store_failed(exc, records)
            return
        except Exception:
            self._rollback_analyser()
            raise
        self._store_recovered()
        self.expected.update(batch.next_offsets)
        t2 = time.perf_counter()
        self.stats.commit_s += t2 - t1
        self.stats.batches += 1
        self.stats.records += batch.records
        self.stats.last_batch_ms = (t2 - t0) * 1000
        try:
            self.consumer.commit_async({TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                                        for (t, p), o in batch.next_offsets.items()})
        except Exception as exc:  # noqa: BLE001 - Kafka-side offsets are informational only
            log.debug("informational offset commit failed: %s", exc)
        if self.outbox is not None:   # dead letters, retrain jobs, registry events of this batch
            self._publish_outbox()
            self.stats.outbox_s += time.perf_counter() - t2
        if self.on_batch is not None:
            self.on_batch(result)

    def _rollback_analyser(self) -> None:
        """The batch did not commit: detectors go back to their stored state."""
        if self.analyser is not None and hasattr(self.analyser, "rollback"):
            self.analyser.rollback()

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if self.outbox is not None and now - self._last_outbox >= self.outbox_every_s:
            # rows written outside a batch (an alert fired by the scheduler's tick, and the
            # retraining job it enqueued) go out within a second, not at the next batch
            self._last_outbox = now
            self._publish_outbox()
        if now - self._last_report >= self.report_every_s:
            self._last_report = now
            st = self.stats
            log.info("progress: %d records in %d batches (poll %.1fs, prepare %.1fs, commit %.1fs), "
                     "%d partitions assigned, %d fenced batches", st.records, st.batches, st.poll_s,
                     st.prepare_s, st.commit_s, len(self.expected), st.fenced)
        if now - self._last_expire < self.cfg.ingest.expire_every_s:
            return
        if self._retry_at is not None:
            return                      # the store is failing: no extra writes meanwhile
        self._last_expire = now
        lim = self.cfg.ingest
        try:
            with self.store.transaction() as conn:
                expired = expire_pending(conn, now_ms(), int(lim.prediction_ttl_s * 1000),
                                         int(lim.label_ttl_s * 1000), int(lim.joined_retention_s * 1000))
                self.store.add_counters(conn, expired)
        except STORE_ERRORS as exc:   # nothing lost: the same halves expire at the next run
            self._housekeeping_failed("expiring pending halves failed", exc)
            return
        if expired:
            log.info("expired pending halves: %s", dict(expired))
        self._publish_outbox()
