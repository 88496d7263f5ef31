"""Exactly-once counting and the prediction/label join, inside the batch's transaction.

Every (model, event_id) has one row in ``examples`` holding its prediction half, its label
half, or both. Per batch and model, one query reads the rows the batch touches; the outcome of
each event (new, duplicate, completes a join) is then known in Python, and the writes go out as
two ``executemany`` calls (inserts of new rows, updates of existing ones). Labels may arrive
first: they wait as label-only rows until their prediction comes or their TTL runs out.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import msgspec
import numpy as np
import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from consumers.validation import ValidLabels, ValidPredictions, validate_predictions
from driftloop.core.config import Config
from driftloop.core.events import PredictionEvent
from driftloop.core.store import Store, examples, lock_models
from driftloop.core.tables import shadow_examples

__all__ = ["JoinResult", "Joined", "ShadowJoined", "apply_batch", "concat_predictions", "expire_pending"]

_enc = msgspec.json.Encoder()
_pred_dec = msgspec.json.Decoder(PredictionEvent)
_label_dec = msgspec.json.Decoder()


@dataclass(slots=True)
class Joined:
    """Examples of one model that became complete in this batch, columns aligned."""

    predictions: ValidPredictions
    label: np.ndarray
    label_ts: np.ndarray


@dataclass(slots=True)
class ShadowJoined:
    """Shadow predictions of one model joined in this batch (:mod:`consumers.shadow_join`), with
    their served prediction and its label, aligned row by row.

    ``shadow``: the shadow predictions (each event carries its ``model_version``);
    ``served_prediction``: the served prediction of the same ``event_id`` (the dtype of
    :attr:`ValidPredictions.prediction`: object ``str`` for classification, float64 for
    regression); ``served_version``: the served prediction's stored version (None: unversioned);
    ``label``/``label_ts``: the served row's label and its time (as in :class:`Joined`).
    """

    shadow: ValidPredictions
    served_prediction: np.ndarray
    served_version: list[str | None]
    label: np.ndarray
    label_ts: np.ndarray


@dataclass(slots=True)
class JoinResult:
    new_predictions: dict[str, ValidPredictions] = field(default_factory=dict)
    joined: dict[str, Joined] = field(default_factory=dict)
    deltas: Counter = field(default_factory=Counter)
    # model -> its shadow predictions joined in this batch (contract v1.1; consumers.shadow_join)
    shadow_joined: dict[str, ShadowJoined] = field(default_factory=dict)
    # model -> what validation refused and the dedupe dropped after the batch's last new prediction
    # of the model (consumers.marks: counts for the next one, in a later batch)
    trailing: dict[str, dict] = field(default_factory=dict)


@dataclass(slots=True)
class _Row:
    """An example row the batch touches that is already stored, or touched twice in the batch."""

    pred_ts: int | None
    payload: bytes | None
    version: str | None
    label_ts: int | None
    label: bytes | None
    in_db: bool
    changed: bool = False


_SELECT = "SELECT event_id, pred_ts, payload, model_version, label_ts, label FROM examples WHERE model = ? AND "


def _existing(store: Store, conn: Connection, model: str, ids: list[str]) -> dict[str, _Row]:
    """The stored rows among ``ids``, in one query (SQLite: ``json_each``; PostgreSQL: ``ANY``)."""
    if not ids:
        return {}
    arg: bytes | list[str]
    if store.is_sqlite:
        sql, arg = _SELECT + "event_id IN (SELECT value FROM json_each(?))", orjson.dumps(ids)
    else:
        sql, arg = (_SELECT + "event_id = ANY(?)").replace("?", "%s"), ids
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]  # checked out: never None
    try:
        cur.execute(sql, (model, arg))
        return {r[0]: _Row(r[1], r[2], r[3], r[4], r[5], in_db=True) for r in cur.fetchall()}
    finally:
        cur.close()


_INSERT = ("INSERT INTO examples (model, event_id, pred_ts, model_version, payload, label_ts, label, "
           "created_at, joined_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
_UPDATE = ("UPDATE examples SET pred_ts = ?, model_version = ?, payload = ?, label_ts = ?, label = ?, "
           "joined_at = ? WHERE model = ? AND event_id = ?")


def apply_batch(store: Store, conn: Connection, cfg: Config, preds: dict[str, ValidPredictions],
                labels: dict[str, ValidLabels], now: int) -> JoinResult:
    """Write one batch's accepted events; return what was new and what joined.

    The common case, an event id seen for the first time, never builds a per-row object: it
    goes straight into the insert list. Ids already stored, or seen twice in the batch, take
    the :class:`_Row` path.
    """
    res = JoinResult()
    for model in sorted(set(preds) | set(labels)):
        _apply_model(store, conn, cfg, model, preds.get(model), labels.get(model), now, res)
    return res


def _apply_model(store: Store, conn: Connection, cfg: Config, model: str, vp: ValidPredictions | None,
                 vl: ValidLabels | None, now: int, res: JoinResult) -> None:
    """One model's part of :func:`apply_batch`: dedupe both halves against one read of the stored
    rows, write the inserts and updates, count, and add what is new and what joined to ``res``."""
    pred_ids = [e.event_id for e in vp.events] if vp else []
    label_ids = [e.event_id for e in vl.events] if vl else []
    state = _existing(store, conn, model, list(dict.fromkeys(pred_ids + label_ids)))
    fresh: dict[str, list] = {}           # event id -> insert row, for ids not stored before
    joined_eids: list[str] = []
    new_pred_rows: list[int] = []
    pred_row_of: dict[str, int] = {}
    dups = n_labels = 0
    if vp:
        new_pred_rows, pred_row_of, dups = _take_predictions(model, vp, pred_ids, state, fresh, joined_eids, now)
    if vl:
        n_labels, label_dups = _take_labels(model, vl, label_ids, state, fresh, joined_eids, now)
        dups += label_dups
    d = res.deltas
    d[(model, "predictions")] += len(new_pred_rows)
    d[(model, "labels")] += n_labels
    d[(model, "duplicates")] += dups
    d[(model, "joined")] += len(joined_eids)
    _write_rows(store, conn, model, fresh, state, joined_eids, now)
    if vp:
        # duplicates dropped: counted on the next new prediction (consumers.marks), or trailing
        new = vp if len(new_pred_rows) == len(vp.events) else vp.keep(np.asarray(new_pred_rows, dtype=np.int64),
                                                                      dropped="duplicates")
        if new_pred_rows:
            res.new_predictions[model] = new
        if new.trailing:
            res.trailing[model] = new.trailing
    if joined_eids:
        res.joined[model] = _joined_columns(cfg, model, joined_eids, state, fresh, vp, pred_row_of)


def _take_predictions(model: str, vp: ValidPredictions, pred_ids: list[str], state: dict[str, _Row],
                      fresh: dict[str, list], joined_eids: list[str],
                      now: int) -> tuple[list[int], dict[str, int], int]:
    """Dedupe the batch's predictions: a new id goes into ``fresh`` (an insert row), one whose
    label is stored completes it (``joined_eids``), a repeat is a duplicate. Returns the rows of
    ``vp`` that are new, their row per event id, and the number of duplicates."""
    new_pred_rows: list[int] = []
    pred_row_of: dict[str, int] = {}
    dups = 0
    ts = vp.ts.tolist()
    payloads = vp.payloads or [None] * len(pred_ids)
    for i, (eid, ev) in enumerate(zip(pred_ids, vp.events)):
        st = state.get(eid)
        if st is None:
            if eid in fresh:
                dups += 1
                continue
            fresh[eid] = [model, eid, ts[i], ev.model_version, payloads[i] or _enc.encode(ev), None, None, now, None]
        elif st.pred_ts is not None:
            dups += 1
            continue
        else:   # a stored label was waiting for this prediction
            st.pred_ts, st.payload, st.version, st.changed = ts[i], payloads[i] or _enc.encode(ev), ev.model_version, True
            joined_eids.append(eid)
        new_pred_rows.append(i)
        pred_row_of[eid] = i
    return new_pred_rows, pred_row_of, dups


def _take_labels(model: str, vl: ValidLabels, label_ids: list[str], state: dict[str, _Row],
                 fresh: dict[str, list], joined_eids: list[str], now: int) -> tuple[int, int]:
    """Dedupe the batch's labels against the stored rows and this batch's new ones (a label
    completes a prediction stored or just taken: ``joined_eids``). Returns (new labels, duplicates)."""
    n_labels = dups = 0
    ts = vl.ts.tolist()
    values = vl.label.tolist()
    for i, eid in enumerate(label_ids):
        st = state.get(eid)
        row = fresh.get(eid) if st is None else None
        value = _enc.encode(values[i])
        if st is not None:
            if st.label_ts is not None:
                dups += 1
                continue
            st.label_ts, st.label, st.changed = ts[i], value, True
            if st.pred_ts is not None:
                joined_eids.append(eid)
        elif row is not None:
            if row[5] is not None:
                dups += 1
                continue
            row[5], row[6] = ts[i], value
            if row[2] is not None:
                row[8] = now
                joined_eids.append(eid)
        else:
            fresh[eid] = [model, eid, None, None, None, ts[i], value, now, None]
        n_labels += 1
    return n_labels, dups


def _write_rows(store: Store, conn: Connection, model: str, fresh: dict[str, list], state: dict[str, _Row],
                joined_eids: list[str], now: int) -> None:
    """The model's writes of the batch: one ``executemany`` of inserts, one of updates."""
    joined_set = set(joined_eids)
    store.executemany(conn, _INSERT, list(fresh.values()))   # rows are lists: both drivers take them
    store.executemany(conn, _UPDATE, [
        (st.pred_ts, st.version, st.payload, st.label_ts, st.label, now if eid in joined_set else None,
         model, eid) for eid, st in state.items() if st.changed])


