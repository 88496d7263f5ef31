"""The retraining commands of the ``driftloop`` CLI.

``driftloop/app/cli.py`` calls :func:`add_commands` with its sub-parsers; every command takes
``-c CONFIG``, sets ``func`` to a ``(args) -> exit code`` function, and prints one clear line
for a refused operation (exit 1)::

    driftloop retrain-worker -c CONFIG [--max-seconds S] [--worker-id ID]
    driftloop retrain -c CONFIG MODEL [--window-s S] [--reason ALERT_ID ...] [--force]
    driftloop models list -c CONFIG [MODEL] [--json]
    driftloop models show -c CONFIG MODEL [VERSION] [--history N] [--verify] [--json]
    driftloop models register -c CONFIG MODEL --artifact FILE.skops --reference FILE
              [--trust TYPE ...] [--params JSON] [--metrics JSON] [--note TEXT] [--promote] [--no-publish]
    driftloop models promote -c CONFIG MODEL VERSION [--reason TEXT] [--no-publish]
    driftloop models rollback -c CONFIG MODEL [--to VERSION] [--reason TEXT] [--no-publish]
    driftloop models shadow -c CONFIG MODEL VERSION [--replace] [--reason TEXT] [--no-publish]
    driftloop models import -c CONFIG --from-mlflow NAME [VERSION|@ALIAS] [--model MODEL] [--reference FILE]
              [--trust TYPE ...] [--note TEXT] [--promote] [--no-publish]
    driftloop models sync -c CONFIG [MODEL]

Commands that change the registry or enqueue a job publish their events right away when the
broker answers; otherwise they stay in the outbox for the next monitor or worker to publish.
With ``registry.backend: mlflow`` they also mirror the change to MLflow right away
(:mod:`retrain.mlflow_registry`); when MLflow does not answer they say so and leave it to the
worker's mirror thread (``models sync`` runs one pass by hand). ``models list/show`` give each
version's MLflow version number beside driftloop's, in the history too.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from driftloop.core.config import Config, load_config

__all__ = ["add_commands"]

log = logging.getLogger(__name__)


def _setup(args: argparse.Namespace, *, create_schema: bool = True) -> tuple[Config, Any]:
    """The validated config and its store (``create_schema=False``: the caller creates it, as the
    worker does with retries while the store is locked or restarting)."""
    from driftloop.core.config.retrain import validate
    from driftloop.core.store import Store

    cfg = load_config(args.config)
    validate(cfg)
    store = Store.from_config(cfg.store)
    if create_schema:
        store.create_schema()
    return cfg, store


def _publish(cfg: Config, store: Any, wait_s: float = 10.0) -> None:
    from driftloop.core.outbox import OutboxPublisher
    from driftloop.kafka.clients import BrokerUnavailable, make_producer, wait_for_broker

    try:
        wait_for_broker(cfg.kafka, timeout_s=wait_s)
    except BrokerUnavailable as exc:
        print(f"note: events not published yet ({exc}); the next monitor or worker publishes them",
              file=sys.stderr)
        return
    from driftloop.kafka.topics import create_topics

    create_topics(cfg)      # never let the broker auto-create them with its default partition count
    producer = make_producer(cfg.kafka)
    try:
        OutboxPublisher(store, producer, [cfg.topics.retrain, cfg.topics.models]).publish_pending()
    finally:
        producer.close(timeout=10)


def _refused(exc: Exception) -> int:
    print(f"driftloop: {exc}", file=sys.stderr)
    return 1


def _ms(ms: int | None) -> str:
    from retrain.events import rfc3339

    return "-" if ms is None else rfc3339(ms)[:19].replace("T", " ")


# -- commands ------------------------------------------------------------------------------
def cmd_worker(args: argparse.Namespace) -> int:
    from retrain.worker import RetrainWorker

    cfg, store = _setup(args, create_schema=False)     # RetrainWorker.start creates it, waiting out a locked store
    worker = RetrainWorker(cfg, store, worker_id=args.worker_id)
    worker.install_signal_handlers()
    stats = worker.run(max_seconds=args.max_seconds)
    log.info("retrain worker stopped: %s", stats)
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from retrain.policy import EnqueueRefused, RetrainScheduler
    from retrain.registry import cli_actor

    cfg, store = _setup(args)
    try:
        job = RetrainScheduler(cfg, store).enqueue_manual(
            args.model, reason=args.reason or (), window_s=args.window_s, force=args.force, requested_by=cli_actor())
    except EnqueueRefused as exc:
        return _refused(exc)
    print(f"enqueued {job.job_id} for {job.model} (window {_ms(job.window.start_ts)} .. {_ms(job.window.end_ts)})")
    if not args.no_publish:
        _publish(cfg, store)
    return 0


def _version_row(v: Any) -> dict[str, Any]:
    m = v.metrics or {}
    primary = m.get("primary")
    ch = (m.get("challenger") or {}).get(primary) if primary else None
    return {"model": v.model, "version": v.version, "status": v.status, "source": v.source,
            "created_at": _ms(v.created_at), "metric": primary, "value": ch, "job_id": v.job_id}


def _mlflow_text(v: Any) -> str:
    """A version's MLflow mirror in one word: its number, ``pending``, ``deleted`` or ``-``."""
    if v.mlflow_version is not None:
        return str(v.mlflow_version) + ("" if v.mlflow_state != "deleted" else " (deleted)")
    return v.mlflow_state or "-"


