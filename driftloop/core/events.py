"""Prediction and label events exactly as in the contract, decoded and validated fast.

A Kafka message value is one JSON event object or a JSON array of them. :func:`decode_message`
turns one message into accepted events and per-event errors whose text names the field.
Decoding is msgspec's C decoder against the typed schema; the semantic checks that JSON Schema
cannot express (timestamps, limits, unknown models, feature types) follow in :mod:`driftloop.validate`.

>>> ev = decode_message(b'{"event_id":"a1","model":"fraud","ts":1700000000000,'
...                     b'"features":{"amount":12.5},"prediction":1}', PREDICTION)
>>> ev.events[0].event_id, ev.events[0].prediction, ev.errors
('a1', 1.0, [])
>>> bad = decode_message(b'{"event_id":"a1","model":"fraud","ts":"x","features":{}}', PREDICTION)
>>> bad.errors[0].error
'Expected `str` of length >= 10 - at `$.ts`'
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Final

import msgspec
import numpy as np
import pandas as pd
from msgspec import Meta

__all__ = [
    "PredictionEvent",
    "LabelEvent",
    "EventError",
    "Decoded",
    "PREDICTION",
    "LABEL",
    "decode_message",
    "nul_field",
    "label_key",
    "json_schemas",
]

EventId = Annotated[str, Meta(min_length=1, max_length=128)]
ModelName = Annotated[str, Meta(min_length=1, max_length=128)]
Scalar = float | str | bool
# contract v1.1, ``task: ranking``: a prediction is the ranked list of item ids shown, a label the
# items engaged with or item id -> graded relevance (consumers.validation checks the rest)
ItemId = int | str
Prediction = Scalar | list[ItemId]
Label = Scalar | list[ItemId] | dict[str, float]
FeatureValue = float | str | bool | None
Timestamp = Annotated[int, Meta(ge=0)] | Annotated[str, Meta(min_length=10, max_length=40)]


class PredictionEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One prediction served (topic ``driftloop.predictions``)."""

    event_id: EventId
    model: ModelName
    ts: Timestamp
    features: dict[str, FeatureValue]
    prediction: Prediction
    model_version: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    # contract v1.1: a challenger's answer to the same request, never shown to the user; it
    # carries the served prediction's event_id and its own model_version (consumers.shadow_join)
    shadow: bool = False
    scores: dict[str, float] | None = None
    schema_version: int = 1


class LabelEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The ground truth of one prediction (topic ``driftloop.labels``)."""

    event_id: EventId
    model: ModelName
    ts: Timestamp
    label: Label
    schema_version: int = 1


@dataclass(frozen=True, slots=True)
class EventError:
    """Why one event (or a whole message) is invalid; ``raw`` is the offending JSON/bytes.

    ``size`` is the input's full length when ``raw`` is only its beginning (an oversized or
    pathological message is not copied whole into the dead-letter record), else None.
    """

    error: str
    raw: bytes
    model: str | None = None
    size: int | None = None


@dataclass(slots=True)
class Decoded:
    events: list[Any] = field(default_factory=list)
    errors: list[EventError] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Kind:
    name: str
    cls: type
    one_or_many: msgspec.json.Decoder
    one: msgspec.json.Decoder


def _kind(name: str, cls: type) -> _Kind:
    return _Kind(name, cls, msgspec.json.Decoder(cls | list[cls]), msgspec.json.Decoder(cls))  # type: ignore[valid-type]  # a type built at run time, one per event class


PREDICTION: Final = _kind("prediction", PredictionEvent)
LABEL: Final = _kind("label", LabelEvent)

_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
_raw_object = msgspec.json.Decoder(dict[str, msgspec.Raw])
_model_probe = msgspec.json.Decoder(Any)
# decoders of one value of a map field, to say which key of `features` / `scores` is wrong
_MAP_VALUE: dict[str, msgspec.json.Decoder] = {"features": msgspec.json.Decoder(FeatureValue), "scores": msgspec.json.Decoder(float),
                                               "label": msgspec.json.Decoder(float)}

BOM: Final = b"\xef\xbb\xbf"
NUL_ESCAPE: Final = b"\\u0000"    # the only way a JSON text can carry U+0000 inside a string
BACKSLASH: Final = ord("\\")      # `int in bytes` is one memchr, much faster than a bytes needle
EXCERPT: Final = 4096              # bytes of a pathological message kept for its dead letter
_DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def _probe_model(raw: bytes) -> str | None:
    """Best-effort model name of an invalid event, for per-model invalid counters."""
    try:   # the other fields stay raw: a bad value elsewhere (1e999, deep nesting) does not matter
        model = _model_probe.decode(_raw_object.decode(raw)["model"])
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError, RecursionError, KeyError):
        return None
    return model if isinstance(model, str) and 0 < len(model) <= 128 and "\x00" not in model else None


def _json_key(key: str) -> str:
    text = msgspec.json.encode(key[:64]).decode()
    return text if len(key) <= 64 else text[:-1] + '..."'


def _locate(text: str, raw: bytes) -> str:
    """Name the key msgspec shows as ``[...]`` (``$.features[...]`` -> ``$.features["amount"]``)."""
    for name, dec in _MAP_VALUE.items():
        marker = f"$.{name}[...]"
        if marker not in text:
            continue
        try:
            values = _raw_object.decode(_raw_object.decode(raw)[name])
        except (*_DECODE_ERRORS, KeyError, ValueError):
            return text
        for key, value in values.items():
            try:
                dec.decode(value)
            except _DECODE_ERRORS:
                return text.replace(marker, f"$.{name}[{_json_key(key)}]")
    return text


def _error_text(exc: BaseException, raw: bytes) -> str:
    """msgspec's error, made specific where it is vague (position of bad UTF-8, NaN, an empty message)."""
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    if isinstance(exc, UnicodeDecodeError):   # msgspec's offset is within one string; find the message's
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as whole:
            return f"message is not valid UTF-8 (byte {whole.start})"
        return "message is not valid UTF-8"
    text = str(exc)
    if text == "Input data was truncated":
        if not raw.strip():
            return "empty message: no JSON value"
        return "JSON is truncated: the message ends inside a value"
    if "invalid character (byte " in text:
        pos = int(text.rsplit("(byte ", 1)[1].rstrip(")"))
        if raw.startswith((b"NaN", b"Infinity"), pos):
            return f"JSON is malformed: NaN and Infinity are not JSON numbers (byte {pos})"
    return _locate(text, raw) if "[...]" in text else text


