"""A live champion switch that fails on a store error is not lost: the detectors go back to
the stored (old) reference, and the monitor's periodic catch-up makes the switch, exactly as the
``promoted`` event would have, once the store answers."""
from __future__ import annotations

import pytest
import sqlalchemy.exc

from driftloop.app.service import MonitorService
from tests.retrain.helpers import config_data, service_following_v1


@pytest.fixture
def service_with_two_versions(tmp_path):
    service, reg, store = service_following_v1(tmp_path, config_data(tmp_path))
    yield service, reg, store
    store.dispose()


def test_a_switch_lost_to_a_store_error_is_caught_up(service_with_two_versions, monkeypatch):
    service, reg, store = service_with_two_versions
    assert store.detector_reference_version("agr") == (True, "1")
    reg.promote("agr", 2, actor="test", reason="retrained")     # the worker's decision

    # the live `promoted` event arrives while the store fails: the switch does not commit
    real_lock = service.store.lock_models

    def failing_lock(conn, models):
        raise sqlalchemy.exc.OperationalError("BEGIN", {}, Exception("database is locked"))

    monkeypatch.setattr(service.store, "lock_models", failing_lock)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        service.switcher.apply("agr", "2", [], "promoted: agr v2")
    assert service.analyser.reference_version["agr"] == "1", "the detectors went back to the stored state"
    assert store.detector_reference_version("agr") == (True, "1")
    assert service.switcher.switched == []

    # a catch-up while the store still fails changes nothing and raises nothing
    service.catch_up_every_s = 0.0
    service._idle()
    assert store.detector_reference_version("agr") == (True, "1")

    # the store answers again: the next catch-up switches, once
    monkeypatch.setattr(service.store, "lock_models", real_lock)
    service._idle()
    assert service.analyser.reference_version["agr"] == "2"
    assert store.detector_reference_version("agr") == (True, "2")
    assert service.switcher.switched == [("agr", "2")]
    service._idle()
    assert service.switcher.switched == [("agr", "2")], "caught up once, not at every check"


def test_a_switch_another_monitor_made_is_not_made_twice(service_with_two_versions):
    service, reg, store = service_with_two_versions
    other = MonitorService(service.cfg)          # a second monitor process on the same store
    reg.promote("agr", 2, actor="test", reason="retrained")
    other.switcher.apply("agr", "2", [], "promoted: agr v2")
    generation = store.detector_state_row("agr")[1]
    # the first monitor's in-memory state still says v1; the event reaches it too
    service.switcher.apply("agr", "2", [], "promoted: agr v2")
    assert service.analyser.reference_version["agr"] == "2"
    assert store.detector_state_row("agr")[1] == generation, "the detectors were not reset a second time"
