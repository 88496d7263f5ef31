"""SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) settings pass from the configuration to every client.

Real broker, SASL_PLAINTEXT listener: CI and `make test` start it (`KAFKA_SASL=1 scripts/kafka.sh start`,
port 9094 or KAFKA_SASL_PORT). Without that listener these tests are skipped locally and fail in CI.
"""
from __future__ import annotations

import threading
import time
import uuid

import orjson
import pytest

from driftloop.app.service import MonitorService
from driftloop.core.config import KafkaConfig, load_config
from driftloop.kafka.clients import BrokerRefused, make_consumer, make_producer, wait_for_broker
from tests.kafka_helpers import label, prediction, produce, wait_for_counts

pytestmark = pytest.mark.kafka

MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def roundtrip(kcfg: KafkaConfig, n: int = 50, timeout_s: float = 60.0) -> None:
    """Produce ``n`` records to a new topic and consume them back, both through driftloop's clients."""
    topic = f"t{uuid.uuid4().hex[:10]}.secure"
    producer = make_producer(kcfg)
    try:
        for i in range(n):
            producer.send(topic, key=b"fraud", value=b"%d" % i)
        producer.flush(30)
    finally:
        producer.close()
    consumer = make_consumer(kcfg, group_id=f"test-{uuid.uuid4().hex[:10]}")
    got: list[bytes] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        while len(got) < n and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(r.value for r in records)
    finally:
        consumer.close()
    assert sorted(got, key=int) == [b"%d" % i for i in range(n)]


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_produce_and_consume_over_sasl(kafka_sasl, mechanism):
    kcfg = KafkaConfig(bootstrap_servers=kafka_sasl.sasl, security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism,
                       sasl_plain_username=kafka_sasl.user, sasl_plain_password=kafka_sasl.password,
                       session_timeout_ms=6000, heartbeat_interval_ms=1000)
    roundtrip(kcfg)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_monitor_over_sasl(kafka_sasl, mechanism, make_config, kafka_bootstrap):
    path, _ = make_config(bootstrap=kafka_sasl.sasl)
    # the secret comes from the environment, as an operator would pass it
    text = path.read_text().replace("kafka:\n", "kafka:\n  security_protocol: SASL_PLAINTEXT\n"
                                    f"  sasl_mechanism: {mechanism}\n  sasl_plain_username: {kafka_sasl.user}\n", 1)
    path.write_text(text)
    cfg = load_config(path, environ={"DRIFTLOOP__KAFKA__SASL_PLAIN_PASSWORD": kafka_sasl.password})
    assert (cfg.kafka.security_protocol, cfg.kafka.sasl_mechanism) == ("SASL_PLAINTEXT", mechanism)
    assert kafka_sasl.password not in repr(cfg)
    produce(kafka_bootstrap, [(cfg.topics.predictions, b"fraud", orjson.dumps(prediction(i))) for i in range(300)]
            + [(cfg.topics.labels, b"fraud", orjson.dumps(label(i))) for i in range(300)])
    service = MonitorService(cfg)
    t = threading.Thread(target=service.run, daemon=True)
    t.start()
    try:
        wait_for_counts(cfg, {"predictions": 300, "joined": 300}, timeout_s=120)
    finally:
        service.stop()
        t.join(60)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_wrong_password_is_refused(kafka_sasl, mechanism):
    bad = KafkaConfig(bootstrap_servers=kafka_sasl.sasl, security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism,
                      sasl_plain_username=kafka_sasl.user, sasl_plain_password="wrong-secret", request_timeout_ms=3000)
    with pytest.raises(BrokerRefused, match="SASL") as err:
        wait_for_broker(bad, timeout_s=20)
    assert "sasl_plain_password" in str(err.value) and "wrong-secret" not in str(err.value)

