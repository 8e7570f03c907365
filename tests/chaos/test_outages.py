"""Fault injection beyond the worker's own crashes: ClickHouse down, a rebalance, the broker down, hostile input.

Each run streams a reproducible day of the demo shop through the real
collector, broker, worker(s) and clickhouse-server, injects its fault
mid-stream, and then requires exactly the numbers of a crash-free
in-process run (``tests/chaos/reference.py``). Each prints its figures.
"""

from __future__ import annotations

import base64
import time
import typing

import pytest
import orjson
import requests

from pipeline.wire.records import DeadLetterReason
from pipeline.supervisor.runner import Pipeline
from sinks.client import connect
from tests.chaos.common import day_of_traffic, post, settle_and_check, wait_caught_up, worker_stats
from tests.chaos.poison import INJECTIONS, batch_poison, oversize_event, raw_poison
from tests.integration.helpers import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.integration]



def _send(pipeline: Pipeline, messages: list[dict]) -> None:
    for i in range(0, len(messages), 50):
        post(pipeline, messages[i : i + 50])


@pytest.mark.parametrize("outage_s", [pytest.param(10), pytest.param(30, marks=pytest.mark.slow)], ids=["10s", "30s"])
def test_clickhouse_down_mid_stream_holds_back_commits_then_catches_up_exactly(
    pipeline: Pipeline, clickhouse_server, outage_s: int
) -> None:
    day = day_of_traffic(pipeline, seed=41, visitors=120)
    half = len(day.messages) // 2
    _send(pipeline, day.messages[:half])
    wait_caught_up(pipeline, "the first half committed", {"worker": pipeline.worker_port})

    worker_url = f"http://{pipeline.worker_host}:{pipeline.worker_port}"

    def store_check() -> tuple[int, bool]:
        answer = requests.get(f"{worker_url}/ready", timeout=10)
        return answer.status_code, answer.json()["checks"]["store"]

    assert store_check() == (200, True)
    clickhouse_server.stop()
    try:
        _send(pipeline, day.messages[half:])  # the collector only needs Kafka
        lags, readiness = [], []
        deadline = time.monotonic() + outage_s
        while time.monotonic() < deadline:
            lags.append(pipeline.lag())
            readiness.append(store_check())
            assert pipeline.procs["worker"].poll() is None, "the worker died while ClickHouse was down"
            time.sleep(2)
    finally:
        clickhouse_server.start()
    # Nothing the worker could not store was committed, during the whole outage.
    assert min(lags) > 0, lags
    # /ready said so: 503 with the store check failing once an insert had failed.
    assert (503, False) in readiness, readiness
    assert all(status == 503 for status, store in readiness if not store), readiness
    figures = settle_and_check(pipeline, day, f"after a {outage_s} s ClickHouse outage")
    wait_until(lambda: store_check() == (200, True), timeout_s=30, what="the worker ready again")
    metrics = requests.get(f"{worker_url}/metrics", headers=pipeline.worker_headers, timeout=10).text
    transient = sum(
        float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
        if line.startswith("cxstream_clickhouse_insert_errors_total{") and 'class="transient"' in line
    )  # fmt: skip
    assert transient >= 1, metrics
    print(f"\nchaos clickhouse down {outage_s} s: lag held at {min(lags)}..{max(lags)} records, "
          f"{transient:.0f} failed inserts counted, /ready 503 in {sum(s == 503 for s, _ in readiness)} of "
          f"{len(readiness)} probes, {figures}")


def test_second_worker_joins_and_leaves_mid_stream_without_loss_or_double_count(pipeline: Pipeline) -> None:
    day = day_of_traffic(pipeline, seed=43, visitors=120)
    third = len(day.messages) // 3
    _send(pipeline, day.messages[:third])
    port = pipeline.start_worker("worker-2")
    # Send the second third only once the rebalance gave worker-2 partitions: before
    # that, the first worker alone could consume all of it and nothing would move.
    wait_until(lambda: worker_stats(pipeline, port)["events_partitions"] > 0, what="worker-2 assigned partitions")
    _send(pipeline, day.messages[third : 2 * third])
    wait_caught_up(pipeline, "both workers caught up", {"worker": pipeline.worker_port, "worker-2": port})
    records_2 = worker_stats(pipeline, port)["records"]
    pipeline.stop_worker("worker-2")
    _send(pipeline, day.messages[2 * third :])
    figures = settle_and_check(pipeline, day, "after a second worker came and went")
    print(f"\nchaos rebalance: worker-2 processed {records_2} records while it ran, {figures}")
    assert records_2 > 0, "the second worker never got a partition: no rebalance was tested"


def test_poison_input_is_dead_lettered_or_stored_as_text_and_never_stalls(pipeline: Pipeline) -> None:
    probe = day_of_traffic(pipeline, seed=47, visitors=60)
    ts = probe.messages[len(probe.messages) // 2]["timestamp"]
    poison = batch_poison(ts)
    day = day_of_traffic(pipeline, seed=47, visitors=60, extra=poison)
    half = len(day.messages) // 2
    # Hostile messages travel in the middle of normal traffic, in batches with good ones.
    _send(pipeline, day.messages[:half])
    auth = base64.b64encode(b"wk_chaos:").decode()
    refused = 0
    for body in [*raw_poison(), orjson.dumps({"batch": [oversize_event(ts)]})]:
        resp = requests.post(
            f"{pipeline.collector_url}/v1/batch",
            data=body,
            headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
            timeout=30,
        )
        assert resp.status_code == 400, (body, resp.status_code, resp.text)
        refused += 1
    _send(pipeline, day.messages[half:])
    figures = settle_and_check(pipeline, day, "with poison mixed in", extra_deadletters=refused)

    ch = connect(pipeline.settings.clickhouse_url)
    try:
        reasons = dict(ch.query(
            "SELECT reason, count() FROM cx.deadletters FINAL WHERE tenant = %(t)s GROUP BY reason",
            {"t": pipeline.tenant},
        )[1])
        for text in INJECTIONS:
            stored = ch.query(
                "SELECT count() FROM cx.events FINAL WHERE tenant = %(t)s AND anonymous_id = %(x)s AND event = %(x)s",
                {"t": pipeline.tenant, "x": text},
            )[1]
            assert [tuple(r) for r in stored] == [(1,)], text
    finally:
        ch.close()
    assert set(reasons) <= set(typing.get_args(DeadLetterReason)), reasons
    assert {"wrong_type", "unknown_type", "schema_violation", "too_far_future", "too_old", "oversize", "bad_json",
            "bad_encoding"} <= set(reasons), reasons
    print(f"\nchaos poison: {len(poison)} hostile messages in batches + {refused} refused requests (unreadable or oversize), "
          f"dead letters by reason {reasons}, {figures}")
