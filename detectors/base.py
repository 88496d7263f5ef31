"""Shared shapes for every detector: the :class:`Detection` they emit and the
:class:`StreamDetector` base of the streaming (concept-drift) detectors.

Everything in ``detectors/`` is pure computation: numpy, scipy and scikit-learn, no Kafka,
no store, no I/O. State is plain data, so :meth:`Snapshotable.snapshot` /
:meth:`Snapshotable.restore` round-trip it exactly through :mod:`detectors.state`.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, Protocol, Self, runtime_checkable

import numpy as np

from detectors import state as _state

__all__ = ["Window", "Detection", "segment_text", "alert_key", "keep_open", "resolve_open", "WindowLog",
           "Snapshotable", "StreamDetector", "WindowDetector", "KINDS", "SEVERITIES"]

KINDS = (
    "data_drift",
    "prediction_drift",
    "concept_drift",
    "performance",
    "multivariate_drift",
    "stale_stream",
    "data_quality",       # contract v1.1: a broken pipeline rather than a changed world (detectors.data_quality)
    "detector_failure",   # raised by the monitor (consumers.analysis), not by a detector
)
SEVERITIES = ("warning", "critical")


@dataclass(frozen=True, slots=True)
class Window:
    """The data a decision was made on: event-time range (epoch ms) and size."""

    start_ts: int | None
    end_ts: int | None
    n: int


@dataclass(slots=True)
class Detection:
    """One decision of one detector, with the evidence an alert carries (see the contract).

    ``firing`` is True when the detector finds a problem and False when a problem it reported
    before has cleared (the resolution). ``statistic``/``p_value``/``threshold`` are the
    numbers the decision rests on; ``p_value`` is None for tests without one. ``segment`` is
    the slice of traffic the evidence is about (contract v1.1: ``{feature: value}``), None for
    all traffic.
    """

    kind: str
    detector: str
    feature: str | None
    statistic: float
    p_value: float | None
    threshold: float
    window: Window
    firing: bool = True
    severity: Literal["warning", "critical"] = "warning"
    effect_size: float | None = None
    summary: str = ""
    model: str | None = None
    model_version: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    segment: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown detection kind {self.kind!r}; expected one of {KINDS}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def segment_text(segment: Mapping[str, str] | None) -> str | None:
    """How a detection's ``segment`` is written for people and keys: ``country=BR`` for
    ``{"country": "BR"}``; None for all traffic.

    >>> segment_text({"country": "BR"}), segment_text(None)
    ('country=BR', None)
    """
    if not segment:
        return None
    return ", ".join(f"{k}={v}" for k, v in segment.items())


def alert_key(d: Detection) -> str:
    """The key of the alert a detection is about, within one monitor (kind, detector, feature, segment)."""
    seg = segment_text(d.segment)
    return f"{d.kind}|{d.detector}|{d.feature or ''}" + (f"|{seg}" if seg else "")


def keep_open(open_alerts: dict[str, dict[str, Any]], detections: list[Detection],
              version: str | None) -> list[Detection]:
    """A monitor's bookkeeping of the alerts firing now (``open_alerts``: key -> last detection
    as a dict): each detection names ``version`` if it names none, a firing one is kept, a
    resolution forgets its alert. Returns ``detections``."""
    for d in detections:
        if d.model_version is None:
            d.model_version = version
        if d.firing:
            open_alerts[alert_key(d)] = d.to_dict()
        else:
            open_alerts.pop(alert_key(d), None)
    return detections


def resolve_open(open_alerts: dict[str, dict[str, Any]]) -> list[Detection]:
    """The resolutions of the alerts in ``open_alerts`` when the monitor's reference is replaced
    (a new champion): they were about the old one. The caller forgets them."""
    out = []
    for d in open_alerts.values():
        item = dict(d)
        item["window"] = Window(**item["window"])
        item["firing"] = False
        item["summary"] = ("cleared because the reference was replaced (new champion); the detectors "
                           f"start over. Last finding: {item['summary']}")
        out.append(Detection(**item))
    return out


WINDOW_LOG_MAX = 256   # statuses a monitor keeps for a caller that does not take them


class WindowLog:
    """The monitors' log of their status right after each judged window, until the caller takes it.

    ``status()`` holds the last window of each stream; a batch that completes several windows
    (a burst of late labels, a replay's bulk) would leave only the last one to a caller that
    reads the status after the batch. The monitors call :meth:`_log_window` after each judged
    window, and the caller (the monitor's statistics history) takes the log after the batch:
    every window, however the stream was cut into batches. The log is not part of a snapshot
    (a restored monitor starts with none: what the rolled-back batch logged is logged again
    when it is judged again), and keeps the newest ``WINDOW_LOG_MAX`` for a caller that never
    takes it.

    >>> class Counter(WindowLog):
    ...     n = 0
    ...     def status(self):
    ...         return {"windows": self.n}
    ...     def judge(self):
    ...         self.n += 1
    ...         self._log_window()
    >>> c = Counter(); c.judge(); c.judge()
    >>> c.take_window_statuses(), c.take_window_statuses()
    ([{'windows': 1}, {'windows': 2}], [])
    """

    _derived: ClassVar[tuple[str, ...]] = ("_window_log",)

    def status(self) -> dict[str, Any]:
        raise NotImplementedError

    def _log_window(self) -> None:
        log = self.__dict__.setdefault("_window_log", [])
        if len(log) >= WINDOW_LOG_MAX:
            del log[0]
        log.append(self.status())

    def take_window_statuses(self) -> list[dict[str, Any]]:
        """The statuses logged since the last call, oldest first; the log is emptied."""
        return self.__dict__.pop("_window_log", None) or []


class Snapshotable:
    """Exact snapshot/restore and cloning for objects whose state is plain data.

    Subclasses keep their state in instance attributes holding numbers, strings, lists,
    tuples, dicts and numpy arrays; ``_params`` names the constructor arguments so that
    :meth:`clone` can build a fresh, unfitted twin.
    """

    _params: ClassVar[tuple[str, ...]] = ()

    def snapshot(self) -> bytes:
        """All state as bytes; :meth:`restore` continues exactly where this left off."""
        return _state.dumps({"cls": type(self).__qualname__, "state": self.__dict__})

    @classmethod
    def restore(cls, blob: bytes) -> Self:
        data = _state.loads(blob)
        if data["cls"] != cls.__qualname__:
            raise ValueError(f"snapshot is of {data['cls']}, not {cls.__qualname__}")
        obj = cls.__new__(cls)
        obj.__dict__.update(data["state"])
        return obj

    def params(self) -> dict[str, Any]:
        return {name: copy.deepcopy(getattr(self, name)) for name in self._params}

    def clone(self) -> Self:
        """A new instance with the same parameters and no state."""
        return type(self)(**self.params())


class StreamDetector(Snapshotable):
    """Base of streaming change detectors fed one value or a batch at a time (River's shape).

    ``update(x)`` feeds one value and returns ``self``; ``drift_detected`` tells whether that
    value completed a detection. ``update_many(xs)`` feeds a batch (the fast path) and returns
    the positions in the batch at which drift was detected. After a detection the detector
    resets itself, so each position is one detection.
    """

    def __init__(self) -> None:
        self._drift_detected = False

    @property
    def drift_detected(self) -> bool:
        return self._drift_detected

    def update(self, x: float) -> Self:
        hits = self.update_many(np.asarray([x], dtype=np.float64))
        self._drift_detected = bool(len(hits))
        return self

    def update_many(self, xs: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


@runtime_checkable
class WindowDetector(Protocol):
    """A detector judged once per complete window of columns (features, or the model's outputs).

    :class:`~detectors.univariate_drift.UnivariateDrift`,
    :class:`~detectors.multivariate.PCAReconstructionDrift` and
    :class:`~detectors.multivariate.DomainClassifierDrift` are window detectors;
    :class:`~detectors.model_monitor.ModelMonitor` holds them as such and feeds each the same
    window. (CBPE and PerformanceDrift are judged per window too, but on predictions and
    labels, not on columns, so they have their own ``update``.) ``isinstance`` checks the
    method names only; the signatures are checked by mypy and by the contract suite
    (``tests/detectors/contract.py``).

    >>> from detectors.multivariate import PCAReconstructionDrift
    >>> issubclass(PCAReconstructionDrift, WindowDetector)
    True
    """

    def update(
        self, window: Window, columns: Mapping[str, np.ndarray], model_version: str | None = None
    ) -> list[Detection]:
        """Judge one window of ``columns``; return the detections it causes (new, escalated
        or resolved alerts)."""
        ...

    def firing(self) -> list[str]:
        """The keys of the alerts firing now."""
        ...

    def last(self) -> dict[str, Any]:
        """The statistics of the last window judged."""
        ...
