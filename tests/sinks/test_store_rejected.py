"""A row ClickHouse refuses for good is set aside, every other row of its batch written (both backends)."""

from __future__ import annotations

import pytest

from sinks.client import ClickHouse, ClickHouseError
from sinks.rows import event_row
from sinks.sink import ClickHouseSink, is_permanent
from tests.sinks.records import event


def test_transient_and_permanent_errors_are_told_apart_by_code() -> None:
    assert is_permanent(ClickHouseError("Code: 53. DB::Exception: Type mismatch", 53))
    assert not is_permanent(ClickHouseError("Code: 252. Too many parts", 252))
    assert not is_permanent(ClickHouseError("Connection refused"))
    assert is_permanent(TypeError("an int where a string belongs"))


def sink_with_events(ch: ClickHouse, n: int, bad: int, values: dict[int, object]) -> ClickHouseSink:
    """A sink holding the rows of events e0..e<n-1>; row ``bad`` with ``values`` (column index -> value)."""
    rows = [event_row(event("t", f"e{i}", "2026-01-05T10:00:00Z", "Product Viewed", "s1")) for i in range(n)]
    row = list(rows[bad])
    for column, value in values.items():
        row[column] = value
    rows[bad] = tuple(row)
    sink = ClickHouseSink(ch)
    sink.add_events(rows)
    return sink


ANONYMOUS_ID, REVENUE = 8, 15  # a String and a Float64 column of cx.events


def test_a_refused_row_is_bisected_out_and_the_others_are_stored(ch_backend: ClickHouse) -> None:
    sink = sink_with_events(ch_backend, 7, 4, {REVENUE: "not a number"})
    assert sink.flush() == 6
    rejected = sink.take_rejected()
    assert [(r.table, r.row[1]) for r in rejected] == [("cx.events", "e4")]
    assert ch_backend.execute("SELECT count() FROM cx.events FINAL")[0][0] == 6
    assert sink.pending() == 0 and sink.take_rejected() == []
    # the refused event's id is not recorded as stored: a resend of it is tried again
    ids = ch_backend.execute("SELECT event_id FROM cx.event_ids ORDER BY event_id")
    assert [i for (i,) in ids] == ["e0", "e1", "e2", "e3", "e5", "e6"]


def test_a_number_in_a_string_column_is_a_refused_row_on_both_backends(ch_backend: ClickHouse) -> None:
    # The driver fails on it with an AttributeError (`.encode`): it must be a refused row, set
    # aside as on chdb (Arrow's TypeError), not an error that ends the worker at every restart.
    sink = sink_with_events(ch_backend, 3, 1, {ANONYMOUS_ID: 5})
    assert sink.flush() == 2
    rejected = sink.take_rejected()
    assert [(r.table, r.row[1]) for r in rejected] == [("cx.events", "e1")]
    assert "TypeError" in rejected[0].error.split(":")[0]  # ArrowTypeError on chdb
    assert ch_backend.execute("SELECT event_id FROM cx.events FINAL ORDER BY event_id") == [("e0",), ("e2",)]


def test_a_none_in_a_row_is_stored_as_its_columns_default_on_both_backends(ch_backend: ClickHouse) -> None:
    sink = sink_with_events(ch_backend, 2, 1, {ANONYMOUS_ID: None, REVENUE: None})
    assert sink.flush() == 2
    assert sink.take_rejected() == []
    assert ch_backend.execute("SELECT anonymous_id, revenue FROM cx.events FINAL WHERE event_id = 'e1'") == [("", 0.0)]
