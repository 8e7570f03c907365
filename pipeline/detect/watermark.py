"""The event-time watermark of one partition.

watermark = max event time seen - allowed lateness; it never goes back.
It lives in memory only: after a restart it is rebuilt from the events
replayed and read afterwards, so stored deadlines fire again only once new
events or idle ticks carry it past them (trigger ids are stable, so firing
twice across a restart is harmless for consumers that de-duplicate).
"""

from __future__ import annotations

__all__ = ["LIVE_LAG_MS", "Watermark"]

# A partition is live when its newest event reached the worker at most this
# long after it happened (SDK batching, mobile queues, collector and Kafka).
LIVE_LAG_MS = 10 * 60_000


class Watermark:
    """Tracks one partition's watermark; ``value`` is None until the first event."""

    __slots__ = (
        "allowed_lateness_ms", "idle_partition_ms", "live_lag_ms", "value", "_max_event_ms", "_max_wall_ms",
        "_last_wall_ms",
    )  # fmt: skip

    def __init__(self, allowed_lateness_ms: int, idle_partition_ms: int, live_lag_ms: int = LIVE_LAG_MS) -> None:
        self.allowed_lateness_ms = allowed_lateness_ms
        self.idle_partition_ms = idle_partition_ms
        self.live_lag_ms = live_lag_ms
        self.value: int | None = None
        self._max_event_ms: int | None = None
        self._max_wall_ms = 0  # wall clock when the max event time was seen
        self._last_wall_ms = 0  # wall clock of the last event, any event time

    def observe(self, event_time_ms: int, wall_ms: int) -> int:
        """Advance with one event (runs before the event is applied); returns the watermark."""
        self._last_wall_ms = wall_ms
        if self._max_event_ms is None or event_time_ms > self._max_event_ms:
            self._max_event_ms = event_time_ms
            self._max_wall_ms = wall_ms
            self._advance(event_time_ms - self.allowed_lateness_ms)
        assert self.value is not None
        return self.value

    def follow_wall_clock(self, wall_ms: int) -> bool:
        """Let a silent partition's watermark move with the wall clock; True if it advanced.

        Runs on idle ticks of a caught-up partition only: live traffic has
        event time close to wall time, so after ``idle_partition_ms`` without
        events the newest event time plus the wall time elapsed since it is a
        safe estimate of "now" in event time. Replays never call it, and a
        partition whose newest event arrived more than ``live_lag_ms`` after
        it happened is not live (a backfill, a replay of history, a demo day
        sent in a minute): there event time alone decides, as the next
        event of that history may be only seconds later in event time.
        """
        if self._max_event_ms is None or wall_ms - self._last_wall_ms < self.idle_partition_ms:
            return False
        if self._max_wall_ms - self._max_event_ms > self.live_lag_ms:
            return False
        estimate = self._max_event_ms + (wall_ms - self._max_wall_ms) - self.allowed_lateness_ms
        return self._advance(estimate)

    def _advance(self, candidate_ms: int) -> bool:
        if self.value is None or candidate_ms > self.value:
            self.value = candidate_ms
            return True
        return False
