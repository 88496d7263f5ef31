"""Helpers for tests that talk to the real broker: publish, read a topic, run the monitor."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from driftloop.app.stats import collect_stats
from driftloop.core.config import Config
from driftloop.core.store import Store
from driftloop.monitoring.journal import backlog

ROOT = Path(__file__).resolve().parents[1]
NOW_MS = int(time.time() * 1000)


TOPIC_KEYS = ("predictions", "labels", "alerts", "retrain", "models", "dlq")


def isolated_kafka(bootstrap: str, tag: str) -> dict[str, Any]:
    """The ``kafka`` and ``topics`` sections of one test's config: a consumer group and topics of
    its own (named after ``tag``), 3 partitions, and a 6 s session (kafka-python 3's default of
    45 s would make every rebalance in a test wait that long)."""
    return {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": f"test-{tag}", "session_timeout_ms": 6000,
                  "heartbeat_interval_ms": 1000},
        "topics": {name: f"t{tag}.{name}" for name in TOPIC_KEYS} | {"partitions": 3},
    }


def prediction(i: int, model: str = "fraud") -> dict[str, Any]:
    rnd = random.Random(i)
    return {"event_id": f"p{i}", "model": model, "ts": NOW_MS - 3_600_000 + i,
            "features": {"amount": round(rnd.lognormvariate(3, 1), 2), "age": rnd.randint(18, 90),
                         "country": rnd.choice(["DE", "FR", "US", None])},
            "prediction": i % 2, "scores": {"0": 0.3, "1": 0.7} if i % 2 else {"0": 0.8, "1": 0.2}}


def label(i: int, model: str = "fraud") -> dict[str, Any]:
    return {"event_id": f"p{i}", "model": model, "ts": NOW_MS - 1_000_000 + i, "label": (i // 3) % 2}


def invalid_messages(n: int = 200) -> list[tuple[str, bytes]]:
    """``n`` invalid messages of many kinds: (side, raw value)."""
    kinds = [
        ("p", lambda i: b"not json at all %d" % i),
        ("p", lambda i: b'{"event_id": "bad%d", "model": "fraud"' % i),                 # truncated
        ("p", lambda i: orjson.dumps(prediction(10**6 + i) | {"prediction": [1]})),       # wrong type
        ("p", lambda i: orjson.dumps({k: v for k, v in prediction(10**6 + i).items() if k != "features"})),
        ("p", lambda i: b'{"event_id":"n%d","model":"fraud","ts":1,"features":{"amount":NaN},"prediction":1}' % i),
        ("p", lambda i: b'{"event_id":"i%d","model":"fraud","ts":1,"features":{"amount":1e999},"prediction":1}' % i),
        ("p", lambda i: orjson.dumps(prediction(10**6 + i, model="unknown-model"))),
        ("p", lambda i: b"[" + b",".join([orjson.dumps(prediction(10**7 + i))] * 1) + b"]" + b" " * 1_100_000),
        ("p", lambda i: b'{"event_id":"\xff\xfe%d","model":"fraud"}' % i),                 # not UTF-8
        ("p", lambda i: orjson.dumps(prediction(10**6 + i) | {"features": {"amount": "12"}})),
        ("p", lambda i: orjson.dumps(prediction(10**6 + i) | {"ts": "yesterday-ish"})),
        ("l", lambda i: orjson.dumps({"event_id": f"x{i}", "model": "fraud", "ts": NOW_MS})),  # no label
        ("l", lambda i: orjson.dumps({"event_id": f"x{i}", "model": "fraud", "ts": NOW_MS, "label": {"a": 1}})),
        ("l", lambda i: b"\x00\x01\x02binary%d" % i),
    ]
    out = []
    for i in range(n):
        side, make = kinds[i % len(kinds)]
        out.append((side, make(i)))
    return out


def produce(bootstrap: str, messages: list[tuple[str, bytes | None, bytes]], *, spread: int = 0) -> None:
    """Publish (topic, key, value) with kafka-python, acks=all, and wait.

    ``spread=k`` sends message i to partition ``i % k`` instead of by key: one model's events
    then cross partitions, and so monitor instances.
    """
    prod = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", linger_ms=20,
                         max_request_size=16 * 1024 * 1024, batch_size=256 * 1024)
    for i, (topic, key, value) in enumerate(messages):
        prod.send(topic, key=key, value=value, partition=(i % spread) if spread else None)
    prod.flush(60)
    prod.close()


def read_topic(bootstrap: str, topic: str, timeout_s: float = 20.0) -> list[Any]:
    """Every record of a topic, from the beginning to the current end."""
    cons = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False,
                         consumer_timeout_ms=2000)
    parts = cons.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in parts]
    cons.assign(tps)
    cons.seek_to_beginning(*tps)
    end = cons.end_offsets(tps)
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while any(cons.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
        for recs in cons.poll(timeout_ms=500).values():
            out.extend(recs)
    cons.close()
    return out


def journal_judged(store: Store) -> bool:
    """Nothing waits in the analysis journal (always, with ``analysis.mode: inline``)."""
    with store.read_engine.connect() as c:     # lock-free: never behind a long batch
        return backlog(c).entries == 0


def wait_for_counts(cfg: Config, want: dict[str, int], timeout_s: float = 120.0, model: str = "fraud",
                    proc: subprocess.Popen | None = None) -> dict[str, Any]:
    """Wait until the store's counts are ``want`` and nothing waits in the analysis journal
    (``analysis.mode: apart``: the judging process has judged what was counted)."""
    store = Store.from_config(cfg.store)
    store.create_schema()
    deadline = time.monotonic() + timeout_s
    stats: dict[str, Any] = {}
    try:
        while time.monotonic() < deadline:
            stats = collect_stats(cfg, store)
            got = {k: (stats["totals"][k] if k == "invalid" else stats["models"][model][k]) for k in want}
            if got == want and journal_judged(store):
                return stats
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"monitor exited with {proc.returncode}; last stats {json.dumps(stats)}")
            time.sleep(0.3)
    finally:
        store.dispose()
    raise AssertionError(f"counts not reached (or not judged) in {timeout_s}s: want {want}, have {json.dumps(stats)}")


def start_monitor(config_path: Path, *extra: str, log_path: Path | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - handed to the child process
    return subprocess.Popen([sys.executable, "-m", "driftloop.app.cli", "monitor", "-c", str(config_path), *extra],
                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def publish_outbox(cfg: Config, store: Store, topics: list[str] | None = None) -> int:
    """Publish the store's unsent outbox rows (only ``topics``' if given) with a producer of its
    own, as the monitor or the worker would; returns how many were acknowledged."""
    from driftloop.core.outbox import OutboxPublisher
    from driftloop.kafka.clients import make_producer

    producer = make_producer(cfg.kafka)
    try:
        return OutboxPublisher(store, producer, topics).publish_pending()
    finally:
        producer.close(timeout=10)


def end_offsets(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    """Each partition's end offset (the next offset a produced record gets) for ``topics``."""
    cons = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(cons.partitions_for_topic(t) or ())]
        return {(tp.topic, tp.partition): int(o) for tp, o in cons.end_offsets(tps).items()}
    finally:
        cons.close()


