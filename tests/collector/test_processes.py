"""CX_COLLECTOR_PROCESSES=2: two collector processes on one port (SO_REUSEPORT), on a real broker.

``cxstream collector`` is run as an operator runs it; each child serves its
own metrics port (CX_COLLECTOR_METRICS_PORT + i), which tells which process
answered how many requests.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from pipeline.supervisor.broker import EmbeddedBroker
from pipeline.supervisor.ports import wait_for_port
from pipeline.collector.processes import FAST_EXITS_MAX, child_settings, reuse_port_available
from pipeline.settings import Settings
from pipeline.wire.records import decode_batch
from tests.collector.harness import collector_settings, event_count, read_topic
from tests.integration.processes import listening

needs_reuse_port = pytest.mark.skipif(not reuse_port_available(), reason="SO_REUSEPORT is not available on this platform")

WRITE_KEY = "wk_procs"


def _two_free_ports() -> int:
    """A port p with p and p + 1 free (the two children's metrics ports), below the kernel's ephemeral range.

    Ports the kernel hands out (``free_port``, every outgoing connection of the three test
    processes) come from the ephemeral range: a port found free there can be taken again before
    a child binds it, and the child then dies on it while another process answers there.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12_000), low - 1)
        try:
            for candidate in (port, port + 1):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no two consecutive free ports below the ephemeral range")


