"""`driftloop replay` with the registry equals the live monitor over a promotion (issue 14, item 5).

The live side: a ``MonitorService`` on the broker whose registry holds ``agr`` v1 (champion) and
v2. v1 serves a stream it was not trained for (its concept and performance detectors fire),
its labels arrive; then v2 is promoted (the registry's own transaction, answering v1's firing
alerts, as the retraining worker records it), the test waits until the monitor follows v2, and
v2 serves: healthy first, then degraded (v2's detectors fire). Every event names no version: the
monitor stamps each with the champion it follows.

The replay side: the same events as JSON lines through ``driftloop replay`` (the CLI's entry
point), on the configuration of the live run. It reads the registry of the config's store
(read only) and applies the promotion before the first event whose ``ts`` is at or after the
decision's ``decided_at``. The events' timestamps say what happened live: each phase's
predictions, then its labels, then the promotion, then the next phase.

Zero timings (``group_window_s: 0``, ``hold_down_s: 0``, ``cooldown_s: 0``, no grouping): every
alert change is due at the detection or the switch that causes it, so no clock can change the
sequence (see ``tests/integration/test_replay.py``). Compared: each alert's id, and per alert the
sequence of (status, reason, version, kind, detector, feature, severity); not times.
"""
from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import skops.io as sio

from driftloop.app.replay import RegistryStep, plan_batches, read_registry, replay
from driftloop.core.store import Store
from driftloop.kafka.topics import create_topics
from tests.fault_helpers import wait_until
from tests.kafka_helpers import produce, read_topic
from tests.retrain.helpers import AGRAWAL, agrawal, config_data, fitted_model, frame, predict, write_config

DETECTORS = {"window_size": 400, "warmup": 0, "multivariate": False, "calibration_draws": 20,
             "performance_window_size": 400}
ZERO_TIMINGS = {"group_window_s": 0, "hold_down_s": 0, "cooldown_s": 0, "group_min": 1000}

T0 = int(time.time() * 1000) - 7_200_000          # the registry's versions are registered here
PHASE1 = T0 + 10_000                              # v1 serves
PROMOTED_AT = T0 + 1_000_000                      # v2 promoted (decided_at)
PHASE2 = PROMOTED_AT + 10_000                     # v2 serves
LABELS_AFTER = 500_000                            # a phase's labels come after all its predictions


# -- the switch rule, without a broker ---------------------------------------------------------
def test_switch_rule_cuts_the_batch_at_the_first_event_at_or_after_the_decision() -> None:
    times = [-1, 10, 20, 30, 30, 40, 50, 60]
    # a change at 30: the records at 30 and later are after it, even inside one batch of 100
    assert plan_batches(times, 100, [30]) == [(0, 3), (3, 8)]
    # between two events (35): the first event after it starts the batch
    assert plan_batches(times, 100, [35]) == [(0, 5), (5, 8)]
    # at or before the first event: no cut (replay starts on the registry as it was then and
    # passes only the later changes); unreadable records (ts -1, dead-lettered) sort first
    assert plan_batches(times[1:], 3, [5, 10]) == [(0, 3), (3, 6), (6, 7)]
    assert plan_batches(times, 3, [5]) == [(0, 1), (1, 4), (4, 7), (7, 8)]
    # after the last event: never applied within the stream
    assert plan_batches(times, 100, [61]) == [(0, 8)]
    # the size limit still holds, and several changes cut several times
    assert plan_batches(times, 2, [25, 45]) == [(0, 2), (2, 3), (3, 5), (5, 6), (6, 8)]


def test_history_rows_that_switch() -> None:
    promoted = RegistryStep(5, "agr", "champion_history",
                            {"event": "promoted", "champion_version": 2, "details": {"alert_ids": ["a", "b"]}})
    assert promoted.switch == ("2", ["a", "b"], "promoted: agr v2")   # the live switch's words
    back = RegistryStep(6, "agr", "champion_history", {"event": "rolled_back", "champion_version": 1, "details": {}})
    assert back.switch == ("1", [], "rolled_back: agr v1")
    for row in ({"event": "registered", "champion_version": 1, "details": {}},
                {"event": "rejected", "champion_version": 1, "details": {}}):
        assert RegistryStep(7, "agr", "champion_history", row).switch is None
    assert RegistryStep(8, "agr", "model_versions", {"version": 3}).switch is None


