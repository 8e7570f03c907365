"""The event catalog (docs/events.md) as data, and the property checks.

Pure: no I/O. ``check_properties`` runs once per catalog event in the
collector's request handler; it returns the properties to store (numeric
ids turned into strings, ``quantity`` defaulted) or raises ``PropertyError``
with the dead-letter reason and a detail naming the property.

Track events whose names are not here are valid and stored unchecked; the
detectors ignore them.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from pipeline.vocabulary import (
    CART_VIEWED, CHECKOUT_STARTED, CHECKOUT_STEP_COMPLETED, CHECKOUT_STEP_VIEWED, COUPON_APPLIED, COUPON_DENIED,
    ELEMENT_CLICKED, ERROR_SHOWN, ORDER_CANCELLED, ORDER_COMPLETED, ORDER_REFUNDED, PAYMENT_FAILED,
    PAYMENT_INFO_ENTERED, PRODUCTS_SEARCHED, PRODUCT_ADDED, PRODUCT_LIST_VIEWED, PRODUCT_REMOVED,
    PRODUCT_VIEWED, SUPPORT_MESSAGE_SENT, SUPPORT_TICKET_OPENED, SUPPORT_TICKET_RESOLVED, SURVEY_ANSWERED,
)  # fmt: skip

__all__ = [
    "CATALOG",
    "IDENTIFY_TRAITS",
    "MAX_AMOUNT",
    "PAGE",
    "SURVEY_SCALES",
    "EventSpec",
    "Prop",
    "PropKind",
    "PropertyError",
    "SLUG",
    "check_properties",
]

PropKind = Literal["string", "number", "int", "bool", "list", "id"]

# Money amounts above this are typos or attacks (a price in cents sent as
# units times 100 twice), not orders; they would distort revenue KPIs.
MAX_AMOUNT = 1e9

SURVEY_SCALES: Mapping[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}


class PropertyError(ValueError):
    """A catalog property is missing or wrong; ``reason`` is a ``DeadLetterReason``."""

    def __init__(self, reason: Literal["missing_property", "wrong_type"], detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Prop:
    """One known property: its kind, and optionally allowed values, a pattern or a numeric range.

    Kind ``id`` accepts a string or a number and stores a string (numeric
    product ids are common); ``int`` accepts an integral float (``2.0``,
    which some JSON encoders write) and stores an int. A string with
    ``choices`` or a ``pattern`` is stripped and lower-cased first, then must
    be one of the choices or match the whole pattern.
    """

    kind: PropKind
    required: bool = False
    choices: frozenset[str] | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True)
class EventSpec:
    """The known properties of one event, defaults for absent ones, and a cross-property check."""

    props: Mapping[str, Prop]
    defaults: Mapping[str, object] = field(default_factory=dict)
    check: Callable[[dict], None] | None = None
    required: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "required", tuple(k for k, p in self.props.items() if p.required))


def _req(prop: Prop) -> Prop:
    return dataclasses.replace(prop, required=True)


def _one_of(*values: str) -> Prop:
    return Prop("string", choices=frozenset(values))


STR = Prop("string")
ID = Prop("id")
NUM = Prop("number")
BOOL = Prop("bool")
LIST = Prop("list")
MONEY = Prop("number", minimum=0, maximum=MAX_AMOUNT)
QUANTITY = Prop("int", minimum=1, maximum=MAX_AMOUNT)
COUNT = Prop("int", minimum=0)
# A category slug, not free text: lower-case letters, digits, "_" and "-", at
# most 40 (empty = none). Support topics are stored in the clear.
SLUG = Prop("string", pattern=re.compile(r"[a-z0-9_-]{0,40}"))


def _check_survey(props: dict) -> None:
    low, high = SURVEY_SCALES[props["survey"]]
    score = props["score"]
    if not low <= score <= high:
        raise PropertyError("wrong_type", f"score outside the {props['survey']} scale {low}-{high}")


_STEP = {"checkout_id": ID, "step": _req(COUNT), "shipping_method": STR, "payment_method": STR}
_COUPON = {"coupon_id": ID, "reason": STR}
_REFUND = {"order_id": _req(ID), "total": MONEY}

CATALOG: Mapping[str, EventSpec] = {
    # Browsing and cart
    PRODUCTS_SEARCHED: EventSpec({"query": _req(STR), "results_count": COUNT}),
    PRODUCT_LIST_VIEWED: EventSpec({"list_id": ID, "category": STR, "products": LIST}),
    PRODUCT_VIEWED: EventSpec(
        {"product_id": _req(ID), "sku": STR, "name": STR, "category": STR, "price": MONEY, "currency": STR}
    ),
    PRODUCT_ADDED: EventSpec(
        {
            "product_id": _req(ID),
            "cart_id": ID,
            "sku": STR,
            "name": STR,
            "price": _req(MONEY),
            "quantity": QUANTITY,
            "currency": STR,
        },
        defaults={"quantity": 1},
    ),
    # Without a quantity the product leaves the cart entirely: no default here.
    PRODUCT_REMOVED: EventSpec({"product_id": _req(ID), "cart_id": ID, "quantity": QUANTITY}),
    CART_VIEWED: EventSpec({"cart_id": ID, "products": LIST}),
    # Checkout
    CHECKOUT_STARTED: EventSpec(
        {"checkout_id": ID, "cart_id": ID, "value": MONEY, "currency": STR, "products": LIST}
    ),
    CHECKOUT_STEP_VIEWED: EventSpec(_STEP),
    CHECKOUT_STEP_COMPLETED: EventSpec(_STEP),
    PAYMENT_INFO_ENTERED: EventSpec({"checkout_id": ID, "payment_method": STR}),
    PAYMENT_FAILED: EventSpec({"checkout_id": ID, "payment_method": STR, "reason": STR}),
    COUPON_APPLIED: EventSpec(_COUPON),
    COUPON_DENIED: EventSpec(_COUPON),
    ORDER_COMPLETED: EventSpec(
        {
            "order_id": _req(ID),
            "checkout_id": ID,
            "cart_id": ID,
            "total": _req(MONEY),
            "revenue": MONEY,
            "shipping": MONEY,
            "tax": MONEY,
            "discount": MONEY,
            "coupon": STR,
            "currency": STR,
            "products": LIST,
        }
    ),
    ORDER_REFUNDED: EventSpec(_REFUND),
    ORDER_CANCELLED: EventSpec(_REFUND),
    # Friction signals
    ELEMENT_CLICKED: EventSpec(
        {"selector": _req(STR), "x": NUM, "y": NUM, "interactive": BOOL, "responded": BOOL}
    ),
    ERROR_SHOWN: EventSpec(
        {
            "kind": _req(_one_of("validation", "payment", "server", "client")),
            "message": STR,
            "selector": STR,
            "code": ID,
        }
    ),
    # Support
    SUPPORT_TICKET_OPENED: EventSpec(
        {
            "ticket_id": _req(ID),
            "channel": _req(_one_of("chat", "email", "phone", "social")),
            "topic": SLUG,
            "order_id": ID,
        }
    ),
    SUPPORT_MESSAGE_SENT: EventSpec(
        {"ticket_id": _req(ID), "author": _req(_one_of("customer", "agent")), "text": STR}
    ),
    SUPPORT_TICKET_RESOLVED: EventSpec({"ticket_id": _req(ID), "reopened": BOOL}),
    SURVEY_ANSWERED: EventSpec(
        {
            "survey": _req(_one_of(*SURVEY_SCALES)),
            "score": _req(NUM),
            "ticket_id": ID,
            "order_id": ID,
            "comment": STR,
        },
        check=_check_survey,
    ),
}

# page calls (type ``page``), checked like a catalog event.
PAGE = EventSpec({"path": STR, "url": STR, "referrer": STR, "title": STR, "load_time_ms": Prop("number", minimum=0)})

# identify traits the pipeline reads (offer eligibility needs a real bool).
IDENTIFY_TRAITS = EventSpec({"email": STR, "consent_marketing": BOOL})


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _coerce(name: str, prop: Prop, value: object) -> object:
    """``value`` as stored, or PropertyError(wrong_type) naming the property."""
    kind = prop.kind
    if kind == "string":
        if not isinstance(value, str):
            raise PropertyError("wrong_type", f"{name} must be a string, got {type(value).__name__}")
        if prop.choices is not None or prop.pattern is not None:
            # Helpdesk integrations differ in case ("Email"); the catalog values are lower case.
            value = value.strip().lower()
        if prop.choices is not None and value not in prop.choices:
            raise PropertyError("wrong_type", f"{name} must be one of {sorted(prop.choices)}, got another value")
        if prop.pattern is not None and prop.pattern.fullmatch(value) is None:
            # The detail names the rule, not the value: a free-text topic may hold personal data.
            raise PropertyError(
                "wrong_type", f"{name} must be a slug (a-z, 0-9, _ and -, at most 40), got {len(value)} characters"
            )
        return value
    if kind == "id":
        if isinstance(value, str):
            return value
        if _is_number(value) and math.isfinite(value):
            return str(int(value)) if float(value).is_integer() else str(value)
        raise PropertyError("wrong_type", f"{name} must be a string or a number, got {type(value).__name__}")
    if kind == "bool":
        if not isinstance(value, bool):
            raise PropertyError("wrong_type", f"{name} must be a boolean, got {type(value).__name__}")
        return value
    if kind == "list":
        if not isinstance(value, list):
            raise PropertyError("wrong_type", f"{name} must be a list, got {type(value).__name__}")
        return value
    # number or int
    if not _is_number(value):
        raise PropertyError("wrong_type", f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise PropertyError("wrong_type", f"{name} must be finite")
    if kind == "int":
        if not float(value).is_integer():
            raise PropertyError("wrong_type", f"{name} must be an integer, got a fraction")
        value = int(value)
    if prop.minimum is not None and value < prop.minimum:
        raise PropertyError("wrong_type", f"{name} must be >= {prop.minimum:g}")
    if prop.maximum is not None and value > prop.maximum:
        raise PropertyError("wrong_type", f"{name} must be <= {prop.maximum:g}")
    return value


def check_properties(spec: EventSpec, props: dict) -> dict:
    """Validate ``props`` against ``spec``; return the properties to store.

    Returns ``props`` itself when nothing changes, else a new dict (the
    caller's dict is never mutated). A required property that is absent,
    null or an empty string raises PropertyError("missing_property"); an
    optional null is kept as null. Unknown properties are kept unchecked.
    """
    for name in spec.required:
        value = props.get(name)
        if value is None or value == "":
            raise PropertyError("missing_property", f"{name} is required")
    out = props
    for name, prop in spec.props.items():
        value = props.get(name)
        if value is None:
            continue
        stored = _coerce(name, prop, value)
        if stored is not value:
            if out is props:
                out = dict(props)
            out[name] = stored
    for name, default in spec.defaults.items():
        if out.get(name) is None:
            if out is props:
                out = dict(props)
            out[name] = default
    if spec.check is not None:
        spec.check(out)
    return out
