"""The judging child of ``driftloop monitor`` (``analysis.mode: apart``).

:class:`JudgeProcess` (in the ingesting parent) starts :func:`judge_main` in a spawned process,
restarts it after ``restart_s`` if it dies (logged), and stops it (SIGTERM, then SIGKILL after
``stop_timeout_s``) when the parent stops. The child builds the same
:class:`driftloop.app.service.MonitorService` as an inline monitor, minus ingestion, and runs
:meth:`~driftloop.app.service.MonitorService.run_judge` until SIGTERM or until its parent is
gone: it checks its parent's pid between judgements. A SIGKILLed monitor's child judges on
until nothing waits or the child of a restarted monitor has taken over (table
``analysis_judge``), then ends after the judgement in hand (which commits whole or not at all:
:mod:`driftloop.monitoring.judge`). A monitor killed again and again faster than its child starts
(a few seconds) therefore still gets its journal judged.

>>> # judges = JudgeProcess(cfg); judges.start(); ...; judges.tend()  # after each poll: restart if dead
>>> # judges.stop()
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import time
from typing import Any

from driftloop.core.config import Config

__all__ = ["JudgeProcess", "judge_main"]

log = logging.getLogger(__name__)


def judge_main(cfg: Config, references: dict[str, Any] | None, parent: int, verbose: bool) -> None:
    """The child's entry point: judge until SIGTERM/SIGINT or the parent ``parent`` is gone."""
    from driftloop.app.service import MonitorService
    from driftloop.core.gctune import settle_heap
    from driftloop.core.logsetup import configure

    configure(verbose)
    limit_threads(cfg.analysis.judge_threads)
    service = MonitorService(cfg, references=references, ingest_only=False)
    settle_heap(cfg.ingest.gc_young_threshold)
    service.install_signal_handlers()
    log.info("judging process %d started (parent %d)", os.getpid(), parent)
    judged = service.run_judge(alive=lambda: os.getppid() == parent)
    log.info("judging process %d stopped after %d journal entries%s", os.getpid(), judged,
             "" if os.getppid() == parent else " (its monitor is gone)")


def limit_threads(n: int | None) -> None:
    """At most ``n`` threads in the native thread pools (OpenMP of scikit-learn's boosting, BLAS):
    on a small machine the judging process must leave ingestion its core. None: no limit."""
    if n is None:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)


class JudgeProcess:
    """Starts, watches and stops the judging child (see the module docstring)."""

    def __init__(self, cfg: Config, references: dict[str, Any] | None = None, *, restart_s: float = 1.0,
                 stop_timeout_s: float = 30.0) -> None:
        self.cfg = cfg
        self.references = references
        self.restart_s = restart_s
        self.stop_timeout_s = stop_timeout_s
        self.process: Any = None
        self.restarts = 0
        self._died_at: float | None = None
        self._stopping = False

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")     # no fork of a process with threads and sockets
        verbose = logging.getLogger().getEffectiveLevel() <= logging.DEBUG
        self.process = ctx.Process(target=judge_main, name="driftloop-judge", daemon=True,
                                   args=(self.cfg, self.references, os.getpid(), verbose))
        self.process.start()
        log.info("judging process %d started", self.process.pid)

    def tend(self) -> None:
        """After every poll: a child that died is started again after ``restart_s``."""
        if self._stopping or self.process is None or self.process.is_alive():
            return
        now = time.monotonic()
        if self._died_at is None:
            self._died_at = now
            log.error("judging process %d exited with code %s; starting another in %.1f s (the journal "
                      "waits: nothing is lost)", self.process.pid, self.process.exitcode, self.restart_s)
        if now - self._died_at >= self.restart_s:
            self._died_at = None
            self.restarts += 1
            self.start()

    def stop(self) -> None:
        """SIGTERM: the child finishes the judgement in hand; SIGKILL if it has not ended in time."""
        self._stopping = True
        proc = self.process
        if proc is None:
            return
        if proc.is_alive():
            proc.terminate()
            proc.join(self.stop_timeout_s)
            if proc.is_alive():
                log.error("judging process %d ignored SIGTERM for %.0f s; killing it", proc.pid, self.stop_timeout_s)
                proc.kill()
                proc.join(10)
