"""The ``cxstream deliver`` process: triggers topic -> webhooks, offsets committed behind the deliveries.

One consumer (librdkafka, group ``CX_DELIVERY_GROUP``) reads the triggers
topic. Each record becomes a task that delivers it to every destination
whose filters take it (``pipeline.deliver.send``), concurrently across
records, up to ``CX_DELIVERY_MAX_INFLIGHT`` at once (then the consumer is
paused). When every destination's delivery of a record has ended,
delivered or given up, its outcomes go to the deliveries topic (the worker
stores them in ``cx.deliveries``) and its dead letters to the delivery
dead-letter topic; once Kafka has acknowledged those, the record is done.

Offsets (``Offsets``): per partition, the commit is the first record not
yet done. A record that finished ahead of an earlier one waits for it, so
a commit never passes a record whose delivery is unfinished. A ``kill -9``
therefore loses nothing: the next process delivers again every record
after the last commit, some of which the receiver may have had already,
with the same ``Idempotency-Key``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from pipeline.collector.producer import BrokerUnavailable, KafkaProducer
from pipeline.deliver.config import Destination
from pipeline.deliver.send import Outcome, RateLimiter, deliver
from pipeline.settings import Settings
from pipeline.wire.topics import KAFKA_LOG, ensure_topics, kafka_config
from pipeline.wire.triggers import decode_trigger

__all__ = ["Deliverer", "Offsets", "heartbeat_ms", "routable_trigger", "run_deliver"]

log = logging.getLogger("cxstream.deliver")

POLL_S = 0.2
PRODUCE_RETRY_S = 1.0


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _epoch_ms(value: object) -> object:
    """An Avro-decoded trigger with its timestamp-millis fields back to epoch milliseconds (the JSON form)."""
    if isinstance(value, datetime):
        return (value - _EPOCH) // timedelta(milliseconds=1)
    if isinstance(value, dict):
        return {k: _epoch_ms(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_epoch_ms(v) for v in value]
    return value


# Fields the destinations filter on (``Destination.wants``): text or absent.
_ROUTED = ("kind", "action", "tenant")


def routable_trigger(record: object) -> dict:
    """``record`` (a decoded ``cx.triggers`` value) if it is a trigger deliver can route, else ValueError saying why.

    A trigger has a non-empty text ``trigger_id``; ``kind``, ``action`` and
    ``tenant`` are text when present. Anything else on the topic (another
    producer's record, a hand-written test) is dead-lettered as
    ``not_a_trigger`` and committed: a list as ``kind`` once failed the
    destinations' filter, stopped deliver, and stopped it again after
    every restart.
    """
    if not isinstance(record, dict):
        raise ValueError(f"a trigger is a JSON object, got {type(record).__name__}")
    if not isinstance(record.get("trigger_id"), str) or not record["trigger_id"]:
        raise ValueError("no trigger_id")
    for name in _ROUTED:
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be text, got {type(value).__name__}")
    return record


def heartbeat_ms(session_timeout_s: float) -> int:
    """The consumer's heartbeat interval: a tenth of the session timeout, at least 500 ms (as the workers')."""
    return max(500, int(session_timeout_s * 100))


class Offsets:
    """Records taken and not yet done, per partition, in offset order; the commit is the first not done.

    Thread-safe: the consumer's revoke callback runs in the consumer's thread.
    """

    def __init__(self) -> None:
        self.pending: dict[tuple[str, int], dict[int, bool]] = {}
        self.due: dict[tuple[str, int], int] = {}  # commits not yet made
        self._lock = threading.Lock()

    def take(self, topic: str, partition: int, offset: int) -> None:
        with self._lock:
            self.pending.setdefault((topic, partition), {})[offset] = False

    def done(self, topic: str, partition: int, offset: int) -> None:
        """Mark a record done; a record of a partition no longer assigned is ignored."""
        with self._lock:
            records = self.pending.get((topic, partition))
            if records is None or offset not in records:
                return
            records[offset] = True
            first = None
            while records:
                head = next(iter(records))
                if not records[head]:
                    break
                del records[head]
                first = head
            if first is not None:
                self.due[(topic, partition)] = first + 1

    def inflight(self) -> int:
        with self._lock:
            return sum(len(r) for r in self.pending.values())

    def forget(self, tps: list[tuple[str, int]]) -> None:
        with self._lock:
            for tp in tps:
                self.pending.pop(tp, None)
                self.due.pop(tp, None)

    def take_due(self, only: list[tuple[str, int]] | None = None) -> list[TopicPartition]:
        with self._lock:
            keys = [k for k in self.due if only is None or k in only]
            return [TopicPartition(t, p, self.due.pop((t, p))) for t, p in keys]

    def put_back(self, tps: list[TopicPartition]) -> None:
        """Commits that failed: due again, unless a later one is due or the partition was revoked."""
        with self._lock:
            for tp in tps:
                key = (tp.topic, tp.partition)
                if key in self.pending:
                    self.due[key] = max(self.due.get(key, 0), tp.offset)


class Deliverer:
    """Runs the consume -> deliver -> commit loop until ``stop`` is set."""

    def __init__(self, settings: Settings, bootstrap: str, destinations: list[Destination]) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.destinations = destinations
        self.limiters = {d.name: RateLimiter(d.rate_per_s) for d in destinations}
        self.offsets = Offsets()
        self.stop = asyncio.Event()
        self.stats = {"records": 0, "delivered": 0, "dead_lettered": 0, "skipped": 0, "commits": 0}
        self.failed = False  # a delivery task raised: a bug; the process stops with exit code 1
        self._kafka = ThreadPoolExecutor(1, thread_name_prefix="cx-deliver-consumer")  # every Consumer call
        self._tasks: set[asyncio.Task] = set()
        self._paused = False
        conf = kafka_config(settings, bootstrap)
        self.consumer = Consumer(
            {
                **conf,
                "group.id": settings.delivery_group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": int(settings.worker_session_timeout_s * 1000),
                # librdkafka's default heartbeat (3 s) is not below a short session: at 3 s every
                # session expired between two heartbeats and the group rebalanced forever. A tenth
                # of the session, as the workers use.
                "heartbeat.interval.ms": heartbeat_ms(settings.worker_session_timeout_s),
                "fetch.wait.max.ms": settings.kafka_fetch_wait_ms,
            }
        )
        # The collector's producer: acknowledged writes, and a new librdkafka client after a
        # timed-out or fatal one (a broker that forgot the producer id never accepts the old one).
        self.kafka = KafkaProducer(settings, bootstrap, client_id="cxstream-deliver", logger=KAFKA_LOG)

    # --- Kafka -----------------------------------------------------------------

    async def _in_consumer(self, fn, *args, **kwargs):  # noqa: ANN001, ANN202 - any Consumer method
        return await asyncio.get_running_loop().run_in_executor(self._kafka, lambda: fn(*args, **kwargs))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Commit what is done of the revoked partitions, then forget them (runs inside ``consume``)."""
        keys = [(tp.topic, tp.partition) for tp in partitions]
        due = self.offsets.take_due(keys)
        if due:
            try:
                consumer.commit(offsets=due, asynchronous=False)
                self.stats["commits"] += 1
            except KafkaException as exc:
                log.warning("commit on revoke failed (%s); the next owner delivers those records again", exc)
        self.offsets.forget(keys)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._paused = False  # a new assignment starts unpaused; ``_flow`` pauses it again if still full

    async def _produce(self, topic: str, key: bytes, value: bytes) -> None:
        """Produce one record and return once Kafka acknowledged it; retried until it is."""
        while True:
            try:
                await self.kafka.send_many([(topic, None, key, value)])
                return
            except BrokerUnavailable as exc:
                log.warning("writing to %s failed (%s); retrying in %.0f s", topic, exc, PRODUCE_RETRY_S)
                await asyncio.sleep(PRODUCE_RETRY_S)

    # --- one record ------------------------------------------------------------

    async def _handle(self, session: aiohttp.ClientSession, msg: Message, slots: dict[str, asyncio.Semaphore]) -> None:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        where = f"{topic}[{partition}]@{offset}"
        value = msg.value() or b""
        try:
            record = routable_trigger(decode_trigger(value, self.settings.trigger_format))
        except Exception as exc:  # noqa: BLE001 - any record must end somewhere
            log.error("%s is not a trigger (%s); dead-lettered", where, exc)
            await self._produce(
                self.settings.topic_delivery_deadletter,
                msg.key() or b"",
                orjson.dumps({
                    "trigger_id": "", "destination": "", "reason": "not_a_trigger", "attempts": 0,
                    "last_status": 0, "last_error": f"{type(exc).__name__}: {exc}"[:1000], "source": where,
                    "dead_lettered_at": int(time.time() * 1000), "trigger": None,
                    "value": value.decode("utf-8", "replace")[:10_000],
                }),
            )  # fmt: skip
            self.offsets.done(topic, partition, offset)
            return
        if self.settings.trigger_format == "json":
            body = value  # the topic's bytes themselves
        else:
            record = _epoch_ms(record)
            body = orjson.dumps(record)
        trigger_id, kind = record["trigger_id"], str(record.get("kind") or "")
        wanted = [d for d in self.destinations if d.wants(record)]
        if not wanted:
            self.stats["skipped"] += 1
        outcomes: list[Outcome] = await asyncio.gather(
            *(
                deliver(
                    session, d, self.limiters[d.name], slots[d.name], body, trigger_id, kind,
                    backoff_base_s=self.settings.delivery_backoff_s, backoff_max_s=self.settings.delivery_backoff_max_s,
                    retry_after_max_s=self.settings.delivery_retry_after_max_s,
                )
                for d in wanted
            )
        )  # fmt: skip
        key = trigger_id.encode()
        for dest, out in zip(wanted, outcomes):
            if out.status == "dead_lettered":
                log.warning(
                    "trigger %s to %s (%s) dead-lettered after %d attempt(s): %s",
                    trigger_id, dest.name, dest.where, out.attempts, out.last_error,
                )  # fmt: skip
                await self._produce(self.settings.topic_delivery_deadletter, key, self._dead_letter(record, dest, out, where))
            await self._produce(self.settings.topic_deliveries, key, self._outcome(record, out))
            self.stats[out.status] += 1
        self.stats["records"] += 1
        self.offsets.done(topic, partition, offset)

    @staticmethod
    def _outcome(record: dict, out: Outcome) -> bytes:
        return orjson.dumps({
            "trigger_id": record["trigger_id"], "destination": out.destination, "tenant": record.get("tenant") or "",
            "kind": record.get("kind") or "", "action": record.get("action") or "", "status": out.status,
            "attempts": out.attempts, "last_status": out.last_status, "last_error": out.last_error,
            "latency_ms": out.latency_ms, "first_attempt_ms": out.first_attempt_ms, "last_attempt_ms": out.last_attempt_ms,
        })  # fmt: skip

    @staticmethod
    def _dead_letter(record: dict, dest: Destination, out: Outcome, where: str) -> bytes:
        return orjson.dumps({
            "trigger_id": record["trigger_id"], "destination": dest.name, "url": dest.where, "reason": out.reason,
            "attempts": out.attempts, "last_status": out.last_status, "last_error": out.last_error,
            "first_attempt_at": out.first_attempt_ms, "last_attempt_at": out.last_attempt_ms,
            "dead_lettered_at": int(time.time() * 1000), "source": where, "trigger": record,
        })  # fmt: skip

    # --- the loop ----------------------------------------------------------------

    async def _commit(self) -> None:
        due = self.offsets.take_due()
        if not due:
            return
        try:
            await self._in_consumer(self.consumer.commit, offsets=due, asynchronous=False)
            self.stats["commits"] += 1
        except KafkaException as exc:  # a rebalance in progress, say: the offsets are committed next time
            log.warning("commit failed (%s); retrying", exc)
            self.offsets.put_back(due)

    async def _flow(self) -> None:
        """Pause the consumer while ``max_inflight`` records are in delivery, resume below it."""
        full = self.offsets.inflight() >= self.settings.delivery_max_inflight
        if full != self._paused:
            assignment = await self._in_consumer(self.consumer.assignment)
            if assignment:
                await self._in_consumer(self.consumer.pause if full else self.consumer.resume, assignment)
            self._paused = full

    async def run(self) -> None:
        topic = self.settings.topic_triggers
        await self._in_consumer(self.consumer.subscribe, [topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        slots = {d.name: asyncio.Semaphore(d.concurrency) for d in self.destinations}
        log.info(
            "delivering %s to %s",
            topic, ", ".join(f"{d.name} ({d.where})" for d in self.destinations),
        )  # fmt: skip
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            try:
                while not self.stop.is_set():
                    room = max(1, self.settings.delivery_max_inflight - self.offsets.inflight())
                    msgs = await self._in_consumer(self.consumer.consume, num_messages=min(room, 500), timeout=POLL_S)
                    for msg in msgs:
                        if msg.error() is not None:
                            if msg.error().code() != KafkaError._PARTITION_EOF:
                                log.warning("consumer: %s", msg.error())
                            continue
                        self.offsets.take(msg.topic(), msg.partition(), msg.offset())
                        task = asyncio.create_task(self._handle(session, msg, slots))
                        self._tasks.add(task)
                        task.add_done_callback(self._finished)
                    await self._flow()
                    await self._commit()
                await self._drain()
            finally:
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                await self._commit()
                await self._in_consumer(self.consumer.close)
                await asyncio.get_running_loop().run_in_executor(None, self.kafka.close, 5.0)
                self._kafka.shutdown(wait=True)
                log.info("stopped: %s", self.stats)

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A bug, not a delivery failure: stop, so that the record is not committed past.
            log.critical("delivery task failed: %r; stopping", task.exception())
            self.failed = True
            self.stop.set()

    async def _drain(self) -> None:
        """Let the deliveries in progress finish, at most ``CX_DELIVERY_DRAIN_S``, committing as they do."""
        deadline = time.monotonic() + self.settings.delivery_drain_s
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks), timeout=min(0.5, max(0.0, deadline - time.monotonic())))
            await self._commit()
        if self._tasks:
            log.warning("%d deliveries unfinished at stop; the next start delivers them again", len(self._tasks))


async def run_deliver(settings: Settings, bootstrap: str, destinations: list[Destination]) -> bool:
    """Run ``cxstream deliver`` until SIGINT or SIGTERM; False if it stopped on a failure."""
    import signal

    await asyncio.get_running_loop().run_in_executor(None, ensure_topics, settings, bootstrap)
    deliverer = Deliverer(settings, bootstrap, destinations)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, deliverer.stop.set)
    await deliverer.run()
    return not deliverer.failed
