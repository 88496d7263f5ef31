"""A broken model never stops the others: a model whose detectors raise is quarantined.

Its events are still validated, joined, counted and stored in the batch's transaction; only its
detector analysis is skipped; the other models' detectors go on; a ``detector_failure``
detection (kind of its own) says which model, what failed and since when; the detectors are
rebuilt from the store after a back-off (doubling up to a cap), and the alert clears once they
work again.
"""
from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from consumers.ingest import commit, prepare
from detectors.versions import VersionedMonitor
from driftloop.core.config import ConfigError, load_config_dict
from driftloop.core.store import Store
from driftloop.monitoring.analysis import DriftAnalyser
from tests.consumers.test_ingest_unit import NOW, Rec

SETTINGS = {"window_size": 500, "warmup": 0, "multivariate": False, "calibration_draws": 20}
MODELS = ("fraud", "other")


@pytest.fixture
def setup(tmp_path):
    rng = np.random.default_rng(7)
    ref = pd.DataFrame({"amount": rng.normal(50, 10, 2000), "country": rng.choice(["DE", "FR"], 2000),
                        "label": rng.choice([0, 1], 2000)})
    ref.to_csv(tmp_path / "ref.csv", index=False)
    model = {"task": "classification", "features": {"amount": "numeric", "country": "categorical"},
             "reference": "ref.csv", "detectors": SETTINGS}
    cfg = load_config_dict({"models": {m: dict(model) for m in MODELS},
                            "ingest": {"quarantine_retry_s": 10, "quarantine_max_retry_s": 25}},
                           base_dir=tmp_path, environ={})
    store = Store(f"sqlite:///{tmp_path}/t.db")
    store.create_schema()
    yield cfg, store, rng
    store.dispose()


class Batches:
    """Consecutive batches of predictions for every model, on partition 0, with the expected offsets."""

    def __init__(self, cfg, store, analyser, rng):
        self.cfg, self.store, self.analyser, self.rng = cfg, store, analyser, rng
        self.offset, self.i = 0, 0

    def run(self, n: int = 600, now: int = NOW, shift: float = 0.0):
        values = []
        for model in MODELS:
            for _ in range(n):
                values.append(orjson.dumps({
                    "event_id": f"e{self.i}", "model": model, "ts": NOW - 10**6 + self.i,
                    "features": {"amount": float(self.rng.normal(50 + shift, 10)),
                                 "country": str(self.rng.choice(["DE", "FR"]))},
                    "prediction": int(self.rng.integers(2))}))
                self.i += 1
        P = self.cfg.topics.predictions
        recs = [Rec(P, 0, self.offset + j, v) for j, v in enumerate(values)]
        expected = {(P, 0): self.offset or None}
        self.offset += len(values)
        return commit(self.store, self.cfg, prepare(recs, self.cfg, now), group="g", expected=expected, now=now,
                      analyser=self.analyser)


def broken_update(*_a, **_k):
    raise ValueError("a detector cannot handle this window")


def failures(seen, model="fraud"):
    return [d for m, d in seen if m == model and d.kind == "detector_failure"]


def make(cfg, store):
    seen: list = []
    an = DriftAnalyser(cfg, store, on_detections=lambda conn, model, dets, now: seen.extend((model, d) for d in dets))
    return an, seen


