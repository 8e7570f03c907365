"""``CX_LOG_FORMAT=json``: every line ``cxstream up`` and its collector, worker and dashboard write is one JSON object."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import requests

pytestmark = pytest.mark.integration


def test_up_collector_worker_and_dashboard_write_only_json_lines(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CX_")}
    env.update({"CX_DATA_DIR": str(data), "CX_COLLECTOR_PORT": "0", "CX_PII_SALT": "test-salt", "CX_LOG_FORMAT": "json"})
    out = tmp_path / "up.out"
    with open(out, "wb") as sink:
        up = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "up"], env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (data / "run.json").exists():
            assert up.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.5)
        info = json.loads((data / "run.json").read_text())
        # Some traffic (a dead letter through collector and worker); the worker's own error lines with
        # their record context are checked in test_prometheus.py.
        assert requests.post(f"{info['collector_url']}/v1/batch", data=b"{oops", auth=("demo_write_key", ""), timeout=10).status_code == 400
        assert requests.get(f"{info['collector_metrics_url']}/ready", timeout=10).status_code == 200
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=90)
    assert up.returncode == 0
    logs = {"up": out, **{name: data / "logs" / f"{name}.log" for name in ("collector", "worker", "dashboard")}}
    seen = {}
    for component, path in logs.items():
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        records = [orjson.loads(line) for line in lines]  # raises on any line that is not JSON
        assert all(set(r) >= {"ts", "level", "component", "logger", "message"} for r in records), records
        assert {r["component"] for r in records} <= {component}, records
        seen[component] = [r["message"] for r in records]
    assert any(m.startswith("collector   http://") for m in seen["up"])
    assert any(m.startswith("stopping: collector") for m in seen["up"])
    assert any(m.startswith("collector listening on") for m in seen["collector"])
    assert any(m.startswith("dashboard   http://") for m in seen["dashboard"])
