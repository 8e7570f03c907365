"""``cxstream status`` of an ``up`` with ``CX_COLLECTOR_PROCESSES=2``: both collector processes, summed.

Each collector process counts only the requests it answered, on its own
metrics port (the first port + i). ``up`` records every one in run.json and
``cxstream status`` scrapes them all, so its collector is the sum of both.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from pipeline.collector.processes import reuse_port_available
from pipeline.supervisor.runner import Pipeline
from pipeline.settings import Settings
from pipeline.status import collect, total
from tests.integration.helpers import embedded_settings, post_batch, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not reuse_port_available(), reason="SO_REUSEPORT is not available on this platform"),
]

WRITE_KEY = "wk_status2"
REQUESTS = 40


def _accepted(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=5).text
    return sum(
        float(m.group(1))
        for m in re.finditer(r'^cxstream_collector_events_total\{[^}]*status="accepted"[^}]*\} (\S+)$', text, re.M)
    )


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/ready", timeout=5).status_code == 200
    except requests.ConnectionError:  # not listening yet
        return False


def test_status_sums_every_collector_process_of_up(kafka: str, fresh_settings: Settings, tmp_path: Path) -> None:
    settings = embedded_settings(fresh_settings, kafka, tmp_path, WRITE_KEY, collector_processes=2, dashboard_enabled=False)
    with Pipeline(settings) as running:
        info = json.loads((settings.data_dir / "run.json").read_text())
        urls = info["collector_metrics_urls"]
        assert len(urls) == 2 and urls[0] == info["collector_metrics_url"]
        assert int(urls[1].rsplit(":", 1)[1]) == int(urls[0].rsplit(":", 1)[1]) + 1
        wait_until(lambda: all(_ready(u) for u in urls),
                   what="both collector processes ready")  # fmt: skip
        # One message per request, each on a new connection: the kernel spreads them over the two.
        for i in range(REQUESTS):
            batch = [{"type": "track", "event": "Product Viewed", "anonymousId": f"a-{i}", "messageId": f"m-{i}",
                      "properties": {"product_id": "p-1"}}]  # fmt: skip
            assert post_batch(running.collector_url, WRITE_KEY, batch).status_code == 200
        per_process = [_accepted(u) for u in urls]
        assert sum(per_process) == REQUESTS and min(per_process) > 0, per_process

        assert running.wait_drained(90)
        wait_until(lambda: _ready(f"http://{running.worker_host}:{running.worker_port}"), what="the worker ready")
        snap = collect(settings, info, 0.2, running.query)
        assert snap.collector.name == "collector (2 processes)"
        assert (snap.collector.alive, snap.collector.ready) == (True, True)
        assert total(snap.collector.second, "cxstream_collector_events_total", status="accepted") == REQUESTS

        env = {k: v for k, v in os.environ.items() if not k.startswith("CX_")}
        env.update({"CX_DATA_DIR": str(settings.data_dir), "CX_CLICKHOUSE_URL": settings.clickhouse_url, "COLUMNS": "200"})
        status = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "status", "--interval", "0.5"], env=env, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        assert status.returncode == 0, status.stdout + status.stderr
        assert re.search(r"collector \(2 processes\)\s+│ yes\s+│ yes\s+│ 0\s+│ all checks pass", status.stdout), status.stdout
