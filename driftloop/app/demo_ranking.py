"""``driftloop demo --task ranking``: the loop for a recommender, on a synthetic shop.

The stages are the classifier demo's (:mod:`driftloop.app.demo`), with a ranking model
(contract v1.1, ``task: ranking``) and the shop of :mod:`driftloop.app.demo_shop`:

1. fresh topics, a store and a registry in a temporary folder;
2. the shop's recommender (popularity per shopper segment, :class:`retrain.ranker.PopularityRanker`)
   fitted on yesterday's engagement and registered as champion v1, with a reference sample of
   requests (its lists and the engagement they got);
3. the monitor and a retrain worker, in the background;
4. the shop's service publishes each request's recommended list and, a little later, what the
   shopper engaged with; part-way, new products launch and the students take to them;
5. what the topics show: the NDCG@10 alert, the retraining job, the challenger retrained on
   recent engagement promoted when it beats the champion on the same held-out requests, and
   NDCG@10 recovering under the new champion (the monitor's own windows, from its statistics
   history);
6. a summary.

``make demo`` stays the classifier demo.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from driftloop.app.demo import (
    FAST,
    FULL,
    STEP_MS,
    DemoResult,
    _await_loop,
    _event_ts,
    _Loop,
    _Narrator,
    _print_summary,
    _retrain_window_s,
    _Serving,
    _show_dashboard,
    _Sizes,
    _start_services,
    _stop,
    demo_services,
)

__all__ = ["run_ranking_demo", "SHOP", "recovery", "missing_steps"]

SHOP = "shop"


def _config(bootstrap: str, workdir: Path, sizes: _Sizes) -> dict[str, Any]:
    from driftloop.app.demo_shop import FEATURES

    return {
        **demo_services(bootstrap, workdir),
        "models": {SHOP: {
            "task": "ranking", "features": dict(FEATURES), "reference": "reference.jsonl",
            "detectors": {"window_size": sizes.window, "warmup": sizes.window // 2},
            "retrain": {"on_kinds": ["performance"], "min_severity": "warning",
                        "min_examples": sizes.retrain_rows // 2, "max_examples": sizes.retrain_rows,
                        "window_s": _retrain_window_s(sizes), "cooldown_s": 120,
                        "metric": "ndcg@10", "min_delta": 0.01,
                        "recipe": {"estimator": "retrain.ranker.PopularityRanker", "preprocess": "none",
                                   "params": {"segment_features": ["user_segment"], "half_life": 2000.0, "k": 20}}},
        }},
    }


def _set_up(bootstrap: str, workdir: Path, sizes: _Sizes, console: Any) -> tuple[_Loop, Any]:
    """Stages 1 and 2: config, topics, store; the champion fitted and registered as v1."""
    import skops.io as sio

    from driftloop.app.demo_shop import ndcg_at_10, reference_frame, shop_requests, train_champion
    from driftloop.core.config import load_config
    from driftloop.core.store import Store
    from driftloop.kafka.topics import create_topics
    from retrain.registry import Registry

    with console.status("generating the shop's requests and fitting its recommender ..."):
        X, y = shop_requests(sizes.train, changed=False, seed=7)
        model = train_champion(X, y)
        Xr, yr = shop_requests(sizes.reference, changed=False, seed=8)
        ref = reference_frame(model, Xr, yr)
        ref.to_json(workdir / "reference.jsonl", orient="records", lines=True)
    cfg_path = workdir / "driftloop.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(bootstrap, workdir, sizes), sort_keys=False))
    cfg = load_config(cfg_path, environ={})
    create_topics(cfg)
    store = Store.from_config(cfg.store)
    store.create_schema()
    registry = Registry(cfg, store)
    sio.dump(model, workdir / "champion.skops")
    registry.register(SHOP, workdir / "champion.skops", ref, actor="demo", promote=True,
                      note="popularity per shopper segment, fitted on yesterday's engagement",
                      trust=["retrain.ranker.PopularityRanker"])   # the file the demo just wrote
    console.print(f"champion v1: popularity per shopper segment on {sizes.train:,} requests; NDCG@10 "
                  f"{ndcg_at_10(list(model.predict(Xr)), yr):.3f} on its {sizes.reference:,} reference requests")
    return _Loop(cfg_path, cfg, store, registry), model


def _publish(pub: Any, serving: _Serving, X: pd.DataFrame, labels: list[Any], t: Callable[[int], int],
             start: int, stop: int, label_lag: int, n: int) -> None:
    """Requests ``start``..``stop`` with the served champion's lists, and the engagement of
    the requests ``label_lag`` before them."""
    from detectors.ranking_lists import decode_ranking

    rows = X.iloc[start:stop]
    lists = serving.model.predict(rows)
    for k, (i, row) in enumerate(zip(range(start, stop), rows.to_dict("records"), strict=True)):
        feats = {c: (v if isinstance(v, str) else float(v)) for c, v in row.items()}
        pub.prediction(SHOP, f"ev-{i}", feats, prediction=decode_ranking(lists[k]),
                       model_version=serving.version, ts=t(i))
    for j in range(max(0, start - label_lag), max(0, stop - label_lag)):
        pub.label(SHOP, f"ev-{j}", labels[j], ts=t(j) + STEP_MS // 2)


def _play(pub: Any, serving: _Serving, X: pd.DataFrame, labels: list[Any], t: Callable[[int], int],
          sizes: _Sizes, result: DemoResult, narrate: Callable[[], None], fast: bool, chunk: int = 250) -> int:
    """Stage 4: requests and, ``label_lag`` requests later, their engagement, until the monitor
    has judged three labelled windows of the new champion on its own sample, or the stream ends.
    Once an alert has fired, the shop serves at most two windows more before the retraining's
    champion takes over. Conditions, not a pace: however slow the machine (on a loaded one the
    promotion came after the stream had ended), the recovery is measured. Returns the requests
    published."""
    n, switched_at, fired_at, stop = len(labels), None, None, 0
    for start in range(0, n, chunk):
        _keep_pace(serving, start - 2 * sizes.window, sizes.window, narrate)
        serving.follow_champion()
        if fired_at is None and any(a["status"] == "firing" for a in result.alerts):
            fired_at = start
        if switched_at is None and fired_at is not None and start - fired_at >= 2 * sizes.window:
            _await_switch(serving, narrate)
        if switched_at is None and serving.version != "1":
            switched_at = start
            serving.console.print(f"[bold]from request {start:,} on the shop serves v{serving.version}[/]")
        stop = min(start + chunk, n)
        _publish(pub, serving, X, labels, t, start, stop, sizes.label_lag, n)
        pub.flush(wait=False)
        narrate()
        time.sleep(0.05 if fast else 0.1)
        if (switched_at is not None and stop - switched_at >= 3 * sizes.window + sizes.label_lag
                and _judged_on_own_sample(serving.loop.store, serving.version) >= 3):
            break
    for j in range(max(0, stop - sizes.label_lag), stop):     # the last requests' engagement
        pub.label(SHOP, f"ev-{j}", labels[j], ts=t(j) + STEP_MS // 2)
    pub.flush()
    return stop


def _await_switch(serving: _Serving, narrate: Callable[[], None], timeout_s: float = 60.0) -> None:
    """Wait (narrating) until the service serves a champion other than v1. Gives up after
    ``timeout_s`` (the demo then reports the loop did not close)."""
    deadline = time.monotonic() + timeout_s
    while serving.version == "1" and time.monotonic() < deadline:
        narrate()
        serving.follow_champion()
        time.sleep(0.2)


def _judged_on_own_sample(store: Any, version: str) -> int:
    """The labelled windows of ``version`` the monitor has judged against its own sample (0
    while it still judges them against its predecessor's, or has not seen the version)."""
    from detectors.versions import VersionedMonitor

    blob = store.load_detector_state(SHOP)
    if blob is None:
        return 0
    monitors = VersionedMonitor.from_snapshot(blob)
    if version not in monitors or monitors.reference_of.get(version) != version:
        return 0
    return int(monitors.versions[version].status()["windows_judged"]["labelled"])


def _await_judged(store: Any, narrate: Callable[[], None], timeout_s: float = 60.0) -> None:
    """Wait (narrating) until the judging process has judged every journalled batch (with the
    default ``analysis.mode: apart`` it judges beside ingestion), so the new champion's last
    windows are judged before the monitor stops. Gives up after ``timeout_s``."""
    from driftloop.monitoring.journal import backlog

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with store.read_engine.connect() as conn:
            if backlog(conn).entries == 0:
                return
        narrate()
        time.sleep(0.2)


def _keep_pace(serving: _Serving, joined: int, window: int, narrate: Callable[[], None],
               timeout_s: float = 60.0) -> None:
    """Wait (narrating) until the monitor has joined ``joined`` requests and at most ``window``
    events wait to be judged: the shop never runs more than about two windows ahead of the
    detectors, so on a slow machine the promotion still comes while the shop serves (a condition,
    not a pace). Gives up after ``timeout_s``."""
    from driftloop.app.stats import collect_stats
    from driftloop.monitoring.journal import backlog

    deadline = time.monotonic() + timeout_s
    while joined > 0 and time.monotonic() < deadline:
        if collect_stats(serving.loop.cfg, serving.loop.store)["models"][SHOP]["joined"] >= joined:
            with serving.loop.store.read_engine.connect() as conn:
                if backlog(conn).events <= window:
                    return
        narrate()
        time.sleep(0.2)


def recovery(store: Any, model: str = SHOP, metric: str = "ndcg@10") -> dict[str, list[float]]:
    """The monitor's realised ``metric`` per labelled window, by the version that served it
    (its statistics history): what shows the drop and the recovery."""
    from driftloop.monitoring.history import read_performance_history

    with store.engine.connect() as conn:
        rows = read_performance_history(conn, model, metrics=[metric])
    out: dict[str, list[float]] = {}
    for r in rows:
        if r.get("source") == "realised" and r.get("value") is not None:
            out.setdefault(str(r.get("model_version")), []).append(float(r["value"]))
    return out


def run_ranking_demo(*, bootstrap: str = "127.0.0.1:9092", fast: bool = False, keep: bool = False,
                     console: Any = None) -> DemoResult:
    """Run the ranking demo's six stages (module docstring); returns what the topics showed.
    ``result.stats["recovery"]`` holds the monitor's NDCG@10 per labelled window by version."""
    from rich.console import Console

    from driftloop.app.demo_shop import shop_requests
    from driftloop.core.config import KafkaConfig
    from driftloop.kafka.clients import wait_for_broker
    from driftloop.kafka.publisher import Publisher

    console = console or Console()
    base = FAST if fast else FULL
    sizes = replace(base, after=4 * base.after)    # room to serve the new champion after the promotion
    t_start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="driftloop-demo-ranking-"))
    console.rule("[bold]driftloop demo: a recommender (task: ranking)")
    console.print(f"broker {bootstrap}; work folder {workdir}")
    wait_for_broker(KafkaConfig(bootstrap_servers=bootstrap), timeout_s=30)
    loop, model = _set_up(bootstrap, workdir, sizes, console)
    result = DemoResult(config_path=loop.cfg_path, workdir=workdir)
    service, worker, threads = _start_services(loop)
    narrator = _Narrator(bootstrap, loop.cfg, result)
    _show_dashboard(service, threads[0], console)
    Xb, yb = shop_requests(sizes.before, changed=False, seed=11)
    Xa, ya = shop_requests(sizes.after, changed=True, seed=12)
    X, labels = pd.concat([Xb, Xa], ignore_index=True), yb + ya
    n, t0 = len(labels), int(time.time() * 1000)
    serving = _Serving(loop, console, model, name=SHOP)
    console.print(f"the shop serves up to {n:,} requests; at request {sizes.before:,} 40 new products launch "
                  "and the students take to them")

    def t(i: int) -> int:
        return _event_ts(i, n, sizes.before, t0)

    cfg = loop.cfg
    with Publisher(bootstrap, predictions_topic=cfg.topics.predictions, labels_topic=cfg.topics.labels,
                   batch_size=250, linger_s=0.05) as pub:
        published = _play(pub, serving, X, labels, t, sizes, result, lambda: narrator.poll(console), fast)
        _await_loop(loop, result, serving, published, lambda: narrator.poll(console), lambda k: None)
        _await_judged(loop.store, lambda: narrator.poll(console))
    narrator.close()
    _stop(loop, result, service, worker, threads, name=SHOP)
    store = _fresh_store(loop)
    try:
        result.stats["recovery"] = recovery(store)
    finally:
        store.dispose()
    _print_recovery(console, result.stats["recovery"])
    _print_summary(console, result, t_start, service, loop.cfg_path, keep, name=SHOP)
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
        result.workdir = None
    else:
        console.print(f"kept {workdir} (config: {loop.cfg_path})")
    return result


