"""/metrics: ``driftloop_model_quarantined`` is 1 for a model whose detectors are quarantined."""
from __future__ import annotations

from types import SimpleNamespace

from tests.api.conftest import FakeMonitor, app_for
from tests.api.seed import Seeded
from tests.api.test_metrics import _scrape, _value


def test_quarantined_models_are_a_gauge(seeded: Seeded) -> None:
    monitor = FakeMonitor()
    monitor.analyser = SimpleNamespace(quarantined_models=["fraud"])
    with app_for(seeded, monitor=monitor) as c:
        m = _scrape(c)
    assert _value(m, "driftloop_model_quarantined", model="fraud") == 1
    monitor.analyser.quarantined_models = []
    with app_for(seeded, monitor=monitor) as c:
        m = _scrape(c)
    assert _value(m, "driftloop_model_quarantined", model="fraud") == 0
