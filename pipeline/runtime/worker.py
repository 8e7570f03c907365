"""The Faust worker: agents that wire topics, the state table and the sink to the pure core.

The events agent takes records as they arrive (each group: what arrived
while it worked on the group before, or else the first records to come)
and, for each group, at once:

0. looks up in ClickHouse the records' event ids already stored, and takes
   out each event whose id is stored (or taken earlier in the window) with
   other content: a ``duplicate_id_conflict`` dead letter, sent after the
   window's rows (``pipeline.detect.ids``: the first event accepted under an
   id wins);
1. feeds each record to its partition's ``PartitionProcessor`` (pure, in
   offset order: sessions, de-duplication, carts, abandonment, offers);
2. hands the triggers that fired to Kafka (``cx.triggers``) without waiting.

Rows, visitor states and the records' acknowledgements wait in the open
*window*, which ``flush`` closes when it holds ``batch_max_records``
records, when it is ``sink_max_interval_ms`` old, or at once when the group
rebalances. A closed window is made durable in the background while the
next one fills (one at a time, in order):

3. the window's rows go to ClickHouse (one insert per table, retried with
   backoff while ClickHouse is down: the agent then stops taking records, so
   nothing is acknowledged that is not stored) while Kafka acknowledges its
   triggers;
4. the changed visitor states go to the table and its changelog topic, and
   Kafka acknowledges them (``pipeline.runtime.changelog``);
5. only then does Faust get the window's records acknowledged; offsets are
   committed after.

So a trigger leaves within milliseconds of its event's record, and
ClickHouse still gets large inserts.

A crash anywhere replays records from the last committed offset. Steps 2-4
are idempotent (ClickHouse keeps one row per id, trigger ids are stable) and
the processor skips a visitor's records already reflected in its stored
state, so table updates are never applied twice (a plain counter table
double-counts replays after a ``kill -9``).

Agents run with ``concurrency=1``: with more, faust-streaming can commit
offsets past unfinished messages (faust-streaming #606). ``exactly_once`` is
not used (open duplicate bugs #517, #323); idempotence gives exact numbers.

Operations (docs/operations.md): ``/metrics`` serves ``WorkerMetrics``
(counted after each batch, gauges read at each scrape), ``/health`` and
``/ready`` answer without the token; ``Worker.ready`` holds the checks.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import time
from collections import deque
from typing import Awaitable, Callable

import faust
import orjson
from faust.types import TP

from pipeline.analyst_sql import QueryLimits, run_analyst_query
from pipeline.runtime.changelog import ANY_PARTITION, ChangelogWriter, CustomerWriter, TriggerWriter
from pipeline.wire.partitioner import partition_for_key
from pipeline.collector.normalize import NormalizeRules
from pipeline.detect.customer import CUSTOMER_PREFIX, STAGE_PREFIX, CustomerProcessor, bad_message, customer_key, each_message
from pipeline.detect.ids import IdGate, judge_record
from pipeline.detect.isolation import IsolatedPartition, Mark, Rejected, RowFailed
from pipeline.detect.processor import Output, PartitionProcessor
from pipeline.detect.rules import Rules
from pipeline.detect.stages import CONVERSIONS_TABLE
from pipeline.exitcodes import EXIT_UNFINISHED_BATCH
from pipeline.logs import context
from pipeline.metrics import CONTENT_TYPE_LATEST, WorkerMetrics, render
from pipeline.runtime.offsets import CommittedOffsets, SkippedRecords
from pipeline.runtime.faust_adapter import (
    STATE_TABLE,
    create_app,
    rebalancing,
    stalled_recovery,
    state_store,
    take_unacked,
)
from pipeline.wire.records import BadRecord, DeadLetter, decode_batch_checked, dead_letter, error_detail, truncate_depth
from pipeline.settings import Settings
from pipeline.wire.triggers import encode_trigger, trigger_key
from pipeline.webtoken import ensure_token
from sinks.client import ClickHouse, ClickHouseError, connect, connection_of_its_own
from sinks.migrate import migrate
from sinks.rows import DEADLETTER_COLUMNS, FACT_TABLES, deadletter_row, delivery_row, event_row, trigger_row
from sinks.sink import ClickHouseSink, RejectedRow, SinkError, stored_fingerprints

_DL_TENANT, _DL_REASON, _DL_SOURCE = (DEADLETTER_COLUMNS.index(c) for c in ("tenant", "reason", "source"))

__all__ = ["Worker", "build_worker", "tune_gc"]

_STAGE_KEY, _CUSTOMER_KEY = STAGE_PREFIX.encode(), CUSTOMER_PREFIX.encode()

log = logging.getLogger("cxstream.worker")

Ack = Callable[[faust.types.EventT], Awaitable[bool]]  # Faust's Stream.ack

TICK_INTERVAL_S = 0.1
TRIGGER_TIMES_KEPT = 5_000
# The events agent takes what is waiting (at most ``batch_max_records`` records) as soon as
# there is something, and processes it at once (``take_unacked``).
TAKE_WITHIN_S = 0.5  # longest one wait for records lasts before the agent checks for a stop
# How often the window's age is checked against ``sink_max_interval_ms``.
FLUSH_CHECK_S = 0.05
# A device partition's promise to the customer stage goes out with every send of messages, otherwise
# at most this often (and at each tick).
PROMISE_INTERVAL_S = 0.05
# Longest the dead-letter and delivery agents wait to fill a batch.
OTHER_TAKE_MAX_S = 1.0
LAG_INTERVAL_S = 1.0
RECOVERY_CHECK_INTERVAL_S = 5.0  # how often a stalled table recovery is looked for (CX_RECOVERY_STALL_S)
MAX_BACKOFF_S = 30.0
ANALYST_QUERIES_AT_ONCE = 2


async def flush_with_retry(sink: ClickHouseSink, what: str, stopping: Callable[[], bool]) -> list[RejectedRow]:
    """Flush ``sink`` in a thread, retrying with exponential backoff until it succeeds.

    While ClickHouse is down this blocks the agent, which then stops taking
    records from Kafka; nothing is acknowledged, memory stays bounded by the
    take buffer. The sink keeps its rows until a flush succeeds. Rows
    ClickHouse refuses for good (``sinks.sink``: permanent errors) are not
    retried: they are returned, for the caller to dead-letter.
    """
    delay = 0.25
    loop = asyncio.get_running_loop()
    while True:
        try:
            await loop.run_in_executor(None, sink.flush)
            return sink.take_rejected()
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
        # The id lookup's own connection: it must not wait behind the window's inserts on ``ch``.
        self.lookups = connection_of_its_own(ch)
        self.rules = Rules.from_settings(settings)
        # Records that another producer wrote (not the collector) are scrubbed here before they become
        # dead letters, with the collector's rules and salt (docs/privacy.md).
        self.scrubber = NormalizeRules.from_settings(settings).scrubber
        self.wall_ms = wall_ms
        self.table = app.Table(STATE_TABLE, default=None, key_type=bytes, value_type=bytes)
        # One agent reads both stages' inputs: the device stage's (cx.events) and the customer stage's
        # (cx.customers), so one window makes both durable before their records are acknowledged.
        self.events_topic = app.topic(
            settings.topic_events, settings.customers_topic, key_serializer="raw", value_serializer="raw"
        )
        self.deadletter_topic = app.topic(settings.topic_deadletter, key_serializer="raw", value_serializer="raw")
        self.metrics = WorkerMetrics(settings.write_key_map.values(), self.gauges)
        one_server = not settings.clickhouse_cluster  # a cluster has no cx.event_id_set (0015)
        self.sink = ClickHouseSink(ch, observe=self._observe_insert, id_set=one_server)
        self.dl_sink = ClickHouseSink(ch, observe=self._observe_insert, id_set=one_server)
        self.deliveries_topic = app.topic(settings.topic_deliveries, key_serializer="raw", value_serializer="raw")
        self.delivery_sink = ClickHouseSink(ch, observe=self._observe_insert, id_set=one_server)
        self.delivery_next_offset: dict[int, int] = {}
        self.states = state_store(self.table)  # visitor key -> state; the worker writes its changelog itself
        # Readiness (``ready``): the last insert's outcome, the assignment, the lag.
        self.store_ok = True
        self.store_error = ""
        self.assigned = False  # the group gave this worker its partitions at least once
        self.lag: dict[tuple[str, int], int] = {}  # (topic, partition) -> records not processed, refreshed each second
        self.lag_unknown: set[tuple[str, int]] = set()  # assigned partitions whose end is not known yet
        # id(trigger) -> (receipt of the event that fired it, and for a trigger fired by a record of
        # this stage: the record's Kafka timestamp, when its group was taken, when its ids were looked up), ms
        self._trigger_cause: dict[int, tuple[int, int | None, int | None, int | None]] = {}
        # The last TRIGGER_TIMES_KEPT of those, with the trigger's id, kind and hand-over to
        # librdkafka: served at /cx/trigger-times (``cxstream bench``: where a trigger's time goes).
        self.trigger_times: deque[tuple] = deque(maxlen=TRIGGER_TIMES_KEPT)
        # The customer stage's carts: candidate trigger id -> (the candidate's Kafka timestamp, when this
        # worker took it), until its decision; then, with the release and the hand-over to librdkafka,
        # the last TRIGGER_TIMES_KEPT at /cx/trigger-times ("customer").
        self._candidates_taken: dict[str, tuple[int, int]] = {}
        self._customer_cause: dict[int, tuple[int, int, int]] = {}
        self.customer_times: deque[tuple] = deque(maxlen=TRIGGER_TIMES_KEPT)
        self.processors: dict[int, IsolatedPartition] = {}
        # The customer stage (pipeline.detect.customer), one processor per partition of cx.customers.
        self.customers: dict[int, CustomerProcessor] = {}
        self.cust_next_offset: dict[int, int] = {}
        self._msgs_sent: dict[int, int] = {}  # device partition -> its pending messages already sent
        self._msg_rebuilds_seen: dict[int, int] = {}
        self._promised: dict[int, tuple] = {}  # device partition -> the last promise sent
        self._promised_at: dict[int, float] = {}
        self._idle_sent: set[int] = set()  # device partitions said idle since their assignment
        self._assigned_at: dict[int, float] = {}  # device partition -> when it was assigned (perf_counter)
        self._cust_sent_upto: dict[int, int] = {}  # customer partition -> its pending triggers already sent
        self._customers_sent = False  # messages went to cx.customers in the open window
        self._stopping = False  # a graceful stop began (``flush_on_stop``)
        # device partition -> (its promise after its last record, that record's newest receive time):
        # a promise sent with that time lets the customer stage observe its triggers' latency.
        self._promise_cause: dict[int, tuple] = {}
        # The open window (``handle``, ``flush``): records processed, their
        # triggers sent, their rows and states not yet durable.
        self._unacked: list[tuple[Ack, faust.types.EventT]] = []
        self._window_opened: float | None = None  # perf_counter() of its first record or fired deadline
        self._gate = IdGate()  # the window's ids: stored ones, and those taken in it
        self._conflicts: list[bytes] = []  # duplicate_id_conflict dead letters, sent after the rows
        self._sent_upto: dict[int, int] = {}  # partition -> its pending triggers already sent
        self._rebuilds_seen: dict[int, int] = {}
        self._durable: asyncio.Future | None = None  # the closed window's I/O (``_make_durable``)
        self.next_offset: dict[int, int] = {}
        self.dl_next_offset: dict[int, int] = {}
        self.lock = asyncio.Lock()
        # Kafka clients of their own (librdkafka), set by build_worker.
        self.changelog: ChangelogWriter | None = None
        self.trigger_writer: TriggerWriter | None = None
        self.customer_writer: CustomerWriter | None = None
        self.committed: CommittedOffsets | None = None  # without it records are not checked for skipped offsets
        # Served at /cx/stats; ``cxstream bench`` reads insert sizes and the start time from it.
        self.stats = {
            "records": 0,
            "events": 0,
            "triggers": 0,
            "deadletters": 0,
            "bad_records": 0,  # records on the events topic that were not EventBatches
            "processing_errors": 0,  # events (or records) that raised while processed: dead letters
            "rebuilds": 0,  # partition processors rebuilt from stored states after one
            "store_rejected": 0,  # rows ClickHouse refused for good: dead letters
            "id_conflicts": 0,  # events whose id was stored with other content: dead letters sent
            "foreign_deadletters": 0,  # records on the dead-letter topic that were not dead letters
            "deliveries": 0,  # delivery outcomes of cxstream deliver stored in cx.deliveries
            "foreign_deliveries": 0,  # records on the deliveries topic that were not delivery outcomes: skipped
            "customer_messages": 0,  # messages of the device stage to the customer stage, sent
            "customer_records": 0,  # records of cx.customers read by the customer stage
            "late_messages": 0,  # customer-stage messages that came below their merge's frontier
            "event_inserts": 0,
            "event_rows": 0,
            "first_record_wall_ms": 0,
            "events_partitions": 0,  # partitions of the events topic assigned now
            # Seconds spent per step, summed over batches: where a batch's time goes.
            "batches": 0,  # groups of records taken from Faust
            "windows": 0,  # flushes: records made durable and acknowledged
            "process_s": 0.0,
            "ids_s": 0.0,  # the lookup of the batch's stored ids (pipeline.detect.ids), part of process_s
            "clickhouse_s": 0.0,
            "triggers_s": 0.0,
            "emit_s": 0.0,  # rows built, then ClickHouse and triggers (overlapping): wall time
            "changelog_s": 0.0,
        }

    # -- partitions -----------------------------------------------------------

    def _load_state(self, key: str) -> bytes | None:
        return self.states.get(key.encode())

    def processor(self, partition: int) -> IsolatedPartition:
        """The partition's processor; built on first use from the recovered table."""
        proc = self.processors.get(partition)
        if proc is None:
            proc = IsolatedPartition(lambda: self._build_processor(partition), self._prepare)
            self.processors[partition] = proc
        return proc

    def _build_processor(self, partition: int) -> PartitionProcessor:
        """A processor for ``partition`` from the table: the states stored at the last batch's end."""
        proc = PartitionProcessor(self.rules, load_state=self._load_state, partition=partition)
        n = self.settings.kafka_partitions
        proc.restore(
            (k.decode(), v)
            for k, v in list(self.states.items())
            if v is not None and partition_for_key(k, n) == partition
        )
        return proc

    def customer(self, partition: int) -> CustomerProcessor:
        """The customer stage's processor for a partition of cx.customers; built from the table on first use."""
        proc = self.customers.get(partition)
        if proc is None:
            proc = CustomerProcessor(
                self.rules, self._load_state, sources=self.settings.kafka_partitions, partition=partition
            )
            self.customers[partition] = proc
        return proc

    def _prepare(self, out: Output, mark: Mark) -> None:
        """Build the ClickHouse rows of what one record (or tick) added to ``out``, in place.

        Runs per record, so a row that cannot be built fails its record
        (``pipeline.detect.isolation``) before any of its states is stored.
        Triggers stay dicts (they also go to Kafka); their row and record
        are built here once to prove they can be.
        """
        rows_from, triggers_from, facts_from = mark
        rows = out.rows
        for i in range(rows_from, len(rows)):
            row = rows[i]
            try:
                rows[i] = event_row(row)
            except Exception as exc:
                raise RowFailed(row.get("event_id"), exc) from exc
        for table, facts in out.facts.items():
            start = facts_from.get(table, 0)
            if start < len(facts):
                to_row = FACT_TABLES[table][1]
                facts[start:] = [f if isinstance(f, tuple) else to_row(f) for f in facts[start:]]
        for trigger in out.triggers[triggers_from:]:
            trigger_row(trigger)
            encode_trigger(trigger, self.settings)

    async def on_revoked(self, revoked: set[TP]) -> None:
        """Rebalance: forget processors of partitions this worker no longer owns.

        Waits for the batch in progress: dropping a processor while ``handle``
        runs would lose the rows and states it produced for records that
        Faust then acknowledges. The rebalance waits for this handler.
        """
        async with self.lock:
            if self._window_opened is not None:
                await self._flush()
            await self.wait_durable()
            for tp in revoked:
                if tp.topic == self.settings.topic_events:
                    self.processors.pop(tp.partition, None)
                    self.next_offset.pop(tp.partition, None)
                    self._rebuilds_seen.pop(tp.partition, None)
                    self._msg_rebuilds_seen.pop(tp.partition, None)
                    self._promised.pop(tp.partition, None)
                    self._promised_at.pop(tp.partition, None)
                    self._promise_cause.pop(tp.partition, None)
                    self._idle_sent.discard(tp.partition)
                    self._assigned_at.pop(tp.partition, None)
                elif tp.topic == self.settings.customers_topic:
                    self.customers.pop(tp.partition, None)
                    self.cust_next_offset.pop(tp.partition, None)
                elif tp.topic == self.settings.topic_deadletter:
                    self.dl_next_offset.pop(tp.partition, None)
                elif tp.topic == self.settings.topic_deliveries:
                    self.delivery_next_offset.pop(tp.partition, None)

    # -- operations (docs/operations.md) --------------------------------------

    def _observe_insert(self, table: str, rows: int, seconds: float, error: BaseException | None, permanent: bool) -> None:
        """Each ClickHouse insert (from the sink's thread): its metrics and the store's readiness."""
        self.metrics.on_insert(table, rows, seconds, error, permanent)
        if error is None:
            self.store_ok, self.store_error = True, ""
        elif not permanent:
            self.store_ok, self.store_error = False, f"{type(error).__name__}: {str(error)[:200]}"

    def gauges(self) -> dict:
        """What ``cxstream_consumer_lag`` and the other scrape-time gauges report."""
        now = self.wall_ms()
        delay = {}
        for partition, proc in list(self.processors.items()):
            watermark = proc.proc.watermark_ms
            if watermark is not None:
                delay[partition] = max(0, now - watermark) / 1000
        visitors = customers = visitor_bytes = customer_bytes = 0
        for key, value in list(self.states.items()):
            if value is None:
                continue
            if key.startswith(_CUSTOMER_KEY):
                customers, customer_bytes = customers + 1, customer_bytes + len(value)
            elif not key.startswith(_STAGE_KEY):  # not a partition's stored watermark or merge
                visitors, visitor_bytes = visitors + 1, visitor_bytes + len(value)
        return {
            "lag": dict(self.lag),
            "watermark_delay": delay,
            "assigned": self.stats["events_partitions"],
            "states": visitors,
            "state_bytes": visitor_bytes,
            "customer_states": customers,
            "customer_state_bytes": customer_bytes,
        }

    async def refresh_lag(self) -> None:
        """Each assigned partition's lag: its end (the consumer's high watermark) minus the next offset to process.

        A partition not yet processed since it was assigned counts from the
        consumer's position. One whose end is not known yet (no fetch answered)
        is in ``lag_unknown``.
        """
        consumer = self.app.consumer
        try:
            assigned = consumer.assignment()
        except Exception:  # noqa: BLE001 - no consumer yet (starting): nothing assigned
            assigned = set()
        next_of = {
            self.settings.topic_events: self.next_offset,
            self.settings.customers_topic: self.cust_next_offset,
            self.settings.topic_deadletter: self.dl_next_offset,
            self.settings.topic_deliveries: self.delivery_next_offset,
        }
        lag: dict[tuple[str, int], int] = {}
        unknown: set[tuple[str, int]] = set()
        for tp in assigned:
            if tp.topic not in next_of:
                continue  # the table's changelog: recovered by Faust, not processed
            key = (tp.topic, tp.partition)
            highwater = consumer.highwater(tp)
            position = next_of[tp.topic].get(tp.partition)
            if position is None:
                try:
                    position = await consumer.position(tp)
                except Exception:  # noqa: BLE001 - a rebalance took it away meanwhile
                    position = None
            if highwater is None or position is None:
                unknown.add(key)
                continue
            lag[key] = max(0, highwater - position)
        self.lag, self.lag_unknown = lag, unknown

    async def broker_answers(self) -> bool:
        """True when a broker answers a metadata request of the worker's trigger producer."""
        if self.trigger_writer is None:
            return False
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.trigger_writer.broker_answers)

    async def ready(self) -> tuple[bool, dict]:
        """(ready, the checks): broker reachable, store writable, partitions assigned, caught up within the bound."""
        limit = self.settings.ready_max_lag
        behind = {f"{t}[{p}]": n for (t, p), n in sorted(self.lag.items()) if n > limit}
        checks = {
            "broker": await self.broker_answers(),
            "store": self.store_ok,
            "assigned": self.assigned,
            "caught_up": not behind and not self.lag_unknown,
        }
        detail = {
            "checks": checks,
            "partitions": self.stats["events_partitions"],
            "lag": {f"{t}[{p}]": n for (t, p), n in sorted(self.lag.items())},
            "max_lag": limit,
        }
        if self.store_error:
            detail["store_error"] = self.store_error
        if self.lag_unknown:
            detail["lag_unknown"] = sorted(f"{t}[{p}]" for t, p in self.lag_unknown)
        return all(checks.values()), detail

    # -- steps ----------------------------------------------------------------

    async def handle(self, events: list[faust.types.EventT], ack: Ack) -> None:
        """Process records as they arrive; their triggers leave at once, the rest waits for the window's flush.

        ``ack`` acknowledges one record to Faust; it is called for every
        record of the window once its rows, triggers and states are durable
        (``flush``), never before.
        """
        taken_ms = self.wall_ms()
        async with self.lock:
            now = self.wall_ms()
            if not self.stats["first_record_wall_ms"]:
                self.stats["first_record_wall_ms"] = now
            started = time.perf_counter()
            if self._window_opened is None:
                self._window_opened = started
            bad: list[bytes] = []
            kinds: dict[tuple[object, object], int] = {}
            decoded: list[tuple[faust.types.Message, list[dict]]] = []
            for_customers: list[faust.types.Message] = []
            topic_customers = self.settings.customers_topic
            for event in events:
                msg = event.message
                if msg.topic == topic_customers:
                    await self._check_offset(self.cust_next_offset, topic_customers, msg.partition, msg.offset)
                    self.cust_next_offset[msg.partition] = msg.offset + 1
                    for_customers.append(msg)
                    continue
                await self._check_offset(self.next_offset, self.settings.topic_events, msg.partition, msg.offset)
                self.next_offset[msg.partition] = msg.offset + 1
                try:
                    decoded.append((msg, decode_batch_checked(msg.value)))
                except BadRecord as exc:
                    bad.append(self._bad_record(msg, exc))
                except Exception as exc:  # decoding is not supposed to raise anything else
                    bad.append(self._processing_error(msg, None, Rejected(msg.offset, None, exc)))
            # Step 0: ids. The events whose id is stored (or taken earlier in
            # this window) with other content become dead letters and never
            # reach detection (pipeline.detect.ids).
            looked_up = time.perf_counter()
            if decoded:
                self._gate.add_stored(await self._stored_fingerprints(decoded, known=self._gate))
            self.stats["ids_s"] += time.perf_counter() - looked_up
            looked_ms = self.wall_ms()
            for msg, batch in decoded:
                kept = self._judge_ids(self._gate, msg, batch, self._conflicts)
                proc = self.processor(msg.partition)
                rebuilds = proc.rebuilds
                fired_from = len(proc.proc.pending.triggers)
                for rejected in proc.process(msg.offset, kept, now):
                    bad.append(self._processing_error(msg, kept, rejected))
                if proc.rebuilds == rebuilds and len(proc.proc.pending.triggers) > fired_from:
                    timing = (round(msg.timestamp * 1000), taken_ms, looked_ms)
                    self._note_causes(proc.proc.pending.triggers[fired_from:], kept, timing)
                if kept:  # the promise this record leads to, and when its newest event was received
                    received = max(e["received_at_ms"] for e in kept)
                    self._promise_cause[msg.partition] = (proc.proc.announcement(), received)
                self.stats["rebuilds"] += proc.rebuilds - rebuilds
                self.metrics.rebuilds.inc(proc.rebuilds - rebuilds)
                self.stats["records"] += 1
                self.stats["events"] += len(batch)
                for e in batch:
                    key = (e.get("tenant"), e.get("type"))
                    kinds[key] = kinds.get(key, 0) + 1
            for msg in for_customers:
                dead = self._customer_record(msg, now)
                if dead is not None:
                    bad.append(dead)
            self._unacked += [(ack, event) for event in events]
            self.stats["batches"] += 1
            self.stats["process_s"] += time.perf_counter() - started
            if bad:
                await self._send_deadletters(bad)
            self._send_customer_messages()
            self._send_new_triggers()
            m = self.metrics
            topic = self.settings.topic_events
            from_events = len(events) - len(for_customers)
            m.records.labels(topic).inc(from_events)
            m.batch_records.labels(topic).observe(from_events)
            m.batch_seconds.labels(topic).observe(time.perf_counter() - started)
            if for_customers:
                m.records.labels(topic_customers).inc(len(for_customers))
            for (tenant, kind), n in kinds.items():
                m.events.labels(m.labels.tenant(tenant), m.labels.call_type(kind)).inc(n)
            if len(self._unacked) >= self.settings.batch_max_records or self._stopping:
                # While stopping, the timers that close windows have ended: records taken now
                # (the worker's own cx.customers records keep coming) are made durable at once,
                # or Faust would wait for their acknowledgement until the process is killed.
                await self._flush()
                if self._stopping:
                    await self.wait_durable()

    async def flush_if_due(self) -> None:
        """Flush the window when it is ``sink_max_interval_ms`` old, or at once while the group rebalances.

        A rebalance waits until Faust holds no unacknowledged record
        (``stream_wait_empty``) before partitions can go to another worker:
        the window is flushed and acknowledged then, and its offsets
        committed, so the next owner does not replay it. A stop does the
        same through ``flush_on_stop``.
        """
        opened = self._window_opened
        if opened is None:
            return
        due = time.perf_counter() - opened >= self.settings.sink_max_interval_ms / 1000
        if due or rebalancing(self.app):
            async with self.lock:
                if self._window_opened is not None:
                    await self._flush()

    async def flush_on_stop(self) -> None:
        """On a graceful stop: make the open window durable and acknowledge it, so Faust commits it.

        If that fails (ClickHouse or Kafka down), the window stays
        unacknowledged and the next owner of its partitions replays it.
        """
        self._stopping = True
        try:
            async with self.lock:
                if self._window_opened is not None:
                    await self._flush()
                await self.wait_durable()
        except Exception as exc:  # noqa: BLE001 - stopping anyway; the replay covers it
            log.warning("stopping without the open window stored (%s: %s); it is replayed by the next worker",
                        type(exc).__name__, exc)

    def _send_new_triggers(self) -> None:
        """Hand the triggers fired since the last call to Kafka now; ``flush`` waits for their acknowledgement."""
        fresh: list[dict] = []
        for partition, proc in self.processors.items():
            triggers = proc.proc.pending.triggers
            sent = self._sent_upto.get(partition, 0)
            if proc.rebuilds != self._rebuilds_seen.get(partition, 0):
                # A rebuilt processor fired its window's triggers again: send them
                # all again (stable ids; consumers de-duplicate by trigger_id).
                self._rebuilds_seen[partition] = proc.rebuilds
                sent = 0
            if len(triggers) > sent:
                fresh += triggers[sent:]
                self._sent_upto[partition] = len(triggers)
        for partition, customer in self.customers.items():
            triggers = customer.pending.triggers
            sent = self._cust_sent_upto.get(partition, 0)
            if len(triggers) > sent:
                fresh += triggers[sent:]
                self._cust_sent_upto[partition] = len(triggers)
        if not fresh:
            return
        if self._window_opened is None:
            self._window_opened = time.perf_counter()
        assert self.trigger_writer is not None, "build_worker sets the trigger writer"
        self.trigger_writer.send([(ANY_PARTITION, trigger_key(t), encode_trigger(t, self.settings)) for t in fresh])
        self.stats["triggers"] += len(fresh)
        m, sent_ms = self.metrics, self.wall_ms()
        for t in fresh:
            kind = m.labels.kind(t.get("kind"))
            m.triggers.labels(m.labels.tenant(t.get("tenant")), kind, m.labels.action(t.get("action"))).inc()
            taken = self._customer_cause.pop(id(t), None)
            if taken is not None:
                self.customer_times.append((t["trigger_id"], *taken, sent_ms))
            cause = self._trigger_cause.pop(id(t), None)
            if cause and cause[0]:
                m.trigger_latency.labels(kind).observe(max(0, sent_ms - cause[0]) / 1000)
                if cause[1] is not None:
                    self.trigger_times.append((t["trigger_id"], t["kind"], *cause, sent_ms))

    def _send_customer_messages(self, force: bool = False) -> None:
        """Hand the device stage's new messages to ``cx.customers`` now, then the partitions' new promises.

        Messages are keyed by customer; the partitions' new promises go in
        one record to every partition of ``cx.customers``, after the messages
        they cover (the producer keeps each partition's order): with every
        send of messages, otherwise at most every ``PROMISE_INTERVAL_S``
        unless ``force``. ``flush`` waits for their acknowledgement.
        """
        records: list[tuple[int, bytes, bytes]] = []
        n = self.settings.kafka_partitions
        clock = time.perf_counter()
        for partition, isolated in self.processors.items():
            messages = isolated.proc.pending.messages
            sent = self._msgs_sent.get(partition, 0)
            if isolated.rebuilds != self._msg_rebuilds_seen.get(partition, 0):
                # A rebuilt processor sent its window's messages again: the customer stage
                # recognises them (candidates by trigger id, orders by order id, ...).
                self._msg_rebuilds_seen[partition] = isolated.rebuilds
                sent = 0
            for m in messages[sent:]:
                records.append((ANY_PARTITION, customer_key(m["t"], m["c"]).encode(), orjson.dumps(m)))
            self.stats["customer_messages"] += len(messages) - sent
            self._msgs_sent[partition] = len(messages)
        # A message is released once every partition's promise has passed it: promises go
        # with the messages, not up to PROMISE_INTERVAL_S after them.
        force = force or bool(records)
        keys: list[list[int]] = []
        received: list[int | None] = []
        for partition, isolated in self.processors.items():
            promise = isolated.proc.announcement()
            if promise is None or promise == self._promised.get(partition):
                continue
            if not force and clock - self._promised_at.get(partition, 0.0) < PROMISE_INTERVAL_S:
                continue
            keys.append(list(promise))
            cause = self._promise_cause.get(partition)
            # records moved it (an idle tick's promise has no event behind it)
            received.append(cause[1] if cause is not None and cause[0] == promise else None)
            self._promised[partition], self._promised_at[partition] = promise, clock
            self._idle_sent.discard(partition)
        if keys:
            # One record per partition of cx.customers carries the promises of all of this worker's partitions.
            body: dict = {"m": "watermarks", "ks": keys}
            if any(r is not None for r in received):
                body["rs"] = received
            value = orjson.dumps(body)
            records += [(q, b"", value) for q in range(n)]
        if not records:
            return
        if self._window_opened is None:
            self._window_opened = time.perf_counter()
        assert self.customer_writer is not None, "build_worker sets the customer writer"
        self.customer_writer.send(records)
        self._customers_sent = True

    def _say_idle(self, now_ms: int) -> None:
        """Tell the customer stage which assigned device partitions are caught up with nothing new.

        A partition that has had no record since it was assigned, is caught
        up (lag 0) and was assigned ``idle_partition_ms`` ago holds no
        customer decision back until it sends again (``merge.StreamMerge``).
        """
        clock = time.perf_counter()
        idle_s = self.settings.idle_partition_ms / 1000
        topic = self.settings.topic_events
        records = []
        for partition, assigned_at in self._assigned_at.items():
            if partition in self.processors or partition in self._idle_sent or clock - assigned_at < idle_s:
                continue
            if self.lag.get((topic, partition)) != 0:
                continue  # records are waiting, or the end is not known yet
            value = orjson.dumps({"m": "idle", "src": partition})
            records += [(q, b"", value) for q in range(self.settings.kafka_partitions)]
            self._idle_sent.add(partition)
        if records:
            if self._window_opened is None:
                self._window_opened = time.perf_counter()
            assert self.customer_writer is not None, "build_worker sets the customer writer"
            self.customer_writer.send(records)
            self._customers_sent = True

    def _customer_record(self, msg: faust.types.Message, now_ms: int) -> bytes | None:
        """Give one ``cx.customers`` record to its customer processor; a dead letter if it is not a message."""
        self.stats["customer_records"] += 1
        try:
            message = orjson.loads(msg.value or b"")
        except orjson.JSONDecodeError as exc:
            return self._customer_dead_letter(msg, f"not JSON: {exc}")
        problem = bad_message(message, self.settings.kafka_partitions)
        if problem is not None:
            return self._customer_dead_letter(msg, problem)
        customer = self.customer(msg.partition)
        for part in each_message(message):
            self._apply_customer_message(customer, part, round(msg.timestamp * 1000), now_ms)
        return None

    def _apply_customer_message(self, customer: CustomerProcessor, message: dict, record_ms: int, now_ms: int) -> None:
        """One message to its customer processor, and the timing of what it releases."""
        late, fired = customer.merge.late, len(customer.pending.triggers)
        if message["m"] == "candidate":
            self._time_candidate(message["trig"]["trigger_id"], record_ms, now_ms)
        customer.add(message, now_ms)
        self.stats["late_messages"] += customer.merge.late - late
        if self._candidates_taken:
            released_ms = self.wall_ms()
            for trigger in customer.pending.triggers[fired:]:
                taken = self._candidates_taken.pop(trigger["trigger_id"], None)
                if taken is not None and trigger["kind"] == "cart_abandoned":
                    self._customer_cause[id(trigger)] = (*taken, released_ms)
        received = message.get("r")
        if isinstance(received, int) and not isinstance(received, bool):
            for trigger in customer.pending.triggers[fired:]:  # released by the promise of that event
                self._trigger_cause[id(trigger)] = (received, None, None, None)

    def _time_candidate(self, trigger_id: str, record_ms: int, taken_ms: int) -> None:
        """Remember when a cart's candidate was sent and taken, until the merge releases it (or forever not)."""
        taken = self._candidates_taken
        taken[trigger_id] = (record_ms, taken_ms)
        if len(taken) > TRIGGER_TIMES_KEPT:  # bought elsewhere, or held long: the oldest go untimed
            del taken[next(iter(taken))]

    def _customer_dead_letter(self, msg: faust.types.Message, problem: str) -> bytes:
        topic = self.settings.customers_topic
        where = f"{topic}[{msg.partition}]@{msg.offset}"
        log.error("%s is not a customer-stage message (%s); dead-lettered", where, problem)
        dl = dead_letter(
            tenant=None,
            reason="processing_error",
            detail=f"{where} is not a customer-stage message: {problem}",
            payload=self.scrubber.payload(msg.value or b""),  # maybe another producer's: scrubbed
            received_at_ms=round(msg.timestamp * 1000),
            source="worker",
            id_parts=(topic, msg.partition, msg.offset),
        )
        self.stats["processing_errors"] += 1
        return dl.model_dump_json().encode()

    def _note_causes(self, fired: list[dict], batch: list[dict], timing: tuple[int, int, int]) -> None:
        """Remember when the collector received the record whose events fired these triggers, and its way here.

        ``timing``: the record's Kafka timestamp, when its group was taken
        and when the group's ids were looked up (wall ms).
        """
        received = max((e["received_at_ms"] for e in batch), default=0)
        for trigger in fired:
            self._trigger_cause[id(trigger)] = (received, *timing)

    def _judge_ids(self, gate: IdGate, msg: faust.types.Message, batch: list[dict], conflicts: list[bytes]) -> list[dict]:
        """The record's events that pass the id check; each conflict becomes a dead letter in ``conflicts``."""
        kept, found = judge_record(gate, batch)
        conflicts += [self._id_conflict(msg, i, event, fp) for i, event, fp in found]
        return kept

    async def _stored_fingerprints(
        self, decoded: list[tuple[faust.types.Message, list[dict]]], known: IdGate | None = None
    ) -> dict:
        """``{(tenant, event_id): fingerprint}`` of the records' ids already in ``cx.events``.

        Ids ``known`` judged already in this window are not looked up again.

        Retried with backoff while ClickHouse is down, like the writes: the
        batch cannot be judged without it.
        """
        ids: dict[str, set[str]] = {}
        for _, batch in decoded:
            for event in batch:
                if known is None or (event["tenant"], event["event_id"]) not in known:
                    ids.setdefault(event["tenant"], set()).add(event["event_id"])
        if not ids:
            return {}
        loop = asyncio.get_running_loop()
        delay = 0.25
        while True:
            try:
                return await loop.run_in_executor(
                    None, stored_fingerprints, self.lookups, ids, bool(self.settings.clickhouse_cluster)
                )
            except ClickHouseError as exc:
                if self.app.should_stop:
                    raise
                log.warning("ClickHouse lookup of stored event ids failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)

    def _id_conflict(self, msg: faust.types.Message, index: int, event: dict, fp: int) -> bytes:
        """A ``duplicate_id_conflict`` dead letter; its id depends on the event only, the same on any replay."""
        tenant, event_id = event["tenant"], event["event_id"]
        where = f"{self.settings.topic_events}[{msg.partition}]@{msg.offset} event {index}"
        payload = orjson.dumps(truncate_depth({k: v for k, v in event.items() if k != "payload_hash"}))
        log.warning("%s: event_id %r of tenant %r is stored with other content; dead-lettered", where, event_id, tenant)
        dl = dead_letter(
            tenant=tenant,
            reason="duplicate_id_conflict",
            # The rule, not the value (the payload holds the id): details never quote what was sent.
            detail=f"{where}: its event_id is already stored with other content; the first event stays",
            payload=payload,
            received_at_ms=event["received_at_ms"],
            source="worker",
            id_parts=("duplicate_id_conflict", tenant, event_id, fp),
        )
        return dl.model_dump_json().encode()

    async def _send_deadletters(self, values: list[bytes], stat: str = "bad_records") -> None:
        """Put dead letters on the dead-letter topic before these offsets can be committed.

        Its agent stores them (ids are stable on replay).
        """
        for value in values:
            await self.deadletter_topic.send(value=value)
        await self.app.producer.flush()
        self.stats[stat] += len(values)

    def _processing_error(self, msg: faust.types.Message, batch: list[dict] | None, rejected: Rejected) -> bytes:
        """A ``processing_error`` dead letter for one event of a record, or for the whole record."""
        topic = self.settings.topic_events
        error = rejected.error
        where = f"{topic}[{msg.partition}]@{msg.offset}"
        payload: bytes = msg.value or b""
        tenant = None
        id_parts: tuple = (topic, msg.partition, msg.offset)
        if batch is not None and rejected.index is not None:
            event = batch[rejected.index]
            where += f" event {rejected.index}"
            id_parts = (*id_parts, rejected.index)
            tenant = event.get("tenant") if isinstance(event, dict) else None
            try:
                payload = orjson.dumps(truncate_depth(event))
            except Exception:  # noqa: BLE001 - then the whole record is the payload
                pass
        elif batch:
            first = batch[0].get("tenant") if isinstance(batch[0], dict) else None
            if all(isinstance(e, dict) and e.get("tenant") == first for e in batch):
                tenant = first
        if not isinstance(tenant, str):
            tenant = None
        self.stats["processing_errors"] += 1
        log.error("%s could not be processed (%s); sent to %s", where, error_detail(error),
                  self.settings.topic_deadletter,
                  extra=context(tenant=tenant, topic=topic, partition=msg.partition, offset=msg.offset))
        dl = dead_letter(
            tenant=tenant,
            reason="processing_error",
            detail=f"{where}: {error_detail(error)}",  # the log has the whole error
            payload=payload,
            received_at_ms=round(msg.timestamp * 1000),  # the record's time: the same id on a replay
            source="worker",
            id_parts=id_parts,
        )
        return dl.model_dump_json().encode()

    def _bad_record(self, msg: faust.types.Message, exc: BadRecord) -> bytes:
        """A dead letter (JSON, as the collector writes them) for a record that is not an EventBatch."""
        topic = self.settings.topic_events
        log.error("%s[%d]@%d is not an EventBatch (%s); sent to %s", topic, msg.partition, msg.offset, exc,
                  self.settings.topic_deadletter, extra=context(topic=topic, partition=msg.partition, offset=msg.offset))
        dl = dead_letter(
            tenant=None,
            reason=exc.reason,
            detail=f"{topic}[{msg.partition}]@{msg.offset}: {exc}",
            payload=self.scrubber.payload(msg.value or b""),  # not the collector's: scrubbed here
            received_at_ms=round(msg.timestamp * 1000),  # the record's time: the same id on a replay
            source="worker",
            id_parts=(topic, msg.partition, msg.offset),  # one per record, the same on a replay
        )
        return dl.model_dump_json().encode()

    async def _check_offset(self, next_offset: dict[int, int], topic: str, partition: int, offset: int) -> None:
        """Refuse a record past the partition's next offset (``pipeline.runtime.offsets``).

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
                error = proc.tick(now, caught_up)
                if error is not None:
                    # The processor was rebuilt from the stored states; the
                    # next tick or record fires the same deadlines again.
                    self.stats["rebuilds"] += 1
                    self.metrics.rebuilds.inc()
                    log.error("partition %d: an idle tick raised (%s); processor rebuilt", partition,
                              error_detail(error), extra=context(partition=partition))
                if proc.proc.has_pending and self._window_opened is None:
                    self._window_opened = time.perf_counter()
            self._say_idle(now)
            self._send_customer_messages(force=True)
            self._send_new_triggers()

    async def _flush(self) -> None:
        """Close the window and start making it durable; call with the lock held.

        Waits first for the previous window to be durable (at most one
        window is in flight, so memory stays bounded and records are
        acknowledged in order). Then, at once: the window's outputs are
        drained, its rows handed to the sink, its visitor states put in the
        table (the processors read them from there from now on), and a new
        window opens. The I/O runs in the background (``_make_durable``)
        while the agent goes on processing records.
        """
        await self.wait_durable()
        started = time.perf_counter()
        outputs = [(p, proc.drain()) for p, proc in self.processors.items()]
        customer_outputs = [(q, customer.drain()) for q, customer in self.customers.items()]
        self._sent_upto.clear()
        self._msgs_sent.clear()
        self._cust_sent_upto.clear()
        self._trigger_cause.clear()
        self._customer_cause.clear()
        any_triggers = False
        event_rows = 0
        for _, out in outputs:
            if out.rows:
                self.sink.add_events(out.rows)
                event_rows += len(out.rows)
            for table, facts in out.facts.items():
                self.sink.add_facts(table, facts)
            if out.triggers:
                self.sink.add_triggers(out.triggers)
                any_triggers = True
        for _, cout in customer_outputs:
            for table, facts in cout.facts.items():
                self.sink.add_facts(table, facts)
            if cout.conversions:
                self.sink.add_facts(CONVERSIONS_TABLE, cout.conversions)
            if cout.triggers:
                self.sink.add_triggers(cout.triggers)
                any_triggers = True
        if event_rows:
            # Counted before the write: a reader that sees the rows in
            # ClickHouse must also see them here.
            self.stats["event_inserts"] += 1
            self.stats["event_rows"] += event_rows
        records = []
        for partition, states in [(p, out.states) for p, out in outputs] + [(q, c.states) for q, c in customer_outputs]:
            for key, value in states.items():
                bkey = key.encode()
                self.states[bkey] = value
                records.append((partition, bkey, value))
        customers_sent, self._customers_sent = self._customers_sent, False
        unacked, self._unacked = self._unacked, []
        conflicts, self._conflicts = self._conflicts, []
        # The ids taken in this window stay known to the next one until its
        # own flush: their rows may not be in ClickHouse before then.
        self._gate = IdGate(previous=self._gate)
        self._window_opened = None
        self.stats["emit_s"] += time.perf_counter() - started
        self._durable = asyncio.ensure_future(
            self._or_stop(self._make_durable(any_triggers, records, conflicts, unacked, customers_sent))
        )

    async def wait_durable(self) -> None:
        """Return once the window in flight (if any) is durable and acknowledged."""
        durable, self._durable = self._durable, None
        if durable is not None:
            await durable

    async def _make_durable(
        self,
        any_triggers: bool,
        records: list[tuple[int, bytes, bytes]],
        conflicts: list[bytes],
        unacked: list[tuple[Ack, faust.types.EventT]],
        customers_sent: bool = False,
    ) -> None:
        """A closed window's I/O, in order; then its records are acknowledged.

        ClickHouse gets the window's rows (one insert per table) while Kafka
        acknowledges its triggers, sent as they fired; then the changed
        visitor states go to the changelog, acknowledged; then the ids'
        conflict dead letters; only then Faust gets the records'
        acknowledgements, and commits their offsets. A crash before the end
        replays the window: rows and triggers again under the same ids, and
        each visitor state skips the records it already applied.
        """
        started = time.perf_counter()
        stopping = lambda: self.app.should_stop  # noqa: E731
        steps = []
        if self.sink.pending():
            steps.append(self._timed("clickhouse_s", self._flush_events(stopping)))
        if any_triggers:
            steps.append(self._timed("triggers_s", self._settle_triggers()))
        if customers_sent:
            # The customer stage's messages, like triggers, before the states that no longer send them.
            assert self.customer_writer is not None, "build_worker sets the customer writer"
            steps.append(self.customer_writer.settle(stopping))
        await asyncio.gather(*steps)
        sent = time.perf_counter()
        self.stats["emit_s"] += sent - started
        if records:
            # The states must be in the changelog before these records'
            # offsets can be committed: a crash after a commit whose states
            # were not yet acknowledged would skip their events.
            assert self.changelog is not None, "build_worker sets the changelog writer"
            await self.changelog.write(records, stopping)
            self.metrics.produce_seconds.labels("changelog", "ok").observe(time.perf_counter() - sent)
        self.stats["changelog_s"] += time.perf_counter() - sent
        if conflicts:
            # After the rows: a conflict's dead letter exists only once the
            # event that holds the id is stored (a crash before this replays
            # the window, which finds that event stored and dead-letters the
            # same conflicts again, under the same ids).
            await self._send_deadletters(conflicts, stat="id_conflicts")
        for ack, event in unacked:
            await ack(event)
        self.stats["windows"] += 1

    async def _or_stop(self, step: Awaitable[None]) -> None:
        """``_or_exit`` for a window's background I/O, except when the worker is stopping anyway.

        A stop cancels it: nothing of the window was acknowledged, and the
        next owner of its partitions replays it.
        """
        try:
            await step
        except asyncio.CancelledError:
            if not self.app.should_stop:
                await _or_exit(_raise(asyncio.CancelledError()))
            log.info("stopping with a window not yet durable; its records are replayed by the next worker")
            raise
        except BaseException as exc:  # noqa: BLE001
            await _or_exit(_raise(exc))

    async def _flush_events(self, stopping: Callable[[], bool]) -> None:
        """Write the sink; rows ClickHouse refuses for good become ``store_rejected`` dead letters."""
        rejected = await flush_with_retry(self.sink, "events", stopping)
        if rejected:
            await self._send_deadletters([self._store_rejected(r).model_dump_json().encode() for r in rejected])

    def _store_rejected(self, rejected: RejectedRow) -> DeadLetter:
        """A ``store_rejected`` dead letter for one row (its id from table and row: the same on a replay)."""
        self.stats["store_rejected"] += 1
        row = dict(zip(rejected.columns, rejected.row))
        tenant = row.get("tenant")
        payload = orjson.dumps(row, default=str, option=orjson.OPT_NON_STR_KEYS)
        why = clickhouse_refusal(rejected.error)
        log.error("ClickHouse refused a row of %s for good (%s); dead-lettered", rejected.table, why)
        return dead_letter(
            tenant=tenant if isinstance(tenant, str) and tenant else None,
            reason="store_rejected",
            detail=f"{rejected.table}: {why}",
            payload=payload,
            received_at_ms=self.wall_ms(),
            source="worker",
            id_parts=(rejected.table, payload),
        )

    async def _timed(self, stat: str, step: Awaitable[None]) -> None:
        started = time.perf_counter()
        await step
        self.stats[stat] += time.perf_counter() - started

    async def _settle_triggers(self) -> None:
        """Wait until Kafka acknowledged every trigger sent in this window (``_send_new_triggers``)."""
        assert self.trigger_writer is not None, "build_worker sets the trigger writer"
        started = time.perf_counter()
        await self.trigger_writer.settle(lambda: self.app.should_stop)
        self.metrics.produce_seconds.labels("triggers", "ok").observe(time.perf_counter() - started)

    async def handle_deadletters(self, events: list[faust.types.EventT]) -> None:
        """Store dead letters from the collector and the worker in ClickHouse.

        A record that is not a dead letter (another producer's, a corrupted
        one) is stored as a ``processing_error`` dead letter of its own with
        what can be read of it; a row ClickHouse refuses for good is stored
        as a ``store_rejected`` one without its payload.
        """
        rows = []
        started = time.perf_counter()
        for event in events:
            msg = event.message
            await self._check_offset(self.dl_next_offset, self.settings.topic_deadletter, msg.partition, msg.offset)
            self.dl_next_offset[msg.partition] = msg.offset + 1
            rows.append(self._deadletter_row(msg))
        self.dl_sink.add_deadletters(rows)
        rejected = await flush_with_retry(self.dl_sink, "dead letters", lambda: self.app.should_stop)
        if rejected:
            # Without the payload and detail, whose text is the likely cause.
            self.dl_sink.add_deadletters([self._bare_deadletter_row(r) for r in rejected])
            again = await flush_with_retry(self.dl_sink, "dead letters", lambda: self.app.should_stop)
            for r in again:
                log.critical("ClickHouse refused dead letter %r of %s: %s; not stored", r.row[:2], r.table, r.error)
        self.stats["deadletters"] += len(events)
        m = self.metrics
        topic = self.settings.topic_deadletter
        counts: dict[tuple[str, str, str], int] = {}
        for row in rows:
            key = (m.labels.tenant(row[_DL_TENANT]), m.labels.reason(row[_DL_REASON]), str(row[_DL_SOURCE]))
            counts[key] = counts.get(key, 0) + 1
        for labels, n in counts.items():
            m.deadletters.labels(*labels).inc(n)
        m.records.labels(topic).inc(len(events))
        m.batch_records.labels(topic).observe(len(events))
        m.batch_seconds.labels(topic).observe(time.perf_counter() - started)

    async def handle_deliveries(self, events: list[faust.types.EventT]) -> None:
        """Store the delivery outcomes of ``cxstream deliver`` in ``cx.deliveries`` (docs/delivery.md).

        A record that is not an outcome is logged and skipped: the table is
        a report of deliveries, and nothing else can be made of it.
        """
        rows = []
        topic = self.settings.topic_deliveries
        for event in events:
            msg = event.message
            await self._check_offset(self.delivery_next_offset, topic, msg.partition, msg.offset)
            self.delivery_next_offset[msg.partition] = msg.offset + 1
            try:
                rows.append(delivery_row(orjson.loads(msg.value or b"")))
            except Exception as exc:  # noqa: BLE001 - another producer's record
                self.stats["foreign_deliveries"] += 1
                log.error("%s[%d]@%d is not a delivery outcome (%s); skipped", topic, msg.partition, msg.offset,
                          error_detail(exc))
        self.delivery_sink.add_facts("cx.deliveries", rows)
        for r in await flush_with_retry(self.delivery_sink, "deliveries", lambda: self.app.should_stop):
            log.critical("ClickHouse refused delivery row %r: %s; not stored", r.row[:3], r.error)
        self.stats["deliveries"] += len(rows)

    def _deadletter_row(self, msg: faust.types.Message) -> tuple:
        value = msg.value or b""
        try:
            return deadletter_row(DeadLetter.model_validate_json(value).model_dump())
        except Exception as exc:  # noqa: BLE001 - any record must become a row
            self.stats["foreign_deadletters"] += 1
            topic = self.settings.topic_deadletter
            where = f"{topic}[{msg.partition}]@{msg.offset}"
            log.error("%s is not a dead letter (%s); stored as one", where, type(exc).__name__)
            dl = dead_letter(
                tenant=_tenant_of(value),
                reason="processing_error",
                detail=f"{where} is not a dead letter: {error_detail(exc)}",
                payload=self.scrubber.payload(value),  # another producer's bytes: scrubbed like the collector's
                received_at_ms=round(msg.timestamp * 1000),
                source="worker",
                id_parts=(topic, msg.partition, msg.offset),
            )
            return deadletter_row(dl.model_dump())

    def _bare_deadletter_row(self, rejected: RejectedRow) -> tuple:
        self.stats["store_rejected"] += 1
        row = dict(zip(DEADLETTER_COLUMNS, rejected.row))
        dl_id = row.get("dl_id") if isinstance(row.get("dl_id"), str) else None
        dl = dead_letter(
            tenant=None,
            reason="store_rejected",
            detail=f"{rejected.table}: {rejected.error}"[:1000],
            payload="",
            received_at_ms=self.wall_ms(),
            source="worker",
            id_parts=(rejected.table, dl_id or repr(rejected.row)),
        )
        return deadletter_row(dl.model_dump())


_CLICKHOUSE_CODE = re.compile(r"Code: (\d+)")


def clickhouse_refusal(error: str) -> str:
    """What ClickHouse said when it refused a row, without the values its message may quote.

    A refusal's text can quote the offending value ("Cannot parse ... 'x'");
    logs and dead-letter details keep its error code only (the row itself is
    the dead letter's payload).
    """
    code = _CLICKHOUSE_CODE.search(error or "")
    return f"ClickHouse error code {code.group(1)}" if code else "ClickHouse refused it (no error code)"


def _tenant_of(value: bytes) -> str | None:
    """The ``tenant`` of a JSON object record, if it has a string one."""
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    tenant = parsed.get("tenant") if isinstance(parsed, dict) else None
    return tenant if isinstance(tenant, str) and tenant else None


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


async def _raise(exc: BaseException) -> None:
    raise exc


async def _or_exit(batch: Awaitable[None]) -> None:
    """Run one batch; if it does not complete, end the process before anything is committed.

    The records are acknowledged by ``Worker.flush`` only, but a half-done
    step leaves the processors, the sink and the writers in a state no
    later step can trust (a flush that stopped after some inserts, states
    drained and not written). Exiting at once leaves the offsets where they
    were: the next worker replays the window, idempotently.
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
    migrate(ch, cluster=settings.clickhouse_cluster)
    worker = Worker(app, settings, ch)
    app.before_stop = worker.flush_on_stop
    worker.changelog = ChangelogWriter(settings, bootstrap, worker.table.changelog_topic.get_topic_name())
    worker.trigger_writer = TriggerWriter(settings, bootstrap, settings.topic_triggers)
    worker.customer_writer = CustomerWriter(settings, bootstrap, settings.customers_topic)
    worker.committed = CommittedOffsets(settings, bootstrap, settings.worker_group)
    take = settings.batch_max_records
    # The dead-letter and delivery agents hold what they take until it is
    # stored; a rebalance waits for that (``stream_wait_empty``), so they
    # hold it at most a second, whatever the events' window.
    within = min(settings.sink_max_interval_ms / 1000, OTHER_TAKE_MAX_S)

    @app.agent(worker.events_topic, concurrency=1, name="cx-events")
    async def process_events(stream):  # noqa: ANN001 - Faust's stream type
        # Records as they arrive, acknowledged by the worker only once
        # durable (Worker.flush), not when the loop goes on.
        async for events in take_unacked(stream, take, TAKE_WITHIN_S):
            await _or_exit(worker.handle(events, stream.ack))

    @app.timer(FLUSH_CHECK_S)
    async def flush_window() -> None:
        await _or_exit(worker.flush_if_due())

    @app.agent(worker.deadletter_topic, concurrency=1, name="cx-deadletters")
    async def store_deadletters(stream):  # noqa: ANN001
        async for events in stream.take_events(take, within=within):
            await _or_exit(worker.handle_deadletters(events))

    @app.agent(worker.deliveries_topic, concurrency=1, name="cx-deliveries")
    async def store_deliveries(stream):  # noqa: ANN001
        async for events in stream.take_events(take, within=within):
            await _or_exit(worker.handle_deliveries(events))

    @app.timer(TICK_INTERVAL_S)
    async def idle_tick() -> None:
        await worker.tick()

    @app.on_partitions_revoked.connect
    async def on_revoked(app_, revoked, **kwargs) -> None:  # noqa: ANN001
        await worker.on_revoked(revoked)

    @app.on_partitions_assigned.connect
    async def on_assigned(app_, assigned, **kwargs) -> None:  # noqa: ANN001
        worker.stats["events_partitions"] = sum(tp.topic == settings.topic_events for tp in assigned)
        worker.assigned = True
        now = time.perf_counter()
        for tp in assigned:
            if tp.topic == settings.topic_events:
                worker._assigned_at.setdefault(tp.partition, now)

    @app.timer(LAG_INTERVAL_S)
    async def refresh_lag() -> None:
        await worker.refresh_lag()

    @app.timer(RECOVERY_CHECK_INTERVAL_S)
    async def watch_recovery() -> None:
        stalled = stalled_recovery(app, settings.recovery_stall_s)
        if stalled is not None:
            # Nothing of the worker's is half done during a recovery: its last window was
            # flushed before the rebalance. The next process replays from the commits.
            log.critical("%s; exiting (75) so that a new process recovers the table from the start", stalled)
            logging.shutdown()
            os._exit(EXIT_UNFINISHED_BATCH)

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

    @app.page("/cx/trigger-times")
    class TriggerTimesView(faust.web.View):
        """Wall ms at each step of the last triggers fired by a record (``Worker.trigger_times``), and of the
        customer stage's carts (``customer``: the candidate's Kafka timestamp, taken, released by the merge,
        handed to librdkafka)."""

        async def get(self, request):  # noqa: ANN001
            return self.json({
                "fields": ["trigger_id", "kind", "received_ms", "record_ms", "taken_ms", "looked_up_ms", "sent_ms"],
                "triggers": [list(t) for t in worker.trigger_times],
                "customer": {
                    "fields": ["trigger_id", "candidate_ms", "taken_ms", "released_ms", "sent_ms"],
                    "triggers": [list(t) for t in worker.customer_times],
                },
            })

    @app.page("/metrics")
    class MetricsView(faust.web.View):
        """Prometheus' text format; behind the token like ``/cx/*`` (it names tenants)."""

        async def get(self, request):  # noqa: ANN001
            body = render(worker.metrics.registry)
            return self.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    class HealthView(faust.web.View):
        """Alive: the process serves. No token (``pipeline.webtoken.OPEN_PATHS``)."""

        async def get(self, request):  # noqa: ANN001
            return self.json({"status": "ok"})

    @app.page("/ready")
    class ReadyView(faust.web.View):
        """200 when ``Worker.ready`` says so, else 503 with the failing checks. No token."""

        async def get(self, request):  # noqa: ANN001
            ok, detail = await worker.ready()
            return self.json({"status": "ready" if ok else "not ready", **detail}, status=200 if ok else 503)

    return worker
