"""Detection rules: event-time thresholds and the offer policy, fixed at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.settings import (
    DAY_MS,
    DEFAULT_FRICTION_WEIGHTS,
    DEFAULT_RAGE_EXCLUDE,
    MINUTE_MS,
    Settings,
    parse_friction_weights,
    parse_holdouts,
    parse_pairs,
    parse_selectors,
    parse_tiers,
)

__all__ = ["Rules", "Channel"]

Channel = Literal["email", "sms", "onsite"]

# Rules fields that come one to one from Settings of the same name.
_FROM_SETTINGS = (
    "abandon_after_ms",
    "session_gap_ms",
    "allowed_lateness_ms",
    "idle_partition_ms",
    "experiment",
    "holdout_pct",
    "offer_cap_ms",
    "offer_valid_ms",
    "offer_discount_pct",
    "offer_channel",
    "friction_rage_clicks",
    "friction_rage_window_ms",
    "friction_rage_radius_px",
    "friction_error_click_ms",
    "friction_slow_page_ms",
    "friction_u_turn_ms",
    "friction_loop_step_views",
    "friction_loop_coupon_denials",
    "friction_assist_score",
    "friction_assist_cap_ms",
    "support_risk_sentiment",
    "support_recent_order_ms",
    "loyalty_assist_score",
    "loyalty_full_revenue",
    "attribution_window_ms",
)


@dataclass(frozen=True, slots=True)
class Rules:
    """What the detectors decide with; the defaults are the guardrails of docs/offers.md and docs/detection.md."""

    abandon_after_ms: int = 30 * MINUTE_MS
    session_gap_ms: int = 30 * MINUTE_MS
    allowed_lateness_ms: int = 1_000
    idle_partition_ms: int = 1_000
    experiment: str = "default"
    holdout_pct: float = 10.0
    offer_cap_ms: int = DAY_MS
    offer_valid_ms: int = 2 * DAY_MS
    offer_discount_pct: int = 10
    offer_channel: Channel = "email"
    friction_rage_clicks: int = 3
    friction_rage_window_ms: int = 1_000
    friction_rage_radius_px: float = 30.0
    friction_rage_exclude: tuple[str, ...] = parse_selectors(DEFAULT_RAGE_EXCLUDE)
    friction_error_click_ms: int = 1_000
    friction_slow_page_ms: int = 4_000
    friction_u_turn_ms: int = 10_000
    friction_loop_step_views: int = 3
    friction_loop_coupon_denials: int = 2
    # (signal, points) pairs: a tuple keeps the rules hashable like the rest
    friction_weights: tuple[tuple[str, int], ...] = tuple(parse_friction_weights(DEFAULT_FRICTION_WEIGHTS).items())
    friction_assist_score: int = 50
    friction_assist_cap_ms: int = 10 * MINUTE_MS
    support_risk_sentiment: float = -0.4
    support_recent_order_ms: int = 30 * DAY_MS
    # Ascending (cart value, discount pct): the highest tier a cart reaches sets its discount.
    offer_discount_tiers: tuple[tuple[float, int], ...] = ((100.0, 15), (250.0, 20))
    experiment_holdouts: tuple[tuple[str, float], ...] = ()  # (experiment, holdout pct) overrides
    experiment_by_kind: tuple[tuple[str, str], ...] = ()  # (trigger kind, experiment) overrides
    loyalty_assist_score: int = 70
    loyalty_full_revenue: float = 500.0
    attribution_window_ms: int = 7 * DAY_MS
    # Bounds on one visitor's state. They are not settings: they trade memory,
    # not behaviour a storefront or an analyst sees.
    dedup_window: int = 64
    max_checkouts: int = 8
    max_carts: int = 16
    closed_cart_retention_ms: int = 2 * DAY_MS
    max_tickets: int = 8
    ticket_retention_ms: int = 30 * DAY_MS

    def __post_init__(self) -> None:
        if self.abandon_after_ms <= 0 or self.session_gap_ms <= 0:
            raise ValueError("abandon_after_ms and session_gap_ms must be positive")
        if self.allowed_lateness_ms < 0 or self.idle_partition_ms <= 0:
            raise ValueError("allowed_lateness_ms must be >= 0 and idle_partition_ms > 0")
        if not 0 <= self.holdout_pct <= 100:
            raise ValueError("holdout_pct must be within 0..100")
        if any(not 0 <= pct <= 100 for _, pct in self.experiment_holdouts):
            raise ValueError("experiment_holdouts shares must be within 0..100")
        if list(self.offer_discount_tiers) != sorted(self.offer_discount_tiers):
            raise ValueError("offer_discount_tiers must be in ascending cart value")
        if self.attribution_window_ms <= 0 or self.loyalty_full_revenue <= 0:
            raise ValueError("attribution_window_ms and loyalty_full_revenue must be positive")
        if min(self.dedup_window, self.max_checkouts, self.max_carts, self.max_tickets) < 1:
            raise ValueError("dedup_window, max_checkouts, max_carts and max_tickets must be >= 1")
        if not -1 <= self.support_risk_sentiment <= 0 or self.support_recent_order_ms < 0:
            raise ValueError("support_risk_sentiment must be within -1..0 and support_recent_order_ms >= 0")

    @property
    def inactivity_reason(self) -> str:
        """The abandonment reason: ``inactive_30m``, or ``inactive_45s`` / ``inactive_1500ms`` below whole minutes."""
        ms = self.abandon_after_ms
        if ms % MINUTE_MS == 0:
            return f"inactive_{ms // MINUTE_MS}m"
        if ms % 1000 == 0:
            return f"inactive_{ms // 1000}s"
        return f"inactive_{ms}ms"

    def experiment_for(self, kind: str) -> str:
        """The experiment a trigger kind is part of (``experiment_by_kind``, else ``experiment``)."""
        return dict(self.experiment_by_kind).get(kind, self.experiment)

    def holdout_pct_for(self, experiment: str) -> float:
        """The holdout share of an experiment (``experiment_holdouts``, else ``holdout_pct``)."""
        return dict(self.experiment_holdouts).get(experiment, self.holdout_pct)

    def discount_for(self, cart_value: float) -> int:
        """Discount pct of a cart worth ``cart_value``: the highest tier reached, else the base."""
        pct = self.offer_discount_pct
        for min_value, tier_pct in self.offer_discount_tiers:
            if cart_value >= min_value:
                pct = tier_pct
        return pct

    @classmethod
    def from_settings(cls, settings: Settings) -> "Rules":
        """The rules the configured settings describe (state bounds keep their defaults)."""
        return cls(
            **{name: getattr(settings, name) for name in _FROM_SETTINGS},
            friction_rage_exclude=parse_selectors(settings.friction_rage_exclude_selectors),
            friction_weights=tuple(parse_friction_weights(settings.friction_weights).items()),
            offer_discount_tiers=parse_tiers(settings.offer_discount_tiers),
            experiment_holdouts=parse_holdouts(settings.experiment_holdouts),
            experiment_by_kind=tuple(parse_pairs(settings.experiment_by_kind, "kind=experiment")),
        )
