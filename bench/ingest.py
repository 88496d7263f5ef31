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
"""
from __future__ import annotations

import argparse
import cProfile
import io
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

FEATURES = {f"f{i}": "numeric" for i in range(8)} | {"country": "categorical", "device": "categorical"}


def make_events(n: int, uuid_ids: bool = False) -> list[bytes]:
    """``n`` prediction events; ids ``ev-0, ev-1, ...`` or, with ``uuid_ids``, random UUIDs (what
    most services send: each insert then lands at a random place in the store's key index)."""
    rnd = random.Random(1)
    now = int(time.time() * 1000) - 3_600_000
    out = []
    for i in range(n):
        feats = {f"f{j}": round(rnd.gauss(0, 1), 4) for j in range(8)}
        feats |= {"country": rnd.choice(["DE", "FR", "US", "GB"]), "device": rnd.choice(["ios", "android", "web"])}
        p1 = rnd.random()
        eid = str(uuid.UUID(int=rnd.getrandbits(128), version=4)) if uuid_ids else f"ev-{i}"
        out.append(orjson.dumps({"event_id": eid, "model": "bench", "ts": now + i, "features": feats,
                                 "prediction": int(p1 > 0.5), "scores": {"0": 1 - p1, "1": p1}}))
    return out


def publish(bootstrap: str, topic: str, values: list[bytes], key: bytes = b"bench") -> float:
    prod = KafkaProducer(bootstrap_servers=[bootstrap], acks=1, linger_ms=50, batch_size=512 * 1024)
    t = time.perf_counter()
    for i, v in enumerate(values):
        prod.send(topic, key=key, value=v, partition=i % 3)
    prod.flush()
    prod.close()
    return time.perf_counter() - t


def raw_consume(bootstrap: str, topic: str, n: int, max_records: int, lean: bool = False) -> float:
    """Seconds to poll ``n`` records; ``lean``: with the monitor's record unpacking
    (:mod:`driftloop.kafka.lean_records`) instead of kafka-python's."""
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
            for r in recs:
                nbytes += len(r.value)
            got += len(recs)
    dt = time.perf_counter() - t0
    cons.close()
    return dt


def monitor_consume(cfg, n: int, profile: bool) -> tuple[float, Monitor, str]:
    store = Store.from_config(cfg.store)
    mon = Monitor(cfg, store)
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
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(18)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--bootstrap", default=os.environ.get("DRIFTLOOP_TEST_BOOTSTRAP", "127.0.0.1:9092"))
    ap.add_argument("--max-poll-records", type=int, default=5000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--uuid-ids", action="store_true", help="random UUID event ids instead of ev-0, ev-1, ...")
    ap.add_argument("--pipelined", action="store_true",
                    help="also measure a sketch of a two-process design: poll in a child, ingest in the parent")
    ap.add_argument("--store-url", default=None, help="default: a fresh SQLite file; e.g. postgresql://...")
    ap.add_argument("--processes", type=int, default=0,
                    help="also measure N monitor processes in one consumer group (scale-out)")
    args = ap.parse_args()
    n = args.events
    if n < 4 * args.max_poll_records:   # the clock starts after the first batch: it needs several
        ap.error(f"--events must be at least 4 x --max-poll-records ({4 * args.max_poll_records:,})")
    tag = uuid.uuid4().hex[:8]
    tmp = tempfile.mkdtemp(prefix="driftloop-bench-")
    cfg_data = {
        "kafka": {"bootstrap_servers": args.bootstrap, "group_id": f"bench-{tag}"},
        "topics": {"predictions": f"bench{tag}.predictions", "labels": f"bench{tag}.labels",
                   "dlq": f"bench{tag}.dlq", "alerts": f"bench{tag}.alerts", "partitions": 3},
        "store": {"url": args.store_url or f"sqlite:///{tmp}/bench.db"},
        "ingest": {"max_poll_records": args.max_poll_records, "poll_timeout_ms": 200},
        "models": {"bench": {"task": "classification", "features": FEATURES}},
    }
    import yaml
    Path(tmp, "cfg.yaml").write_text(yaml.safe_dump(cfg_data))
    cfg = load_config_dict(cfg_data, environ={})
    from driftloop.kafka.topics import create_topics
    create_topics(cfg)
    events = make_events(n, args.uuid_ids)
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