def _wait_children_listening(supervisor: subprocess.Popen, port: int, metrics: set[int], timeout_s: float = 90) -> None:
    """Until each of the supervisor's two children listens on ``port``, and they on all of ``metrics``."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert supervisor.poll() is None, "the collector supervisor exited"
        children = _children(supervisor.pid)
        owned: dict[int, set[int]] = {pid: set() for pid in children}
        for pid, _address, listened in listening(children):
            owned[pid].add(listened)
        if len(owned) == 2 and all(port in p for p in owned.values()) and metrics <= set().union(*owned.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the collector processes listen on {owned}, not each on {port} and on {sorted(metrics)}")
        time.sleep(0.05)


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _answered(metrics_port: int) -> int:
    """Requests this process answered with 200 on the event routes (its /metrics)."""
    text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    return sum(
        int(float(m.group(1)))
        for m in re.finditer(r'^cxstream_collector_requests_total\{[^}]*status="200"[^}]*\} (\S+)$', text, re.M)
    )


def _post(url: str, message_id: str) -> int:
    when = (datetime.now(UTC) - timedelta(minutes=1)).isoformat(timespec="milliseconds")
    body = {"type": "track", "event": "Product Viewed", "anonymousId": f"anon-{message_id}", "messageId": message_id,
            "timestamp": when, "properties": {"product_id": "p-1"}}
    # A new connection per request: the kernel picks a process for each connection.
    resp = requests.post(f"{url}/v1/track", json=body, auth=(WRITE_KEY, ""), headers={"Connection": "close"}, timeout=15)
    return resp.status_code


def _wait_reaped(pid: int, timeout_s: float = 10.0) -> None:
    """Until ``pid`` is gone (its parent collected it).

    Not its zombie state: a killed process's leader shows "Z" while its
    other threads still exit, and its listening socket is open until the
    last one has.
    """
    deadline = time.monotonic() + timeout_s
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} still there")
        time.sleep(0.02)


def test_each_process_serves_its_metrics_on_the_port_plus_its_index() -> None:
    settings = Settings(_env_file=None, collector_port=8088, collector_metrics_port=9108)
    assert [child_settings(settings, i).collector_metrics_port for i in range(3)] == [9108, 9109, 9110]
    assert child_settings(settings, 2).collector_port == 8088
    anywhere = Settings(_env_file=None, collector_metrics_port=0)
    assert child_settings(anywhere, 1).collector_metrics_port == 0  # any free port


@pytest.mark.integration
@needs_reuse_port
def test_two_processes_share_the_port_and_one_stopping_leaves_it_answering(tmp_path: Path) -> None:
    with EmbeddedBroker() as broker:
        settings = collector_settings(broker.bootstrap, "it.procs", partitions=2, write_key=WRITE_KEY, tenant="shop-procs")
        metrics = _two_free_ports()
        env = {**os.environ, **settings.to_env(), "CX_COLLECTOR_PROCESSES": "2", "CX_COLLECTOR_METRICS_PORT": str(metrics)}
        log = open(tmp_path / "collector.log", "wb")
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "collector"], env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            alive = lambda: supervisor.poll() is None  # noqa: E731
            _wait_children_listening(supervisor, settings.collector_port, {metrics, metrics + 1})
            url = f"http://127.0.0.1:{settings.collector_port}"
            assert len(_children(supervisor.pid)) == 2

            statuses = [_post(url, f"both-{i}") for i in range(40)]
            assert statuses == [200] * 40
            first, second = _answered(metrics), _answered(metrics + 1)
            assert first + second == 40
            assert first > 0 and second > 0  # 40 connections, both processes took some

            # Process 0 stops abruptly; the port goes on answering from process 1.
            stopped = next(
                pid for pid in _children(supervisor.pid)
                if "--process\x000\x00" in Path(f"/proc/{pid}/cmdline").read_text()
            )
            os.kill(stopped, signal.SIGKILL)
            _wait_reaped(stopped)
            # The supervisor starts it again after a second (and its start-up): these go to process 1 until then.
            statuses = [_post(url, f"one-{i}") for i in range(20)]
            assert statuses == [200] * 20

            # Every acknowledged event is on the topic, once.
            records = read_topic(broker.bootstrap, settings.topic_events, event_count(60), timeout_s=30)
            ids = sorted(event["event_id"] for r in records for event in decode_batch(r.value()))
            assert ids == sorted([f"both-{i}" for i in range(40)] + [f"one-{i}" for i in range(20)])

            # The supervisor starts the stopped process again, on its own metrics port; the 20 requests
            # were answered by process 1, and by the new process 0 if it listened before they ended.
            wait_for_port(metrics, "127.0.0.1", 60, alive=alive)
            assert len(_children(supervisor.pid)) == 2
            assert (_answered(metrics + 1) - second) + _answered(metrics) == 20
            assert _answered(metrics + 1) > second
        finally:
            supervisor.send_signal(signal.SIGTERM)
            try:
                code = supervisor.wait(timeout=60)
            finally:
                log.close()
        assert code == 0
        assert "collector process 0" in (tmp_path / "collector.log").read_text()


@pytest.mark.integration
@needs_reuse_port
def test_processes_that_cannot_listen_make_the_supervisor_give_up_with_exit_1(tmp_path: Path) -> None:
    # `cxstream collector` checks the port before it starts any process (the next test); a port taken
    # after that check is what the supervisor itself meets, run here without the command's check.
    supervise = (
        "import os, sys; from pipeline.collector.processes import serve_processes; "
        "from pipeline.settings import Settings; sys.exit(serve_processes(Settings.load(), dict(os.environ)))"
    )
    with EmbeddedBroker() as broker, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # no SO_REUSEPORT: the children's binds fail
        taken.listen()
        settings = collector_settings(broker.bootstrap, "it.procs-taken", partitions=1, write_key=WRITE_KEY,
                                      tenant="shop-procs")
        env = {**os.environ, **settings.to_env(), "CX_COLLECTOR_PROCESSES": "2",
               "CX_COLLECTOR_PORT": str(taken.getsockname()[1]), "CX_COLLECTOR_METRICS_PORT": "0"}
        log_path = tmp_path / "collector.log"
        with open(log_path, "wb") as log:
            supervisor = subprocess.Popen(
                [sys.executable, "-c", supervise], env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                code = supervisor.wait(timeout=240)
            finally:
                if supervisor.poll() is None:
                    supervisor.kill()
                    supervisor.wait(10)
    assert code == 1
    text = log_path.read_text()
    assert "error while attempting to bind" in text  # the reason the children exited
    assert f"exited {FAST_EXITS_MAX} times within 5 s of its start; stopping" in text


@pytest.mark.integration
@needs_reuse_port
def test_processes_on_a_taken_port_are_one_line_and_exit_78_before_any_starts(tmp_path: Path) -> None:
    # Before, each of the processes failed with a traceback, five times over (795 lines, 17 s).
    with EmbeddedBroker() as broker, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = collector_settings(broker.bootstrap, "it.procs-checked", partitions=1, write_key=WRITE_KEY,
                                      tenant="shop-procs")
        env = {**os.environ, **settings.to_env(), "CX_COLLECTOR_PROCESSES": "2",
               "CX_COLLECTOR_PORT": str(port), "CX_COLLECTOR_METRICS_PORT": "0"}
        done = subprocess.run([sys.executable, "-m", "pipeline.cli", "collector"], env=env, capture_output=True,
                              text=True, timeout=120)
    assert done.returncode == 78
    assert done.stderr == (
        f"cxstream collector: [Errno 98] cannot listen on 127.0.0.1:{port} (CX_COLLECTOR_HOST:CX_COLLECTOR_PORT): "
        "Address already in use\n"
    )
    assert "collector process 0 started" not in done.stdout + done.stderr
