"""Triggers about carts: ``cart_abandoned`` at the deadline and ``offer_cancelled`` on a later order.

Both build the trigger dicts of ``schemas/trigger.avsc`` with millisecond
field names (``event_time_ms``, ``emitted_at_ms``, ``offer.expires_at_ms``)
plus the internal ``cart_key``; ``pipeline.triggers`` turns them into the
contract record. Ids depend on the events only, never on the wall clock.
"""

from __future__ import annotations

from pipeline.detect.offers import decide_offer
from pipeline.detect.rules import Rules
from pipeline.detect.state import Cart, VisitorState
from pipeline.records import stable_id

__all__ = ["abandon", "cancel_offer"]


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
        "experiment": rules.experiment,
        "ref_trigger_id": None,
    }


def abandon(state: VisitorState, cart: Cart, rules: Rules, wall_ms: int) -> dict:
    """Mark ``cart`` abandoned at its deadline and return the ``cart_abandoned`` trigger.

    Runs once per cart (the deadline is then gone), when the watermark or
    one of the visitor's own events reaches the deadline.
    """
    deadline = cart.last_activity_ms + rules.abandon_after_ms
    trigger_id = stable_id("cart_abandoned", state.tenant, state.cart_key(cart), deadline)
    decision = decide_offer(
        rules,
        tenant=state.tenant,
        trigger_id=trigger_id,
        customer_id=state.user_id,
        anonymous_id=state.anonymous_id,
        consent=state.consent,
        last_offer_ms=state.last_offer_ms,
        event_time_ms=deadline,
    )
    cart.abandoned_ms = deadline
    if decision.offer is not None:
        state.last_offer_ms = deadline
        cart.offer_id, cart.offer_expires_ms = trigger_id, decision.offer["expires_at_ms"]
    return {
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
    }


def cancel_offer(
    state: VisitorState, cart: Cart, order_ms: int, session_id: str, rules: Rules, wall_ms: int
) -> dict | None:
    """On ``Order Completed`` for ``cart``: the ``offer_cancelled`` trigger, if an offer is live.

    Live means emitted and not expired at the order's event time. The offer
    is then spent: a second order never cancels it again.
    """
    ref_id = cart.offer_id
    if ref_id is None:
        return None
    cart.offer_id, expires_ms, cart.offer_expires_ms = None, cart.offer_expires_ms, 0
    if order_ms >= expires_ms:
        return None
    return {
        **_base(state, cart, rules),
        "trigger_id": stable_id("offer_cancelled", state.tenant, ref_id),
        "kind": "offer_cancelled",
        "session_id": session_id or None,
        "event_time_ms": order_ms,
        "emitted_at_ms": wall_ms,
        "reasons": ["order_completed"],
        "action": "none",
        "offer": None,
        "holdout": False,
        "ref_trigger_id": ref_id,
    }
