"""``driftloop replay``: the monitor's pipeline and detectors, offline, over files.

Predictions and labels are read from JSON lines, CSV or Parquet (the events' fields; in CSV and
Parquet each configured feature is a column, class scores are ``score_<class>`` columns), merged
in event-time order (a label at the time its truth became known) and fed through exactly the
code the live monitor runs: :func:`consumers.ingest.prepare` and :func:`consumers.ingest.commit`
on a temporary store, micro-batch by micro-batch, with the same analyser. So the same events in
the same order give the same detections as the live monitor (tested).
"""
from __future__ import annotations

import heapq
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from consumers.ingest import RawRecord, commit, prepare
from driftloop.core.config import Config
from driftloop.core.store import Store, now_ms

__all__ = ["read_events", "replay"]

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


_ts_probe = msgspec.json.Decoder(dict[str, Any])


def _event_time(raw: bytes) -> int:
    """Sort key: the event's ts in ms (unparseable lines sort first and are dead-lettered)."""
    from consumers.validation import parse_ts
    try:
        ts = _ts_probe.decode(raw).get("ts")
        return parse_ts(ts) if isinstance(ts, int | str) else -1
    except Exception:  # noqa: BLE001 - invalid input is the validator's business, not the sorter's
        return -1


def merged_records(cfg: Config, predictions: str | Path, labels: str | Path | None) -> list[RawRecord]:
    """Both files as one stream of records in event-time order (predictions first on ties)."""
    streams = []
    for rank, (path, topic, kind) in enumerate(((predictions, cfg.topics.predictions, "prediction"),
                                                (labels, cfg.topics.labels, "label"))):
        if path is None:
            continue
        streams.append([(_event_time(raw), rank, i, topic, raw) for i, raw in enumerate(read_events(path, kind))])
    return [RawRecord(topic, 0, i, raw) for (_t, _r, i, topic, raw) in heapq.merge(*streams)]


def replay(cfg: Config, predictions: str | Path, labels: str | Path | None = None, *,
           on_alert: Callable[[dict[str, Any]], None] | None = None, batch_size: int | None = None,
           progress: Callable[[int, int], None] | None = None, store_url: str | None = None,
           report: str | Path | None = None) -> dict[str, Any]:
    """Run the monitor's pipeline, detectors and alert lifecycle over files.

    Alert timings (grouping window, hold-down, cooldown) run on event time: ``now`` of each
    batch is the latest event time seen so far, so a day of events replays in seconds with the
    alerts a day of live monitoring would have raised. Each announced alert change is passed to
    ``on_alert`` as the contract's alert message, in order.
    """
    from driftloop.alerts import AlertService
    from driftloop.alerts.messages import alert_message
    from driftloop.app.stats import collect_stats
    from driftloop.monitoring.analysis import DriftAnalyser

    records = merged_records(cfg, predictions, labels)
    tmp = None
    if store_url is None:
        tmp = tempfile.TemporaryDirectory(prefix="driftloop-replay-")
        store_url = f"sqlite:///{tmp.name}/replay.db"
    store = Store(store_url)
    store.create_schema()
    alerts = AlertService(cfg, store, sinks=[], kafka=False)
    messages: list[dict[str, Any]] = []

    def on_changes(conn: Any, changes: list[Any], now: int) -> None:
        for c in changes:
            msg = alert_message(c)
            messages.append(msg)
            if on_alert is not None:
                on_alert(msg)

    alerts.manager.add_change_hook(on_changes)
    analyser = DriftAnalyser(cfg, store, on_detections=alerts.on_detections)
    size = batch_size or cfg.ingest.max_poll_records
    expected: dict[tuple[str, int], int | None] = {}
    wall = now_ms()
    event_now = 0
    for start in range(0, len(records), size):
        chunk = records[start:start + size]
        batch = prepare(chunk, cfg, wall)
        times = [vp.ts.max() for vp in batch.predictions.values() if len(vp.ts)]
        times += [vl.ts.max() for vl in batch.labels.values() if len(vl.ts)]
        event_now = max([event_now, *map(int, times)])
        commit(store, cfg, batch, group="replay", expected={k: expected.get(k) for k in batch.next_offsets},
               now=event_now, analyser=analyser)
        alerts.manager.tick(now=event_now)
        expected.update(batch.next_offsets)
        if progress is not None:
            progress(min(start + size, len(records)), len(records))
    stats = collect_stats(cfg, store)
    if report is not None:
        from driftloop.app.report import write_report
        write_report(report, store, messages, title=f"driftloop replay of {Path(predictions).name}", stats=stats)
    store.dispose()
    if tmp is not None:
        tmp.cleanup()
    return {"stats": stats, "analyser": analyser, "records": len(records), "alerts": messages}
