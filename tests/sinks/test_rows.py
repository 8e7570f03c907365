"""Row mapping: worker dicts to ClickHouse tuples (pure, no ClickHouse)."""

from __future__ import annotations

from datetime import date

import orjson

from sinks.rows import (
    DEADLETTER_COLUMNS,
    EVENT_COLUMNS,
    TRIGGER_COLUMNS,
    day_of,
    deadletter_row,
    event_row,
    scrub,
    trigger_row,
)
from tests.sinks.records import deadletter, event, ms, trigger


def as_dict(columns: tuple[str, ...], row: tuple) -> dict:
    assert len(row) == len(columns)
    return dict(zip(columns, row))


def test_day_is_the_utc_date_on_both_sides_of_midnight() -> None:
    assert day_of(ms("2024-03-10 23:59:59.999")) == date(2024, 3, 10)
    assert day_of(ms("2024-03-11 00:00:00.000")) == date(2024, 3, 11)
    assert day_of(-1) == date(1969, 12, 31)


def test_event_row_takes_ids_from_props_and_times_in_seconds() -> None:
    ev = event(
        "shop-a", "m-1", "2024-03-10 10:00:00.250", "Product Added", "s1",
        cart_key="c-9", props={"product_id": "sku-1", "price": 20, "currency": "EUR", "cart_id": "c-9"},
    )  # fmt: skip
    row = as_dict(EVENT_COLUMNS, event_row(ev))
    assert row["tenant"] == "shop-a" and row["event_id"] == "m-1"
    assert row["day"] == date(2024, 3, 10)
    assert row["event_time"] == ms("2024-03-10 10:00:00") // 1000
    assert row["event_time_ms"] == ms("2024-03-10 10:00:00.250")
    assert row["received_at"] == ms("2024-03-10 10:00:00.400") // 1000
    assert (row["type"], row["event"]) == ("track", "Product Added")
    assert (row["session_id"], row["cart_key"], row["product_id"]) == ("s1", "c-9", "sku-1")
    assert (row["order_id"], row["checkout_id"], row["user_id"]) == ("", "", "")
    assert row["currency"] == "EUR"
    assert row["revenue"] == 0.0  # only Order Completed carries revenue
    assert orjson.loads(row["properties"]) == {"product_id": "sku-1", "price": 20, "currency": "EUR", "cart_id": "c-9"}


def test_order_revenue_is_revenue_when_sent() -> None:
    props = {"order_id": 1234, "revenue": 90, "total": 99.5}
    ev = event("shop-a", "m-2", "2024-03-10 10:00:00", "Order Completed", "s1", props=props)
    row = as_dict(EVENT_COLUMNS, event_row(ev))
    assert row["revenue"] == 90.0
    assert row["order_id"] == "1234"  # a numeric id is stored as its digits


def test_order_revenue_falls_back_to_total() -> None:
    props = {"order_id": "o-1", "total": 99.5}
    ev = event("shop-a", "m-3", "2024-03-10 10:00:00", "Order Completed", "s1", props=props)
    assert as_dict(EVENT_COLUMNS, event_row(ev))["revenue"] == 99.5


def test_email_hash_comes_from_traits_and_absent_fields_are_empty() -> None:
    traits = {"email_hash": "eh-1", "consent_marketing": True}
    ev = event("shop-a", "m-4", "2024-03-10 10:00:00", None, "s1", call="identify", traits=traits)
    ev["ip_hash"] = None
    row = as_dict(EVENT_COLUMNS, event_row(ev))
    assert (row["type"], row["event"]) == ("identify", "")
    assert row["email_hash"] == "eh-1"
    assert row["ip_hash"] == ""


def test_free_text_and_contact_keys_never_reach_the_properties_column() -> None:
    props = {
        "ticket_id": "t-1",
        "author": "customer",
        "text": "my card was declined, call me",
        "comment": "slow delivery",
        "Email": "jane@example.com",
        "contact": {"phone": "+33 6 12 34 56 78", "channel": "chat"},
        "products": [{"product_id": "p-1", "email": "x@example.com"}],
    }
    ev = event("shop-a", "m-5", "2024-03-10 10:00:00", "Support Message Sent", "s1", props=props)
    stored = as_dict(EVENT_COLUMNS, event_row(ev))["properties"]
    assert orjson.loads(stored) == {
        "ticket_id": "t-1",
        "author": "customer",
        "contact": {"channel": "chat"},
        "products": [{"product_id": "p-1"}],
    }
    assert props["text"] == "my card was declined, call me"  # the worker's dict is not mutated


def test_trigger_row_without_offer_uses_empty_offer_fields() -> None:
    tr = trigger("shop-a", "t-1", "2024-03-10 23:59:59.900", "k-1")
    row = as_dict(TRIGGER_COLUMNS, trigger_row(tr))
    assert row["day"] == date(2024, 3, 10)
    assert row["event_time_ms"] == ms("2024-03-10 23:59:59.900")
    assert row["emitted_at"] == ms("2024-03-11 00:00:01.900") // 1000
    assert (row["customer_id"], row["cart_id"], row["cart_key"]) == ("", "", "k-1")
    assert (row["holdout"], row["action"], row["reasons"]) == (1, "none", ["inactive_30m"])
    assert (row["offer_code"], row["discount_pct"], row["offer_expires_at"], row["channel"]) == ("", 0, 0, "")
    assert orjson.loads(row["items"]) == [{"product_id": "p-1", "name": "Mug", "price": 20.0, "quantity": 2}]


