"""analysis.mode apart on the real broker: back-pressure when the judging process falls behind.

The judging child of ``driftloop monitor`` is stopped (SIGSTOP): ingestion goes on until the
journal holds ``analysis.max_backlog_events``, then pauses its partitions (nothing is dropped,
the consumer stays in the group). SIGCONT: the journal drains, ingestion resumes, and every event
is counted once and judged once (the detectors took exactly the events published).
"""
from __future__ import annotations

import os
import re
import signal

import numpy as np
import orjson
import pandas as pd
import pytest

from driftloop.app.stats import collect_stats
from driftloop.core.store import Store
from driftloop.monitoring.analysis import DriftAnalyser
from driftloop.monitoring.journal import backlog
from driftloop.monitoring.judge import progress
from tests.fault_helpers import stop_process, wait_until
from tests.kafka_helpers import journal_judged, prediction, produce, start_monitor

pytestmark = pytest.mark.kafka

EVENTS = 12_000
BOUND = 3_000
POLL = 500


def test_ingestion_pauses_at_the_backlog_bound_and_every_event_is_judged_once(kafka_bootstrap, make_config, tmp_path):
    rng = np.random.default_rng(5)
    pd.DataFrame({"amount": rng.lognormal(3, 1, 3000), "age": rng.integers(18, 90, 3000),
                  "country": rng.choice(["DE", "FR", "US"], 3000), "label": rng.integers(0, 2, 3000)}
                 ).to_csv(tmp_path / "ref.csv", index=False)
    path, cfg = make_config(
        kafka_bootstrap, analysis__mode="apart", analysis__max_backlog_events=BOUND,
        ingest__max_poll_records=POLL,
        models__fraud={"task": "classification", "features": {"amount": "numeric", "age": "numeric",
                                                               "country": "categorical"},
                       "reference": str(tmp_path / "ref.csv"),
                       "detectors": {"window_size": 1000, "warmup": 0, "multivariate": False, "cbpe": False}})
    log = tmp_path / "monitor.log"
    proc = start_monitor(path, log_path=log)
    store = Store.from_config(cfg.store)
    judge_pid = None
    try:
        def judge_started() -> int | None:
            m = re.search(r"judging process (\d+) started \(parent", log.read_text() if log.exists() else "")
            return int(m.group(1)) if m else None
        judge_pid = wait_until(judge_started, 60, "the judging process up")
        wait_until(lambda: "resuming from stored offsets" in log.read_text(), 60, "the monitor assigned")
        # stopped only once it judges: stopped while it loads (inside a write transaction, as any
        # judgement is) it would hold SQLite's write lock and stall ingestion, not fall behind it
        wait_until(lambda: "judging the journal" in log.read_text(), 60, "the judging process in its loop")
        os.kill(judge_pid, signal.SIGSTOP)
        produce(kafka_bootstrap, [(cfg.topics.predictions, b"fraud", orjson.dumps(prediction(i)))
                                  for i in range(EVENTS)])
        wait_until(lambda: "consumption paused until it is under" in log.read_text(), 60,
                   "ingestion paused for the backlog")
        counted = collect_stats(cfg, store)["models"]["fraud"]["predictions"]
        with store.engine.connect() as c:
            waiting = backlog(c)
        assert BOUND < waiting.events == counted <= BOUND + POLL, (waiting, counted)
        os.kill(judge_pid, signal.SIGCONT)
        judge_pid = None

        def drained() -> bool:
            return collect_stats(cfg, store)["models"]["fraud"]["predictions"] == EVENTS and journal_judged(store)
        wait_until(drained, 120, "every event counted and judged")
        assert "consumption resumes" in log.read_text()
        with store.engine.connect() as c:
            entries = progress(c, "fraud")
        blob, _, version = store.detector_state_row("fraud")
        status = DriftAnalyser(cfg, store, load=False).restore_stored(blob, version).version_status(version or "")
        assert status["predictions"] == EVENTS, "the detectors took every event exactly once"
        assert entries >= EVENTS // POLL
    finally:
        if judge_pid is not None:
            os.kill(judge_pid, signal.SIGCONT)
        stop_process(proc, log=log)
        store.dispose()
