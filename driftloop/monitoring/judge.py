"""Judging the analysis journal apart from ingestion, exactly once (``analysis.mode: apart``).

:class:`Judge` takes a model's journal entries (:mod:`driftloop.monitoring.journal`) after the
last one judged, in ``seq`` order, and runs the model's detectors on them
(:meth:`DriftAnalyser.judge`) WITHOUT holding the store's write lock or the model's lock, so
ingestion goes on meanwhile. Then, in ONE short transaction under the model's lock, it writes
what they found (alerts, statistics history), the detector state, the model's
``analysis_progress`` (the last ``seq`` judged) and deletes the judged entries.

That transaction first checks that nobody moved the model on since the entries were read: the
stored progress and the detector state's generation must be the ones the detectors started
from (another judging process after a restart, a champion switch). If either moved, nothing is
written, the detectors reload from the store and the entries are judged again from there.

What survives which crash (the judging process, or ``driftloop monitor`` with it, killed):

* before the judgement commits: nothing of it is stored; the entries are still in the journal
  and the stored detector state is the one before them; the next judging process judges them
  once;
* after it commits: the state, the alerts and the progress are stored together and the entries
  are gone; nothing is judged twice.

A model whose detectors are quarantined (:mod:`driftloop.monitoring.analysis`) is judged the way
the batch transaction judges it: its entries are consumed (stored and counted events, skipped
analysis) in a transaction under its lock, with the rebuild tried when its back-off is over.

>>> # judge = Judge(cfg, store, analyser)    # analyser: a DriftAnalyser with on_detections etc.
>>> # judge.judge_pending()                  # entries judged; call again while it returns > 0
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from driftloop.core.config import Config
from driftloop.core.store import Store, now_ms
from driftloop.core.tables import analysis_journal, analysis_judge, analysis_progress
from driftloop.monitoring.analysis import DriftAnalyser, Judgement
from driftloop.monitoring.journal import decode_entry

__all__ = ["Judge", "HOLD_JUDGEMENT_ENV", "progress"]

log = logging.getLogger(__name__)

HOLD_JUDGEMENT_ENV = "DRIFTLOOP_TEST_HOLD_JUDGEMENT"
"""Test-only: the path of a file. While it exists, a judgement waits inside its transaction,
after writing and before committing (logged once). Unset: one environment lookup per judgement."""


def progress(conn: Connection, model: str) -> int:
    """The last journal ``seq`` of ``model`` judged (0: none)."""
    seq = conn.execute(sa.select(analysis_progress.c.seq).where(analysis_progress.c.model == model)).scalar()
    return int(seq or 0)


def _set_progress(store: Store, conn: Connection, model: str, seq: int, now: int) -> None:
    ins = store._insert(analysis_progress)
    conn.execute(ins.values(model=model, seq=seq, updated_at=now).on_conflict_do_update(
        index_elements=["model"], set_={"seq": ins.excluded.seq, "updated_at": ins.excluded.updated_at}))
    conn.execute(analysis_journal.delete().where(analysis_journal.c.model == model, analysis_journal.c.seq <= seq))


def _waiting(conn: Connection, model: str, after: int, limit: int) -> list[tuple[int, bytes]]:
    rows = conn.execute(sa.select(analysis_journal.c.seq, analysis_journal.c.entry)
                        .where(analysis_journal.c.model == model, analysis_journal.c.seq > after)
                        .order_by(analysis_journal.c.seq).limit(limit)).all()
    return [(int(seq), bytes(blob)) for seq, blob in rows]


class _Moved(Exception):
    """Another process moved the model on since its entries were read."""


class Judge:
    """Judges the journal with one :class:`DriftAnalyser` (see the module docstring)."""

    def __init__(self, cfg: Config, store: Store, analyser: DriftAnalyser) -> None:
        self.cfg = cfg
        self.store = store
        self.analyser = analyser
        self.judged_entries = 0
        self.moved = 0           # judgements discarded because another process moved the model on
        self._stale = False      # the detectors saw entries whose judgement did not commit
        self.owner: str | None = None

    def take_over(self, owner: str) -> None:
        """Say that ``owner`` (host:pid) is the newest judging process (see :meth:`superseded`)."""
        self.owner = owner
        with self.store.transaction() as conn:
            ins = self.store._insert(analysis_judge)
            conn.execute(ins.values(slot="current", owner=owner, started_at=now_ms()).on_conflict_do_update(
                index_elements=["slot"], set_={"owner": ins.excluded.owner, "started_at": ins.excluded.started_at}))

    def superseded(self) -> bool:
        """Whether a newer judging process has taken over since :meth:`take_over`."""
        with self.store.read_engine.connect() as conn:
            owner = conn.execute(sa.select(analysis_judge.c.owner).where(analysis_judge.c.slot == "current")).scalar()
        return owner is not None and owner != self.owner

    def pending_models(self) -> list[str]:
        with self.store.read_engine.connect() as conn:
            rows = conn.execute(sa.select(analysis_journal.c.model).distinct()).all()
        return sorted(m for (m,) in rows if m in self.cfg.models)

    def judge_pending(self) -> int:
        """One round over the models with entries waiting; returns the entries judged. After a
        judgement that did not commit, the detectors first reload from the store (a store error
        there propagates, and the next call tries again)."""
        if self._stale:
            self.analyser.rollback()
            self._stale = False
        return sum(self.judge_model(model) for model in self.pending_models())

    def judge_model(self, model: str) -> int:
        """Judge up to ``analysis.entries_per_judgement`` entries of ``model``; returns how many."""
        limit = self.cfg.analysis.entries_per_judgement
        # no lock (on SQLite, no write lock): the commit checks that nothing read here moved
        with self.store.read_engine.connect() as conn:
            done = progress(conn, model)
            entries = _waiting(conn, model, done, limit)
            generation = self.store.detector_generation(conn, model)
        if not entries:
            return 0
        try:
            if model in self.analyser.quarantined or generation != self.analyser.generation.get(model):
                return self._judge_locked(model)
            return self._judge_apart(model, done, generation, entries)
        except _Moved:
            self.moved += 1
            log.info("model %s: moved on by another process while judging; reloading and judging again", model)
            self.analyser.reload(model)
            return 0
        except BaseException:
            self._stale = True           # reloaded before the next judgement
            raise

    def _judge_apart(self, model: str, done: int, generation: int | None, entries: list[tuple[int, bytes]]) -> int:
        """The detectors on the entries outside any transaction, then one short one to write."""
        now = now_ms()
        judged: list[Judgement] = []
        last = done
        for seq, blob in entries:
            j = self.analyser.judge(model, decode_entry(model, blob), now)
            last = seq
            if j is None:       # no detectors, or they failed: the entry counts as judged (skipped)
                break
            judged.append(j)
        with self.store.transaction() as conn:
            self.store.lock_models(conn, [model])
            if progress(conn, model) != done or self.store.detector_generation(conn, model) != generation:
                raise _Moved
            self.analyser.begin()
            for i, j in enumerate(judged):
                self.analyser.record(conn, model, j, now, save=i == len(judged) - 1)
            self.analyser.announce_quarantine(conn, model, now)
            _set_progress(self.store, conn, model, last, now)
            _hold_for_test(model, last)
        self.judged_entries += last - done
        return last - done

    def _judge_locked(self, model: str) -> int:
        """A quarantined model, or one another process moved on: everything under its lock."""
        now = now_ms()
        with self.store.transaction() as conn:
            self.store.lock_models(conn, [model])
            done = progress(conn, model)
            entries = _waiting(conn, model, done, self.cfg.analysis.entries_per_judgement)
            if not entries:
                return 0
            for _, blob in entries:
                self.analyser.analyse(conn, decode_entry(model, blob), now)
            _set_progress(self.store, conn, model, entries[-1][0], now)
            _hold_for_test(model, entries[-1][0])
        self.judged_entries += len(entries)
        return len(entries)


def _hold_for_test(model: str, seq: Any) -> None:
    """Wait while the file named by :data:`HOLD_JUDGEMENT_ENV` exists (tests only)."""
    path = os.environ.get(HOLD_JUDGEMENT_ENV)
    if not path or not os.path.exists(path):
        return
    log.warning("%s: holding the judgement of %s up to entry %s before its commit while %s exists",
                HOLD_JUDGEMENT_ENV, model, seq, path)
    while os.path.exists(path):
        time.sleep(0.05)
    log.warning("%s: judgement released", HOLD_JUDGEMENT_ENV)
