"""`driftloop replay --report`: a self-contained HTML report (no broker needed)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import orjson
import pandas as pd

from tests.integration.test_replay import configure_fraud, make_events
from tests.kafka_helpers import ROOT


def test_replay_writes_alerts_and_a_self_contained_report(make_config, tmp_path):
    rng = np.random.default_rng(5)
    path = configure_fraud(make_config, tmp_path, rng, {"multivariate": False})
    preds, labels = make_events(rng)
    pd.DataFrame([{**{k: v for k, v in e.items() if k not in ("features", "scores")}, **e["features"],
                   **{f"score_{c}": p for c, p in e["scores"].items()}} for e in preds]).to_csv(
        tmp_path / "p.csv", index=False)
    (tmp_path / "l.jsonl").write_bytes(b"\n".join(orjson.dumps(e) for e in labels))
    out, report = tmp_path / "alerts.jsonl", tmp_path / "report.html"
    proc = subprocess.run([sys.executable, "-m", "driftloop.app.cli", "replay", "-c", str(path), "--predictions",
                           str(tmp_path / "p.csv"), "--labels", str(tmp_path / "l.jsonl"), "--out", str(out),
                           "--report", str(report)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "6,000 predictions" in proc.stderr and "6,000 joined" in proc.stderr
    alerts = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert any(a["feature"] == "amount" and a["status"] == "firing" for a in alerts)
    page = report.read_text()
    assert page.count("<svg") >= 4 and "data_drift: amount" in page and "class='firing'" in page
    assert "<script" not in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")
