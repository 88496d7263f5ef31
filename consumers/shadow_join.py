"""Shadow predictions (contract v1.1): deduped, stored and joined inside the batch's transaction.

A shadow prediction (``"shadow": true``) is a challenger's answer to a request whose served
answer has the same ``event_id``; it names its own ``model_version``. :func:`consumers.ingest.prepare`
keeps the batch's shadows apart from the served predictions (``PreparedBatch.shadows``), and
:func:`apply_shadows` runs in :func:`consumers.ingest.commit` right after
:func:`consumers.join.apply_batch`, in the same transaction, so it sees the batch's own served
predictions and labels as stored.

Rows: ``shadow_examples`` (:mod:`driftloop.core.tables`), one per (model, event_id,
model_version). The label stays in ``examples`` (the served row's label half): a shadow is
*joined* when its served row holds both halves, which happens

1. when the shadow arrives and the served row is complete (stored before, or completed by this
   batch); or
2. when the served row becomes complete in this batch (its label came, or its prediction after
   a waiting label): ``JoinResult.joined`` names those event ids, and every stored shadow with
   one of them that is not joined yet joins now (whichever process stored it).

Per model and batch, one read of ``shadow_examples`` (by the primary key's prefix (model,
event_id): the batch's shadow ids and the ids joined in this batch), one read of ``examples``
for the batch's shadow ids (only when the batch has shadows), one ``executemany`` of inserts
and one of updates. A batch with neither shadows nor joined examples costs nothing here. A
batch that joins examples of a model but carries no shadows first probes whether the model has
any shadow stored at all (``SELECT 1 ... LIMIT 1``, one index probe) and stops there when not:
the common case, no shadow traffic, costs that probe per model and batch with joins. The probe
reads the store inside the batch's transaction under the model's lock, not a per-process flag,
so a label joins the shadows another monitor process stored, with no window.

Outcomes, counted per model: a new shadow is stored (``shadow_predictions``); a repeat of a stored
(model, model_version, event_id), or of one earlier in the batch, is a duplicate
(``shadow_duplicates``; the first wins); a join counts ``shadow_joined``. A shadow whose served
prediction is stored with the same version is refused: its dead letter (the reason names the
field) goes out through the outbox with the batch's other dead letters, it is counted ``invalid``
once and not stored. That check needs the served prediction: a shadow stored before its served
prediction arrived is not checked again. A shadow that never joins is dropped after
``ingest.prediction_ttl_s`` (``expired_shadows``), a joined one after ``ingest.joined_retention_s``
(``pruned_shadows``), both by :func:`consumers.join.expire_pending`.

What survives a crash: everything above is written in the batch's one transaction together
with the consumed offsets. A crash (or a failed commit) before the transaction commits leaves
nothing of the batch, and the redelivered records give the same outcome; after it commits,
the offsets have moved past the records, and a batch delivered again anyway counts its shadows
as duplicates. Each shadow is stored, counted and joined exactly once.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import msgspec
import numpy as np
import orjson
from sqlalchemy.engine import Connection

from consumers.join import Joined, JoinResult, ShadowJoined, concat_predictions
from consumers.ranking_validation import encode_ranking
from consumers.validation import ValidPredictions, validate_predictions
from driftloop.core.config import Config
from driftloop.core.events import PredictionEvent, label_key
from driftloop.core.store import Store
from driftloop.kafka.dead_letters import dead_letter

__all__ = ["Source", "apply_shadows", "same_version_reason"]

Source = tuple[str, int, int]
"""Where an event was read: (topic, partition, offset), for its dead letter."""

_enc = msgspec.json.Encoder()
_pred_dec = msgspec.json.Decoder(PredictionEvent)
_value_dec = msgspec.json.Decoder()

_SHADOWS = ("SELECT event_id, model_version, joined_at, CASE WHEN joined_at IS NULL THEN payload END "
            "FROM shadow_examples WHERE model = ? AND ")
_SERVED = "SELECT event_id, pred_ts, model_version, payload, label_ts, label FROM examples WHERE model = ? AND "
_ANY = "SELECT 1 FROM shadow_examples WHERE model = ? LIMIT 1"
_INSERT = ("INSERT INTO shadow_examples (model, event_id, model_version, pred_ts, payload, created_at, joined_at) "
           "VALUES (?, ?, ?, ?, ?, ?, ?)")
_JOIN = "UPDATE shadow_examples SET joined_at = ? WHERE model = ? AND event_id = ? AND model_version = ?"


def same_version_reason(version: str) -> str:
    """The dead letter's reason for a shadow naming the served prediction's own version.

    >>> same_version_reason("v3")
    "model_version: a shadow prediction's version must differ from the served one (v3)"
    """
    return f"model_version: a shadow prediction's version must differ from the served one ({version})"


@dataclass(slots=True)
class _Served:
    """The served row of an event id, as stored (this batch's writes included)."""

    pred_ts: int | None
    version: str | None
    payload: bytes | None
    label_ts: int | None
    label: bytes | None


def _any_stored(store: Store, conn: Connection, model: str) -> bool:
    """Whether ``model`` has any shadow prediction stored (one probe of the primary key's index)."""
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]  # checked out: never None
    try:
        cur.execute(_ANY if store.is_sqlite else _ANY.replace("?", "%s"), (model,))
        return cur.fetchone() is not None
    finally:
        cur.close()


