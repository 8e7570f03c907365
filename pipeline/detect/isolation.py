"""Per-record isolation: a record applies whole, or leaves no trace and is reported.

``IsolatedPartition`` wraps a partition's ``PartitionProcessor``. When
processing a record raises (a bug, or input no validation foresaw), the
processor is half-way through it: visitor states changed, rows and triggers
appended. The processor is then thrown away and rebuilt from the last
durable state (``build()``: the states the agent stored at the last drain)
with the watermark it had then, and the records processed since that drain
are applied again. They applied before, from the same states, so they give
the same outputs (processing is deterministic). The record is then retried
without the event that raised, and that event is reported as rejected; a
record whose failing event cannot be named, or that keeps failing after
``MAX_EXCLUSIONS`` events were taken out, is rejected whole.

On the hot path this costs one list append per record and one watermark
copy per drain: the price is paid only when something raises, and it is
the replay of the records since the last drain plus the read of the
partition's stored states.

``prepare(output, mark)`` runs after each record with what it added to the
output since ``mark``: the worker builds the ClickHouse rows there, so a row
that cannot be built fails its own record, before any state of it is
stored. It raises ``RowFailed`` naming the event whose row failed, when it
knows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pipeline.detect.processor import EventFailed, Output, PartitionProcessor
from pipeline.detect.watermark import Watermark

__all__ = ["IsolatedPartition", "Mark", "Prepare", "Rejected", "RowFailed", "mark_of"]

MAX_EXCLUSIONS = 8

# (rows, triggers, facts per table) already in the output before a record.
Mark = tuple[int, int, dict[str, int]]
Prepare = Callable[[Output, Mark], None]


def mark_of(out: Output) -> Mark:
    return len(out.rows), len(out.triggers), {table: len(facts) for table, facts in out.facts.items()}


class RowFailed(Exception):
    """Building an output row failed; ``event_id`` names the event it came from when known."""

    def __init__(self, event_id: object, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.event_id = event_id if isinstance(event_id, str) else None
        self.error = error


@dataclass(slots=True, frozen=True)
class Rejected:
    """A record's event (``index``), or the whole record (``index`` None), that could not be processed."""

    offset: int
    index: int | None
    error: BaseException


def _cause(exc: BaseException) -> BaseException:
    return exc.error if isinstance(exc, (EventFailed, RowFailed)) else exc


class IsolatedPartition:
    """A ``PartitionProcessor`` whose records apply whole or not at all (see the module docstring)."""

    def __init__(self, build: Callable[[], PartitionProcessor], prepare: Prepare | None = None) -> None:
        self._build = build
        self._prepare = prepare
        self.proc = build()
        # Records applied since the last drain: (offset, events kept, wall_ms).
        self._records: list[tuple[int, list[dict], int]] = []
        self._watermark: Watermark | None = None  # the watermark at the last drain
        self.rebuilds = 0

    def process(self, offset: int, events: list[dict], wall_ms: int) -> list[Rejected]:
        """Apply one record (``PartitionProcessor.process``); returns what was rejected, usually nothing."""
        if self._watermark is None:
            self._watermark = self.proc.watermark_copy()
        proc = self.proc
        mark = mark_of(proc.pending) if self._prepare is not None else None
        try:
            proc.process(offset, events, wall_ms)
            if mark is not None:
                self._prepare(proc.pending, mark)  # type: ignore[misc]
        except Exception as exc:
            return self._retry(offset, events, wall_ms, exc)
        self._records.append((offset, events, wall_ms))
        return []

    def tick(self, wall_ms: int, caught_up: bool) -> BaseException | None:
        """``PartitionProcessor.tick``; an exception rebuilds the processor and is returned, not raised."""
        if self._watermark is None:
            self._watermark = self.proc.watermark_copy()
        proc = self.proc
        mark = mark_of(proc.pending) if self._prepare is not None else None
        try:
            proc.tick(wall_ms, caught_up)
            if mark is not None:
                self._prepare(proc.pending, mark)  # type: ignore[misc]
        except Exception as exc:
            self._rebuild()
            return _cause(exc)
        return None

    def drain(self) -> Output:
        """``PartitionProcessor.drain``; the caller stores what it returns before the next record."""
        self._records.clear()
        self._watermark = None
        return self.proc.drain()

    # -- internals ------------------------------------------------------------

    def _retry(self, offset: int, events: list[dict], wall_ms: int, first: Exception) -> list[Rejected]:
        excluded: dict[int, BaseException] = {}
        positions = list(range(len(events)))  # kept event -> its index in the record
        exc: Exception = first
        while True:
            self._rebuild()
            index = self._failed_index(exc, [events[i] for i in positions])
            if index is None or len(excluded) >= MAX_EXCLUSIONS:
                return [Rejected(offset, None, _cause(exc))]
            original = positions.pop(index)
            excluded[original] = _cause(exc)
            kept = [events[i] for i in positions]
            proc = self.proc
            mark = mark_of(proc.pending) if self._prepare is not None else None
            try:
                proc.process(offset, kept, wall_ms)
                if mark is not None:
                    self._prepare(proc.pending, mark)  # type: ignore[misc]
            except Exception as again:
                exc = again
                continue
            self._records.append((offset, kept, wall_ms))
            return [Rejected(offset, i, error) for i, error in sorted(excluded.items())]

    @staticmethod
    def _failed_index(exc: Exception, kept: list[dict]) -> int | None:
        if isinstance(exc, EventFailed):
            return exc.index
        if isinstance(exc, RowFailed) and exc.event_id is not None:
            for i, event in enumerate(kept):
                if event.get("event_id") == exc.event_id:
                    return i
        return None

    def _rebuild(self) -> None:
        """A new processor from the durable states, with the records since the last drain applied again.

        Those records applied before from the same states; an exception now
        would mean processing is not deterministic, and it propagates.
        """
        self.rebuilds += 1
        proc = self._build()
        if self._watermark is not None:
            proc.resume_watermark(self._watermark)
        for offset, events, wall_ms in self._records:
            mark = mark_of(proc.pending) if self._prepare is not None else None
            proc.process(offset, events, wall_ms)
            if mark is not None:
                self._prepare(proc.pending, mark)  # type: ignore[misc]
        self.proc = proc
