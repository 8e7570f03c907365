"""Deadline index of one partition: which visitors have a cart deadline due.

A min-heap of ``(deadline_ms, visitor_key)`` with lazy invalidation: at most
one live entry per visitor (its earliest pending deadline). When a deadline
moves later, the old entry stays; it pops first, the processor finds nothing
due and schedules the visitor's new deadline. So finding due carts never
scans all visitors, and the heap holds about one entry per visitor with an
open cart.
"""

from __future__ import annotations

import heapq

__all__ = ["DeadlineIndex"]


class DeadlineIndex:
    """Earliest pending deadline per visitor, ordered by time."""

    __slots__ = ("_heap", "_scheduled")

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._scheduled: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._scheduled)

    def schedule(self, visitor_key: str, deadline_ms: int | None) -> None:
        """Make sure the visitor is looked at by ``deadline_ms`` (None: nothing pending)."""
        if deadline_ms is None:
            return
        current = self._scheduled.get(visitor_key)
        if current is not None and current <= deadline_ms:
            return  # the earlier entry pops first and reschedules the later deadline
        self._scheduled[visitor_key] = deadline_ms
        heapq.heappush(self._heap, (deadline_ms, visitor_key))

    def due(self, watermark_ms: int) -> bool:
        """True if an entry (maybe a stale one) is scheduled at or before ``watermark_ms``."""
        heap = self._heap
        return bool(heap) and heap[0][0] <= watermark_ms

    def pop_due(self, watermark_ms: int) -> str | None:
        """The next visitor whose scheduled deadline is <= the watermark, or None."""
        heap = self._heap
        while heap and heap[0][0] <= watermark_ms:
            deadline_ms, key = heapq.heappop(heap)
            if self._scheduled.get(key) == deadline_ms:
                del self._scheduled[key]
                return key
        return None
