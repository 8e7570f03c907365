"""Processes a test started through ``cxstream`` and everything below them, read from /proc and stopped for sure."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterable

__all__ = ["Proc", "alive", "command_of", "descendants", "listening", "stop_process_tree"]

Proc = tuple[int, int]  # (pid, start time in clock ticks): a pid reused later is another process


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # [state, ppid, pgrp, session, ...]


def alive(proc: Proc) -> bool:
    fields = _stat(proc[0])
    return fields is not None and fields[0] != "Z" and int(fields[19]) == proc[1]


def command_of(pid: int) -> str:
    """``worker`` for ``python -m pipeline.cli worker``, else the program's file name."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    if "pipeline.cli" in argv:
        return argv[argv.index("pipeline.cli") + 1]
    return Path(argv[0]).name


def descendants(pid: int) -> set[Proc]:
    """Every process below ``pid`` (children, their children, ...), read from /proc."""
    children: dict[int, list[Proc]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append((int(entry.name), int(fields[19])))
    found: set[Proc] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child[0])
    return found


def _signal_group(proc: Proc, sig: signal.Signals) -> None:
    """``sig`` to the process group of ``proc`` (to the process alone if it is in this test's group)."""
    fields = _stat(proc[0])
    if fields is None or int(fields[19]) != proc[1]:
        return
    group = int(fields[2])
    try:
        if group == os.getpgrp():
            os.kill(proc[0], sig)
        else:
            os.killpg(group, sig)
    except ProcessLookupError:
        pass


def stop_process_tree(proc: subprocess.Popen, clean_stop_s: float = 90, also: Iterable[Proc] = ()) -> None:
    """Stop a ``cxstream`` command and every process it started (and ``also``); runs in ``finally``.

    SIGINT first (the command's own clean stop, which stops its children),
    then SIGTERM, then SIGKILL. The children run in sessions of their own,
    so a child that outlived the command is stopped through its process
    group: SIGTERM, and SIGKILL 10 s later. ``also``: processes seen below
    the command earlier (once it exited, /proc no longer links them to it).
    """
    started = set(also)
    for sig, wait_s in ((signal.SIGINT, clean_stop_s), (signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            break
        started |= descendants(proc.pid)
        proc.send_signal(sig)
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = [p for p in started if alive(p)]
        for p in left:
            _signal_group(p, sig)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in left) and time.monotonic() < deadline:
            time.sleep(0.1)


def listening(pids: Iterable[int]) -> list[tuple[int, str, int]]:
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
