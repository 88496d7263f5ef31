"""A champion switch that fails for another reason than the store never stops the monitor:

* an unreadable or tampered champion sample (``ArtifactError``) keeps the previous reference and
  raises a ``detector_failure`` alert (detector ``champion_sample``), which clears once a switch
  succeeds;
* detectors that raise on the new sample quarantine the model (stage ``champion_switch``); the
  switch's transaction rolls back, the other models go on.
"""
from __future__ import annotations

import pytest

from detectors.versions import VersionedMonitor
from driftloop.app.service import MonitorService
from driftloop.monitoring.failures import CHAMPION_SAMPLE, KIND, QUARANTINE
from tests.retrain.helpers import config_data, service_following_v1


@pytest.fixture
def service(tmp_path):
    data = config_data(tmp_path)
    data["alerts"] = {"group_window_s": 0, "hold_down_s": 0, "stale": {"enabled": False}}
    svc, reg, store = service_following_v1(tmp_path, data)
    yield svc, reg, store
    store.dispose()


def failure_alerts(svc, detector):
    return [s for s in svc.alerts.manager.states().values() if s.kind == KIND and s.detector == detector]


def sample_file(reg, version):
    info = reg.get("agr", version)
    return reg.path(info.holdout_path or info.reference_path)


def test_a_tampered_champion_sample_keeps_the_previous_reference_and_alerts(service):
    svc, reg, store = service
    f = sample_file(reg, 2)
    good = f.read_bytes()
    f.write_bytes(good + b"tampered")
    reg.promote("agr", 2, actor="test", reason="retrained")

    svc.switcher.apply("agr", "2", [], "promoted: agr v2")    # today: ArtifactIntegrityError ends the monitor

    assert svc.analyser.reference_version["agr"] == "1" and "agr" in svc.analyser.monitors
    assert store.detector_reference_version("agr") == (True, "1")
    assert svc.switcher.switched == [] and svc.analyser.quarantined_models == []
    svc._idle()                                              # the monitor's idle step writes the alert
    [alert] = failure_alerts(svc, CHAMPION_SAMPLE)
    assert alert.status == "firing" and alert.severity == "critical" and alert.model == "agr"
    ev = alert.detection["evidence"]
    assert ev["stage"] == "champion_switch" and ev["champion_version"] == "2"
    assert ev["error_class"] == "ArtifactIntegrityError" and ev["since"] > 0

    # the file is repaired: the next try (the catch-up's) switches and the alert clears
    f.write_bytes(good)
    svc.catch_up_every_s = 0.0
    svc._idle()
    assert svc.analyser.reference_version["agr"] == "2"
    assert store.detector_reference_version("agr") == (True, "2")
    [alert] = failure_alerts(svc, CHAMPION_SAMPLE)
    assert alert.status in ("resolving", "resolved")
    assert svc.analyser.switch_failures == {}


def test_detectors_that_raise_on_the_new_sample_quarantine_the_model(service, monkeypatch):
    svc, reg, store = service
    reg.promote("agr", 2, actor="test", reason="retrained")

    def broken(self, *_args, **_kwargs):
        raise KeyError("score_1")

    monkeypatch.setattr(VersionedMonitor, "promote", broken)
    svc.switcher.apply("agr", "2", [], "promoted: agr v2")    # today: KeyError ends the monitor

    assert svc.analyser.quarantined_models == ["agr"]
    assert svc.analyser.quarantined["agr"].stage == "champion_switch"
    assert store.detector_reference_version("agr") == (True, "1"), "the switch's transaction rolled back"
    svc._idle()
    [alert] = failure_alerts(svc, QUARANTINE)
    assert alert.status == "firing" and alert.detection["evidence"]["error_class"] == "KeyError"

    # the catch-up tries again once the detectors can switch: the quarantine ends
    monkeypatch.undo()
    svc.catch_up_every_s = 0.0
    svc._idle()
    assert svc.analyser.quarantined_models == [] and svc.analyser.reference_version["agr"] == "2"
    [alert] = failure_alerts(svc, QUARANTINE)
    assert alert.status in ("resolving", "resolved")


def test_a_restart_with_a_tampered_champion_sample_keeps_the_stored_reference(service):
    svc, reg, store = service
    f = sample_file(reg, 2)
    f.write_bytes(f.read_bytes() + b"tampered")
    reg.promote("agr", 2, actor="test", reason="retrained")   # decided while no monitor runs

    again = MonitorService(svc.cfg)                            # today: the monitor cannot start
    assert again.analyser.quarantined_models == [] and again.analyser.reference_version["agr"] == "1"
    again.catch_up_champions()                                 # as run() does at start
    assert again.analyser.reference_version["agr"] == "1"
    again._idle()
    [alert] = failure_alerts(again, CHAMPION_SAMPLE)
    assert alert.status == "firing" and alert.detection["evidence"]["champion_version"] == "2"
