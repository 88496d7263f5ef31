"""TLS (SSL, SASL_SSL) settings pass from the configuration to every client; the broker is verified with the CA.

Real broker: CI and `make test` start it with `KAFKA_SASL=1 KAFKA_TLS=1 scripts/kafka.sh start` (SSL on 9095,
SASL_SSL on 9096, a dev CA in .kafka/tls). Without those listeners these tests are skipped locally and fail in CI.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from driftloop.core.config import Config, ConfigError, KafkaConfig, load_config
from driftloop.kafka.clients import BrokerRefused, wait_for_broker
from tests.integration.test_sasl import roundtrip
from tests.kafka_helpers import label, prediction, produce, start_monitor, wait_for_counts

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]


def test_produce_and_consume_over_ssl_verifying_the_broker(kafka_tls):
    kcfg = KafkaConfig(bootstrap_servers=kafka_tls.tls, security_protocol="SSL", ssl_cafile=kafka_tls.ca,
                       ssl_check_hostname=True, session_timeout_ms=6000, heartbeat_interval_ms=1000)
    roundtrip(kcfg)


def test_produce_and_consume_with_a_client_certificate(kafka_tls):
    """Mutual TLS: client.pem with its encrypted key, unlocked by ssl_password."""
    kcfg = KafkaConfig(bootstrap_servers=kafka_tls.tls, security_protocol="SSL", ssl_cafile=kafka_tls.ca,
                       ssl_certfile=str(kafka_tls.tls_dir / "client.pem"), ssl_keyfile=str(kafka_tls.tls_dir / "client.key"),
                       ssl_password=kafka_tls.key_password, session_timeout_ms=6000, heartbeat_interval_ms=1000)
    assert kafka_tls.key_password not in repr(kcfg)
    roundtrip(kcfg)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_produce_and_consume_over_sasl_ssl(kafka_tls, mechanism):
    kcfg = KafkaConfig(bootstrap_servers=kafka_tls.sasl_ssl, security_protocol="SASL_SSL", sasl_mechanism=mechanism,
                       sasl_plain_username=kafka_tls.user, sasl_plain_password=kafka_tls.password,
                       ssl_cafile=kafka_tls.ca, session_timeout_ms=6000, heartbeat_interval_ms=1000)
    roundtrip(kcfg)


def test_a_broker_signed_by_an_unknown_ca_is_refused(kafka_tls):
    """Without the dev CA (system trust store only) the client refuses the broker's certificate."""
    kcfg = KafkaConfig(bootstrap_servers=kafka_tls.tls, security_protocol="SSL", request_timeout_ms=3000)
    with pytest.raises(BrokerRefused, match="ssl_cafile") as err:
        wait_for_broker(kcfg, timeout_s=20)
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)


def test_a_client_certificate_from_another_ca_is_refused_by_the_broker(kafka_tls, tmp_path):
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed (scripts/kafka.sh makes the dev CA with it)")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=intruder",
                    "-keyout", str(tmp_path / "rogue.key"), "-out", str(tmp_path / "rogue.pem")],
                   check=True, capture_output=True)
    kcfg = KafkaConfig(bootstrap_servers=kafka_tls.tls, security_protocol="SSL", ssl_cafile=kafka_tls.ca,
                       ssl_certfile=str(tmp_path / "rogue.pem"), ssl_keyfile=str(tmp_path / "rogue.key"),
                       request_timeout_ms=3000)
    with pytest.raises(BrokerRefused, match="client certificate"):
        wait_for_broker(kcfg, timeout_s=20)


def test_wrong_key_password_fails_at_load(kafka_tls, tmp_path):
    with pytest.raises(ConfigError, match="ssl_password"):
        load_config_text(f"""
kafka:
  security_protocol: SSL
  ssl_cafile: {kafka_tls.ca}
  ssl_certfile: {kafka_tls.tls_dir / 'client.pem'}
  ssl_keyfile: {kafka_tls.tls_dir / 'client.key'}
""", environ={"DRIFTLOOP__KAFKA__SSL_PASSWORD": "not-it"}, tmp=tmp_path)


def load_config_text(text: str, *, environ: dict[str, str], tmp: Path) -> Config:
    path = tmp / "c.yaml"
    path.write_text(text)
    return load_config(path, environ=environ)


def readme_security_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Security"):]
    block = section[section.index("```yaml") + len("```yaml"):]
    return block[:block.index("```")]


def test_readme_security_example_connects(kafka_tls, tmp_path, monkeypatch):
    """The README's Security block, as written (files under tls/, secrets from the environment), reaches the broker."""
    (tmp_path / "tls").mkdir()
    for name in ("ca.pem", "client.pem", "client.key"):
        shutil.copy(kafka_tls.tls_dir / name, tmp_path / "tls" / name)
    monkeypatch.chdir(tmp_path)   # relative TLS paths are taken from the working directory
    cfg = load_config_text(readme_security_block(), tmp=tmp_path, environ={
        "DRIFTLOOP__KAFKA__BOOTSTRAP_SERVERS": kafka_tls.sasl_ssl,
        "DRIFTLOOP__KAFKA__SASL_PLAIN_PASSWORD": kafka_tls.password,
        "DRIFTLOOP__KAFKA__SSL_PASSWORD": kafka_tls.key_password,
    })
    assert cfg.kafka.security_protocol == "SASL_SSL"
    assert kafka_tls.password not in repr(cfg) and kafka_tls.key_password not in repr(cfg)
    wait_for_broker(cfg.kafka, timeout_s=30)


def test_monitor_cli_over_sasl_ssl(kafka_tls, make_config, kafka_bootstrap, tmp_path, monkeypatch):
    """`driftloop monitor` as an operator runs it: SCRAM over TLS, the password in the environment."""
    path, _ = make_config(bootstrap=kafka_tls.sasl_ssl)
    text = path.read_text().replace("kafka:\n", "kafka:\n  security_protocol: SASL_SSL\n  sasl_mechanism: SCRAM-SHA-512\n"
                                    f"  sasl_plain_username: {kafka_tls.user}\n  ssl_cafile: {kafka_tls.ca}\n", 1)
    path.write_text(text)
    monkeypatch.setenv("DRIFTLOOP__KAFKA__SASL_PLAIN_PASSWORD", kafka_tls.password)
    cfg = load_config(path)
    produce(kafka_bootstrap, [(cfg.topics.predictions, b"fraud", orjson.dumps(prediction(i))) for i in range(300)]
            + [(cfg.topics.labels, b"fraud", orjson.dumps(label(i))) for i in range(300)])
    log = tmp_path / "monitor.log"
    proc = start_monitor(path, log_path=log)
    try:
        wait_for_counts(cfg, {"predictions": 300, "joined": 300}, timeout_s=120, proc=proc)
    finally:
        proc.terminate()
        proc.wait(60)
    assert kafka_tls.password not in log.read_text(errors="replace")
