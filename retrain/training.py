"""One job's work, without Kafka: data, challenger, files, comparison, the recorded decision.

:func:`train_challenger` builds the time-ordered training set of the job's window, holds out
its most recent part, fits the challenger from the model's recipe and writes its files
(model, training sample, held-out sample with the challenger's outputs) into a fresh folder
of the artifact directory. :func:`compare` scores the challenger and the current champion on
the held-out rows. :func:`record_decision` writes the decision in the caller's transaction.

The incumbent is the registry's champion (its artifact, re-scored on the held-out rows). If
the registry has none yet (the model in production was never registered), it is the model
that served those rows, as logged in the prediction events (``prediction``/``scores``): the
same rows, the real incumbent.

Set ``DRIFTLOOP_RETRAIN_SLOW_S`` (seconds) to sleep after fitting: tests use it to kill a
worker in the middle of a job.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from detectors.ranking_lists import as_json
from driftloop.core.config import Config
from driftloop.core.config.retrain import RetrainPolicy
from driftloop.core.frames import read_frame
from driftloop.core.store import Store
from retrain.artifacts import FileInfo, save_frame, save_model
from retrain.dataset import DatasetError, LabelledData, concat, frame_to_data, holdout_split, load_window
from retrain.evaluate import Decision, Outputs, decide, model_outputs
from retrain.events import ModelEvent, RetrainJob
from retrain.recipe import build_estimator, estimator_name
from retrain.registry import ChampionChanged, Registry, VersionInfo, library_versions

__all__ = ["TrainedChallenger", "Incumbent", "train_challenger", "incumbent_outputs", "compare",
           "record_decision", "SLOW_ENV"]

log = logging.getLogger(__name__)

SLOW_ENV = "DRIFTLOOP_RETRAIN_SLOW_S"


@dataclass(slots=True)
class TrainedChallenger:
    """A fitted challenger and everything the decision and the registry need about it."""

    job: RetrainJob
    estimator: Any
    estimator_name: str
    params: dict[str, Any]
    task: str
    features: dict[str, str]
    holdout: LabelledData
    outputs: Outputs
    artifact: FileInfo
    reference: FileInfo
    holdout_file: FileInfo
    data_window: dict[str, Any]
    fit_seconds: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def classes(self) -> list[str] | None:
        return self.outputs.classes or None


@dataclass(slots=True)
class Incumbent:
    """What the challenger is compared with: a registry version, or the logged outputs."""

    version: int | None           # the champion's version, None when scored from the logs
    source: str                   # "registry:<v>" | "logged" | "none"
    outputs: Outputs | None


def _fit_params(est: Any) -> dict[str, Any]:
    from sklearn.pipeline import Pipeline

    final = est.steps[-1][1] if isinstance(est, Pipeline) else est
    try:
        return {k: v for k, v in final.get_params(deep=False).items() if _plain(v)}
    except Exception:  # noqa: BLE001 - parameters are informational only
        return {}


def _plain(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str)) or (
        isinstance(v, (list, tuple)) and all(isinstance(x, (bool, int, float, str)) for x in v))


def _reference_rows(cfg: Config, registry: Registry, model: str) -> LabelledData | None:
    """The champion's training sample, else the configured reference file."""
    mcfg = cfg.models[model]
    champ = registry.champion(model)
    if champ is not None:
        df = registry.load_reference(model, champ.version)
    elif mcfg.reference:
        df = read_frame(cfg.resolve(mcfg.reference))
    else:
        return None
    return frame_to_data(df, mcfg.features, mcfg.task)


