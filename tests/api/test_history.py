"""record_detector_statistics: one row set per judged window, idempotent, in the caller's transaction."""
from __future__ import annotations

import copy
from pathlib import Path

import sqlalchemy as sa

from driftloop.core.store import Store
from driftloop.monitoring.history import (
    detector_history,
    latest_drift,
    performance_history,
    read_drift_history,
    read_performance_history,
    record_detector_statistics,
)
from tests.api.seed import Seeded


def _status(seeded: Seeded) -> dict:
    return copy.deepcopy(seeded.monitor.status())


def _count(store: Store, table: sa.Table) -> int:
    with store.engine.connect() as c:
        return int(c.execute(sa.select(sa.func.count()).select_from(table)).scalar())


def test_one_row_set_per_window_and_idempotent(tmp_path: Path, seeded: Seeded) -> None:
    store = Store(f"sqlite:///{tmp_path}/h.db")
    store.create_schema()
    status = _status(seeded)
    with store.transaction() as conn:
        first = record_detector_statistics(conn, "fraud", status, 1000)
    with store.transaction() as conn:
        again = record_detector_statistics(conn, "fraud", status, 2000)   # same windows: nothing new
    assert first > 0 and again == 0
    with store.engine.connect() as c:
        features = {r["feature"] for r in read_drift_history(c, "fraud")}
        sources = {r["source"] for r in read_performance_history(c, "fraud")}
    assert {"amount", "age", "country", "prediction", "scores[1]", ""} <= features
    assert sources == {"realised", "estimated"}

    status["windows_judged"]["predictions"] += 1          # a new prediction window, same labels
    status["cbpe"]["last"]["end_ts"] += 1
    with store.transaction() as conn:
        more = record_detector_statistics(conn, "fraud", status, 3000)
    with store.engine.connect() as c:
        realised = read_performance_history(c, "fraud", source="realised")
        drift = read_drift_history(c, "fraud", features=["amount"], kinds=["data_drift"])
    assert more == first - len(realised)                   # drift rows + one estimate, no realised rows
    # wasserstein per window (the null share is a data-quality check now, issue 18: not a drift row)
    assert [r["ts"] for r in drift] == [1000, 3000]
    store.dispose()


def test_rolled_back_batch_records_again(tmp_path: Path, seeded: Seeded) -> None:
    store = Store(f"sqlite:///{tmp_path}/h.db")
    store.create_schema()
    status = _status(seeded)
    try:
        with store.transaction() as conn:
            assert record_detector_statistics(conn, "fraud", status, 1000) > 0
            raise RuntimeError("the batch failed before its commit")
    except RuntimeError:
        pass
    assert _count(store, detector_history) == 0
    with store.transaction() as conn:
        assert record_detector_statistics(conn, "fraud", status, 1000) > 0
    store.dispose()


def test_restarted_monitor_keeps_recording(tmp_path: Path, seeded: Seeded) -> None:
    store = Store(f"sqlite:///{tmp_path}/h.db")
    store.create_schema()
    status = _status(seeded)
    with store.transaction() as conn:
        record_detector_statistics(conn, "fraud", status, 1000)
    n = _count(store, detector_history)
    fresh = _status(seeded)
    fresh["windows_judged"] = {"predictions": 1, "labelled": 1}   # counts start over (new state)
    with store.transaction() as conn:
        assert record_detector_statistics(conn, "fraud", fresh, 2000) > 0
    assert _count(store, detector_history) == 2 * n
    with store.engine.connect() as c:
        latest = latest_drift(c, "fraud")
    assert {r["ts"] for r in latest} == {2000}
    store.dispose()


def test_nothing_judged_writes_nothing(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/h.db")
    store.create_schema()
    with store.transaction() as conn:
        assert record_detector_statistics(conn, "m", {"windows_judged": {"predictions": 0, "labelled": 0}}, 1) == 0
    assert _count(store, performance_history) == 0
    store.dispose()


def test_seeded_history_matches_the_story(seeded: Seeded) -> None:
    with seeded.store.engine.connect() as c:
        amount = [r for r in read_drift_history(c, "fraud", features=["amount"], kinds=["data_drift"])
                  if r["detector"] == "wasserstein"]
        acc = read_performance_history(c, "fraud", metrics=["accuracy"], source="realised")
    assert len(amount) == seeded.windows
    assert not any(r["drifting"] for r in amount[:10])            # before the shift
    assert all(r["drifting"] for r in amount[10:18])              # the shift, until v2's new reference
    assert all(r["threshold"] is not None and r["window_end"] is not None for r in amount)
    before = [r["value"] for r in acc if r["window_end"] < amount[9]["ts"]]
    during = [r for r in acc if r["model_version"] == "1" and r["window_end"] > amount[11]["ts"]]
    assert min(before) > max(r["value"] for r in during)           # v1 got worse after the shift
