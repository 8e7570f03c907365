"""What every section of ``cxstream bench`` shares: its options and constants, the traffic, child processes, clocks.

``pipeline.tools.bench`` (sections 1-3 and the whole run) and ``pipeline.tools.bench_live``
(sections 4 and 5) both import from here, and not from each other's sections.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from pipeline.demo.storefront import Expected, generate
from pipeline.settings import Settings
from pipeline.webtoken import worker_headers

__all__ = [
    "BenchError",
    "BenchOptions",
    "child_env",
    "worker_json",
    "cpu_seconds",
    "iso_ms",
    "make_traffic",
    "spawn",
    "wall_ms",
]

DAY_MS = 86_400_000
# Messages per visitor of the demo storefront (measured on the bench day, seed 7): the
# number of visitors to plan for about ``--events`` messages.
MESSAGES_PER_VISITOR = 11.78
# An SDK's batch (analytics.js and segment-analytics-python upload 100-250 messages).
REQUEST_MESSAGES = 250
TENANT = "bench-shop"
# A second tenant whose one event per partition closes event time after the
# traffic (see ``clock_messages``); its rows are not counted as the shop's.
CLOCK_TENANT = "bench-clock"
WRITE_KEY = "bench_key"
FRICTION_KIND = "checkout_friction"
LIVE_ABANDON_AFTER_MS = 3_000
# The loaded traffic is one fixed simulated day, received two hours after it
# ends (inside the collector's 7-day window): the same options give the same
# records and counts on every run. Live mode uses the wall clock instead.
BENCH_START_MS = 1_767_571_200_000  # 2026-01-05 00:00 UTC
RECEIVED_AT_MS = BENCH_START_MS + DAY_MS + 2 * 3_600_000
RAW_PASSES = 3
# Counts that do not move for this long mean a mismatch, not a slow worker
# (one batch of ``batch_max_records`` records can take a minute on a busy machine).
STALL_S = 300.0


class BenchError(RuntimeError):
    """A component failed or the counts in ClickHouse never matched the ledger."""


@dataclass(frozen=True)
class BenchOptions:
    events: int = 1_000_000
    workers: tuple[int, ...] = (1, 2)
    live_rates: tuple[int, ...] = (2_000, 10_000)
    live_seconds: float = 30.0
    collector_events: int = 200_000
    # Events of the worker's pure path measured alone (``cxstream bench-cpu``) before and after
    # the worker runs: the machine's speed in this run. 0 skips it.
    cpu_events: int = 20_000
    clients: int = 4
    seed: int = 7
    partitions: int = 4
    timeout_s: float = 1800.0

    @classmethod
    def targets(cls) -> "BenchOptions":
        """The least run that judges every performance target (``pipeline.tools.bench_targets``): about 6 minutes."""
        from pipeline.tools.bench_targets import STATED_FOR

        return cls(**STATED_FOR)

    @classmethod
    def quick(cls) -> "BenchOptions":
        """A small run (about a minute): every section, exact counts, rates not meaningful."""
        return cls(
            events=4_000, workers=(1,), live_rates=(500,), live_seconds=6.0, collector_events=5_000, cpu_events=2_000,
            clients=2,
        )


def make_traffic(events: int, seed: int, start_ms: int = BENCH_START_MS) -> tuple[list[dict], Expected]:
    """About ``events`` messages of one simulated day from ``start_ms``, and their ledger."""
    visitors = max(1, round(events / MESSAGES_PER_VISITOR))
    traffic = generate(seed, visitors=visitors, start_ms=start_ms, span_ms=DAY_MS)
    return traffic.messages, traffic.expected


def child_env(settings: Settings, bootstrap: str, **overrides: str) -> dict[str, str]:
    return {
        **os.environ,
        **settings.to_env(),
        "CX_KAFKA_BOOTSTRAP": bootstrap,
        **{f"CX_{k.upper()}": v for k, v in overrides.items()},
    }


def spawn(command: str, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """``python -m pipeline.cli <command>`` in its own session, output to ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", command],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process used so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_json(port: int, token: str, path: str = "/cx/stats", host: str = "127.0.0.1") -> dict:
    """A JSON page of a worker's web port (``/cx/stats``, ``/cx/trigger-times``), with its token."""
    req = urllib.request.Request(f"http://{host}:{port}{path}", headers=worker_headers(token))
    with urllib.request.urlopen(req, timeout=5) as resp:
        return orjson.loads(resp.read())


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def wall_ms() -> int:
    return time.time_ns() // 1_000_000
