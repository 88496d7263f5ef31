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

With ``shadow=True`` (``--shadow``) the model's retrain policy has a shadow phase
(:data:`SHADOW_POLICY`): the challenger that passes the worker's offline gate is put in shadow
(``shadow_started``) instead of promoted; the service then answers every further request with
the champion (served) and the shadow (a ``"shadow": true`` prediction with the same event_id),
the monitor's paired comparison reports every ``versions.shadow_min_labels`` labelled pairs
(``shadow_report``), and ``retrain/shadow.py`` promotes the shadow on that live evidence (its
McNemar p-value in ``metrics.live``).

With ``registry="mlflow"`` (``--registry mlflow``) the registry is mirrored into MLflow
(:mod:`driftloop.app.demo_mlflow`: a local tracking server is started unless ``mlflow_uri``
names one): champion v1 and the challenger become MLflow versions with their runs, and the
alias follows the promotion; the summary shows MLflow's side and the loop closes only if the
alias is on the promoted challenger.
"""
from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

__all__ = ["run_demo", "DemoResult", "DemoDependencyMissing", "require_demo_dependencies"]

MODEL = "loans"
#: ``--shadow``: the model's ``retrain.shadow`` and the monitor's ``versions.shadow_min_labels``
SHADOW_POLICY = {"min_labels": 300, "max_hours": 1}
SHADOW_REPORT_EVERY = 100
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
    shadow: bool = False                                              # run with a shadow phase
    mlflow_missing: list[str] | None = None                           # --registry mlflow: what MLflow lacks


    def missing_steps(self) -> list[str]:
        """What of the loop the topics did not show: an alert fired, a challenger (a version
        other than the first champion) was promoted, and the alerts it answered resolved.
        Empty when the loop closed."""
        missing = []
        if not any(a["status"] == "firing" for a in self.alerts):
            missing.append("no alert fired")
        promotions = self._challenger_promotions()
        if not promotions:
            missing.append("no challenger was promoted")
        resolved = {a["alert_id"] for a in self.alerts if a["status"] == "resolved"}
        answered = {i for d in promotions for i in d.get("reason") or []}
        if promotions and not answered:
            missing.append("the promotion answered no alert")
        if answered - resolved:
            missing.append(f"{len(answered - resolved)} alert(s) the promotion answered did not resolve")
        if self.shadow:
            missing += self._missing_shadow_steps(promotions)
        return missing + (self.mlflow_missing or [])

    def _missing_shadow_steps(self, promotions: list[dict[str, Any]]) -> list[str]:
        """With ``--shadow``: a challenger was put in shadow, and the shadow phase (not the
        offline gate) promoted it."""
        started = {str(d["version"]) for d in self.decisions if d["event"] == "shadow_started"}
        if not started:
            return ["no challenger was put in shadow"]
        if not any(str(d["version"]) in started and (d.get("metrics") or {}).get("phase") == "shadow"
                   for d in promotions):
            return ["the shadow phase did not end in a promotion"]
        return []

    def _challenger_promotions(self) -> list[dict[str, Any]]:
        """The ``promoted`` decisions of a version other than the first one promoted (champion v1)."""
        first = next((str(d["version"]) for d in self.decisions if d["event"] == "promoted"), None)
        return [d for d in self.decisions if d["event"] == "promoted" and str(d["version"]) != first]


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


def _config(bootstrap: str, workdir: Path, sizes: _Sizes, shadow: bool = False,
            mlflow_uri: str | None = None) -> dict[str, Any]:
    cfg = _base_config(bootstrap, workdir, sizes)
    if mlflow_uri is not None:
        from driftloop.app.demo_mlflow import mlflow_registry_section

        cfg["registry"].update(mlflow_registry_section(mlflow_uri, uuid.uuid4().hex[:6]))
    if shadow:
        cfg["versions"] = {"shadow_min_labels": SHADOW_REPORT_EVERY}
        cfg["models"][MODEL]["retrain"]["shadow"] = dict(SHADOW_POLICY)
    return cfg


def demo_services(bootstrap: str, workdir: Path) -> dict[str, Any]:
    """Every section of a demo's configuration but ``models``: fresh topics and consumer groups,
    a store in ``workdir``, a local registry, the API on a free port, alert timings for minutes."""
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
                     "poll_timeout_ms": 200},
    }


def _base_config(bootstrap: str, workdir: Path, sizes: _Sizes) -> dict[str, Any]:
    from driftloop.app.demo_data import FEATURES

    cfg = demo_services(bootstrap, workdir)
    # the one type in a fitted HistGradientBoosting that skops does not trust by default
    cfg["registry"]["trusted_types"] = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
    return {
        **cfg,
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


def _live_text(live: dict[str, Any]) -> str:
    """A live paired comparison (a ``shadow_report``'s metrics, a shadow promotion's ``live``)."""
    metric = live.get("metric", "accuracy")
    p = live.get("p_value")
    return (f"shadow {metric} {live.get('shadow_metric', float('nan')):.3f} vs served "
            f"v{live.get('served_version')} {live.get('served_metric', float('nan')):.3f} on the same "
            f"{live.get('n', '?')} labelled live requests"
            + (f" ({live.get('test')} p={p:.2g})" if p is not None else ""))


def _decision_line(d: dict[str, Any]) -> str:
    """One line for a registry event: the offline gate's scores, or the live shadow comparison."""
    m = d.get("metrics") or {}
    line = f"[magenta]REGISTRY {d['event'].upper()}[/] {d['model']} v{d['version']}"
    if d["event"] == "shadow_report":
        return f"{line}: {_live_text(m)}; champion is v{d.get('champion_version')}"
    if m.get("phase") == "shadow" and isinstance(m.get("live"), dict):
        return f"{line} on live evidence: {_live_text(m['live'])}; champion is v{d.get('champion_version')}"
    if "challenger" in m:
        line += (f": challenger {_fmt_metrics(m['challenger'])} vs champion {_fmt_metrics(m['champion'])} "
                 f"on the same {m.get('holdout_rows', '?')} held-out rows")
    dec = d.get("decision") or {}
    if dec.get("p_value") is not None:
        line += f" ({dec.get('test')} p={dec['p_value']:.2g})"
    return line + f"; champion is v{d.get('champion_version')}"


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
            console.print(_decision_line(d))

    def close(self) -> None:
        for t in self.tails.values():
            t.close()


