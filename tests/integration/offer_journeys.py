"""Scripted journeys across both arms of the offer experiment, with hand-computed numbers.

Run with ``holdout_pct`` 50 and the default tiers (100 -> 15 %, 250 -> 20 %,
else 10 %), loyalty assist at 70, attribution 7 days. Times are minutes after
10:00 UTC on day D = yesterday; every customer is identified with consent at
minute 0 and sends its user id on every later event. Customer ids are picked
so that P and Q fall in the treatment arm and H and K in the holdout
(``customer_ids``): the arm is a stable hash of tenant, experiment and id.

    P  treatment  Product Added c-p 2 x 60.00 @1 -> abandoned @31, offer 15 % (cart 120)
                  Order Completed o-p total 120 @90 -> offer_cancelled, recovered (120, cost 18)
    Q  treatment  Product Added c-q 30.00 @2 -> abandoned @32, offer 10 %; never orders
    H  holdout    Product Added c-h 50.00 @3 -> abandoned @33, action none
                  Order Completed o-h total 50 @100 -> recovered (50)
    K  holdout    Product Added c-k 40.00 @4 -> abandoned @34, action none; never orders
    B  (either)   Product Added c-b 80.00 @1, Order Completed o-b total 80 @10 (before the
                  deadline: no trigger), Order Completed o-b2 total 20 @20 (no cart)
    tick pages @240 on every partition move event time past every deadline.

offers_daily (D, experiment default):
    treatment  triggers 2, offers 2, assists 0, recovered 1, revenue 120, rate 0.5, cost 18
    holdout    triggers 2, offers 0, assists 0, recovered 1, revenue 50,  rate 0.5, cost 0
customers (loyalty = the stream's score at the customer's last order or decision):
    P  1 order, ltv 120, first order 11:30, last seen 11:30, score 20 + 12.5 + 7.2 = 39.7 -> 40
    Q  0 orders, first order 1970-01-01, last seen 10:02, score 0
    H  1 order, ltv 50, first order 11:40, last seen 11:40, score 20 + 12.5 + 3 = 35.5 -> 36
    K  0 orders, last seen 10:04, score 0
    B  2 orders, ltv 100, repeat buyer, first order 10:10, last seen 10:20,
       score 20 + 25 + 6 = 51
"""

from __future__ import annotations

import datetime as dt

from pipeline.detect import Rules
from pipeline.detect.offers import in_holdout
from tests.integration.journeys import _ts, tick_ids

__all__ = ["EXPECTED_CUSTOMERS", "EXPECTED_OFFERS", "HOLDOUT_PCT", "customer_ids", "offer_messages"]

HOLDOUT_PCT = 50.0
EXPECTED_OFFERS = {
    # arm: triggers, offers, assists, recovered_orders, recovered_revenue, recovery_rate, est_discount_cost
    "treatment": (2, 2, 0, 1, 120.0, 0.5, 18.0),
    "holdout": (2, 0, 0, 1, 50.0, 0.5, 0.0),
}
# letter: first order minute (None: no order), orders, ltv, repeat_buyer, last seen minute, loyalty_score
EXPECTED_CUSTOMERS = {
    "P": (90, 1, 120.0, 0, 90, 40),
    "Q": (None, 0, 0.0, 0, 2, 0),
    "H": (100, 1, 50.0, 0, 100, 36),
    "K": (None, 0, 0.0, 0, 4, 0),
    "B": (10, 2, 100.0, 1, 20, 51),
}


def customer_ids(tenant: str) -> dict[str, str]:
    """A user id per journey whose arm is the one the journey needs."""
    rules = Rules(holdout_pct=HOLDOUT_PCT)
    wanted = {"P": False, "Q": False, "H": True, "K": True, "B": False}
    ids: dict[str, str] = {}
    i = 0
    for letter, held in wanted.items():
        while in_holdout(rules, tenant, f"u-{letter.lower()}{i}") != held:
            i += 1
        ids[letter] = f"u-{letter.lower()}{i}"
        i += 1
    return ids


def offer_messages(tenant: str, partitions: int, day: dt.date) -> list[dict]:
    """The journeys above as Segment batch messages, in sending order."""
    ids = customer_ids(tenant)
    n = iter(range(1, 1000))

    def msg(letter: str, minute: float, body: dict) -> dict:
        return {
            **body,
            "anonymousId": f"anon-{letter.lower()}",
            "userId": ids[letter],
            "timestamp": _ts(day, minute),
            "messageId": f"{tenant}-o{next(n)}",
        }

    def track(letter: str, minute: float, event: str, props: dict) -> dict:
        return msg(letter, minute, {"type": "track", "event": event, "properties": props})

    def identify(letter: str) -> dict:
        return msg(letter, 0, {"type": "identify", "traits": {"consent_marketing": True}})

    def added(letter: str, minute: float, price: float, quantity: int = 1) -> dict:
        cart = f"c-{letter.lower()}"
        return track(letter, minute, "Product Added", {"cart_id": cart, "product_id": "p1", "price": price, "quantity": quantity})

    def ordered(letter: str, minute: float, order_id: str, total: float, cart: bool = True) -> dict:
        props = {"order_id": order_id, "total": total, **({"cart_id": f"c-{letter.lower()}"} if cart else {})}
        return track(letter, minute, "Order Completed", props)

    msgs = [identify(x) for x in "PQHKB"]
    msgs += [
        added("P", 1, 60.0, 2), added("B", 1, 80.0), added("Q", 2, 30.0), added("H", 3, 50.0), added("K", 4, 40.0),
        ordered("B", 10, "o-b", 80.0), ordered("B", 20, "o-b2", 20.0, cart=False),
        ordered("P", 90, "o-p", 120.0), ordered("H", 100, "o-h", 50.0),
    ]  # fmt: skip
    for anon in tick_ids(tenant, partitions):
        msgs.append({
            "type": "page", "anonymousId": anon, "properties": {"path": "/"}, "timestamp": _ts(day, 240),
            "messageId": f"{tenant}-{anon}",
        })  # fmt: skip
    return msgs
