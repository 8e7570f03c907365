"""The Faust app built from the settings."""

from __future__ import annotations

import asyncio

import aiokafka
from confluent_kafka import Producer

from pipeline.app import create_app, seek_to_committed_or_earliest
from pipeline.settings import Settings
from pipeline.topics import ensure_topics


def test_worker_consumer_fetch_wait_comes_from_the_settings() -> None:
    # faust-streaming hard-codes 1,500 ms; the embedded broker answers a fetch
    # only when the wait runs out, so this is the latency floor there.
    async def created_wait() -> int:
        app = create_app(Settings(_env_file=None, kafka_fetch_wait_ms=20), "127.0.0.1:9")
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()  # never started: releases what the constructor holds

    assert asyncio.run(created_wait()) == 20


def test_fetch_wait_defaults_to_100_ms() -> None:
    assert Settings(_env_file=None).kafka_fetch_wait_ms == 100


def test_seek_back_puts_a_never_committed_partition_at_its_earliest_record(kafka: str, fresh_settings: Settings) -> None:
    # faust-streaming drops records fetched while its flow is stopped (a
    # rebalance, a table recovery) and then seeks back to the committed
    # offsets. Partition 0 here was never committed, partition 1 was at 1.
    settings = fresh_settings.model_copy(update={"kafka_bootstrap": kafka})
    ensure_topics(settings, kafka)
    topic = settings.topic_events
    producer = Producer({"bootstrap.servers": kafka})
    for partition, count in ((0, 3), (1, 2)):
        for i in range(count):
            producer.produce(topic, f"r{i}".encode(), partition=partition)
            producer.flush(10)  # one batch per record

    async def positions_after_dropping_what_was_fetched(seek) -> tuple[int, int]:  # noqa: ANN001
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=kafka, group_id=settings.worker_group, enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            tps = [aiokafka.TopicPartition(topic, 0), aiokafka.TopicPartition(topic, 1)]
            consumer.assign(tps)
            await consumer.commit({tps[1]: 1})
            fetched = 0
            for _ in range(40):
                if fetched == 4:  # partition 0's 3 records and partition 1's record 1
                    break
                batches = await consumer.getmany(*tps, timeout_ms=500)
                fetched += sum(map(len, batches.values()))
            assert fetched == 4
            await seek(consumer)
            return await consumer.position(tps[0]), await consumer.position(tps[1])
        finally:
            await consumer.stop()

    # aiokafka alone leaves the never-committed partition past its dropped records.
    assert asyncio.run(positions_after_dropping_what_was_fetched(lambda c: c.seek_to_committed())) == (3, 1)
    assert asyncio.run(
        positions_after_dropping_what_was_fetched(lambda c: seek_to_committed_or_earliest(c, skip_topics=()))
    ) == (0, 1)
