"""A job's training set: the joined labelled examples of its window, in time order.

Rows come from the ``examples`` table (the prediction event's JSON and the label's JSON, joined
by the monitor). The columns are built exactly as the monitor builds them
(:func:`consumers.validation.validate_predictions`): numeric features ``float64`` with ``NaN``,
categorical features strings; class labels as their canonical text
(:func:`driftloop.core.events.label_key`), regression targets as floats. The events' own
``prediction``/``scores`` (what the serving model said) come along as ``logged`` outputs.

The selection is reproducible: ``start_ts <= pred_ts <= end_ts`` and ``joined_at <= as_of``,
the ``max_rows`` most recent by ``(pred_ts, event_id)``; a job redone after a crash trains on
the same rows. The held-out part is always the most recent ``holdout_fraction`` of the window
(never reference rows), so the comparison is on the newest data, which neither model saw.

>>> import numpy as np
>>> train, hold = holdout_split(10, fraction=0.2, min_holdout=2)
>>> train.tolist(), hold.tolist()
([0, 1, 2, 3, 4, 5, 6, 7], [8, 9])
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from consumers.validation import validate_predictions
from detectors.ranking_lists import as_json
from detectors.ranking_monitor import encoded_lists
from driftloop.core.config import Config
from driftloop.core.events import PredictionEvent, label_key
from driftloop.core.store import Store
from retrain.evaluate import Outputs
from retrain.events import JobWindow

__all__ = ["DatasetError", "LabelledData", "load_window", "frame_to_data", "holdout_split", "concat"]

_pred_dec = msgspec.json.Decoder(PredictionEvent)
_json_dec = msgspec.json.Decoder()
_CHUNK = 20_000


class DatasetError(ValueError):
    """Not enough (valid) labelled data for the job."""


@dataclass(slots=True)
class LabelledData:
    """Labelled rows in time order: features ``X``, labels ``y``, prediction time ``ts``."""

    X: pd.DataFrame
    y: np.ndarray
    ts: np.ndarray
    event_ids: np.ndarray
    logged: Outputs | None = None     # the served predictions/scores, if the rows are events
    dropped: int = 0                  # rows left out (invalid against the current config)

    @property
    def n(self) -> int:
        return len(self.y)

    def take(self, rows: np.ndarray) -> LabelledData:
        logged = None
        if self.logged is not None:
            lg = self.logged
            logged = Outputs(lg.prediction[rows], None if lg.scores is None else lg.scores[rows], lg.classes)
        return LabelledData(self.X.iloc[rows].reset_index(drop=True), self.y[rows], self.ts[rows],
                            self.event_ids[rows], logged, 0)

    def frame(self, label: str = "label", *, task: str | None = None) -> pd.DataFrame:
        """Features plus the ``label`` column (the registry's sample layout; a ranking model's
        labels as JSON text, see :func:`detectors.ranking_lists.as_json`)."""
        df = self.X.copy()
        df[label] = [as_json(v, relevance=True) for v in self.y] if task == "ranking" else self.y
        return df


def _label_column(values: list[Any], task: str, *, encoded: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Labels in the training layout, and a mask of the usable ones. A ranking model's label is
    its encoded relevance (detectors.ranking_lists); an empty one (nothing engaged) is usable.
    ``encoded``: the values are the store's, encoded by validation already (never read as JSON:
    an item id may start with a bracket); else a sample's (lists, objects or their JSON text)."""
    if task == "ranking":
        arr = np.empty(len(values), dtype=object)
        if encoded:
            arr[:] = [v if isinstance(v, str) else None for v in values]
        else:
            arr = encoded_lists(values, relevance=True)
        return arr, np.array([v is not None for v in arr.tolist()], dtype=bool)
    if task == "classification":
        arr = np.empty(len(values), dtype=object)
        arr[:] = [label_key(v) for v in values]
        ok = np.array([v is not None and v != "" for v in arr.tolist()], dtype=bool)
        return arr, ok
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[i] = float(v)
    return out, np.isfinite(out)


def _reader_rows(store: Store, sql: str, params: tuple) -> list[tuple]:
    """Run one SELECT on a raw DBAPI connection, outside any transaction.

    On SQLite the store's connections start every transaction with ``BEGIN IMMEDIATE``
    (the write lock); reading a large window through them would stall the monitor's batch
    commits. A plain autocommit SELECT reads a consistent WAL snapshot without that lock.
    """
    if not store.is_sqlite:
        sql = sql.replace("?", "%s")
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        try:
            cur.execute(sql, params)
            return cur.fetchall()  # type: ignore[return-value]  # a list of tuples (DB-API)
        finally:
            cur.close()
    finally:
        raw.close()


_SELECT = ("SELECT event_id, pred_ts, payload, label FROM examples "
           "WHERE model = ? AND joined_at IS NOT NULL AND joined_at <= ? AND pred_ts >= ? AND pred_ts <= ? "
           "ORDER BY pred_ts DESC, event_id DESC LIMIT ?")


