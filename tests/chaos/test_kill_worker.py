"""Fault injection: ``kill -9`` the worker again and again while a day of storefront traffic streams in.

The Kafka Streams EOS system tests kill instances in a loop and count; so
does this. Each round sends the next slice of the day, waits until the
worker is processing, kills it 0-1 s later (offsets are committed every
second, so many kills fall between a ClickHouse insert and its commit: the
records processed again are counted and must be more than zero), and
starts a new one. At the end ClickHouse must hold exactly what a crash-free
in-process run produces: every event once, every dead letter once, every
expected trigger id and no other, and the storefront ledger's KPIs.

The 6-kill run is part of the default test run; the 20- and 100-kill runs
need ``CX_SLOW=1``. A worker that refuses a batch (``pipeline.runtime.offsets``: the
consumer skipped a record) exits and is started again by the runner; the
figures count those restarts.
"""

from __future__ import annotations

import random
import time

import pytest

from pipeline.supervisor.runner import Pipeline
from tests.chaos.common import day_of_traffic, post, settle_and_check, worker_stats
from tests.integration.helpers import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


@pytest.mark.timeout(1800)
@pytest.mark.parametrize(
    "kills",
    [pytest.param(6), pytest.param(20, marks=pytest.mark.slow), pytest.param(100, marks=pytest.mark.slow)],
    ids=["short-6-kills", "20-kills", "long-100-kills"],
)
def test_kill_9_worker_repeatedly_loses_nothing_and_counts_nothing_twice(pipeline: Pipeline, kills: int) -> None:
    day = day_of_traffic(pipeline, seed=31, visitors=150 if kills <= 20 else 600, cross_device=12)
    messages = day.messages
    rng = random.Random(kills)
    per_round = -(-len(messages) // kills)
    processed = 0  # records the killed workers had processed (read just before each kill)
    started = time.monotonic()
    for i in range(kills):
        part = messages[i * per_round : (i + 1) * per_round]
        for j in range(0, len(part), 50):
            post(pipeline, part[j : j + 50])
        wait_until(lambda: worker_stats(pipeline)["records"] > 0, timeout_s=120, what=f"worker {i + 1} processing")
        time.sleep(rng.uniform(0.0, 1.0))
        processed += worker_stats(pipeline)["records"]
        pipeline.kill_worker()
        pipeline.start_worker()

    figures = settle_and_check(pipeline, day, f"after {kills} kills")
    replayed = processed + worker_stats(pipeline)["records"] - pipeline.records_produced()
    print(
        f"\nchaos kill -9: {kills} crashes, {figures['messages']} messages, {figures['events_expected']} events "
        f"expected, {figures['stored']} stored, lost {figures['lost']}, duplicated {figures['duplicated']}, "
        f"at least {replayed} Kafka records processed again after a crash, "
        f"triggers {figures['triggers_found']} of {figures['triggers_expected']} expected, "
        f"{figures['restarts']} restarts after a refused batch, "
        f"{time.monotonic() - started:.0f} s"
    )
    assert replayed > 0, "no kill landed between processing and commit: the run proved nothing"
