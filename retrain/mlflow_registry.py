"""``registry.backend: mlflow``: driftloop's registry mirrored into an MLflow model registry.

driftloop's store stays the authority and the audit trail: every decision commits there first,
as with the local backend, and the monitor and the worker load driftloop's own copy of a
version's files (SHA-256 checked), never MLflow's. MLflow is a mirror that ML teams read and
act on: one run per version (params, the data window, the alert ids that caused it, library
versions, the git sha; the model, its MLmodel and the reference sample as artifacts under
``model/``), one model version per driftloop version (tags ``driftloop.*``), the alias
(``registry.mlflow.alias``, default ``champion``) on driftloop's champion, rejected challengers
tagged so with both scores. What MLflow lacks, the history of who moved the alias when and why
(mlflow/mlflow#2169), is driftloop's ``champion_history``, shown with MLflow's version numbers.

The mirror is level-triggered: :meth:`MlflowMirror.sync` compares what the store says with what
MLflow holds and does what is missing, so the same pass serves a fresh decision, a restart after
a crash and a server that was down. Per model, in this order:

1. **versions** (``model_versions.mlflow_state`` null or ``pending``): find the MLflow version
   tagged ``driftloop.key`` (the job id, or ``model/version@created_at`` for a version that was
   not trained by a job); only if there is none, find-or-create the run (same tag), upload the
   files, create the version; search again and keep the lowest if a retried request made two;
   then record its number (``synced``). Idempotent on the key: never two versions for a job.
2. **status tags** (``mlflow_status`` differs from ``status``): ``driftloop.status``, and for a
   rejected challenger ``driftloop.decision=rejected`` with the metric and both scores.
3. **the alias** (table ``mlflow_models``): read where it points. If that is not where driftloop
   last saw or put it (``alias_seen``), someone else moved it: recorded once as an
   ``external_change`` history row (or ``mlflow_deleted`` when the version it pointed to was
   deleted in MLflow); driftloop does not move it back by itself. Then, if driftloop's champion
   changed since the alias was last moved (``champion_applied``: a promotion, a rollback), move
   it to the champion's MLflow version.

What survives which crash (SIGKILL at any point):

* before a decision commits: the worker logged the job's run (:meth:`MlflowMirror.prepare_run`,
  found again by its tag on the redo, so a redone job reuses it); nothing else exists;
* after the decision commits, before or after MLflow's ``create_model_version``, before the
  alias move: the version row is ``pending``; the next pass (the worker's at its start and
  every ``registry.mlflow.poll_s``, or ``driftloop models sync``) finds the version by its tag
  instead of creating another, records it, then moves the alias: one version, one decision;
* after the alias move, before ``champion_applied`` is written: the next pass reads the alias
  on the champion's version and only records the move (it is not taken for someone else's);
* a request MLflow's client retried after the server had already acted (a second version):
  the search after the creation (or the next pass's, when this one stopped before it) keeps the
  lowest and deletes the other (one another process's pass deleted first counts as deleted).

MLflow down: :meth:`prepare_run` raises :class:`~retrain.mlflow_client.MlflowUnavailable` and
the worker retries the job later (the decision waits, the job is not failed); after a decision
the pass stops at the first failure and the rows stay pending for the next one. A version
deleted in MLflow is reported (a history row, a warning, ``driftloop models show``) and marked
``deleted``; nothing is re-created and nothing crashes.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from driftloop.core.config import Config
from driftloop.core.store import Store, now_ms
from driftloop.core.tables import mlflow_models, model_versions
from retrain.artifacts import ArtifactError, read_checked
from retrain.mlflow_client import MlflowError, MlflowGateway, MlflowNotFound, MlflowUnavailable, scratch_dir
from retrain.mlmodel import write_mlmodel
from retrain.registry import Registry, VersionInfo, code_version

__all__ = ["MlflowMirror", "MirrorThread", "SyncReport", "mirror_for", "KEY_TAG", "PAUSE_ENV", "ARTIFACT_PATH"]

log = logging.getLogger(__name__)

KEY_TAG = "driftloop.key"
ARTIFACT_PATH = "model"
#: tests: seconds to sleep right after MLflow's create_model_version, before anything is recorded
PAUSE_ENV = "DRIFTLOOP_MLFLOW_PAUSE_S"
ACTOR = "driftloop-mlflow-sync"


@dataclass
class SyncReport:
    """What one :meth:`MlflowMirror.sync` pass did, per model (for logs and the CLI)."""

    done: list[str] = field(default_factory=list)      # one line per action
    errors: list[str] = field(default_factory=list)    # one line per model that stopped on an error
    pending: bool = False                              # something is left for a later pass
    reachable: bool = True

    def lines(self) -> list[str]:
        return self.done + [f"not done: {e}" for e in self.errors]


def mirror_for(cfg: Config, store: Store, registry: Registry | None = None) -> MlflowMirror | None:
    """The mirror of ``cfg``'s registry, or None with the local backend."""
    registry = registry or Registry(cfg, store)
    return MlflowMirror(cfg, store, registry) if registry.reg.backend == "mlflow" else None