def train_challenger(cfg: Config, store: Store, registry: Registry, job: RetrainJob, policy: RetrainPolicy,
                     *, hook: Callable[[RetrainJob], None] | None = None) -> TrainedChallenger:
    """Load the window, hold out its newest part, fit the recipe, write the files."""
    mcfg = cfg.models[job.model]
    t0 = time.perf_counter()
    data = load_window(store, cfg, job.model, job.window)
    t_load = time.perf_counter() - t0
    if data.n < policy.min_examples:
        raise DatasetError(f"only {data.n} labelled examples in the job's window "
                           f"(min_examples {policy.min_examples}; {data.dropped} rows unusable)")
    train_idx, hold_idx = holdout_split(data.n, fraction=policy.holdout_fraction, min_holdout=policy.min_holdout)
    train, hold = data.take(train_idx), data.take(hold_idx)
    mixed = 0
    if policy.mix_reference:
        ref = _reference_rows(cfg, registry, job.model)
        if ref is not None and ref.n:
            train = concat(ref, train)
            mixed = ref.n
    if mcfg.task == "classification" and len(set(train.y.tolist())) < 2:
        raise DatasetError(f"the training rows hold a single class {sorted(set(train.y.tolist()))}: nothing to learn")
    if mcfg.task == "ranking" and not any(train.y.tolist()):
        raise DatasetError(f"none of the {len(train.y)} training requests engaged with an item: nothing to learn")
    est = build_estimator(policy.recipe, mcfg.task, mcfg.features)
    log.info("job %s: fitting %s on %d rows", job.job_id, estimator_name(est), len(train.y))
    t1 = time.perf_counter()
    est.fit(train.X, train.y)
    fit_s = time.perf_counter() - t1
    slow = float(os.environ.get(SLOW_ENV, "0") or 0)
    if slow > 0:
        log.warning("%s=%s: sleeping before finishing job %s", SLOW_ENV, slow, job.job_id)
        time.sleep(slow)
    if hook is not None:
        hook(job)
    t2 = time.perf_counter()
    outputs = model_outputs(est, hold.X, mcfg.task)
    t_pred = time.perf_counter() - t2
    folder = registry.new_artifact_dir(job.model, job.job_id)
    artifact = save_model(est, folder / "model.skops")
    reference = save_frame(train.frame(task=mcfg.task), folder / "reference.json.gz")
    hold_df = hold.frame(task=mcfg.task)
    hold_df["prediction"] = ([as_json(p) for p in outputs.prediction] if mcfg.task == "ranking"
                             else outputs.prediction)
    if outputs.scores is not None:
        for j, c in enumerate(outputs.classes):
            hold_df[f"score_{c}"] = outputs.scores[:, j]
    holdout_file = save_frame(hold_df, folder / "holdout.json.gz")
    w = job.window
    window = {"start_ts": w.start_ts, "end_ts": w.end_ts, "as_of": w.as_of, "max_rows": w.max_rows,
              "rows": data.n, "train_rows": int(len(train_idx)), "holdout_rows": int(len(hold_idx)),
              "reference_rows_mixed": mixed, "unusable_rows": data.dropped,
              "first_ts": int(data.ts[0]), "last_ts": int(data.ts[-1]), "holdout_from_ts": int(hold.ts[0]),
              "first_event_id": str(data.event_ids[0]), "last_event_id": str(data.event_ids[-1])}
    timings = {"load_s": t_load, "fit_s": fit_s, "predict_s": t_pred, "write_s": time.perf_counter() - t2 - t_pred}
    log.info("job %s: %d rows (%d train, %d held out), fit %.1fs", job.job_id, data.n, len(train_idx),
             len(hold_idx), fit_s)
    return TrainedChallenger(job, est, estimator_name(est), _fit_params(est), mcfg.task, dict(mcfg.features),
                             hold, outputs, artifact, reference, holdout_file, window, fit_s, timings)


def incumbent_outputs(registry: Registry, trained: TrainedChallenger, champion: VersionInfo | None) -> Incumbent:
    """Score the incumbent on the challenger's held-out rows (see the module docstring)."""
    hold = trained.holdout
    if champion is not None:
        est = registry.load_model(champion.model, champion.version)
        return Incumbent(champion.version, f"registry:{champion.version}",
                         model_outputs(est, hold.X[list(champion.features)] if champion.features else hold.X,
                                       trained.task))
    if hold.logged is not None:
        return Incumbent(None, "logged", hold.logged)
    return Incumbent(None, "none", None)


