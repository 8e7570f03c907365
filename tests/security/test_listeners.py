"""Every TCP port a `cxstream up` run listens on, compared with the table in docs/security.md ("Listeners")."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.integration.processes import Proc, command_of, descendants, listening, stop_process_tree

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
ROLE_OF_PROCESS = {
    "collector": "collector", "worker": "worker web", "dashboard": "dashboard", "tansu": "embedded broker",
}


def doc_table() -> dict[str, tuple[str, str]]:
    """role -> (bind address, credentials) from the Listeners table."""
    section = DOC.read_text().split("## Listeners", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or cells[0] in ("Role", "") or set(cells[0]) <= set("-"):
            continue
        address = re.search(r"\d+\.\d+\.\d+\.\d+", cells[2])
        rows[cells[0]] = (address.group() if address else cells[2], "none" if cells[4] == "none" else "required")
    return rows


def test_every_listener_of_a_run_is_the_documented_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CX_")}
    env.update({"CX_DATA_DIR": str(tmp_path / "data"), "CX_COLLECTOR_PORT": "0", "CX_PII_SALT": "test-salt"})
    # With webhook delivery on: its process must open no listener (it only connects out).
    hooks = tmp_path / "hooks.toml"
    hooks.write_text('[[destination]]\nname = "esp"\nurl = "http://127.0.0.1:9/hook"\nsecret = "0123456789abcdef"\n')
    env.update({"CX_DELIVERY_ENABLED": "true", "CX_DELIVERY_CONFIG": str(hooks)})
    up = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "up"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    children: set[Proc] = set()
    try:
        run_file = tmp_path / "data" / "run.json"
        deadline = time.monotonic() + 120
        while not run_file.exists():
            assert up.poll() is None and time.monotonic() < deadline, "cxstream up did not start"
            time.sleep(0.5)
        info = json.loads(run_file.read_text())
        children = descendants(up.pid)
        pids = {up.pid} | {pid for pid, _ in children}
        assert "deliver" in {command_of(pid) for pid in pids}
        found = {}
        metrics_port = int(info["collector_metrics_url"].rsplit(":", 1)[1])
        for pid, address, port in listening(pids):
            role = ROLE_OF_PROCESS.get(command_of(pid), f"unknown ({command_of(pid)} port {port})")
            if role == "collector" and port == metrics_port:
                role = "collector metrics"
            found.setdefault(role, set()).add((address, port))
        assert {r: {a for a, _ in v} for r, v in found.items()} == {r: {a} for r, (a, _) in doc_table().items()}
        # Credentials: what each port answers without any.
        collector = requests.post(f"{info['collector_url']}/v1/batch", json={"batch": []}, timeout=10)
        worker = requests.get(f"http://127.0.0.1:{info['worker_port']}/cx/stats", timeout=10)
        dashboard = requests.get(f"http://127.0.0.1:{info['dashboard_port']}/api/meta", timeout=10)
        worker_metrics = requests.get(f"http://127.0.0.1:{info['worker_port']}/metrics", timeout=10)
        collector_metrics = requests.get(f"{info['collector_metrics_url']}/metrics", timeout=10)
        assert worker_metrics.status_code == 401
        # The documented exceptions: liveness and readiness answer without the token, and say only a status.
        assert requests.get(f"http://127.0.0.1:{info['worker_port']}/health", timeout=10).json() == {"status": "ok"}
        assert requests.get(f"http://127.0.0.1:{info['worker_port']}/ready", timeout=10).status_code in (200, 503)
        assert requests.post(f"http://127.0.0.1:{info['worker_port']}/ready", timeout=10).status_code == 401
        assert collector_metrics.status_code == 200 and "cxstream_collector_inflight_bytes" in collector_metrics.text
        measured = {
            "collector": collector.status_code == 401,
            "worker web": worker.status_code == 401,
            "dashboard": dashboard.status_code == 401,
            "collector metrics": collector_metrics.status_code == 401,
        }
        documented = doc_table()
        for role, needs in measured.items():
            assert (documented[role][1] == "required") == needs, role
        assert documented["embedded broker"][1] == "none"
        broker_port = int(info["bootstrap"].rsplit(":", 1)[1])
        assert ("127.0.0.1", broker_port) in found["embedded broker"]
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=90)
        finally:
            stop_process_tree(up, also=children)
