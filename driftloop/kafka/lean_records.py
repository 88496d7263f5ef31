"""A leaner unpacking of fetched record batches for the monitor's consumer.

kafka-python turns every fetched record into a ``DefaultRecord`` and then a ``ConsumerRecord``,
through a dozen property calls per record: about 16 us per record, a third of the monitor's
ingest time (``bench/ingest.py``). :class:`LeanPartitionRecords` reads the same bytes straight
into the same ``ConsumerRecord`` tuples (topic, partition, leader epoch, offset, timestamp and its
type, key, value, headers and the serialized sizes), for the common fetch only:

* every batch in the fetch is a v2 (magic 2) data batch: no control batch (transactions), no
  legacy v0/v1 message set;
* no key or value deserializer is set (the monitor reads bytes);
* read-uncommitted, or no batch written by a transactional or idempotent producer id.

Anything else is left to kafka-python's own code, decided per fetch. The batch CRC is checked as
kafka-python does (``check_crcs``), and a record whose lengths do not add up raises
``CorruptRecordError`` like kafka-python. It relies on kafka-python 3.0's ``Fetcher`` internals
(``PartitionRecords`` and ``DefaultRecordBatch``'s buffer), checked by :func:`install`: on any
other layout the consumer keeps kafka-python's unpacking and one log line says so.
``tests/consumers/test_lean_records.py`` compares both on real fetches (gzip, headers, null keys
and values, transactions).
"""
from __future__ import annotations

import itertools
import logging
from typing import Any

import kafka.errors as Errors
from kafka.record import MemoryRecords

try:
    from kafka.consumer.fetcher import ConsumerRecord, Fetcher, IsolationLevel
    from kafka.record.default_records import DefaultRecordBatch
except ImportError:     # pragma: no cover - another kafka-python layout: install() says so
    Fetcher = None

__all__ = ["install", "LeanPartitionRecords"]

log = logging.getLogger(__name__)

