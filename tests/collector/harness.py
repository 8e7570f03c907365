"""A collector on a real broker for tests: its settings, its thread, and reading back what it wrote."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pipeline.supervisor.ports import free_port, wait_for_port
from pipeline.collector.server import run_collector
from pipeline.wire.records import decode_batch
from pipeline.settings import Settings
from pipeline.wire.topics import ensure_topics

__all__ = ["CollectorThread", "collector_settings", "event_count", "read_topic"]


def collector_settings(
    bootstrap: str, name: str, *, partitions: int, write_key: str, tenant: str, **extra: object
) -> Settings:
    """Settings for a collector on ``bootstrap`` writing to topics ``<name>.*``, created here.

    ``write_key`` writes ``tenant``; the salt is ``<name>-salt`` unless ``extra`` gives one.
    """
    settings = Settings(
        _env_file=None,
        kafka_bootstrap=bootstrap,
        kafka_partitions=partitions,
        collector_port=free_port(),
        collector_metrics_port=0,  # any free port: tests run side by side
        topic_events=f"{name}.events",
        topic_deadletter=f"{name}.deadletter",
        topic_triggers=f"{name}.triggers",
        write_keys=f"{write_key}={tenant}",
        **{"pii_salt": f"{name}-salt", **extra},
    )
    ensure_topics(settings, bootstrap)
    return settings


class CollectorThread:
    """``run_collector`` on its own event loop in a thread, as the CLI runs it (blocking SDK calls stay outside)."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task | None = None
        self._thread = threading.Thread(target=self._run, name="collector", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.collector_port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(run_collector(self.settings, self.bootstrap))
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            self._loop.close()

    def start(self) -> CollectorThread:
        self._thread.start()
        wait_for_port(self.settings.collector_port, timeout_s=20, alive=self._thread.is_alive)
        return self

    def stop(self) -> None:
        """Cancel ``run_collector``: it stops accepting, finishes requests, flushes the producer."""
        self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout=40)


def read_topic(bootstrap: str, topic: str, done: Callable[[list], bool], timeout_s: float = 20.0) -> list:
    """Records of ``topic`` (all partitions, from the beginning) until ``done(records)`` or the timeout."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}", "enable.auto.commit": False}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out: list = []
        deadline = time.monotonic() + timeout_s
        while not done(out) and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                out.append(msg)
        return out
    finally:
        consumer.close()


def event_count(n: int) -> Callable[[list], bool]:
    return lambda records: sum(len(decode_batch(m.value())) for m in records) >= n
