"""Helpers for end-to-end runs: post to the collector, wait for ClickHouse, read triggers."""

from __future__ import annotations

import base64
import time
from typing import Callable

import orjson
import requests
from confluent_kafka import Consumer

from pipeline.runner import Pipeline
from pipeline.topics import kafka_config
from pipeline.triggers import decode_trigger

__all__ = ["post_batch", "wait_until", "read_triggers", "scalar"]


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
    """Read ``expected`` records from the triggers topic (fails on more or fewer)."""
    s = pipeline.settings
    consumer = Consumer(
        {
            **kafka_config(s, pipeline.bootstrap),
            "group.id": f"{s.worker_group}-reader",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([s.topic_triggers])
    out: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and len(out) <= expected:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                if len(out) == expected and time.monotonic() > deadline - timeout_s + 8:
                    break
                continue
            out.append(decode_trigger(msg.value(), s.trigger_format) | {"_key": msg.key()})
    finally:
        consumer.close()
    return out
