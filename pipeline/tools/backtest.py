"""``cxstream backtest``: replay stored events under other rules and compare triggers, offers and cost.

The events come from a JSONL export (one event per line: a stored event
with ``event_time_ms``, or a raw Segment message, normalized here as the
collector would), from the events topic between offsets, or from the demo
storefront (``--demo``). For each rule set (by default the abandonment
delay at 30 min, 1 h and 4 h, each with the configured discount tiers) the
events run through one ``PartitionProcessor`` per partition of the events
topic in this process, as the worker runs them, and the rows go to a
scratch embedded ClickHouse of their own (``<out>/<rule set>``). Nothing is
sent to Kafka and the configured ClickHouse is never opened, so
``cx.triggers`` of the running pipeline is untouched. The printed table
reads each scratch store's ``cx.offers_daily``.

Partitions: records read from Kafka keep their partition and offset. An
event of a file keeps the partition (and offset) it records
(``kafka_partition``, ``kafka_offset``: what ``--export`` writes); any other
event, and the demo's, goes to the partition the collector would write it
to (Kafka's partitioner on the visitor key, ``--partitions`` partitions),
one record per event, in file order within the partition. Each partition
has its own watermark, as in the pipeline: a busy partition never decides
the carts of another.

Replays are deterministic: the records play as live traffic (``replay``),
the simulated wall clock is the latest event time that arrived, and after
the last event every partition's watermark is moved past every pending
deadline, so each cart still open at the end is decided.
"""

from __future__ import annotations

import dataclasses
import heapq
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, get_args

import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipeline.detect import Rules
from pipeline.detect.stages import LocalStages
from pipeline.detect.ids import IdGate, judge_record
from pipeline.detect.processor import EventFailed, Output
from pipeline.exitcodes import EXIT_UNAVAILABLE
from pipeline.wire.records import CallType, Event
from pipeline.settings import DAY_MS, HOUR_MS, MINUTE_MS, Settings, SettingsError, parse_tiers

__all__ = [
    "BacktestError",
    "BrokerUnavailable",
    "Loaded",
    "Outcome",
    "Record",
    "RuleSet",
    "backtest",
    "load_demo",
    "load_file",
    "load_kafka",
    "parse_duration_ms",
    "partition_events",
    "partition_of",
    "replay",
    "rule_sets",
    "run_rule_set",
]

DRAIN_EVENTS = 20_000  # events between two writes to the scratch store
MAX_PARTITIONS = 1024  # --partitions: what CX_KAFKA_PARTITIONS allows
SETTLE_MS = 400 * DAY_MS  # how far the final watermark moves: past any deadline
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS}


class BacktestError(ValueError):
    """Bad backtest input (a file line, a rule, a path); the message says which and where."""


class BrokerUnavailable(BacktestError):
    """``--kafka``: no broker answered at the bootstrap address (exit 69, as the other commands)."""


