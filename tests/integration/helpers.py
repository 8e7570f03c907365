"""Helpers for end-to-end runs: post to the collector, wait for ClickHouse, read triggers."""

from __future__ import annotations

import base64
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import orjson
import pytest
import requests
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from pipeline.supervisor.runner import Pipeline
from pipeline.settings import Settings
from pipeline.wire.topics import kafka_config
from pipeline.wire.triggers import decode_trigger

__all__ = ["BACKENDS", "e2e_pipeline", "post_batch", "wait_until", "read_triggers", "scalar"]

BACKENDS = ["chdb", "server"]


@contextmanager
def e2e_pipeline(
    request: pytest.FixtureRequest, kafka: str, settings: Settings, tmp_path: Path, write_key: str, **overrides: object
) -> Iterator[Pipeline]:
    """A running pipeline on the session's broker and ``request.param``'s ClickHouse (chdb or server).

    Its tenant, ``shop-<group>``, is unique to the test and the only one
    ``write_key`` writes: tests sharing the server never see each other's rows.
    """
    if request.param == "chdb":
        url = f"chdb://{tmp_path / 'chdb'}"
    else:
        url = request.getfixturevalue("clickhouse_server").url
    tenant = f"shop-{settings.worker_group}"
    settings = settings.model_copy(
        update={
            "kafka_bootstrap": kafka,
            "clickhouse_url": url,
            "collector_port": 0,
            "worker_web_port": 0,
            "write_keys": f"{write_key}={tenant}",
            **overrides,
        }
    )
    with Pipeline(settings) as running:
        running.tenant = tenant
        yield running


def post_batch(url: str, write_key: str, messages: list[dict]) -> requests.Response:
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    return requests.post(
        f"{url}/v1/batch",
        data=orjson.dumps({"batch": messages}),
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
        timeout=30,
    )


def wait_until(check: Callable[[], bool], timeout_s: float = 90.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def scalar(pipeline: Pipeline, sql: str):
    _, rows = pipeline.query(sql)
    return rows[0][0] if rows else None


def read_triggers(pipeline: Pipeline, expected: int, timeout_s: float = 30.0) -> list[dict]:
    """Every record of the triggers topic, read from the start (fails on more or fewer than ``expected``).

    Reads until each partition reports its end with at least ``expected``
    records read, or until the timeout. The partitions are assigned, not
    subscribed to: a reader joins no consumer group and waits for no rebalance.
    """
    s = pipeline.settings
    consumer = Consumer(
        {
            **kafka_config(s, pipeline.bootstrap),
            "group.id": f"{s.worker_group}-reader",  # required by the client; never joined
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    out: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        topic = s.topic_triggers
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        while time.monotonic() < deadline and not (len(at_end) == len(partitions) and len(out) >= expected):
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                continue
            at_end.discard(msg.partition())
            out.append(decode_trigger(msg.value(), s.trigger_format) | {"_key": msg.key()})
    finally:
        consumer.close()
    return out


def worker_stats(pipeline: Pipeline) -> dict:
    """The running worker's ``/cx/stats`` (records, events, batches, seconds per step)."""
    return requests.get(
        f"http://127.0.0.1:{pipeline.worker_port}/cx/stats", headers=pipeline.worker_headers, timeout=10
    ).json()


def embedded_settings(settings: Settings, kafka: str, tmp_path: Path, write_key: str, **overrides: object) -> Settings:
    """``settings`` for a Pipeline on the session's broker and a chdb store in ``tmp_path``.

    Its tenant, ``shop-<group>``, is the only one ``write_key`` writes.
    """
    return settings.model_copy(
        update={
            "kafka_bootstrap": kafka,
            "clickhouse_url": f"chdb://{tmp_path / 'chdb'}",
            "collector_port": 0,
            "worker_web_port": 0,
            "write_keys": f"{write_key}=shop-{settings.worker_group}",
            **overrides,
        }
    )
