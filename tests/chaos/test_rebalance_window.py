"""A rebalance makes the open window durable at once, before its partitions can move.

The worker acknowledges records only when their window is durable, and a
rebalance waits until Faust holds no unacknowledged record. With a window of
a minute (``CX_SINK_MAX_INTERVAL_MS``), the rows of records the worker has
already processed are not in ClickHouse and their offsets are not committed;
a second worker joining must not wait that minute: the first one flushes as
soon as the group starts rebalancing. The second worker then stops
gracefully: it makes its own window durable before it leaves (``flush_on_stop``),
the first one flushes again at the rebalance, and the day's numbers are
exactly the crash-free reference, long before a window's age.
"""

from __future__ import annotations

import time

import pytest

from pipeline.supervisor.runner import Pipeline
from pipeline.settings import Settings
from sinks.client import connect
from tests.chaos.common import chaos_settings, day_of_traffic, post, settle_and_check, worker_stats
from tests.integration.helpers import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

WINDOW_S = 60


def _stored(pipeline: Pipeline) -> int:
    ch = connect(pipeline.settings.clickhouse_url)
    try:
        sql = "SELECT count() FROM cx.events FINAL WHERE tenant = %(t)s"
        return ch.query(sql, {"t": pipeline.tenant})[1][0][0]
    finally:
        ch.close()


def _processed(pipeline: Pipeline, ports: list[int]) -> int:
    return sum(worker_stats(pipeline, port)["records"] for port in ports)


def test_a_worker_joining_or_leaving_gets_the_open_windows_flushed_at_once(
    kafka: str, clickhouse_server, fresh_settings: Settings
) -> None:
    tenant = f"shop-{fresh_settings.worker_group}"
    settings = chaos_settings(
        fresh_settings, kafka, clickhouse_server.url, batch_max_records=100_000, sink_max_interval_ms=WINDOW_S * 1000
    )
    with Pipeline(settings) as pipeline:
        pipeline.tenant = tenant
        day = day_of_traffic(pipeline, seed=53, visitors=40)
        half = len(day.messages) // 2
        for i in range(0, half, 50):
            post(pipeline, day.messages[i : min(i + 50, half)])
        records = pipeline.records_produced()
        wait_until(lambda: _processed(pipeline, [pipeline.worker_port]) >= records, what="the first half processed")
        # Processed, in the open window: nothing stored, nothing committed.
        stored_before, lag_before = _stored(pipeline), pipeline.lag()

        joined = time.monotonic()
        port = pipeline.start_worker("worker-2")
        wait_until(lambda: _stored(pipeline) > 0 and pipeline.lag() == 0, timeout_s=WINDOW_S,
                   what="the first half stored and committed")  # fmt: skip
        flushed_after_s = time.monotonic() - joined
        wait_until(lambda: worker_stats(pipeline, port)["events_partitions"] > 0, what="worker-2 assigned partitions")

        for i in range(half, len(day.messages), 50):
            post(pipeline, day.messages[i : i + 50])
        records = pipeline.records_produced()
        wait_until(lambda: _processed(pipeline, [pipeline.worker_port, port]) >= records, what="the second half processed")
        left = time.monotonic()
        pipeline.stop_worker("worker-2")
        figures = settle_and_check(pipeline, day, "after a second worker came and went", timeout_s=WINDOW_S - 10)
        settled_after_s = time.monotonic() - left

    assert stored_before == 0 and lag_before > 0, (stored_before, lag_before)
    assert flushed_after_s < WINDOW_S / 2, f"the first window waited {flushed_after_s:.1f} s for its age"
    assert settled_after_s < WINDOW_S / 2, f"the windows waited {settled_after_s:.1f} s after the second worker left"
    print(f"\nrebalance window: {lag_before} records processed and held, stored and committed "
          f"{flushed_after_s:.1f} s after a second worker joined; the rest settled {settled_after_s:.1f} s after "
          f"it left (window {WINDOW_S} s); {figures}")
