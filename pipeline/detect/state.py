"""Per-visitor state and its compact serialized form (orjson, short keys).

One ``VisitorState`` per visitor key lives in the worker's table. It holds
what detection needs and nothing more: the last Kafka offset applied (for
replay after a crash), recent event ids, the current session, identity and
consent, the visitor's carts with a checkout -> cart map, the current
session's friction memory, support tickets with the time of the latest
order, what the visitor is worth as a customer (``CustomerValue``) and the
abandonment trigger an order may still recover (``Attribution``). Defaults are
left out of the serialized form; a typical active session with a 3-item cart
serializes to well under 2 KB (``tests/detect/test_state.py`` measures it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from pipeline.detect.dedup import pack_hashes, unpack_hashes
from pipeline.detect.friction_state import FrictionState, decode_friction, encode_friction
from pipeline.detect.tickets import Ticket, decode_ticket, encode_ticket

__all__ = ["Attribution", "Cart", "CustomerValue", "VisitorState", "encode_state", "decode_state"]


@dataclass(slots=True, eq=False)  # carts are compared by identity
class Cart:
    """One cart. ``local_key`` is ``/<cart_id>`` for carts sent with an id, ``#<n>`` for open carts."""

    local_key: str
    cart_id: str | None = None
    items: dict[str, list] = field(default_factory=dict)  # product_id -> [name, price, quantity]
    currency: str | None = None
    last_activity_ms: int = 0
    session_id: str = ""  # session of the last activity (latest in event time)
    abandoned_ms: int | None = None  # the deadline at which it was abandoned
    ordered_ms: int | None = None
    offer_id: str | None = None  # trigger id of an offer not yet cancelled
    offer_expires_ms: int = 0

    @property
    def value(self) -> float:
        # Rounded so that float noise (0.1 + 0.2) does not reach consumers.
        return round(sum(price * qty for _, price, qty in self.items.values()), 4)

    def deadline(self, abandon_after_ms: int) -> int | None:
        """When this cart is abandoned if nothing happens, or None if it cannot be."""
        if self.ordered_ms is not None or self.abandoned_ms is not None or not self.items:
            return None
        return self.last_activity_ms + abandon_after_ms

    def trigger_items(self) -> list[dict]:
        return [
            {"product_id": pid, "name": name, "price": price, "quantity": qty}
            for pid, (name, price, qty) in self.items.items()
        ]


@dataclass(slots=True)
class CustomerValue:
    """What this visitor state knows of the customer's value and experience.

    Orders count once per ``order_id`` (the last few ids are remembered);
    the friction and support lists hold the event times of the most recent
    painful moments only, as many as the loyalty score can use.
    """

    orders: int = 0
    revenue: float = 0.0
    first_order_ms: int | None = None
    last_order_ms: int | None = None
    order_ids: list[int] = field(default_factory=list)  # hashes of the last order ids
    friction_ms: list[int] = field(default_factory=list)
    support_ms: list[int] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.orders or self.order_ids or self.friction_ms or self.support_ms)


@dataclass(slots=True)
class Attribution:
    """The visitor's latest abandonment trigger that a later order may recover."""

    trigger_id: str
    kind: str
    event_time_ms: int
    holdout: bool
    experiment: str
    action: str
    discount_pct: int


@dataclass(slots=True)
class VisitorState:
    """Everything remembered about one visitor (one ``records.visitor_key``)."""

    tenant: str
    anonymous_id: str | None
    user_id: str | None = None
    last_offset: int = -1  # offset of the last Kafka record whose events were applied
    # Partition of that record (-1: not known, as in states written before it was kept). An offset
    # only orders records of one partition: a record of another partition is never taken for a replay.
    last_partition: int = -1
    consent: bool | None = None  # consent_marketing from the latest identify
    last_offer_ms: int | None = None
    session_id: str = ""
    session_start_ms: int = 0
    max_event_ms: int | None = None
    recent_ids: list[int] = field(default_factory=list)
    carts: list[Cart] = field(default_factory=list)
    open_cart: str | None = None  # local key of the open cart (events without cart_id)
    carts_opened: int = 0
    checkouts: dict[str, str] = field(default_factory=dict)  # checkout_id -> cart local key, oldest first
    friction: FrictionState | None = None  # the current session's friction memory, once it had a relevant event
    tickets: list[Ticket] = field(default_factory=list)  # support tickets (helpdesk events), see detect.support
    last_order_ms: int | None = None  # event time of the latest Order Completed
    value: CustomerValue = field(default_factory=CustomerValue)
    attribution: Attribution | None = None  # the pending cart_abandoned trigger
    assist_attribution: Attribution | None = None  # the pending checkout_friction trigger

    @property
    def visitor_id(self) -> str:
        # Same precedence as records.visitor_key: the anonymous id wins.
        return self.anonymous_id or self.user_id or ""

    def cart_key(self, cart: Cart) -> str:
        return self.visitor_id + cart.local_key

    def find_cart(self, local_key: str | None) -> Cart | None:
        if local_key is None:
            return None
        for cart in self.carts:
            if cart.local_key == local_key:
                return cart
        return None

    def next_deadline(self, abandon_after_ms: int) -> int | None:
        """The earliest pending abandonment deadline among the visitor's carts."""
        if not self.carts:
            return None  # most visitors (runs after every applied event)
        deadlines = [d for c in self.carts if (d := c.deadline(abandon_after_ms)) is not None]
        return min(deadlines) if deadlines else None


