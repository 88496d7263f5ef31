"""Semantic validation of decoded events, one model's batch at a time, column by column.

msgspec has already checked the JSON types (see :mod:`driftloop.core.events`). What remains is what a
schema cannot say: the model is configured, the timestamp parses and is not in the future,
numeric features are numbers, strings are not huge, scores are probabilities, a regression
model predicts numbers. The checks run over columns (numpy where it helps), and the same pass
builds the columns the detectors consume, so validation costs one walk over the batch.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np

from consumers.marks import SEP, fold, merge_trailing
from consumers.marks import take as marks_take
from consumers.ranking_validation import ranking_labels, ranking_predictions, refuse_lists
from driftloop.core.config import Config, ModelConfig
from driftloop.core.events import LabelEvent, PredictionEvent, label_key

__all__ = ["ValidPredictions", "ValidLabels", "validate_predictions", "validate_labels", "split_shadows", "parse_ts",
           "MIN_TS_MS", "SHADOW_NEEDS_VERSION"]

_FLOAT, _STR, _BOOL, _NONE = float, str, bool, type(None)


# RFC 3339 date-time (section 5.6): "T", "t" or a space between date and time; "Z", "z" or +-HH:MM
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
                      r"(?:([Zz])|([+-])(\d{2}):(\d{2}))?", re.ASCII)   # ASCII: not full-width digits
_RFC3339_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?",
                            re.ASCII).fullmatch
_EPOCH_DAY = date(1970, 1, 1).toordinal()
MIN_TS_MS = 100_000_000_000
"""The earliest accepted ``ts``, 1973-03-03T09:46:40Z: a smaller epoch value is almost surely in seconds."""
_INT64_MAX = 2**63 - 1
SHADOW_NEEDS_VERSION = "model_version: a shadow prediction must name its version"
_shadow = attrgetter("shadow")


def parse_ts(value: int | str) -> int:
    """Epoch milliseconds of an event's ``ts`` (RFC 3339 with offset, or epoch ms).

    Strict RFC 3339: ISO 8601 forms it does not include (week dates, ``20240101T...``, a date
    alone) are refused; a leap second (``23:59:60``) counts as the next second, as POSIX time does.

    >>> parse_ts("2024-01-01T00:00:00Z"), parse_ts("2024-01-01T01:00:00.5+01:00"), parse_ts(5)
    (1704067200000, 1704067200500, 5)
    >>> parse_ts("2016-12-31T23:59:60Z") == parse_ts("2017-01-01T00:00:00Z")
    True
    """
    if type(value) is int:
        return value
    text: str = value  # type: ignore[assignment]  # not an int: a str (anything else fails below, as before)
    if _RFC3339_SHAPE(text) is not None:      # the usual string: C parses it
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            pass                               # a leap second, a lowercase t/z, a bad date: below
        else:
            if dt.tzinfo is None:
                raise ValueError("RFC 3339 timestamp needs a time-zone offset (e.g. 'Z')")
            return int(dt.timestamp() * 1000 + 0.5)
    return _parse_rfc3339(text)


def _parse_rfc3339(value: str) -> int:
    m = _RFC3339.fullmatch(value)
    if m is None:
        raise ValueError(f"{value[:40]!r} is not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.fff]Z or +HH:MM)")
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = m.groups()
    if zulu is None and sign is None:
        raise ValueError("RFC 3339 timestamp needs a time-zone offset (e.g. 'Z')")
    h, mi, s = int(hour), int(minute), int(second)
    if h > 23 or mi > 59 or s > 60:
        raise ValueError(f"time {hour}:{minute}:{second} out of range")
    days = date(int(year), int(month), int(day)).toordinal() - _EPOCH_DAY   # checks the date
    secs = days * 86_400 + h * 3600 + mi * 60 + s
    if sign is not None:
        oh, om = int(off_h), int(off_m)
        if oh > 23 or om > 59:
            raise ValueError(f"time-zone offset {sign}{off_h}:{off_m} out of range")
        secs -= (oh * 3600 + om * 60) * (1 if sign == "+" else -1)
    ms = secs * 1000
    if frac:
        ms += (int(frac[:6].ljust(6, "0")) + 500) // 1000      # nearest millisecond, from microseconds
    return ms


@dataclass(slots=True)
class ValidPredictions:
    """Accepted prediction events of one model, with their columns."""

    model: str
    events: list[PredictionEvent]
    index: np.ndarray                    # positions in the input list (to map back to sources)
    ts: np.ndarray                       # int64 epoch ms
    features: dict[str, np.ndarray]      # numeric float64 (NaN = null), categorical object (str/None)
    prediction: np.ndarray               # object str (classification) or float64 (regression)
    scores: np.ndarray | None = None     # (n, k) float64, NaN where absent
    classes: list[str] = field(default_factory=list)
    # each event's JSON as received when the message held just it (stored as is), else None
    payloads: list[bytes | None] | None = None
    # what the pipeline saw around each event (consumers.marks: refused and duplicated events
    # before it, its absent and unknown keys), aligned with the events; and what it saw after the
    # last of them (``trailing``: counts for the next accepted event, in a later batch)
    marks: dict[str, np.ndarray] | None = None
    trailing: dict[str, Any] | None = None

    def take(self, rows: np.ndarray) -> ValidPredictions:
        """Some of the events, with their marks as they are (e.g. one version's share of them)."""
        return ValidPredictions(
            self.model, [self.events[i] for i in rows], self.index[rows], self.ts[rows],
            {k: v[rows] for k, v in self.features.items()}, self.prediction[rows],
            None if self.scores is None else self.scores[rows], self.classes,
            None if self.payloads is None else [self.payloads[i] for i in rows], marks_take(self.marks, rows))

    def keep(self, rows: np.ndarray, dropped: str | None = None) -> ValidPredictions:
        """The events ``rows`` (sorted), the others dropped: counted on the next kept event as
        ``dropped`` (e.g. ``duplicates``), their own counted marks moved there too, those after
        the last kept event added to ``trailing`` (:func:`consumers.marks.fold`)."""
        rows = np.asarray(rows, dtype=np.int64)
        marks = dict(self.marks or {})
        if dropped is not None:
            mark = np.ones(len(self.ts), dtype=np.int32)
            mark[rows] = 0
            marks[dropped] = marks.get(dropped, np.zeros(len(self.ts), np.int32)) + mark
        kept, trailing = fold(marks, rows, len(self.ts))
        out = self.take(rows)
        out.marks = kept
        out.trailing = merge_trailing(dict(self.trailing or {}), trailing)
        return out


@dataclass(slots=True)
class ValidLabels:
    model: str
    events: list[LabelEvent]
    index: np.ndarray
    ts: np.ndarray
    label: np.ndarray                    # object str (classification) or float64 (regression)


class _Rejects:
    """First reason per row; rows marked here are dropped from the accepted columns."""

    def __init__(self, n: int) -> None:
        self.ok = np.ones(n, dtype=bool)
        self.reasons: dict[int, str] = {}

    def mark(self, rows: Any, reason: Any) -> None:
        """Refuse ``rows`` (unless refused already) for ``reason``: a text, or a function of the row."""
        for r in np.atleast_1d(np.asarray(rows, dtype=np.int64)).tolist():
            if self.ok[r]:
                self.ok[r] = False
                self.reasons[r] = reason(r) if callable(reason) else reason


def _group(events: list[Any], cfg: Config, errors: list[tuple[int, str]]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, ev in enumerate(events):
        if ev.schema_version != 1:
            errors.append((i, f"unknown schema_version {ev.schema_version} (this driftloop reads 1)"))
        elif ev.model in cfg.models:
            groups[ev.model].append(i)
        else:
            errors.append((i, f"unknown model {ev.model!r} (not in the configuration)"))
    return groups


def _timestamps(values: list[Any], rej: _Rejects, max_ts: int) -> np.ndarray:
    ts = None
    if set(map(type, values)) <= {int}:
        try:
            ts = np.fromiter(values, dtype=np.int64, count=len(values)) if values else np.zeros(0, np.int64)
        except OverflowError:          # an integer beyond 64 bits: sorted out one by one below
            ts = None
    if ts is None:
        ts = np.zeros(len(values), dtype=np.int64)
        for i, v in enumerate(values):
            try:
                ms = parse_ts(v)
            except ValueError as exc:
                rej.mark(i, f"ts: not an RFC 3339 timestamp or epoch milliseconds ({exc})")
                continue
            ts[i] = min(ms, _INT64_MAX)   # (beyond 64 bits: refused below as too far in the future)
    early = np.flatnonzero(ts < MIN_TS_MS)
    if len(early):
        rej.mark(early, lambda r: (f"ts: {values[r]} is before 1973-03-03 as epoch milliseconds; epoch seconds? "
                                   "(ts is in milliseconds)") if type(values[r]) is int and values[r] > 0
                 else "ts: before 1973-03-03T09:46:40Z, the earliest accepted")
    late = np.flatnonzero(ts > min(max_ts, _INT64_MAX))
    if len(late):
        rej.mark(late, lambda r: _future_reason(values[r]))
    return ts


def _future_reason(value: Any) -> str:
    ms = parse_ts(value)
    hint = (" epoch microseconds or nanoseconds? (ts is in milliseconds)"
            if type(value) is int and 10**14 < ms < 10**20 else " clock skew?")
    return f"ts: {str(value)[:40]} is further in the future than ingest.max_future_skew_s allows;{hint}"


def _feature_lists(evs: list[PredictionEvent], names: list[str]) -> tuple[list[list[Any] | tuple[Any, ...]], bool]:
    """One list per configured feature (None where an event lacks it), in ``names`` order, and
    whether every event carried every one of them.

    The usual batch, where every event carries every configured feature, is transposed in C
    (one ``itemgetter`` call per event, then ``zip``); a batch with gaps falls back to ``get``.

    >>> ev = lambda **f: PredictionEvent(event_id="e", model="m", ts=1, features=f, prediction=1)
    >>> _feature_lists([ev(a=1.0, b="x"), ev(a=2.0, b="y")], ["a", "b"])
    ([(1.0, 2.0), ('x', 'y')], True)
    >>> _feature_lists([ev(a=1.0), ev(a=2.0, b="y")], ["a", "b"])
    ([[1.0, 2.0], [None, 'y']], False)
    """
    if not names or not evs:
        return [[] for _ in names], True
    get_all = itemgetter(*names)
    try:
        rows = [get_all(e.features) for e in evs]
    except KeyError:
        return [[e.features.get(name) for e in evs] for name in names], False
    return ([rows] if len(names) == 1 else list(zip(*rows))), True


_MAX_UNKNOWN_KEYS = 20   # distinct keys the model does not configure, marked per model and batch


def _schema_marks(evs: list[PredictionEvent], names: list[str], complete: bool) -> dict[str, np.ndarray]:
    """Each event's configured keys absent (``absent:<feature>``) and unconfigured keys present
    (``unknown``), as marks (:mod:`consumers.marks`). The usual batch (every event has exactly the
    configured keys) costs one length per event and has none.

    >>> ev = lambda **f: PredictionEvent(event_id="e", model="m", ts=1, features=f, prediction=1)
    >>> m = _schema_marks([ev(a=1.0, c=2.0), ev(a=2.0, b=1.0)], ["a", "b"], complete=False)
    >>> m["absent:b"].tolist(), m["unknown"].tolist()
    ([1, 0], ['c', None])
    """
    if complete and all(len(e.features) == len(names) for e in evs):
        return {}
    configured = set(names)
    absent = {name: np.zeros(len(evs), dtype=np.int32) for name in names}
    unknown = np.full(len(evs), None, dtype=object)
    seen: set[str] = set()
    for i, e in enumerate(evs):
        keys = e.features.keys()
        for name in configured - keys:
            absent[name][i] = 1
        extra = [k for k in keys - configured if k in seen or len(seen) < _MAX_UNKNOWN_KEYS]
        if extra:
            seen.update(extra)
            unknown[i] = SEP.join(sorted(extra))
    out: dict[str, np.ndarray] = {f"absent:{k}": v for k, v in absent.items() if v.any()}
    if seen:
        out["unknown"] = unknown
    return out


def _type_marks(bad: dict[str, list[tuple[int, str]]], n: int) -> dict[str, np.ndarray]:
    """The events refused for a feature's type, as marks: ``refused`` (once per event),
    ``refused:<feature>`` and the first refused value as ``example``."""
    if not bad:
        return {}
    out: dict[str, np.ndarray] = {}
    example = np.full(n, None, dtype=object)
    for name, rows in bad.items():
        col = np.zeros(n, dtype=np.int32)
        for r, text in rows:
            col[r] = 1
            if example[r] is None:
                example[r] = f"{name}{SEP}{text}"
        out[f"refused:{name}"] = col
    out["refused"] = np.array([v is not None for v in example], dtype=np.int32)
    out["example"] = example
    return out


def _numeric_column(name: str, col: list[Any] | tuple[Any, ...], rej: _Rejects,
                    bad: dict[str, list[tuple[int, str]]] | None = None) -> np.ndarray:
    """A numeric feature's values; an event with another type is refused, and its row and value
    noted in ``bad[name]`` (the data-quality checks count them)."""
    kinds = set(map(type, col))
    if kinds <= {_FLOAT, _NONE}:
        return np.array(col, dtype=np.float64)
    out = np.full(len(col), np.nan)
    for i, v in enumerate(col):
        if type(v) is _FLOAT:
            out[i] = v
        elif v is not None:
            text = f"{type(v).__name__} {str(v)[:40]!r}"
            if bad is not None:
                bad.setdefault(name, []).append((i, text))
            rej.mark(i, f"features.{name}: expected a number or null for a numeric feature, got {text}")
    return out


def _categorical_column(name: str, col: list[Any] | tuple[Any, ...], rej: _Rejects, max_chars: int) -> np.ndarray:
    kinds = set(map(type, col))
    arr = np.empty(len(col), dtype=object)
    arr[:] = col if kinds <= {_STR, _NONE} else [v if type(v) is _STR else label_key(v) for v in col]
    if _STR in kinds:
        too_long = [i for i, v in enumerate(col) if type(v) is _STR and len(v) > max_chars]
        rej.mark(too_long, f"features.{name}: string longer than {max_chars} characters")
    return arr


def _classes(values: list[Any], rej: _Rejects, field_name: str, max_chars: int) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    kinds = set(map(type, values))
    if kinds <= {_STR, int}:     # the usual classes: str() in C is label_key's text for both
        arr[:] = list(map(str, values))
    else:
        arr[:] = [v if type(v) is _STR else label_key(v) for v in values]
    long_rows = [i for i, v in enumerate(arr) if len(v) > max_chars]
    rej.mark(long_rows, f"{field_name}: class label longer than {max_chars} characters")
    empty = [i for i, v in enumerate(arr) if v == ""]
    rej.mark(empty, f"{field_name}: empty class label")
    return arr


def _regression_values(values: list[Any], rej: _Rejects, field_name: str) -> np.ndarray:
    if set(map(type, values)) <= {_FLOAT}:
        return np.array(values, dtype=np.float64)
    out = np.zeros(len(values))
    for i, v in enumerate(values):
        if type(v) is _FLOAT:
            out[i] = v
        else:
            rej.mark(i, f"{field_name}: a regression model needs a number, got {type(v).__name__}")
    return out


def _same_keyed_scores(events: list[PredictionEvent], max_classes: int) -> tuple[np.ndarray, list[str]] | None:
    """The score matrix when every event scores the same classes (the usual batch), else None."""
    first = events[0].scores
    if not first or len(first) > max_classes:
        return None
    keys = list(first)
    k = len(keys)
    get = itemgetter(*keys)
    try:
        if any(len(e.scores) != k for e in events):       # type: ignore[arg-type]  # None raises TypeError: below
            return None
        mat = np.array([get(e.scores) for e in events], dtype=np.float64)  # type: ignore[arg-type]  # as above
    except (KeyError, TypeError):                            # a class missing, or no scores
        return None
    return mat.reshape(len(events), k), keys


def _scores(events: list[PredictionEvent], rej: _Rejects, max_classes: int) -> tuple[np.ndarray | None, list[str]]:
    if all(e.scores is None for e in events):
        return None, []
    same = _same_keyed_scores(events, max_classes)
    if same is not None:
        mat, classes_list = same
        rej.mark(np.flatnonzero(((mat < 0) | (mat > 1)).any(axis=1)), "scores: probabilities must lie in [0, 1]")
        return mat, classes_list
    classes: dict[str, int] = {}
    for i, e in enumerate(events):
        if e.scores:
            if len(e.scores) > max_classes:
                rej.mark(i, f"scores: {len(e.scores)} classes > limit {max_classes}")
                continue
            for k in e.scores:
                if k not in classes:
                    classes[k] = len(classes)
    mat = np.full((len(events), len(classes)), np.nan)
    for i, e in enumerate(events):
        if e.scores and rej.ok[i]:
            for k, v in e.scores.items():
                mat[i, classes[k]] = v
    bad = np.flatnonzero(((mat < 0) | (mat > 1)).any(axis=1))
    rej.mark(bad, "scores: probabilities must lie in [0, 1]")
    return mat, list(classes)


def validate_predictions(events: list[PredictionEvent], cfg: Config, now_ms: int
                         ) -> tuple[dict[str, ValidPredictions], list[tuple[int, str]]]:
    """Split prediction events into per-model accepted columns and ``(position, reason)`` errors."""
    errors: list[tuple[int, str]] = []
    out: dict[str, ValidPredictions] = {}
    lim = cfg.ingest
    max_ts = now_ms + int(lim.max_future_skew_s * 1000)
    for model, idx in _group(events, cfg, errors).items():
        mcfg: ModelConfig = cfg.models[model]
        evs = [events[i] for i in idx]
        rej = _Rejects(len(evs))
        too_many = [i for i, e in enumerate(evs) if len(e.features) > lim.max_features]
        rej.mark(too_many, lambda r: f"features: {len(evs[r].features)} features > limit {lim.max_features}")  # noqa: B023 - called by mark() within this iteration
        if any(map(_shadow, evs)):        # contract v1.1: a shadow names the challenger that answered
            rej.mark([i for i, e in enumerate(evs) if e.shadow and e.model_version is None], SHADOW_NEEDS_VERSION)
        ts = _timestamps([e.ts for e in evs], rej, max_ts)
        cols: dict[str, np.ndarray] = {}
        lists, complete = _feature_lists(evs, list(mcfg.features))
        bad: dict[str, list[tuple[int, str]]] = {}
        for (name, kind), col in zip(mcfg.features.items(), lists):
            cols[name] = (_numeric_column(name, col, rej, bad) if kind == "numeric"
                          else _categorical_column(name, col, rej, lim.max_string_chars))
        preds = [e.prediction for e in evs]
        if mcfg.task == "ranking":
            prediction, scores, classes = ranking_predictions(evs, rej, lim.max_string_chars)
        else:
            refuse_lists(preds, rej, "prediction", mcfg.task)
            if mcfg.task == "classification":
                prediction = _classes(preds, rej, "prediction", lim.max_string_chars)
            else:
                prediction = _regression_values(preds, rej, "prediction")
            scores, classes = _scores(evs, rej, lim.max_features)
        for r, reason in rej.reasons.items():
            errors.append((idx[r], reason))
        keep = np.flatnonzero(rej.ok)
        marks = {**_schema_marks(evs, list(mcfg.features), complete), **_type_marks(bad, len(evs))}
        vp = ValidPredictions(model, evs, np.asarray(idx, dtype=np.int64), ts, cols, prediction, scores, classes,
                              marks=marks)
        out[model] = vp if len(keep) == len(evs) else vp.keep(keep)
    return out, errors


def split_shadows(valid: dict[str, ValidPredictions]
                  ) -> tuple[dict[str, ValidPredictions], dict[str, ValidPredictions]]:
    """``(served, shadows)``: each model's accepted predictions split on the ``shadow`` flag
    (contract v1.1). Shadows are kept apart: they are never deduped against, nor stored as, the
    served prediction with their ``event_id``. A batch without shadows costs one scan of the flag.

    >>> ev = lambda i, **kw: PredictionEvent(event_id=f"e{i}", model="m", ts=10**12, features={}, prediction=1, **kw)
    >>> vp = ValidPredictions("m", [ev(0), ev(0, shadow=True, model_version="v2")], np.arange(2),
    ...                       np.zeros(2, np.int64), {}, np.array(["1", "1"], dtype=object))
    >>> served, shadows = split_shadows({"m": vp})
    >>> [e.shadow for e in served["m"].events], [e.model_version for e in shadows["m"].events]
    ([False], ['v2'])
    """
    served: dict[str, ValidPredictions] = {}
    shadows: dict[str, ValidPredictions] = {}
    for model, vp in valid.items():
        if not any(map(_shadow, vp.events)):     # the usual batch: ~0.06 us per event
            served[model] = vp
            continue
        flags = np.fromiter(map(_shadow, vp.events), dtype=bool, count=len(vp.events))
        shadows[model] = vp.take(np.flatnonzero(flags))
        if not flags.all():
            served[model] = vp.take(np.flatnonzero(~flags))
            served[model].trailing = vp.trailing
    return served, shadows


def validate_labels(events: list[LabelEvent], cfg: Config, now_ms: int
                    ) -> tuple[dict[str, ValidLabels], list[tuple[int, str]]]:
    """Split label events into per-model accepted columns and ``(position, reason)`` errors."""
    errors: list[tuple[int, str]] = []
    out: dict[str, ValidLabels] = {}
    max_ts = now_ms + int(cfg.ingest.max_future_skew_s * 1000)
    for model, idx in _group(events, cfg, errors).items():
        evs = [events[i] for i in idx]
        rej = _Rejects(len(evs))
        ts = _timestamps([e.ts for e in evs], rej, max_ts)
        values = [e.label for e in evs]
        task = cfg.models[model].task
        if task == "ranking":
            label = ranking_labels(values, rej, cfg.ingest.max_string_chars)
        else:
            refuse_lists(values, rej, "label", task)
            if task == "classification":
                label = _classes(values, rej, "label", cfg.ingest.max_string_chars)
            else:
                label = _regression_values(values, rej, "label")
        for r, reason in rej.reasons.items():
            errors.append((idx[r], reason))
        keep = np.flatnonzero(rej.ok)
        out[model] = ValidLabels(model, [evs[i] for i in keep], np.asarray(idx, dtype=np.int64)[keep],
                                 ts[keep], label[keep])
    return out, errors