def _select(store: Store, conn: Connection, sql: str, model: str, ids: list[str]) -> list[tuple]:
    """Rows of ``sql`` (ending in ``AND ``) for the event ids ``ids``, in one query."""
    if not ids:
        return []
    arg: bytes | list[str]
    if store.is_sqlite:
        sql, arg = sql + "event_id IN (SELECT value FROM json_each(?))", orjson.dumps(ids)
    else:
        sql, arg = (sql + "event_id = ANY(?)").replace("?", "%s"), ids
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]  # checked out: never None
    try:
        cur.execute(sql, (model, arg))
        return list(cur.fetchall())
    finally:
        cur.close()


def apply_shadows(store: Store, conn: Connection, cfg: Config, shadows: dict[str, ValidPredictions],
                  sources: dict[str, list[Source]], result: JoinResult,
                  now: int) -> list[tuple[bytes | None, bytes]]:
    """Store, dedupe and join the batch's shadow predictions; join stored ones whose served row
    ``result`` completed. Adds counters to ``result.deltas`` and ``result.shadow_joined``; returns
    the dead letters of refused shadows (``(key, value)`` outbox items for the DLQ topic).

    ``sources[model]`` is aligned with ``shadows[model]``: where each shadow was read.
    Runs after :func:`consumers.join.apply_batch` in the same transaction.
    """
    dead: list[tuple[bytes | None, bytes]] = []
    for model in sorted(set(shadows) | set(result.joined)):
        vs = shadows.get(model)
        _apply_model(store, conn, cfg, model, vs if vs is not None and vs.events else None,
                     sources.get(model, []), result, now, dead)
    return dead


@dataclass(slots=True)
class _Parts:
    """The joined shadows of one model, in the making: their predictions and the served halves."""

    shadow: list[ValidPredictions]
    served_prediction: list[object]
    served_version: list[str | None]
    label: list[object]
    label_ts: list[int]


def _apply_model(store: Store, conn: Connection, cfg: Config, model: str, vs: ValidPredictions | None,
                 sources: list[Source], result: JoinResult, now: int,
                 dead: list[tuple[bytes | None, bytes]]) -> None:
    joined = result.joined.get(model)
    if vs is None and not _any_stored(store, conn, model):   # no shadow traffic: nothing can join
        return
    joined_ids = [e.event_id for e in joined.predictions.events] if joined is not None else []
    shadow_ids = [e.event_id for e in vs.events] if vs is not None else []
    stored_keys: set[tuple[str, str]] = set()
    pending: dict[str, list[tuple[str, bytes]]] = defaultdict(list)   # event id -> (version, payload)
    for eid, version, joined_at, payload in _select(store, conn, _SHADOWS, model,
                                                    list(dict.fromkeys(shadow_ids + joined_ids))):
        stored_keys.add((eid, version))
        if joined_at is None:
            pending[eid].append((version, bytes(payload)))
    parts = _Parts([], [], [], [], [])
    updates = _join_stored(cfg, model, joined, joined_ids, pending, parts, now) if joined is not None else []
    d = result.deltas
    if vs is not None:
        inserts, dups, refused = _take_shadows(store, conn, cfg, model, vs, sources, stored_keys, parts, now, dead)
        store.executemany(conn, _INSERT, inserts)
        d[(model, "shadow_predictions")] += len(inserts)
        d[(model, "shadow_duplicates")] += dups
        d[(model, "invalid")] += refused
    store.executemany(conn, _JOIN, updates)
    if parts.shadow:
        n = sum(len(p.events) for p in parts.shadow)
        d[(model, "shadow_joined")] += n
        result.shadow_joined[model] = _columns(cfg, model, parts)


