"""A worker started with deploy/k8s/worker.yaml's environment answers its probes from off the pod.

The kubelet probes a pod's IP, not its loopback: the worker runs with the
manifest's settings (``CX_WORKER_WEB_BIND`` included; only the broker,
ClickHouse, topics, the replication factor and the port are the test's), the
token file placed as the Secret mount places it, and the probes are sent to
this machine's non-loopback address: liveness and readiness answer without
a token, ``/metrics`` (the scrape annotation's path) only with the token.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from pipeline.supervisor.ports import free_port, stop_process, wait_for_port
from pipeline.settings import Settings
from pipeline.webtoken import TOKEN_FILE, worker_headers
from tests.integration.helpers import wait_until

pytestmark = pytest.mark.integration

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


def _outward_address() -> str:
    """This machine's address on its default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("192.0.2.1", 9))
        return sock.getsockname()[0]


def _worker_manifest() -> tuple[dict[str, str], dict]:
    docs = [d for f in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "cxstream")["data"]
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "cxstream-worker")
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    env = {**config, **{e["name"]: str(e["value"]) for e in container["env"]}}
    return env, container


def test_worker_with_the_manifest_env_answers_probes_on_its_pod_address(
    kafka: str, clickhouse_server, fresh_settings: Settings, tmp_path: Path
) -> None:
    address = _outward_address()
    if address.startswith("127."):
        pytest.skip(reason="this machine has no non-loopback IPv4 address to probe from")
    manifest_env, container = _worker_manifest()
    s = fresh_settings
    port = free_port()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    token = "token-from-the-secret-mount-0123456789abcdef"
    (data_dir / TOKEN_FILE).write_text(token + "\n")
    (data_dir / TOKEN_FILE).chmod(0o440)  # the Secret's defaultMode
    env = {
        **os.environ, **manifest_env,
        "CX_KAFKA_BOOTSTRAP": kafka, "CX_KAFKA_PARTITIONS": "2", "CX_KAFKA_REPLICATION": "1",
        "CX_CLICKHOUSE_URL": clickhouse_server.url, "CX_WORKER_WEB_PORT": str(port), "CX_DATA_DIR": str(data_dir),
        "CX_TOPIC_EVENTS": s.topic_events, "CX_TOPIC_TRIGGERS": s.topic_triggers,
        "CX_TOPIC_DEADLETTER": s.topic_deadletter, "CX_TOPIC_DELIVERIES": s.topic_deliveries,
        "CX_WORKER_GROUP": s.worker_group, "CX_PII_SALT": "a-test-salt",
    }  # fmt: skip
    assert manifest_env["CX_WORKER_WEB_BIND"] == "0.0.0.0"
    probes = {k: container[k]["httpGet"]["path"] for k in ("livenessProbe", "readinessProbe")}
    notes_path = "/metrics"  # the pod's prometheus.io/path (tests/deploy/test_manifests.py checks it)
    log = open(tmp_path / "worker.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, host=address, timeout_s=120, alive=lambda: proc.poll() is None)
        base = f"http://{address}:{port}"
        assert requests.get(base + probes["livenessProbe"], timeout=5).status_code == 200
        wait_until(
            lambda: requests.get(base + probes["readinessProbe"], timeout=5).status_code == 200,
            timeout_s=120, what="the worker's readiness (assigned and caught up)",
        )  # fmt: skip
        assert requests.get(base + notes_path, timeout=5).status_code == 401
        scraped = requests.get(base + notes_path, headers=worker_headers(token), timeout=5)
        assert scraped.status_code == 200
        assert "cxstream_" in scraped.text
        assert requests.post(base + "/cx/query", json={"sql": "SELECT 1"}, timeout=5).status_code == 401
    finally:
        stop_process(proc, timeout_s=60)
        log.close()
