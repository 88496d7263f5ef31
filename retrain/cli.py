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

Commands that change the registry or enqueue a job publish their events right away when the
broker answers; otherwise they stay in the outbox for the next monitor or worker to publish.
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


def cmd_list(args: argparse.Namespace) -> int:
    from retrain.registry import Registry

    cfg, store = _setup(args)
    versions = Registry(cfg, store).versions(args.model)
    rows = [_version_row(v) for v in versions]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no versions registered" + (f" for {args.model}" if args.model else ""))
        return 0
    print(f"{'model':<20}{'version':>8}  {'status':<11}{'source':<10}{'created (UTC)':<21}{'metric':<18}job")
    for r in rows:
        metric = f"{r['metric']}={r['value']:.4f}" if r["value"] is not None else "-"
        print(f"{r['model']:<20}{r['version']:>8}  {r['status']:<11}{r['source']:<10}{r['created_at']:<21}"
              f"{metric:<18}{r['job_id'] or '-'}")
    return 0


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
    out: dict[str, Any] = {"version": v.as_dict(), "history": [h.as_dict() for h in reg.history(args.model,
                                                                                                   limit=args.history)]}
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
    print(f"  {'params':<16} {json.dumps(d['params'], default=str)}")
    print(f"  {'metrics':<16} {json.dumps(d['metrics'], default=str)}")
    print(f"  {'data_window':<16} {json.dumps(d['data_window'])}")
    print(f"  {'libraries':<16} {json.dumps(d['library_versions'])}")
    if "verified" in out:
        print(f"  {'verified':<16} {out['verified']}")
    print("history (oldest first):")
    for h in out["history"]:
        print(f"  #{h['id']:<5} {_ms(h['decided_at'])}  {h['event']:<12} v{h['version']:<4} champion: "
              f"{h['previous_champion']} -> {h['champion_version']}  by {h['actor']}  {h['reason']}")
    return 0 if not str(out.get("verified", "")).startswith("FAILED") else 1


def _read_reference(path: str) -> Any:
    import pandas as pd

    from retrain.artifacts import frame_from_bytes

    p = Path(path)
    name = p.name.lower()
    if name.endswith(".json.gz"):
        return frame_from_bytes(p.read_bytes(), str(p))
    if name.endswith((".jsonl", ".ndjson")):
        return pd.read_json(p, lines=True)
    if name.endswith(".parquet"):
        return pd.read_parquet(p)
    return pd.read_csv(p)


def cmd_register(args: argparse.Namespace) -> int:
    from retrain.artifacts import ArtifactError
    from retrain.registry import Registry, RegistryError, cli_actor

    cfg, store = _setup(args)
    try:
        reference = _read_reference(args.reference)
    except (OSError, ValueError, ImportError) as exc:
        return _refused(RuntimeError(f"cannot read the reference sample {args.reference}: {exc}"))
    try:
        version, events = Registry(cfg, store).register(
            args.model, args.artifact, reference, actor=cli_actor(), trust=args.trust or (),
            params=json.loads(args.params) if args.params else None,
            metrics=json.loads(args.metrics) if args.metrics else None, note=args.note, promote=args.promote)
    except (RegistryError, ArtifactError, json.JSONDecodeError) as exc:
        return _refused(exc)
    print(f"registered {args.model} version {version}" + (" as champion" if args.promote else ""))
    if not args.no_publish:
        _publish(cfg, store)
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from retrain.registry import Registry, RegistryError, cli_actor

    cfg, store = _setup(args)
    try:
        ev = Registry(cfg, store).promote(args.model, args.version, actor=cli_actor(),
                                          reason=args.reason or "manual promotion")
    except RegistryError as exc:
        return _refused(exc)
    print(f"{args.model}: version {ev.champion_version} is champion (was {ev.previous_champion})")
    if not args.no_publish:
        _publish(cfg, store)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from retrain.registry import Registry, RegistryError, cli_actor

    cfg, store = _setup(args)
    try:
        ev = Registry(cfg, store).rollback(args.model, to_version=args.to, actor=cli_actor(),
                                           reason=args.reason or "manual rollback")
    except RegistryError as exc:
        return _refused(exc)
    print(f"{args.model}: rolled back from version {ev.previous_champion} to {ev.champion_version}")
    if not args.no_publish:
        _publish(cfg, store)
    return 0


def cmd_shadow(args: argparse.Namespace) -> int:
    from retrain.registry import Registry, RegistryError, cli_actor

    cfg, store = _setup(args)
    try:
        ev = Registry(cfg, store).start_shadow(args.model, args.version, actor=cli_actor(), replace=args.replace,
                                               reason=args.reason or "manual shadow")
    except RegistryError as exc:
        return _refused(exc)
    print(f"{args.model}: version {ev.version} in shadow beside champion {ev.champion_version}")
    if not args.no_publish:
        _publish(cfg, store)
    return 0


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
