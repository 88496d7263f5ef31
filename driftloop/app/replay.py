"""``driftloop replay``: the monitor's pipeline and detectors, offline, over files.

Predictions and labels are read from JSON lines, CSV or Parquet (the events' fields; in CSV and
Parquet each configured feature is a column, class scores are ``score_<class>`` columns), merged
in event-time order (a label at the time its truth became known) and fed through exactly the
code the live monitor runs: :func:`consumers.ingest.prepare` and :func:`consumers.ingest.commit`
on a temporary store, micro-batch by micro-batch, with the same analyser. So the same events in
the same order give the same detections as the live monitor (tested).

With a registry (by default when the configuration's store holds versions of a configured model;
``registry=False`` for the configured reference files only) the references are the registry's,
as live (:class:`~driftloop.monitoring.champion_switch.RegistryReferences`), and the champion
history is replayed on event time: each registry change (a version registered, a ``promoted``
or ``rolled_back`` switch) takes effect before the first event whose ``ts`` is at or after the
change's time (``created_at`` / ``decided_at``), the rule of ``Registry.champion_at``. The replay
cuts its micro-batch there, so the events before the change are stored, stamped and judged
under the previous champion and those after under the new one; the switch itself is the live
monitor's (:meth:`ChampionSwitcher.apply`: the new champion's sample, the old version draining,
the alerts the retraining answered resolved), at the change's time. The registry's rows are
read once, read-only, from the source store and copied into the temporary store as their time
comes; the samples are read from ``registry.artifact_dir`` (hash-checked); nothing is written to
the source store.
"""
from __future__ import annotations

import heapq
import tempfile
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import sqlalchemy as sa

from consumers.ingest import RawRecord, commit, prepare
from consumers.validation import parse_ts
from driftloop.core.config import Config
from driftloop.core.store import Store, now_ms
from driftloop.core.tables import champion_history, model_versions
from driftloop.monitoring.champion_switch import ChampionSwitcher

__all__ = ["read_events", "replay", "RegistryTimeline", "read_registry", "plan_batches"]

_enc = msgspec.json.Encoder()
_RESERVED = {"event_id", "model", "ts", "prediction", "label", "model_version", "scores"}


def _row_events(df: pd.DataFrame, kind: str) -> Iterator[dict[str, Any]]:
    """Each row of a CSV/Parquet frame as the event a service would publish (``score_<class>``
    columns become ``scores``, the other non-reserved columns ``features``)."""
    score_cols = [c for c in df.columns if isinstance(c, str) and c.startswith("score_")]
    feature_cols = [c for c in df.columns if c not in _RESERVED and c not in score_cols]
    for row in df.to_dict("records"):
        ev = {k: _plain(row[k]) for k in ("event_id", "model", "ts") if k in row}
        if kind == "label":
            ev["label"] = _plain(row.get("label"))
        else:
            _add_prediction_fields(ev, row, feature_cols, score_cols)
        yield ev


def _add_prediction_fields(ev: dict[str, Any], row: dict[str, Any], feature_cols: list[Any],
                           score_cols: list[str]) -> None:
    """A prediction row's prediction, features, model version and scores (missing ones left out)."""
    ev["prediction"] = _plain(row.get("prediction"))
    ev["features"] = {c: _plain(row[c]) for c in feature_cols}
    if row.get("model_version") is not None and not _isnan(row.get("model_version")):
        ev["model_version"] = str(row["model_version"])
    scores = {c[len("score_"):]: _plain(row[c]) for c in score_cols if not _isnan(row[c])}
    if scores:
        ev["scores"] = scores


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and v != v


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if _isnan(v):
        return None
    return v


def read_events(path: str | Path, kind: str) -> Iterator[bytes]:
    """Each event of a JSONL, CSV or Parquet file as the JSON bytes a service would publish."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        with p.open("rb") as fh:
            for line in fh:
                if line.strip():
                    yield line.rstrip(b"\r\n")
        return
    if suffix == ".csv":
        df = pd.read_csv(p, dtype={"event_id": str, "model": str, "model_version": str})
    elif suffix in (".parquet", ".pq"):
        df = pd.read_parquet(p)
    else:
        raise ValueError(f"{p}: unsupported file type {suffix!r} (use .jsonl, .csv or .parquet)")
    for ev in _row_events(df, kind):
        yield _enc.encode(ev)


class _Ts(msgspec.Struct):
    """An event's ``ts`` alone: the sort reads nothing else (the other fields are skipped, not built)."""

    ts: Any = None


