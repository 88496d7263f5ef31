"""Ingest throughput: raw kafka-python consumption vs the monitor's full ingest path.

Publishes N prediction events (one per message, like most services) plus labels for half of
them to fresh topics on the local broker, then reads the prediction topic twice in one run:

1. raw: a kafka-python consumer polling batches and touching every record's value, once with
   kafka-python's own record unpacking (the target's baseline) and once with the monitor's
   (:mod:`driftloop.kafka.lean_records`);
2. monitor: the same consumer settings through the monitor (decode + validate + join +
   counters + offsets in one SQLite transaction per batch).

Prints events/s side by side, the ratio (target >= 0.70), where the monitor's time goes, and a
cProfile of the monitor run.  Usage: ``python bench/ingest.py [--events 200000] [--profile]``

``--full [--features 20]`` is issue 17's measure: 500,000 events, the whole monitor service
(default detectors) inline, with its detectors off and with ``analysis.mode: apart``, each beside
a raw kafka-python reader that ``json.loads`` every value (``--versions 1 --apart``).
``--repeat 3`` runs that plan three times, interleaved, and prints each kind's median ratio (this
machine's speed drifts by up to 2x within minutes: one pair of runs is a fragile ratio).

``--full --segments 5`` (issue 18) adds the same two detector runs (inline and apart) with the model
segmented on ``country`` (``models.bench.segments: [country]``), each after its unsegmented twin;
``country`` then takes 5 values (``--segments N``: N) in every run of the invocation, the
unsegmented ones included, so that every row reads the same events.

``--versions 1,2,5`` measures only this: the monitor service with its detectors on the same events
spread round-robin over 1, 2, 5 versions of one model, beside the raw anchor and the same service
with the detectors off (:func:`versions_bench`; figures in ``bench/README.md``, Ingest > Versions).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from consumers.monitor import Monitor
from driftloop.core.config import load_config_dict
from driftloop.core.store import Store
from driftloop.kafka import lean_records

NUMERIC = 8        # numeric features f0..f7, beside two categorical ones (--features N: N - 2 numeric)
COUNTRIES = 4      # values of ``country`` (--segments N: N, the segmented feature)


def features(numeric: int = NUMERIC) -> dict[str, str]:
    """The bench model's features: ``numeric`` numeric ones and ``country``, ``device``."""
    return {f"f{i}": "numeric" for i in range(numeric)} | {"country": "categorical", "device": "categorical"}


def countries(k: int = COUNTRIES) -> list[str]:
    """``k`` values of ``country``: ``DE, FR, US, GB`` (the default 4), then ``IT, BR, ...``, then ``C10, C11, ...``."""
    names = ["DE", "FR", "US", "GB", "IT", "BR", "ES", "PL", "JP", "IN"]
    return (names + [f"C{i}" for i in range(len(names), k)])[:k]


def make_events(n: int, uuid_ids: bool = False, versions: int = 0, numeric: int = NUMERIC,
                n_countries: int = COUNTRIES) -> list[bytes]:
    """``n`` prediction events; ids ``ev-0, ev-1, ...`` or, with ``uuid_ids``, random UUIDs (what
    most services send: each insert then lands at a random place in the store's key index).

    ``versions`` > 0: event ``i`` was served by version ``1 + i % versions`` (round-robin), and
    every event carries ``model_version``: ``null`` for version 1 (the champion: the contract's
    default) and ``"2"``, ``"3"``, ... for the others, so the events are the same, byte for byte
    but for that one field (19-20 bytes), whatever the number of versions.

    ``n_countries``: ``country`` takes that many values, uniformly (:func:`countries`)."""
    rnd = random.Random(1)
    country = countries(n_countries)
    now = int(time.time() * 1000) - 3_600_000
    out = []
    for i in range(n):
        feats = {f"f{j}": round(rnd.gauss(0, 1), 4) for j in range(numeric)}
        feats |= {"country": rnd.choice(country), "device": rnd.choice(["ios", "android", "web"])}
        p1 = rnd.random()
        eid = str(uuid.UUID(int=rnd.getrandbits(128), version=4)) if uuid_ids else f"ev-{i}"
        ev = {"event_id": eid, "model": "bench", "ts": now + i, "features": feats,
              "prediction": int(p1 > 0.5), "scores": {"0": 1 - p1, "1": p1}}
        if versions:
            ev["model_version"] = str(1 + i % versions) if i % versions else None
        out.append(orjson.dumps(ev))
    return out


