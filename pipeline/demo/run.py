"""``cxstream demo``: the whole pipeline on the embedded defaults, fed by the demo storefront.

What it does, in order:

1. Generates a seeded day of a fictional shop's traffic (``generate``) that
   ended 45 minutes ago, so every cart's 30-minute deadline lies in the past
   once the stream is in and the result can be compared with the
   generator's own ledger.
2. Starts the pipeline (embedded broker unless ``CX_KAFKA_BOOTSTRAP`` is set,
   ClickHouse in a fresh data directory) exactly as ``cxstream up`` does.
3. Sends the day through the collector with the real Segment SDK, compressed
   into the wall time asked for (``seconds``: the day's event-time gaps
   shrunk to fit) or at the rate asked for (``rate``: messages per second),
   or both (then each message waits for the later of the two moments). One
   SDK client, so each visitor's events arrive in the order the storefront
   sent them.
4. Sends one page view per partition at the present time (see
   ``_clock_pages``), then waits until ClickHouse holds every valid event and every expected
   abandonment trigger, then prints ``kpi_daily``, ``deadletter_daily``, the
   measured counts next to the ledger's, and a few ``cart_abandoned``
   triggers read back from ``cx.triggers``.

The exit code is 0 only when sessions, carts, orders and at least one
``cart_abandoned`` trigger were found and the counts match the ledger.
"""

from __future__ import annotations

import shutil
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timezone
import time
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from rich.console import Console
from rich.table import Table

from pipeline.wire.partitioner import ids_per_partition
from pipeline.demo.send import send
from pipeline.demo.storefront import generate
from pipeline.supervisor.runner import Pipeline
from pipeline.settings import Settings
from pipeline.wire.topics import kafka_config
from pipeline.wire.triggers import decode_trigger

__all__ = ["run_demo", "sample_title", "verdict"]

DAY_MS = 86_400_000
SETTLED_AGO_MS = 45 * 60_000  # the day ends this long before now: every deadline is past
DEFAULT_SECONDS = 60.0  # the wall time the day is sent in when neither seconds nor rate is asked for
MARKER = ".cxstream-demo"
SAMPLE_TRIGGERS = 5  # cart_abandoned triggers the report shows


def _fresh_dir(data_dir: Path) -> None:
    """Empty ``data_dir`` for a new demo store; refuse a directory the demo did not create."""
    if data_dir.exists() and any(data_dir.iterdir()):
        if not (data_dir / MARKER).exists():
            raise SystemExit(f"{data_dir} is not empty and was not made by `cxstream demo`; choose another --data-dir")
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).write_text("a scratch store of `cxstream demo`; it is wiped by the next demo run\n")


def _scalar(pipeline: Pipeline, sql: str) -> int:
    _, rows = pipeline.query(sql)
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def sample_title(read_back: int) -> str:
    """The title of the table of triggers read back: how many, and how many of them it shows."""
    shown = f", {min(SAMPLE_TRIGGERS, read_back)} of them" if read_back else ""
    return f"cx.triggers: {read_back:,} cart_abandoned read back from Kafka{shown}"


def verdict(sessions: int, lines: list[tuple[str, int, int]], read_back: int, abandoned: int) -> bool:
    """Whether the demo is complete: sessions seen, every (name, measured, expected) line equal, every trigger read back.

    A day too small for a cart (``--visitors 1``) is complete when it
    matches its ledger, like any other.
    """
    return sessions > 0 and read_back == abandoned and all(measured == expected for _, measured, expected in lines)


def _read_triggers(settings: Settings, bootstrap: str, kind: str, expected: int, timeout_s: float = 30.0) -> list[dict]:
    """Triggers of ``kind`` on the triggers topic, read from the start until ``expected`` of them (or the timeout).

    Its partitions are assigned, not subscribed to: joining a consumer group
    costs a rebalance (seconds to tens of seconds), and a reader needs none.
    """
    consumer = Consumer(
        {
            **kafka_config(settings, bootstrap),
            "group.id": f"cxstream-demo-reader-{time.time_ns()}",  # required by the client; never joined
            "enable.auto.commit": False,
        }
    )
    out: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        topic = settings.topic_triggers
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        while len(out) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.5):
                if not msg.error():
                    trigger = decode_trigger(msg.value(), settings.trigger_format)
                    if trigger["kind"] == kind:
                        out.append(trigger)
    finally:
        consumer.close()
    return out


def _utc(value: int | datetime) -> str:
    # JSON triggers carry epoch milliseconds, Avro ones a datetime (timestamp-millis).
    if isinstance(value, int):
        value = datetime.fromtimestamp(value / 1000, tz=timezone.utc)
    return value.strftime("%m-%d %H:%M")


