"""SIGKILL between writing an alert and delivering it: after a restart it is delivered, never
twice under the same key when the kill came before the send, and at most repeated under the
same key when the kill came mid-request (at-least-once)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from driftloop.alerts import AlertDispatcher, AlertsConfig
from driftloop.alerts import tables as t
from driftloop.alerts.sinks import build_sinks, verify_signature
from tests.alerts.helpers import Behaviour

ROOT = Path(__file__).resolve().parents[2]


def run_child(url: str, base: str, mode: str) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.alerts.crash_child", url, base, mode], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = proc.stdout.readline().split()
    assert line and line[0] == "committed", line
    return proc, line[1:]


def fresh_dispatcher(store, base: str) -> AlertDispatcher:
    cfg = AlertsConfig.from_dict({"sinks": [{"name": "hook", "type": "webhook", "page": "alerts", "url": base + "/hook", "secret": "k",
                                             "timeout_s": 1.5}],
                                  "dispatch": {"lease_s": 2, "poll_interval_s": 0.05}})
    return AlertDispatcher(store, cfg, build_sinks(None, cfg, kafka=False))


def sent_status(store) -> dict[str, str]:
    with store.engine.connect() as c:
        return {r.idempotency_key: r.status for r in c.execute(
            sa.select(t.alert_deliveries).where(t.alert_deliveries.c.sink == "hook"))}


def test_killed_after_commit_before_delivery(any_store, receiver):
    proc, keys = run_child(any_store.url.replace("+psycopg", ""), receiver.base, "committed")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert len(keys) == 2 and receiver.attempts == []
    d = fresh_dispatcher(any_store, receiver.base)
    assert d.deliver_pending_once() == 2
    assert d.deliver_pending_once() == 0
    got = receiver.on("/hook")
    assert sorted(r.key for r in got) == sorted(keys)          # each key exactly once
    assert all(verify_signature(b"k", r.body, r.headers) for r in got)
    assert set(sent_status(any_store).values()) == {"sent"}


def test_killed_mid_request_is_redelivered_under_the_same_key(sqlite_store, receiver):
    hang = receiver.behaviour["/hook"] = Behaviour(hang=True)
    proc, keys = run_child(sqlite_store.url, receiver.base, "in-flight")
    assert hang.hanging.wait(20)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    hang.release.set()                       # the receiver got the first request(s) of the dead process
    d = fresh_dispatcher(sqlite_store, receiver.base)
    deadline = time.monotonic() + 20
    while set(sent_status(sqlite_store).values()) != {"sent"}:
        assert time.monotonic() < deadline
        d.deliver_pending_once()             # waits out the dead process's lease, then sends
        time.sleep(0.1)
    got = receiver.on("/hook")
    assert {r.key for r in got} == set(keys)          # every change arrived ...
    assert len(got) >= len(keys)                      # ... possibly twice, always under the same key
    assert all(verify_signature(b"k", r.body, r.headers) for r in got)