def _joined_columns(cfg: Config, model: str, eids: list[str], state: dict[str, _Row], fresh: dict[str, list],
                    vp: ValidPredictions | None, pred_row_of: dict[str, int]) -> Joined:
    """The examples ``eids`` completed in this batch as aligned columns (predictions, label, label time)."""
    merged, order = _joined_predictions(cfg, model, eids, state, vp, pred_row_of)
    label_values = [_label_dec.decode(state[e].label if e in state else fresh[e][6])  # type: ignore[arg-type]  # joined: labelled
                    for e in order]
    if cfg.models[model].task != "regression":      # class labels, or a ranking model's encoded relevance
        label = np.empty(len(order), dtype=object)
        label[:] = label_values
    else:
        label = np.asarray(label_values, dtype=np.float64)
    label_ts = np.asarray([state[e].label_ts if e in state else fresh[e][5] for e in order], dtype=np.int64)
    return Joined(merged, label, label_ts)


def _joined_predictions(cfg: Config, model: str, eids: list[str], state: dict[str, _Row],
                        vp: ValidPredictions | None,
                        pred_row_of: dict[str, int]) -> tuple[ValidPredictions, list[str]]:
    """The prediction half of the joined ``eids`` (rows of this batch, then stored payloads decoded
    and validated again) and the event ids in that order."""
    in_batch = [e for e in eids if e in pred_row_of]
    from_db = [e for e in eids if e not in pred_row_of]
    parts: list[ValidPredictions] = []
    order: list[str] = []
    if in_batch and vp is not None:
        parts.append(vp.take(np.asarray([pred_row_of[e] for e in in_batch], dtype=np.int64)))
        order += in_batch
    if from_db:
        events = [_pred_dec.decode(state[e].payload) for e in from_db]  # type: ignore[arg-type]  # joined: predicted
        for e, ev in zip(from_db, events):   # the version it was stored with (stamped when it named none)
            ev.model_version = ev.model_version or state[e].version
        valid, _errors = validate_predictions(events, cfg, now_ms=2**62)
        if model in valid:
            parts.append(valid[model])
            order += [ev.event_id for ev in valid[model].events]
    merged = parts[0] if len(parts) == 1 else concat_predictions(parts)
    return merged, order