def run_demo(*, bootstrap: str = "127.0.0.1:9092", fast: bool = False, keep: bool = False,
             console: Any = None, shadow: bool = False, registry: str = "local",
             mlflow_uri: str | None = None) -> DemoResult:
    """Run the demo's six stages (see the module docstring) and return what the topics showed;
    ``registry="mlflow"``: against the MLflow server at ``mlflow_uri``, else one it starts."""
    if registry != "mlflow":
        return _run_demo(bootstrap=bootstrap, fast=fast, keep=keep, console=console, shadow=shadow)
    if console is None:
        from rich.console import Console

        console = Console()
    from driftloop.app.demo_mlflow import LocalMlflowServer, MlflowServerMissing, require_mlflow_client

    server = None
    try:
        require_mlflow_client()
        if mlflow_uri is None:
            server = LocalMlflowServer(Path(tempfile.mkdtemp(prefix="driftloop-demo-mlflow-")))
            mlflow_uri = server.start()
    except MlflowServerMissing as exc:
        raise DemoDependencyMissing(str(exc)) from None
    try:
        return _run_demo(bootstrap=bootstrap, fast=fast, keep=keep, console=console, shadow=shadow,
                         mlflow_uri=mlflow_uri)
    finally:
        if server is not None:
            server.stop()
            if not keep:
                shutil.rmtree(server.folder, ignore_errors=True)
            elif console is not None:
                console.print(f"the demo's MLflow server is stopped; its store is kept in {server.folder} "
                              f"(`mlflow server --backend-store-uri sqlite:///{server.folder}/mlflow.db "
                              f"--artifacts-destination {server.folder}/artifacts --port {server.port}` serves it "
                              "again at the configured URL)")


