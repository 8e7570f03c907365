"""The Faust app built from the settings."""

from __future__ import annotations

import asyncio

from pipeline.app import create_app
from pipeline.settings import Settings


def test_worker_consumer_fetch_wait_comes_from_the_settings() -> None:
    # faust-streaming hard-codes 1,500 ms; the embedded broker answers a fetch
    # only when the wait runs out, so this is the latency floor there.
    async def created_wait() -> int:
        app = create_app(Settings(_env_file=None, kafka_fetch_wait_ms=20), "127.0.0.1:9")
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()  # never started: releases what the constructor holds

    assert asyncio.run(created_wait()) == 20


def test_fetch_wait_defaults_to_100_ms() -> None:
    assert Settings(_env_file=None).kafka_fetch_wait_ms == 100
