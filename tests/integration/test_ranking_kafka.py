"""Ranking models on the real broker (issue 19): the ranking demo closes the loop (an NDCG@10
alert, a job, the challenger promoted, NDCG@10 recovering under it), and a stationary
recommender stream of 500,000 requests with their engagement pages no one."""
from __future__ import annotations

import re
import threading

import numpy as np
import orjson
import pandas as pd
import pytest
import yaml

from detectors.versions import VersionedMonitor
from driftloop.app.demo_ranking import SHOP, recovery
from driftloop.app.service import MonitorService
from driftloop.core.config import load_config
from driftloop.core.store import Store
from retrain.registry import Registry
from tests.integration.demo_helpers import run_demo
from tests.integration.test_replay import wait_for_deliveries
from tests.kafka_helpers import NOW_MS, produce, read_topic, wait_for_counts

pytestmark = pytest.mark.kafka


def test_ranking_demo_alerts_retrains_promotes_and_recovers(kafka_bootstrap, tmp_path):
    demo = run_demo(kafka_bootstrap, tmp_path, "--task", "ranking")
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-3000:]
    assert "REGISTRY PROMOTED shop v2" in demo.stdout and "the service now serves champion v2" in demo.stdout
    cfg = load_config(demo.config_path, environ={})
    alerts = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap, cfg.topics.alerts)]
    fired = [a for a in alerts if a["status"] == "firing"]
    # what paged: v1's ranking metrics, NDCG@10 among them (alone or in a group)
    assert fired and all(a["kind"] == "performance" and a["model_version"] == "1" for a in fired), fired
    assert any(a["detector"] == "ndcg@10" or "ndcg@10" in a["summary"] for a in fired), fired
    store = Store.from_config(cfg.store)
    try:
        history = Registry(cfg, store).history(SHOP)
        [promoted] = [h for h in history if h.event == "promoted" and h.version == 2]
        metrics = promoted.details["metrics"]
        assert metrics["primary"] == "ndcg@10"
        assert metrics["challenger"]["ndcg@10"] > metrics["champion"]["ndcg@10"] + 0.01
        assert set(promoted.details["alert_ids"]) <= {a["alert_id"] for a in fired}
        # the monitor's own NDCG@10 per labelled window (its statistics history): the drop under
        # v1; and v2's detectors, which judged its windows
        by_version = recovery(store)
        v2 = VersionedMonitor.from_snapshot(store.load_detector_state(SHOP)).versions["2"].status()
    finally:
        store.dispose()
    v1 = by_version["1"]
    before = v1[0]
    assert min(v1) < before - 0.04, v1                       # the students' new tastes cost NDCG@10
    assert v2["windows_judged"]["labelled"] >= 2, v2["windows_judged"]
    assert len(by_version["2"]) >= v2["windows_judged"]["labelled"], by_version   # every window recorded
    last = v2["performance"]["last"]["metrics"]["ndcg@10"]["value"]
    assert last > min(v1) + 0.03 and last >= 0.9 * before, (v1, by_version.get("2"), last)
    assert re.search(r"NDCG@10 per labelled window served by v2", demo.stdout)


# -- a stationary recommender -------------------------------------------------------------------
N, BULK, SEGMENTS, ITEMS = 500_000, 1000, ("a", "b", "c", "d"), 400


