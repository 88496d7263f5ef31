"""The same pipeline on PostgreSQL: the store code is dialect-neutral SQLAlchemy Core."""
from __future__ import annotations

import signal

import pytest

from tests.fault_helpers import wait_until
from tests.integration.test_pipeline_kafka import WANT, assert_dlq, both_own_partitions, kill_loop, scenario
from tests.kafka_helpers import produce, start_monitor, wait_for_counts

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def test_sigkill_three_times_on_postgres(kafka_bootstrap, make_config, postgres_url, tmp_path):
    path, cfg = make_config(store_url=postgres_url, ingest__max_poll_records=500)
    produce(kafka_bootstrap, scenario(cfg))
    kill_loop(path, cfg, tmp_path)
    assert_dlq(kafka_bootstrap, cfg)


def test_two_monitors_on_postgres(kafka_bootstrap, make_config, postgres_url, tmp_path):
    """Two processes write one model's events concurrently: per-model advisory locks keep it exact."""
    path, cfg = make_config(store_url=postgres_url, ingest__max_poll_records=500)
    procs = [start_monitor(path, log_path=tmp_path / f"{n}.log") for n in "ab"]
    try:
        owned = wait_until(lambda: both_own_partitions(kafka_bootstrap, cfg.kafka.group_id), 90,
                           "both monitors in the group with partitions", proc=procs[0], log=tmp_path / "a.log")
        produce(kafka_bootstrap, scenario(cfg), spread=3)
        wait_for_counts(cfg, WANT, timeout_s=240, proc=procs[0])
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
    assert len(owned) == 2 and all(owned), owned     # each owned partitions when the data arrived
