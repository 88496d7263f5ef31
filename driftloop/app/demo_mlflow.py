"""``driftloop demo --registry mlflow``: the demo's loop with MLflow as the model registry.

:class:`LocalMlflowServer` starts a throw-away MLflow tracking server for the demo (SQLite
backend store and artifacts in the demo's work folder, 127.0.0.1, a free port, one worker,
telemetry off) unless ``--mlflow-uri`` names one; it needs the full ``mlflow`` package's
``mlflow server`` (not the client-only ``mlflow-skinny`` of the ``mlflow`` extra): the
executable in ``DRIFTLOOP_MLFLOW_SERVER``, else the venv ``scripts/mlflow.sh setup`` makes
(``.mlflow-venv`` of a checkout), else ``mlflow`` on the PATH.

:func:`mlflow_registry_section` is the demo configuration's ``registry`` addition, and
:func:`show_mlflow` prints, at the end, what MLflow shows of the loop (the alias, the
challenger's run and its tags, the version's tags) beside driftloop's history with MLflow's
version numbers, and says what is missing if the alias did not follow the promotion.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["LocalMlflowServer", "MlflowServerMissing", "mlflow_registry_section", "show_mlflow",
           "require_mlflow_client"]

SERVER_ENV = "DRIFTLOOP_MLFLOW_SERVER"


class MlflowServerMissing(RuntimeError):
    """No ``mlflow server`` to start (and no ``--mlflow-uri``)."""


def require_mlflow_client() -> None:
    """The demo's worker and CLI talk to MLflow through the ``mlflow`` extra's client."""
    import importlib.util

    from driftloop.core.config.retrain import MLFLOW_EXTRA_HINT

    if importlib.util.find_spec("mlflow") is None:
        raise MlflowServerMissing(f"`driftloop demo --registry mlflow` needs the MLflow client: {MLFLOW_EXTRA_HINT}")


def _server_executable() -> str:
    env = os.environ.get(SERVER_ENV)
    if env:
        return env
    checkout = Path(__file__).resolve().parents[2] / ".mlflow-venv" / "bin" / "mlflow"
    if checkout.is_file():
        return str(checkout)
    found = shutil.which("mlflow")
    if found:
        return found
    raise MlflowServerMissing(
        "no MLflow server to start: run `scripts/mlflow.sh setup` in a checkout (a venv of its own with the full "
        f"`mlflow`), or `pip install mlflow` somewhere and set {SERVER_ENV} to its `mlflow`; or pass --mlflow-uri URI")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalMlflowServer:
    """``mlflow server`` in ``folder`` (its store, artifacts and log), stopped by :meth:`stop`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 180.0) -> str:
        """Start it and wait until ``/health`` answers; returns its URL."""
        exe = _server_executable()
        self.folder.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true",
                   MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        with open(self.folder / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [exe, "server", "--backend-store-uri", f"sqlite:///{self.folder}/mlflow.db",
                 "--artifacts-destination", str(self.folder / "artifacts"), "--serve-artifacts",
                 "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while not self.healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.folder / "server.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise MlflowServerMissing(f"`{exe} server` did not start (is it the full `mlflow`, not "
                                          f"mlflow-skinny?); its log ends:\n{tail}")
            time.sleep(0.25)
        return self.url

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=3) as r:  # noqa: S310 - our own http://127.0.0.1 URL
                return bool(r.status == 200 and r.read().strip() == b"OK")
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM to the server's process group (it and its uvicorn child), SIGKILL after 20 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass


def mlflow_registry_section(uri: str, tag: str) -> dict[str, Any]:
    """The demo configuration's ``registry`` keys for the MLflow backend (a fresh experiment)."""
    return {"backend": "mlflow", "mlflow": {"tracking_uri": uri, "experiment": f"driftloop-demo-{tag}",
                                            "poll_s": 2.0}}


def show_mlflow(console: Any, cfg: Any, model: str) -> list[str]:
    """Print MLflow's side of the loop (after one mirror pass) and driftloop's history with
    MLflow's numbers; returns what is missing (empty when the alias follows the champion)."""
    from driftloop.core.store import Store
    from retrain.mlflow_registry import mirror_for
    from retrain.registry import Registry

    store = Store.from_config(cfg.store)
    try:
        reg = Registry(cfg, store)
        mirror = mirror_for(cfg, store, reg)
        assert mirror is not None
        mirror.sync([model])
        gw, name, alias = mirror.gateway, mirror.name(model), mirror.settings.alias
        champ = reg.champion(model)
        target = gw.alias_target(name, alias)
        console.rule("MLflow")
        console.print(f"{gw.uri}: registered model [bold]{name}[/], alias [bold]{alias}[/] -> version {target}")
        if target is not None:
            mv = gw.get_version(name, target)
            run = gw.client.get_run(mv.run_id) if mv.run_id else None
            console.print(f"  version {target}: tags " + ", ".join(f"{k}={v}" for k, v in sorted(mv.tags.items())
                                                                     if k.startswith("driftloop.") and "sha" not in k))
            if run is not None:
                tags = {k: v for k, v in run.data.tags.items() if k.startswith(("driftloop.", "mlflow.source.git"))}
                console.print(f"  run {mv.run_id}: params {dict(sorted(run.data.params.items()))}")
                console.print("  run tags: " + ", ".join(f"{k}={v[:80]}" for k, v in sorted(tags.items())))
                console.print(f"  run metrics: {dict(sorted(run.data.metrics.items()))}")
        for v in reg.versions(model):
            if v.status == "rejected" and v.mlflow_version is not None:
                rej = gw.get_version(name, v.mlflow_version).tags
                console.print(f"  version {v.mlflow_version} (rejected): " + ", ".join(
                    f"{k}={rej[k]}" for k in ("driftloop.decision", "driftloop.metric", "driftloop.challenger_score",
                                              "driftloop.champion_score") if k in rej))
        numbers = {v.version: v.mlflow_version for v in reg.versions(model)}
        console.print(f"driftloop history (`driftloop models show -c CONFIG {model}`), versions as driftloop/MLflow:")
        for h in reg.history(model):
            console.print(f"  {h.event:<15} v{h.version}/m{numbers.get(h.version)}  champion "
                          f"v{h.previous_champion} -> v{h.champion_version}  {h.reason[:90]}")
        if champ is None or champ.mlflow_version is None or target != champ.mlflow_version:
            return [f"the MLflow alias {alias!r} ({target}) does not follow driftloop's champion "
                    f"(v{None if champ is None else champ.version}, MLflow {None if champ is None else champ.mlflow_version})"]
        return []
    finally:
        store.dispose()