def missing_steps(result: DemoResult) -> list[str]:
    """The classifier demo's steps (an alert, a promotion, the alerts it answered resolved),
    and the recovery: the promoted challenger's last labelled window scores NDCG@10 at least
    90% of the champion's first one (before the change), as the monitor measured them."""
    missing = result.missing_steps()
    by_version = result.stats.get("recovery") or {}
    first = (by_version.get("1") or [None])[0]
    promoted = [str(d["version"]) for d in result.decisions if d["event"] == "promoted" and str(d["version"]) != "1"]
    after = by_version.get(promoted[-1]) if promoted else None
    if promoted and not after:
        missing.append(f"no labelled window was judged for v{promoted[-1]}")
    elif promoted and after and first is not None and after[-1] < 0.9 * first:
        missing.append(f"NDCG@10 did not recover: v{promoted[-1]}'s last window {after[-1]:.3f} against "
                       f"v1's first {first:.3f}")
    return missing


def _fresh_store(loop: _Loop) -> Any:
    """A fresh store on the demo's database (the loop's own was disposed by ``_stop``)."""
    from driftloop.core.store import Store

    return Store.from_config(loop.cfg.store)


def _print_recovery(console: Any, by_version: dict[str, list[float]]) -> None:
    for version, values in sorted(by_version.items()):
        shown = ", ".join(f"{v:.2f}" for v in values)
        console.print(f"NDCG@10 per labelled window served by v{version} (the monitor's): {shown}")