def nul_field(ev: Any) -> str | None:
    """The first field of a decoded event whose text holds U+0000 (PostgreSQL cannot store it), else None.

    >>> nul_field(LabelEvent(event_id="a" + chr(0), model="m", ts=1, label=1))
    'event_id'
    """
    for name in ("event_id", "model", "model_version", "prediction", "label"):
        v = getattr(ev, name, None)
        if type(v) is str and "\x00" in v:
            return name
        if type(v) is list or type(v) is dict:      # a ranking model's list, or item -> relevance
            for i, item in enumerate(v):
                if type(item) is str and "\x00" in item:
                    return f"{name}[{i}]" if type(v) is list else f"{name}[{_json_key(item)}]"
    for name in ("features", "scores"):
        mapping = getattr(ev, name, None)
        if mapping:
            for k, v in mapping.items():
                if "\x00" in k or (type(v) is str and "\x00" in v):
                    return f"{name}[{_json_key(k)}]"
    return None


def _keep_without_nul(events: list[Any], raw: bytes, whole: bool, out: Decoded) -> None:
    for i, ev in enumerate(events):
        where = nul_field(ev)
        if where is None:
            out.events.append(ev)
        else:
            prefix = "" if whole else f"event [{i}]: "
            model = ev.model if "\x00" not in ev.model else None
            out.errors.append(EventError(f"{prefix}{where}: contains a NUL character (U+0000)",
                                         raw if whole else msgspec.json.encode(ev), model))


def decode_message(raw: bytes | None, kind: _Kind, *, max_bytes: int = 1_048_576,
                   max_events: int = 10_000) -> Decoded:
    """Decode one Kafka message value into typed events plus per-event errors.

    The fast path decodes the whole value in one C call. If that fails and the value is a JSON
    array, each element is decoded on its own so that one bad element does not take the valid
    ones down with it. A UTF-8 byte-order mark is ignored (RFC 8259 allows it); strings holding
    U+0000 are refused (PostgreSQL text cannot store it).
    """
    out = Decoded()
    if raw is None:
        out.errors.append(EventError("message has no value (tombstone)", b""))
        return out
    if len(raw) > max_bytes:
        out.errors.append(EventError(f"message too large: {len(raw)} bytes > limit {max_bytes}",
                                     raw[:EXCERPT], size=len(raw)))
        return out
    if raw[:3] == BOM:
        raw = raw[3:]
    if not raw.isascii():   # msgspec skips unknown fields without checking their UTF-8
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            out.errors.append(EventError(f"message is not valid UTF-8 (byte {exc.start})", raw, _probe_model(raw)))
            return out
    try:
        decoded = kind.one_or_many.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        whole_error = exc
    except RecursionError:
        out.errors.append(EventError("JSON nested too deeply", raw[:EXCERPT], size=len(raw)))
        return out
    else:
        _take_decoded(decoded, raw, max_events, out)
        return out
    _decode_elements(raw, kind, whole_error, max_events, out)
    return out


