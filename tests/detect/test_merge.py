"""The event-time merge releases one order, whatever the interleaving of its sources."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.detect.merge import StreamMerge


def released(out) -> list[str]:
    return [held.message for held in out]


def test_nothing_is_released_until_every_source_announced():
    merge = StreamMerge(2)
    assert merge.add((100, 0, 5, 0), "a") == []
    assert merge.announce((500, 0, 6, 0)) == []  # source 1 said nothing: it may still send key 50
    assert merge.frontier is None
    assert released(merge.announce((200, 1, 3, 0))) == ["a"]
    assert merge.frontier == (200, 1, 3, 0)


def test_release_is_in_key_order_and_stops_below_the_smallest_promise():
    merge = StreamMerge(2)
    merge.add((300, 1, 9, 0), "b300")
    merge.add((100, 1, 7, 0), "b100")
    merge.add((200, 0, 3, 1), "a200-second")
    merge.add((200, 0, 3, 0), "a200-first")
    merge.announce((250, 0, 4, 0))
    # Frontier (250, 0, 4, 0): everything below it in (key_ms, source, offset, index) order; b300 waits.
    assert released(merge.announce((260, 1, 10, 0))) == ["b100", "a200-first", "a200-second"]
    assert len(merge) == 1
    # Source 0 promised (250, 0, 4, 0): its next message may have exactly that key, so it is held
    # until source 0 promises more.
    merge.add((250, 0, 4, 0), "a250")
    assert released(merge.announce((999, 1, 11, 0))) == []
    assert released(merge.announce((250, 0, 4, 1))) == ["a250"]
    assert released(merge.announce((301, 0, 5, 0))) == ["b300"]


def test_a_promise_not_above_the_last_one_is_ignored():
    merge = StreamMerge(1)
    merge.announce((500, 0, 9, 0))
    merge.announce((100, 0, 12, 0))  # a source that restarted with an older watermark
    assert merge.announced == [(500, 0, 9, 0)]


def test_a_message_below_the_frontier_is_released_at_once_and_counted_late():
    merge = StreamMerge(1)
    merge.announce((500, 0, 9, 0))
    assert released(merge.add((400, 0, 10, 0), "late")) == ["late"]
    assert merge.late == 1
    assert len(merge) == 0


def test_restore_continues_with_the_held_messages_and_promises():
    first = StreamMerge(2)
    first.add((300, 0, 1, 0), "x")
    first.add((100, 1, 1, 0), "y")
    first.announce((400, 0, 2, 0))
    second = StreamMerge(2)
    second.restore(list(first.announced), first.held())
    assert released(second.announce((350, 1, 2, 0))) == ["y", "x"]


def test_unknown_source_is_refused():
    merge = StreamMerge(2)
    with pytest.raises(ValueError, match="source 2"):
        merge.add((1, 2, 0, 0), "x")
    with pytest.raises(ValueError, match="source 5"):
        merge.announce((1, 5, 0, 0))


# Each source: the steps it sends in order, ("msg", key) or ("promise", key). A source keeps its
# promises: its watermark never goes back, and a promise names the position of its next message.
@st.composite
def source_streams(draw):
    sources = draw(st.integers(1, 3))
    streams = []
    for source in range(sources):
        steps, watermark, seq = [], 0, 0
        for _ in range(draw(st.integers(0, 12))):
            watermark = draw(st.integers(watermark, watermark + 40))
            if draw(st.booleans()):
                steps.append(("msg", (watermark, source, seq, 0)))
                seq += 1
            else:
                steps.append(("promise", (watermark, source, seq, 0)))  # where its next message goes
        steps.append(("promise", (10**9, source, 0, 0)))  # the end of the test: everything may go
        streams.append(steps)
    return streams


def run(streams: list[list], schedule: list[int]) -> list:
    merge = StreamMerge(len(streams))
    positions = [0] * len(streams)
    out = []
    for source in schedule:
        kind, key = streams[source][positions[source]]
        positions[source] += 1
        got = merge.announce(key) if kind == "promise" else merge.add(key, key)
        out.extend(held.message for held in got)
    assert merge.late == 0
    return out


@settings(max_examples=300, deadline=None)
@given(streams=source_streams(), data=st.data())
def test_any_interleaving_of_the_sources_releases_the_same_sequence(streams, data):
    in_turn = [source for source, steps in enumerate(streams) for _ in steps]
    shuffled = data.draw(st.permutations(in_turn))
    expected = sorted(key for steps in streams for kind, key in steps if kind == "msg")
    assert run(streams, in_turn) == expected
    assert run(streams, shuffled) == expected


def test_an_idle_source_stops_holding_the_others_back_until_it_speaks_again():
    merge = StreamMerge(2)
    merge.add((100, 0, 1, 0), "a")
    merge.announce((200, 0, 2, 0))
    assert released(merge.set_idle(1)) == ["a"]  # source 1 never sent anything and is caught up
    merge.add((300, 0, 2, 0), "b")
    assert released(merge.announce((400, 0, 3, 0))) == ["b"]
    # Source 1 speaks again: from now on it holds the others back like any source.
    merge.announce((350, 1, 5, 0))
    merge.add((400, 0, 3, 0), "c")
    assert released(merge.announce((500, 0, 4, 0))) == []
    assert released(merge.announce((450, 1, 6, 0))) == ["c"]


def test_a_first_message_of_an_idle_source_below_the_frontier_is_late():
    merge = StreamMerge(2)
    merge.set_idle(1)
    merge.announce((500, 0, 9, 0))
    assert released(merge.add((100, 1, 0, 0), "old")) == ["old"]
    assert merge.late == 1


def frontier_over_all_sources(merge: StreamMerge):
    """The frontier by its definition: the smallest promise of the sources that are not idle."""
    promises = [a for source, a in enumerate(merge.announced) if source not in merge.idle]
    if not promises or None in promises:
        return None
    return min(promises)


# One step on a merge of up to four sources: a promise (maybe not above the source's last), a
# message (maybe late), an idle source, or a restore from what the merge itself would persist.
merge_steps = st.lists(
    st.one_of(
        st.tuples(st.just("promise"), st.integers(0, 60), st.integers(0, 3), st.integers(0, 3)),
        st.tuples(st.just("msg"), st.integers(0, 60), st.integers(0, 3), st.integers(0, 3)),
        st.tuples(st.just("idle"), st.integers(0, 3)),
        st.tuples(st.just("restore")),
    ),
    max_size=60,
)


@settings(max_examples=500, deadline=None)
@given(sources=st.integers(1, 4), steps=merge_steps)
def test_the_kept_frontier_is_always_the_smallest_promise_of_the_sources_not_idle(sources, steps):
    merge = StreamMerge(sources)
    for step in steps:
        if step[0] == "restore":
            again = StreamMerge(sources)
            again.restore(list(merge.announced), merge.held(), set(merge.idle))
            merge = again
        elif step[0] == "idle":
            merge.set_idle(step[1] % sources)
        else:
            kind, key_ms, source, offset = step
            key = (key_ms, source % sources, offset, 0)
            merge.announce(key) if kind == "promise" else merge.add(key, key)
        frontier = frontier_over_all_sources(merge)
        assert merge.frontier == frontier
        if frontier is not None:  # what is below the frontier was released
            assert all(held.key >= frontier for held in merge.held())


def test_a_promise_above_the_frontier_from_another_source_keeps_it():
    merge = StreamMerge(3)
    merge.announce((100, 0, 1, 0))
    merge.announce((200, 1, 1, 0))
    merge.announce((300, 2, 1, 0))
    assert merge.frontier == (100, 0, 1, 0)
    merge.announce((250, 1, 2, 0))  # source 1 was above the frontier and stays above it
    assert merge.frontier == (100, 0, 1, 0)
    merge.announce((400, 0, 2, 0))  # the holder moves: the next smallest is source 1's 250
    assert merge.frontier == (250, 1, 2, 0)
    merge.set_idle(1)
    assert merge.frontier == (300, 2, 1, 0)
    merge.announce((260, 1, 3, 0))  # the idle source speaks again, below the others
    assert merge.frontier == (260, 1, 3, 0)