def test_a_model_whose_detectors_raise_is_quarantined_and_the_others_go_on(setup):
    cfg, store, rng = setup
    an, seen = make(cfg, store)
    b = Batches(cfg, store, an, rng)
    b.run()
    fraud_before = store.detector_state_row("fraud")
    other_before = store.detector_state_row("other")
    an.monitors["fraud"].update_predictions = broken_update      # this instance only: a rebuild heals it

    b.run(now=NOW + 1000)                                         # today: ValueError ends the monitor

    counts = store.read_counters()
    assert counts["fraud"]["predictions"] == 1200 and counts["other"]["predictions"] == 1200
    assert store.detector_state_row("fraud") == fraud_before, "the broken model's state is not saved"
    assert store.detector_state_row("other")[1] == other_before[1] + 1, "the other model's detectors went on"
    assert "fraud" in an.quarantined and "fraud" not in an.monitors
    [alert] = failures(seen)
    assert alert.firing and alert.detector == "detectors" and alert.severity == "critical"
    ev = alert.evidence
    assert ev["stage"] == "update" and ev["error_class"] == "ValueError"
    assert "cannot handle this window" in ev["error"] and ev["since"] == NOW + 1000
    assert alert.model == "fraud" and "ValueError: a detector cannot" in alert.summary
    assert failures(seen, "other") == []

    # during the back-off: counted and stored, not analysed, no rebuild attempt
    b.run(now=NOW + 5000)
    assert store.read_counters()["fraud"]["predictions"] == 1800
    assert store.detector_state_row("fraud") == fraud_before and "fraud" not in an.monitors

    # after the back-off (10 s): rebuilt from the store, the update works, the alert clears
    b.run(now=NOW + 12_000)
    assert "fraud" in an.monitors and "fraud" not in an.quarantined
    assert store.detector_state_row("fraud")[1] == fraud_before[1] + 1
    cleared = failures(seen)[-1]
    assert not cleared.firing and cleared.evidence["since"] == NOW + 1000


def test_a_failing_rebuild_stays_quarantined_with_a_doubling_back_off(setup, monkeypatch):
    cfg, store, rng = setup
    an, seen = make(cfg, store)
    b = Batches(cfg, store, an, rng)
    b.run()
    an.monitors["fraud"].update_predictions = broken_update
    b.run(now=NOW)
    assert an.quarantined["fraud"].retry_at == NOW + 10_000

    real_restore = VersionedMonitor.restore

    def broken_restore(blob):
        raise RuntimeError("state of an unknown code version")

    monkeypatch.setattr(VersionedMonitor, "restore", broken_restore)
    b.run(now=NOW + 10_000)                                  # rebuild due: it fails again
    q = an.quarantined["fraud"]
    assert q.stage == "rebuild" and q.failures == 2 and q.retry_at == NOW + 30_000   # 20 s
    assert "fraud" not in an.monitors and q.since == NOW
    assert failures(seen)[-1].firing and failures(seen)[-1].evidence["stage"] == "rebuild"
    b.run(now=NOW + 30_000)
    assert an.quarantined["fraud"].retry_at == NOW + 55_000, "capped at quarantine_max_retry_s (25 s)"
    assert store.read_counters()["fraud"]["predictions"] == 2400   # every batch counted meanwhile

    monkeypatch.setattr(VersionedMonitor, "restore", real_restore)
    b.run(now=NOW + 55_000)
    assert "fraud" not in an.quarantined and not failures(seen)[-1].firing


def test_a_model_that_cannot_be_rebuilt_at_start_does_not_stop_the_start(setup):
    cfg, store, rng = setup
    an, _ = make(cfg, store)
    Batches(cfg, store, an, rng).run()
    with store.transaction() as conn:          # a stored state no code version can read
        store.save_detector_state(conn, "fraud", b"\x00garbage", NOW, generation=7)

    again, seen = make(cfg, store)             # today: the monitor cannot start
    assert "fraud" in again.quarantined and "other" in again.monitors
    assert again.quarantined["fraud"].stage == "rebuild"
    # announced in the first transaction that can carry it (the idle step's, here)
    again.tend(NOW)
    [alert] = failures(seen)
    assert alert.firing and alert.evidence["stage"] == "rebuild"
    again.tend(NOW + 1)
    assert len(failures(seen)) == 1, "announced once, not at every idle step"


