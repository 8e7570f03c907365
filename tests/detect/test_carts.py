"""Which cart an event belongs to, and what it does to it (docs/detection.md)."""

from __future__ import annotations

from pipeline.detect import Rules
from pipeline.detect.state import decode_state
from pipeline.wire.records import visitor_key

from tests.detect.helpers import DAY, MIN, T0, Harness, add, identify, order, page, track

ANON_1 = visitor_key("shop-a", "anon-1", None)


def test_cart_id_and_open_cart_are_separate_carts() -> None:
    h = Harness()
    # T0      add sku-1 to cart "c-1" (sent with cart_id)    -> cart anon-1/c-1
    # T0+1m   add sku-2 without cart_id: the open cart        -> cart anon-1#1
    # T0+2m   add sku-3 to "c-1" again
    # T0+3h   bystander: both abandoned, each with its own items
    events = [add(T0, cart_id="c-1"), add(T0 + MIN, "sku-2", 20.0), add(T0 + 2 * MIN, "sku-3", 5.5, cart_id="c-1")]
    triggers = h.each(*events, page(T0 + 180 * MIN))
    assert [r["cart_key"] for r in h.rows[:3]] == ["anon-1/c-1", "anon-1#1", "anon-1/c-1"]
    summary = {(t["cart_key"], t["cart_id"], t["cart_value"], t["event_time_ms"]) for t in triggers}
    assert summary == {
        ("anon-1/c-1", "c-1", 55.4, T0 + 32 * MIN),
        ("anon-1#1", None, 20.0, T0 + 31 * MIN),
    }


def test_checkout_events_extend_the_cart_named_by_checkout_started() -> None:
    h = Harness()
    # T0      add to cart "c-1"                                 c-1 deadline T0+30m
    # T0+1m   add to the open cart #1                           #1  deadline T0+31m
    # T0+10m  Checkout Started chk-1 for cart_id c-1            c-1 deadline T0+40m
    # T0+25m  Payment Info Entered chk-1 (no cart_id): c-1      c-1 deadline T0+55m
    # T0+31m  bystander: the open cart is abandoned, c-1 is not
    first = h.each(
        add(T0, cart_id="c-1"),
        add(T0 + MIN, "sku-2"),
        track("Checkout Started", T0 + 10 * MIN, checkout_id="chk-1", cart_id="c-1"),
        track("Payment Info Entered", T0 + 25 * MIN, checkout_id="chk-1"),
        page(T0 + 31 * MIN),
    )
    assert [t["cart_key"] for t in first] == ["anon-1#1"]
    assert h.rows[3]["cart_key"] == "anon-1/c-1"
    # T0+54m  Payment Failed chk-1                              c-1 deadline T0+84m
    # T0+83m  bystander: not yet
    # T0+84m  bystander: c-1 abandoned
    second = h.each(
        track("Payment Failed", T0 + 54 * MIN, checkout_id="chk-1"), page(T0 + 83 * MIN), page(T0 + 84 * MIN)
    )
    assert [(t["cart_key"], t["event_time_ms"]) for t in second] == [("anon-1/c-1", T0 + 84 * MIN)]


def test_order_by_checkout_id_closes_that_cart() -> None:
    h = Harness()
    # T0      add to cart "c-1"; T0+1m add to the open cart #1
    # T0+2m   Checkout Started chk-1 for c-1
    # T0+3m   Order Completed with checkout_id chk-1 only: closes c-1, not #1
    # T0+3h   bystander: only #1 is abandoned
    triggers = h.each(
        add(T0, cart_id="c-1"),
        add(T0 + MIN, "sku-2"),
        track("Checkout Started", T0 + 2 * MIN, checkout_id="chk-1", cart_id="c-1"),
        order(T0 + 3 * MIN, checkout_id="chk-1"),
        page(T0 + 180 * MIN),
    )
    assert h.rows[3]["cart_key"] == "anon-1/c-1"
    assert [t["cart_key"] for t in triggers] == ["anon-1#1"]


def test_two_carts_of_one_visitor_after_an_order() -> None:
    h = Harness()
    # T0      add sku-1: open cart #1
    # T0+5m   order: #1 closed
    # T0+6m   add sku-2: a new open cart #2
    # T0+36m  bystander: #2 abandoned, holding sku-2 only
    triggers = h.each(add(T0), order(T0 + 5 * MIN), add(T0 + 6 * MIN, "sku-2", 12.0), page(T0 + 36 * MIN))
    assert [r["cart_key"] for r in h.rows[:3]] == ["anon-1#1", "anon-1#1", "anon-1#2"]
    (trigger,) = triggers
    assert trigger["cart_key"] == "anon-1#2"
    assert trigger["items"] == [{"product_id": "sku-2", "name": None, "price": 12.0, "quantity": 1}]


