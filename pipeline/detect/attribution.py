"""Attribution: which orders recover an abandonment trigger, in both arms; pure.

Each ``cart_abandoned`` or ``checkout_friction`` trigger becomes the
visitor's pending attribution (a later trigger replaces an earlier one).
The visitor's next new order (a new ``order_id``) with event time in
``[trigger time, trigger time + attribution_window_ms)`` recovers it: one
``cx.recoveries`` row, keyed by the trigger id, so a replay writes the same
row again and ClickHouse keeps one. An order recovers at most one trigger
and a trigger is recovered at most once. Holdout triggers are attributed
exactly like treated ones: uplift is the difference of the arms' recovery
rates (``cx.offers_daily``).

"Same customer" is the same visitor state (see ``customers``): an order
placed on another device is not attributed.
"""

from __future__ import annotations

from pipeline.detect.rules import Rules
from pipeline.detect.state import Attribution, VisitorState

__all__ = ["ATTRIBUTED_KINDS", "RECOVERIES_TABLE", "recover", "remember_trigger"]

RECOVERIES_TABLE = "cx.recoveries"
ATTRIBUTED_KINDS = frozenset({"cart_abandoned", "checkout_friction"})


def remember_trigger(state: VisitorState, trigger: dict) -> None:
    """Make ``trigger`` the visitor's pending attribution (other kinds are ignored)."""
    if trigger["kind"] not in ATTRIBUTED_KINDS:
        return
    offer = trigger.get("offer") or {}
    state.attribution = Attribution(
        trigger_id=trigger["trigger_id"],
        kind=trigger["kind"],
        event_time_ms=trigger["event_time_ms"],
        holdout=bool(trigger["holdout"]),
        experiment=trigger["experiment"],
        action=trigger["action"],
        discount_pct=int(offer.get("discount_pct") or 0),
    )


def recover(state: VisitorState, *, order_id: str, revenue: float, order_ms: int, rules: Rules) -> dict | None:
    """A new order at ``order_ms``: the ``cx.recoveries`` row if it recovers the pending trigger.

    An order older than the trigger leaves it pending (it was placed
    before); one at or past the window's end expires it.
    """
    pending = state.attribution
    if pending is None or order_ms < pending.event_time_ms:
        return None
    state.attribution = None
    if order_ms - pending.event_time_ms >= rules.attribution_window_ms:
        return None
    return {
        "tenant": state.tenant,
        "trigger_id": pending.trigger_id,
        "kind": pending.kind,
        "trigger_time_ms": pending.event_time_ms,
        "order_time_ms": order_ms,
        "customer_id": state.user_id or "",
        "anonymous_id": state.anonymous_id or "",
        "order_id": order_id,
        "revenue": revenue,
        "holdout": pending.holdout,
        "experiment": pending.experiment,
        "action": pending.action,
        "discount_pct": pending.discount_pct,
    }
