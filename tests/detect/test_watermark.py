"""Partition watermark: max event time - allowed lateness; idle ticks follow the wall clock."""

from __future__ import annotations

from pipeline.detect import Rules
from pipeline.detect.watermark import Watermark

from tests.detect.helpers import MIN, T0, Harness, add, page

RULES = Rules(allowed_lateness_ms=1_000, idle_partition_ms=1_000, holdout_pct=0.0)


def test_watermark_is_max_event_time_minus_lateness_and_never_goes_back() -> None:
    wm = Watermark(allowed_lateness_ms=1_000, idle_partition_ms=1_000)
    assert wm.value is None
    assert wm.observe(T0 + 10_000, wall_ms=T0) == T0 + 9_000
    assert wm.observe(T0, wall_ms=T0) == T0 + 9_000  # an older event: no step back


def test_idle_tick_fires_only_when_caught_up() -> None:
    h = Harness(RULES)
    # T0          add (wall clock T0+500ms)           -> deadline T0+30m
    h.feed(add(T0), wall_ms=T0 + 500)
    # wall T0+31m: the consumer is behind (replaying): event time alone decides
    h.proc.tick(T0 + 31 * MIN, caught_up=False)
    assert h.drain() == []
    # wall T0+31m, caught up and silent since T0+500ms: watermark
    #   = T0 + (T0+31m - (T0+500ms)) - 1s = T0+31m-1.5s >= deadline -> abandoned
    h.proc.tick(T0 + 31 * MIN, caught_up=True)
    assert h.proc.watermark_ms == T0 + 31 * MIN - 1_500
    (trigger,) = h.drain()
    assert (trigger["event_time_ms"], trigger["emitted_at_ms"]) == (T0 + 30 * MIN, T0 + 31 * MIN)


def test_idle_tick_waits_for_idle_partition_ms_of_silence() -> None:
    h = Harness(RULES)
    h.feed(add(T0), wall_ms=T0 + 500)
    # wall T0+1.4s: only 900 ms of silence, the watermark stays at T0-1s
    h.proc.tick(T0 + 1_400, caught_up=True)
    assert h.proc.watermark_ms == T0 - 1_000
    # wall T0+1.5s: 1 s of silence: T0 + 1s - 1s = T0
    h.proc.tick(T0 + 1_500, caught_up=True)
    assert h.proc.watermark_ms == T0


def test_tick_before_any_event_does_nothing() -> None:
    h = Harness(RULES)
    h.proc.tick(T0, caught_up=True)
    assert h.proc.watermark_ms is None and h.drain() == []


def test_history_sent_late_does_not_follow_the_wall_clock_until_a_live_event_arrives() -> None:
    h = Harness(RULES)
    # T0       add, received a day later (a backfill)       -> deadline T0+30m
    h.feed(add(T0), wall_ms=T0 + 1_440 * MIN)
    # a day and an hour later, caught up and silent: not live, the watermark stays at T0-1s
    h.proc.tick(T0 + 1_500 * MIN, caught_up=True)
    assert h.proc.watermark_ms == T0 - 1_000 and h.drain() == []
    # a live event of another visitor at T0+1d+1h (received 2 s after it happened)
    h.feed(page(T0 + 1_500 * MIN), wall_ms=T0 + 1_500 * MIN + 2_000)
    (trigger,) = h.drain()
    assert trigger["event_time_ms"] == T0 + 30 * MIN
    # and from there an idle partition follows the clock: watermark T0+1d+1h + 10 s - 1 s
    h.proc.tick(T0 + 1_500 * MIN + 12_000, caught_up=True)
    assert h.proc.watermark_ms == T0 + 1_500 * MIN + 9_000


def test_event_received_10_minutes_late_is_still_live() -> None:
    h = Harness(RULES)
    # T0  add, received exactly 10 min after it happened (the live lag): live
    h.feed(add(T0), wall_ms=T0 + 10 * MIN)
    # wall T0+41m: 31 min of silence -> watermark T0 + 31m - 1s >= deadline T0+30m
    h.proc.tick(T0 + 41 * MIN, caught_up=True)
    (trigger,) = h.drain()
    assert trigger["event_time_ms"] == T0 + 30 * MIN
