"""The messages of ``driftloop.retrain`` (jobs) and ``driftloop.models`` (registry events).

Both are UTF-8 JSON keyed by the model name, as in the contract; the fields below extend it
with optional ones. Times: ``requested_at``/``decided_at`` are RFC 3339 (UTC), windows are
epoch milliseconds like ``pred_ts``.

A job::

    {"job_id": "alert-20240101T000000Z-3f2a9c1b7e", "model": "fraud", "trigger": "alert",
     "reason": ["a1b2..."], "requested_at": "2024-01-01T00:00:00.000Z",
     "window": {"start_ts": 1703462400000, "end_ts": 1704067200000, "as_of": 1704067200000,
                "max_rows": 200000}, "schema_version": 1}

A registry event (``metrics``: the challenger and the incumbent on the same held-out rows)::

    {"event": "promoted", "model": "fraud", "version": "3", "champion_version": "3",
     "previous_champion": "2", "metrics": {"primary": "accuracy", "challenger": {...},
     "champion": {...}, "holdout_rows": 2000}, "decision": {"test": "mcnemar", "p_value": 1e-9,
     "delta": 0.21, "min_delta": 0.0, "alpha": 0.05, "significant": true}, "job_id": "...",
     "reason": ["a1b2..."], "decided_at": "2024-01-01T00:02:10.000Z", "history_id": 7, ...}

A shadow phase (policy ``retrain.shadow``, :mod:`retrain.shadow`) adds ``shadow_started`` (the
challenger runs beside the champion; ``metrics``/``decision``: the offline gate's) and
``shadow_report`` (``metrics``: the live paired comparison, :meth:`detectors.paired.ShadowComparison.report`),
then ends with ``promoted`` or ``rejected`` whose ``metrics`` are ``{"phase": "shadow", "primary": ...,
"live": {...the comparison, with "test", "p_value", "n"...}, "offline": {...}, "offline_decision": {...}}``.

The monitor acts on :func:`switch_target`:

>>> ev = ModelEvent(event="promoted", model="fraud", version="3", champion_version="3",
...                 previous_champion="2", decided_at="2024-01-01T00:00:00.000Z", reason=["a1"])
>>> switch_target(encode(ev))
Switch(model='fraud', version='3', event='promoted', resolves=['a1'], job_id=None, history_id=None)
>>> switch_target(encode(ModelEvent(event="rejected", model="fraud", version="4",
...               champion_version="3", decided_at="2024-01-01T00:00:00.000Z"))) is None
True
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import msgspec

__all__ = [
    "JobWindow",
    "RetrainJob",
    "ModelEvent",
    "Switch",
    "encode",
    "decode_job",
    "decode_model_event",
    "switch_target",
    "rfc3339",
    "parse_rfc3339",
]


class JobWindow(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """The data a job trains on: joined examples with ``start_ts <= pred_ts <= end_ts`` that
    were joined at or before ``as_of`` (so a job redone later sees the same rows), at most the
    ``max_rows`` most recent."""

    start_ts: int
    end_ts: int
    as_of: int
    max_rows: int


class RetrainJob(msgspec.Struct, kw_only=True):
    """One retraining job (topic ``driftloop.retrain``)."""

    job_id: str
    model: str
    reason: list[str]
    requested_at: str
    window: JobWindow
    trigger: Literal["alert", "schedule", "manual"] = "alert"
    requested_by: str | None = None
    schema_version: int = 1


class ModelEvent(msgspec.Struct, kw_only=True):
    """One registry event (topic ``driftloop.models``).

    ``version`` is the version the event is about; ``champion_version`` the champion after
    it (``None`` if the model has none; a shadow phase's events leave it unchanged until
    ``promoted``). ``reason`` lists the alert ids the job answered (the
    monitor resolves them on a switch). ``note``: one sentence a person can read.
    """

    event: Literal["registered", "promoted", "rejected", "rolled_back", "shadow_started", "shadow_report"]
    model: str
    version: str
    champion_version: str | None
    decided_at: str
    previous_champion: str | None = None
    metrics: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    job_id: str | None = None
    trigger: str | None = None
    reason: list[str] = msgspec.field(default_factory=list)
    note: str | None = None
    history_id: int | None = None
    reference: dict[str, Any] | None = None
    schema_version: int = 1


class Switch(NamedTuple):
    """What a ``driftloop.models`` message asks the monitor to do: use ``version`` of ``model``
    as its reference and baseline from now on, and resolve the alerts in ``resolves``."""

    model: str
    version: str
    event: str
    resolves: list[str]
    job_id: str | None
    history_id: int | None


_encoder = msgspec.json.Encoder()
_job_decoder = msgspec.json.Decoder(RetrainJob)
_event_decoder = msgspec.json.Decoder(ModelEvent)


def encode(obj: RetrainJob | ModelEvent) -> bytes:
    return _encoder.encode(obj)


def decode_job(raw: bytes) -> RetrainJob:
    """Decode a job message; ``msgspec.ValidationError``/``DecodeError`` if it is not one."""
    return _job_decoder.decode(raw)


def decode_model_event(raw: bytes) -> ModelEvent:
    return _event_decoder.decode(raw)


def switch_target(message: bytes | ModelEvent | dict[str, Any]) -> Switch | None:
    """``Switch`` if the ``driftloop.models`` message makes a version the champion, else None.

    ``promoted`` and ``rolled_back`` switch (to ``champion_version``); ``registered``,
    ``rejected``, ``shadow_started`` and ``shadow_report`` leave the champion as it was (a
    promotion after a shadow phase is an ordinary ``promoted`` event). Undecodable messages give None (and should be
    logged by the caller). Delivery is at-least-once: switching to the version already in
    use must be a no-op on the monitor's side.
    """
    try:
        if isinstance(message, ModelEvent):
            ev = message
        elif isinstance(message, dict):
            ev = msgspec.convert(message, ModelEvent)
        else:
            ev = _event_decoder.decode(message)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
        return None
    if ev.event not in ("promoted", "rolled_back") or ev.champion_version is None:
        return None
    return Switch(ev.model, ev.champion_version, ev.event, list(ev.reason), ev.job_id, ev.history_id)


def rfc3339(ms: int) -> str:
    """Epoch milliseconds as an RFC 3339 UTC string.

    >>> rfc3339(1704067200123)
    '2024-01-01T00:00:00.123Z'
    """
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_rfc3339(text: str) -> int:
    """Inverse of :func:`rfc3339` (any offset accepted).

    >>> parse_rfc3339("2024-01-01T00:00:00.123Z")
    1704067200123
    """
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return round(dt.timestamp() * 1000)
