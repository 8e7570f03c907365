"""One customer on several devices and the backend: the device stage and the customer stage together.

Two partitions of ``cx.events``: the phone's events on partition 0, the
laptop's and the backend's on partition 1 (the test places them; the
collector would hash the visitor keys). Bystander page views move each
partition's watermark, as other visitors' traffic does.
"""

from __future__ import annotations

from pipeline.wire.partitioner import partition_for_key
from pipeline.detect.customer import customer_key, decode_customer
from pipeline.detect.stages import CONVERSIONS_TABLE, LocalStages
from tests.detect.helpers import DAY, EXACT, HOUR, MIN, T0, add, ev, identify, order, page, track

PHONE, LAPTOP = 0, 1


class Shop:
    def __init__(self) -> None:
        self.table: dict[str, bytes] = {}
        self.stages = LocalStages(EXACT, self.table, partitions=2, route=lambda k: partition_for_key(k.encode(), 2))
        self.offsets = [0, 0]
        self.triggers: list[dict] = []
        self.facts: dict[str, list[dict]] = {}

    def feed(self, partition: int, *events: dict) -> None:
        for event in events:
            self.stages.process(partition, self.offsets[partition], [event], event["event_time_ms"] + 500)
            self.offsets[partition] += 1

    def both(self, t_ms: int) -> None:
        """A bystander's page view on each partition at ``t_ms``."""
        self.feed(PHONE, page(t_ms, anon="bystander-0"))
        self.feed(LAPTOP, page(t_ms, anon="bystander-1"))

    def drain(self) -> list[dict]:
        out = self.stages.drain()
        self.table.update(out.states)
        self.triggers += out.triggers
        for table, rows in out.facts.items():
            self.facts.setdefault(table, []).extend(rows)
        return out.triggers

    def decisions(self) -> list[tuple[str, str, str]]:
        return [(t["kind"], t["anonymous_id"] or "", t["action"]) for t in self.triggers]


def backend_order(t_ms: int, user: str, **props: object) -> dict:
    """``Order Completed`` from the shop's backend: user id only."""
    return ev("Order Completed", t_ms, anon=None, user=user, props={"order_id": f"o-{t_ms}", "total": 99.8, **props})


def test_two_devices_abandoning_the_same_day_get_one_offer():
    shop = Shop()
    # T0     the phone: identify ana (consent), add            -> deadline T0+30m
    # T0+1h  the laptop: identify ana, add                     -> deadline T0+1h30m
    # T0+2h  both partitions past both deadlines: the phone's cart comes first in event time
    shop.feed(PHONE, identify(T0, "ana", True, anon="phone"), add(T0, anon="phone"))
    shop.feed(LAPTOP, identify(T0 + HOUR, "ana", True, anon="laptop"), add(T0 + HOUR, anon="laptop"))
    shop.both(T0 + 2 * HOUR)
    shop.drain()
    assert shop.decisions() == [("cart_abandoned", "phone", "offer"), ("cart_abandoned", "laptop", "none")]


def test_the_earlier_cart_wins_even_when_its_partition_is_behind():
    shop = Shop()
    # The laptop's partition runs ahead: its cart (deadline T0+1h30m) is abandoned while the
    # phone's partition has not yet reached the phone's deadline (T0+30m).
    shop.feed(PHONE, identify(T0, "ana", True, anon="phone"), add(T0, anon="phone"))
    shop.feed(LAPTOP, identify(T0 + HOUR, "ana", True, anon="laptop"), add(T0 + HOUR, anon="laptop"))
    shop.feed(LAPTOP, page(T0 + 3 * HOUR, anon="bystander-1"))
    assert shop.drain() == []  # the customer stage waits for the phone's partition
    shop.feed(PHONE, page(T0 + 3 * HOUR, anon="bystander-0"))
    shop.drain()
    assert shop.decisions() == [("cart_abandoned", "phone", "offer"), ("cart_abandoned", "laptop", "none")]


def test_consent_withdrawn_on_the_laptop_stops_the_offer_for_the_phones_cart():
    shop = Shop()
    shop.feed(PHONE, identify(T0 - DAY, "ana", True, anon="phone"), add(T0, anon="phone"))
    shop.feed(LAPTOP, identify(T0 + 10 * MIN, "ana", False, anon="laptop"))  # said no, on the laptop
    shop.both(T0 + HOUR)
    shop.drain()
    assert shop.decisions() == [("cart_abandoned", "phone", "none")]


