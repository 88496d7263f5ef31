"""SIGTERM and SIGINT set a stop event, without taking a lock in the signal handler.

A Python signal handler runs in the main thread between two bytecodes, wherever that thread
was: inside ``threading.Event.wait`` or ``set`` of the very event the handler sets, or inside
the handler itself when a second signal follows the first (the test harness, systemd,
Kubernetes and Ctrl-C Ctrl-C all send more than one). An ``Event``'s lock is not reentrant,
so ``event.set()`` in the handler can deadlock the main thread on itself, and the process then
ignores every later SIGTERM. That happened to the monitor in a fresh-clone run: two SIGTERMs
0.1 s apart, the second handler blocked on the lock the first one held, and the process hung
until SIGKILL.

Guarantee: the handler only writes a byte to a non-blocking pipe (``os.write`` takes no Python
lock; a full pipe already holds a wake-up). A daemon relay thread reads the pipe and sets the
event, so a stop signal is never lost and any number of them, at any moment, is safe.

>>> import os, signal, threading
>>> stop = threading.Event()
>>> relay = StopSignals(stop, signals=(signal.SIGUSR2,))
>>> relay.install()
>>> os.kill(os.getpid(), signal.SIGUSR2); os.kill(os.getpid(), signal.SIGUSR2)
>>> stop.wait(5)
True
>>> relay.uninstall()
"""
from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

__all__ = ["StopSignals"]


class StopSignals:
    """Sets ``event`` on any of ``signals`` (SIGTERM, SIGINT); see the module docstring."""

    def __init__(self, event: threading.Event, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self.event = event
        self.signals = tuple(signals)
        self._previous: dict[int, Any] = {}
        self._pipe: tuple[int, int] | None = None

    def install(self) -> None:
        """Start the relay thread and install the handlers (call from the main thread)."""
        r, w = os.pipe()
        os.set_blocking(w, False)
        self._pipe = (r, w)
        threading.Thread(target=self._relay, args=(r,), name="stop-signals", daemon=True).start()
        for s in self.signals:
            self._previous[s] = signal.signal(s, self._handler)

    def uninstall(self) -> None:
        """Put the previous handlers back and end the relay thread."""
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous.clear()
        if self._pipe is not None:
            w, self._pipe = self._pipe[1], None
            os.close(w)     # the relay reads end-of-file and ends

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        pipe = self._pipe
        if pipe is None:
            return
        try:
            os.write(pipe[1], b"\0")
        except OSError:   # a full pipe (a wake-up is pending anyway) or closed at shutdown
            pass

    def _relay(self, r: int) -> None:
        try:
            while os.read(r, 64):
                self.event.set()
        finally:
            os.close(r)
