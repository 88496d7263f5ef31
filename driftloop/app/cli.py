"""The ``driftloop`` command line (see ``driftloop --help`` and the contract's command table)."""
from __future__ import annotations

import argparse
import faulthandler
import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

from driftloop.core.config import Config, ConfigError, load_config
from driftloop.core.logsetup import configure as configure_logging

__all__ = ["main", "build_parser"]

log = logging.getLogger("driftloop")


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def cmd_monitor(args: argparse.Namespace) -> int:
    from driftloop.app.service import MonitorService
    from driftloop.core.gctune import settle_heap

    cfg = _config(args)
    service = MonitorService(cfg)
    settle_heap(cfg.ingest.gc_young_threshold)
    service.install_signal_handlers()
    stats = service.run(max_seconds=args.max_seconds)
    log.info("monitor stopped after %d batches, %d records", stats.batches, stats.records)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from driftloop.app.stats import collect_stats
    from driftloop.core.store import Store

    cfg = _config(args)
    store = Store.from_config(cfg.store)
    store.create_schema()
    from driftloop.alerts.cli import firing_counts
    from driftloop.alerts.incidents_cli import open_incident_counts
    stats = collect_stats(cfg, store, firing_alerts=firing_counts(store), open_incidents=open_incident_counts(store))
    if args.json:
        print(json.dumps(stats, indent=2, sort_keys=True))
    else:
        cols = ("predictions", "labels", "joined", "invalid", "duplicates", "pending_labels", "firing_alerts",
                "open_incidents")
        print(f"{'model':<24}" + "".join(f"{c:>15}" for c in cols))
        for name, row in stats["models"].items():
            print(f"{name:<24}" + "".join(f"{row[c]:>15}" for c in cols))
        print(f"invalid events naming no known model: {stats['unattributed']['invalid']}")
    return 0


def cmd_topics_create(args: argparse.Namespace) -> int:
    from driftloop.kafka.clients import wait_for_broker
    from driftloop.kafka.topics import create_topics, topic_specs

    cfg = _config(args)
    wait_for_broker(cfg.kafka, timeout_s=args.wait)
    result = create_topics(cfg)
    specs = topic_specs(cfg)
    for name, status in result.items():
        print(f"{name:<32} {specs[name]:>3} partitions  {status}")
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from driftloop.core.events import json_schemas

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, doc in json_schemas().items():
        path = out / f"{name}-event.schema.json"
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(path)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """0 when the loop closed (an alert fired, a challenger was promoted, the alerts it answered
    resolved), 1 when a step is missing (named on stderr), 2 when the demo's extra is missing."""
    from driftloop.app.demo import DemoDependencyMissing, run_demo

    if args.task == "ranking":
        if args.shadow or args.registry != "local":
            print("driftloop demo: --task ranking runs with the local registry and no shadow phase", file=sys.stderr)
            return 2
        from driftloop.app.demo_ranking import missing_steps, run_ranking_demo

        missing = missing_steps(run_ranking_demo(bootstrap=args.bootstrap, fast=args.fast, keep=args.keep))
        if missing:
            print(f"driftloop demo: the loop did not close: {'; '.join(missing)}", file=sys.stderr)
        return 1 if missing else 0
    try:
        result = run_demo(bootstrap=args.bootstrap, fast=args.fast, keep=args.keep, shadow=args.shadow,
                          registry=args.registry, mlflow_uri=args.mlflow_uri)
    except DemoDependencyMissing as exc:
        print(f"driftloop: {exc}", file=sys.stderr)
        return 2
    missing = result.missing_steps()
    if missing:
        print(f"driftloop demo: the loop did not close: {'; '.join(missing)}", file=sys.stderr)
    return 1 if missing else 0