def consumed_to_end(cfg: Config, topics: list[str] | None = None) -> bool:
    """True when the store's offsets of ``cfg``'s consumer group reached the end of every
    partition of ``topics`` (default: predictions and labels) that holds records: everything
    produced so far was consumed and committed, so nothing more can be counted until more is
    produced. Compare counts after this rather than after a sleep.

    Usage: ``wait_until(lambda: consumed_to_end(cfg), 60, "the monitor consumed everything")``
    """
    from driftloop.core.store import offsets

    want = end_offsets(cfg.kafka.bootstrap_servers, topics or [cfg.topics.predictions, cfg.topics.labels])
    store = Store.from_config(cfg.store)
    try:
        with store.engine.connect() as c:
            have = {(r.topic, r.partition): int(r.next_offset)
                    for r in c.execute(offsets.select().where(offsets.c.group_id == cfg.kafka.group_id))}
    finally:
        store.dispose()
    return all(have.get(tp, 0) >= end for tp, end in want.items() if end > 0)


def group_members(bootstrap: str, group: str) -> tuple[str, list[list[tuple[str, int]]]]:
    """The consumer group's state as the broker's coordinator sees it (``Stable``,
    ``PreparingRebalance``, ``CompletingRebalance``, ``Empty``, ``Dead``) and each member's
    assigned partitions. Wait on it instead of sleeping "until the members joined", e.g.
    ``wait_until(lambda: group_members(bootstrap, group)[0] == "Stable", 60, "the group formed")``."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=10000)
    try:
        info = admin.describe_groups([group])[group]
    finally:
        admin.close()
    members = []
    for m in info.get("members") or []:
        assignment = m.get("member_assignment") or {}
        parts = assignment.get("assigned_partitions") if isinstance(assignment, dict) else None
        members.append(sorted((a["topic"], p) for a in parts or [] for p in a["partitions"]))
    return str(info.get("group_state")), members