def concat_predictions(parts: list[ValidPredictions]) -> ValidPredictions:
    """One model's prediction columns, one part after the other (scores over the union of classes)."""
    classes = list(dict.fromkeys(c for p in parts for c in p.classes))
    scores = None
    if classes:
        blocks = []
        for p in parts:
            block = np.full((len(p.ts), len(classes)), np.nan)
            if p.scores is not None:
                for j, c in enumerate(p.classes):
                    block[:, classes.index(c)] = p.scores[:, j]
            blocks.append(block)
        scores = np.vstack(blocks)
    return ValidPredictions(
        parts[0].model, [e for p in parts for e in p.events], np.concatenate([p.index for p in parts]),
        np.concatenate([p.ts for p in parts]),
        {k: np.concatenate([p.features[k] for p in parts]) for k in parts[0].features},
        np.concatenate([p.prediction for p in parts]), scores, classes)


def expire_pending(conn: Connection, now: int, prediction_ttl_ms: int, label_ttl_ms: int,
                   joined_retention_ms: int = 0) -> Counter:
    """Drop halves that waited longer than their TTL, and joined examples older than the
    retention (0: kept forever); return ``(model, counter) -> n``.

    A dropped row no longer stops a late duplicate of its event: the dedupe horizon of an event
    is the TTL of its half, or the retention once joined.

    Shadow predictions (``shadow_examples``, :mod:`consumers.shadow_join`) go the same way: one
    not joined within ``prediction_ttl_ms`` (its served prediction or that one's label never
    came) is dropped and counted in ``expired_shadows``; a joined one after the retention, in
    ``pruned_shadows``.

    Guarantee with several monitors on PostgreSQL: a half is never deleted while a batch holds
    it between :func:`apply_batch`'s read and its update. The models that have rows to drop are
    locked first (the same transaction-scoped advisory locks, in the same sorted order, that
    :func:`consumers.ingest.commit` takes before the join), and only rows of the locked models
    are counted and deleted, after the locks are held: a batch of the model that started first
    commits first and its joined row is no longer pending; one that starts later reads after
    the deletion and stores its half as new. A model whose rows became due between the first
    read and the locks waits for the next run. On SQLite the transaction is already the only
    writer. Without the locks the join's update found no row: the batch counted the label and
    the join and stored neither (tests/integration/test_expire_locks.py).

    >>> import sqlalchemy as sa
    >>> from driftloop.core.store import metadata
    >>> engine = sa.create_engine("sqlite://")
    >>> metadata.create_all(engine)
    >>> with engine.begin() as conn:
    ...     _ = conn.execute(examples.insert(), [{"model": "m", "event_id": "e1", "label_ts": 1, "label": b"1",
    ...                                           "created_at": 0}])
    ...     dict(expire_pending(conn, now=10_000, prediction_ttl_ms=5_000, label_ttl_ms=5_000))
    {('m', 'expired_labels'): 1}
    """
    tables = ((examples, _expiry_conditions(now, prediction_ttl_ms, label_ttl_ms, joined_retention_ms)),
              (shadow_examples, _shadow_expiry_conditions(now, prediction_ttl_ms, joined_retention_ms)))
    models = sorted({m for table, conds in tables
                     for (m,) in conn.execute(sa.select(table.c.model).distinct().where(sa.or_(*conds.values())))})
    out: Counter = Counter()
    if not models:
        return out
    lock_models(conn, models)
    for table, conds in tables:
        locked = table.c.model.in_(models)
        for name, matches in conds.items():
            cond = sa.and_(locked, matches)
            for model, n in conn.execute(sa.select(table.c.model, sa.func.count()).where(cond)
                                         .group_by(table.c.model)):
                out[(model, name)] += int(n)
            conn.execute(table.delete().where(cond))
    return out


