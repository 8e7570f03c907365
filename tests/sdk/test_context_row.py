"""The event's ``context`` as the row builder stores it in cx.events.context (0007_events_context.sql)."""

from __future__ import annotations

import orjson

from sinks.rows import EVENT_COLUMNS, event_row

EVENT = {
    "tenant": "shop-a", "event_id": "m-1", "type": "track", "event": "Product Viewed",
    "event_time_ms": 1_700_000_000_000, "received_at_ms": 1_700_000_000_040, "props": {"product_id": "p1"},
}  # fmt: skip


def test_context_column_holds_the_events_context_text() -> None:
    context = '{"os":{"name":"Android","version":"14"},"device":{"model":"Pixel 8"}}'
    row = dict(zip(EVENT_COLUMNS, event_row({**EVENT, "context": context})))
    assert row["context"] == context


def test_event_without_context_stores_an_empty_object() -> None:
    assert dict(zip(EVENT_COLUMNS, event_row(EVENT)))["context"] == "{}"


def test_private_keys_inside_context_are_dropped() -> None:
    context = '{"app":{"name":"Shop"},"device":{"email":"ada@example.com","model":"x"}}'
    row = dict(zip(EVENT_COLUMNS, event_row({**EVENT, "context": context})))
    assert orjson.loads(row["context"]) == {"app": {"name": "Shop"}, "device": {"model": "x"}}
