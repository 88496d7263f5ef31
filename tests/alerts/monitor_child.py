"""Child process: the real monitor (consumers + detectors + alerts) on a config file.

usage: python -m tests.alerts.monitor_child CONFIG [MAX_SECONDS]
This is the wiring the lead adds to ``driftloop monitor``: a DriftAnalyser whose detections go
to the AlertService, the service started beside the monitor and stopped after it.
"""
from __future__ import annotations

import logging
import sys


def main(path: str, max_seconds: float = 120.0) -> None:
    from consumers.monitor import Monitor
    from driftloop.alerts import AlertService
    from driftloop.core.config import load_config
    from driftloop.core.store import Store
    from driftloop.monitoring.analysis import DriftAnalyser

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    cfg = load_config(path)
    store = Store.from_config(cfg.store)
    store.create_schema()
    alerts = AlertService(cfg, store)
    monitor = Monitor(cfg, store, analyser=DriftAnalyser(cfg, store, on_detections=alerts.on_detections))
    monitor.install_signal_handlers()
    alerts.start()
    try:
        monitor.run(max_seconds=max_seconds)
    finally:
        alerts.stop()


if __name__ == "__main__":
    main(sys.argv[1], *(float(a) for a in sys.argv[2:3]))
