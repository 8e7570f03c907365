"""The operator's commands (contract section 6), run as a shop would run them: as processes.

``cxstream up`` on the embedded defaults (its own broker, chdb in the data
directory), ``cxstream query`` from another process while it runs and after
it stopped, a clean stop on SIGINT that leaves none of its processes behind,
and a wrong setting that names its variable.

``stop_process_tree`` is also what other tests use to stop a ``cxstream``
command they started: its broker, worker and collector run in sessions of
their own (``start_new_session``), so killing the command alone would leave
them running.
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
from typing import Iterable

import orjson
import pytest
import requests

pytestmark = pytest.mark.integration

Proc = tuple[int, int]  # (pid, start time in clock ticks): a pid reused later is another process


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # [state, ppid, pgrp, session, ...]


def _alive(proc: Proc) -> bool:
    fields = _stat(proc[0])
    return fields is not None and fields[0] != "Z" and int(fields[19]) == proc[1]


def _command(pid: int) -> str:
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
        left = [p for p in started if _alive(p)]
        for p in left:
            _signal_group(p, sig)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in left) and time.monotonic() < deadline:
            time.sleep(0.1)


def _cx(args: list[str], env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _env(data_dir: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CX_")}
    env.update({"CX_DATA_DIR": str(data_dir), "CX_COLLECTOR_PORT": "0", "CX_WRITE_KEYS": "wk_cli=shop-cli"}, **extra)
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

        children = descendants(up.pid)
        # tansu (the embedded broker) and `python -m pipeline.cli worker` / `collector`
        assert sorted(_command(pid) for pid, _ in children) == ["collector", "tansu", "worker"]
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=90) == 0
        assert [p for p in children if _alive(p)] == [], "processes left running after a clean stop"
    finally:
        stop_process_tree(up, also=children)
    assert not (tmp_path / "data" / "run.json").exists()
    # Stopped: the query opens the chdb directory itself and finds the same rows.
    assert _count(env) == 2


def test_a_wrong_setting_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    out = _cx(["up"], _env(tmp_path / "data", CX_COLLECTOR_PORT="eighty"))
    assert out.returncode == 2
    assert "CX_COLLECTOR_PORT" in out.stdout + out.stderr
