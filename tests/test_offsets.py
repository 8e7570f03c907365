"""The worker refuses records past a partition's next offset, and the runner starts it again."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.exitcodes import EXIT_UNFINISHED_BATCH
from pipeline.runtime.offsets import CommittedOffsets, SkippedRecords
from pipeline.supervisor.runner import Pipeline
from pipeline.settings import Settings
from pipeline.wire.topics import ensure_topics
from pipeline.runtime.worker import Worker
from pipeline.runtime.faust_adapter import create_app


class _Committed:
    """Stands in for CommittedOffsets: fixed start offsets, and the lookups made."""

    def __init__(self, starts: dict[tuple[str, int], int]) -> None:
        self.starts = starts
        self.asked: list[tuple[str, int]] = []

    async def start_of(self, topic: str, partition: int) -> int:
        self.asked.append((topic, partition))
        return self.starts[(topic, partition)]


def _worker(settings: Settings, committed: _Committed) -> Worker:
    worker = Worker(create_app(settings, "127.0.0.1:9"), settings, ch=None)  # no broker is contacted
    worker.committed = committed
    return worker


def test_first_record_at_the_committed_offset_is_accepted(fresh_settings: Settings) -> None:
    topic = fresh_settings.topic_events
    committed = _Committed({(topic, 1): 4})
    worker = _worker(fresh_settings, committed)
    asyncio.run(worker._check_offset(worker.next_offset, topic, 1, 4))
    assert committed.asked == [(topic, 1)]


def test_first_record_one_past_the_committed_offset_is_refused(fresh_settings: Settings) -> None:
    # Committed 4 (records 0-3 done); the consumer hands over 5: record 4 was
    # skipped, and faust-streaming would commit 6 without it ever being processed.
    topic = fresh_settings.topic_events
    worker = _worker(fresh_settings, _Committed({(topic, 1): 4}))
    with pytest.raises(SkippedRecords, match=r"got offset 5, expected 4; records 4..4 were skipped"):
        asyncio.run(worker._check_offset(worker.next_offset, topic, 1, 5))


def test_a_jump_after_the_last_processed_record_is_refused(fresh_settings: Settings) -> None:
    topic = fresh_settings.topic_events
    committed = _Committed({})
    worker = _worker(fresh_settings, committed)
    worker.next_offset[0] = 10  # record 9 was the last one processed
    with pytest.raises(SkippedRecords, match=r"records 10..11 were skipped"):
        asyncio.run(worker._check_offset(worker.next_offset, topic, 0, 12))
    assert committed.asked == []  # known partitions need no lookup


def test_a_redelivered_record_below_the_expected_offset_goes_through(fresh_settings: Settings) -> None:
    topic = fresh_settings.topic_events
    worker = _worker(fresh_settings, _Committed({}))
    worker.next_offset[0] = 10
    asyncio.run(worker._check_offset(worker.next_offset, topic, 0, 7))


def test_committed_offsets_start_at_the_commit_or_else_the_earliest_record(kafka: str, fresh_settings: Settings) -> None:
    settings = fresh_settings.model_copy(update={"kafka_bootstrap": kafka})
    ensure_topics(settings, kafka)
    topic = settings.topic_events
    producer = Producer({"bootstrap.servers": kafka})
    for i in range(5):
        producer.produce(topic, b"x", partition=0)
        producer.flush(10)  # one batch per record: offsets 0..4
    offsets = CommittedOffsets(settings, kafka, settings.worker_group)
    try:
        assert asyncio.run(offsets.start_of(topic, 0)) == 0  # nothing committed yet
        committer = Consumer({"bootstrap.servers": kafka, "group.id": settings.worker_group, "enable.auto.commit": False})
        committer.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
        committer.close()
        assert asyncio.run(offsets.start_of(topic, 0)) == 3
        assert asyncio.run(offsets.start_of(topic, 1)) == 0  # the other partition: empty, no commit
    finally:
        offsets.close()


class _Proc:
    def __init__(self, returncode: int | None) -> None:
        self.returncode = returncode

    def poll(self) -> int | None:
        return self.returncode


def test_runner_starts_again_a_worker_that_refused_a_batch(fresh_settings: Settings, tmp_path) -> None:
    pipeline = Pipeline(fresh_settings)
    pipeline._log_dir = tmp_path
    started: list[str] = []
    pipeline.start_worker = lambda name="worker": started.append(name) or 0  # type: ignore[method-assign]
    pipeline.procs = {"worker": _Proc(EXIT_UNFINISHED_BATCH), "worker-2": _Proc(None), "collector": _Proc(1)}
    assert pipeline.restart_exited_workers() == ["worker"]
    assert (started, pipeline.restarts) == (["worker"], 1)


def test_runner_reports_a_worker_that_crashed_otherwise(fresh_settings: Settings, tmp_path) -> None:
    pipeline = Pipeline(fresh_settings)
    pipeline._log_dir = tmp_path
    pipeline.procs = {"worker": _Proc(1)}
    with pytest.raises(RuntimeError, match=r"worker exited with code 1; see .*worker\.log"):
        pipeline.restart_exited_workers()


def test_lag_counts_the_records_after_the_first_of_the_last_batch(kafka: str, fresh_settings: Settings) -> None:
    # Five records produced as one batch; the worker group committed offset 1.
    # The embedded broker reports the partition's end as 1 (the batch's first
    # offset + 1); the four records after it are still to be processed.
    settings = fresh_settings.model_copy(update={"kafka_bootstrap": kafka})
    ensure_topics(settings, kafka)
    topic = settings.topic_events
    producer = Producer({"bootstrap.servers": kafka, "linger.ms": 200})
    for _ in range(5):
        producer.produce(topic, b"x", partition=0)
    producer.flush(10)
    committer = Consumer({"bootstrap.servers": kafka, "group.id": settings.worker_group, "enable.auto.commit": False})
    committer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    committer.close()
    pipeline = Pipeline(settings)
    pipeline.bootstrap = kafka
    assert pipeline.offsets()[f"{topic}[0]"] == (1, 5)
    assert pipeline.lag() == 4
    assert pipeline.records_produced() == 5
    committer = Consumer({"bootstrap.servers": kafka, "group.id": settings.worker_group, "enable.auto.commit": False})
    committer.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)
    committer.close()
    assert pipeline.lag() == 0
