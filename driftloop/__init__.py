"""driftloop: keep ML models honest in production.

Kafka consumers (:mod:`consumers`) stream prediction and label events into statistical drift
detectors (:mod:`detectors`), which raise alerts and enqueue retraining jobs (:mod:`retrain`).
The code is in eight layers, each importing only the layers below it (import-linter checks it,
``[tool.importlinter]`` in pyproject.toml), bottom to top:

* :mod:`driftloop.core` - base: configuration, events, store, tables, outbox;
* :mod:`driftloop.kafka` - Kafka clients and plumbing, the ``Publisher`` SDK;
* :mod:`consumers` - ingest: validation, join, the batch transaction, the poll loop;
* :mod:`detectors` - pure statistics (imports nothing of the project);
* :mod:`driftloop.monitoring` - drift analysis, champion switch, statistics history;
* :mod:`driftloop.alerts` - alert lifecycle and delivery;
* :mod:`retrain` - retraining jobs, the worker, the registry;
* :mod:`driftloop.app` - the service (composition root), CLI, API, demo, replay, report.

This module only re-exports the publisher SDK for services: ``from driftloop import Publisher``.
"""
from driftloop.kafka.publisher import Publisher

__all__ = ["Publisher"]
__version__ = "0.1.0"
