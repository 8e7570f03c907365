"""What the delivery tests share: triggers on a real topic, the deliver process, offsets, topic contents."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.settings import Settings
from pipeline.wire.topics import ensure_topics, kafka_config

__all__ = ["SECRET", "assert_schema", "committed", "make_trigger", "produce", "read_topic", "start_deliver", "wait_for", "write_config"]

SECRET = "whsec-test-0123456789abcdef"


def make_trigger(i: int, kind: str = "cart_abandoned", action: str = "offer", tenant: str = "shop-a") -> dict:
    """A public trigger record (docs/events.md) with a unique id."""
    t_ms = 1_780_000_000_000 + i * 1000
    return {
        "trigger_id": f"tr-{i:05d}",
        "kind": kind,
        "tenant": tenant,
        "customer_id": f"cust-{i % 17}",
        "anonymous_id": f"anon-{i}",
        "session_id": f"s-{i}",
        "cart_id": f"cart-{i}",
        "cart_value": 120.5,
        "currency": "EUR",
        "items": [{"product_id": "p-1", "name": "Mug", "price": 60.25, "quantity": 2}],
        "event_time": t_ms,
        "emitted_at": t_ms + 5,
        "reasons": ["inactive_30m"],
        "friction_score": 0,
        "action": action,
        "offer": {"code": f"CX-{i}", "discount_pct": 15, "expires_at": t_ms + 172_800_000, "channel": "email"}
        if action == "offer"
        else None,
        "holdout": action == "none",
        "experiment": "default",
    }


def produce(
    settings: Settings, bootstrap: str, triggers: list[dict | bytes], where: dict | None = None
) -> dict[int, int]:
    """Put ``triggers`` on the triggers topic (JSON, key = customer id); returns each partition's end offset.

    A ``bytes`` item is put as it is, with key ``cust-0``.

    ``where``, if given, is filled with ``(partition, offset) -> trigger_id``.
    """
    ensure_topics(settings, bootstrap)
    producer = Producer({**kafka_config(settings, bootstrap), "linger.ms": 5})
    ends: dict[int, int] = {}
    errors: list = []

    def report(err, msg) -> None:  # noqa: ANN001
        if err is not None:
            errors.append(err)
        else:
            ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)
            if where is not None:
                where[(msg.partition(), msg.offset())] = orjson.loads(msg.value()).get("trigger_id")

    for t in triggers:
        if isinstance(t, bytes):
            producer.produce(settings.topic_triggers, key=b"cust-0", value=t, on_delivery=report)
        else:
            producer.produce(settings.topic_triggers, key=t["customer_id"].encode(), value=orjson.dumps(t), on_delivery=report)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not errors, errors
    return ends


def committed(settings: Settings, bootstrap: str, partitions: int) -> dict[int, int]:
    """The deliver group's committed offset of each triggers partition (-1001: none)."""
    consumer = Consumer({**kafka_config(settings, bootstrap), "group.id": settings.delivery_group, "enable.auto.commit": False})
    try:
        tps = consumer.committed([TopicPartition(settings.topic_triggers, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


def read_topic(settings: Settings, bootstrap: str, topic: str, idle_s: float = 2.0) -> list[dict]:
    """Every record of ``topic`` as JSON, read from the beginning by a consumer outside any group."""
    consumer = Consumer({**kafka_config(settings, bootstrap), "group.id": "cx-test-reader", "enable.auto.commit": False})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        out, last = [], time.monotonic()
        while time.monotonic() - last < idle_s:
            for msg in consumer.consume(500, timeout=0.3):
                if msg.error() is None:
                    out.append(orjson.loads(msg.value()))
                    last = time.monotonic()
        return out
    finally:
        consumer.close()


def assert_schema(records: list[dict], name: str) -> None:
    """Every record is valid for ``schemas/<name>.avsc`` (the schema documents the JSON records)."""
    import fastavro.validation

    from schemas import load_schema

    for record in records:
        fastavro.validation.validate(record, load_schema(name), raise_errors=True)


def write_config(path: Path, destinations: list[dict]) -> Path:
    """A TOML delivery config of ``destinations`` (plain values and lists only)."""
    lines = []
    for d in destinations:
        lines.append("[[destination]]")
        for key, value in d.items():
            lines.append(f"{key} = {orjson.dumps(value).decode()}")
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def start_deliver(settings: Settings, bootstrap: str, log_path: Path, **env: str) -> subprocess.Popen:
    """``python -m pipeline.cli deliver`` with ``settings``, its output appended to ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "deliver"],
            env={**os.environ, **settings.to_env(), "CX_KAFKA_BOOTSTRAP": bootstrap, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def wait_for(check, timeout_s: float, what: str, proc: subprocess.Popen | None = None, log_path: Path | None = None) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"deliver exited with {proc.returncode} while waiting for {what}:\n{log_path.read_text()[-3000:] if log_path else ''}")
        time.sleep(0.25)
    tail = log_path.read_text()[-3000:] if log_path is not None else ""
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{tail}")
