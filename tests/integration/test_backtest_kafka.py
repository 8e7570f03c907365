"""``cxstream backtest --kafka`` reads the events topic between offsets, on a real broker."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from pipeline.backtest import load_kafka
from pipeline.records import encode_batch
from pipeline.settings import Settings
from pipeline.topics import ensure_topics, kafka_config
from tests.detect.helpers import MIN, T0, add, page

pytestmark = pytest.mark.integration


def test_events_topic_is_read_between_offsets_in_order(kafka: str, fresh_settings: Settings) -> None:
    settings = fresh_settings.model_copy(update={"kafka_bootstrap": kafka})
    ensure_topics(settings, kafka)
    # partition 0: records r0 [a0, a1], r1 [a2]; partition 1: record r0 [b0]
    a = [add(T0, anon="anon-a"), page(T0 + MIN, anon="anon-a"), page(T0 + 2 * MIN, anon="anon-a")]
    b = [add(T0, anon="anon-b")]
    producer = Producer(kafka_config(settings, kafka))
    for partition, events in ((0, a[:2]), (0, a[2:]), (1, b)):
        producer.produce(settings.topic_events, encode_batch(events), partition=partition)
    assert producer.flush(15) == 0

    everything = load_kafka(settings, 0, None)
    assert [e["event_id"] for e in everything.events] == [e["event_id"] for e in a + b]
    from_second = load_kafka(settings, 1, None)  # partition 1 has nothing from offset 1
    assert [e["event_id"] for e in from_second.events] == [a[2]["event_id"]]
    first_only = load_kafka(settings, 0, 1)
    assert [e["event_id"] for e in first_only.events] == [e["event_id"] for e in a[:2] + b]
