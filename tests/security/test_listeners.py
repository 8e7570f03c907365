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

from tests.integration.processes import Proc, command_of, descendants, stop_process_tree

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


def _listening(pids: set[int]) -> list[tuple[int, str, int]]:
    """(pid, bind address, port) of every listening TCP socket the processes own (IPv4 and IPv6)."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    out = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:
                continue
            hex_addr, hex_port = fields[1].split(":")
            if v6:
                address = "::" if set(hex_addr) == {"0"} else hex_addr
            else:
                address = ".".join(str(int(hex_addr[i : i + 2], 16)) for i in (6, 4, 2, 0))
            out.append((inodes[fields[9]], address, int(hex_port, 16)))
    return out


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
        for pid, address, port in _listening(pids):
            role = ROLE_OF_PROCESS.get(command_of(pid), f"unknown ({command_of(pid)} port {port})")
            found.setdefault(role, set()).add((address, port))
        assert {r: {a for a, _ in v} for r, v in found.items()} == {r: {a} for r, (a, _) in doc_table().items()}
        # Credentials: what each port answers without any.
        collector = requests.post(f"{info['collector_url']}/v1/batch", json={"batch": []}, timeout=10)
        worker = requests.get(f"http://127.0.0.1:{info['worker_port']}/cx/stats", timeout=10)
        dashboard = requests.get(f"http://127.0.0.1:{info['dashboard_port']}/api/meta", timeout=10)
        measured = {
            "collector": collector.status_code == 401,
            "worker web": worker.status_code == 401,
            "dashboard": dashboard.status_code == 401,
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
