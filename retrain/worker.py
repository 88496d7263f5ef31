"""``driftloop retrain-worker``: a consumer group on ``driftloop.retrain`` that runs the jobs.

Several workers share the topic's partitions (jobs are keyed by model, so one model's jobs stay
in order on one partition). Each worker runs one job at a time in a background thread while
its main thread keeps polling with the partitions paused: the group stays healthy, and a
rebalance completes in seconds even while a model trains for minutes.

Where a partition resumes is the store's ``offsets`` table (group ``registry.worker_group_id``),
never Kafka's committed offsets (written too, for lag tooling only). A job's decision, its
registry rows, the audit row, the ``driftloop.models`` event (outbox) and the job's next offset
commit in ONE transaction (with ``retrain.shadow`` in the model's policy, a challenger that passes
the gate is put in shadow, event ``shadow_started``, and :mod:`retrain.shadow` decides later on
live traffic), with the fencing of :mod:`driftloop.kafka.offsets`.

What happens if the worker dies (SIGKILL, OOM, power) between two steps of a job:

1. after the poll, before ``running`` is written: nothing changed; the job is delivered again
   (to this worker after a restart, or to another once the group notices, ~session timeout);
2. after ``running`` (``attempts`` + 1), during loading/training/scoring: nothing of the
   decision exists; the job is redone from scratch on the same rows (the window has an
   ``as_of``) with the same seeds, so it reaches the same decision. After
   ``registry.max_attempts`` starts the job is marked ``failed`` instead (a job that kills its
   worker, e.g. by running out of memory, must not do so forever). Only real attempts count:
   a graceful stop (SIGTERM), a store error (``OperationalError``/``InterfaceError``) or an
   ``OSError`` (disk full, unreadable file) after the claim gives its attempt back
   (``attempts`` - 1, ``give_backs`` + 1), so rolling restarts and outages do not use them up;
   if the store refuses the give-back too, the worker's next claim of the job applies it. At
   most ``registry.max_give_backs`` per job, counted in the job's row (a restart does not reset
   it); past that they count, so a job that keeps meeting them is ``failed`` after at most
   ``max_attempts + max_give_backs`` starts. A bug (any other exception) counts;
3. after the files are written, before the decision commits: the folder is orphaned (never
   referenced by the registry; safe to delete) and the job is redone as in 2;
4. after the decision commits, before the event is published: the event is an outbox row and
   goes out when this or another process next publishes the outbox (at-least-once);
5. after publishing, before the outbox row is marked sent: the event goes out again with the
   same ``driftloop-id`` header and the same ``history_id``;

and so a job is decided exactly once: the decision commits with the job's offset, fenced
against other workers, and ``model_versions.job_id`` is unique. A repeated delivery of a job id
already decided (the enqueuing outbox is at-least-once too) is skipped. Two workers can train
the same job after a rebalance; only the first to commit records a decision, the other one is
fenced and drops its result.

With ``registry.backend: mlflow`` (:mod:`retrain.mlflow_registry`) a job also needs MLflow:
before the claim the server must answer (else the job waits, nothing counted), and after the
comparison, before the decision, the job's run is found by its tag or created
(``MlflowMirror.prepare_run``; a server gone meanwhile gives the attempt back as in 2: the
decision waits, the job is not failed, and the redo reuses the run). After the decision
commits, the mirror creates the MLflow version and moves the alias; a crash or an outage there
leaves the version ``pending`` for the mirror thread (at start, every ``registry.mlflow.poll_s``),
which finds the version by its tag rather than creating a second one.

Failures that are not crashes: a job that cannot succeed (too little data, a broken recipe,
an incumbent artifact that fails its SHA-256 check, a challenger holding types outside
``registry.trusted_types``, ...) is marked ``failed`` with the error and its offset advances;
the store or the disk being unavailable is retried (the job stays, its attempt is given back as
in 2, the worker backs off and resumes from the stored offset). A message that is not a job
goes to the dead-letter topic.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import sqlalchemy as sa
import sqlalchemy.exc
from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.structs import OffsetAndMetadata

from consumers.monitor import KAFKA_RESILIENCE
from driftloop.core.config import Config
from driftloop.core.config.retrain import registry_config, retrain_policies
from driftloop.core.outbox import OutboxPublisher
from driftloop.core.stop_signals import StopSignals
from driftloop.core.store import Store, now_ms
from driftloop.core.store_faults import describe_store_error, retry_store
from driftloop.core.tables import retrain_jobs
from driftloop.kafka.clients import make_consumer, make_producer, wait_for_broker
from driftloop.kafka.dead_letters import dead_letter
from driftloop.kafka.offsets import Fenced, Positioner, TopicPartitionKey, advance_offsets
from driftloop.kafka.polling import retry_kafka, run_polling
from driftloop.kafka.stuck_calls import CallWatchdog, ConsumerStuck, GuardedConsumer, StallCheck, abandon_consumer
from driftloop.kafka.topics import create_topics
from retrain.events import ModelEvent, RetrainJob, decode_job
from retrain.mlflow_client import MlflowUnavailable
from retrain.mlflow_registry import MirrorThread, job_run_tags, mirror_for
from retrain.registry import ChampionChanged, Registry, library_versions
from retrain.training import TrainedChallenger, compare, incumbent_outputs, record_decision, train_challenger

__all__ = ["RetrainWorker", "WorkerStats", "JobOutcome"]

log = logging.getLogger(__name__)

#: the store or the disk away: the job is retried later, and its attempt given back (step 2)
_TRANSIENT = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, OSError)


@dataclass
class WorkerStats:
    jobs: int = 0
    promoted: int = 0
    rejected: int = 0
    shadowed: int = 0          # passed the offline gate, put in shadow (policy ``retrain.shadow``)
    failed: int = 0
    skipped: int = 0
    fenced: int = 0
    invalid: int = 0
    retried: int = 0
    last_job_s: float = 0.0


@dataclass
class JobOutcome:
    """What became of one delivered job message."""

    status: str                         # done | failed | skipped | fenced | retry
    job_id: str | None = None
    event: ModelEvent | None = None
    version: int | None = None
    error: str | None = None
    seconds: float = 0.0


class _Listener(ConsumerRebalanceListener):
    """Seeks assigned partitions to their stored offsets, and never raises (kafka-python would
    turn that into a ``KafkaError`` out of ``poll`` and end the worker).

    A partition assigned while its stored offset cannot be read (the store is down during the
    rebalance) is paused and unpositioned (:class:`driftloop.kafka.offsets.Positioner`): it has no
    ``expected`` offset, so no job of it is run and no offset is committed for it; the poll loop
    tries the store again with backoff before each poll, then seeks and resumes it.
    """

    def __init__(self, worker: RetrainWorker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        try:
            self.worker.positioner.revoke(revoked, self.worker.expected)
        except Exception:  # must not raise; the next assignment replaces the state
            log.exception("%s: on_partitions_revoked(%s)", self.worker.worker_id, revoked)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        try:
            positioned = self.worker.seek_to_stored(assigned)
            if self.worker.busy.is_set() and positioned:     # a job runs: consumed after it
                self.worker.consumer.pause(*positioned)
        except Exception:  # seek_to_stored does not raise; belt and braces
            log.exception("%s: on_partitions_assigned(%s)", self.worker.worker_id, assigned)


class RetrainWorker(GuardedConsumer):
    """Consumes and runs retraining jobs; see the module docstring for the failure modes.

    ``train_hook(job)`` runs after each fit (tests slow or observe training with it).
    """

    def __init__(self, cfg: Config, store: Store, *, worker_id: str | None = None,
                 train_hook: Callable[[RetrainJob], None] | None = None,
                 on_outcome: Callable[[JobOutcome], None] | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.reg = registry_config(cfg)
        self.policies = retrain_policies(cfg)
        self.registry = Registry(cfg, store, self.reg)
        self.mirror = mirror_for(cfg, store, self.registry)       # registry.backend: mlflow
        self._mirror_thread: MirrorThread | None = None
        self.group = self.reg.worker_group_id
        self.worker_id = worker_id or f"retrain-worker@{socket.gethostname()}:{os.getpid()}"
        self.train_hook = train_hook
        self.on_outcome = on_outcome
        self.expected: dict[TopicPartitionKey, int | None] = {}
        self.positioner = Positioner.for_store(store, self.group, owner=self.worker_id, describe=describe_store_error)
        self.stats = WorkerStats()
        self.busy = threading.Event()
        self._claimed: str | None = None      # the job id this worker holds as ``running`` right now
        self._claim_lock = threading.Lock()   # a claim is given back at most once (stop vs. error)
        self._owed: str | None = None         # a give-back the store refused: applied at the next claim
        self._stop = threading.Event()
        self.consumer: Any = None
        self.producer: Any = None
        self.outbox: OutboxPublisher | None = None
        self._last_publish = 0.0
        self.watchdog = CallWatchdog(self.worker_id)
        self.stall = StallCheck(self.worker_id)
        self.consumers_replaced = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def stop(self, *_: Any) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the loop (through a relay thread: no lock in the handler,
        see :mod:`driftloop.core.stop_signals`)."""
        StopSignals(self._stop).install()

    def start(self) -> None:
        _warm_imports(mlflow=self.mirror is not None)
        if not wait_for_broker(self.cfg.kafka, timeout_s=120, stop=self._stop):
            return   # stopped while waiting: no clients were made
        if not retry_store(self.store.create_schema, f"{self.worker_id} creating the schema", stop=self._stop):
            return
        if not retry_kafka(lambda: create_topics(self.cfg), self._stop, f"{self.worker_id} creating topics"):
            return
        self.reg.artifact_path.mkdir(parents=True, exist_ok=True)
        self.producer = self._make_producer()
        t = self.cfg.topics
        self.outbox = OutboxPublisher(self.store, self.producer, [t.retrain, t.models, t.dlq],
                                     new_producer=self._make_producer)
        if self.mirror is not None:
            self._mirror_thread = MirrorThread(self.mirror, name=f"mlflow-mirror-{self.worker_id}")
            self._mirror_thread.start()
        if not self._subscribe():
            return
        self._publish(force=True)
        log.info("%s consuming %s as group %s", self.worker_id, self.cfg.topics.retrain, self.group)

    def _make_producer(self) -> Any:
        return make_producer(self.cfg.kafka, max_block_ms=5_000, **KAFKA_RESILIENCE)

    def _subscribe(self) -> bool:
        """A new consumer joins the group; retried while the broker is away (False: stopped)."""
        def attempt() -> None:
            consumer = make_consumer(self.cfg.kafka, group_id=self.group, max_poll_records=1,
                                     max_message_bytes=self.cfg.ingest.max_message_bytes, **KAFKA_RESILIENCE)
            try:
                # Load the topic's metadata before joining: a group leader that assigns before it knows
                # the partitions gives everyone nothing and may not rebalance again (dpkp/kafka-python#2377).
                consumer.partitions_for_topic(self.cfg.topics.retrain)
                self.consumer = consumer
                consumer.subscribe([self.cfg.topics.retrain], listener=_Listener(self))
            except Exception:
                self.consumer = None
                abandon_consumer(consumer, self.worker_id)
                raise
        return retry_kafka(attempt, self._stop, f"{self.worker_id} joining {self.group}")

    def close(self) -> None:
        if self._mirror_thread is not None:
            self._mirror_thread.stop()
        self.watchdog.close()
        if self.consumer is not None:
            self.consumer.close(autocommit=False)
        self._publish(force=True)
        # the outbox may have replaced the producer (a broker-side refusal breaks it)
        producer = self.outbox.producer if self.outbox is not None else self.producer
        if producer is not None:
            producer.close(timeout=10)

    def run(self, *, until: Callable[[], bool] | None = None, max_seconds: float | None = None) -> WorkerStats:
        """Consume until stopped (SIGTERM/SIGINT, ``stop()``, ``until()`` or ``max_seconds``).

        A stop during a job abandons it (another worker, or the next start, redoes it).
        """
        self.start()
        try:
            if self.consumer is not None:
                run_polling(self.poll_once, self._stop, until=until, max_seconds=max_seconds)
        finally:
            self.close()
        return self.stats

    # -- consumer ----------------------------------------------------------------------------
    def seek_to_stored(self, assigned: list[TopicPartition]) -> list[TopicPartition]:
        """Seek to the stored offsets; never raises. Returns the partitions positioned: the
        others are paused and unpositioned until :meth:`position_pending` succeeds."""
        return self.positioner.assign(self.consumer, assigned, self.expected)

    def position_pending(self) -> None:
        """Before each poll: position (with backoff) and resume the partitions whose stored
        offsets could not be read when they were assigned."""
        done = self.positioner.retry(self.consumer, self.expected)
        if done and not self.busy.is_set():
            self.consumer.resume(*done)

    def poll_once(self) -> JobOutcome | None:
        self.position_pending()
        polled = self._poll_guarded(timeout_ms=self.reg.poll_timeout_ms, max_records=1)
        if polled is None:      # the consumer was replaced
            return None
        self.positioner.hold(self.consumer, polled)
        records = [r for batch in polled.values() for r in batch if (r.topic, r.partition) in self.expected]
        outcome = None
        if records:
            rec = records[0]
            for other in records[1:]:   # max_records=1, but never lose one
                self.consumer.seek(TopicPartition(other.topic, other.partition), other.offset)
            outcome = self._run_in_background(rec)
        self._publish()
        return outcome

    def _run_in_background(self, rec: Any) -> JobOutcome:
        """Run the job in a thread; keep polling (paused) so the group membership stays alive."""
        key = (rec.topic, rec.partition)
        result: list[JobOutcome] = []
        expected = self.expected.get(key)

        def target() -> None:
            try:
                result.append(self.handle(rec, expected))
            except BaseException as exc:  # reported to the main thread
                result.append(JobOutcome("retry", error=f"{type(exc).__name__}: {exc}"))
                log.exception("job at %s offset %d: unexpected error; will retry", key, rec.offset)

        self.busy.set()
        thread = threading.Thread(target=target, name=f"retrain-job-{rec.offset}", daemon=True)
        paused = list(self.consumer.assignment())
        self.consumer.pause(*paused)
        thread.start()
        finished, stuck = self._watch_job(thread, rec)
        if not finished:
            return JobOutcome("retry", error="worker stopped")
        outcome = result[0] if result else JobOutcome("retry", error="no result")
        self.stall.saw_records()
        if stuck is not None:
            self._replace_consumer(stuck)
        self._position_after(rec, outcome, stuck)
        self._count(outcome)
        self._publish(force=True)
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        return outcome

    def _watch_job(self, thread: threading.Thread, rec: Any) -> tuple[bool, ConsumerStuck | None]:
        """Poll (paused) until the job's thread ends: (finished, the stuck call if the consumer hung).

        ``finished`` is ``False`` if the worker was stopped mid-job: its attempt is given back
        and the job will be redone. Either way the partitions are resumed (unless the consumer
        is stuck: it is replaced after the job) and the worker is no longer busy."""
        stuck: ConsumerStuck | None = None
        try:
            while thread.is_alive():
                if self._stop.is_set():
                    log.warning("stopping in the middle of the job at %s offset %d; it will be redone",
                                (rec.topic, rec.partition), rec.offset)
                    self._give_back_attempt("the worker was stopped")
                    return False, stuck
                if stuck is None:
                    stuck = self._seek_back_strays()
                thread.join(0.05 if stuck is None else 0.5)
        finally:
            self.busy.clear()
            self._claimed = None
            if stuck is None:
                self.consumer.resume(*self.consumer.paused())
        return True, stuck

    def _seek_back_strays(self) -> ConsumerStuck | None:
        """One paused poll; records of a partition assigned and fetched mid-job are sought back.

        Returns the :class:`ConsumerStuck` if the poll hung (the job goes on; the consumer is
        replaced after it)."""
        try:
            stray = self._poll(timeout_ms=200)
        except ConsumerStuck as exc:
            return exc
        for tp, recs in stray.items():
            self.consumer.seek(tp, min(r.offset for r in recs))
        return None

    def _position_after(self, rec: Any, outcome: JobOutcome, stuck: ConsumerStuck | None) -> None:
        """Where the job's partition goes on: past the job if decided, the stored offset if
        fenced, the same job again (after a back-off) if it is to be retried."""
        key = (rec.topic, rec.partition)
        tp = TopicPartition(rec.topic, rec.partition)
        if outcome.status in ("done", "failed", "skipped"):
            if key in self.expected:
                self.expected[key] = rec.offset + 1
            try:
                if stuck is None:
                    self.consumer.commit_async({tp: OffsetAndMetadata(rec.offset + 1, "", -1)})
            except Exception as exc:  # noqa: BLE001 - informational only
                log.debug("informational offset commit failed: %s", exc)
        elif outcome.status == "fenced":
            self.stats.fenced += 1
            if key in self.expected:
                self.seek_to_stored([tp])
        else:   # retry: back off, then consume the same job again
            self.stats.retried += 1
            if key in self.expected:
                self.consumer.seek(tp, rec.offset)
            self._stop.wait(min(30.0, 2.0 * (1 + self.stats.retried % 5)))

    def _count(self, o: JobOutcome) -> None:
        s = self.stats
        if o.status == "done":
            s.jobs += 1
            s.last_job_s = o.seconds
            if o.event is not None and o.event.event == "promoted":
                s.promoted += 1
            elif o.event is not None and o.event.event == "shadow_started":
                s.shadowed += 1
            else:
                s.rejected += 1
        elif o.status == "failed":
            s.failed += 1
        elif o.status == "skipped":
            s.skipped += 1

    def _publish(self, force: bool = False) -> None:
        if self.outbox is None:
            return
        now = time.monotonic()
        if not force and now - self._last_publish < 5.0:
            return
        self._last_publish = now
        try:
            self.outbox.publish_pending()
        except Exception as exc:  # noqa: BLE001 - rows stay unsent and go out on a later try
            log.warning("outbox not published yet: %s", exc)

    # -- one job (runs in the background thread; no consumer calls here) ---------------------
    def handle(self, rec: Any, expected: int | None) -> JobOutcome:
        """Run the job in ``rec`` to its recorded outcome; see the module docstring.

        A ``retry`` after the claim (the store or the disk failed: ``_TRANSIENT``) gives the
        attempt back (step 2 of the module docstring)."""
        if self.reg.threads is None:
            outcome = self._handle(rec, expected)
        else:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=self.reg.threads):
                outcome = self._handle(rec, expected)
        if outcome.status == "retry" and outcome.job_id is not None:
            self._give_back_attempt(outcome.error or "transient error", job_id=outcome.job_id)
        return outcome

    def _handle(self, rec: Any, expected: int | None) -> JobOutcome:
        t0 = time.perf_counter()
        key = (rec.topic, rec.partition)
        new = {key: rec.offset + 1}
        try:
            job = decode_job(rec.value)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, TypeError) as exc:
            return self._invalid(rec, key, expected, f"not a retraining job: {exc}")
        early = self._before_claim(rec, key, expected, job)     # an unknown model; MLflow away
        if early is not None:
            return early
        # step 1: claim the job (running, attempts + 1), or skip a repeat / a job that keeps dying
        row, decided, exhausted = self._begin(job)
        if decided:
            msg = f"job {job.job_id} was already {row.status}; repeated delivery skipped"
            log.info(msg)
            return self._finish_offsets(key, expected, new, JobOutcome("skipped", job.job_id, error=msg))
        if exhausted:
            return self._fail(job, key, expected, new,
                              f"gave up after {row.attempts} attempts (the worker died, or a stop or store/disk "
                              f"errors interrupted it after registry.max_give_backs ({self.reg.max_give_backs}) "
                              "attempts were given back; see its logs)", t0)
        # step 2: data, challenger, files (no store writes)
        policy = self.policies[job.model]
        try:
            trained = train_challenger(self.cfg, self.store, self.registry, job, policy, hook=self.train_hook)
            # a champion that could not be loaded would fail every later job of its model
            self.registry.check_loadable(trained.artifact.trusted_types, f"the challenger {trained.artifact.path}")
            # registry.backend: mlflow: the job's run before the decision (away: the decision waits)
            run_id = self._prepare_run(trained)
        except (*_TRANSIENT, MlflowUnavailable) as exc:
            log.warning("job %s: transient failure, will retry: %s", job.job_id, exc)
            return JobOutcome("retry", job.job_id, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - the job cannot succeed: record why
            log.warning("job %s failed: %s: %s", job.job_id, type(exc).__name__, exc)
            return self._fail(job, key, expected, new, f"{type(exc).__name__}: {exc}", t0)
        # step 3: compare with the champion and record, all in one transaction (retried if the
        # champion changed meanwhile, e.g. a manual promotion)
        for _ in range(3):
            try:
                champion = self.registry.champion(job.model)
                tc = time.perf_counter()
                incumbent = incumbent_outputs(self.registry, trained, champion)
                decision = compare(trained, incumbent, policy)
                trained.timings["compare_s"] = time.perf_counter() - tc
            except _TRANSIENT as exc:
                return JobOutcome("retry", job.job_id, error=str(exc))
            except Exception as exc:  # noqa: BLE001 - the user's model: the job fails with the reason
                log.warning("job %s: comparison failed: %s: %s", job.job_id, type(exc).__name__, exc)
                return self._fail(job, key, expected, new, f"{type(exc).__name__}: {exc}", t0)
            now = now_ms()
            try:
                with self.store.transaction() as conn:
                    advance_offsets(self.store, conn, self.group, {key: expected}, new, now)
                    status = conn.execute(sa.select(retrain_jobs.c.status)
                                          .where(retrain_jobs.c.job_id == job.job_id)).scalar()
                    if status in ("done", "failed", "skipped"):
                        raise _AlreadyDecided(status)
                    version, event = record_decision(conn, self.registry, trained, incumbent, decision,
                                                     actor=self.worker_id, now=now, shadow=policy.shadow is not None,
                                                     mlflow_run_id=run_id)
                    conn.execute(retrain_jobs.update().where(retrain_jobs.c.job_id == job.job_id).values(
                        status="done", decision=event.event, version=version, finished_at=now, error=None))
            except ChampionChanged as exc:
                log.info("job %s: %s; comparing again", job.job_id, exc)
                continue
            except Fenced as exc:
                log.warning("job %s: %s; another worker recorded it, dropping this result", job.job_id, exc)
                return JobOutcome("fenced", job.job_id, error=str(exc))
            except _AlreadyDecided as exc:
                return self._finish_offsets(key, expected, new,
                                            JobOutcome("skipped", job.job_id, error=f"already {exc}"))
            except _TRANSIENT as exc:
                return JobOutcome("retry", job.job_id, error=str(exc))
            self._mirror_decision(job)
            seconds = time.perf_counter() - t0
            log.info("job %s: %s -> %s version %s in %.1fs", job.job_id, decision.reason, event.event, version,
                     seconds)
            return JobOutcome("done", job.job_id, event, version, seconds=seconds)
        return self._fail(job, key, expected, new, "the champion kept changing during the evaluation", t0)

    def _before_claim(self, rec: Any, key: TopicPartitionKey, expected: int | None,
                      job: RetrainJob) -> JobOutcome | None:
        """What ends a job before its claim: a model that is not configured (dead-lettered), or,
        with MLflow as the registry, a tracking server that does not answer (``retry``: the job
        waits unclaimed, no attempt used). None when it may start."""
        if job.model not in self.policies:
            return self._invalid(rec, key, expected, f"job {job.job_id}: unknown model {job.model!r}", job.model)
        if self.mirror is None:
            return None
        try:
            self.mirror.gateway.ping()
        except MlflowUnavailable as exc:
            log.warning("job %s waits: %s", job.job_id, exc)
            return JobOutcome("retry", None, error=str(exc))
        return None

    def _prepare_run(self, trained: TrainedChallenger) -> str | None:
        """The job's MLflow run, found by its tag or created (tags: what caused it, on which
        data, with which code; params), before the decision; None with the local backend.
        Raises :class:`MlflowUnavailable` (the job is retried: the decision waits) or another
        :class:`MlflowError` (a refusal: the job fails with it)."""
        if self.mirror is None:
            return None
        job = trained.job
        t = time.perf_counter()
        run_id = self.mirror.prepare_run(job.job_id, job.model, tags=job_run_tags(
            model=job.model, job_id=job.job_id, trigger=job.trigger, alert_ids=list(job.reason),
            data_window=trained.data_window, lib_versions=library_versions(type(trained.estimator).__module__),
            estimator=trained.estimator_name), params={"estimator": trained.estimator_name, **trained.params})
        trained.timings["mlflow_run_s"] = time.perf_counter() - t
        return run_id

    def _mirror_decision(self, job: RetrainJob) -> None:
        """Right after the decision: its MLflow version, tags and alias (never raises; what is
        not done stays pending for the mirror thread)."""
        if self.mirror is None:
            return
        t = time.perf_counter()
        report = self.mirror.sync([job.model])
        for line in report.lines():
            log.info("job %s: MLflow: %s", job.job_id, line)
        log.info("job %s: MLflow mirror pass in %.2fs%s", job.job_id, time.perf_counter() - t,
                 " (some left pending)" if report.pending else "")

    def _give_back_attempt(self, why: str, job_id: str | None = None) -> None:
        """An attempt a graceful stop (SIGTERM) or a store/disk error interrupted is not one of
        the job's attempts: rolling restarts and outages must not use up ``registry.max_attempts``.
        Only a death (SIGKILL, OOM) and a real failure count. At most
        ``registry.max_give_backs`` per job (``retrain_jobs.give_backs``), so a job that keeps
        meeting such errors still ends. Each claim is given back at most once (``job_id``:
        only if it is the claimed job). If the store refuses the give-back too, it is applied
        by this worker's next claim of the same job (lost if the worker dies first: it then counts).
        """
        with self._claim_lock:
            if self._claimed is None or job_id not in (None, self._claimed):
                return
            job_id, self._claimed = self._claimed, None
        c = retrain_jobs.c
        try:
            with self.store.transaction() as conn:
                given = conn.execute(retrain_jobs.update().where(
                    c.job_id == job_id, c.status == "running", c.worker == self.worker_id, c.attempts > 0,
                    c.give_backs < self.reg.max_give_backs,
                ).values(attempts=c.attempts - 1, give_backs=c.give_backs + 1)).rowcount
        except Exception as exc:  # noqa: BLE001 - the store is away: give it back with the next claim
            self._owed = job_id
            log.warning("job %s: the interrupted attempt (%s) could not be given back yet (%s: %s); the next claim "
                        "will", job_id, why, type(exc).__name__, exc)
            return
        if given:
            log.info("job %s: attempt given back (%s)", job_id, why)
        else:
            log.warning("job %s: attempt interrupted (%s) counts: registry.max_give_backs (%d) reached, or the job "
                        "was decided meanwhile", job_id, why, self.reg.max_give_backs)

    def _begin(self, job: RetrainJob) -> tuple[Any, bool, bool]:
        """Step 1: read the job's row and claim it unless it is decided or out of attempts.

        Returns ``(row, decided, exhausted)``. A give-back the store refused earlier
        (``self._owed``) is applied here, in the claim's transaction."""
        self._claimed = None
        c = retrain_jobs.c
        with self.store.transaction() as conn:
            self.store.lock_models(conn, [job.model])
            row = conn.execute(sa.select(c.status, c.attempts, c.give_backs).where(c.job_id == job.job_id)).first()
            decided = row is not None and row.status in ("done", "failed", "skipped")
            owed = (self._owed == job.job_id and row is not None and not decided and row.attempts > 0
                    and row.give_backs < self.reg.max_give_backs)
            exhausted = row is not None and not decided and row.attempts - owed >= self.reg.max_attempts
            if not decided and not exhausted:
                self._claim(conn, job, row is None, now_ms(), owed=owed)
        self._owed = None
        if not decided and not exhausted:
            self._claimed = job.job_id
        return row, decided, exhausted

    def _claim(self, conn: Any, job: RetrainJob, missing: bool, now: int, *, owed: bool = False) -> None:
        if missing:   # published by something other than the scheduler: adopt it
            from retrain.events import encode, parse_rfc3339

            try:
                requested = parse_rfc3339(job.requested_at)
            except ValueError:
                requested = now
            conn.execute(retrain_jobs.insert().values(
                job_id=job.job_id, model=job.model, trigger=job.trigger, reason=list(job.reason), status="running",
                requested_at=requested, started_at=now, attempts=1, worker=self.worker_id, payload=encode(job)))
        else:
            c = retrain_jobs.c    # an owed give-back: this start replaces the interrupted one
            conn.execute(retrain_jobs.update().where(c.job_id == job.job_id).values(
                status="running", started_at=now, attempts=c.attempts + 1 - int(owed),
                give_backs=c.give_backs + int(owed), worker=self.worker_id))

    def _finish_offsets(self, key: TopicPartitionKey, expected: int | None, new: dict[TopicPartitionKey, int],
                        outcome: JobOutcome, extra: Callable[[Any], None] | None = None) -> JobOutcome:
        try:
            with self.store.transaction() as conn:
                advance_offsets(self.store, conn, self.group, {key: expected}, new, now_ms())
                if extra is not None:
                    extra(conn)
        except Fenced as exc:
            return JobOutcome("fenced", outcome.job_id, error=str(exc))
        except _TRANSIENT as exc:
            return JobOutcome("retry", outcome.job_id, error=str(exc))
        return outcome

    def _fail(self, job: RetrainJob, key: TopicPartitionKey, expected: int | None,
              new: dict[TopicPartitionKey, int], error: str, t0: float) -> JobOutcome:
        def mark(conn: Any) -> None:
            conn.execute(retrain_jobs.update().where(retrain_jobs.c.job_id == job.job_id,
                                                     retrain_jobs.c.status.in_(("queued", "running"))).values(
                status="failed", finished_at=now_ms(), error=error[:4000]))

        return self._finish_offsets(key, expected, new,
                                    JobOutcome("failed", job.job_id, error=error, seconds=time.perf_counter() - t0),
                                    mark)

    def _invalid(self, rec: Any, key: TopicPartitionKey, expected: int | None, error: str,
                 model: str | None = None) -> JobOutcome:
        log.warning("%s (partition %d offset %d): sent to the dead-letter topic", error, rec.partition, rec.offset)
        self.stats.invalid += 1
        now = now_ms()

        def dlq(conn: Any) -> None:
            self.store.add_outbox(conn, self.cfg.topics.dlq, [(
                model.encode() if model else None,
                dead_letter(error, rec.topic, rec.partition, rec.offset, rec.value or b"", now, model))], now)

        return self._finish_offsets(key, expected, {key: rec.offset + 1}, JobOutcome("skipped", error=error), dlq)


class _AlreadyDecided(RuntimeError):
    pass


def _warm_imports(mlflow: bool = False) -> None:
    """Import the heavy libraries up front, not inside the first job (seconds on a busy host);
    ``mlflow``: the MLflow client too (``registry.backend: mlflow``)."""
    if mlflow:
        from retrain.mlflow_client import import_mlflow

        import_mlflow()
    import scipy.stats  # noqa: F401 - warmed up, not used here
    import sklearn.compose
    import sklearn.ensemble
    import sklearn.impute
    import sklearn.pipeline
    import sklearn.preprocessing  # noqa: F401 - warmed up, not used here
    import skops.io  # noqa: F401 - warmed up, not used here
