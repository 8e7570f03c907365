"""End to end on a real broker and both ClickHouse backends: the first event accepted under an id wins.

Visitor A (partition 0) completes an order with ``messageId`` X; visitor B
(partition 1) later sends an unrelated page view that reuses X. A also
reuses one of its own ids (Y) for other content, and resends its order
exactly (the same message: a silent duplicate). Expected, by hand:

    cx.events (FINAL, and after OPTIMIZE ... FINAL without FINAL):
        X = A's Order Completed, Y = A's Product Viewed, B-1 = B's first page view
    kpi_daily (day D): orders 1, revenue 30.0
    cx.deadletters: 2 rows, both duplicate_id_conflict: B's page view with X
        (payload names anon-b) and A's Product Added with Y
    deadletter_daily: duplicate_id_conflict 2

Then every Kafka record of the events topic is produced again (a replay of
the same records, at new offsets), and every number above must stay.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from pipeline.wire.partitioner import ids_per_partition
from pipeline.settings import Settings
from pipeline.wire.topics import kafka_config
from sinks.client import connect
from tests.integration.helpers import BACKENDS, e2e_pipeline, post_batch, scalar, wait_until, worker_stats

pytestmark = pytest.mark.integration

WRITE_KEY = "wk_ids"


def _ts(day: dt.date, minute: float) -> str:
    t = dt.datetime(day.year, day.month, day.day, 10, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=minute)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _messages(tenant: str, day: dt.date, partitions: int) -> tuple[list[dict], list[dict], str, str]:
    anon_a, anon_b = ids_per_partition(tenant, "ids-visitor", partitions)[:2]  # two partitions
    x, y = f"{tenant}-X", f"{tenant}-Y"
    order = {
        "type": "track", "event": "Order Completed", "anonymousId": anon_a, "messageId": x,
        "properties": {"order_id": "o-a", "total": 30}, "timestamp": _ts(day, 1),
    }  # fmt: skip
    first = [
        {"type": "track", "event": "Product Viewed", "anonymousId": anon_a, "messageId": y,
         "properties": {"product_id": "p-1"}, "timestamp": _ts(day, 0)},
        order,
    ]  # fmt: skip
    second = [
        dict(order),  # the SDK resends A's order: the same message, a silent duplicate
        {"type": "page", "anonymousId": anon_b, "messageId": f"{tenant}-B-1", "properties": {"path": "/"},
         "timestamp": _ts(day, 2)},
        {"type": "page", "anonymousId": anon_b, "messageId": x, "properties": {"path": "/help"},
         "timestamp": _ts(day, 3)},  # B reuses A's order's id
        {"type": "track", "event": "Product Added", "anonymousId": anon_a, "messageId": y,
         "properties": {"product_id": "p-2", "price": 5}, "timestamp": _ts(day, 4)},  # A reuses its own id
    ]  # fmt: skip
    return first, second, anon_a, anon_b


def _events_records(settings: Settings, bootstrap: str) -> list[tuple[int, bytes | None, bytes]]:
    """Every record of the events topic as (partition, key, value), in partition and offset order."""
    consumer = Consumer({**kafka_config(settings, bootstrap), "group.id": f"{settings.worker_group}-copy",
                         "enable.auto.commit": False, "enable.partition.eof": True})  # fmt: skip
    topic = settings.topic_events
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        out = []
        for p in sorted(parts):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, p, low)])
            got: list = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # to the partition's end, which the client reports
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                if msg.error() is None:
                    got.append(msg)
                elif msg.error().code() == KafkaError._PARTITION_EOF:
                    break
            else:
                raise AssertionError(f"{topic}[{p}]: no end of partition reported within 30 s")
            out += [(p, m.key(), m.value()) for m in got]
    finally:
        consumer.close()
    return out


def _snapshot(pipeline, tenant: str, day: dt.date) -> dict:  # noqa: ANN001
    events = pipeline.query(
        f"SELECT event_id, anonymous_id, event, type FROM cx.events FINAL WHERE tenant = '{tenant}' ORDER BY event_id"
    )[1]
    kpi = pipeline.query(
        f"SELECT orders, revenue FROM cx.kpi_daily WHERE tenant = '{tenant}' AND day = '{day.isoformat()}'"
    )[1]
    dls = pipeline.query(
        f"SELECT reason, payload FROM cx.deadletters FINAL WHERE tenant = '{tenant}' ORDER BY payload"
    )[1]
    daily = pipeline.query(f"SELECT reason, sum(events) FROM cx.deadletter_daily WHERE tenant = '{tenant}' GROUP BY reason")[1]
    return {
        "events": [tuple(r) for r in events],
        "kpi": [tuple(r) for r in kpi],
        "deadletters": [(r[0], orjson.loads(r[1])) for r in dls],
        "daily": {r[0]: r[1] for r in daily},
    }


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    """``e2e_pipeline``'s request: its ``param`` names the ClickHouse backend."""
    return request