def parse_duration_ms(text: str) -> int:
    """``30m`` -> 1,800,000; units ms, s, m, h, d."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise BacktestError(f"not a positive duration: {text!r} (e.g. 30m, 1h, 4h)")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


@dataclass(frozen=True)
class RuleSet:
    name: str
    rules: Rules


def rule_sets(base: Rules, delays: list[str], tiers: list[str]) -> list[RuleSet]:
    """Every delay with every tier list (tiers as ``value=pct,...``; none given: the base tiers)."""
    tier_options = []
    for t in tiers:
        try:
            tier_options.append((t, parse_tiers(t)))
        except ValueError as exc:
            raise BacktestError(f"--tiers {t}: {exc}") from None
    tier_options = tier_options or [("", base.offer_discount_tiers)]
    out = []
    for delay in delays:
        for label, parsed in tier_options:
            name = delay if len(tier_options) == 1 else f"{delay} tiers {label or 'none'}"
            rules = dataclasses.replace(base, abandon_after_ms=parse_duration_ms(delay), offer_discount_tiers=parsed)
            out.append(RuleSet(name, rules))
    if len({r.name for r in out}) != len(out):
        raise BacktestError("two rule sets have the same name: give each delay and tier list once")
    return out


# -- input ---------------------------------------------------------------------

# A record of a partition: (offset, its events in order).
Record = tuple[int, list[dict]]
# Fields an exported event carries besides the stored event's: where it was on the events topic.
PARTITION_FIELD, OFFSET_FIELD = "kafka_partition", "kafka_offset"


def _normalizer(tenant: str, settings: Settings):  # noqa: ANN202 - a closure
    from pipeline.collector.normalize import DeadLetterDecision, NormalizeRules, normalize, parse_time_ms

    # Stored traffic is old by nature: the age window applies at collection, not here.
    rules = NormalizeRules(max_event_age_ms=10**15, max_event_future_ms=10**15, pii_salt=settings.pii_salt)

    def to_event(msg: dict) -> dict | str:
        ts = msg.get("timestamp")
        received = parse_time_ms(ts) if isinstance(ts, str) else 0
        result = normalize(msg, tenant=tenant, received_at_ms=received, batch_sent_at=None, rules=rules)
        return f"{result.reason}: {result.detail}" if isinstance(result, DeadLetterDecision) else result

    return to_event


def partition_of(event: dict, partitions: int) -> int:
    """The partition the collector writes ``event`` to: Kafka's partitioner on its visitor key."""
    from pipeline.wire.partitioner import partition_for_key
    from pipeline.wire.records import visitor_key

    key = visitor_key(event["tenant"], event.get("anonymous_id"), event.get("user_id"))
    return partition_for_key(key.encode("utf-8"), partitions)


@dataclass
class Loaded:
    """Events by partition, as records in offset order, and the messages that could not become events."""

    partitions: dict[int, list[Record]] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)  # "line N: reason" for each message that is not an event

    @property
    def events(self) -> list[dict]:
        """Every event, partition by partition, each partition in offset order."""
        return [e for p in sorted(self.partitions) for _, events in self.partitions[p] for e in events]

    def exported(self) -> Iterator[dict]:
        """The events with their partition and offset, as ``--export`` writes them."""
        for p in sorted(self.partitions):
            for offset, events in self.partitions[p]:
                for event in events:
                    yield {**event, PARTITION_FIELD: p, OFFSET_FIELD: offset}


def partition_events(events: Iterable[dict], partitions: int) -> dict[int, list[Record]]:
    """Events without a recorded place: each to the collector's partition for its visitor key,
    one record per event, in the given order within a partition."""
    out: dict[int, list[Record]] = {}
    for event in events:
        records = out.setdefault(partition_of(event, partitions), [])
        records.append((len(records), [event]))
    return out


