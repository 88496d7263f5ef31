"""The model registry: versions, their files, the champion, and the audit history.

It lives in the state store (tables in :mod:`driftloop.core.tables`; SQLite by default, PostgreSQL
the same way) plus an artifact folder (``registry.artifact_dir``) for the model files and
samples, each recorded with its SHA-256 and checked on every load.

Every change of the champion, and every rejection and registration, is one transaction that
writes the version rows, one ``champion_history`` row and the ``driftloop.models`` event (as an
outbox row, so the event goes out if and only if the change committed). The history answers
"which version was champion when, and why" (:meth:`Registry.champion_at`,
:meth:`Registry.history`) - the audit trail MLflow's registry lacks (mlflow/mlflow#2169).

A version in status ``shadow`` (:meth:`Registry.start_shadow`, at most one per model) answers
live requests beside the champion; :mod:`retrain.shadow` promotes or rejects it on the live
evidence, with the same events.

With ``registry.backend: mlflow`` every version is also mirrored to an MLflow model registry
after it is recorded here (:mod:`retrain.mlflow_registry`): its ``mlflow_*`` columns say how far
that got, and the history gains rows of its own (``external_change``, ``mlflow_deleted``:
:meth:`Registry.record_note`, no ``driftloop.models`` event). Loading always reads driftloop's
own copy, SHA-256 checked.

The monitor needs two things from here: :func:`load_reference` (a version's reference sample
as a DataFrame) and, for events, :func:`retrain.events.switch_target`.
"""
from __future__ import annotations

import functools
import getpass
import os
import platform
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from driftloop.core.config import Config, ModelConfig
from driftloop.core.config.retrain import RegistryConfig, registry_config
from driftloop.core.store import Store, now_ms
from driftloop.core.tables import champion_history, model_versions
from retrain.artifacts import (
    BUILTIN_TRUSTED,
    FileInfo,
    UntrustedArtifactError,
    load_frame,
    load_model,
    resolve_inside,
    safe_name,
)
from retrain.events import ModelEvent, encode, rfc3339

__all__ = [
    "Registry",
    "RegistryError",
    "ChampionChanged",
    "VersionInfo",
    "HistoryEntry",
    "load_reference",
    "code_version",
    "library_versions",
    "cli_actor",
]


class RegistryError(RuntimeError):
    """A registry operation is not possible (unknown version, nothing to roll back to, ...)."""


class ChampionChanged(RuntimeError):
    """The champion changed between a comparison and its recording: compare again."""

    def __init__(self, model: str, expected: int | None, actual: int | None) -> None:
        super().__init__(f"champion of {model} changed from {expected} to {actual} during the evaluation")
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One row of ``model_versions``."""

    model: str
    version: int
    status: str
    source: str
    job_id: str | None
    created_at: int
    task: str
    features: dict[str, str]
    classes: list[str] | None
    artifact_path: str
    artifact_sha256: str
    artifact_format: str
    trusted_types: list[str]
    reference_path: str
    reference_sha256: str
    reference_rows: int
    holdout_path: str | None
    holdout_sha256: str | None
    holdout_rows: int | None
    estimator: str | None
    params: dict[str, Any]
    metrics: dict[str, Any]
    data_window: dict[str, Any]
    code_version: str | None
    library_versions: dict[str, str]
    note: str | None
    mlflow_state: str | None = None       # registry.backend: mlflow (retrain.mlflow_registry)
    mlflow_run_id: str | None = None
    mlflow_version: int | None = None
    mlflow_status: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One row of ``champion_history``."""

    id: int
    model: str
    event: str
    version: int
    champion_version: int | None
    previous_champion: int | None
    decided_at: int
    actor: str
    job_id: str | None
    reason: str
    details: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__} | {"decided_at_rfc3339": rfc3339(self.decided_at)}


@functools.lru_cache(maxsize=1)
def code_version() -> str | None:
    """``DRIFTLOOP_CODE_VERSION``, else the git commit of this checkout (``-dirty`` if modified)."""
    env = os.environ.get("DRIFTLOOP_CODE_VERSION")
    if env:
        return env[:64]
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "describe", "--always", "--dirty", "--abbrev=40"],
                             capture_output=True, text=True, timeout=5, check=True)
        return out.stdout.strip()[:64] or None
    except (OSError, subprocess.SubprocessError):
        return None