def version_key(v: VersionInfo) -> str:
    """The MLflow tag value that identifies driftloop's version ``v`` across retries: its job id,
    else ``model/version@created_at`` (milliseconds: unique across stores sharing one MLflow)."""
    return v.job_id or f"{v.model}/{v.version}@{v.created_at}"


class MlflowMirror:
    """Mirrors one driftloop registry into MLflow (see the module docstring)."""

    def __init__(self, cfg: Config, store: Store, registry: Registry) -> None:
        self.cfg = cfg
        self.store = store
        self.registry = registry
        self.settings = registry.reg.mlflow_settings
        self.gateway = MlflowGateway(self.settings)
        self._lock = threading.Lock()           # one pass at a time in this process

    def name(self, model: str) -> str:
        return self.settings.model_name(model)

    # -- before a decision -------------------------------------------------------------------
    def prepare_run(self, job_id: str, model: str, *, tags: dict[str, str], params: dict[str, Any]) -> str:
        """The job's run, found by its tag or created (with ``tags``), with ``params`` logged:
        called before the decision, so that a server that is down holds the decision back
        (:class:`MlflowUnavailable`) instead of leaving it unmirrored. Idempotent on ``job_id``."""
        self.gateway.ensure_registered_model(self.name(model), f"driftloop model {model!r}")
        run_id = self.gateway.run_with_tag(KEY_TAG, job_id)
        if run_id is None:
            run_id = self.gateway.create_run({KEY_TAG: job_id, **tags}, run_name=f"{model}-{job_id}"[:250])
        self._log_params(run_id, params)
        return run_id

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        try:
            self.gateway.log_params(run_id, {k: _text(v) for k, v in params.items()})
        except MlflowUnavailable:
            raise
        except MlflowError as exc:    # params are immutable: a redo that computed another value keeps the first
            log.warning("MLflow run %s: params not (all) logged: %s", run_id, exc)

    # -- after: the pass ---------------------------------------------------------------------
    def sync(self, models: list[str] | None = None) -> SyncReport:
        """One reconciliation pass over ``models`` (default: every configured model); never raises."""
        report = SyncReport()
        with self._lock:
            for model in models or sorted(self.cfg.models):
                try:
                    self._sync_model(model, report)
                except MlflowUnavailable as exc:
                    report.reachable, report.pending = False, True
                    report.errors.append(f"{model}: {exc}")
                    self._note_error(model, str(exc))
                    break                     # the server is away: the other models wait too
                except (MlflowError, ArtifactError, OSError, sa.exc.SQLAlchemyError) as exc:
                    report.pending = True
                    report.errors.append(f"{model}: {type(exc).__name__}: {exc}")
                    log.warning("MLflow mirror of %s: %s: %s", model, type(exc).__name__, exc)
                    self._note_error(model, f"{type(exc).__name__}: {exc}")
        return report

    def _sync_model(self, model: str, report: SyncReport) -> None:
        c = model_versions.c
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(model_versions).where(
                c.model == model, sa.or_(c.mlflow_state.is_(None), c.mlflow_state == "pending",
                                         sa.and_(c.mlflow_state == "synced",
                                                 sa.or_(c.mlflow_status.is_(None), c.mlflow_status != c.status))))
                .order_by(c.version)).all()
        todo = [self.registry.get(model, r.version) for r in rows]
        if todo:
            self.gateway.ensure_registered_model(self.name(model), f"driftloop model {model!r}")
        for row in todo:
            v = self._mirror_version(row, report) if row.mlflow_state in (None, "pending") else row
            if v.mlflow_state == "synced" and v.mlflow_status != v.status:
                self._mirror_status(v, report)
        self._mirror_alias(model, report)
        self._mark_checked(model)

    # step 1 --------------------------------------------------------------------------------
    def _mirror_version(self, v: VersionInfo, report: SyncReport) -> VersionInfo:
        name, key = self.name(v.model), version_key(v)
        found = self.gateway.versions_with_tag(name, KEY_TAG, key)
        run_id = v.mlflow_run_id
        if not found:
            run_id = run_id or self.gateway.run_with_tag(KEY_TAG, key)
            if run_id is None:
                run_id = self.gateway.create_run({KEY_TAG: key, **self._version_run_tags(v)},
                                                 run_name=f"{v.model}-v{v.version}")
                self._log_params(run_id, {"estimator": v.estimator, **v.params})
            self._upload(v, run_id)
            self.gateway.create_version(name, run_id, ARTIFACT_PATH, self._version_tags(v, key))
            _pause_for_tests(f"{v.model} v{v.version}")
            found = self.gateway.versions_with_tag(name, KEY_TAG, key)   # a retried request may have made two
            if not found:
                raise MlflowUnavailable(f"{name}: the version just created for {key} is not found")
        keep, extra = found[0], found[1:]
        for dup in extra:
            log.warning("MLflow %s: version %d duplicates version %d (key %s); deleting it", name, dup.version,
                        keep.version, key)
            try:
                self.gateway.delete_version(name, dup.version)
            except MlflowNotFound:             # another process's pass deleted it first
                pass
        with self.store.transaction() as conn:
            conn.execute(model_versions.update().where(
                model_versions.c.model == v.model, model_versions.c.version == v.version,
                sa.or_(model_versions.c.mlflow_state.is_(None), model_versions.c.mlflow_state == "pending"))
                .values(mlflow_state="synced", mlflow_version=keep.version, mlflow_run_id=keep.run_id or run_id))
        report.done.append(f"{v.model} v{v.version} is MLflow {name} version {keep.version}")
        return self.registry.get(v.model, v.version)

    def _version_run_tags(self, v: VersionInfo) -> dict[str, str]:
        """Run tags of a version the worker did not log a run for (registered, backfilled)."""
        tags = {"driftloop.model": v.model, "driftloop.source": v.source,
                "driftloop.data_window": _json(v.data_window), "driftloop.lib_versions": _json(v.library_versions)}
        if v.code_version:
            tags["mlflow.source.git.commit"] = v.code_version
        if v.note:
            tags["mlflow.note.content"] = v.note
        return tags

    def _version_tags(self, v: VersionInfo, key: str) -> dict[str, str]:
        tags = {KEY_TAG: key, "driftloop.model": v.model, "driftloop.version": str(v.version),
                "driftloop.source": v.source, "driftloop.artifact_sha256": v.artifact_sha256,
                "driftloop.reference_sha256": v.reference_sha256}
        if v.job_id:
            tags["driftloop.job_id"] = v.job_id
        return tags

    def _upload(self, v: VersionInfo, run_id: str) -> None:
        """driftloop's own files (SHA-256 checked) and an MLmodel, under ``model/`` of the run;
        the decision's metrics once (a run's metrics are a series: not logged twice)."""
        import sklearn

        reg = self.registry
        with scratch_dir("driftloop-mlflow-") as tmp:
            folder = tmp / ARTIFACT_PATH
            folder.mkdir()
            files = [("model.skops", v.artifact_path, v.artifact_sha256),
                     ("reference.json.gz", v.reference_path, v.reference_sha256)]
            if v.holdout_path and v.holdout_sha256:
                files.append(("holdout.json.gz", v.holdout_path, v.holdout_sha256))
            for dst, rel, sha in files:
                (folder / dst).write_bytes(read_checked(reg.path(rel), sha))
            write_mlmodel(folder, model_file="model.skops", sklearn_version=sklearn.__version__,
                          trusted_types=list(v.trusted_types), run_id=run_id)
            self.gateway.upload(run_id, folder, ARTIFACT_PATH)
        metrics = _run_metrics(v.metrics)
        if metrics and not self.gateway.run_has_metrics(run_id):
            self.gateway.log_metrics(run_id, metrics)
        self.gateway.finish_run(run_id)

    # step 2 --------------------------------------------------------------------------------
    def _mirror_status(self, v: VersionInfo, report: SyncReport) -> None:
        assert v.mlflow_version is not None
        # one request per tag: the status goes last, so a reader that sees it sees the others
        tags = _decision_tags(v) | {"driftloop.version": str(v.version), "driftloop.status": v.status}
        try:
            self.gateway.set_version_tags(self.name(v.model), v.mlflow_version, tags)
        except MlflowNotFound:
            self._deleted(v.model, v.mlflow_version, report, why=f"tagging it {v.status}")
            return
        with self.store.transaction() as conn:
            conn.execute(model_versions.update().where(
                model_versions.c.model == v.model, model_versions.c.version == v.version,
                model_versions.c.status == v.status).values(mlflow_status=v.status))
        report.done.append(f"{v.model} v{v.version} (MLflow {v.mlflow_version}) tagged {v.status}")

    # step 3 --------------------------------------------------------------------------------
    def _mirror_alias(self, model: str, report: SyncReport) -> None:
        name, alias = self.name(model), self.settings.alias
        seen_row = self._state(model)
        champ = self.registry.champion(model)
        if champ is None and seen_row is None:
            return                             # nothing of this model was ever mirrored
        try:
            actual = self.gateway.alias_target(name, alias)
        except MlflowNotFound:                 # the registered model itself was deleted
            actual = None
        want_v = None if champ is None else champ.version
        want_m = None if champ is None else champ.mlflow_version
        moving = want_v is not None and (seen_row is None or seen_row.champion_applied != want_v)
        if seen_row is None:
            self._insert_state(model, actual)
        elif actual != seen_row.alias_seen and not (moving and actual == want_m):
            self._record_outside_change(model, name, alias, seen_row.alias_seen, actual, report)
        if not moving:
            return
        if champ is None or want_m is None or champ.mlflow_state != "synced":
            if champ is not None and champ.mlflow_state == "deleted":
                log.warning("MLflow %s: the champion v%s's MLflow version was deleted; alias %r not moved",
                            name, want_v, alias)
                self._set_state(model, champion_applied=want_v)
            else:
                report.pending = True
            return
        if actual != want_m:
            try:
                self.gateway.set_alias(name, alias, want_m)
            except MlflowNotFound:
                self._deleted(model, want_m, report, why=f"moving alias {alias!r} to it")
                self._set_state(model, champion_applied=want_v)
                return
            report.done.append(f"{model}: MLflow alias {alias!r} of {name} -> version {want_m} (driftloop v{want_v})")
        self._set_state(model, alias_seen=want_m, champion_applied=want_v)

    def _record_outside_change(self, model: str, name: str, alias: str, expected: int | None, found: int | None,
                               report: SyncReport) -> None:
        """The alias is not where driftloop left it: record it once (compare-and-set on
        ``alias_seen``, so two processes noticing it at once record one row)."""
        deleted = False
        if found is None and expected is not None:
            try:
                self.gateway.get_version(name, expected)
            except MlflowNotFound:
                deleted = True
        ours = {"expected": expected, "found": found}
        with self.store.transaction() as conn:
            self.store.lock_models(conn, [model])
            row = conn.execute(sa.select(mlflow_models).where(mlflow_models.c.model == model)).first()
            if row is None or row.alias_seen != expected:
                return                         # another process recorded it meanwhile
            conn.execute(mlflow_models.update().where(mlflow_models.c.model == model).values(alias_seen=found))
            if deleted and expected is not None:
                self._deleted_row(conn, model, expected, f"the alias {alias!r} pointed to it", ours)
                report.done.append(f"{model}: MLflow {name} version {expected} was deleted in MLflow (recorded)")
                return
            dl_found, dl_expected = self._driftloop_version(conn, model, found), self._driftloop_version(
                conn, model, expected)
            version = dl_found or dl_expected or self._champion_number(conn, model)
            reason = (f"MLflow alias {alias!r} of {name} moved outside driftloop: "
                      f"{_mv(expected, dl_expected)} -> {_mv(found, dl_found)}; driftloop's champion is unchanged "
                      "(promote or roll back in driftloop to act on it)")
            self.registry.record_note(conn, model=model, event="external_change", version=version, actor=ACTOR,
                                      reason=reason, now=now_ms(),
                                      details={"mlflow": {"name": name, "alias": alias, **ours,
                                                          "driftloop_expected": dl_expected,
                                                          "driftloop_found": dl_found}})
        log.warning("%s", reason)
        report.done.append(f"{model}: {reason}")

    def _deleted(self, model: str, mlflow_version: int, report: SyncReport, *, why: str) -> None:
        with self.store.transaction() as conn:
            self.store.lock_models(conn, [model])
            self._deleted_row(conn, model, mlflow_version, why, {})
        report.done.append(f"{model}: MLflow version {mlflow_version} was deleted in MLflow (recorded)")

    def _deleted_row(self, conn: Connection, model: str, mlflow_version: int, why: str,
                     extra: dict[str, Any]) -> None:
        """Mark driftloop's version of ``mlflow_version`` ``deleted`` and add one history row
        (none if it is already marked)."""
        c = model_versions.c
        dl = self._driftloop_version(conn, model, mlflow_version)
        if dl is not None:
            changed = conn.execute(model_versions.update().where(c.model == model, c.version == dl,
                                                                 c.mlflow_state != "deleted")
                                   .values(mlflow_state="deleted")).rowcount
            if not changed:
                return
        name = self.name(model)
        reason = (f"MLflow {name} version {mlflow_version}{'' if dl is None else f' (driftloop v{dl})'} was deleted "
                  f"in MLflow (noticed {why}); driftloop keeps its own copy, SHA-256 checked, and serves it")
        log.warning("%s", reason)
        self.registry.record_note(conn, model=model, event="mlflow_deleted",
                                  version=dl if dl is not None else self._champion_number(conn, model),
                                  actor=ACTOR, reason=reason, now=now_ms(),
                                  details={"mlflow": {"name": name, "version": mlflow_version, **extra}})

    # -- small store helpers -----------------------------------------------------------------
    def _driftloop_version(self, conn: Connection, model: str, mlflow_version: int | None) -> int | None:
        if mlflow_version is None:
            return None
        c = model_versions.c
        return conn.execute(sa.select(c.version).where(c.model == model, c.mlflow_version == mlflow_version)
                            .order_by(c.version).limit(1)).scalar()

    def _champion_number(self, conn: Connection, model: str) -> int:
        champ = self.registry.champion(model, conn)
        return 0 if champ is None else champ.version

    def _state(self, model: str) -> Any:
        with self.store.engine.connect() as conn:
            return conn.execute(sa.select(mlflow_models).where(mlflow_models.c.model == model)).first()

    def _insert_state(self, model: str, alias_seen: int | None) -> None:
        """First look at ``model``'s alias: where it points now is the baseline, not a change."""
        try:
            with self.store.transaction() as conn:
                conn.execute(mlflow_models.insert().values(model=model, alias_seen=alias_seen, champion_applied=None))
        except sa.exc.IntegrityError:
            pass                               # another process inserted it first

    def _set_state(self, model: str, **values: Any) -> None:
        with self.store.transaction() as conn:
            conn.execute(mlflow_models.update().where(mlflow_models.c.model == model).values(**values))

    def _mark_checked(self, model: str) -> None:
        self._set_state(model, checked_at=now_ms(), last_error=None)

    def _note_error(self, model: str, error: str) -> None:
        try:
            self._set_state(model, last_error=error[:2000])
        except sa.exc.SQLAlchemyError:
            pass                               # informational only


