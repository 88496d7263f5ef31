"""The retrain policy: which alerts enqueue a job, in flight, cooldown, enough data, schedule, by hand."""
from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from driftloop.core.store import Store, outbox
from driftloop.core.tables import retrain_jobs
from retrain.events import decode_job
from retrain.policy import EnqueueRefused, RetrainScheduler
from tests.retrain.helpers import Alert, agrawal, config_data, insert_examples, write_config

NOW = int(time.time() * 1000)


@pytest.fixture
def env(tmp_path):
    def make(**retrain):
        _, cfg = write_config(tmp_path, config_data(tmp_path, retrain=retrain))
        store = Store.from_config(cfg.store)
        store.create_schema()
        insert_examples(store, "agr", agrawal(800, 0, 1), start_ts=NOW - 3_600_000, joined_at=NOW - 1000)
        return cfg, store, RetrainScheduler(cfg, store)
    return make


def _on_alerts(store, sched, alerts, now=NOW):
    with store.transaction() as conn:
        return sched.on_alerts(conn, "agr", alerts, now)


def _jobs(store):
    with store.engine.connect() as c:
        return list(c.execute(sa.select(retrain_jobs).order_by(retrain_jobs.c.requested_at)))


def _outbox(store, topic):
    with store.engine.connect() as c:
        return [r.value for r in c.execute(sa.select(outbox.c.value).where(outbox.c.topic == topic))]


def test_alert_filters_kind_severity_status(env):
    cfg, store, sched = env(on_kinds=["concept_drift", "performance"], min_severity="critical")
    assert _on_alerts(store, sched, [Alert("a", kind="data_drift")]) == []
    assert _on_alerts(store, sched, [Alert("a", severity="warning")]) == []
    assert _on_alerts(store, sched, [Alert("a", status="resolved")]) == []
    jobs = _on_alerts(store, sched, [{"alert_id": "b", "kind": "performance", "severity": "critical",
                                      "status": "firing"}, Alert("c"), Alert("d", kind="data_drift")])
    assert len(jobs) == 1 and jobs[0].reason == ["b", "c"] and jobs[0].trigger == "alert"
    job = jobs[0]
    assert (job.window.end_ts, job.window.as_of, job.window.end_ts - job.window.start_ts) == (NOW, NOW, 7 * 86_400_000)
    published = [decode_job(v) for v in _outbox(store, cfg.topics.retrain)]
    assert published == jobs
    row = _jobs(store)[0]
    assert (row.job_id, row.status, row.attempts, row.reason) == (job.job_id, "queued", 0, ["b", "c"])


def test_accepts_the_alerts_packages_alert_changes(env):
    from driftloop.alerts.lifecycle import AlertChange, AlertState

    cfg, store, sched = env()
    state = AlertState("fp1", "agr", "concept_drift", "adwin", None, status="firing", severity="critical")
    warn = AlertState("fp2", "agr", "concept_drift", "adwin", None, status="firing", severity="warning")
    assert _on_alerts(store, sched, [AlertChange("fp2", "firing", 1, "fired", NOW, warn)]) == []
    (job,) = _on_alerts(store, sched, [AlertChange("fp1", "firing", 1, "fired", NOW, state)])
    assert job.reason == ["fp1"]


def test_one_job_in_flight_and_cooldown(env):
    cfg, store, sched = env(cooldown_s=600)
    assert len(_on_alerts(store, sched, [Alert("a")])) == 1
    assert _on_alerts(store, sched, [Alert("b")], NOW + 1000) == []          # in flight
    with store.transaction() as conn:                                          # the worker finished it
        conn.execute(retrain_jobs.update().values(status="done", finished_at=NOW + 60_000))
    assert _on_alerts(store, sched, [Alert("b")], NOW + 120_000) == []        # cooldown from finish
    assert len(_on_alerts(store, sched, [Alert("b")], NOW + 661_000)) == 1
    # a job stuck in flight longer than job_timeout_s stops blocking
    late = NOW + 661_000 + int(sched.reg.job_timeout_s * 1000) + 1
    assert len(_on_alerts(store, sched, [Alert("c")], late)) == 1


def test_min_examples_counts_the_window(env):
    cfg, store, sched = env(min_examples=801)
    assert _on_alerts(store, sched, [Alert("a")]) == []
    cfg, store, sched = env(min_examples=800, window_s=1800)   # half of the rows are older than the window
    assert _on_alerts(store, sched, [Alert("a")]) == []
    cfg, store, sched = env(min_examples=800)
    assert len(_on_alerts(store, sched, [Alert("a")])) == 1


def test_manual_and_scheduled_jobs(env):
    cfg, store, sched = env(cooldown_s=10_000, schedule="*/5 * * * *")
    job = sched.enqueue_manual("agr", reason=["x"], requested_by="alice", now=NOW)
    assert job.trigger == "manual" and job.requested_by == "alice"
    with pytest.raises(EnqueueRefused, match=f"job {job.job_id} is already in flight"):
        sched.enqueue_manual("agr", now=NOW + 1)
    assert sched.enqueue_manual("agr", force=True, now=NOW + 2).job_id != job.job_id
    assert sched.cron_tick("agr", now=NOW + 3) is None                      # in flight
    with store.transaction() as conn:
        conn.execute(retrain_jobs.update().values(status="done", finished_at=NOW + 5))
    minute = NOW - NOW % 60_000 + 60_000
    tick = sched.cron_tick("agr", now=minute + 100)                          # no cooldown for the schedule
    assert tick is not None and tick.trigger == "schedule"
    with store.transaction() as conn:
        conn.execute(retrain_jobs.update().values(status="done", finished_at=NOW + 20))
    # a second monitor process firing the same cron tick: same job id, not enqueued twice
    assert sched.cron_tick("agr", now=minute + 900) is None
    assert sched.cron_tick("agr", now=minute + 60_000).job_id != tick.job_id
    with pytest.raises(EnqueueRefused, match="unknown model 'nope'"):
        sched.enqueue_manual("nope")
    assert len(_outbox(store, cfg.topics.retrain)) == len(_jobs(store))


def test_cron_runs_with_apscheduler(env):
    cfg, store, sched = env(schedule="* * * * *")
    scheduler = sched.start_cron()
    try:
        (job,) = scheduler.get_jobs()
        assert job.id == "retrain:agr" and job.next_run_time is not None
        sched._cron_job("agr")                 # what the trigger runs
    finally:
        sched.stop_cron()
    assert [j.trigger for j in _jobs(store)] == ["schedule"]
    cfg, store, sched = env()
    assert sched.start_cron() is None


def test_disabled_policy_never_enqueues(env):
    cfg, store, sched = env(enabled=False)
    assert _on_alerts(store, sched, [Alert("a")]) == []
    with pytest.raises(EnqueueRefused, match="disabled"):
        sched.enqueue_manual("agr")
