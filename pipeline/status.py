"""``cxstream status``: one screen for the operator of a running ``cxstream up``.

Reads what ``up`` recorded in ``<data dir>/run.json`` (the collector's
metrics port, the worker's web port), asks each component's ``/health`` and
``/ready``, scrapes both ``/metrics`` twice ``interval`` seconds apart (the
rates are the difference), and asks the store for the last hour's dead
letters and triggers. Nothing here writes anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import requests
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.table import Table

from pipeline.settings import Settings
from pipeline.webtoken import read_token, worker_headers

__all__ = ["Deliveries", "Scrape", "Snapshot", "collect", "combine", "deliver_lag", "parse_metrics", "render_status"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

DEADLETTERS_LAST_HOUR = (
    "SELECT reason, count() FROM cx.deadletters FINAL WHERE received_at >= now() - INTERVAL 1 HOUR "
    "GROUP BY reason ORDER BY reason"
)
DELIVERIES_LAST_HOUR = (
    "SELECT destination, status, count() FROM cx.deliveries FINAL WHERE last_attempt_at >= now() - INTERVAL 1 HOUR "
    "GROUP BY destination, status ORDER BY destination, status"
)
TRIGGERS_LAST_HOUR = (
    "SELECT kind, count() FROM cx.triggers FINAL WHERE emitted_at >= now() - INTERVAL 1 HOUR "
    "GROUP BY kind ORDER BY kind"
)


def parse_metrics(text: str) -> Samples:
    """Prometheus text -> {(sample name, sorted labels): value}."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: Samples, name: str, **match: str) -> float:
    """Sum of a series' samples whose labels include ``match``."""
    return sum(
        v for (n, labels), v in samples.items() if n == name and all((k, val) in labels for k, val in match.items())
    )


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (n, labels), v in samples.items():
        if n == name:
            key = dict(labels).get(label, "")
            out[key] = out.get(key, 0.0) + v
    return out


@dataclass
class Scrape:
    """One component: its health, readiness and two scrapes of its metrics."""

    name: str
    url: str
    alive: bool = False
    ready: bool = False
    ready_detail: dict = field(default_factory=dict)
    first: Samples = field(default_factory=dict)
    second: Samples = field(default_factory=dict)
    error: str = ""


@dataclass
class Deliveries:
    """``cxstream deliver`` under ``up`` (``CX_DELIVERY_ENABLED``): it serves no metrics; this is what tells."""

    alive: bool
    lag: dict[str, int]  # triggers partition -> records after the deliver group's commit (-1: unknown)
    last_hour: list[tuple[str, str, int]] | None  # (destination, status, triggers); None: the store did not answer
    error: str = ""


@dataclass
class Snapshot:
    collector: Scrape
    worker: Scrape
    interval_s: float
    deadletters_hour: list[tuple[str, int]] | None
    triggers_hour: list[tuple[str, int]] | None
    store_error: str = ""
    events_topic: str = "cx.events"
    deliveries: Deliveries | None = None  # None: up runs no deliver