class MirrorThread:
    """Runs :meth:`MlflowMirror.sync` at start and every ``registry.mlflow.poll_s`` (sooner after
    :meth:`wake`) in a daemon thread, until :meth:`stop`: the pending mirror work of a crashed
    process, and alias moves and deletions made in MLflow, are picked up without a new job."""

    def __init__(self, mirror: MlflowMirror, name: str = "mlflow-mirror") -> None:
        self.mirror = mirror
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        poll = self.mirror.settings.poll_s
        while not self._stop.is_set():
            report = self.mirror.sync()
            for line in report.done:
                log.info("MLflow mirror: %s", line)
            if not report.reachable:
                log.warning("MLflow mirror: %s", "; ".join(report.errors))
            self._wake.wait(poll)
            self._wake.clear()


def job_run_tags(*, model: str, job_id: str, trigger: str | None, alert_ids: list[str], data_window: dict[str, Any],
                 lib_versions: dict[str, str], estimator: str) -> dict[str, str]:
    """The tags of a retraining job's run: what caused it, on which data, with which code."""
    tags = {"driftloop.model": model, "driftloop.job_id": job_id, "driftloop.source": "retrain",
            "driftloop.trigger": trigger or "", "driftloop.alert_ids": _json(alert_ids),
            "driftloop.data_window": _json(data_window), "driftloop.lib_versions": _json(lib_versions),
            "driftloop.estimator": estimator}
    sha = code_version()
    if sha:
        tags["mlflow.source.git.commit"] = sha
    return tags


