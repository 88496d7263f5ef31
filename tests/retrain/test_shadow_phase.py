"""The shadow phase (issue 14 item 4): the policy's ``retrain.shadow``, the registry's ``shadow``
status and ``shadow_started`` event, the worker putting a challenger that passes the gate in
shadow, and :mod:`retrain.shadow` deciding on the live paired comparison (no broker)."""
from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
import skops.io as sio
import sqlalchemy as sa

from detectors.paired import ShadowComparison
from driftloop.app.cli import main as cli
from driftloop.core.config import ConfigError
from driftloop.core.config.retrain import RetrainPolicy, ShadowPolicy
from driftloop.core.store import Store, outbox
from driftloop.core.tables import VERSION_STATUSES, champion_history
from retrain.events import decode_model_event, encode, switch_target
from retrain.policy import EnqueueRefused, RetrainScheduler
from retrain.registry import Registry, RegistryError
from retrain.shadow import expire_shadows, on_shadow_report, shadow_policy, shadow_report_hook
from retrain.worker import RetrainWorker
from tests.retrain.helpers import (
    Alert,
    agrawal,
    config_data,
    fitted_model,
    frame,
    insert_examples,
    job_row,
    write_config,
)

NOW = int(time.time() * 1000)
HOUR = 3_600_000
PRE = agrawal(1500, function=0, seed=1)
POST = agrawal(2400, function=2, seed=2)
SHADOW = {"min_labels": 300, "max_hours": 2}


def events(store):
    with store.engine.connect() as c:
        vals = c.execute(sa.select(outbox.c.value).where(outbox.c.topic.like("%.models")).order_by(outbox.c.id))
        return [decode_model_event(v) for (v,) in vals]


def rec(job, offset):
    """A job's record as the worker's consumer hands it over."""
    return SimpleNamespace(topic="retrain", partition=0, offset=offset, value=encode(job))


def report(n, *, shadow="2", served="1", shadow_acc=0.9, served_acc=0.8, seed=0):
    """A real paired comparison of ``n`` labelled requests (the monitor's report)."""
    rng = np.random.default_rng(seed)
    served_ok = rng.random(n) < served_acc
    shadow_ok = rng.random(n) < shadow_acc
    return ShadowComparison(served, shadow).update(served_ok, shadow_ok).report()


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("shadow-models")
    out = {}
    for name, rows in (("pre", PRE), ("post", POST)):
        out[name] = d / f"{name}.skops"
        sio.dump(fitted_model(rows), out[name])
    return out


@pytest.fixture
def reg_env(tmp_path, model_files):
    """A registry with agr v1 (champion), v2 and v3 (registered); ``retrain.shadow`` = SHADOW."""
    path, cfg = write_config(tmp_path, config_data(tmp_path, retrain={"shadow": SHADOW}))
    store = Store.from_config(cfg.store)
    store.create_schema()
    reg = Registry(cfg, store)
    for name, rows, promote in (("pre", PRE, True), ("post", POST, False), ("post", POST, False)):
        f = model_files[name]
        reg.register("agr", f, frame(rows[:600]), actor="test", trust=sio.get_untrusted_types(file=f), promote=promote)
    yield path, cfg, store, reg
    store.dispose()


def decide(store, cfg, reg, rep, now):
    with store.transaction() as conn:
        return on_shadow_report(conn, cfg, reg, "agr", rep, now)


# -- policy ------------------------------------------------------------------------------------
def test_policy_shadow_section_is_validated_naming_the_key():
    where = "models.agr.retrain"
    assert RetrainPolicy.from_dict({}, task="classification", where=where).shadow is None
    p = RetrainPolicy.from_dict({"shadow": {"min_labels": 50, "max_hours": 0.5}}, task="classification", where=where)
    assert p.shadow == ShadowPolicy(min_labels=50, max_hours=0.5) and p.shadow.max_ms == 1_800_000
    assert RetrainPolicy.from_dict({"shadow": {}}, task="regression", where=where).shadow == ShadowPolicy()
    bad = [({"min_labels": 0}, "models.agr.retrain.shadow.min_labels: must be >= 1"),
           ({"max_hours": 0}, "models.agr.retrain.shadow.max_hours: must be > 0"),
           ({"max_hours": -1.5}, "models.agr.retrain.shadow.max_hours: must be > 0"),
           ({"max_hours": float("nan")}, "models.agr.retrain.shadow.max_hours: must be > 0"),
           ({"min_labels": "many"}, "models.agr.retrain.shadow.min_labels"),
           ({"min_label": 10}, "models.agr.retrain.shadow: Object contains unknown field `min_label`")]
    for section, message in bad:
        with pytest.raises(ConfigError) as err:
            RetrainPolicy.from_dict({"shadow": section}, task="classification", where=where)
        assert str(err.value).startswith(message), section


