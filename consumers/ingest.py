"""One consumed batch: decode, validate, dead-letter, then write state + offsets in one transaction.

:func:`prepare` is pure (no I/O): Kafka records in, accepted columns and dead letters out.
:func:`commit` applies a prepared batch to the store in ONE transaction together with the
consumed offsets (see :mod:`driftloop.kafka.offsets` for fencing). What happens on a crash:

* before ``commit`` returns: nothing of the batch is stored; the consumer restarts from the
  stored offsets and processes the same records again, with the same result;
* after it returns: the state, the counters, the dead letters (as outbox rows) and the offsets
  are all stored; nothing is processed twice, and the outbox publishes the dead letters.
"""
from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Protocol

import msgspec
from sqlalchemy.engine import Connection

from consumers.join import JoinResult, apply_batch
from consumers.shadow_join import Source, apply_shadows
from consumers.validation import ValidLabels, ValidPredictions, split_shadows, validate_labels, validate_predictions
from driftloop.core.config import Config
from driftloop.core.events import BACKSLASH, LABEL, NUL_ESCAPE, PREDICTION, decode_message
from driftloop.core.store import UNATTRIBUTED, Store
from driftloop.kafka.dead_letters import dead_letter
from driftloop.kafka.offsets import TopicPartitionKey, advance_offsets

__all__ = ["Record", "RawRecord", "PreparedBatch", "BatchAnalyser", "prepare", "commit", "HOLD_BATCH_ENV"]

log = logging.getLogger(__name__)

HOLD_BATCH_ENV = "DRIFTLOOP_TEST_HOLD_BATCH"
"""Test-only: the path of a file. While that file exists, :func:`commit` waits before its
transaction begins (the batch is polled and prepared, nothing of it is written yet) and logs
once that it does. How tests put a batch in flight at a known point, e.g. to have another
consumer take its partitions meanwhile (tests/integration/test_fencing_kafka.py). Unset: no
effect beyond one environment lookup per batch."""


class Record(Protocol):
    """What we read of a Kafka ``ConsumerRecord``."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


@dataclass(slots=True)
class RawRecord:
    """A :class:`Record` read from elsewhere than Kafka: a file being replayed, a test, a bench."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


@dataclass(slots=True)
class PreparedBatch:
    predictions: dict[str, ValidPredictions] = field(default_factory=dict)
    labels: dict[str, ValidLabels] = field(default_factory=dict)
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    deltas: Counter = field(default_factory=Counter)
    next_offsets: dict[TopicPartitionKey, int] = field(default_factory=dict)
    records: int = 0
    # contract v1.1: model -> the batch's valid shadow predictions, kept out of ``predictions``
    # (consumers.shadow_join), and where each was read (aligned), for a dead letter in commit()
    shadows: dict[str, ValidPredictions] = field(default_factory=dict)
    shadow_sources: dict[str, list[Source]] = field(default_factory=dict)


class BatchAnalyser(Protocol):
    """Runs inside the batch transaction on what the batch added (drift detectors, alerts)."""

    def analyse(self, conn: Connection, result: JoinResult, now: int) -> None: ...

    def stamp_versions(self, predictions: dict[str, ValidPredictions], conn: Connection) -> None: ...


# a message's own bytes are stored as the event's payload only up to this size (bigger ones may
# carry unknown fields the schema ignores; those events are re-encoded, which drops them)
_MAX_VERBATIM_PAYLOAD = 4096


def _decode_side(records: list[Record], kind: Any, cfg: Config, validate: Callable, now: int,
                 out: PreparedBatch) -> dict[str, Any]:
    """Decode and validate one topic's records (predictions or labels); refused events go to
    ``out`` as dead letters. Returns the valid events' columns per model."""
    events: list[Any] = []
    source: list[int] = []                 # record index of each event
    verbatim: list[bytes | None] = []      # the message's bytes when it is exactly this one event
    one = kind.one.decode
    for ri, rec in enumerate(records):
        value = rec.value
        # fast path: the common message, one small JSON object, decoded by one C call (a message
        # that may carry U+0000 or non-ASCII bytes is checked first: msgspec skips unknown fields
        # without looking at their UTF-8)
        if (value is not None and value[:1] == b"{" and len(value) <= _MAX_VERBATIM_PAYLOAD
                and (BACKSLASH not in value or NUL_ESCAPE not in value)):
            try:
                if not value.isascii():
                    value.decode("utf-8")
                events.append(one(value))
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                pass                       # the slow path below says what is wrong
            else:
                source.append(ri)
                verbatim.append(value)
                continue
        evs = _decode_slow(rec, kind, cfg, now, out)
        n = len(evs)
        if n:
            events.extend(evs)
            source.extend([ri] * n)
            verbatim.extend([None] * n)
    valid, errors = validate(events, cfg, now)
    _refuse_invalid(records, events, source, verbatim, errors, cfg, now, out)
    if kind is PREDICTION:
        for vp in valid.values():
            vp.payloads = [verbatim[i] for i in vp.index.tolist()]
        valid, out.shadows = split_shadows(valid)
        out.shadow_sources = {m: [(records[source[i]].topic, records[source[i]].partition, records[source[i]].offset)
                                  for i in vs.index.tolist()] for m, vs in out.shadows.items()}
    return valid


