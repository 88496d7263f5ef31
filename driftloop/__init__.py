"""driftloop: keep ML models honest in production.

Kafka consumers (:mod:`consumers`) stream prediction and label events into statistical drift
detectors (:mod:`detectors`), which raise alerts and enqueue retraining jobs (:mod:`retrain`).
This package holds the shared pieces: event schemas, configuration, the store, the CLI and
the publisher SDK for services.
"""
from driftloop.kafka.publisher import Publisher

__all__ = ["Publisher"]
__version__ = "0.1.0"