def _take_decoded(decoded: Any, raw: bytes, max_events: int, out: Decoded) -> None:
    """The message decoded whole (one event or an array of them): its events into ``out``, or
    one error for the whole message (empty, too many events); events holding U+0000 are refused."""
    many = isinstance(decoded, list)
    events = decoded if many else [decoded]
    if not events:
        out.errors.append(EventError("empty array: a message must hold at least one event", raw))
    elif len(events) > max_events:
        out.errors.append(EventError(f"too many events in one message: {len(events)} > {max_events}", raw))
    elif BACKSLASH in raw and NUL_ESCAPE in raw:
        _keep_without_nul(events, raw, not many, out)
    else:
        out.events = events


def _decode_elements(raw: bytes, kind: _Kind, whole_error: Exception, max_events: int, out: Decoded) -> None:
    """The message did not decode whole: if it is a JSON array, decode each element on its own
    (an error per bad element), else report ``whole_error`` for the message."""
    try:
        parts = _raw_list.decode(raw)
    except _DECODE_ERRORS:
        out.errors.append(EventError(_error_text(whole_error, raw), raw, _probe_model(raw)))
        return
    if len(parts) > max_events:
        out.errors.append(EventError(f"too many events in one message: {len(parts)} > {max_events}", raw))
        return
    for i, part in enumerate(parts):
        piece = bytes(part)
        try:
            ev = kind.one.decode(piece)
        except _DECODE_ERRORS as exc:
            out.errors.append(EventError(f"event [{i}]: {_error_text(exc, piece)}", piece, _probe_model(piece)))
            continue
        if NUL_ESCAPE in piece and (where := nul_field(ev)) is not None:
            model = ev.model if "\x00" not in ev.model else None
            out.errors.append(EventError(f"event [{i}]: {where}: contains a NUL character (U+0000)", piece, model))
        else:
            out.events.append(ev)


def label_key(value: Any) -> str | None:
    """The canonical class label of a prediction or label value, as a string: ``None`` for
    missing, ``"True"``/``"False"`` for bools, integer text for integral numbers.

    The reference samples canonicalise with :func:`detectors.reference.class_label`, the same
    rule; the detectors import nothing of the project (and this base layer nothing of the
    detectors), so the rule is written twice and ``tests/test_label_key.py`` checks that both
    give the same text for every kind of value, so events' and references' classes compare equal.

    >>> [label_key(v) for v in (1, 1.0, "1", True, "cat", 0.5, None)]
    ['1', '1', '1', 'True', 'cat', '0.5', None]
    """
    if value is None:
        return None
    if isinstance(value, float | np.floating):
        if value != value:  # NaN
            return None
        if float(value).is_integer():
            return str(int(value))
        return str(float(value))
    if isinstance(value, bool | np.bool_):
        return "True" if value else "False"
    if isinstance(value, np.integer):
        return str(int(value))
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema documents of both events, for publishers in other languages."""
    out = {}
    for name, cls, title in (
        ("prediction", PredictionEvent, "driftloop prediction event (topic driftloop.predictions)"),
        ("label", LabelEvent, "driftloop label event (topic driftloop.labels)"),
    ):
        schema = msgspec.json.schema(cls)
        body = schema["$defs"][cls.__name__]
        body["properties"]["ts"]["description"] = "RFC 3339 timestamp with offset, or epoch milliseconds"
        body["properties"]["ts"]["anyOf"][1]["format"] = "date-time"
        # validation refuses epoch values below 10^11 ms (1973: almost surely epoch seconds)
        body["properties"]["ts"]["anyOf"][0]["minimum"] = 10**11
        doc = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://driftloop.dev/schemas/{name}-event.v1.json",
            "title": title,
            "oneOf": [{"$ref": "#/$defs/event"}, {"type": "array", "items": {"$ref": "#/$defs/event"}}],
            "$defs": {"event": body},
        }
        out[name] = doc
    return out
