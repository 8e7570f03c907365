"""``cxstream backtest``: replay stored events under other rules and compare triggers, offers and cost.

The events come from a JSONL export (one event per line: a stored event
with ``event_time_ms``, or a raw Segment message, normalized here as the
collector would), from the events topic between offsets, or from the demo
storefront (``--demo``). For each rule set (by default the abandonment
delay at 30 min, 1 h and 4 h, each with the configured discount tiers) the
events run through ``PartitionProcessor`` in this process, in the given
order, and the rows go to a scratch embedded ClickHouse of their own
(``<out>/<rule set>``). Nothing is sent to Kafka and the configured
ClickHouse is never opened, so ``cx.triggers`` of the running pipeline is
untouched. The printed table reads each scratch store's ``cx.offers_daily``.

Replays are deterministic: the wall clock of each record is its latest
event time, and after the last event the watermark is moved past every
pending deadline, so each cart still open at the end is decided.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import orjson
import typer
from rich.console import Console
from rich.table import Table

from pipeline.detect import PartitionProcessor, Rules
from pipeline.settings import DAY_MS, HOUR_MS, MINUTE_MS, Settings, SettingsError, parse_tiers

__all__ = [
    "BacktestError",
    "Outcome",
    "RuleSet",
    "backtest",
    "load_file",
    "parse_duration_ms",
    "rule_sets",
    "run_rule_set",
]

RECORD_EVENTS = 500  # events per simulated Kafka record
FLUSH_RECORDS = 40  # records between two writes to the scratch store
SETTLE_MS = 400 * DAY_MS  # how far the final watermark moves: past any deadline
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS}


class BacktestError(ValueError):
    """Bad backtest input (a file line, a rule, a path); the message says which and where."""


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
    tier_options = [(t, parse_tiers(t)) for t in tiers] if tiers else [("", base.offer_discount_tiers)]
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


@dataclass
class Loaded:
    events: list[dict]
    rejected: list[str]  # "line N: reason" for each message that could not become an event


def load_file(path: Path, tenant: str, settings: Settings) -> Loaded:
    """Events of a JSONL export; a line that is not a JSON object stops with its line number."""
    to_event = None
    loaded = Loaded([], [])
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
                for key in ("event_id", "tenant", "type"):
                    if not isinstance(obj.get(key), str):
                        raise BacktestError(f"{path}:{n}: stored event without {key}")
                loaded.events.append(obj)
                continue
            to_event = to_event or _normalizer(tenant, settings)
            result = to_event(obj)
            if isinstance(result, str):
                loaded.rejected.append(f"line {n}: {result}")
            else:
                loaded.events.append(result)
    return loaded


def load_demo(seed: int, visitors: int, days: float, tenant: str, settings: Settings) -> Loaded:
    """The demo storefront's traffic over ``days`` from 2026-01-01 00:00 UTC (fixed, so runs compare)."""
    from pipeline.demo.storefront import generate

    start_ms = 1_767_225_600_000  # 2026-01-01 00:00 UTC
    traffic = generate(seed, visitors=visitors, start_ms=start_ms, span_ms=int(days * DAY_MS))
    to_event = _normalizer(tenant, settings)
    loaded = Loaded([], [])
    for i, msg in enumerate(traffic.messages):
        result = to_event(msg)
        if isinstance(result, str):
            loaded.rejected.append(f"message {i}: {result}")  # the demo's deliberate dead letters
        else:
            loaded.events.append(result)
    return loaded


def load_kafka(settings: Settings, from_offset: int, to_offset: int | None) -> Loaded:
    """Events of the events topic, every partition from ``from_offset`` to ``to_offset``
    (exclusive; None: the end of the partition now); records in offset order per partition,
    partitions one after the other."""
    from confluent_kafka import KafkaError, Consumer, TopicPartition

    from pipeline.records import decode_batch
    from pipeline.topics import kafka_config

    if not settings.kafka_bootstrap:
        raise BacktestError("CX_KAFKA_BOOTSTRAP: needed to read the events topic")
    # The end is where the fetch reports end of partition, not a ListOffsets
    # answer taken before: some Kafka-protocol brokers answer that one stale.
    consumer = Consumer({
        **kafka_config(settings, settings.kafka_bootstrap),
        "group.id": "cxstream-backtest", "enable.auto.commit": False, "enable.partition.eof": True,
    })  # fmt: skip
    loaded = Loaded([], [])
    try:
        topic = settings.topic_events
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise BacktestError(f"topic {topic!r} not found")
        for p in sorted(meta.partitions):
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
                    loaded.events.extend(decode_batch(msg.value()))
                next_offset = msg.offset() + 1
            consumer.unassign()
    finally:
        consumer.close()
    return loaded


