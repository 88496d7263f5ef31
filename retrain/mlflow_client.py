"""The one place driftloop talks to an MLflow tracking server (``registry.backend: mlflow``).

:class:`MlflowGateway` wraps the few ``MlflowClient`` calls the MLflow backend needs and turns
what comes back into plain, checked values: everything MLflow answers is hostile until it is
validated here (a version number must be a positive integer, an alias map a map of names to
such numbers, a download location must not name a file on this host). MLflow is imported
lazily, so the default install (without the ``mlflow`` extra) never needs it; without it,
:class:`MlflowMissing` says which extra to install.

Errors come out as three kinds, which is all the callers decide on:

* :class:`MlflowUnavailable`: the server cannot be reached, timed out, or failed (5xx): try
  again later; nothing the caller did was refused;
* :class:`MlflowNotFound`: the thing named does not exist (``RESOURCE_DOES_NOT_EXIST``; a
  deleted model version, for instance);
* :class:`MlflowRefused`: any other refusal (an invalid value, a permission): retrying the
  same request will not help.

The HTTP client's retries and timeout come from the configuration (``registry.mlflow.http_retries``,
``http_timeout_s``): MLflow's defaults (7 retries with back-off, 120 s) would hold a job for
minutes when the server is down. MLflow reads them from the environment at each request, so
they are process-wide: the first gateway of a process sets them (``os.environ``), and telemetry
(``MLFLOW_DISABLE_TELEMETRY``) and the run links MLflow prints to stdout are switched off
unless the environment says otherwise.

>>> MlflowGateway.check_version_number("12", "version")
12
>>> MlflowGateway.check_version_number("../1", "version")
Traceback (most recent call last):
...
retrain.mlflow_client.MlflowRefused: MLflow answered an invalid version: '../1'
"""
from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from driftloop.core.config.retrain import MLFLOW_EXTRA_HINT, MlflowConfig

__all__ = ["MlflowGateway", "MlflowError", "MlflowUnavailable", "MlflowNotFound", "MlflowRefused", "MlflowMissing",
           "RemoteVersion", "import_mlflow"]

T = TypeVar("T")

#: error codes of a server that is there but failing: worth retrying
_TRANSIENT_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED",
                    "ABORTED", "IO_ERROR", "SERVICE_UNDER_MAINTENANCE", "WORKSPACE_TEMPORARILY_UNAVAILABLE"}
_RUN_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
_ENV_LOCK = threading.Lock()
#: run tags and params MLflow accepts (longer values are cut, never refused by the server)
TAG_MAX = 8000
PARAM_MAX = 6000


class MlflowError(RuntimeError):
    """A call to MLflow did not do what was asked (see the subclasses)."""


class MlflowUnavailable(MlflowError):
    """The tracking server cannot be reached or failed: try again later."""


class MlflowNotFound(MlflowError):
    """MLflow says the thing named does not exist (``RESOURCE_DOES_NOT_EXIST``)."""


class MlflowRefused(MlflowError):
    """MLflow refused the request, or answered something driftloop cannot accept."""


class MlflowMissing(ImportError):
    """``registry.backend: mlflow`` without the MLflow client installed."""


def import_mlflow() -> Any:
    """The ``mlflow`` package, or :class:`MlflowMissing` naming the extra to install."""
    try:
        import mlflow
    except ImportError as exc:
        raise MlflowMissing(f"registry.backend: mlflow needs the MLflow client ({exc}): {MLFLOW_EXTRA_HINT}") from None
    return mlflow


@dataclass(frozen=True)
class RemoteVersion:
    """A model version as MLflow describes it, checked."""

    name: str
    version: int
    run_id: str | None
    source: str
    tags: dict[str, str] = field(default_factory=dict)