def library_versions(estimator_module: str | None = None) -> dict[str, str]:
    """Versions of Python and the libraries a model file depends on."""
    from importlib import metadata as md

    names = ["numpy", "scipy", "pandas", "scikit-learn", "skops", "driftloop"]
    if estimator_module:
        root = estimator_module.split(".")[0]
        if root not in ("sklearn", "numpy", "scipy", "pandas", "retrain", "__main__"):
            names.append(root)
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def cli_actor() -> str:
    """Who runs a command: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _version_of(row: Any) -> VersionInfo:
    return VersionInfo(**{c.name: getattr(row, c.name) for c in model_versions.columns})


def _history_of(row: Any) -> HistoryEntry:
    return HistoryEntry(**{c.name: getattr(row, c.name) for c in champion_history.columns})


def _str(v: int | None) -> str | None:
    return None if v is None else str(v)


class Registry:
    """Read and change the registry. Write methods taking ``conn`` run inside the caller's
    transaction (and publish nothing themselves: their events are outbox rows)."""

    def __init__(self, cfg: Config, store: Store, reg: RegistryConfig | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.reg = reg or registry_config(cfg)
        self.root = self.reg.artifact_path

    # -- files -------------------------------------------------------------------------------
    def new_artifact_dir(self, model: str, tag: str | None = None) -> Path:
        """A fresh folder for one version's files (named before the version number exists)."""
        name = safe_name(tag) if tag else uuid.uuid4().hex
        d = self.root / safe_name(model) / f"{name}-{uuid.uuid4().hex[:8]}"
        d.mkdir(parents=True, exist_ok=False)
        return d

    def relative(self, path: Path) -> str:
        return Path(os.path.relpath(path, self.root)).as_posix()

    def path(self, rel: str) -> Path:
        """The file a recorded path names, resolved; :class:`~retrain.artifacts.ArtifactError`
        if it lies outside ``registry.artifact_dir`` (``..``, an absolute path, a symlink)."""
        return resolve_inside(self.root, rel)

    @property
    def trusted_types(self) -> tuple[str, ...]:
        """The skops types loading trusts besides skops' defaults (configuration only)."""
        return BUILTIN_TRUSTED + tuple(self.reg.trusted_types)

    def check_loadable(self, types: list[str] | tuple[str, ...], origin: Any) -> None:
        """Raise :class:`~retrain.artifacts.UntrustedArtifactError` if a model file holding
        ``types`` (beyond skops' defaults) could not be loaded later: refused before it is recorded."""
        unknown = sorted(set(types) - set(self.trusted_types))
        if unknown:
            raise UntrustedArtifactError(
                f"{origin} holds types that loading does not trust: {unknown}; list them in registry.trusted_types "
                "if you trust them (the registry never trusts the types recorded in the database)")

    # -- reads -------------------------------------------------------------------------------
    def _c(self, conn: Connection | None) -> Any:
        return self.store._conn(conn)

    def champion(self, model: str, conn: Connection | None = None) -> VersionInfo | None:
        with self._c(conn) as c:
            row = c.execute(sa.select(model_versions).where(model_versions.c.model == model,
                                                            model_versions.c.status == "champion")).first()
        return None if row is None else _version_of(row)

    def get(self, model: str, version: int | str, conn: Connection | None = None) -> VersionInfo:
        try:
            v = int(version)
        except (TypeError, ValueError):
            raise RegistryError(f"version must be a number, got {version!r}") from None
        with self._c(conn) as c:
            row = c.execute(sa.select(model_versions).where(model_versions.c.model == model,
                                                            model_versions.c.version == v)).first()
        if row is None:
            raise RegistryError(f"model {model!r} has no version {v}")
        return _version_of(row)

    def versions(self, model: str | None = None, conn: Connection | None = None) -> list[VersionInfo]:
        q = sa.select(model_versions).order_by(model_versions.c.model, model_versions.c.version)
        if model is not None:
            q = q.where(model_versions.c.model == model)
        with self._c(conn) as c:
            return [_version_of(r) for r in c.execute(q)]

    def shadows(self, model: str | None = None, conn: Connection | None = None) -> list[VersionInfo]:
        """Versions in status ``shadow`` (at most one per model), by model and version."""
        q = (sa.select(model_versions).where(model_versions.c.status == "shadow")
             .order_by(model_versions.c.model, model_versions.c.version))
        if model is not None:
            q = q.where(model_versions.c.model == model)
        with self._c(conn) as c:
            return [_version_of(r) for r in c.execute(q)]

    def version_for_job(self, job_id: str, conn: Connection | None = None) -> VersionInfo | None:
        with self._c(conn) as c:
            row = c.execute(sa.select(model_versions).where(model_versions.c.job_id == job_id)).first()
        return None if row is None else _version_of(row)

    def history(self, model: str | None = None, *, limit: int | None = None,
                conn: Connection | None = None) -> list[HistoryEntry]:
        """Audit rows, oldest first (the last ``limit`` ones if given)."""
        q = sa.select(champion_history).order_by(champion_history.c.id.desc())
        if model is not None:
            q = q.where(champion_history.c.model == model)
        if limit is not None:
            q = q.limit(limit)
        with self._c(conn) as c:
            rows = [_history_of(r) for r in c.execute(q)]
        return rows[::-1]

    def last_event(self, model: str, version: int, event: str,
                   conn: Connection | None = None) -> HistoryEntry | None:
        """The newest audit row of ``event`` about ``version`` (None if there is none)."""
        h = champion_history.c
        q = (sa.select(champion_history).where(h.model == model, h.version == version, h.event == event)
             .order_by(h.id.desc()).limit(1))
        with self._c(conn) as c:
            row = c.execute(q).first()
        return None if row is None else _history_of(row)

    def champion_at(self, model: str, ts_ms: int) -> int | None:
        """The version that was champion at ``ts_ms`` (None if there was none)."""
        q = (sa.select(champion_history.c.champion_version)
             .where(champion_history.c.model == model, champion_history.c.decided_at <= ts_ms)
             .order_by(champion_history.c.id.desc()).limit(1))
        with self.store.engine.connect() as c:
            row = c.execute(q).first()
        return None if row is None else row[0]

    # -- files of a version ------------------------------------------------------------------
    def load_model(self, model: str, version: int | str) -> Any:
        """The fitted estimator of a version (SHA-256 checked, skops-loaded)."""
        v = self.get(model, version)
        return load_model(self.path(v.artifact_path), v.artifact_sha256, self.trusted_types)

    def load_reference(self, model: str, version: int | str,
                       sample: Literal["training", "holdout"] = "training",
                       conn: Connection | None = None) -> pd.DataFrame:
        """A version's sample as a DataFrame (see :func:`load_reference`)."""
        v = self.get(model, version, conn)
        if sample == "training":
            return load_frame(self.path(v.reference_path), v.reference_sha256)
        if sample == "holdout":
            if v.holdout_path is None or v.holdout_sha256 is None:
                raise RegistryError(f"{model} version {v.version} has no held-out sample "
                                    "(it was registered, not trained by driftloop)")
            return load_frame(self.path(v.holdout_path), v.holdout_sha256)
        raise ValueError(f"sample must be 'training' or 'holdout', not {sample!r}")

    # -- writes (inside the caller's transaction) --------------------------------------------
    def _next_version(self, conn: Connection, model: str) -> int:
        cur = conn.execute(sa.select(sa.func.max(model_versions.c.version))
                           .where(model_versions.c.model == model)).scalar()
        return int(cur or 0) + 1

    def add_version(self, conn: Connection, *, model: str, status: str, source: str, task: str,
                    features: dict[str, str], classes: list[str] | None, artifact: FileInfo,
                    reference: FileInfo, holdout: FileInfo | None, estimator: str | None,
                    params: dict[str, Any], metrics: dict[str, Any], data_window: dict[str, Any],
                    job_id: str | None, note: str | None, now: int, lib_versions: dict[str, str],
                    mlflow_run_id: str | None = None, mlflow_version: int | None = None) -> int:
        """Insert a version row; returns its number (the model's previous maximum + 1).

        With ``registry.backend: mlflow`` the row is ``mlflow_state = pending`` (the mirror
        creates its MLflow version after the commit) unless ``mlflow_version`` says it came from
        MLflow (an import: ``synced``)."""
        self.store.lock_models(conn, [model])
        version = self._next_version(conn, model)
        conn.execute(model_versions.insert().values(
            model=model, version=version, status=status, source=source, job_id=job_id, created_at=now,
            task=task, features=dict(features), classes=classes,
            artifact_path=self.relative(artifact.path), artifact_sha256=artifact.sha256, artifact_format="skops",
            trusted_types=list(artifact.trusted_types),
            reference_path=self.relative(reference.path), reference_sha256=reference.sha256,
            reference_rows=int(reference.rows or 0),
            holdout_path=None if holdout is None else self.relative(holdout.path),
            holdout_sha256=None if holdout is None else holdout.sha256,
            holdout_rows=None if holdout is None else holdout.rows,
            estimator=estimator, params=_jsonable(params), metrics=_jsonable(metrics),
            data_window=_jsonable(data_window), code_version=code_version(), library_versions=lib_versions,
            note=note, mlflow_run_id=mlflow_run_id, mlflow_version=mlflow_version,
            mlflow_state=("synced" if mlflow_version is not None
                          else "pending" if self.reg.backend == "mlflow" else None)))
        return version

    def set_status(self, conn: Connection, model: str, version: int, status: str) -> None:
        """Set a version's status (no event: the caller records one)."""
        self._set_status(conn, model, version, status)

    def _set_status(self, conn: Connection, model: str, version: int, status: str) -> None:
        conn.execute(model_versions.update().where(model_versions.c.model == model,
                                                   model_versions.c.version == version).values(status=status))

    def make_champion(self, conn: Connection, model: str, version: int) -> int | None:
        """Archive the current champion and crown ``version``; returns the previous champion."""
        self.store.lock_models(conn, [model])
        current = self.champion(model, conn)
        if current is not None:
            if current.version == version:
                return version
            self._set_status(conn, model, current.version, "archived")
        self._set_status(conn, model, version, "champion")
        return None if current is None else current.version

    def record_event(self, conn: Connection, *, model: str, event: str, version: int,
                     champion_version: int | None, previous_champion: int | None, actor: str,
                     reason: str, now: int, job_id: str | None = None, trigger: str | None = None,
                     alert_ids: list[str] | None = None, metrics: dict[str, Any] | None = None,
                     decision: dict[str, Any] | None = None, note: str | None = None,
                     timings: dict[str, float] | None = None) -> ModelEvent:
        """Append the audit row and queue the ``driftloop.models`` event (outbox)."""
        details = {"metrics": metrics, "decision": decision, "trigger": trigger, "alert_ids": alert_ids or []}
        if timings:
            details["timings_s"] = timings
        res = conn.execute(champion_history.insert().values(
            model=model, event=event, version=version, champion_version=champion_version,
            previous_champion=previous_champion, decided_at=now, actor=actor[:255], job_id=job_id,
            reason=reason, details=_jsonable(details)))
        history_id = int(res.inserted_primary_key[0])  # type: ignore[index]  # an INSERT of one row has its key
        ref = None
        if champion_version is not None:
            v = self.get(model, champion_version, conn)
            ref = {"path": v.reference_path, "sha256": v.reference_sha256, "rows": v.reference_rows,
                   "holdout_path": v.holdout_path, "holdout_sha256": v.holdout_sha256}
        ev = ModelEvent(event=event,  # type: ignore[arg-type]  # one of ModelEvent's six, from the callers
                        model=model, version=str(version), champion_version=_str(champion_version),
                        previous_champion=_str(previous_champion), decided_at=rfc3339(now),
                        metrics=_jsonable(metrics), decision=_jsonable(decision), job_id=job_id, trigger=trigger,
                        reason=list(alert_ids or []), note=note or reason, history_id=history_id, reference=ref)
        self.store.add_outbox(conn, self.cfg.topics.models, [(model.encode(), encode(ev))], now)
        return ev

    def record_note(self, conn: Connection, *, model: str, event: str, version: int, actor: str, reason: str,
                    now: int, details: dict[str, Any]) -> int:
        """Append an audit row that changes nothing and is no ``driftloop.models`` event (the
        MLflow backend's ``external_change`` and ``mlflow_deleted``); the champion columns hold
        driftloop's champion, unchanged. Returns the row's id."""
        current = self.champion(model, conn)
        cur_v = None if current is None else current.version
        res = conn.execute(champion_history.insert().values(
            model=model, event=event, version=version, champion_version=cur_v, previous_champion=cur_v,
            decided_at=now, actor=actor[:255], job_id=None, reason=reason, details=_jsonable(details)))
        return int(res.inserted_primary_key[0])  # type: ignore[index]  # an INSERT of one row has its key

    # -- operator actions (own transaction each) ---------------------------------------------
    def promote(self, model: str, version: int | str, *, actor: str, reason: str = "manual promotion",
                now: int | None = None) -> ModelEvent:
        """Make ``version`` the champion by hand (``driftloop models promote``)."""
        now = now_ms() if now is None else now
        with self.store.transaction() as conn:
            v = self.get(model, version, conn)
            current = self.champion(model, conn)
            if current is not None and current.version == v.version:
                raise RegistryError(f"{model} version {v.version} is already the champion")
            previous = self.make_champion(conn, model, v.version)
            return self.record_event(conn, model=model, event="promoted", version=v.version,
                                     champion_version=v.version, previous_champion=previous, actor=actor,
                                     reason=reason, now=now, metrics=v.metrics or None)

    def start_shadow(self, model: str, version: int | str, *, actor: str, reason: str = "manual shadow",
                     conn: Connection | None = None, now: int | None = None, replace: bool = False,
                     metrics: dict[str, Any] | None = None, decision: dict[str, Any] | None = None,
                     job_id: str | None = None, trigger: str | None = None, alert_ids: list[str] | None = None,
                     timings: dict[str, float] | None = None) -> ModelEvent:
        """Put ``version`` in shadow beside the champion (``driftloop models shadow``); returns
        its ``shadow_started`` event (audit row + outbox, in ``conn`` if given, else in a
        transaction of its own).

        A shadow answers live requests without being shown; :mod:`retrain.shadow` promotes or
        rejects it on the monitor's live paired comparison. The model needs a champion to be
        compared with, and the version must not be the champion or already in shadow. One shadow
        per model: another one running is refused unless ``replace``, which rejects it first
        (event ``rejected``, "superseded"). ``metrics``/``decision``: the offline gate's numbers
        when the worker starts it (default: the version's recorded metrics).
        """
        now = now_ms() if now is None else now
        if conn is None:
            with self.store.transaction() as own:
                return self.start_shadow(model, version, actor=actor, reason=reason, conn=own, now=now,
                                         replace=replace, metrics=metrics, decision=decision, job_id=job_id,
                                         trigger=trigger, alert_ids=alert_ids, timings=timings)
        self.store.lock_models(conn, [model])
        v = self.get(model, version, conn)
        current = self.champion(model, conn)
        if current is None:
            raise RegistryError(f"{model} has no champion for a shadow to be compared with; promote version "
                                f"{v.version} instead")
        if v.status == "champion":
            raise RegistryError(f"{model} version {v.version} is the champion; a shadow must be another version")
        if v.status == "shadow":
            raise RegistryError(f"{model} version {v.version} is already in shadow")
        others = [o for o in self.shadows(model, conn) if o.version != v.version]
        if others and not replace:
            raise RegistryError(f"{model} version {others[0].version} is in shadow already (one shadow per model); "
                                "wait for its decision, or replace it (--replace)")
        for o in others:
            self._set_status(conn, model, o.version, "rejected")
            self.record_event(conn, model=model, event="rejected", version=o.version,
                              champion_version=current.version, previous_champion=current.version, actor=actor,
                              reason=f"rejected: shadow phase superseded by version {v.version}", now=now)
        self._set_status(conn, model, v.version, "shadow")
        return self.record_event(conn, model=model, event="shadow_started", version=v.version,
                                 champion_version=current.version, previous_champion=current.version, actor=actor,
                                 reason=reason, now=now, job_id=job_id, trigger=trigger, alert_ids=alert_ids,
                                 metrics=metrics if metrics is not None else (v.metrics or None), decision=decision,
                                 timings=timings)

    def rollback(self, model: str, *, to_version: int | str | None = None, actor: str,
                 reason: str = "manual rollback", now: int | None = None) -> ModelEvent:
        """Restore the previous champion (or ``to_version``); the current one is archived."""
        now = now_ms() if now is None else now
        with self.store.transaction() as conn:
            current = self.champion(model, conn)
            if current is None:
                raise RegistryError(f"{model} has no champion to roll back")
            if to_version is None:
                target = self._previous_champion(conn, model, current.version)
                if target is None:
                    raise RegistryError(f"{model}: no earlier champion than version {current.version} "
                                        "to roll back to; name one with --to VERSION")
            else:
                target = self.get(model, to_version, conn).version
                if target == current.version:
                    raise RegistryError(f"{model} version {target} is already the champion")
            self.make_champion(conn, model, target)
            return self.record_event(conn, model=model, event="rolled_back", version=current.version,
                                     champion_version=target, previous_champion=current.version, actor=actor,
                                     reason=reason, now=now)

    def register(self, model: str, artifact_file: str | os.PathLike[str], reference: pd.DataFrame, *,
                 actor: str, trust: list[str] | tuple[str, ...] = (), params: dict[str, Any] | None = None,
                 metrics: dict[str, Any] | None = None, note: str | None = None, promote: bool = False,
                 now: int | None = None, source: str = "register", mlflow_run_id: str | None = None,
                 mlflow_version: int | None = None) -> tuple[int, list[ModelEvent]]:
        """Bring in an externally trained model (a ``.skops`` file) with its reference sample.

        ``source``/``mlflow_*``: where it came from (``mlflow`` for ``models import --from-mlflow``,
        :mod:`retrain.mlflow_import`: the version it is in MLflow, so it is not mirrored again).

        The file must hold only types skops trusts by default, plus those in ``trust`` or
        ``registry.trusted_types`` (pickle files are refused: they run code when loaded). The
        model must predict on the reference's feature columns. The reference needs the
        model's feature columns and ``label``; ``prediction``/``score_<class>`` columns are
        kept if present. ``promote`` also makes it the champion (a second event).

        Every check runs before anything is written; the files are written before the one
        transaction that adds the version and its event(s), so a crash leaves at most an
        unreferenced artifact folder.
        """
        from retrain.artifacts import save_frame

        if model not in self.cfg.models:
            raise RegistryError(f"unknown model {model!r} (configured: {', '.join(sorted(self.cfg.models))})")
        mcfg = self.cfg.models[model]
        src = Path(artifact_file)
        data, needed, est = self._load_external(src, trust)
        sample, classes = _checked_reference(est, reference, mcfg)
        folder = self.new_artifact_dir(model, "register")
        artifact = _write_bytes(folder / "model.skops", data, tuple(needed))
        ref = save_frame(sample, folder / "reference.json.gz")
        now = now_ms() if now is None else now
        with self.store.transaction() as conn:
            version = self.add_version(
                conn, model=model, status="registered", source=source, task=mcfg.task,
                features=dict(mcfg.features), classes=classes, artifact=artifact, reference=ref,
                holdout=None, estimator=f"{type(est).__module__}.{type(est).__qualname__}",
                params=params or _safe_params(est), metrics=metrics or {}, data_window={"source": "external"},
                job_id=None, note=note, now=now, lib_versions=library_versions(type(est).__module__),
                mlflow_run_id=mlflow_run_id, mlflow_version=mlflow_version)
            events = self._registration_events(conn, model, version, src, actor=actor, note=note,
                                               metrics=metrics, promote=promote, now=now)
        return version, events

    def _load_external(self, src: Path, trust: list[str] | tuple[str, ...]) -> tuple[bytes, list[str], Any]:
        """Read ``src``, refuse types nobody trusts, and load it with skops: (bytes, types, estimator)."""
        from retrain.artifacts import untrusted_types

        try:
            data = src.read_bytes()
        except OSError as exc:
            raise RegistryError(f"cannot read {src}: {exc.strerror}") from None
        needed = untrusted_types(data)
        allowed = set(trust) | set(self.reg.trusted_types)
        unknown = sorted(set(needed) - allowed)
        if unknown:
            raise UntrustedArtifactError(
                f"{src} holds types skops does not trust by default: {unknown}. If you trust the file's "
                "origin and these types, pass them with --trust TYPE (or list them in registry.trusted_types)")
        self.check_loadable(needed, src)
        import skops.io as sio

        try:
            est = sio.loads(data, trusted=list(needed) or None)
        except Exception as exc:  # noqa: BLE001 - any skops failure means the file cannot be loaded
            raise RegistryError(f"cannot load {src} with skops: {type(exc).__name__}: {exc}") from None
        return data, needed, est

    def _registration_events(self, conn: Connection, model: str, version: int, src: Path, *, actor: str,
                             note: str | None, metrics: dict[str, Any] | None, promote: bool,
                             now: int) -> list[ModelEvent]:
        """The ``registered`` event, and ``promoted`` with the champion change if ``promote`` (in ``conn``)."""
        current = self.champion(model, conn)
        cur_v = None if current is None else current.version
        events = [self.record_event(
            conn, model=model, event="registered", version=version, champion_version=cur_v,
            previous_champion=cur_v, actor=actor, reason=note or f"registered from {src.name}", now=now,
            metrics=metrics)]
        if promote:
            previous = self.make_champion(conn, model, version)
            events.append(self.record_event(
                conn, model=model, event="promoted", version=version, champion_version=version,
                previous_champion=previous, actor=actor, reason=f"promoted at registration ({note or src.name})",
                now=now, metrics=metrics))
        return events

    def _previous_champion(self, conn: Connection, model: str, current: int) -> int | None:
        q = (sa.select(champion_history.c.previous_champion)
             .where(champion_history.c.model == model, champion_history.c.champion_version == current,
                    champion_history.c.event.in_(("promoted", "rolled_back")),
                    champion_history.c.previous_champion.is_not(None),
                    champion_history.c.previous_champion != current)
             .order_by(champion_history.c.id.desc()).limit(1))
        row = conn.execute(q).first()
        return None if row is None else int(row[0])


