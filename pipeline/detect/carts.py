"""Carts (docs/detection.md): which cart an event is about, and what it does to it.

- A cart is identified by ``cart_id`` when sent, else it is the visitor's one
  open cart; it is created by its first ``Product Added`` (other activity on
  a cart that does not exist changes nothing). After the open cart is
  ordered, the next ``Product Added`` without ``cart_id`` opens a new one.
- Checkout events belong to the cart their checkout's ``Checkout Started``
  named (``checkout_id`` -> cart); ``Order Completed`` finds its cart by
  ``cart_id``, else by ``checkout_id``, else the open cart, and closes it.
- An ordered cart is closed: later activity on it changes nothing.
- Carts that need nothing any more (ordered, or abandoned with no live
  offer, or emptied and idle) are forgotten ``closed_cart_retention_ms``
  after their last event, so a visitor's state stays bounded.
"""

from __future__ import annotations

from pipeline.detect.rules import Rules
from pipeline.detect.state import Cart, VisitorState
from pipeline.vocabulary import (
    CHECKOUT_PROGRESS, CHECKOUT_STARTED, ORDER_COMPLETED, PRODUCT_ADDED, PRODUCT_REMOVED, number, text_or_none,
)  # fmt: skip

__all__ = [
    "resolve_cart",
    "apply_activity",
    "close_for_order",
    "forget_stale",
]


def resolve_cart(state: VisitorState, name: str, props: dict, rules: Rules) -> Cart | None:
    """The cart an event about carts or checkouts belongs to; None if there is none.

    Creates the cart for a ``Product Added`` that names no existing cart.
    """
    cart_id = text_or_none(props.get("cart_id"))
    checkout_cart = state.find_cart(state.checkouts.get(text_or_none(props.get("checkout_id")) or ""))
    if name in CHECKOUT_PROGRESS and checkout_cart is not None:
        return checkout_cart
    if cart_id is not None:
        cart = state.find_cart("/" + cart_id)
    elif name == ORDER_COMPLETED and checkout_cart is not None:
        return checkout_cart
    else:
        cart = state.find_cart(state.open_cart)
    if cart is None and name == PRODUCT_ADDED:
        cart = _open(state, cart_id, rules)
    return cart


def _open(state: VisitorState, cart_id: str | None, rules: Rules) -> Cart:
    if len(state.carts) >= rules.max_carts:
        _evict_one(state, rules)
    if cart_id is not None:
        cart = Cart(local_key="/" + cart_id, cart_id=cart_id)
    else:
        state.carts_opened += 1
        cart = Cart(local_key=f"#{state.carts_opened}")
        state.open_cart = cart.local_key
    state.carts.append(cart)
    return cart


def apply_activity(
    state: VisitorState, cart: Cart, name: str, props: dict, t_ms: int, session_id: str, rules: Rules
) -> None:
    """Cart or checkout activity at event time ``t_ms``: items, currency, last activity."""
    if cart.ordered_ms is not None:
        return
    if t_ms >= cart.last_activity_ms:
        # max, not last: an out-of-order earlier event must not pull the deadline back
        cart.last_activity_ms, cart.session_id = t_ms, session_id
    currency = text_or_none(props.get("currency"))
    if currency is not None:
        cart.currency = currency
    if name == PRODUCT_ADDED:
        _add(cart, props)
    elif name == PRODUCT_REMOVED:
        _remove(cart, props)
    elif name == CHECKOUT_STARTED:
        checkout_id = text_or_none(props.get("checkout_id"))
        if checkout_id is not None:
            state.checkouts.pop(checkout_id, None)
            state.checkouts[checkout_id] = cart.local_key
            while len(state.checkouts) > rules.max_checkouts:
                del state.checkouts[next(iter(state.checkouts))]


def _add(cart: Cart, props: dict) -> None:
    pid = text_or_none(props.get("product_id"))
    if pid is None:
        return
    qty = number(props.get("quantity"))
    qty = 1 if qty is None else int(qty)
    name, price, held = cart.items.get(pid, (None, 0.0, 0))
    new_price = number(props.get("price"))
    item = [text_or_none(props.get("name")) or name, price if new_price is None else new_price, held + qty]
    if item[2] > 0:
        cart.items[pid] = item
    else:
        cart.items.pop(pid, None)


def _remove(cart: Cart, props: dict) -> None:
    pid = text_or_none(props.get("product_id"))
    if pid is None or pid not in cart.items:
        return
    qty = number(props.get("quantity"))
    item = cart.items[pid]
    # Without a quantity the product leaves the cart entirely.
    remaining = 0 if qty is None else item[2] - int(qty)
    if remaining > 0:
        item[2] = remaining
    else:
        del cart.items[pid]


def close_for_order(state: VisitorState, cart: Cart, t_ms: int) -> None:
    """``Order Completed`` for ``cart`` at ``t_ms``: the cart is closed (ordered)."""
    if cart.ordered_ms is None:
        cart.ordered_ms = t_ms
    if state.open_cart == cart.local_key:
        state.open_cart = None


def _needs_nothing(cart: Cart, now_ms: int, rules: Rules) -> bool:
    if cart.deadline(rules.abandon_after_ms) is not None:
        return False  # still able to be abandoned: must be remembered until it fires
    if cart.offer_id is not None and now_ms < cart.offer_expires_ms:
        return False  # an order may still cancel its offer
    last_ms = max(cart.last_activity_ms, cart.ordered_ms or 0, cart.abandoned_ms or 0)
    return now_ms - last_ms >= rules.closed_cart_retention_ms


def _drop(state: VisitorState, cart: Cart) -> None:
    state.carts.remove(cart)
    if state.open_cart == cart.local_key:
        state.open_cart = None
    for checkout_id in [k for k, v in state.checkouts.items() if v == cart.local_key]:
        del state.checkouts[checkout_id]


def forget_stale(state: VisitorState, now_ms: int, rules: Rules) -> None:
    """Forget carts that need nothing any more; runs after each applied event."""
    if not state.carts:
        return  # most visitors: nothing to scan (this runs for every event)
    for cart in [c for c in state.carts if _needs_nothing(c, now_ms, rules)]:
        _drop(state, cart)


def _evict_one(state: VisitorState, rules: Rules) -> None:
    # A visitor at max_carts (a bot, or a storefront minting cart ids) loses
    # its least recently active cart, preferring one that needs nothing any
    # more, then one holding an offer that an order could still cancel
    # (until it expires or an order spends it), and only then one that can
    # still be abandoned.
    def need(cart: Cart) -> int:
        if cart.deadline(rules.abandon_after_ms) is not None:
            return 2
        return 1 if cart.offer_id is not None else 0

    _drop(state, min(state.carts, key=lambda c: (need(c), c.last_activity_ms)))
