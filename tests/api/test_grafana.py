"""deploy/grafana: the dashboard JSON and provisioning files are well-formed and every metric the
dashboard queries is one /metrics really exposes."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import FakeMonitor, app_for
from tests.api.seed import Seeded

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"


def _exprs(dash: dict) -> list[str]:
    out = []
    for panel in dash["panels"]:
        out += [t["expr"] for t in panel.get("targets", [])]
    out += [a["expr"] for a in dash["annotations"]["list"] if "expr" in a]
    return out


def test_dashboard_queries_known_metrics(seeded: Seeded) -> None:
    dash = json.loads((GRAFANA / "dashboards" / "driftloop.json").read_text())
    assert dash["uid"] == "driftloop" and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    with app_for(seeded, monitor=FakeMonitor()) as c:
        text = c.get("/metrics").text
    exposed = set()
    for fam in text_string_to_metric_families(text):
        exposed |= {fam.name, fam.name + "_total"} if fam.type == "counter" else {fam.name}
        exposed |= {s.name for s in fam.samples}
    used = {m for e in _exprs(dash) for m in re.findall(r"driftloop_[a-z_]+", e)}
    assert used and used <= exposed, used - exposed
    for panel in dash["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert {"h", "w", "x", "y"} <= set(panel["gridPos"])


def test_provisioning_files() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    assert ds["datasources"][0]["type"] == "prometheus"
    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "driftloop.yaml").read_text())
    assert prov["providers"][0]["options"]["path"]
    prom = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())
    (job,) = prom["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"] == ["monitor:8321"]
