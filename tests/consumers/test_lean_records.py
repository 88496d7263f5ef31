"""The lean record unpacking (driftloop/kafka/lean_records.py) gives exactly kafka-python's records."""
from __future__ import annotations

import random
import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError
from kafka.record import MemoryRecords, MemoryRecordsBuilder
from kafka.record.util import decode_varint, encode_varint

from driftloop.kafka import lean_records
from driftloop.kafka.lean_records import _varint


def test_varint_matches_kafka_python():
    rnd = random.Random(7)
    values = [0, 1, -1, 63, 64, -64, -65, 8191, 8192, -8193, 2**31 - 1, -(2**31), 2**62, -(2**63)]
    values += [rnd.randint(-(2**40), 2**40) for _ in range(2000)]
    for v in values:
        buf = bytearray()
        encode_varint(v, buf.append)
        data = bytes(b"\x07" + buf + b"\x09")
        assert _varint(data, 1) == decode_varint(data, 1) == (v, 1 + len(buf))


def _batch(records: list[tuple], compression: int = 0, offset: int = 0) -> bytes:
    b = MemoryRecordsBuilder(magic=2, compression_type=compression, batch_size=1 << 24, offset=offset)
    for ts, key, value, headers in records:
        b.append(ts, key, value, headers)
    b.close()
    return bytes(b.buffer())


def _unpack(cls, data: bytes, fetch_offset: int = 0) -> list:
    pr = cls(fetch_offset, TopicPartition("t", 0), MemoryRecords(data), check_crcs=True)
    return pr.take()


def test_same_records_as_kafka_python_on_built_batches():
    rnd = random.Random(5)
    recs = [(1_700_000_000_000 + rnd.randint(-10**6, 10**6), None if i % 4 == 0 else f"k{i}".encode(),
             None if i % 9 == 0 else bytes(rnd.getrandbits(8) for _ in range(rnd.choice([0, 5, 200, 9000]))),
             [("h", b"v"), ("ümlaut", None)] if i % 6 == 0 else [])
            for i in range(300)]
    for compression in (0, 1):                               # none, gzip
        data = _batch(recs[:150], compression) + _batch(recs[150:], compression, offset=150)
        for start in (0, 7, 151):
            stock = _unpack(Fetcher.PartitionRecords, data, start)
            lean = _unpack(lean_records.LeanPartitionRecords, data, start)
            assert len(stock) == 300 - start and lean == stock


def test_corrupt_records_raise_like_kafka_python():
    good = bytearray(_batch([(1_700_000_000_000, b"k", b"value-%d" % i, []) for i in range(5)]))
    # the batch header is 61 bytes; the first record's length varint, its value's length; the last
    # record's header count (a header that is not there)
    for at, byte in ((61, 0x7E), (67, 0x7E), (len(good) - 1, 0x02)):
        bad = bytearray(good)
        bad[at] = byte
        for cls in (Fetcher.PartitionRecords, lean_records.LeanPartitionRecords):
            pr = cls(0, TopicPartition("t", 0), MemoryRecords(bytes(bad)), check_crcs=False)
            with pytest.raises(CorruptRecordError):
                while pr:
                    pr.take(2)
    bad = bytearray(good)
    bad[-1] ^= 0xFF                                          # the batch CRC no longer matches
    with pytest.raises(CorruptRecordError, match="crc"):
        _unpack(lean_records.LeanPartitionRecords, bytes(bad))


def test_installs_on_the_pinned_kafka_python():
    cons = KafkaConsumer(bootstrap_servers=["127.0.0.1:1"], api_version=(3, 0))
    try:
        assert lean_records.install(cons), "kafka-python's fetcher layout changed: the monitor is slower"
        assert cons._fetcher.PartitionRecords is lean_records.LeanPartitionRecords
    finally:
        cons.close()


