"""``cxstream backtest --kafka`` on a real broker: offsets, one processor per partition, cx.triggers left alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from typer.testing import CliRunner

from pipeline.tools.backtest import load_kafka
from pipeline.cli import cli
from pipeline.wire.records import encode_batch
from pipeline.settings import Settings
from pipeline.wire.topics import ensure_topics, kafka_config
from tests.detect.helpers import MIN, T0, add, page
from tests.test_backtest import decisions, three_partitions

pytestmark = pytest.mark.integration


def produce(settings: Settings, bootstrap: str, topic: str, records: list[tuple[int, bytes]]) -> None:
    producer = Producer(kafka_config(settings, bootstrap))
    for partition, value in records:
        producer.produce(topic, value, partition=partition)
    assert producer.flush(15) == 0


def count_records(settings: Settings, bootstrap: str, topic: str) -> int:
    """Every record of ``topic``, all partitions, from the beginning to the end now."""
    consumer = Consumer({
        **kafka_config(settings, bootstrap),
        "group.id": f"{settings.worker_group}-count", "enable.auto.commit": False, "enable.partition.eof": True,
    })  # fmt: skip
    try:
        n_partitions = len(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in range(n_partitions)])
        n, at_end = 0, set()
        while len(at_end) < n_partitions:
            msg = consumer.poll(10)
            assert msg is not None, f"{topic}: no end of partition within 10 s"
            if msg.error():
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                at_end.add(msg.partition())
            else:
                n += 1
        return n
    finally:
        consumer.close()


def test_events_topic_is_read_between_offsets_in_order(kafka: str, fresh_settings: Settings) -> None:
    settings = fresh_settings.model_copy(update={"kafka_bootstrap": kafka})
    ensure_topics(settings, kafka)
    # partition 0: records r0 [a0, a1], r1 [a2]; partition 1: record r0 [b0]
    a = [add(T0, anon="anon-a"), page(T0 + MIN, anon="anon-a"), page(T0 + 2 * MIN, anon="anon-a")]
    b = [add(T0, anon="anon-b")]
    records = [(0, encode_batch(a[:2])), (0, encode_batch(a[2:])), (1, encode_batch(b))]
    produce(settings, kafka, settings.topic_events, records)

    assert load_kafka(settings, 0, None).partitions == {0: [(0, a[:2]), (1, a[2:])], 1: [(0, b)]}
    assert load_kafka(settings, 1, None).partitions == {0: [(1, a[2:])]}  # partition 1 has nothing from offset 1
    assert load_kafka(settings, 0, 1).partitions == {0: [(0, a[:2])], 1: [(0, b)]}


def test_three_partitions_replay_with_their_own_watermarks_and_cx_triggers_keeps_its_records(
    kafka: str, fresh_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``three_partitions`` (tests/test_backtest.py) as the collector wrote it, one visitor per partition:

    partition 0: anon-x's pages T0..T0+5h, then T0+6h..T0+10h (2 records)
    partition 1: cust-c's identify and add (T0, T0+1m), then its order at T0+90m (2 records)
    partition 2: cust-d's identify and add (T0, T0+2m) (1 record)

    Read partition after partition into one watermark, cust-c's cart would pass its 4 h
    deadline (partition 0 took the watermark to T0+10h) before its T0+90m order is read,
    and get an offer. Per partition, as the worker runs them:
      30m: cust-c offer 15 % at T0+31m, cancelled and recovered at T0+90m (120, cost 18);
           cust-d offer 10 % at T0+32m          -> triggers 2, offers 2, recovered 1
      4h:  cust-d offer 10 % at T0+4h02m only   -> triggers 1, offers 1, recovered 0
    """
    settings = fresh_settings.model_copy(update={"kafka_bootstrap": kafka, "kafka_partitions": 3})
    assert ensure_topics(settings, kafka)[settings.topic_events] == 3
    events = three_partitions()
    x, c, d = events[:11], events[11:14], events[14:]
    records = [(0, x[:6]), (0, x[6:]), (1, c[:2]), (1, c[2:]), (2, d)]
    produce(settings, kafka, settings.topic_events, [(p, encode_batch(events)) for p, events in records])
    # The running pipeline's triggers topic holds 3 records, and its store 2 triggers.
    produce(settings, kafka, settings.topic_triggers, [(p, f"seeded-{p}".encode()) for p in range(3)])
    assert count_records(settings, kafka, settings.topic_triggers) == 3
    live = tmp_path / "live"
    live_triggers_before = seed_live_store(live)

    env = {
        "CX_KAFKA_BOOTSTRAP": kafka, "CX_TOPIC_EVENTS": settings.topic_events,
        "CX_TOPIC_TRIGGERS": settings.topic_triggers, "CX_TOPIC_DEADLETTER": settings.topic_deadletter,
        "CX_KAFKA_PARTITIONS": "3", "CX_CLICKHOUSE_URL": f"chdb://{live}", "CX_DATA_DIR": str(tmp_path / "data"),
        "CX_HOLDOUT_PCT": "0",
    }  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "bt"
    result = CliRunner().invoke(
        cli, ["backtest", "--kafka", "--delay", "30m", "--delay", "4h", "--out", str(out)], env={"COLUMNS": "160"}
    )
    assert result.exit_code == 0, result.output
    assert "16 events in 3 partitions" in result.output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]] for line in result.output.splitlines()
            if line.startswith("│")}  # fmt: skip
    assert rows["triggers"] == ["2", "1"]
    assert rows["cart_abandoned"] == ["2", "1"]
    assert rows["offers"] == ["2", "1"]
    assert rows["recovered (treatment)"] == ["1", "0"]
    assert rows["est. discount cost"] == ["18.00", "0.00"]
    assert decisions(out / "4h") == [("cust-d", "cart_abandoned", T0 + 242 * MIN, "offer", 10)]
    assert decisions(out / "30m") == [
        ("cust-c", "cart_abandoned", T0 + 31 * MIN, "offer", 15),
        ("cust-d", "cart_abandoned", T0 + 32 * MIN, "offer", 10),
        ("cust-c", "offer_cancelled", T0 + 90 * MIN, "none", 0),
    ]

    # Nothing was sent to the triggers topic, and the configured store is as it was.
    assert count_records(settings, kafka, settings.topic_triggers) == 3
    assert read_live_store(live) == live_triggers_before == [("live-1",), ("live-2",)]
    assert not (tmp_path / "data").exists()


def seed_live_store(path: Path) -> list[tuple]:
    from sinks.client import connect
    from sinks.migrate import migrate
    from sinks.sink import ClickHouseSink
    from tests.sinks.records import trigger

    ch = connect(f"chdb://{path}")
    try:
        migrate(ch)
        sink = ClickHouseSink(ch)
        sink.add_triggers([trigger("shop-a", tid, "2024-03-10 10:00:00", "k-" + tid) for tid in ("live-1", "live-2")])
        sink.flush()
    finally:
        ch.close()
    return read_live_store(path)


def read_live_store(path: Path) -> list[tuple]:
    from sinks.client import connect

    ch = connect(f"chdb://{path}")
    try:
        return ch.execute("SELECT trigger_id FROM cx.triggers ORDER BY trigger_id")
    finally:
        ch.close()