def _by_day(title: str, columns: list[str], rows: list[list]) -> Table:
    """A daily view turned on its side: one line per metric, one column per day."""
    table = Table(title=title, title_justify="left")
    table.add_column("")
    days = [str(row[columns.index("day")]) for row in rows]
    for day in days:
        table.add_column(day, justify="right")
    for i, name in enumerate(columns):
        if name in ("tenant", "day"):
            continue
        cells = [row[i] for row in rows]
        table.add_row(name, *(f"{v:,.3f}" if isinstance(v, float) else f"{v:,}" for v in cells))
    return table


def _table(title: str, columns: list[str], rows: list[list]) -> Table:
    table = Table(title=title, title_justify="left")
    for name in columns:
        table.add_column(name, justify="left" if name in ("tenant", "day", "reason") else "right")
    for row in rows:
        table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    return table


def run_demo(
    settings: Settings,
    *,
    seconds: float | None,
    visitors: int,
    seed: int,
    data_dir: Path,
    console: Console,
    rate: float | None = None,
    dashboard: bool = False,
    shown_url: Callable[[str], str] = str,
) -> int:
    """Run the demo; returns the exit code (module docstring). Neither ``seconds`` nor ``rate``: 60 s.

    With ``dashboard``, the pipeline also serves the analysts' dashboard and,
    once the report is printed, keeps running (ingesting, serving the
    dashboard at ``shown_url(url)``) until SIGINT, SIGTERM or SIGHUP.
    """
    if seconds is None and rate is None:
        seconds = DEFAULT_SECONDS
    if (seconds is not None and seconds <= 0) or (rate is not None and rate <= 0):
        raise ValueError("seconds and rate must be > 0")
    _fresh_dir(data_dir)
    write_key, tenant = next(iter(settings.write_key_map.items()))
    settings = settings.with_run_salt().model_copy(  # the demo's data is synthetic: a salt per run
        update={"data_dir": data_dir, "clickhouse_url": "", "collector_port": 0, "worker_web_port": 0}
    )
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - SETTLED_AGO_MS - DAY_MS
    with console.status(f"generating a day of traffic for {visitors:,} visitors (seed {seed})"):
        traffic = generate(seed, visitors=visitors, start_ms=start_ms, span_ms=DAY_MS)
    exp = traffic.expected
    console.print(
        f"storefront: {exp.messages:,} messages, {exp.carts:,} carts, {exp.orders:,} orders, "
        f"{exp.invalid:,} deliberately invalid, {exp.tickets:,} support tickets"
    )
    console.print("starting the pipeline")
    with Pipeline(settings, dashboard=dashboard) as pipeline:
        console.print(f"collector {pipeline.collector_url}  kafka {pipeline.bootstrap}  clickhouse {settings.resolved_clickhouse_url}")
        sent = _send(pipeline, traffic.messages, write_key, seconds, rate, console)
        if sent.failed:
            console.print(f"[red]{sent.failed} messages were not accepted:[/red] {sent.errors[:3]}")
            return 1
        clock = send(_clock_pages(tenant, settings.kafka_partitions), host=pipeline.collector_url, write_key=write_key)
        if clock.failed:
            console.print(f"[red]the closing page views were not accepted:[/red] {clock.errors[:3]}")
            return 1
        code = _report(pipeline, settings, tenant, exp, console, extra_events=clock.sent)
        if not dashboard:
            console.print("The same numbers as charts: bash infra/run.sh demo --dashboard (or cxstream demo --dashboard)")
            return code
        console.print(f"dashboard {shown_url(pipeline.dashboard_url)}", soft_wrap=True, highlight=False)
        console.print(f"tenant {tenant}: the day above, live; Ctrl-C stops the pipeline.")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(1.0):
            pipeline.supervise()
        return code


def _clock_pages(tenant: str, partitions: int) -> list[dict]:
    """One page view at the present time on each partition of ``cx.events``.

    The day was replayed 2,880 times faster than it happened, so when it is
    in, each partition's event time stands where its last event was, and a
    silent partition's watermark follows the wall clock only at real speed:
    the carts of the day's last half hour would take half an hour to fire. A
    live shop's traffic keeps every partition's event time at "now"; these
    page views do the same for the demo (they are counted in its numbers).
    """
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [
        {"type": "page", "anonymousId": anon, "name": "Home", "properties": {"path": "/"}, "timestamp": now}
        for anon in ids_per_partition(tenant, "demo-clock", partitions)
    ]