_ts_probe = msgspec.json.Decoder(_Ts)


def _event_time(raw: bytes) -> int:
    """Sort key: the event's ts in ms (unparseable lines sort first and are dead-lettered).

    >>> _event_time(b'{"event_id": "a", "features": {"x": 1}, "ts": 1700000000000}'), _event_time(b'[1]')
    (1700000000000, -1)
    """
    try:
        ts = _ts_probe.decode(raw).ts
        return parse_ts(ts) if isinstance(ts, int | str) else -1
    except Exception:  # noqa: BLE001 - invalid input is the validator's business, not the sorter's
        return -1


def merged_records(cfg: Config, predictions: str | Path, labels: str | Path | None
                   ) -> tuple[list[RawRecord], list[int]]:
    """Both files as one stream of records in event-time order (predictions first on ties), and
    each record's event time (-1: none could be read)."""
    streams = []
    for rank, (path, topic, kind) in enumerate(((predictions, cfg.topics.predictions, "prediction"),
                                                (labels, cfg.topics.labels, "label"))):
        if path is None:
            continue
        streams.append([(_event_time(raw), rank, i, topic, raw) for i, raw in enumerate(read_events(path, kind))])
    merged = list(heapq.merge(*streams))
    return [RawRecord(topic, 0, i, raw) for (_t, _r, i, topic, raw) in merged], [t for t, *_ in merged]


@dataclass(frozen=True)
class RegistryStep:
    """One change of the source registry, replayed at its time ``at`` (epoch ms): a version row
    (``table`` ``model_versions``, at its ``created_at``) or a history row (``champion_history``,
    at its ``decided_at``; a ``promoted``/``rolled_back`` one switches the champion)."""

    at: int
    model: str
    table: str
    row: dict[str, Any]

    @property
    def switch(self) -> tuple[str, list[str], str] | None:
        """(new champion, alert ids it answered, why) if this step switches the champion."""
        if self.table != "champion_history" or self.row["event"] not in ("promoted", "rolled_back"):
            return None
        champion = self.row["champion_version"]
        if champion is None:
            return None
        details = self.row.get("details") or {}
        resolves = [str(a) for a in (details.get("alert_ids") or [])]
        # the same words as the live switch (ChampionSwitcher._poll_events)
        return str(champion), resolves, f"{self.row['event']}: {self.model} v{champion}"


@dataclass
class RegistryTimeline:
    """The source registry's rows of the configured models, as steps in time order (versions
    before the history rows of the same millisecond: a registration precedes its promotion)."""

    source: str                                   # the source store's URL, password hidden
    steps: list[RegistryStep] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        return sorted({s.model for s in self.steps if s.table == "model_versions"})


def _read_only_engine(url: str) -> sa.engine.Engine | None:
    """An engine that cannot write to the store at ``url`` (None: no such SQLite file)."""
    from driftloop.core.store import _normalise_url

    u = sa.engine.make_url(_normalise_url(url))
    if u.get_backend_name() == "sqlite":
        if not u.database or u.database == ":memory:" or not Path(u.database).is_file():
            return None
        path = Path(u.database).resolve().as_posix()
        return sa.create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    return sa.create_engine(u, connect_args={"connect_timeout": 10,
                                             "options": "-c default_transaction_read_only=on"})


def read_registry(cfg: Config) -> RegistryTimeline | None:
    """The registry of the configuration's store for the configured models, read read-only;
    None when the store has none (no file, no registry tables, no version of these models)."""
    engine = _read_only_engine(cfg.store.url)
    if engine is None:
        return None
    models = sorted(cfg.models)
    try:
        with engine.connect() as c:
            versions = [dict(r._mapping) for r in c.execute(
                sa.select(model_versions).where(model_versions.c.model.in_(models))
                .order_by(model_versions.c.model, model_versions.c.version))]
            history = [dict(r._mapping) for r in c.execute(
                sa.select(champion_history).where(champion_history.c.model.in_(models))
                .order_by(champion_history.c.id))]
    except sa.exc.OperationalError as exc:
        if "no such table" in str(exc):     # a store no monitor or registry has used yet
            return None
        raise
    except sa.exc.ProgrammingError:        # PostgreSQL: the tables do not exist
        return None
    finally:
        engine.dispose()
    if not versions:
        return None
    steps = [RegistryStep(int(r["created_at"]), r["model"], "model_versions", r) for r in versions]
    steps += [RegistryStep(int(r["decided_at"]), r["model"], "champion_history", r) for r in history]
    order = {"model_versions": 0, "champion_history": 1}
    steps.sort(key=lambda s: (s.at, order[s.table], s.row.get("id") or s.row.get("version") or 0))
    return RegistryTimeline(sa.engine.make_url(cfg.store.url).render_as_string(hide_password=True), steps)