# -- the stream ------------------------------------------------------------------------------
def events(rows: list[Any], preds: np.ndarray, start: int, ts: int) -> tuple[list[dict], list[dict]]:
    """Unversioned prediction events 1 ms apart from ``ts``, and their labels ``LABELS_AFTER`` later."""
    p, lab = [], []
    for i, ((x, y), pr) in enumerate(zip(rows, preds)):
        eid = f"p{start + i}"
        p.append({"event_id": eid, "model": "agr", "ts": ts + i, "features": x, "prediction": str(pr)})
        lab.append({"event_id": eid, "model": "agr", "ts": ts + LABELS_AFTER + i, "label": y})
    return p, lab


def setup_registry(tmp_path: Path, bootstrap: str) -> tuple[Path, Any, Any, Any]:
    """Config (zero timings; ``reference``: v1's sample, as a registry-less replay would use), a
    store whose registry holds v1 (champion) and v2; returns (config path, cfg, v1, v2)."""
    from retrain.registry import Registry

    old_rows, new_rows = agrawal(3000, function=0, seed=1), agrawal(3000, function=2, seed=2)
    v1, v2 = fitted_model(old_rows), fitted_model(new_rows)
    ref1 = frame(old_rows).assign(prediction=v1.predict(frame(old_rows)[list(AGRAWAL)]))
    ref2 = frame(new_rows).assign(prediction=v2.predict(frame(new_rows)[list(AGRAWAL)]))
    ref1.to_csv(tmp_path / "v1-reference.csv", index=False)
    data = config_data(tmp_path, bootstrap=bootstrap)
    data["models"]["agr"]["detectors"] = DETECTORS
    data["models"]["agr"]["reference"] = str(tmp_path / "v1-reference.csv")
    data["alerts"] = ZERO_TIMINGS
    data["api"] = {"enabled": False}
    data["analysis"] = {"mode": "inline"}    # the live alert changes are tracked in this process
    path, cfg = write_config(tmp_path, data)
    store = Store.from_config(cfg.store)
    store.create_schema()
    registry = Registry(cfg, store)
    for version, est, ref in ((1, v1, ref1), (2, v2, ref2)):
        f = tmp_path / f"v{version}.skops"
        sio.dump(est, f)
        registry.register("agr", f, ref, actor="test", promote=version == 1, now=T0,
                          trust=sio.get_untrusted_types(file=f))
    store.dispose()
    return path, cfg, v1, v2


def promote_answering(cfg: Any, alert_ids: list[str]) -> None:
    """v2 becomes champion at ``PROMOTED_AT``, answering ``alert_ids`` (as the worker records it)."""
    from retrain.registry import Registry

    store = Store.from_config(cfg.store)
    registry = Registry(cfg, store)
    with store.transaction() as conn:
        previous = registry.make_champion(conn, "agr", 2)
        registry.record_event(conn, model="agr", event="promoted", version=2, champion_version=2,
                              previous_champion=previous, actor="test", reason="retrained", now=PROMOTED_AT,
                              alert_ids=alert_ids)
    store.dispose()



def wait_for_deliveries(store: Store, timeout_s: float = 60) -> None:
    import sqlalchemy as sa

    from driftloop.alerts import tables
    q = sa.select(sa.func.count()).select_from(tables.alert_deliveries).where(
        tables.alert_deliveries.c.status != "sent")
    wait_until(lambda: _count(store, q) == 0, timeout_s, "alert deliveries sent")


def _count(store: Store, q: Any) -> int:
    with store.engine.connect() as c:
        return int(c.execute(q).scalar() or 0)


def key(a: dict[str, Any]) -> tuple[Any, ...]:
    reason = (a["evidence"].get("resolution") or {}).get("reason") if a["status"] == "resolved" else None
    return (a["alert_id"], a["status"], reason, a["model_version"], a["kind"], a["detector"], a["feature"],
            a["severity"])