def publish(bootstrap: str, topic: str, values: list[bytes], key: bytes = b"bench") -> float:
    prod = KafkaProducer(bootstrap_servers=[bootstrap], acks=1, linger_ms=50, batch_size=512 * 1024)
    t = time.perf_counter()
    for i, v in enumerate(values):
        prod.send(topic, key=key, value=v, partition=i % 3)
    prod.flush()
    prod.close()
    return time.perf_counter() - t


def raw_consume(bootstrap: str, topic: str, n: int, max_records: int, lean: bool = False,
                parse: bool = False) -> float:
    """Seconds to poll ``n`` records; ``lean``: with the monitor's record unpacking
    (:mod:`driftloop.kafka.lean_records`) instead of kafka-python's; ``parse``: ``json.loads`` on
    every value (issue 17's anchor) instead of touching its length."""
    cons = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False, max_poll_records=max_records)
    if lean and not lean_records.install(cons):
        raise SystemExit("driftloop.kafka.lean_records does not fit this kafka-python")
    tps = [TopicPartition(topic, p) for p in cons.partitions_for_topic(topic)]
    cons.assign(tps)
    cons.seek_to_beginning(*tps)
    got = nbytes = 0
    t0 = None
    while got < n:
        for recs in cons.poll(timeout_ms=500, max_records=max_records).values():
            if t0 is None:
                t0 = time.perf_counter()
            if parse:
                for r in recs:
                    nbytes += len(json.loads(r.value))
            else:
                for r in recs:
                    nbytes += len(r.value)
            got += len(recs)
    dt = time.perf_counter() - t0
    cons.close()
    return dt


def monitor_consume(cfg, n: int, profile: bool, mon: Monitor | None = None,
                    sorts: tuple[str, ...] = ("tottime",)) -> tuple[float, Monitor, str]:
    """Seconds for ``mon`` (default: the ingest path alone, no detectors) to take ``n`` records,
    from the start of its first batch; with ``profile``, a cProfile of the run sorted by ``sorts``."""
    if mon is None:
        mon = Monitor(cfg, Store.from_config(cfg.store))
    mon.start()
    prof = cProfile.Profile() if profile else None
    t0 = None
    while mon.stats.records < n:
        if t0 is None and mon.stats.records:
            t0 = time.perf_counter() - mon.stats.last_batch_ms / 1000
            if prof:
                prof.enable()
        mon.poll_once()
    dt = time.perf_counter() - t0
    if prof:
        prof.disable()
    mon.close()
    text = ""
    if prof:
        buf = io.StringIO()
        for key in sorts:
            pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(18 if key == "tottime" else 30)
        text = buf.getvalue()
    return dt, mon, text


def _fetch_child(bootstrap: str, topic: str, n: int, max_records: int, conn) -> None:
    """Child process of :func:`pipelined_consume`: poll and ship (topic, partition, offset, value)
    columns of each batch through a pipe."""
    cons = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False, max_poll_records=max_records)
    tps = [TopicPartition(topic, p) for p in cons.partitions_for_topic(topic)]
    cons.assign(tps)
    cons.seek_to_beginning(*tps)
    got = 0
    while got < n:
        for tp, recs in cons.poll(timeout_ms=500, max_records=max_records).items():
            conn.send((tp.topic, tp.partition, [r.offset for r in recs], [r.value for r in recs]))
            got += len(recs)
    conn.send(None)
    cons.close()


