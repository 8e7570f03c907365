"""The batching sink: one insert per table per flush, and what a failed flush leaves behind."""

from __future__ import annotations

import pytest

from sinks.client import ClickHouse, ClickHouseError
from sinks.rows import EVENT_COLUMNS, event_row
from sinks.sink import ClickHouseSink, SinkError, id_hash
from tests.sinks.records import deadletter, event, trigger


class RecordingClickHouse:
    """Records inserts; fails inserts into the tables named in ``failing``."""

    def __init__(self) -> None:
        self.inserts: list[tuple[str, list[str], list[tuple]]] = []
        self.failing: set[str] = set()

    def insert(self, table: str, columns: list[str], rows: list[tuple]) -> None:
        if table in self.failing:
            raise ClickHouseError(f"{table}: Connection refused")
        self.inserts.append((table, columns, list(rows)))


def two_events() -> list[dict]:
    return [
        event("shop-a", "m-1", "2024-03-10 10:00:00", "Product Added", "s1", cart_key="k1", props={"product_id": "p"}),
        event("shop-a", "m-2", "2024-03-10 10:01:00", "Cart Viewed", "s1", cart_key="k1"),
    ]


def test_flush_writes_one_insert_per_table_and_empties_the_buffers() -> None:
    ch = RecordingClickHouse()
    sink = ClickHouseSink(ch)
    sink.add_events(two_events()[:1])
    sink.add_events(two_events()[1:])
    sink.add_triggers([trigger("shop-a", "t-1", "2024-03-10 10:31:00", "k1")])
    sink.add_deadletters([deadletter("shop-a", "dl-1", "2024-03-10 10:00:00", "bad_json", "{")])
    assert sink.pending() == 4

    assert sink.flush() == 4
    written = [(table, len(rows)) for table, _, rows in ch.inserts]
    # the events' id hashes, then their ids, right after them; they are not counted as rows written
    assert written == [
        ("cx.events", 2), ("cx.event_id_set", 2), ("cx.event_ids", 2), ("cx.triggers", 1), ("cx.deadletters", 1)
    ]  # fmt: skip
    assert ch.inserts[0][1] == list(EVENT_COLUMNS)
    assert sink.pending() == 0
    assert sink.flush() == 0  # nothing buffered: no insert at all
    assert len(ch.inserts) == 5


def test_a_sink_for_a_cluster_writes_no_id_set() -> None:
    ch = RecordingClickHouse()
    sink = ClickHouseSink(ch, id_set=False)
    sink.add_events(two_events())
    assert sink.flush() == 2
    assert [(table, len(rows)) for table, _, rows in ch.inserts] == [("cx.events", 2), ("cx.event_ids", 2)]


def test_ready_row_tuples_are_buffered_as_they_are() -> None:
    ch = RecordingClickHouse()
    sink = ClickHouseSink(ch)
    rows = [event_row(e) for e in two_events()]
    sink.add_events(rows)
    sink.flush()
    assert ch.inserts[0] == ("cx.events", list(EVENT_COLUMNS), rows)


def test_failed_flush_raises_sink_error_and_keeps_only_unwritten_tables() -> None:
    ch = RecordingClickHouse()
    ch.failing = {"cx.triggers"}
    sink = ClickHouseSink(ch)
    sink.add_events(two_events())
    sink.add_triggers([trigger("shop-a", "t-1", "2024-03-10 10:31:00", "k1")])
    sink.add_deadletters([deadletter("shop-a", "dl-1", "2024-03-10 10:00:00", "bad_json", "{")])

    with pytest.raises(SinkError, match="cx.triggers"):
        sink.flush()
    # events and their ids were written before the failure; triggers failed; dead letters were not tried
    assert [table for table, _, _ in ch.inserts] == ["cx.events", "cx.event_id_set", "cx.event_ids"]
    assert sink.pending() == 2

    ch.failing.clear()  # ClickHouse is back: a retry writes exactly what was left
    assert sink.flush() == 2
    assert [table for table, _, _ in ch.inserts] == [
        "cx.events", "cx.event_id_set", "cx.event_ids", "cx.triggers", "cx.deadletters"
    ]  # fmt: skip
    assert sink.pending() == 0