def _run_demo(*, bootstrap: str, fast: bool, keep: bool, console: Any, shadow: bool,
              mlflow_uri: str | None = None) -> DemoResult:
    from rich.console import Console
    from rich.live import Live

    from driftloop.core.config import KafkaConfig
    from driftloop.kafka.clients import wait_for_broker
    from driftloop.kafka.publisher import Publisher

    require_demo_dependencies()
    console = console or Console()
    sizes = FAST if fast else FULL
    t_start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="driftloop-demo-"))
    console.rule("[bold]driftloop demo" + (" (with a shadow phase)" if shadow else "")
                 + (" (MLflow registry)" if mlflow_uri else ""))
    console.print(f"broker {bootstrap}; work folder {workdir}" + (f"; MLflow {mlflow_uri}" if mlflow_uri else ""))
    wait_for_broker(KafkaConfig(bootstrap_servers=bootstrap), timeout_s=30)
    model, ref, stream_X, stream_y = _train_champion(sizes, workdir, console)
    loop = _set_up(bootstrap, workdir, sizes, model, ref, console, shadow, mlflow_uri)
    result = DemoResult(config_path=loop.cfg_path, workdir=workdir, shadow=shadow)
    service, worker, threads = _start_services(loop)
    narrator = _Narrator(bootstrap, loop.cfg, result)
    _show_dashboard(service, threads[0], console)
    stream = _Stream(stream_X, stream_y, drift_at=sizes.before, t0_ms=int(time.time() * 1000))
    serving = _Serving(loop, console, model, shadow)

    def view(published: int) -> Any:
        return _view(loop, result, serving, stream.drift_at, published)

    cfg = loop.cfg
    with Publisher(bootstrap, predictions_topic=cfg.topics.predictions, labels_topic=cfg.topics.labels,
                   batch_size=250, linger_s=0.05) as pub, Live(view(0), console=console, refresh_per_second=4) as live:
        _play(pub, stream, serving, sizes, fast, lambda: narrator.poll(live.console), lambda k: live.update(view(k)))
        _await_loop(loop, result, serving, len(stream.y), lambda: narrator.poll(live.console),
                    lambda k: live.update(view(k)))
    narrator.close()
    _stop(loop, result, service, worker, threads)
    _print_summary(console, result, t_start, service, loop.cfg_path, keep)
    if mlflow_uri is not None:
        from driftloop.app.demo_mlflow import show_mlflow

        result.mlflow_missing = show_mlflow(console, loop.cfg, MODEL)
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
        result.workdir = None
    else:
        console.print(f"kept {workdir} (config: {loop.cfg_path}); e.g. `driftloop alerts list -c {loop.cfg_path}`")
    return result


@dataclass
class _Loop:
    """What stage 1 made: the demo's config (and its file), its store and the registry."""

    cfg_path: Path
    cfg: Any
    store: Any
    registry: Any


@dataclass
class _Stream:
    """The events the service will see: the features and true labels, the change, the clock."""

    X: pd.DataFrame
    y: np.ndarray
    drift_at: int
    t0_ms: int


def _train_champion(sizes: _Sizes, workdir: Path, console: Any) -> tuple[Any, pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Stage 2's data: the champion trained on concept 0, its reference sample (also written to
    ``reference.csv``), and the stream's features and labels (concept 0, then concept 2)."""
    from driftloop.app.demo_data import agrawal_frame, reference_frame, train_model

    with console.status("generating data and training the champion model ..."):
        X, y = agrawal_frame(sizes.train + sizes.reference, concept=0, seed=7)
        model = train_model(X.iloc[: sizes.train], y[: sizes.train])
        ref = reference_frame(model, X.iloc[sizes.train:].reset_index(drop=True), y[sizes.train:])
        ref.to_csv(workdir / "reference.csv", index=False)
        Xb, yb = agrawal_frame(sizes.before, concept=0, seed=11)
        Xa, ya = agrawal_frame(sizes.after, concept=2, seed=12, salary_shift=1.3)
    return model, ref, pd.concat([Xb, Xa], ignore_index=True), np.concatenate([yb, ya])


def _set_up(bootstrap: str, workdir: Path, sizes: _Sizes, model: Any, ref: pd.DataFrame, console: Any,
            shadow: bool = False, mlflow_uri: str | None = None) -> _Loop:
    """Stages 1 and 2: the config file, fresh topics, the store, and ``model`` registered as
    champion v1 with its reference sample (with MLflow: mirrored there, the alias on it)."""
    import skops.io as sio

    from driftloop.core.config import load_config
    from driftloop.core.store import Store
    from driftloop.kafka.topics import create_topics
    from retrain.registry import Registry

    cfg_path = workdir / "driftloop.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(bootstrap, workdir, sizes, shadow, mlflow_uri), sort_keys=False))
    cfg = load_config(cfg_path, environ={})
    create_topics(cfg)
    store = Store.from_config(cfg.store)
    store.create_schema()
    registry = Registry(cfg, store)
    sio.dump(model, workdir / "champion.skops")
    registry.register(MODEL, workdir / "champion.skops", ref, actor="demo", promote=True,
                      note="trained before deployment on Agrawal concept 0")
    if mlflow_uri is not None:
        from retrain.mlflow_registry import mirror_for

        mirror = mirror_for(cfg, store, registry)
        assert mirror is not None
        for line in mirror.sync([MODEL]).lines():
            console.print(f"MLflow: {line}")
    acc_ref = float((ref["prediction"].to_numpy() == ref["label"].to_numpy()).mean())
    console.print(f"champion v1: HistGradientBoosting on {sizes.train:,} rows, held-out accuracy {acc_ref:.3f}; "
                  f"registered with its {sizes.reference:,}-row reference sample")
    if shadow:
        console.print(f"retrain policy: a challenger that passes the offline gate runs in shadow first "
                      f"(min_labels {SHADOW_POLICY['min_labels']}, max_hours {SHADOW_POLICY['max_hours']}; "
                      f"a live report every {SHADOW_REPORT_EVERY} labelled pairs)")
    return _Loop(cfg_path, cfg, store, registry)


