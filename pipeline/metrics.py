"""Prometheus metrics of the collector and the worker (docs/operations.md lists every series).

Each process builds its own registry (``CollectorMetrics``, ``WorkerMetrics``)
with the process collector (``process_start_time_seconds``, CPU, memory) and
serves it as text at ``/metrics``: the collector on its metrics port, the
worker on its web port behind the token. Label values are bounded: a tenant
label is one of the configured tenants (``CX_WRITE_KEYS``), ``other`` for
any other value and ``none`` where no tenant is known; call types, dead-letter
reasons and trigger kinds are closed sets, anything else is ``other``.
Partitions are bounded by the topic's partition count.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    disable_created_metrics,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pipeline.wire.records import CallType, DeadLetterReason, TriggerKind

__all__ = [
    "CONTENT_TYPE_LATEST",
    "CollectorMetrics",
    "Labels",
    "RESTARTS_ENV",
    "WorkerMetrics",
    "render",
]

# No ``*_created`` series beside each counter: a scrape of half the size.
disable_created_metrics()

# Set by ``cxstream up``'s supervisor on each child it starts: how many times
# it started this component again before (0 on the first start).
RESTARTS_ENV = "CX_SUPERVISOR_RESTARTS"

CALL_TYPES = frozenset(get_args(CallType))
DEADLETTER_REASONS = frozenset(get_args(DeadLetterReason))
TRIGGER_KINDS = frozenset(get_args(TriggerKind))
ACTIONS = frozenset(("offer", "assist", "none"))

# Seconds: from a millisecond Kafka acknowledgement to a ClickHouse outage's backoff.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Seconds from an event's receipt to its trigger on cx.triggers.
TRIGGER_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZE_BUCKETS = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)


class Labels:
    """Bounded label values (see the module docstring)."""

    def __init__(self, tenants: Iterable[str]) -> None:
        self.tenants = frozenset(tenants)

    def tenant(self, value: object) -> str:
        if value is None or value == "":
            return "none"
        return value if value in self.tenants else "other"  # type: ignore[return-value]

    @staticmethod
    def call_type(value: object) -> str:
        return value if value in CALL_TYPES else "other"  # type: ignore[return-value]

    @staticmethod
    def reason(value: object) -> str:
        return value if value in DEADLETTER_REASONS else "other"  # type: ignore[return-value]

    @staticmethod
    def kind(value: object) -> str:
        return value if value in TRIGGER_KINDS else "other"  # type: ignore[return-value]

    @staticmethod
    def action(value: object) -> str:
        return value if value in ACTIONS else "other"  # type: ignore[return-value]


def _registry(component: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    restarts = Gauge(
        "cxstream_supervisor_restarts",
        "times cxstream up started this component again before this process (0: its first start)",
        ["component"],
        registry=registry,
    )
    restarts.labels(component).set(int(os.environ.get(RESTARTS_ENV, "0") or 0))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus' text format."""
    return generate_latest(registry)


