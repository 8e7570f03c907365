"""Everything the worker needs from faust-streaming that Faust does not offer as it is: one adapter.

``create_app`` builds the Faust application from a Settings object. Each
workaround below relies on what faust-streaming 0.15 (and mode 0.7, aiokafka
0.14) really do; ``tests/test_faust_adapter.py`` pins each of those behaviours
in a test of the same name, so a Faust upgrade that changes one fails there
first, not in production.

1. Fetch wait (``_ConsumerThread._create_worker_consumer``): Faust passes
   ``fetch_max_wait_ms=1500`` to aiokafka with no setting for it; the worker
   sets ``CX_KAFKA_FETCH_WAIT_MS``. Pinned by
   ``test_faust_hard_codes_a_1500_ms_fetch_wait``.
2. Seek back (``seek_to_committed_or_earliest``): after dropping records
   fetched during a rebalance Faust seeks to the committed offsets, which
   leaves a never-committed partition past the dropped records. Pinned by
   ``test_faust_seeks_back_through_its_consumer_thread`` and (real broker)
   ``test_seek_back_puts_a_never_committed_partition_at_its_earliest_record``.
3. Graceful stop (``_App.before_stop``): Faust's timers have ended when
   ``App.on_stop`` runs, and ``on_stop`` waits for every record taken to be
   acknowledged; the worker's open window is flushed first. Pinned by
   ``test_timers_have_ended_when_on_stop_runs`` and
   ``test_before_stop_runs_before_faust_waits_for_acknowledgements``.
4. Rebalance (``rebalancing``): Faust waits for every record taken to be
   acknowledged (``stream_wait_empty``) *before* it sends the
   ``on_partitions_revoked`` signal, so the worker cannot flush in its
   revoke handler: it flushes on its timer while ``app.rebalancing``. Pinned
   by ``test_faust_waits_for_acknowledgements_before_the_revoke_signal``.
5. Manual acknowledgement (``take_unacked``): ``Stream.noack_take`` hands
   over events and never acknowledges them; the worker acknowledges each
   record with ``Stream.ack`` once its window is durable. ``take_unacked``
   is ``noack_take``'s code, except that it hands over what is waiting at
   once instead of on its timer. Pinned by
   ``test_noack_take_leaves_events_unacknowledged_until_stream_ack``.
6. The state table (``state_store``): the worker reads and writes the
   table's in-memory store directly (outside any event, where ``table[k] =
   v`` raises) and writes the changelog with its own producer
   (``pipeline.runtime.changelog``); Faust still reads the changelog back
   into the store on start-up. Pinned by
   ``test_writes_to_the_table_store_send_nothing_to_the_changelog`` and
   ``test_faust_recovers_raw_changelog_records_and_ignores_a_tombstone_it_never_held``.
7. Skipped records (``pipeline.runtime.offsets``): Faust's commit lets one
   missing offset just after the committed one through, so the worker checks
   every record's offset itself. Pinned by
   ``test_faust_commits_past_one_record_it_never_handed_over``.
8. Exit (``run_worker``): mode sleeps 1 s before it closes the loop, after
   every service stopped; the worker sleeps 0.1 s. Pinned by
   ``test_mode_sleeps_a_second_before_closing_the_loop``.
9. Stalled recovery (``stalled_recovery``): Faust's table recovery waits
   without end for a changelog partition that sends nothing; the worker
   exits 75 after ``CX_RECOVERY_STALL_S`` and a new process recovers from
   the start. Pinned by ``test_stalled_recovery_reads_fausts_recovery_state``.
10. Hand-over (``_Consumer._drain_messages``): Faust hands each fetched
   record to the agents' streams inside ``wait_first``, four asyncio tasks
   and one pass of the event loop per record, so that a rebalance can
   interrupt a hand-over that waits (a full stream buffer, flow control).
   The worker runs the hand-over itself and falls back to ``wait_first``
   only when it does wait (``deliver``); otherwise the loop is Faust's.
   Pinned by ``test_faust_hands_over_each_record_inside_wait_first``.
11. Log level (``run_worker``): at a level of WARNING or above, Faust's
   worker keeps its start-up spinner and, to spin it on every log record,
   sets the root logger to DEBUG for the life of the process: every debug
   call of aiokafka, clickhouse-driver, Faust and mode then builds a record
   that the console handler throws away (3% of the worker's samples at
   2,000 events/s). The worker runs without the spinner, so the root
   logger keeps the worker's level. Pinned by
   ``test_faust_spinner_sets_the_root_logger_to_debug``.
12. End of recovery (``_Recovery``): Faust ends a table recovery with the
   consumer's flow running (it ran for the changelogs): it resumes the
   stream partitions, seeks them to the committed offsets, and only then
   resumes its flow control, which empties every channel queue. A record
   fetched after the seek and handed over before that emptying was lost:
   no later seek fetched it again and its offset was never committed. Seen
   on the embedded broker when a record arrived while a worker (re)joined
   its group (the only record of a partition, never processed, the lag
   stayed). The worker stops the flow first, so nothing is handed over
   until the positions are set and the queues emptied. Pinned by
   ``test_faust_seeks_and_empties_the_queues_with_the_flow_running`` and
   ``test_the_worker_stops_the_flow_before_faust_resumes_the_streams``.
13. Livelock check (``_ConsumerThread.verify_event_path``): every few
   seconds outside a rebalance Faust reads each assigned partition's
   position to see whether its stream is stuck, and expects None for a
   partition that has none yet; aiokafka 0.14's ``position`` asserts one.
   A partition still waiting for its position after a rebalance crashed the
   worker (``AssertionError`` in ``_commit_livelock_detector``, exit 1; seen
   once in the second-worker outage test). The check skips such a
   partition: nothing has been fetched for it to be stuck on. Pinned by
   ``test_faust_s_livelock_check_asserts_on_a_partition_without_a_position`` and
   ``test_the_worker_s_livelock_check_skips_a_partition_without_a_position``.

The worker's web port (``/cx/query``, ``/cx/stats``, ``/metrics``) listens on
``CX_WORKER_WEB_BIND`` (loopback by default) and answers only requests that
carry the data directory's token (``pipeline.webtoken``), except ``/health``
and ``/ready``. Faust's own pages
(``/router``, ``/table``, ``/graph``, statistics, ``/performance``) are
switched off; what Faust still mounts (its index page at ``/``) is behind
the token like everything else on the port.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Collection, Mapping, MutableMapping, Sequence

import aiokafka
import faust
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode.utils.aiter import aiter

from pipeline.settings import Settings
from pipeline.webtoken import token_middleware

__all__ = ["create_app", "STATE_TABLE", "make_runner", "rebalancing", "run_worker", "stalled_recovery", "state_store", "take_unacked"]

STATE_TABLE = "visitors"


async def seek_to_committed_or_earliest(
    consumer: aiokafka.AIOKafkaConsumer, skip_topics: Collection[str]
) -> Mapping[aiokafka.TopicPartition, int | None]:
    """Seek every assigned partition back to its committed offset, or to its earliest one if it has none.

    faust-streaming drops records it fetched while its flow is stopped (a
    rebalance, a table recovery) and then calls this "seek back to
    committed". aiokafka's ``seek_to_committed`` seeks only partitions with a
    committed offset above 0: a partition the group never committed stayed
    where the dropped records had moved it, and its first records were never
    handed to an agent. Seen on the embedded broker when a second worker
    joined before the first committed anything: the new owner of a partition
    got offset 9 first (``SkippedRecords``: exit 75 and a restart), or, when
    the dropped records were the partition's last ones, nothing at all, and
    the partition's lag stayed until the next record. Such partitions now go
    back to their earliest offset, as ``auto_offset_reset="earliest"`` says.
    ``skip_topics`` (the tables' changelogs) are left where table recovery
    put them.
    """
    committed = await consumer.seek_to_committed()
    never = [tp for tp, offset in committed.items() if (offset is None or offset <= 0) and tp.topic not in skip_topics]
    if never:
        await consumer.seek_to_beginning(*never)
    return committed


def _has_position(consumer: aiokafka.AIOKafkaConsumer | None, tp: TP) -> bool:
    """False when aiokafka holds ``tp`` assigned without a position (after a rebalance, before its reset)."""
    try:
        assignment = consumer._fetcher._subscriptions.subscription.assignment  # type: ignore[union-attr]
        state = assignment.state_value(aiokafka.TopicPartition(tp.topic, tp.partition))
    except AttributeError:  # no consumer, fetcher or subscription yet: Faust's own check copes
        return True
    return state is None or state.has_valid_position


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust-streaming's aiokafka consumer with the fetch wait of the settings.

    faust-streaming passes ``fetch_max_wait_ms=1500`` to aiokafka and offers
    no setting for it; aiokafka reads the attribute when the consumer starts.
    """

    def _create_worker_consumer(self, transport):  # noqa: ANN001, ANN202 - faust's signature
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.app.fetch_wait_ms
        return consumer

    def verify_event_path(self, now: float, tp: TP) -> None:
        """Faust's livelock check, but not for a partition without a position yet (workaround 13)."""
        if not _has_position(self._consumer, tp):
            return None
        return super().verify_event_path(now, tp)

    async def seek_to_committed(self) -> Mapping[aiokafka.TopicPartition, int | None]:
        """Faust's seek back after dropping records; see ``seek_to_committed_or_earliest``."""
        consumer = self._ensure_consumer()
        changelogs = set(self.app.tables.changelog_topics)
        return await self.call_thread(seek_to_committed_or_earliest, consumer, changelogs)


class _Resumed:
    """Awaiting it finishes a coroutine already run up to its first suspension (which yielded ``waiting``)."""

    __slots__ = ("_coro", "_waiting")

    def __init__(self, coro: Any, waiting: Any) -> None:
        self._coro, self._waiting = coro, waiting

    def __await__(self) -> Any:
        coro, waiting = self._coro, self._waiting
        while True:
            try:
                sent = yield waiting
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # CancelledError from wait_first among them: the coroutine gets it
                try:
                    waiting = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    waiting = coro.send(sent)
                except StopIteration as done:
                    return done.value


async def deliver(consumer: Any, callback: Callable[[Any], Awaitable[None]], message: Any) -> None:
    """``await consumer.wait_first(callback(message), consumer.suspend_flow.wait())``, without tasks when it need not wait.

    The callback (Faust's conductor) puts the record in each subscribed
    stream's buffer and returns without suspending unless it must wait: a
    full buffer, flow control during a rebalance, a full producer buffer.
    It is run at once; only if it suspends does the rest go through
    ``wait_first``, as Faust does for every record, so a rebalance still
    interrupts a hand-over that waits.
    """
    coro = callback(message)
    try:
        waiting = coro.send(None)
    except StopIteration:
        return
    await consumer.wait_first(_Resumed(coro, waiting), consumer.suspend_flow.wait())


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - exercised by every worker test
        """faust-streaming 0.15's ``Consumer._drain_messages`` with ``deliver`` for its per-record ``wait_first``."""
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        yield_every = 100
        num_since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                await self.sleep(0)  # getmany may be called in a loop that never releases the event loop
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await asyncio.sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            await deliver(self, callback, message)
                            set_read_offset(tp, offset)
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)