def _start_services(loop: _Loop) -> tuple[Any, Any, list[threading.Thread]]:
    """Stage 3: the monitor service and a retrain worker, each in a daemon thread (monitor first)."""
    from driftloop.app.service import MonitorService
    from driftloop.core.store import Store
    from retrain.worker import RetrainWorker

    service = MonitorService(loop.cfg, loop.store)
    worker = RetrainWorker(loop.cfg, Store.from_config(loop.cfg.store), worker_id="demo-worker")
    threads = [threading.Thread(target=service.run, name="monitor", daemon=True),
               threading.Thread(target=worker.run, name="retrain-worker", daemon=True)]
    for t in threads:
        t.start()
    return service, worker, threads


def _show_dashboard(service: Any, monitor: threading.Thread, console: Any) -> None:
    """Wait up to 30 s for the monitor's HTTP API, then print where the dashboard is."""
    deadline = time.monotonic() + 30
    while service.api is None and monitor.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if service.api is not None:
        console.print(f"dashboard: [bold]{service.api.url}[/] (while the demo runs)")


class _Serving:
    """The model the demo's ML service serves, and its registry version."""

    def __init__(self, loop: _Loop, console: Any, model: Any, shadow: bool = False, name: str = MODEL) -> None:
        self.name = name                         # the model's name in the configuration
        self.loop = loop
        self.console = console
        self.model = model
        self.version = "1"
        self.shadow = shadow                     # --shadow: watch the registry for a shadow version
        self.shadow_model: Any = None
        self.shadow_version: str | None = None
        self.shadow_seen = False                 # a shadow phase has begun (it may be over already)

    def follow(self, at: int | None = None) -> None:
        """Once a chunk (the next request is event ``at``): the champion, and with ``--shadow``
        the shadow version."""
        if self.shadow:
            self.follow_shadow(at)
        self.follow_champion()

    def follow_shadow(self, at: int | None = None) -> None:
        """Run the registry's shadow version (if any) beside the served champion; stop when it
        is no longer in shadow (promoted or rejected)."""
        shadows = self.loop.registry.shadows(self.name)
        version = str(shadows[0].version) if shadows else None
        if version == self.shadow_version:
            return
        if version is None:
            self.console.print(f"[bold]the service stops running v{self.shadow_version} in shadow[/]")
            self.shadow_model, self.shadow_version = None, None
            return
        self.shadow_model = self.loop.registry.load_model(self.name, version)
        self.shadow_version, self.shadow_seen = version, True
        self.console.print(f"[bold]the service now also runs v{version} in shadow beside champion "
                           f"v{self.version}[/]" + (f" from event {at:,} on" if at is not None else "")
                           + " (its answers are published, never served)")

    def follow_champion(self) -> None:
        """The service serves the registry's champion (checked every chunk) once the monitor has
        switched its reference to it. The switch resolves the alerts the promotion answered, in
        the same transaction. A service that switched first would improve the metrics under the
        old reference, and on a loaded machine a performance alert could then clear by itself
        (after the 5 s hold-down) before the monitor read the promotion."""
        champ = self.loop.registry.champion(self.name)
        if champ is not None and str(champ.version) != self.version:
            if self.loop.store.detector_reference_version(self.name)[1] != str(champ.version):
                return
            self.model = self.loop.registry.load_model(self.name, champ.version)
            self.version = str(champ.version)
            self.console.print(f"[bold]the service now serves champion v{champ.version}[/]")