# -- registry ------------------------------------------------------------------------------------
def test_start_shadow_sets_the_status_and_publishes_shadow_started(reg_env, capsys):
    path, cfg, store, reg = reg_env
    assert "shadow" in VERSION_STATUSES
    with pytest.raises(RegistryError, match="is the champion"):
        reg.start_shadow("agr", 1, actor="t")
    ev = reg.start_shadow("agr", 2, actor="alice", reason="try v2 live", now=NOW)
    assert (ev.event, ev.version, ev.champion_version, ev.previous_champion) == ("shadow_started", "2", "1", "1")
    assert switch_target(ev) is None                           # the champion stays
    assert reg.get("agr", 2).status == "shadow" and reg.champion("agr").version == 1
    assert [v.version for v in reg.shadows("agr")] == [2]
    assert events(store)[-1] == ev and reg.history("agr")[-1].actor == "alice"
    with pytest.raises(RegistryError, match="already in shadow"):
        reg.start_shadow("agr", 2, actor="t")
    with pytest.raises(RegistryError, match="version 2 is in shadow already"):
        reg.start_shadow("agr", 3, actor="t")
    assert reg.get("agr", 3).status == "registered"
    # the CLI replaces it: v2 rejected as superseded, v3 in shadow
    assert cli(["models", "shadow", "-c", str(path), "agr", "3", "--replace", "--no-publish"]) == 0
    assert "version 3 in shadow beside champion 1" in capsys.readouterr().out
    assert reg.get("agr", 2).status == "rejected" and reg.get("agr", 3).status == "shadow"
    assert [(e.event, e.version) for e in events(store)[-2:]] == [("rejected", "2"), ("shadow_started", "3")]
    assert "superseded by version 3" in events(store)[-2].note
    assert cli(["models", "shadow", "-c", str(path), "agr", "1", "--no-publish"]) == 1


def test_a_shadow_needs_a_champion(tmp_path, model_files):
    _, cfg = write_config(tmp_path, config_data(tmp_path))
    store = Store.from_config(cfg.store)
    store.create_schema()
    reg = Registry(cfg, store)
    f = model_files["pre"]
    reg.register("agr", f, frame(PRE[:600]), actor="t", trust=sio.get_untrusted_types(file=f))
    with pytest.raises(RegistryError, match="no champion"):
        reg.start_shadow("agr", 1, actor="t")
    assert reg.get("agr", 1).status == "registered"
    store.dispose()


# -- the decision on live traffic ------------------------------------------------------------------
def test_better_on_live_traffic_is_promoted_with_its_live_p_value(reg_env):
    _, cfg, store, reg = reg_env
    reg.start_shadow("agr", 2, actor="t", now=NOW, alert_ids=["a1"], job_id="job-7", trigger="alert")
    early = report(200)                                    # below min_labels (300): reported, not decided
    assert decide(store, cfg, reg, early, NOW + 1000) is None
    ev = events(store)[-1]
    assert (ev.event, ev.version, ev.champion_version) == ("shadow_report", "2", "1")
    assert ev.metrics == early and switch_target(ev) is None
    assert reg.get("agr", 2).status == "shadow"

    live = report(600)
    assert live["better"] and live["p_value"] < 0.05
    assert decide(store, cfg, reg, live, NOW + 2000) == "promoted"
    rep, promoted = events(store)[-2:]
    assert rep.event == "shadow_report" and rep.metrics["n"] == 600
    assert (promoted.event, promoted.version, promoted.champion_version, promoted.previous_champion) == (
        "promoted", "2", "2", "1")
    assert promoted.metrics["phase"] == "shadow" and promoted.metrics["live"] == live
    assert promoted.metrics["live"]["p_value"] == live["p_value"] == promoted.decision["p_value"]
    assert (promoted.decision["test"], promoted.decision["n"]) == ("mcnemar", 600)
    assert promoted.decision["shadow_metric"] == live["shadow_metric"]
    assert promoted.decision["served_metric"] == live["served_metric"]
    assert promoted.job_id == "job-7" and promoted.reason == ["a1"]
    assert "promoted after the shadow phase" in promoted.note
    # the monitor switches exactly as for any promotion
    sw = switch_target(promoted)
    assert (sw.model, sw.version, sw.event, sw.resolves) == ("agr", "2", "promoted", ["a1"])
    assert reg.champion("agr").version == 2 and reg.get("agr", 1).status == "archived"
    assert reg.shadows("agr") == []