def test_partial_removal_keeps_the_rest_and_updates_value() -> None:
    h = Harness()
    # T0      add 3 x sku-1 at 10.00 and 1 x sku-2 at 5.00
    # T0+1m   remove 2 x sku-1: 1 x sku-1 left              -> deadline T0+31m
    # T0+31m  bystander: abandoned with 15.00
    removed = track("Product Removed", T0 + MIN, product_id="sku-1", quantity=2)
    (trigger,) = h.each(add(T0, price=10.0, quantity=3), add(T0, "sku-2", 5.0), removed, page(T0 + 31 * MIN))
    assert trigger["cart_value"] == 15.0
    assert [(i["product_id"], i["quantity"]) for i in trigger["items"]] == [("sku-1", 1), ("sku-2", 1)]


def test_activity_without_a_cart_creates_none() -> None:
    h = Harness()
    # T0      Cart Viewed and Product Removed before any Product Added: no cart
    # T0+3h   bystander: nothing to abandon
    events = [track("Cart Viewed", T0), track("Product Removed", T0 + 1, product_id="sku-1"), page(T0 + 180 * MIN)]
    assert h.each(*events) == []
    assert [r["cart_key"] for r in h.rows] == ["", "", ""]
    assert decode_state(h.table[ANON_1]).carts == []


def test_closed_carts_are_forgotten_after_retention() -> None:
    h = Harness()
    # T0        add, T0+5m order: cart #1 closed
    # T0+2d+4m  a page view: 1 min short of the retention, #1 kept
    # T0+2d+5m  a page view: retention reached, #1 forgotten
    h.each(add(T0), order(T0 + 5 * MIN), page(T0 + 2 * DAY + 4 * MIN, anon="anon-1"))
    assert [c.local_key for c in decode_state(h.table[ANON_1]).carts] == ["#1"]
    h.each(page(T0 + 2 * DAY + 5 * MIN, anon="anon-1"))
    assert decode_state(h.table[ANON_1]).carts == []


def test_an_offer_is_cancelled_by_a_later_order_after_the_device_forgot_its_cart() -> None:
    h = Harness(Rules(allowed_lateness_ms=0, holdout_pct=0.0, offer_valid_ms=3 * DAY))
    # T0         identify cust-1 with consent, add    -> deadline T0+30m
    # T0+30m     bystander -> abandoned with an offer expiring T0+30m+3d (kept by the customer stage)
    # T0+3d      past the 2 d retention: the device forgets the cart
    # T0+3d+10m  an order, the offer still live: the customer stage cancels it
    (trigger,) = h.each(identify(T0, "cust-1", True), add(T0), page(T0 + 30 * MIN))
    assert trigger["action"] == "offer"
    h.each(page(T0 + 3 * DAY, anon="anon-1"))
    assert decode_state(h.table[ANON_1]).carts == []
    (cancelled,) = h.each(order(T0 + 3 * DAY + 10 * MIN))
    assert (cancelled["kind"], cancelled["ref_trigger_id"]) == ("offer_cancelled", trigger["trigger_id"])


def test_checkout_map_keeps_the_latest_eight() -> None:
    h = Harness()
    # T0        add; T0+1s .. T0+10s: ten checkouts started for the open cart
    starts = [track("Checkout Started", T0 + i * 1000, checkout_id=f"chk-{i}") for i in range(1, 11)]
    h.each(add(T0), *starts)
    assert list(decode_state(h.table[ANON_1]).checkouts) == [f"chk-{i}" for i in range(3, 11)]


def test_visitor_over_max_carts_loses_its_least_recently_active_cart() -> None:
    h = Harness(Rules(allowed_lateness_ms=0, holdout_pct=0.0, max_carts=2))
    # T0      add to c-1, T0+1m add to c-2, T0+2m add to c-3: c-1 (oldest) is dropped
    h.each(add(T0, cart_id="c-1"), add(T0 + MIN, cart_id="c-2"), add(T0 + 2 * MIN, cart_id="c-3"))
    assert [c.cart_id for c in decode_state(h.table[ANON_1]).carts] == ["c-2", "c-3"]


def test_a_full_visitor_drops_the_cart_with_an_offer_and_a_later_order_still_cancels_it() -> None:
    h = Harness(Rules(allowed_lateness_ms=0, holdout_pct=0.0, max_carts=2))
    # T0      identify cust-1 with consent
    # T0+1m   add to c-1 (deadline T0+31m); T0+2m add to c-2 (deadline T0+32m)
    # T0+40m  bystander: c-1 abandoned with an offer (live 48 h); c-2 abandoned, capped: no offer
    # T0+50m  add to c-3: c-1, the least recently active, goes (its offer lives in the customer stage)
    # T0+60m  order: c-1's offer is cancelled
    first = h.each(
        identify(T0, "cust-1", consent=True),
        add(T0 + MIN, cart_id="c-1"),
        add(T0 + 2 * MIN, cart_id="c-2"),
        page(T0 + 40 * MIN),
    )
    assert [(t["cart_id"], t["action"]) for t in first] == [("c-1", "offer"), ("c-2", "none")]
    h.each(add(T0 + 50 * MIN, cart_id="c-3"))
    assert [c.cart_id for c in decode_state(h.table[ANON_1]).carts] == ["c-2", "c-3"]
    (cancelled,) = h.each(order(T0 + 60 * MIN, cart_id="c-3"))
    assert (cancelled["kind"], cancelled["ref_trigger_id"]) == ("offer_cancelled", first[0]["trigger_id"])
