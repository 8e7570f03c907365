"""Kafka topics cxstream uses, defined once, and their creation with explicit configs.

Topics are created with every config a client may ask about set
explicitly: some brokers (tansu among them) describe only the configs set at
creation, and clients that expect ``retention.ms`` then break.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.settings import Settings

__all__ = ["TopicSpec", "topic_specs", "ensure_topics", "kafka_config", "kafka_reason"]

WEEK_MS = 7 * 24 * 3600 * 1000
# librdkafka's own log lines (a broker gone, a session lost) go through Python logging, so that
# CX_LOG_FORMAT=json keeps every line of a process JSON; without a logger librdkafka prints
# "%3|...|FAIL|..." lines to stderr. They are passed on when the client is polled.
KAFKA_LOG = logging.getLogger("cxstream.kafka")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def kafka_reason(exc: Exception) -> str:
    """The text of a ``KafkaException``'s ``KafkaError`` ("Failed to get metadata: ..."); its repr is only the code."""
    error = exc.args[0] if exc.args else None
    return error.str() if hasattr(error, "str") else str(exc)


def kafka_config(settings: Settings, bootstrap: str) -> dict[str, object]:
    """librdkafka client options: bootstrap, the configured security settings, and its log to ``cxstream.kafka``."""
    return {"bootstrap.servers": bootstrap, **settings.kafka_client_config(), "logger": KAFKA_LOG}


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The topics the collector, the worker and cxstream deliver need, with explicit configs."""
    base = {
        "cleanup.policy": "delete",
        "retention.ms": str(WEEK_MS),
        "max.message.bytes": str(8 * 1024 * 1024),
    }
    n = settings.kafka_partitions
    return [
        TopicSpec(settings.topic_events, n, base),
        TopicSpec(settings.customers_topic, n, base),  # the worker's customer stage (docs/identity.md)
        TopicSpec(settings.topic_deadletter, n, base),
        TopicSpec(settings.topic_triggers, n, base),
        TopicSpec(settings.topic_delivery_deadletter, n, base),  # cxstream deliver (docs/delivery.md)
        TopicSpec(settings.topic_deliveries, n, base),  # delivery outcomes, stored by the worker
    ]


def ensure_topics(settings: Settings, bootstrap: str, timeout_s: float = 15.0) -> dict[str, int]:
    """Create missing topics; return ``{name: partitions}`` as the broker reports them.

    Runs at start-up of every component. An existing topic is kept as it is
    (its partition count wins: the collector reads it from metadata).
    """
    admin = AdminClient(kafka_config(settings, bootstrap))
    existing = admin.list_topics(timeout=timeout_s).topics
    wanted = [s for s in topic_specs(settings) if s.name not in existing]
    if wanted:
        futures = admin.create_topics(
            [
                NewTopic(s.name, num_partitions=s.partitions, replication_factor=settings.kafka_replication, config=s.config)
                for s in wanted
            ],
            operation_timeout=timeout_s,
        )
        for name, future in futures.items():
            try:
                future.result()
            except Exception as exc:  # a concurrent creator won the race: fine
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
    topics = admin.list_topics(timeout=timeout_s).topics
    return {s.name: len(topics[s.name].partitions) for s in topic_specs(settings) if s.name in topics}
