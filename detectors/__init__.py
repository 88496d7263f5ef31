"""Drift detectors: pure statistics over batches of events, with no Kafka, store or I/O.

The monitor feeds them micro-batches; ``driftloop replay`` feeds them files. Every detector's
state can be snapshot to bytes and restored exactly (see :mod:`detectors.state`).
"""
from detectors.base import Detection, Snapshotable, StreamDetector, Window

__all__ = ["Detection", "Snapshotable", "StreamDetector", "Window"]
