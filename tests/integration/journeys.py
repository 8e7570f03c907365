"""Scripted storefront journeys with hand-computed expected numbers.

Times are minutes after 10:00 UTC on day D = yesterday (inside the 7-day
window). Allowed lateness is 5 minutes for these runs; abandonment after 30.

    A  anon-a           page @0, Product Added c-a (2 x 20.00) @1, sent again with
                        the same messageId at the start of the second request (an SDK
                        retrying a batch whose response it lost; nothing has reached
                        @31 yet, so the cart is still open: a second apply would make
                        it 4 x 20.00 = 80)
                        -> no activity until 31: cart_abandoned (anonymous: action none,
                        cart value 40)
    B  anon-b / u-b     identify (consent) @0, Product Added c-b (50) @2,
                        Checkout Started ch-b for c-b @5, Order Completed o-b
                        (total 50, revenue 45) @20 -> ordered before deadline: no trigger
    C  anon-c / u-c     identify (consent) @0, Product Added (no cart_id: the open
                        cart, 30) @1, Cart Viewed @10 -> deadline 40,
                        Order Completed o-c (total 30) @55 -> abandoned at 40 (action
                        offer, holdout share 0 in these runs), then offer_cancelled @55.
                        The 45-minute gap 10 -> 55 starts a second session.
    D  anon-d           Product Added c-d (10) @0 sent twice with one messageId,
                        Cart Viewed c-d @20 -> deadline 50, page @35, page @52,
                        then Order Completed o-d (total 10) @48 delivered after the @52
                        page: out of order but inside the lateness (watermark 47 < 50),
                        so the order is before the deadline: no trigger.
    E  anon-e           Product Added without price -> dead letter missing_property
    tick-0 / tick-1     one page each @240, on partitions 0 and 1: event time moves
                        past every deadline in both partitions.

Sent as two requests: the first ends with A's Product Added @1 (no event later
than @1, so no deadline can fire before the second arrives), the second starts
with its resend and holds the rest.

Hand-computed for day D, tenant of the run:
    sessions 7 (A, B, C x2, D, tick-0, tick-1); with an order: B, C's second, D -> 3
    conversion_rate 3/7; carts 4 (c-a, c-b, C's open cart, c-d); abandoned 2 -> 0.5
    orders 3; revenue 45 + 30 + 10 = 85; aov 85/3
    stored events 17 (A 2 and D 5 after de-duplication, B 4, C 4, ticks 2)
    triggers: cart_abandoned x2, offer_cancelled x1; dead letters: 1 (day = today)
"""

from __future__ import annotations

import datetime as dt

from pipeline.wire.partitioner import ids_per_partition

__all__ = ["journey_batches", "day_d", "EXPECTED"]

EXPECTED = {
    "sessions": 7,
    "carts": 4,
    "orders": 3,
    "revenue": 85.0,
    "conversion_rate": 3 / 7,
    "cart_abandonment_rate": 0.5,
    "aov": 85 / 3,
    "events": 17,
    "triggers": {"cart_abandoned": 2, "offer_cancelled": 1},
    "deadletters": {"missing_property": 1},
}


def day_d(now: dt.datetime | None = None) -> dt.date:
    now = now or dt.datetime.now(dt.timezone.utc)
    return (now - dt.timedelta(days=1)).date()


def _ts(day: dt.date, minute: float) -> str:
    t = dt.datetime(day.year, day.month, day.day, 10, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=minute)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def tick_ids(tenant: str, partitions: int) -> list[str]:
    """One anonymous id landing on each partition, found by the collector's partitioner."""
    return ids_per_partition(tenant, "tick", partitions)


def journey_batches(tenant: str, partitions: int, day: dt.date) -> list[list[dict]]:
    """The journeys above as the two Segment batches, in sending order."""
    n = iter(range(1, 1000))

    def track(anon: str, minute: float, event: str, props: dict, user: str | None = None, mid: str | None = None) -> dict:
        msg = {"type": "track", "event": event, "anonymousId": anon, "properties": props, "timestamp": _ts(day, minute)}
        if user:
            msg["userId"] = user
        msg["messageId"] = mid or f"{tenant}-m{next(n)}"
        return msg

    def page(anon: str, minute: float, path: str) -> dict:
        return {
            "type": "page",
            "anonymousId": anon,
            "properties": {"path": path},
            "context": {"page": {"path": path}},
            "timestamp": _ts(day, minute),
            "messageId": f"{tenant}-m{next(n)}",
        }

    def identify(anon: str, user: str, minute: float) -> dict:
        return {
            "type": "identify",
            "anonymousId": anon,
            "userId": user,
            "traits": {"email": f"{user}@example.com", "consent_marketing": True},
            "timestamp": _ts(day, minute),
            "messageId": f"{tenant}-m{next(n)}",
        }

    d_added = track("anon-d", 0, "Product Added", {"cart_id": "c-d", "product_id": "p4", "price": 10})
    a_added = track("anon-a", 1, "Product Added", {"cart_id": "c-a", "product_id": "p1", "price": 20, "quantity": 2})
    first = [
        page("anon-a", 0, "/"),
        identify("anon-b", "u-b", 0),
        identify("anon-c", "u-c", 0),
        d_added,
        dict(d_added),  # the same messageId twice in one request
        track("anon-e", 0, "Product Added", {"product_id": "p5"}),  # no price
        a_added,
    ]
    msgs = [
        dict(a_added),  # the SDK retried the first request: same messageId, a later Kafka record
        track("anon-c", 1, "Product Added", {"product_id": "p3", "price": 30}, user="u-c"),
        track("anon-b", 2, "Product Added", {"cart_id": "c-b", "product_id": "p2", "price": 50}, user="u-b"),
        track("anon-b", 5, "Checkout Started", {"checkout_id": "ch-b", "cart_id": "c-b", "value": 50}, user="u-b"),
        track("anon-c", 10, "Cart Viewed", {}, user="u-c"),
        track("anon-b", 20, "Order Completed", {"order_id": "o-b", "checkout_id": "ch-b", "total": 50, "revenue": 45}, user="u-b"),
        track("anon-d", 20, "Cart Viewed", {"cart_id": "c-d"}),
        page("anon-d", 35, "/p/4"),
        page("anon-d", 52, "/p/4"),
        track("anon-d", 48, "Order Completed", {"order_id": "o-d", "cart_id": "c-d", "total": 10}),
        track("anon-c", 55, "Order Completed", {"order_id": "o-c", "total": 30}, user="u-c"),
    ]
    msgs += [page(anon, 240, "/") for anon in tick_ids(tenant, partitions)]
    return [first, msgs]
