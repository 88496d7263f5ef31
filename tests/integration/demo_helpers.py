"""`driftloop demo` run as the real command, in a subprocess, for the demo tests (its kept work
folder, with the store, the registry and the config, is read back by the test)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.kafka_helpers import ROOT


@dataclass(frozen=True)
class DemoRun:
    config_path: Path
    stdout: str
    stderr: str
    returncode: int
    seconds: float


def run_demo(kafka_bootstrap: str, tmp: Path, *flags: str) -> DemoRun:
    """``driftloop demo --fast --keep FLAGS --bootstrap ...`` with its work folder in ``tmp``."""
    # the demo's work folder goes to TMPDIR (tempfile.mkdtemp): a folder of this test's, found below
    env = dict(os.environ, TMPDIR=str(tmp), COLUMNS="200", PYTHONUNBUFFERED="1")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "driftloop.app.cli", "demo", "--fast", "--keep", *flags,
                           "--bootstrap", kafka_bootstrap], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=400)
    seconds = time.monotonic() - t0
    configs = sorted(tmp.glob("driftloop-demo-*/driftloop.yaml"))
    assert len(configs) == 1, (configs, proc.stdout[-3000:], proc.stderr[-3000:])
    return DemoRun(configs[0], proc.stdout, proc.stderr, proc.returncode, seconds)