def test_not_better_on_live_traffic_is_rejected_with_the_evidence(reg_env):
    _, cfg, store, reg = reg_env
    reg.start_shadow("agr", 2, actor="t", now=NOW)
    live = report(400, shadow_acc=0.8, served_acc=0.8, seed=3)
    assert not live["better"]
    assert decide(store, cfg, reg, live, NOW + 1000) == "rejected"
    ev = events(store)[-1]
    assert (ev.event, ev.version, ev.champion_version) == ("rejected", "2", "1")
    assert ev.metrics["live"] == live and ev.decision["p_value"] == live["p_value"]
    assert ev.decision["promote"] is False and ev.decision["n"] == 400
    assert "rejected after the shadow phase" in ev.note and switch_target(ev) is None
    assert reg.get("agr", 2).status == "rejected" and reg.champion("agr").version == 1
    # significantly worse is rejected too
    reg.start_shadow("agr", 3, actor="t", now=NOW)
    worse = report(400, shadow="3", shadow_acc=0.6, served_acc=0.85)
    assert worse["worse"]
    assert decide(store, cfg, reg, worse, NOW + 1000) == "rejected"
    assert reg.get("agr", 3).status == "rejected" and reg.champion("agr").version == 1


def test_max_hours_rejects_a_shadow_with_too_few_labels(reg_env):
    _, cfg, store, reg = reg_env
    reg.start_shadow("agr", 2, actor="t", now=NOW)
    few = report(120)
    assert decide(store, cfg, reg, few, NOW + 2 * HOUR - 1) is None       # max_hours 2 not reached
    assert decide(store, cfg, reg, report(150), NOW + 2 * HOUR) == "rejected"
    ev = events(store)[-1]
    assert ev.event == "rejected" and "max_hours (2) reached with 150 labelled requests" in ev.note
    assert ev.decision["expired"] is True and ev.metrics["live"]["n"] == 150
    assert reg.get("agr", 2).status == "rejected"


def test_expire_shadows_without_any_report(reg_env):
    _, cfg, store, reg = reg_env
    reg.start_shadow("agr", 2, actor="t", now=NOW)
    with store.transaction() as conn:
        assert expire_shadows(conn, cfg, reg, NOW + HOUR) == []
    assert reg.get("agr", 2).status == "shadow"
    with store.transaction() as conn:
        (ev,) = expire_shadows(conn, cfg, reg, NOW + 2 * HOUR + 1)
    assert (ev.event, ev.version, ev.champion_version) == ("rejected", "2", "1")
    assert "max_hours (2) reached with 0 labelled requests" in ev.note and ev.metrics["live"] is None
    assert events(store)[-1] == ev and reg.get("agr", 2).status == "rejected"
    with store.transaction() as conn:
        assert expire_shadows(conn, cfg, reg, NOW + 3 * HOUR) == []


def test_reports_are_idempotent_and_decided_once(reg_env):
    _, cfg, store, reg = reg_env
    reg.start_shadow("agr", 2, actor="t", now=NOW)
    hook = shadow_report_hook(cfg, reg)
    early = report(100)
    for _ in range(2):                                    # a redelivered batch, a second monitor
        with store.transaction() as conn:
            hook(conn, "agr", early, NOW + 10)
    assert [e.event for e in events(store)].count("shadow_report") == 1
    live = report(500)
    assert decide(store, cfg, reg, live, NOW + 20) == "promoted"
    n_events = len(events(store))
    assert decide(store, cfg, reg, live, NOW + 30) is None           # the same batch again
    assert decide(store, cfg, reg, report(700), NOW + 40) is None    # a later one
    assert decide(store, cfg, reg, report(500, shadow_acc=0.5), NOW + 50) is None
    assert len(events(store)) == n_events and reg.champion("agr").version == 2
    with store.engine.connect() as c:
        promoted = c.execute(sa.select(sa.func.count()).where(champion_history.c.event == "promoted",
                                                              champion_history.c.version == 2)).scalar()
    assert promoted == 1