def cmd_list(args: argparse.Namespace) -> int:
    from retrain.registry import Registry

    cfg, store = _setup(args)
    reg = Registry(cfg, store)
    versions = reg.versions(args.model)
    mlflow = reg.reg.backend == "mlflow" or any(v.mlflow_state for v in versions)
    rows = [_version_row(v) | ({"mlflow_version": v.mlflow_version, "mlflow_state": v.mlflow_state} if mlflow else {})
            for v in versions]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no versions registered" + (f" for {args.model}" if args.model else ""))
        return 0
    print(f"{'model':<20}{'version':>8}  {'status':<11}{'source':<10}{'created (UTC)':<21}{'metric':<18}"
          + ("mlflow     " if mlflow else "") + "job")
    for v, r in zip(versions, rows):
        metric = f"{r['metric']}={r['value']:.4f}" if r["value"] is not None else "-"
        print(f"{r['model']:<20}{r['version']:>8}  {r['status']:<11}{r['source']:<10}{r['created_at']:<21}"
              f"{metric:<18}" + (f"{_mlflow_text(v):<11}" if mlflow else "") + f"{r['job_id'] or '-'}")
    return 0


def _history_rows(reg: Any, model: str, limit: int, mlflow: bool) -> list[dict[str, Any]]:
    """The history as JSON rows; with MLflow, each version also as MLflow's number."""
    rows = [h.as_dict() for h in reg.history(model, limit=limit)]
    if not mlflow:
        return rows
    numbers = {v.version: v.mlflow_version for v in reg.versions(model)}
    for h in rows:
        for key in ("version", "champion_version", "previous_champion"):
            h[f"mlflow_{key}"] = numbers.get(h[key])
    return rows


def _v(h: dict[str, Any], key: str) -> str:
    """A version in a history line: ``v3``, with MLflow's number when there is one (``v3/m7``)."""
    if h[key] is None:
        return "None"
    m = h.get(f"mlflow_{key}")
    return f"v{h[key]}" + (f"/m{m}" if m is not None else "")


def cmd_show(args: argparse.Namespace) -> int:
    from retrain.artifacts import ArtifactError
    from retrain.registry import Registry, RegistryError

    cfg, store = _setup(args)
    reg = Registry(cfg, store)
    try:
        if args.version is not None:
            v = reg.get(args.model, args.version)
        else:
            champion = reg.champion(args.model)
            if champion is None:
                versions = reg.versions(args.model)
                if not versions:
                    raise RegistryError(f"model {args.model!r} has no registered version")
                champion = versions[-1]
            v = champion
    except RegistryError as exc:
        return _refused(exc)
    mlflow = reg.reg.backend == "mlflow" or v.mlflow_state is not None
    out: dict[str, Any] = {"version": v.as_dict(), "history": _history_rows(reg, args.model, args.history, mlflow)}
    if mlflow:
        out["mlflow"] = _mlflow_view(reg, args.model)
    if args.verify:
        try:
            reg.load_model(v.model, v.version)
            reg.load_reference(v.model, v.version)
            out["verified"] = "model and reference load; SHA-256 matches"
        except ArtifactError as exc:
            out["verified"] = f"FAILED: {exc}"
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0 if not str(out.get("verified", "")).startswith("FAILED") else 1
    d = out["version"]
    print(f"{d['model']} version {d['version']}  [{d['status']}]  source={d['source']}  created {_ms(d['created_at'])}")
    for key in ("estimator", "job_id", "code_version", "artifact_path", "artifact_sha256", "reference_path",
                "reference_rows", "holdout_rows", "note"):
        print(f"  {key:<16} {d[key]}")
    if mlflow:
        mv = out["mlflow"]
        print(f"  {'mlflow':<16} {mv['name']} version {_mlflow_text(v)}, run {d['mlflow_run_id'] or '-'}; alias "
              f"{mv['alias']!r} -> {mv['alias_seen']} (as last seen {_ms(mv['checked_at'])})"
              + (f"; last error: {mv['last_error']}" if mv["last_error"] else ""))
    print(f"  {'params':<16} {json.dumps(d['params'], default=str)}")
    print(f"  {'metrics':<16} {json.dumps(d['metrics'], default=str)}")
    print(f"  {'data_window':<16} {json.dumps(d['data_window'])}")
    print(f"  {'libraries':<16} {json.dumps(d['library_versions'])}")
    if "verified" in out:
        print(f"  {'verified':<16} {out['verified']}")
    print("history (oldest first" + (", versions as driftloop/MLflow" if mlflow else "") + "):")
    for h in out["history"]:
        print(f"  #{h['id']:<5} {_ms(h['decided_at'])}  {h['event']:<15} {_v(h, 'version'):<8} champion: "
              f"{_v(h, 'previous_champion')} -> {_v(h, 'champion_version')}  by {h['actor']}  {h['reason']}")
    return 0 if not str(out.get("verified", "")).startswith("FAILED") else 1


