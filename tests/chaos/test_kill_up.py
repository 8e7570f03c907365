"""``kill -9`` of ``cxstream up``: nothing of the old run survives, and the next ``up`` starts on the same data dir.

Each round starts ``cxstream up`` (embedded broker, chdb in the data dir),
notes its process tree, kills it with SIGKILL and checks by pid and start
time that its broker, collector and worker are gone (``PR_SET_PDEATHSIG``).
A second ``up`` on a data dir in use is refused with exit 73; a worker that
cannot start (ClickHouse unreachable) makes ``up`` exit 70 with one line
naming it, its exit and its log, and leaves no process behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.supervisor.ports import free_port
from tests.integration.processes import Proc, alive, command_of, descendants, stop_process_tree

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


def _env(data_dir: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CX_")}
    env.update({"CX_DATA_DIR": str(data_dir), "CX_COLLECTOR_PORT": "0", "CX_PII_SALT": "chaos-test-salt", "COLUMNS": "200"}, **extra)
    return env


def _up(env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait_started(up: subprocess.Popen) -> None:
    seen = []
    for line in up.stdout:
        seen.append(line)
        if "Ctrl-C stops everything" in line:
            return
    raise AssertionError(f"up exited ({up.wait()}) before it started: {''.join(seen)}")


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "kills", [pytest.param(3), pytest.param(10, marks=pytest.mark.slow), pytest.param(50, marks=pytest.mark.slow)], ids=["3", "10", "50"]
)
def test_kill_9_of_up_leaves_no_process_and_the_next_up_starts(tmp_path: Path, kills: int) -> None:
    env = _env(tmp_path / "data")
    seen: set[Proc] = set()
    for i in range(kills):
        up = _up(env)
        try:
            _wait_started(up)
            children = descendants(up.pid)
            seen |= children
            assert sorted(command_of(pid) for pid, _ in children) == ["collector", "dashboard", "tansu", "worker"], i
            if i == 0:  # the same data dir while this one runs: refused, nothing started
                second = subprocess.run(
                    [sys.executable, "-m", "pipeline.cli", "up"], env=env, capture_output=True, text=True, timeout=60
                )
                assert second.returncode == 73, second.stdout + second.stderr
                assert f"is in use by a running pipeline (pid {up.pid})" in second.stderr
            up.kill()
            up.wait(timeout=10)
            deadline = time.monotonic() + 5
            while (left := [p for p in children if alive(p)]) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert left == [], f"round {i + 1}: processes of the killed up still run: {left}"
        finally:
            stop_process_tree(up, also=seen)


@pytest.mark.timeout(300)
def test_a_worker_that_keeps_failing_stops_up_with_the_reason_after_the_budget(tmp_path: Path) -> None:
    env = _env(
        tmp_path / "data",
        CX_CLICKHOUSE_URL=f"clickhouse://default@127.0.0.1:{free_port()}/cx",  # nothing listens there
        CX_RESTART_BUDGET="2",
        CX_RESTART_BACKOFF_S="0.2",
    )
    up = _up(env)
    seen: set[Proc] = set()
    try:
        deadline = time.monotonic() + 240
        while up.poll() is None and time.monotonic() < deadline:
            seen |= descendants(up.pid)
            time.sleep(0.2)
        out = up.stdout.read()
        assert up.wait(timeout=30) == 70, out
        reason = [line for line in out.splitlines() if line.startswith("cxstream up: stopping:")]
        log = tmp_path / "data" / "logs" / "worker.log"
        assert reason == [
            f"cxstream up: stopping: worker failed 3 times in a row (last: exit code 1 after "
            + reason[0].split("exit code 1 after ")[1].split(" s;")[0]
            + f" s; CX_RESTART_BUDGET=2 restarts spent); see {log}"
        ], out
        assert out.count("worker started again") == 2, out
        assert [p for p in seen if alive(p)] == [], "processes left after up gave up"
    finally:
        stop_process_tree(up, also=seen)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("kills", [pytest.param(4), pytest.param(10, marks=pytest.mark.slow)], ids=["4", "10"])
def test_kill_9_of_up_on_your_own_kafka_stores_every_acknowledged_event_once(
    kafka: str, fresh_settings, tmp_path: Path, kills: int
) -> None:
    """``kills`` kills while the worker processes a day of traffic; the last ``up`` must store exactly the crash-free figures."""
    import json
    import random

    from pipeline.supervisor.runner import Pipeline
    from pipeline.webtoken import read_token
    from tests.chaos.common import day_of_traffic, post, settle_and_check
    from tests.integration.helpers import wait_until

    tenant = f"shop-{fresh_settings.worker_group}"
    settings = fresh_settings.model_copy(
        update={"kafka_bootstrap": kafka, "write_keys": f"wk_chaos={tenant}", "collector_port": free_port(),
                "worker_web_port": 0, "batch_max_records": 200, "sink_max_interval_ms": 200}
    )
    env = {**_env(settings.data_dir), **settings.to_env(), "CX_CLICKHOUSE_URL": ""}
    view = Pipeline(settings)  # reads the running up's Kafka offsets and queries its worker
    view.bootstrap, view.collector_port, view.tenant = kafka, settings.collector_port, tenant
    day = day_of_traffic(view, seed=41, visitors=60)
    per_round = -(-len(day.messages) // kills)
    rng = random.Random(kills)
    seen: set[Proc] = set()
    up = None
    try:
        for i in range(kills + 1):
            up = _up(env)
            _wait_started(up)
            seen |= descendants(up.pid)
            view.worker_port = json.loads((settings.data_dir / "run.json").read_text())["worker_port"]
            view.token = read_token(settings.data_dir)  # each up writes a new one
            part = day.messages[i * per_round : (i + 1) * per_round]
            for j in range(0, len(part), 50):
                post(view, part[j : j + 50])
            if i == kills:
                break
            time.sleep(rng.uniform(0.0, 1.0))
            children = descendants(up.pid)
            up.kill()
            up.wait(timeout=10)
            wait_until(lambda: not any(alive(p) for p in children), timeout_s=5, what=f"round {i + 1}: old run gone")
        figures = settle_and_check(view, day, f"after {kills} kills of up")
        print(f"\nkill -9 of up on your own Kafka: {kills} kills, {figures}")
    finally:
        if up is not None:
            stop_process_tree(up, also=seen)
