"""A real ClickHouse server for tests and fault drills: a local process, or a container.

``ClickHouseServer`` runs the installed ``clickhouse-server`` (Debian ships
18.16; ``bash infra/setup.sh --clickhouse-server`` installs it) in a fresh
temporary directory on free loopback ports, configured from
``infra/clickhouse/*.xml``. ``stop()``/``kill()`` then ``start()`` restart it
on the same ports and data, for fault tests.

The process is started with a far-from-UTC ``TZ`` on purpose: only the
config's ``<timezone>UTC</timezone>`` and the schema's ``DateTime('UTC')``
columns keep times right, so a regression in either shows in the tests.

``ClickHouseContainerServer`` is the same interface over testcontainers'
``ClickHouseContainer`` (a current ClickHouse image), used when a Docker
engine answers.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from string import Template
from typing import Callable
from xml.sax.saxutils import escape

from pipeline.supervisor.ports import free_port, stop_process

__all__ = ["ClickHouseContainerServer", "ClickHouseServer", "docker_available", "server_command"]

TEMPLATES = Path(__file__).parent / "clickhouse"
PROCESS_TZ = "Pacific/Kiritimati"  # UTC+14: a day boundary away from UTC
CONTAINER_IMAGE = os.environ.get("CX_TEST_CLICKHOUSE_IMAGE", "clickhouse/clickhouse-server:25.8")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def server_command() -> list[str]:
    """The command that runs a ClickHouse server; raise FileNotFoundError naming the fix."""
    for name in ("clickhouse-server", "/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"):
        path = shutil.which(name)
        if path:
            return [path]
    # The official single binary: `clickhouse server`.
    for name in ("clickhouse", "/usr/bin/clickhouse"):
        path = shutil.which(name)
        if path:
            return [path, "server"]
    raise FileNotFoundError(
        "no clickhouse-server binary found; install it with `bash infra/setup.sh --clickhouse-server`"
    )


def docker_available() -> tuple[bool, str]:
    """(True, '') when a Docker engine answers; else (False, why not)."""
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True, ""
    except Exception as exc:  # no socket, no daemon, no permission: all mean "no engine"
        return False, f"{type(exc).__name__}: {exc}".splitlines()[0][:160]


def _two_free_ports() -> tuple[int, int]:
    first = free_port()
    second = free_port()
    while second == first:
        second = free_port()
    return first, second


def _answers(host: str, http_port: int, path: str, expected: bytes) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{http_port}{path}", timeout=1) as resp:
            return resp.read().strip() == expected
    except OSError:
        return False


def _wait_until_answering(
    host: str,
    http_port: int,
    alive: Callable[[], bool],
    what: str,
    path: str = "/?query=SELECT%201",
    expected: bytes = b"1",
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if _answers(host, http_port, path, expected):
            return
        if not alive():
            raise RuntimeError(f"{what} exited during start-up")
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not answer a query within {START_TIMEOUT_S:.0f}s")


class ClickHouseServer:
    """A local ``clickhouse-server`` process. Use as a context manager.

    ``root`` is the directory for config, data and logs; by default a fresh
    temporary directory that ``close()`` removes.
    """

    kind = "local"

    def __init__(self, root: Path | None = None, tcp_port: int = 0, http_port: int = 0) -> None:
        self._owns_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="cx-clickhouse-")) if root is None else root
        self.tcp_port = tcp_port
        self.http_port = http_port
        # Extra top-level XML for config.xml (a cluster member's ZooKeeper,
        # remote_servers and macros: infra/clickhouse_cluster.py); "" alone.
        self.cluster_config = ""
        self._proc: subprocess.Popen | None = None
        self._exit_hook = False

    @property
    def url(self) -> str:
        return f"clickhouse://default:@127.0.0.1:{self.tcp_port}/default"

    @property
    def log_path(self) -> Path:
        return self.root / "log" / "server.err.log"

    def _write_config(self) -> Path:
        values = {
            "tcp_port": str(self.tcp_port),
            "http_port": str(self.http_port),
            "data_dir": escape(str(self.root / "data")),
            "log_dir": escape(str(self.root / "log")),
            "users_config": escape(str(self.root / "users.xml")),
            "cluster": self.cluster_config,
        }
        for name in ("config.xml", "users.xml"):
            text = Template((TEMPLATES / name).read_text()).substitute(values)
            (self.root / name).write_text(text)
        (self.root / "log").mkdir(exist_ok=True)
        return self.root / "config.xml"

    def start(self) -> "ClickHouseServer":
        """Start (or restart on the same ports and data); return once it answers a query."""
        if self.running():
            return self
        command = server_command()
        if not self.tcp_port:
            self.tcp_port, self.http_port = _two_free_ports()
        config = self._write_config()
        env = {**os.environ, "TZ": PROCESS_TZ}
        with open(self.root / "log" / "stderr.log", "ab") as stderr:
            self._proc = subprocess.Popen(
                [*command, f"--config-file={config}"],
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        if not self._exit_hook:
            # Safety net when a test run is interrupted before fixtures finalize.
            atexit.register(self.kill)
            self._exit_hook = True
        try:
            what = f"clickhouse-server on port {self.tcp_port}"
            _wait_until_answering("127.0.0.1", self.http_port, self.running, what)
        except Exception as exc:
            self.kill()
            tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            raise RuntimeError(f"{exc}; last log lines:\n{tail}") from exc
        return self

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Graceful stop: SIGTERM, wait, then SIGKILL. Data and ports are kept for ``start()``.

        A server that had already exited on its own (a crash under a test)
        is reported on stderr with its exit code and the end of its error
        log, where pytest shows it beside the failure it explains.
        """
        report = self.exit_report()
        if report:
            print(report, file=sys.stderr)
        proc, self._proc = self._proc, None
        stop_process(proc, STOP_TIMEOUT_S)

    def exit_report(self, lines: int = 20) -> str | None:
        """If the server exited without being stopped: its exit code and the last ``lines`` of its error log."""
        if self._proc is None or self._proc.poll() is None:
            return None
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:] if self.log_path.exists() else []
        return (
            f"clickhouse-server on port {self.tcp_port} had exited by itself (exit code {self._proc.returncode});"
            f" the end of {self.log_path}:\n" + "\n".join(tail)
        )

    def kill(self) -> None:
        """Crash it (SIGKILL), as a power cut would. ``start()`` brings it back on the same data."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)

    def close(self) -> None:
        """Stop and remove the temporary directory this server created."""
        self.stop()
        if self._exit_hook:
            atexit.unregister(self.kill)
            self._exit_hook = False
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "ClickHouseServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class ClickHouseContainerServer:
    """The same interface over a testcontainers ClickHouse container (needs a Docker engine).

    Host ports are chosen up front and bound explicitly, so a ``stop()`` or
    ``kill()`` followed by ``start()`` keeps the URL valid.
    """

    kind = "container"

    def __init__(self, image: str = CONTAINER_IMAGE) -> None:
        self.image = image
        self.host = "127.0.0.1"
        self.tcp_port = 0
        self.http_port = 0
        self._container = None

    @property
    def url(self) -> str:
        c = self._container
        return f"clickhouse://{c.username}:{c.password}@{self.host}:{self.tcp_port}/default"

    def start(self) -> "ClickHouseContainerServer":
        """Create and start the container, or start it again after stop/kill."""
        if self._container is None:
            from testcontainers.community.clickhouse import ClickHouseContainer

            self.tcp_port, self.http_port = _two_free_ports()
            container = ClickHouseContainer(self.image).with_env("TZ", "UTC")
            container.with_bind_ports(9000, self.tcp_port).with_bind_ports(8123, self.http_port)
            container.start()
            self._container = container
            self.host = container.get_container_host_ip()
        elif not self.running():
            self._container.get_wrapped_container().start()
        # /ping needs no credentials (the image replaces `default` with its own user).
        _wait_until_answering(self.host, self.http_port, self.running, f"container {self.image}", "/ping", b"Ok.")
        return self

    def running(self) -> bool:
        if self._container is None:
            return False
        wrapped = self._container.get_wrapped_container()
        wrapped.reload()
        return wrapped.status == "running"

    def stop(self) -> None:
        if self._container is not None:
            self._container.get_wrapped_container().stop(timeout=int(STOP_TIMEOUT_S))

    def kill(self) -> None:
        if self._container is not None and self.running():
            self._container.get_wrapped_container().kill()

    def close(self) -> None:
        """Remove the container."""
        container, self._container = self._container, None
        if container is not None:
            container.stop()

    def __enter__(self) -> "ClickHouseContainerServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
