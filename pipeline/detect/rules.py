"""Detection rules: event-time thresholds and the offer policy, fixed at start-up.

The one module of the pure core that reads ``pipeline.settings``, and only its declarations: each
rule's default and the parsers of the text settings, so that every knob is written once. The core
never reads the environment; the runtime builds ``Rules.from_settings(settings)`` and hands it over.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from pipeline.settings import (
    DAY_MS,
    FRICTION_SIGNALS,
    MINUTE_MS,
    Settings,
    parse_friction_weights,
    parse_holdouts,
    parse_pairs,
    parse_selectors,
    parse_tiers,
)

__all__ = ["Rules", "Channel", "DAY_MS", "MINUTE_MS", "FRICTION_SIGNALS"]

Channel = Literal["email", "sms", "onsite"]


def _setting(name: str) -> Any:
    """The default of the setting ``name``: each rule's default is written once, in ``Settings``."""
    return Settings.model_fields[name].default


@dataclass(frozen=True, slots=True)
class Rules:
    """What the detectors decide with; the defaults are the guardrails of docs/offers.md and docs/detection.md."""

    abandon_after_ms: int = _setting("abandon_after_ms")
    session_gap_ms: int = _setting("session_gap_ms")
    allowed_lateness_ms: int = _setting("allowed_lateness_ms")
    idle_partition_ms: int = _setting("idle_partition_ms")
    experiment: str = _setting("experiment")
    holdout_pct: float = _setting("holdout_pct")
    offer_cap_ms: int = _setting("offer_cap_ms")
    offer_valid_ms: int = _setting("offer_valid_ms")
    offer_discount_pct: int = _setting("offer_discount_pct")
    offer_channel: Channel = _setting("offer_channel")
    friction_rage_clicks: int = _setting("friction_rage_clicks")
    friction_rage_window_ms: int = _setting("friction_rage_window_ms")
    friction_rage_radius_px: float = _setting("friction_rage_radius_px")
    friction_rage_exclude: tuple[str, ...] = parse_selectors(_setting("friction_rage_exclude_selectors"))
    friction_error_click_ms: int = _setting("friction_error_click_ms")
    friction_slow_page_ms: int = _setting("friction_slow_page_ms")
    friction_u_turn_ms: int = _setting("friction_u_turn_ms")
    friction_loop_step_views: int = _setting("friction_loop_step_views")
    friction_loop_coupon_denials: int = _setting("friction_loop_coupon_denials")
    # (signal, points) pairs: a tuple keeps the rules hashable like the rest
    friction_weights: tuple[tuple[str, int], ...] = tuple(parse_friction_weights(_setting("friction_weights")).items())
    friction_assist_score: int = _setting("friction_assist_score")
    friction_assist_cap_ms: int = _setting("friction_assist_cap_ms")
    support_risk_sentiment: float = _setting("support_risk_sentiment")
    support_recent_order_ms: int = _setting("support_recent_order_ms")
    # Ascending (cart value, discount pct): the highest tier a cart reaches sets its discount.
    offer_discount_tiers: tuple[tuple[float, int], ...] = parse_tiers(_setting("offer_discount_tiers"))
    experiment_holdouts: tuple[tuple[str, float], ...] = parse_holdouts(_setting("experiment_holdouts"))  # (experiment, pct)
    experiment_by_kind: tuple[tuple[str, str], ...] = tuple(parse_pairs(_setting("experiment_by_kind"), "kind=experiment"))
    loyalty_assist_score: int = _setting("loyalty_assist_score")
    loyalty_full_revenue: float = _setting("loyalty_full_revenue")
    attribution_window_ms: int = _setting("attribution_window_ms")
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


# Rules parsed from a setting's text (``from_settings`` names them); the rest of the rules that share a
# setting's name take its value as it is, and those that bound one visitor's state are not settings.
_PARSED = frozenset({"friction_rage_exclude", "friction_weights", "offer_discount_tiers", "experiment_holdouts",
                     "experiment_by_kind"})  # fmt: skip
_FROM_SETTINGS = tuple(f.name for f in fields(Rules) if f.name in Settings.model_fields and f.name not in _PARSED)
