"""Cart abandonment in event time: deadline = last cart activity + 30 min (docs/detection.md)."""

from __future__ import annotations

from pipeline.detect import Rules
from pipeline.wire.records import stable_id

from tests.detect.helpers import MIN, T0, Harness, add, identify, order, page, track

DEADLINE = T0 + 30 * MIN  # 2023-11-14 22:43:20 UTC


def test_abandonment_fires_exactly_at_deadline() -> None:
    h = Harness()
    # T0          anon-1 adds 2 x sku-1 at 49.90     -> deadline T0+30m
    # T0+30m-1ms  bystander page view: watermark 1 ms short of the deadline
    assert h.each(add(T0, quantity=2), page(DEADLINE - 1)) == []
    # T0+30m      bystander page view: watermark = deadline -> abandoned
    (trigger,) = h.each(page(DEADLINE))
    assert trigger == {
        "trigger_id": stable_id("cart_abandoned", "shop-a", "anon-1#1", DEADLINE),
        "kind": "cart_abandoned",
        "tenant": "shop-a",
        "customer_id": None,
        "anonymous_id": "anon-1",
        "session_id": h.rows[0]["session_id"],
        "cart_id": None,
        "cart_key": "anon-1#1",
        "cart_value": 99.8,
        "currency": "EUR",
        "items": [{"product_id": "sku-1", "name": None, "price": 49.9, "quantity": 2}],
        "event_time_ms": DEADLINE,
        "emitted_at_ms": DEADLINE + 500,  # the wall clock passed with that record
        "reasons": ["inactive_30m"],
        "friction_score": 0,
        "action": "none",
        "offer": None,
        "holdout": False,
        "experiment": "default",
        "ref_trigger_id": None,
    }


def test_activity_one_ms_before_deadline_extends_it() -> None:
    h = Harness()
    # T0          add                                  -> deadline T0+30m
    # T0+30m-1ms  anon-1 views the cart: still alive   -> deadline T0+60m-1ms
    # T0+30m      bystander: nothing due any more
    # T0+60m-2ms  bystander: nothing due yet
    assert h.each(add(T0), track("Cart Viewed", DEADLINE - 1), page(DEADLINE), page(T0 + 60 * MIN - 2)) == []
    # T0+60m-1ms  bystander: abandoned at the extended deadline
    (trigger,) = h.each(page(T0 + 60 * MIN - 1))
    assert trigger["event_time_ms"] == T0 + 60 * MIN - 1


def test_order_before_deadline_no_trigger() -> None:
    h = Harness()
    # T0       add; T0+29m order closes the cart; T0+3h bystander: nothing to abandon
    assert h.each(add(T0), order(T0 + 29 * MIN), page(T0 + 180 * MIN)) == []
    assert [r["cart_key"] for r in h.rows] == ["anon-1#1", "anon-1#1", ""]


def test_order_after_deadline_triggers_then_recovers_without_retraction() -> None:
    h = Harness()
    # T0       add                               -> deadline T0+30m
    # T0+40m   anon-1's order: the deadline passed first -> abandoned at T0+30m,
    #          then the order recovers the cart (same cart_key on the order row)
    # T0+5h    bystander: nothing more, no retraction
    triggers = h.each(add(T0), order(T0 + 40 * MIN), page(T0 + 300 * MIN))
    assert [(t["kind"], t["event_time_ms"]) for t in triggers] == [("cart_abandoned", DEADLINE)]
    assert h.rows[1]["event"] == "Order Completed" and h.rows[1]["cart_key"] == "anon-1#1"


def test_visitor_page_after_deadline_waits_for_watermark_so_late_order_still_counts() -> None:
    h = Harness(Rules(allowed_lateness_ms=5 * MIN, holdout_pct=0.0))
    # T0          add                                 -> deadline T0+30m
    # T0+32m      anon-1 views a page: not cart activity, proves nothing; watermark T0+27m
    # T0+28m      anon-1's order, sent before the deadline, arrives late (inside 5 min)
    # T0+40m      bystander: watermark T0+35m, the cart was ordered -> nothing
    events = [add(T0), page(T0 + 32 * MIN, anon="anon-1"), order(T0 + 28 * MIN), page(T0 + 40 * MIN)]
    assert h.each(*events) == []