def test_event_ids_are_written_after_their_events_and_only_once_the_events_are_stored() -> None:
    # An id found in cx.event_ids must have its event stored: the worker drops a resend of it.
    ch = RecordingClickHouse()
    ch.failing = {"cx.events"}
    sink = ClickHouseSink(ch)
    sink.add_events(two_events())
    with pytest.raises(SinkError, match="cx.events"):
        sink.flush()
    assert ch.inserts == []  # no id row for events that are not stored

    ch.failing = {"cx.event_id_set"}  # the events go in, their hashes fail: no id row before its hash
    with pytest.raises(SinkError, match="cx.event_id_set"):
        sink.flush()
    assert [table for table, _, _ in ch.inserts] == ["cx.events"]
    ch.failing = {"cx.event_ids"}  # the hashes go in, the ids fail: the retry writes the ids only
    with pytest.raises(SinkError, match="cx.event_ids"):
        sink.flush()
    assert [table for table, _, _ in ch.inserts] == ["cx.events", "cx.event_id_set"]
    ch.failing.clear()
    assert sink.flush() == 0  # no event row left to write
    assert [table for table, _, _ in ch.inserts] == ["cx.events", "cx.event_id_set", "cx.event_ids"]
    events, hashes, ids = (rows for _, _, rows in ch.inserts)
    assert hashes == [(id_hash(r[0], r[1]),) for r in events]
    assert ch.inserts[2][1] == ["tenant", "event_id", "payload_hash", "ver"]
    assert ids == [(r[0], r[1], r[-2], r[-1]) for r in events]
    assert [i[1] for i in ids] == [e["event_id"] for e in two_events()]


def test_clear_drops_the_buffer_for_a_caller_that_replays_instead() -> None:
    ch = RecordingClickHouse()
    ch.failing = {"cx.events"}
    sink = ClickHouseSink(ch)
    sink.add_events(two_events())
    with pytest.raises(SinkError):
        sink.flush()
    sink.clear()
    assert sink.pending() == 0


def test_a_malformed_record_fails_when_added_not_when_flushed() -> None:
    sink = ClickHouseSink(RecordingClickHouse())
    broken = two_events()[0]
    del broken["event_time_ms"]
    with pytest.raises(KeyError):
        sink.add_events([broken])
    assert sink.pending() == 0


def test_fact_rows_go_to_their_registered_table_and_unknown_tables_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    from sinks import rows

    monkeypatch.setitem(rows.FACT_TABLES, "cx.example_facts", (("tenant", "n"), lambda r: (r["tenant"], r["n"])))
    ch = RecordingClickHouse()
    sink = ClickHouseSink(ch)
    sink.add_facts("cx.example_facts", [{"tenant": "shop-a", "n": 1}, ("shop-b", 2)])
    assert sink.pending() == 2
    assert sink.flush() == 2
    assert ch.inserts == [("cx.example_facts", ["tenant", "n"], [("shop-a", 1), ("shop-b", 2)])]
    with pytest.raises(ValueError, match="cx.nowhere"):
        sink.add_facts("cx.nowhere", [{"tenant": "shop-a"}])


def test_sink_writes_through_a_real_backend(ch_backend: ClickHouse) -> None:
    sink = ClickHouseSink(ch_backend)
    sink.add_events(two_events())
    sink.add_triggers([trigger("shop-a", "t-1", "2024-03-10 10:31:00", "k1")])
    assert sink.flush() == 3
    events = ch_backend.execute("SELECT event_id, cart_key FROM cx.events FINAL ORDER BY event_id")
    assert events == [("m-1", "k1"), ("m-2", "k1")]
    triggers = ch_backend.execute("SELECT trigger_id, reasons, holdout FROM cx.triggers FINAL")
    assert triggers == [("t-1", ["inactive_30m"], 1)]