class _Placer:
    """Builds ``Loaded.partitions`` from events in file order.

    An event that says where it was (``kafka_partition``, and ``kafka_offset``
    when exported from the topic) goes there; events with the same partition
    and offset form one record. Any other event goes to the collector's
    partition for its visitor key as a record of its own, after that
    partition's records so far: file order is kept within a partition.
    """

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.records: dict[int, dict[int, list[dict]]] = {}
        self.next_offset: dict[int, int] = {}

    def add(self, event: dict, where: str) -> None:
        placed_p, placed_o = event.pop(PARTITION_FIELD, None), event.pop(OFFSET_FIELD, None)
        for name, value in ((PARTITION_FIELD, placed_p), (OFFSET_FIELD, placed_o)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise BacktestError(f"{where}: {name} must be an integer >= 0")
        if placed_o is not None and placed_p is None:
            raise BacktestError(f"{where}: {OFFSET_FIELD} without {PARTITION_FIELD}")
        p = placed_p if placed_p is not None else partition_of(event, self.partitions)
        records = self.records.setdefault(p, {})
        if placed_o is None:
            placed_o = self.next_offset.get(p, 0)
        records.setdefault(placed_o, []).append(event)
        self.next_offset[p] = max(self.next_offset.get(p, 0), placed_o + 1)

    def result(self) -> dict[int, list[Record]]:
        return {p: sorted(records.items()) for p, records in sorted(self.records.items())}


# What the replay needs of a stored event; its other fields may be absent or null.
_STORED_REQUIRED = ("event_id", "tenant", "type", "event_time_ms")
# Every field's type as the collector writes it (``pipeline.wire.records.Event``, a Literal of text for type).
_STORED_TYPES = {
    name: int if int in (f.annotation, *get_args(f.annotation)) else str for name, f in Event.model_fields.items()
}


def _check_stored(obj: dict, where: str) -> None:
    """A stored event (a ``cx.events`` export, or ``--export``'s lines) with the collector's types:
    one of another type would fail detection half-way through a record."""
    for key, kind in _STORED_TYPES.items():
        value = obj.get(key)
        what = "an integer" if kind is int else "a string"
        if value is None:
            if key in _STORED_REQUIRED:
                raise BacktestError(f"{where}: stored event without {key}")
        elif not isinstance(value, kind) or isinstance(value, bool):
            raise BacktestError(f"{where}: {key} is not {what}" + ("" if key in _STORED_REQUIRED else " (or null)"))
    if obj["type"] not in get_args(CallType):
        raise BacktestError(f"{where}: type {obj['type']!r} is not one of {', '.join(get_args(CallType))}")


def load_file(path: Path, tenant: str, settings: Settings, partitions: int | None = None) -> Loaded:
    """Events of a JSONL export by partition; a line that is not a JSON object stops with its line number.

    ``partitions`` (default ``CX_KAFKA_PARTITIONS``) is the partition count
    for events that do not record their partition.
    """
    to_event = None
    placer = _Placer(partitions or settings.kafka_partitions)
    loaded = Loaded()
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise BacktestError(f"{path}:{n}: not JSON ({exc})") from None
            if not isinstance(obj, dict):
                raise BacktestError(f"{path}:{n}: expected a JSON object per line")
            if "event_time_ms" in obj:  # a stored event (cx.events export or --export)
                _check_stored(obj, f"{path}:{n}")
                placer.add(obj, f"{path}:{n}")
                continue
            to_event = to_event or _normalizer(tenant, settings)
            result = to_event(obj)
            if isinstance(result, str):
                loaded.rejected.append(f"line {n}: {result}")
            else:
                placer.add(result, f"{path}:{n}")
    loaded.partitions = placer.result()
    return loaded


def load_demo(
    seed: int, visitors: int, days: float, tenant: str, settings: Settings, partitions: int | None = None
) -> Loaded:
    """The demo storefront's traffic over ``days`` from 2026-01-01 00:00 UTC (fixed, so runs compare),
    on the collector's partitions (``partitions``, default ``CX_KAFKA_PARTITIONS``)."""
    from pipeline.demo.storefront import generate

    start_ms = 1_767_225_600_000  # 2026-01-01 00:00 UTC
    traffic = generate(seed, visitors=visitors, start_ms=start_ms, span_ms=int(days * DAY_MS))
    to_event = _normalizer(tenant, settings)
    events, loaded = [], Loaded()
    for i, msg in enumerate(traffic.messages):
        result = to_event(msg)
        if isinstance(result, str):
            loaded.rejected.append(f"message {i}: {result}")  # the demo's deliberate dead letters
        else:
            events.append(result)
    loaded.partitions = partition_events(events, partitions or settings.kafka_partitions)
    return loaded


def load_kafka(settings: Settings, from_offset: int, to_offset: int | None) -> Loaded:
    """The records of the events topic, every partition from ``from_offset`` to ``to_offset``
    (exclusive; None: the end of the partition now), each partition in offset order.

    A record that is not an EventBatch is reported as rejected, as the
    worker dead-letters it. No broker answering within
    ``CX_KAFKA_CHECK_TIMEOUT_S`` is ``BrokerUnavailable``.
    """
    from confluent_kafka import KafkaError, KafkaException, Consumer, TopicPartition

    from pipeline.wire.records import BadRecord, decode_batch_checked
    from pipeline.wire.topics import kafka_config, kafka_reason

    if not settings.kafka_bootstrap:
        raise BacktestError("CX_KAFKA_BOOTSTRAP: needed to read the events topic")
    # The end is where the fetch reports end of partition, not a ListOffsets
    # answer taken before: some Kafka-protocol brokers answer that one stale.
    # librdkafka's own log is off ("log_level": 0): an unreachable broker is
    # one line of ours, not hundreds of its connection failures.
    try:
        consumer = Consumer({
            **kafka_config(settings, settings.kafka_bootstrap), "log_level": 0,
            "group.id": "cxstream-backtest", "enable.auto.commit": False, "enable.partition.eof": True,
        })  # fmt: skip
    except KafkaException as exc:  # a wrong CX_KAFKA_SECURITY_* value
        raise BacktestError(f"Kafka client: {kafka_reason(exc)}") from None
    loaded = Loaded()
    try:
        topic = settings.topic_events
        timeout_s = settings.kafka_check_timeout_s
        try:
            meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        except KafkaException as exc:
            raise BrokerUnavailable(
                f"no Kafka broker answered at {settings.kafka_bootstrap} within {timeout_s:g} s "
                f"({kafka_reason(exc)}); check CX_KAFKA_BOOTSTRAP and the CX_KAFKA_SECURITY_* settings"
            ) from None
        if meta is None or meta.error is not None:
            raise BacktestError(f"topic {topic!r} not found")
        for p in sorted(meta.partitions):
            records: list[Record] = []
            next_offset = from_offset
            consumer.assign([TopicPartition(topic, p, from_offset)])
            while to_offset is None or next_offset < to_offset:
                msg = consumer.poll(10)
                if msg is None:
                    raise BacktestError(f"partition {p}: nothing at offset {next_offset} within 10 s")
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        break
                    raise BacktestError(f"partition {p}: {msg.error()}")
                if to_offset is None or msg.offset() < to_offset:
                    try:
                        records.append((msg.offset(), decode_batch_checked(msg.value())))
                    except BadRecord as exc:
                        loaded.rejected.append(f"partition {p} offset {msg.offset()}: {exc.reason}: {exc}")
                next_offset = msg.offset() + 1
            consumer.unassign()
            if records:
                loaded.partitions[p] = records
    finally:
        consumer.close()
    return loaded


# -- run -----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One rule set's totals over the replay, read back from its scratch ``cx.offers_daily``.

    Everything after ``friction`` is about the ``cart_abandoned`` decisions,
    the ones the abandonment delay and the discount tiers change.
    """

    name: str
    delay_ms: int
    triggers: int  # decisions in offers_daily: cart_abandoned and checkout_friction
    abandoned: int  # of which cart_abandoned
    friction: int  # of which checkout_friction
    holdout: int  # cart_abandoned held out
    offers: int
    assists: int
    recovered_treatment: int
    recovered_holdout: int
    recovered_revenue: float
    est_discount_cost: float

    @property
    def abandoned_recovered(self) -> int:
        """cart_abandoned triggers recovered by an order, both arms."""
        return self.recovered_treatment + self.recovered_holdout

    @property
    def rate_treatment(self) -> float:
        return self.recovered_treatment / max(self.abandoned - self.holdout, 1)

    @property
    def rate_holdout(self) -> float:
        return self.recovered_holdout / max(self.holdout, 1)


def _record_time(record: Record) -> int:
    return max((e["event_time_ms"] for e in record[1]), default=0)


def replay(rules: Rules, partitions: dict[int, list[Record]], emit: Callable[[list[Output]], None]) -> None:
    """Run the partitions' records through both stages (``LocalStages``), as the worker does.

    Each device processor gets its partition's records in offset order, has
    its own event-time watermark and its own visitor states; identified
    visitors' messages go to the customer stage, whose merge orders them as
    the worker's does. Besides, only the id check (``pipeline.detect.ids``)
    crosses partitions: one ``IdGate``
    for the whole replay, as ClickHouse holds every stored id, takes out an
    event whose id an event with other content took first (the worker's
    ``duplicate_id_conflict``; here it is only left out). The records play as live traffic: a record arrives when its
    latest event happened (records of all partitions taken in that order,
    each partition's in offset order), the simulated wall clock is the latest
    arrival so far, and before each record every partition that has nothing
    waiting gets the worker's idle tick at that clock (``tick(wall,
    caught_up=True)``). After the last record every partition is ticked
    ``SETTLE_MS`` later, so each cart still open is decided, and the
    customer stage decides what it still holds (``finish``). ``emit``
    receives the partitions' drained outputs (every ``DRAIN_EVENTS`` events
    and at the end) after their states were stored.

    Only the partitions with records take part, numbered 0, 1, ... in the
    order of their own numbers. A partition without records would only say
    it is idle, yet each one is a customer partition more and a source more
    of every customer partition's merge: ``--partitions 1000`` made 1000
    merges of 1000 sources for 47 events (time grew with the cube). The
    numbering changes nothing decided: the customer stage orders the
    sources' messages by event time, then by source number (kept in order
    here), and a customer's partition only groups customers, whose
    decisions are their own.
    """
    from pipeline.wire.partitioner import partition_for_key

    busy = sorted(p for p, records in partitions.items() if records)
    partitions = {i: partitions[p] for i, p in enumerate(busy)}
    n = max(len(busy), 1)
    table: dict[str, bytes] = {}
    stages = LocalStages(rules, table, partitions=n, route=lambda key: partition_for_key(key.encode(), n))
    for p in partitions:
        stages.device(p, restore=())
    if not partitions:
        stages.idle(0)  # no records at all: nothing to wait for
    gate = IdGate()
    position = dict.fromkeys(partitions, 0)
    heads = [(_record_time(records[0]), p) for p, records in partitions.items() if records]
    heapq.heapify(heads)
    wall_ms = 0
    since_drain = 0

    def drain() -> None:
        out = stages.drain()
        table.update(out.states)  # stored before the next process or tick, as the agent does
        emit([out])

    while heads:
        arrival, p = heapq.heappop(heads)
        wall_ms = max(wall_ms, arrival)
        records = partitions[p]
        offset, events = records[position[p]]
        position[p] += 1
        for other in stages.devices:
            if other != p:
                waiting = position[other] < len(partitions[other])
                caught_up = not waiting or _record_time(partitions[other][position[other]]) > wall_ms
                stages.tick(other, wall_ms, caught_up=caught_up)
        admitted = judge_record(gate, events)[0]
        try:
            stages.process(p, offset, admitted, wall_ms)
        except EventFailed as exc:  # the worker would dead-letter it; a replay cannot go on without it
            event = admitted[exc.index] if exc.index is not None else {}
            raise BacktestError(
                f"event {event.get('event_id', '?')!r} of tenant {event.get('tenant', '?')!r} could not be replayed "
                f"({type(exc.error).__name__}: {exc.error}); the worker dead-letters such an event "
                "(processing_error): leave it out of the file"
            ) from None
        if position[p] < len(records):
            heapq.heappush(heads, (_record_time(records[position[p]]), p))
        since_drain += len(events)
        if since_drain >= DRAIN_EVENTS:
            drain()
            since_drain = 0
    if wall_ms:
        for p in list(stages.devices):  # end of the data: decide every open cart
            stages.tick(p, wall_ms + SETTLE_MS, caught_up=True)
        stages.finish(wall_ms + SETTLE_MS)
    drain()


def run_rule_set(rule_set: RuleSet, partitions: dict[int, list[Record]], store: Path) -> Outcome:
    """Replay ``partitions`` under ``rule_set`` into a fresh scratch chdb store at ``store``."""
    from sinks.client import connect
    from sinks.migrate import migrate
    from sinks.sink import ClickHouseSink

    if store.exists():
        shutil.rmtree(store)
    ch = connect(f"chdb://{store}")
    try:
        migrate(ch)
        sink = ClickHouseSink(ch)

        def emit(outputs: list[Output]) -> None:
            for out in outputs:
                sink.add_events(out.rows)
                sink.add_triggers(out.triggers)
                for name, rows in out.facts.items():
                    sink.add_facts(name, rows)
            sink.flush()

        replay(rule_set.rules, partitions, emit)
        rows = ch.execute(
            "SELECT kind, arm, sum(triggers), sum(offers), sum(assists), sum(recovered_orders),"
            " sum(recovered_revenue), sum(est_discount_cost) FROM cx.offers_daily GROUP BY kind, arm"
        )
    finally:
        ch.close()
    got = {(r[0], r[1]): r[2:] for r in rows}
    zero = (0, 0, 0, 0, 0.0, 0.0)
    t = got.get(("cart_abandoned", "treatment"), zero)
    h = got.get(("cart_abandoned", "holdout"), zero)
    friction = sum(got.get(("checkout_friction", arm), zero)[0] for arm in ("treatment", "holdout"))
    return Outcome(
        name=rule_set.name,
        delay_ms=rule_set.rules.abandon_after_ms,
        triggers=int(t[0] + h[0] + friction),
        abandoned=int(t[0] + h[0]),
        friction=int(friction),
        holdout=int(h[0]),
        offers=int(t[1]),
        assists=int(t[2]),
        recovered_treatment=int(t[3]),
        recovered_holdout=int(h[3]),
        recovered_revenue=float(t[4] + h[4]),
        est_discount_cost=float(t[5]),
    )


def comparison_table(outcomes: list[Outcome], title: str) -> Table:
    """Metrics as rows, rule sets side by side as columns; the indented rows under
    ``cart_abandoned`` are about those triggers only. The title (a file name)
    and the rule sets' names (tier lists) are given text: ``Text``, never markup."""
    table = Table(title=Text(title))
    table.add_column("")
    for o in outcomes:
        table.add_column(Text(o.name), justify="right")
    lines = [
        ("triggers", lambda o: f"{o.triggers:,}"),
        ("  checkout_friction", lambda o: f"{o.friction:,}"),
        ("  cart_abandoned", lambda o: f"{o.abandoned:,}"),
        ("    holdout", lambda o: f"{o.holdout:,}"),
        ("    offers", lambda o: f"{o.offers:,}"),
        ("    assists", lambda o: f"{o.assists:,}"),
        ("    recovered (treatment)", lambda o: f"{o.recovered_treatment:,}"),
        ("    recovered (holdout)", lambda o: f"{o.recovered_holdout:,}"),
        ("    recovery rate treatment", lambda o: f"{o.rate_treatment:.3f}"),
        ("    recovery rate holdout", lambda o: f"{o.rate_holdout:.3f}"),
        ("    recovered revenue", lambda o: f"{o.recovered_revenue:,.2f}"),
        ("    est. discount cost", lambda o: f"{o.est_discount_cost:,.2f}"),
    ]
    for label, cell in lines:
        table.add_row(label, *(cell(o) for o in outcomes))
    return table


