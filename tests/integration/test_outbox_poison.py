"""A record Kafka refuses for good is set aside; the rows after it (alerts, dead letters) go out."""
from __future__ import annotations

from kafka.admin import NewTopic

from driftloop.core.outbox import OutboxPublisher
from driftloop.core.store import Store, outbox
from driftloop.kafka.clients import make_admin, make_producer
from tests.kafka_helpers import read_topic


def test_a_record_over_the_size_limit_does_not_block_the_rows_after_it(kafka_bootstrap, make_config, caplog):
    _path, cfg = make_config()
    topic = cfg.topics.alerts
    admin = make_admin(cfg.kafka)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    store = Store.from_config(cfg.store)
    store.create_schema()
    rows = [(b"k", b'{"n": 1}'),
            (b"k", b"x" * 1_100_000),     # over the producer's 1 MiB (Kafka's default limit)
            (b"k", b'{"n": 3}'),
            (b"k", b"y" * 3_000_000),
            (b"k", b'{"n": 5}')]
    with store.transaction() as conn:
        store.add_outbox(conn, topic, rows, 1)
    producer = make_producer(cfg.kafka)
    try:
        pub = OutboxPublisher(store, producer, timeout_s=20)
        assert pub.publish_pending() == 3
    finally:
        producer.close()
    assert (pub.published, pub.dropped) == (3, 2)
    assert [r.value for r in read_topic(kafka_bootstrap, topic)] == [b'{"n": 1}', b'{"n": 3}', b'{"n": 5}']
    with store.engine.connect() as c:
        sent = dict(c.execute(outbox.select().with_only_columns(outbox.c.id, outbox.c.sent_at)).all())
    assert [v > 0 for _k, v in sorted(sent.items())] == [True, False, True, False, True]   # refused: sent_at < 0
    assert store.unsent_outbox() == []
    assert sum("refused for good, set aside" in r.getMessage() for r in caplog.records) == 2
    store.dispose()


def test_a_record_the_broker_refuses_is_found_and_set_aside(kafka_bootstrap, make_config, caplog):
    """A topic whose max.message.bytes is below the record: the broker refuses it, and
    kafka-python's producer then fails everything (it is replaced); the rows around it go out."""
    _path, cfg = make_config()
    topic = cfg.topics.dlq
    admin = make_admin(cfg.kafka)
    admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "20000"})])
    admin.close()
    store = Store.from_config(cfg.store)
    store.create_schema()
    rows = [(b"k", b'{"n": 1}'), (b"k", b'{"n": 2}'),
            (b"k", b"x" * 50_000),          # under the producer's 1 MiB, over the topic's limit
            (b"k", b'{"n": 4}'),
            (b"k", b"y" * 60_000),
            (b"k", b'{"n": 6}')]
    with store.transaction() as conn:
        store.add_outbox(conn, topic, rows, 1)
    made = []

    def new_producer():
        made.append(make_producer(cfg.kafka))
        return made[-1]

    pub = OutboxPublisher(store, new_producer(), timeout_s=20, new_producer=new_producer)
    try:
        assert pub.publish_pending() == 4
        assert pub.publish_pending() == 0, "nothing left over"
    finally:
        pub.producer.close()
    assert (pub.published, pub.dropped) == (4, 2)
    # one at the start; per refusal, one when the batch failed and one once the culprit was found
    assert len(made) == 5
    assert [r.value for r in read_topic(kafka_bootstrap, topic)] == [b'{"n": 1}', b'{"n": 2}', b'{"n": 4}',
                                                                     b'{"n": 6}']
    with store.engine.connect() as c:
        sent = dict(c.execute(outbox.select().with_only_columns(outbox.c.id, outbox.c.sent_at)).all())
    assert [v > 0 for _k, v in sorted(sent.items())] == [True, True, False, True, False, True]
    assert sum("refused for good, set aside" in r.getMessage() for r in caplog.records) == 2
    store.dispose()
