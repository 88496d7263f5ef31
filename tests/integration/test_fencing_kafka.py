"""Fencing shown on Kafka: two real ``driftloop monitor`` processes, a rebalance in the middle
of a batch, exact counts.

The fence is forced, not hoped for. Every step waits for the condition it needs:

1. monitor A runs alone and consumes chunk 1 (it owns every partition);
2. a hold file is created (``consumers.ingest.HOLD_BATCH_ENV``, set for A only) and chunk 2 is
   published: A polls and prepares a batch of it, logs that it holds it and waits before its
   transaction. That batch is in flight: its expected offsets are chunk 1's end;
3. A is SIGSTOPped (no heartbeats) and monitor B starts: once A's 6 s session expires the group
   gives every partition to B, which resumes from the stored offsets and commits all of chunk 2;
4. the hold file goes and A gets SIGCONT: its batch reaches the store, finds offsets B moved,
   and is fenced and rolled back (A logs "partitions processed by another consumer");
5. A rejoins the group, the two share the partitions, and chunk 3 is consumed.

Then: the counts are exactly what was published (no duplicate, nothing lost), each process
committed records (the ``monitor stopped after ... records`` line of each), and the records the
two committed add up to what was published: the fenced batch counted nowhere.
"""
from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaAdminClient

from consumers.ingest import HOLD_BATCH_ENV
from tests.fault_helpers import spawn, stop_process, wait_until
from tests.kafka_helpers import label, prediction, produce, wait_for_counts

pytestmark = [pytest.mark.kafka]

CHUNK = 600          # events per chunk: CHUNK predictions and CHUNK labels
FENCE_LOG = "partitions processed by another consumer"
HOLD_LOG = f"{HOLD_BATCH_ENV}: holding a batch"


def chunk(cfg: Any, k: int) -> list[tuple[str, bytes, bytes]]:
    """Events ``k*CHUNK .. (k+1)*CHUNK - 1``: each prediction, then its label."""
    out: list[tuple[str, bytes, bytes]] = []
    for i in range(k * CHUNK, (k + 1) * CHUNK):
        out.append((cfg.topics.predictions, b"fraud", orjson.dumps(prediction(i))))
        out.append((cfg.topics.labels, b"fraud", orjson.dumps(label(i))))
    return out


def counts(n_events: int) -> dict[str, int]:
    return {"predictions": n_events, "labels": n_events, "joined": n_events, "duplicates": 0, "invalid": 0}


def committed_records(log: Path) -> int:
    """Records the process committed, from its ``monitor stopped after N batches, M records`` line."""
    runs = re.findall(r"monitor stopped after \d+ batches, (\d+) records", log.read_text())
    assert len(runs) == 1, f"one clean stop in {log.name}: {runs}"
    return int(runs[0])


def members_with_partitions(bootstrap: str, group: str) -> int:
    """Members of a stable group that own at least one partition."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=5000)
    try:
        desc = admin.describe_groups([group])[group]
    finally:
        admin.close()
    if desc["group_state"] != "Stable":
        return 0
    return sum(1 for m in desc["members"]
               if any(a["partitions"] for a in (m.get("member_assignment") or {}).get("assigned_partitions", [])))


class Monitors:
    """The two monitor processes of the test; ``close`` leaves none behind, stopped or not."""

    def __init__(self, config: Path, tmp: Path, hold: Path) -> None:
        self.config, self.tmp, self.hold = config, tmp, hold
        self.procs: dict[str, subprocess.Popen] = {}

    def log(self, name: str) -> Path:
        return self.tmp / f"monitor-{name}.log"

    def text(self, name: str) -> str:
        return self.log(name).read_text(errors="replace")

    def start(self, name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        self.procs[name] = spawn("monitor", "-c", str(self.config), log=self.log(name), env=env)
        return self.procs[name]

    def close(self) -> None:
        self.hold.unlink(missing_ok=True)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
        for proc in self.procs.values():
            stop_process(proc)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """The store both monitors share: one SQLite file (None: make_config's) or a PostgreSQL database."""
    return request.getfixturevalue("postgres_url") if request.param == "postgres" else None


def test_rebalance_mid_batch_fences_it_and_counts_stay_exact(kafka_bootstrap, make_config, store_url, tmp_path):
    path, cfg = make_config(store_url=store_url, ingest__max_poll_records=300)
    hold = tmp_path / "hold-batch"
    mons = Monitors(path, tmp_path, hold)
    try:
        # 1. A alone consumes chunk 1
        a = mons.start("a", env={HOLD_BATCH_ENV: str(hold)})
        produce(kafka_bootstrap, chunk(cfg, 0), spread=3)
        wait_for_counts(cfg, counts(CHUNK), timeout_s=120, proc=a)
        # 2. A's next batch (of chunk 2) is held after its poll, before its transaction
        hold.touch()
        produce(kafka_bootstrap, chunk(cfg, 1), spread=3)
        wait_until(lambda: HOLD_LOG in mons.text("a"), 60, "A holds a batch of chunk 2", proc=a, log=mons.log("a"))
        # 3. A frozen: its session expires, B gets every partition and commits chunk 2
        a.send_signal(signal.SIGSTOP)
        b = mons.start("b")
        wait_for_counts(cfg, counts(2 * CHUNK), timeout_s=120, proc=b)
        assert FENCE_LOG not in mons.text("a")
        # 4. A resumes: the held batch meets offsets B moved (A rejoins the group at its next
        # poll, i.e. once the held batch is done with)
        hold.unlink()
        a.send_signal(signal.SIGCONT)
        # 5. both members own partitions again; chunk 3 goes through the shared group
        wait_until(lambda: members_with_partitions(kafka_bootstrap, cfg.kafka.group_id) == 2, 120,
                   "A and B both own partitions", proc=a, log=mons.log("a"))
        produce(kafka_bootstrap, chunk(cfg, 2), spread=3)
        stats = wait_for_counts(cfg, counts(3 * CHUNK), timeout_s=120, proc=a)
        fence = mons.text("a").split(HOLD_LOG, 1)[1]
        assert FENCE_LOG in fence, f"A's held batch was fenced and rolled back{fence[-3000:]}"
        for name in ("a", "b"):
            stop_process(mons.procs[name])
            assert mons.procs[name].returncode == 0, mons.text(name)[-3000:]
    finally:
        mons.close()
    assert stats["models"]["fraud"]["pending_labels"] == 0
    per_process = {name: committed_records(mons.log(name)) for name in ("a", "b")}
    published = 3 * 2 * CHUNK
    print(f"\nfenced: A {mons.text('a').count(FENCE_LOG)}, B {mons.text('b').count(FENCE_LOG)}; "
          f"records committed per process {per_process} of {published}")
    assert per_process["a"] >= 2 * CHUNK and per_process["b"] >= 2 * CHUNK, per_process   # chunk 1 / chunk 2
    assert sum(per_process.values()) == published, "each record committed once: the fenced batch counted nowhere"
