"""deploy/compose/docker-compose.yml for real: one event posted through HAProxy lands in ClickHouse.

Needs a Docker engine and the compose plugin (it builds the image from
deploy/Dockerfile and pulls Kafka, ClickHouse, HAProxy and Prometheus);
skipped with the reason otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from infra.clickhouse_server import docker_available
from pipeline.supervisor.ports import free_port
from tests.integration.helpers import post_batch, wait_until

pytestmark = pytest.mark.integration

COMPOSE_DIR = Path(__file__).resolve().parents[2] / "deploy" / "compose"
WRITE_KEY, TENANT = "deploy_test_key", "deploy-shop"


def _compose_plugin() -> tuple[bool, str]:
    if shutil.which("docker") is None:
        return False, "no docker client"
    done = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    return done.returncode == 0, (done.stderr or done.stdout).strip()


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    ok, why = docker_available()
    if not ok:
        pytest.skip(reason=f"no Docker engine to start the compose file: {why}")
    ok, why = _compose_plugin()
    if not ok:
        pytest.skip(reason=f"docker compose is not available: {why}")
    from testcontainers.compose import DockerCompose

    port = free_port()
    password = uuid.uuid4().hex
    env_file = tmp_path / "test.env"
    env_file.write_text(
        f"CX_PII_SALT={uuid.uuid4().hex}\nCX_WRITE_KEYS={WRITE_KEY}={TENANT}\n"
        f"CLICKHOUSE_PASSWORD={password}\nCX_KAFKA_PARTITIONS=2\nPUBLIC_PORT={port}\n"
        f"PROMETHEUS_PORT={free_port()}\n"
    )
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", f"cxdeploytest{uuid.uuid4().hex[:8]}")
    compose = DockerCompose(COMPOSE_DIR, compose_file_name="docker-compose.yml", env_file=str(env_file), build=True, wait=True)
    compose.start()
    try:
        yield compose, f"http://127.0.0.1:{port}", password
    finally:
        compose.stop(down=True)


def test_event_posted_through_the_proxy_lands_in_clickhouse(stack) -> None:
    compose, url, password = stack
    anonymous_id = f"deploy-{uuid.uuid4().hex}"
    message = {
        "type": "track", "event": "Product Viewed", "anonymousId": anonymous_id,
        "messageId": uuid.uuid4().hex, "timestamp": datetime.now(timezone.utc).isoformat(),
        "properties": {"product_id": "sku-1", "price": 12.5},
    }  # fmt: skip

    def accepted() -> bool:
        try:
            return post_batch(url, WRITE_KEY, [message]).status_code == 200
        except OSError:
            return False

    wait_until(accepted, timeout_s=120, what="the proxy to accept the event (a collector ready)")

    def stored() -> int:
        out, _, code = compose.exec_in_container(
            ["clickhouse-client", "--user", "cx", "--password", password, "--query",
             f"SELECT count() FROM cx.events WHERE tenant = '{TENANT}' AND anonymous_id = '{anonymous_id}'"],
            service_name="clickhouse",
        )  # fmt: skip
        return int(out.strip()) if code == 0 and out.strip().isdigit() else 0

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and stored() == 0:
        time.sleep(1)
    assert stored() == 1
