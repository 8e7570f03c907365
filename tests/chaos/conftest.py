"""The pipeline the fault-injection runs attack: real broker, real ClickHouse server, short sessions."""

from __future__ import annotations

import pytest

from pipeline.runner import Pipeline
from pipeline.settings import Settings


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
            "batch_max_records": 200,
            "sink_max_interval_ms": 200,
        }
    )
    with Pipeline(settings) as running:
        running.tenant = tenant
        yield running