def _send(
    pipeline: Pipeline, messages: list[dict], write_key: str, seconds: float | None, rate: float | None, console: Console
):
    speedup = DAY_MS / 1000 / seconds if seconds is not None else None
    pace = " and ".join(
        ([f"in {seconds:g} s"] if seconds is not None else [])
        + ([f"at {'most ' if seconds is not None else ''}{rate:g} messages/s"] if rate is not None else [])
    )
    total = len(messages)
    with console.status(f"sending 24 h of traffic {pace} through the Segment SDK") as status:

        def progress(done: int) -> None:
            status.update(f"sent {done:,} / {total:,} messages through the Segment SDK")

        report = send(
            messages,
            host=pipeline.collector_url,
            write_key=write_key,
            rate_per_s=rate,
            speedup=speedup,
            on_progress=progress,
        )
    console.print(f"sent {report.sent:,} messages in {report.seconds:.1f} s ({report.sent / report.seconds:,.0f}/s)")
    return report


def _report(pipeline: Pipeline, settings: Settings, tenant: str, exp, console: Console, extra_events: int) -> int:
    valid = exp.messages - exp.invalid + extra_events
    t = f"tenant = '{tenant}'"
    counts = {
        "events": lambda: _scalar(pipeline, f"SELECT count() FROM cx.events FINAL WHERE {t}"),
        "abandoned": lambda: _scalar(
            pipeline, f"SELECT count() FROM cx.triggers FINAL WHERE {t} AND kind = 'cart_abandoned'"
        ),
        "deadletters": lambda: _scalar(pipeline, f"SELECT count() FROM cx.deadletters FINAL WHERE {t}"),
    }
    want = {"events": valid, "abandoned": exp.abandoned_carts, "deadletters": exp.invalid}
    got: dict[str, int] = {}
    with console.status("waiting for ClickHouse to hold every event and trigger") as status:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            pipeline.restart_exited_workers()
            got = {name: count() for name, count in counts.items()}
            status.update(f"stored {got['events']:,}/{valid:,} events, {got['abandoned']}/{exp.abandoned_carts} abandonment triggers")
            if got == want:
                break
            time.sleep(1.0)

    cols, rows = pipeline.query(f"SELECT * FROM cx.kpi_daily WHERE {t} ORDER BY day")
    console.print(_by_day(f"cx.kpi_daily for tenant {tenant}", cols, rows))
    cols, rows = pipeline.query(f"SELECT * FROM cx.deadletter_daily WHERE {t} ORDER BY day, reason")
    console.print(_table("cx.deadletter_daily", cols, rows))

    _, totals = pipeline.query(
        f"SELECT sum(carts), sum(orders), sum(sessions) FROM cx.kpi_daily WHERE {t}"
    )
    carts, orders, sessions = (int(v or 0) for v in totals[0])
    check = Table(title="measured in ClickHouse vs the storefront's ledger", title_justify="left")
    for name in ("", "measured", "expected"):
        check.add_column(name, justify="left" if not name else "right")
    lines = [
        ("events stored", got["events"], valid),
        ("dead letters", got["deadletters"], exp.invalid),
        ("carts", carts, exp.carts),
        ("orders", orders, exp.orders),
        ("carts abandoned (triggers)", got["abandoned"], exp.abandoned_carts),
    ]
    for name, measured, expected in lines:
        style = "" if measured == expected else "[red]"
        check.add_row(name, f"{style}{measured:,}", f"{expected:,}")
    console.print(check)

    triggers = _read_triggers(settings, pipeline.bootstrap, "cart_abandoned", got["abandoned"])
    sample = Table(title=sample_title(len(triggers)), title_justify="left")
    for name in ("event_time", "customer", "cart value", "action", "offer", "holdout"):
        sample.add_column(name)
    # Offers first: they show the decision; then anonymous and holdout carts.
    for tr in sorted(triggers, key=lambda tr: (tr["offer"] is None, tr["customer_id"] is None))[:SAMPLE_TRIGGERS]:
        offer = tr["offer"]
        sample.add_row(
            _utc(tr["event_time"]),
            tr["customer_id"] or f"anon {tr['anonymous_id'][:8]}",
            f"{tr['cart_value']:.2f} {tr['currency'] or ''}".strip(),
            tr["action"],
            f"{offer['code']} -{offer['discount_pct']}% by {offer['channel']}" if offer else "",
            str(tr["holdout"]),
        )
    console.print(sample)

    ok = verdict(sessions, lines, len(triggers), exp.abandoned_carts)
    console.print("[green]demo complete[/green]" if ok else "[red]demo finished with differences (see above)[/red]")
    return 0 if ok else 1