def pipelined_consume(cfg, bootstrap: str, n: int) -> float:
    """A sketch of the next step, not the monitor: Kafka polling in a child process, decode +
    validate + join + store in this one (no consumer group, no rebalance handling)."""
    import multiprocessing as mp

    from consumers.ingest import RawRecord, commit, prepare
    from driftloop.core.store import now_ms

    store = Store(cfg.store.url.replace("bench.db", "pipelined.db"))
    store.create_schema()
    parent, child = mp.Pipe(duplex=False)
    proc = mp.get_context("fork").Process(target=_fetch_child, args=(bootstrap, cfg.topics.predictions, n,
                                                                      cfg.ingest.max_poll_records, child))
    proc.start()
    expected: dict = {}
    got = 0
    t0 = None
    while True:
        msg = parent.recv()
        if t0 is None:
            t0 = time.perf_counter()
        if msg is None:
            break
        topic, part, offs, values = msg
        recs = list(map(RawRecord, [topic] * len(offs), [part] * len(offs), offs, values))
        now = now_ms()
        batch = prepare(recs, cfg, now)
        commit(store, cfg, batch, group="pipelined", expected={k: expected.get(k) for k in batch.next_offsets},
               now=now)
        expected.update(batch.next_offsets)
        got += len(recs)
    dt = time.perf_counter() - t0
    proc.join()
    store.dispose()
    return dt


def multi_process(config_path: Path, cfg, n: int, processes: int) -> float:
    """Aggregate rate of ``processes`` monitor processes sharing the topic in one group."""
    import subprocess

    from driftloop.app.stats import collect_stats

    def consumed() -> int:   # on a store shared with the first run its events count as duplicates
        t = collect_stats(cfg, store)["totals"]
        return int(t.get("predictions", 0)) + int(t.get("duplicates", 0))

    store = Store.from_config(cfg.store)
    store.create_schema()
    base = consumed()
    procs = [subprocess.Popen([sys.executable, "-m", "driftloop.app.cli", "monitor", "-c", str(config_path)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(processes)]
    t0 = None
    try:
        while True:
            got = consumed() - base
            if got and t0 is None:
                t0 = time.perf_counter()
            if got >= n:
                dead = [p.returncode for p in procs if p.poll() is not None]
                if dead:
                    print(f"WARNING: {len(dead)} of {processes} monitor processes exited early ({dead}): "
                          "the figure is not a scale-out figure")
                return time.perf_counter() - t0
            time.sleep(0.05)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)
        store.dispose()


def make_reference(rows: int = 10_000, numeric: int = NUMERIC, n_countries: int = COUNTRIES):
    """The champion's sample for :func:`make_events`' model: the same feature distributions, the
    model's outputs (``prediction``, ``score_0``, ``score_1``) and labels (10% wrong)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(2)
    ref = pd.DataFrame({f"f{j}": rng.normal(0, 1, rows).round(4) for j in range(numeric)})
    ref["country"] = rng.choice(countries(n_countries), rows)
    ref["device"] = rng.choice(["ios", "android", "web"], rows)
    p1 = rng.random(rows)
    ref["prediction"] = (p1 > 0.5).astype(int)
    ref["label"] = np.where(rng.random(rows) < 0.1, 1 - ref["prediction"], ref["prediction"])
    ref["score_0"], ref["score_1"] = 1 - p1, p1
    return ref


# what the child of a versions run times apart (owner module, class or None, attribute, label)
_TIMED = (("driftloop.monitoring.analysis", "DriftAnalyser", "analyse", "detectors in all"),
          ("detectors.versions", "VersionedMonitor", "update_predictions", "update"),
          ("driftloop.monitoring.analysis", "DriftAnalyser", "_monitor", "new version"),
          ("detectors.versions", "VersionedMonitor", "snapshot", "snapshot"),
          ("detectors.versions", "VersionedMonitor", "version_status", "status"),
          ("driftloop.core.store", "Store", "save_detector_state", "state write"),
          ("driftloop.monitoring.analysis", None, "record_detector_statistics", "statistics history"))


def _time_calls(spent: dict[str, float], sizes: list[int]) -> None:
    """Wrap :data:`_TIMED` in this process so that each one's seconds add up in ``spent`` (and
    each snapshot's size goes to ``sizes``)."""
    import functools
    import importlib

    for module, cls, attr, label in _TIMED:
        owner = importlib.import_module(module)
        owner = getattr(owner, cls) if cls else owner
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def timed(*a, _fn=fn, _label=label, **kw):
            t = time.perf_counter()
            try:
                out = _fn(*a, **kw)
            finally:
                spent[_label] = spent.get(_label, 0.0) + time.perf_counter() - t
            if _label == "snapshot":
                sizes.append(len(out))
            return out
        setattr(owner, attr, timed)


def _versions_child(cfg_data: dict, base_dir: str, n: int, profile: bool, conn) -> None:
    """One run of a versions measurement, in a fresh process (so that its peak RSS is its own):
    the monitor service (:class:`driftloop.app.service.MonitorService`: ingest, the detectors of
    every version, alerts) takes ``n`` records; sends its figures through ``conn``."""
    import logging

    from driftloop.app.service import MonitorService
    from driftloop.core.gctune import settle_heap

    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)   # "tick skipped" on a busy machine
    spent: dict[str, float] = {}
    sizes: list[int] = []
    if not profile:
        _time_calls(spent, sizes)
    cfg = load_config_dict(cfg_data, base_dir=base_dir, environ={})
    svc = MonitorService(cfg)
    settle_heap(cfg.ingest.gc_young_threshold)   # as `driftloop monitor` does once its service is built
    spent.clear()     # the champion's detectors were built before the clock starts: not in the run
    sizes.clear()
    apart = svc.judges is not None     # analysis.mode apart: a child judges; the run ends once it judged all
    if apart:
        svc.judges.start()
        _wait_for_judge(svc)   # its start-up (imports, detectors) is not in the run either
    else:
        svc.alerts.start()
    ingest_s = None
    try:
        secs, mon, prof = monitor_consume(cfg, n, profile, svc.monitor, sorts=("tottime", "cumulative"))
        if apart:
            ingest_s = secs
            t0 = time.perf_counter()
            while svc._backlog():
                time.sleep(0.02)
            secs += time.perf_counter() - t0
    finally:
        if apart:
            svc.judges.stop()
        else:
            svc.alerts.stop()
    vm = svc.analyser.monitors.get("bench")
    conn.send({"seconds": secs, "ingest_s": ingest_s, "batches": mon.stats.batches, "spent": spent, "sizes": sizes,
               "live": 0 if vm is None else len(vm.versions),
               "rss_mib": _peak_rss_kib() / 1024, "profile": prof})


