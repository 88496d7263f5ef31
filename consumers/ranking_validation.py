"""Validation of a ranking model's predictions and labels (contract v1.1, ``task: ranking``).

A prediction is the ranked list of item ids shown (best first, at most :data:`MAX_ITEMS`),
optionally with ``scores`` item id → score; a label is the list of items engaged with or an
object item id → graded relevance (a number ≥ 0); an empty list is a valid label (nothing was
engaged). What msgspec's schema cannot say is checked here, each refusal naming the field:
the list's length, a repeated item, ids of mixed types in one list, an empty or oversized id,
a negative or infinite relevance, a score for an item not shown.

Accepted values leave as one text each (:mod:`detectors.ranking_lists`), so the rest of the
pipeline (journal, store, join, windows) carries them as it carries class labels. Scores become
two numeric columns for score drift: the top item's score (``score@1``) and the list's mean
(``score_mean``), NaN without scores.

>>> class Rej:
...     def __init__(self): self.reasons = {}
...     def mark(self, rows, reason): self.reasons.update({r: reason for r in np.atleast_1d(rows).tolist()})
>>> rej = Rej()
>>> ranking_labels([[7, 3], {"a": 2.0}, [], ["a", "a"], {"b": -1.0}, 3.0, ["a", 7]], rej, 100).tolist()[:3]
['7\\x1f3', 'a\\x1e2.0', '']
>>> for i in (3, 4, 5, 6): print(rej.reasons[i])
label: item 'a' appears twice in the list (positions 1 and 2)
label: relevance of item 'b' is -1.0; a relevance is a number >= 0
label: a ranking model's label is a list of item ids or an object item id -> relevance, got float
label: item ids of mixed types (int and str) in one list
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from detectors.ranking_lists import ITEM_SEP, REL_SEP, encode_ranking, encode_relevance
from driftloop.core.events import PredictionEvent

__all__ = ["MAX_ITEMS", "SCORE_COLUMNS", "ranking_predictions", "ranking_labels", "refuse_lists",
           "encode_ranking"]   # encode_ranking: for the ingest modules (the layers rule lets only this one reach it)

MAX_ITEMS = 1000
"""Items in one ranked list or label, at most (contract v1.1)."""
SCORE_COLUMNS = ["score@1", "score_mean"]
"""The score columns of a ranking model's batches: its top item's score, and its list's mean score."""


class Rejects(Protocol):
    def mark(self, rows: Any, reason: Any) -> None: ...


def _list_problem(items: list[Any], field: str, max_chars: int) -> str | None:
    """Why a list of item ids is refused, else None."""
    if len(items) > MAX_ITEMS:
        return f"{field}: {len(items):,} items > limit {MAX_ITEMS:,}"
    kinds = set(map(type, items))
    if len(kinds) > 1:
        return f"{field}: item ids of mixed types ({' and '.join(sorted(k.__name__ for k in kinds))}) in one list"
    if str in kinds:
        for i, item in enumerate(items):
            if problem := _id_problem(item, max_chars):
                return f"{field}[{i}]: {problem}"
    if len(set(items)) < len(items):
        seen: dict[Any, int] = {}
        for i, item in enumerate(items):
            if item in seen:
                return f"{field}: item {item!r} appears twice in the list (positions {seen[item] + 1} and {i + 1})"
            seen[item] = i
    return None


def _id_problem(item: str, max_chars: int) -> str | None:
    if not item:
        return "empty item id"
    if len(item) > max_chars:
        return f"item id longer than {max_chars} characters"
    if ITEM_SEP in item or REL_SEP in item:
        return "item id holds a control character (U+001E or U+001F)"
    return None


def _relevance_problem(label: dict[str, float], max_chars: int) -> str | None:
    if len(label) > MAX_ITEMS:
        return f"label: {len(label):,} items > limit {MAX_ITEMS:,}"
    for item, rel in label.items():
        if problem := _id_problem(item, max_chars):
            return f"label[{item[:40]!r}]: {problem}"
        if not math.isfinite(rel):
            return f"label: relevance of item {item!r} is not a finite number"
        if rel < 0:
            return f"label: relevance of item {item!r} is {rel!r}; a relevance is a number >= 0"
    return None


def ranking_labels(values: Sequence[Any], rej: Rejects, max_chars: int) -> np.ndarray:
    """Labels as encoded relevance texts; refused rows marked in ``rej`` (their text is "")."""
    out = np.full(len(values), "", dtype=object)
    for i, v in enumerate(values):
        if type(v) is list:
            problem = _list_problem(v, "label", max_chars)
        elif type(v) is dict:
            problem = _relevance_problem(v, max_chars)
        else:
            problem = ("label: a ranking model's label is a list of item ids or an object item id -> relevance, "
                       f"got {type(v).__name__}")
        if problem:
            rej.mark(i, problem)
        else:
            out[i] = encode_relevance(v)
    return out


def ranking_predictions(events: Sequence[PredictionEvent], rej: Rejects, max_chars: int
                        ) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """``(prediction, scores, SCORE_COLUMNS)``: the ranked lists encoded and the two score
    columns (None when no event has scores); refused rows marked in ``rej``."""
    prediction = np.full(len(events), "", dtype=object)
    scored = any(e.scores for e in events)
    scores = np.full((len(events), 2), np.nan) if scored else None
    for i, e in enumerate(events):
        v = e.prediction
        if type(v) is not list:
            rej.mark(i, f"prediction: a ranking model predicts a list of item ids (best first), got {type(v).__name__}")
            continue
        problem = _list_problem(v, "prediction", max_chars)
        if problem is None and e.scores and scores is not None:
            problem = _scores_into(e.scores, v, scores, i)
        if problem:
            rej.mark(i, problem)
        else:
            prediction[i] = encode_ranking(v)
    return prediction, scores, list(SCORE_COLUMNS) if scored else []


def _scores_into(scores: dict[str, float], items: list[Any], out: np.ndarray, row: int) -> str | None:
    """Fill ``out[row]`` from an event's item -> score, or say why the scores are refused."""
    shown = {str(i) for i in items}
    for item, value in scores.items():
        if item not in shown:
            return f"scores[{item[:40]!r}]: a score for an item not in the ranked list"
        if not math.isfinite(value):
            return f"scores[{item[:40]!r}]: not a finite number"
    if items:
        top = scores.get(str(items[0]))
        out[row, 0] = np.nan if top is None else top
    out[row, 1] = float(np.mean(list(scores.values()))) if scores else np.nan
    return None


def refuse_lists(values: Sequence[Any], rej: Rejects, field: str, task: str) -> None:
    """A list or an object where a classifier or regressor expects one value is refused, naming the task."""
    kinds = set(map(type, values))          # the usual batch: one C pass, nothing to refuse
    if list not in kinds and dict not in kinds:
        return
    for i, v in enumerate(values):
        if type(v) is list or type(v) is dict:
            rej.mark(i, f"{field}: a {type(v).__name__} is a ranking model's {field} (task: ranking); "
                        f"this model's task is {task}")