def _join_stored(cfg: Config, model: str, joined: Joined, joined_ids: list[str],
                 pending: dict[str, list[tuple[str, bytes]]], parts: _Parts, now: int) -> list[tuple]:
    """Case 2: the stored, unjoined shadows of the event ids this batch joined. Adds them to
    ``parts`` and returns their ``joined_at`` updates."""
    if not pending:
        return []
    row_of = {eid: i for i, eid in enumerate(joined_ids)}
    keys: list[tuple[str, str]] = []
    events: list[PredictionEvent] = []
    for eid, waiting in pending.items():
        if eid not in row_of:
            continue                     # a shadow id of this batch already stored: only deduped
        for version, payload in waiting:
            keys.append((eid, version))
            events.append(_pred_dec.decode(payload))
    if not events:
        return []
    valid, _errors = validate_predictions(events, cfg, now_ms=2**62)   # as join.py does with stored payloads
    vp = valid.get(model)
    if vp is None or not vp.events:
        return []
    served = joined.predictions
    rows = [row_of[keys[i][0]] for i in vp.index.tolist()]
    parts.shadow.append(vp)
    parts.served_prediction += [served.prediction[r] for r in rows]
    parts.served_version += [served.events[r].model_version for r in rows]
    parts.label += [joined.label[r] for r in rows]
    parts.label_ts += [int(joined.label_ts[r]) for r in rows]
    return [(now, model, keys[i][0], keys[i][1]) for i in vp.index.tolist()]


def _take_shadows(store: Store, conn: Connection, cfg: Config, model: str, vs: ValidPredictions,
                  sources: list[Source], stored_keys: set[tuple[str, str]], parts: _Parts, now: int,
                  dead: list[tuple[bytes | None, bytes]]) -> tuple[list[list], int, int]:
    """Case 1: the batch's shadows against the stored ones and their served rows. Returns the
    insert rows, the number of duplicates and the number refused (dead-lettered into ``dead``)."""
    served = {r[0]: _Served(r[1], r[2], r[3], r[4], r[5])
              for r in _select(store, conn, _SERVED, model, list(dict.fromkeys(e.event_id for e in vs.events)))}
    task = cfg.models[model].task
    seen = set(stored_keys)
    inserts: list[list] = []
    joined_rows: list[int] = []
    dups = refused = 0
    ts = vs.ts.tolist()
    payloads = vs.payloads or [None] * len(vs.events)
    for i, ev in enumerate(vs.events):
        version: str = ev.model_version  # type: ignore[assignment]  # validation refuses a shadow without one
        key = (ev.event_id, version)
        if key in seen:
            dups += 1
            continue
        row = served.get(ev.event_id)
        payload = payloads[i] or _enc.encode(ev)
        if row is not None and row.pred_ts is not None and row.version == version:
            topic, partition, offset = sources[i]
            dead.append((model.encode(), dead_letter(same_version_reason(version), topic, partition, offset,
                                                     payload, now, model)))
            refused += 1
            continue
        seen.add(key)
        complete = row is not None and row.pred_ts is not None and row.label_ts is not None
        inserts.append([model, ev.event_id, version, ts[i], payload, now, now if complete else None])
        if complete:
            joined_rows.append(i)
            _add_served(parts, row, task)  # type: ignore[arg-type]  # complete: a stored row
    if joined_rows:
        parts.shadow.append(vs.take(np.asarray(joined_rows, dtype=np.int64)))
    return inserts, dups, refused


def _add_served(parts: _Parts, row: _Served, task: str) -> None:
    """The served half of a shadow joined on arrival: its prediction (canonical, as validation
    makes it), version, label and label time, from the served row holding both halves."""
    value = _pred_dec.decode(row.payload).prediction  # type: ignore[arg-type]  # complete: predicted
    parts.served_prediction.append(label_key(value) if task == "classification" else
                                   encode_ranking(value) if task == "ranking" else float(value))  # type: ignore[arg-type]  # validated on ingest: a ranking model's value is a list
    parts.served_version.append(row.version)
    parts.label.append(_value_dec.decode(row.label))  # type: ignore[arg-type]  # complete: labelled
    parts.label_ts.append(row.label_ts)  # type: ignore[arg-type]  # complete: labelled


def _columns(cfg: Config, model: str, parts: _Parts) -> ShadowJoined:
    """``parts`` as aligned columns (the dtypes of :class:`consumers.join.Joined`)."""
    if cfg.models[model].task != "regression":
        served = np.empty(len(parts.served_prediction), dtype=object)
        served[:] = parts.served_prediction
        label = np.empty(len(parts.label), dtype=object)
        label[:] = parts.label
    else:
        served = np.asarray(parts.served_prediction, dtype=np.float64)
        label = np.asarray(parts.label, dtype=np.float64)
    shadow = parts.shadow[0] if len(parts.shadow) == 1 else concat_predictions(parts.shadow)
    return ShadowJoined(shadow, served, parts.served_version, label, np.asarray(parts.label_ts, dtype=np.int64))
