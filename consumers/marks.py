"""What the pipeline saw around each accepted prediction: the per-event marks of the data-quality
checks (:mod:`detectors.data_quality` reads them as window columns).

Validation refuses some events (a string in a numeric feature) and the dedupe drops others (an
``event_id`` seen before); neither reaches the detectors' columns, yet the data-quality checks
need to count them per window. So each accepted event carries marks:

* ``refused``, ``refused:<feature>``, ``duplicates`` (int32): the events dropped since the previous
  accepted event of the model (in stream order), counted on the next accepted one — so that a
  window's sum is the same however the stream was cut into batches, live, replayed or consumed
  again after a crash (detector state is exact across those, byte for byte);
* ``example`` (object): the first refused value among them, ``"<feature>\\0<text>"``, or None;
* ``absent:<feature>`` (int32, 0/1): the event lacked the configured key (not null: absent);
* ``unknown`` (object): the keys the event carried that the model does not configure, joined by
  ``"\\0"``, or None. (U+0000 cannot occur in a key or a value: validation refuses it. Strings, not
  tuples: the journal and detector state keep strings exactly.)

Dropped events after the last accepted one of a batch are the batch's ``trailing`` counts: they
belong to the next accepted event, in a later batch, and the monitor carries them there.

>>> import numpy as np
>>> example = np.full(4, None, dtype=object)
>>> example[1] = "x" + SEP + "'a'"
>>> m = {"refused": np.array([0, 1, 1, 0], np.int32), "example": example}
>>> kept, trailing = fold(m, np.array([0, 3]), 4)
>>> kept["refused"].tolist(), kept["example"].tolist(), trailing
([0, 2], [None, "x\\x00'a'"], {})
>>> kept, trailing = fold(m, np.array([0]), 4)
>>> kept["refused"].tolist(), trailing, fold(m, np.array([], np.int64), 4)[1]["refused"]
([0], {'refused': 2, 'examples': ["x\\x00'a'"]}, 2)
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["fold", "take", "merge_trailing", "FOLDED", "MAX_EXAMPLES", "SEP"]

SEP = "\x00"                             # between a feature and its refused value, and between unknown keys
FOLDED = ("refused", "duplicates")      # and every ``refused:<feature>``: moved onto the next kept event
MAX_EXAMPLES = 5


def _folded(key: str) -> bool:
    return key in FOLDED or key.startswith("refused:")


def take(marks: dict[str, np.ndarray] | None, rows: np.ndarray) -> dict[str, np.ndarray] | None:
    """The marks of some of the events, as they are (the rest goes elsewhere: a version's share)."""
    return None if marks is None else {k: v[rows] for k, v in marks.items()}


def fold(marks: dict[str, np.ndarray], keep: np.ndarray, n: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Keep the events ``keep`` (sorted positions among ``n``) and drop the others: a dropped
    event's counted marks move onto the next kept event, those after the last kept one are
    returned as the trailing counts (with their examples); its own absent/unknown marks go with it.
    """
    keep = np.asarray(keep, dtype=np.int64)
    ends = keep + 1
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64) if len(ends) else ends
    last = int(ends[-1]) if len(ends) else 0
    kept: dict[str, np.ndarray] = {}
    trailing: dict[str, Any] = {}
    for key, col in marks.items():
        if _folded(key):
            cs = np.concatenate([[0], np.cumsum(col, dtype=np.int64)])
            kept[key] = (cs[ends] - cs[starts]).astype(np.int32)
            rest = int(cs[n] - cs[last])
            if rest:
                trailing[key] = rest
        elif key == "example":
            kept[key], rest_examples = _fold_examples(col, starts, ends, last)
            if rest_examples:
                trailing["examples"] = rest_examples
        else:
            kept[key] = col[keep]
    return kept, trailing


def _fold_examples(col: np.ndarray, starts: np.ndarray, ends: np.ndarray, last: int) -> tuple[np.ndarray, list]:
    """Each kept event's first example among the events folded onto it; those after ``last``."""
    out = np.full(len(ends), None, dtype=object)
    where = np.flatnonzero(np.array([v is not None for v in col], dtype=bool))
    if len(where):
        first = np.searchsorted(where, starts)
        for i in np.flatnonzero(first < len(where)):
            pos = where[first[i]]
            if pos < ends[i]:
                out[i] = col[pos]
    rest = [col[p] for p in where[where >= last][:MAX_EXAMPLES]]
    return out, rest


def merge_trailing(into: dict[str, Any], more: dict[str, Any] | None) -> dict[str, Any]:
    """Add trailing counts ``more`` to ``into`` (in place; returns it): counts add up, examples
    are kept up to :data:`MAX_EXAMPLES`.

    >>> merge_trailing({"refused": 1, "examples": ["a"]}, {"refused": 2, "duplicates": 1, "examples": ["b"]})
    {'refused': 3, 'examples': ['a', 'b'], 'duplicates': 1}
    """
    for key, value in (more or {}).items():
        if key == "examples":
            kept = into.setdefault("examples", [])
            kept.extend(value[: MAX_EXAMPLES - len(kept)])
        else:
            into[key] = int(into.get(key, 0)) + int(value)
    return into
