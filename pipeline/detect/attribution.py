"""Attribution: which orders recover an abandonment trigger, in both arms; pure.

Each ``cart_abandoned`` or ``checkout_friction`` trigger becomes the
visitor's pending attribution for its kind (a later trigger of the same
kind replaces an earlier one). Each kind is its own experiment, so the two
are attributed apart: an assist in checkout does not take the credit of
an abandonment offer sent before it. The visitor's next new order (a new
``order_id``) with event time in ``[trigger time, trigger time +
attribution_window_ms)`` recovers the pending trigger of each kind: one
``cx.recoveries`` row each, keyed by the trigger id, so a replay writes the
same row again and ClickHouse keeps one. An order recovers at most one
trigger per kind and a trigger is recovered at most once. Holdout triggers are attributed
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
    """Make ``trigger`` the visitor's pending attribution of its kind (other kinds are ignored)."""
    if trigger["kind"] not in ATTRIBUTED_KINDS:
        return
    offer = trigger.get("offer") or {}
    pending = Attribution(
        trigger_id=trigger["trigger_id"],
        kind=trigger["kind"],
        event_time_ms=trigger["event_time_ms"],
        holdout=bool(trigger["holdout"]),
        experiment=trigger["experiment"],
        action=trigger["action"],
        discount_pct=int(offer.get("discount_pct") or 0),
    )
    if pending.kind == "cart_abandoned":
        state.attribution = pending
    else:
        state.assist_attribution = pending


def recover(state: VisitorState, *, order_id: str, revenue: float, order_ms: int, rules: Rules) -> list[dict]:
    """A new order at ``order_ms``: the ``cx.recoveries`` rows of the pending triggers it recovers.

    An order older than a trigger leaves it pending (it was placed
    before); one at or past the window's end expires it.
    """
    rows = []
    for slot in ("attribution", "assist_attribution"):
        pending = getattr(state, slot)
        if pending is None or order_ms < pending.event_time_ms:
            continue
        setattr(state, slot, None)
        if order_ms - pending.event_time_ms < rules.attribution_window_ms:
            rows.append(_row(state, pending, order_id, revenue, order_ms))
    return rows


def _row(state: VisitorState, pending: Attribution, order_id: str, revenue: float, order_ms: int) -> dict:
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
