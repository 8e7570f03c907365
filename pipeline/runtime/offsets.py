"""Where a partition's records must start: its committed offset, read from Kafka.

The events agent checks the first record it gets of each partition (after
start-up or a rebalance) against this, and every following record against
the previous one + 1. ``cx.events`` is neither compacted nor transactional,
so its offsets have no holes: a record past the expected offset means the
consumer skipped records. faust-streaming would then acknowledge the later
records, and its commit logic lets one missing offset just after the
committed one through (``Consumer._new_offset``: ``min(acked) - committed >
1``), so the skipped records' offsets would be committed without ever being
processed. Measured on the embedded broker, ``kill -9`` loop: one record of
26 events committed unprocessed (1 of 2 runs); after this check, 2 of 4
runs had a batch refused, a restart, and exact numbers. One way the
consumer skipped records is known and fixed: records Faust fetched and
dropped during a rebalance on a partition the group had never committed
(``pipeline.runtime.faust_adapter.seek_to_committed_or_earliest``).
"""

from __future__ import annotations

import asyncio

from confluent_kafka import Consumer, TopicPartition

from pipeline.settings import Settings
from pipeline.wire.topics import kafka_config

__all__ = ["CommittedOffsets", "SkippedRecords"]

TIMEOUT_S = 10.0


class SkippedRecords(RuntimeError):
    """The consumer delivered a record past the next one the partition must process."""


class CommittedOffsets:
    """Reads the worker group's committed offsets with a consumer that never joins the group."""

    def __init__(self, settings: Settings, bootstrap: str, group: str) -> None:
        self._config = {
            **kafka_config(settings, bootstrap),
            "group.id": group,
            "enable.auto.commit": False,
        }
        self._consumer: Consumer | None = None

    def _start_of(self, topic: str, partition: int) -> int:
        if self._consumer is None:
            self._consumer = Consumer(self._config)
        tp = TopicPartition(topic, partition)
        (committed,) = self._consumer.committed([tp], timeout=TIMEOUT_S)
        low, _ = self._consumer.get_watermark_offsets(tp, timeout=TIMEOUT_S)
        # No commit yet: the worker starts from the earliest record. A commit
        # below the earliest record (retention deleted it) starts there too.
        return max(committed.offset, low) if committed.offset >= 0 else low

    async def start_of(self, topic: str, partition: int) -> int:
        """The offset the partition's next record must have when a worker takes it over."""
        return await asyncio.get_running_loop().run_in_executor(None, self._start_of, topic, partition)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
