"""Run the whole pipeline: broker (embedded or yours), collector and worker processes.

``cxstream up`` and ``cxstream demo`` use this. The collector and the worker
run as child processes (two cores: the collector's HTTP parsing and the
worker's stream processing do not share one GIL); under ``up`` the
analysts' dashboard is one more (``dashboard=True``, docs/dashboard.md). Shutdown order is what
makes "nothing acknowledged is lost" true with the memory-only embedded
broker: stop the collector (no new acknowledgements), wait until the worker
has committed every record, stop the worker, then the broker.

Supervision (docs/supervision.md): every child dies with the pipeline's
process, whatever kills it (``pipeline.supervisor.lifeline``); one pipeline at a time owns
a data directory (an ``flock`` on ``up.lock``, which also records the
children so that the next owner stops any a dead one left behind); and
``supervise`` starts again a collector or worker that exited, with
exponential backoff, until one fails more than ``restart_budget`` times in
a row.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import orjson
import urllib.request

from confluent_kafka import Consumer, KafkaError, TopicPartition

from pipeline.supervisor.broker import EmbeddedBroker
from pipeline.supervisor.lifeline import die_with_parent, process_start
from pipeline.supervisor.ports import PORT_MOVES, PortTaken, free_port, free_ports, listener_state, stop_process
from pipeline.collector.processes import CHILD_SHUTDOWN_S
from pipeline.exitcodes import EXIT_UNFINISHED_BATCH
from pipeline.metrics import RESTARTS_ENV
from pipeline.settings import Settings
from pipeline.wire.topics import ensure_topics, kafka_config
from pipeline.webtoken import new_token, worker_headers

__all__ = [
    "DataDirInUse",
    "PortTaken",
    "child_alive",
    "LOCK_FILE",
    "Pipeline",
    "RESTART_BACKOFF_MAX_S",
    "RUN_FILE",
    "SupervisionError",
    "data_dir_owner",
    "describe_exit",
    "query_running_worker",
    "read_run_file",
]

log = logging.getLogger(__name__)

RUN_FILE = "run.json"  # the running pipeline's addresses, written once it serves
LOCK_FILE = "up.lock"  # flock'ed while a pipeline runs on the data dir; records its processes
RESTART_BACKOFF_MAX_S = 30.0  # the longest wait before a restart
# Children that ingestion does not depend on: past the restart budget they stay stopped and `up` goes on.
SIDE_CHILDREN = frozenset({"dashboard", "deliver"})
READY_TIMEOUT_S = 90.0  # a (re)started collector or worker listens within this, or start-up fails
LEFTOVER_STOP_S = 10.0  # wait for the processes a dead pipeline left to end after SIGKILL


class DataDirInUse(RuntimeError):
    """Another running pipeline owns this data directory; nothing was started."""


class SupervisionError(RuntimeError):
    """A component failed more restarts in a row than the budget allows (or the embedded broker ended)."""

    def __init__(self, reason: str, name: str, code: int | None, log_path: Path | None) -> None:
        super().__init__(reason)
        self.name, self.code, self.log_path = name, code, log_path


def describe_exit(code: int) -> str:
    """``exit code 75`` or ``killed by SIGKILL`` for a ``Popen.returncode``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_run_record(info: object) -> bool:
    """Whether ``info`` has what readers of run.json take from it, as ``_write_run_file`` writes it.

    The pid must be a single process (``os.kill`` reads 0 and -1 as groups
    of processes, and a number past pid_t as an error); the worker's port is
    what ``status``, ``query`` and the dashboard connect to.
    """
    return (
        isinstance(info, dict)
        and _is_int(info.get("pid")) and 0 < info["pid"] < 2**31
        and (info.get("start") is None or _is_int(info["start"]))
        and _is_int(info.get("worker_port")) and 0 < info["worker_port"] < 65536
        and isinstance(info.get("worker_host", ""), str)
    )  # fmt: skip


