"""Helpers for the fault tests: a dedicated Kafka broker or PostgreSQL server that a test may
stop and start (never the shared ones), free ports, driftloop processes, polling.

The dedicated broker runs ``scripts/kafka.sh`` with its own ``KAFKA_DIR`` and ports, sharing the
jar cache (``.kafka/lib``); the dedicated PostgreSQL runs ``scripts/postgres.sh`` with its own
``PG_DIR`` and ``PG_PORT``. Stopping and starting either keeps its data.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.kafka_helpers import ROOT

__all__ = ["free_port", "DedicatedBroker", "DedicatedPostgres", "spawn", "stop_process", "wait_until",
           "readyz", "in_ci"]


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(log: Path | None, chars: int = 3000) -> str:
    return f"\n--- log tail ---\n{log.read_text(errors='replace')[-chars:]}" if log and log.exists() else ""


def wait_until(pred: Callable[[], Any], timeout_s: float, what: str, *, every_s: float = 0.2,
               proc: subprocess.Popen | None = None, log: Path | None = None) -> Any:
    """Poll ``pred`` until it returns something truthy; fail naming ``what`` (and the log tail)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = pred()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} waiting for {what}{_tail(log)}")
        if time.monotonic() >= deadline:
            if proc is not None and log is not None:   # where is it stuck? (driftloop.app.cli's SIGUSR1)
                proc.send_signal(signal.SIGUSR1)
                time.sleep(1.0)
            raise AssertionError(f"not reached in {timeout_s:.0f}s: {what}{_tail(log, 12000)}")
        time.sleep(every_s)


class _ScriptedServer:
    """A server of one test module run by one of the repo's scripts (``start``/``stop``) with ``env``."""

    script = ""
    dir: Path
    env: dict[str, str]

    def _run(self, cmd: str, timeout_s: float = 150) -> float:
        t0 = time.monotonic()
        res = subprocess.run(["bash", str(ROOT / "scripts" / self.script), cmd], env=self.env, cwd=ROOT,
                             capture_output=True, text=True, timeout=timeout_s)
        if res.returncode != 0:
            raise RuntimeError(f"{self.script} {cmd} failed ({res.returncode}):\n{res.stderr[-4000:]}")
        return time.monotonic() - t0

    def start(self) -> float:
        """Start (or restart, keeping the data); returns the seconds it took to be ready."""
        return self._run("start")

    def stop(self) -> float:
        """Stop the server and wait for it to exit; returns the seconds it took."""
        return self._run("stop")

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class DedicatedBroker(_ScriptedServer):
    """A single-node Kafka broker of one test module, on free ports, in a temporary folder."""

    script = "kafka.sh"

    def __init__(self, heap: str = "256m") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="driftloop-kafka-"))
        self.port = free_port()
        self.controller_port = free_port()
        self.env = dict(os.environ, KAFKA_DIR=str(self.dir), KAFKA_LIB=str(ROOT / ".kafka" / "lib"),
                        KAFKA_PORT=str(self.port), KAFKA_CONTROLLER_PORT=str(self.controller_port),
                        KAFKA_SASL="0", KAFKA_TLS="0", KAFKA_HEAP=heap, KAFKA_FRESH="0", KAFKA_STOP_TIMEOUT="20",
                        KAFKA_PYTHON=sys.executable)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


class DedicatedPostgres(_ScriptedServer):
    """A PostgreSQL server of one test module (``scripts/postgres.sh`` with PG_DIR/PG_PORT)."""

    script = "postgres.sh"

    def __init__(self) -> None:
        # under /tmp and world-traversable: the server runs as the postgres user when we are root
        self.dir = Path(tempfile.mkdtemp(prefix="driftloop-pg-"))
        self.dir.chmod(0o755)
        self.port = free_port()
        self.env = dict(os.environ, PG_DIR=str(self.dir), PG_PORT=str(self.port))

    @property
    def url(self) -> str:
        return f"postgresql://driftloop@127.0.0.1:{self.port}/driftloop"


def spawn(*args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m driftloop.app.cli ARGS`` with its output appended to ``log``."""
    e = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "driftloop.app.cli", *args], cwd=ROOT, env=e,
                                stdout=out, stderr=subprocess.STDOUT)


def stop_process(proc: subprocess.Popen, timeout_s: float = 60, log: Path | None = None) -> float:
    """SIGTERM ``proc`` (if still running) and wait; returns the seconds until it exited.

    If it does not exit in time, SIGUSR1 first (the CLI dumps every thread's stack to its
    output), then SIGKILL; the error quotes the end of ``log``, where the stacks went."""
    t0 = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2)
            proc.kill()
            proc.wait(10)
            tail = log.read_text(errors="replace")[-12000:] if log is not None and log.exists() else ""
            raise AssertionError(f"process {proc.pid} ignored SIGTERM for {timeout_s}s; its log ends "
                                 f"(thread stacks at SIGUSR1):\n{tail}") from None
    return time.monotonic() - t0


def readyz(port: int, timeout_s: float = 10) -> tuple[int, dict[str, Any]] | None:
    """``(status, body)`` of the monitor's ``/readyz``; None while the API does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=timeout_s) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (OSError, ValueError):
        return None


class SmallDisk:
    """A tmpfs of its own at ``path`` (needs root), which a test can fill to the last byte and free.

    ``fill()`` first shrinks the tmpfs to what is in use (a remount), then writes a filler file
    over the few bytes left: the disk is full without holding ``size`` bytes of RAM for the
    filler, whatever the size. ``free()`` removes the filler and gives the size back.
    """

    def __init__(self, path: Path, size: str = "4m") -> None:
        self.path, self.size = Path(path), size
        self.filler = self.path / ".filler"
        self.mounted = False

    def mount(self, mode: str = "0755") -> None:
        """Mount the tmpfs; RuntimeError (with mount's message) when that is not allowed."""
        self.path.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode={mode}", "tmpfs", str(self.path)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"cannot mount a tmpfs at {self.path} ({res.stderr.strip()}): needs root")
        self.mounted = True

    def _remount(self, size: str) -> bool:
        return subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)],
                              capture_output=True).returncode == 0

    def fill(self) -> int:
        """Take every free byte; returns the filler's size."""
        for _ in range(20):        # what is in use grows while a writer runs: retry the shrink
            st = os.statvfs(self.path)
            if self._remount(str((st.f_blocks - st.f_bfree) * st.f_frsize + 65536)):
                break
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        written = 0
        try:
            for chunk in (65536, 4096, 512, 1):     # every free byte, down to the last one
                try:
                    while True:
                        written += os.write(fd, b"\0" * chunk)
                except OSError as exc:
                    if exc.errno != 28:             # ENOSPC
                        raise
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        """Remove the filler and give the tmpfs its size back."""
        self.filler.unlink(missing_ok=True)
        if not self._remount(self.size):
            raise RuntimeError(f"could not remount {self.path} with size {self.size}")

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False)
            self.mounted = False