# -- run -----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One rule set's totals over the replay, read back from its scratch ``cx.offers_daily``."""

    name: str
    delay_ms: int
    triggers: int  # decisions in offers_daily: cart_abandoned and checkout_friction
    abandoned: int  # of which cart_abandoned
    abandoned_recovered: int  # cart_abandoned triggers recovered by an order, both arms
    holdout: int
    offers: int
    assists: int
    recovered_treatment: int
    recovered_holdout: int
    recovered_revenue: float
    est_discount_cost: float

    @property
    def rate_treatment(self) -> float:
        return self.recovered_treatment / max(self.triggers - self.holdout, 1)

    @property
    def rate_holdout(self) -> float:
        return self.recovered_holdout / max(self.holdout, 1)


def _records(events: list[dict]) -> Iterator[list[dict]]:
    for i in range(0, len(events), RECORD_EVENTS):
        yield events[i : i + RECORD_EVENTS]


def run_rule_set(rule_set: RuleSet, events: Iterable[dict], store: Path) -> Outcome:
    """Replay ``events`` under ``rule_set`` into a fresh scratch chdb store at ``store``."""
    from sinks.client import connect
    from sinks.migrate import migrate
    from sinks.sink import ClickHouseSink

    if store.exists():
        shutil.rmtree(store)
    ch = connect(f"chdb://{store}")
    try:
        migrate(ch)
        sink = ClickHouseSink(ch)
        table: dict[str, bytes] = {}
        proc = PartitionProcessor(rule_set.rules, load_state=table.get)

        def drain() -> None:
            out = proc.drain()
            table.update(out.states)
            sink.add_events(out.rows)
            sink.add_triggers(out.triggers)
            for name, rows in out.facts.items():
                sink.add_facts(name, rows)
            sink.flush()

        wall_ms = 0
        for offset, record in enumerate(_records(list(events))):
            wall_ms = max(wall_ms, max(e["event_time_ms"] for e in record))
            proc.process(offset, record, wall_ms)
            if offset % FLUSH_RECORDS == FLUSH_RECORDS - 1:
                drain()
        if wall_ms:
            proc.tick(wall_ms + SETTLE_MS, caught_up=True)  # end of the data: decide every open cart
        drain()
        rows = ch.execute(
            "SELECT arm, sum(triggers), sum(offers), sum(assists), sum(recovered_orders),"
            " sum(recovered_revenue), sum(est_discount_cost) FROM cx.offers_daily GROUP BY arm"
        )
        ((abandoned,),) = ch.execute("SELECT count() FROM cx.triggers FINAL WHERE kind = 'cart_abandoned'")
        ((abandoned_recovered,),) = ch.execute("SELECT count() FROM cx.recoveries FINAL WHERE kind = 'cart_abandoned'")
    finally:
        ch.close()
    by_arm = {r[0]: r[1:] for r in rows}
    t = by_arm.get("treatment", (0, 0, 0, 0, 0.0, 0.0))
    h = by_arm.get("holdout", (0, 0, 0, 0, 0.0, 0.0))
    return Outcome(
        name=rule_set.name,
        delay_ms=rule_set.rules.abandon_after_ms,
        triggers=int(t[0] + h[0]),
        abandoned=int(abandoned),
        abandoned_recovered=int(abandoned_recovered),
        holdout=int(h[0]),
        offers=int(t[1]),
        assists=int(t[2]),
        recovered_treatment=int(t[3]),
        recovered_holdout=int(h[3]),
        recovered_revenue=float(t[4] + h[4]),
        est_discount_cost=float(t[5]),
    )


