"""The event-time merge releases one order, whatever the interleaving of its sources."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.detect.merge import StreamMerge


def released(merge: StreamMerge, out) -> list[str]:
    return [held.message for held in out]


def test_nothing_is_released_until_every_source_announced():
    merge = StreamMerge(2)
    assert merge.add((100, 0, 5, 0), "a") == []
    assert merge.announce(0, 500) == []  # source 1 has said nothing: it may still send key 50
    assert merge.frontier_ms is None
    assert released(merge, merge.announce(1, 200)) == ["a"]
    assert merge.frontier_ms == 200


def test_release_is_in_key_order_and_stops_below_the_smallest_announcement():
    merge = StreamMerge(2)
    merge.add((300, 1, 9, 0), "b300")
    merge.add((100, 1, 7, 0), "b100")
    merge.add((200, 0, 4, 0), "a200")
    merge.add((200, 0, 3, 1), "a200-earlier-offset")
    merge.announce(0, 250)
    # Frontier 250: everything below it, by (key_ms, source, offset, index); b300 waits.
    assert released(merge, merge.announce(1, 260)) == ["b100", "a200-earlier-offset", "a200"]
    assert len(merge) == 1
    # A key equal to the frontier is not released: the source may still send that key.
    merge.add((250, 0, 6, 0), "a250")
    assert released(merge, merge.announce(1, 999)) == []  # source 0 still at 250
    assert released(merge, merge.announce(0, 251)) == ["a250"]
    assert released(merge, merge.announce(0, 301)) == ["b300"]


def test_a_smaller_announcement_is_ignored():
    merge = StreamMerge(1)
    merge.announce(0, 500)
    merge.announce(0, 100)  # a source restarted with an older watermark
    assert merge.announced == [500]


def test_a_message_below_the_frontier_is_released_at_once_and_counted_late():
    merge = StreamMerge(1)
    merge.announce(0, 500)
    assert released(merge, merge.add((400, 0, 1, 0), "late")) == ["late"]
    assert merge.late == 1
    assert len(merge) == 0


def test_restore_continues_with_the_held_messages_and_announcements():
    first = StreamMerge(2)
    first.add((300, 0, 1, 0), "x")
    first.add((100, 1, 1, 0), "y")
    first.announce(0, 400)
    second = StreamMerge(2)
    second.restore(list(first.announced), first.held())
    assert released(second, second.announce(1, 350)) == ["y", "x"]


def test_unknown_source_is_refused():
    merge = StreamMerge(2)
    with pytest.raises(ValueError, match="source 2"):
        merge.add((1, 2, 0, 0), "x")
    with pytest.raises(ValueError, match="source 5"):
        merge.announce(5, 1)


# Each source: a list of steps, ("msg", key_ms) or ("wm", ms), in the order the source sends them.
# A source keeps its promise: a message's key_ms is at or above every watermark it announced before.
@st.composite
def source_streams(draw):
    sources = draw(st.integers(1, 3))
    streams = []
    for source in range(sources):
        steps, floor, offset = [], 0, 0
        for _ in range(draw(st.integers(0, 12))):
            if draw(st.booleans()):
                key_ms = draw(st.integers(floor, floor + 50))
                steps.append(("msg", (key_ms, source, offset, 0)))
                offset += 1
            else:
                floor = draw(st.integers(floor, floor + 60))
                steps.append(("wm", floor))
        steps.append(("wm", 10_000))  # the end of the test: everything may go
        streams.append(steps)
    return streams


def run(streams: list[list], schedule: list[int]) -> list:
    merge = StreamMerge(len(streams))
    positions = [0] * len(streams)
    out = []
    for source in schedule:
        if positions[source] >= len(streams[source]):
            continue
        kind, value = streams[source][positions[source]]
        positions[source] += 1
        got = merge.announce(source, value) if kind == "wm" else merge.add(value, value)
        out.extend(held.message for held in got)
    assert merge.late == 0
    return out


@settings(max_examples=300, deadline=None)
@given(streams=source_streams(), data=st.data())
def test_any_interleaving_of_the_sources_releases_the_same_sequence(streams, data):
    total = sum(len(s) for s in streams)
    in_turn = [source for source, steps in enumerate(streams) for _ in steps]
    shuffled = data.draw(st.permutations(in_turn))
    expected = sorted(value for steps in streams for kind, value in steps if kind == "msg")
    assert run(streams, in_turn) == expected
    assert run(streams, shuffled) == expected
    assert len(in_turn) == total