class _Recovery(Recovery):
    """Faust's table recovery, with no record handed over while it ends; see workaround 12.

    Both of Faust's ends of a recovery (``_resume_streams`` without tables,
    ``on_recovery_completed`` with them) resume the stream partitions, seek
    them, empty the queues (``flow_control.resume``) and then resume the
    consumer's flow. With the flow stopped first, the fetch loop hands over
    nothing in between: what it fetched meanwhile is dropped before the seek
    or fetched again after it. Changelog records a standby table had queued
    are still emptied, as before: with the memory store (no persisted
    offset) a standby partition that becomes active is read again from its
    start, so its state never depends on them.
    """

    async def _resume_streams(self, generation_id: int = 0) -> None:
        self.app.consumer.stop_flow()
        await super()._resume_streams(generation_id)

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        self.app.consumer.stop_flow()
        await super().on_recovery_completed(generation_id)


class _TableManager(TableManager):
    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = _Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class _App(faust.App):
    fetch_wait_ms = 1500  # set from the settings by create_app
    # Awaited first when the app stops, before Faust waits for every record
    # taken to be acknowledged (``stream_wait_empty``): the worker makes its
    # open window durable there (``Worker.flush_on_stop``). Faust's timers
    # have ended by then, so nothing else would.
    before_stop: Callable[[], Awaitable[None]] | None = None

    async def on_stop(self) -> None:
        if self.before_stop is not None:
            await self.before_stop()
        await super().on_stop()

    def _new_transport(self) -> _Transport:
        return _Transport(self.conf.broker_consumer, self)