class CollectorMetrics:
    """The collector's series."""

    def __init__(self, tenants: Iterable[str]) -> None:
        self.labels = Labels(tenants)
        r = self.registry = _registry("collector")
        self.requests = Counter(
            "cxstream_collector_requests", "HTTP requests answered on the event routes, by HTTP status",
            ["tenant", "call", "status"], registry=r,
        )
        self.events = Counter(
            "cxstream_collector_events",
            "messages received, by call type and outcome (accepted: on cx.events; dead_letter; oversize: "
            "the request was refused with 400 and the message dead-lettered)",
            ["tenant", "type", "status"], registry=r,
        )
        self.deadletters = Counter(
            "cxstream_collector_deadletters", "dead letters the collector put on the dead-letter topic, by reason",
            ["tenant", "reason"], registry=r,
        )
        self.produce_seconds = Histogram(
            "cxstream_kafka_produce_seconds", "time from handing records to the producer to Kafka's acknowledgement of all",
            ["client", "outcome"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.connections_closed = Counter(
            "cxstream_collector_connections_closed",
            "connections closed while waiting for a request's headers, by reason (header_timeout, idle_timeout, "
            "pending_limit)",
            ["reason"], registry=r,
        )
        self.inflight_bytes = Gauge(
            "cxstream_collector_inflight_bytes", "request bytes the collector holds now (CX_COLLECTOR_MAX_INFLIGHT_BYTES caps it)",
            registry=r,
        )

    def request(self, tenant: str | None, call: str, status: int) -> None:
        self.requests.labels(self.labels.tenant(tenant), call, str(status)).inc()

    def message(self, tenant: str | None, msg: object, status: str) -> None:
        kind = msg.get("type") if isinstance(msg, dict) else None
        self.events.labels(self.labels.tenant(tenant), self.labels.call_type(kind), status).inc()

    def deadletter(self, tenant: str | None, reason: str, n: int = 1) -> None:
        self.deadletters.labels(self.labels.tenant(tenant), self.labels.reason(reason)).inc(n)

    def connection_closed(self, reason: str) -> None:
        self.connections_closed.labels(reason).inc()


class _WorkerGauges(Collector):
    """Gauges read from the worker when scraped: lag, watermark delay, visitor states."""

    def __init__(self, read: Callable[[], dict]) -> None:
        self.read = read

    def collect(self):  # noqa: ANN201 - prometheus_client's signature
        snapshot = self.read()
        lag = GaugeMetricFamily(
            "cxstream_consumer_lag", "records of an assigned partition not yet processed by this worker (end offset minus next offset)",
            labels=["topic", "partition"],
        )
        for (topic, partition), value in sorted(snapshot.get("lag", {}).items()):
            lag.add_metric([topic, str(partition)], value)
        yield lag
        delay = GaugeMetricFamily(
            "cxstream_watermark_delay_seconds",
            "wall clock minus the partition's event-time watermark (how far detection is behind real time)",
            labels=["partition"],
        )
        for partition, value in sorted(snapshot.get("watermark_delay", {}).items()):
            delay.add_metric([str(partition)], value)
        yield delay
        yield GaugeMetricFamily(
            "cxstream_assigned_partitions", "partitions of the events topic assigned to this worker", value=snapshot.get("assigned", 0)
        )
        yield GaugeMetricFamily("cxstream_visitor_states", "visitor states this worker holds", value=snapshot.get("states", 0))
        yield GaugeMetricFamily(
            "cxstream_visitor_state_bytes", "bytes of the encoded visitor states this worker holds", value=snapshot.get("state_bytes", 0)
        )
        yield GaugeMetricFamily(
            "cxstream_customer_states", "customer states (the customer stage) this worker holds",
            value=snapshot.get("customer_states", 0),
        )
        yield GaugeMetricFamily(
            "cxstream_customer_state_bytes", "bytes of the encoded customer states this worker holds",
            value=snapshot.get("customer_state_bytes", 0),
        )


class WorkerMetrics:
    """The worker's series; ``read_gauges`` is called at each scrape (``Worker.gauges``)."""

    def __init__(self, tenants: Iterable[str], read_gauges: Callable[[], dict] | None = None) -> None:
        self.labels = Labels(tenants)
        r = self.registry = _registry("worker")
        self.records = Counter("cxstream_worker_records", "Kafka records processed, by topic", ["topic"], registry=r)
        self.events = Counter(
            "cxstream_worker_events", "events processed (replays and duplicates included), by call type",
            ["tenant", "type"], registry=r,
        )
        self.deadletters = Counter(
            "cxstream_worker_deadletters",
            "dead letters stored in ClickHouse, by reason and where they were made (collector or worker)",
            ["tenant", "reason", "source"], registry=r,
        )
        self.triggers = Counter(
            "cxstream_triggers", "triggers acknowledged on cx.triggers, by kind and action", ["tenant", "kind", "action"], registry=r
        )
        self.trigger_latency = Histogram(
            "cxstream_trigger_latency_seconds",
            "from the collector's receipt of the event that fired a trigger to the trigger's acknowledgement on cx.triggers "
            "(triggers fired by the idle clock are not observed)",
            ["kind"], buckets=TRIGGER_LATENCY_BUCKETS, registry=r,
        )
        self.batch_seconds = Histogram(
            "cxstream_batch_seconds", "time to process and store one batch of records (steps 1-4 of the worker)",
            ["topic"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.batch_records = Histogram(
            "cxstream_batch_records", "records per batch", ["topic"], buckets=SIZE_BUCKETS, registry=r
        )
        self.insert_seconds = Histogram(
            "cxstream_clickhouse_insert_seconds", "time of one ClickHouse insert that succeeded, by table",
            ["table"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.insert_rows = Histogram(
            "cxstream_clickhouse_insert_rows", "rows of one ClickHouse insert that succeeded, by table",
            ["table"], buckets=SIZE_BUCKETS, registry=r,
        )
        self.insert_errors = Counter(
            "cxstream_clickhouse_insert_errors",
            "ClickHouse inserts that failed, by class: transient (retried with backoff) or permanent (rows bisected, "
            "the refused ones dead-lettered as store_rejected)",
            ["table", "class"], registry=r,
        )
        self.produce_seconds = Histogram(
            "cxstream_kafka_produce_seconds", "time from handing records to the producer to Kafka's acknowledgement of all",
            ["client", "outcome"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.rebuilds = Counter(
            "cxstream_processor_rebuilds", "partition processors rebuilt from stored states after an error", registry=r
        )
        if read_gauges is not None:
            r.register(_WorkerGauges(read_gauges))

    def on_insert(self, table: str, rows: int, seconds: float, error: BaseException | None, permanent: bool) -> None:
        """``ClickHouseSink``'s observer: one call per insert."""
        if error is None:
            self.insert_seconds.labels(table).observe(seconds)
            self.insert_rows.labels(table).observe(rows)
        else:
            self.insert_errors.labels(table, "permanent" if permanent else "transient").inc()