def test_a_batch_that_does_not_commit_announces_again(setup):
    """The alert of a failure is written in the batch's transaction: if the batch rolls back, the
    quarantine stays and the next transaction announces it again."""
    cfg, store, rng = setup
    an, seen = make(cfg, store)
    b = Batches(cfg, store, an, rng)
    b.run()
    an.monitors["fraud"].update_predictions = broken_update
    b.run(now=NOW)
    an.rollback()                               # as the monitor does when the commit fails
    assert "fraud" in an.quarantined and not an.quarantined["fraud"].announced
    assert "other" in an.monitors
    an.tend(NOW + 1)
    assert len(failures(seen)) == 2 and an.quarantined["fraud"].announced


def test_store_errors_are_not_quarantined(setup):
    """A store failure is the monitor's back-pressure's business, not a broken model."""
    import sqlalchemy.exc

    cfg, store, rng = setup
    an, _ = make(cfg, store)
    b = Batches(cfg, store, an, rng)
    b.run()

    def store_down(*_a, **_k):
        raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("database is locked"))

    an.monitors["fraud"].update_predictions = store_down
    with pytest.raises(sqlalchemy.exc.OperationalError):
        b.run(now=NOW)
    assert an.quarantined == {}


@pytest.mark.parametrize("ingest, key", [
    ({"quarantine_retry_s": 0}, "ingest.quarantine_retry_s"),
    ({"quarantine_max_retry_s": -1}, "ingest.quarantine_max_retry_s"),
    ({"quarantine_retry_s": 60, "quarantine_max_retry_s": 30}, "ingest.quarantine_max_retry_s"),
])
def test_back_off_keys_are_validated(tmp_path, ingest, key):
    with pytest.raises(ConfigError, match=key):
        load_config_dict({"ingest": ingest}, base_dir=tmp_path, environ={})


def test_a_clearing_that_does_not_commit_is_made_again(setup):
    cfg, store, rng = setup
    seen: list = []
    fail_clear = [True]

    def on_detections(conn, model, dets, now):
        if fail_clear[0] and any(d.kind == "detector_failure" and not d.firing for d in dets):
            fail_clear[0] = False
            raise RuntimeError("the alert store refused the write")
        seen.extend((model, d) for d in dets)

    an = DriftAnalyser(cfg, store, on_detections=on_detections)
    b = Batches(cfg, store, an, rng)
    b.run()
    an.monitors["fraud"].update_predictions = broken_update
    b.run(now=NOW)
    with pytest.raises(RuntimeError):
        b.run(now=NOW + 10_000)                 # rebuilt, analysed, but the batch does not commit
    b.offset -= 1200
    an.rollback()
    assert an.quarantined["fraud"].active is False, "rebuilt; waiting to clear its alert"
    b.run(now=NOW + 11_000)
    assert not failures(seen)[-1].firing and an.quarantined == {}


def test_an_idle_announcement_lost_to_the_store_is_made_again(setup, monkeypatch):
    import sqlalchemy.exc

    cfg, store, rng = setup
    an, seen = make(cfg, store)
    Batches(cfg, store, an, rng).run()
    with store.transaction() as conn:
        store.save_detector_state(conn, "fraud", b"\x00garbage", NOW, generation=7)
    an, seen = make(cfg, store)
    real = store.transaction

    def down():
        raise sqlalchemy.exc.OperationalError("BEGIN", {}, Exception("database is locked"))

    monkeypatch.setattr(store, "transaction", down)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        an.tend(NOW)
    assert not an.quarantined["fraud"].announced and failures(seen) == []
    monkeypatch.setattr(store, "transaction", real)
    an.tend(NOW + 1)
    assert len(failures(seen)) == 1 and an.quarantined["fraud"].announced


def test_detectors_that_cannot_be_snapshotted_are_quarantined(setup):
    cfg, store, rng = setup
    an, seen = make(cfg, store)
    b = Batches(cfg, store, an, rng)
    b.run()

    def unsaveable():
        raise TypeError("cannot pack a float128")

    an.monitors["fraud"].snapshot = unsaveable
    b.run(now=NOW)
    assert an.quarantined_models == ["fraud"] and "other" in an.monitors
    assert failures(seen)[-1].evidence["error_class"] == "TypeError"
