"""Every version of one model judged on its own: one :class:`~detectors.model_monitor.ModelMonitor`
per version that serves traffic.

Real services run several versions of a model at once (a canary, a rollout, the old champion
whose labels still arrive after a promotion). One stream of detectors for all of them would
score v1's late labels against v2's baseline and blame a broken canary on the champion.
:class:`VersionedMonitor` keeps a monitor per version and routes each batch to the version that
served it:

* **the champion** is the version unversioned events belong to (the caller stamps them); its
  monitor is never retired;
* **serving** versions (predictions arrive) are judged and page like the champion, their alerts
  naming their version;
* **draining**: after a promotion the old champion's monitor keeps taking its own late labels
  (never the new champion's), so its statistics go on being reported, but it pages no more: its
  open alerts resolve at the promotion (the promotion answered them). A draining version that
  serves predictions again (a rollback, a rollout) is serving again;
* **retired**: a version other than the champion with no event for ``retire_after_ms`` is
  dropped with its state; its open alerts resolve, saying why. Time here is **event time**
  (:attr:`VersionedMonitor.clock`, the newest event time seen, any version: a prediction's
  ``ts``, a label's ``ts`` for its version), never the wall clock: the same events give the same
  retirements in a replay, after a crash and in every monitor process;
* **capped**: at most ``max_live`` versions have monitors; a further version's events are
  counted (:attr:`VersionedMonitor.capped`) and never judged.

**Side by side.** Each version keeps its last ``outcomes_kept`` labelled outcomes (right or wrong;
the absolute error for regression) with their serving time. A performance alert of a version
while another serves beside it carries the comparison of the two on the same time window (the
alert's): :func:`detectors.paired.compare_windows` (Fisher's exact test; Mann–Whitney U for
regression), e.g. "v2 accuracy 0.610 vs champion v1 0.950 on the same window (n=480 vs 3,520,
Fisher p=3e-40)", in ``evidence["versus"]`` and at the end of the summary. The champion is
compared with the busiest other version, any other version with the champion.

**Shadows.** A shadow challenger (contract v1.1: ``"shadow": true`` predictions) serves nobody:
it has no monitor of its own, only a :class:`~detectors.paired.ShadowComparison` with the
served predictions of the same labelled requests (exact McNemar; a paired t test on the
absolute errors for regression), in ``status()["shadows"]``. Its state is in the snapshot
like everything else, so a crash neither loses nor double-counts a pair.

The caller builds each version's monitor (it knows where a version's reference sample comes
from) and says which registered version's sample it is (``reference_of``): a version the
registry does not know is judged against the champion's sample, and its detections say so in
their evidence.

>>> import numpy as np, pandas as pd
>>> from detectors.batch import LabelledBatch
>>> rng = np.random.default_rng(0)
>>> ref = pd.DataFrame({"x": rng.normal(size=2000), "label": rng.choice(["a", "b"], 2000)})
>>> ref["prediction"] = ref["label"]
>>> def monitor():
...     return ModelMonitor("m", "classification", {"x": "numeric"}, ref,
...                         {"window_size": 500, "warmup": 0, "multivariate": False, "calibration_draws": 10})
>>> vm = VersionedMonitor("m", "classification", {"x": "numeric"})
>>> vm.add("1", monitor(), reference_of="1")
True
>>> vm.champion = "1"
>>> vm.add("2", monitor(), reference_of="2")
True
>>> def labelled(n, wrong):
...     y = rng.choice(["a", "b"], n).astype(object)
...     pred = np.where(rng.random(n) < wrong, np.where(y == "a", "b", "a"), y).astype(object)
...     return LabelledBatch(ts=np.arange(n, dtype=np.int64), prediction=pred, label=y,
...                          features={"x": rng.normal(size=n)})
>>> found = vm.update_labelled({"1": labelled(1000, wrong=0.0), "2": labelled(1000, wrong=0.5)})
>>> sorted({(d.model_version, d.kind) for d in found if d.firing})   # the broken canary, not the champion
[('2', 'performance')]
>>> [d.evidence["versus"]["summary"] for d in found if d.detector == "accuracy"][0][:37]
'v2 accuracy 0.468 vs champion v1 1.00'

"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from detectors.base import Detection, Window
from detectors.batch import LabelledBatch, PredictionBatch
from detectors.composite import Composite
from detectors.model_monitor import ModelMonitor
from detectors.paired import ShadowComparison, compare_windows
from detectors.ranking_monitor import RankingMonitor

__all__ = ["VersionedMonitor", "SERVING", "DRAINING"]

SERVING = "serving"
DRAINING = "draining"


class VersionedMonitor(Composite):
    """The monitors of every live version of one model (see the module docstring).

    Parameters
    ----------
    model : str
    task : {"classification", "regression"}
    feature_types : mapping of str to {"numeric", "categorical"}
        Every version's monitor watches these (checked by the caller against the configuration).
    max_live : int
        At most this many versions have monitors.
    retire_after_ms : int
        A version other than the champion with no event for this long is retired.
    """

    _params = ("model", "task", "feature_types", "max_live", "retire_after_ms")
    outcomes_kept = 20_000

    def __init__(self, model: str, task: str, feature_types: Mapping[str, str], *, max_live: int = 10,
                 retire_after_ms: int = 86_400_000) -> None:
        self.model = str(model)
        self.task = task
        self.feature_types = {str(k): str(v) for k, v in feature_types.items()}
        self.max_live = int(max_live)
        self.retire_after_ms = int(retire_after_ms)
        self.clock = 0                                # the newest event time seen (epoch ms)
        self.champion = ""                            # '' = no version known (no registry, none named)
        self.versions: dict[str, ModelMonitor | RankingMonitor] = {}
        self.reference_of: dict[str, str] = {}        # version -> the version whose sample it is judged on
        self.phase: dict[str, str] = {}               # version -> SERVING | DRAINING
        self.last_event_at: dict[str, int] = {}       # version -> the caller's clock at its last event
        self.capped: dict[str, int] = {}              # version refused by the cap -> events not judged
        self.outcomes: dict[str, np.ndarray] = {}     # version -> (n, 2) [serving ts, right or abs error]
        self.shadows: dict[str, ShadowComparison] = {}  # shadow version -> paired comparison with the served

    @classmethod
    def from_snapshot(cls, blob: bytes, *, version: str = "") -> VersionedMonitor:
        """:meth:`restore`, or a :class:`ModelMonitor` snapshot (written before versions had
        monitors of their own) as the champion ``version``'s monitor."""
        try:
            return cls.restore(blob)
        except ValueError:              # "snapshot is of ModelMonitor, not VersionedMonitor"
            mon = ModelMonitor.restore(blob)
        vm = cls(mon.model, mon.task, mon.feature_types)
        vm.add(version, mon, reference_of=version)
        vm.champion = version
        return vm

    # ------------------------------------------------------------------ membership
    def __contains__(self, version: str) -> bool:
        return version in self.versions

    def has_room(self) -> bool:
        """Whether one more version can have a monitor."""
        return len(self.versions) < self.max_live

    def add(self, version: str, monitor: ModelMonitor | RankingMonitor, *, reference_of: str) -> bool:
        """Give ``version`` its monitor (built on the sample of ``reference_of``); False, and
        nothing changes, when ``max_live`` versions already have one."""
        if version not in self.versions and not self.has_room():
            return False
        self.versions[version] = monitor
        self.reference_of[version] = reference_of
        self.phase[version] = SERVING
        self.last_event_at[version] = self.clock
        self.capped.pop(version, None)
        return True

    def refuse(self, version: str, n: int) -> None:
        """Count ``n`` events of a version the cap kept from having a monitor."""
        self.capped[version] = self.capped.get(version, 0) + int(n)

    # ------------------------------------------------------------------ batches
    def _seen(self, version: str, ts: int) -> None:
        self.clock = max(self.clock, int(ts))
        self.last_event_at[version] = max(self.last_event_at.get(version, ts), int(ts))

    def update_predictions(self, version: str, batch: PredictionBatch) -> list[Detection]:
        """Feed ``version``'s predictions to its monitor; a draining version serves again."""
        self.phase[version] = SERVING
        if len(batch):
            self._seen(version, int(np.max(batch.ts)))
        batch.model_version = version or None
        return self._tag(version, self.versions[version].update_predictions(batch))

    def observe_pipeline(self, version: str, trailing: Mapping[str, Any]) -> None:
        """Events dropped after a batch's last prediction, for ``version``'s data-quality checks
        (:meth:`ModelMonitor.observe_pipeline`)."""
        self.versions[version].observe_pipeline(trailing)

    def update_labelled(self, batches: Mapping[str, LabelledBatch],
                        label_ts: Mapping[str, int] | None = None) -> list[Detection]:
        """Feed each version's joined examples (version -> batch) to its monitor; a draining
        version reports (its statistics change) but pages no more. Every version's outcomes are
        kept before any is judged, so a comparison sees the whole batch of the other version.
        ``label_ts``: the newest label time of each version's batch (its activity; default: the
        batch's serving times)."""
        for version, batch in batches.items():
            seen = (label_ts or {}).get(version)
            if seen is None and len(batch):
                seen = int(np.max(batch.ts))
            if seen is not None:
                self._seen(version, seen)
            batch.model_version = version or None
            self._keep_outcomes(version, batch)
        out: list[Detection] = []
        for version, batch in batches.items():
            found = self.versions[version].update_labelled(batch)
            if self.phase.get(version) != DRAINING:
                out += self._versus(version, self._tag(version, found))
        return out

    def _keep_outcomes(self, version: str, batch: LabelledBatch) -> None:
        if self.task == "ranking":     # versions side by side are compared for classifiers and regressors only
            return
        if self.task == "classification":
            value = (np.asarray(batch.prediction, dtype=object) == np.asarray(batch.label, dtype=object))
        else:
            value = np.abs(np.asarray(batch.prediction, dtype=np.float64) - np.asarray(batch.label, dtype=np.float64))
        rows = np.column_stack([np.asarray(batch.ts, dtype=np.float64), value.astype(np.float64)])
        kept = self.outcomes.get(version)
        both = rows if kept is None else np.concatenate([kept, rows])
        self.outcomes[version] = both[-self.outcomes_kept:]

    def _in_window(self, version: str, window: Window) -> np.ndarray:
        rows = self.outcomes.get(version)
        if rows is None or window.start_ts is None or window.end_ts is None:
            return np.empty(0)
        inside = (rows[:, 0] >= window.start_ts) & (rows[:, 0] <= window.end_ts)
        return rows[inside, 1]

    def _versus(self, version: str, detections: list[Detection]) -> list[Detection]:
        """Performance alerts of a version with another beside it: the two on the same window."""
        for d in detections:
            if not (d.firing and d.kind == "performance"):
                continue
            others = [v for v in self.versions if v != version and self.phase.get(v) == SERVING]
            if version != self.champion:
                others = [self.champion] if self.champion in others else []
            other = max(others, key=lambda v: len(self._in_window(v, d.window)), default=None)
            mine = self._in_window(version, d.window)
            theirs = np.empty(0) if other is None else self._in_window(other, d.window)
            if len(mine) == 0 or len(theirs) == 0:
                continue
            report = compare_windows(mine, theirs, task="regression" if self.task == "regression" else "classification",
                                     version=f"v{version}",
                                     champion=f"champion v{other}" if other == self.champion else f"v{other}")
            d.evidence["versus"] = report
            d.summary = f"{d.summary} {report['summary']}"
        return detections

    def _tag(self, version: str, detections: list[Detection]) -> list[Detection]:
        """Name the version on each detection; say when it is judged on another version's sample."""
        ref = self.reference_of.get(version, version)
        for d in detections:
            d.model_version = version or None
            if ref != version:
                d.evidence["reference_version"] = ref or None
                d.evidence["reference_note"] = (
                    f"v{version} is not in the registry: judged against "
                    + (f"the champion v{ref}'s sample" if ref else "the configured reference sample"))
        return detections

    def update_shadow(self, shadow_version: str, served_version: str, served: np.ndarray, shadow: np.ndarray,
                      label: np.ndarray) -> dict[str, Any]:
        """Pairs of one shadow version's predictions and the served ones on the same labelled
        requests; returns the comparison's report.

        >>> vm = VersionedMonitor("m", "classification", {"x": "numeric"})
        >>> y = np.array(["a", "b"] * 200, dtype=object)
        >>> served = np.where(np.arange(400) % 5 == 0, "c", y).astype(object)     # wrong 1 in 5
        >>> r = vm.update_shadow("3", "2", served, y.copy(), y)
        >>> r["n"], r["better"], r["served_metric"], r["shadow_metric"]
        (400, True, 0.8, 1.0)
        """
        cmp = self.shadows.get(shadow_version)
        if cmp is None:
            cmp = self.shadows[shadow_version] = ShadowComparison(
                served_version, shadow_version, "regression" if self.task == "regression" else "classification")
        cmp.served_version = served_version
        if self.task == "regression":
            y = np.asarray(label, dtype=np.float64)
            cmp.update_errors(np.abs(np.asarray(served, dtype=np.float64) - y),
                              np.abs(np.asarray(shadow, dtype=np.float64) - y))
        else:
            y = np.asarray(label, dtype=object)
            cmp.update(np.asarray(served, dtype=object) == y, np.asarray(shadow, dtype=object) == y)
        return cmp.report()

    def end_shadow(self, shadow_version: str) -> None:
        """Forget a shadow's comparison (it was promoted or rejected)."""
        self.shadows.pop(shadow_version, None)

    # ------------------------------------------------------------------ champion changes
    def promote(self, version: str, monitor: ModelMonitor | RankingMonitor | None, *, reference_of: str,
                why: str) -> list[Detection]:
        """``version`` is the champion now. ``monitor``: its new monitor (None keeps the one it
        has: a canary already judged on its own sample). The old champion drains; the alerts it
        had open resolve, as do those of a monitor replaced. Returns those resolutions."""
        out: list[Detection] = []
        old = self.champion
        if monitor is not None:
            if version in self.versions:
                out += self._resolve_open(version, f"the detectors start over on v{reference_of}'s sample ({why})")
            self.versions[version] = monitor
            self.reference_of[version] = reference_of
            self.last_event_at[version] = self.clock
        self.phase[version] = SERVING
        self.champion = version
        self.end_shadow(version)                  # a shadow promoted: it serves now
        if old != version and old in self.versions:
            self.phase[old] = DRAINING
            out += self._resolve_open(old, f"v{old} is no longer the champion ({why}); its late labels are "
                                           "still reported, never paged")
        return out

    def _resolve_open(self, version: str, why: str) -> list[Detection]:
        """Resolutions of the alerts ``version``'s monitor has open (their last finding quoted)."""
        mon = self.versions[version]
        out = []
        for item in mon.firing():
            item["window"] = Window(**item["window"])
            item["firing"] = False
            item["summary"] = f"cleared: {why}. Last finding: {item['summary']}"
            out.append(Detection(**item))
        mon.clear_open()
        return self._tag(version, out)

    def retire_idle(self) -> list[Detection]:
        """Drop the versions (never the champion) with no event for ``retire_after_ms`` of event
        time; the resolutions of their open alerts."""
        out: list[Detection] = []
        for version in sorted(self.versions):
            idle = self.clock - self.last_event_at.get(version, self.clock)
            if version == self.champion or idle <= self.retire_after_ms:
                continue
            out += self._resolve_open(version, f"v{version} retired after {idle / 3_600_000:.1f} h without events")
            for table in (self.versions, self.reference_of, self.phase, self.last_event_at, self.outcomes):
                table.pop(version, None)
        return out

    def flush(self) -> list[Detection]:
        """Judge every version's partial windows (end of a replay)."""
        out: list[Detection] = []
        for version in sorted(self.versions):
            found = self.versions[version].flush()
            out += [] if self.phase.get(version) == DRAINING else self._tag(version, found)
        return out

    # ------------------------------------------------------------------ status
    def firing(self) -> list[dict[str, Any]]:
        """The alerts firing now, every version's."""
        return [d for v in sorted(self.versions) for d in self.versions[v].firing()]

    def version_status(self, version: str) -> dict[str, Any]:
        """One version's :meth:`ModelMonitor.status`, with its phase and reference."""
        return self._versioned_status(version, self.versions[version].status())

    def window_statuses(self, version: str) -> list[dict[str, Any]]:
        """:meth:`version_status` right after each window ``version``'s monitor judged since the
        last call (:class:`~detectors.base.WindowLog`), oldest first."""
        return [self._versioned_status(version, st) for st in self.versions[version].take_window_statuses()]

    def _versioned_status(self, version: str, st: dict[str, Any]) -> dict[str, Any]:
        st["model_version"] = version or None
        st["phase"] = self.phase.get(version, SERVING)
        st["reference_version"] = self.reference_of.get(version) or None
        st["champion"] = version == self.champion
        return st

    def status(self) -> dict[str, Any]:
        """The champion's status (what the dashboard shows first), and every version's in short."""
        champion = self.champion if self.champion in self.versions else next(iter(sorted(self.versions)), None)
        out: dict[str, Any] = {} if champion is None else self.version_status(champion)
        out["versions"] = {v: self._brief(v) for v in sorted(self.versions)}
        out["versions_capped"] = dict(self.capped)
        out["shadows"] = {v: c.report() for v, c in sorted(self.shadows.items())}
        return out

    def _brief(self, version: str) -> dict[str, Any]:
        st = self.versions[version].status()
        return {"phase": self.phase.get(version), "reference_version": self.reference_of.get(version) or None,
                "predictions": st["predictions"], "labelled": st["labelled"], "firing": len(st["firing"]),
                "last_event_at": self.last_event_at.get(version), "champion": version == self.champion}

    summary = status
