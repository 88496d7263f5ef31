"""Shared pieces of the MLflow-backend tests: configs naming the session's real MLflow server, a
TCP relay that can cut the connection to it, and a few reads of what MLflow holds."""
from __future__ import annotations

import socket
import struct
import threading
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from driftloop.core.store import Store
from driftloop.core.tables import champion_history, mlflow_models
from tests.retrain.helpers import config_data


def mlflow_config_data(tmp_path: Path, uri: str, *, bootstrap: str = "127.0.0.1:9092", poll_s: float = 30.0,
                       **kw: Any) -> tuple[dict[str, Any], str]:
    """``config_data`` with ``registry.backend: mlflow`` on ``uri``: an experiment and a registered
    model name of its own (the server is shared by the session). Returns ``(data, mlflow name of agr)``."""
    data = config_data(tmp_path, bootstrap=bootstrap, **kw)
    tag = uuid.uuid4().hex[:8]
    name = f"agr-{tag}"
    data["registry"] |= {"backend": "mlflow", "mlflow": {
        "tracking_uri": uri, "experiment": f"test-{tag}", "model_names": {"agr": name}, "poll_s": poll_s,
        "http_timeout_s": 30, "http_retries": 0}}     # 30 s: a loaded machine, not a server that hangs
    return data, name


def client(uri: str) -> Any:
    """A plain MlflowClient: what an ML team would use to look at (or change) the registry."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def version_tag(uri: str, name: str, version: int, key: str) -> str | None:
    """A tag of a model version, None while the version does not exist (yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return client(uri).get_model_version(name, str(version)).tags.get(key)
    except MlflowException:
        return None


def versions_with_key(uri: str, name: str, key: str) -> list[Any]:
    return list(client(uri).search_model_versions(f"name = '{name}' and tags.`driftloop.key` = '{key}'"))


def runs_with_key(uri: str, experiment: str, key: str) -> list[Any]:
    c = client(uri)
    exp = c.get_experiment_by_name(experiment)
    return [] if exp is None else list(c.search_runs([exp.experiment_id], f"tags.`driftloop.key` = '{key}'"))


def mirror_state(store: Store, model: str = "agr") -> Any:
    """The model's row of ``mlflow_models`` (where the alias was last seen, when the last pass ended), or None."""
    with store.engine.connect() as c:
        return c.execute(sa.select(mlflow_models).where(mlflow_models.c.model == model)).first()


def history_events(store: Store, model: str = "agr") -> list[Any]:
    with store.engine.connect() as c:
        return list(c.execute(sa.select(champion_history).where(champion_history.c.model == model)
                              .order_by(champion_history.c.id)))


class Relay:
    """A TCP relay on 127.0.0.1 to ``target_url``'s server that a test can cut (every open
    connection closed, new ones reset at once: the server is "down" as a client sees it) and
    restore. It keeps its port while cut, so nothing else can take it meanwhile."""

    def __init__(self, target_url: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(target_url)
        self.target = (parts.hostname or "127.0.0.1", int(parts.port or 80))
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.down = False
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        with self._lock:
            self.down = True
            conns, self._conns = self._conns, []
        for c in conns:
            _close(c)

    def restore(self) -> None:
        self.down = False

    def close(self) -> None:
        self.cut()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self.down:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # a reset
                conn.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                conn.close()
                continue
            with self._lock:
                self._conns += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()
