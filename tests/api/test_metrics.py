"""/metrics: valid Prometheus text (parsed by prometheus_client's own parser), right figures."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import FakeMonitor, app_for
from tests.api.seed import WINDOW, Seeded


def _scrape(client) -> dict[str, list]:
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples: dict[str, list] = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            samples.setdefault(s.name, []).append(s)
    return samples


def _value(samples: dict[str, list], name: str, **labels: str) -> float:
    found = [s.value for s in samples[name] if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_store_figures(client, seeded: Seeded) -> None:
    m = _scrape(client)
    n = seeded.windows
    assert _value(m, "driftloop_events_total", model="fraud", stream="predictions") == n * WINDOW
    assert _value(m, "driftloop_events_total", model="fraud", stream="labels") == (n - 1) * WINDOW
    assert _value(m, "driftloop_events_joined_total", model="fraud") == (n - 1) * WINDOW
    assert _value(m, "driftloop_events_invalid_total", model="fraud") == 3 * n
    assert _value(m, "driftloop_events_invalid_total", model="_unattributed") == 0
    assert _value(m, "driftloop_events_duplicate_total", model="fraud") == n
    # the last window's drift statistics per feature, with their thresholds
    stat = _value(m, "driftloop_drift_statistic", model="fraud", kind="data_drift", detector="psi", feature="country")
    thr = _value(m, "driftloop_drift_threshold", model="fraud", kind="data_drift", detector="psi", feature="country")
    assert stat > thr > 0
    assert _value(m, "driftloop_drift_detected", model="fraud", kind="data_drift", detector="psi",
                  feature="country") == 1
    assert _value(m, "driftloop_drift_detected", model="fraud", kind="data_drift", detector="wasserstein",
                  feature="amount") == 0
    assert 0 <= _value(m, "driftloop_drift_p_value", model="fraud", kind="data_drift", detector="psi",
                       feature="country") < 0.001
    assert _value(m, "driftloop_drift_window_end_timestamp_seconds", model="fraud") == seeded.end_ms / 1000
    assert 0.5 < _value(m, "driftloop_performance", model="fraud", source="realised", metric="accuracy") < 1
    assert 0.5 < _value(m, "driftloop_performance", model="fraud", source="estimated", metric="accuracy") < 1
    # the country drift fires; v2 is the champion
    assert _value(m, "driftloop_alerts_firing", model="fraud", severity="critical") == 1
    assert _value(m, "driftloop_alerts_firing", model="fraud", severity="warning") == 0
    assert _value(m, "driftloop_model_champion_version", model="fraud") == 2
    assert "driftloop_consumer_lag" not in m     # no monitor in this process
    assert "driftloop_scrape_errors_total" not in m


def test_live_monitor_figures(seeded: Seeded) -> None:
    with app_for(seeded, monitor=FakeMonitor()) as c:
        m = _scrape(c)
    assert _value(m, "driftloop_consumer_lag", topic="driftloop.predictions", partition="0") == 42
    assert _value(m, "driftloop_consumer_lag", topic="driftloop.labels", partition="0") == 7
    assert _value(m, "driftloop_consumer_assigned_partitions") == 2
    assert _value(m, "driftloop_batches_total") == 12
    assert _value(m, "driftloop_batches_fenced_total") == 1
    assert _value(m, "driftloop_records_total") == 24_000
    assert _value(m, "driftloop_batch_duration_seconds_count") == 12
    assert _value(m, "driftloop_batch_duration_seconds_sum") == 6.0
    assert _value(m, "driftloop_batch_phase_seconds_total", phase="commit") == 4.0
    assert _value(m, "driftloop_batch_last_duration_seconds") == 0.25


def test_retrain_jobs_counted(client, seeded: Seeded) -> None:
    import sqlalchemy as sa

    from driftloop.core.tables import retrain_jobs

    # a read-only fixture: count what is there (the seed enqueues no job) and check the family exists
    with seeded.store.engine.connect() as c:
        n = c.execute(sa.select(sa.func.count()).select_from(retrain_jobs)).scalar()
    r = client.get("/metrics").text
    assert "# TYPE driftloop_retrain_jobs gauge" in r
    assert n == 0 or "driftloop_retrain_jobs{" in r


def test_a_broken_part_does_not_empty_the_scrape(seeded: Seeded, monkeypatch) -> None:
    from driftloop.app.api import metrics

    def boom(self):
        raise RuntimeError("alerts table unreadable")
        yield  # pragma: no cover

    monkeypatch.setattr(metrics.DriftloopCollector, "_alerts", boom)
    with app_for(seeded) as c:
        m = _scrape(c)
    assert _value(m, "driftloop_scrape_errors_total", part="alerts") == 1
    assert _value(m, "driftloop_events_total", model="fraud", stream="predictions") > 0
