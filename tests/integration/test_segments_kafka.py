"""Segments and data quality on the real broker, through `driftloop monitor`'s own process layout
(ingestion journals each batch, a judging child judges it): one segment's accuracy drop pages
with the segment named on the alerts topic, and strings sent in a numeric field page a
`type_change` — nothing else pages."""
from __future__ import annotations

import threading

import numpy as np
import orjson
import pandas as pd
import pytest
import yaml

from driftloop.app.service import MonitorService
from driftloop.core.config import load_config
from driftloop.core.store import Store
from tests.integration.test_replay import wait_for_deliveries
from tests.kafka_helpers import NOW_MS, produce, read_topic, wait_for_counts

pytestmark = pytest.mark.kafka

COUNTRIES, SHARES = ["DE", "FR", "US", "IT", "BR"], [0.3, 0.3, 0.2, 0.1, 0.1]
WINDOW, WINDOWS, CHANGE = 2000, 8, 4      # BR's accuracy falls from window CHANGE on


def traffic(rng, n, br_accuracy):
    amount = rng.lognormal(3, 1, n)
    country = rng.choice(COUNTRIES, n, p=SHARES)
    pred = (amount > 20).astype(int)
    right = rng.random(n) < np.where(country == "BR", br_accuracy, 0.95)
    return amount, country, pred, np.where(right, pred, 1 - pred)


def test_a_broken_segment_and_a_broken_field_page_on_the_real_broker(make_config, kafka_bootstrap, tmp_path):
    rng = np.random.default_rng(7)
    amount, country, pred, label = traffic(rng, 20_000, 0.95)
    pd.DataFrame({"amount": amount, "country": country, "prediction": pred, "label": label}).to_csv(
        tmp_path / "ref.csv", index=False)
    path, _ = make_config()
    data = yaml.safe_load(path.read_text())
    data["models"] = {"shop": {
        "task": "classification", "features": {"amount": "numeric", "country": "categorical"},
        "reference": str(tmp_path / "ref.csv"), "segments": ["country"],
        "detectors": {"window_size": WINDOW, "warmup": 0, "multivariate": False, "concept_drift": False,
                      "calibration_draws": 20, "segment_min_window": 400, "performance_metrics": ["accuracy"],
                      "min_degradation": {"accuracy": 0.05}}}}
    data["alerts"] = {"group_window_s": 0, "hold_down_s": 0, "cooldown_s": 0, "incidents": {"wait_s": 0}}
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path, environ={})

    preds, labels, refused = [], [], 0
    for w in range(WINDOWS):
        amount, country, pred, label = traffic(rng, WINDOW, 0.95 if w < CHANGE else 0.60)
        for j in range(WINDOW):
            i = w * WINDOW + j
            value: object = float(amount[j])
            if w >= CHANGE and j % 10 == 0:          # a producer sends 10% of amounts as strings
                value, refused = f"{amount[j]:.2f}", refused + 1
            ts = NOW_MS - 10 * 3_600_000 + i * 100
            preds.append({"event_id": f"e{i}", "model": "shop", "ts": ts, "prediction": int(pred[j]),
                          "features": {"amount": value, "country": str(country[j])}})
            labels.append({"event_id": f"e{i}", "model": "shop", "ts": ts + 60_000, "label": int(label[j])})

    service = MonitorService(cfg)
    t = threading.Thread(target=service.run, daemon=True)
    t.start()
    try:
        produce(kafka_bootstrap, [(cfg.topics.predictions, b"shop", orjson.dumps(e)) for e in preds])
        produce(kafka_bootstrap, [(cfg.topics.labels, b"shop", orjson.dumps(e)) for e in labels])
        accepted = len(preds) - refused
        # the counts are in and the judging child has judged every journal entry
        wait_for_counts(cfg, {"predictions": accepted, "invalid": refused, "joined": accepted}, timeout_s=240,
                        model="shop")
        store = Store.from_config(cfg.store)
        try:
            wait_for_deliveries(store)        # every alert change is on the alerts topic
        finally:
            store.dispose()
    finally:
        service.stop()
        t.join(60)
    messages = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap, cfg.topics.alerts)]
    got = {(m["kind"], m["detector"], orjson.dumps(m["segment"])) for m in messages if m["status"] == "firing"}
    assert got == {("performance", "accuracy", b'{"country":"BR"}'), ("data_quality", "type_change", b"null")}
    [page] = [m for m in messages if m["kind"] == "performance"]
    assert "in country=BR vs" in page["summary"] and page["evidence"]["segment"] == "country=BR"
