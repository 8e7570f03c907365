"""Run the whole pipeline: broker (embedded or yours), collector and worker processes.

``cxstream up`` and ``cxstream demo`` use this. The collector and the worker
run as child processes (two cores: the collector's HTTP parsing and the
worker's stream processing do not share one GIL). Shutdown order is what
makes "nothing acknowledged is lost" true with the memory-only embedded
broker: stop the collector (no new acknowledgements), wait until the worker
has committed every record, stop the worker, then the broker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import urllib.request

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from infra.broker import EmbeddedBroker
from infra.ports import free_port, stop_process, wait_for_port
from pipeline.exitcodes import EXIT_UNFINISHED_BATCH
from pipeline.settings import Settings
from pipeline.topics import ensure_topics, kafka_config

__all__ = ["Pipeline", "RUN_FILE", "query_running_worker", "read_run_file"]

RUN_FILE = "run.json"


def read_run_file(settings: Settings) -> dict | None:
    """The running pipeline's addresses, if ``cxstream up`` runs on this data dir."""
    path = settings.data_dir / RUN_FILE
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    try:
        os.kill(info["pid"], 0)
    except OSError:
        return None
    return info


def query_running_worker(port: int, sql: str, timeout_s: float = 60.0) -> tuple[list[str], list[list]]:
    """Run SQL through a running worker's ``/cx/query`` (it owns the chdb directory)."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/cx/query",
        data=orjson.dumps({"sql": sql}),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            body = orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = orjson.loads(exc.read())
        raise RuntimeError(body.get("error", str(exc))) from None
    return body["columns"], body["rows"]


@dataclass
class Pipeline:
    """The running components of one ``cxstream up``."""

    settings: Settings
    log_dir: Path | None = None
    bootstrap: str = ""
    collector_port: int = 0
    worker_port: int = 0
    broker: EmbeddedBroker | None = None
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    restarts: int = 0  # workers started again by restart_exited_workers

    @property
    def collector_url(self) -> str:
        return f"http://{self.settings.collector_host}:{self.collector_port}"

    def start(self) -> "Pipeline":
        """Start broker (if embedded), topics, worker and collector; on any failure stop what started."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> "Pipeline":
        s = self.settings
        s.require_pii_salt()
        s.data_dir.mkdir(parents=True, exist_ok=True)
        log_dir = self.log_dir or (s.data_dir / "logs")
        log_dir.mkdir(parents=True, exist_ok=True)
        if s.embedded_kafka:
            self.broker = EmbeddedBroker(log_path=log_dir / "broker.log").start()
            self.bootstrap = self.broker.bootstrap
        else:
            self.bootstrap = s.kafka_bootstrap
        ensure_topics(s, self.bootstrap)
        self.collector_port = s.collector_port or free_port()
        self.worker_port = free_port() if s.worker_web_port in (0, 6066) else s.worker_web_port
        self._env = {
            **os.environ,
            **s.to_env(),
            "CX_KAFKA_BOOTSTRAP": self.bootstrap,
            "CX_COLLECTOR_PORT": str(self.collector_port),
            "CX_WORKER_WEB_PORT": str(self.worker_port),
            "CX_DATA_DIR": str(s.data_dir.resolve()),
        }
        self._log_dir = log_dir
        self._spawn("worker")
        self._spawn("collector")
        wait_for_port(self.collector_port, s.collector_host, 60, alive=lambda: self.procs["collector"].poll() is None)
        self._wait_worker()
        (s.data_dir / RUN_FILE).write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "bootstrap": self.bootstrap,
                    "collector_url": self.collector_url,
                    "worker_port": self.worker_port,
                }
            )
        )
        return self

    def _spawn(self, name: str, env: dict[str, str] | None = None) -> None:
        log = open(self._log_dir / f"{name}.log", "ab")
        command = "worker" if name.startswith("worker") else name
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", command],
            env={**self._env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()  # the child holds its own descriptor

    def _wait_worker(self, name: str = "worker", port: int | None = None) -> None:
        proc = self.procs[name]
        wait_for_port(port or self.worker_port, "127.0.0.1", 90, alive=lambda: proc.poll() is None)

    def kill_worker(self, name: str = "worker") -> None:
        """``kill -9`` a worker process (fault injection): no shutdown, no final commit."""
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(timeout=30)

    def start_worker(self, name: str = "worker") -> int:
        """Start a worker process (again, or one more); returns its web port once it serves.

        Against a ClickHouse server any number of workers share the work as
        one consumer group; with chdb only one process can own the store.
        """
        port = self.worker_port if name == "worker" else free_port()
        self._spawn(name, {"CX_WORKER_WEB_PORT": str(port)})
        self._wait_worker(name, port)
        return port

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
            self.start_worker(name)
            self.restarts += 1
            restarted.append(name)
        return restarted

    def stop_worker(self, name: str) -> None:
        """Stop a worker gracefully (SIGTERM): it finishes its batch and leaves the group."""
        self._stop_proc(name)

    def query(self, sql: str) -> tuple[list[str], list[list]]:
        return query_running_worker(self.worker_port, sql)

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
                    _, high = consumer.get_watermark_offsets(tp, timeout=10)
                    out[f"{tp.topic}[{tp.partition}]"] = (tp.offset, high)
                    if max(tp.offset, 0) >= high:
                        start = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                        looks_done.append(TopicPartition(tp.topic, tp.partition, start))
        finally:
            consumer.close()
        for name, end in self._read_ends(looks_done).items():
            committed, high = out[name]
            out[name] = (committed, max(high, end))
        return out

    def _read_ends(self, tps: list[TopicPartition]) -> dict[str, int]:
        """One past the last record found at or after each start offset (partitions with none: absent)."""
        if not tps:
            return {}
        probe = Consumer(
            {
                **kafka_config(self.settings, self.bootstrap),
                "group.id": f"{self.settings.worker_group}-probe",  # never commits: reads only
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        ends: dict[str, int] = {}
        try:
            probe.assign(tps)
            wait = 1.0  # the first fetch also connects
            while msgs := probe.consume(num_messages=1000, timeout=wait):
                for m in msgs:
                    if m.error() is None:
                        name = f"{m.topic()}[{m.partition()}]"
                        ends[name] = max(ends.get(name, 0), m.offset() + 1)
                wait = 0.2
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

    def stop(self) -> None:
        """Stop in the order that loses nothing acknowledged (module docstring)."""
        self._stop_proc("collector")
        if "worker" in self.procs:
            self.wait_drained()
        for name in [n for n in self.procs if n.startswith("worker")]:
            self._stop_proc(name)
        if self.broker is not None:
            self.broker.stop()
        run_file = self.settings.data_dir / RUN_FILE
        if run_file.exists():
            run_file.unlink()

    def __enter__(self) -> "Pipeline":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