def load_window(store: Store, cfg: Config, model: str, window: JobWindow) -> LabelledData:
    """The window's joined labelled examples, oldest first (see the module docstring)."""
    mcfg = cfg.models[model]
    rows = _reader_rows(store, _SELECT, (model, window.as_of, window.start_ts, window.end_ts, window.max_rows))
    rows.reverse()
    feats: dict[str, list[np.ndarray]] = {f: [] for f in mcfg.features}
    ys: list[np.ndarray] = []
    tss: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    preds: list[np.ndarray] = []
    score_parts: list[tuple[np.ndarray | None, list[str]]] = []
    dropped = 0
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start:start + _CHUNK]
        events: list[PredictionEvent] = []
        labels: list[Any] = []
        for _eid, _ts, payload, label in chunk:
            try:
                ev = _pred_dec.decode(bytes(payload))
                lab = _json_dec.decode(bytes(label))
            except (msgspec.DecodeError, msgspec.ValidationError, TypeError):
                dropped += 1
                continue
            ev.model = model
            events.append(ev)
            labels.append(lab)
        valid, _errors = validate_predictions(events, cfg, now_ms=2**62)
        vp = valid.get(model)
        if vp is None or len(vp.index) == 0:
            dropped += len(events)
            continue
        y_all, ok_all = _label_column(labels, mcfg.task, encoded=True)
        keep = ok_all[vp.index]
        dropped += len(events) - int(keep.sum())
        sel = np.flatnonzero(keep)
        for f in mcfg.features:
            feats[f].append(vp.features[f][sel])
        ys.append(y_all[vp.index[sel]])
        tss.append(vp.ts[sel])
        ids.append(np.asarray([vp.events[i].event_id for i in sel.tolist()], dtype=object))
        preds.append(vp.prediction[sel])
        score_parts.append((None if vp.scores is None else vp.scores[sel], vp.classes))
    if not ys:
        empty = LabelledData(pd.DataFrame({f: np.empty(0) for f in mcfg.features}), np.empty(0, dtype=object),
                             np.empty(0, dtype=np.int64), np.empty(0, dtype=object), None, dropped)
        return empty
    X = pd.DataFrame({f: np.concatenate(parts) for f, parts in feats.items()})
    y = np.concatenate(ys)
    logged = Outputs(np.concatenate(preds), *_merge_scores(score_parts))
    return LabelledData(X, y, np.concatenate(tss), np.concatenate(ids), logged, dropped)


def _merge_scores(parts: list[tuple[np.ndarray | None, list[str]]]) -> tuple[np.ndarray | None, list[str]]:
    classes = list(dict.fromkeys(c for _, cl in parts for c in cl))
    if not classes:
        return None, []
    blocks = []
    for scores, cl in parts:
        n = 0 if scores is None else scores.shape[0]
        block = np.full((n, len(classes)), np.nan)
        if scores is not None:
            for j, c in enumerate(cl):
                block[:, classes.index(c)] = scores[:, j]
        blocks.append(block)
    mat = np.vstack(blocks)
    if np.isnan(mat).any():      # some rows without scores: the logged scores are not usable
        return None, []
    return mat, classes


def frame_to_data(df: pd.DataFrame, features: Mapping[str, str], task: str, *, label: str = "label") -> LabelledData:
    """Rows of a reference sample (features + ``label``) in the training layout."""
    from detectors.reference import to_float_array, to_str_array

    missing = [c for c in [*features, label] if c not in df.columns]
    if missing:
        raise DatasetError(f"the reference sample lacks the columns {missing}")
    cols: dict[str, np.ndarray] = {}
    for f, t in features.items():
        try:
            cols[f] = to_float_array(df[f].to_numpy()) if t == "numeric" else to_str_array(df[f].to_numpy())
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"the reference sample's column {f!r} is not numeric: {exc}") from None
    y, ok = _label_column(df[label].to_numpy(dtype=object).tolist(), task)
    sel = np.flatnonzero(ok)
    X = pd.DataFrame({f: v[sel] for f, v in cols.items()})
    n = len(sel)
    return LabelledData(X, y[sel], np.zeros(n, dtype=np.int64), np.asarray([f"ref-{i}" for i in sel], dtype=object),
                        None, len(df) - n)


def concat(first: LabelledData, second: LabelledData) -> LabelledData:
    """Rows of ``first`` then ``second`` (logged outputs are dropped)."""
    X = pd.concat([first.X, second.X], ignore_index=True)
    return LabelledData(X, np.concatenate([first.y, second.y]), np.concatenate([first.ts, second.ts]),
                        np.concatenate([first.event_ids, second.event_ids]), None, first.dropped + second.dropped)


def holdout_split(n: int, *, fraction: float, min_holdout: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training rows and of the held-out (most recent) rows of ``n`` rows."""
    n_hold = max(int(round(n * fraction)), min_holdout)
    if n_hold >= n:
        raise DatasetError(f"{n} labelled rows cannot give {n_hold} held-out rows and a training set")
    return np.arange(n - n_hold), np.arange(n - n_hold, n)
