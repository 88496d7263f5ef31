"""SIGTERM twice, or while the main thread holds the stop event's lock, still stops the process
(driftloop.core.stop_signals). The old handler (``event.set()`` in the handler) hung a monitor
in a fresh-clone run: the test harness sent SIGTERM twice, the second handler waited for the
lock the first held, in the same thread, until SIGKILL."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from driftloop.core.stop_signals import StopSignals

# the moment the second SIGTERM found the monitor: inside the first handler's ``Event.set``,
# holding the event's (not reentrant) lock
HOLD_THE_LOCK_AND_SIGNAL = textwrap.dedent("""
    import os, signal, sys, threading
    {setup}
    with stop._cond:                          # what event.set / event.wait hold
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, between two bytecodes
        for _ in range(1000):                 # give it bytecodes to run at
            pass
    sys.exit(0 if stop.wait(10) else 3)
""")


def _run(setup: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HOLD_THE_LOCK_AND_SIGNAL.format(setup=setup)],
                          timeout=30, capture_output=True)


def test_a_signal_while_the_events_lock_is_held_stops_without_deadlock() -> None:
    done = _run("from driftloop.core.stop_signals import StopSignals\n"
                "stop = threading.Event()\nStopSignals(stop).install()")
    assert done.returncode == 0, done.stderr.decode()


def test_the_old_handler_deadlocks_there() -> None:
    """The defect, shown: ``event.set`` in the handler never returns (the test would hang
    forever without the subprocess's timeout)."""
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([sys.executable, "-c", HOLD_THE_LOCK_AND_SIGNAL.format(
            setup="stop = threading.Event()\nsignal.signal(signal.SIGTERM, lambda *_: stop.set())")],
            timeout=5, capture_output=True)


def test_the_monitor_and_the_worker_install_the_relay(monkeypatch: pytest.MonkeyPatch) -> None:
    from consumers.monitor import Monitor
    from retrain.worker import RetrainWorker

    for cls in (Monitor, RetrainWorker):
        obj = cls.__new__(cls)
        obj._stop = threading.Event()
        installed: list[StopSignals] = []
        monkeypatch.setattr(StopSignals, "install", lambda self, got=installed: got.append(self))
        cls.install_signal_handlers(obj)
        assert len(installed) == 1 and installed[0].event is obj._stop
        assert set(installed[0].signals) == {signal.SIGTERM, signal.SIGINT}