def _decode_slow(rec: Record, kind: Any, cfg: Config, now: int, out: PreparedBatch) -> list[Any]:
    """A message the fast path did not take (an array, a big or odd message, an error): its
    events, each message or event error dead-lettered into ``out``."""
    lim = cfg.ingest
    value = rec.value
    dec = decode_message(value, kind, max_bytes=lim.max_message_bytes, max_events=lim.max_events_per_message)
    for err in dec.errors:
        _refuse(out, rec, err.error, err.raw, err.model, now, cfg, err.size)
    evs = dec.events
    if evs and kind is PREDICTION and max(map(len, map(_features, evs))) > lim.max_features:
        # events over the feature limit are refused here, not held until the batch is validated
        # (a 1 MiB message can carry ~90,000 features, ~10 MB as Python objects)
        whole = value if len(evs) == 1 and not dec.errors else None
        for ev in evs:
            if len(ev.features) > lim.max_features:
                _refuse(out, rec, f"features: {len(ev.features)} features > limit {lim.max_features}",
                        whole if whole is not None else _encode(ev), ev.model, now, cfg)
        evs = [ev for ev in evs if len(ev.features) <= lim.max_features]
    return evs


def _refuse_invalid(records: list[Record], events: list[Any], source: list[int], verbatim: list[bytes | None],
                    errors: list[tuple[int, str]], cfg: Config, now: int, out: PreparedBatch) -> None:
    """Dead-letter the events validation refused (``errors``: position in ``events``, reason),
    with the message's own bytes when it held only that event."""
    for pos, reason in errors:
        rec = records[source[pos]]
        ev = events[pos]
        raw = verbatim[pos] if verbatim[pos] is not None else _encode(ev)
        _refuse(out, rec, reason, raw, ev.model, now, cfg)


_features = attrgetter("features")


def _encode(ev: Any) -> bytes:
    return msgspec.json.encode(ev)


def _refuse(out: PreparedBatch, rec: Record, reason: str, raw: bytes | None, model: str | None, now: int,
            cfg: Config, size: int | None = None) -> None:
    """Dead-letter one input; count it under its model only if that model is configured."""
    raw = raw or b""
    out.dead_letters.append((model.encode() if model else None,
                             dead_letter(reason, rec.topic, rec.partition, rec.offset, raw, now, model, size)))
    out.deltas[(model if model in cfg.models else UNATTRIBUTED, "invalid")] += 1


def prepare(records: Iterable[Record], cfg: Config, now: int) -> PreparedBatch:
    """Decode and validate a batch of records from the predictions and labels topics."""
    out = PreparedBatch()
    preds: list[Record] = []
    labels: list[Record] = []
    for rec in records:
        out.records += 1
        key = (rec.topic, rec.partition)
        if rec.offset + 1 > out.next_offsets.get(key, -1):
            out.next_offsets[key] = rec.offset + 1
        if rec.topic == cfg.topics.predictions:
            preds.append(rec)
        elif rec.topic == cfg.topics.labels:
            labels.append(rec)
    if preds:
        out.predictions = _decode_side(preds, PREDICTION, cfg, validate_predictions, now, out)
    if labels:
        out.labels = _decode_side(labels, LABEL, cfg, validate_labels, now, out)
    return out


def commit(store: Store, cfg: Config, batch: PreparedBatch, *, group: str,
           expected: dict[TopicPartitionKey, int | None], now: int,
           analyser: BatchAnalyser | None = None) -> JoinResult:
    """Apply a prepared batch and advance the offsets, atomically. Raises ``Fenced``."""
    _hold_for_test(batch)
    with store.transaction() as conn:
        store.lock_models(conn, set(batch.predictions) | set(batch.labels) | set(batch.shadows))
        advance_offsets(store, conn, group, expected, batch.next_offsets, now)
        if analyser is not None:   # an event naming no version is the champion's: stored so
            analyser.stamp_versions(batch.predictions, conn)
        result = apply_batch(store, conn, cfg, batch.predictions, batch.labels, now)
        shadow_dead = apply_shadows(store, conn, cfg, batch.shadows, batch.shadow_sources, result, now)
        deltas = Counter(batch.deltas)
        deltas.update(result.deltas)
        store.add_counters(conn, deltas)
        store.add_outbox(conn, cfg.topics.dlq, batch.dead_letters + shadow_dead, now)
        if analyser is not None:
            analyser.analyse(conn, result, now)
    return result


def _hold_for_test(batch: PreparedBatch) -> None:
    """Wait while the file named by :data:`HOLD_BATCH_ENV` exists (tests only)."""
    path = os.environ.get(HOLD_BATCH_ENV)
    if not path or not os.path.exists(path):
        return
    log.warning("%s: holding a batch of %d records before its transaction while %s exists",
                HOLD_BATCH_ENV, batch.records, path)
    while os.path.exists(path):
        time.sleep(0.05)
    log.warning("%s: batch released", HOLD_BATCH_ENV)