def test_backend_order_cancels_the_live_browser_offer():
    shop = Shop()
    # T0      the phone: identify ana, add -> offer at T0+30m
    # T0+2h   the backend: Order Completed for ana (user id only) -> offer_cancelled
    shop.feed(PHONE, identify(T0, "ana", True, anon="phone"), add(T0, anon="phone"))
    shop.both(T0 + HOUR)
    shop.feed(LAPTOP, backend_order(T0 + 2 * HOUR, "ana"))
    shop.both(T0 + 3 * HOUR)
    shop.drain()
    assert [(t["kind"], t["action"]) for t in shop.triggers] == [("cart_abandoned", "offer"), ("offer_cancelled", "none")]
    assert shop.triggers[1]["ref_trigger_id"] == shop.triggers[0]["trigger_id"]
    assert shop.triggers[1]["event_time_ms"] == T0 + 2 * HOUR


def test_backend_order_before_the_deadline_closes_the_browser_cart():
    shop = Shop()
    # T0      the phone: identify ana, add to cart c-9
    # T0+10m  the backend: ana's order naming cart c-9 -> the cart was bought: no cart_abandoned
    shop.feed(PHONE, identify(T0, "ana", True, anon="phone"), add(T0, anon="phone", cart_id="c-9"))
    shop.feed(LAPTOP, backend_order(T0 + 10 * MIN, "ana", cart_id="c-9"))
    shop.both(T0 + 2 * HOUR)
    shop.drain()
    assert shop.triggers == []
    (conversion,) = shop.facts[CONVERSIONS_TABLE]
    assert (conversion["cart_key"], conversion["ordered_at_ms"]) == ("phone/c-9", T0 + 10 * MIN)


def test_the_same_order_from_the_browser_and_the_backend_counts_once():
    shop = Shop()
    shop.feed(PHONE, identify(T0, "ana", True, anon="phone"), order(T0 + MIN, anon="phone"))
    shop.feed(LAPTOP, backend_order(T0 + MIN, "ana"))  # the same order id, o-<T0+1m>
    shop.both(T0 + HOUR)
    shop.drain()
    customer = decode_customer(shop.table[customer_key("shop-a", "ana")])
    assert (customer.value.orders, customer.value.revenue) == (1, 99.8)


def test_shared_computer_later_identify_wins_for_later_carts():
    shop = Shop()
    # One anonymous id, two people: ana identifies and abandons a cart; later bob identifies on the
    # same browser and abandons another. Each cart belongs to whoever was identified at the time.
    shop.feed(PHONE, identify(T0, "ana", True, anon="family-pc"), add(T0, anon="family-pc", cart_id="c-1"))
    shop.both(T0 + HOUR)
    shop.feed(PHONE, identify(T0 + 2 * HOUR, "bob", True, anon="family-pc"),
              add(T0 + 2 * HOUR, anon="family-pc", cart_id="c-2"))  # fmt: skip
    shop.both(T0 + 4 * HOUR)
    shop.drain()
    assert [(t["cart_id"], t["customer_id"], t["action"]) for t in shop.triggers] == [
        ("c-1", "ana", "offer"),
        ("c-2", "bob", "offer"),  # bob's first offer: ana's does not cap him
    ]


def test_decisions_do_not_depend_on_how_the_partitions_interleave():
    def run(schedule: list[int]) -> list[dict]:
        shop = Shop()
        streams = {
            PHONE: [identify(T0, "ana", True, anon="phone"), add(T0, anon="phone"),
                    track("Cart Viewed", T0 + 40 * MIN, anon="phone"), page(T0 + 5 * HOUR, anon="b0")],
            LAPTOP: [identify(T0 + 5 * MIN, "ana", True, anon="laptop"), add(T0 + 5 * MIN, anon="laptop"),
                     backend_order(T0 + 3 * HOUR, "ana"), page(T0 + 5 * HOUR, anon="b1")],
        }  # fmt: skip
        for partition in schedule:
            shop.feed(partition, streams[partition].pop(0))
        shop.drain()
        return [{k: v for k, v in t.items() if k != "emitted_at_ms"} for t in shop.triggers]

    phone_first = run([0, 0, 0, 0, 1, 1, 1, 1])
    laptop_first = run([1, 1, 1, 1, 0, 0, 0, 0])
    alternating = run([0, 1, 0, 1, 0, 1, 0, 1])
    # phone cart: deadline T0+30m, offer; laptop cart: deadline T0+35m, capped; the phone's cart
    # viewed at T0+40m is activity after its deadline (abandoned already); the order cancels the offer.
    assert [(t["kind"], t["anonymous_id"], t["action"]) for t in phone_first] == [
        ("cart_abandoned", "phone", "offer"),
        ("cart_abandoned", "laptop", "none"),
        ("offer_cancelled", "phone", "none"),
    ]
    assert laptop_first == phone_first
    assert alternating == phone_first