def _expiry_conditions(now: int, prediction_ttl_ms: int, label_ttl_ms: int,
                       joined_retention_ms: int) -> dict[str, sa.ColumnElement[bool]]:
    """Counter name -> which rows it drops."""
    conds = {
        "expired_predictions": sa.and_(examples.c.label_ts.is_(None), examples.c.created_at < now - prediction_ttl_ms),
        "expired_labels": sa.and_(examples.c.pred_ts.is_(None), examples.c.created_at < now - label_ttl_ms),
    }
    if joined_retention_ms > 0:
        conds["pruned_joined"] = sa.and_(examples.c.pred_ts.is_not(None), examples.c.label_ts.is_not(None),
                                         examples.c.created_at < now - joined_retention_ms)
    return conds


def _shadow_expiry_conditions(now: int, prediction_ttl_ms: int,
                              joined_retention_ms: int) -> dict[str, sa.ColumnElement[bool]]:
    """Counter name -> which shadow predictions it drops: unjoined ones after the prediction TTL
    (their served prediction or its label never came), joined ones after the retention."""
    conds = {"expired_shadows": sa.and_(shadow_examples.c.joined_at.is_(None),
                                        shadow_examples.c.created_at < now - prediction_ttl_ms)}
    if joined_retention_ms > 0:
        conds["pruned_shadows"] = sa.and_(shadow_examples.c.joined_at.is_not(None),
                                          shadow_examples.c.created_at < now - joined_retention_ms)
    return conds
