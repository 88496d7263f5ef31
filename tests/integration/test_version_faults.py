"""SIGKILLs of the monitor during a promotion hand-over and a shadow phase (issue 14), compared
with an uninterrupted run of the same events: exact counts, each version's detectors and each
shadow comparison restored value for value, the same alerts.

Two pipelines (see :mod:`tests.integration.test_process_faults`, whose pieces this reuses) read
the same predictions and labels topics, each with its own store, registry (v1 champion, v2
registered) and group; the ``chaos`` monitor is SIGKILLed again and again. The stream, gated so
that both pipelines switch at the same point of it:

1. v1 serves 500 requests (the events name no version: the champion's); half of the labels come;
2. v2 is promoted in both registries; the stream waits until both monitors follow it;
3. v1's late labels arrive beside v2's traffic (events naming no version: now v2's), and a
   shadow challenger v3 answers the same requests (``"shadow": true``); all labelled.
"""
from __future__ import annotations

import random
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import skops.io as sio
import yaml

from detectors.versions import VersionedMonitor
from driftloop.core.config import load_config
from driftloop.kafka.topics import create_topics
from retrain.registry import Registry
from tests.fault_helpers import wait_until
from tests.integration.test_process_faults import (
    MODEL,
    Killer,
    Pipeline,
    killers_ok,
    outcome,
    pipeline_config,
    settled,
)
from tests.kafka_helpers import produce
from tests.retrain.helpers import AGRAWAL, agrawal, fitted_model, frame

pytestmark = pytest.mark.kafka

MIN_KILLS = 6
N = 500


def config(tmp: Path, name: str, bootstrap: str, shared: str, analysis: str = "inline") -> tuple[Path, Any]:
    """The fault test's pipeline config without retraining (no worker runs here)."""
    path, _ = pipeline_config(tmp, name, bootstrap, shared, analysis)
    data = yaml.safe_load(path.read_text())
    del data["models"][MODEL]["retrain"]
    data["versions"] = {"shadow_min_labels": 100}
    path.write_text(yaml.safe_dump(data))
    return path, load_config(path, environ={})


def events(cfg: Any, rows: list[Any], est: Any, start: int, t0: int, *, version: str | None = None,
           shadow: bool = False, predictions: bool = True, labels: range | None = None) -> list[Any]:
    preds = est.predict(frame(rows)[list(AGRAWAL)])
    out = []
    for i, ((x, y), p) in enumerate(zip(rows, preds)):
        eid = f"p{start + i}"
        if predictions:
            ev: dict[str, Any] = {"event_id": eid, "model": MODEL, "ts": t0 + start + i, "features": x,
                                  "prediction": str(p)}
            if version is not None:
                ev["model_version"] = version
            if shadow:
                ev["shadow"] = True
            out.append((cfg.topics.predictions, MODEL.encode(), orjson.dumps(ev)))
        if labels is not None and i in labels:
            out.append((cfg.topics.labels, MODEL.encode(), orjson.dumps(
                {"event_id": eid, "model": MODEL, "ts": t0 + start + i + 1, "label": y})))
    return out


def counters(pipe: Pipeline) -> dict[str, int]:
    return pipe.store.read_counters().get(MODEL, {})


