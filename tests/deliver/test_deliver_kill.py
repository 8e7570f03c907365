"""``kill -9`` of ``cxstream deliver`` mid-stream, again and again: every trigger still arrives, commits stay behind deliveries."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from pipeline.settings import Settings
from tests.deliver.common import SECRET, committed, make_trigger, produce, start_deliver, wait_for, write_config
from tests.deliver.receiver import Receiver

pytestmark = pytest.mark.integration

KILLS = 4
TRIGGERS = 200


def test_deliver_killed_four_times_mid_stream_delivers_every_trigger_and_commits_only_delivered_ones(
    kafka: str, fresh_settings: Settings, tmp_path: Path
) -> None:
    rng = random.Random(11)
    failures = ["status:500", "reset", "timeout:1.0", "retry_after_s:1", "status:502", "slow:0.2"]

    def half_fail(n: int, trigger_id: str, attempt: int) -> str:
        # About half the requests fail (500, 502, reset, timeout, 429); a few of the rest are slow.
        return rng.choice(failures) if rng.random() < 0.5 else ("slow:0.2" if rng.random() < 0.1 else "ok")

    triggers = [make_trigger(i) for i in range(TRIGGERS)]
    position: dict[tuple[int, int], str] = {}
    log = tmp_path / "deliver.log"
    with Receiver(SECRET.encode(), half_fail) as rx:
        config = write_config(tmp_path / "hooks.toml", [
            {"name": "esp", "url": rx.url, "secret": SECRET, "timeout_s": 0.5, "max_attempts": 50, "rate_per_s": 60},
        ])  # fmt: skip
        settings = fresh_settings.model_copy(update={
            "kafka_bootstrap": kafka, "delivery_config": str(config), "delivery_backoff_s": 0.05,
            "delivery_backoff_max_s": 1.0, "delivery_max_inflight": 40,
            # The chaos runs' short session: a killed process's partitions move on in 3 s. With
            # librdkafka's default 3 s heartbeat every session expired and the group never settled.
            "worker_session_timeout_s": 3.0,
        })  # fmt: skip
        ends = produce(settings, kafka, triggers, position)
        want = {p: ends.get(p, -1001) for p in range(2)}
        kills_mid_stream = 0
        for _ in range(KILLS):
            proc = start_deliver(settings, kafka, log)
            # Let it commit something first, then kill it at a random moment.
            wait_for(lambda: any(o > 0 for o in committed(settings, kafka, 2).values()) or proc.poll() is not None,
                     60, "a first commit", proc, log)  # fmt: skip
            time.sleep(rng.uniform(0.5, 2.0))
            proc.kill()
            proc.wait(10)
            at_kill = committed(settings, kafka, 2)
            _, effects = rx.snapshot()
            kills_mid_stream += at_kill != want
            # Every record below a committed offset had been delivered before the kill.
            for (partition, offset), trigger_id in position.items():
                if offset < at_kill[partition]:
                    assert trigger_id in effects, (partition, offset, trigger_id, at_kill)
        proc = start_deliver(settings, kafka, log)
        try:
            wait_for(lambda: committed(settings, kafka, 2) == want, 180, "every trigger committed", proc, log)
        finally:
            proc.terminate()
            proc.wait(30)
        requests, effects = rx.snapshot()

    assert kills_mid_stream == KILLS  # each kill found deliveries unfinished
    assert "SESSTMOUT" not in log.read_text()  # no live process lost its group session
    ids = {t["trigger_id"] for t in triggers}
    assert set(effects) == ids  # every trigger reached the receiver
    assert all(r.signature_ok and r.key == r.trigger_id for r in requests)
    for key, done in effects.items():
        assert len({r.body for r in done}) == 1  # a duplicate is the same request again, same key
    duplicates = sum(len(done) - 1 for done in effects.values())
    failed = sum(1 for r in requests if not r.action.startswith(("ok", "slow")))
    print(f"\n{len(requests)} requests, {failed} failed on purpose, {duplicates} duplicate deliveries of {TRIGGERS} triggers")
    assert failed >= len(requests) * 0.35