def plan_batches(times: Sequence[int], size: int, change_times: Sequence[int]) -> list[tuple[int, int]]:
    """The replay's micro-batches as ``(start, end)`` slices of the records, whose event times
    ``times`` are in order: at most ``size`` records each, and cut at every change time ``t``
    so that the first record with ``ts >= t`` starts a batch (the change is applied before it).

    >>> plan_batches([1, 2, 3, 4, 5, 6], 4, [3])
    [(0, 2), (2, 6)]
    >>> plan_batches([1, 2, 3, 4, 5, 6], 4, [0, 7])     # before the first event, after the last
    [(0, 4), (4, 6)]
    >>> plan_batches([-1, -1, 5, 5, 9], 10, [5, 6])      # unreadable records (-1) sort first
    [(0, 2), (2, 4), (4, 5)]
    """
    cuts = sorted(set(change_times))
    out: list[tuple[int, int]] = []
    i, k, n = 0, 0, len(times)
    while i < n:
        while k < len(cuts) and cuts[k] <= times[i]:
            k += 1
        end = min(i + size, n)
        if k < len(cuts):
            end = max(i + 1, bisect_left(times, cuts[k], i, end))
        out.append((i, end))
        i = end
    return out


class _RegistryReplay:
    """The source registry's steps applied to the temporary store as event time passes them."""

    def __init__(self, timeline: RegistryTimeline, store: Store) -> None:
        self.timeline = timeline
        self.store = store
        self.pending = list(timeline.steps)
        self.switcher: ChampionSwitcher | None = None
        self.applied: list[dict[str, Any]] = []

    @property
    def times(self) -> list[int]:
        return [s.at for s in self.pending]

    def _write(self, conn: Any, step: RegistryStep) -> None:
        if step.table == "model_versions":
            conn.execute(model_versions.insert().values(**(step.row | {"status": "registered"})))
            return
        conn.execute(champion_history.insert().values(**step.row))
        sw = step.switch
        if sw is not None:   # the registry's own champion change (``Registry.make_champion``)
            conn.execute(model_versions.update().where(model_versions.c.model == step.model,
                                                       model_versions.c.status == "champion")
                         .values(status="archived"))
            conn.execute(model_versions.update().where(model_versions.c.model == step.model,
                                                       model_versions.c.version == int(sw[0]))
                         .values(status="champion"))

    def start(self, first_ts: int | None) -> None:
        """The registry as it was at the first event (no switch: the detectors start on it)."""
        with self.store.transaction() as conn:
            while self.pending and first_ts is not None and self.pending[0].at <= first_ts:
                step = self.pending.pop(0)
                self._write(conn, step)
                if step.switch is not None:
                    self.applied.append({"model": step.model, "version": step.switch[0], "event": step.row["event"],
                                         "decided_at": step.at, "before_record": 0, "at_start": True})

    def advance(self, ts: int, record: int, event_now: int, alerts: Any) -> int:
        """Apply the steps due before a record at event time ``ts`` (index ``record``); returns
        the event time after them."""
        while self.pending and self.pending[0].at <= ts:
            step = self.pending.pop(0)
            with self.store.transaction() as conn:
                self.store.lock_models(conn, [step.model])
                self._write(conn, step)
            sw = step.switch
            if sw is None or self.switcher is None:
                continue
            event_now = max(event_now, step.at)
            self.switcher.apply(step.model, sw[0], sw[1], sw[2], now=event_now)
            self.switcher.analyser.tend(now=event_now)
            alerts.manager.tick(now=event_now)
            self.applied.append({"model": step.model, "version": sw[0], "event": step.row["event"],
                                 "decided_at": step.at, "before_record": record, "at_start": False})
        return event_now