class Shop:
    """A recommender that does not change: per segment, lists of 10 drawn from its 30 favourite
    items (a fixed pool of lists per segment); shoppers engage with the top more than the bottom."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.items = np.array([f"i{j}" for j in range(ITEMS)], dtype=object)
        favourites = {s: rng.choice(ITEMS, 30, replace=False) for s in SEGMENTS}
        weights = 1 / np.arange(1, 31)
        self.pool = {s: [self.items[rng.choice(favourites[s], 10, replace=False, p=weights / weights.sum())].tolist()
                         for _ in range(300)] for s in SEGMENTS}

    def requests(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, list, list]:
        seg = rng.choice(SEGMENTS, n, p=[0.4, 0.3, 0.2, 0.1])
        basket = np.round(rng.lognormal(3, 0.7, n), 2)
        pick = rng.integers(0, 300, n)
        lists = [self.pool[s][k] for s, k in zip(seg.tolist(), pick.tolist(), strict=True)]
        pos = rng.choice(10, n, p=np.linspace(2, 0.2, 10) / np.linspace(2, 0.2, 10).sum())
        engaged = rng.random(n) > 0.35
        graded = rng.random(n) < 0.3
        labels = [({lst[p]: 3.0} if g else [lst[p]]) if e else []
                  for lst, p, e, g in zip(lists, pos.tolist(), engaged.tolist(), graded.tolist(), strict=True)]
        return seg, basket, lists, labels


def _bulk(events: list[dict], topic: str) -> list[tuple[str, bytes, bytes]]:
    """The events as JSON arrays of ``BULK`` (the contract's bulk form: one message, many events)."""
    return [(topic, SHOP.encode(), orjson.dumps(events[i:i + BULK])) for i in range(0, len(events), BULK)]


def test_a_stationary_recommender_of_500k_requests_pages_no_one(make_config, kafka_bootstrap, tmp_path):
    shop, rng = Shop(3), np.random.default_rng(11)
    seg, basket, lists, labels = shop.requests(rng, 10_000)
    pd.DataFrame({"segment": seg, "basket": basket, "prediction": lists, "label": labels}).to_json(
        tmp_path / "reference.jsonl", orient="records", lines=True)
    path, _ = make_config()
    data = yaml.safe_load(path.read_text())
    data["models"] = {SHOP: {"task": "ranking", "features": {"segment": "categorical", "basket": "numeric"},
                             "reference": str(tmp_path / "reference.jsonl")}}     # the default detectors
    data["alerts"] = {"group_window_s": 0, "hold_down_s": 0, "cooldown_s": 0, "incidents": {"wait_s": 0}}
    data["ingest"] = {**data.get("ingest", {}), "max_poll_records": 500}
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path, environ={})
    seg, basket, lists, labels = shop.requests(rng, N)
    t0 = NOW_MS - 20 * 3_600_000
    preds = [{"event_id": f"r{i}", "model": SHOP, "ts": t0 + i * 100, "prediction": lists[i],
              "features": {"segment": seg[i], "basket": float(basket[i])}} for i in range(N)]
    engaged = [{"event_id": f"r{i}", "model": SHOP, "ts": t0 + i * 100 + 30_000, "label": labels[i]}
               for i in range(N)]
    service = MonitorService(cfg)
    t = threading.Thread(target=service.run, daemon=True)
    t.start()
    try:
        produce(kafka_bootstrap, _bulk(preds, cfg.topics.predictions))
        produce(kafka_bootstrap, _bulk(engaged, cfg.topics.labels))
        stats = wait_for_counts(cfg, {"predictions": N, "joined": N, "invalid": 0}, timeout_s=900, model=SHOP)
        store = Store.from_config(cfg.store)
        try:
            wait_for_deliveries(store)
        finally:
            store.dispose()
    finally:
        service.stop()
        t.join(60)
    alerts = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap, cfg.topics.alerts)]
    assert alerts == [], [a["summary"] for a in alerts]
    assert stats["models"][SHOP]["firing_alerts"] == 0
    # every window was judged: 100 of requests and 100 of labelled requests (5,000 each by default)
    store = Store.from_config(cfg.store)
    try:
        monitor = VersionedMonitor.from_snapshot(store.load_detector_state(SHOP)).versions[""]
    finally:
        store.dispose()
    status = monitor.status()
    assert status["windows_judged"] == {"predictions": N // 5000, "labelled": N // 5000}, status["windows_judged"]
    assert status["performance"]["baseline_source"] == "10,000 reference requests"
    assert status["label_free"]["last"]["n"] == 5000 and status["label_free"]["last"]["unseen_share"] == 0.0
