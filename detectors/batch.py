"""Column batches the monitor (and ``driftloop replay``) hand to detectors.

One batch holds events of one model, columnar, already validated:

* numeric features are ``float64`` arrays with ``NaN`` for a missing/null value;
* categorical features are ``object`` arrays of ``str`` (``None`` for missing);
* classification predictions and labels are ``object`` arrays of ``str`` (a bool ``True`` is
  ``"True"``, an int ``1`` is ``"1"``), so string, int and bool labels compare alike;
  regression predictions and labels are ``float64``;
* ``scores`` is ``(n, k)`` ``float64`` with one column per class in ``classes`` (``NaN`` where
  an event gave no score for that class), or ``None`` when no event in the batch had scores;
* ``ts`` is ``int64`` epoch milliseconds (event time).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["PredictionBatch", "LabelledBatch"]


@dataclass(slots=True)
class PredictionBatch:
    """Predictions of one model (the input of data- and prediction-drift detectors)."""

    ts: np.ndarray
    features: dict[str, np.ndarray]
    prediction: np.ndarray
    scores: np.ndarray | None = None
    classes: list[str] = field(default_factory=list)
    model_version: str | None = None
    # what the pipeline saw around each event, for the data-quality checks: ``refused``,
    # ``refused:<feature>``, ``duplicates`` (events dropped just before it), ``example``, and its
    # ``absent:<feature>`` and ``unknown`` keys (see detectors.data_quality); None: nothing seen
    marks: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.ts)


@dataclass(slots=True)
class LabelledBatch:
    """Joined examples of one model: prediction and ground truth side by side.

    ``ts`` is the prediction's event time, so windows over the error stream follow the order
    in which the model served. ``features`` is the same layout as in :class:`PredictionBatch`
    (retraining and multivariate checks need it; performance detectors ignore it).
    """

    ts: np.ndarray
    prediction: np.ndarray
    label: np.ndarray
    scores: np.ndarray | None = None
    classes: list[str] = field(default_factory=list)
    features: dict[str, np.ndarray] = field(default_factory=dict)
    model_version: str | None = None

    def __len__(self) -> int:
        return len(self.ts)
