"""The analysis journal: what a batch gave the detectors, committed by ingestion, judged apart.

With ``analysis.mode: apart`` the batch transaction (:func:`consumers.ingest.commit`) does not
run the detectors. :class:`JournalWriter` takes the analyser's place there and appends, per model
the batch touched, ONE row to ``analysis_journal``: the columns the detectors read (new
predictions, labels joined, shadow pairs), encoded with :mod:`detectors.state` (MessagePack,
numpy arrays exact, nothing executes on load). Its ``seq`` counts per model and is taken under
the model's lock, which ``commit`` holds. :mod:`driftloop.monitoring.judge` judges the entries
in ``seq`` order, exactly once.

What survives which crash:

* before the batch commits: neither the events nor the entry are stored; the batch is consumed
  again and journalled once;
* after: the entry is stored with the events and the offsets; it waits, however long, to be
  judged (:data:`driftloop.core.tables.analysis_progress` says what was).

>>> import numpy as np
>>> from consumers.join import JoinResult
>>> from consumers.validation import ValidPredictions
>>> from types import SimpleNamespace as E
>>> vp = ValidPredictions("m", [E(model_version="2")], np.arange(1), np.array([5]), {"x": np.array([0.5])},
...                       np.array(["yes"], dtype=object))
>>> back = decode_entry("m", encode_entry("m", JoinResult(new_predictions={"m": vp})))
>>> p = back.new_predictions["m"]
>>> p.features["x"].tolist(), p.prediction.tolist(), p.events[0].model_version
([0.5], ['yes'], '2')
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from consumers.join import Joined, JoinResult, ShadowJoined
from consumers.validation import ValidPredictions
from detectors import state as codec
from driftloop.core.events import PredictionEvent
from driftloop.core.tables import analysis_journal, analysis_progress, detector_state
from driftloop.monitoring.analysis import stamp_unversioned, touched

__all__ = ["JournalWriter", "encode_entry", "decode_entry", "entry_events", "backlog", "Backlog"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Served:
    """What the detectors read of an event besides its columns: the version that served it."""

    model_version: str | None


def _columns(vp: ValidPredictions) -> dict[str, Any]:
    out = {"ts": vp.ts, "features": vp.features, "prediction": vp.prediction, "scores": vp.scores,
           "classes": list(vp.classes), "versions": [e.model_version for e in vp.events]}
    if vp.marks:
        out["marks"] = vp.marks
    return out


def _predictions(model: str, d: dict[str, Any]) -> ValidPredictions:
    n = len(d["ts"])
    # the detectors read only ``model_version`` of an event (driftloop.monitoring.analysis)
    served = cast("list[PredictionEvent]", [Served(v) for v in d["versions"]])
    return ValidPredictions(model, served, np.arange(n), d["ts"], d["features"], d["prediction"], d["scores"],
                            list(d["classes"]), marks=d.get("marks"))


def encode_entry(model: str, result: JoinResult) -> bytes:
    """One model's part of a batch's :class:`JoinResult`, as journal bytes."""
    entry: dict[str, Any] = {}
    vp = result.new_predictions.get(model)
    if vp is not None:
        entry["predictions"] = _columns(vp)
    j = result.joined.get(model)
    if j is not None:
        entry["joined"] = {"predictions": _columns(j.predictions), "label": j.label, "label_ts": j.label_ts}
    trailing = result.trailing.get(model)
    if trailing is not None:
        entry["trailing"] = trailing
    sj = result.shadow_joined.get(model)
    if sj is not None:
        entry["shadow"] = {"shadow": _columns(sj.shadow), "served_prediction": sj.served_prediction,
                           "served_version": list(sj.served_version), "label": sj.label, "label_ts": sj.label_ts}
    return codec.dumps(entry)


def decode_entry(model: str, blob: bytes) -> JoinResult:
    """The :class:`JoinResult` of one journal entry of ``model`` (its part of one batch)."""
    entry = codec.loads(blob)
    out = JoinResult()
    name = model
    if "predictions" in entry:
        out.new_predictions[name] = _predictions(name, entry["predictions"])
    if "joined" in entry:
        j = entry["joined"]
        out.joined[name] = Joined(_predictions(name, j["predictions"]), j["label"], j["label_ts"])
    if "trailing" in entry:
        out.trailing[name] = entry["trailing"]
    if "shadow" in entry:
        s = entry["shadow"]
        out.shadow_joined[name] = ShadowJoined(_predictions(name, s["shadow"]), s["served_prediction"],
                                               list(s["served_version"]), s["label"], s["label_ts"])
    return out


def entry_events(model: str, result: JoinResult) -> int:
    """The rows one model's part of a batch holds (predictions + labels joined + shadow pairs)."""
    n = 0
    if model in result.new_predictions:
        n += len(result.new_predictions[model].ts)
    if model in result.joined:
        n += len(result.joined[model].label)
    if model in result.shadow_joined:
        n += len(result.shadow_joined[model].label)
    return n


def next_seq(conn: Connection, model: str) -> int:
    """The next journal ``seq`` of ``model`` (call under the model's lock)."""
    last = conn.execute(sa.select(sa.func.max(analysis_journal.c.seq)).where(analysis_journal.c.model == model)).scalar()
    if last is None:
        last = conn.execute(sa.select(analysis_progress.c.seq).where(analysis_progress.c.model == model)).scalar()
    return int(last or 0) + 1


class JournalWriter:
    """The batch hook of ``analysis.mode: apart`` (a :class:`consumers.ingest.BatchAnalyser`):
    journal what the batch added instead of judging it.

    ``stamp_versions`` marks events that name no version with the champion the detectors follow,
    exactly as the in-transaction analyser does with its own: ``detector_state.reference_version``
    as the judging process committed it (read in each batch's transaction), or, for a model with
    no stored detectors yet, ``champion(model, conn)`` (the registry's champion, what the
    detectors will start on).
    """

    def __init__(self, models: Iterable[str], *,
                 champion: Callable[[str, Connection], str | None] | None = None) -> None:
        self.models = set(models)
        self.champion = champion
        self.entries = 0

    def stamp_versions(self, predictions: dict[str, ValidPredictions], conn: Connection) -> None:
        """In the batch's transaction, before the events are stored."""
        models = [m for m in predictions if m in self.models]
        if not models:
            return
        followed: dict[str, str | None] = {row[0]: row[1] for row in conn.execute(
            sa.select(detector_state.c.model, detector_state.c.reference_version)
            .where(detector_state.c.model.in_(models)))}
        if self.champion is not None:
            for model in models:
                if model not in followed:
                    followed[model] = self.champion(model, conn)
        stamp_unversioned(predictions, followed)

    def analyse(self, conn: Connection, result: JoinResult, now: int) -> None:
        """Append one entry per configured model the batch touched (in the batch's transaction)."""
        for model in sorted(touched(result) & self.models):
            conn.execute(analysis_journal.insert().values(
                model=model, seq=next_seq(conn, model), created_at=now,
                events=entry_events(model, result), entry=encode_entry(model, result)))
            self.entries += 1


@dataclass(frozen=True, slots=True)
class Backlog:
    """Journal entries waiting to be judged, and the rows they hold."""

    entries: int
    events: int
    oldest_ms: int | None


def backlog(conn: Connection) -> Backlog:
    """What the journal holds now (every model)."""
    row = conn.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(analysis_journal.c.events), 0),
                                 sa.func.min(analysis_journal.c.created_at))).one()
    return Backlog(int(row[0]), int(row[1]), None if row[2] is None else int(row[2]))