def _mlflow_view(reg: Any, model: str) -> dict[str, Any]:
    """What driftloop last saw of the model's alias in MLflow (table ``mlflow_models``)."""
    import sqlalchemy as sa

    from driftloop.core.tables import mlflow_models

    with reg.store.engine.connect() as conn:
        row = conn.execute(sa.select(mlflow_models).where(mlflow_models.c.model == model)).first()
    settings = reg.reg.mlflow
    return {"name": settings.model_name(model) if settings else model, "alias": settings.alias if settings else None,
            "alias_seen": None if row is None else row.alias_seen,
            "checked_at": None if row is None else row.checked_at, "last_error": None if row is None else row.last_error}


def _mirror(cfg: Config, store: Any, model: str | None) -> None:
    """``registry.backend: mlflow``: mirror the change to MLflow now (one pass), say what it did."""
    from retrain.mlflow_registry import mirror_for

    mirror = mirror_for(cfg, store)
    if mirror is None:
        return
    report = mirror.sync([model] if model else None)
    for line in report.done:
        print(f"mlflow: {line}")
    for err in report.errors:
        print(f"mlflow: not done yet ({err}); the retrain worker's mirror, or `driftloop models sync`, does it "
              "when MLflow answers", file=sys.stderr)


def _changed(cfg: Config, store: Any, model: str, args: argparse.Namespace) -> int:
    """After a registry change: mirror it to MLflow (``registry.backend: mlflow``), publish its
    events unless ``--no-publish``; exit code 0."""
    _mirror(cfg, store, model)
    if not args.no_publish:
        _publish(cfg, store)
    return 0


def _reference_arg(path: str | None) -> Any:
    """``--reference FILE`` read (None if not given); a RegistryError naming the file if unreadable."""
    from retrain.registry import RegistryError

    if path is None:
        return None
    try:
        return _read_reference(path)
    except (OSError, ValueError, ImportError) as exc:
        raise RegistryError(f"cannot read the reference sample {path}: {exc}") from None


def _read_reference(path: str) -> Any:
    from driftloop.core.frames import read_frame
    from retrain.artifacts import frame_from_bytes

    p = Path(path)
    if p.name.lower().endswith(".json.gz"):
        return frame_from_bytes(p.read_bytes(), str(p))
    return read_frame(p)


def cmd_register(args: argparse.Namespace) -> int:
    from retrain.artifacts import ArtifactError
    from retrain.registry import Registry, RegistryError, cli_actor

    cfg, store = _setup(args)
    try:
        reference = _reference_arg(args.reference)
    except RegistryError as exc:
        return _refused(exc)
    try:
        version, events = Registry(cfg, store).register(
            args.model, args.artifact, reference, actor=cli_actor(), trust=args.trust or (),
            params=json.loads(args.params) if args.params else None,
            metrics=json.loads(args.metrics) if args.metrics else None, note=args.note, promote=args.promote)
    except (RegistryError, ArtifactError, json.JSONDecodeError) as exc:
        return _refused(exc)
    print(f"registered {args.model} version {version}" + (" as champion" if args.promote else ""))
    return _changed(cfg, store, args.model, args)


