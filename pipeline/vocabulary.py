"""The event vocabulary: every event name of the catalog, the sets the detectors read, one way to read a value.

Pure, no imports from the rest of the project: the collector's catalog, the
detectors and the row builders all name events and read properties through
this module, so a name means one thing everywhere (docs/events.md lists the
catalog in words).

Reading a property never raises: the collector validated catalog events
(numeric ids arrive as text, amounts as numbers), and any other event's
properties are whatever the storefront sent.
"""

from __future__ import annotations

import math

__all__ = [
    "CARTS_OPEN_OR_CHANGE",
    "CHECKOUT_PROGRESS",
    "FRICTION_INPUTS",
    "IN_CHECKOUT",
    "LOYALTY_FRICTION",
    "LOYALTY_SUPPORT",
    "ORDER_CHANGES",
    "SUPPORT_EVENTS",
    "label",
    "number",
    "order_revenue",
    "text_or_none",
]

# Browsing and cart
PRODUCTS_SEARCHED = "Products Searched"
PRODUCT_LIST_VIEWED = "Product List Viewed"
PRODUCT_VIEWED = "Product Viewed"
PRODUCT_ADDED = "Product Added"
PRODUCT_REMOVED = "Product Removed"
CART_VIEWED = "Cart Viewed"
# Checkout
CHECKOUT_STARTED = "Checkout Started"
CHECKOUT_STEP_VIEWED = "Checkout Step Viewed"
CHECKOUT_STEP_COMPLETED = "Checkout Step Completed"
PAYMENT_INFO_ENTERED = "Payment Info Entered"
PAYMENT_FAILED = "Payment Failed"
COUPON_APPLIED = "Coupon Applied"
COUPON_DENIED = "Coupon Denied"
ORDER_COMPLETED = "Order Completed"
ORDER_REFUNDED = "Order Refunded"
ORDER_CANCELLED = "Order Cancelled"
# Friction signals sent by the storefront
ELEMENT_CLICKED = "Element Clicked"
ERROR_SHOWN = "Error Shown"
# Support
SUPPORT_TICKET_OPENED = "Support Ticket Opened"
SUPPORT_MESSAGE_SENT = "Support Message Sent"
SUPPORT_TICKET_RESOLVED = "Support Ticket Resolved"
SURVEY_ANSWERED = "Survey Answered"

# Events that open a cart or change what it holds (and Checkout Started, which names its checkout).
CARTS_OPEN_OR_CHANGE = frozenset({PRODUCT_ADDED, PRODUCT_REMOVED, CART_VIEWED, CHECKOUT_STARTED})
# Checkout steps after the start: they name a checkout and belong to the cart that started it.
CHECKOUT_PROGRESS = frozenset({CHECKOUT_STEP_VIEWED, CHECKOUT_STEP_COMPLETED, PAYMENT_INFO_ENTERED, PAYMENT_FAILED})
# Every event that happens inside a checkout (the friction detector's checkout signals and U-turns).
IN_CHECKOUT = frozenset({CHECKOUT_STARTED, COUPON_APPLIED, COUPON_DENIED}) | CHECKOUT_PROGRESS
# What the friction detector reads besides page views.
FRICTION_INPUTS = frozenset({ELEMENT_CLICKED, ERROR_SHOWN, PRODUCTS_SEARCHED, ORDER_COMPLETED}) | IN_CHECKOUT
# The friction that lowers a customer's loyalty score (docs/offers.md): failures the customer lived through.
LOYALTY_FRICTION = frozenset({PAYMENT_FAILED, COUPON_DENIED, ERROR_SHOWN})
# Every support event of the catalog.
SUPPORT_EVENTS = frozenset({SUPPORT_TICKET_OPENED, SUPPORT_MESSAGE_SENT, SUPPORT_TICKET_RESOLVED, SURVEY_ANSWERED})
# Support events that can be pain for the loyalty score (a message is not).
LOYALTY_SUPPORT = SUPPORT_EVENTS - {SUPPORT_MESSAGE_SENT}
# Events about an order after it was placed.
ORDER_CHANGES = frozenset({ORDER_REFUNDED, ORDER_CANCELLED})


def number(value: object) -> float | None:
    """A JSON number as a float; None for anything else (booleans, text, absent, NaN or infinite)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        f = float(value)
        return f if math.isfinite(f) else None
    return None


def label(value: object) -> str:
    """An id, name or other short label as text; '' when absent or not a scalar.

    Text as sent; an integral number as its digits (``1234`` and ``1234.0``
    both give ``"1234"``, as the catalog stores numeric ids); other numbers
    as Python writes them; booleans as ``true``/``false``.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    return ""


def text_or_none(value: object) -> str | None:
    """``label(value)``, with None for '' (an id that is absent or empty names nothing)."""
    return label(value) or None


def order_revenue(props: dict) -> float:
    """An ``Order Completed``'s revenue: ``revenue`` when it is a number, else ``total``, else 0.

    The one rule for every figure of revenue (kpi_daily, customer value,
    attribution); the catalog requires ``total`` and checks both are numbers.
    """
    revenue = number(props.get("revenue"))
    if revenue is None:
        revenue = number(props.get("total"))
    return revenue or 0.0
