"""Create driftloop's topics (idempotent) with partition counts that suit each one.

Predictions and labels get the same partition count: both are keyed by model name, so a
model's predictions and labels land on the same partition number and the range assignor gives
both to the same monitor instance (the join still goes through the store, so a mismatch costs
locality, never correctness).
"""
from __future__ import annotations

from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from driftloop.core.config import Config
from driftloop.kafka.clients import make_admin

__all__ = ["topic_specs", "create_topics"]


def topic_specs(cfg: Config) -> dict[str, int]:
    """Topic name -> partitions."""
    t = cfg.topics
    return {t.predictions: t.partitions, t.labels: t.partitions, t.retrain: min(3, t.partitions),
            t.alerts: 1, t.models: 1, t.dlq: 1}


def create_topics(cfg: Config) -> dict[str, str]:
    """Create every missing topic; returns name -> 'created' | 'exists'."""
    admin = make_admin(cfg.kafka)
    try:
        existing = set(admin.list_topics())
        out: dict[str, str] = {}
        todo = []
        for name, parts in topic_specs(cfg).items():
            if name in existing:
                out[name] = "exists"
            else:
                todo.append(NewTopic(name=name, num_partitions=parts,
                                     replication_factor=cfg.topics.replication_factor))
        for topic in todo:
            try:
                admin.create_topics([topic])
                out[topic.name] = "created"
            except TopicAlreadyExistsError:
                out[topic.name] = "exists"
        return out
    finally:
        admin.close()