def read_run_file(settings: Settings) -> dict | None:
    """The running pipeline's addresses, if ``cxstream up`` runs on this data dir.

    None when no file is there or when the process that wrote it has ended
    (a ``kill -9`` leaves the file): the pid must be alive and, where /proc
    tells, have the start time the file recorded (a reused pid is another process).
    None too for a file that is not what ``up`` writes (``_is_run_record``):
    nothing of it can be relied on, as if no pipeline ran.
    """
    path = settings.data_dir / RUN_FILE
    if not path.exists():
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):  # half written by a process killed while writing it; a directory; unreadable
        return None
    if not _is_run_record(info):
        return None
    try:
        os.kill(info["pid"], 0)
    except OSError:
        return None
    start = process_start(info["pid"])
    if info.get("start") is not None and start is not None and start != info["start"]:
        return None
    return info


def query_running_worker(
    port: int, sql: str, token: str, timeout_s: float = 120.0, host: str = "127.0.0.1"
) -> tuple[list[str], list[list]]:
    """Run SQL through a running worker's ``/cx/query`` (it owns the chdb directory)."""
    req = urllib.request.Request(
        f"http://{host}:{port}/cx/query",
        data=orjson.dumps({"sql": sql}),
        headers={"Content-Type": "application/json", **worker_headers(token)},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or (status == 200 and not {"columns", "rows"} <= body.keys()):
        # Not a worker's answer: something else on the port, or a worker cut off mid-answer.
        raise RuntimeError(
            f"{host}:{port} did not answer as a cxstream worker (HTTP {status}, {len(raw)} bytes: {raw[:80]!r})"
        )
    if status != 200:
        raise RuntimeError(body.get("error", f"HTTP {status}"))
    return body["columns"], body["rows"]


def _listens(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Pipeline:
    """The running components of one ``cxstream up``."""

    settings: Settings
    log_dir: Path | None = None
    bootstrap: str = ""
    collector_port: int = 0
    collector_metrics_port: int = 0
    worker_port: int = 0
    broker: EmbeddedBroker | None = None
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    token: str = ""  # required by the workers' web ports (pipeline.webtoken), new at each start
    dashboard: bool = False  # also run the dashboard as a child (cxstream up, CX_DASHBOARD_ENABLED)
    dashboard_port: int = 0
    restarts: int = 0  # collector and workers started again (restart_exited_workers, supervise)
    on_note: Callable[[str], None] | None = None  # told of each exit and restart (cxstream up prints them)
    given_up: set[str] = field(default_factory=set)  # side children past their restart budget, left stopped
    _lock_fd: int | None = field(default=None, repr=False)
    _envs: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)  # extra env of each child
    _started: dict[str, float] = field(default_factory=dict, repr=False)  # monotonic time of each (re)start
    _failures: dict[str, int] = field(default_factory=dict, repr=False)  # exits in a row, each soon after a start
    _due: dict[str, float] = field(default_factory=dict, repr=False)  # exited children: when to start them again
    _restarts_of: dict[str, int] = field(default_factory=dict, repr=False)  # restarts of each child so far
    _port_moves: dict[str, int] = field(default_factory=dict, repr=False)  # ports picked again for each child

    @property
    def worker_host(self) -> str:
        """Where to reach the workers' web ports (their bind address; loopback for a wildcard)."""
        bind = self.settings.worker_web_bind
        return "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind

    @property
    def worker_headers(self) -> dict[str, str]:
        return worker_headers(self.token)

    @property
    def dashboard_host(self) -> str:
        bind = self.settings.dashboard_bind
        return "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind

    @property
    def dashboard_url(self) -> str:
        """The dashboard's address with ``?token=`` for a browser's first visit; '' without a dashboard."""
        if not self.dashboard_port:
            return ""
        from urllib.parse import urlencode

        return f"http://{self.dashboard_host}:{self.dashboard_port}/?{urlencode({'token': self.token})}"

    @property
    def collector_url(self) -> str:
        return f"http://{self.settings.collector_host}:{self.collector_port}"

    @property
    def collector_metrics_url(self) -> str:
        """The collector's metrics port (``/metrics``, ``/health``, ``/ready``); process 0's of several."""
        return self.collector_metrics_urls[0]

    @property
    def collector_metrics_urls(self) -> list[str]:
        """Each collector process's metrics port (``CX_COLLECTOR_PROCESSES``: the first port + i)."""
        host = self.settings.collector_metrics_host
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        return [f"http://{host}:{self.collector_metrics_port + i}" for i in range(self.settings.collector_processes)]

    def start(self) -> "Pipeline":
        """Start broker (if embedded), topics, worker and collector; on any failure stop what started.

        Raises ``DataDirInUse`` when another pipeline runs on the data dir,
        ``SupervisionError`` when the collector or worker fails to start
        more times in a row than ``restart_budget`` allows.
        """
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> "Pipeline":
        s = self.settings
        s.require_pii_salt()
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self._take_data_dir()
        log_dir = self.log_dir or (s.data_dir / "logs")
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log_dir = log_dir
        if s.embedded_kafka:
            self.broker = EmbeddedBroker(log_path=log_dir / "broker.log").start()
            self.bootstrap = self.broker.bootstrap
            self._record()
        else:
            self.bootstrap = s.kafka_bootstrap
        ensure_topics(s, self.bootstrap)
        # Each picked port avoids the ones picked before it: they are free until their processes bind them.
        self.collector_port = free_port(self._ports_taken()) if self._picked_port("collector") else s.collector_port
        # Collector process i (CX_COLLECTOR_PROCESSES) serves its metrics on this port + i.
        self.collector_metrics_port = (
            free_ports(s.collector_processes, avoid=self._ports_taken())
            if s.collector_metrics_port in (0, 9108) else s.collector_metrics_port
        )
        self.worker_port = free_port(self._ports_taken()) if self._picked_port("worker") else s.worker_web_port
        self._env = {
            **os.environ,
            **s.to_env(),
            "CX_KAFKA_BOOTSTRAP": self.bootstrap,
            "CX_COLLECTOR_PORT": str(self.collector_port),
            "CX_COLLECTOR_METRICS_PORT": str(self.collector_metrics_port),
            "CX_WORKER_WEB_PORT": str(self.worker_port),
            "CX_DATA_DIR": str(s.data_dir.resolve()),
        }
        self.token = new_token(s.data_dir)
        self._spawn("worker")
        self._spawn("collector")
        listeners = ["collector", "worker"]
        if self.dashboard:
            self.dashboard_port = free_port(self._ports_taken()) if self._picked_port("dashboard") else s.dashboard_port
            self._env["CX_DASHBOARD_PORT"] = str(self.dashboard_port)
            self._spawn("dashboard")
            listeners.append("dashboard")
        self._wait_ready(listeners)
        if s.delivery_enabled:
            self._spawn("deliver")  # listens on nothing: supervised by its exits alone
        self._write_run_file()
        return self

    def _write_run_file(self) -> None:
        s = self.settings
        (s.data_dir / RUN_FILE).write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "start": process_start(os.getpid()),
                    "bootstrap": self.bootstrap,
                    "collector_url": self.collector_url,
                    "collector_metrics_url": self.collector_metrics_url,
                    "collector_metrics_urls": self.collector_metrics_urls,
                    "worker_port": self.worker_port,
                    "worker_host": self.worker_host,
                    "dashboard_port": self.dashboard_port or None,
                    "delivery_enabled": s.delivery_enabled,
                }
            )
        )

    # --- one pipeline per data dir ------------------------------------------

    def _take_data_dir(self) -> None:
        """Lock the data dir for this process (the kernel drops the lock when it ends, however it ends).

        Then stop whatever a pipeline that died here left running (a child
        that outlived it where the kernel offers no parent-death signal, or
        one still in its last milliseconds) and remove its run file.
        """
        data_dir = self.settings.data_dir
        path = data_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _read_record(path).get("pid", "unknown")
            raise DataDirInUse(
                f"{data_dir.resolve()} is in use by a running pipeline (pid {holder}): "
                "stop it first, or give this one another CX_DATA_DIR"
            ) from None
        self._lock_fd = fd
        left = self._stop_leftovers(_read_record(path))
        if left:
            self._note("stopped processes a previous run on this data dir left: " + ", ".join(left))
        (data_dir / RUN_FILE).unlink(missing_ok=True)
        self._record()

    def _stop_leftovers(self, record: dict) -> list[str]:
        """SIGKILL the recorded children of a dead pipeline still alive (same pid and start time)."""
        left = []
        for name, (pid, start) in record.get("children", {}).items():
            if start is not None and process_start(pid) == start:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                left.append((name, pid, start))
        deadline = time.monotonic() + LEFTOVER_STOP_S
        while any(process_start(pid) == start for _, pid, start in left) and time.monotonic() < deadline:
            time.sleep(0.05)
        return [f"{name} (pid {pid})" for name, pid, _ in left]

    def _record(self) -> None:
        """Write this pipeline's pid and its children's (pid, start time) into the lock file."""
        if self._lock_fd is None:
            return
        children = {name: (proc.pid, process_start(proc.pid)) for name, proc in self.procs.items()}
        if self.broker is not None and self.broker.pid is not None:
            children["broker"] = (self.broker.pid, process_start(self.broker.pid))
        data = json.dumps({"pid": os.getpid(), "start": process_start(os.getpid()), "children": children}).encode()
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, data, 0)

    def _release_data_dir(self) -> None:
        if self._lock_fd is None:
            return
        (self.settings.data_dir / RUN_FILE).unlink(missing_ok=True)
        os.ftruncate(self._lock_fd, 0)  # nothing left to stop
        os.close(self._lock_fd)  # drops the flock
        self._lock_fd = None

    # --- children -----------------------------------------------------------

    def _spawn(self, name: str, env: dict[str, str] | None = None) -> None:
        """Start a collector or worker process that dies with this one.

        The parent-death signal is tied to the thread that forks: only the
        main thread (which lives as long as the process) asks for it.
        """
        log = open(self._log_dir / f"{name}.log", "ab")
        command = "worker" if name.startswith("worker") else name
        if env is not None:
            self._envs[name] = env
        in_main = threading.current_thread() is threading.main_thread()
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", command],
            env={**self._env, **self._envs.get(name, {}), RESTARTS_ENV: str(self._restarts_of.get(name, 0))},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent() if in_main else None,
        )
        log.close()  # the child holds its own descriptor
        self._started[name] = time.monotonic()
        self._record()

    def _wait_ready(self, names: list[str]) -> None:
        """Wait until each child listens, starting again those that exit (``supervise``)."""
        waiting = list(names)
        while waiting:
            self.supervise()
            now = time.monotonic()
            for name in list(waiting):
                if self._listening(name):
                    waiting.remove(name)
                elif name not in self.procs:
                    continue  # exited: supervise starts it again after its backoff
                elif now - self._started[name] > READY_TIMEOUT_S:
                    host, port = self._address(name)
                    raise TimeoutError(
                        f"{name} did not listen on {host}:{port} within {READY_TIMEOUT_S:.0f} s; see {self.log_path(name)}"
                    )
            time.sleep(0.05)

    # --- the ports the children listen on -------------------------------------

    @staticmethod
    def _port_variable(name: str) -> str:
        if name.startswith("worker"):
            return "CX_WORKER_WEB_PORT"
        return {"collector": "CX_COLLECTOR_PORT", "dashboard": "CX_DASHBOARD_PORT"}[name]

    def _address(self, name: str) -> tuple[str, int]:
        """Where the child ``name`` listens (its host as reached from here, its port)."""
        if name == "collector":
            return self.settings.collector_host, self.collector_port
        if name == "dashboard":
            return self.dashboard_host, self.dashboard_port
        own = self._envs.get(name, {}).get("CX_WORKER_WEB_PORT")
        return self.worker_host, int(own) if own else self.worker_port

    def _ports_taken(self) -> set[int]:
        """The ports this pipeline's listeners have or will have (0: not picked yet), for a new pick to avoid."""
        ports = {self.collector_port, self.worker_port, self.dashboard_port}
        if self.collector_metrics_port:
            ports.update(self.collector_metrics_port + i for i in range(self.settings.collector_processes))
        ports.update(int(env["CX_WORKER_WEB_PORT"]) for env in self._envs.values() if env.get("CX_WORKER_WEB_PORT"))
        if self.broker is not None:
            ports.add(self.broker.port)
        return ports - {0}

    def _picked_port(self, name: str) -> bool:
        """Whether this pipeline picks the child's port (the settings leave it free), so it may pick another."""
        s = self.settings
        if name == "worker":
            return s.worker_web_port in (0, 6066)
        if name.startswith("worker"):
            return True  # a further worker (``start_worker``) always gets a port picked for it
        return (s.collector_port if name == "collector" else s.dashboard_port) == 0

    def _set_port(self, name: str, port: int) -> None:
        variable = self._port_variable(name)
        if name == "worker":
            self.worker_port = port
        elif name == "collector":
            self.collector_port = port
        elif name == "dashboard":
            self.dashboard_port = port
        if name in ("worker", "collector", "dashboard"):
            self._env[variable] = str(port)
        if variable in self._envs.get(name, {}):
            self._envs[name][variable] = str(port)
        if (self.settings.data_dir / RUN_FILE).exists():
            self._write_run_file()

    def _listening(self, name: str) -> bool:
        """True once the child ``name`` itself listens on its port.

        A port picked with ``free_port`` is free when picked, not when the
        child binds it: another process (another pipeline, a test running
        beside this one) can listen there first, and "something listens" then
        answers for a child that never will. Where the kernel tells who
        listens (``listener_state``), another process's listener on a port
        this pipeline picked moves the child to a newly picked port (at most
        ``PORT_MOVES`` times); on a port the settings gave, it is an error.
        """
        host, port = self._address(name)
        proc = self.procs.get(name)  # None while an exited child waits for its restart
        state = listener_state(port, proc.pid if proc is not None else -1)
        if state is None:
            return proc is not None and _listens(host, port)
        if state != "foreign":
            return state == "ours" and proc is not None
        variable = self._port_variable(name)
        moves = self._port_moves.get(name, 0)
        if not self._picked_port(name):
            raise PortTaken(
                f"{name} cannot listen on {host}:{port} ({variable}): another process listens there; "
                f"stop that process or set {variable} to a free port"
            )
        if moves >= PORT_MOVES:
            raise PortTaken(
                f"{name} cannot listen: another process took each of the {moves + 1} ports picked for it "
                f"(the last {host}:{port}); set {variable} to a free port"
            )
        new = free_port(self._ports_taken())
        self._port_moves[name] = moves + 1
        self._note(f"{name}: another process took port {port} before {name} listened there; starting it on {new}")
        self._stop_proc(name, timeout_s=10)
        self._due.pop(name, None)  # it may have exited for want of the port: it starts now, on the new one
        self._set_port(name, new)
        self._spawn(name)
        return False

    def supervise(self) -> list[str]:
        """Start again the collector and workers that exited; call it often (``cxstream up``: every second).

        A child that exits is started again after a backoff:
        ``restart_backoff_s`` doubled for each failure in a row, at most
        ``RESTART_BACKOFF_MAX_S``. An exit less than ``restart_stable_s``
        after the child's (re)start is one more failure in a row; a child
        that stays up that long counts as started, and its count goes back
        to 0. Once a child fails ``restart_budget + 1`` times in a row (its
        first start and ``restart_budget`` restarts), raises
        ``SupervisionError`` naming it, its exit and its log file. Any exit
        counts: 75 (a batch the worker refused: it replays from its last
        commit), a crash, a signal. The embedded broker is not started
        again: its records were in its memory and are gone, so its exit
        raises ``SupervisionError`` at once.

        Returns what happened, one line each (also given to ``on_note``).
        """
        s = self.settings
        notes: list[str] = []
        now = time.monotonic()
        if self.broker is not None and self.broker.returncode is not None:
            code = self.broker.returncode
            path = self._log_dir / "broker.log"
            raise SupervisionError(
                f"the embedded broker ended ({describe_exit(code)}); its records were in memory only. "
                f"See {path}",
                "broker", code, path,
            )
        for name, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                if name in self._failures and now - self._started[name] >= s.restart_stable_s:
                    del self._failures[name]  # stayed up: the last restart worked
                continue
            del self.procs[name]
            up_s = now - self._started.pop(name, now)
            failures = 1 if up_s >= s.restart_stable_s else self._failures.get(name, 0) + 1
            self._failures[name] = failures
            self._record()
            path = self.log_path(name)
            if failures > s.restart_budget and name in SIDE_CHILDREN:
                # Ingestion does not depend on it: stop restarting it, keep the pipeline running.
                notes.append(
                    f"{name} failed {failures} times in a row (last: {describe_exit(code)} after {up_s:.1f} s; "
                    f"CX_RESTART_BUDGET={s.restart_budget} restarts spent); not started again, the collector and "
                    f"workers go on; see {path}"
                )
                self.given_up.add(name)
                continue
            if failures > s.restart_budget:
                raise SupervisionError(
                    f"{name} failed {failures} times in a row (last: {describe_exit(code)} after {up_s:.1f} s; "
                    f"CX_RESTART_BUDGET={s.restart_budget} restarts spent); see {path}",
                    name, code, path,
                )
            delay = min(s.restart_backoff_s * 2 ** (failures - 1), RESTART_BACKOFF_MAX_S)
            self._due[name] = now + delay
            notes.append(
                f"{name} ended ({describe_exit(code)}) after {up_s:.1f} s; starting it again in {delay:.1f} s "
                f"(failure {failures} in a row, {s.restart_budget} restarts allowed); see {path}"
            )
        for name, due in sorted(self._due.items(), key=lambda item: item[1]):
            if due > now:
                continue
            del self._due[name]
            self._restarts_of[name] = self._restarts_of.get(name, 0) + 1
            self._spawn(name)
            self.restarts += 1
            notes.append(f"{name} started again (pid {self.procs[name].pid})")
        for note in notes:
            self._note(note)
        return notes

    def _note(self, text: str) -> None:
        if self.on_note is not None:
            self.on_note(text)

    def _wait_worker(self, name: str = "worker") -> int:
        """Wait until the worker ``name`` listens on its web port (``_listening``); returns that port."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._listening(name):  # first: it may have exited because another process took its port
                return self._address(name)[1]
            if self.procs[name].poll() is not None:
                host, port = self._address(name)
                raise RuntimeError(f"process meant to listen on {host}:{port} exited; see {self.log_path(name)}")
            time.sleep(0.05)
        host, port = self._address(name)
        raise TimeoutError(f"nothing listened on {host}:{port} within {READY_TIMEOUT_S:.0f}s; see {self.log_path(name)}")

    def kill_worker(self, name: str = "worker") -> None:
        """``kill -9`` a worker process (fault injection): no shutdown, no final commit."""
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(timeout=30)
        self._started.pop(name, None)

    def start_worker(self, name: str = "worker") -> int:
        """Start a worker process (again, or one more); returns its web port once it serves.

        Against a ClickHouse server any number of workers share the work as
        one consumer group; with chdb only one process can own the store.
        A worker started again under the same name keeps its port: whoever
        watches it (a test, an operator's probe) keeps its address.
        """
        known = self._envs.get(name, {}).get("CX_WORKER_WEB_PORT")
        port = self.worker_port if name == "worker" else int(known) if known else free_port(self._ports_taken())
        self._spawn(name, {"CX_WORKER_WEB_PORT": str(port)})
        return self._wait_worker(name)

    def log_path(self, name: str) -> Path:
        """The log file of a process this pipeline started (``worker``, ``collector``, ...)."""
        return self._log_dir / f"{name}.log"

    def restart_exited_workers(self) -> list[str]:
        """Start again every worker that exited because a batch did not complete.

        A worker exits with ``EXIT_UNFINISHED_BATCH`` (75, EX_TEMPFAIL) rather
        than let Faust acknowledge records it did not store; a new process
        replays them from the committed offset. Any other exit is an error.
        Returns the names restarted.
        """
        restarted = []
        for name, proc in list(self.procs.items()):
            if not name.startswith("worker") or proc.poll() is None:
                continue
            if proc.returncode != EXIT_UNFINISHED_BATCH:
                raise RuntimeError(f"{name} exited with code {proc.returncode}; see {self._log_dir / (name + '.log')}")
            del self.procs[name]
            self._restarts_of[name] = self._restarts_of.get(name, 0) + 1
            self.start_worker(name)
            self.restarts += 1
            restarted.append(name)
        return restarted

    def stop_worker(self, name: str) -> None:
        """Stop a worker gracefully (SIGTERM): it finishes its batch and leaves the group."""
        self._stop_proc(name)

    def query(self, sql: str) -> tuple[list[str], list[list]]:
        return query_running_worker(self.worker_port, sql, self.token, host=self.worker_host)

    def lag(self) -> int:
        """Records on the events and dead-letter topics not yet committed by the worker."""
        return sum(max(0, high - max(committed, 0)) for committed, high in self.offsets().values())

    def offsets(self) -> dict[str, tuple[int, int]]:
        """``topic[partition]`` -> (the worker group's committed offset, end offset), events and dead letters.

        The end is the high watermark, except where that says everything is
        committed: there a record at the committed offset is looked for, as
        the embedded broker reports a partition's end as its last batch's
        first offset + 1 (records after it in that batch are not counted).
        """
        consumer = Consumer({**kafka_config(self.settings, self.bootstrap), "group.id": self.settings.worker_group})
        try:
            out: dict[str, tuple[int, int]] = {}
            looks_done: list[TopicPartition] = []
            md = consumer.list_topics(timeout=10).topics
            for topic in (self.settings.topic_events, self.settings.topic_deadletter):
                tps = [TopicPartition(topic, p) for p in md[topic].partitions]
                for tp in consumer.committed(tps, timeout=10):
                    low, high = consumer.get_watermark_offsets(tp, timeout=10)
                    out[f"{tp.topic}[{tp.partition}]"] = (tp.offset, high)
                    if max(tp.offset, 0) >= high:
                        # Nothing committed: from the first record (the low watermark, which saves
                        # the client a lookup of OFFSET_BEGINNING: half a second).
                        start = tp.offset if tp.offset >= 0 else low
                        looks_done.append(TopicPartition(tp.topic, tp.partition, start))
        finally:
            consumer.close()
        for name, end in self._read_ends(looks_done).items():
            committed, high = out[name]
            out[name] = (committed, max(high, end))
        return out

    def _read_ends(self, tps: list[TopicPartition]) -> dict[str, int]:
        """One past the last record found at or after each start offset (partitions with none: absent).

        Reads until every partition reports its end (``enable.partition.eof``);
        should one not, until nothing came for 1 s (the first fetch also
        connects), then 0.2 s after the last record.
        """
        if not tps:
            return {}
        probe = Consumer(
            {
                **kafka_config(self.settings, self.bootstrap),
                "group.id": f"{self.settings.worker_group}-probe",  # never commits: reads only
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 10,
            }
        )
        ends: dict[str, int] = {}
        pending = {(tp.topic, tp.partition) for tp in tps}
        try:
            probe.assign(tps)
            quiet_until = time.monotonic() + 1.0
            while pending and time.monotonic() < quiet_until:
                for m in probe.consume(num_messages=1000, timeout=0.05):
                    error = m.error()
                    if error is None:
                        name = f"{m.topic()}[{m.partition()}]"
                        ends[name] = max(ends.get(name, 0), m.offset() + 1)
                        quiet_until = max(quiet_until, time.monotonic() + 0.2)
                    elif error.code() == KafkaError._PARTITION_EOF:
                        pending.discard((m.topic(), m.partition()))
        finally:
            probe.close()
        return ends

    def records_produced(self) -> int:
        """Records on the events topic so far (each partition's end, read as ``offsets`` does)."""
        consumer = Consumer({**kafka_config(self.settings, self.bootstrap), "group.id": self.settings.worker_group})
        try:
            topic = self.settings.topic_events
            tps = [TopicPartition(topic, p) for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions]
            highs = {f"{topic}[{tp.partition}]": consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
        finally:
            consumer.close()
        ends = self._read_ends([TopicPartition(topic, tp.partition, highs[f"{topic}[{tp.partition}]"]) for tp in tps])
        return sum(max(high, ends.get(name, 0)) for name, high in highs.items())

    def wait_drained(self, timeout_s: float = 120.0) -> bool:
        """Wait until the worker committed everything the collector acknowledged."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                self.restart_exited_workers()
            except RuntimeError:
                return False
            if self.lag() == 0:
                return True
            time.sleep(0.5)
        return False

    def _stop_proc(self, name: str, timeout_s: float = 30.0) -> None:
        stop_process(self.procs.pop(name, None), timeout_s)
        self._started.pop(name, None)

    def stop(self) -> None:
        """Stop in the order that loses nothing acknowledged (module docstring).

        The drain is skipped when it cannot happen (no worker, or the
        embedded broker already ended) and given up when Kafka does not
        answer; the processes are stopped in any case.
        """
        self._due.clear()  # nothing is started again from here on
        # The collector lets its requests finish (30 s), then flushes; several processes' supervisor
        # waits for them up to CHILD_SHUTDOWN_S: killing it sooner kills its children mid-flush.
        self._stop_proc("collector", timeout_s=CHILD_SHUTDOWN_S + 5.0)
        if "worker" in self.procs and (self.broker is None or self.broker.running()):
            try:
                self.wait_drained()
            except Exception as exc:  # Kafka unreachable: stop anyway, the worker replays from its last commit
                log.warning("stopping without waiting for the worker to drain: %s", exc)
        for name in [n for n in self.procs if n.startswith("worker")]:
            self._stop_proc(name)
        # deliver last: it lets the deliveries in progress finish (CX_DELIVERY_DRAIN_S) and commits them
        self._stop_proc("deliver", timeout_s=self.settings.delivery_drain_s + 30.0)
        for name in list(self.procs):
            self._stop_proc(name)
        if self.broker is not None:
            self.broker.stop()
        self._release_data_dir()

    def __enter__(self) -> "Pipeline":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def child_alive(data_dir: Path, name: str) -> bool:
    """Whether the child ``name`` (``deliver``, ...) that the pipeline on ``data_dir`` recorded still runs.

    Reads the lock file's record only: the pid must be alive with the
    start time recorded (a reused pid is another process).
    """
    pid, start = (_read_record(data_dir / LOCK_FILE).get("children", {}).get(name) or (None, None))
    return pid is not None and start is not None and process_start(pid) == start


def data_dir_owner(data_dir: Path) -> int | None:
    """The pid of the pipeline running on ``data_dir`` as its lock file records it, or None.

    Reads the record only (it takes no lock): for a check before touching
    the directory, as ``cxstream demo`` does before it empties its own.
    """
    record = _read_record(data_dir / LOCK_FILE)
    pid, start = record.get("pid"), record.get("start")
    if pid is None or start is None or process_start(pid) != start:
        return None
    return pid


def _read_record(path: Path) -> dict:
    """The lock file's record of a pipeline's processes ({} if empty or half written)."""
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
