"""An independent reading of a message stream by the letter of docs/events.md and docs/detection.md.

The generator keeps its ground truth from its own plan; this module derives
the same numbers from the messages alone, the way those pages define
them. Tests compare the two: when both agree on thousands of journeys, the
ground truth is exact. Written from the documented definitions, not from the generator.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["REQUIRED", "Reading", "invalid_reason", "read_stream", "ts_ms"]

ABANDON_MS = 30 * 60_000
SESSION_GAP_MS = 30 * 60_000

# Section 2: required properties of each catalog event.
REQUIRED = {
    "Products Searched": ("query",),
    "Product List Viewed": (),
    "Product Viewed": ("product_id",),
    "Product Added": ("product_id", "price"),
    "Product Removed": ("product_id",),
    "Cart Viewed": (),
    "Checkout Started": (),
    "Checkout Step Viewed": ("step",),
    "Checkout Step Completed": ("step",),
    "Payment Info Entered": (),
    "Payment Failed": (),
    "Coupon Applied": (),
    "Coupon Denied": (),
    "Order Completed": ("order_id", "total"),
    "Order Refunded": ("order_id", "total"),
    "Order Cancelled": ("order_id", "total"),
    "Element Clicked": ("selector",),
    "Error Shown": ("kind",),
    "Support Ticket Opened": ("ticket_id", "channel"),
    "Support Message Sent": ("ticket_id", "author"),
    "Support Ticket Resolved": ("ticket_id",),
    "Survey Answered": ("survey", "score"),
}
ENUMS = {
    ("Error Shown", "kind"): {"validation", "payment", "server", "client"},
    ("Support Ticket Opened", "channel"): {"chat", "email", "phone", "social"},
    ("Support Message Sent", "author"): {"customer", "agent"},
}
SURVEY_RANGE = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
NUMBERS = (
    "price", "total", "revenue", "shipping", "tax", "discount", "value", "quantity", "results_count", "load_time_ms",
)
BOOLEANS = ("interactive", "responded", "reopened")
CART_ACTIVITY = {"Product Added", "Product Removed", "Cart Viewed", "Checkout Started"}
CHECKOUT_ACTIVITY = {"Checkout Step Viewed", "Checkout Step Completed", "Payment Info Entered", "Payment Failed"}


def ts_ms(msg: dict) -> int:
    return round(datetime.fromisoformat(msg["timestamp"]).timestamp() * 1000)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def invalid_reason(msg: dict) -> str | None:
    """``missing_property`` / ``wrong_type`` for a catalog event that breaks section 2, else None."""
    if msg["type"] != "track" or msg["event"] not in REQUIRED:
        return None
    event, props = msg["event"], msg.get("properties", {})
    if any(name not in props for name in REQUIRED[event]):
        return "missing_property"
    for (enum_event, name), allowed in ENUMS.items():
        if event == enum_event and props[name] not in allowed:
            return "wrong_type"
    if any(name in props and not _is_number(props[name]) for name in NUMBERS):
        return "wrong_type"
    if any(name in props and not isinstance(props[name], bool) for name in BOOLEANS):
        return "wrong_type"
    if event == "Survey Answered":
        low, high = SURVEY_RANGE.get(props["survey"], (1, 0))
        if not isinstance(props["score"], int) or not low <= props["score"] <= high:
            return "wrong_type"
    return None


@dataclass
class _Cart:
    items: int = 0
    last_ms: int = 0
    abandoned: bool = False
    ordered: bool = False
    recovered: bool = False


@dataclass
class Reading:
    invalid: Counter = field(default_factory=Counter)
    carts: int = 0
    orders: int = 0
    abandoned: int = 0
    recovered: int = 0
    revenue_cents: int = 0
    sessions: int = 0
    identified_visitors: set = field(default_factory=set)
    customers: dict = field(default_factory=dict)  # userId -> latest consent_marketing


def read_stream(messages: list[dict]) -> Reading:
    """Derive the section 5 counts from ``messages`` (event-time order), once time has run out."""
    r = Reading()
    carts: dict[str, _Cart] = {}
    open_cart: dict[str, str] = {}  # visitor -> key of the one open cart sent without cart_id
    checkout_cart: dict[str, str] = {}
    last_seen: dict[str, int] = {}
    for msg in messages:
        reason = invalid_reason(msg)
        if reason is not None:
            r.invalid[reason] += 1
            continue
        t = ts_ms(msg)
        visitor = msg.get("anonymousId") or msg["userId"]
        if "anonymousId" in msg:  # browser sessions: helpdesk events carry only a userId
            if visitor not in last_seen or t - last_seen[visitor] >= SESSION_GAP_MS:
                r.sessions += 1
            last_seen[visitor] = t
        if msg["type"] == "identify":
            r.identified_visitors.add(visitor)
            r.customers[msg["userId"]] = msg["traits"]["consent_marketing"]
            continue
        event, props = msg.get("event"), msg.get("properties", {})
        if event not in CART_ACTIVITY and event not in CHECKOUT_ACTIVITY and event != "Order Completed":
            continue
        key = _cart_key(event, props, visitor, open_cart, checkout_cart, len(carts))
        cart = carts.get(key)
        if cart is None:
            if event != "Product Added":  # a cart is created by its first Product Added
                continue
            cart = carts[key] = _Cart(last_ms=t)
            r.carts += 1
        if cart.items > 0 and not cart.ordered and not cart.abandoned and t - cart.last_ms >= ABANDON_MS:
            cart.abandoned = True
        if event == "Order Completed":
            cart.ordered, cart.recovered = True, cart.abandoned
            if open_cart.get(visitor) == key:
                del open_cart[visitor]  # ordered: the next Product Added starts a new cart
            r.orders += 1
            r.revenue_cents += round(props.get("revenue", props["total"]) * 100)
            continue
        if event == "Checkout Started":
            checkout_cart[props["checkout_id"]] = key
        elif event == "Product Added":
            cart.items += props.get("quantity", 1)
        elif event == "Product Removed":
            cart.items -= props.get("quantity", 1)
        cart.last_ms = t
    for cart in carts.values():
        cart.abandoned = cart.abandoned or (cart.items > 0 and not cart.ordered)
        r.abandoned += cart.abandoned
        r.recovered += cart.recovered
    return r


def _cart_key(event, props, visitor, open_cart, checkout_cart, n) -> str:
    if event in CHECKOUT_ACTIVITY or (event == "Order Completed" and "cart_id" not in props):
        if props.get("checkout_id") in checkout_cart:
            return checkout_cart[props["checkout_id"]]
    if "cart_id" in props:
        return props["cart_id"]
    if visitor not in open_cart:
        open_cart[visitor] = f"{visitor}#{n}"
    return open_cart[visitor]