def compare(trained: TrainedChallenger, incumbent: Incumbent, policy: RetrainPolicy) -> Decision:
    """The promotion rule on the held-out rows (seeded by the job id: a redone job decides alike)."""
    seed = int.from_bytes(trained.job.job_id.encode()[-8:].rjust(8, b"\0"), "big") % (2**32)
    return decide(trained.task, trained.holdout.y, trained.outputs, incumbent.outputs,
                  metric=policy.primary_metric, min_delta=policy.min_delta, alpha=policy.alpha,
                  bootstrap_samples=policy.bootstrap_samples, seed=seed)


def record_decision(conn: Connection, registry: Registry, trained: TrainedChallenger, incumbent: Incumbent,
                    decision: Decision, *, actor: str, now: int, shadow: bool = False,
                    mlflow_run_id: str | None = None) -> tuple[int, ModelEvent]:
    """Register the challenger (champion or rejected) and its audit row + event, in ``conn``.

    ``mlflow_run_id``: the MLflow run logged for the job before the decision (``registry.backend:
    mlflow``), recorded with the version.

    ``shadow`` (the policy has ``retrain.shadow``): a challenger that passes the gate is put in
    shadow beside the champion instead (status ``shadow``, event ``shadow_started`` with the
    gate's metrics and decision; a shadow already running is superseded); :mod:`retrain.shadow`
    decides on live traffic. Without a registry champion there is nothing to shadow: promoted.

    Raises :class:`ChampionChanged` if the champion is no longer the one compared with.
    """
    job = trained.job
    registry.store.lock_models(conn, [job.model])
    current = registry.champion(job.model, conn)
    current_v = None if current is None else current.version
    if current_v != incumbent.version and not (incumbent.version is None and current is None):
        raise ChampionChanged(job.model, incumbent.version, current_v)
    metrics = {"primary": decision.metric, "challenger": decision.challenger, "champion": decision.champion,
               "holdout_rows": decision.n, "incumbent": incumbent.source}
    version = registry.add_version(
        conn, model=job.model, status="rejected", source="retrain", task=trained.task, features=trained.features,
        classes=trained.classes, artifact=trained.artifact, reference=trained.reference,
        holdout=trained.holdout_file, estimator=trained.estimator_name, params=trained.params, metrics=metrics,
        data_window=trained.data_window, job_id=job.job_id, note=decision.reason, now=now,
        lib_versions=library_versions(type(trained.estimator).__module__), mlflow_run_id=mlflow_run_id)
    timings = {k: round(v, 3) for k, v in trained.timings.items()}
    if decision.promote and shadow and current is not None:
        words = decision.reason.removeprefix("promoted: ")
        ev = registry.start_shadow(
            job.model, version, actor=actor, conn=conn, now=now, replace=True, job_id=job.job_id,
            trigger=job.trigger, alert_ids=job.reason, metrics=metrics, decision=decision.summary(), timings=timings,
            reason=f"passed the offline gate ({words}); in shadow beside version {current_v} for the live comparison")
        return version, ev
    champion_after: int | None
    if decision.promote:
        previous: int | None = registry.make_champion(conn, job.model, version)
        event, champion_after = "promoted", version
    else:
        previous, event, champion_after = current_v, "rejected", current_v
    ev = registry.record_event(
        conn, model=job.model, event=event, version=version, champion_version=champion_after,
        previous_champion=previous, actor=actor, reason=decision.reason, now=now, job_id=job.job_id,
        trigger=job.trigger, alert_ids=job.reason, metrics=metrics, decision=decision.summary(),
        timings=timings)
    return version, ev
