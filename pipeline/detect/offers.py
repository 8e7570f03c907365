"""Offer decision for an abandonment (contract section 3 guardrails); pure.

- Holdout: a stable hash of (tenant, experiment, customer id or anonymous
  id) into 10,000 buckets; buckets below ``holdout_pct * 100`` are held out.
  Every trigger gets its arm, eligible or not (intention to treat), so both
  arms hold the same mix of customers and uplift is measured without bias.
- Eligible: a known customer id and ``consent_marketing`` true from the
  latest identify.
- Cap: at most one offer per ``offer_cap_ms`` (per visitor for now).
- ``offer`` when eligible, not held out and not capped; otherwise ``none``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.detect.rules import Rules
from pipeline.records import stable_id

__all__ = ["Decision", "holdout_bucket", "in_holdout", "offer_code", "decide_offer", "BUCKETS"]

BUCKETS = 10_000


@dataclass(frozen=True, slots=True)
class Decision:
    action: Literal["offer", "none"]
    holdout: bool
    offer: dict | None  # {code, discount_pct, expires_at_ms, channel}


def holdout_bucket(tenant: str, experiment: str, subject: str) -> int:
    """The subject's bucket in 0..9,999; the same on every run and every worker."""
    return int(stable_id("holdout", tenant, experiment, subject), 16) % BUCKETS


def in_holdout(rules: Rules, tenant: str, subject: str) -> bool:
    return holdout_bucket(tenant, rules.experiment, subject) < rules.holdout_pct * (BUCKETS / 100)


def offer_code(trigger_id: str) -> str:
    return "CX-" + trigger_id[:10].upper()


def decide_offer(
    rules: Rules,
    *,
    tenant: str,
    trigger_id: str,
    customer_id: str | None,
    anonymous_id: str | None,
    consent: bool | None,
    last_offer_ms: int | None,
    event_time_ms: int,
) -> Decision:
    """Decide the action for a trigger that became true at ``event_time_ms``."""
    if in_holdout(rules, tenant, customer_id or anonymous_id or ""):
        return Decision("none", True, None)
    if customer_id is None or consent is not True:
        return Decision("none", False, None)
    if last_offer_ms is not None and event_time_ms - last_offer_ms < rules.offer_cap_ms:
        return Decision("none", False, None)
    offer = {
        "code": offer_code(trigger_id),
        "discount_pct": rules.offer_discount_pct,
        "expires_at_ms": event_time_ms + rules.offer_valid_ms,
        "channel": rules.offer_channel,
    }
    return Decision("offer", False, offer)
