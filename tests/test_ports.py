"""Who listens on a port (``pipeline.supervisor.ports.listener_state``), and the embedded broker on a taken port.

A port picked with ``free_port`` is free when picked, not when the child
binds it. These tests hold a port with another process, as another pipeline
or a test running beside this one can, and check that the supervisor tells
that listener from its own child's.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient

from pipeline.supervisor import broker as broker_module
from pipeline.supervisor.broker import EmbeddedBroker
from pipeline.supervisor.ports import PortTaken, free_port, listener_state, wait_for_port

LISTEN = "import socket, sys, time; s = socket.socket(); s.bind((sys.argv[1], 0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(120)"


@pytest.fixture
def other_process_port() -> Iterator[int]:
    """A port another process (its own session, like any unrelated program) listens on, on every address."""
    proc = subprocess.Popen([sys.executable, "-c", LISTEN, "0.0.0.0"], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()


def test_a_listener_of_this_session_is_ours() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert listener_state(sock.getsockname()[1], os.getsid(0)) == "ours"


def test_a_listener_of_another_session_is_foreign(other_process_port: int) -> None:
    assert listener_state(other_process_port, os.getsid(0)) == "foreign"


def test_a_port_nobody_listens_on_is_none() -> None:
    assert listener_state(free_port(), os.getsid(0)) == "none"


def test_waiting_for_a_child_refuses_another_process_listener_at_once(other_process_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(PortTaken, match=f"another process listens on 127.0.0.1:{other_process_port}"):
        wait_for_port(other_process_port, timeout_s=20, session=os.getsid(0))
    assert time.monotonic() - started < 5


def test_waiting_without_a_session_takes_any_listener(other_process_port: int) -> None:
    wait_for_port(other_process_port, timeout_s=5)  # what it did before: no error


def test_the_embedded_broker_moves_off_a_picked_port_another_process_took(
    other_process_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    picks = iter([other_process_port])
    monkeypatch.setattr(broker_module, "free_port", lambda: next(picks, None) or free_port())
    with EmbeddedBroker() as broker:
        assert broker.port != other_process_port
        metadata = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
        assert metadata.brokers, "the broker on the new port answers Kafka's metadata request"


def test_the_embedded_broker_given_a_taken_port_says_so(other_process_port: int) -> None:
    broker = EmbeddedBroker(port=other_process_port)
    with pytest.raises(PortTaken, match=str(other_process_port)):
        broker.start()
    assert not broker.running()


def test_a_further_worker_port_is_picked_even_when_the_settings_give_the_first_workers(tmp_path) -> None:
    from pipeline.settings import Settings
    from pipeline.supervisor.runner import Pipeline

    given = Pipeline(Settings(_env_file=None, data_dir=tmp_path, worker_web_port=6067, collector_port=8089))
    assert [given._picked_port(n) for n in ("worker", "worker-2", "collector", "dashboard")] == [False, True, False, True]
    default = Pipeline(Settings(_env_file=None, data_dir=tmp_path))
    assert [default._picked_port(n) for n in ("worker", "worker-2", "collector", "dashboard")] == [True, True, False, True]


class _ScriptedSocket:
    """A socket whose bind to port 0 gets the next port of ``ports`` (the kernel's choice, scripted)."""

    ports: list[int] = []

    def __init__(self, *_: object) -> None:
        self.port = 0

    def __enter__(self) -> "_ScriptedSocket":
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def bind(self, address: tuple[str, int]) -> None:
        self.port = address[1] or _ScriptedSocket.ports.pop(0)

    def getsockname(self) -> tuple[str, int]:
        return "127.0.0.1", self.port


def test_a_port_picked_again_by_the_kernel_is_skipped_when_it_is_to_be_avoided(monkeypatch) -> None:
    # up picked its collector's port, then its metrics port: the kernel handed out the same one (55755 twice).
    from pipeline.supervisor import ports

    monkeypatch.setattr(ports.socket, "socket", _ScriptedSocket)
    _ScriptedSocket.ports = [55755, 55755, 41000]
    assert free_port() == 55755
    assert free_port(avoid={55755}) == 41000


def test_consecutive_ports_that_would_include_one_to_avoid_are_skipped(monkeypatch) -> None:
    from pipeline.supervisor import ports

    monkeypatch.setattr(ports.socket, "socket", _ScriptedSocket)
    _ScriptedSocket.ports = [55754, 41000]  # 55754..55755 holds the collector's own port
    assert ports.free_ports(2, avoid={55755}) == 41000


def test_free_port_gives_up_when_the_kernel_only_hands_out_ports_to_avoid(monkeypatch) -> None:
    from pipeline.supervisor import ports

    monkeypatch.setattr(ports.socket, "socket", _ScriptedSocket)
    _ScriptedSocket.ports = [55755] * 100
    with pytest.raises(OSError, match=r"no free port outside \[55755\] found in 100 attempts"):
        free_port(avoid={55755})


def test_the_ports_a_pipeline_picked_are_avoided_by_its_next_pick(tmp_path) -> None:
    from pipeline.settings import Settings
    from pipeline.supervisor.runner import Pipeline

    pipeline = Pipeline(Settings(_env_file=None, data_dir=tmp_path, collector_processes=2))
    pipeline.collector_port, pipeline.collector_metrics_port, pipeline.worker_port = 8100, 9200, 6100
    assert pipeline._ports_taken() == {8100, 9200, 9201, 6100}