def test_a_report_for_a_version_not_in_shadow_is_ignored(reg_env):
    _, cfg, store, reg = reg_env
    before = len(events(store))
    assert decide(store, cfg, reg, report(500, shadow="2"), NOW) is None        # registered, never shadow
    assert decide(store, cfg, reg, report(500, shadow="1"), NOW) is None        # the champion
    assert decide(store, cfg, reg, report(500, shadow="9"), NOW) is None        # unknown
    assert decide(store, cfg, reg, report(500, shadow="next"), NOW) is None     # not a version
    assert len(events(store)) == before
    assert (reg.get("agr", 2).status, reg.champion("agr").version) == ("registered", 1)


def test_a_comparison_with_another_served_version_does_not_decide(reg_env):
    _, cfg, store, reg = reg_env
    reg.start_shadow("agr", 3, actor="t", now=NOW)
    assert decide(store, cfg, reg, report(600, shadow="3", served="2"), NOW + 1) is None
    assert events(store)[-1].event == "shadow_report" and reg.get("agr", 3).status == "shadow"
    assert decide(store, cfg, reg, report(600, shadow="v3", served="v1"), NOW + 2) == "promoted"


def test_manual_shadow_without_a_policy_uses_the_defaults(tmp_path):
    _, cfg = write_config(tmp_path, config_data(tmp_path))
    assert shadow_policy(cfg, "agr") == ShadowPolicy()
    assert shadow_policy(cfg, "nope") == ShadowPolicy()


# -- the worker ----------------------------------------------------------------------------------
@pytest.fixture
def worker_env(tmp_path, model_files):
    def make(**retrain):
        _, cfg = write_config(tmp_path, config_data(tmp_path, retrain=retrain))
        store = Store.from_config(cfg.store)
        store.create_schema()
        reg = Registry(cfg, store)
        f = model_files["pre"]
        reg.register("agr", f, frame(PRE), actor="test", trust=sio.get_untrusted_types(file=f), promote=True)
        insert_examples(store, "agr", POST, start_ts=NOW - HOUR, joined_at=NOW - 1000)
        return cfg, store, reg, RetrainScheduler(cfg, store), RetrainWorker(cfg, store, worker_id="w1")
    return make


def test_worker_puts_a_challenger_that_passes_the_gate_in_shadow(worker_env):
    cfg, store, reg, sched, worker = worker_env(shadow=SHADOW)
    with store.transaction() as conn:
        (job,) = sched.on_alerts(conn, "agr", [Alert("a1")], NOW)
    out = worker.handle(rec(job, 0), None)
    assert out.status == "done" and out.version == 2
    ev = out.event
    assert (ev.event, ev.version, ev.champion_version, ev.job_id, ev.reason) == (
        "shadow_started", "2", "1", job.job_id, ["a1"])
    assert ev.metrics["challenger"]["accuracy"] > ev.metrics["champion"]["accuracy"] + 0.1
    assert ev.decision["test"] == "mcnemar" and ev.decision["p_value"] < 1e-6 and switch_target(ev) is None
    assert reg.get("agr", 2).status == "shadow" and reg.champion("agr").version == 1
    assert job_row(store, job.job_id).decision == "shadow_started"
    worker._count(out)
    assert (worker.stats.shadowed, worker.stats.promoted, worker.stats.rejected) == (1, 0, 0)

    # while it runs, alerts, the schedule and a plain manual job enqueue nothing: the live
    # comparison decides first
    with store.transaction() as conn:
        assert sched.on_alerts(conn, "agr", [Alert("a2")], NOW + HOUR) == []
    assert sched.cron_tick("agr", now=NOW + HOUR) is None
    with pytest.raises(EnqueueRefused, match="version 2 is in shadow"):
        sched.enqueue_manual("agr", now=NOW + 1)
    # a second challenger (forced) that passes the gate supersedes the running shadow
    job2 = sched.enqueue_manual("agr", now=NOW + 1, force=True)
    out2 = worker.handle(rec(job2, 1), 1)
    assert out2.event.event == "shadow_started" and out2.version == 3
    assert reg.get("agr", 2).status == "rejected" and [v.version for v in reg.shadows("agr")] == [3]

    # live evidence promotes it, with the offline gate's numbers beside the live ones
    live = report(400, shadow="3")
    assert decide(store, cfg, reg, live, NOW + 10) == "promoted"
    promoted = events(store)[-1]
    assert promoted.metrics["live"]["p_value"] == live["p_value"]
    assert promoted.metrics["offline"]["holdout_rows"] == 600
    assert promoted.metrics["offline_decision"]["test"] == "mcnemar"
    assert promoted.job_id == job2.job_id and switch_target(promoted).version == "3"