class MlflowGateway:
    """Checked access to one tracking server (see the module docstring). Thread-safe as
    ``MlflowClient`` is (one HTTP session per call)."""

    def __init__(self, settings: MlflowConfig) -> None:
        self.settings = settings
        self.uri = settings.tracking_uri
        self._client: Any = None
        self._experiment_id: str | None = None

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            mlflow = import_mlflow()
            with _ENV_LOCK:
                os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(self.settings.http_retries)
                os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, round(self.settings.http_timeout_s)))
                os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
                os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
                # MLflow prints "View run ... at: URL" to stdout when a run ends: not in a worker's log
                os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
            self._client = mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one MLflow call, turning its failures into the three kinds of :class:`MlflowError`."""
        from mlflow.exceptions import MlflowException, RestException

        try:
            return fn()
        except RestException as exc:
            code = str(getattr(exc, "error_code", "") or "")
            if code == "RESOURCE_DOES_NOT_EXIST":
                raise MlflowNotFound(f"{what}: {_short(exc)}") from None
            if code in _TRANSIENT_CODES:
                raise MlflowUnavailable(f"{what}: MLflow at {self.uri} failed: {_short(exc)}") from None
            raise MlflowRefused(f"{what}: MLflow refused: {_short(exc)}") from None
        except MlflowException as exc:
            # raised by the client itself: a connection error or a non-JSON 5xx (INTERNAL_ERROR),
            # or its own argument checks (INVALID_PARAMETER_VALUE and the like)
            if str(getattr(exc, "error_code", "") or "INTERNAL_ERROR") in _TRANSIENT_CODES:
                raise MlflowUnavailable(f"{what}: MLflow at {self.uri} is not reachable: {_short(exc)}") from None
            raise MlflowRefused(f"{what}: {_short(exc)}") from None
        except OSError as exc:      # requests' errors are OSErrors; so are a full disk and a reset socket
            raise MlflowUnavailable(f"{what}: MLflow at {self.uri} is not reachable: {_short(exc)}") from None

    @staticmethod
    def check_version_number(value: Any, what: str) -> int:
        """A version number MLflow sent: a positive integer (as a string or an int)."""
        text = str(value)
        if not text.isdigit() or not 0 < int(text) < 2**31:
            raise MlflowRefused(f"MLflow answered an invalid {what}: {text[:80]!r}")
        return int(text)

    @staticmethod
    def _tags(raw: Any) -> dict[str, str]:
        if not isinstance(raw, dict):
            return {}
        return {str(k): str(v) for k, v in raw.items()}

    def _remote(self, mv: Any) -> RemoteVersion:
        run_id = getattr(mv, "run_id", None)
        if run_id is not None and not _RUN_ID.fullmatch(str(run_id)):
            raise MlflowRefused(f"MLflow answered an invalid run id: {str(run_id)[:80]!r}")
        return RemoteVersion(name=str(mv.name), version=self.check_version_number(mv.version, "version"),
                             run_id=None if not run_id else str(run_id), source=str(mv.source or ""),
                             tags=self._tags(getattr(mv, "tags", None)))

    # -- reads -------------------------------------------------------------------------------
    def ping(self) -> None:
        """One cheap request; :class:`MlflowUnavailable` if the server does not answer."""
        self._call("reaching the tracking server", lambda: self.client.get_experiment_by_name(self.settings.experiment))

    def alias_target(self, name: str, alias: str) -> int | None:
        """The version ``alias`` of registered model ``name`` points to (None: no such alias)."""
        rm = self._call(f"reading registered model {name!r}", lambda: self.client.get_registered_model(name))
        aliases = getattr(rm, "aliases", None) or {}
        if not isinstance(aliases, dict):
            raise MlflowRefused(f"MLflow answered aliases of {name!r} that are not a map: {type(aliases).__name__}")
        target = aliases.get(alias)
        return None if target is None else self.check_version_number(target, f"version of alias {alias!r}")

    def get_version(self, name: str, version: int) -> RemoteVersion:
        return self._remote(self._call(f"reading {name} version {version}",
                                       lambda: self.client.get_model_version(name, str(version))))

    def version_by_alias(self, name: str, alias: str) -> RemoteVersion:
        target = self.alias_target(name, alias)
        if target is None:
            raise MlflowNotFound(f"registered model {name!r} has no alias {alias!r}")
        return self.get_version(name, target)

    def versions_with_tag(self, name: str, key: str, value: str) -> list[RemoteVersion]:
        """The (not deleted) versions of ``name`` whose tag ``key`` is ``value``, lowest first."""
        filt = f"name = '{_quote(name)}' and tags.`{key}` = '{_quote(value)}'"
        found = self._call(f"searching versions of {name!r}", lambda: self.client.search_model_versions(filt))
        return sorted((self._remote(mv) for mv in found), key=lambda v: v.version)

    def run_with_tag(self, key: str, value: str) -> str | None:
        """The earliest active run of the experiment tagged ``key = value`` (None: none)."""
        exp = self.experiment_id()
        runs = self._call("searching runs", lambda: self.client.search_runs(
            [exp], f"tags.`{key}` = '{_quote(value)}'", order_by=["attributes.start_time ASC"], max_results=10))
        for run in runs:
            run_id = str(run.info.run_id)
            if _RUN_ID.fullmatch(run_id):
                return run_id
        return None

    def run_has_metrics(self, run_id: str) -> bool:
        run = self._call(f"reading run {run_id}", lambda: self.client.get_run(run_id))
        return bool(getattr(run.data, "metrics", None))

    def download_uri(self, name: str, version: int) -> str:
        """Where a version's files are, refused if it names this host's file system."""
        uri = str(self._call(f"locating {name} version {version}",
                             lambda: self.client.get_model_version_download_uri(name, str(version))))
        scheme, sep, rest = uri.partition(":")
        if not sep or scheme.lower() in ("file", "") or len(scheme) == 1 or ".." in rest.split("/"):
            raise MlflowRefused(f"{name} version {version}: its files are at {uri[:200]!r}, a location driftloop "
                                "does not download from (a local path, or one with '..')")
        return uri

    def download(self, uri: str, dst: Path) -> Path:
        """Download the files at ``uri`` (a model version's folder) into ``dst``; returns the folder."""
        mlflow = import_mlflow()
        out = self._call(f"downloading {uri}", lambda: mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(dst), tracking_uri=self.uri))
        return Path(out)

    # -- writes ------------------------------------------------------------------------------
    def experiment_id(self) -> str:
        """The configured experiment's id, created if missing."""
        if self._experiment_id is not None:
            return self._experiment_id
        name = self.settings.experiment
        exp = self._call(f"reading experiment {name!r}", lambda: self.client.get_experiment_by_name(name))
        if exp is None:
            try:
                exp_id = self._call(f"creating experiment {name!r}", lambda: self.client.create_experiment(name))
            except MlflowRefused:     # created meanwhile by another process
                exp = self._call(f"reading experiment {name!r}", lambda: self.client.get_experiment_by_name(name))
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        else:
            exp_id = exp.experiment_id
        self._experiment_id = str(exp_id)
        return self._experiment_id

    def ensure_registered_model(self, name: str, description: str) -> None:
        try:
            self._call(f"creating registered model {name!r}",
                       lambda: self.client.create_registered_model(name, description=description))
        except MlflowRefused as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
                raise

    def create_run(self, tags: dict[str, str], run_name: str) -> str:
        exp = self.experiment_id()
        run = self._call("creating a run", lambda: self.client.create_run(exp, tags=_cut(tags, TAG_MAX),
                                                                           run_name=run_name))
        return str(run.info.run_id)

    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k[:250], v) for k, v in _cut(params, PARAM_MAX).items()]
        for i in range(0, len(items), 100):                 # MLflow takes at most 100 params per batch
            self._call(f"logging params of run {run_id}",
                       functools.partial(self.client.log_batch, run_id, params=items[i:i + 100]))

    def log_metrics(self, run_id: str, metrics: dict[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k[:250], float(v), now, 0) for k, v in metrics.items()]
        if items:
            self._call(f"logging metrics of run {run_id}", lambda: self.client.log_batch(run_id, metrics=items))

    def upload(self, run_id: str, folder: Path, artifact_path: str) -> None:
        """Upload every file of ``folder`` under ``artifact_path`` of the run (a re-upload overwrites)."""
        self._call(f"uploading {folder.name} to run {run_id}",
                   lambda: self.client.log_artifacts(run_id, str(folder), artifact_path))

    def finish_run(self, run_id: str) -> None:
        self._call(f"ending run {run_id}", lambda: self.client.set_terminated(run_id, "FINISHED"))

    def create_version(self, name: str, run_id: str, artifact_path: str, tags: dict[str, str]) -> int:
        mv = self._call(f"creating a version of {name!r}", lambda: self.client.create_model_version(
            name, f"runs:/{run_id}/{artifact_path}", run_id=run_id, tags=tags, await_creation_for=0))
        return self.check_version_number(mv.version, "version")

    def delete_version(self, name: str, version: int) -> None:
        self._call(f"deleting {name} version {version}", lambda: self.client.delete_model_version(name, str(version)))

    def set_version_tags(self, name: str, version: int, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self._call(f"tagging {name} version {version}",
                       functools.partial(self.client.set_model_version_tag, name, str(version), key, value))

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self._call(f"moving alias {alias!r} of {name!r} to version {version}",
                   lambda: self.client.set_registered_model_alias(name, alias, str(version)))


def _quote(value: str) -> str:
    """A value inside a single-quoted MLflow search string."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _cut(values: dict[str, str], limit: int) -> dict[str, str]:
    return {k: (v if len(v) <= limit else v[:limit - 3] + "...") for k, v in values.items()}


def _short(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder, removed afterwards."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