@pytest.mark.parametrize("analysis", ["inline", "apart"])
def test_sigkills_during_a_hand_over_and_a_shadow_phase_equal_an_uninterrupted_run(kafka_bootstrap, tmp_path,
                                                                                    analysis):
    """``apart``: the killed monitor judges in a child process (analysis.mode: apart); the
    uninterrupted one inline. Each step waits until both judged what they counted, so the
    promotion lands at the same point of the stream in both."""
    rng = random.Random(20261205)
    shared = uuid.uuid4().hex[:8]
    pipes = [Pipeline(name, *config(tmp_path, name, kafka_bootstrap, shared,
                                    analysis if name == "chaos" else "inline"), tmp=tmp_path)
             for name in ("reference", "chaos")]
    ref, chaos = pipes
    v1 = fitted_model(agrawal(2000, function=0, seed=1))
    v2 = fitted_model(agrawal(2000, function=2, seed=2))
    v3 = fitted_model(agrawal(2000, function=2, seed=3))
    for p in pipes:
        create_topics(p.cfg)
        reg = Registry(p.cfg, p.store)
        for version, (est, seed) in enumerate(((v1, 5), (v2, 6)), start=1):
            path = tmp_path / f"v{version}.skops"
            sio.dump(est, path)
            sample = frame(agrawal(1000, function=0 if version == 1 else 2, seed=seed))
            reg.register(MODEL, path, sample.assign(prediction=est.predict(sample[list(AGRAWAL)])), actor="test",
                         promote=version == 1, trust=sio.get_untrusted_types(file=path))
    t0 = int(time.time() * 1000) - 3_600_000
    cfg = ref.cfg
    ref.start("monitor")
    killer = Killer(chaos, "monitor", "; resuming from stored offsets", 2.5, rng)
    killer.start()
    t_start = time.monotonic()

    def both(pred: Any, what: str, timeout_s: float = 120) -> None:
        wait_until(lambda: killers_ok([killer]) and all(pred(p) and p.judged() for p in pipes), timeout_s, what,
                   every_s=0.3)
    try:
        served = agrawal(N, function=2, seed=11)
        produce(kafka_bootstrap, events(cfg, served, v1, 0, t0, labels=range(N // 2)))
        both(lambda p: counters(p).get("predictions", 0) == N and counters(p).get("joined", 0) == N // 2,
             "v1's requests and half their labels")
        for p in pipes:
            Registry(p.cfg, p.store).promote(MODEL, 2, actor="test", reason="retrained")
        both(lambda p: p.reference_version() == "2", "both monitors follow v2")
        for k in range(2):       # v1's late labels beside v2's traffic, and a shadow v3 on the same requests
            rows = agrawal(N, function=2, seed=20 + k)
            msgs = events(cfg, served, v1, 0, t0, predictions=False, labels=range(N // 2, N)) if k == 0 else []
            msgs += events(cfg, rows, v2, N * (k + 1), t0, labels=range(N))
            msgs += events(cfg, rows, v3, N * (k + 1), t0, version="3", shadow=True)
            produce(kafka_bootstrap, msgs)
            both(lambda p, k=k: counters(p).get("joined", 0) == N * (k + 2)
                 and counters(p).get("shadow_joined", 0) == N * (k + 1), f"chunk {k + 1} after the promotion")
        wait_until(lambda: killers_ok([killer]) and chaos.kills["monitor"] >= MIN_KILLS,
                   max(1.0, 180 - (time.monotonic() - t_start)), f"{MIN_KILLS} kills", every_s=0.5)
        killer.stop.set()
        killer.join(30)
        if killer.error is not None:
            raise killer.error
        wait_until(lambda: all(settled(p) for p in pipes), 60, "no alert tick due in either")
        got = {p.name: outcome(p) for p in pipes}
        shadow_counts = {p.name: {k: v for k, v in counters(p).items() if k.startswith("shadow")} for p in pipes}
        states = {p.name: VersionedMonitor.from_snapshot(p.store.detector_state_row(MODEL)[0]) for p in pipes}
    finally:
        killer.stop.set()
        killer.join(30)
        for p in pipes:
            p.stop_all()
    print(f"\nkills: {chaos.kills} in {time.monotonic() - t_start:.0f}s")
    assert chaos.kills["monitor"] >= MIN_KILLS
    want = {"predictions": 3 * N, "labels": 3 * N, "joined": 3 * N, "invalid": 0, "duplicates": 0,
            "pending_labels": 0}
    assert got["reference"]["counts"] == got["chaos"]["counts"] == want
    assert shadow_counts["chaos"] == shadow_counts["reference"]
    assert shadow_counts["reference"]["shadow_joined"] == shadow_counts["reference"]["shadow_predictions"] == 2 * N
    assert got["chaos"]["detector_state"] == got["reference"]["detector_state"], "each version's state restored"
    assert got["chaos"]["alerts"] == got["reference"]["alerts"]
    assert got["chaos"]["announced"] == got["reference"]["announced"]
    assert got["chaos"]["incidents"] == got["reference"]["incidents"]
    mon = states["chaos"]
    assert mon.champion == "2" and mon.phase == {"1": "draining", "2": "serving"}
    assert mon.versions["1"].status()["labelled"] == N and mon.versions["2"].status()["labelled"] == 2 * N
    assert mon.shadows["3"].n == 2 * N
    assert mon.status()["shadows"] == states["reference"].status()["shadows"]
