"""The Faust worker: agents that wire topics, the state table and the sink to the pure core.

Per batch of Kafka records the events agent does, in this order:

1. feed each record to its partition's ``PartitionProcessor`` (pure, in
   offset order: sessions, de-duplication, carts, abandonment, offers);
2. write the stored-event rows and triggers to ClickHouse (one insert per
   table, retried with backoff while ClickHouse is down: the agent then stops
   taking records, so nothing is acknowledged that is not stored), and at
   the same time
3. send the triggers to ``cx.triggers`` and wait for Kafka's acknowledgement;
4. write the changed visitor states to the table and its changelog topic,
   and wait for Kafka's acknowledgement (``pipeline.changelog``);
5. return, and Faust acknowledges the records; offsets are committed after.

A crash anywhere replays records from the last committed offset. Steps 2-3
are idempotent (ClickHouse keeps one row per id, trigger ids are stable) and
the processor skips a visitor's records already reflected in its stored
state, so table updates are never applied twice (a plain counter table
double-counts replays after a ``kill -9``).

Agents run with ``concurrency=1``: with more, faust-streaming can commit
offsets past unfinished messages (faust-streaming #606). ``exactly_once`` is
not used (open duplicate bugs #517, #323); idempotence gives exact numbers.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from typing import Awaitable, Callable

import faust
import orjson
from faust.types import TP

from pipeline.analyst_sql import QueryLimits, run_analyst_query
from pipeline.app import STATE_TABLE, create_app
from pipeline.changelog import ANY_PARTITION, ChangelogWriter, TriggerWriter
from pipeline.collector.partitioner import partition_for_key
from pipeline.detect.processor import PartitionProcessor
from pipeline.detect.rules import Rules
from pipeline.exitcodes import EXIT_UNFINISHED_BATCH
from pipeline.offsets import CommittedOffsets, SkippedRecords
from pipeline.records import BadRecord, decode_batch_checked, dead_letter
from pipeline.settings import Settings
from pipeline.triggers import encode_trigger, trigger_key
from pipeline.webtoken import ensure_token
from sinks.client import ClickHouse, connect
from sinks.migrate import migrate
from sinks.sink import ClickHouseSink, SinkError

__all__ = ["Worker", "build_worker", "tune_gc"]

log = logging.getLogger("cxstream.worker")

TICK_INTERVAL_S = 0.5
MAX_BACKOFF_S = 30.0
ANALYST_QUERIES_AT_ONCE = 2


async def flush_with_retry(sink: ClickHouseSink, what: str, stopping: Callable[[], bool]) -> None:
    """Flush ``sink`` in a thread, retrying with exponential backoff until it succeeds.

    While ClickHouse is down this blocks the agent, which then stops taking
    records from Kafka; nothing is acknowledged, memory stays bounded by the
    take buffer. The sink keeps its rows until a flush succeeds.
    """
    delay = 0.25
    loop = asyncio.get_running_loop()
    while True:
        try:
            await loop.run_in_executor(None, sink.flush)
            return
        except SinkError as exc:
            if stopping():
                raise
            log.warning("ClickHouse write of %s failed (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)


class Worker:
    """Holds the per-partition processors and runs steps 1-4 for the events agent."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        ch: ClickHouse,
        *,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.app = app
        self.settings = settings
        self.ch = ch
        self.rules = Rules.from_settings(settings)
        self.wall_ms = wall_ms
        self.table = app.Table(STATE_TABLE, default=None, key_type=bytes, value_type=bytes)
        self.events_topic = app.topic(settings.topic_events, key_serializer="raw", value_serializer="raw")
        self.deadletter_topic = app.topic(settings.topic_deadletter, key_serializer="raw", value_serializer="raw")
        self.sink = ClickHouseSink(ch)
        self.dl_sink = ClickHouseSink(ch)
        self.processors: dict[int, PartitionProcessor] = {}
        self.next_offset: dict[int, int] = {}
        self.dl_next_offset: dict[int, int] = {}
        self.lock = asyncio.Lock()
        # Kafka clients of their own (librdkafka), set by build_worker.
        self.changelog: ChangelogWriter | None = None
        self.trigger_writer: TriggerWriter | None = None
        self.committed: CommittedOffsets | None = None  # without it records are not checked for skipped offsets
        # Served at /cx/stats; ``cxstream bench`` reads insert sizes and the start time from it.
        self.stats = {
            "records": 0,
            "events": 0,
            "triggers": 0,
            "deadletters": 0,
            "bad_records": 0,  # records on the events topic that were not EventBatches
            "event_inserts": 0,
            "event_rows": 0,
            "first_record_wall_ms": 0,
            "events_partitions": 0,  # partitions of the events topic assigned now
            # Seconds spent per step, summed over batches: where a batch's time goes.
            "batches": 0,
            "process_s": 0.0,
            "clickhouse_s": 0.0,
            "triggers_s": 0.0,
            "emit_s": 0.0,  # rows built, then ClickHouse and triggers (overlapping): wall time
            "changelog_s": 0.0,
        }

    # -- partitions -----------------------------------------------------------

    def _load_state(self, key: str) -> bytes | None:
        return self.table.data.get(key.encode())

    def processor(self, partition: int) -> PartitionProcessor:
        """The partition's processor; built on first use from the recovered table."""
        proc = self.processors.get(partition)
        if proc is None:
            proc = PartitionProcessor(self.rules, load_state=self._load_state)
            n = self.settings.kafka_partitions
            proc.restore(
                (k.decode(), v)
                for k, v in list(self.table.data.items())
                if v is not None and partition_for_key(k, n) == partition
            )
            self.processors[partition] = proc
        return proc

    async def on_revoked(self, revoked: set[TP]) -> None:
        """Rebalance: forget processors of partitions this worker no longer owns.

        Waits for the batch in progress: dropping a processor while ``handle``
        runs would lose the rows and states it produced for records that
        Faust then acknowledges. The rebalance waits for this handler.
        """
        async with self.lock:
            for tp in revoked:
                if tp.topic == self.settings.topic_events:
                    self.processors.pop(tp.partition, None)
                    self.next_offset.pop(tp.partition, None)
                elif tp.topic == self.settings.topic_deadletter:
                    self.dl_next_offset.pop(tp.partition, None)

    # -- steps ----------------------------------------------------------------

    async def handle(self, events: list[faust.types.EventT]) -> None:
        """Process one batch of Kafka records; returns once everything is stored."""
        async with self.lock:
            now = self.wall_ms()
            if not self.stats["first_record_wall_ms"]:
                self.stats["first_record_wall_ms"] = now
            started = time.perf_counter()
            bad: list[bytes] = []
            for event in events:
                msg = event.message
                await self._check_offset(self.next_offset, self.settings.topic_events, msg.partition, msg.offset)
                try:
                    batch = decode_batch_checked(msg.value)
                except BadRecord as exc:
                    bad.append(self._bad_record(msg, exc))
                    self.next_offset[msg.partition] = msg.offset + 1
                    continue
                self.processor(msg.partition).process(msg.offset, batch, now)
                self.next_offset[msg.partition] = msg.offset + 1
                self.stats["records"] += 1
                self.stats["events"] += len(batch)
            self.stats["batches"] += 1
            self.stats["process_s"] += time.perf_counter() - started
            if bad:
                # On the dead-letter topic before these offsets can be
                # committed; its agent stores them (ids are stable on replay).
                for value in bad:
                    await self.deadletter_topic.send(value=value)
                await self.app.producer.flush()
                self.stats["bad_records"] += len(bad)
            await self._emit()

    def _bad_record(self, msg: faust.types.Message, exc: BadRecord) -> bytes:
        """A dead letter (JSON, as the collector writes them) for a record that is not an EventBatch."""
        topic = self.settings.topic_events
        log.error("%s[%d]@%d is not an EventBatch (%s); sent to %s", topic, msg.partition, msg.offset, exc,
                  self.settings.topic_deadletter)
        dl = dead_letter(
            tenant=None,
            reason=exc.reason,
            detail=f"{topic}[{msg.partition}]@{msg.offset}: {exc}",
            payload=msg.value or b"",
            received_at_ms=round(msg.timestamp * 1000),  # the record's time: the same id on a replay
            source="worker",
            id_parts=(topic, msg.partition, msg.offset),  # one per record, the same on a replay
        )
        return dl.model_dump_json().encode()

    async def _check_offset(self, next_offset: dict[int, int], topic: str, partition: int, offset: int) -> None:
        """Refuse a record past the partition's next offset (``pipeline.offsets``).

        Raising leaves the batch unfinished: the worker exits before Faust can
        acknowledge it (``_or_exit``) and the next worker starts again from
        the committed offset. A record below the expected offset is a
        redelivery and goes through (visitor states skip what they applied).
        """
        expected = next_offset.get(partition)
        if expected is None:
            if self.committed is None:
                return
            expected = await self.committed.start_of(topic, partition)
        if offset > expected:
            raise SkippedRecords(
                f"{topic}[{partition}]: got offset {offset}, expected {expected}; "
                f"records {expected}..{offset - 1} were skipped by the consumer"
            )

    async def tick(self) -> None:
        """Let idle, caught-up partitions' watermarks follow the wall clock.

        Only partitions this worker has processed a record of since it got
        them: their processor was built after the table was recovered.
        Building one here could catch the table half-recovered after a
        restart or a rebalance, and the deadlines of the states not yet read
        back would never be scheduled. A partition that receives nothing
        after a restart resumes with its next record.
        """
        async with self.lock:
            now = self.wall_ms()
            consumer = self.app.consumer
            for partition, proc in list(self.processors.items()):
                highwater = consumer.highwater(TP(self.settings.topic_events, partition))
                caught_up = highwater is not None and self.next_offset.get(partition, 0) >= highwater
                proc.tick(now, caught_up)
            await self._emit()

    async def _emit(self) -> None:
        started = time.perf_counter()
        outputs = [(p, proc.drain()) for p, proc in self.processors.items()]
        triggers = [t for _, out in outputs for t in out.triggers]
        event_rows = 0
        for _, out in outputs:
            if out.rows:
                self.sink.add_events(out.rows)
                event_rows += len(out.rows)
            for table, facts in out.facts.items():
                self.sink.add_facts(table, facts)
        if triggers:
            self.sink.add_triggers(triggers)
        if event_rows:
            # Counted before the write: a reader that sees the rows in
            # ClickHouse must also see them here.
            self.stats["event_inserts"] += 1
            self.stats["event_rows"] += event_rows
        stopping = lambda: self.app.should_stop  # noqa: E731
        # ClickHouse and cx.triggers at the same time (the insert runs in a
        # thread); both must be acknowledged before the states are written.
        steps = []
        if self.sink.pending():
            steps.append(self._timed("clickhouse_s", flush_with_retry(self.sink, "events", stopping)))
        if triggers:
            steps.append(self._timed("triggers_s", self._send_triggers(triggers)))
        await asyncio.gather(*steps)
        sent = time.perf_counter()
        self.stats["emit_s"] += sent - started
        records = []
        for partition, out in outputs:
            for key, value in out.states.items():
                bkey = key.encode()
                self.table.data[bkey] = value
                records.append((partition, bkey, value))
        if records:
            # The states must be in the changelog before these records'
            # offsets can be committed: a crash after a commit whose states
            # were not yet acknowledged would skip their events.
            assert self.changelog is not None, "build_worker sets the changelog writer"
            await self.changelog.write(records, lambda: self.app.should_stop)
        self.stats["changelog_s"] += time.perf_counter() - sent

    async def _timed(self, stat: str, step: Awaitable[None]) -> None:
        started = time.perf_counter()
        await step
        self.stats[stat] += time.perf_counter() - started

    async def _send_triggers(self, triggers: list[dict]) -> None:
        assert self.trigger_writer is not None, "build_worker sets the trigger writer"
        records = [(ANY_PARTITION, trigger_key(t), encode_trigger(t, self.settings)) for t in triggers]
        await self.trigger_writer.write(records, lambda: self.app.should_stop)
        self.stats["triggers"] += len(triggers)

    async def handle_deadletters(self, events: list[faust.types.EventT]) -> None:
        """Store dead letters from the collector in ClickHouse."""
        for event in events:
            msg = event.message
            await self._check_offset(self.dl_next_offset, self.settings.topic_deadletter, msg.partition, msg.offset)
            self.dl_next_offset[msg.partition] = msg.offset + 1
        self.dl_sink.add_deadletters([orjson.loads(e.message.value) for e in events])
        await flush_with_retry(self.dl_sink, "dead letters", lambda: self.app.should_stop)
        self.stats["deadletters"] += len(events)


