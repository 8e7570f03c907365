"""Offer decision for a trigger (guardrails of docs/offers.md); pure, for any trigger kind.

In this order:

1. Holdout: a stable hash of (tenant, experiment, customer id or anonymous
   id) into 10,000 buckets; buckets below ``holdout pct x 100`` are held
   out (``action: none``). Every trigger gets its arm, eligible or not
   (intention to treat), so both arms hold the same mix of customers and
   uplift is measured without bias. The experiment is the kind's
   (``Rules.experiment_for``) and its share ``Rules.holdout_pct_for``.
2. Eligible: a known customer id and ``consent_marketing`` true from the
   latest identify; else ``none``.
3. Not after an order: a customer who ordered at or after ``since_ms`` (the
   moment the triggering condition began, e.g. the cart's last activity)
   bought already; ``none``.
4. Cap: at most one contact (offer or assist) per ``offer_cap_ms``; ``none``.
5. Loyal: a loyalty score >= ``loyalty_assist_score`` means a buyer who
   usually completes on their own: ``assist`` (help, no discount).
6. Otherwise ``offer`` with the discount of the cart's value tier
   (``Rules.discount_for``), valid ``offer_valid_ms``.

``decide_for_state`` applies this to a visitor and records the contact for
the cap; the abandonment detector calls it for every ``cart_abandoned``.

Help triggers (``checkout_friction``, ``support_risk``) go through
``decide_assist``: the same holdout (step 1, with the kind's experiment),
then ``assist``. Steps 2-6 guard marketing contacts, and an assist is not
one: on-site help or priority routing needs neither an identified customer
nor marketing consent, carries no discount, and does not use up the
customer's offer cap (each help kind has its own limit: one assist per
session per ``CX_FRICTION_ASSIST_CAP_MS``, one ``support_risk`` per ticket
opening).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.detect.customers import loyalty_score
from pipeline.detect.rules import Rules
from pipeline.detect.state import VisitorState
from pipeline.wire.records import stable_id

__all__ = [
    "BUCKETS",
    "Decision",
    "decide_assist",
    "decide_for_state",
    "decide_offer",
    "holdout_bucket",
    "in_holdout",
    "offer_code",
]

BUCKETS = 10_000
Why = Literal["offer", "loyal", "help", "holdout", "anonymous", "no_consent", "ordered", "capped"]


@dataclass(frozen=True, slots=True)
class Decision:
    action: Literal["offer", "assist", "none"]
    holdout: bool
    experiment: str
    offer: dict | None  # {code, discount_pct, expires_at_ms, channel} for an offer, else None
    why: Why  # which guardrail decided; for tests and the backtest, not on the record

    @property
    def contacts(self) -> bool:
        """True when marketing reaches out (offer or assist): counts for the cap."""
        return self.action != "none"


def holdout_bucket(tenant: str, experiment: str, subject: str) -> int:
    """The subject's bucket in 0..9,999; the same on every run and every worker."""
    return int(stable_id("holdout", tenant, experiment, subject), 16) % BUCKETS


def in_holdout(rules: Rules, tenant: str, subject: str, experiment: str | None = None) -> bool:
    experiment = rules.experiment if experiment is None else experiment
    return holdout_bucket(tenant, experiment, subject) < rules.holdout_pct_for(experiment) * (BUCKETS / 100)


def offer_code(trigger_id: str) -> str:
    return "CX-" + trigger_id[:10].upper()


def decide_offer(
    rules: Rules,
    *,
    kind: str,
    tenant: str,
    trigger_id: str,
    customer_id: str | None,
    anonymous_id: str | None,
    consent: bool | None,
    last_offer_ms: int | None,
    last_order_ms: int | None,
    since_ms: int,
    loyalty: int,
    cart_value: float,
    event_time_ms: int,
) -> Decision:
    """Decide the action for a ``kind`` trigger that became true at ``event_time_ms``."""
    experiment = rules.experiment_for(kind)

    def none(why: Why, holdout: bool = False) -> Decision:
        return Decision("none", holdout, experiment, None, why)

    if in_holdout(rules, tenant, customer_id or anonymous_id or "", experiment):
        return none("holdout", holdout=True)
    if customer_id is None:
        return none("anonymous")
    if consent is not True:
        return none("no_consent")
    if last_order_ms is not None and last_order_ms >= since_ms:
        return none("ordered")
    if last_offer_ms is not None and event_time_ms - last_offer_ms < rules.offer_cap_ms:
        return none("capped")
    if loyalty >= rules.loyalty_assist_score:
        return Decision("assist", False, experiment, None, "loyal")
    offer = {
        "code": offer_code(trigger_id),
        "discount_pct": rules.discount_for(cart_value),
        "expires_at_ms": event_time_ms + rules.offer_valid_ms,
        "channel": rules.offer_channel,
    }
    return Decision("offer", False, experiment, offer, "offer")


def decide_assist(rules: Rules, *, kind: str, tenant: str, subject: str) -> Decision:
    """The action of a help trigger (``checkout_friction``, ``support_risk``): holdout, else assist.

    ``subject`` is the customer id, else the anonymous id (the holdout hash's input).
    """
    experiment = rules.experiment_for(kind)
    if in_holdout(rules, tenant, subject, experiment):
        return Decision("none", True, experiment, None, "holdout")
    return Decision("assist", False, experiment, None, "help")


def decide_for_state(
    rules: Rules,
    state: VisitorState,
    *,
    kind: str,
    trigger_id: str,
    cart_value: float,
    since_ms: int,
    event_time_ms: int,
) -> Decision:
    """``decide_offer`` for the visitor of ``state``; a contact is recorded for the cap."""
    decision = decide_offer(
        rules,
        kind=kind,
        tenant=state.tenant,
        trigger_id=trigger_id,
        customer_id=state.user_id,
        anonymous_id=state.anonymous_id,
        consent=state.consent,
        last_offer_ms=state.last_offer_ms,
        last_order_ms=state.value.last_order_ms,
        since_ms=since_ms,
        loyalty=loyalty_score(state.value, event_time_ms, rules),
        cart_value=cart_value,
        event_time_ms=event_time_ms,
    )
    if decision.contacts:
        state.last_offer_ms = event_time_ms
    return decision