def cmd_promote(args: argparse.Namespace) -> int:
    from retrain.registry import Registry, RegistryError, cli_actor

    cfg, store = _setup(args)
    try:
        ev = Registry(cfg, store).promote(args.model, args.version, actor=cli_actor(),
                                          reason=args.reason or "manual promotion")
    except RegistryError as exc:
        return _refused(exc)
    print(f"{args.model}: version {ev.champion_version} is champion (was {ev.previous_champion})")
    return _changed(cfg, store, args.model, args)


def cmd_rollback(args: argparse.Namespace) -> int:
    from retrain.registry import Registry, RegistryError, cli_actor

    cfg, store = _setup(args)
    try:
        ev = Registry(cfg, store).rollback(args.model, to_version=args.to, actor=cli_actor(),
                                           reason=args.reason or "manual rollback")
    except RegistryError as exc:
        return _refused(exc)
    print(f"{args.model}: rolled back from version {ev.previous_champion} to {ev.champion_version}")
    return _changed(cfg, store, args.model, args)


def cmd_shadow(args: argparse.Namespace) -> int:
    from retrain.registry import Registry, RegistryError, cli_actor

    cfg, store = _setup(args)
    try:
        ev = Registry(cfg, store).start_shadow(args.model, args.version, actor=cli_actor(), replace=args.replace,
                                               reason=args.reason or "manual shadow")
    except RegistryError as exc:
        return _refused(exc)
    print(f"{args.model}: version {ev.version} in shadow beside champion {ev.champion_version}")
    return _changed(cfg, store, args.model, args)


def cmd_import(args: argparse.Namespace) -> int:
    from retrain.artifacts import ArtifactError
    from retrain.mlflow_client import MlflowError
    from retrain.mlflow_import import import_from_mlflow
    from retrain.mlmodel import MLmodelError
    from retrain.registry import RegistryError, cli_actor

    cfg, store = _setup(args)
    name, ref = args.from_mlflow[0], (args.from_mlflow[1] if len(args.from_mlflow) > 1 else None)
    if len(args.from_mlflow) > 2:
        return _refused(RuntimeError("--from-mlflow takes NAME and at most one VERSION or @ALIAS"))
    if cfg.registry.get("backend") != "mlflow":
        return _refused(RuntimeError("models import --from-mlflow needs registry.backend: mlflow and "
                                     "registry.mlflow.tracking_uri in the configuration"))
    try:
        reference = _reference_arg(args.reference)
        res = import_from_mlflow(cfg, store, name, ref, model=args.model, reference=reference, trust=args.trust or (),
                                 actor=cli_actor(), promote=args.promote, note=args.note)
    except (RegistryError, ArtifactError, MLmodelError, MlflowError) as exc:
        return _refused(exc)
    print(f"imported MLflow {res.mlflow_name} version {res.mlflow_version} ({res.serialization_format}) as "
          f"{res.model} version {res.version}" + (" as champion" if args.promote else ""))
    return _changed(cfg, store, res.model, args)


def cmd_sync(args: argparse.Namespace) -> int:
    from retrain.mlflow_registry import mirror_for

    cfg, store = _setup(args)
    mirror = mirror_for(cfg, store)
    if mirror is None:
        return _refused(RuntimeError("models sync: registry.backend is 'local'; there is no MLflow to sync with"))
    report = mirror.sync([args.model] if args.model else None)
    for line in report.done or ["nothing to do: MLflow matches the registry"] * (not report.errors):
        print(line)
    for err in report.errors:
        print(f"not done: {err}", file=sys.stderr)
    return 0 if not report.errors else 1


# -- parser --------------------------------------------------------------------------------
def _with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sp.add_argument("-c", "--config", required=True, help="YAML or TOML configuration file")
    return sp


