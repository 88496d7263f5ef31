"""``driftloop demo``: the whole loop on a local broker, with a real scikit-learn model and a drift.

1. checks the broker, creates fresh demo topics, a store and a registry in a temporary folder;
2. trains a gradient-boosted loan-approval model on River's Agrawal data (concept 0) and
   registers it as champion v1, with a held-out sample (and the model's outputs on it) as its
   drift reference;
3. starts the monitor (consumers, detectors, alerts, retraining policy, HTTP API and dashboard)
   and a retrain worker, in the background;
4. plays the ML service: publishes predictions of the current champion and, a little later,
   the true labels, through :class:`driftloop.Publisher`; part-way the world changes (concept 2,
   salaries +30%), and whenever the registry promotes a new champion the service serves it;
5. shows what happens as the contract's consumers see it, read from the topics: alerts
   (``driftloop.alerts``), the retraining job (``driftloop.retrain``), the decision with the
   challenger's and the champion's scores (``driftloop.models``), and the alerts resolving;
6. prints a summary and removes what it started (``--keep`` keeps the work folder).
"""
from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

__all__ = ["run_demo", "DemoResult", "DemoDependencyMissing", "require_demo_dependencies"]

MODEL = "loans"
INSTALL_HINT = "pip install 'driftloop[demo]'"


class DemoDependencyMissing(RuntimeError):
    """A package only the demo needs (River, for its data) is not installed."""


def require_demo_dependencies() -> None:
    """The demo's data come from River's Agrawal generator; River is the ``demo`` extra (not a
    dependency of the monitor or the worker), so say how to get it before anything starts."""
    import importlib.util

    if importlib.util.find_spec("river") is None:
        raise DemoDependencyMissing(
            "`driftloop demo` generates its data with River's Agrawal generator, and the `river` package "
            f"is not installed; install the demo's extra: {INSTALL_HINT}")


@dataclass
class DemoResult:
    config_path: Path
    alerts: list[dict[str, Any]] = field(default_factory=list)        # alert messages, in order
    jobs: list[dict[str, Any]] = field(default_factory=list)          # retraining jobs
    decisions: list[dict[str, Any]] = field(default_factory=list)     # registry events
    stats: dict[str, Any] = field(default_factory=dict)
    champion: str | None = None
    workdir: Path | None = None

    def missing_steps(self) -> list[str]:
        """What of the loop the topics did not show: an alert fired, a challenger (a version
        other than the first champion) was promoted, and the alerts it answered resolved.
        Empty when the loop closed."""
        missing = []
        if not any(a["status"] == "firing" for a in self.alerts):
            missing.append("no alert fired")
        first = next((str(d["version"]) for d in self.decisions if d["event"] == "promoted"), None)
        promotions = [d for d in self.decisions if d["event"] == "promoted" and str(d["version"]) != first]
        if not promotions:
            missing.append("no challenger was promoted")
        resolved = {a["alert_id"] for a in self.alerts if a["status"] == "resolved"}
        answered = {i for d in promotions for i in d.get("reason") or []}
        if promotions and not answered:
            missing.append("the promotion answered no alert")
        if answered - resolved:
            missing.append(f"{len(answered - resolved)} alert(s) the promotion answered did not resolve")
        return missing


@dataclass(frozen=True)
class _Sizes:
    train: int
    reference: int
    before: int
    after: int
    window: int
    label_lag: int
    retrain_rows: int


FULL = _Sizes(train=12_000, reference=5_000, before=10_000, after=15_000, window=2_500, label_lag=300,
              retrain_rows=4_000)
FAST = _Sizes(train=4_000, reference=3_000, before=4_000, after=6_000, window=1_000, label_lag=100,
              retrain_rows=1_500)

# Event time: one event every 100 ms, all in the past, and the world changes after a one-hour pause
# (the events after the change are an hour later than those before it). The retraining window
# (``window_s``) starts inside the pause, so it holds no event from before the change and the
# challenger learns the new world only, however fast or slow this machine publishes (for jobs
# requested within half an hour of the demo's start: see ``_retrain_window_s``).
STEP_MS = 100
PAUSE_MS = 3_600_000


def _event_ts(i: int, n: int, drift_at: int, t0_ms: int) -> int:
    """Prediction ``i``'s event time: ``t0_ms - (2n - i) * STEP_MS``, minus the pause before the change."""
    return t0_ms - (2 * n - i) * STEP_MS - (PAUSE_MS if i < drift_at else 0)