def _view(loop: _Loop, result: DemoResult, serving: _Serving, drift_at: int, published: int) -> Any:
    """The live table: what was published, what the monitor counted, alerts, jobs, promotions."""
    from rich.table import Table

    from driftloop.app.stats import collect_stats

    stats = collect_stats(loop.cfg, loop.store)["models"].get(MODEL, {})
    in_shadow = f", v{serving.shadow_version} in shadow" if serving.shadow_version else ""
    t = Table(title=f"{MODEL}: the world changes at event {drift_at:,}; serving v{serving.version}{in_shadow}")
    for c in ("published", "predictions", "labels", "joined", "invalid", "alerts", "jobs", "promotions"):
        t.add_column(c, justify="right")
    fired = sum(1 for a in result.alerts if a["status"] == "firing")
    promoted = sum(1 for d in result.decisions if d["event"] == "promoted")
    t.add_row(f"{published:,}", *(f"{stats.get(k, 0):,}" for k in ("predictions", "labels", "joined", "invalid")),
              str(fired), str(len(result.jobs)), str(promoted))
    return t


def _play(pub: Any, stream: _Stream, serving: _Serving, sizes: _Sizes, fast: bool, narrate: Callable[[], None],
          show: Callable[[int], None]) -> None:
    """Stage 4: the ML service, chunk by chunk: the champion's predictions and, ``label_lag``
    events later, the true labels; narrating what the topics show in between."""
    n, chunk = len(stream.y), 250
    hold = n - _shadow_reserve(sizes, chunk) if serving.shadow else None
    for start in range(0, n + sizes.label_lag, chunk):
        serving.follow(at=start if start < n else None)
        if hold is not None and start >= hold:
            _await_shadow(serving, start, narrate)
            hold = None
        stop = min(start + chunk, n)
        if start < n:
            _publish_predictions(pub, stream, serving, start, stop)
        for j in range(max(0, start - sizes.label_lag), max(0, min(start + chunk, n + sizes.label_lag)
                                                                - sizes.label_lag)):
            pub.label(MODEL, f"ev-{j}", int(stream.y[j]),
                      ts=_event_ts(j, n, stream.drift_at, stream.t0_ms) + STEP_MS // 2)
        pub.flush(wait=False)
        narrate()
        show(min(stop, n))
        time.sleep(0.05 if fast else 0.1)   # a live stream, not a bulk load
    pub.flush()


def _shadow_reserve(sizes: _Sizes, chunk: int) -> int:
    """``--shadow``: the requests kept for the shadow phase — its ``min_labels`` labelled pairs,
    the labels' lag and two chunks."""
    return int(SHADOW_POLICY["min_labels"]) + sizes.label_lag + 2 * chunk


def _await_shadow(serving: _Serving, at: int, narrate: Callable[[], None], timeout_s: float = 240.0) -> None:
    """``--shadow``: before its last requests the service waits until the retraining has put a
    challenger in shadow (a condition, not a pace: on a slow machine the monitor and the worker
    may still be busy when a fixed-rate stream would have ended, and the shadow phase would get
    no traffic). A shadow phase already over (promoted on the requests so far) ends the wait too.
    Gives up after ``timeout_s``; the demo then says what did not happen."""
    deadline = time.monotonic() + timeout_s
    while not serving.shadow_seen and time.monotonic() < deadline:
        narrate()
        time.sleep(0.2)
        serving.follow(at=at)


def _publish_predictions(pub: Any, stream: _Stream, serving: _Serving, start: int, stop: int) -> None:
    """The served model's predictions (with class scores) of events ``start`` to ``stop``."""
    n, cols = len(stream.y), list(stream.X.columns)
    proba = serving.model.predict_proba(stream.X.iloc[start:stop])
    classes = serving.model.classes_
    rows = stream.X.iloc[start:stop].to_dict("records")
    for k, i in enumerate(range(start, stop)):
        feats = {c: (v if isinstance(v, str) else float(v)) for c, v in rows[k].items() if c in cols}
        pub.prediction(MODEL, f"ev-{i}", feats, prediction=int(classes[proba[k].argmax()]),
                       scores={str(c): float(p) for c, p in zip(classes, proba[k])},
                       model_version=serving.version, ts=_event_ts(i, n, stream.drift_at, stream.t0_ms))
    if serving.shadow_model is not None and serving.shadow_version is not None:
        _publish_shadow_predictions(pub, stream, serving.shadow_model, serving.shadow_version, start, stop)


def _publish_shadow_predictions(pub: Any, stream: _Stream, model: Any, version: str, start: int, stop: int) -> None:
    """The shadow version's answers to the same requests: ``"shadow": true``, the served
    prediction's event_id, the shadow's ``model_version`` (contract v1.1)."""


    n, cols = len(stream.y), list(stream.X.columns)
    proba = model.predict_proba(stream.X.iloc[start:stop])
    classes = model.classes_
    rows = stream.X.iloc[start:stop].to_dict("records")
    for k, i in enumerate(range(start, stop)):
        feats = {c: (v if isinstance(v, str) else float(v)) for c, v in rows[k].items() if c in cols}
        pub.prediction(MODEL, f"ev-{i}", feats, int(classes[proba[k].argmax()]),
                       scores={str(c): float(p) for c, p in zip(classes, proba[k])}, model_version=version,
                       ts=_event_ts(i, n, stream.drift_at, stream.t0_ms), shadow=True)


def _await_loop(loop: _Loop, result: DemoResult, serving: _Serving, n: int, narrate: Callable[[], None],
                show: Callable[[int], None]) -> None:
    """Stage 5: up to 120 s until every event joined and a challenger was promoted (or no alert
    fired); then the alert lifecycle's group window and hold-down, and on a slow machine up to
    60 s until the alerts the promotion answered are seen resolving (the monitor switches,
    resolves, the outbox sends)."""
    from driftloop.app.stats import collect_stats

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        narrate()
        serving.follow()
        show(n)
        promoted_since = sum(1 for d in result.decisions if d["event"] == "promoted") > 1
        fired = any(a["status"] == "firing" for a in result.alerts)
        if collect_stats(loop.cfg, loop.store)["models"][serving.name]["joined"] >= n and (promoted_since or not fired):
            break
        time.sleep(0.3)
    settle, give_up = time.monotonic() + 8, time.monotonic() + 60
    while time.monotonic() < settle or (result.missing_steps() and time.monotonic() < give_up):
        narrate()
        serving.follow()
        time.sleep(0.3)
    show(n)


def _stop(loop: _Loop, result: DemoResult, service: Any, worker: Any, threads: list[threading.Thread],
          name: str = MODEL) -> None:
    """Stop the monitor and the worker, then record the final counters and champion."""
    from driftloop.app.stats import collect_stats

    service.stop()
    worker.stop()
    for t in threads:
        t.join(30)
    result.stats = collect_stats(loop.cfg, loop.store)
    champ = loop.registry.champion(name)
    result.champion = None if champ is None else str(champ.version)
    loop.store.dispose()


def _print_summary(console: Any, result: DemoResult, t_start: float, service: Any, cfg_path: Path,
                   keep: bool, name: str = MODEL) -> None:
    """Stage 6: the counts, the alerts, the jobs and the registry's decisions."""
    console.rule("summary")
    s = result.stats["models"][name]
    fired = [a for a in result.alerts if a["status"] == "firing"]
    resolved = [a for a in result.alerts if a["status"] == "resolved"]
    console.print(f"{s['predictions']:,} predictions, {s['labels']:,} labels, {s['joined']:,} joined, "
                  f"{s['invalid']} invalid, in {time.monotonic() - t_start:.0f}s")
    console.print(f"alerts: {len(fired)} fired ({', '.join(sorted({a['kind'] for a in fired})) or 'none'}), "
                  f"{len(resolved)} resolved; retraining jobs: {len(result.jobs)}; "
                  f"registry: {', '.join(d['event'] + ' v' + str(d['version']) for d in result.decisions) or 'none'}; "
                  f"champion now v{result.champion}")
    from driftloop.alerts.incidents_cli import list_incidents

    incidents = list_incidents(service.store, model=name)
    console.print(f"on-call was paged per incident: {len(incidents)} incident(s) for {len(fired)} fired alerts "
                  f"(`driftloop incidents list -c {cfg_path}`)")
    for inc in incidents[::-1]:
        console.print(f"  incident {inc['incident_id']} ({inc['status']}, {len(inc['members'])} alerts): "
                      f"{inc['hint'].get('text') or inc['summary'] or ''}")
    if service.api is not None:
        console.print(f"the dashboard was at {service.api.url} while the demo ran"
                      + (f"; `driftloop monitor -c {cfg_path}` serves it again" if keep else
                         " (run with --keep to serve it again from the kept store)"))