_LOG_APPEND_TIME = 1


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint (Kafka's record fields) at ``pos``: (value, next position)."""
    b = buf[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    result = b & 0x7F
    shift = 7
    pos += 1
    while True:
        b = buf[pos]
        result |= (b & 0x7F) << shift
        pos += 1
        if b < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift >= 64:
            raise ValueError("varint out of int64 range")


def _nullable(buf: bytes, pos: int) -> tuple[int, bytes | None, int]:
    """Kafka's nullable bytes at ``pos`` (a varint length, -1 for null): (length, bytes, next position)."""
    n, pos = _varint(buf, pos)
    if n < 0:
        return n, None, pos
    return n, buf[pos:pos + n], pos + n


def _headers(buf: bytes, pos: int, n_headers: int) -> tuple[list[tuple[str, bytes | None]], int, int]:
    """A record's ``n_headers`` headers at ``pos``: (headers, their size as kafka-python counts it,
    next position). ``ValueError``/``IndexError`` on a truncated buffer (the caller wraps them)."""
    if n_headers < 0:
        raise Errors.CorruptRecordError(f"Found invalid number of record headers {n_headers}")
    headers = []
    header_size = 0
    for _h in range(n_headers):
        hk_len, pos = _varint(buf, pos)
        if hk_len < 0:
            raise Errors.CorruptRecordError(f"Invalid negative header key size {hk_len}")
        h_key = buf[pos:pos + hk_len].decode("utf-8")
        pos += hk_len
        hv_len, h_value, pos = _nullable(buf, pos)
        headers.append((h_key, h_value))
        header_size += hk_len + (hv_len if hv_len > 0 else 0)
    return headers, header_size, pos


def _simple_batches(data: Any, isolation_level: Any) -> list[Any] | None:
    """A fetch's batches if every one is a v2 data batch the lean path may read, else None
    (the fetch is then read by kafka-python from its own, untouched ``MemoryRecords``)."""
    peek = MemoryRecords(data)
    batches = []
    batch = peek.next_batch()
    while batch is not None:
        if not isinstance(batch, DefaultRecordBatch) or batch.is_control_batch:
            return None
        if isolation_level == IsolationLevel.READ_COMMITTED and batch.has_producer_id():
            return None
        batches.append(batch)
        batch = peek.next_batch()
    return batches


if Fetcher is not None:
    class LeanPartitionRecords(Fetcher.PartitionRecords):
        """kafka-python's ``PartitionRecords`` with a lean record loop for simple fetches."""

        def __init__(self, fetch_offset: int, tp: Any, records: Any, key_deserializer: Any = None,
                     value_deserializer: Any = None, check_crcs: bool = True,
                     isolation_level: Any = IsolationLevel.READ_UNCOMMITTED, **kw: Any) -> None:
            super().__init__(fetch_offset, tp, records, key_deserializer=key_deserializer,
                             value_deserializer=value_deserializer, check_crcs=check_crcs,
                             isolation_level=isolation_level, **kw)
            if key_deserializer is None and value_deserializer is None:
                batches = _simple_batches(records._buffer, isolation_level)
                if batches is not None:
                    self.record_iterator = itertools.dropwhile(self._maybe_skip_record, self._lean(tp, batches))

        def _open_batch(self, tp: Any, batch: Any) -> tuple[int, bytes, int]:
            """Check the batch's CRC (if ``check_crcs``), note its leader epoch and uncompress it:
            (epoch, the records' bytes, the position of the first record)."""
            if self.check_crcs and not batch.validate_crc():
                raise Errors.CorruptRecordError(
                    f"Record batch for partition {tp} at offset {batch.base_offset} failed crc check")
            self.leader_epoch = epoch = batch.leader_epoch
            batch._maybe_uncompress()
            return epoch, bytes(batch._buffer), batch._pos     # bytes: a slice is one copy

        def _lean(self, tp: Any, batches: list[Any]) -> Any:
            """The records of ``batches`` as kafka-python's ``ConsumerRecord``s, unpacked in one loop
            (the same records, checks and errors as kafka-python's own unpacking)."""
            topic, partition = tp.topic, tp.partition
            varint, nullable = _varint, _nullable
            last = None
            for batch in batches:
                last = batch
                epoch, buf, pos = self._open_batch(tp, batch)
                base = batch.base_offset
                ts_type = batch.timestamp_type
                log_append = ts_type == _LOG_APPEND_TIME
                ts0 = batch.max_timestamp if log_append else batch.first_timestamp
                for _ in range(batch.records_count):
                    rec_start = pos
                    try:
                        length, pos = varint(buf, pos)
                        start = pos
                        ts_delta, pos = varint(buf, pos + 1)      # pos: attributes (unused)
                        offset_delta, pos = varint(buf, pos)
                        key_len, key, pos = nullable(buf, pos)
                        value_len, value, pos = nullable(buf, pos)
                        n_headers, pos = varint(buf, pos)
                        headers: list[tuple[str, bytes | None]] = []
                        header_size = -1
                        if n_headers:   # rare: a call only for records that carry headers
                            headers, header_size, pos = _headers(buf, pos, n_headers)
                    except (ValueError, IndexError) as err:
                        raise Errors.CorruptRecordError(f"Found invalid record structure: {err!r}") from err
                    if pos - start != length or pos > len(buf):
                        raise Errors.CorruptRecordError(
                            f"Invalid record size: expected to read {length} bytes in record payload, "
                            f"but instead read {pos - start}")
                    offset = base + offset_delta
                    self.records_read += 1
                    self.bytes_read += pos - rec_start
                    self.next_fetch_offset = offset + 1
                    yield ConsumerRecord(topic, partition, epoch, offset, ts0 if log_append else ts0 + ts_delta,
                                         ts_type, key, value, headers, None,
                                         -1 if key is None else key_len, -1 if value is None else value_len,
                                         header_size)
                if pos != len(buf):
                    raise Errors.CorruptRecordError(f"{len(buf) - pos} unconsumed bytes after all records consumed")
            if last is not None:
                self.next_fetch_offset = last.next_offset
            self.drain()
else:   # pragma: no cover
    LeanPartitionRecords = None  # type: ignore[assignment,misc]  # another kafka-python layout: install() says so


def install(consumer: Any) -> bool:
    """Make ``consumer`` (a kafka-python ``KafkaConsumer``) unpack simple fetches the lean way.

    False, with one log line, when this kafka-python does not have the layout this relies on:
    the consumer then keeps kafka-python's own unpacking (slower, same records).
    """
    fetcher: Any = getattr(consumer, "_fetcher", None)
    ok = (LeanPartitionRecords is not None and fetcher is not None
          and hasattr(fetcher, "PartitionRecords") and hasattr(DefaultRecordBatch, "_maybe_uncompress")
          and "_buffer" in getattr(DefaultRecordBatch, "__slots__", ()) and hasattr(MemoryRecords, "__slots__")
          and "_buffer" in MemoryRecords.__slots__)
    if not ok:
        log.warning("kafka-python's fetcher layout is not the one driftloop.kafka.lean_records knows: "
                    "records are unpacked by kafka-python (slower, same records)")
        return False
    fetcher.PartitionRecords = LeanPartitionRecords
    return True