def replay(cfg: Config, predictions: str | Path, labels: str | Path | None = None, *,
           on_alert: Callable[[dict[str, Any]], None] | None = None, batch_size: int | None = None,
           progress: Callable[[int, int], None] | None = None, store_url: str | None = None,
           report: str | Path | None = None, registry: bool | None = None) -> dict[str, Any]:
    """Run the monitor's pipeline, detectors and alert lifecycle over files.

    Alert timings (grouping window, hold-down, cooldown) run on event time: ``now`` of each
    batch is the latest event time seen so far, so a day of events replays in seconds with the
    alerts a day of live monitoring would have raised. After the last event the clock moves on by
    the grouping window, then by the incidents' wait, so that what the last batches detected is
    announced (a hold-down still running at the end is not waited for). Each announced alert change is passed to
    ``on_alert`` as the contract's alert message, in order.

    ``registry``: None (default) replays the registry of the configuration's store when it holds
    versions of a configured model (references and champion switches, see the module
    docstring), else uses the configured reference files; True requires it (``ValueError``
    if there is none); False ignores it. The result's ``registry`` is None or
    ``{"source", "models", "switches"}`` (each switch: model, version, event, decided_at, the
    record it was applied before, and ``at_start`` for the champion in effect at the first event).
    """
    from driftloop.alerts import AlertService
    from driftloop.alerts.messages import alert_message
    from driftloop.app.stats import collect_stats
    from driftloop.monitoring.analysis import DriftAnalyser

    timeline = read_registry(cfg) if registry is not False else None
    if registry and timeline is None:
        shown = sa.engine.make_url(cfg.store.url).render_as_string(hide_password=True)
        raise ValueError(f"replay --registry: the store {shown} holds no registered version of "
                         f"{', '.join(sorted(cfg.models))}")
    records, times = merged_records(cfg, predictions, labels)
    tmp = None
    if store_url is None:
        tmp = tempfile.TemporaryDirectory(prefix="driftloop-replay-")
        store_url = f"sqlite:///{tmp.name}/replay.db"
    store = Store(store_url)
    store.create_schema()
    steps = None
    if timeline is not None:
        steps = _RegistryReplay(timeline, store)
        steps.start(next((t for t in times if t >= 0), None))
    alerts = AlertService(cfg, store, sinks=[], kafka=False)
    messages: list[dict[str, Any]] = []

    def on_changes(conn: Any, changes: list[Any], now: int) -> None:
        for c in changes:
            msg = alert_message(c)
            messages.append(msg)
            if on_alert is not None:
                on_alert(msg)

    alerts.manager.add_change_hook(on_changes)
    if steps is not None:
        from driftloop.monitoring.champion_switch import RegistryReferences
        from retrain.events import switch_target
        from retrain.registry import Registry

        source = RegistryReferences(cfg, store, registry=Registry(cfg, store))
        analyser = DriftAnalyser(cfg, store, on_detections=alerts.on_detections, reference_source=source)
        steps.switcher = ChampionSwitcher(cfg, store, analyser, alerts, switch_target=switch_target)
    else:
        analyser = DriftAnalyser(cfg, store, on_detections=alerts.on_detections)
    size = batch_size or cfg.ingest.max_poll_records
    expected: dict[tuple[str, int], int | None] = {}
    wall = now_ms()
    event_now = 0
    for start, end in plan_batches(times, size, steps.times if steps is not None else []):
        if steps is not None:
            event_now = steps.advance(times[start], start, event_now, alerts)
        batch = prepare(records[start:end], cfg, wall)
        batch_times = [vp.ts.max() for vp in batch.predictions.values() if len(vp.ts)]
        batch_times += [vl.ts.max() for vl in batch.labels.values() if len(vl.ts)]
        event_now = max([event_now, *map(int, batch_times)])
        commit(store, cfg, batch, group="replay", expected={k: expected.get(k) for k in batch.next_offsets},
               now=event_now, analyser=analyser)
        alerts.manager.tick(now=event_now)
        expected.update(batch.next_offsets)
        if progress is not None:
            progress(end, len(records))
    if records:
        # the stream's end: what its last batches detected is announced as the live monitor's next
        # ticks would announce it, once the grouping window and then the incident's wait are over
        done = event_now + alerts.manager.policy.group_window_ms
        alerts.manager.tick(now=done)
        alerts.manager.tick(now=done + alerts.manager.incident_policy.wait_ms)
    from driftloop.alerts.incidents_cli import list_incidents

    incidents = list_incidents(store, limit=1_000_000)[::-1]     # oldest first
    stats = collect_stats(cfg, store)
    if report is not None:
        from driftloop.app.report import write_report
        write_report(report, store, messages, title=f"driftloop replay of {Path(predictions).name}", stats=stats,
                     incidents=incidents)
    store.dispose()
    if tmp is not None:
        tmp.cleanup()
    used = None if steps is None else {"source": steps.timeline.source, "models": steps.timeline.models,
                                       "switches": steps.applied}
    return {"stats": stats, "analyser": analyser, "records": len(records), "alerts": messages, "registry": used,
            "incidents": incidents}