def test_trigger_row_reads_the_offer_in_pipeline_and_record_forms() -> None:
    expires = ms("2024-03-12 10:00:00")
    internal = trigger("shop-a", "t-2", "2024-03-10 10:00:00", "k-2") | {
        "action": "offer",
        "holdout": False,
        "offer": {"code": "CX-10-AB", "discount_pct": 10, "expires_at_ms": expires, "channel": "email"},
    }
    record = {k: v for k, v in internal.items() if k not in ("event_time_ms", "emitted_at_ms", "offer")}
    record |= {
        "event_time": internal["event_time_ms"],
        "emitted_at": internal["emitted_at_ms"],
        "offer": {"code": "CX-10-AB", "discount_pct": 10, "expires_at": expires, "channel": "email"},
    }
    for form in (internal, record):
        row = as_dict(TRIGGER_COLUMNS, trigger_row(form))
        assert (row["offer_code"], row["discount_pct"], row["channel"]) == ("CX-10-AB", 10, "email")
        assert row["offer_expires_at"] == expires // 1000
        assert row["event_time_ms"] == ms("2024-03-10 10:00:00")
        assert row["holdout"] == 0


def test_deadletter_row_scrubs_json_payload_and_keeps_its_size() -> None:
    payload = (
        '{"type":"track","event":"Survey Answered",'
        '"traits":{"email":"jane@example.com"},"properties":{"comment":"awful"}}'
    )
    dl = deadletter(None, "dl-1", "2024-03-10 10:00:00", "missing_property", payload)
    row = as_dict(DEADLETTER_COLUMNS, deadletter_row(dl))
    assert row["tenant"] == ""  # unknown tenant
    assert row["day"] == date(2024, 3, 10)
    assert orjson.loads(row["payload"]) == {"type": "track", "event": "Survey Answered", "traits": {}, "properties": {}}
    assert row["payload_bytes"] == len(payload)


def test_deadletter_payload_loses_a_ticket_topic_that_may_be_free_text() -> None:
    # A topic that is not a slug is what got this event rejected: it may be the ticket's subject.
    payload = (
        '{"type":"track","event":"Support Ticket Opened",'
        '"properties":{"ticket_id":"t-1","channel":"email","Topic":"My parcel never came, call me"}}'
    )
    dl = deadletter("shop-a", "dl-3", "2024-03-10 10:00:00", "wrong_type", payload)
    row = as_dict(DEADLETTER_COLUMNS, deadletter_row(dl))
    assert orjson.loads(row["payload"]) == {
        "type": "track", "event": "Support Ticket Opened", "properties": {"ticket_id": "t-1", "channel": "email"},
    }


def test_a_stored_events_slug_topic_is_kept() -> None:
    assert scrub({"topic": "delivery", "text": "where is it"}) == {"topic": "delivery"}


def test_deadletter_payload_that_is_not_json_is_not_stored() -> None:
    # It may be anything, personal data included, and cannot be scrubbed.
    payload = "{not json, email jane@example.com"
    dl = deadletter("shop-a", "dl-2", "2024-03-10 10:00:00", "bad_json", payload)
    row = as_dict(DEADLETTER_COLUMNS, deadletter_row(dl))
    assert row["payload"] == ""
    assert row["payload_bytes"] == len(payload)
    assert (row["reason"], row["source"], row["detail"]) == ("bad_json", "collector", "bad_json at test")


def test_properties_without_private_keys_are_stored_as_the_full_scrub_would_store_them() -> None:
    # event_row skips the Python walk when the encoded properties cannot hold
    # a private key; the column must be byte-identical to the walked form.
    clean = {"product_id": "p-1", "price": 19.9, "tags": ["ip-address-free", "shipping"], "n": {"zip": "75001"}}
    ev = event("shop-a", "m-6", "2024-03-10 10:00:00", "Product Viewed", "s1", props=clean)
    stored = as_dict(EVENT_COLUMNS, event_row(ev))["properties"]
    assert stored == orjson.dumps(scrub(clean)).decode()
    assert orjson.loads(stored) == clean


def test_private_keys_in_any_case_and_depth_are_dropped_on_the_fast_path_too() -> None:
    props = {"items": [{"sku": "s-1", "PHONE": "+33 1 23"}], "Ip": "198.51.100.7", "note": {"Comment": "late"}}
    ev = event("shop-a", "m-7", "2024-03-10 10:00:00", "Product Viewed", "s1", props=props)
    stored = as_dict(EVENT_COLUMNS, event_row(ev))["properties"]
    assert orjson.loads(stored) == {"items": [{"sku": "s-1"}], "note": {}}
