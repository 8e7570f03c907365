"""``cxstream bench``: throughput, latency and footprint of the whole pipeline, with exact counts.

What one run does, in order (every part prints one section of the table):

1. **load**: the demo storefront's traffic (``pipeline.demo.storefront``) of
   about ``--events`` messages is normalized and packed by the collector's
   own code (``ingest`` + ``pack_events``: one EventBatch record per
   partition per request of ``REQUEST_MESSAGES`` messages, as the collector
   writes them for an SDK's batch) and produced straight to Kafka.
2. **raw**: a bare confluent-kafka consumer reads the same topic from the
   start and decodes every record with orjson; nothing else. Its events/s is
   the ceiling the worker is compared with.
3. **pipeline** with 1, then 2 workers (``--workers``), each time on the same
   topic with a fresh consumer group and an empty ``cx`` database on the
   ClickHouse server: timed from the first record a worker took to the moment
   every event, trigger and dead letter is visible in ClickHouse (``FINAL``
   counts equal the generator's ledger). Peak RSS of each worker, its insert
   sizes, and the visitor-state bytes read back from the table's changelog.
4. **live**: collector + worker at fixed rates (``--live-rate``) over HTTP;
   event time is the wall clock at sending, so trigger latency is wall time
   from the trigger's ``event_time`` (the cart's deadline for
   ``cart_abandoned``, the event for friction kinds) to its arrival on
   ``cx.triggers``.
5. **collector**: concurrent clients post pre-built batches as fast as the
   collector acknowledges them.

Sections 4 and 5 are in ``pipeline.tools.bench_live``. Exact counts are checked,
not only printed: a run whose ClickHouse counts do not match the ledger
raises ``BenchError`` (when the counts stop moving, or at the timeout).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from pipeline.supervisor.ports import free_port, stop_process, wait_for_port
from pipeline.tools.bench_common import (
    CLOCK_TENANT,
    RAW_PASSES,
    RECEIVED_AT_MS,
    REQUEST_MESSAGES,
    STALL_S,
    TENANT,
    WRITE_KEY,
    BenchError,
    BenchOptions,
    child_env,
    cpu_seconds,
    iso_ms,
    make_traffic,
    spawn,
    wall_ms,
    worker_json,
)
from pipeline.tools.bench_targets import DEFAULT_ALLOWED_LATENESS_MS, Verdict, judge
from pipeline.tools.bench_live import CUSTOMER_STAGES, STAGES, run_collector, run_live
from pipeline.collector.ingest import ingest
from pipeline.collector.normalize import NormalizeRules
from pipeline.collector.packing import Record, dead_letter_records, pack_events
from pipeline.demo.storefront import Expected
from pipeline.wire.records import decode_batch
from pipeline.settings import Settings
from pipeline.wire.topics import ensure_topics, kafka_config
from pipeline.webtoken import new_token
from sinks.client import ClickHouse, connect
from sinks.migrate import migrate

__all__ = [
    "BenchError",
    "BenchOptions",
    "BenchResult",
    "clock_messages",
    "collector_records",
    "report_rows",
    "run_bench",
]



@dataclass
class Counts:
    events_in: int = 0  # messages generated
    events_stored: int = 0  # rows in cx.events (FINAL)
    triggers: dict[str, int] = field(default_factory=dict)  # by kind, in cx.triggers (FINAL)
    dead_letters: int = 0  # rows in cx.deadletters (FINAL)


@dataclass
class PipelineRun:
    workers: int
    events: int  # events the workers consumed (valid events; dead letters apart)
    seconds: float
    events_per_s: float
    events_per_s_per_worker: float
    ratio_to_raw: float
    peak_rss_mb: list[float]
    event_inserts: int
    rows_per_event_insert: float
    counts: Counts
    # Summed over the workers: batches taken, and seconds per step of a batch.
    batches: int = 0
    steps_s: dict = field(default_factory=dict)
    # User + system CPU of the worker processes (start-up included) per event consumed.
    cpu_us_per_event: float = 0.0
    # The same from the first record a worker took on (start-up, group join and table recovery left out;
    # read within one 0.2 s poll of that record).
    cpu_us_per_event_processing: float = 0.0


@dataclass
class BenchResult:
    machine: dict
    options: dict
    expected: dict
    load_seconds: float = 0.0
    records: int = 0
    raw_events_per_s: float = 0.0
    runs: list[PipelineRun] = field(default_factory=list)
    state_bytes: dict = field(default_factory=dict)
    live: list[dict] = field(default_factory=list)  # one run per live rate
    collector: dict = field(default_factory=dict)
    # The worker's pure path alone (``pure_path``), measured before and after the worker runs.
    pure_path: list[dict] = field(default_factory=list)
    # The run's allowed lateness: the limit of the cart_abandoned latency target follows it.
    allowed_lateness_ms: int = DEFAULT_ALLOWED_LATENESS_MS

    def pure_path_us_per_event(self) -> float:
        """The pure path's CPU per event in this run: the mean of its measurements (0 when not measured)."""
        if not self.pure_path:
            return 0.0
        return round(sum(p["us_per_event"] for p in self.pure_path) / len(self.pure_path), 2)

    def cpu_over_pure_path(self, run: PipelineRun) -> float:
        """The run's CPU per event from the first record on, over the pure path's in this run (0: not measured)."""
        pure = self.pure_path_us_per_event()
        return round(run.cpu_us_per_event_processing / pure, 2) if pure else 0.0

    def targets(self) -> list[Verdict]:
        """The performance targets judged on this run's figures (``pipeline.tools.bench_targets``)."""
        return self._figures_and_targets()[1]

    def figures(self) -> dict[str, float | int]:
        """Every headline figure under a stable flat name, for comparing one run with the previous one.

        ``workers_<n>_*`` per worker-count run, ``live_<rate>_<kind>_*`` per
        live rate and trigger kind (milliseconds), the rest once per run;
        ``targets_judged`` and ``targets_met`` count the targets.
        """
        return self._figures_and_targets()[0]

    def _figures_and_targets(self) -> tuple[dict[str, float | int], list[Verdict]]:
        measured = self._measured()
        verdicts = judge(measured, self.allowed_lateness_ms, self.options)
        judged = [v for v in verdicts if v.met is not None]
        return measured | {"targets_judged": len(judged), "targets_met": sum(v.met for v in judged)}, verdicts

    def _measured(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {"raw_consumer_events_per_s": self.raw_events_per_s}
        for when, measured in zip(("before", "after"), self.pure_path):
            out[f"pure_path_{when}_us_per_event"] = measured["us_per_event"]
        for run in self.runs:
            at = f"workers_{run.workers}"
            out |= {
                f"{at}_events_per_s": run.events_per_s,
                f"{at}_ratio_to_raw": round(run.ratio_to_raw, 4),
                f"{at}_cpu_us_per_event": run.cpu_us_per_event,
                f"{at}_cpu_us_per_event_processing": run.cpu_us_per_event_processing,
                f"{at}_cpu_over_pure_path": self.cpu_over_pure_path(run),
                f"{at}_peak_rss_mb": max(run.peak_rss_mb, default=0.0),
                f"{at}_events_stored": run.counts.events_stored,
                f"{at}_dead_letters": run.counts.dead_letters,
            }
        if len(self.runs) >= 2 and self.runs[0].events_per_s:
            out["scaling_last_over_first"] = round(self.runs[-1].events_per_s / self.runs[0].events_per_s, 3)
        if self.state_bytes:
            out |= {f"state_per_visitor_{k}": self.state_bytes[k] for k in ("mean_bytes", "p99_bytes", "max_bytes")}
        for lv in self.live:
            out[f"live_{lv['requested_rate']}_achieved_events_per_s"] = lv["achieved_rate"]
            for kind, lat in lv["latency"].items():
                for key in ("p50_ms", "p99_ms", "max_ms", "count"):
                    if key in lat:
                        out[f"live_{lv['requested_rate']}_{kind}_{key}"] = lat[key]
            for prefix, key in (("stage", "stages"), ("customer_stage", "customer_stages")):
                for stage, lat in lv.get(key, {}).items():
                    if stage != "count":
                        out[f"live_{lv['requested_rate']}_{prefix}_{stage}_p50_ms"] = lat["p50_ms"]
                        out[f"live_{lv['requested_rate']}_{prefix}_{stage}_p90_ms"] = lat["p90_ms"]
        if self.collector:
            c = self.collector
            out["collector_events_per_s"] = c["events_per_s"]
            for key in ("processes", "events_per_s_per_process", "cpu_us_per_event"):
                if key in c:
                    out[f"collector_{key}"] = c[key]
        return out

    def to_json(self) -> bytes:
        figures, verdicts = self._figures_and_targets()
        targets = [v.as_dict() for v in verdicts]
        return orjson.dumps({"figures": figures, "targets": targets, **asdict(self)}, option=orjson.OPT_INDENT_2)


# -- traffic -------------------------------------------------------------------


def collector_records(
    messages: list[dict], settings: Settings, *, partitions: int, received_at_ms: int, tenant: str = TENANT
) -> tuple[list[Record], int, int]:
    """The Kafka records the collector writes for ``messages`` sent in SDK-sized requests.

    Returns (records, events, dead letters). Uses the collector's own
    ``ingest`` and ``pack_events``, so the records are byte-for-byte what it
    produces for the same requests received at ``received_at_ms``.
    """
    rules = NormalizeRules.from_settings(settings)
    records: list[Record] = []
    events = dead = 0
    for i in range(0, len(messages), REQUEST_MESSAGES):
        got = ingest(
            messages[i : i + REQUEST_MESSAGES],
            tenant=tenant,
            received_at_ms=received_at_ms,
            batch_sent_at=None,
            rules=rules,
        )
        if got.oversize:
            raise BenchError(f"{len(got.oversize)} generated messages are over the event size limit")
        records += pack_events(got.events, topic=settings.topic_events, partitions=partitions)
        records += dead_letter_records(got.dead_letters, topic=settings.topic_deadletter)
        events += len(got.events)
        dead += len(got.dead_letters)
    return records, events, dead


def clock_messages(settle_ms: int, settings: Settings, partitions: int) -> list[dict]:
    """One ``page`` message per partition, timed after every cart deadline of the traffic.

    The traffic lies in the past, and an idle partition's watermark follows
    the wall clock only from its newest event on (``Watermark``): the carts
    left in the last 30 minutes of the traffic would wait that long in wall
    time. A later event on every partition carries each watermark past
    ``settle_ms``, as live traffic would, so every deadline fires at once.
    """
    from pipeline.wire.partitioner import partition_for_key
    from pipeline.wire.records import visitor_key

    t_ms = settle_ms + settings.allowed_lateness_ms + 1
    by_partition: dict[int, dict] = {}
    i = 0
    while len(by_partition) < partitions:
        anon = f"clock-{i}"
        p = partition_for_key(visitor_key(CLOCK_TENANT, anon, None).encode(), partitions)
        by_partition.setdefault(
            p,
            {"type": "page", "anonymousId": anon, "messageId": f"clock-{p}", "timestamp": iso_ms(t_ms),
             "properties": {"path": "/"}},
        )
        i += 1
    return [by_partition[p] for p in sorted(by_partition)]


def produce(records: list[Record], settings: Settings, bootstrap: str) -> None:
    """Produce every record and wait for Kafka's acknowledgement; raise on any failure."""
    producer = Producer(
        {**kafka_config(settings, bootstrap), "acks": "all", "linger.ms": 20, "queue.buffering.max.kbytes": 262144}
    )
    failures: list[str] = []

    def on_delivery(err, _msg) -> None:  # noqa: ANN001 - librdkafka callback
        if err is not None:
            failures.append(err.str())

    for topic, partition, key, value in records:
        while True:
            try:
                if partition is None:
                    producer.produce(topic, value, key, on_delivery=on_delivery)
                else:
                    producer.produce(topic, value, key, partition=partition, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120) or failures:
        raise BenchError(f"loading Kafka failed: {failures[:3] or 'records left unacknowledged'}")


# -- raw consumer --------------------------------------------------------------


def raw_consume(settings: Settings, bootstrap: str, topic: str, expected: int) -> tuple[int, float]:
    """(events, seconds) for a bare consumer reading ``topic`` from the start and decoding each record.

    Reads until ``expected`` events or until nothing arrives for 10 s: the
    end offsets the embedded broker reports stop at the last batch's first
    record, so they cannot say when the topic is read.
    """
    consumer = Consumer(
        {
            **kafka_config(settings, bootstrap),
            "group.id": f"{settings.worker_group}-raw",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 * 1024 * 1024,
        }
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        events = 0
        started = None  # timed from the first record, as the workers are
        finished = None
        idle_since = time.monotonic()
        while events < expected and time.monotonic() - idle_since < 10.0:
            msgs = consumer.consume(num_messages=1000, timeout=1.0)
            for msg in msgs:
                if msg.error():
                    continue
                if started is None:
                    started = time.perf_counter()
                events += len(decode_batch(msg.value()))
            if msgs:
                idle_since = time.monotonic()
                finished = time.perf_counter()
        return events, (finished - started) if started is not None and finished is not None else 0.0
    finally:
        consumer.close()


# -- processes -----------------------------------------------------------------


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (``VmHWM``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# The worker's /cx/stats timers (``<step>_s``), in the order of a batch; "emit"
# holds the row building and the ClickHouse insert and trigger send, which overlap.
STEPS = ("process", "ids", "emit", "clickhouse", "triggers", "changelog")


def _took_a_record(port: int, token: str) -> bool:
    """Whether the worker on ``port`` has taken a record (False while it cannot answer yet)."""
    try:
        return bool(worker_json(port, token).get("first_record_wall_ms"))
    except (OSError, ValueError):
        return False


# -- ClickHouse counts ---------------------------------------------------------


def count_rows(ch: ClickHouse, final: bool) -> Counts:
    fin = " FINAL" if final else ""
    params = {"tenant": TENANT}
    events = ch.execute(f"SELECT count() FROM cx.events{fin} WHERE tenant = %(tenant)s", params)[0][0]
    dead = ch.execute(f"SELECT count() FROM cx.deadletters{fin} WHERE tenant = %(tenant)s", params)[0][0]
    kinds = ch.execute(f"SELECT kind, count() FROM cx.triggers{fin} WHERE tenant = %(tenant)s GROUP BY kind", params)
    return Counts(events_stored=events, dead_letters=dead, triggers={k: n for k, n in sorted(kinds)})


def _complete(counts: Counts, events: int, dead: int, expected: Expected) -> bool:
    return (
        counts.events_stored >= events
        and counts.dead_letters >= dead
        and counts.triggers.get("cart_abandoned", 0) >= expected.abandoned_carts
    )


def _matches(counts: Counts, events: int, dead: int, expected: Expected) -> bool:
    return (
        counts.events_stored == events
        and counts.dead_letters == dead
        and counts.triggers.get("cart_abandoned", 0) == expected.abandoned_carts
    )


# -- one pipeline run ----------------------------------------------------------


def run_workers(
    n: int,
    *,
    settings: Settings,
    bootstrap: str,
    ch: ClickHouse,
    events: int,
    consumed: int,
    dead: int,
    expected: Expected,
    raw_rate: float,
    log_dir: Path,
    timeout_s: float,
) -> tuple[PipelineRun, str]:
    """Run ``n`` workers on the loaded topic until ClickHouse holds everything; (result, worker group).

    ``events``: the shop's events to find stored; ``consumed``: every event
    on the topic (with the clock events), the numerator of the rate.
    """
    group = f"{settings.worker_group}-w{n}"
    ch.execute("DROP DATABASE IF EXISTS cx")
    migrate(ch)
    procs: list[tuple[subprocess.Popen, int]] = []
    tokens: dict[int, str] = {}  # web port -> the token of that worker's data dir
    try:
        for i in range(n):
            port = free_port()
            data_dir = log_dir / f"w{n}-{i}"
            tokens[port] = new_token(data_dir)
            env = child_env(settings, bootstrap, worker_group=group, worker_web_port=str(port), data_dir=str(data_dir))
            procs.append((spawn("worker", env, log_dir / f"worker-{n}-{i}.log"), port))
        for proc, port in procs:
            wait_for_port(port, timeout_s=120, alive=lambda p=proc: p.poll() is None)
        deadline = time.monotonic() + timeout_s
        counts = Counts()
        seen, changed = None, time.monotonic()
        cpu_at_first: float | None = None  # the workers' CPU seconds when one of them had taken a record
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p, _ in procs):
                raise BenchError(f"a worker exited; see {log_dir}")
            if cpu_at_first is None:
                cpu_now = sum(cpu_seconds(p.pid) for p, _ in procs)
                if any(_took_a_record(port, tokens[port]) for _, port in procs):
                    cpu_at_first = cpu_now
            counts = count_rows(ch, final=False)
            now_counts = (counts.events_stored, counts.dead_letters, tuple(counts.triggers.items()))
            if now_counts != seen:
                seen, changed = now_counts, time.monotonic()
            elif time.monotonic() - changed > STALL_S:
                raise BenchError(
                    f"{n} worker(s): ClickHouse counts stopped at {counts} for {STALL_S:.0f}s; the ledger expects "
                    f"{events} events, {dead} dead letters, {expected.abandoned_carts} cart_abandoned"
                )
            if _complete(counts, events, dead, expected):
                done_ms = wall_ms()
                counts = count_rows(ch, final=True)
                if _matches(counts, events, dead, expected):
                    break
            time.sleep(0.2)
        else:
            raise BenchError(f"{n} worker(s): ClickHouse counts {counts} never matched the ledger in {timeout_s:.0f}s")
        stats = [worker_json(port, tokens[port]) for _, port in procs]
        # Timed from the first record any worker took (start-up and group join
        # excluded) to the poll that saw every row; polls are 0.2 s apart.
        firsts = [s["first_record_wall_ms"] for s in stats if s.get("first_record_wall_ms")]
        seconds = (done_ms - min(firsts)) / 1000
        rss = [round(peak_rss_mb(p.pid), 1) for p, _ in procs]
        cpu = sum(cpu_seconds(p.pid) for p, _ in procs)
    finally:
        for proc, _ in procs:
            stop_process(proc)
    inserts = sum(s.get("event_inserts", 0) for s in stats)
    rows = sum(s.get("event_rows", 0) for s in stats)
    rate = consumed / seconds
    counts.events_in = expected.messages
    steps = {k: round(sum(s.get(f"{k}_s", 0.0) for s in stats), 2) for k in STEPS}
    return (
        PipelineRun(
            workers=n,
            events=consumed,
            seconds=round(seconds, 2),
            events_per_s=round(rate),
            events_per_s_per_worker=round(rate / n),
            ratio_to_raw=round(rate / raw_rate, 3) if raw_rate else 0.0,
            peak_rss_mb=rss,
            event_inserts=inserts,
            rows_per_event_insert=round(rows / inserts) if inserts else 0.0,
            counts=counts,
            batches=sum(s.get("batches", 0) for s in stats),
            steps_s=steps,
            cpu_us_per_event=round(cpu / consumed * 1e6, 1) if consumed else 0.0,
            cpu_us_per_event_processing=round((cpu - (cpu_at_first or 0.0)) / consumed * 1e6, 1) if consumed else 0.0,
        ),
        group,
    )


def state_sizes(settings: Settings, bootstrap: str, group: str) -> dict:
    """Latest state bytes per visitor, read back from the worker table's changelog topic."""
    from pipeline.runtime.faust_adapter import STATE_TABLE

    topic = f"{group}-{STATE_TABLE}-changelog"
    consumer = Consumer({**kafka_config(settings, bootstrap), "group.id": f"{group}-sizes", "enable.auto.commit": False})
    latest: dict[bytes, int] = {}
    try:
        md = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            return {}
        parts = list(md.partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        remaining = {p for p, end in ends.items() if end > 0}
        while remaining:
            for msg in consumer.consume(num_messages=1000, timeout=1.0):
                if msg.error():
                    continue
                value = msg.value()
                latest[msg.key()] = len(value) if value else 0
                if msg.offset() + 1 >= ends[msg.partition()]:
                    remaining.discard(msg.partition())
    finally:
        consumer.close()
    sizes = sorted(latest.values())
    if not sizes:
        return {}
    return {
        "visitors": len(sizes),
        "mean_bytes": round(statistics.fmean(sizes)),
        "p99_bytes": sizes[min(len(sizes) - 1, int(len(sizes) * 0.99))],
        "max_bytes": sizes[-1],
    }


# -- time ------------------------------------------------------------------------


# -- the whole bench -----------------------------------------------------------


def machine() -> dict:
    import platform

    from pipeline import native

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_at_start": [round(x, 2) for x in load],
        "native": native.summary(),
    }


def _remove_unless_failed(work_dir: Path, failed: Callable[[], bool]) -> None:
    if failed():
        print(f"the run's logs are kept in {work_dir}", file=sys.stderr)
    else:
        shutil.rmtree(work_dir, ignore_errors=True)


def run_bench(
    opts: BenchOptions,
    settings: Settings,
    *,
    bootstrap: str = "",
    clickhouse_url: str = "",
    work_dir: Path | None = None,
    progress=print,  # noqa: ANN001 - any callable taking a line
) -> BenchResult:
    """Run every section; start an embedded broker / ClickHouse server when none is given."""

    with ExitStack() as stack:
        if work_dir is None:
            # Removed after a run that succeeds; a failed run's error names it, so it stays.
            work_dir = Path(tempfile.mkdtemp(prefix="cx-bench-"))
            stack.callback(_remove_unless_failed, work_dir, lambda: failed)
        failed = True
        work_dir.mkdir(parents=True, exist_ok=True)
        run_id = f"bench-{os.getpid()}-{int(time.time())}"
        settings = settings.with_run_salt().model_copy(
            update={
                "topic_events": f"{run_id}.events",
                "topic_triggers": f"{run_id}.triggers",
                "topic_deadletter": f"{run_id}.deadletter",
                "worker_group": run_id,
                "kafka_partitions": opts.partitions,
                "write_keys": f"{WRITE_KEY}={TENANT}",
                "data_dir": work_dir,
            }
        )
        if not bootstrap:
            from pipeline.supervisor.broker import EmbeddedBroker

            bootstrap = stack.enter_context(EmbeddedBroker(log_path=work_dir / "broker.log")).bootstrap
        if not clickhouse_url:
            from infra.clickhouse_server import ClickHouseServer

            try:
                clickhouse_url = stack.enter_context(ClickHouseServer()).url
            except (FileNotFoundError, RuntimeError, TimeoutError) as exc:
                raise BenchError(
                    f"the bench needs a ClickHouse server for its workers: {exc} "
                    "(or pass --clickhouse-url clickhouse://user:password@host:9000/cx, a scratch server)"
                ) from None
        settings = settings.model_copy(update={"kafka_bootstrap": bootstrap, "clickhouse_url": clickhouse_url})
        result = BenchResult(
            machine=machine(), options=asdict(opts), expected={}, allowed_lateness_ms=settings.allowed_lateness_ms
        )

        progress(f"generating about {opts.events:,} events")
        now = RECEIVED_AT_MS
        messages, expected = make_traffic(opts.events, opts.seed)
        result.expected = asdict(expected)
        partitions = ensure_topics(settings, bootstrap)[settings.topic_events]
        records, events, dead = collector_records(messages, settings, partitions=partitions, received_at_ms=now)
        if dead != expected.invalid or events + dead != expected.messages:
            raise BenchError(f"collector code kept {events} events and {dead} dead letters; ledger: {expected}")
        del messages
        if expected.settle_ms is not None:
            clock, n_clock, _ = collector_records(
                clock_messages(expected.settle_ms, settings, partitions), settings,
                partitions=partitions, received_at_ms=now, tenant=CLOCK_TENANT,
            )
            records += clock
        else:
            n_clock = 0
        progress(f"loading {len(records):,} records ({events:,} events, {dead:,} dead letters) into Kafka")
        started = time.perf_counter()
        produce(records, settings, bootstrap)
        result.load_seconds = round(time.perf_counter() - started, 2)
        result.records = len(records)
        del records

        # Best of RAW_PASSES: one pass over a small topic is short and easily disturbed.
        for _ in range(RAW_PASSES):
            raw_events, raw_s = raw_consume(settings, bootstrap, settings.topic_events, events + n_clock)
            if raw_events != events + n_clock:
                raise BenchError(f"raw consumer read {raw_events} events, {events + n_clock} were loaded")
            rate = round(raw_events / raw_s) if raw_s else 0
            result.raw_events_per_s = max(result.raw_events_per_s, rate)
        progress(f"raw consumer: {result.raw_events_per_s:,} events/s")

        if opts.cpu_events > 0:
            progress(f"the worker's pure path alone: {opts.cpu_events:,} events")
            result.pure_path.append(pure_path(opts.cpu_events, opts.seed))
        ch = stack.enter_context(closing(connect(clickhouse_url)))
        for n in opts.workers:
            progress(f"pipeline with {n} worker(s)")
            run, group = run_workers(
                n,
                settings=settings,
                bootstrap=bootstrap,
                ch=ch,
                events=events,
                consumed=events + n_clock,
                dead=dead,
                expected=expected,
                raw_rate=result.raw_events_per_s,
                log_dir=work_dir,
                timeout_s=opts.timeout_s,
            )
            result.runs.append(run)
            progress(f"  {run.events_per_s:,} events/s ({run.ratio_to_raw:.1%} of raw)")
            if n == opts.workers[0]:
                result.state_bytes = state_sizes(settings, bootstrap, group)
        if opts.cpu_events > 0 and opts.workers:
            result.pure_path.append(pure_path(opts.cpu_events, opts.seed))
            progress(f"pure path: {' and '.join(str(p['us_per_event']) for p in result.pure_path)} us/event")
        for rate in opts.live_rates if opts.live_seconds > 0 else ():
            progress(f"live: {rate:,} events/s for {opts.live_seconds:.0f}s through the collector")
            result.live.append(run_live(rate, opts, settings, bootstrap, clickhouse_url, work_dir))
        if opts.collector_events > 0:
            progress(f"collector: {opts.collector_events:,} events from {opts.clients} clients")
            result.collector = run_collector(opts, settings, bootstrap, work_dir)
        failed = False
        return result


# -- the machine's speed ---------------------------------------------------------


def pure_path(events: int, seed: int) -> dict:
    """``cxstream bench-cpu`` on ``events`` events, in a process of its own: the worker's pure path alone.

    Its CPU per event (every stage: decode, id check, detection, states,
    rows, trigger records, dead letters; without the insert encoding, which
    differs per backend) is this machine's speed at the time, measured
    alone on one core; the workers' CPU per event is also given as a
    multiple of it. The digest is ``bench-cpu``'s own.
    """
    command = [sys.executable, "-m", "pipeline.tools.bench_cpu", "--events", str(events), "--seed", str(seed),
               "--no-insert", "--json"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, timeout=600)
    if done.returncode != 0:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"the pure path's measurement (bench-cpu) failed: {last}")
    measured = orjson.loads(done.stdout)
    return {
        "events": measured["events"],
        "us_per_event": round(sum(measured["cpu_us_per_event"].values()), 2),
        "stages_us_per_event": {k: round(v, 2) for k, v in measured["cpu_us_per_event"].items()},
        "digest": measured["digest"],
    }


# -- report --------------------------------------------------------------------


def report_rows(result: BenchResult) -> list[tuple[str, str]]:
    """(metric, value) lines of the printed table."""
    e = result.expected
    rows: list[tuple[str, str]] = [
        ("events in (generated)", f"{e['messages']:,}"),
        ("expected stored / dead letters / cart_abandoned", f"{e['messages'] - e['invalid']:,} / {e['invalid']:,} / {e['abandoned_carts']:,}"),
        ("Kafka records (EventBatch + dead letters)", f"{result.records:,}"),
        ("raw confluent-kafka + orjson decode", f"{result.raw_events_per_s:,} events/s"),
        ("load average at start / compiled hot path", f"{' '.join(map(str, result.machine['load_avg_at_start']))} / {result.machine['native']}"),
    ]
    if result.pure_path:
        first = result.pure_path[0]
        rows.append((
            "pure path alone (bench-cpu), CPU per event",
            " and ".join(f"{p['us_per_event']} us" for p in result.pure_path)
            + f" ({first['events']:,} events; before and after the workers ran)",
        ))  # fmt: skip
    for run in result.runs:
        c = run.counts
        triggers = ", ".join(f"{k} {v:,}" for k, v in c.triggers.items())
        rows += [
            (f"{run.workers} worker(s): stored / dead letters", f"{c.events_stored:,} / {c.dead_letters:,}"),
            (f"{run.workers} worker(s): triggers", triggers),
            (
                f"{run.workers} worker(s): end to end into ClickHouse",
                f"{run.events_per_s:,} events/s in {run.seconds}s ({run.events_per_s_per_worker:,}/worker)",
            ),
            (f"{run.workers} worker(s): ratio to raw consumer", f"{run.ratio_to_raw:.1%}"),
            (f"{run.workers} worker(s): peak RSS", " / ".join(f"{r:.0f} MB" for r in run.peak_rss_mb)),
            (
                f"{run.workers} worker(s): cx.events inserts",
                f"{run.event_inserts:,} of {run.rows_per_event_insert:,.0f} rows on average",
            ),
            (f"{run.workers} worker(s): worker CPU per event", f"{run.cpu_us_per_event:,.1f} us (user + system, start-up included); "
                                                              f"{run.cpu_us_per_event_processing:,.1f} us from the first record on"
                                                              + (f", {multiple:.2f}x the pure path alone"
                                                                 if (multiple := result.cpu_over_pure_path(run)) else "")),
            (
                f"{run.workers} worker(s): seconds per step",
                f"{run.batches:,} batches: " + ", ".join(f"{k} {v:,.1f}" for k, v in run.steps_s.items()),
            ),
        ]
    if len(result.runs) >= 2 and result.runs[0].events_per_s:
        rows.append(("scaling (last / first run)", f"{result.runs[-1].events_per_s / result.runs[0].events_per_s:.2f}x"))
    if result.state_bytes:
        s = result.state_bytes
        rows.append(("state per visitor (session)", f"mean {s['mean_bytes']} B, p99 {s['p99_bytes']} B, max {s['max_bytes']} B over {s['visitors']:,}"))
    for lv in result.live:
        at = f"live {lv['requested_rate']:,}/s"
        rows.append((f"{at}: rate achieved", f"{lv['achieved_rate']:,} events/s ({lv['sent']:,} sent)"))
        for kind, lat in lv["latency"].items():
            what = "deadline -> trigger" if kind.startswith("cart_abandoned") else "event -> trigger"
            value = lat.get("note") or f"p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms (n={lat['count']:,})"
            rows.append((f"{at}: {kind} {what}", value))
        for key, names, what in (("stages", STAGES, "a trigger's"), ("customer_stages", CUSTOMER_STAGES, "a customer-stage cart's")):
            stages = lv.get(key, {})
            if stages.get("count"):
                parts = ", ".join(f"{name.replace('_', ' ')} {stages[name]['p50_ms']}/{stages[name]['p90_ms']}" for name, _ in names)
                rows.append((f"{at}: where {what} time goes, p50/p90 ms (n={stages['count']:,})", parts))
    if result.collector:
        c = result.collector
        rows.append(("collector: batched requests", f"{c['events_per_s']:,} events/s ({c['messages']:,} messages, {c['clients']} clients, {c['requests']:,} requests of {REQUEST_MESSAGES})"))
        if c.get("processes", 1) > 1:
            rows.append(("collector: per process", f"{c['events_per_s_per_process']:,} events/s ({c['processes']} processes on one port)"))
        if "cpu_us_per_event" in c:
            rows.append(("collector: CPU per event", f"{c['cpu_us_per_event']} us (all its processes, start-up excluded)"))
    verdicts = result.targets()
    measured = [v for v in verdicts if v.met is not None]
    if measured:
        met = f"{sum(v.met for v in measured)} of the {len(measured)} this run judged ({len(verdicts)} targets)"
    else:
        met = f"none judged: each of the {len(verdicts)} targets was not measured or too small in this run"
    rows.append(("targets met", met))
    rows += [(f"target: {v.target.what}", v.text()) for v in verdicts]
    return rows
