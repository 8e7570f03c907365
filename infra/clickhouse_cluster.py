"""A ClickHouse cluster on one machine for tests: ZooKeeper plus clickhouse-servers as shards and replicas.

``ZooKeeperServer`` runs Debian's ZooKeeper (``bash infra/setup.sh
--clickhouse-server`` installs the ``zookeeper`` package: its jar in
/usr/share/java names its dependencies in its manifest) standalone, on a
free loopback port with a data directory of its own.

``ClickHouseCluster`` starts that ZooKeeper and ``shards`` x ``replicas``
local ``clickhouse-server`` processes (``infra.clickhouse_server.ClickHouseServer``,
each with its own ports and directory) that form the cluster ``name``
(``internal_replication``: a Distributed table writes one replica of a
shard and replication copies the part), the macros ``{shard}`` and
``{replica}`` per server, and the distributed DDL queue that ``ON
CLUSTER`` statements go through. ``replica(i).stop()`` and
``.start()`` restart one member on the same ports and data.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from infra.clickhouse_server import ClickHouseServer
from pipeline.supervisor.ports import free_port, stop_process, wait_for_port

__all__ = ["ClickHouseCluster", "ZooKeeperServer", "zookeeper_command"]

ZOOKEEPER_JARS = ("/usr/share/java/zookeeper.jar",)
ZOOKEEPER_MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"
START_TIMEOUT_S = 60.0


def zookeeper_command() -> list[str]:
    """``java -cp zookeeper.jar ZooKeeperServerMain``; raise FileNotFoundError naming the fix."""
    java = shutil.which("java")
    jar = next((j for j in ZOOKEEPER_JARS if Path(j).exists()), None)
    if java is None or jar is None:
        raise FileNotFoundError(
            "ZooKeeper is not installed (no java or /usr/share/java/zookeeper.jar); "
            "install it with `bash infra/setup.sh --clickhouse-server`"
        )
    return [java, "-Xmx256m", "-Dzookeeper.admin.enableServer=false", "-cp", jar, ZOOKEEPER_MAIN]


class ZooKeeperServer:
    """A standalone ZooKeeper process on a free loopback port, its data in ``root``; ``stop()`` ends it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self._proc: subprocess.Popen | None = None

    def start(self) -> "ZooKeeperServer":
        if self._proc is not None and self._proc.poll() is None:
            return self
        command = zookeeper_command()
        if not self.port:
            self.port = free_port()
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        config = self.root / "zoo.cfg"
        config.write_text(
            "tickTime=500\n"
            "initLimit=10\n"
            "syncLimit=5\n"
            f"dataDir={self.root / 'data'}\n"
            f"clientPort={self.port}\n"
            "clientPortAddress=127.0.0.1\n"
            "maxClientCnxns=200\n"
            "admin.enableServer=false\n"
            "4lw.commands.whitelist=srvr\n"
        )
        with open(self.root / "zookeeper.log", "ab") as log:
            self._proc = subprocess.Popen(
                [*command, str(config)],
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        try:
            wait_for_port(self.port, timeout_s=START_TIMEOUT_S, alive=lambda: self._proc.poll() is None)
            self._wait_serving()
        except Exception as exc:
            self.stop()
            tail = (self.root / "zookeeper.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"ZooKeeper did not start: {exc}; last log lines:\n{tail}") from exc
        return self

    def _wait_serving(self) -> None:
        """Until ZooKeeper's ``srvr`` reports its mode: it listens, and answers ``ruok``, before it serves.

        A clickhouse-server 18.16 started before that fails its first
        ZooKeeper handshake and was seen to crash (SIGSEGV) on its next
        ``ON CLUSTER`` statement.
        """
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"srvr")
                    answer = b""
                    while chunk := sock.recv(4096):
                        answer += chunk
                if b"Mode:" in answer:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"ZooKeeper on port {self.port} did not serve within {START_TIMEOUT_S:.0f}s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        stop_process(proc, 15.0)


def _server_config(cluster: str, zk_port: int, layout: list[list[ClickHouseServer]], shard: int, replica: int,
                   interserver_port: int) -> str:
    shards = "".join(
        "<shard><internal_replication>true</internal_replication>"
        + "".join(f"<replica><host>127.0.0.1</host><port>{m.tcp_port}</port></replica>" for m in members)
        + "</shard>"
        for members in layout
    )
    return f"""
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <interserver_http_port>{interserver_port}</interserver_http_port>
    <zookeeper>
        <node><host>127.0.0.1</host><port>{zk_port}</port></node>
        <session_timeout_ms>6000</session_timeout_ms>
    </zookeeper>
    <remote_servers>
        <{cluster}>{shards}</{cluster}>
    </remote_servers>
    <macros>
        <shard>{shard + 1:02d}</shard>
        <replica>replica-{replica + 1}</replica>
    </macros>
    <distributed_ddl>
        <path>/clickhouse/task_queue/ddl</path>
    </distributed_ddl>
"""


class ClickHouseCluster:
    """ZooKeeper and ``shards`` x ``replicas`` clickhouse-servers forming cluster ``name``. A context manager.

    ``replicas`` lists every server, shard by shard (``replica(0)`` and
    ``replica(1)`` are the two replicas of the first shard by default).
    """

    def __init__(self, name: str = "cx_cluster", replicas: int = 2, shards: int = 1) -> None:
        self.name = name
        self.root = Path(tempfile.mkdtemp(prefix="cx-ch-cluster-"))
        self.zookeeper = ZooKeeperServer(self.root / "zookeeper")
        self.layout = [
            [ClickHouseServer(self.root / f"shard-{s + 1}-replica-{r + 1}") for r in range(replicas)]
            for s in range(shards)
        ]
        self.replicas = [member for members in self.layout for member in members]
        self._exit_hook = False

    def replica(self, index: int) -> ClickHouseServer:
        return self.replicas[index]

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    def start(self) -> "ClickHouseCluster":
        if not self._exit_hook:
            atexit.register(self.close)
            self._exit_hook = True
        try:
            self.zookeeper.start()
            # Every member must know every member's port before any starts.
            taken: set[int] = {self.zookeeper.port}
            interserver: dict[int, int] = {}
            for member in self.replicas:
                trio: list[int] = []
                while len(trio) < 3:
                    port = free_port()
                    if port not in taken:
                        taken.add(port)
                        trio.append(port)
                member.root.mkdir(parents=True, exist_ok=True)
                member.tcp_port, member.http_port, interserver[id(member)] = trio
            for s, members in enumerate(self.layout):
                for r, member in enumerate(members):
                    member.cluster_config = _server_config(
                        self.name, self.zookeeper.port, self.layout, s, r, interserver[id(member)]
                    )
            for member in self.replicas:
                member.start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every server and ZooKeeper, and remove the directory."""
        for member in self.replicas:
            member.stop()
        self.zookeeper.stop()
        if self._exit_hook:
            atexit.unregister(self.close)
            self._exit_hook = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "ClickHouseCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":  # python -m infra.clickhouse_cluster: start one, print its URLs, stop on Enter
    with ClickHouseCluster() as running:
        print(f"ZooKeeper 127.0.0.1:{running.zookeeper.port}; cluster {running.name}: {' '.join(running.urls)}")
        input("Enter stops it. ")
