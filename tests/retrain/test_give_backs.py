"""Only real attempts count: a store error or an OSError after a job is claimed gives its
attempt back (as a graceful stop does), up to ``registry.max_give_backs`` per job, stored with
the job so that a restart does not reset it."""
from __future__ import annotations

import errno

import pytest
import sqlalchemy as sa
import sqlalchemy.exc

import retrain.worker as worker_module
from driftloop.core.config import ConfigError
from driftloop.core.store import Store
from driftloop.core.tables import retrain_jobs
from retrain.worker import RetrainWorker
from tests.retrain.helpers import config_data, job_row, write_config
from tests.retrain.test_worker_unit import alert_job, champion_file, env, rec  # noqa: F401  (fixtures)

STORE_DOWN = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
DISK_FULL = OSError(errno.ENOSPC, "No space left on device")


def failing_training(monkeypatch, error: BaseException, times: int | None = None) -> list[int]:
    """``train_challenger`` raises ``error`` (``times`` times, else always); returns the call log."""
    real = worker_module.train_challenger
    calls: list[int] = []

    def train(*a, **kw):
        calls.append(1)
        if times is None or len(calls) <= times:
            raise error
        return real(*a, **kw)

    monkeypatch.setattr(worker_module, "train_challenger", train)
    return calls


@pytest.mark.parametrize("error", [STORE_DOWN, DISK_FULL], ids=["store", "oserror"])
def test_a_transient_error_after_the_claim_gives_the_attempt_back(env, monkeypatch, error):
    cfg, store, reg, sched, worker = env()
    job = alert_job(store, sched)
    failing_training(monkeypatch, error, times=3)
    for i in range(3):
        out = worker.handle(rec(job, 0), None)
        assert out.status == "retry", out
        row = job_row(store, job.job_id)
        assert (row.status, row.attempts, row.give_backs) == ("running", 0, i + 1)
    out = worker.handle(rec(job, 0), None)
    assert out.status == "done", out
    assert job_row(store, job.job_id).attempts == 1
    store.dispose()


def _registry(worker: RetrainWorker, **keys) -> None:
    for k, v in keys.items():
        setattr(worker.reg, k, v)


def test_the_give_backs_are_capped_then_attempts_count(env, monkeypatch):
    cfg, store, reg, sched, worker = env()
    _registry(worker, max_attempts=2, max_give_backs=3)
    job = alert_job(store, sched)
    failing_training(monkeypatch, STORE_DOWN)
    outcomes = [worker.handle(rec(job, 0), None).status for _ in range(6)]
    # 3 given back, then 2 attempts that count, then the job is given up
    assert outcomes == ["retry"] * 5 + ["failed"]
    row = job_row(store, job.job_id)
    assert (row.status, row.attempts, row.give_backs) == ("failed", 2, 3)
    assert "registry.max_give_backs" in row.error
    store.dispose()


def test_the_cap_survives_a_restart(env, monkeypatch):
    cfg, store, reg, sched, worker = env()
    _registry(worker, max_give_backs=2)
    job = alert_job(store, sched)
    failing_training(monkeypatch, DISK_FULL)
    for _ in range(2):
        assert worker.handle(rec(job, 0), None).status == "retry"
    again = RetrainWorker(cfg, store, worker_id="w2")      # a restart: a new process, the same store
    _registry(again, max_give_backs=2)
    assert again.handle(rec(job, 0), None).status == "retry"
    row = job_row(store, job.job_id)
    assert (row.attempts, row.give_backs) == (1, 2)
    store.dispose()


def test_a_give_back_the_store_refused_is_applied_at_the_next_claim(env, monkeypatch):
    cfg, store, reg, sched, worker = env()
    job = alert_job(store, sched)
    real = store.transaction
    down = {"next": 0}

    def transaction():
        if down["next"]:
            down["next"] -= 1
            raise STORE_DOWN
        return real()

    monkeypatch.setattr(store, "transaction", transaction)
    real_train = worker_module.train_challenger
    calls = []

    def train(*a, **kw):
        calls.append(1)
        if len(calls) == 1:
            down["next"] = 1          # the store goes away: the give-back after this error fails too
            raise STORE_DOWN
        return real_train(*a, **kw)

    monkeypatch.setattr(worker_module, "train_challenger", train)
    assert worker.handle(rec(job, 0), None).status == "retry"
    assert job_row(store, job.job_id).attempts == 1          # the store refused the give-back
    out = worker.handle(rec(job, 0), None)
    assert out.status == "done", out
    row = job_row(store, job.job_id)
    assert (row.attempts, row.give_backs) == (1, 1)           # given back with the next claim
    store.dispose()


def test_an_unexpected_error_still_counts(env, monkeypatch):
    cfg, store, reg, sched, worker = env()
    job = alert_job(store, sched)
    failing_training(monkeypatch, ZeroDivisionError("a bug"))
    assert worker.handle(rec(job, 0), None).status == "failed"
    row = job_row(store, job.job_id)
    assert (row.attempts, row.give_backs) == (1, 0)
    store.dispose()


@pytest.mark.parametrize("bad", [-1, "many", 1.5])
def test_max_give_backs_is_validated(tmp_path, bad):
    data = config_data(tmp_path)
    data["registry"]["max_give_backs"] = bad
    with pytest.raises(ConfigError, match=r"registry\.max_give_backs"):
        write_config(tmp_path, data)


def _old_schema_database(url: str) -> None:
    """A store written by the previous release: ``retrain_jobs`` without ``give_backs``, one job."""
    old = sa.MetaData()
    table = sa.Table("retrain_jobs", old, *[c._copy() for c in retrain_jobs.columns if c.name != "give_backs"])
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        old.create_all(conn)
        conn.execute(table.insert().values(job_id="old-job", model="agr", trigger="manual", reason=[],
                                           status="queued", requested_at=1, attempts=1, payload=b"{}"))
    engine.dispose()


def _migrates(url: str) -> None:
    from driftloop.core.tables import retrain_jobs as jobs

    _old_schema_database(url.replace("postgresql://", "postgresql+psycopg://", 1))
    store = Store(url)
    try:
        store.create_schema()
        store.create_schema()            # idempotent
        with store.engine.connect() as c:
            row = c.execute(sa.select(jobs).where(jobs.c.job_id == "old-job")).one()
        assert (row.attempts, row.give_backs) == (1, 0)
    finally:
        store.dispose()


def test_an_existing_sqlite_store_gains_the_column(tmp_path):
    _migrates(f"sqlite:///{tmp_path}/old.db")


@pytest.mark.postgres
def test_an_existing_postgres_store_gains_the_column(postgres_url):
    _migrates(postgres_url)
