"""Fixtures for the collector's unit tests: settings, a fixed receive clock, an HTTP client on a fake producer."""

from __future__ import annotations

import base64
from datetime import datetime

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipeline.collector.server import make_app
from pipeline.settings import Settings
from tests.collector.fakes import FakeProducer


def ms(iso: str) -> int:
    """Epoch ms of an ISO-8601 UTC time, for writing expected values by hand."""
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def basic(key: str) -> dict[str, str]:
    """The Authorization header Segment SDKs send: the write key as basic-auth user, empty password."""
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


# Every unit test receives its requests at this instant.
RECEIVED = "2024-03-10T10:00:02+00:00"


@pytest.fixture
def settings() -> Settings:
    return Settings(
        _env_file=None,
        write_keys="wk_shop_a=shop-a,wk_shop_b=shop-b",
        pii_salt="test-salt",
        kafka_partitions=4,
    )


@pytest.fixture
def producer() -> FakeProducer:
    return FakeProducer(partitions=4)


@pytest.fixture
async def client(settings: Settings, producer: FakeProducer):
    app = make_app(settings, producer, now_ms=lambda: ms(RECEIVED))
    async with TestClient(TestServer(app)) as c:
        yield c
