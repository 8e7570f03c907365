"""Visitor states (and triggers) to Kafka through librdkafka (confluent-kafka), acknowledged.

Faust's own ``Table.send_changelog`` builds a ``FutureMessage`` and an
asyncio future per record and hands it to aiokafka's pure-Python producer:
profiled on ``cxstream bench`` that was a fifth of the worker's CPU time,
for about one record per visitor per batch. This writer produces the same
records (same topic, explicit partition, key, value) with confluent-kafka,
whose per-record cost is in C, and waits for Kafka's acknowledgement of
every one before the batch's offsets can be committed. Faust still reads
the topic to rebuild the table when a worker starts. Triggers go the same
way (``TriggerWriter``): through Faust's ``Topic.send`` they cost about
0.4 ms each on ``cxstream bench``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from confluent_kafka import KafkaError, KafkaException, Producer

from pipeline.settings import Settings
from pipeline.wire.topics import kafka_config

__all__ = ["ChangelogError", "ChangelogWriter", "TriggerWriter"]

log = logging.getLogger("cxstream.worker")

FLUSH_TIMEOUT_S = 30.0
END_MARK_KEY = b"\x00cx-end"  # never a visitor key (those start with the tenant)
MAX_BACKOFF_S = 30.0


class ChangelogError(RuntimeError):
    """Records were not acknowledged by Kafka and the worker is stopping."""


ANY_PARTITION = -1  # librdkafka's RD_KAFKA_PARTITION_UA: the partitioner chooses from the key


class AckedWriter:
    """Produces (partition, key, value) records to one topic and waits until Kafka acknowledged all of them.

    The partitioner is murmur2, Kafka's Java default (and aiokafka's), for
    records produced with ``ANY_PARTITION``.
    """

    linger_ms = 5

    def __init__(self, settings: Settings, bootstrap: str, topic: str, *, in_order: bool = False) -> None:
        """``in_order``: records of one partition reach Kafka in the order produced, retries included
        (the idempotent producer); the customer stage relies on it."""
        self.topic = topic
        config = {
            **kafka_config(settings, bootstrap),
            "acks": "all",
            "linger.ms": self.linger_ms,
            "queue.buffering.max.kbytes": 131072,
            "partitioner": "murmur2_random",
        }
        if in_order:
            config["enable.idempotence"] = True
        self._producer = Producer(config)
        self._failed: list[tuple[int, bytes, bytes | None]] = []

    def _produce(self, partition: int, key: bytes, value: bytes | None) -> None:
        def on_delivery(err: KafkaError | None, _msg: object) -> None:
            if err is not None:
                self._failed.append((partition, key, value))

        while True:
            try:
                self._producer.produce(self.topic, value, key, partition=partition, on_delivery=on_delivery)
                return
            except BufferError:  # local queue full: let deliveries drain it
                self._producer.poll(0.05)

    def _flush(self) -> int:
        return self._producer.flush(FLUSH_TIMEOUT_S)

    async def _write_all(self, records: list[tuple[int, bytes, bytes | None]], stopping: Callable[[], bool]) -> None:
        for partition, key, value in records:
            self._produce(partition, key, value)
        await self.settle(stopping)

    def send(self, records: list[tuple[int, bytes, bytes | None]]) -> None:
        """Hand the records to librdkafka now, without waiting: it sends them within ``linger.ms``.

        ``settle`` later waits for their acknowledgement (and produces the
        failed ones again).
        """
        for partition, key, value in records:
            self._produce(partition, key, value)
        self._producer.poll(0)  # serve delivery reports of earlier records

    async def settle(self, stopping: Callable[[], bool]) -> None:
        """Return once Kafka acknowledged every record produced so far; failed ones are produced again with backoff.

        Raises ChangelogError only when the worker is stopping: the batch is
        then not acknowledged and is replayed by the next owner.
        """
        loop = asyncio.get_running_loop()
        delay = 0.25
        while True:
            left = await loop.run_in_executor(None, self._flush)
            pending, self._failed = self._failed, []
            if left:
                raise ChangelogError(f"{left} records to {self.topic} still unacknowledged after {FLUSH_TIMEOUT_S:.0f}s")
            if not pending:
                return
            if stopping():
                raise ChangelogError(f"{len(pending)} records to {self.topic} were not acknowledged")
            log.warning("writing %d records to %s failed; retrying in %.1fs", len(pending), self.topic, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)
            for partition, key, value in pending:
                self._produce(partition, key, value)

    def broker_answers(self, timeout_s: float = 2.0) -> bool:
        """True when a broker answers a metadata request (blocking: call it from a thread)."""
        try:
            return bool(self._producer.list_topics(self.topic, timeout=timeout_s).brokers)
        except KafkaException:
            return False

    def close(self) -> None:
        self._producer.flush(FLUSH_TIMEOUT_S)


class TriggerWriter(AckedWriter):
    """Triggers to ``cx.triggers``, keyed by customer (``pipeline.wire.triggers.trigger_key``).

    A retry can reorder two triggers of one key; consumers de-duplicate and
    order by ``trigger_id`` and ``emitted_at`` anyway (at-least-once).
    """

    linger_ms = 1


class CustomerWriter(AckedWriter):
    """What the device stage tells the customer stage, to ``cx.customers`` (``pipeline.detect.customer``).

    Messages are keyed by customer; each device partition's promise goes to
    every partition after the messages it covers. The merge needs each
    partition to receive them in the order sent: the producer is idempotent.
    """

    linger_ms = 1

    def __init__(self, settings: Settings, bootstrap: str, topic: str) -> None:
        super().__init__(settings, bootstrap, topic, in_order=True)


class ChangelogWriter(AckedWriter):
    """Produces ``{key: state}`` to one changelog partition and waits until Kafka acknowledged them."""

    async def write(self, records: list[tuple[int, bytes, bytes | None]], stopping: Callable[[], bool]) -> None:
        """Produce (partition, key, value) records; return once Kafka acknowledged all of them.

        Failed deliveries are produced again with backoff (one record per key
        per batch, so a retry cannot overtake a newer state of its key).
        Raises ChangelogError only when the worker is stopping: the batch is
        then not acknowledged and is replayed by the next owner.
        """
        await self._write_all(records, stopping)
        # One tombstone per partition, in a batch of its own, after the
        # states: a broker that reports a partition's end as the last
        # batch's first offset + 1 (tansu does) then still reports an end
        # past every state, so a recovering worker reads them all. Faust
        # applies a tombstone of a key it does not hold as nothing.
        await self._write_all([(p, END_MARK_KEY, None) for p in sorted({p for p, _, _ in records})], stopping)
