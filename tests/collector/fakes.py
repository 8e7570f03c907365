"""A producer double for the collector's unit tests: records what was sent, or fails like a down broker."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson

from pipeline.collector.packing import Record
from pipeline.collector.producer import BrokerUnavailable
from pipeline.wire.records import decode_batch

__all__ = ["FakeProducer"]


class FakeProducer:
    """Acknowledges every record at once, unless ``down``; ``hold`` (an Event) delays acknowledgements."""

    def __init__(self, partitions: int = 4, *, down: bool = False) -> None:
        self.partitions = partitions
        self.down = down
        self.hold: asyncio.Event | None = None
        self.waiting = 0  # calls currently held by ``hold``
        self.sent: list[Record] = []

    async def send_many(self, records: Sequence[Record]) -> None:
        if self.down:
            raise BrokerUnavailable("broker down (fake)")
        if self.hold is not None:
            self.waiting += 1
            await self.hold.wait()
            self.waiting -= 1
        self.sent.extend(records)

    def partitions_for(self, topic: str) -> int:
        if self.down:
            raise BrokerUnavailable("broker down (fake)")
        return self.partitions

    def healthy(self) -> bool:
        return not self.down

    def close(self) -> None:
        pass

    def records_on(self, topic: str) -> list[Record]:
        return [r for r in self.sent if r[0] == topic]

    def events(self, topic: str) -> list[dict]:
        """Every event sent to ``topic``, record by record, in order."""
        return [e for r in self.records_on(topic) for e in decode_batch(r[3])]

    def dead_letters(self, topic: str) -> list[dict]:
        return [orjson.loads(r[3]) for r in self.records_on(topic)]
