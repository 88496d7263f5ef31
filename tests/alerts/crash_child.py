"""Child process for the crash tests: commits an alert, then waits to be killed with SIGKILL.

usage: python -m tests.alerts.crash_child STORE_URL RECEIVER_BASE MODE
MODE ``committed``: write the alert in a batch transaction, say so, wait (no dispatcher).
MODE ``in-flight``: the same, then run the dispatcher; the receiver hangs the request; wait.
"""
from __future__ import annotations

import sys
import time


def main(url: str, base: str, mode: str) -> None:
    from driftloop.alerts import AlertDispatcher, AlertManager, AlertsConfig
    from driftloop.alerts.sinks import build_sinks
    from driftloop.core.store import Store
    from tests.alerts.helpers import det

    cfg = AlertsConfig.from_dict({
        "group_window_s": 0, "hold_down_s": 0,
        "sinks": [{"name": "hook", "type": "webhook", "page": "alerts", "url": base + "/hook", "secret": "k", "timeout_s": 1.5}],
        "dispatch": {"lease_s": 2, "poll_interval_s": 0.05}})
    store = Store(url)
    store.create_schema()
    manager = AlertManager(cfg, store)
    with store.transaction() as conn:
        changes = manager.process(conn, "fraud", "3", [det("amount"), det("age", kind="prediction_drift")],
                                  int(time.time() * 1000))
    print("committed", " ".join(c.idempotency_key for c in changes), flush=True)
    if mode == "in-flight":
        AlertDispatcher(store, cfg, build_sinks(None, cfg, kafka=False)).start()
    time.sleep(600)


if __name__ == "__main__":
    main(*sys.argv[1:4])
