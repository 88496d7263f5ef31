"""Old module paths of the layout before the layers (issue 13), for names written down elsewhere.

A configuration file written before the move may name a module by its old path, e.g. a retraining
recipe's ``factory: driftloop.demo_data:make_estimator`` (the demo writes one). :func:`current_module`
maps such a name to where the module lives now, so those files keep loading. (Detector state
snapshots carry their own table, ``detectors.composite._RENAMED_MODULES``; nothing in the store or
in a Kafka message names a module of the moved packages.)

>>> current_module("driftloop.demo_data")
'driftloop.app.demo_data'
>>> current_module("consumers.kafka_clients")
'driftloop.kafka.clients'
>>> current_module("sklearn.linear_model")
'sklearn.linear_model'
"""
from __future__ import annotations

__all__ = ["MOVED_MODULES", "current_module"]

MOVED_MODULES: dict[str, str] = {
    "driftloop.config": "driftloop.core.config",
    "driftloop.alerts.config": "driftloop.core.config.alerts",
    "driftloop.api.config": "driftloop.core.config.api",
    "retrain.config": "driftloop.core.config.retrain",
    "driftloop.events": "driftloop.core.events",
    "driftloop.store": "driftloop.core.store",
    "driftloop.outbox": "driftloop.core.outbox",
    "driftloop.jsonio": "driftloop.core.jsonio",
    "driftloop.logsetup": "driftloop.core.logsetup",
    "consumers.kafka_clients": "driftloop.kafka.clients",
    "consumers.polling": "driftloop.kafka.polling",
    "consumers.stuck_calls": "driftloop.kafka.stuck_calls",
    "consumers.offsets": "driftloop.kafka.offsets",
    "consumers.dead_letters": "driftloop.kafka.dead_letters",
    "consumers.lean_records": "driftloop.kafka.lean_records",
    "driftloop.topics": "driftloop.kafka.topics",
    "driftloop.publisher": "driftloop.kafka.publisher",
    "consumers.analysis": "driftloop.monitoring.analysis",
    "consumers.champion_switch": "driftloop.monitoring.champion_switch",
    "driftloop.alerts.failures": "driftloop.monitoring.failures",
    "driftloop.api.history": "driftloop.monitoring.history",
    "driftloop.api": "driftloop.app.api",
    "driftloop.service": "driftloop.app.service",
    "driftloop.cli": "driftloop.app.cli",
    "driftloop.demo": "driftloop.app.demo",
    "driftloop.demo_data": "driftloop.app.demo_data",
    "driftloop.replay": "driftloop.app.replay",
    "driftloop.report": "driftloop.app.report",
    "driftloop.stats": "driftloop.app.stats",
}
"""Old dotted module path -> new one (a package maps its submodules too: ``driftloop.api.routes``)."""


def current_module(name: str) -> str:
    """Where the module ``name`` lives now: ``name`` itself unless it (or a package above it) moved."""
    head, rest = name, ""
    while head:
        if head in MOVED_MODULES:
            return MOVED_MODULES[head] + rest
        head, dot, tail = head.rpartition(".")
        rest = dot + tail + rest
    return name