def _check_scratch(out: Path, settings: Settings) -> None:
    """``--out`` is no part of the pipeline's store and is a directory this process can write; created here."""
    configured = settings.resolved_clickhouse_url
    if configured.startswith("chdb://"):
        live = Path(configured[len("chdb://") :]).resolve()
        target = out.resolve()
        if target == live or live in target.parents or target in live.parents:
            raise BacktestError(f"--out {out} overlaps the pipeline's store {live}: choose a scratch directory")
    # Before the events load (minutes for a large file): a wrong --out is said at once.
    if out.exists() and not out.is_dir():
        raise BacktestError(f"--out {out}: not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BacktestError(f"--out {out}: cannot create the directory ({_reason(exc)})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise BacktestError(f"--out {out}: not writable")


def _check_export(export: Path) -> None:
    """``--export`` can be written: checked before the events load, without touching the file
    (it may be the ``--file`` being read)."""
    if export.is_dir():
        raise BacktestError(f"--export {export}: is a directory")
    parent = export.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise BacktestError(f"--export {export}: {parent} {what}")
    if not os.access(export if export.exists() else parent, os.W_OK):
        raise BacktestError(f"--export {export}: not writable")


def _write_export(export: Path, loaded: Loaded) -> None:
    try:
        with export.open("wb") as f:
            for ev in loaded.exported():
                f.write(orjson.dumps(ev) + b"\n")
    except OSError as exc:  # what the check could not foresee: a full disk, /proc, a fifo's reader gone
        raise BacktestError(f"--export {export}: cannot write ({_reason(exc)})") from None


def _reason(exc: OSError) -> str:
    """``No such file or directory``: the OS's words without the errno and the path the message repeats."""
    return exc.strerror or str(exc)


def _say(console: Console, message: str, style: str = "") -> None:
    """``message`` as written (file names, tier lists and rule names may hold ``[``: never markup),
    on one line however narrow the terminal."""
    console.print(Text(message, style=style), soft_wrap=True)


def _fail(message: str) -> None:
    """Why the backtest cannot go on: ``_say`` in red, on stderr as the other commands' errors."""
    _say(Console(stderr=True), message, "red")


def backtest(
    file: Path | None = typer.Option(None, "--file", help="JSONL: stored events or Segment messages, one per line"),
    demo: bool = typer.Option(False, "--demo", help="replay the demo storefront's generated traffic"),
    kafka: bool = typer.Option(False, "--kafka", help="read the events topic (CX_KAFKA_BOOTSTRAP)"),
    from_offset: int = typer.Option(0, min=0, help="--kafka: first offset of each partition"),
    to_offset: int | None = typer.Option(None, min=0, help="--kafka: end offset (exclusive); default: the end now"),
    partitions: int | None = typer.Option(
        None, min=1, max=MAX_PARTITIONS,
        help="--file and --demo: partitions for events that do not record theirs; default: CX_KAFKA_PARTITIONS",
    ),
    delay: list[str] = typer.Option(["30m", "1h", "4h"], help="abandonment delay of a rule set (repeat)"),
    tiers: list[str] = typer.Option([], help="discount tiers value=pct,... of a rule set (repeat); default: CX_OFFER_DISCOUNT_TIERS"),
    tenant: str = typer.Option("demo-shop", help="tenant of Segment messages (file and --demo)"),
    seed: int = typer.Option(7, help="--demo: generator seed"),
    visitors: int = typer.Option(3000, min=1, help="--demo: visitors"),
    days: float = typer.Option(7.0, min=0.001, help="--demo: days of traffic"),
    out: Path | None = typer.Option(None, help="scratch directory for the rule sets' stores (default: a temporary one)"),
    export: Path | None = typer.Option(None, help="also write the loaded events here as JSONL (replayable with --file)"),
) -> None:
    """Replay stored events with other rules into scratch stores and compare triggers, offers and cost."""
    console = Console()
    try:
        settings = Settings.load()
    except SettingsError as exc:
        _fail(str(exc))
        raise typer.Exit(2) from None
    try:
        if sum((file is not None, demo, kafka)) != 1:
            raise BacktestError("give exactly one input: --file PATH, --demo or --kafka")
        sets = rule_sets(Rules.from_settings(settings), delay, tiers)
        if out is not None:
            _check_scratch(out, settings)
        if export is not None:
            _check_export(export)
        if file is not None:
            loaded = load_file(file, tenant, settings, partitions)
            source = str(file)
        elif demo:
            loaded = load_demo(seed, visitors, days, tenant, settings, partitions)
            source = f"demo seed {seed}, {visitors:,} visitors, {days:g} day{'' if days == 1 else 's'}"
        else:
            loaded = load_kafka(settings, from_offset, to_offset)
            source = f"{settings.topic_events} offsets {from_offset}..{to_offset if to_offset is not None else 'end'}"
        if export is not None:
            _write_export(export, loaded)
    except BrokerUnavailable as exc:
        _fail(f"backtest: {exc}")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    except OSError as exc:  # --file: missing, a directory, unreadable
        where = exc.filename or file
        _fail(f"backtest: {where}: {_reason(exc)}" if where else f"backtest: {exc}")
        raise typer.Exit(2) from None
    except (BacktestError, ValueError) as exc:
        _fail(f"backtest: {exc}")
        raise typer.Exit(2) from None
    n_events = sum(len(events) for records in loaded.partitions.values() for _, events in records)
    _say(
        console,
        f"{n_events:,} events in {len(loaded.partitions)} partitions from {source}; {len(loaded.rejected):,} rejected",
    )
    for line in loaded.rejected[:5]:
        _say(console, f"  rejected {line}")
    outcomes = []
    try:
        scratch = out or Path(tempfile.mkdtemp(prefix="cx-backtest-"))
        for rs in sets:
            store = scratch / re.sub(r"[^A-Za-z0-9_.-]+", "_", rs.name)
            outcomes.append(run_rule_set(rs, loaded.partitions, store))
    except BacktestError as exc:  # an event the detection refused
        _fail(f"backtest: {exc}")
        raise typer.Exit(2) from None
    except OSError as exc:  # a scratch store could not be written: a full disk, no TMPDIR, a directory removed
        _fail(f"backtest: scratch store {exc.filename or out or tempfile.gettempdir()}: {_reason(exc)}")
        raise typer.Exit(1) from None
    console.print(comparison_table(outcomes, f"backtest: {source}"))
    _say(console, f"scratch stores: {scratch} (query one with CX_CLICKHOUSE_URL=chdb://{scratch}/<rule set>)")
