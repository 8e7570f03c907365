"""The operator's commands (docs/operations.md), run as a shop would run them: as processes.

``cxstream up`` on the embedded defaults (its own broker, chdb in the data
directory), ``cxstream query`` from another process while it runs and after
it stopped (reading statements only while it runs), a clean stop on SIGINT
that leaves none of its processes behind, and a wrong setting that names its
variable. Its broker, worker and collector run in sessions of their own
(``start_new_session``), so a failed test stops them with
``tests.integration.processes.stop_process_tree``, never by killing the
command alone.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
import requests

from tests.integration.processes import Proc, alive, command_of, descendants, stop_process_tree

pytestmark = pytest.mark.integration


def _cx(args: list[str], env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _env(data_dir: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CX_")}
    env.update(
        {
            "CX_DATA_DIR": str(data_dir),
            "CX_COLLECTOR_PORT": "0",
            "CX_WRITE_KEYS": "wk_cli=shop-cli",
            "CX_PII_SALT": "cli-test-salt",
        },
        **extra,
    )
    env["COLUMNS"] = "200"
    return env


def _wait_for_line(proc: subprocess.Popen, pattern: str, timeout_s: float = 90) -> re.Match:
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if m := re.search(pattern, line):
            return m
    raise AssertionError(f"no line matching {pattern!r}; output so far: {''.join(seen)}")


def _count(env: dict) -> int:
    out = _cx(["query", "--format", "json", "SELECT count() AS n FROM cx.events FINAL WHERE tenant = 'shop-cli'"], env)
    assert out.returncode == 0, out.stdout + out.stderr
    return orjson.loads(out.stdout)[0]["n"]


def test_up_query_while_running_and_after_a_clean_sigint_stop(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    up = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    children: set[Proc] = set()
    try:
        url = _wait_for_line(up, r"collector\s+(http://\S+)").group(1)
        _wait_for_line(up, r"write keys\s+wk_cli -> shop-cli")
        t = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
        batch = [
            {"type": "page", "anonymousId": "a-cli", "properties": {"path": "/"}, "timestamp": t, "messageId": "cli-1"},
            {"type": "page", "anonymousId": "a-cli", "properties": {"path": "/c"}, "timestamp": t, "messageId": "cli-2"},
        ]
        auth = base64.b64encode(b"wk_cli:").decode()
        resp = requests.post(f"{url}/v1/batch", json={"batch": batch}, headers={"Authorization": f"Basic {auth}"})
        assert resp.status_code == 200, resp.text

        # The worker owns the chdb directory: the query goes through it.
        deadline = time.monotonic() + 60
        while _count(env) != 2:
            assert time.monotonic() < deadline, "the 2 events never showed up"
            time.sleep(1)

        # While it runs, nothing may change the store under the worker: a DROP is refused.
        drop = _cx(["query", "DROP TABLE cx.events"], env)
        assert drop.returncode == 1 and drop.stdout == "" and "only reading statements" in drop.stderr, drop.stdout + drop.stderr
        assert _count(env) == 2

        children = descendants(up.pid)
        # tansu (the embedded broker) and `python -m pipeline.cli worker` / `collector` / `dashboard`
        assert sorted(command_of(pid) for pid, _ in children) == ["collector", "dashboard", "tansu", "worker"]
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=90) == 0
        assert [p for p in children if alive(p)] == [], "processes left running after a clean stop"
    finally:
        stop_process_tree(up, also=children)
    assert not (tmp_path / "data" / "run.json").exists()
    # Stopped: the query opens the chdb directory itself and finds the same rows.
    assert _count(env) == 2


@pytest.mark.parametrize("command", ["up", "collector"])
def test_the_default_salt_stops_start_up_naming_the_variable(tmp_path: Path, command: str) -> None:
    env = _env(tmp_path / "data", CX_KAFKA_BOOTSTRAP="127.0.0.1:1")
    del env["CX_PII_SALT"]
    out = _cx([command], env)
    assert out.returncode == 2
    assert "CX_PII_SALT: set a secret salt" in out.stdout + out.stderr
    assert not (tmp_path / "data").exists()  # refused before anything started


def test_a_wrong_setting_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    out = _cx(["up"], _env(tmp_path / "data", CX_COLLECTOR_PORT="eighty"))
    assert out.returncode == 2
    assert "CX_COLLECTOR_PORT" in out.stdout + out.stderr


@pytest.mark.parametrize("command", ["worker", "collector"])
def test_no_broker_at_the_address_is_one_line_and_exit_69(tmp_path: Path, command: str) -> None:
    from pipeline.supervisor.ports import free_port

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    out = _cx([command], _env(tmp_path / "data", CX_KAFKA_BOOTSTRAP=address, CX_KAFKA_CHECK_TIMEOUT_S="1.5"), timeout=60)
    assert out.returncode == 69  # EX_UNAVAILABLE: `up` starts it again, with its backoff
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"cxstream {command}: no Kafka broker answered at {address} within 1.5 s")
    assert "CX_KAFKA_BOOTSTRAP" in lines[0]


def test_a_query_to_a_server_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    from pipeline.supervisor.ports import free_port

    port = free_port()
    out = _cx(["query", "SELECT 1"], _env(tmp_path / "data", CX_CLICKHOUSE_URL=f"clickhouse://default@127.0.0.1:{port}/cx"))
    assert out.returncode == 1
    lines = (out.stdout + out.stderr).strip().splitlines()
    # The first statement is the query limits' SET (docs/clickhouse.md); the query itself never went.
    assert lines == [f"cxstream query: statement failed: Connection refused (127.0.0.1:{port})"]


def test_up_with_its_worker_port_taken_by_another_process_is_one_line_and_exit_78(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:  # another program's listener on the port the settings give the worker
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data_dir = tmp_path / "data"
        out = _cx(["up"], _env(data_dir, CX_WORKER_WEB_PORT=str(port)), timeout=120)
    assert out.returncode == 78, out.stdout + out.stderr
    assert out.stderr.strip().splitlines() == [
        f"cxstream up: worker cannot listen on 127.0.0.1:{port} (CX_WORKER_WEB_PORT): another process listens there; "
        "stop that process or set CX_WORKER_WEB_PORT to a free port"
    ]
    assert "Traceback" not in out.stdout
    assert not (data_dir / "run.json").exists()