def _get(url: str, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.get(url, headers=headers or {}, timeout=5)


def _probe(scrape: Scrape, headers: dict[str, str] | None) -> None:
    try:
        scrape.alive = _get(f"{scrape.url}/health").status_code == 200
        answer = _get(f"{scrape.url}/ready")
        scrape.ready = answer.status_code == 200
        scrape.ready_detail = answer.json()
    except (requests.RequestException, ValueError) as exc:
        scrape.error = f"{type(exc).__name__}: {exc}"


def _scrape(scrape: Scrape, headers: dict[str, str] | None) -> Samples:
    if scrape.error:
        return {}
    try:
        answer = _get(f"{scrape.url}/metrics", headers)
        answer.raise_for_status()
        return parse_metrics(answer.text)
    except requests.RequestException as exc:
        scrape.error = f"{type(exc).__name__}: {exc}"
        return {}


# The same in every process: ``up``'s count of the collector's restarts, passed to each one.
SAME_IN_EVERY_PROCESS = ("cxstream_supervisor_restarts",)


def _sum(samples: list[Samples]) -> Samples:
    out: Samples = {}
    for one in samples:
        for key, value in one.items():
            if key[0] in SAME_IN_EVERY_PROCESS:
                out[key] = max(out.get(key, 0.0), value)
            else:
                out[key] = out.get(key, 0.0) + value
    return out


def combine(name: str, processes: list[Scrape]) -> Scrape:
    """Several collector processes (``CX_COLLECTOR_PROCESSES``) as one component.

    Alive and ready when every process is; a check holds when it holds in
    every process; the samples are summed (counters and gauges alike: each
    process counts its own requests; the restarts ``up`` passed to all
    of them are taken once). A process that did not answer makes
    both scrapes empty, so that no rate is computed from part of the
    processes.
    """
    if len(processes) == 1:
        return processes[0]
    checks: dict[str, bool] = {}
    for p in processes:
        for check, ok in p.ready_detail.get("checks", {}).items():
            checks[check] = checks.get(check, True) and bool(ok)
    complete = all(p.first and p.second and not p.error for p in processes)
    return Scrape(
        name=f"{name} ({len(processes)} processes)",
        url=", ".join(p.url for p in processes),
        alive=all(p.alive for p in processes),
        ready=all(p.ready for p in processes),
        ready_detail={"checks": checks},
        first=_sum([p.first for p in processes]) if complete else {},
        second=_sum([p.second for p in processes]) if complete else {},
        error="; ".join(f"process {i}: {p.error}" for i, p in enumerate(processes) if p.error),
    )


def deliver_lag(settings: Settings, bootstrap: str) -> dict[str, int]:
    """``cx.triggers[p]`` -> records after the deliver group's committed offset (the end offset minus it)."""
    from confluent_kafka import Consumer, TopicPartition

    from pipeline.wire.topics import kafka_config

    topic = settings.topic_triggers
    consumer = Consumer({**kafka_config(settings, bootstrap), "group.id": settings.delivery_group, "enable.auto.commit": False})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        out = {}
        for tp in consumer.committed([TopicPartition(topic, p) for p in sorted(parts)], timeout=10):
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            out[f"{topic}[{tp.partition}]"] = max(0, high - (tp.offset if tp.offset >= 0 else low))
        return out
    finally:
        consumer.close()


def _deliveries(settings: Settings, info: dict, query: Callable[[str], tuple[list[str], list]]) -> Deliveries:
    from pipeline.supervisor.runner import child_alive

    out = Deliveries(alive=child_alive(settings.data_dir, "deliver"), lag={}, last_hour=None)
    errors = []
    try:
        out.lag = deliver_lag(settings, info["bootstrap"])
    except Exception as exc:  # noqa: BLE001 - the screen says why
        errors.append(f"Kafka: {type(exc).__name__}: {exc}")
    try:
        out.last_hour = [(r[0], r[1], int(r[2])) for r in query(DELIVERIES_LAST_HOUR)[1]]
    except Exception as exc:  # noqa: BLE001
        errors.append(f"store: {type(exc).__name__}: {exc}")
    out.error = "; ".join(errors)
    return out


def collect(
    settings: Settings, info: dict, interval_s: float, query: Callable[[str], tuple[list[str], list]]
) -> Snapshot:
    """Probe and scrape the running pipeline described by ``info`` (its run.json).

    Every collector process of ``collector_metrics_urls`` is scraped and
    shown as one collector (``combine``).

    Before asking anything, raises ``pipeline.webtoken.TokenMissing`` when
    the data dir's worker token is missing, empty or not text (or the
    ``OSError`` of a token file that cannot be read): the worker would answer
    every request but its health with 401, and the screen would show the
    failures without their cause. Both are ``OSError``s, which
    ``pipeline.cli.main`` prints as one line naming the file (exit 1).
    """
    urls = info.get("collector_metrics_urls") or [info.get("collector_metrics_url", "")]
    collectors = [Scrape("collector", url) for url in urls]
    worker = Scrape("worker", f"http://{info.get('worker_host', '127.0.0.1')}:{info['worker_port']}")
    headers = worker_headers(read_token(settings.data_dir))
    targets = [(c, None) for c in collectors] + [(worker, headers)]
    for scrape, h in targets:
        _probe(scrape, h)
        scrape.first = _scrape(scrape, h)
    started = time.monotonic()
    time.sleep(interval_s)
    for scrape, h in targets:
        scrape.second = _scrape(scrape, h)
    elapsed = time.monotonic() - started
    collector = combine("collector", collectors)
    store_error = ""
    deadletters = triggers = None
    try:
        deadletters = [(r[0], int(r[1])) for r in query(DEADLETTERS_LAST_HOUR)[1]]
        triggers = [(r[0], int(r[1])) for r in query(TRIGGERS_LAST_HOUR)[1]]
    except Exception as exc:  # noqa: BLE001 - the screen shows why the store did not answer
        store_error = f"{type(exc).__name__}: {exc}"
    deliveries = _deliveries(settings, info, query) if info.get("delivery_enabled") else None
    return Snapshot(collector, worker, elapsed, deadletters, triggers, store_error, settings.topic_events, deliveries)


def _rate(scrape: Scrape, interval_s: float, name: str, **match: str) -> float | None:
    if not scrape.first or not scrape.second:
        return None
    return max(0.0, total(scrape.second, name, **match) - total(scrape.first, name, **match)) / interval_s


def _insert_latency(samples: Samples) -> tuple[float | None, float | None]:
    """(mean, p95 upper bound) of ``cxstream_clickhouse_insert_seconds`` since the worker started, seconds."""
    count = total(samples, "cxstream_clickhouse_insert_seconds_count")
    if not count:
        return None, None
    mean = total(samples, "cxstream_clickhouse_insert_seconds_sum") / count
    buckets: dict[float, float] = {}
    for (n, labels), v in samples.items():
        if n == "cxstream_clickhouse_insert_seconds_bucket":
            le = float(dict(labels)["le"])
            buckets[le] = buckets.get(le, 0.0) + v
    p95 = next((le for le, c in sorted(buckets.items()) if c >= 0.95 * count), None)
    return mean, p95


def _fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{unit}"


def render_status(snap: Snapshot) -> Group:
    """The screen: components, throughput, lag, dead letters, triggers, ClickHouse."""
    c, w = snap.collector, snap.worker
    components = Table("component", "alive", "ready", "restarts", "detail", title="Components")
    for s in (c, w):
        restarts = total(s.second or s.first, "cxstream_supervisor_restarts")
        if s.error:
            detail = s.error
        else:
            checks = s.ready_detail.get("checks", {})
            failing = [k for k, ok in checks.items() if not ok]
            detail = "all checks pass" if not failing else "failing: " + ", ".join(failing)
        components.add_row(
            s.name, "yes" if s.alive else "[red]no[/red]", "yes" if s.ready else "[red]no[/red]",
            f"{restarts:.0f}" if (s.first or s.second) else "n/a", detail,
        )

    flow = Table("measure", "value", title=f"Throughput (over {snap.interval_s:.1f} s)")
    flow.add_row("events/s in (collector, accepted)", _fmt(_rate(c, snap.interval_s, "cxstream_collector_events_total", status="accepted")))
    flow.add_row("events/s out (worker, processed)", _fmt(_rate(w, snap.interval_s, "cxstream_worker_events_total")))
    flow.add_row("triggers/s", _fmt(_rate(w, snap.interval_s, "cxstream_triggers_total"), digits=2))
    mean, p95 = _insert_latency(w.second or w.first)
    flow.add_row("ClickHouse insert, mean since start", _fmt(None if mean is None else mean * 1000, " ms"))
    flow.add_row("ClickHouse insert, p95 at most", _fmt(None if p95 is None else p95 * 1000, " ms", 0))
    errors = by_label(w.second or w.first, "cxstream_clickhouse_insert_errors_total", "class")
    flow.add_row("ClickHouse insert errors (transient / permanent)", f"{errors.get('transient', 0):.0f} / {errors.get('permanent', 0):.0f}")

    lag = Table("partition", "lag (records)", "watermark delay", title="Worker partitions")
    samples = w.second or w.first
    delays = {dict(labels).get("partition"): v for (n, labels), v in samples.items() if n == "cxstream_watermark_delay_seconds"}
    for (n, labels), v in sorted(samples.items(), key=lambda item: (dict(item[0][1]).get("topic", ""), int(dict(item[0][1]).get("partition", 0)))):
        if n != "cxstream_consumer_lag":
            continue
        d = dict(labels)
        delay = delays.get(d["partition"]) if d["topic"] == snap.events_topic else None
        lag.add_row(f"{d['topic']}[{d['partition']}]", f"{v:,.0f}", _fmt(delay, " s"))

    hour = Table("dead letters, last hour: reason", "count", title="Dead letters (store)")
    if snap.deadletters_hour is None:
        hour.add_row("store did not answer", snap.store_error)
    for reason, n in snap.deadletters_hour or []:
        hour.add_row(reason, f"{n:,}")
    if snap.deadletters_hour == []:
        hour.add_row("none", "0")

    kinds = Table("kind", "last hour (store)", "since worker start", title="Triggers")
    since = by_label(samples, "cxstream_triggers_total", "kind")
    hourly = dict(snap.triggers_hour or [])
    for kind in sorted(set(since) | set(hourly)):
        kinds.add_row(kind, f"{hourly.get(kind, 0):,}" if snap.triggers_hour is not None else "n/a", f"{since.get(kind, 0):,.0f}")
    if not since and not hourly:
        kinds.add_row("none", "0", "0")
    if snap.deliveries is None:
        return Group(components, flow, lag, hour, kinds)
    d = snap.deliveries
    hooks = Table("deliver", "value", title="Webhook deliveries (cxstream deliver)")
    hooks.add_row("process alive", "yes" if d.alive else "[red]no[/red]")
    for where, n in sorted(d.lag.items()):
        hooks.add_row(f"not yet delivered: {where}", f"{n:,}")
    for destination, status, n in d.last_hour or []:
        hooks.add_row(f"last hour: {destination} {status}", f"{n:,}")
    if d.last_hour == []:
        hooks.add_row("last hour", "none")
    if d.error:
        hooks.add_row("did not answer", d.error)
    return Group(components, flow, lag, hour, kinds, hooks)