def _encode_cart(c: Cart) -> dict:
    out: dict = {"la": c.last_activity_ms}
    if c.cart_id is not None:
        out["i"] = c.cart_id  # the local key is "/" + cart_id: not stored twice
    else:
        out["k"] = c.local_key
    if c.items:
        out["it"] = [[pid, *item] for pid, item in c.items.items()]
    for key, value in (("cu", c.currency), ("ab", c.abandoned_ms), ("od", c.ordered_ms), ("of", c.offer_id)):
        if value is not None:
            out[key] = value
    if c.session_id:
        out["s"] = c.session_id
    if c.offer_id is not None:
        out["ox"] = c.offer_expires_ms
    return out


def _decode_cart(d: dict) -> Cart:
    return Cart(
        local_key=d["k"] if "i" not in d else "/" + d["i"],
        cart_id=d.get("i"),
        items={pid: [name, price, qty] for pid, name, price, qty in d.get("it", ())},
        currency=d.get("cu"),
        last_activity_ms=d["la"],
        session_id=d.get("s", ""),
        abandoned_ms=d.get("ab"),
        ordered_ms=d.get("od"),
        offer_id=d.get("of"),
        offer_expires_ms=d.get("ox", 0),
    )


def encode_state(s: VisitorState) -> bytes:
    """Serialize for the worker's table (runs at ``drain()`` for changed visitors)."""
    out: dict = {"t": s.tenant, "o": s.last_offset}
    if s.last_partition != -1:
        out["op"] = s.last_partition
    optional = (
        ("a", s.anonymous_id),
        ("u", s.user_id),
        ("c", s.consent),
        ("lo", s.last_offer_ms),
        ("me", s.max_event_ms),
        ("oc", s.open_cart),
    )
    for key, value in optional:
        if value is not None:
            out[key] = value
    if s.session_id:
        out["s"] = s.session_id
        out["ss"] = s.session_start_ms
    if s.recent_ids:
        out["d"] = pack_hashes(s.recent_ids)
    if s.carts:
        out["k"] = [_encode_cart(c) for c in s.carts]
    if s.carts_opened:
        out["n"] = s.carts_opened
    if s.checkouts:
        out["x"] = list(s.checkouts.items())
    if s.friction is not None:
        out["f"] = encode_friction(s.friction)
    if s.tickets:
        out["tk"] = [encode_ticket(t) for t in s.tickets]
    if s.last_order_ms is not None:
        out["om"] = s.last_order_ms
    v = s.value
    if not v.is_empty():
        out["v"] = [
            v.orders, v.revenue, v.first_order_ms, v.last_order_ms,
            pack_hashes(v.order_ids), v.friction_ms, v.support_ms,
        ]  # fmt: skip
    a = s.attribution
    if a is not None:
        out["at"] = [a.trigger_id, a.kind, a.event_time_ms, a.holdout, a.experiment, a.action, a.discount_pct]
    a = s.assist_attribution
    if a is not None:
        out["aa"] = [a.trigger_id, a.kind, a.event_time_ms, a.holdout, a.experiment, a.action, a.discount_pct]
    return orjson.dumps(out)


def decode_state(data: bytes) -> VisitorState:
    """Inverse of ``encode_state``; raises ``orjson.JSONDecodeError``/``KeyError`` on foreign bytes."""
    d = orjson.loads(data)
    return VisitorState(
        tenant=d["t"],
        anonymous_id=d.get("a"),
        user_id=d.get("u"),
        last_offset=d["o"],
        last_partition=d.get("op", -1),
        consent=d.get("c"),
        last_offer_ms=d.get("lo"),
        session_id=d.get("s", ""),
        session_start_ms=d.get("ss", 0),
        max_event_ms=d.get("me"),
        recent_ids=unpack_hashes(d["d"]) if "d" in d else [],
        carts=[_decode_cart(c) for c in d.get("k", ())],
        open_cart=d.get("oc"),
        carts_opened=d.get("n", 0),
        checkouts=dict(d.get("x", ())),
        friction=decode_friction(d["f"]) if "f" in d else None,
        tickets=[decode_ticket(t) for t in d.get("tk", ())],
        last_order_ms=d.get("om"),
        value=_decode_value(d["v"]) if "v" in d else CustomerValue(),
        attribution=Attribution(*d["at"]) if "at" in d else None,
        assist_attribution=Attribution(*d["aa"]) if "aa" in d else None,
    )


def _decode_value(v: list) -> CustomerValue:
    orders, revenue, first_ms, last_ms, order_ids, friction_ms, support_ms = v
    return CustomerValue(orders, revenue, first_ms, last_ms, unpack_hashes(order_ids), friction_ms, support_ms)
