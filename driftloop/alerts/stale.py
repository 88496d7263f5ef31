"""Stale streams: a model that should receive predictions (or labels) and has had none for a
while fires ``stale_stream``; new events resolve it.

Activity is read from the store's counters (``predictions`` and ``labels`` per model, written by
every batch), so the hot path does nothing extra: each check compares the counters with the
values seen last time (``alert_stream_watch``) and notes when they last grew. The start of the
checker counts as activity, so a monitor that was down does not page the moment it starts.

:func:`stale_decisions` is the pure part:

>>> watch = {("fraud", "predictions"): (100, 0, False)}
>>> stale_decisions({"fraud": {"predictions": 100}}, watch, {"fraud": (3_600_000, None, "warning")},
...                 now=3_600_000, started_at=0)[1][0].detector
'no_predictions'
>>> stale_decisions({"fraud": {"predictions": 101}}, {("fraud", "predictions"): (100, 0, True)},
...                 {"fraud": (3_600_000, None, "warning")}, now=3_700_000, started_at=0)[1][0].firing
False
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from detectors.base import Detection, Window
from driftloop.alerts import tables as t
from driftloop.alerts.lifecycle import AlertChange
from driftloop.alerts.messages import duration
from driftloop.core.store import Store, now_ms

__all__ = ["StaleChecker", "stale_decisions"]

log = logging.getLogger(__name__)

_STREAMS = (("predictions", "no_predictions"), ("labels", "no_labels"))
Watch = dict[tuple[str, str], tuple[int, int, bool]]   # (model, stream) -> (last_count, changed_at, stale)


def stale_decisions(counts: Mapping[str, Mapping[str, int]], watch: Watch,
                    limits: Mapping[str, tuple[int | None, int | None, str]], now: int, started_at: int,
                    ) -> tuple[Watch, list[Detection]]:
    """New watch rows and the stale/clear detections. ``limits``: model -> (predictions ms,
    labels ms, severity); a None limit is not watched. Stale detections repeat at every check
    while stale (the lifecycle treats them as re-detections); a clear comes once, when events
    arrive again."""
    new: Watch = {}
    out: list[Detection] = []
    for model, (p_ms, l_ms, severity) in sorted(limits.items()):
        for (stream, detector), limit in zip(_STREAMS, (p_ms, l_ms), strict=True):
            if limit is None:
                continue
            count = int(counts.get(model, {}).get(stream, 0))
            last, changed_at, stale = watch.get((model, stream), (count, now, False))
            if count != last:
                changed_at = now
            quiet = now - max(changed_at, started_at)
            if quiet >= limit:
                out.append(Detection(
                    kind="stale_stream", detector=detector, feature=None, statistic=quiet / 1000,
                    p_value=None, threshold=limit / 1000, window=Window(changed_at, now, 0), firing=True,
                    severity=severity, model=model,  # type: ignore[arg-type]  # config-validated severity and model strings
                    summary=(f"no {stream} received for {duration(quiet)} (limit {duration(limit)}); check the "
                             f"service that publishes them and the {stream} topic."),
                    evidence={"stream": stream, "last_count": count, "last_activity_at": changed_at,
                              "quiet_s": quiet / 1000, "limit_s": limit / 1000}))
                stale = True
            elif stale:
                out.append(Detection(
                    kind="stale_stream", detector=detector, feature=None, statistic=quiet / 1000, p_value=None,
                    threshold=limit / 1000, window=Window(changed_at, now, count - last), firing=False,
                    severity=severity, model=model,  # type: ignore[arg-type]  # config-validated severity and model strings
                    summary=f"{stream} are arriving again ({count - last:,} new since the last check).",
                    evidence={"stream": stream, "new_events": count - last}))
                stale = False
            new[(model, stream)] = (count, changed_at, stale)
    return new, out


class StaleChecker:
    """The scheduled check: reads counters, updates the watch rows, feeds the alert manager."""

    def __init__(self, manager: Any, store: Store, models: Iterable[str], *, started_at: int | None = None) -> None:
        self.manager = manager
        self.store = store
        self.cfg = manager.cfg.stale
        self.models = sorted(set(models) | set(self.cfg.models))
        self.started_at = now_ms() if started_at is None else started_at

    def limits(self) -> dict[str, tuple[int | None, int | None, str]]:
        out = {}
        for m in self.models:
            enabled, p, lab, sev = self.cfg.for_model(m)
            if enabled and (p or lab):
                out[m] = (None if p is None else int(p * 1000), None if lab is None else int(lab * 1000), sev)
        return out

    def check(self, now: int | None = None) -> list[AlertChange]:
        """One check; returns the announced changes."""
        now = now_ms() if now is None else now
        limits = self.limits()
        if not self.cfg.enabled or not limits:
            return []
        w = t.alert_stream_watch
        with self.store.engine.connect() as conn:
            counts = self.store.read_counters(conn)
            watch: Watch = {(r.model, r.stream): (int(r.last_count), int(r.changed_at), bool(r.stale))
                            for r in conn.execute(sa.select(w.c.model, w.c.stream, w.c.last_count, w.c.changed_at,
                                                            w.c.stale))}
        new, dets = stale_decisions(counts, watch, limits, now, self.started_at)
        changed = {k: v for k, v in new.items() if watch.get(k) != v}
        if not changed and not dets:
            return []
        by_model: dict[str, list[Detection]] = {}
        for d in dets:
            by_model.setdefault(d.model or "", []).append(d)
        changes: list[AlertChange] = []
        with self.store.transaction() as conn:
            self.store.lock_models(conn, {m for m, _ in changed} | set(by_model))
            if changed:
                ins = self.store._insert(w)
                stmt = ins.on_conflict_do_update(index_elements=["model", "stream"], set_={
                    "last_count": ins.excluded.last_count, "changed_at": ins.excluded.changed_at,
                    "stale": ins.excluded.stale, "checked_at": ins.excluded.checked_at})
                for (m, s), (c, ch, st) in sorted(changed.items()):
                    conn.execute(stmt, {"model": m, "stream": s, "last_count": c, "changed_at": ch, "stale": st,
                                        "checked_at": now})
            for model, items in sorted(by_model.items()):
                changes += self.manager.process(conn, model, None, items, now)
        return changes
