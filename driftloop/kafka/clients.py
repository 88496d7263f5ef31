"""Thin construction of kafka-python clients from :class:`driftloop.core.config.KafkaConfig`.

Kept in one place so that security settings (SASL, TLS) and test-friendly timeouts apply to
every consumer and producer driftloop makes.
"""
from __future__ import annotations

import collections
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from driftloop.core.config import KafkaConfig

__all__ = ["make_consumer", "make_producer", "make_admin", "wait_for_broker", "BrokerUnavailable",
           "BrokerRefused"]

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """No broker answered at the configured bootstrap servers within the allowed time."""


class BrokerRefused(BrokerUnavailable):
    """The broker answered but refused us (credentials, TLS trust, SASL mechanism): retrying will not help."""


# kafka-python reports why a connection failed only in its log; these causes are final
_REFUSALS = (
    ("SaslAuthenticationFailed", "the broker refused the SASL credentials of user {user!r} ({mech}): "
                                 "check kafka.sasl_plain_username and kafka.sasl_plain_password"),
    ("UnsupportedSaslMechanism", "the broker does not offer SASL mechanism {mech} on this listener: "
                                 "check kafka.sasl_mechanism"),
    ("CERTIFICATE_VERIFY_FAILED", "the broker's TLS certificate was not accepted: check kafka.ssl_cafile "
                                  "(the CA that signed it) and kafka.ssl_check_hostname"),
    ("ALERT_CERTIFICATE_UNKNOWN", "the broker did not accept the client certificate: check kafka.ssl_certfile "
                                  "and kafka.ssl_keyfile (signed by a CA the broker trusts?)"),
    ("ALERT_BAD_CERTIFICATE", "the broker did not accept the client certificate: check kafka.ssl_certfile "
                              "and kafka.ssl_keyfile"),
)


class _Causes(logging.Handler):
    """Keeps the last few warnings and errors kafka-python logs (why a connection failed)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: collections.deque[str] = collections.deque(maxlen=20)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(record.getMessage())
        except Exception:  # noqa: BLE001 - a log record that cannot format is no reason to fail
            pass

    def refusal(self, kcfg: KafkaConfig) -> str | None:
        for needle, text in _REFUSALS:
            for msg in reversed(self.messages):
                if needle in msg:
                    return text.format(user=kcfg.sasl_plain_username, mech=kcfg.sasl_mechanism) + f" ({_tail(msg)})"
        # kafka-python often sees only the close that follows a refused login, not the refusal: a connection
        # lost again and again after the version exchange (the broker answered) is the login failing
        lost = [m for m in self.messages if "broker_version=(" in m and "Connection lost" in m]
        if kcfg.security_protocol.startswith("SASL_") and len(lost) >= 2:
            return (f"the broker closed the connection during SASL authentication ({len(lost)} times): "
                    f"check kafka.sasl_plain_username, kafka.sasl_plain_password and kafka.sasl_mechanism "
                    f"(user {kcfg.sasl_plain_username!r}, {kcfg.sasl_mechanism}), and that this is a SASL listener")
        return None

    def last(self) -> str | None:
        """The most telling recent cause (kafka-python's final 'Bootstrap failed' says least)."""
        useful = [m for m in self.messages if "Bootstrap failed" not in m and "not ready; waiting" not in m]
        return _tail((useful or list(self.messages) or [""])[-1]) or None


def _tail(msg: str) -> str:
    """kafka-python's message without its connection prefix ('<KafkaConnection ...>: Connection lost: ')."""
    msg = re.sub(r" \(backoff [0-9.]+ secs\)$", "", msg.rsplit(">: ", 1)[-1])
    return msg.removeprefix("Connection lost: ").removeprefix("Connection failed: ")


@contextmanager
def _kafka_log_causes() -> Iterator[_Causes]:
    handler = _Causes()
    logger = logging.getLogger("kafka")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def make_consumer(kcfg: KafkaConfig, *, group_id: str | None, max_poll_records: int = 5000,
                  max_message_bytes: int = 16 * 1024 * 1024, **extra: Any) -> KafkaConsumer:
    kw = kcfg.client_kwargs()
    kw.update(
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_poll_records,
        session_timeout_ms=kcfg.session_timeout_ms,
        heartbeat_interval_ms=kcfg.heartbeat_interval_ms,
        max_poll_interval_ms=kcfg.max_poll_interval_ms,
        max_partition_fetch_bytes=max(1_048_576, max_message_bytes + 65_536),
        metadata_max_age_ms=30_000,   # notice new partitions within 30 s, not kafka-python's 5 min
    )
    kw.update(extra)
    return KafkaConsumer(**kw)


def make_producer(kcfg: KafkaConfig, **extra: Any) -> KafkaProducer:
    kw = kcfg.client_kwargs()
    # 1 MiB, Kafka's default message.max.bytes: driftloop's own records are smaller (dead letters
    # are cut to 1,000,000 bytes) and a bigger one is refused here, where the outbox can set it
    # aside; a broker-side refusal puts kafka-python's producer in a fatal state instead
    kw.update(acks="all", linger_ms=5, retries=5, max_request_size=1_048_576)
    kw.update(extra)
    return KafkaProducer(**kw)


def make_admin(kcfg: KafkaConfig, **extra: Any) -> KafkaAdminClient:
    kw = kcfg.client_kwargs()
    kw.update(extra)
    return KafkaAdminClient(**kw)


def _try_metadata(kcfg: KafkaConfig, timeout_s: float) -> None:
    admin = make_admin(kcfg, bootstrap_timeout_ms=int(timeout_s * 1000))
    try:
        admin.list_topics()
    finally:
        admin.close()


def _no_listener(kcfg: KafkaConfig, timeout_s: float = 2.0) -> str | None:
    """None if some bootstrap server accepts a TCP connection, else why none did."""
    why = "no bootstrap servers configured"
    for server in kcfg.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s):
                return None
        except (OSError, ValueError) as exc:
            why = f"{server.strip()}: {getattr(exc, 'strerror', None) or exc}"
    return why