def _read_all(bootstrap: str, topic: str, n: int, *, lean: bool, isolation: str = "read_uncommitted") -> list:
    cons = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False, max_poll_records=500,
                         isolation_level=isolation, fetch_max_bytes=64 * 1024, max_partition_fetch_bytes=64 * 1024)
    try:
        if lean:
            assert lean_records.install(cons)
        tps = [TopicPartition(topic, p) for p in sorted(cons.partitions_for_topic(topic))]
        cons.assign(tps)
        cons.seek_to_beginning(*tps)
        # start mid-batch on partition 0: the records before the position are skipped, as kafka-python does
        cons.seek(tps[0], 3)
        out: list = []
        deadline = time.monotonic() + 60
        idle_since = time.monotonic()
        while time.monotonic() < deadline:          # at least n, then until 2 s without a record
            got = [r for recs in cons.poll(timeout_ms=300).values() for r in recs]
            out.extend(got)
            if got:
                idle_since = time.monotonic()
            elif len(out) >= n and time.monotonic() - idle_since > 2:
                break
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        cons.close()


@pytest.mark.kafka
def test_same_records_as_kafka_python_on_real_fetches(kafka_bootstrap, monkeypatch):
    """Keys and no keys, null values, headers (non-ASCII keys, empty values), values whose length
    needs 1-3 varint bytes, explicit and negative timestamp deltas, gzip batches, and a
    transaction (control batches: that fetch goes to kafka-python's own code)."""
    topic = f"lean-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=[kafka_bootstrap])
    admin.create_topics([NewTopic(topic, 2, 1)])
    admin.close()
    rnd = random.Random(3)
    sent = 0
    for compression in (None, "gzip"):
        prod = KafkaProducer(bootstrap_servers=[kafka_bootstrap], compression_type=compression, linger_ms=20)
        for i in range(400):
            size = rnd.choice([0, 10, 63, 64, 300, 9000, 70_000])
            value = None if i % 97 == 0 else bytes(rnd.getrandbits(8) for _ in range(size))
            key = None if i % 3 == 0 and value is not None else f"k{i}".encode()
            headers = [] if i % 5 else [("trace-id", b"abc"), ("größe", b"\xff\x00"), ("", b"")]
            ts = None if i % 7 else int(time.time() * 1000) - rnd.randint(-5000, 5000)
            prod.send(topic, key=key, value=value, headers=headers, partition=i % 2, timestamp_ms=ts)
            sent += 1
        prod.flush()
        prod.close()
    tx = KafkaProducer(bootstrap_servers=[kafka_bootstrap], transactional_id=f"tx-{topic}")
    tx.init_transactions()
    for aborted in (False, True):
        tx.begin_transaction()
        for i in range(20):
            tx.send(topic, key=b"tx", value=f"tx-{aborted}-{i}".encode(), partition=i % 2)
        if aborted:
            tx.abort_transaction()
        else:
            tx.commit_transaction()
            sent += 20
    tx.close()
    lean_fetches = []
    original = lean_records.LeanPartitionRecords._lean
    monkeypatch.setattr(lean_records.LeanPartitionRecords, "_lean",
                        lambda self, tp, batches: (lean_fetches.append(tp), original(self, tp, batches))[1])
    # read uncommitted: also what the aborted transaction wrote (what of it reached the broker)
    stock = _read_all(kafka_bootstrap, topic, sent - 3, lean=False)
    lean = _read_all(kafka_bootstrap, topic, sent - 3, lean=True)
    assert sent - 3 <= len(stock) <= sent + 20 - 3   # the first 3 of partition 0 are skipped
    assert lean == stock
    assert len(lean_fetches) >= 10, "the lean path did not run: nothing compared"
    assert any(r.headers for r in lean) and any(r.value is None for r in lean) and any(r.key is None for r in lean)
    committed_stock = _read_all(kafka_bootstrap, topic, sent - 3, lean=False, isolation="read_committed")
    committed_lean = _read_all(kafka_bootstrap, topic, sent - 3, lean=True, isolation="read_committed")
    assert len(committed_stock) == sent - 3
    assert committed_lean == committed_stock
    assert not any(r.value and r.value.startswith(b"tx-True") for r in committed_lean)
