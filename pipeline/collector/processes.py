"""Several collector processes on one port: ``CX_COLLECTOR_PROCESSES`` > 1.

One collector process uses one core (its request path is Python). With
``CX_COLLECTOR_PROCESSES=N``, ``cxstream collector`` starts N collector
processes that each listen on ``collector_host:collector_port`` with
``SO_REUSEPORT``: the kernel spreads incoming connections over them (by a
hash of the connection's addresses), and a process that stops takes only
its own connections with it; the others keep answering on the port.

The process that ran ``cxstream collector`` only supervises: it starts the
N children (``cxstream collector --process i``), starts again one that
exits (after ``RESTART_DELAY_S``), and on SIGTERM or SIGINT passes the
signal on and waits for each to finish its requests and flush its
producer. Each child serves its own metrics port,
``CX_COLLECTOR_METRICS_PORT + i`` (any free port when it is 0). The
children die with the supervisor, however it ends (``pipeline.supervisor.lifeline``).

Without ``SO_REUSEPORT`` (not Linux or a BSD) several processes need a
front proxy instead (docs/deployment.md, "Several collector processes on
one host").
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import time

from pipeline.supervisor.lifeline import die_with_parent
from pipeline.supervisor.ports import free_port
from pipeline.settings import Settings

__all__ = ["CHILD_SHUTDOWN_S", "RESTART_DELAY_S", "child_settings", "reuse_port_available", "serve_processes"]

log = logging.getLogger("cxstream.collector")

RESTART_DELAY_S = 1.0
# A child that exits this soon after its start, this many times in a row, is not started again:
# something outside it (the port, the settings) is wrong, and the supervisor exits 1.
FAST_EXIT_S = 5.0
FAST_EXITS_MAX = 5
CHILD_SHUTDOWN_S = 40.0  # the collector's own 30 s for in-flight requests, then its producer flush
POLL_S = 0.2


def reuse_port_available() -> bool:
    """Whether this platform has ``SO_REUSEPORT`` (Linux, the BSDs, macOS)."""
    return hasattr(socket, "SO_REUSEPORT")


def child_settings(settings: Settings, index: int) -> Settings:
    """Process ``index``'s settings: the same port, its own metrics port (``CX_COLLECTOR_METRICS_PORT + index``)."""
    metrics = settings.collector_metrics_port
    return settings.model_copy(update={"collector_metrics_port": metrics + index if metrics else 0})


class _Child:
    def __init__(self, index: int, env: dict[str, str]) -> None:
        self.index = index
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.fast_exits = 0
        self.exited_at: float | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "collector", "--process", str(self.index)],
            env=self.env,
            preexec_fn=die_with_parent(),
        )
        self.started = time.monotonic()
        self.exited_at = None
        log.info("collector process %d started (pid %d)", self.index, self.proc.pid)


def serve_processes(settings: Settings, env: dict[str, str]) -> int:
    """Run ``settings.collector_processes`` collectors on one port until SIGTERM or SIGINT; the exit code.

    ``env`` is the children's environment (this process's). A port of 0
    is replaced by a free port first, so that every child binds the same
    one. Returns 0 after a requested stop, 1 when a child kept failing at
    start (the others are stopped then).
    """
    if not reuse_port_available():
        log.error("CX_COLLECTOR_PROCESSES > 1 needs SO_REUSEPORT, which this platform lacks: "
                  "run one collector per port behind a proxy instead")
        return 2
    port = settings.collector_port or free_port()
    env = {**env, "CX_COLLECTOR_PORT": str(port), "CX_COLLECTOR_PROCESSES": str(settings.collector_processes)}
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    children = [_Child(i, env) for i in range(settings.collector_processes)]
    code = 0
    try:
        for child in children:
            child.start()
        log.info("%d collector processes on %s:%d", len(children), settings.collector_host, port)
        while not stopping:
            time.sleep(POLL_S)
            now = time.monotonic()
            for child in children:
                status = child.proc.poll()
                if status is None or stopping:
                    continue
                if child.exited_at is None:
                    child.exited_at = now
                    fast = now - child.started < FAST_EXIT_S
                    child.fast_exits = child.fast_exits + 1 if fast else 0
                    log.warning("collector process %d (pid %d) exited with %s", child.index, child.proc.pid, status)
                    if child.fast_exits >= FAST_EXITS_MAX:
                        log.error("collector process %d exited %d times within %.0f s of its start; stopping",
                                  child.index, child.fast_exits, FAST_EXIT_S)
                        stopping, code = True, 1
                        break
                if now - child.exited_at >= RESTART_DELAY_S:
                    child.start()
    finally:
        for child in children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + CHILD_SHUTDOWN_S
        for child in children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("collector process %d did not stop in time; killed", child.index)
                child.proc.kill()
                child.proc.wait(timeout=10)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