def test_a_reused_message_id_never_replaces_the_first_event(
    backend: pytest.FixtureRequest, kafka: str, fresh_settings: Settings, tmp_path: Path
) -> None:
    request = backend
    day = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).date()
    with e2e_pipeline(request, kafka, fresh_settings, tmp_path, WRITE_KEY, allowed_lateness_ms=5 * 60_000) as pipeline:
        tenant = pipeline.tenant
        first, second, anon_a, anon_b = _messages(tenant, day, pipeline.settings.kafka_partitions)
        for batch in (first, second):
            resp = post_batch(pipeline.collector_url, WRITE_KEY, batch)
            assert resp.status_code == 200, resp.text
            if batch is first:  # A's events are stored before B's arrive
                wait_until(
                    lambda: scalar(pipeline, f"SELECT count() FROM cx.events FINAL WHERE tenant = '{tenant}'") == 2,
                    what="A's two events stored",
                )
        wait_until(
            lambda: scalar(pipeline, f"SELECT count() FROM cx.deadletters FINAL WHERE tenant = '{tenant}'") == 2,
            what="2 dead letters",
        )
        wait_until(lambda: pipeline.lag() == 0, what="the worker caught up")
        before = _snapshot(pipeline, tenant, day)
        assert before["events"] == [
            (f"{tenant}-B-1", anon_b, "", "page"),
            (f"{tenant}-X", anon_a, "Order Completed", "track"),
            (f"{tenant}-Y", anon_a, "Product Viewed", "track"),
        ]
        assert before["kpi"] == [(1, 30.0)]
        assert before["daily"] == {"duplicate_id_conflict": 2}
        payloads = [(reason, p["anonymous_id"], p["event_id"], p["type"], p.get("event")) for reason, p in before["deadletters"]]
        assert sorted(payloads) == sorted([
            ("duplicate_id_conflict", anon_b, f"{tenant}-X", "page", None),
            ("duplicate_id_conflict", anon_a, f"{tenant}-Y", "track", "Product Added"),
        ])  # fmt: skip
        stats = worker_stats(pipeline)
        assert stats["id_conflicts"] == 2

        # The same records again.
        records = _events_records(pipeline.settings, pipeline.bootstrap)
        assert len(records) >= 3
        producer = Producer(kafka_config(pipeline.settings, pipeline.bootstrap))
        for partition, key, value in records:
            producer.produce(pipeline.settings.topic_events, value=value, key=key, partition=partition)
        assert producer.flush(30) == 0
        wait_until(lambda: worker_stats(pipeline)["records"] >= stats["records"] + len(records), what="the replay read")
        wait_until(lambda: pipeline.lag() == 0, what="the replay committed")
        assert worker_stats(pipeline)["id_conflicts"] == 4  # judged again, dead-lettered under the same ids
        assert _snapshot(pipeline, tenant, day) == before
        url = pipeline.settings.resolved_clickhouse_url

    # After every merge (the store is free now: the pipeline stopped).
    ch = connect(url)
    try:
        ch.execute("OPTIMIZE TABLE cx.events FINAL")
        rows = ch.execute(
            "SELECT event_id, anonymous_id, event FROM cx.events WHERE tenant = %(t)s ORDER BY event_id", {"t": tenant}
        )
        assert rows == [
            (f"{tenant}-B-1", anon_b, ""),
            (f"{tenant}-X", anon_a, "Order Completed"),
            (f"{tenant}-Y", anon_a, "Product Viewed"),
        ]
        assert ch.execute(
            "SELECT orders, revenue FROM cx.kpi_daily WHERE tenant = %(t)s AND day = %(d)s", {"t": tenant, "d": day}
        ) == [(1, 30.0)]
        assert ch.execute(
            "SELECT reason, events FROM cx.deadletter_daily WHERE tenant = %(t)s", {"t": tenant}
        ) == [("duplicate_id_conflict", 2)]
    finally:
        ch.close()
