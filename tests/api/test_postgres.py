"""The API on a PostgreSQL store: history, metrics, readiness and the token-guarded changes."""
from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import TOKEN, app_for
from tests.api.seed import seed

pytestmark = pytest.mark.postgres


def test_api_on_postgres(postgres_url, tmp_path) -> None:
    s = seed(tmp_path, windows=14, store_url=postgres_url)
    try:
        with app_for(s, token=TOKEN) as c:
            pts = c.get("/api/models/fraud/drift", params={"feature": "amount"}).json()["points"]
            assert len({p["seq"] for p in pts}) == 14
            names = {smp.name for fam in text_string_to_metric_families(c.get("/metrics").text) for smp in fam.samples}
            assert {"driftloop_drift_statistic", "driftloop_performance", "driftloop_alerts_firing",
                    "driftloop_model_champion_version"} <= names
            ready = c.get("/readyz").json()
            assert ready["checks"]["store"] == {"ok": True, "detail": "a write committed"}
            auth = {"Authorization": f"Bearer {TOKEN}"}
            assert c.post("/api/models/fraud/rollback", headers=auth).status_code == 409   # no earlier champion
            active = c.get("/api/alerts", params={"status": "active"}).json()["alerts"]
            assert active
            r = c.post(f"/api/alerts/{active[0]['alert_id']}/resolve", headers=auth)
            assert r.status_code == 200, r.text
            assert c.get("/api/models/fraud/status").json()["source"] == "store"
    finally:
        s.store.dispose()
