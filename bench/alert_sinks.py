"""Does a slow or failing alert sink slow ingestion down? Measured, phase by phase.

Runs the monitor's batch path (``consumers.ingest.prepare`` + ``commit``: decode, validate,
join, counters, offsets in one SQLite transaction) on synthetic prediction batches, with an
analyser that feeds the alert manager detections that fire and clear every few batches — so
every few batches commit alert changes and queue deliveries for two webhook sinks on a local
HTTP receiver. Ingestion runs without a pause through four phases:

1. ``no dispatcher`` — nothing delivers (the reference);
2. ``sinks healthy`` — the dispatcher runs, one worker per sink;
3. ``outage`` — the ``bad`` sink hangs (scenario ``hung``: requests time out after 5 s) or
   answers 500 (scenario ``failing``); the ``healthy`` sink stays up;
4. ``recovered`` — the bad sink answers again.

Printed per run: events/s of each phase, the outage/healthy ratio, the ingest thread's CPU per
event, what the healthy sink delivered during the outage, how long after recovery every queued
delivery was accepted, and distinct idempotency keys accepted per sink (= alert changes).

Usage: ``python bench/alert_sinks.py [--phase 4] [--batch 1000] [--repeat 2]``
(the issue's "a minute": ``--phase 60 --repeat 1``).
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson
import sqlalchemy as sa

from consumers.ingest import RawRecord as Rec
from consumers.ingest import commit, prepare
from detectors.base import Detection, Window
from driftloop.alerts import AlertDispatcher, AlertManager, AlertsConfig
from driftloop.alerts import tables as t
from driftloop.alerts.sinks import build_sinks
from driftloop.core.config import load_config_dict
from driftloop.core.store import Store, now_ms

FEATURES = {f"f{i}": "numeric" for i in range(8)} | {"country": "categorical"}


class Receiver:
    """POST receiver; ``mode[path]`` is ``ok``, ``hang`` (until the outage ends) or ``fail`` (500)."""

    def __init__(self) -> None:
        self.mode: dict[str, str] = {}
        self.accepted: dict[str, set[str]] = {}
        self.recovered = threading.Event()
        recv = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                mode = recv.mode.get(self.path, "ok")
                if mode == "hang":
                    recv.recovered.wait(300)
                    mode = recv.mode.get(self.path, "ok")
                status = 500 if mode == "fail" else 200
                if status == 200:
                    recv.accepted.setdefault(self.path, set()).add(self.headers.get("Idempotency-Key", ""))
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.recovered.set()
        self.server.shutdown()


class Analyser:
    """Every ``every`` batches, 3 features of the model start or stop drifting."""

    def __init__(self, manager: AlertManager, every: int = 5) -> None:
        self.manager, self.every, self.n, self.changes = manager, every, 0, 0

    def stamp_versions(self, predictions: Any, conn: Any = None) -> None:
        """No registry here: events keep the version they name."""

    def analyse(self, conn: Any, result: Any, now: int) -> None:
        self.n += 1
        if self.n % self.every:
            return
        firing = (self.n // self.every) % 2 == 1
        base = (self.n // (2 * self.every)) * 3
        dets = [Detection("data_drift", "psi", f"f{(base + k) % 8}", 0.3, 1e-6, 0.1, Window(0, 1, 1000),
                          firing=firing, summary=f"feature `f{(base + k) % 8}` drifted (PSI 0.30)")
                for k in range(3)]
        self.changes += len(self.manager.process(conn, "bench", "1", dets, now))


def batches(cfg: Any, size: int):
    i = 0
    while True:
        recs = []
        for _ in range(size):
            ev = {"event_id": f"e{i}", "model": "bench", "ts": 1_700_000_000_000 + i,
                  "features": {f"f{j}": (i * 7 + j) % 101 / 10 for j in range(8)} | {"country": "DE"},
                  "prediction": i % 2}
            recs.append(Rec(cfg.topics.predictions, 0, i, orjson.dumps(ev)))
            i += 1
        yield recs


def backlog_watch(store: Store, recovery_ms: int, recovered_at: float, out: dict[str, Any]) -> None:
    """Note when every delivery queued before the recovery has been accepted."""
    d = t.alert_deliveries
    out["all_sent_after_recovery_s"] = None
    while time.perf_counter() - recovered_at < 120:
        with store.engine.connect() as c:
            pending = c.execute(sa.select(sa.func.count()).select_from(d).where(
                d.c.status == "pending", d.c.sink != "kafka", d.c.created_at <= recovery_ms)).scalar_one()
        if pending == 0:
            out["all_sent_after_recovery_s"] = time.perf_counter() - recovered_at
            return
        time.sleep(0.02)


PHASES = ("no dispatcher", "sinks healthy", "outage", "recovered")


def run(scenario: str, phase_s: float, size: int, tmp: Path) -> dict[str, Any]:
    """One run: ingestion goes on through four phases of ``phase_s`` seconds each."""
    tmp.mkdir(parents=True, exist_ok=True)
    recv = Receiver()
    sinks = [{"name": "healthy", "type": "webhook", "url": recv.base + "/healthy", "timeout_s": 5},
             {"name": "bad", "type": "webhook", "url": recv.base + "/bad", "timeout_s": 5}]
    acfg = AlertsConfig.from_dict({"group_window_s": 0, "hold_down_s": 0, "cooldown_s": 0, "group_min": 99,
                                   "sinks": sinks, "dispatch": {"backoff_initial_s": 0.5, "backoff_max_s": 5}})
    cfg = load_config_dict({"store": {"url": f"sqlite:///{tmp}/{scenario}.db"},
                            "models": {"bench": {"task": "classification", "features": FEATURES}},
                            "alerts": {}}, environ={})
    store = Store.from_config(cfg.store)
    store.create_schema()
    manager = AlertManager(acfg, store)
    analyser = Analyser(manager)
    dispatcher = AlertDispatcher(store, acfg, build_sinks(cfg, acfg, kafka=False))
    manager.add_listener(dispatcher.wake)
    gen = batches(cfg, size)
    expected: dict = {}
    out: dict[str, Any] = {"scenario": scenario, "phases": {}}
    recovered_at = None
    watcher = None
    for phase in PHASES:
        if phase == "sinks healthy":
            dispatcher.start()
        elif phase == "outage":
            recv.mode["/bad"] = "hang" if scenario == "hung" else "fail"
            sent0 = dispatcher.stats["healthy"].sent
        elif phase == "recovered":
            recv.mode["/bad"] = "ok"
            recv.recovered.set()
            recovered_at = time.perf_counter()
            watcher = threading.Thread(target=backlog_watch, args=(store, now_ms(), recovered_at, out), daemon=True)
            watcher.start()
        events, lat, changes0 = 0, [], analyser.changes
        cpu0, t0 = time.thread_time(), time.perf_counter()
        while time.perf_counter() - t0 < phase_s:
            recs = next(gen)
            b0 = time.perf_counter()
            now = now_ms()
            pb = prepare(recs, cfg, now)
            commit(store, cfg, pb, group="bench", expected=expected, now=now, analyser=analyser)
            expected.update(pb.next_offsets)
            lat.append(time.perf_counter() - b0)
            events += len(recs)
        elapsed = time.perf_counter() - t0
        out["phases"][phase] = {"events_per_s": events / elapsed,
                                "cpu_us_per_event": (time.thread_time() - cpu0) / events * 1e6,
                                "p99_batch_ms": sorted(lat)[int(0.99 * (len(lat) - 1))] * 1000,
                                "changes": analyser.changes - changes0}
        if phase == "outage":
            out["outage_healthy_sent"] = dispatcher.stats["healthy"].sent - sent0
            out["outage_changes"] = analyser.changes - changes0
            out["outage_bad_failures"] = dispatcher.stats["bad"].failures
    if watcher is not None:
        watcher.join(120)
    time.sleep(0.5)   # let the last changes of the recovered phase go out too
    out["changes"] = analyser.changes
    out["accepted"] = {k: len(v) for k, v in recv.accepted.items()}
    dispatcher.stop(2)
    recv.close()
    store.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phase", type=float, default=4.0, help="seconds per phase (the outage lasts one phase)")
    ap.add_argument("--batch", type=int, default=1000, help="events per batch transaction")
    ap.add_argument("--scenarios", default="hung,failing")
    ap.add_argument("--repeat", type=int, default=2, help="runs per scenario (interleaved)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)   # the failing sink's retries would flood the output
    names = a.scenarios.split(",")
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as d:
        for rep in range(a.repeat):          # interleaved, so that load from elsewhere hits every scenario
            for n in names:
                runs[n].append(run(n, a.phase, a.batch, Path(d) / f"r{rep}"))
    print(f"{a.repeat} run(s) per scenario; phases of {a.phase:g} s; batches of {a.batch} events "
          f"(decode + validate + join + counters + offsets + alerts, one SQLite transaction each)")
    print(f"{'scenario':<8} {'run':>3} " + " ".join(f"{p:>15}" for p in PHASES)
          + f" {'outage/healthy':>15} {'cpu µs/ev (h/o)':>16} {'ok sink: sent/changes in outage':>31} "
          f"{'bad sink fails':>15} {'all sent after recovery':>24} {'accepted keys ok/bad/changes':>29}")
    for n in names:
        for i, r in enumerate(runs[n]):
            ph = r["phases"]
            ratio = ph["outage"]["events_per_s"] / ph["sinks healthy"]["events_per_s"]
            rec = r["all_sent_after_recovery_s"]
            print(f"{n:<8} {i + 1:>3} " + " ".join(f"{ph[p]['events_per_s']:>11,.0f} ev/s" for p in PHASES)
                  + f" {ratio:>15.2f} {ph['sinks healthy']['cpu_us_per_event']:>7.0f}/{ph['outage']['cpu_us_per_event']:<8.0f}"
                  + f" {str(r['outage_healthy_sent']) + ' / ' + str(r['outage_changes']):>31} {r['outage_bad_failures']:>15} "
                  + f"{('NOT DONE' if rec is None else f'{rec:.2f} s'):>24} "
                  + f"{r['accepted'].get('/healthy', 0):>17}/{r['accepted'].get('/bad', 0)}/{r['changes']}")


if __name__ == "__main__":
    main()
