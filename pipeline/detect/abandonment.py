"""Triggers about carts: ``cart_abandoned`` at the deadline and ``offer_cancelled`` on a later order.

An order by the visitor cancels every live offer (or assist) of the
visitor, whichever cart it was made for: the customer bought.

Both build the trigger dicts of ``schemas/trigger.avsc`` with millisecond
field names (``event_time_ms``, ``emitted_at_ms``, ``offer.expires_at_ms``)
plus the internal ``cart_key``; ``pipeline.wire.triggers`` turns them into the
public record (docs/events.md). Ids depend on the events only, never on the wall clock.
"""

from __future__ import annotations

from pipeline.detect.attribution import remember_trigger
from pipeline.detect.offers import decide_for_state
from pipeline.detect.rules import Rules
from pipeline.detect.state import Cart, VisitorState
from pipeline.wire.records import stable_id

__all__ = ["abandon", "abandon_for_customer", "cancel_offers", "cancellation"]


def _base(state: VisitorState, cart: Cart, rules: Rules) -> dict:
    return {
        "tenant": state.tenant,
        "customer_id": state.user_id,
        "anonymous_id": state.anonymous_id,
        "cart_id": cart.cart_id,
        "cart_key": state.cart_key(cart),
        "cart_value": cart.value,
        "currency": cart.currency,
        "items": cart.trigger_items(),
        "friction_score": 0,
        "experiment": rules.experiment_for("cart_abandoned"),
        "ref_trigger_id": None,
    }


def abandon(state: VisitorState, cart: Cart, rules: Rules, wall_ms: int) -> dict:
    """Mark ``cart`` abandoned at its deadline and return the ``cart_abandoned`` trigger.

    Runs once per cart (the deadline is then gone), when the watermark or
    one of the visitor's own events reaches the deadline.
    """
    deadline = cart.last_activity_ms + rules.abandon_after_ms
    trigger_id = stable_id("cart_abandoned", state.tenant, state.cart_key(cart), deadline)
    decision = decide_for_state(
        rules,
        state,
        kind="cart_abandoned",
        trigger_id=trigger_id,
        cart_value=cart.value,
        since_ms=cart.last_activity_ms,
        event_time_ms=deadline,
    )
    cart.abandoned_ms = deadline
    if decision.contacts:
        cart.offer_id, cart.offer_expires_ms = trigger_id, deadline + rules.offer_valid_ms
    trigger = {
        **_base(state, cart, rules),
        "trigger_id": trigger_id,
        "kind": "cart_abandoned",
        "session_id": cart.session_id or None,
        "event_time_ms": deadline,
        "emitted_at_ms": wall_ms,
        "reasons": [rules.inactivity_reason],
        "action": decision.action,
        "offer": decision.offer,
        "holdout": decision.holdout,
        "experiment": decision.experiment,
    }
    remember_trigger(state, trigger)
    return trigger


def abandon_for_customer(state: VisitorState, cart: Cart, rules: Rules) -> tuple[dict, int]:
    """Mark ``cart`` abandoned and return its trigger without a decision, and the cart's last activity.

    For an identified visitor: the customer stage (``detect.customer``)
    decides the action with what it knows of the customer on every device.
    The draft also names the cart's checkouts (``checkouts``), so that an
    order sent from elsewhere for one of them is recognised.
    """
    deadline = cart.last_activity_ms + rules.abandon_after_ms
    cart.abandoned_ms = deadline
    draft = {
        **_base(state, cart, rules),
        "trigger_id": stable_id("cart_abandoned", state.tenant, state.cart_key(cart), deadline),
        "kind": "cart_abandoned",
        "session_id": cart.session_id or None,
        "event_time_ms": deadline,
        "reasons": [rules.inactivity_reason],
        "checkouts": [cid for cid, key in state.checkouts.items() if key == cart.local_key],
    }
    return draft, cart.last_activity_ms


def cancel_offers(state: VisitorState, order_ms: int, session_id: str, rules: Rules, wall_ms: int) -> list[dict]:
    """On any ``Order Completed`` of the visitor: ``offer_cancelled`` for each live offer or assist.

    Live means emitted and not expired at the order's event time. The offer
    is then spent: a second order never cancels it again.
    """
    out = []
    for cart in state.carts:
        ref_id = cart.offer_id
        if ref_id is None:
            continue
        cart.offer_id, expires_ms, cart.offer_expires_ms = None, cart.offer_expires_ms, 0
        if order_ms >= expires_ms:
            continue
        out.append(cancellation(_base(state, cart, rules), ref_id, order_ms, session_id, wall_ms))
    return out


def cancellation(base: dict, ref_id: str, order_ms: int, session_id: str | None, wall_ms: int) -> dict:
    """The ``offer_cancelled`` trigger of offer ``ref_id`` for an order at ``order_ms``.

    ``base`` holds the cart's trigger fields (tenant, ids, cart, experiment);
    the id depends on the cancelled trigger only, the same on any replay and
    from either stage.
    """
    return {
        **base,
        "trigger_id": stable_id("offer_cancelled", base["tenant"], ref_id),
        "kind": "offer_cancelled",
        "session_id": session_id or None,
        "event_time_ms": order_ms,
        "emitted_at_ms": wall_ms,
        "reasons": ["order_completed"],
        "action": "none",
        "offer": None,
        "holdout": False,
        "friction_score": 0,
        "ref_trigger_id": ref_id,
    }
