"""The pipeline the fault-injection runs attack: real broker, real ClickHouse server, short sessions."""

from __future__ import annotations

import pytest

from pipeline.supervisor.runner import Pipeline
from pipeline.settings import Settings
from tests.chaos.common import chaos_settings


@pytest.fixture
def pipeline(kafka: str, clickhouse_server, fresh_settings: Settings):
    tenant = f"shop-{fresh_settings.worker_group}"
    settings = chaos_settings(fresh_settings, kafka, clickhouse_server.url)
    with Pipeline(settings) as running:
        running.tenant = tenant
        yield running
