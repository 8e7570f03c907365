"""Fixtures of the fuzz suite: one running pipeline per test module, hypothesis settings per run length.

The bounded run (the default test command) takes few examples with a fixed
derandomized seed, so it is the same run every time; ``CX_SLOW=1`` adds the
long run (the ``slow`` parameter of each test), ``SLOW_FACTOR`` times more
examples. Hypothesis keeps no example database: nothing is written into the
checkout (and its caches go under the temporary directory).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
import requests
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

from pipeline.supervisor.runner import Pipeline
from pipeline.settings import Settings
from tests.integration.helpers import scalar, wait_until

# Hypothesis keeps caches (constants found in the code, Unicode tables) in a directory of its own:
# under the system's temporary directory, not in the checkout.
set_hypothesis_home_dir(os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY") or Path(tempfile.gettempdir()) / "cxstream-hypothesis")

SLOW_FACTOR = 20
RUN_LENGTHS = ["bounded", pytest.param("slow", marks=pytest.mark.slow)]


def fuzz_settings(run: str, bounded_examples: int) -> settings:
    """Hypothesis settings: reproducible (derandomized), no deadline (a request may wait on Kafka), no database."""
    return settings(
        max_examples=bounded_examples * (SLOW_FACTOR if run == "slow" else 1),
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                               HealthCheck.filter_too_much],
    )


@dataclass
class Ledger:
    """What one fuzz test sent, and what it expects the pipeline to have done with it."""

    examples: int = 0
    requests: int = 0
    records: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    sentinels: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def status(self, code: int) -> None:
        self.requests += 1
        self.statuses[code] = self.statuses.get(code, 0) + 1

    def summary(self, name: str, **more: object) -> str:
        extra = "".join(f", {k} {v}" for k, v in more.items())
        return (f"{name}: {self.examples} examples, {self.requests} requests, {self.records} records, "
                f"statuses {dict(sorted(self.statuses.items()))}{extra}, {time.monotonic() - self.started:.1f} s")


@dataclass
class FuzzPipeline:
    running: Pipeline
    keys: dict[str, str]  # write key -> tenant
    pids: dict[str, int]

    def key(self, tenant_suffix: str) -> str:
        return next(k for k, t in self.keys.items() if t.endswith(tenant_suffix))

    def query(self, sql: str):  # noqa: ANN201 - rows as the worker answers them
        return self.running.query(sql)[1]

    def scalar(self, sql: str):  # noqa: ANN201
        return scalar(self.running, sql)

    def assert_alive(self) -> None:
        """The collector and the worker are the processes started with the pipeline, still running."""
        for name, pid in self.pids.items():
            proc = self.running.procs.get(name)
            assert proc is not None and proc.poll() is None, f"{name} exited: see {self.running.log_path(name)}"
            assert proc.pid == pid, f"{name} was started again (pid {pid} -> {proc.pid})"

    def drain(self) -> None:
        """Wait until the worker committed every record on the events and dead-letter topics."""
        self.assert_alive()
        wait_until(lambda: self.running.lag() == 0, timeout_s=120, what="the worker to commit every record")
        self.assert_alive()


def start_fuzz_pipeline(kafka: str, tmp: Path, name: str, tenants: list[str]) -> Iterator[FuzzPipeline]:
    n = f"{os.getpid()}-{name}"
    keys = {f"wk_{t}": f"fz-{name}-{t}" for t in tenants}
    s = Settings(
        _env_file=None,
        data_dir=tmp / "data",
        topic_events=f"fz{n}.events",
        topic_triggers=f"fz{n}.triggers",
        topic_deadletter=f"fz{n}.deadletter",
        worker_group=f"cx-fuzz-{n}",
        worker_session_timeout_s=6.0,
        kafka_partitions=2,
        write_keys=",".join(f"{k}={t}" for k, t in keys.items()),
        pii_salt="fuzz-salt",
        kafka_bootstrap=kafka,
        clickhouse_url=f"chdb://{tmp / 'chdb'}",
        collector_port=0,
        worker_web_port=0,
    )
    with Pipeline(s) as running:
        pids = {name: proc.pid for name, proc in running.procs.items()}
        assert requests.get(f"{running.collector_url}/health", timeout=10).status_code == 200
        yield FuzzPipeline(running, keys, pids)