def _checked_reference(est: Any, reference: pd.DataFrame,
                       mcfg: ModelConfig) -> tuple[pd.DataFrame, list[str] | None]:
    """The reference sample to store for ``est`` and the model's classes (``None`` for regression).

    Raises :class:`RegistryError` if the sample has no usable rows or the model cannot predict
    on its feature columns. ``prediction``/``score_<class>`` columns are kept if no row was dropped.
    """
    from retrain.dataset import DatasetError, frame_to_data
    from retrain.evaluate import model_outputs

    try:
        rows = frame_to_data(reference, mcfg.features, mcfg.task)
    except DatasetError as exc:
        raise RegistryError(str(exc)) from None
    if rows.n == 0:
        raise RegistryError("the reference sample has no usable rows (features + label)")
    try:
        out = model_outputs(est, rows.X, mcfg.task)
    except Exception as exc:  # noqa: BLE001 - the user's model: any failure is a refusal
        raise RegistryError(f"the model cannot predict on the reference's feature columns "
                            f"{list(mcfg.features)}: {type(exc).__name__}: {exc}") from None
    sample = rows.frame(task=mcfg.task)
    extra = [c for c in reference.columns if c == "prediction" or (isinstance(c, str) and c.startswith("score_"))]
    if extra and len(reference) == rows.n:
        for c in extra:
            sample[c] = reference[c].to_numpy()
    if mcfg.task == "ranking" and "prediction" in sample.columns:   # lists as JSON text: samples hold scalars
        from detectors.ranking_lists import as_json
        from detectors.ranking_monitor import encoded_lists

        sample["prediction"] = [as_json(p) for p in encoded_lists(sample["prediction"].to_numpy(dtype=object))]
    return sample, out.classes or None


