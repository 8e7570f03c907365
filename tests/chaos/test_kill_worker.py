"""Fault injection: ``kill -9`` the worker again and again while a day of storefront traffic streams in.

The Kafka Streams EOS system tests kill instances in a loop and count; so
does this. The worker is killed at random moments (0-1 s after it started
processing; offsets are committed every second, so many kills fall between
a ClickHouse insert and its commit: the records processed again are counted
and must be more than zero), restarted each
time, and at the end ClickHouse must hold exactly what a crash-free
in-process run produces: every event once, every dead letter once, every
expected trigger id, no other trigger, and the ledger's KPIs.

Short version in the default run (20 kills); ``CX_SLOW=1`` runs 100.
"""

from __future__ import annotations

import base64
import os
import random
import time
from datetime import datetime, timezone

import orjson
import pytest
import requests

from pipeline.collector.partitioner import partition_for_key
from pipeline.demo.storefront import generate
from pipeline.records import visitor_key
from pipeline.runner import Pipeline
from pipeline.settings import Settings
from tests.chaos.reference import reference_run
from tests.integration.helpers import scalar, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

DAY_MS = 86_400_000


def _post(url: str, write_key: str, messages: list[dict]) -> None:
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    for attempt in range(20):
        resp = requests.post(
            f"{url}/v1/batch",
            data=orjson.dumps({"batch": messages}),
            headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
            timeout=30,
        )
        if resp.status_code == 200:
            return
        time.sleep(0.5)
    raise AssertionError(f"collector kept answering {resp.status_code}: {resp.text}")


def _clock_pages(tenant: str, partitions: int, now_ms: int) -> list[dict]:
    """One page view per partition at the present time: moves every partition's event time to now."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < partitions:
        anon = f"clock-{i}"
        found.setdefault(partition_for_key(visitor_key(tenant, anon, None).encode(), partitions), anon)
        i += 1
    ts = datetime.fromtimestamp(now_ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [{"type": "page", "anonymousId": a, "properties": {"path": "/"}, "timestamp": ts, "messageId": a} for a in found.values()]


def _stats(pipeline: Pipeline) -> dict:
    resp = requests.get(f"http://127.0.0.1:{pipeline.worker_port}/cx/stats", timeout=10)
    return resp.json()


@pytest.fixture
def pipeline(kafka: str, clickhouse_server, fresh_settings: Settings):
    tenant = f"shop-{fresh_settings.worker_group}"
    settings = fresh_settings.model_copy(
        update={
            "kafka_bootstrap": kafka,
            "clickhouse_url": clickhouse_server.url,
            "collector_port": 0,
            "worker_web_port": 0,
            "write_keys": f"wk_chaos={tenant}",
            "worker_session_timeout_s": 3.0,
            "batch_max_events": 200,
            "sink_max_interval_ms": 200,
        }
    )
    with Pipeline(settings) as running:
        running.tenant = tenant
        yield running


@pytest.mark.parametrize(
    "kills", [20, pytest.param(100, marks=pytest.mark.slow)], ids=["short-20-kills", "long-100-kills"]
)
def test_kill_9_worker_repeatedly_loses_nothing_and_counts_nothing_twice(pipeline: Pipeline, kills: int) -> None:
    tenant = pipeline.tenant
    now_ms = int(time.time() * 1000)
    visitors = 150 if kills <= 20 else 600
    # The UTC day before yesterday: the same traffic on every run, and every deadline long past.
    start_ms = (now_ms // DAY_MS - 2) * DAY_MS
    traffic = generate(31, visitors=visitors, start_ms=start_ms, span_ms=DAY_MS)
    messages = traffic.messages + _clock_pages(tenant, pipeline.settings.kafka_partitions, now_ms)
    ref = reference_run(messages, tenant, pipeline.settings, now_ms)
    exp = traffic.expected
    assert ref.deadletters == exp.invalid
    assert len(ref.trigger_ids.get("cart_abandoned", ())) == exp.abandoned_carts

    # Each round: send the next slice of the stream (in order, 50 messages a
    # request), wait until the new worker is processing, kill it 0-1 s later
    # (the offset commit runs every second, so most kills land between a
    # ClickHouse insert and its commit), start a new one.
    rng = random.Random(kills)
    per_round = -(-len(messages) // kills)
    processed = 0  # records the killed workers had processed (read just before each kill)
    for i in range(kills):
        part = messages[i * per_round : (i + 1) * per_round]
        for j in range(0, len(part), 50):
            _post(pipeline.collector_url, "wk_chaos", part[j : j + 50])
        wait_until(lambda: _stats(pipeline)["records"] > 0, timeout_s=120, what=f"worker {i + 1} processing")
        time.sleep(rng.uniform(0.0, 1.0))
        processed += _stats(pipeline)["records"]
        pipeline.kill_worker()
        pipeline.start_worker()

    t = f"tenant = '{tenant}'"
    wait_until(
        lambda: scalar(pipeline, f"SELECT count() FROM cx.events FINAL WHERE {t}") == ref.events
        and scalar(pipeline, f"SELECT count() FROM cx.triggers FINAL WHERE {t} AND kind = 'cart_abandoned'")
        == exp.abandoned_carts,
        timeout_s=240,
        what=f"{ref.events} events and {exp.abandoned_carts} abandonment triggers after {kills} kills",
    )
    stored = scalar(pipeline, f"SELECT count() FROM cx.events FINAL WHERE {t}")
    distinct = scalar(pipeline, f"SELECT uniqExact(event_id) FROM cx.events FINAL WHERE {t}")
    _, rows = pipeline.query(f"SELECT kind, trigger_id FROM cx.triggers FINAL WHERE {t}")
    got: dict[str, set[str]] = {}
    for kind, trigger_id in rows:
        got.setdefault(kind, set()).add(trigger_id)
    deadletters = scalar(pipeline, f"SELECT count() FROM cx.deadletters FINAL WHERE {t}")
    _, kpi = pipeline.query(f"SELECT sum(carts), sum(orders) FROM cx.kpi_daily WHERE {t}")
    replayed = processed + _stats(pipeline)["records"] - pipeline.records_produced()
    print(
        f"\nchaos kill -9: {kills} crashes, {len(messages)} messages sent, {ref.events} events expected, "
        f"{stored} stored, lost {ref.events - distinct}, duplicated {stored - distinct}, "
        f"at least {replayed} Kafka records processed again after a crash, "
        f"triggers {sum(map(len, got.values()))} of {sum(map(len, ref.trigger_ids.values()))} expected"
    )
    assert (stored, distinct) == (ref.events, ref.events)
    assert replayed > 0, "no kill landed between processing and commit: the run proved nothing"
    assert deadletters == exp.invalid
    missing = {k: v - got.get(k, set()) for k, v in ref.trigger_ids.items() if v - got.get(k, set())}
    extra = {k: v - ref.trigger_ids.get(k, set()) for k, v in got.items() if v - ref.trigger_ids.get(k, set())}
    assert (missing, extra) == ({}, {}), pipeline.query(
        f"SELECT kind, cart_key, event_time_ms, trigger_id FROM cx.triggers FINAL WHERE {t} ORDER BY cart_key"
    )[1]
    assert [int(v) for v in kpi[0]] == [exp.carts, exp.orders]
