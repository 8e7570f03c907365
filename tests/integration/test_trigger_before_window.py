"""A trigger leaves when its record is processed; the record's rows and offset wait for the window (real broker and worker).

The worker processes each record as it arrives and hands the triggers it
fires to Kafka at once, while the record's rows, visitor states and
acknowledgement wait in the open window (``CX_SINK_MAX_INTERVAL_MS``, here
8 s, far longer than a trigger takes). So the trigger is on ``cx.triggers``
while ``cx.events`` holds none of the record's rows and the group's
committed offset is still before the record; when the window closes, both
follow.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
import requests
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pipeline.supervisor.runner import Pipeline
from pipeline.settings import Settings
from pipeline.wire.topics import kafka_config
from pipeline.wire.triggers import decode_trigger
from tests.integration.helpers import embedded_settings, post_batch, scalar, wait_until

pytestmark = pytest.mark.integration

WINDOW_MS = 8_000


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _first_trigger(pipeline: Pipeline, timeout_s: float) -> tuple[dict, float]:
    """The first record on the triggers topic, and the monotonic time it was read."""
    s = pipeline.settings
    consumer = Consumer({**kafka_config(s, pipeline.bootstrap), "group.id": f"{s.worker_group}-first"})
    try:
        parts = consumer.list_topics(s.topic_triggers, timeout=10).topics[s.topic_triggers].partitions
        consumer.assign([TopicPartition(s.topic_triggers, p, OFFSET_BEGINNING) for p in parts])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = consumer.poll(0.05)
            if msg is not None and not msg.error():
                return decode_trigger(msg.value(), s.trigger_format), time.monotonic()
    finally:
        consumer.close()
    raise AssertionError(f"no trigger within {timeout_s:.0f} s")


def _committed_past_every_record(pipeline: Pipeline) -> bool:
    return all(max(committed, 0) >= end for committed, end in pipeline.offsets().values())


def test_trigger_is_on_kafka_before_its_records_rows_are_stored_or_its_offset_committed(
    kafka: str, fresh_settings: Settings, tmp_path
) -> None:
    tenant = f"shop-{fresh_settings.worker_group}"
    settings = embedded_settings(
        fresh_settings,
        kafka,
        tmp_path,
        "wk_window",
        abandon_after_ms=5_000,
        sink_max_interval_ms=WINDOW_MS,
        batch_max_records=10_000,
        holdout_pct=0.0,
    )
    with Pipeline(settings) as pipeline:
        ready = f"http://{pipeline.worker_host}:{pipeline.worker_port}/ready"
        wait_until(lambda: requests.get(ready, timeout=5).status_code == 200, what="the worker ready")
        # anon-w adds p-w to cart c-w a minute ago and again now: the second
        # add is activity past the cart's deadline (a minute ago + 5 s), so
        # processing the record abandons c-w first. One request, one record.
        now_ms = int(time.time() * 1000)
        batch = [
            {"type": "track", "event": "Product Added", "anonymousId": "anon-w", "messageId": f"{tenant}-1",
             "properties": {"cart_id": "c-w", "product_id": "p-w", "price": 20}, "timestamp": _iso(now_ms - 60_000)},
            {"type": "track", "event": "Product Added", "anonymousId": "anon-w", "messageId": f"{tenant}-2",
             "properties": {"cart_id": "c-w", "product_id": "p-w", "price": 20}, "timestamp": _iso(now_ms)},
        ]  # fmt: skip
        posted = time.monotonic()
        assert post_batch(pipeline.collector_url, "wk_window", batch).status_code == 200
        trigger, seen = _first_trigger(pipeline, timeout_s=WINDOW_MS / 1000 - 3)
        stored_then = scalar(pipeline, f"SELECT count() FROM cx.events WHERE tenant = '{tenant}'")
        committed_then = _committed_past_every_record(pipeline)
        checked = time.monotonic()
        wait_until(
            lambda: scalar(pipeline, f"SELECT count() FROM cx.events FINAL WHERE tenant = '{tenant}'") == 2,
            timeout_s=WINDOW_MS / 1000 + 60,
            what="the window's rows stored",
        )
        wait_until(lambda: _committed_past_every_record(pipeline), timeout_s=60, what="the record's offset committed")

    # The window (8 s from the record) was still open when both were read.
    assert checked - posted < WINDOW_MS / 1000, f"the checks took {checked - posted:.1f} s"
    assert (trigger["kind"], trigger["cart_id"], trigger["anonymous_id"]) == ("cart_abandoned", "c-w", "anon-w")
    assert trigger["event_time"] == now_ms - 60_000 + 5_000  # the deadline: the first add + 5 s
    assert stored_then == 0, "the record's rows were stored before its window closed"
    assert committed_then is False, "the record's offset was committed before its window closed"
    print(f"\ntrigger read {seen - posted:.2f} s after the request; rows and offset followed with the window")
