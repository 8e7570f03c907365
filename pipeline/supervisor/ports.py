"""Free loopback ports and waiting for a port to listen."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Collection

__all__ = ["PORT_MOVES", "PortTaken", "free_port", "free_ports", "listener_state", "stop_process", "wait_for_port"]


PORT_MOVES = 3  # a port a supervisor picked and found taken by another process is picked again at most this often


class PortTaken(RuntimeError):
    """A port a child must listen on is held by another process."""


def free_port(avoid: Collection[int] = ()) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and not one of ``avoid``.

    ``avoid``: the ports already picked for other listeners of the same
    pipeline. They are free too until their processes bind them, so the
    kernel may hand one out again (it did: a collector's metrics port equal
    to its own port).
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port
    raise OSError(f"no free port outside {sorted(avoid)} found in 100 attempts")


def free_ports(count: int, attempts: int = 100, avoid: Collection[int] = ()) -> int:
    """The first of ``count`` consecutive TCP ports on 127.0.0.1 that nothing listens on right now, none in ``avoid``."""
    for _ in range(attempts):
        base = free_port()
        if base + count - 1 > 65535 or any(base <= port < base + count for port in avoid):
            continue
        try:
            for port in range(base + 1, base + count):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise OSError(f"no {count} consecutive free ports found in {attempts} attempts")


def _listening_inodes(port: int) -> set[str] | None:
    """The socket inodes listening on TCP ``port`` (any address, IPv4 or IPv6); None where /proc does not tell."""
    inodes: set[str] = set()
    found = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        found = True
        for line in lines:
            fields = line.split()
            # sl local_address rem_address st ... inode: the port is the local address' hex after ':'
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port:
                inodes.add(fields[9])
    return inodes if found else None


def _session_socket_inodes(session: int) -> set[str]:
    """The socket inodes open in any process of ``session`` (a child started with ``start_new_session``)."""
    inodes: set[str] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) != session:
                continue
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:  # ended meanwhile, or not ours to read
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{entry}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def listener_state(port: int, session: int) -> str | None:
    """Who listens on TCP ``port``: ``"ours"`` (a process of ``session``), ``"foreign"`` (only others), ``"none"``.

    None where the kernel does not tell (no /proc: not Linux). A supervisor
    that picked a free port for a child and then waits for "something listens
    there" can be answered by another process that took the port meanwhile;
    this tells the child's own listener from that one.
    """
    listening = _listening_inodes(port)
    if listening is None:
        return None
    if not listening:
        return "none"
    return "ours" if listening & _session_socket_inodes(session) else "foreign"


def wait_for_port(
    port: int, host: str = "127.0.0.1", timeout_s: float = 30.0, alive=None, session: int | None = None
) -> None:
    """Block until ``host:port`` accepts a connection.

    ``alive`` is an optional callable returning False once the process that
    should listen has died, so a crashed start fails at once, not at timeout.
    With ``session`` (the pid of a child started with ``start_new_session``),
    only a listener of that child counts: another process's raises
    ``PortTaken`` (where the kernel tells, ``listener_state``).
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = None if session is None else listener_state(port, session)
        if state == "foreign":  # checked first: the child may have exited because the port was taken
            raise PortTaken(f"another process listens on {host}:{port}")
        if alive is not None and not alive():
            raise RuntimeError(f"process meant to listen on {host}:{port} exited")
        if state is not None:
            if state == "ours":
                return
            time.sleep(0.05)
            continue
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