def add_commands(subparsers: Any) -> None:
    """Register ``retrain-worker``, ``retrain`` and ``models ...`` on driftloop's sub-parsers."""
    w = _with_config(subparsers.add_parser("retrain-worker", help="consume retraining jobs: train, evaluate, register"))
    w.add_argument("--max-seconds", type=float, default=None, help="stop after this long (tests, demos)")
    w.add_argument("--worker-id", default=None, help="name in the audit trail (default retrain-worker@host:pid)")
    w.set_defaults(func=cmd_worker)

    r = _with_config(subparsers.add_parser("retrain", help="enqueue a retraining job for a model now"))
    r.add_argument("model")
    r.add_argument("--window-s", type=float, default=None, help="train on this many seconds of data (default: policy)")
    r.add_argument("--reason", nargs="*", default=None, metavar="ALERT_ID", help="alert ids the job answers")
    r.add_argument("--force", action="store_true", help="enqueue even if a job of the model is in flight")
    r.add_argument("--no-publish", action="store_true", help="leave the job in the outbox")
    r.set_defaults(func=cmd_retrain)

    m = subparsers.add_parser("models", help="the model registry")
    msub = m.add_subparsers(dest="models_command", required=True)
    ml = _with_config(msub.add_parser("list", help="versions of every model (or one)"))
    ml.add_argument("model", nargs="?")
    ml.add_argument("--json", action="store_true")
    ml.set_defaults(func=cmd_list)

    ms = _with_config(msub.add_parser("show", help="one version (default: the champion) and the history"))
    ms.add_argument("model")
    ms.add_argument("version", nargs="?")
    ms.add_argument("--history", type=int, default=20, help="last N history rows")
    ms.add_argument("--verify", action="store_true", help="load the files and check their SHA-256")
    ms.add_argument("--json", action="store_true")
    ms.set_defaults(func=cmd_show)

    mr = _with_config(msub.add_parser("register", help="bring in an externally trained model (.skops)"))
    mr.add_argument("model")
    mr.add_argument("--artifact", required=True, help="the fitted model saved with skops.io.dump")
    mr.add_argument("--reference", required=True, help="its training sample: CSV, JSON lines or .json.gz")
    mr.add_argument("--trust", nargs="*", default=None, metavar="TYPE", help="skops types to trust in this file")
    mr.add_argument("--params", default=None, help="JSON object of training parameters to record")
    mr.add_argument("--metrics", default=None, help="JSON object of metrics to record")
    mr.add_argument("--note", default=None)
    mr.add_argument("--promote", action="store_true", help="make it the champion")
    mr.add_argument("--no-publish", action="store_true", help="leave the event in the outbox")
    mr.set_defaults(func=cmd_register)

    mp = _with_config(msub.add_parser("promote", help="make a version the champion"))
    mp.add_argument("model")
    mp.add_argument("version")
    mp.add_argument("--reason", default=None)
    mp.add_argument("--no-publish", action="store_true", help="leave the event in the outbox")
    mp.set_defaults(func=cmd_promote)

    mb = _with_config(msub.add_parser("rollback", help="restore the previous champion"))
    mb.add_argument("model")
    mb.add_argument("--to", default=None, metavar="VERSION", help="roll back to this version instead")
    mb.add_argument("--reason", default=None)
    mb.add_argument("--no-publish", action="store_true", help="leave the event in the outbox")
    mb.set_defaults(func=cmd_rollback)

    mh = _with_config(msub.add_parser(
        "shadow", help="run a version in shadow beside the champion; promoted or rejected on live traffic"))
    mh.add_argument("model")
    mh.add_argument("version")
    mh.add_argument("--replace", action="store_true", help="reject the model's running shadow and replace it")
    mh.add_argument("--reason", default=None)
    mh.add_argument("--no-publish", action="store_true", help="leave the event in the outbox")
    mh.set_defaults(func=cmd_shadow)

    mi = _with_config(msub.add_parser(
        "import", help="bring an existing MLflow model (sklearn flavour) under monitoring, without retraining"))
    mi.add_argument("--from-mlflow", nargs="+", required=True, metavar="NAME [VERSION|@ALIAS]",
                    help="the registered model in MLflow, and its version or @alias (default: @registry.mlflow.alias)")
    mi.add_argument("--model", default=None, help="the driftloop model (default: the one mirrored as NAME)")
    mi.add_argument("--reference", default=None,
                    help="its training sample: CSV, JSON lines, Parquet or .json.gz (default: the one driftloop "
                         "logged with the version)")
    mi.add_argument("--trust", nargs="*", default=None, metavar="TYPE", help="skops types to trust in this file")
    mi.add_argument("--note", default=None)
    mi.add_argument("--promote", action="store_true", help="make it the champion")
    mi.add_argument("--no-publish", action="store_true", help="leave the events in the outbox")
    mi.set_defaults(func=cmd_import)

    my = _with_config(msub.add_parser("sync", help="mirror the registry to MLflow now (registry.backend: mlflow)"))
    my.add_argument("model", nargs="?")
    my.set_defaults(func=cmd_sync)