def test_cart_activity_after_deadline_fires_that_cart_first_while_watermark_lags() -> None:
    h = Harness(Rules(allowed_lateness_ms=5_000, holdout_pct=0.0))
    # T0       add                                    -> deadline T0+30m
    # T0+30m   anon-1 adds again to the same open cart: watermark T0+30m-5s, but
    #          activity on this cart at its deadline proves 30 min without any ->
    #          abandoned first, then the add applies
    (trigger,) = h.each(add(T0), add(DEADLINE))
    assert (trigger["kind"], trigger["event_time_ms"], trigger["cart_key"]) == ("cart_abandoned", DEADLINE, "anon-1#1")
    # T0+2h    bystander: a cart is abandoned once, the revisit sets no new deadline
    assert h.each(page(T0 + 120 * MIN)) == []


def test_out_of_order_order_inside_allowed_lateness_cancels_abandonment() -> None:
    h = Harness(Rules(allowed_lateness_ms=MIN, holdout_pct=0.0))
    # T0          add                                      -> deadline T0+30m
    # T0+30m30s   bystander: watermark T0+29m30s, the deadline waits for late events
    # T0+29m50s   anon-1's order arrives 40 s late (inside the 1 min lateness): closes the cart
    # T0+32m      bystander: watermark T0+31m, nothing due
    events = [add(T0), page(DEADLINE + 30_000), order(DEADLINE - 10_000), page(T0 + 32 * MIN)]
    assert h.each(*events) == []


def test_late_order_beyond_lateness_does_not_retract() -> None:
    h = Harness(Rules(allowed_lateness_ms=MIN, holdout_pct=0.0))
    # T0          add                                      -> deadline T0+30m
    # T0+31m      bystander: watermark T0+30m -> abandoned
    # T0+29m50s   anon-1's order arrives 70 s late (beyond the lateness): it still
    #             recovers the cart, but the trigger stands
    # T0+3h       bystander: nothing more
    triggers = h.each(add(T0), page(T0 + 31 * MIN), order(DEADLINE - 10_000), page(T0 + 180 * MIN))
    assert [(t["kind"], t["event_time_ms"]) for t in triggers] == [("cart_abandoned", DEADLINE)]
    assert h.rows[2]["cart_key"] == "anon-1#1"


def test_empty_cart_all_removed_never_abandoned() -> None:
    h = Harness()
    # T0       add 2 x sku-1
    # T0+1m    remove sku-1 without a quantity: all of it leaves, the cart is empty
    # T0+5h    bystander: an empty cart is never abandoned
    removed = track("Product Removed", T0 + MIN, product_id="sku-1")
    assert h.each(add(T0, quantity=2), removed, page(T0 + 300 * MIN)) == []


def test_cart_abandoned_at_most_once() -> None:
    h = Harness()
    # T0       add                      -> deadline T0+30m
    # T0+30m   bystander -> abandoned
    # T0+40m   anon-1 adds sku-2 to the same (still open) cart: no new deadline
    # T0+5h    bystander: nothing more
    triggers = h.each(add(T0), page(DEADLINE), add(T0 + 40 * MIN, "sku-2"), page(T0 + 300 * MIN))
    assert [t["event_time_ms"] for t in triggers] == [DEADLINE]
    assert h.rows[2]["cart_key"] == "anon-1#1"


def test_abandonment_uses_known_customer_and_session_of_last_activity() -> None:
    h = Harness()
    # T0       add (session A)
    # T0+1m    identify as cust-7 (no consent)
    # T0+5m    Cart Viewed under SDK session hint "s-b": the last cart activity
    # T0+35m   bystander -> abandoned, customer cust-7, session "s-b", no offer
    viewed = {**track("Cart Viewed", T0 + 5 * MIN), "session_hint": "s-b"}
    (trigger,) = h.each(add(T0), identify(T0 + MIN, "cust-7", consent=False), viewed, page(T0 + 35 * MIN))
    session_b = stable_id("session", "shop-a", "anon-1", "sdk", "s-b")[:20]
    assert (trigger["customer_id"], trigger["session_id"], trigger["action"]) == ("cust-7", session_b, "none")
