"""Attribution: an order within 7 days of an abandonment trigger recovers it, in both arms, once."""

from __future__ import annotations

import dataclasses

from tests.detect.helpers import DAY, EXACT, HOUR, MIN, T0, Harness, add, identify, page, track

DEADLINE = T0 + 30 * MIN  # 2023-11-14 22:43:20 UTC
HELD_OUT = dataclasses.replace(EXACT, holdout_pct=100.0)


def order_of(t_ms: int, order_id: str, total: float, **props: object) -> dict:
    return track("Order Completed", t_ms, order_id=order_id, total=total, **props)


def recoveries(h: Harness) -> list[dict]:
    return h.facts.get("cx.recoveries", [])


def abandoned_with_offer(h: Harness) -> dict:
    # T0      identify cust-1 with consent; add 49.90    -> deadline T0+30m
    # T0+30m  bystander -> abandoned, offer 10 %
    (trigger,) = h.each(identify(T0, "cust-1", True), add(T0), page(DEADLINE))
    assert trigger["action"] == "offer"
    return trigger


def test_order_a_day_later_recovers_the_treated_trigger() -> None:
    h = Harness()
    trigger = abandoned_with_offer(h)
    # T0+30m+1d  order o-9: revenue 45 (sent), total 50 -> recovery, and the live offer is cancelled
    (cancelled,) = h.each(order_of(DEADLINE + DAY, "o-9", 50.0, revenue=45.0))
    assert cancelled["kind"] == "offer_cancelled"
    assert recoveries(h) == [
        {
            "tenant": "shop-a",
            "trigger_id": trigger["trigger_id"],
            "kind": "cart_abandoned",
            "trigger_time_ms": DEADLINE,
            "order_time_ms": DEADLINE + DAY,
            "customer_id": "cust-1",
            "anonymous_id": "anon-1",
            "order_id": "o-9",
            "revenue": 45.0,
            "holdout": False,
            "experiment": "default",
            "action": "offer",
            "discount_pct": 10,
        }
    ]


def test_holdout_trigger_is_recovered_the_same_way() -> None:
    h = Harness(HELD_OUT)
    # T0 identify, add; T0+30m abandoned in the holdout (action none); T0+3h order o-1 (99.80)
    (trigger,) = h.each(identify(T0, "cust-1", True), add(T0), page(DEADLINE))
    assert (trigger["holdout"], trigger["action"]) == (True, "none")
    assert h.each(order_of(T0 + 3 * HOUR, "o-1", 99.8)) == []
    (row,) = recoveries(h)
    assert (row["trigger_id"], row["holdout"], row["action"], row["discount_pct"], row["revenue"]) == (
        trigger["trigger_id"], True, "none", 0, 99.8,
    )  # fmt: skip


def test_attribution_window_is_7_days_exclusive() -> None:
    inside, outside = Harness(), Harness()
    abandoned_with_offer(inside)
    abandoned_with_offer(outside)
    inside.each(order_of(DEADLINE + 7 * DAY - 1, "o-1", 10.0))  # 1 ms inside the window
    outside.each(order_of(DEADLINE + 7 * DAY, "o-1", 10.0))  # exactly 7 days: too late
    assert [r["order_time_ms"] for r in recoveries(inside)] == [DEADLINE + 7 * DAY - 1]
    assert recoveries(outside) == []


def test_one_order_recovers_the_latest_trigger_once() -> None:
    h = Harness()
    # anonymous visitor: T0 add c-1, T0+1m add c-2 -> abandoned at T0+30m and T0+31m
    # T0+2h order o-1 recovers the latest (c-2's); T0+2h1m the same order resent; T0+3h order o-2: nothing left
    first, second = h.each(add(T0, cart_id="c-1"), add(T0 + MIN, "sku-2", cart_id="c-2"), page(T0 + 31 * MIN))
    h.each(
        order_of(T0 + 2 * HOUR, "o-1", 30.0),
        order_of(T0 + 2 * HOUR + MIN, "o-1", 30.0),
        order_of(T0 + 3 * HOUR, "o-2", 30.0),
    )
    assert [(r["trigger_id"], r["order_id"]) for r in recoveries(h)] == [(second["trigger_id"], "o-1")]
    assert first["trigger_id"] != second["trigger_id"]


def test_order_placed_before_the_trigger_does_not_recover_it() -> None:
    h = Harness(dataclasses.replace(EXACT, allowed_lateness_ms=0))
    # T0 add c-1; T0+30m abandoned; then a late order event timed T0+10m for another cart arrives:
    # placed before the trigger, it recovers nothing and the trigger stays pending
    h.each(add(T0, cart_id="c-1"), page(DEADLINE), order_of(T0 + 10 * MIN, "o-0", 5.0, cart_id="c-x"))
    assert recoveries(h) == []
    h.each(order_of(DEADLINE + HOUR, "o-1", 12.0))
    assert [r["order_id"] for r in recoveries(h)] == ["o-1"]


def test_an_assist_does_not_take_the_credit_of_an_earlier_abandonment_offer() -> None:
    from pipeline.detect.attribution import recover, remember_trigger
    from pipeline.detect.state import VisitorState

    def trigger(kind: str, trigger_id: str, t_ms: int) -> dict:
        return {"kind": kind, "trigger_id": trigger_id, "event_time_ms": t_ms, "holdout": False,
                "experiment": "default", "action": "offer" if kind == "cart_abandoned" else "assist", "offer": None}

    state = VisitorState(tenant="shop-a", anonymous_id="anon-1", user_id="u-1")
    # T0+30m  cart_abandoned t-abandon; T0+2h  checkout_friction t-assist on the return visit
    remember_trigger(state, trigger("cart_abandoned", "t-abandon", T0 + 30 * MIN))
    remember_trigger(state, trigger("checkout_friction", "t-assist", T0 + 120 * MIN))
    # T0+2h5m  the order: each experiment's pending trigger is recovered, once
    rows = recover(state, order_id="o-1", revenue=80.0, order_ms=T0 + 125 * MIN, rules=EXACT)
    assert [(r["kind"], r["trigger_id"], r["order_id"]) for r in rows] == [
        ("cart_abandoned", "t-abandon", "o-1"),
        ("checkout_friction", "t-assist", "o-1"),
    ]
    assert recover(state, order_id="o-2", revenue=10.0, order_ms=T0 + 130 * MIN, rules=EXACT) == []