def wait_for_broker(kcfg: KafkaConfig, timeout_s: float = 60.0, *, log_every_s: float = 5.0,
                    stop: threading.Event | None = None) -> bool:
    """Block until the cluster answers a metadata request; retry with a clear log line.

    Raises :class:`BrokerRefused` at once when the broker refuses the credentials or the TLS
    handshake fails on trust, else :class:`BrokerUnavailable` after ``timeout_s``. Returns True
    once the broker answers, False if ``stop`` was set meanwhile (SIGTERM while waiting).
    """
    deadline = time.monotonic() + timeout_s
    last_log = 0.0
    started = time.monotonic()
    waited = False
    while True:
        refusal = None
        cause = _no_listener(kcfg)   # a closed port needs no Kafka client (and none of its log lines)
        if cause is None:
            with _kafka_log_causes() as causes:
                try:   # each try gives up within 5 s, so that a refusal is noticed early
                    _try_metadata(kcfg, max(1.0, min(5.0, deadline - time.monotonic())))
                    if waited:
                        log.info("Kafka broker at %s answers after %.0fs", kcfg.bootstrap_servers,
                                 time.monotonic() - started)
                    return True
                except (KafkaError, OSError) as exc:
                    cause = causes.last() or type(exc).__name__
                refusal = causes.refusal(kcfg)
        waited = True
        where = f"{kcfg.bootstrap_servers} ({kcfg.security_protocol})"
        if refusal is not None:
            raise BrokerRefused(f"Kafka at {where}: {refusal}")
        now = time.monotonic()
        if now >= deadline:
            raise BrokerUnavailable(
                f"no Kafka broker answered at {where} within {timeout_s:.0f}s (last error: {cause}); "
                "is it running, and is security_protocol the listener's? (scripts/kafka.sh start)")
        if now - last_log >= log_every_s:
            log.warning("Kafka broker at %s not reachable yet (%s); retrying", where, cause)
            last_log = now
        if stop is None:
            time.sleep(1.0)
        elif stop.wait(1.0):
            log.info("stopped while waiting for the Kafka broker at %s", kcfg.bootstrap_servers)
            return False
