"""Alert sinks: the Kafka alerts topic (always), generic JSON webhook, Slack, Alertmanager v2,
PagerDuty Events v2. Each has ``send(message, key)``; :func:`build_sinks` makes them from the
configuration. Formats are pure functions in :mod:`driftloop.alerts.sinks.formats`."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftloop.alerts.sinks.base import DeliveryError, Sink
from driftloop.alerts.sinks.http import HttpSink, make_http_sink, sign_headers, verify_signature
from driftloop.alerts.sinks.kafka import KafkaSink

__all__ = ["Sink", "DeliveryError", "HttpSink", "KafkaSink", "build_sinks", "sign_headers", "verify_signature"]


def build_sinks(config: Any, alerts_cfg: Any, *, kafka: bool = True,
                environ: Mapping[str, str] | None = None) -> list[Any]:
    """The Kafka sink (unless ``kafka=False``, for tests without a broker) and every configured sink."""
    sinks: list[Any] = []
    if kafka:
        from driftloop.kafka.clients import make_producer

        kcfg = config.kafka
        sinks.append(KafkaSink(config.topics.alerts, lambda: make_producer(kcfg, linger_ms=0),
                               timeout_s=min(30.0, alerts_cfg.dispatch.lease_s / 2)))
    sinks.extend(make_http_sink(s, environ) for s in alerts_cfg.sinks)
    return sinks
