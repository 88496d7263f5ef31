"""The reference sample a model's live data is compared with.

A :class:`Reference` holds, per model, the training sample given in the configuration (later
the champion's training or validation sample): the feature columns, the ``label`` column and,
when available, the model's own outputs on those rows (a ``prediction`` column and class
scores). Columns use the same layout as :mod:`detectors.batch`: numeric features ``float64``
with ``NaN`` for missing, categorical features and classification labels ``object`` arrays of
``str``. It is immutable; two references are equal when all their columns are.

>>> import numpy as np, pandas as pd
>>> df = pd.DataFrame({"amount": [1.0, 2.5, None], "country": ["DE", "FR", "DE"],
...                    "label": [0, 1, 0], "score_0": [.8, .3, .6], "score_1": [.2, .7, .4]})
>>> ref = Reference.from_frame(df, {"amount": "numeric", "country": "categorical"},
...                            task="classification")
>>> ref.n, ref.classes, ref.label.tolist(), ref.prediction.tolist()
(3, ['0', '1'], ['0', '1', '0'], ['0', '1', '0'])
>>> ref.features["amount"].tolist()[:2], ref.has_scores
([1.0, 2.5], True)
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as _pd

from detectors.composite import Composite

__all__ = ["Reference", "class_label", "to_str_array", "to_float_array", "FEATURE_TYPES"]

FEATURE_TYPES = ("numeric", "categorical")
Task = Literal["classification", "regression"]


def class_label(v: Any) -> str | None:
    """The canonical text of a class label or category: ``None`` for missing, ``"True"``/``"False"``
    for bools, integer text for integral numbers (``1``, ``1.0``, ``np.int64(1)`` -> ``"1"``).
    Events (:func:`driftloop.events.label_key`) and reference samples use this one function, so
    their classes always compare equal."""
    if v is None:
        return None
    if isinstance(v, float | np.floating):
        if v != v:  # NaN
            return None
        if float(v).is_integer():
            return str(int(v))
        return str(float(v))
    if isinstance(v, bool | np.bool_):
        return "True" if v else "False"
    if isinstance(v, np.integer):
        return str(int(v))
    if v is _pd.NA or v is _pd.NaT:
        return None
    return str(v)


def to_str_array(values: Any) -> np.ndarray:
    """An ``object`` array of ``str`` (``None`` for missing), the batch layout of categories.

    Bools become ``"True"``/``"False"``, integers and integral floats their integer text
    (``1.0`` -> ``"1"``, so a label read as float from a CSV matches the event's ``1``).

    >>> to_str_array([1, 2.0, True, None, "a", float("nan")]).tolist()
    ['1', '2', 'True', None, 'a', None]
    """
    arr = np.asarray(values, dtype=object).ravel()
    out = np.empty(len(arr), dtype=object)
    out[:] = [class_label(v) for v in arr]
    return out


def to_float_array(values: Any) -> np.ndarray:
    """A ``float64`` array with ``NaN`` for missing values."""
    try:
        return np.asarray(values, dtype=np.float64).ravel().copy()
    except (TypeError, ValueError):
        arr = np.asarray(values, dtype=object).ravel()
        return np.array([np.nan if v is None or v != v else float(v) for v in arr], dtype=np.float64)


def _arrays_equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _check_types(task: str, features: Mapping[str, Any], feature_types: Mapping[str, str]) -> None:
    """Reject an unknown task, a feature type without a column and an unknown feature type."""
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', not {task!r}")
    missing = [f for f in feature_types if f not in features]
    if missing:
        raise ValueError(f"reference lacks the feature columns {missing}")
    for name, kind in feature_types.items():
        if kind not in FEATURE_TYPES:
            raise ValueError(f"feature {name!r} has unknown type {kind!r}; expected {FEATURE_TYPES}")


def _feature_columns(features: Mapping[str, Any], feature_types: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Each feature in the batch layout of its type (``float64`` or ``object`` of ``str``).

    >>> cols = _feature_columns({"a": [1, None], "b": [1, None]}, {"a": "numeric", "b": "categorical"})
    >>> cols["a"].tolist(), cols["b"].tolist()
    ([1.0, nan], ['1', None])
    """
    cols: dict[str, np.ndarray] = {}
    for name, kind in feature_types.items():
        v = features[name]
        cols[name] = to_float_array(v) if kind == "numeric" else to_str_array(v)
    return cols


def _score_matrix(scores: Any) -> np.ndarray | None:
    """A ``float64`` copy of the scores (``None`` if none), which must be rows x classes."""
    matrix = None if scores is None else np.asarray(scores, dtype=np.float64).copy()
    if matrix is not None and matrix.ndim != 2:
        raise ValueError("reference scores must be a 2-D array (rows x classes)")
    return matrix


def _common_length(
    cols: Mapping[str, np.ndarray], label: np.ndarray | None, prediction: np.ndarray | None, scores: np.ndarray | None
) -> int:
    """The number of rows all the columns share; an error if they differ or there are none.

    >>> _common_length({"a": np.zeros(3)}, np.zeros(3), None, np.zeros((3, 2)))
    3
    """
    lengths = {len(v) for v in cols.values()}
    if label is not None:
        lengths.add(len(label))
    if prediction is not None:
        lengths.add(len(prediction))
    if scores is not None:
        lengths.add(scores.shape[0])
    if len(lengths) > 1:
        raise ValueError(f"reference columns have different lengths {sorted(lengths)}")
    n = int(lengths.pop()) if lengths else 0
    if n == 0:
        raise ValueError("the reference sample is empty")
    return n


def _observed_classes(label: np.ndarray | None, prediction: np.ndarray | None) -> list[str]:
    """The sorted distinct labels and predictions (missing values left out)."""
    seen: set[str] = set()
    for arr in (label, prediction):
        if arr is not None:
            seen.update(v for v in arr.tolist() if v is not None)
    return sorted(seen)


def _argmax_classes(scores: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """The class of the highest score of each row (``NaN`` scores never win), as ``object``.

    >>> _argmax_classes(np.array([[0.2, 0.8], [np.nan, 0.1]]), ["a", "b"]).tolist()
    ['b', 'b']
    """
    idx = np.nanargmax(np.where(np.isnan(scores), -np.inf, scores), axis=1)
    pred = np.empty(len(scores), dtype=object)
    pred[:] = [classes[i] for i in idx]
    return pred


def _frame_column(df: Any, name: str) -> np.ndarray | None:
    """Column ``name`` of the frame as an array, ``None`` if the frame has none."""
    return df[name].to_numpy() if name in df.columns else None


def _frame_scores(df: Any, prefix: str, classes: Sequence[str] | None) -> tuple[np.ndarray | None, Sequence[str] | None]:
    """The ``<prefix><class>`` columns as an ``(n, k)`` matrix in ``classes`` order (by default
    the sorted classes found) and that order; ``(None, classes)`` when there are none.

    >>> import pandas as pd
    >>> s, c = _frame_scores(pd.DataFrame({"score_b": [0.6], "score_a": [0.4]}), "score_", None)
    >>> s.tolist(), c
    ([[0.4, 0.6]], ['a', 'b'])
    """
    score_cols = [c for c in df.columns if isinstance(c, str) and c.startswith(prefix)]
    if not score_cols:
        return None, classes
    found = [c[len(prefix):] for c in score_cols]
    if classes is None:
        classes = sorted(found)
    missing = [c for c in classes if c not in found]
    if missing:
        raise ValueError(f"reference has no score column for classes {missing}")
    scores = np.column_stack([df[prefix + c].to_numpy(dtype=np.float64) for c in classes])
    return scores, classes


class Reference(Composite):
    """An immutable reference sample of one model.

    Parameters
    ----------
    features : mapping of str to array
        One column per feature: numeric ``float64`` (``NaN`` = missing) or categorical
        ``object`` arrays of ``str`` (``None`` = missing). All of length ``n``.
    feature_types : mapping of str to {"numeric", "categorical"}
        The type of every feature in ``features``.
    task : {"classification", "regression"}
    label : array, optional
        Ground truth: ``str`` (classification) or ``float64`` (regression).
    prediction : array, optional
        The model's output on these rows, same layout as ``label``.
    scores : array of shape (n, k), optional
        Class probabilities, one column per entry of ``classes``.
    classes : sequence of str, optional
        Class labels (classification); by default the sorted distinct labels, predictions and
        score columns.

    Examples
    --------
    >>> import numpy as np
    >>> ref = Reference({"x": np.array([0.0, 1.0, 2.0])}, {"x": "numeric"}, task="regression",
    ...                 label=np.array([0.5, 1.5, 2.5]))
    >>> ref.n, ref.numeric, ref.categorical, ref.has_predictions
    (3, ['x'], [], False)
    """

    _params = ("features", "feature_types", "task", "label", "prediction", "scores", "classes")

    def __init__(
        self,
        features: Mapping[str, Any],
        feature_types: Mapping[str, str],
        task: Task = "classification",
        label: Any = None,
        prediction: Any = None,
        scores: Any = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        _check_types(task, features, feature_types)
        self.task = task
        self.feature_types = {str(k): str(v) for k, v in feature_types.items()}
        cols = _feature_columns(features, self.feature_types)
        conv = to_str_array if task == "classification" else to_float_array
        self.label = None if label is None else conv(label)
        self.prediction = None if prediction is None else conv(prediction)
        self.scores = _score_matrix(scores)
        self.n = _common_length(cols, self.label, self.prediction, self.scores)
        self.features = cols
        if task == "classification":
            self._set_classes(classes)
        else:
            self.classes = list(classes) if classes else []
            if self.scores is not None:
                raise ValueError("scores are for classifiers; a regression reference has none")

    def _set_classes(self, classes: Sequence[str] | None) -> None:
        """Classification: the class list (given, or the sorted labels and predictions seen),
        checked against the score columns; predictions from the scores when none are given."""
        if classes is None:
            classes = _observed_classes(self.label, self.prediction)
        self.classes = [str(c) for c in classes]
        if self.scores is not None and self.scores.shape[1] != len(self.classes):
            raise ValueError(
                f"reference scores have {self.scores.shape[1]} columns but there are "
                f"{len(self.classes)} classes {self.classes}"
            )
        if self.prediction is None and self.scores is not None:
            self.prediction = _argmax_classes(self.scores, self.classes)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_frame(
        cls,
        df: Any,
        feature_types: Mapping[str, str],
        task: Task = "classification",
        *,
        scores: Any = None,
        classes: Sequence[str] | None = None,
        score_prefix: str = "score_",
        label_column: str = "label",
        prediction_column: str = "prediction",
    ) -> Reference:
        """Build a reference from a pandas DataFrame.

        The frame holds the feature columns and ``label``; optionally ``prediction`` (the
        model's output on the row) and one ``<score_prefix><class>`` column per class with the
        model's scores. ``scores`` (an ``(n, k)`` array, columns in ``classes`` order) may be
        given instead of score columns.
        """
        missing = [c for c in feature_types if c not in df.columns]
        if missing:
            raise ValueError(f"the reference frame lacks the feature columns {missing}")
        features = {name: df[name].to_numpy() for name in feature_types}
        label = _frame_column(df, label_column)
        prediction = _frame_column(df, prediction_column)
        if scores is None and task == "classification":
            scores, classes = _frame_scores(df, score_prefix, classes)
        if scores is not None and classes is None:
            raise ValueError("reference scores given as an array need `classes` (their column order)")
        return cls(features, feature_types, task, label=label, prediction=prediction, scores=scores, classes=classes)

    # ------------------------------------------------------------------ views
    @property
    def numeric(self) -> list[str]:
        """Names of the numeric features, in configuration order."""
        return [f for f, t in self.feature_types.items() if t == "numeric"]

    @property
    def categorical(self) -> list[str]:
        """Names of the categorical features, in configuration order."""
        return [f for f, t in self.feature_types.items() if t == "categorical"]

    @property
    def has_scores(self) -> bool:
        return self.scores is not None

    @property
    def has_predictions(self) -> bool:
        return self.prediction is not None

    def sample(self, n: int, seed: int = 0) -> Reference:
        """A random subset of ``n`` rows (all rows, unchanged, if there are no more)."""
        if n >= self.n:
            return self
        return self.take(np.sort(np.random.default_rng(seed).choice(self.n, size=n, replace=False)))

    def take(self, idx: np.ndarray, features: Sequence[str] | None = None) -> Reference:
        """The rows ``idx`` (positions or a boolean mask), with all features or only ``features``.

        >>> ref = Reference({"a": [1.0, 2.0, 3.0], "k": ["x", "y", "x"]}, {"a": "numeric", "k": "categorical"},
        ...                 task="regression")
        >>> sub = ref.take(np.array([True, False, True]), ["a"])
        >>> sub.n, list(sub.features), sub.features["a"].tolist()
        (2, ['a'], [1.0, 3.0])
        """
        names = list(self.feature_types) if features is None else list(features)
        return Reference(
            {f: self.features[f][idx] for f in names}, {f: self.feature_types[f] for f in names}, self.task,
            label=None if self.label is None else self.label[idx],
            prediction=None if self.prediction is None else self.prediction[idx],
            scores=None if self.scores is None else self.scores[idx],
            classes=self.classes or None,
        )

    def numeric_matrix(self, names: Sequence[str] | None = None) -> np.ndarray:
        """The numeric features as an ``(n, F)`` float64 matrix."""
        names = self.numeric if names is None else list(names)
        if not names:
            return np.empty((self.n, 0))
        return np.column_stack([self.features[f] for f in names])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reference):
            return NotImplemented
        if (self.task, self.feature_types, self.classes, self.n) != (
            other.task, other.feature_types, other.classes, other.n
        ):
            return False
        if any(not _arrays_equal(self.features[f], other.features[f]) for f in self.features):
            return False
        return all(
            _arrays_equal(getattr(self, a), getattr(other, a)) for a in ("label", "prediction", "scores")
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value: unhashable on purpose

    def __repr__(self) -> str:
        return (
            f"Reference(n={self.n}, task={self.task!r}, features={list(self.feature_types)}, "
            f"scores={self.has_scores}, predictions={self.has_predictions})"
        )