def test_worker_without_shadow_policy_promotes_and_a_failed_gate_is_rejected(worker_env):
    cfg, store, reg, sched, worker = worker_env(shadow=SHADOW, min_delta=0.9)
    job = sched.enqueue_manual("agr", now=NOW)
    out = worker.handle(rec(job, 0), None)
    assert out.event.event == "rejected" and reg.get("agr", 2).status == "rejected" and reg.shadows() == []
    cfg, store, reg, sched, worker = worker_env()
    job = sched.enqueue_manual("agr", now=NOW)
    out = worker.handle(rec(job, 0), None)
    assert out.event.event == "promoted" and reg.champion("agr").version == 2


# -- PostgreSQL: two monitors deciding at once --------------------------------------------------
@pytest.mark.postgres
def test_two_monitors_decide_a_shadow_once_on_postgres(postgres_url, tmp_path, model_files):
    import threading

    _, cfg = write_config(tmp_path, config_data(tmp_path, store_url=postgres_url, retrain={"shadow": SHADOW}))
    store = Store.from_config(cfg.store)
    store.create_schema()
    try:
        reg = Registry(cfg, store)
        for name, rows, promote in (("pre", PRE, True), ("post", POST, False)):
            f = model_files[name]
            reg.register("agr", f, frame(rows[:600]), actor="t", trust=sio.get_untrusted_types(file=f),
                         promote=promote)
        reg.start_shadow("agr", 2, actor="t", now=NOW)
        live = report(500)
        second: list[str | None] = []
        with store.transaction() as conn:
            assert on_shadow_report(conn, cfg, reg, "agr", live, NOW + 1) == "promoted"
            # another monitor's batch with the same report waits for the model's lock ...
            t = threading.Thread(target=lambda: second.append(decide(store, cfg, reg, live, NOW + 2)))
            t.start()
            t.join(1.0)
            assert t.is_alive() and second == []
        t.join(30)                          # ... and then finds the version decided
        assert second == [None]
        assert [e.event for e in events(store)].count("promoted") == 2        # v1 at registration, v2 once
        assert [e.event for e in events(store)].count("shadow_report") == 1
        assert reg.champion("agr").version == 2
    finally:
        store.dispose()


# -- the monitor service's wiring ------------------------------------------------------------------
def test_the_monitor_service_wires_the_live_gate_and_the_expiry(tmp_path):
    from tests.retrain.helpers import service_following_v1

    data = config_data(tmp_path, retrain={"shadow": {"min_labels": 300, "max_hours": 0.0001}})
    service, reg, store = service_following_v1(tmp_path, data)
    try:
        reg.start_shadow("agr", 2, actor="t")
        with store.transaction() as conn:                     # as the analyser calls it in a batch
            service.analyser.on_shadow_report(conn, "agr", report(100), NOW)
        assert events(store)[-1].event == "shadow_report" and reg.get("agr", 2).status == "shadow"
        time.sleep(0.5)                                          # past max_hours (0.36 s)
        (ev,) = service.expire_shadows()
        assert (ev.event, ev.version) == ("rejected", "2") and "max_hours" in ev.note
        assert reg.get("agr", 2).status == "rejected" and reg.champion("agr").version == 1
    finally:
        store.dispose()
