"""Free loopback ports and waiting for a port to listen."""

from __future__ import annotations

import signal
import socket
import subprocess
import time

__all__ = ["free_port", "free_ports", "stop_process", "wait_for_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports(count: int, attempts: int = 100) -> int:
    """The first of ``count`` consecutive TCP ports on 127.0.0.1 that nothing listens on right now."""
    for _ in range(attempts):
        base = free_port()
        if base + count - 1 > 65535:
            continue
        try:
            for port in range(base + 1, base + count):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise OSError(f"no {count} consecutive free ports found in {attempts} attempts")


def wait_for_port(port: int, host: str = "127.0.0.1", timeout_s: float = 30.0, alive=None) -> None:
    """Block until ``host:port`` accepts a connection.

    ``alive`` is an optional callable returning False once the process that
    should listen has died, so a crashed start fails at once, not at timeout.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"process meant to listen on {host}:{port} exited")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout_s:.0f}s")


def stop_process(proc: subprocess.Popen | None, timeout_s: float = 30.0, sig: signal.Signals = signal.SIGTERM) -> None:
    """Stop a child process: ``sig`` (SIGTERM), wait up to ``timeout_s``, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