def _wait_for_judge(svc, timeout_s: float = 120.0) -> None:
    """Until the judging child has loaded its detectors and taken over the journal (its row in
    ``analysis_judge`` names its pid)."""
    import sqlalchemy as sa

    from driftloop.core.tables import analysis_judge

    pid = svc.judges.process.pid
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with svc.store.read_engine.connect() as c:
            owners = [r[0] for r in c.execute(sa.select(analysis_judge.c.owner))]
        if any(o.endswith(f":{pid}") for o in owners):
            return
        time.sleep(0.1)
    raise SystemExit(f"the judging process {pid} did not take over the journal in {timeout_s:.0f} s")


def _peak_rss_kib() -> int:
    """This process's peak RSS since it started (``VmHWM``; ``getrusage``'s ``ru_maxrss`` would
    report the parent's if that was larger: Linux keeps it across the fork and exec of a spawn)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _child_run(cfg_data: dict, base_dir: str, n: int, profile: bool = False) -> dict:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_versions_child, args=(cfg_data, base_dir, n, profile, child))
    proc.start()
    child.close()
    try:
        out = parent.recv()
    except EOFError:
        proc.join()
        raise SystemExit(f"the measured monitor process failed (exit code {proc.exitcode})") from None
    proc.join()
    return out


def _print_repeats(reps: list[list[tuple]]) -> None:
    """Per kind of run, the ratio to its raw reader in each repetition: median, min and max."""
    import statistics

    print()
    print(f"ratio to the raw reader run just before, over {len(reps)} interleaved repetitions:")
    for runs in zip(*reps):        # one kind of run, every repetition of it
        rs = [rate / raw_rate for _run, _k, _detectors, raw_rate, rate, _res in runs]
        print(f"  {runs[0][0]:<12} median {statistics.median(rs):.2f}  (min {min(rs):.2f}, max {max(rs):.2f}; "
              + ", ".join(f"{r:.2f}" for r in rs) + ")")


def _print_segmented(reps: list[list[tuple]]) -> None:
    """``--segments``: each segmented run's rate over its unsegmented twin's, per repetition."""
    print()
    print("segmented / unsegmented monitor events/s (the twin run just before it, same events):")
    for i, rows in enumerate(reps):
        rate = {run: r for run, _k, _detectors, _raw, r, _res in rows}
        pairs = [(run, rate[run] / rate[run.replace("seg-", "")]) for run in rate if _segmented(run)]
        print(f"  repetition {i + 1}: " + ", ".join(f"{run} {x:.2f}" for run, x in pairs))


def _schedule(run: str) -> str:
    """The label suffix of a ``--dc-every-window`` run (its name starts ``dc1-``) or an
    ``--apart`` one (``apart-``), and of a ``--segments`` one (``seg-`` after those)."""
    seg = " segmented" if _segmented(run) else ""
    return (" dc every window" if run.startswith("dc1-") else " apart" if run.startswith("apart-") else "") + seg


def _segmented(run: str) -> bool:
    """Whether a run of the plan is a ``--segments`` one (``seg-v1``, ``apart-seg-v1``)."""
    return run.removeprefix("apart-").startswith("seg-")


def _plan(args, counts: list[int]) -> list[tuple[str, int, bool]]:
    """The runs of :func:`versions_bench`, in order: (name, versions, detectors on). With
    ``--segments`` each detector run is followed by its segmented twin (``seg-``)."""
    twins = ("", "seg-") if args.segments else ("",)
    plan = [("off", counts[0], False)] + [(f"{seg}v{k}", k, True) for k in counts for seg in twins]
    if args.dc_every_window:
        plan += [(f"dc1-v{k}", k, True) for k in counts]
    if args.apart:
        plan += [(f"apart-{seg}v{k}", k, True) for k in counts for seg in twins]
    return plan


def versions_bench(args, cfg_data: dict, tmp: str) -> None:
    """``--versions 1,2,5``: the same events spread round-robin over 1, 2, 5 versions of one
    model, each count on its own topic; per count, the raw anchor then the monitor service with
    its detectors, in a child process each; plus the same service with the detectors off."""
    import copy

    import yaml

    from driftloop.kafka.topics import create_topics

    n, mpr, bootstrap = args.events, args.max_poll_records, args.bootstrap
    counts = [int(v) for v in args.versions.split(",")]
    numeric = args.features - 2
    n_countries = args.segments or COUNTRIES
    make_reference(numeric=numeric, n_countries=n_countries).to_csv(Path(tmp, "ref.csv"), index=False)
    topics: dict[int, str] = {}
    for k in counts:
        data = copy.deepcopy(cfg_data)
        data["topics"]["predictions"] = topics[k] = cfg_data["topics"]["predictions"] + f".v{k}"
        create_topics(load_config_dict(data, environ={}))
        events = make_events(n, args.uuid_ids, versions=k, numeric=numeric, n_countries=n_countries)
        t_pub = publish(bootstrap, topics[k], events)
        print(f"{k} version(s): published {n:,} events ({sum(map(len, events)) / n:.0f} B each) in {t_pub:.1f}s")
        del events

    def config(k: int, detectors: bool, run: str) -> dict:
        data = copy.deepcopy(cfg_data)
        if run.startswith("dc1-"):   # --dc-every-window: the domain classifier on every window (before the gate)
            data["models"]["bench"]["detectors"] = {"domain_classifier_every": 1}
        # --apart: a child process judges (analysis.mode: apart, the default); the other runs inline
        data["analysis"] = {"mode": "apart" if run.startswith("apart-") else "inline"}
        data["topics"]["predictions"] = topics[k]
        data["kafka"]["group_id"] += f"-{run}"
        data["store"]["url"] = args.store_url or f"sqlite:///{tmp}/{run}.db"
        data["api"] = {"enabled": False}
        if detectors:
            data["models"]["bench"]["reference"] = "ref.csv"
        if _segmented(run):   # --segments N: the model segmented on country (N values in every run's events)
            data["models"]["bench"]["segments"] = ["country"]
        Path(tmp, f"{run}.yaml").write_text(yaml.safe_dump(data))   # to rerun one by hand
        return data

    plan = _plan(args, counts)
    # --repeat N: the whole plan N times over, interleaved (off, v1, apart, off, v1, apart, ...), so
    # that a machine whose speed drifts during the run weighs on every kind alike; reps[i]: repetition i's rows
    reps: list[list[tuple]] = []
    for rep in range(args.repeat):
        reps.append([])
        for run, k, detectors in plan:
            name = run if rep == 0 else f"{run}-r{rep}"    # its own store and consumer group
            raw_s = raw_consume(bootstrap, topics[k], n, mpr, parse=args.full)
            res = _child_run(config(k, detectors, name), tmp, n)
            setup = res["spent"].get("new version", 0.0)   # detectors built for versions 2..k in the first batch
            reps[rep].append((run, k, detectors, n / raw_s, n / (res["seconds"] - setup), res))
            print(f"  {name}: raw {n / raw_s:,.0f} events/s, monitor {n / res['seconds']:,.0f} events/s "
                  f"({n / (res['seconds'] - setup):,.0f} without the new versions' setup, {setup:.1f}s)"
                  + (f"; ingestion alone {n / res['ingest_s']:,.0f} events/s, the last judgement "
                     f"{res['seconds'] - res['ingest_s']:.1f}s after it" if res.get("ingest_s") else ""), flush=True)

    if args.repeat > 1:
        _print_repeats(reps)
    if args.segments:
        _print_segmented(reps)
    rows = reps[0]   # the tables below: the first repetition
    one = next((r[4] for r in rows if r[2] and r[1] == 1), rows[1][4])
    print()
    print(f"{n:,} events, model_version round-robin (v1 = null, the champion; others unregistered: judged on the "
          f"champion's sample); batches of {mpr:,}; default detectors; each monitor run in its own process")
    if args.segments:
        print(f"'segmented': models.bench.segments: [country], country with {args.segments} values (uniform) in "
              "every run's events, the unsegmented runs' too")
    lw = 32 if args.segments or args.dc_every_window else 22     # the label column: "1 (1 monitors) apart segmented"
    print("monitor ev/s: without the one-off setup of versions 2..k's detectors in the first batch (its seconds:"
          " 'setup'); ratios on it; 'whole run' includes it")
    print(f"{'versions':<{lw}}{'monitor ev/s':>13}{'ratio to 1 version':>19}{'ratio to raw':>13}{'peak RSS':>9}"
          f"{'raw ev/s':>9}{'whole run':>10}{'setup':>7}{'detectors':>10}{'snapshot':>9}{'snapshot':>10}")
    print(f"{'':<{lw}}{'':>13}{'':>19}{'':>13}{'MiB':>9}{'':>9}{'ev/s':>10}{'s':>7}{'us/event':>10}{'us/event':>9}"
          f"{'KiB/batch':>10}")
    for _run, k, detectors, raw_rate, rate, res in rows:
        label = f"{k} (detectors off)" if not detectors else f"{k} ({res['live']} monitors)"
        label += _schedule(_run)
        sp, sizes = res["spent"], res["sizes"]
        kib = f"{sum(sizes) / len(sizes) / 1024:,.0f}" if sizes else "-"
        print(f"{label:<{lw}}{rate:>13,.0f}{rate / one:>19.2f}{rate / raw_rate:>13.2f}{res['rss_mib']:>9,.0f}"
              f"{raw_rate:>9,.0f}{n / res['seconds']:>10,.0f}{sp.get('new version', 0):>7.1f}"
              f"{1e6 * (sp.get('detectors in all', 0) - sp.get('new version', 0)) / n:>10.1f}"
              f"{1e6 * sp.get('snapshot', 0) / n:>9.1f}{kib:>10}")
    print()
    print("detectors' time per event (us), by part (inside the batch transaction; 'other' = routing, batches, "
          "alerts):")
    parts = [label for _m, _c, _a, label in _TIMED[1:]]
    print(f"{'versions':<{lw}}" + "".join(f"{p:>20}" for p in parts) + f"{'other':>10}")
    for _run, k, detectors, _raw, _rate, res in rows:
        if not detectors:
            continue
        sp = res["spent"]
        other = sp.get("detectors in all", 0) - sum(sp.get(p, 0) for p in parts)
        name = f"{k}{_schedule(_run)}"
        print(f"{name:<{lw}}" + "".join(f"{1e6 * sp.get(p, 0) / n:>20.1f}" for p in parts) + f"{1e6 * other / n:>10.1f}")
    if args.profile:
        k = max(counts)
        res = _child_run(config(k, True, f"profile-v{k}"), tmp, n, profile=True)
        print()
        print(f"cProfile of a separate run with {k} versions ({n / res['seconds']:,.0f} events/s under the profiler; "
              "read it for where the time goes, not for the rate):")
        print(res["profile"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=None, help="default 200,000 (--full: 500,000)")
    ap.add_argument("--full", action="store_true",
                    help="issue 17's measure: the whole monitor (default detectors; inline, detectors off and "
                         "analysis.mode apart) beside a raw reader that json.loads every value; --versions 1 --apart")
    ap.add_argument("--features", type=int, default=NUMERIC + 2,
                    help="with --versions/--full: features per event (N - 2 numeric, 2 categorical; default 10)")
    ap.add_argument("--bootstrap", default=os.environ.get("DRIFTLOOP_TEST_BOOTSTRAP", "127.0.0.1:9092"))
    ap.add_argument("--max-poll-records", type=int, default=5000)
    ap.add_argument("--profile", action="store_true",
                    help="with --versions: also profile a separate run with the most versions")
    ap.add_argument("--versions", default=None, metavar="1,2,5",
                    help="only this: the monitor with its detectors on the same events spread round-robin over "
                         "1, 2, 5 versions of one model, beside the raw anchor and the detectors off")
    ap.add_argument("--apart", action="store_true",
                    help="with --versions: also the monitor with analysis.mode apart (a child process judges); "
                         "its run ends when the last event is judged")
    ap.add_argument("--dc-every-window", action="store_true",
                    help="with --versions: also the same runs with the domain classifier judging every window "
                         "(domain_classifier_every: 1, the schedule before the gate)")
    ap.add_argument("--segments", type=int, default=0, metavar="N",
                    help="with --versions/--full: also each detector run with the model segmented on country, "
                         "which then takes N values in every run's events (issue 18)")
    ap.add_argument("--uuid-ids", action="store_true", help="random UUID event ids instead of ev-0, ev-1, ...")
    ap.add_argument("--pipelined", action="store_true",
                    help="also measure a sketch of a two-process design: poll in a child, ingest in the parent")
    ap.add_argument("--store-url", default=None, help="default: a fresh SQLite file; e.g. postgresql://...")
    ap.add_argument("--processes", type=int, default=0,
                    help="also measure N monitor processes in one consumer group (scale-out)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="with --versions/--full: run the whole plan this many times, interleaved; prints each "
                         "kind's median ratio to its raw reader")
    ap.add_argument("--gc-default", action="store_true",
                    help="the monitor processes keep CPython's garbage-collector thresholds (no settle_heap)")
    args = ap.parse_args()
    if args.full:
        args.versions, args.apart = args.versions or "1", True
    if args.features < 3:
        ap.error("--features must be at least 3 (2 are categorical)")
    if args.segments and not args.versions:
        ap.error("--segments needs --full or --versions")
    if args.segments < 0:
        ap.error("--segments is a number of values, at least 1")
    n = args.events = args.events or (500_000 if args.full else 200_000)
    if n < 4 * args.max_poll_records:   # the clock starts after the first batch: it needs several
        ap.error(f"--events must be at least 4 x --max-poll-records ({4 * args.max_poll_records:,})")
    tag = uuid.uuid4().hex[:8]
    tmp = tempfile.mkdtemp(prefix="driftloop-bench-")
    cfg_data = {
        "kafka": {"bootstrap_servers": args.bootstrap, "group_id": f"bench-{tag}"},
        "topics": {"predictions": f"bench{tag}.predictions", "labels": f"bench{tag}.labels",
                   "dlq": f"bench{tag}.dlq", "alerts": f"bench{tag}.alerts", "partitions": 3},
        "store": {"url": args.store_url or f"sqlite:///{tmp}/bench.db"},
        "ingest": {"max_poll_records": args.max_poll_records, "poll_timeout_ms": 200,
                   **({"gc_young_threshold": 0} if args.gc_default else {})},
        "models": {"bench": {"task": "classification", "features": features(args.features - 2)}},
    }
    import yaml
    Path(tmp, "cfg.yaml").write_text(yaml.safe_dump(cfg_data))
    cfg = load_config_dict(cfg_data, environ={})
    if args.versions:
        versions_bench(args, cfg_data, tmp)
        return
    from driftloop.kafka.topics import create_topics
    create_topics(cfg)
    events = make_events(n, args.uuid_ids, numeric=args.features - 2)
    size = sum(map(len, events)) / n
    t_pub = publish(args.bootstrap, cfg.topics.predictions, events)
    print(f"published {n:,} prediction events ({size:.0f} B each) in {t_pub:.1f}s")

    raw_s = raw_consume(args.bootstrap, cfg.topics.predictions, n, args.max_poll_records)
    lean_s = raw_consume(args.bootstrap, cfg.topics.predictions, n, args.max_poll_records, lean=True)
    mon_s, mon, prof = monitor_consume(cfg, n, args.profile)
    raw_rate, mon_rate = n / raw_s, n / mon_s
    st = mon.stats
    print()
    print(f"{'path':<44}{'events/s':>12}{'seconds':>10}")
    print(f"{'raw kafka-python poll (values touched)':<44}{raw_rate:>12,.0f}{raw_s:>10.2f}")
    print(f"{'raw poll, lean unpacking (as the monitor)':<44}{n / lean_s:>12,.0f}{lean_s:>10.2f}")
    print(f"{'monitor: decode+validate+join+store':<44}{mon_rate:>12,.0f}{mon_s:>10.2f}")
    print(f"ratio monitor/raw: {mon_rate / raw_rate:.2f}  (target >= 0.70; against kafka-python's own unpacking)")
    print(f"ratio monitor/raw with the monitor's unpacking: {mon_rate * lean_s / n:.2f}")
    total = st.poll_s + st.prepare_s + st.commit_s + st.outbox_s
    print()
    print("where the monitor's time goes:")
    for name, v in (("consumer.poll (Kafka fetch + record parsing)", st.poll_s),
                    ("decode + validate (msgspec, numpy columns)", st.prepare_s),
                    ("join + counters + offsets (one store txn/batch)", st.commit_s),
                    ("outbox publish", st.outbox_s)):
        print(f"  {name:<52}{v:>7.2f}s {100 * v / total:>5.1f}%  {1e6 * v / n:>6.2f} us/event")
    print(f"  batches: {st.batches}, mean batch {1000 * (st.prepare_s + st.commit_s) / max(1, st.batches):.1f} ms "
          f"(excluding poll)")
    if args.pipelined:
        pipe_s = pipelined_consume(cfg, args.bootstrap, n)
        print(f"sketch, poll in a child process + ingest here: {n / pipe_s:,.0f} events/s, "
              f"ratio to raw {n / pipe_s / raw_rate:.2f}")
    if args.processes:
        import yaml
        cfg_path = Path(tmp) / "multi.yaml"
        data = yaml.safe_load(Path(tmp, "cfg.yaml").read_text())
        data["kafka"]["group_id"] += "-multi"
        data["store"]["url"] = args.store_url or f"sqlite:///{tmp}/multi.db"
        data["api"] = {"enabled": False}   # N processes on one port: all but one would exit at start
        cfg_path.write_text(yaml.safe_dump(data))
        from driftloop.core.config import load_config
        mcfg = load_config(cfg_path, environ={})
        multi_s = multi_process(cfg_path, mcfg, n, args.processes)
        writer = "SQLite's single writer" if mcfg.store.url.startswith("sqlite") else "PostgreSQL"
        print(f"{args.processes} monitor processes, one group (aggregate, on {writer}): "
              f"{n / multi_s:,.0f} events/s, ratio to raw {n / multi_s / raw_rate:.2f}")
    if prof:
        print()
        print(prof)


if __name__ == "__main__":
    main()
