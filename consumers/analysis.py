"""Runs each model's detectors on what a batch added, inside the batch's transaction.

The monitor calls :meth:`DriftAnalyser.analyse` between writing the batch's examples and
committing. The detectors' state (one :class:`detectors.model_monitor.ModelMonitor` per model)
is saved in the same transaction, so after a crash it is exactly the state that matches the
stored offsets. If the transaction does not commit, the in-memory detectors have already seen
the batch: :meth:`DriftAnalyser.rollback` reloads them from the store before the batch is
consumed again.

Several monitor processes: the stored state carries a generation number, +1 on every save.
Before a model's detectors see a batch, the generation in the store is compared with the one
this process last saved or loaded; if another process has moved the model on (after a
rebalance, or when one model's events span partitions owned by different processes), the
detectors are reloaded from the store first. The check runs under the model's lock.

Detections go to ``on_detections(conn, model, detections, now)`` (the alert manager), still in
the transaction.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection

from consumers.join import Joined, JoinResult
from consumers.validation import ValidPredictions
from detectors.base import Detection
from detectors.batch import LabelledBatch, PredictionBatch
from detectors.model_monitor import ModelMonitor
from driftloop.api.history import record_detector_statistics
from driftloop.config import Config
from driftloop.store import Store

__all__ = ["DriftAnalyser", "ReferenceSource", "ConfigReferences", "prediction_batch", "labelled_batch"]

log = logging.getLogger(__name__)

OnDetections = Callable[[Connection, str, list[Detection], int], Any]


class ReferenceSource(Protocol):
    """Where a model's reference sample comes from (the registry's champion, or the config).

    ``conn``, when given, is the caller's open transaction: reads must go through it (on SQLite
    a second connection would wait for the write lock that transaction holds).
    """

    def current_version(self, model: str, conn: Connection | None = None) -> str | None: ...

    def frame(self, model: str, version: str | None, conn: Connection | None = None) -> pd.DataFrame | None: ...


class ConfigReferences:
    """The reference files named in the configuration (no registry)."""

    def __init__(self, cfg: Config, frames: dict[str, pd.DataFrame] | None = None) -> None:
        self.cfg = cfg
        self.frames = dict(frames or {})

    def current_version(self, model: str, conn: Connection | None = None) -> str | None:
        return None

    def frame(self, model: str, version: str | None, conn: Connection | None = None) -> pd.DataFrame | None:
        if model in self.frames:
            return self.frames[model]
        path = self.cfg.models[model].reference
        return None if path is None else pd.read_csv(self.cfg.resolve(path))


def _version(events: list[Any]) -> str | None:
    versions = Counter(e.model_version for e in events if e.model_version is not None)
    return versions.most_common(1)[0][0] if versions else None


def prediction_batch(vp: ValidPredictions) -> PredictionBatch:
    return PredictionBatch(ts=vp.ts, features=vp.features, prediction=vp.prediction, scores=vp.scores,
                           classes=list(vp.classes), model_version=_version(vp.events))


def labelled_batch(j: Joined) -> LabelledBatch:
    vp = j.predictions
    order = np.argsort(vp.ts, kind="stable")   # the error stream follows the order of serving
    return LabelledBatch(ts=vp.ts[order], prediction=vp.prediction[order], label=j.label[order],
                         scores=None if vp.scores is None else vp.scores[order], classes=list(vp.classes),
                         features={k: v[order] for k, v in vp.features.items()}, model_version=_version(vp.events))


class DriftAnalyser:
    """One :class:`ModelMonitor` per configured model that has a reference sample."""

    def __init__(self, cfg: Config, store: Store, *, on_detections: OnDetections | None = None,
                 references: dict[str, pd.DataFrame] | None = None,
                 reference_source: ReferenceSource | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.on_detections = on_detections
        self.source: ReferenceSource = reference_source or ConfigReferences(cfg, references)
        self.monitors: dict[str, ModelMonitor] = {}
        self.generation: dict[str, int] = {}
        self.reference_version: dict[str, str | None] = {}
        self.detections = Counter()
        self.load()

    # -- state -------------------------------------------------------------------------------
    def _fresh(self, model: str, version: str | None, conn: Connection | None = None) -> ModelMonitor | None:
        mcfg = self.cfg.models[model]
        ref = self.source.frame(model, version, conn)
        if ref is None:
            log.warning("model %s has no reference sample: drift detectors are off for it", model)
            return None
        return ModelMonitor(model, mcfg.task, mcfg.features, ref, mcfg.detectors)

    def _load_model(self, model: str, conn: Connection | None = None, *, follow_champion: bool = True) -> None:
        """Restore the model's stored detectors. ``follow_champion``: if they use another
        reference than the champion's, start over on the champion's (at start; the service then
        switches properly, resolving alerts). While running, the stored state is restored as it
        is and the service's periodic catch-up makes the switch."""
        mcfg = self.cfg.models[model]
        champion = self.source.current_version(model, conn)
        want = champion if follow_champion else None
        row = self.store.detector_state_row(model, conn)
        mon, gen, version = None, 0, champion
        if row is not None:
            blob, gen, stored_version = row
            mon = ModelMonitor.restore(blob)
            if mon.task != mcfg.task or mon.feature_types != dict(mcfg.features):
                log.warning("model %s: stored detector state is for another configuration; starting over", model)
                mon = None
            elif want is not None and stored_version != want:
                log.info("model %s: stored detectors use reference v%s, the champion is v%s; starting over",
                         model, stored_version, want)
                mon = None
            else:
                version = stored_version
        if mon is None:
            version = champion
            mon = self._fresh(model, champion, conn)
        self.generation[model] = gen
        self.reference_version[model] = version
        if mon is None:
            self.monitors.pop(model, None)
        else:
            self.monitors[model] = mon

    def load(self) -> None:
        """(Re)build every model's detectors from the store, or fresh from the reference."""
        self.store.create_schema()
        self.monitors = {}
        for model in self.cfg.models:
            self._load_model(model)

    def rollback(self) -> None:
        """A batch did not commit: every model's detectors go back to their stored state, as
        stored (a champion switch that failed with it is redone by the service's catch-up)."""
        self.monitors = {}
        for model in self.cfg.models:
            self._load_model(model, follow_champion=False)

    def _save(self, conn: Connection, model: str, now: int) -> None:
        mon = self.monitors[model]
        self.generation[model] = self.generation.get(model, 0) + 1
        self.store.save_detector_state(conn, model, mon.snapshot(), now, generation=self.generation[model],
                                       reference_version=self.reference_version.get(model))
        record_detector_statistics(conn, model, mon.status(), now)

    def _current(self, conn: Connection, model: str) -> ModelMonitor | None:
        """The model's detectors, reloaded first if another process saved a newer state."""
        stored = self.store.detector_generation(conn, model)
        if stored is not None and stored != self.generation.get(model):
            log.info("model %s: detector state moved on elsewhere (generation %s, ours %s); reloading",
                     model, stored, self.generation.get(model))
            self._load_model(model, conn, follow_champion=False)
        return self.monitors.get(model)

    def set_reference(self, conn: Connection, model: str, version: str | None, reference: pd.DataFrame,
                      now: int) -> list[Detection]:
        """A new champion: its sample becomes the reference; alerts about the old one resolve."""
        mon = self._current(conn, model)
        if mon is not None and self.reference_version.get(model) == version:
            return []   # another monitor process switched it already (found on reloading)
        if mon is None:
            mcfg = self.cfg.models[model]
            mon = ModelMonitor(model, mcfg.task, mcfg.features, reference, mcfg.detectors)
            dets: list[Detection] = []
        else:
            dets = mon.set_reference(reference)
        self.monitors[model] = mon
        self.reference_version[model] = version
        self._emit(conn, model, dets, now)
        self._save(conn, model, now)
        return dets

    # -- the batch hook ----------------------------------------------------------------------
    def analyse(self, conn: Connection, result: JoinResult, now: int) -> None:
        touched = set()
        for model, vp in result.new_predictions.items():
            mon = self._current(conn, model)
            if mon is not None:
                self._emit(conn, model, mon.update_predictions(prediction_batch(vp)), now)
                touched.add(model)
        for model, joined in result.joined.items():
            mon = self._current(conn, model) if model not in touched else self.monitors.get(model)
            if mon is not None:
                self._emit(conn, model, mon.update_labelled(labelled_batch(joined)), now)
                touched.add(model)
        for model in sorted(touched):
            self._save(conn, model, now)

    def _emit(self, conn: Connection, model: str, detections: list[Detection], now: int) -> None:
        if not detections:
            return
        for d in detections:
            self.detections[(model, d.kind, d.firing)] += 1
            log.info("%s %s: %s", "FIRING" if d.firing else "resolved", model, d.summary)
        if self.on_detections is not None:
            self.on_detections(conn, model, detections, now)