def comparison_table(outcomes: list[Outcome], title: str) -> Table:
    """Metrics as rows, rule sets side by side as columns."""
    table = Table(title=title)
    table.add_column("")
    for o in outcomes:
        table.add_column(o.name, justify="right")
    lines = [
        ("triggers", lambda o: f"{o.triggers:,}"),
        ("  cart_abandoned", lambda o: f"{o.abandoned:,}"),
        ("  holdout", lambda o: f"{o.holdout:,}"),
        ("offers", lambda o: f"{o.offers:,}"),
        ("assists", lambda o: f"{o.assists:,}"),
        ("recovered (treatment)", lambda o: f"{o.recovered_treatment:,}"),
        ("recovered (holdout)", lambda o: f"{o.recovered_holdout:,}"),
        ("recovery rate treatment", lambda o: f"{o.rate_treatment:.3f}"),
        ("recovery rate holdout", lambda o: f"{o.rate_holdout:.3f}"),
        ("recovered revenue", lambda o: f"{o.recovered_revenue:,.2f}"),
        ("est. discount cost", lambda o: f"{o.est_discount_cost:,.2f}"),
    ]
    for label, cell in lines:
        table.add_row(label, *(cell(o) for o in outcomes))
    return table


def _check_scratch(out: Path, settings: Settings) -> None:
    configured = settings.resolved_clickhouse_url
    if configured.startswith("chdb://"):
        live = Path(configured[len("chdb://") :]).resolve()
        target = out.resolve()
        if target == live or live in target.parents or target in live.parents:
            raise BacktestError(f"--out {out} overlaps the pipeline's store {live}: choose a scratch directory")


def backtest(
    file: Path | None = typer.Option(None, "--file", help="JSONL: stored events or Segment messages, one per line"),
    demo: bool = typer.Option(False, "--demo", help="replay the demo storefront's generated traffic"),
    kafka: bool = typer.Option(False, "--kafka", help="read the events topic (CX_KAFKA_BOOTSTRAP)"),
    from_offset: int = typer.Option(0, help="--kafka: first offset of each partition"),
    to_offset: int | None = typer.Option(None, help="--kafka: end offset (exclusive); default: the end now"),
    delay: list[str] = typer.Option(["30m", "1h", "4h"], help="abandonment delay of a rule set (repeat)"),
    tiers: list[str] = typer.Option([], help="discount tiers value=pct,... of a rule set (repeat); default: CX_OFFER_DISCOUNT_TIERS"),
    tenant: str = typer.Option("demo-shop", help="tenant of Segment messages (file and --demo)"),
    seed: int = typer.Option(7, help="--demo: generator seed"),
    visitors: int = typer.Option(3000, help="--demo: visitors"),
    days: float = typer.Option(7.0, help="--demo: days of traffic"),
    out: Path | None = typer.Option(None, help="scratch directory for the rule sets' stores (default: a temporary one)"),
    export: Path | None = typer.Option(None, help="also write the loaded events here as JSONL (replayable with --file)"),
) -> None:
    """Replay stored events with other rules into scratch stores and compare triggers, offers and cost."""
    console = Console()
    try:
        settings = Settings.load()
    except SettingsError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    try:
        if sum((file is not None, demo, kafka)) != 1:
            raise BacktestError("give exactly one input: --file PATH, --demo or --kafka")
        sets = rule_sets(Rules.from_settings(settings), delay, tiers)
        if out is not None:
            _check_scratch(out, settings)
        if file is not None:
            loaded = load_file(file, tenant, settings)
            source = str(file)
        elif demo:
            loaded = load_demo(seed, visitors, days, tenant, settings)
            source = f"demo seed {seed}, {visitors:,} visitors, {days:g} days"
        else:
            loaded = load_kafka(settings, from_offset, to_offset)
            source = f"{settings.topic_events} offsets {from_offset}..{to_offset if to_offset is not None else 'end'}"
    except (BacktestError, ValueError, OSError) as exc:
        console.print(f"[red]backtest: {exc}[/red]")
        raise typer.Exit(2) from None
    if export is not None:
        with export.open("wb") as f:
            for ev in loaded.events:
                f.write(orjson.dumps(ev) + b"\n")
    console.print(f"{len(loaded.events):,} events from {source}; {len(loaded.rejected):,} rejected")
    for line in loaded.rejected[:5]:
        console.print(f"  rejected {line}")
    scratch = out or Path(tempfile.mkdtemp(prefix="cx-backtest-"))
    outcomes = []
    for rs in sets:
        store = scratch / re.sub(r"[^A-Za-z0-9_.-]+", "_", rs.name)
        outcomes.append(run_rule_set(rs, loaded.events, store))
    console.print(comparison_table(outcomes, f"backtest: {source}"))
    console.print(f"scratch stores: {scratch} (query one with CX_CLICKHOUSE_URL=chdb://{scratch}/<rule set>)")