def _retrain_window_s(sizes: _Sizes) -> float:
    """From a job requested while the demo runs (its first half hour), back to half-way into the
    pause: every changed event, no event from before the change."""
    n = sizes.before + sizes.after
    return ((2 * n - sizes.before) * STEP_MS + PAUSE_MS // 2) / 1000


def _config(bootstrap: str, workdir: Path, sizes: _Sizes) -> dict[str, Any]:
    from driftloop.app.demo_data import FEATURES

    tag = uuid.uuid4().hex[:6]
    return {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": f"demo-{tag}",
                  "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
        "topics": {name: f"demo-{tag}.{name}" for name in ("predictions", "labels", "alerts", "retrain", "models", "dlq")}
        | {"partitions": 3},
        "store": {"url": f"sqlite:///{workdir}/driftloop.db"},
        "ingest": {"poll_timeout_ms": 200, "max_poll_records": 2000},
        # a demo lasts minutes: page after 2 s of grouping, resolve after 5 s clear, tick every second
        "alerts": {"group_window_s": 2.0, "hold_down_s": 5.0, "cooldown_s": 30.0, "tick_every_s": 1.0},
        "api": {"port": 0},
        "registry": {"artifact_dir": "registry", "worker_group_id": f"demo-retrain-{tag}", "threads": 1,
                     "poll_timeout_ms": 200,
                     # the one type in a fitted HistGradientBoosting that skops does not trust by default
                     "trusted_types": ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]},
        "models": {MODEL: {
            "task": "classification", "features": dict(FEATURES), "reference": "reference.csv",
            "detectors": {"window_size": sizes.window, "warmup": sizes.window // 2, "domain_classifier_rows": 1000},
            "retrain": {"on_kinds": ["performance", "concept_drift"], "min_severity": "warning",
                        "min_examples": sizes.retrain_rows // 2, "max_examples": sizes.retrain_rows,
                        "window_s": _retrain_window_s(sizes),
                        "cooldown_s": 120, "metric": "accuracy", "min_delta": 0.01,
                        "recipe": {"factory": "driftloop.app.demo_data:make_estimator", "params": {"max_iter": 100},
                                   "preprocess": "none"}},
        }},
    }


class _TopicTail:
    """Reads a topic from its start, non-blocking, as the contract's consumers would."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        import orjson
        from kafka import KafkaConsumer, TopicPartition

        self._loads = orjson.loads
        self.consumer = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False,
                                      auto_offset_reset="earliest")
        parts = self.consumer.partitions_for_topic(topic) or {0}
        self.consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
        self.seen: set[str] = set()

    def poll(self) -> list[dict[str, Any]]:
        out = []
        for recs in self.consumer.poll(timeout_ms=0).values():
            for r in recs:
                key = dict(r.headers or []).get("driftloop-id", b"").decode()
                if key and key in self.seen:   # at-least-once: drop a repeat of the same message
                    continue
                self.seen.add(key)
                out.append(self._loads(r.value))
        return out

    def close(self) -> None:
        self.consumer.close()


def _fmt_metrics(m: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in m.items() if isinstance(v, int | float)) or "-"


class _Narrator:
    """Prints each alert, job and decision once, as it is read from its topic."""

    def __init__(self, bootstrap: str, cfg: Any, result: DemoResult) -> None:
        self.result = result
        self.tails = {"alerts": _TopicTail(bootstrap, cfg.topics.alerts),
                      "jobs": _TopicTail(bootstrap, cfg.topics.retrain),
                      "decisions": _TopicTail(bootstrap, cfg.topics.models)}

    def poll(self, console: Any) -> None:
        for a in self.tails["alerts"].poll():
            self.result.alerts.append(a)
            colour = "red" if a["status"] == "firing" else "green"
            console.print(f"[{colour}]ALERT {a['status'].upper()}[/] [{a['severity']}] "
                          f"{a['kind']}/{a['detector']}: {a['summary']}")
        for j in self.tails["jobs"].poll():
            self.result.jobs.append(j)
            console.print(f"[cyan]RETRAIN JOB[/] {j['job_id']} for {j['model']} ({j.get('trigger')}), "
                          f"because of {len(j.get('reason') or [])} alert(s)")
        for d in self.tails["decisions"].poll():
            self.result.decisions.append(d)
            m = d.get("metrics") or {}
            line = f"[magenta]REGISTRY {d['event'].upper()}[/] {d['model']} v{d['version']}"
            if "challenger" in m:
                line += (f": challenger {_fmt_metrics(m['challenger'])} vs champion {_fmt_metrics(m['champion'])} "
                         f"on the same {m.get('holdout_rows', '?')} held-out rows")
            dec = d.get("decision") or {}
            if dec.get("p_value") is not None:
                line += f" ({dec.get('test')} p={dec['p_value']:.2g})"
            line += f"; champion is v{d.get('champion_version')}"
            console.print(line)

    def close(self) -> None:
        for t in self.tails.values():
            t.close()


def run_demo(*, bootstrap: str = "127.0.0.1:9092", fast: bool = False, keep: bool = False,
             console: Any = None) -> DemoResult:
    import skops.io as sio
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from driftloop.kafka.clients import wait_for_broker
    from driftloop.core.config import KafkaConfig, load_config
    from driftloop.app.demo_data import agrawal_frame, reference_frame, train_model
    from driftloop.kafka.publisher import Publisher
    from driftloop.app.service import MonitorService
    from driftloop.app.stats import collect_stats
    from driftloop.core.store import Store
    from driftloop.kafka.topics import create_topics
    from retrain.registry import Registry
    from retrain.worker import RetrainWorker

    require_demo_dependencies()
    console = console or Console()
    sizes = FAST if fast else FULL
    t_start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="driftloop-demo-"))
    console.rule("[bold]driftloop demo")
    console.print(f"broker {bootstrap}; work folder {workdir}")
    wait_for_broker(KafkaConfig(bootstrap_servers=bootstrap), timeout_s=30)

    with console.status("generating data and training the champion model ..."):
        X, y = agrawal_frame(sizes.train + sizes.reference, concept=0, seed=7)
        model = train_model(X.iloc[: sizes.train], y[: sizes.train])
        ref = reference_frame(model, X.iloc[sizes.train:].reset_index(drop=True), y[sizes.train:])
        ref.to_csv(workdir / "reference.csv", index=False)
        Xb, yb = agrawal_frame(sizes.before, concept=0, seed=11)
        Xa, ya = agrawal_frame(sizes.after, concept=2, seed=12, salary_shift=1.3)

    cfg_path = workdir / "driftloop.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(bootstrap, workdir, sizes), sort_keys=False))
    cfg = load_config(cfg_path, environ={})
    create_topics(cfg)
    store = Store.from_config(cfg.store)
    store.create_schema()
    registry = Registry(cfg, store)
    sio.dump(model, workdir / "champion.skops")
    registry.register(MODEL, workdir / "champion.skops", ref, actor="demo", promote=True,
                      note="trained before deployment on Agrawal concept 0")
    acc_ref = float((ref["prediction"].to_numpy() == ref["label"].to_numpy()).mean())
    console.print(f"champion v1: HistGradientBoosting on {sizes.train:,} rows, held-out accuracy {acc_ref:.3f}; "
                  f"registered with its {sizes.reference:,}-row reference sample")

    result = DemoResult(config_path=cfg_path, workdir=workdir)
    service = MonitorService(cfg, store)
    worker = RetrainWorker(cfg, Store.from_config(cfg.store), worker_id="demo-worker")
    threads = [threading.Thread(target=service.run, name="monitor", daemon=True),
               threading.Thread(target=worker.run, name="retrain-worker", daemon=True)]
    for t in threads:
        t.start()
    narrator = _Narrator(bootstrap, cfg, result)
    deadline = time.monotonic() + 30
    while service.api is None and threads[0].is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if service.api is not None:
        console.print(f"dashboard: [bold]{service.api.url}[/] (while the demo runs)")

    stream_X = pd.concat([Xb, Xa], ignore_index=True)
    stream_y = np.concatenate([yb, ya])
    n, drift_at = len(stream_y), sizes.before
    cols = list(stream_X.columns)
    t0_ms = int(time.time() * 1000)
    serving = {"version": "1", "model": model}

    def champion_model() -> None:
        """The service serves the registry's champion (checked every chunk) once the monitor has
        switched its reference to it. The switch resolves the alerts the promotion answered, in
        the same transaction. A service that switched first would improve the metrics under the
        old reference, and on a loaded machine a performance alert could then clear by itself
        (after the 5 s hold-down) before the monitor read the promotion."""
        champ = registry.champion(MODEL)
        if champ is not None and str(champ.version) != serving["version"]:
            if store.detector_reference_version(MODEL)[1] != str(champ.version):
                return
            serving["model"] = registry.load_model(MODEL, champ.version)
            serving["version"] = str(champ.version)
            console.print(f"[bold]the service now serves champion v{champ.version}[/]")

    def view(published: int) -> Table:
        stats = collect_stats(cfg, store)["models"].get(MODEL, {})
        t = Table(title=f"{MODEL}: the world changes at event {drift_at:,}; serving v{serving['version']}")
        for c in ("published", "predictions", "labels", "joined", "invalid", "alerts", "jobs", "promotions"):
            t.add_column(c, justify="right")
        fired = sum(1 for a in result.alerts if a["status"] == "firing")
        promoted = sum(1 for d in result.decisions if d["event"] == "promoted")
        t.add_row(f"{published:,}", *(f"{stats.get(k, 0):,}" for k in ("predictions", "labels", "joined", "invalid")),
                  str(fired), str(len(result.jobs)), str(promoted))
        return t

    chunk = 250
    with Publisher(bootstrap, predictions_topic=cfg.topics.predictions, labels_topic=cfg.topics.labels,
                   batch_size=250, linger_s=0.05) as pub, Live(view(0), console=console, refresh_per_second=4) as live:
        for start in range(0, n + sizes.label_lag, chunk):
            champion_model()
            stop = min(start + chunk, n)
            if start < n:
                proba = serving["model"].predict_proba(stream_X.iloc[start:stop])
                classes = serving["model"].classes_
                rows = stream_X.iloc[start:stop].to_dict("records")
                for k, i in enumerate(range(start, stop)):
                    feats = {c: (v if isinstance(v, str) else float(v)) for c, v in rows[k].items() if c in cols}
                    pub.prediction(MODEL, f"ev-{i}", feats, prediction=int(classes[proba[k].argmax()]),
                                   scores={str(c): float(p) for c, p in zip(classes, proba[k])},
                                   model_version=serving["version"], ts=_event_ts(i, n, drift_at, t0_ms))
            for j in range(max(0, start - sizes.label_lag), max(0, min(start + chunk, n + sizes.label_lag)
                                                                    - sizes.label_lag)):
                pub.label(MODEL, f"ev-{j}", int(stream_y[j]), ts=_event_ts(j, n, drift_at, t0_ms) + STEP_MS // 2)
            pub.flush(wait=False)
            narrator.poll(live.console)
            live.update(view(min(stop, n)))
            time.sleep(0.05 if fast else 0.1)   # a live stream, not a bulk load
        pub.flush()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            narrator.poll(live.console)
            champion_model()
            live.update(view(n))
            promoted_since = sum(1 for d in result.decisions if d["event"] == "promoted") > 1
            fired = any(a["status"] == "firing" for a in result.alerts)
            if collect_stats(cfg, store)["models"][MODEL]["joined"] >= n and (promoted_since or not fired):
                break
            time.sleep(0.3)
        # the alert lifecycle's group window and hold-down; then, on a slow machine, until the alerts
        # the promotion answered are seen resolving (the monitor switches, resolves, the outbox sends)
        settle, give_up = time.monotonic() + 8, time.monotonic() + 60
        while time.monotonic() < settle or (result.missing_steps() and time.monotonic() < give_up):
            narrator.poll(live.console)
            champion_model()
            time.sleep(0.3)
        live.update(view(n))
    narrator.close()
    service.stop()
    worker.stop()
    for t in threads:
        t.join(30)
    result.stats = collect_stats(cfg, store)
    champ = registry.champion(MODEL)
    result.champion = None if champ is None else str(champ.version)
    store.dispose()

    console.rule("summary")
    s = result.stats["models"][MODEL]
    fired = [a for a in result.alerts if a["status"] == "firing"]
    resolved = [a for a in result.alerts if a["status"] == "resolved"]
    console.print(f"{s['predictions']:,} predictions, {s['labels']:,} labels, {s['joined']:,} joined, "
                  f"{s['invalid']} invalid, in {time.monotonic() - t_start:.0f}s")
    console.print(f"alerts: {len(fired)} fired ({', '.join(sorted({a['kind'] for a in fired})) or 'none'}), "
                  f"{len(resolved)} resolved; retraining jobs: {len(result.jobs)}; "
                  f"registry: {', '.join(d['event'] + ' v' + str(d['version']) for d in result.decisions) or 'none'}; "
                  f"champion now v{result.champion}")
    if service.api is not None:
        console.print(f"the dashboard was at {service.api.url} while the demo ran"
                      + (f"; `driftloop monitor -c {cfg_path}` serves it again" if keep else
                         " (run with --keep to serve it again from the kept store)"))
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
        result.workdir = None
    else:
        console.print(f"kept {workdir} (config: {cfg_path}); e.g. `driftloop alerts list -c {cfg_path}`")
    return result