def _credentials(settings: Settings) -> faust.auth.Credentials | None:
    proto = settings.kafka_security_protocol
    if proto == "PLAINTEXT":
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    if proto == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password,
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=context if proto == "SASL_SSL" else None,
    )


def create_app(settings: Settings, bootstrap: str, web_token: str | None = None) -> faust.App:
    """A Faust app wired to ``bootstrap``; agents are added by ``pipeline.runtime.worker``.

    Session timeout and heartbeat are short so that a replacement worker
    takes over a crashed one's partitions in seconds, not the minute a
    default session takes to expire. Without ``web_token`` the app has no
    web port at all.
    """
    brokers = [f"kafka://{b.strip()}" for b in bootstrap.split(",") if b.strip()]
    app = _App(
        settings.worker_group,
        broker=brokers,
        broker_credentials=_credentials(settings),
        store="memory://",
        topic_partitions=settings.kafka_partitions,
        topic_replication_factor=settings.kafka_replication,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.worker_session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.worker_session_timeout_s / 10),
        broker_commit_interval=1.0,
        producer_acks=-1,
        producer_compression_type=None,
        web_enabled=web_token is not None,
        web_bind=settings.worker_web_bind,
        web_host=settings.worker_web_bind,
        web_port=settings.worker_web_port,
        web_application_options={"middlewares": [token_middleware(web_token)]} if web_token else None,
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        datadir=str(settings.data_dir / "faust"),
        autodiscover=False,
        TableManager=_TableManager,
    )
    app.fetch_wait_ms = settings.kafka_fetch_wait_ms
    return app


