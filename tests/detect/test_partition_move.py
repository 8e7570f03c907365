"""A visitor's events on another partition than its state last saw are applied, not taken for a replay.

Found by the fuzz suite (tests/fuzz/test_fuzz_topics.py): records produced
straight onto the events topic put one visitor's events on both partitions;
after a rebuild, the processor of one partition loaded the visitor's state
from the shared table, saw a ``last_offset`` of the other partition above
its own offsets and dropped the events silently (no row, no dead letter).
The same happens to every visitor that moves when partitions are added to
the topic.
"""

from __future__ import annotations

from pipeline.detect import PartitionProcessor
from pipeline.detect.state import VisitorState, decode_state, encode_state
from tests.detect.helpers import EXACT, MIN, T0, page


def _run(table: dict[str, bytes], partition: int, offset: int, event: dict) -> list[dict]:
    proc = PartitionProcessor(EXACT, load_state=table.get, partition=partition)
    proc.process(offset, [event], event["event_time_ms"] + 500)
    out = proc.drain()
    table.update(out.states)
    return out.rows


def test_an_event_on_another_partition_at_a_lower_offset_is_stored() -> None:
    table: dict[str, bytes] = {}
    assert len(_run(table, 0, 100, page(T0, anon="anon-1"))) == 1
    rows = _run(table, 1, 5, page(T0 + MIN, anon="anon-1"))
    assert [r["event_id"] for r in rows] == [f"anon-1:page:{T0 + MIN}"]


def test_a_replayed_record_of_the_same_partition_is_still_skipped() -> None:
    table: dict[str, bytes] = {}
    _run(table, 0, 100, page(T0, anon="anon-1"))
    assert _run(table, 0, 100, page(T0 + MIN, anon="anon-1")) == []  # offset 100 again: applied already
    assert len(_run(table, 0, 101, page(T0 + 2 * MIN, anon="anon-1"))) == 1


def test_the_visitor_moving_back_is_applied_and_its_old_offsets_are_replays() -> None:
    table: dict[str, bytes] = {}
    _run(table, 0, 100, page(T0, anon="anon-1"))
    _run(table, 1, 5, page(T0 + MIN, anon="anon-1"))
    assert len(_run(table, 0, 101, page(T0 + 2 * MIN, anon="anon-1"))) == 1
    assert _run(table, 0, 101, page(T0 + 3 * MIN, anon="anon-1")) == []


def test_a_state_without_its_partition_orders_records_by_offset_as_before() -> None:
    table: dict[str, bytes] = {}
    _run(table, -1, 100, page(T0, anon="anon-1"))  # a processor that does not know its partition
    assert b'"op"' not in next(iter(table.values()))  # its states are written as before
    assert _run(table, 1, 5, page(T0 + MIN, anon="anon-1")) == []
    assert len(_run(table, 1, 101, page(T0 + 2 * MIN, anon="anon-1"))) == 1


def test_the_partition_round_trips_through_the_stored_state() -> None:
    state = VisitorState(tenant="shop-a", anonymous_id="anon-1", last_offset=7, last_partition=3)
    assert decode_state(encode_state(state)).last_partition == 3
    assert decode_state(encode_state(VisitorState(tenant="t", anonymous_id=None))).last_partition == -1