def _write_bytes(path: Path, data: bytes, trusted: tuple[str, ...]) -> FileInfo:
    import hashlib

    from retrain.artifacts import _write_atomic

    _write_atomic(path, data)
    return FileInfo(path, hashlib.sha256(data).hexdigest(), len(data), trusted)


def _safe_params(est: Any) -> dict[str, Any]:
    try:
        params = est.get_params(deep=False)
    except Exception:  # noqa: BLE001 - parameters are informational only
        return {}
    return {k: v for k, v in params.items() if v is None or isinstance(v, (bool, int, float, str))}


def _jsonable(obj: Any) -> Any:
    """Plain JSON types (numpy scalars and NaN turned into numbers and None)."""
    import math

    import numpy as np

    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in (obj.tolist() if isinstance(obj, np.ndarray) else obj)]
    return str(obj)


def load_reference(cfg: Config, store: Store, model: str, version: int | str,
                   sample: Literal["training", "holdout"] = "training") -> pd.DataFrame:
    """A registry version's reference sample, for the monitor's detectors.

    ``training`` (default): the rows the version was trained on, the feature columns (numeric
    ``float64``, categorical strings, ``NaN`` for missing) and ``label``. ``holdout``: the
    held-out rows (newest data of the job's window, unseen in training) with ``label`` AND the
    version's own outputs on them (``prediction`` and one ``score_<class>`` column per class):
    out-of-sample outputs, the honest baseline for prediction drift and performance (in-sample
    outputs of a forest are near-perfect). SHA-256 checked: raises
    :class:`retrain.artifacts.ArtifactIntegrityError` if the file was changed.
    """
    return Registry(cfg, store).load_reference(model, version, sample)
