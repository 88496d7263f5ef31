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

A broken model never stops the others (quarantine). When a model's detectors raise anything
but a store error (``sqlalchemy.exc.SQLAlchemyError``: that is the monitor's back-pressure's
business) while updating on a batch, while being rebuilt from the store (at start, after a
batch that did not commit, when another process moved the model on) or while switching to a
new champion's sample, the model is quarantined, and only that model:

* its events are still validated, joined, counted and stored in the batch's transaction; only
  its detector analysis is skipped. The other models' detectors run and save as usual;
* its in-memory detectors are dropped (they may have seen half a batch) and its stored state
  is not written: the store keeps the state of the last batch its detectors did analyse;
* its detectors are rebuilt from the store (stored state as it is, or fresh on the reference
  if there is none) on the next start, or after a back-off: ``ingest.quarantine_retry_s``
  after the first failure, doubling with each consecutive failure up to
  ``ingest.quarantine_max_retry_s``. The rebuild is tried by the first batch of that model
  after the back-off, or by :meth:`DriftAnalyser.tend` (the monitor's idle step) for a model
  that gets no events. A rebuild that fails again keeps the model quarantined;
* a ``detector_failure`` alert (:mod:`driftloop.monitoring.failures`, detector ``detectors``) says
  which model, what failed (stage ``update``/``rebuild``/``champion_switch``, the exception's
  class and message) and since when. It is written in the transaction that saw the failure
  (or, for a failure outside one, in the next transaction that holds the model's lock) and
  clears once the detectors work again: a batch analysed after the rebuild, or the rebuild
  itself when that is what had failed.

What the quarantined model's windows hold afterwards: the stored state as of the last
analysed batch. The events that arrived during the quarantine are in the store (counters,
joined examples) but the detectors never see them: after the rebuild their windows continue
from where the stored state left off, as if those events had not been served. The quarantine
lives in memory only: a restart rebuilds every model from the store, exactly like a back-off.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.engine import Connection

from consumers.join import Joined, JoinResult, ShadowJoined
from consumers.validation import ValidPredictions
from detectors.base import Detection
from detectors.batch import LabelledBatch, PredictionBatch
from detectors.model_monitor import ModelMonitor
from detectors.ranking_monitor import RankingMonitor
from detectors.versions import VersionedMonitor
from driftloop.core.clock import rfc3339
from driftloop.core.config import Config
from driftloop.core.frames import read_frame
from driftloop.core.store import Store, now_ms
from driftloop.core.tables import model_versions
from driftloop.monitoring.failures import CHAMPION_SAMPLE, QUARANTINE, describe_error, failure_detection
from driftloop.monitoring.history import record_detector_statistics

__all__ = ["DriftAnalyser", "ReferenceSource", "ConfigReferences", "Failure", "Judgement", "prediction_batch",
           "labelled_batch", "STORE_FAILURES"]

log = logging.getLogger(__name__)

OnDetections = Callable[[Connection, str, list[Detection], int], Any]
OnShadowReport = Callable[[Connection, str, dict[str, Any], int], Any]

STORE_FAILURES = (sqlalchemy.exc.SQLAlchemyError,)
"""Errors that are the store's, never a model's: they propagate (the batch is retried)."""


@dataclass
class Judgement:
    """What a model's detectors made of one batch (:meth:`DriftAnalyser.judge`), not written yet:
    the detections, ``state`` (their snapshot and the statuses of the versions fed) and the
    shadow reports due."""

    found: list[list[Detection]]
    state: tuple[bytes, list[dict[str, Any]]]
    reports: list[dict[str, Any]]


@dataclass
class Failure:
    """One model's failure episode: a quarantine (``active`` while its detectors are off), or a
    champion sample that could not be used. Times are epoch ms."""

    stage: str                  # update | rebuild | champion_switch
    error: str                  # "ExceptionClass: message"
    since: int                  # the episode's first failure
    failures: int = 1           # consecutive failures
    retry_at: int | None = None  # next rebuild (quarantine only)
    active: bool = True         # False: rebuilt, waiting for the detectors to prove they work
    announced: bool = False     # its firing detection was written in a committed-or-open transaction
    version: str | None = None  # the champion version whose sample failed (champion_sample only)


class ReferenceSource(Protocol):
    """Where a model's reference sample comes from (the registry's champion, or the config).

    ``conn``, when given, is the caller's open transaction: reads must go through it (on SQLite
    a second connection would wait for the write lock that transaction holds).
    """

    def current_version(self, model: str, conn: Connection | None = None) -> str | None: ...

    def frame(self, model: str, version: str | None, conn: Connection | None = None) -> pd.DataFrame | None: ...

    def knows(self, model: str, version: str, conn: Connection | None = None) -> bool: ...


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
        return None if path is None else read_frame(self.cfg.resolve(path))

    def knows(self, model: str, version: str, conn: Connection | None = None) -> bool:
        """Whether ``version`` has a registered sample of its own (never, without a registry)."""
        return False


def registered(conn: Connection, model: str, version: str) -> bool:
    """Whether the registry (table ``model_versions``) holds ``version`` of ``model``."""
    if not version.isdigit() or len(version) > 18:
        return False
    return conn.execute(sa.select(model_versions.c.version).where(
        model_versions.c.model == model, model_versions.c.version == int(version))).first() is not None


def rows_by_version(events: list[Any], default: str) -> dict[str, np.ndarray | None]:
    """The rows of each version served (``default`` for events that name none); None for "all
    rows" when the batch has one version (the common case costs no copy).

    >>> from types import SimpleNamespace as E
    >>> rows_by_version([E(model_version="2"), E(model_version=None), E(model_version="2")], "1")
    {'1': array([1]), '2': array([0, 2])}
    >>> rows_by_version([E(model_version=None)], "1")
    {'1': None}
    """
    versions = [e.model_version or default for e in events]
    first = versions[0] if versions else default
    if all(v == first for v in versions):
        return {first: None}
    groups: dict[str, list[int]] = {}
    for i, v in enumerate(versions):
        groups.setdefault(v, []).append(i)
    return {v: np.asarray(rows, dtype=np.int64) for v, rows in sorted(groups.items())}


def touched(result: JoinResult) -> set[str]:
    """The models a batch gave the detectors something: predictions, joined labels, shadow pairs,
    or trailing counts (a batch whose events were all refused or duplicates still has those)."""
    return set(result.new_predictions) | set(result.joined) | set(result.shadow_joined) | set(result.trailing)


def _take_joined(j: Joined, rows: np.ndarray | None) -> Joined:
    return j if rows is None else Joined(j.predictions.take(rows), j.label[rows], j.label_ts[rows])


def prediction_batch(vp: ValidPredictions) -> PredictionBatch:
    return PredictionBatch(ts=vp.ts, features=vp.features, prediction=vp.prediction, scores=vp.scores,
                           classes=list(vp.classes), marks=vp.marks)


def labelled_batch(j: Joined) -> LabelledBatch:
    vp = j.predictions
    order = np.argsort(vp.ts, kind="stable")   # the error stream follows the order of serving
    return LabelledBatch(ts=vp.ts[order], prediction=vp.prediction[order], label=j.label[order],
                         scores=None if vp.scores is None else vp.scores[order], classes=list(vp.classes),
                         features={k: v[order] for k, v in vp.features.items()})


class DriftAnalyser:
    """One :class:`ModelMonitor` per configured model that has a reference sample; a model whose
    detectors fail is quarantined (see the module docstring) and never stops the others.

    >>> # analyser = DriftAnalyser(cfg, store, on_detections=alerts.on_detections)
    >>> # analyser.analyse(conn, join_result, now)   # inside the batch's transaction
    >>> # analyser.quarantined_models                 # ['fraud'] while fraud's detectors are off
    >>> # analyser.tend()                             # idle step: announce failures, rebuild when due
    """

    def __init__(self, cfg: Config, store: Store, *, on_detections: OnDetections | None = None,
                 references: dict[str, pd.DataFrame] | None = None,
                 reference_source: ReferenceSource | None = None,
                 on_shadow_report: OnShadowReport | None = None, load: bool = True) -> None:
        self.cfg = cfg
        self.store = store
        self.on_detections = on_detections
        self.on_shadow_report = on_shadow_report
        self.source: ReferenceSource = reference_source or ConfigReferences(cfg, references)
        self.monitors: dict[str, VersionedMonitor] = {}
        self.generation: dict[str, int] = {}
        self.reference_version: dict[str, str | None] = {}
        self.detections: Counter[tuple[str, str, bool]] = Counter()
        self.quarantined: dict[str, Failure] = {}       # model -> its quarantine episode
        self.switch_failures: dict[str, Failure] = {}   # model -> a champion sample that could not be used
        self._cleared: dict[str, Failure] = {}          # quarantines ended in the open transaction
        if load:    # False: the caller loads (e.g. under retry_store while the store may be locked)
            self.load()

    @property
    def quarantined_models(self) -> list[str]:
        """The models whose detectors are off right now."""
        return sorted(m for m, q in list(self.quarantined.items()) if q.active)

    # -- state -------------------------------------------------------------------------------
    def _monitor(self, model: str, reference: Any) -> ModelMonitor | RankingMonitor:
        """One version's detectors on ``reference`` (a frame, or a version's Reference)."""
        mcfg = self.cfg.models[model]
        if mcfg.task == "ranking":
            return RankingMonitor(model, mcfg.features, reference, mcfg.detectors)
        return ModelMonitor(model, mcfg.task, mcfg.features, reference, mcfg.monitor_settings())

    def _versioned(self, model: str) -> VersionedMonitor:
        mcfg, vcfg = self.cfg.models[model], self.cfg.versions
        return VersionedMonitor(model, mcfg.task, mcfg.features, max_live=vcfg.max_live,
                                retire_after_ms=int(vcfg.retire_after_s * 1000))

    def _fresh(self, model: str, version: str | None, conn: Connection | None = None) -> VersionedMonitor | None:
        """The model's detectors from scratch: the champion ``version``'s on its sample."""
        ref = self.source.frame(model, version, conn)
        if ref is None:
            log.warning("model %s has no reference sample: drift detectors are off for it", model)
            return None
        vm = self._versioned(model)
        vm.add(version or "", self._monitor(model, ref), reference_of=version or "")
        vm.champion = version or ""
        return vm

    def restore_stored(self, blob: bytes, stored_version: str | None) -> VersionedMonitor:
        """Stored detectors; a state written before versions (one ModelMonitor) becomes the
        champion's. The version limits are the configuration's, not the snapshot's."""
        vm = VersionedMonitor.from_snapshot(blob, version=stored_version or "")
        vm.max_live, vm.retire_after_ms = self.cfg.versions.max_live, int(self.cfg.versions.retire_after_s * 1000)
        return vm

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
            mon = self.restore_stored(blob, stored_version)
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

    def _load_or_quarantine(self, model: str, conn: Connection | None = None, *, follow_champion: bool,
                            now: int | None = None) -> bool:
        """:meth:`_load_model`; a failure that is not the store's quarantines the model (False)."""
        try:
            self._load_model(model, conn, follow_champion=follow_champion)
        except STORE_FAILURES:
            raise
        except Exception as exc:  # noqa: BLE001 - one model's broken state must not stop the others
            self.quarantine(model, "rebuild", exc, now_ms() if now is None else now, conn)
            return False
        return True

    def load(self) -> None:
        """(Re)build every model's detectors from the store, or fresh from the reference; a model
        that cannot be rebuilt starts quarantined."""
        self.store.create_schema()
        self.monitors = {}
        for model in self.cfg.models:
            try:
                self._load_model(model, follow_champion=True)
            except STORE_FAILURES:
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. the new champion's sample is unusable
                log.warning("model %s: cannot start on the champion's reference (%s: %s); restoring the stored "
                            "detectors as they are", model, type(exc).__name__, exc)
                self._load_or_quarantine(model, follow_champion=False)

    def reload(self, model: str) -> None:
        """``model``'s detectors back to their stored state (another process moved them on);
        a failure to rebuild quarantines the model."""
        self.monitors.pop(model, None)
        self._undo_announcements([model])
        q = self.quarantined.get(model)
        if q is None or not q.active:
            self._load_or_quarantine(model, follow_champion=False)

    def rollback(self) -> None:
        """A batch did not commit: every model's detectors go back to their stored state, as
        stored (a champion switch that failed with it is redone by the service's catch-up).
        Quarantined models stay quarantined (their back-off decides when they are rebuilt); the
        alerts written in the failed transaction are written again by the next one."""
        self.monitors = {}
        self._undo_announcements(list(self.cfg.models))
        for model in self.cfg.models:
            q = self.quarantined.get(model)
            if q is not None and q.active:
                continue
            self._load_or_quarantine(model, follow_champion=False)

    def _undo_announcements(self, models: list[str]) -> None:
        """A transaction did not commit: what it announced about ``models`` is announced again by
        the next one, and the quarantines it ended clear again at their model's next success."""
        for model, q in self._cleared.items():
            q.active, q.announced = False, True
            self.quarantined.setdefault(model, q)
        self._cleared = {}
        for model in models:
            for failure in (self.quarantined.get(model), self.switch_failures.get(model)):
                if failure is not None:
                    failure.announced = False

    def _save(self, conn: Connection, model: str, now: int,
              state: tuple[bytes, list[dict[str, Any]]] | None = None) -> None:
        """Write the model's detectors (``state``: their snapshot and status, if already taken)."""
        mon = self.monitors[model]
        blob, statuses = state if state is not None else (mon.snapshot(), _statuses(mon, list(mon.versions)))
        self.generation[model] = self.generation.get(model, 0) + 1
        self.store.save_detector_state(conn, model, blob, now, generation=self.generation[model],
                                       reference_version=self.reference_version.get(model))
        for status in statuses:
            record_detector_statistics(conn, model, status, now)

    def _current(self, conn: Connection, model: str) -> VersionedMonitor | None:
        """The model's detectors, reloaded first if another process saved a newer state."""
        stored = self.store.detector_generation(conn, model)
        if stored is not None and stored != self.generation.get(model):
            log.info("model %s: detector state moved on elsewhere (generation %s, ours %s); reloading",
                     model, stored, self.generation.get(model))
            self._load_model(model, conn, follow_champion=False)
        return self.monitors.get(model)

    def set_reference(self, conn: Connection, model: str, version: str | None, reference: pd.DataFrame,
                      now: int) -> list[Detection]:
        """A new champion: its sample becomes the reference; alerts about the old one resolve.
        Raises what the detectors raise (the caller quarantines the model, stage
        ``champion_switch``); a quarantined model starts over on the new sample."""
        self._cleared = {}
        mon = self._current(conn, model)
        if mon is not None and self.reference_version.get(model) == version:
            return []   # another monitor process switched it already (found on reloading)
        v = version or ""
        dets: list[Detection] = []
        if mon is None:
            mon = self._versioned(model)
            mon.add(v, self._monitor(model, reference), reference_of=v)
            mon.champion = v
        else:   # a version already judged on its own sample (a canary) keeps its detectors
            own = v in mon and mon.reference_of.get(v) == v
            dets = mon.promote(v, None if own else self._monitor(model, reference), reference_of=v,
                               why=f"v{v} is the champion")
        self.monitors[model] = mon
        self.reference_version[model] = version
        self._emit(conn, model, dets, now)
        self._save(conn, model, now)
        self._recovered(conn, model, now)
        return dets

    # -- the batch hook ----------------------------------------------------------------------
    def analyse(self, conn: Connection, result: JoinResult, now: int) -> None:
        """Run each model's detectors on what the batch added (in the batch's transaction)."""
        self.begin()
        for model in sorted(touched(result)):
            self._analyse_model(conn, model, result, now)

    def _analyse_model(self, conn: Connection, model: str, result: JoinResult, now: int) -> None:
        if model in self.quarantined and not self._try_rebuild(conn, model, now):
            return                              # events stored and counted; analysis skipped
        try:
            mon = self._current(conn, model)
        except STORE_FAILURES:
            raise
        except Exception as exc:  # noqa: BLE001 - the reload from the store failed
            self.quarantine(model, "rebuild", exc, now, conn)
            return
        if mon is None:
            return
        judged = self.judge(model, result, now, conn)
        if judged is not None:
            self.record(conn, model, judged, now)

    def judge(self, model: str, result: JoinResult, now: int, conn: Connection | None = None) -> Judgement | None:
        """The detectors of ``model`` (as they are in memory) on its part of a batch; writes
        nothing. None when the model has no detectors, or their update failed: the model is then
        quarantined (announced in ``conn``, or by the next transaction without it)."""
        mon = self.monitors.get(model)
        if mon is None:
            return None
        try:   # the snapshot and status are detector code too
            found, touched = self._update(conn, model, mon, result, now)
            reports = _update_shadows(mon, result.shadow_joined.get(model), self.cfg.versions.shadow_min_labels)
            state = (mon.snapshot(), _statuses(mon, touched))
        except STORE_FAILURES:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken model never stops the others
            self.quarantine(model, "update", exc, now, conn)
            return None
        return Judgement(found, state, reports)

    def record(self, conn: Connection, model: str, judged: Judgement, now: int, *, save: bool = True) -> None:
        """Write what :meth:`judge` found (under the model's lock): the detections, the statistics
        history and (``save``) the detector state; the shadow reports go to their hook."""
        for dets in judged.found:
            self._emit(conn, model, dets, now)
        if save:
            self._save(conn, model, now, judged.state)
        else:
            for status in judged.state[1]:
                record_detector_statistics(conn, model, status, now)
        self._recovered(conn, model, now)
        for report in judged.reports:
            self._report_shadow(conn, model, report, now)

    def _report_shadow(self, conn: Connection, model: str, report: dict[str, Any], now: int) -> None:
        """A shadow comparison passed another ``versions.shadow_min_labels`` pairs: to the hook (the
        retrain policy's live gate), in the batch's transaction, inside a savepoint. A hook that
        raises anything but a store error is logged and what it wrote is rolled back to the
        savepoint (the batch commits); the next report asks again."""
        log.info("model %s: shadow v%s: %s", model, report.get("shadow_version"), report.get("summary"))
        if self.on_shadow_report is None:
            return
        try:
            with conn.begin_nested():
                self.on_shadow_report(conn, model, report, now)
        except STORE_FAILURES:
            raise
        except Exception:  # the live gate's failure must not stop the monitor (logged whole)
            log.exception("model %s: the shadow report of v%s could not be acted on", model,
                          report.get("shadow_version"))

    def _update(self, conn: Connection | None, model: str, mon: VersionedMonitor, result: JoinResult,
                now: int) -> tuple[list[list[Detection]], list[str]]:
        """One model's detectors on a batch, each version's on its own rows: the predictions,
        then the joined labels (each to the version that served its prediction), then the
        retirement of idle versions. Returns the detections and the versions fed."""
        found: list[list[Detection]] = []
        touched: list[str] = []
        vp, joined = result.new_predictions.get(model), result.joined.get(model)
        sizes: dict[str, int] = {}
        if vp is not None:
            for version, rows in rows_by_version(vp.events, mon.champion).items():
                sizes[version] = len(vp.events) if rows is None else len(rows)
                if self._ensure_version(conn, model, mon, version, sizes[version], now):
                    sub = vp if rows is None else vp.take(rows)
                    found.append(mon.update_predictions(version, prediction_batch(sub)))
                    touched.append(version)
        self._observe_pipeline(conn, model, mon, sizes, result.trailing.get(model), now)
        if joined is not None:
            batches, label_ts = {}, {}
            for version, rows in rows_by_version(joined.predictions.events, mon.champion).items():
                n = len(joined.label) if rows is None else len(rows)
                if self._ensure_version(conn, model, mon, version, n, now):
                    part = _take_joined(joined, rows)
                    batches[version], label_ts[version] = labelled_batch(part), int(part.label_ts.max())
            found.append(mon.update_labelled(batches, label_ts))
            touched += list(batches)
        found.append(mon.retire_idle())
        return found, list(dict.fromkeys(touched))

    def _observe_pipeline(self, conn: Connection | None, model: str, mon: VersionedMonitor, sizes: dict[str, int],
                          trailing: dict[str, Any] | None, now: int) -> None:
        """What validation refused and the dedupe dropped after the batch's last new prediction
        (:mod:`consumers.marks`' trailing counts) goes to the data-quality checks of the version
        that served most of the batch's new predictions (``sizes``: each version's; the champion's
        when none was new), which count it on its next prediction: refused events name no version
        one can trust."""
        if not trailing:
            return
        version = max(sizes, key=sizes.__getitem__) if sizes else mon.champion
        if self._ensure_version(conn, model, mon, version, 0, now):
            mon.observe_pipeline(version, trailing)

    def _ensure_version(self, conn: Connection | None, model: str, mon: VersionedMonitor, version: str, n: int,
                        now: int) -> bool:
        """Give a version seen for the first time its detectors: on its own registered sample, or
        (a version the registry does not know) on the champion's. False when the per-model cap
        keeps it out (its events are stored and counted, never judged)."""
        if version in mon:
            return True
        if not mon.has_room():
            if version not in mon.capped:
                log.warning("model %s: version %r gets no detectors: %d versions are live already "
                            "(versions.max_live); its events are stored and counted, not judged",
                            model, version, len(mon.versions))
            mon.refuse(version, n)
            return False
        if self.source.knows(model, version, conn):
            ref_of, reference = version, self.source.frame(model, version, conn)
        else:
            ref_of = mon.reference_of.get(mon.champion, mon.champion)
            champion = mon.versions.get(mon.champion)
            reference = champion.reference if champion is not None else self.source.frame(model, ref_of or None, conn)
        log.info("model %s: version %r serves traffic: its own detectors, on v%s's sample", model, version,
                 ref_of or "(configured)")
        mon.add(version, self._monitor(model, reference), reference_of=ref_of)
        return True

    def stamp_versions(self, predictions: dict[str, ValidPredictions], conn: Connection | None = None) -> None:
        """Events that name no version were served by the champion the detectors follow now:
        say so on the event before it is stored, so that its label, however late, goes to that
        version's detectors (contract: ``model_version`` defaults to the current champion)."""
        stamp_unversioned(predictions, self.reference_version)

    # -- quarantine --------------------------------------------------------------------------
    def _backoff_ms(self, failures: int) -> int:
        ing = self.cfg.ingest
        return int(min(ing.quarantine_max_retry_s, ing.quarantine_retry_s * 2.0 ** min(failures - 1, 60)) * 1000)

    def quarantine(self, model: str, stage: str, exc: BaseException, now: int, conn: Connection | None = None) -> None:
        """Turn ``model``'s detectors off after ``stage`` raised ``exc``; with ``conn`` (holding
        the model's lock) the alert is written there, otherwise by the next transaction."""
        cls, msg = describe_error(exc)
        q = self.quarantined.get(model) or self._cleared.pop(model, None)
        if q is None:
            q = self.quarantined[model] = Failure(stage, f"{cls}: {msg}", since=now, failures=0)
        self.quarantined[model] = q
        q.stage, q.error, q.failures, q.active = stage, f"{cls}: {msg}", q.failures + 1, True
        q.retry_at = now + self._backoff_ms(q.failures)
        q.announced = False
        self.monitors.pop(model, None)
        log.error("model %s: detectors QUARANTINED (%s failed, %d in a row since %s): %s: %s; its events are still "
                  "counted and stored, the other models go on; rebuild from the store in %.0f s", model, stage,
                  q.failures, rfc3339(q.since), cls, msg, (q.retry_at - now) / 1000, exc_info=exc)
        if conn is not None:
            self._announce(conn, model, now)

    def begin(self) -> None:
        """A transaction that records judgements begins: the previous one's fate is known
        (:meth:`rollback` ran if it failed)."""
        self._cleared = {}

    def announce_quarantine(self, conn: Connection, model: str, now: int) -> None:
        """Write the alert of ``model``'s quarantine if it began outside a transaction (under the
        model's lock)."""
        q = self.quarantined.get(model)
        if q is not None and q.active and not q.announced:
            self._announce(conn, model, now)

    def _announce(self, conn: Connection, model: str, now: int) -> None:
        q = self.quarantined[model]
        q.announced = True
        self._emit(conn, model, [failure_detection(model, QUARANTINE, stage=q.stage, error=q.error, since=q.since,
                                                   now=now, failures=q.failures, next_retry_at=q.retry_at)], now)

    def _try_rebuild(self, conn: Connection, model: str, now: int) -> bool:
        """A quarantined model (lock held): rebuild its detectors if the back-off is over. True
        when the model has detectors again."""
        q = self.quarantined[model]
        if not q.active:
            return True
        if q.retry_at is not None and now < q.retry_at:
            if not q.announced:
                self._announce(conn, model, now)
            return False
        if not self._load_or_quarantine(model, conn, follow_champion=False, now=now):
            return False                        # still broken: announced again, longer back-off
        q.active = False
        log.warning("model %s: detectors rebuilt from the store after %d failure(s) since %s", model, q.failures,
                    rfc3339(q.since))
        if q.stage == "rebuild":                # what failed works now
            self._recovered(conn, model, now)
        return True

    def _recovered(self, conn: Connection, model: str, now: int) -> None:
        """The model's detectors worked: its quarantine alert clears (in this transaction)."""
        q = self.quarantined.pop(model, None)
        if q is None:
            return
        self._cleared[model] = q
        log.warning("model %s: detectors work again (quarantined since %s, %d failure(s))", model,
                    rfc3339(q.since), q.failures)
        self._emit(conn, model, [failure_detection(model, QUARANTINE, stage=q.stage, error=q.error, since=q.since,
                                                   now=now, failures=q.failures, firing=False)], now)

    def champion_sample_failed(self, model: str, version: str, exc: BaseException, now: int) -> None:
        """The sample of champion ``version`` cannot be used: the detectors keep their reference;
        the alert goes out with the next :meth:`tend`."""
        cls, msg = describe_error(exc)
        f = self.switch_failures.get(model)
        if f is None:
            f = self.switch_failures[model] = Failure("champion_switch", "", since=now, failures=0)
        f.error, f.failures, f.version, f.announced = f"{cls}: {msg}", f.failures + 1, version, False
        log.error("model %s: the sample of champion v%s cannot be used (%s: %s); the detectors keep the reference "
                  "v%s", model, version, cls, msg, self.reference_version.get(model))

    def champion_followed(self, conn: Connection, model: str, now: int) -> None:
        """The detectors follow the champion (a switch committed in ``conn``, or none needed): an
        open ``champion_sample`` alert clears. The caller forgets the failure once ``conn`` commits."""
        f = self.switch_failures.get(model)
        if f is not None:
            self._emit(conn, model, [failure_detection(model, CHAMPION_SAMPLE, stage=f.stage, error=f.error,
                                                       since=f.since, now=now, failures=f.failures, firing=False,
                                                       version=f.version)], now)

    def tend(self, now: int | None = None) -> None:
        """The idle step (the monitor's loop, between batches): write the alerts of failures seen
        outside a transaction, and rebuild the quarantined models whose back-off is over (one
        short transaction per model, under its lock). Cheap when nothing is quarantined."""
        if not self.quarantined and not self.switch_failures:
            return
        now = now_ms() if now is None else now
        due = {m for m, q in self.quarantined.items()
               if q.active and (not q.announced or q.retry_at is None or q.retry_at <= now)}
        due |= {m for m, f in self.switch_failures.items() if not f.announced}
        for model in sorted(due):
            self._cleared = {}
            try:
                with self.store.transaction() as conn:
                    self.store.lock_models(conn, [model])
                    self._tend_model(conn, model, now)
            except BaseException:
                self._undo_announcements([model])   # a rebuild only read the store: it stands
                raise
            self._cleared = {}

    def _tend_model(self, conn: Connection, model: str, now: int) -> None:
        if model in self.quarantined and self.quarantined[model].active:
            self._try_rebuild(conn, model, now)
        f = self.switch_failures.get(model)
        if f is not None and not f.announced:
            f.announced = True
            self._emit(conn, model, [failure_detection(model, CHAMPION_SAMPLE, stage=f.stage, error=f.error,
                                                       since=f.since, now=now, failures=f.failures,
                                                       version=f.version)], now)

    def _emit(self, conn: Connection, model: str, detections: list[Detection], now: int) -> None:
        if not detections:
            return
        for d in detections:
            self.detections[(model, d.kind, d.firing)] += 1
            log.info("%s %s: %s", "FIRING" if d.firing else "resolved", model, d.summary)
        if self.on_detections is not None:
            self.on_detections(conn, model, detections, now)


def stamp_unversioned(predictions: Mapping[str, ValidPredictions], followed: Mapping[str, str | None]) -> None:
    """Each event that names no version gets the version its model's detectors follow
    (``followed``; a model with none there, or None, is left as it is).

    >>> from types import SimpleNamespace as E
    >>> vp = E(events=[E(model_version=None), E(model_version="3")])
    >>> stamp_unversioned({"m": vp}, {"m": "2"}); [e.model_version for e in vp.events]
    ['2', '3']
    """
    for model, vp in predictions.items():
        champion = followed.get(model)
        if not champion:
            continue
        for ev in vp.events:
            if ev.model_version is None:
                ev.model_version = champion


def _update_shadows(mon: VersionedMonitor, sj: ShadowJoined | None, every: int) -> list[dict[str, Any]]:
    """Each shadow version's pairs of this batch into its comparison; the reports of those whose
    labelled pairs passed another multiple of ``every``. A ranking model's shadows are stored and
    joined but not compared (not built yet: the comparison is on one outcome per request)."""
    if sj is None or mon.task == "ranking":
        return []
    reports = []
    for version, rows in rows_by_version(sj.shadow.events, "").items():
        idx = np.arange(len(sj.label)) if rows is None else rows
        served = Counter(sj.served_version[i] or mon.champion for i in idx).most_common(1)[0][0]
        before = mon.shadows[version].n if version in mon.shadows else 0
        report = mon.update_shadow(version, served, sj.served_prediction[idx], sj.shadow.prediction[idx],
                                   sj.label[idx])
        if report["n"] // every > before // every:
            reports.append(report)
    return reports


def _statuses(mon: VersionedMonitor, versions: list[str]) -> list[dict[str, Any]]:
    """The status of each of ``versions`` still live right after each window it judged, then
    now (their statistics go to the history: every window, however many one batch completed)."""
    return [st for v in versions if v in mon for st in (*mon.window_statuses(v), mon.version_status(v))]