GC_GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Cyclic garbage collection for a worker whose heap is large and whose garbage is not cyclic.

    A batch keeps hundreds of thousands of event dicts and the state cache
    keeps visitor states alive, and CPython's default (a collection every
    700 allocations, walking the young objects) kept walking them. The
    objects of start-up (Faust, the modules) are frozen out of every
    collection, and the young generation is collected every 50,000
    allocations. ``cxstream bench``, 200,000 events, alternating runs:
    worker CPU 85.9 and 79.1 us/event against 94.0 and 97.8 by default.
    """
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 50, 100)


async def _or_exit(batch: Awaitable[None]) -> None:
    """Run one batch; if it does not complete, end the process before anything is committed.

    Faust's ``take_events`` acknowledges a batch's records when the agent
    body leaves, also by an exception or a cancellation (a stop in the
    middle of a batch), and the next commit would then skip records whose
    rows or states were never written. Exiting at once leaves the offsets
    where they were: the next worker replays the batch, idempotently.
    """
    try:
        await batch
    except BaseException as exc:  # noqa: BLE001 - every way out of an unfinished batch
        log.critical("a batch did not complete (%s: %s); exiting without committing it", type(exc).__name__, exc)
        logging.shutdown()
        os._exit(EXIT_UNFINISHED_BATCH)


def build_worker(settings: Settings, bootstrap: str, ch: ClickHouse | None = None) -> Worker:
    """Create the Faust app, open and migrate ClickHouse, and register the agents.

    Runs in the worker process: with the embedded store this process owns
    the chdb directory, and serves ``POST /cx/query`` so that ``cxstream
    query`` can read it while the pipeline runs. The web port answers only
    requests with the data dir's token (``pipeline.webtoken``).
    """
    app = create_app(settings, bootstrap, web_token=ensure_token(settings.data_dir))
    if ch is None:
        ch = connect(settings.resolved_clickhouse_url)
    migrate(ch)
    worker = Worker(app, settings, ch)
    worker.changelog = ChangelogWriter(settings, bootstrap, worker.table.changelog_topic.get_topic_name())
    worker.trigger_writer = TriggerWriter(settings, bootstrap, settings.topic_triggers)
    worker.committed = CommittedOffsets(settings, bootstrap, settings.worker_group)
    take = settings.batch_max_records
    within = settings.sink_max_interval_ms / 1000

    @app.agent(worker.events_topic, concurrency=1, name="cx-events")
    async def process_events(stream):  # noqa: ANN001 - Faust's stream type
        async for events in stream.take_events(take, within=within):
            await _or_exit(worker.handle(events))

    @app.agent(worker.deadletter_topic, concurrency=1, name="cx-deadletters")
    async def store_deadletters(stream):  # noqa: ANN001
        async for events in stream.take_events(take, within=within):
            await _or_exit(worker.handle_deadletters(events))

    @app.timer(TICK_INTERVAL_S)
    async def idle_tick() -> None:
        await worker.tick()

    @app.on_partitions_revoked.connect
    async def on_revoked(app_, revoked, **kwargs) -> None:  # noqa: ANN001
        await worker.on_revoked(revoked)

    @app.on_partitions_assigned.connect
    async def on_assigned(app_, assigned, **kwargs) -> None:  # noqa: ANN001
        worker.stats["events_partitions"] = sum(tp.topic == settings.topic_events for tp in assigned)

    limits = QueryLimits.from_settings(settings)
    # Analyst queries at once; more wait their turn (each runs with max_threads=1).
    analysts = asyncio.Semaphore(ANALYST_QUERIES_AT_ONCE)

    @app.page("/cx/query")
    class QueryView(faust.web.View):
        """``POST {"sql": ...}``: an analyst's reading statement (``pipeline.analyst_sql``)."""

        async def post(self, request):  # noqa: ANN001
            def answer(body: dict, status: int = 200):  # noqa: ANN202
                return self.bytes(orjson.dumps(body, default=str), status=status, content_type="application/json")

            try:
                body = await request.json()
            except ValueError:
                body = None
            if not isinstance(body, dict) or not isinstance(body.get("sql"), str):
                return answer({"error": 'expected a JSON object {"sql": "..."}'}, 400)
            loop = asyncio.get_running_loop()
            async with analysts:
                try:
                    columns, rows = await loop.run_in_executor(None, run_analyst_query, ch, body["sql"], limits)
                except Exception as exc:  # noqa: BLE001 - an analyst's SQL error is an answer, not a crash
                    return answer({"error": str(exc)}, 400)
            return answer({"columns": columns, "rows": rows})

    @app.page("/cx/stats")
    class StatsView(faust.web.View):
        async def get(self, request):  # noqa: ANN001
            return self.json(worker.stats)

    return worker
