"""``detector_failure``: a model's detectors (or its champion switch) raised; the monitor went on.

Raised by :class:`driftloop.monitoring.analysis.DriftAnalyser` (and :class:`driftloop.monitoring.champion_switch.ChampionSwitcher`)
through the same ``on_detections`` hook as the detectors' own detections, so the alert follows the
usual lifecycle (group window, hold-down, cooldown, sinks, routes by kind) and commits with the
transaction that observed the failure. Two alerts per model, by ``detector``:

* ``detectors``: the model is QUARANTINED: its detectors raised while updating on a batch
  (``stage`` ``update``), while being rebuilt from the store (``rebuild``: at start, after a
  back-off, after a batch that did not commit) or while switching to a new champion's sample
  (``champion_switch``). Its events are still counted and stored; its drift analysis is off
  until a rebuild succeeds and the detectors work again, which clears the alert.
* ``champion_sample``: a new champion's held-out sample cannot be used (unreadable, tampered:
  ``retrain.artifacts.ArtifactError``, or any other error loading it). The detectors keep the
  previous reference and keep working; a later switch that succeeds clears the alert.

The alert says which model (``model``), what failed (``evidence.stage``, ``evidence.error_class``,
``evidence.error``: the exception's class and message) and since when (``evidence.since``, epoch
ms of the first failure of the episode, and ``window.start_ts``); ``statistic`` is the number of
consecutive failures, ``evidence.next_retry_at`` when the next rebuild is due. Severity
``critical`` (the model is not watched); it triggers no retraining (``retrain.on_kinds`` cannot
name it).

>>> d = failure_detection("fraud", "detectors", stage="update", error=ValueError("bad window"),
...                       since=1_000, now=5_000, failures=1, next_retry_at=35_000)
>>> d.kind, d.detector, d.severity, d.evidence["error_class"], d.window.start_ts
('detector_failure', 'detectors', 'critical', 'ValueError', 1000)
>>> import textwrap
>>> print(textwrap.fill(d.summary, 96))
detectors quarantined since 1970-01-01T00:00:01.000Z: update failed (ValueError: bad window);
its events are still counted and stored, drift analysis is off until the detectors are rebuilt
from the store (next try 1970-01-01T00:00:35.000Z).
>>> failure_detection("fraud", "detectors", stage="update", error="ValueError: bad window", since=1_000,
...                   now=9_000, failures=1, firing=False).summary
'the detectors work again (rebuilt from the store).'
"""
from __future__ import annotations

from typing import Any

from detectors.base import Detection, Window
from driftloop.core.clock import rfc3339

__all__ = ["KIND", "QUARANTINE", "CHAMPION_SAMPLE", "failure_detection", "describe_error"]

KIND = "detector_failure"
QUARANTINE = "detectors"            # detector name of the quarantine alert
CHAMPION_SAMPLE = "champion_sample"  # detector name of the unusable-champion-sample alert
_MAX_MESSAGE = 500


def describe_error(exc: BaseException | str) -> tuple[str, str]:
    """``(class name, one-line message)`` of an exception (a string is taken as already described).

    >>> describe_error(KeyError("amount"))
    ('KeyError', "'amount'")
    """
    if isinstance(exc, str):
        cls, _, msg = exc.partition(": ")
        return cls, msg
    return type(exc).__name__, " ".join(str(exc).split())[:_MAX_MESSAGE]


def failure_detection(model: str, detector: str, *, stage: str, error: BaseException | str, since: int, now: int,
                      failures: int, next_retry_at: int | None = None, firing: bool = True,
                      version: str | None = None) -> Detection:
    """The detection of one failure (``firing``) or of its end (``firing=False``)."""
    cls, msg = describe_error(error)
    evidence: dict[str, Any] = {"stage": stage, "error_class": cls, "error": msg, "since": since,
                                "since_at": rfc3339(since), "failures": failures, "next_retry_at": next_retry_at}
    if version is not None:
        evidence["champion_version"] = version
    if firing:
        summary = _firing_summary(detector, stage, f"{cls}: {msg}" if msg else cls, since, next_retry_at, version)
    elif detector == CHAMPION_SAMPLE:
        summary = "the detectors follow the registry's champion again."
    else:
        summary = "the detectors work again (rebuilt from the store)."
    return Detection(kind=KIND, detector=detector, feature=None, statistic=float(failures), p_value=None,
                     threshold=1.0, window=Window(since, now, 0), firing=firing, severity="critical",
                     model=model, summary=summary, evidence=evidence)


def _firing_summary(detector: str, stage: str, error: str, since: int, next_retry_at: int | None,
                    version: str | None) -> str:
    if detector == CHAMPION_SAMPLE:
        return (f"the sample of the new champion v{version} cannot be used since {rfc3339(since)} ({error}); "
                "the detectors keep the previous reference. Check the registry's files.")
    retry = f" (next try {rfc3339(next_retry_at)})" if next_retry_at is not None else ""
    return (f"detectors quarantined since {rfc3339(since)}: {stage} failed ({error}); its events are still "
            f"counted and stored, drift analysis is off until the detectors are rebuilt from the store{retry}.")
