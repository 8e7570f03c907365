"""The collector's Kafka producer: confluent-kafka, acknowledged sends awaited from asyncio.

``send_many`` hands records to librdkafka and returns once Kafka has
acknowledged every one of them (``acks=all``, idempotent), or raises
``BrokerUnavailable``: the HTTP handler then answers 503 and the SDK
retries. Nothing is buffered that could be lost: a record is either
acknowledged before the 200, or the request fails.

A daemon thread polls librdkafka for delivery reports and resolves the
waiting coroutine with ``loop.call_soon_threadsafe``, once per call (not
per record).

An idempotent producer becomes unusable after a fatal error, and also
when a broker that lost its state (the embedded broker after a restart)
answers ``UNKNOWN_PRODUCER_ID``: librdkafka then bumps the producer's epoch
itself and retries, which such a broker never accepts, until the record
times out. After a fatal error or a timed-out delivery the producer
replaces its librdkafka client on the next send (a new client asks the
broker for a new producer id); the requests that were in flight fail with
503 and are retried by the SDKs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException, Producer

from pipeline.collector.packing import Record
from pipeline.settings import Settings
from pipeline.wire.topics import kafka_config

__all__ = ["DELIVERY_TIMEOUT_MS", "BrokerUnavailable", "EventProducer", "KafkaProducer"]

log = logging.getLogger("cxstream.collector")

# Short enough that a request to a collector whose broker is down gets its
# 503 well inside an SDK's HTTP timeout (analytics-python: 15 s).
DELIVERY_TIMEOUT_MS = 10_000
POLL_INTERVAL_S = 0.05


class BrokerUnavailable(RuntimeError):
    """Kafka did not acknowledge a record (broker down, timeout, queue full, fatal error)."""


class EventProducer(Protocol):
    """What the HTTP server needs from a producer (``KafkaProducer``, or a fake in tests)."""

    async def send_many(self, records: Sequence[Record]) -> None: ...

    def partitions_for(self, topic: str) -> int: ...

    def healthy(self) -> bool: ...

    def close(self) -> None: ...


def _resolve(future: asyncio.Future, error: KafkaError | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(BrokerUnavailable(f"Kafka did not acknowledge a record: {error.str()}"))


class _Delivery:
    """The delivery reports of one ``send_many`` call; ``on_delivery`` runs in a poll thread."""

    __slots__ = ("remaining", "failed", "loop", "future", "client")

    def __init__(self, count: int, loop: asyncio.AbstractEventLoop, future: asyncio.Future, client: "_Client") -> None:
        self.remaining = count
        self.failed = False
        self.loop = loop
        self.future = future
        self.client = client

    def on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        self.remaining -= 1
        if err is not None:
            if err.fatal():
                self.client.on_error(err)
            elif err.code() == KafkaError._MSG_TIMED_OUT:
                self.client.timed_out = True
            if not self.failed:
                self.failed = True
                self._settle(err)
        elif self.remaining == 0 and not self.failed:
            self._settle(None)

    def _settle(self, err: KafkaError | None) -> None:
        try:
            self.loop.call_soon_threadsafe(_resolve, self.future, err)
        except RuntimeError:  # the loop closed during shutdown: nobody waits any more
            pass


class _Client:
    """One librdkafka producer, the thread that serves its delivery reports, and its fatal error."""

    def __init__(self, conf: dict) -> None:
        self.log: logging.Logger = conf["logger"]
        self.fatal: KafkaError | None = None
        self.timed_out = False  # a delivery timed out: the next send replaces this client
        self.producer = Producer({**conf, "error_cb": self.on_error})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="cx-producer-poll", daemon=True)
        self._thread.start()

    def on_error(self, err: KafkaError) -> None:
        """librdkafka's error callback (poll thread): remember a fatal error, log the rest."""
        if err.fatal() or err.code() == KafkaError._FATAL:
            if self.fatal is None:
                self.log.warning("kafka producer failed fatally, it will be replaced: %s", err.str())
                self.fatal = err
        else:
            self.log.info("kafka: %s", err.str())

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.producer.poll(POLL_INTERVAL_S)
            except KafkaException as exc:  # confluent-kafka raises a fatal error here, not via error_cb
                self.on_error(exc.args[0])

    def stop_polling(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def retire(self, timeout_s: float) -> None:
        """Fail whatever is still queued and serve its delivery reports (after a fatal error)."""
        self.stop_polling()
        try:
            self.producer.purge()
            self.producer.flush(timeout_s)
        except KafkaException as exc:
            self.log.info("retiring the failed producer: %s", exc)


class KafkaProducer:
    """Acknowledged sends to Kafka for the collector and deliver (see the module docstring)."""

    def __init__(self, settings: Settings, bootstrap: str, *, delivery_timeout_ms: int = DELIVERY_TIMEOUT_MS,
                 client_id: str = "cxstream-collector", logger: logging.Logger = log) -> None:
        self._conf = {
            **kafka_config(settings, bootstrap),
            "client.id": client_id,
            "acks": "all",
            "enable.idempotence": True,
            # 1 ms, not 5: a request waits for its own acknowledgement, so the linger is
            # latency every request pays (docs/performance.md, "Levers measured").
            "linger.ms": 1,
            "compression.type": "lz4",
            "message.timeout.ms": delivery_timeout_ms,
            # Java's default partitioner, for the records given no partition (dead letters).
            "partitioner": "murmur2_random",
            # Topics are created with explicit configs by ensure_topics, never implicitly.
            "allow.auto.create.topics": False,
            "logger": logger,  # librdkafka's log lines through Python logging, not raw stderr
        }
        self._timeout_s = delivery_timeout_ms / 1000
        self._partitions: dict[str, int] = {}
        self._client = _Client(self._conf)

    def _current(self) -> _Client:
        """The client to produce with; one that failed fatally or timed out a delivery is replaced first."""
        if self._client.fatal is not None or self._client.timed_out:
            if self._client.fatal is None:
                self._client.log.warning("a delivery to Kafka timed out: the producer is replaced by a new one")
            old, self._client = self._client, _Client(self._conf)
            threading.Thread(target=old.retire, args=(self._timeout_s,), name="cx-producer-retire", daemon=True).start()
        return self._client

    async def send_many(self, records: Sequence[Record]) -> None:
        """Produce ``records`` (topic, partition or None, key, value); return when all are acknowledged.

        Raises BrokerUnavailable if any record is not acknowledged within the
        delivery timeout, the local queue is full, or the producer failed
        fatally. Records before the failing one may still be delivered: the
        SDK's retry then repeats them, and consumers de-duplicate on ids.
        """
        if not records:
            return
        client = self._current()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        delivery = _Delivery(len(records), loop, future, client)
        producer = client.producer
        try:
            for topic, partition, key, value in records:
                if partition is None:
                    producer.produce(topic, value, key, on_delivery=delivery.on_delivery)
                else:
                    producer.produce(topic, value, key, partition, on_delivery=delivery.on_delivery)
        except BufferError as exc:
            raise BrokerUnavailable(f"Kafka refused a record: {exc}") from None
        except KafkaException as exc:
            client.on_error(exc.args[0])  # after a fatal error produce() fails with _FATAL
            raise BrokerUnavailable(f"Kafka refused a record: {exc}") from None
        try:
            # librdkafka reports every record within message.timeout.ms; the
            # margin only guards against a report that never comes.
            await asyncio.wait_for(future, self._timeout_s + 5)
        except TimeoutError:
            raise BrokerUnavailable("no delivery report from Kafka in time") from None

    def partitions_for(self, topic: str) -> int:
        """The topic's partition count from broker metadata, cached after the first success.

        Blocking (up to 5 s): call it from a thread. Raises BrokerUnavailable
        when the broker does not answer or the topic does not exist.
        """
        cached = self._partitions.get(topic)
        if cached is not None:
            return cached
        try:
            meta = self._client.producer.list_topics(topic, timeout=5)
        except KafkaException as exc:
            raise BrokerUnavailable(f"no metadata for {topic}: {exc}") from None
        info = meta.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            why = info.error if info is not None else "absent"
            raise BrokerUnavailable(f"topic {topic} is not available: {why}")
        self._partitions[topic] = len(info.partitions)
        return self._partitions[topic]

    def healthy(self, timeout_s: float = 2.0) -> bool:
        """True when a broker answers a metadata request. Blocking: call it from a thread."""
        try:
            return bool(self._client.producer.list_topics(timeout=timeout_s).brokers)
        except KafkaException:
            return False

    def close(self, timeout_s: float = 30.0) -> None:
        """Deliver what is queued (at most ``timeout_s``), then stop. Blocking: call it from a thread."""
        self._client.stop_polling()
        remaining = self._client.producer.flush(timeout_s)
        if remaining:
            self._client.log.warning("stopped with %d records not acknowledged by Kafka", remaining)
