"""Scripted sessions with friction, and the hand-computed friction_daily rows and assist triggers.

Times are seconds after 10:00 UTC on day D = yesterday. Allowed lateness is
5 minutes in these runs. Default thresholds and weights (payment_failed 30,
error_click 20, rage_click 20, checkout_loop 20, dead_click 10, u_turn 10,
zero_result_search 10, slow_page 5; assist at 50).

    F1  anon-f1 / u-f1  identify (consent) @0, page /en/p/7 @0 (0.9 s load)
                        clicks on img.zoom @10.0, @10.6, then @10.3 sent last
                        (late, inside the lateness): rage_click /en/p/7 (20)
                        Product Added c-f1 (80.00) @30, Checkout Started chk-f1 @50
                        page /en/checkout/payment @60 loads in 5.2 s: slow_page (25)
                        Checkout Step Viewed 3 @61
                        Payment Failed @90, sent twice with one messageId: one
                        payment_failed (55 >= 50, in checkout) -> checkout_friction @90,
                        reasons [payment_failed, rage_click, slow_page], cart c-f1
                        click button.pay-now @120, Error Shown @120.5: error_click (75;
                        the assist was 30 s ago: none), Payment Failed @150 (100: none)
                        Order Completed o-f1 @200 -> converted
    F2  anon-f2         page / @0, /en/c/shoes @5, / @12 (7 s later): u_turn /en/c/shoes
                        Products Searched 0 results @20 on /en/search: zero_result_search
                        click a.size-guide (interactive, no response) @40 on /en/p/3: dead_click (30)
                        clicks on img.swatch @45.0, @45.3, @45.6 on /en/p/3: rage_click (50)
                        never in checkout: no trigger, though the score reaches the threshold
    F3  anon-f3         Checkout Started chk-f3 @1, Checkout Step Viewed 1 @2, @30, @60 on
                        /en/checkout/information: checkout_loop there (20)
                        Coupon Denied @70, @80 on /en/checkout/shipping: checkout_loop there (40)
                        Payment Failed @100 on /en/checkout/payment (70) -> checkout_friction
                        @100, reasons [checkout_loop_x2, payment_failed]; anonymous, no cart
    F4  anon-f4         page / @0, Order Completed o-f4 @60 -> converted, no friction

Day D: 4 sessions, 2 converted (F1, F4). Per (signal, page): affected sessions,
occurrences, conversion of the affected, conversion of the day's other sessions:
    rage_click /en/p/7                      1, 1, 1/1, 1/3 (F2 F3 F4: F4)
    rage_click /en/p/3                      1, 1, 0/1, 2/3 (F1 F3 F4: F1 F4)
    slow_page /en/checkout/payment          1, 1, 1/1, 1/3
    error_click /en/checkout/payment        1, 1, 1/1, 1/3
    payment_failed /en/checkout/payment     2, 3, 1/2 (F1 F3), 1/2 (F2 F4)
    u_turn /en/c/shoes                      1, 1, 0/1, 2/3 (F1 F3 F4: F1 F4)
    zero_result_search /en/search           1, 1, 0/1, 2/3
    dead_click /en/p/3                      1, 1, 0/1, 2/3
    checkout_loop /en/checkout/information  1, 1, 0/1, 2/3
    checkout_loop /en/checkout/shipping     1, 1, 0/1, 2/3
"""

from __future__ import annotations

import datetime as dt

from pipeline.wire.partitioner import ids_per_partition
from pipeline.wire.records import stable_id

__all__ = ["EXPECTED_ROWS", "EXPECTED_ASSISTS", "friction_messages", "sentinel_messages", "at_ms"]

EXPECTED_ROWS = {
    ("rage_click", "/en/p/7"): (1, 1, 1.0, 1 / 3),
    ("rage_click", "/en/p/3"): (1, 1, 0.0, 2 / 3),
    ("slow_page", "/en/checkout/payment"): (1, 1, 1.0, 1 / 3),
    ("error_click", "/en/checkout/payment"): (1, 1, 1.0, 1 / 3),
    ("payment_failed", "/en/checkout/payment"): (2, 3, 1 / 2, 1 / 2),
    ("u_turn", "/en/c/shoes"): (1, 1, 0.0, 2 / 3),
    ("zero_result_search", "/en/search"): (1, 1, 0.0, 2 / 3),
    ("dead_click", "/en/p/3"): (1, 1, 0.0, 2 / 3),
    ("checkout_loop", "/en/checkout/information"): (1, 1, 0.0, 2 / 3),
    ("checkout_loop", "/en/checkout/shipping"): (1, 1, 0.0, 2 / 3),
}
# anonymous id -> (seconds after 10:00, score, reasons, customer id, cart id, session start in seconds)
EXPECTED_ASSISTS = {
    "anon-f1": (90, 55, ["payment_failed", "rage_click", "slow_page"], "u-f1", "c-f1", 0),
    "anon-f3": (100, 70, ["checkout_loop_x2", "payment_failed"], None, None, 1),
}


def at_ms(day: dt.date, second: float) -> int:
    start = dt.datetime(day.year, day.month, day.day, 10, tzinfo=dt.timezone.utc)
    return int(start.timestamp() * 1000 + round(second * 1000))


def assist_id(tenant: str, anon: str, day: dt.date) -> str:
    """The trigger id the pipeline must give (session ids are deterministic too)."""
    second, *_, session_start = EXPECTED_ASSISTS[anon]
    session = stable_id("session", tenant, anon, at_ms(day, session_start))[:20]
    return stable_id("checkout_friction", tenant, session, at_ms(day, second))


