"""Customer value in the stream: orders, revenue, painful moments, and the loyalty score; pure.

The score is what the offer decision reads to tell a loyal buyer, who
usually completes on their own (``assist``: help, no discount), from a
customer a discount may win back. It is computed from the visitor's state
at a moment ``now_ms`` in event time, so a replay gives the same score:

    recency    0..20  20 when the last order is at most 30 days old, falling
                      linearly to 0 at 180 days; 0 without an order
    frequency  0..50  12.5 per order, up to 4 orders
    monetary   0..30  30 x min(revenue / loyalty_full_revenue, 1)
    friction   -5 per friction event in the last 30 days (Payment Failed,
                      Coupon Denied, Error Shown), at most -20
    support   -10 per support pain in the last 30 days (a ticket opened, a
                      ticket reopened, a survey answer NPS <= 6, CSAT <= 2 or
                      CES >= 5), at most -30
    score = recency + frequency + monetary - friction - support, rounded
            half up and clamped to 0..100

Frequency weighs most: "usually completes on their own" takes several
orders, so one order, however large, scores at most 62.5 and stays below
the default assist threshold of 70.

What the score can know: the customer stage (``detect.customer``) keeps
one ``CustomerValue`` per customer over every device and the backend, and
decides with it; what a device lived through before it was identified it
sends there (its painful moments) on its first identification. The ``customers`` view counts
orders and lifetime value exactly from ``cx.events``.
"""

from __future__ import annotations

from pipeline.detect.dedup import event_hash
from pipeline.detect.rules import DAY_MS, Rules
from pipeline.detect.state import CustomerValue
from pipeline.vocabulary import (
    LOYALTY_FRICTION, LOYALTY_SUPPORT, SUPPORT_TICKET_OPENED, SUPPORT_TICKET_RESOLVED, number,
)  # fmt: skip

__all__ = [
    "SCORES_TABLE",
    "loyalty_score",
    "note_experience",
    "note_order",
    "score_fact",
]

SCORES_TABLE = "cx.customer_scores"
RECENT_MS = 30 * DAY_MS
FULL_RECENCY_DAYS, ZERO_RECENCY_DAYS = 30, 180
FRICTION_POINTS, FRICTION_KEPT = 5, 4  # at most -20
SUPPORT_POINTS, SUPPORT_KEPT = 10, 3  # at most -30
ORDER_IDS_KEPT = 8


def _keep_recent(times: list[int], t_ms: int, kept: int) -> None:
    times.append(t_ms)
    times.sort()
    del times[:-kept]


def note_order(value: CustomerValue, order_id: str, revenue: float, t_ms: int) -> bool:
    """Count an ``Order Completed``; False when this order id was counted already (a resend)."""
    h = event_hash(order_id)
    if h in value.order_ids:
        return False
    value.order_ids.append(h)
    del value.order_ids[:-ORDER_IDS_KEPT]
    value.orders += 1
    value.revenue = round(value.revenue + revenue, 4)
    value.first_order_ms = t_ms if value.first_order_ms is None else min(value.first_order_ms, t_ms)
    value.last_order_ms = t_ms if value.last_order_ms is None else max(value.last_order_ms, t_ms)
    return True


def _support_pain(name: str, props: dict) -> bool:
    if name == SUPPORT_TICKET_OPENED:
        return True
    if name == SUPPORT_TICKET_RESOLVED:
        return props.get("reopened") is True
    score = number(props.get("score"))
    if score is None:
        return False
    survey = props.get("survey")
    return (survey == "nps" and score <= 6) or (survey == "csat" and score <= 2) or (survey == "ces" and score >= 5)


def note_experience(value: CustomerValue, name: str, props: dict, t_ms: int) -> bool:
    """Remember a friction or support pain at ``t_ms``; True if the event was one."""
    if name in LOYALTY_FRICTION:
        _keep_recent(value.friction_ms, t_ms, FRICTION_KEPT)
        return True
    if name in LOYALTY_SUPPORT and _support_pain(name, props):
        _keep_recent(value.support_ms, t_ms, SUPPORT_KEPT)
        return True
    return False


def _recent(times: list[int], now_ms: int) -> int:
    return sum(1 for t in times if now_ms - RECENT_MS < t <= now_ms)


def loyalty_score(value: CustomerValue, now_ms: int, rules: Rules) -> int:
    """The 0-100 loyalty score at event time ``now_ms`` (formula in the module docstring)."""
    recency = 0.0
    if value.last_order_ms is not None:
        days = max(0, now_ms - value.last_order_ms) / DAY_MS
        span = ZERO_RECENCY_DAYS - FULL_RECENCY_DAYS
        recency = 20 * min(1.0, max(0.0, (ZERO_RECENCY_DAYS - days) / span))
    frequency = 12.5 * min(value.orders, 4)
    monetary = 30 * min(value.revenue / rules.loyalty_full_revenue, 1.0)
    friction = FRICTION_POINTS * _recent(value.friction_ms, now_ms)
    support = SUPPORT_POINTS * _recent(value.support_ms, now_ms)
    raw = recency + frequency + monetary - friction - support
    return max(0, min(100, int(raw + 0.5)))


def score_fact(tenant: str, customer_id: str, visitor_id: str, value: CustomerValue, now_ms: int, rules: Rules) -> dict:
    """A ``cx.customer_scores`` row from what is known of the customer's value at ``now_ms``."""
    return {
        "tenant": tenant,
        "customer_id": customer_id,
        "visitor_id": visitor_id,
        "scored_at_ms": now_ms,
        "loyalty_score": loyalty_score(value, now_ms, rules),
        "orders": value.orders,
        "revenue": value.revenue,
    }
