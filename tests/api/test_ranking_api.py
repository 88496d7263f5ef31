"""A ranking model (issue 19) through the HTTP API and /metrics: its realised NDCG@10 and the
other ranking metrics, the recommended items' drift and the label-free metrics beside the
reference's, from a store a replay of the synthetic shop filled."""
from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient

from detectors.ranking_lists import decode_ranking
from driftloop.app.api import create_app
from driftloop.app.demo_shop import FEATURES, reference_frame, shop_requests, train_champion
from driftloop.app.replay import replay
from driftloop.core.config import load_config_dict
from driftloop.core.store import Store


@pytest.fixture(scope="module")
def shop_files(tmp_path_factory):
    """The shop's reference and a stationary stream of 6,000 requests with their engagement."""
    tmp = tmp_path_factory.mktemp("shop")
    X, y = shop_requests(4000, changed=False, seed=7)
    champion = train_champion(X, y)
    Xr, yr = shop_requests(3000, changed=False, seed=8)
    reference_frame(champion, Xr, yr).to_json(tmp / "reference.jsonl", orient="records", lines=True)
    Xs, ys = shop_requests(6000, changed=False, seed=9)
    lists = champion.predict(Xs)
    t0 = 1_760_000_000_000
    with open(tmp / "p.jsonl", "wb") as fp, open(tmp / "l.jsonl", "wb") as fl:
        for i, row in enumerate(Xs.to_dict("records")):
            fp.write(orjson.dumps({"event_id": f"e{i}", "model": "shop", "ts": t0 + i * 100, "features": row,
                                   "prediction": decode_ranking(lists[i])}) + b"\n")
            fl.write(orjson.dumps({"event_id": f"e{i}", "model": "shop", "ts": t0 + i * 100 + 50,
                                   "label": ys[i]}) + b"\n")
    return tmp


@pytest.fixture(params=["sqlite", "postgres"])
def shop_store(request, shop_files, tmp_path):
    """The stream replayed into a store of each kind (a list's separators are control characters:
    both keep them)."""
    url = f"sqlite:///{tmp_path}/r.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    cfg = load_config_dict({"store": {"url": url}, "api": {"port": 0}, "models": {"shop": {
        "task": "ranking", "features": dict(FEATURES), "reference": str(shop_files / "reference.jsonl"),
        "detectors": {"window_size": 1000, "warmup": 0}}}}, environ={})
    alerts: list = []
    replay(cfg, shop_files / "p.jsonl", shop_files / "l.jsonl", on_alert=alerts.append, store_url=url)
    store = Store.from_config(cfg.store)
    yield cfg, store, alerts
    store.dispose()


def test_a_ranking_model_reads_through_the_api_and_metrics(shop_store):
    cfg, store, alerts = shop_store
    assert alerts == []                                     # a stationary shop
    with TestClient(create_app(cfg, store)) as c:
        status = c.get("/api/models/shop/status").json()["status"]
        assert status["task"] == "ranking" and status["labelled"] == 6000
        points = c.get("/api/models/shop/performance", params={"metric": "ndcg@10"}).json()["points"]
        assert points and {p["metric"] for p in points} == {"ndcg@10"}
        text = c.get("/metrics").text
    lines = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
             if line.startswith("driftloop_") and 'model="shop"' in line}
    ndcg = lines['driftloop_performance{metric="ndcg@10",model="shop",model_version="",source="realised"}']
    base = lines['driftloop_performance_baseline{metric="ndcg@10",model="shop",model_version="",source="realised"}']
    assert 0.1 < ndcg < 0.5 and abs(ndcg - base) < 0.05
    key = ('driftloop_drift_statistic{detector="item_shares",feature="prediction",kind="prediction_drift",'
           'model="shop",model_version=""}')
    assert 0 <= lines[key] < 0.1
    for metric in ("coverage", "gini", "top_share", "mean_popularity", "novelty", "list_length", "unseen_share"):
        now = lines[f'driftloop_ranking_label_free{{metric="{metric}",model="shop",model_version=""}}']
        ref = lines[f'driftloop_ranking_label_free_reference{{metric="{metric}",model="shop",model_version=""}}']
        assert abs(now - ref) <= 0.1 * max(abs(ref), 1e-9) + 1e-9, (metric, now, ref)
    assert lines['driftloop_ranking_label_free{metric="list_length",model="shop",model_version=""}'] == 20.0
