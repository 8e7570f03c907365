"""deploy/compose/haproxy.cfg in front of two real collectors: balanced, health-checked, API only.

The file is run by Debian's haproxy with two edits only: it listens on a free
loopback port, and the collectors are two ``server`` lines on loopback
instead of the Docker DNS template. Its ACLs, health check (``/ready`` on
the metrics port), retries and redispatch are the file's own. The collectors
are ``cxstream collector`` processes with the compose file's environment
(ports moved to free ones, the test broker and topics) on a real broker.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from pipeline.supervisor.ports import free_port, stop_process, wait_for_port
from pipeline.settings import Settings
from tests.integration.helpers import post_batch, wait_until

pytestmark = pytest.mark.integration

COMPOSE_DIR = Path(__file__).resolve().parents[2] / "deploy" / "compose"
WRITE_KEY, TENANT = "wk_shop_a", "shop-a"


def _count(metrics_port: int, series: str, status: str) -> int:
    text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    pattern = rf'^{series}\{{[^}}]*status="{status}"[^}}]*\}} (\S+)$'
    return int(sum(float(m.group(1)) for m in re.finditer(pattern, text, re.M)))


def _accepted(metrics_port: int) -> int:
    """Requests this collector answered with 200 (Kafka acknowledged their events)."""
    return _count(metrics_port, "cxstream_collector_requests_total", "200")


def _render_haproxy(front: int, collectors: list[tuple[int, int]]) -> str:
    cfg = (COMPOSE_DIR / "haproxy.cfg").read_text()
    cfg, n_bind = re.subn(r"^(\s*)bind :\d+$", rf"\1bind 127.0.0.1:{front}", cfg, flags=re.M)
    cfg, n_default = re.subn(r"check port \d+ (.*) resolvers docker init-addr none", r"check \1", cfg)
    servers = "\n".join(f"    server collector{i} 127.0.0.1:{p} check port {m}" for i, (p, m) in enumerate(collectors))
    cfg, n_server = re.subn(r"^\s*server-template .*$", servers, cfg, flags=re.M)
    assert (n_bind, n_default, n_server) == (1, 1, 1), "deploy/compose/haproxy.cfg changed shape: update this rendering"
    return cfg


def test_proxy_balances_collectors_and_keeps_accepting_when_one_stops(
    kafka: str, fresh_settings: Settings, tmp_path: Path
) -> None:
    if shutil.which("haproxy") is None:
        pytest.skip(reason="haproxy is not installed (Debian's haproxy package; infra/setup.sh --clickhouse-server)")
    compose_env = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())["services"]["collector"]["environment"]
    s = fresh_settings
    procs: list[subprocess.Popen] = []
    collectors = []
    proxy = None
    try:
        for i in range(2):
            port, metrics = free_port(), free_port()
            env = {
                **os.environ,
                **{k: str(v) for k, v in compose_env.items() if k.startswith("CX_") and "${" not in str(v)},
                "CX_KAFKA_BOOTSTRAP": kafka, "CX_KAFKA_PARTITIONS": "2",
                "CX_COLLECTOR_PORT": str(port), "CX_COLLECTOR_METRICS_PORT": str(metrics),
                "CX_PII_SALT": s.pii_salt + "-deploy", "CX_WRITE_KEYS": s.write_keys,
                "CX_TOPIC_EVENTS": s.topic_events, "CX_TOPIC_DEADLETTER": s.topic_deadletter,
                "CX_TOPIC_TRIGGERS": s.topic_triggers, "CX_DATA_DIR": str(tmp_path / f"c{i}"),
            }  # fmt: skip
            assert env["CX_COLLECTOR_HOST"] == env["CX_COLLECTOR_METRICS_HOST"] == "0.0.0.0"  # as the compose file sets
            log = open(tmp_path / f"collector{i}.log", "wb")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "collector"], env=env, stdout=log, stderr=subprocess.STDOUT,
            ))  # fmt: skip
            collectors.append((port, metrics))
        for proc, (port, metrics) in zip(procs, collectors):
            wait_for_port(port, timeout_s=60, alive=lambda p=proc: p.poll() is None)
            wait_for_port(metrics, timeout_s=60, alive=lambda p=proc: p.poll() is None)

        front = free_port()
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(_render_haproxy(front, collectors))
        proxy = subprocess.Popen(
            ["haproxy", "-db", "-f", str(cfg)], stdout=open(tmp_path / "haproxy.log", "wb"), stderr=subprocess.STDOUT
        )
        wait_for_port(front, timeout_s=30, alive=lambda: proxy.poll() is None)
        url = f"http://127.0.0.1:{front}"

        def message() -> dict:
            return {"type": "track", "event": "Product Viewed", "anonymousId": uuid.uuid4().hex, "messageId": uuid.uuid4().hex,
                    "properties": {"product_id": "sku-1"}}

        # Both collectors pass the /ready check (rise 2, every 5 s), then take turns.
        wait_until(lambda: all(requests.get(f"http://127.0.0.1:{m}/ready", timeout=5).ok for _, m in collectors),
                   timeout_s=60, what="both collectors ready")  # fmt: skip
        wait_until(lambda: post_batch(url, WRITE_KEY, [message()]).status_code == 200, timeout_s=60, what="the proxy")
        # Both servers up in haproxy (rise 2 x inter 5s): each collector answered a request through it.
        first = [_accepted(m) for _, m in collectors]
        wait_until(
            lambda: post_batch(url, WRITE_KEY, [message()]).status_code == 200
            and all(_accepted(m) > n for (_, m), n in zip(collectors, first)),
            timeout_s=60, what="both collectors answering through the proxy",
        )  # fmt: skip
        before = [_accepted(m) for _, m in collectors]
        statuses = [post_batch(url, WRITE_KEY, [message()]).status_code for _ in range(10)]
        assert statuses == [200] * 10
        gained = [_accepted(m) - b for (_, m), b in zip(collectors, before)]
        assert sum(gained) == 10
        assert min(gained) >= 4, f"round robin over two collectors, got {gained}"

        # Only the API and /health go through; the metrics stay private.
        assert requests.get(f"{url}/health", timeout=5).status_code == 200
        assert requests.get(f"{url}/metrics", timeout=5).status_code == 404
        assert requests.get(f"{url}/ready", timeout=5).status_code == 404

        # One collector stops: every request still gets 200 from the other.
        procs[0].terminate()
        procs[0].wait(timeout=60)
        survivor = collectors[1][1]
        survivor_before = _accepted(survivor), _count(survivor, "cxstream_collector_events_total", "accepted")
        statuses = [post_batch(url, WRITE_KEY, [message()]).status_code for _ in range(10)]
        assert statuses == [200] * 10
        assert _accepted(survivor) - survivor_before[0] == 10
        # ... and each event is on the events topic, none dead-lettered.
        assert _count(survivor, "cxstream_collector_events_total", "accepted") - survivor_before[1] == 10
    finally:
        stop_process(proxy)
        for proc in procs:
            stop_process(proc)