def per_alert(alerts: list[dict[str, Any]]) -> tuple[list[Any], dict[str, list[Any]]]:
    """Every change, sorted; and each alert's changes in their order (between alerts the order
    can differ: the live consumer's batches are cut by poll timing, the replay's by size)."""
    return sorted(key(a) for a in alerts), {a["alert_id"]: [key(b) for b in alerts if b["alert_id"] == a["alert_id"]]
                                            for a in alerts}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.kafka
def test_replay_over_a_promotion_equals_live(kafka_bootstrap: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from driftloop.app.cli import main
    from driftloop.app.service import MonitorService

    path, cfg, v1, v2 = setup_registry(tmp_path, kafka_bootstrap)
    create_topics(cfg)
    served_by_v1 = agrawal(1200, function=2, seed=3)      # v1 was not trained for this: it pages
    healthy, degraded = agrawal(1200, function=2, seed=4), agrawal(2400, function=4, seed=5)
    p1, l1 = events(served_by_v1, predict(v1, served_by_v1), 0, PHASE1)
    p2, l2 = events(healthy + degraded, np.concatenate([predict(v2, healthy), predict(v2, degraded)]), 10_000,
                    PHASE2)

    firing: dict[str, str] = {}

    def track(conn: Any, model: str, changes: list[Any], now: int) -> None:
        for ch in changes:
            firing[ch.alert_id] = ch.status

    service = MonitorService(cfg, on_alert_changes=track)
    thread = threading.Thread(target=service.run, kwargs={"max_seconds": 400}, daemon=True)
    thread.start()
    store = Store.from_config(cfg.store)
    try:
        def publish(preds: list[dict], labels: list[dict], joined: int) -> None:
            produce(kafka_bootstrap, [(cfg.topics.predictions, b"agr", orjson.dumps(e)) for e in preds])
            wait_until(lambda: store.read_counters().get("agr", {}).get("predictions", 0) >= joined, 120,
                       f"{joined} predictions")
            produce(kafka_bootstrap, [(cfg.topics.labels, b"agr", orjson.dumps(e)) for e in labels])
            wait_until(lambda: store.read_counters().get("agr", {}).get("joined", 0) >= joined, 120,
                       f"{joined} joined")

        publish(p1, l1, len(p1))
        answered = sorted(a for a, s in firing.items() if s == "firing")
        assert answered, "v1 paged before the promotion"
        promote_answering(cfg, answered)
        wait_until(lambda: service.analyser.reference_version.get("agr") == "2", 60, "the monitor follows v2")
        publish(p2, l2, len(p1) + len(p2))
        wait_for_deliveries(store)
    finally:
        service.stop()
        thread.join(60)
        store.dispose()
    live = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap, cfg.topics.alerts)]
    (tmp_path / "p.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in p1 + p2))
    (tmp_path / "l.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in l1 + l2))

    # offline, through the CLI's entry point, on the same configuration: its store's registry
    db = Path(cfg.store.url.removeprefix("sqlite:///"))
    before = sha256(db)
    out = tmp_path / "alerts.jsonl"
    capsys.readouterr()
    assert main(["replay", "-c", str(path), "--predictions", str(tmp_path / "p.jsonl"),
                 "--labels", str(tmp_path / "l.jsonl"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "the registry of" in err and "promoted v2" in err and f"before event #{2 * len(p1) + 1:,}" in err, err
    assert sha256(db) == before, "the replay wrote to the source store"
    offline = [orjson.loads(line) for line in out.read_bytes().splitlines()]

    versions = {(a["model_version"], a["status"]) for a in live}
    assert {("1", "firing"), ("1", "resolved"), ("2", "firing")} <= versions, versions
    resolved_by_switch = [a for a in live if a["model_version"] == "1" and a["status"] == "resolved"]
    assert {a["alert_id"] for a in resolved_by_switch} == set(answered)
    assert per_alert(offline) == per_alert(live)

    # the same replay without the registry (what replay did before) gives other alerts
    timeline = read_registry(cfg)
    assert timeline is not None and timeline.models == ["agr"]
    plain = replay(cfg, tmp_path / "p.jsonl", tmp_path / "l.jsonl", registry=False)
    assert plain["registry"] is None
    assert per_alert(plain["alerts"]) != per_alert(live)