def state_store(table: faust.Table) -> MutableMapping[bytes, bytes | None]:
    """The table's in-memory store (``Table.data``): read and written by the worker, outside any event.

    A write here sends nothing to the changelog; ``pipeline.runtime.changelog``
    writes the same records itself, acknowledged, before the offsets are committed.
    """
    return table.data


async def take_unacked(stream: faust.Stream, max_: int, within: float) -> AsyncIterator[Sequence[faust.types.EventT]]:
    """Lists of up to ``max_`` events, each as soon as there is one; none is ever acknowledged here.

    The caller acknowledges each one with ``stream.ack(event)`` once it is
    durable. A list holds what the stream had when the caller came back for
    more (records that arrived while it worked on the last list), or else
    the first records to arrive and those handed over with them. ``within``
    only bounds how long one wait lasts before the stream's stop is checked.

    faust-streaming's ``Stream.noack_take`` (what this replaces) wakes only
    when its buffer is full or every ``within`` seconds, so a record that
    arrived while the last list was worked on waited for that timer too.
    This is its code with that one difference: the buffer, and the hand-off
    that keeps the stream from adding to it while a list is worked on (so
    the stream's own buffer and Faust's flow control still hold the rest).
    """
    buffer: list[faust.types.EventT] = []
    added = asyncio.Event()  # the buffer is not empty
    room = asyncio.Event()  # the buffer may take more
    room.set()
    working: asyncio.Future | None = None  # set while the caller works on a list

    async def add_to_buffer(value: Any) -> Any:
        nonlocal working
        if working is not None:
            try:
                await working
            finally:
                working = None
        event = stream.current_event
        if event is None:
            raise RuntimeError("take_unacked found no current event")
        buffer.append(event)
        added.set()
        if len(buffer) >= max_:
            room.clear()
            await stream.wait(room)
        return value

    enable_acks = stream.enable_acks
    stream.enable_acks = False
    stream.add_processor(add_to_buffer)
    stream._enable_passive(aiter(stream.channel))  # as Faust's takes do: the stream drains itself in the background
    try:
        while not stream.should_stop:
            if not buffer:
                await stream.wait_for_stopped(added, timeout=within)
            if not buffer:
                continue
            while len(buffer) < max_:  # let the stream add what it already holds
                held = len(buffer)
                await asyncio.sleep(0)
                if len(buffer) == held:
                    break
            working = asyncio.get_running_loop().create_future()
            try:
                yield list(buffer)
            finally:
                buffer.clear()
                added.clear()
                if not working.done():
                    working.set_result(None)
                room.set()
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_buffer)


def rebalancing(app: faust.App) -> bool:
    """True while the group rebalances: Faust waits for every record taken to be acknowledged before revoking."""
    return bool(app.rebalancing)


def stalled_recovery(app: faust.App, stall_s: float, now: float | None = None) -> str | None:
    """What a table recovery that stopped reading is waiting for, or None while it reads (or is done).

    faust-streaming's recovery reads each active changelog partition up to
    its high watermark and only warns, forever, when a partition it still
    needs sends nothing (``Recovery._verify_remaining``): seen on the
    embedded broker under load after a second worker joined, with the
    worker alive, its partitions assigned and nothing consumed for minutes.
    Returns a description once some partition with records left has
    received nothing for ``stall_s`` (since the recovery started, or since
    its last record).
    """
    recovery = app.tables.recovery
    started = recovery._recovery_started_at
    if not recovery.in_recovery or started is None:
        return None
    now = time.monotonic() if now is None else now
    received = recovery._active_events_received_at
    stuck = {
        tp: left
        for tp, left in recovery.active_remaining().items()
        if left > 0 and now - max(started, received.get(tp, started)) >= stall_s
    }
    if not stuck:
        return None
    parts = ", ".join(f"{tp.topic}[{tp.partition}] ({left} left)" for tp, left in sorted(stuck.items()))
    return f"table recovery read nothing for {stall_s:g} s from {parts}"


EXIT_SLEEP_S = 0.1


class _Worker(faust.Worker):
    async def _sentinel_task(self) -> None:
        # mode sleeps 1 s here, after every service stopped and every commit was made,
        # before it closes the loop: a tenth is enough for the cancelled tasks to end.
        await asyncio.sleep(EXIT_SLEEP_S)


def make_runner(app: faust.App, **options: Any) -> faust.Worker:
    """Faust's worker for ``app`` with ``options``, a short exit and no spinner (the root logger keeps its level)."""
    runner = _Worker(app, **options)
    runner.spinner = None
    return runner


def run_worker(app: faust.App, **options: Any) -> None:
    """Run ``app`` in this process until it stops (``faust.Worker`` with ``options``)."""
    make_runner(app, **options).execute_from_commandline()