def cmd_replay(args: argparse.Namespace) -> int:
    import orjson
    from rich.progress import Progress

    from driftloop.app.replay import replay
    from driftloop.core.gctune import settle_heap

    cfg = _config(args)
    settle_heap(cfg.ingest.gc_young_threshold)
    out = open(args.out, "wb") if args.out else sys.stdout.buffer  # noqa: SIM115 - closed below
    n_alerts = 0

    def write(msg: dict[str, Any]) -> None:
        nonlocal n_alerts
        n_alerts += 1
        out.write(orjson.dumps(msg) + b"\n")

    try:
        with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task("replaying", total=None)
            result = replay(cfg, args.predictions, args.labels, on_alert=write, report=args.report,
                            registry=args.registry,
                            progress=lambda done, total: bar.update(task, completed=done, total=total))
    except ValueError as exc:
        print(f"driftloop: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.out:
            out.close()
    _print_registry_use(result["registry"])
    totals = result["stats"]["totals"]
    print(f"replayed {result['records']:,} events: {totals['predictions']:,} predictions, {totals['labels']:,} labels, "
          f"{totals['joined']:,} joined, {totals['invalid']:,} invalid; {n_alerts} alert changes in "
          f"{len(result['incidents'])} incidents", file=sys.stderr)
    for inc in result["incidents"]:
        print(f"  incident {inc['incident_id']} ({inc['status']}, {len(inc['members'])} alerts): "
              f"{(inc['hint'] or {}).get('text') or inc['summary'] or ''}", file=sys.stderr)
    return 0


def _print_registry_use(used: dict[str, Any] | None) -> None:
    """Say on stderr which references the replay used, and when it switched champions."""
    from driftloop.core.clock import rfc3339

    if used is None:
        print("references: the configured reference files (no registry used)", file=sys.stderr)
        return
    print(f"references and champion switches: the registry of {used['source']} ({', '.join(used['models'])})",
          file=sys.stderr)
    for sw in used["switches"]:
        when = ("in effect at the first event" if sw["at_start"]
                else f"applied before event #{sw['before_record'] + 1:,}")
        print(f"  {sw['model']}: {sw['event']} v{sw['version']} at {rfc3339(sw['decided_at'])}, {when}",
              file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="driftloop", description="Drift monitoring and retraining on Kafka.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("-c", "--config", required=True, help="YAML or TOML configuration file")
        return sp

    m = with_config(sub.add_parser("monitor", help="consumers + detectors + alerts"))
    m.add_argument("--max-seconds", type=float, default=None, help="stop after this long (tests, demos)")
    m.set_defaults(func=cmd_monitor)

    s = with_config(sub.add_parser("stats", help="per-model counts"))
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_stats)

    t = sub.add_parser("topics", help="manage driftloop's Kafka topics")
    tsub = t.add_subparsers(dest="topics_command", required=True)
    tc = with_config(tsub.add_parser("create", help="create missing topics"))
    tc.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the broker")
    tc.set_defaults(func=cmd_topics_create)

    r = with_config(sub.add_parser("replay", help="the detectors and alerts offline over JSONL/CSV/Parquet files"))
    r.add_argument("--predictions", required=True, help="prediction events (.jsonl, .csv or .parquet)")
    r.add_argument("--labels", help="label events (same formats)")
    r.add_argument("--out", help="write the alert messages here as JSON lines (default: standard output)")
    r.add_argument("--report", help="also write a self-contained HTML report (drift, performance, alerts)")
    r.add_argument("--registry", action=argparse.BooleanOptionalAction, default=None,
                   help="references and champion switches from the registry of the configuration's store (read "
                        "only): each promotion or rollback takes effect before the first event whose ts is at or "
                        "after its time, as the live monitor switches. Default: used when the store holds a "
                        "version of a configured model (said on stderr); --registry requires it, --no-registry "
                        "uses the configured reference files only")
    r.set_defaults(func=cmd_replay)

    d = sub.add_parser("demo", help="the whole loop on a local broker with a drifting stream",
                       description="The whole loop on a local broker with a drifting stream. Needs the demo's "
                                   "extra (River, for the data): pip install 'driftloop[demo]'. Exit code 0 "
                                   "when an alert fired, a challenger was promoted and the alerts it answered "
                                   "resolved; 1 otherwise; 2 without the extra.")
    d.add_argument("--bootstrap", default="127.0.0.1:9092")
    d.add_argument("--fast", action="store_true", help="a smaller stream (CI)")
    d.add_argument("--keep", action="store_true", help="keep the work folder (store, config)")
    d.add_argument("--shadow", action="store_true",
                   help="the challenger first runs in shadow beside the champion and is promoted on the live "
                        "paired comparison (exit code 0 only when the shadow phase ended in a promotion)")
    d.add_argument("--registry", choices=["local", "mlflow"], default="local",
                   help="mlflow: MLflow is the model registry (the `mlflow` extra; a local MLflow server is started "
                        "unless --mlflow-uri names one); exit code 0 only when its alias follows the promotion")
    d.add_argument("--mlflow-uri", default=None, help="with --registry mlflow: a running tracking server's URL")
    d.add_argument("--task", choices=["classification", "ranking"], default="classification",
                   help="ranking: a recommender on a synthetic shop whose tastes shift (contract v1.1 ranking "
                        "events); exit code 0 also needs NDCG@10 to recover under the promoted challenger")
    d.set_defaults(func=cmd_demo)

    from driftloop.alerts.cli import add_commands as add_alert_commands
    from driftloop.alerts.incidents_cli import add_commands as add_incident_commands
    add_alert_commands(sub)
    add_incident_commands(sub)

    sc = sub.add_parser("schemas", help="write the events' JSON Schema files")
    sc.add_argument("--out", default="schemas")
    sc.set_defaults(func=cmd_schemas)

    from retrain.cli import add_commands as add_retrain_commands
    add_retrain_commands(sub)
    return p


def _dump_stacks_on_sigusr1() -> None:
    """``kill -USR1 PID`` writes every thread's stack to stderr: how to see where a stuck
    monitor or worker waits, without stopping it."""
    import signal
    if hasattr(signal, "SIGUSR1") and sys.stderr is not None:
        try:
            faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True, chain=False)
        except (ValueError, OSError, AttributeError, io.UnsupportedOperation):
            pass   # not the main thread, or stderr has no file descriptor (embedded use)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    _dump_stacks_on_sigusr1()
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"driftloop: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one clear line for known operational failures
        from driftloop.kafka.clients import BrokerUnavailable
        if isinstance(exc, BrokerUnavailable):
            print(f"driftloop: {exc}", file=sys.stderr)
            return 3
        raise


if __name__ == "__main__":
    sys.exit(main())