def _decision_tags(v: VersionInfo) -> dict[str, str]:
    """A decided version's outcome: the metric and both scores (offline, or live for a shadow)."""
    m = v.metrics or {}
    primary = m.get("primary")
    if v.status not in ("rejected", "champion") or not primary:
        return {}
    out = {"driftloop.decision": "rejected" if v.status == "rejected" else "promoted", "driftloop.metric": str(primary)}
    live = m.get("live") if isinstance(m.get("live"), dict) else None
    if live is not None:
        scores = (live.get("shadow_metric"), live.get("served_metric"))
    else:
        scores = ((m.get("challenger") or {}).get(primary), (m.get("champion") or {}).get(primary))
    for key, value in zip(("driftloop.challenger_score", "driftloop.champion_score"), scores):
        if isinstance(value, int | float):
            out[key] = f"{value:.6g}"
    return out


def _run_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """``challenger_<metric>`` and ``champion_<metric>`` of a decision, as MLflow run metrics."""
    out: dict[str, float] = {}
    for side in ("challenger", "champion"):
        for k, val in (metrics.get(side) or {}).items() if isinstance(metrics.get(side), dict) else ():
            if isinstance(val, int | float) and val == val:
                out[f"{side}_{k}"] = float(val)
    return out


def _mv(mlflow_version: int | None, driftloop_version: int | None) -> str:
    if mlflow_version is None:
        return "no version"
    return f"version {mlflow_version}" + ("" if driftloop_version is None else f" (driftloop v{driftloop_version})")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else _json(value)


def _pause_for_tests(what: str) -> None:
    seconds = float(os.environ.get(PAUSE_ENV, "0") or 0)
    if seconds > 0:
        log.warning("%s=%s: pausing after MLflow's create_model_version for %s", PAUSE_ENV, seconds, what)
        time.sleep(seconds)