def _ts(day: dt.date, second: float) -> str:
    t = dt.datetime.fromtimestamp(at_ms(day, second) / 1000, dt.timezone.utc)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def friction_messages(tenant: str, day: dt.date) -> list[dict]:
    """The sessions above as Segment batch messages, in sending order."""
    n = iter(range(1, 1000))

    def base(kind: str, anon: str, second: float, path: str | None) -> dict:
        msg = {"type": kind, "anonymousId": anon, "timestamp": _ts(day, second), "messageId": f"{tenant}-f{next(n)}"}
        if path:
            msg["context"] = {"page": {"path": path}}
        return msg

    def track(anon: str, second: float, event: str, props: dict, path: str | None = None, user: str | None = None) -> dict:
        msg = base("track", anon, second, path) | {"event": event, "properties": props}
        if user:
            msg["userId"] = user
        return msg

    def page(anon: str, second: float, path: str, load_ms: int = 900) -> dict:
        return base("page", anon, second, path) | {"properties": {"path": path, "load_time_ms": load_ms}}

    def click(anon: str, second: float, selector: str, path: str, *, x: int = 300, y: int = 400,
              interactive: bool = False, responded: bool = False, user: str | None = None) -> dict:  # fmt: skip
        props = {"selector": selector, "x": x, "y": y, "interactive": interactive, "responded": responded}
        return track(anon, second, "Element Clicked", props, path, user)

    f1 = {"user": "u-f1"}
    pay, info, ship = "/en/checkout/payment", "/en/checkout/information", "/en/checkout/shipping"
    failed_f1 = track("anon-f1", 90, "Payment Failed", {"checkout_id": "chk-f1", "reason": "card_declined"}, pay, **f1)
    identify = base("identify", "anon-f1", 0, None) | {
        "userId": "u-f1", "traits": {"email": "f1@example.com", "consent_marketing": True}
    }  # fmt: skip
    return [
        identify,
        page("anon-f1", 0, "/en/p/7"),
        click("anon-f1", 10.0, "img.zoom", "/en/p/7", **f1),
        click("anon-f1", 10.6, "img.zoom", "/en/p/7", x=304, **f1),
        click("anon-f1", 10.3, "img.zoom", "/en/p/7", y=396, **f1),  # late: sent after the 10.6 s click
        track("anon-f1", 30, "Product Added", {"cart_id": "c-f1", "product_id": "p7", "price": 80}, "/en/p/7", **f1),
        track("anon-f1", 50, "Checkout Started", {"checkout_id": "chk-f1", "cart_id": "c-f1"}, "/en/cart", **f1),
        page("anon-f1", 60, pay, load_ms=5_200),
        track("anon-f1", 61, "Checkout Step Viewed", {"checkout_id": "chk-f1", "step": 3}, pay, **f1),
        failed_f1,
        dict(failed_f1),  # the SDK retried: same messageId
        click("anon-f1", 120, "button.pay-now", pay, interactive=True, responded=True, **f1),
        track("anon-f1", 120.5, "Error Shown", {"kind": "payment", "selector": "#card-error", "code": "51"}, pay, **f1),
        track("anon-f1", 150, "Payment Failed", {"checkout_id": "chk-f1", "reason": "card_declined"}, pay, **f1),
        track("anon-f1", 200, "Order Completed", {"order_id": "o-f1", "checkout_id": "chk-f1", "total": 80}, pay, **f1),
        page("anon-f2", 0, "/"),
        page("anon-f2", 5, "/en/c/shoes"),
        page("anon-f2", 12, "/"),
        track("anon-f2", 20, "Products Searched", {"query": "linnen shirt", "results_count": 0}, "/en/search"),
        click("anon-f2", 40, "a.size-guide", "/en/p/3", interactive=True, responded=False),
        *(click("anon-f2", s, "img.swatch", "/en/p/3", x=500, y=300) for s in (45.0, 45.3, 45.6)),
        track("anon-f3", 1, "Checkout Started", {"checkout_id": "chk-f3"}, info),
        *(track("anon-f3", s, "Checkout Step Viewed", {"checkout_id": "chk-f3", "step": 1}, info) for s in (2, 30, 60)),
        track("anon-f3", 70, "Coupon Denied", {"coupon_id": "WELCOME10", "reason": "expired"}, ship),
        track("anon-f3", 80, "Coupon Denied", {"coupon_id": "SPRING", "reason": "minimum_not_met"}, ship),
        track("anon-f3", 100, "Payment Failed", {"checkout_id": "chk-f3", "reason": "do_not_honor"}, pay),
        page("anon-f4", 0, "/", load_ms=300),
        track("anon-f4", 60, "Order Completed", {"order_id": "o-f4", "total": 20}, "/en/checkout/payment"),
    ]


def sentinel_messages(tenant: str, day: dt.date, partitions: int, round_no: int) -> list[dict]:
    """One server-side event (user id only: no browser session) per partition, sent last.

    Once every sentinel is stored, each partition has processed what was sent
    before it; having no session they change no view.
    """
    return [
        {"type": "track", "event": "Sentinel", "userId": user, "properties": {}, "timestamp": _ts(day, 300),
         "messageId": f"{tenant}-sentinel-{round_no}-{user}"}
        for user in ids_per_partition(tenant, "sentinel", partitions, anonymous=False)
    ]  # fmt: skip
